# SPDX-License-Identifier: GPL-2.0-or-later
"""Per-container vTPMs (docs/VTPM.md) with libtpms in trustme-vtpm and the real tpm2-tools inside
a container whose root holds Debian's tpm2 binary and its libraries: the guest's TPM works, is
measured, keeps its keys, is encrypted and anchored against rollback and copies, and its control
channel refuses what a guest must not do."""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD, PROBE, REPO, TRUSTME, wait_for
from tools import argv, library, tool

KDF = ["--scd-kdf-n", "1024"]
MARKER = b"TRUSTME-VTPM-MARKER-5c1e"
PIN, PUK = "7391", "12345678"


def _copy_with_libs(root, binaries):
    """Copy binaries and every library ldd names (same paths) into root."""
    for b in binaries:
        out = subprocess.run(argv("ldd", b), capture_output=True, text=True, check=True).stdout
        paths = re.findall(r"(/\S+) \(0x", out)
        for p in [b, *paths]:
            dst = root / p.lstrip("/")
            if p.startswith("/lib/") or p.startswith("/usr/lib/"):
                dst = root / "lib/x86_64-linux-gnu" / Path(p).name
            if p.startswith("/lib64/"):
                dst = root / p.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                shutil.copy2(os.path.realpath(p), dst)


@pytest.fixture(scope="module")
def tpm_rootfs(test_root):
    """A busybox guest with tpm2-tools (Debian's /usr/bin/tpm2) and the swtpm TCTI."""
    path = test_root / "rootfs-tpm"
    subprocess.run([str(REPO / "scripts/mkrootfs.sh"), str(path), str(PROBE)], check=True)
    tpm2 = tool("tpm2")
    tcti = "/usr/lib/x86_64-linux-gnu/libtss2-tcti-swtpm.so.0"
    _copy_with_libs(path, [tpm2, tcti])
    (path / "usr/bin/tpm2").unlink(missing_ok=True)
    shutil.copy2(tpm2, path / "usr/bin/tpm2")
    for name in ("getrandom", "createprimary", "create", "load", "sign", "quote", "checkquote", "pcrread",
                 "readpublic", "evictcontrol", "nvdefine", "nvwrite", "nvread", "getcap", "flushcontext", "clear",
                 "createek"):
        link = path / f"usr/bin/tpm2_{name}"
        if not link.exists():
            link.symlink_to("tpm2")
    return path


@pytest.fixture
def vd(make_daemon):
    return make_daemon(extra_args=KDF)


ENV = {"LD_LIBRARY_PATH": "/lib/x86_64-linux-gnu"}


def create(d, name, rootfs, **kw):
    cfg = dict(rootfs={"path": str(rootfs)}, token={"type": "soft"}, vtpm=True, env=ENV,
               init="/bin/sh", args=["-c", "trap 'exit 0' TERM; sleep 1000000 & wait"])
    cfg.update(kw)
    d.create(name, **cfg)
    if cfg.get("token") != "none":
        d.cli("change-pin", "--pin-file", pin_file(d, PIN, PUK), name)
    return name


def pin_file(d, *lines):
    path = d.base / f"pins-{time.monotonic_ns()}"
    path.write_text("".join(f"{line}\n" for line in lines))
    path.chmod(0o600)
    return path


def start(d, name, check=True):
    r = d.cli("start", "--pin-file", pin_file(d, PIN), name, check=False)
    assert not check or r.returncode == 0, f"{r.stderr}\n{d.log()[-3000:]}"
    return r


def state_file(d, name):
    uuid = d.state(name)["uuid"]
    return d.data_dir / "containers" / uuid / "vtpm" / "tpm2.state"


def pub_dir(d, name):
    return d.run_dir / "vtpm" / d.state(name)["uuid"] / "pub"


SCHED_IDLE = 5


def vtpm_processes(d, name):
    """This container's trustme-vtpm processes, pid -> its scheduling policy (/proc/PID/stat)."""
    pub = d.state(name)["uuid"].encode()
    out = {}
    for e in Path("/proc").iterdir():
        if not e.name.isdigit():
            continue
        try:
            cmd = (e / "cmdline").read_bytes()
            if cmd.startswith(b"trustme-vtpm\0") and pub in cmd:
                out[int(e.name)] = int((e / "stat").read_text().rsplit(")", 1)[1].split()[38])
        except (OSError, IndexError, ValueError):
            continue
    return out


