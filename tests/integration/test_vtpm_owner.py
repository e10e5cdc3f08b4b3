# SPDX-License-Identifier: GPL-2.0-or-later
"""Remote take-ownership of a container's vTPM (docs/VTPM.md "Remote take-ownership") with
trustme-owner against real daemons: device A (its own embedded swtpm, provisioned by a test PKI)
runs vTPM containers; device B, a second trustmed with its own swtpm, stands in for another
device. A man in the middle (the network is the attacker's) relays, rewrites or replays the
attestation endpoint's frames."""
import hashlib
import json
import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import BUILD, TEST_PREFIX, Daemon
from pb import encode, frame, parse
from test_device import provision
from test_vtpm import KDF, create, start, tpm_rootfs  # noqa: F401
from tools import tool

OWNER = BUILD / "src/owner/trustme-owner"
PKI_TOOL = BUILD / "src/tools/pki/trustme-pki"
RUNTIME = 11

pytestmark = pytest.mark.skipif(not OWNER.exists(), reason="trustme-owner is not built")


def stamp(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def sign_refs(pki, out, values, pcrs, required=()):
    now = time.time()
    out.write_text(json.dumps({
        "format": "trustme-reference-values", "version": 2, "rim_version": 1,
        "not_before": stamp(now - 60), "not_after": stamp(now + 86400), "pcrs": pcrs,
        "required": [{"type": t, "name": n} for t, n in required], "values": values}))
    subprocess.run([PKI_TOOL, "sign", out, "--pki", pki.dir, "--signer", "software", "--passphrase-file",
                    pki.passfile], check=True, capture_output=True)
    return out


def attest_address(d):
    return json.loads(d.cli("device", "info", "--json").stdout)["attest_address"]


class Pki:
    def __init__(self, base):
        self.dir = base / "pki"
        self.passfile = base / "pass"
        self.passfile.write_text("owner test passphrase\n")
        self.passfile.chmod(0o600)
        subprocess.run([PKI_TOOL, "init", self.dir, "--passphrase-file", self.passfile], check=True,
                       capture_output=True)
        self.trust = ["--ak-anchor", self.dir / "customer/general-root-ca.pem",
                      "--device-ca", self.dir / "customer/device-ca.pem",
                      "--rim-anchor", self.dir / "software-signing/root-ca.pem",
                      "--rim-ca", self.dir / "software-signing/sub-ca.pem", "--no-crl"]


def device(test_root, rootfs, tag):
    base = Path(tempfile.mkdtemp(prefix=f"d-own-{tag}-", dir=test_root))
    d = Daemon(base, f"{TEST_PREFIX}-{os.getpid()}-own-{tag}", rootfs, KDF)
    d.start()
    return d


def container_log(d, name):
    return (d.run_dir / "vtpm" / d.state(name)["uuid"] / "pub/event.log").read_text()


@pytest.fixture(scope="module")
def world(test_root, rootfs, tpm_rootfs):  # noqa: F811
    tool("swtpm")
    base = Path(tempfile.mkdtemp(prefix="own-pki-", dir=test_root))
    pki = Pki(base)
    a = device(test_root, rootfs, "a")
    b = None
    try:
        for name in ("pristine", "own", "mand"):
            create(a, name, tpm_rootfs)
            start(a, name)
        provision(a, {"dir": pki.dir, "pass": pki.passfile}, a.base, cn="device-a")
        m = json.loads(a.cli("measurements", "--json").stdout)
        # The device's reference values: its software and configs, not the vTPMs' EKs (which
        # vTPMs run beside the stakeholder's is not its policy: trustme-owner accepts them).
        values = [{"type": e["type"], "name": e["name"], "sha256": e["sha256"]} for e in m["events"]
                  if e["type"] != "vtpm-ek"]
        refs = sign_refs(pki, base / "refs.json", values, [RUNTIME, 12])
        bad = sign_refs(pki, base / "refs-bad.json", [v for v in values if v["type"] != "binary"],
                        [RUNTIME, 12])
        # The stakeholder's values for its container: the events of its vTPM's log.
        cvalues = []
        for name in ("pristine", "own", "mand"):
            for line in container_log(a, name).splitlines():
                pcr, typ, sha, ename = line.split(" ", 3)
                cvalues.append({"type": typ, "name": ename, "sha256": sha})
        crefs = sign_refs(pki, base / "crefs.json", cvalues, [RUNTIME])
        cbad = sign_refs(pki, base / "crefs-bad.json", [v for v in cvalues if v["type"] != "container-config"],
                         [RUNTIME])
        # Device B: another TPM, a vTPM container of its own.
        b = device(test_root, rootfs, "b")
        create(b, "elsewhere", tpm_rootfs)
        start(b, "elsewhere")
        yield type("World", (), dict(a=a, b=b, pki=pki, base=base, refs=refs, bad=bad, crefs=crefs, cbad=cbad))
    finally:
        if b:
            b.teardown()
        a.teardown()


def take(w, name, target=None, refs=None, crefs=None, auth=None):
    auth = auth or w.base / f"auth-{name}-{time.monotonic_ns()}.json"
    uuid = w.a.state(name)["uuid"]
    r = subprocess.run([OWNER, "take", target or attest_address(w.a), "--container", uuid, *w.pki.trust,
                        "--reference", refs or w.refs, "--container-reference", crefs or w.crefs,
                        "--auth-out", auth], capture_output=True, text=True, timeout=60)
    return r, auth


def line(out, step):
    m = re.search(rf"^{re.escape(step)}\s+(ok|FAIL)\s+(.*)$", out, re.M)
    return (m.group(1), m.group(2)) if m else (None, None)


class Mitm:
    """The network between the tool and the device: a TCP relay that can send vTPM relay
    requests to another device (renaming the container), record the answers, or answer a
    request with a recorded one (its id rewritten, as any attacker can)."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.redirect = None  # (host:port, uuid): relay requests go there
        self.recorded = []  # answers, in the order of requests
        self.replay = {}  # request index -> recorded answer
        self.n = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _connect(hostport):
        host, port = hostport.rsplit(":", 1)
        return socket.create_connection((host, int(port)), timeout=10)

    @staticmethod
    def _recv(s):
        hdr = b""
        while len(hdr) < 4:
            c = s.recv(4 - len(hdr))
            if not c:
                return None
            hdr += c
        (n,) = struct.unpack(">I", hdr)
        body = b""
        while len(body) < n:
            c = s.recv(n - len(body))
            if not c:
                return None
            body += c
        return body

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        ups = {}
        try:
            while True:
                req = self._recv(c)
                if req is None:
                    return
                f = parse(req)
                target = self.upstream
                if 540 in f and self.redirect:
                    target, uuid = self.redirect
                    inner = parse(f[540][0])
                    inner[1] = [uuid.encode()]
                    f[540] = [encode(inner)]
                    req = encode(f)
                i = self.n
                self.n += 1
                if i in self.replay:
                    old = parse(self.replay[i])
                    old[2] = f[2]
                    c.sendall(frame(encode(old)))
                    continue
                if target not in ups:
                    ups[target] = self._connect(target)
                ups[target].sendall(frame(req))
                rsp = self._recv(ups[target])
                if rsp is None:
                    return
                self.recorded.append(rsp)
                c.sendall(frame(rsp))
        except OSError:
            pass
        finally:
            c.close()
            for u in ups.values():
                u.close()

    def close(self):
        self.stop = True
        self.sock.close()


def assert_unowned(w, name):
    """Nothing secret was sent: the endorsement hierarchy still takes an empty authorisation."""
    w.a.sh(name, "cd /tmp && tpm2_createprimary -C e -c e.ctx >/dev/null")


def test_refused_for_an_unapproved_device(world):
    r, auth = take(world, "pristine", refs=world.bad)
    assert r.returncode == 1, r.stdout + r.stderr
    status, detail = line(r.stdout, "device")
    assert status == "FAIL" and "reference values" in detail, r.stdout
    assert line(r.stdout, "vTPM EK") == (None, None)
    assert not auth.exists()
    assert_unowned(world, "pristine")


def test_refused_for_a_container_not_approved(world):
    r, auth = take(world, "pristine", crefs=world.cbad)
    assert r.returncode == 1, r.stdout + r.stderr
    assert line(r.stdout, "vTPM quote")[0] == "ok", r.stdout + r.stderr
    status, detail = line(r.stdout, "container reference values")
    assert status == "FAIL" and "container-config" in detail, r.stdout
    assert not auth.exists()
    assert_unowned(world, "pristine")


def test_refused_for_a_vtpm_of_another_device(world):
    """The network answers the quote with device A's evidence but relays the vTPM commands to a
    vTPM on device B: its EK is not the one A measured."""
    m = Mitm(attest_address(world.a))
    try:
        m.redirect = (attest_address(world.b), world.b.state("elsewhere")["uuid"])
        r, auth = take(world, "pristine", target=m.address)
    finally:
        m.close()
    assert r.returncode == 1, r.stdout + r.stderr
    assert line(r.stdout, "device")[0] == "ok"
    status, detail = line(r.stdout, "vTPM EK")
    assert status == "FAIL" and "not the one the device measured" in detail, r.stdout
    assert not auth.exists()


@pytest.mark.parametrize("which", ["device quote", "vTPM quote"])
def test_refused_for_a_replayed_response(world, which):
    # A first run (refused at the end by the stakeholder's values) is recorded...
    m = Mitm(attest_address(world.a))
    try:
        r, _ = take(world, "pristine", target=m.address, crefs=world.cbad)
        assert line(r.stdout, "vTPM quote")[0] == "ok", r.stdout + r.stderr
        recorded = list(m.recorded)
    finally:
        m.close()
    # ...and one of its answers replayed into the next run.
    m = Mitm(attest_address(world.a))
    try:
        if which == "device quote":
            m.replay = {0: recorded[0]}
        else:
            # The relayed Quote's answer is the one before the event log's.
            log = next(i for i, rsp in enumerate(recorded)
                       if 541 in parse(rsp) and 2 in parse(parse(rsp)[541][0]))
            m.replay = {log - 1: recorded[log - 1]}
        r, auth = take(world, "pristine", target=m.address)
    finally:
        m.close()
    assert r.returncode == 1, r.stdout + r.stderr
    if which == "device quote":
        status, detail = line(r.stdout, "device")
        assert status == "FAIL" and "nonce" in detail, r.stdout
    else:
        # The answer was made in another session: its HMAC fails.
        status, detail = line(r.stdout, "vTPM quote")
        assert status == "FAIL", r.stdout
        assert line(r.stdout, "ownership") == (None, None)
    assert not auth.exists()
    assert_unowned(world, "pristine")


def secrets_of(auth):
    v = json.loads(auth.read_text())
    return [v[k] for k in ("lockout", "endorsement", "owner")]


def grep_tree(root, needles):
    """Files under root holding any needle (raw bytes, lower or upper hex)."""
    found = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            try:
                if p.is_socket() or not p.is_file():
                    continue
                data = p.read_bytes()
            except OSError:
                continue
            for n in needles:
                if n in data:
                    found.append(str(p))
    return found


def test_take_ownership_end_to_end(world):
    a = world.a
    t0 = time.monotonic()
    r, auth = take(world, "own")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    for step in ("device", "vTPM on this device", "vTPM EK", "salted session", "attestation key", "credential",
                 "vTPM quote", "container reference values", "ownership"):
        assert line(r.stdout, step)[0] == "ok", r.stdout
    assert oct(auth.stat().st_mode & 0o777) == "0o600"
    lockout, endorsement, owner = secrets_of(auth)
    assert json.loads(auth.read_text())["container"] == a.state("own")["uuid"]
    # The owner hierarchy now needs the owner's value, which works.
    r2 = a.sh("own", "cd /tmp && tpm2_createprimary -C o -c p.ctx", check=False)
    assert r2.returncode != 0
    a.sh("own", f"cd /tmp && tpm2_createprimary -C o -P hex:{owner} -c p.ctx >/dev/null")
    a.sh("own", f"cd /tmp && tpm2_createprimary -C e -P hex:{endorsement} -c e.ctx >/dev/null")
    # A second take-ownership, without the owner's authorisation, is refused by the vTPM.
    r3, auth2 = take(world, "own")
    assert r3.returncode == 1, r3.stdout + r3.stderr
    status, detail = line(r3.stdout, "attestation key")
    assert status == "FAIL" and "owner already" in detail, r3.stdout
    assert not auth2.exists()
    # The values are nowhere on the device: not in trustmed's log, the audit log, the data and
    # run dirs (the vTPM's state is encrypted), nor in what the CLI or the tool printed.
    needles = []
    for v in (lockout, endorsement, owner):
        needles += [v.encode(), v.upper().encode(), bytes.fromhex(v)]
    assert grep_tree(a.base, needles) == []
    cli_out = a.cli("vtpm", "info", "own").stdout + a.cli("audit", "show", check=False).stdout
    for v in (lockout, endorsement, owner):
        assert v not in r.stdout + r.stderr + cli_out + a.log()
    print(f"take-ownership took {elapsed:.3f} s")


def relay_request(d, uuid, command):
    """One VtpmRelayRequest to the device's attestation endpoint: the answer's fields."""
    with Mitm._connect(attest_address(d)) as s:
        s.sendall(frame(encode({1: [1], 2: [7], 540: [encode({1: [uuid.encode()], 2: [command]})]})))
        return parse(Mitm._recv(s))


def test_relay_carries_only_the_protocols_commands(world):
    """The network may send anything to the attestation endpoint: the relay carries only the
    commands the take-ownership protocol uses, ECC key generation only, to a container by UUID."""
    uuid = world.a.state("pristine")["uuid"]
    # TPM2_Clear by the lockout hierarchy (empty password session): would wipe the owner's keys.
    auth = struct.pack(">IHBH", 0x40000009, 0, 0, 0)
    clear = struct.pack(">HII", 0x8002, 10 + 4 + 4 + len(auth), 0x126) + struct.pack(">I", 0x4000000A) + \
        struct.pack(">I", len(auth)) + auth
    answer = relay_request(world.a, uuid, clear)
    assert 10 in answer and b"is not relayed" in parse(answer[10][0])[2][0]
    # An RSA primary key (seconds of the vTPM's and tpmd's time) is refused, an ECC one passes.
    def create_primary(alg):
        pub = struct.pack(">HHIH", alg, 0x000B, 0x00050072, 0) + bytes(16)
        body = struct.pack(">I", 0x4000000B) + struct.pack(">I", len(auth)) + auth + struct.pack(">HHH", 4, 0, 0) + \
            struct.pack(">H", len(pub)) + pub + struct.pack(">HI", 0, 0)
        return struct.pack(">HII", 0x8002, 10 + len(body), 0x131) + body
    answer = relay_request(world.a, uuid, create_primary(0x0001))
    assert 10 in answer and b"only ECC" in parse(answer[10][0])[2][0]
    # EvictControl of the ECC EK (the network would remove the vTPM's identity) or to any handle
    # but the fleet key's: refused.
    def evict(obj, persistent):
        body = struct.pack(">II", 0x40000001, obj) + struct.pack(">I", len(auth)) + auth + struct.pack(">I", persistent)
        return struct.pack(">HII", 0x8002, 10 + len(body), 0x120) + body
    for obj, persistent in ((0x81010002, 0x81010002), (0x80000000, 0x81000001)):
        answer = relay_request(world.a, uuid, evict(obj, persistent))
        assert 10 in answer and b"only for the fleet key" in parse(answer[10][0])[2][0], answer
    # Not a UUID (a path), an unknown container: refused with the reason.
    read_public = struct.pack(">HII", 0x8001, 14, 0x173) + struct.pack(">I", 0x81010002)
    answer = relay_request(world.a, "../../tpm", read_public)
    assert b"needs a container UUID" in parse(answer[10][0])[2][0]
    answer = relay_request(world.a, "00000000-0000-4000-8000-000000000000", read_public)
    assert b"has no running vTPM" in parse(answer[10][0])[2][0]
    # A command it carries gets the vTPM's own answer.
    answer = relay_request(world.a, uuid, read_public)
    rsp = parse(answer[541][0])[1][0]
    assert struct.unpack(">HII", rsp[:10])[2] == 0


def owner_tool(*args):
    return subprocess.run([OWNER, *map(str, args)], capture_output=True, text=True, timeout=30)


def test_mandatory_owner_release(world, tmp_path):
    """A mandatory owner's vTPM is reset, wiped or removed only with a release statement signed
    by that owner, naming this container and its EK."""
    a = world.a
    r, auth = take(world, "mand")
    assert r.returncode == 0, r.stdout + r.stderr
    ek = json.loads(auth.read_text())["ek_name"]
    uuid = a.state("mand")["uuid"]
    keys = {}
    for who in ("owner", "other"):
        keys[who] = tmp_path / f"{who}.pem"
        subprocess.run([tool("openssl"), "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                        keys[who]], check=True, capture_output=True)

    def statement(key, kind="mandatory", ek=ek, container=uuid, verb="statement"):
        out = tmp_path / f"{verb}-{time.monotonic_ns()}"
        extra = ["--kind", kind] if verb == "statement" else []
        r = owner_tool(verb, "--owner-key", key, "--container", container, "--ek", ek, *extra, "--out", out)
        assert r.returncode == 0, r.stderr
        return out

    # Refused: another EK, another container, an edited statement, no statement at all.
    other_ek = "000b" + "11" * 32
    for bad, why in ((statement(keys["owner"], ek=other_ek), "another EK"),
                     (statement(keys["owner"], container=world.a.state("own")["uuid"]), "another container")):
        r = a.cli("vtpm", "owner", "mand", bad, check=False)
        assert r.returncode != 0 and why in r.stderr, r.stderr
    good = statement(keys["owner"])
    edited = tmp_path / "edited"
    edited.write_text(good.read_text().replace("kind mandatory", "kind discretionary"))
    r = a.cli("vtpm", "owner", "mand", edited, check=False)
    assert r.returncode != 0 and "does not verify" in r.stderr, r.stderr
    a.cli("vtpm", "owner", "mand", good)
    info = json.loads(a.cli("vtpm", "info", "--json", "mand").stdout)
    assert info["owner"]["kind"] == "mandatory"
    # Another key cannot take the record over.
    r = a.cli("vtpm", "owner", "mand", statement(keys["other"], kind="discretionary"), check=False)
    assert r.returncode != 0 and "mandatory owner" in r.stderr, r.stderr
    # The owner's reference values for its container: measure -> verify -> extend at every start.
    values = [f"{typ}={sha}" for _, typ, sha, _ in (x.split(" ", 3) for x in container_log(a, "mand").splitlines())]

    def refs(vals, key=keys["owner"]):
        out = tmp_path / f"refs-{time.monotonic_ns()}"
        r = owner_tool("refs", "--owner-key", key, "--container", uuid, "--ek", ek,
                       *[x for v in vals for x in ("--value", v)], "--out", out)
        assert r.returncode == 0, r.stderr
        return out
    r = a.cli("vtpm", "owner", "mand", refs(values, keys["other"]), check=False)
    assert r.returncode != 0 and "does not verify" in r.stderr, r.stderr
    a.cli("vtpm", "owner", "mand", refs(["container-config=" + "00" * 32]))
    a.cli("stop", "mand")
    r = start(a, "mand", check=False)
    assert r.returncode != 0
    assert "not one of the vTPM owner's reference values" in a.state("mand")["last_error"], a.state("mand")
    assert any(e.get("event") == "vtpm.refs" and e.get("result") == "fail" for e in a.audit_events())
    a.cli("vtpm", "owner", "mand", refs(values))
    start(a, "mand")
    a.cli("stop", "mand")
    # Without a release: reset, wipe and remove are refused, and the refusal is audited.
    for args in (("vtpm", "reset", "mand"), ("wipe", "mand"), ("remove", "mand")):
        r = a.cli(*args, check=False)
        assert r.returncode != 0 and "mandatory owner" in r.stderr, (args, r.stderr)
    assert any(e.get("event") == "vtpm.reset" and e.get("result") == "fail" for e in a.audit_events())
    # A release by another key, or for another EK: refused.
    for bad in (statement(keys["other"], verb="release"), statement(keys["owner"], ek=other_ek, verb="release")):
        r = a.cli("vtpm", "reset", "--release", bad, "mand", check=False)
        assert r.returncode != 0 and "release is refused" in r.stderr, r.stderr
    assert json.loads(a.cli("vtpm", "info", "--json", "mand").stdout)["eks"] != []
    # The owner's release: the vTPM is reset, and its owner record goes with it.
    a.cli("vtpm", "reset", "--release", statement(keys["owner"], verb="release"), "mand")
    info = json.loads(a.cli("vtpm", "info", "--json", "mand").stdout)
    assert info["eks"] == [] and "owner" not in info
    assert "owner:     none recorded" in a.cli("vtpm", "info", "mand").stdout


def test_owner_record_is_measured(world, tpm_rootfs, tmp_path):  # noqa: F811
    """The recorded owner statement is measured (vtpm-owner, SHA-256 of the statement) into the
    device's runtime PCR and the vTPM's own PCR at the next start: the attestation shows who owns
    the vTPM, and a changed record changes it, which trustme-verify and trustme-owner notice."""
    a = world.a
    create(a, "rec", tpm_rootfs)
    start(a, "rec")
    uuid = a.state("rec")["uuid"]
    ek = next(e["name"] for e in json.loads(a.cli("vtpm", "info", "--json", "rec").stdout)["eks"]
              if e["kind"] == "ecc")
    key = tmp_path / "owner.pem"
    subprocess.run([tool("openssl"), "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                    key], check=True, capture_output=True)

    def record(kind):
        out = tmp_path / f"stmt-{kind}"
        r = owner_tool("statement", "--owner-key", key, "--container", uuid, "--ek", ek, "--kind", kind,
                       "--out", out)
        assert r.returncode == 0, r.stderr
        a.cli("vtpm", "owner", "rec", out)
        a.cli("stop", "rec")
        start(a, "rec")
        return hashlib.sha256(out.read_bytes()).hexdigest()

    def owner_events():
        dev = [e["sha256"] for e in json.loads(a.cli("measurements", "--json").stdout)["events"]
               if e["type"] == "vtpm-owner" and e["name"] == f"{uuid}/owner"]
        mine = [ln.split(" ")[2] for ln in container_log(a, "rec").splitlines() if " vtpm-owner " in ln]
        return dev, mine

    assert owner_events() == ([], [])
    first = record("discretionary")
    assert owner_events() == ([first], [first])
    # trustme-pki rim approves exactly that statement, and requires it.
    rim = tmp_path / "rim.json"
    subprocess.run([PKI_TOOL, "rim", "--out", rim, "--version", "1", "--vtpm-owner",
                    f"{uuid}={tmp_path / 'stmt-discretionary'}"], check=True, capture_output=True)
    rim = json.loads(rim.read_text())
    assert {"type": "vtpm-owner", "name": f"{uuid}/owner", "sha256": first} in rim["values"], rim
    assert {"type": "vtpm-owner", "name": f"{uuid}/owner"} in rim["required"], rim
    # The stakeholder's values and the verifier's, as of this record.
    cvalues = []
    for ln in container_log(a, "rec").splitlines():
        _, typ, sha, name = ln.split(" ", 3)
        cvalues.append({"type": typ, "name": name, "sha256": sha})
    crefs = sign_refs(world.pki, tmp_path / "crefs.json", cvalues, [RUNTIME])
    m = json.loads(a.cli("measurements", "--json").stdout)
    refs = sign_refs(world.pki, tmp_path / "refs.json",
                     [{"type": e["type"], "name": e["name"], "sha256": e["sha256"]} for e in m["events"]],
                     [RUNTIME, 12])
    verify = [BUILD / "src/verify/trustme-verify", attest_address(a), *world.pki.trust, "--reference", refs]
    r = subprocess.run(verify, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    # The admin records another statement (the owner's key, now mandatory): both logs change.
    second = record("mandatory")
    assert second != first
    dev, mine = owner_events()
    assert dev == [first, second] and mine == [second]
    r = subprocess.run(verify, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and re.search(r"^reference values\s+FAIL .*vtpm-owner", r.stdout, re.M), r.stdout
    r, auth = take(world, "rec", refs=refs, crefs=crefs)
    assert r.returncode == 1 and line(r.stdout, "container reference values")[0] == "FAIL", r.stdout
    assert "vtpm-owner" in line(r.stdout, "container reference values")[1], r.stdout
    assert not auth.exists()
    a.cli("stop", "rec")
    rel = tmp_path / "release"
    r = owner_tool("release", "--owner-key", key, "--container", uuid, "--ek", ek, "--out", rel)
    assert r.returncode == 0, r.stderr
    a.cli("vtpm", "reset", "--release", rel, "rec")


# ---- trustme-fleet: a vTPM attested by the key its owner pinned ----------------------------------

FLEET = BUILD / "src/fleet/trustme-fleet"
FLEET_KEY = "0x81018000"


def plant_key(d, name):
    """The guest of an unowned vTPM (or anyone reaching it) puts a signing key of its own at the
    fleet key's handle: an attacker's stand-in for the owner's key."""
    d.sh(name, "cd /tmp && tpm2_createprimary -C e -G ecc256:ecdsa-sha256:null -a "
               "'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign' -c k.ctx >/dev/null && "
               f"tpm2_evictcontrol -C o -c k.ctx {FLEET_KEY} >/dev/null")


def test_fleet_attests_a_vtpm_by_its_owners_key(world, tpm_rootfs, tmp_path):  # noqa: F811
    """docs/FLEET.md "vTPM quotes": the owner keeps the key it activated at take-ownership for the
    fleet; trustme-fleet pins it with the vTPM's EK certificate, and its worker, after each
    trusted verdict of the device, checks the EK against the device's log and the PKI, fetches
    the vTPM's quote by that key through the device's relay and replays the container's log to
    it. A quote of another container or another device, and a replayed quote, are refused with
    the failing check's name; the status page shows the vTPM's verdict."""
    from pgcluster import Cluster, conninfo_env
    a, pki = world.a, world.pki
    # The device's vTPM issuer, so that the new container's vTPM gets EK certificates.
    a.cli("device", "csr", "--vtpm-issuer", "--out", tmp_path / "issuer.csr")
    subprocess.run([PKI_TOOL, "issue", "--pki", pki.dir, "--ca", "device", "--profile", "vtpm-issuer", "--csr",
                    tmp_path / "issuer.csr", "--out", tmp_path / "issuer.pem", "--passphrase-file", pki.passfile],
                   check=True, capture_output=True)
    a.cli("device", "cert", "install", tmp_path / "issuer.pem", "--chain", pki.dir / "customer/device-ca.pem")
    create(a, "fleetc", tpm_rootfs)
    start(a, "fleetc")
    uuid = a.state("fleetc")["uuid"]
    ek = next(e for e in json.loads(a.cli("vtpm", "info", "--json", "fleetc").stdout)["eks"] if e["kind"] == "ecc")
    chain = json.loads(a.cli("device", "info", "--json").stdout)["vtpm_issuer_chain_pem"]
    bundle = tmp_path / "ek-bundle.pem"
    bundle.write_text(ek["cert_pem"].strip() + "\n" + chain)
    cvalues = []
    for ln in container_log(a, "fleetc").splitlines():
        _, typ, sha, name = ln.split(" ", 3)
        cvalues.append({"type": typ, "name": name, "sha256": sha})
    crefs = sign_refs(pki, tmp_path / "crefs.json", cvalues, [RUNTIME])
    # Every event of the device approved (the new container's config, the vTPMs' EKs): the
    # owner's values and the fleet group's.
    m = json.loads(a.cli("measurements", "--json").stdout)
    refs = sign_refs(pki, tmp_path / "refs.json",
                     [{"type": e["type"], "name": e["name"], "sha256": e["sha256"]} for e in m["events"]],
                     [RUNTIME, 12])
    # The owner: take-ownership, keeping the activated key for the fleet.
    key = tmp_path / "fleet-key.json"
    r = subprocess.run([OWNER, "take", attest_address(a), "--container", uuid, *pki.trust, "--reference", refs,
                        "--container-reference", crefs, "--auth-out", tmp_path / "auth.json", "--fleet-key", key],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert line(r.stdout, "fleet key")[0] == "ok", r.stdout
    assert json.loads(key.read_text())["handle"] == 0x81018000
    info = tmp_path / "info.json"
    info.write_text(a.cli("device", "info", "--json").stdout)
    mitm = Mitm(attest_address(a))
    pg = Cluster(prefix=f"{TEST_PREFIX}-pg-own-").start()
    try:
        env = conninfo_env(pg.create_db("fleet_own"))

        def fleet(*args, check=True):
            r = subprocess.run([FLEET, *map(str, args)], capture_output=True, text=True, timeout=60, env=env)
            assert not check or r.returncode == 0, f"trustme-fleet {args} -> {r.returncode}\n{r.stderr}"
            return r

        def attest():
            """One worker pass with device A due: the vTPM's verdict (trusted, failing check, detail)."""
            pg.psql("UPDATE work SET due_at = now()", db="fleet_own")
            fleet("worker", "--name", "w", "--once")
            v = next(x for x in json.loads(fleet("vtpms").stdout) if x["ek"] == f"{uuid}/ek-ecc")
            return v["quote_trusted"], v["quote_failed"], (v["quote_report"] or {}).get("detail")

        fleet("migrate")
        fleet("trust", "--ak-anchor", pki.dir / "customer/general-root-ca.pem", "--device-ca",
              pki.dir / "customer/device-ca.pem", "--rim-anchor", pki.dir / "software-signing/root-ca.pem",
              "--rim-ca", pki.dir / "software-signing/sub-ca.pem", "--no-crl")
        fleet("group", "g", "--reference", refs, "--interval", "60")
        fleet("enroll", "a", "--group", "g", "--info", info, "--address", mitm.address)
        fleet("vtpm-enroll", "a", f"{uuid}/ek-ecc", ek["name"])
        # Bad input: a key for another container, a key file that is not one, no EK certificate.
        other = json.loads(key.read_text())
        other["container"] = world.a.state("pristine")["uuid"]
        (tmp_path / "other.json").write_text(json.dumps(other))
        r = fleet("vtpm-key", "a", f"{uuid}/ek-ecc", "--key", tmp_path / "other.json", "--ek-cert", bundle,
                  check=False)
        assert r.returncode != 0 and "not " in r.stderr and uuid in r.stderr, r.stderr
        r = fleet("vtpm-key", "a", f"{uuid}/ek-ecc", "--key", bundle, "--ek-cert", bundle, check=False)
        assert r.returncode != 0 and "key" in r.stderr, r.stderr
        r = fleet("vtpm-key", "a", f"{uuid}/ek-ecc", "--key", key, "--ek-cert", key, check=False)
        assert r.returncode != 0 and "ek_cert_pem" in r.stderr, r.stderr
        fleet("vtpm-key", "a", f"{uuid}/ek-ecc", "--key", key, "--ek-cert", bundle)
        # Enrolled and attested: the device's trusted log names the EK, the certificate chains,
        # the quote by the pinned key is fresh and the container's log replays to it.
        n0 = mitm.n
        assert attest() == (True, None, "ok")
        assert mitm.n - n0 == 3  # the device's quote, then through the relay: the log, the vTPM's quote
        good_quote = mitm.recorded[-1]
        # Another container of this device answers (a key at the same handle, not the pinned one).
        plant_key(a, "pristine")
        mitm.redirect = (attest_address(a), a.state("pristine")["uuid"])
        trusted, failed, detail = attest()
        assert (trusted, failed) == (False, "vTPM quote"), detail
        assert "signer is not" in detail
        # Another device's vTPM (B's container, a key of its own there).
        plant_key(world.b, "elsewhere")
        mitm.redirect = (attest_address(world.b), world.b.state("elsewhere")["uuid"])
        trusted, failed, detail = attest()
        assert (trusted, failed) == (False, "vTPM quote"), detail
        # The genuine vTPM's earlier quote, replayed: not over this attestation's nonce.
        mitm.redirect = None
        mitm.replay = {mitm.n + 2: good_quote}
        trusted, failed, detail = attest()
        assert (trusted, failed) == (False, "vTPM quote") and "nonce" in detail, detail
        mitm.replay = {}
        assert attest() == (True, None, "ok")
        # An EK certificate of another vTPM (pristine has none: this device's issuer came later;
        # B's container is another device's): pinned with the wrong bundle, the EK check fails.
        wrong = tmp_path / "wrong.pem"
        wrong.write_text(chain)
        fleet("vtpm-key", "a", f"{uuid}/ek-ecc", "--key", key, "--ek-cert", wrong)
        trusted, failed, detail = attest()
        assert (trusted, failed) == (False, "vTPM EK"), detail
        fleet("vtpm-key", "a", f"{uuid}/ek-ecc", "--key", key, "--ek-cert", bundle)
        assert attest() == (True, None, "ok")
        # The status page shows it.
        srv = subprocess.Popen([FLEET, "serve", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            url = "http://" + srv.stdout.readline().split()[-1]
            import urllib.request
            page = urllib.request.urlopen(url + "/", timeout=30).read().decode()
            row = re.search(r'<table id="vtpms">.*?</table>', page, re.S).group(0)
            assert f"{uuid}/ek-ecc" in row and '<tr class="trusted">' in row, row
        finally:
            srv.terminate()
            srv.wait(timeout=30)
    finally:
        mitm.close()
        pg.stop()
