# SPDX-License-Identifier: GPL-2.0-or-later
"""Third outside review: the fleet's owner-pinned vTPM key at 0x81018000 (docs/FLEET.md "vTPM
quotes", docs/VTPM.md "Remote take-ownership") against the container's own root, which talks to
its vTPM directly (/run/tpm/tpm.sock, real tpm2-tools in its root), and against the network
through the device's relay, after the owner took the vTPM with --fleet-key. test_vtpm_owner.py's
world (device A provisioned by a test PKI) is reused; the fleet's own checks of the quote are
test_vtpm_owner.py::test_fleet_attests_a_vtpm_by_its_owners_key."""
import json
import re
import struct
import subprocess

from pb import parse
from test_vtpm import create, start, tpm_rootfs  # noqa: F401 (fixture)
from test_vtpm_owner import (OWNER, RUNTIME, attest_address, container_log, line, pytestmark,  # noqa: F401
                             relay_request, sign_refs, world)

FLEET_KEY = 0x81018000
PW = struct.pack(">IHBH", 0x40000009, 0, 0, 0)  # an empty password session


def key_name(d, name):
    r = d.sh(name, f"cd /tmp && tpm2_readpublic -c {FLEET_KEY:#x} -n name.bin >/dev/null && od -An -tx1 name.bin",
             check=False)
    assert r.returncode == 0, r.stderr
    return "".join(r.stdout.split())


def test_the_containers_root_cannot_evict_or_replace_the_pinned_key(world, tpm_rootfs, tmp_path):  # noqa: F811
    a, pki = world.a, world.pki
    create(a, "fk", tpm_rootfs)
    start(a, "fk")
    uuid = a.state("fk")["uuid"]
    cvalues = []
    for ln in container_log(a, "fk").splitlines():
        _, typ, sha, name = ln.split(" ", 3)
        cvalues.append({"type": typ, "name": name, "sha256": sha})
    crefs = sign_refs(pki, tmp_path / "crefs.json", cvalues, [RUNTIME])
    m = json.loads(a.cli("measurements", "--json").stdout)
    refs = sign_refs(pki, tmp_path / "refs.json",
                     [{"type": e["type"], "name": e["name"], "sha256": e["sha256"]} for e in m["events"]],
                     [RUNTIME, 12])
    # Before the take the guest plants a key of its own at the handle (its owner auth is empty).
    r = a.sh("fk", "cd /tmp && tpm2_createprimary -C o -G ecc256:ecdsa-sha256:null -a "
                   "'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign' -c g.ctx >/dev/null && "
                   f"tpm2_evictcontrol -C o -c g.ctx {FLEET_KEY:#x} >/dev/null", check=False)
    assert r.returncode == 0, r.stderr
    planted = key_name(a, "fk")
    key = tmp_path / "fleet-key.json"
    r = subprocess.run([OWNER, "take", attest_address(a), "--container", uuid, *pki.trust, "--reference", refs,
                        "--container-reference", crefs, "--auth-out", tmp_path / "auth.json", "--fleet-key", key],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and line(r.stdout, "fleet key")[0] == "ok", r.stdout + r.stderr
    pinned = json.loads(key.read_text())["name"]
    # The take replaced the planted key: the handle holds the owner's key.
    assert key_name(a, "fk") == pinned != planted
    # The container's root, on its own socket: evict it; replace it with a key of the null
    # hierarchy (the only one it can still use); clear the vTPM. Each needs an authorisation the
    # owner now holds.
    attempts = {
        "evict": f"tpm2_evictcontrol -C o -c {FLEET_KEY:#x}",
        "replace": "cd /tmp && tpm2_createprimary -C n -G ecc256:ecdsa-sha256:null -a "
                   "'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign' -c n.ctx >/dev/null && "
                   f"tpm2_evictcontrol -C o -c n.ctx {FLEET_KEY:#x}",
        "owner key": "cd /tmp && tpm2_createprimary -C o -c o.ctx",
        "endorsement key": "cd /tmp && tpm2_createprimary -C e -c e.ctx",
        "clear": "tpm2_clear -c l",
    }
    for what, script in attempts.items():
        r = a.sh("fk", script, check=False)
        assert r.returncode != 0, f"the container's root could {what}: {r.stdout}"
        assert re.search(r"0x9a2|0x98e|authori[sz]ation|auth", r.stderr, re.I), (what, r.stderr)
    assert key_name(a, "fk") == pinned
    # The network, through the relay (which carries EvictControl for this handle only): an
    # eviction and a transient key made persistent there, with the empty owner auth, are the
    # vTPM's to refuse.
    body = struct.pack(">II", 0x40000001, FLEET_KEY) + struct.pack(">I", len(PW)) + PW + struct.pack(">I", FLEET_KEY)
    answer = relay_request(a, uuid, struct.pack(">HII", 0x8002, 10 + len(body), 0x120) + body)
    rc = struct.unpack(">HII", parse(answer[541][0])[1][0][:10])[2]
    assert rc & 0x80 and rc & 0x3F in (0x22, 0x0E), hex(rc)  # TPM_RC_BAD_AUTH or TPM_RC_AUTH_FAIL
    assert key_name(a, "fk") == pinned