def vtpm_pid(d, name):
    """This container's trustme-vtpm (its TPM, libtpms, runs in it), by its command line; not its
    standby (docs/VTPM.md "The standby": the next start's, waiting at SCHED_IDLE for its key)."""
    return next((pid for pid, policy in vtpm_processes(d, name).items() if policy != SCHED_IDLE), None)


def standby_pid(d, name):
    """The standby trustme-vtpm waiting for the next start of name, as /proc shows it."""
    return next((pid for pid, policy in vtpm_processes(d, name).items() if policy == SCHED_IDLE), None)


def replay(log_text, pcr):
    """The PCR value the event log claims: tm_event_digest per line, folded by extends."""
    value = bytes(32)
    for line in log_text.splitlines():
        p, typ, sha, name = line.split(" ", 3)
        if int(p) != pcr:
            continue
        t, n = typ.encode(), name.encode()
        digest = hashlib.sha256(b"trustme-event-v1" + struct.pack(">I", pcr) + struct.pack(">H", len(t)) + t +
                                struct.pack(">H", len(n)) + n + bytes.fromhex(sha)).digest()
        value = hashlib.sha256(value + digest).digest()
    return value


def test_guest_uses_its_vtpm(vd, tpm_rootfs):
    d = vd
    create(d, "t1", tpm_rootfs)
    start(d, "t1")
    # The environment points every tpm2-tss user at /run/tpm.
    env = d.sh("t1", "env").stdout
    for var in ("TPM2TOOLS_TCTI", "TPM2OPENSSL_TCTI", "TPM2_PKCS11_TCTI"):
        assert f"{var}=swtpm:path=/run/tpm/tpm.sock" in env
    assert len(d.sh("t1", "tpm2_getrandom --hex 16").stdout.strip()) == 32
    # A key of its own signs.
    d.sh("t1", "cd /tmp && tpm2_createprimary -C o -c p.ctx >/dev/null && "
               "tpm2_create -C p.ctx -G ecc -u k.pub -r k.priv >/dev/null && "
               "tpm2_load -C p.ctx -u k.pub -r k.priv -c k.ctx >/dev/null && echo hi > m && "
               "tpm2_sign -c k.ctx -g sha256 -o sig m")
    # A quote over the measured PCR replays the event log it can read.
    log = d.sh("t1", "cat /run/tpm/event.log").stdout
    assert "container-config" in log
    pcr = int(log.split()[0])
    d.sh("t1", f"cd /tmp && tpm2_create -C p.ctx -G ecc:ecdsa-sha256:null -a "
               f"'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign' "
               f"-u ak.pub -r ak.priv >/dev/null && tpm2_load -C p.ctx -u ak.pub -r ak.priv -c ak.ctx >/dev/null && "
               f"tpm2_readpublic -c ak.ctx -f pem -o ak.pem >/dev/null && "
               f"tpm2_quote -c ak.ctx -l sha256:{pcr} -q 0badc0de -m q.msg -s q.sig -o q.pcrs -g sha256 >/dev/null && "
               f"tpm2_checkquote -u ak.pem -m q.msg -s q.sig -f q.pcrs -g sha256 -q 0badc0de")
    out = d.sh("t1", f"tpm2_pcrread sha256:{pcr}").stdout
    value = bytes.fromhex(re.search(r"0x([0-9A-F]{64})", out).group(1))
    assert value == replay(log, pcr)
    assert value != bytes(32)
    # The platform hierarchy (its auth is empty in a fresh swtpm) is off for the guest.
    r = d.sh("t1", "tpm2_clear -c p", check=False)
    assert r.returncode != 0 and "hierarchy" in r.stderr
    # Nothing of the client processes stays loaded in the vTPM.
    assert d.sh("t1", "tpm2_getcap handles-transient").stdout.strip() == ""
    # The guest sees its sockets and log, read-only, and nothing of the host's TPM.
    assert sorted(d.sh("t1", "ls /run/tpm").stdout.split()) == ["event.log", "tpm.sock", "tpm.sock.ctrl"]
    assert d.sh("t1", "touch /run/tpm/x", check=False).returncode != 0
    assert d.sh("t1", f"ls {d.base}", check=False).returncode != 0


