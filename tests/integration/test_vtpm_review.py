# SPDX-License-Identifier: GPL-2.0-or-later
"""Review of the vTPM's second part (docs/VTPM.md "Endorsement keys", docs/SECURITY.md "Attacks
tried"): root on the device editing the record of the EKs that the device measures, a wipe of a
container with a vTPM, and a vTPM that does not stop."""
import json
import os
import shutil
import signal
import time

from conftest import process_gone, wait_for
from test_vtpm import KDF, PIN, PUK, create, pin_file, start, tpm_rootfs, vtpm_pid  # noqa: F401


def ek_record(d, name):
    return d.data_dir / "containers" / d.state(name)["uuid"] / "vtpm-ek"


def measured_eks(d, name):
    uuid = d.state(name)["uuid"]
    m = json.loads(d.cli("measurements", "--json").stdout)
    return {e["name"]: e["sha256"] for e in m["events"] if e["type"] == "vtpm-ek" and e["name"].startswith(uuid)}


def stop(d, name):
    d.cli("stop", name)
    wait_for(lambda: not vtpm_pid(d, name), what=f"{name}'s vTPM to stop")


def test_ek_record_edited_or_swapped_is_not_measured(make_daemon, tpm_rootfs):
    """Root on the device copies container b's EK record over a's (or writes EKs of its own
    there): at a's next start the device would vouch, in its quoted runtime PCR, for keys that are
    not a's vTPM's — keys whose private part the attacker may hold. The record is bound to the
    container's vTPM now: the start is refused, the edited EKs are never measured."""
    d = make_daemon(extra_args=KDF)
    for n in ("a", "b"):
        create(d, n, tpm_rootfs)
        start(d, n)
    eks_a = {e["kind"]: e["name"] for e in json.loads(d.cli("vtpm", "info", "--json", "a").stdout)["eks"]}
    eks_b = {e["kind"]: e["name"] for e in json.loads(d.cli("vtpm", "info", "--json", "b").stdout)["eks"]}
    assert eks_a and eks_b and eks_a != eks_b
    stop(d, "a")
    rec_a, rec_b = ek_record(d, "a"), ek_record(d, "b")
    saved = rec_a.read_bytes()
    shutil.copy2(rec_b, rec_a)
    r = start(d, "a", check=False)
    uuid_a = d.state("a")["uuid"]
    measured = measured_eks(d, "a")
    assert eks_b["ecc"][4:] not in measured.values() and eks_b["rsa"][4:] not in measured.values(), \
        f"b's EKs measured as a's: {measured}"
    assert r.returncode != 0, "a started with b's EK record"
    assert "endorsement" in r.stderr, r.stderr
    # the record edited in place: a line of b's under a's name, a's own line kept
    lines = saved.decode().splitlines()
    other = rec_b.read_text().splitlines()
    rec_a.write_text("\n".join([lines[0], other[1]] + lines[2:]) + "\n")
    assert start(d, "a", check=False).returncode != 0
    assert eks_b["ecc"][4:] not in measured_eks(d, "a").values()
    # its own record back: it starts and its own EKs are measured
    rec_a.write_bytes(saved)
    start(d, "a")
    assert measured_eks(d, "a") == {f"{uuid_a}/ek-rsa": eks_a["rsa"][4:], f"{uuid_a}/ek-ecc": eks_a["ecc"][4:]}
    for n in ("a", "b"):
        stop(d, n)


def test_wipe_gives_a_new_vtpm(make_daemon, tpm_rootfs):
    """A wipe replaces the container's data key, from which its vTPM's state key is derived: the
    old vTPM must go with it (state, anchor, EK record) and the container start with a new one."""
    d = make_daemon(extra_args=KDF)
    create(d, "w", tpm_rootfs)
    start(d, "w")
    d.sh("w", "cd /tmp && tpm2_nvdefine -C o -s 16 0x1500016 >/dev/null && echo secret-value > v && "
              "tpm2_nvwrite -C o -i v 0x1500016")
    old = {e["kind"]: e["name"] for e in json.loads(d.cli("vtpm", "info", "--json", "w").stdout)["eks"]}
    stop(d, "w")

    def wiped():  # refused (EBUSY) while the stopped vTPM's state is still being anchored
        r = d.cli("wipe", "w", check=False)
        assert r.returncode == 0 or "still saving" in r.stderr, r.stderr
        return r.returncode == 0
    wait_for(wiped, timeout=20, what="the wipe")
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, PUK), "w")
    r = start(d, "w", check=False)
    assert r.returncode == 0, f"the wiped container does not start: {r.stderr}"
    new = {e["kind"]: e["name"] for e in json.loads(d.cli("vtpm", "info", "--json", "w").stdout)["eks"]}
    assert new and new != old
    assert d.sh("w", "tpm2_nvread 0x1500016", check=False).returncode != 0  # the old vTPM's NV is gone
    stop(d, "w")


def test_a_vtpm_that_does_not_stop_is_killed(make_daemon, tpm_rootfs):
    """trustme-vtpm stopped (SIGSTOP: as a vTPM that ignores SIGTERM, hung in a command or taken
    over through the guest's TPM commands) when its container stops. trustmed kills it after its
    stop timeout instead of waiting for good (before: the vTPM never ended, the container could
    not start again and trustmed could not exit); the container then starts with a vTPM again."""
    d = make_daemon(extra_args=KDF)
    create(d, "h", tpm_rootfs)
    start(d, "h")
    helper = vtpm_pid(d, "h")
    assert helper
    os.kill(helper, signal.SIGSTOP)
    try:
        t = time.monotonic()
        d.cli("stop", "h")
        wait_for(lambda: process_gone(helper), timeout=40, what="trustme-vtpm to be killed")
        took = time.monotonic() - t
        assert took > 10, f"trustme-vtpm gone after {took:.1f} s: killed before its stop timeout?"
        assert "did not stop within" in d.log()
    finally:
        if not process_gone(helper):
            os.kill(helper, signal.SIGKILL)
    start(d, "h")
    assert vtpm_pid(d, "h")
    d.sh("h", "tpm2_getrandom 4 >/dev/null")
    stop(d, "h")