def test_openssl_tpm2_provider_signs_with_a_vtpm_key(vd, tpm_rootfs):
    """Debian's openssl with the tpm2 provider (tpm2-openssl) inside the container: the key is
    made in the container's vTPM (TPM2OPENSSL_TCTI is set for every session), signs there, and
    the signature verifies outside with OpenSSL alone."""
    # openssl, the provider and what they link, beside tpm2-tools' libraries in the guest's root.
    _copy_with_libs(tpm_rootfs, [tool("openssl"), library("/usr/lib/x86_64-linux-gnu/ossl-modules/tpm2.so")])
    d = vd
    create(d, "o", tpm_rootfs)
    start(d, "o")
    prov = "-provider tpm2 -provider base"
    d.sh("o", f"export OPENSSL_MODULES=/lib/x86_64-linux-gnu && cd /tmp && "
              f"openssl genpkey {prov} -algorithm EC -pkeyopt group:P-256 -out key.pem && "
              f"openssl pkey {prov} -in key.pem -pubout -out pub.pem && echo 'signed in the vTPM' > m && "
              f"openssl pkeyutl {prov} -sign -inkey key.pem -rawin -digest sha256 -in m -out sig")
    key = d.sh("o", "cat /tmp/key.pem").stdout
    # A TPM-wrapped key: its private part is no OpenSSL key outside the vTPM.
    assert key.startswith("-----BEGIN TSS2 PRIVATE KEY-----"), key
    assert "PRIVATE KEY-----" in key and "BEGIN EC PRIVATE KEY" not in key
    out = d.base / "ossl"
    out.mkdir()
    (out / "pub.pem").write_text(d.sh("o", "cat /tmp/pub.pem").stdout)
    (out / "sig").write_bytes(bytes.fromhex("".join(d.sh("o", "od -An -v -tx1 /tmp/sig").stdout.split())))
    (out / "m").write_text("signed in the vTPM\n")
    ok = subprocess.run(argv("openssl", "dgst", "-sha256", "-verify", out / "pub.pem", "-signature", out / "sig",
                             out / "m"), capture_output=True, text=True)
    assert ok.returncode == 0 and "Verified OK" in ok.stdout, ok.stdout + ok.stderr
    (out / "m").write_text("not what was signed\n")
    assert subprocess.run(argv("openssl", "dgst", "-sha256", "-verify", out / "pub.pem", "-signature",
                               out / "sig", out / "m"), capture_output=True).returncode == 1
    # The key lives in this vTPM only: with the vTPM's sockets gone (the container stopped), the
    # provider cannot load it.
    key_file = out / "key.pem"
    key_file.write_text(key)
    d.cli("stop", "o")
    r = subprocess.run(argv("openssl", "pkeyutl", "-provider", "tpm2", "-provider", "base", "-sign", "-inkey",
                            key_file, "-rawin", "-digest", "sha256", "-in", out / "m", "-out", out / "sig2"),
                       capture_output=True, text=True,
                       env=dict(os.environ, TPM2OPENSSL_TCTI=f"swtpm:path={pub_dir(d, 'o')}/tpm.sock"))
    assert r.returncode != 0 and not (out / "sig2").exists()


def _child(d, name):
    """trustmed's child process of that name (argv[0])."""
    for e in Path("/proc").iterdir():
        try:
            if e.name.isdigit() and (e / "cmdline").read_bytes().split(b"\0")[0] == name.encode() and \
                    int((e / "stat").read_text().rsplit(")", 1)[1].split()[1]) == d.proc.pid:
                return int(e.name)
        except (OSError, IndexError, ValueError):
            pass
    return None


def _event_digest(pcr, typ, name, sha):
    t, n = typ.encode(), name.encode()
    return hashlib.sha256(b"trustme-event-v1" + struct.pack(">I", pcr) + struct.pack(">H", len(t)) + t +
                          struct.pack(">H", len(n)) + n + bytes.fromhex(sha)).digest()


def _attest_with_and_without_eks(d, tmp_path, uuid, eks, m):
    pki_tool = BUILD / "src/tools/pki/trustme-pki"
    passfile = tmp_path / "pass"
    passfile.write_text("vtpm test passphrase\n")
    passfile.chmod(0o600)
    pki = tmp_path / "pki"
    subprocess.run([pki_tool, "init", pki, "--passphrase-file", passfile], check=True, capture_output=True)
    rim = tmp_path / "rim.json"
    subprocess.run([pki_tool, "rim", "--out", rim, "--version", "1",
                    "--vtpm-ek", f"{uuid}/ek-rsa={eks['rsa']['name']}",
                    "--vtpm-ek", f"{uuid}/ek-ecc={eks['ecc']['name'][4:]}"], check=True, capture_output=True)
    ek_values = json.loads(rim.read_text())["values"]
    assert sorted((v["type"], v["name"], v["sha256"]) for v in ek_values) == sorted(
        ("vtpm-ek", f"{uuid}/ek-{k}", eks[k]["name"][4:]) for k in ("rsa", "ecc"))
    bad = subprocess.run([pki_tool, "rim", "--out", tmp_path / "bad.json", "--version", "1",
                          "--vtpm-ek", f"{uuid}/ek-rsa=000b12"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--vtpm-ek" in bad.stderr
    others = [{"type": e["type"], "name": e["name"], "sha256": e["sha256"]} for e in m["events"]
              if e["type"] != "vtpm-ek"]
    now = time.time()
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    anchors = ["--ak-anchor", pki / "customer/general-root-ca.pem", "--device-ca", pki / "customer/device-ca.pem",
               "--rim-anchor", pki / "software-signing/root-ca.pem", "--rim-ca", pki / "software-signing/sub-ca.pem",
               "--no-crl"]
    results = {}
    for label, values in (("with", others + ek_values), ("without", others)):
        refs = tmp_path / f"refs-{label}.json"
        refs.write_text(json.dumps({
            "format": "trustme-reference-values", "version": 2, "rim_version": 1,
            "not_before": stamp(now - 60), "not_after": stamp(now + 86400), "pcrs": [11, 12],
            "required": [], "values": values}))
        subprocess.run([pki_tool, "sign", refs, "--pki", pki, "--signer", "software", "--passphrase-file",
                        passfile], check=True, capture_output=True)
        rep = json.loads(d.cli("attest", *anchors, "--reference", refs, "--json", check=False).stdout)
        results[label] = {c["name"]: c for c in rep["checks"]}
    assert results["with"]["event log"]["ok"] is True
    assert results["with"]["reference values"]["ok"] is True, results["with"]["reference values"]
    assert results["without"]["reference values"]["ok"] is False
    assert f"vtpm-ek {uuid}/ek-" in results["without"]["reference values"]["detail"]


def test_eks_are_manufactured_and_measured_into_the_device(vd, tpm_rootfs, tmp_path):
    """At its first start the vTPM gets its EKs (TCG default templates, persistent at the TCG
    handles) and their names go into the physical runtime PCR: the device's log and quote name the
    vTPMs it hosts, and what the guest finds is that key."""
    d = vd
    create(d, "e", tpm_rootfs)
    info = json.loads(d.cli("vtpm", "info", "--json", "e").stdout)
    assert info["eks"] == []
    assert "EKs:       none yet" in d.cli("vtpm", "info", "e").stdout
    start(d, "e")
    uuid = d.state("e")["uuid"]
    info = json.loads(d.cli("vtpm", "info", "--json", "e").stdout)
    eks = {e["kind"]: e for e in info["eks"]}
    assert sorted(eks) == ["ecc", "rsa"]
    assert eks["rsa"]["handle"] == 0x81010001 and eks["ecc"]["handle"] == 0x81010002
    text = d.cli("vtpm", "info", "e").stdout
    assert f"EK rsa:    0x81010001 name {eks['rsa']['name']}" in text
    assert f"EK ecc:    0x81010002 name {eks['ecc']['name']}" in text
    for kind, handle, alg in (("rsa", "0x81010001", "rsa"), ("ecc", "0x81010002", "ecc")):
        # The persistent key is the one any tool recreates from the TCG template.
        out = d.sh("e", f"tpm2_readpublic -c {handle}").stdout
        assert re.search(r"^name: (\w+)", out, re.M).group(1) == eks[kind]["name"]
        assert "fixedtpm|fixedparent|sensitivedataorigin|adminwithpolicy|restricted|decrypt" in out
        out = d.sh("e", f"cd /tmp && tpm2_createek -c ek-{kind}.ctx -G {alg} -u ek-{kind}.pub >/dev/null && "
                        f"tpm2_readpublic -c ek-{kind}.ctx").stdout
        assert re.search(r"^name: (\w+)", out, re.M).group(1) == eks[kind]["name"]
    # Deep attestation: each EK is an event of the device's runtime PCR, and the log replays.
    m = json.loads(d.cli("measurements", "--json").stdout)
    ev = {e["name"]: e for e in m["events"] if e["type"] == "vtpm-ek"}
    assert sorted(ev) == [f"{uuid}/ek-ecc", f"{uuid}/ek-rsa"]
    for kind in ("rsa", "ecc"):
        assert ev[f"{uuid}/ek-{kind}"]["sha256"] == eks[kind]["name"][4:]
    pcr = ev[f"{uuid}/ek-rsa"]["pcr"]
    value = bytes(32)
    for e in m["events"]:
        if e["pcr"] == pcr:
            value = hashlib.sha256(value + _event_digest(pcr, e["type"], e["name"], e["sha256"])).digest()
    assert {p["index"]: p["sha256"] for p in m["pcrs"]}[pcr] == value.hex()
    assert m["consistent"] is True
    # A reset of the physical TPM (its swtpm and tpmd killed): trustmed measures what runs again,
    # the vTPM's EKs included, before tpmd answers quotes.
    swtpm = int((d.run_dir / "tpm/swtpm.pid").read_text())
    tpmd = _child(d, "trustme-tpmd")
    os.kill(swtpm, signal.SIGKILL)
    os.kill(tpmd, signal.SIGKILL)

    def remeasured():
        r = d.cli("measurements", "--json", check=False)
        if r.returncode != 0 or int((d.run_dir / "tpm/swtpm.pid").read_text()) == swtpm:
            return None
        got = json.loads(r.stdout)
        return got if {e["name"] for e in got["events"] if e["type"] == "vtpm-ek"} == set(ev) else None
    m = wait_for(remeasured, timeout=30, what="the vTPM's EKs measured again")
    assert m["consistent"] is True
    # A verifier approves this vTPM by its EK names (trustme-pki rim --vtpm-ek): with them among
    # its reference values the quoted runtime PCR passes; without them the unknown vTPM is named.
    _attest_with_and_without_eks(d, tmp_path, uuid, eks, m)
    # The guest cannot replace them (platform hierarchy off; it owns the owner hierarchy, but the
    # device's record is what a start measures): a stop and a start measure the same keys again.
    d.sh("e", "tpm2_evictcontrol -C o -c 0x81010001 >/dev/null")
    d.cli("stop", "e")
    wait_for(lambda: not vtpm_pid(d, "e"), what="the vTPM to stop")
    start(d, "e")
    again = json.loads(d.cli("vtpm", "info", "--json", "e").stdout)
    assert again["eks"] == info["eks"]
    # A reset makes a new vTPM with new EKs, measured too.
    d.cli("stop", "e")
    wait_for(lambda: not vtpm_pid(d, "e"), what="the vTPM to stop")
    d.cli("vtpm", "reset", "e")
    assert json.loads(d.cli("vtpm", "info", "--json", "e").stdout)["eks"] == []
    start(d, "e")
    fresh = {e["kind"]: e["name"] for e in json.loads(d.cli("vtpm", "info", "--json", "e").stdout)["eks"]}
    assert fresh["rsa"] != eks["rsa"]["name"] and fresh["ecc"] != eks["ecc"]["name"]
    m = json.loads(d.cli("measurements", "--json").stdout)
    assert fresh["ecc"][4:] in {e["sha256"] for e in m["events"] if e["type"] == "vtpm-ek"}
    d.cli("stop", "e")


def test_state_survives_is_encrypted_and_anchored(vd, tpm_rootfs):
    d = vd
    create(d, "k", tpm_rootfs)
    create(d, "other", tpm_rootfs)
    start(d, "k")
    d.sh("k", "cd /tmp && tpm2_createprimary -C o -c p.ctx >/dev/null && "
              "tpm2_evictcontrol -C o -c p.ctx 0x81000001 >/dev/null && "
              f"printf '{MARKER.decode()}' > m && tpm2_nvdefine 0x1500016 -C o -s {len(MARKER)} -a "
              "'ownerread|ownerwrite|authread|authwrite' >/dev/null && tpm2_nvwrite 0x1500016 -C o -i m")
    name1 = re.search(r"name: (\w+)", d.sh("k", "tpm2_readpublic -c 0x81000001").stdout).group(1)
    d.cli("stop", "k")
    sf = state_file(d, "k")
    wait_for(lambda: not vtpm_pid(d, "k"), what="the vTPM to stop")
    data = sf.read_bytes()
    assert MARKER not in data and len(data) > 1000
    old = data
    # Keys and NV survive a stop and a start.
    start(d, "k")
    name2 = re.search(r"name: (\w+)", d.sh("k", "tpm2_readpublic -c 0x81000001").stdout).group(1)
    assert name1 == name2
    assert MARKER in d.run("k", "tpm2_nvread", "0x1500016", "-C", "o").stdout.encode()
    d.sh("k", "tpm2_nvwrite 0x1500016 -C o -i /dev/zero -s 4 2>/dev/null || "
              "(head -c 4 /dev/zero > /tmp/z; tpm2_nvwrite 0x1500016 -C o -i /tmp/z)")
    d.cli("stop", "k")
    wait_for(lambda: not vtpm_pid(d, "k"), what="the vTPM to stop")
    assert sf.read_bytes() != old
    # An older copy restored: refused, with the reason in state and audit.
    newest = sf.read_bytes()
    sf.write_bytes(old)
    r = start(d, "k", check=False)
    assert r.returncode != 0
    assert "vTPM refuses to start" in d.state("k")["last_error"]
    assert any(e.get("event") == "vtpm.rollback" for e in d.audit_events())
    # Another container's state copied in: refused too.
    start(d, "other")
    d.sh("other", "tpm2_getrandom 4 >/dev/null")
    d.cli("stop", "other")
    wait_for(lambda: not vtpm_pid(d, "other"), what="the vTPM to stop")
    sf.write_bytes(state_file(d, "other").read_bytes())
    assert start(d, "k", check=False).returncode != 0
    assert "not the one anchored" in d.state("k")["last_error"]
    info = json.loads(d.cli("vtpm", "info", "--json", "k").stdout)
    assert info["enabled"] and not info["running"] and not info["anchor_matches"]
    assert info["state_sha256"] == hashlib.sha256(sf.read_bytes()).hexdigest()
    assert info["anchored_sha256"] == hashlib.sha256(newest).hexdigest()
    # The right state back: it starts again.
    sf.write_bytes(newest)
    start(d, "k")
    assert d.sh("k", "tpm2_readpublic -c 0x81000001 >/dev/null; echo ok").stdout.strip() == "ok"
    info = json.loads(d.cli("vtpm", "info", "--json", "k").stdout)
    assert info["running"] and info["pid"] == vtpm_pid(d, "k")
    assert d.cli("vtpm", "reset", "k", check=False).returncode != 0  # running
    d.cli("stop", "k")
    wait_for(lambda: not vtpm_pid(d, "k"), what="the vTPM to stop")
    assert json.loads(d.cli("vtpm", "info", "--json", "k").stdout)["anchor_matches"]
    # A reset: a new, empty vTPM at the next start.
    d.cli("vtpm", "reset", "k")
    assert not sf.exists()
    assert any(e.get("event") == "vtpm.reset" and e.get("result") == "ok" for e in d.audit_events())
    start(d, "k")
    assert d.sh("k", "tpm2_readpublic -c 0x81000001", check=False).returncode != 0
    d.cli("stop", "k")


def _ctrl(path, cmd, payload=b""):
    dfd = os.open(path.parent, os.O_PATH)  # the absolute path is longer than a socket address
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(f"/proc/self/fd/{dfd}/{path.name}")
        s.sendall(struct.pack(">I", cmd) + payload)
        r = s.recv(4096)
    os.close(dfd)
    return r


def test_control_channel_and_crash(vd, tpm_rootfs):
    d = vd
    create(d, "c", tpm_rootfs)
    start(d, "c")
    d.sh("c", "cd /tmp && tpm2_createprimary -C o -c p.ctx >/dev/null && "
              "tpm2_evictcontrol -C o -c p.ctx 0x81000002 >/dev/null")
    ctrl = pub_dir(d, "c") / "tpm.sock.ctrl"
    # The guest's control socket (this very socket is /run/tpm/tpm.sock.ctrl inside).
    assert _ctrl(ctrl, 1)[:4] == bytes(4)  # capabilities: allowed
    assert _ctrl(ctrl, 5, b"\0")[:4] == bytes(4)  # locality 0
    for cmd, payload in ((2, struct.pack(">I", 0)), (3, b""), (12, struct.pack(">III", 0, 1, 0)),
                         (13, struct.pack(">IIII", 0, 1, 0, 0)), (14, b""), (5, b"\x04")):
        assert _ctrl(ctrl, cmd, payload)[:4] == struct.pack(">I", 0x0A), cmd
    assert "refused a control command" in d.log()
    # Still the same TPM: PCRs not reset, the key there.
    d.sh("c", "tpm2_readpublic -c 0x81000002 >/dev/null")
    log = d.sh("c", "cat /run/tpm/event.log").stdout
    pcr = int(log.split()[0])
    out = d.sh("c", f"tpm2_pcrread sha256:{pcr}").stdout
    assert bytes.fromhex(re.search(r"0x([0-9A-F]{64})", out).group(1)) == replay(log, pcr)
    # kill -9 of the vTPM while a client uses it: it comes back, measured and with its keys.
    helper = vtpm_pid(d, "c")
    assert helper
    # One process: libtpms runs in trustme-vtpm, nothing of the vTPM is a child of it.
    assert not (Path(f"/proc/{helper}/task/{helper}/children").read_text().split())
    busy = subprocess.Popen([str(TRUSTME), "--run-dir", str(d.run_dir),
                             "run", "c", "--", "/bin/sh", "-c",
                             # until told to stop: a kill between two commands fails neither, and
                             # the loop that ran until a command failed could run for ever
                             "while [ ! -e /tmp/busy.stop ]; do tpm2_getrandom 8 >/dev/null 2>&1; done"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    os.kill(helper, signal.SIGKILL)
    wait_for(lambda: vtpm_pid(d, "c") not in (None, helper), timeout=15, what="the vTPM to come back")
    d.sh("c", "touch /tmp/busy.stop")
    assert busy.wait(30) == 0
    wait_for(lambda: d.sh("c", "tpm2_getrandom 4 >/dev/null", check=False).returncode == 0, timeout=10,
             what="the vTPM to answer")
    d.sh("c", "tpm2_readpublic -c 0x81000002 >/dev/null")
    out = d.sh("c", f"tpm2_pcrread sha256:{pcr}").stdout
    assert bytes.fromhex(re.search(r"0x([0-9A-F]{64})", out).group(1)) == replay(log, pcr)
    assert any(e.get("event") == "vtpm.restart" and e.get("result") == "ok" for e in d.audit_events())
    # The vTPM runs as its own uid, without capabilities.
    helper = vtpm_pid(d, "c")
    status = Path(f"/proc/{helper}/status").read_text()
    uid = int(re.search(r"Uid:\s+(\d+)", status).group(1))
    assert uid not in (0,) and uid < d.id_base
    assert re.search(r"CapEff:\s+0+\n", status) and re.search(r"NoNewPrivs:\s+1", status)
    assert re.search(r"Seccomp:\s+2", status)
    d.cli("stop", "c")
    wait_for(lambda: not vtpm_pid(d, "c"), what="the vTPM to stop")
    # ...and its state after the crash is anchored: it starts again.
    start(d, "c")
    d.sh("c", "tpm2_readpublic -c 0x81000002 >/dev/null")
    d.cli("stop", "c")
    wait_for(lambda: not vtpm_pid(d, "c"), what="the vTPM to stop")
    # Removed: its vTPM directories and its anchor go too.
    rundir = pub_dir(d, "c").parent
    assert rundir.exists()
    d.cli("remove", "c")
    wait_for(lambda: not rundir.exists(), what="the vTPM's run directory to go")


def test_init_starts_with_its_vtpm_measured_and_serving(vd, tpm_rootfs):
    """The vTPM starts alongside the setup process; init's exec waits for it. init's very first
    command therefore finds the sockets answering and the PCR already extended with the event log
    (started without that wait, it would find no socket or an unextended PCR)."""
    d = vd
    first = ("tpm2_pcrread sha256:11 > /tmp/first 2>&1; echo rc=$? >> /tmp/first; "
             "trap 'exit 0' TERM; sleep 1000000 & wait")
    for i in range(3):
        name = create(d, f"tf{i}", tpm_rootfs, args=["-c", first])
        start(d, name)
        out = wait_for(lambda: (t := d.sh(name, "cat /tmp/first", check=False).stdout) and "rc=" in t and t,
                       timeout=30)
        assert "rc=0" in out, out
        log = d.sh(name, "cat /run/tpm/event.log").stdout
        assert int(log.split()[0]) == 11
        value = bytes.fromhex(re.search(r"0x([0-9A-F]{64})", out).group(1))
        assert value == replay(log, 11) and value != bytes(32)
        d.cli("stop", name)


def test_vtpm_config_rules(vd, tpm_rootfs):
    d = vd
    # Without a token there is no key to encrypt its state with: refused at start.
    d.create("nt", rootfs={"path": str(tpm_rootfs)}, vtpm=True)
    r = start(d, "nt", check=False)
    assert r.returncode != 0 and "token" in d.state("nt")["last_error"]
    # Off by default: no /run/tpm, no TCTI variables.
    create(d, "plain", tpm_rootfs, vtpm=False)
    start(d, "plain")
    assert d.sh("plain", "ls /run/tpm", check=False).returncode != 0
    assert "TPM2TOOLS_TCTI" not in d.sh("plain", "env").stdout
    d.cli("stop", "plain")


def test_half_commands_do_not_lock_the_vtpm(vd, tpm_rootfs):
    """Any process of the container (the sockets are 0666 inside) takes the proxy's 16 client
    slots, each holding 4 bytes of a TPM command header, and its 16 control slots, idle. The
    container's other processes still reach their vTPM: a new client takes the slot of the one
    answered longest ago (before: it saw EOF for as long as the slots were held)."""
    d = vd
    create(d, "h", tpm_rootfs)
    start(d, "h")
    d.sh("h", "tpm2_getrandom 4 >/dev/null")
    sock = pub_dir(d, "h") / "tpm.sock"  # this very socket is /run/tpm/tpm.sock inside
    dfd = os.open(sock.parent, os.O_PATH)
    held = []
    try:
        for name, first in (("tpm.sock", b"\x80\x01\x00\x00"), ("tpm.sock.ctrl", b"")):
            for _ in range(16):
                s = socket.socket(socket.AF_UNIX)
                s.connect(f"/proc/self/fd/{dfd}/{name}")
                if first:
                    s.sendall(first)
                held.append(s)
        time.sleep(0.5)
        r = d.sh("h", "tpm2_getrandom 4 >/dev/null", check=False)
        assert r.returncode == 0, f"the vTPM did not answer while its slots were held: {r.stderr}"
        for s in held:
            s.close()
        held.clear()
        # A client sends 400 commands in one write and reads no answer: once its socket's buffer
        # is full it is dropped, and the next client is answered at once (before: the proxy
        # blocked in its write to that client for 5 s, the vTPM silent for everyone).
        get_random = struct.pack(">HIIH", 0x8001, 12, 0x17B, 32)
        flood = socket.socket(socket.AF_UNIX)
        flood.connect(f"/proc/self/fd/{dfd}/tpm.sock")
        flood.sendall(get_random * 400)
        held.append(flood)
        time.sleep(0.5)
        t = time.monotonic()
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(f"/proc/self/fd/{dfd}/tpm.sock")
            s.settimeout(10)
            s.sendall(get_random)
            assert len(s.recv(4096)) == 44
        assert time.monotonic() - t < 2, "the vTPM stalled behind a client that reads no answers"
    finally:
        for s in held:
            s.close()
        os.close(dfd)
        d.cli("stop", "h", check=False)


def test_state_rolled_back_under_a_running_vtpm_is_refused(vd, tpm_rootfs):
    """Root on the device copies a running container's vTPM state, lets the guest write an NV
    index, puts the copy back and has the vTPM stop (SIGTERM; trustmed starts it again at once):
    the restarted vTPM should not serve the old value, and the old state should not become the
    anchored one."""
    d = vd
    create(d, "r", tpm_rootfs)
    start(d, "r")
    d.sh("r", "cd /tmp && printf old1 > v && tpm2_nvdefine 0x1500017 -C o -s 4 -a "
              "'ownerread|ownerwrite|authread|authwrite' >/dev/null && tpm2_nvwrite 0x1500017 -C o -i v")
    sf = state_file(d, "r")
    old = sf.read_bytes()
    d.sh("r", "cd /tmp && printf new2 > v && tpm2_nvwrite 0x1500017 -C o -i v")
    assert sf.read_bytes() != old
    try:
        sf.write_bytes(old)
        helper = vtpm_pid(d, "r")
        os.kill(helper, signal.SIGTERM)
        wait_for(lambda: vtpm_pid(d, "r") not in (None, helper), timeout=15, what="the vTPM to come back")
        wait_for(lambda: d.sh("r", "tpm2_getrandom 4 >/dev/null", check=False).returncode == 0, timeout=10,
                 what="the vTPM to answer")
        value = d.run("r", "tpm2_nvread", "0x1500017", "-C", "o", check=False).stdout
        assert "old1" not in value, "the restarted vTPM serves the rolled-back NV value"
    finally:
        d.cli("stop", "r", check=False)
