# SPDX-License-Identifier: GPL-2.0-or-later
"""The TPM through the control socket and the CLI (docs/ATTESTATION.md): the measurement log of
the boot, device info, provisioning the attestation key (csr -> trustme-pki issue -> cert
install), resealing the device storage secret with the recovery key, and `trustme attest`.

Every test daemon runs its own embedded swtpm (trustmed starts tpmd, tpmd starts swtpm). Every
refusal is checked for what it must not do: the daemon keeps answering and the device's state
(certificate, sealed secret) stays as it was."""
import hashlib
import json
import os
import signal
import time
import re
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD, TRUSTMED, process_gone, processes_naming, wait_for
from pb import field_bytes, field_varint, frame, parse
from tools import argv, tool

TPMD = BUILD / "src/tpmd/trustme-tpmd"
SCD = BUILD / "src/scd/trustme-scd"
PKI_TOOL = BUILD / "src/tools/pki/trustme-pki"
PASSPHRASE = "device-test-passphrase"
BOOT_PCR = 12

pytestmark = pytest.mark.skipif(not (TPMD.exists() and PKI_TOOL.exists()),
                                reason="trustme-tpmd or trustme-pki is missing")


@pytest.fixture(autouse=True)
def swtpm_installed():
    """trustme-tpmd starts swtpm: without it, fail naming its package (tools.py)."""
    tool("swtpm")


def run(*cmd, check=True, **kw):
    r = subprocess.run(argv(*cmd), capture_output=True, text=True, timeout=120, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def sha256_file(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def event_digest(pcr, type_, name, sha256_hex):
    """What the PCR was extended with for one event (docs/ATTESTATION.md)."""
    t, n = type_.encode(), name.encode()
    return hashlib.sha256(b"trustme-event-v1" + struct.pack(">I", pcr) + struct.pack(">H", len(t))
                          + t + struct.pack(">H", len(n)) + n + bytes.fromhex(sha256_hex)).digest()


def replay(events, pcr):
    value = bytes(32)
    for e in events:
        if e["pcr"] == pcr:
            value = hashlib.sha256(value + event_digest(e["pcr"], e["type"], e["name"], e["sha256"])).digest()
    return value.hex()


def measurements(d):
    """The log once the boot events are in it (tpmd comes up after trustmed's socket)."""
    def ready():
        r = d.cli("measurements", "--json", check=False)
        if r.returncode != 0:
            return None
        m = json.loads(r.stdout)
        return m if len([e for e in m["events"] if e["pcr"] == BOOT_PCR]) >= 4 else None
    return wait_for(ready, timeout=30, what="the boot measurements")


def info(d):
    return json.loads(d.cli("device", "info", "--json").stdout)


def secret_ok(d):
    """Wait until the device storage secret has reached scd; returns the info."""
    def ready():
        r = d.cli("device", "info", "--json", check=False)
        if r.returncode != 0:
            return None
        i = json.loads(r.stdout)
        return i if i["secret_sealed"] and i["secret_problem"] == "" else None
    return wait_for(ready, timeout=30, what="the device storage secret")


def audit(d, event):
    return [e for e in d.audit_events() if e["event"] == event]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    work = tmp_path_factory.mktemp("device-pki")
    passfile = work / "pass"
    passfile.write_text(PASSPHRASE + "\n")
    passfile.chmod(0o600)
    run(PKI_TOOL, "init", work / "pki", "--passphrase-file", passfile)
    return {"dir": work / "pki", "pass": passfile, "work": work}


def issue(pki, csr, out):
    """A plain certificate for any CSR's key with the device profile, from the Software Signing
    CA: what a CA that does not check for a TPM would issue (tpmd then checks the key)."""
    run(PKI_TOOL, "issue", "--pki", pki["dir"], "--ca", "software", "--profile", "device", "--csr",
        csr, "--out", out, "--passphrase-file", pki["pass"])
    return out


def manufacturer(pki):
    """The TPM manufacturer CA of the provisioning station (off the device), made once per PKI."""
    key, cert = pki["dir"].parent / "manufacturer.key", pki["dir"].parent / "manufacturer.pem"
    if not cert.exists():
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=test TPM manufacturer", "-days",
            "30", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,keyCertSign,cRLSign")
    return key, cert


def provision(d, pki, tmp, cn=None):
    """docs/ATTESTATION.md "Enrollment": the manufacturer certifies the EK (once), then csr ->
    issue (encrypted to the EK) -> install (credential activation); returns the installed leaf."""
    mkey, mcert = manufacturer(pki)
    i = json.loads(d.cli("device", "info", "--json").stdout)
    if not i["ek_cert_pem"]:
        (tmp / "ek.pem").write_text(i["ek_public_pem"])
        run(PKI_TOOL, "ek-cert", "--ek", tmp / "ek.pem", "--key", mkey, "--cert", mcert, "--out",
            tmp / "ek-cert.pem")
        d.cli("device", "cert", "install", tmp / "ek-cert.pem")
    csr = tmp / "device.csr"
    d.cli("device", "csr", "--out", csr, *(["--cn", cn] if cn else []))
    enc = tmp / "device.enc.pem"
    run(PKI_TOOL, "issue", "--pki", pki["dir"], "--ca", "device", "--csr", csr, "--out", enc,
        "--ek-anchor", mcert, "--passphrase-file", pki["pass"])
    d.cli("device", "cert", "install", enc, "--chain", pki["dir"] / "customer/device-ca.pem")
    chain = json.loads(d.cli("device", "info", "--json").stdout)["cert_chain_pem"]
    leaf = tmp / "device.pem"
    leaf.write_text(chain.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
    return leaf


def daemon_csr(d, tmp):
    path = tmp / "this.csr"
    d.cli("device", "csr", "--out", path)
    return path


def recv_frame(sock, timeout=10):
    sock.settimeout(timeout)
    data = b""
    while len(data) < 4:
        data += sock.recv(4 - len(data))
    (n,) = struct.unpack(">I", data[:4])
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        assert chunk, "trustmed closed the connection"
        body += chunk
    return parse(body)


# ---- measurements -------------------------------------------------------------------------------

def test_measurements_list_the_boot_events_with_the_files_hashes(daemon):
    m = measurements(daemon)
    boot = [e for e in m["events"] if e["pcr"] == BOOT_PCR]
    assert [(e["type"], e["name"]) for e in boot[:4]] == [
        ("binary", "trustmed"), ("binary", "trustme-scd"), ("binary", "trustme-tpmd"),
        ("device-config", "device.json")]
    expected = [sha256_file(TRUSTMED), sha256_file(SCD), sha256_file(TPMD),
                sha256_file(daemon.data_dir / "device.json")]
    assert [e["sha256"] for e in boot[:4]] == expected
    assert [e["seq"] for e in m["events"]] == list(range(len(m["events"])))
    assert m["consistent"] is True and m["inconsistency"] == ""
    # The PCR values trustmed reports are what the log replays to.
    pcrs = {p["index"]: p["sha256"] for p in m["pcrs"]}
    assert BOOT_PCR in pcrs
    for index, value in pcrs.items():
        assert value == replay(m["events"], index)

    out = daemon.cli("measurements").stdout
    assert re.search(r"^SEQ\s+PCR\s+TYPE\s+NAME\s+SHA256$", out, re.M)
    assert re.search(rf"^0\s+{BOOT_PCR}\s+binary\s+trustmed\s+{expected[0][:12]}$", out, re.M)
    assert re.search(rf"^3\s+{BOOT_PCR}\s+device-config\s+device.json\s+{expected[3][:12]}$", out, re.M)
    assert f"PCR {BOOT_PCR} {pcrs[BOOT_PCR]}" in out
    assert "log consistent with the PCRs" in out


def test_measurements_are_not_repeated_by_a_restart_of_trustmed_on_the_same_tpm(daemon):
    """A kill -9 of trustmed leaves the embedded TPM running: the next trustmed measures the same
    layer again, which the log does not repeat."""
    before = measurements(daemon)
    daemon.kill9()
    daemon.start()
    after = measurements(daemon)
    assert after["events"] == before["events"] and after["consistent"] is True


def test_measurements_report_a_pcr_extended_behind_tpmds_back(daemon):
    """Something else extending the boot PCR (here while trustmed and tpmd are down and the
    embedded TPM lives on) makes the log disagree with the PCR: said, and exit status 1."""
    measurements(daemon)
    daemon.kill9()  # tpmd sees trustmed gone and exits; swtpm keeps the PCRs
    wait_for(lambda: not processes_naming(daemon.base, also=b"trustme-tpmd"),
             what="tpmd to exit")
    run("tpm2_pcrextend", f"{BOOT_PCR}:sha256=" + "11" * 32, "-T",
        f"swtpm:path={daemon.run_dir}/tpm/swtpm.sock")
    daemon.start()
    r = wait_for(lambda: (lambda r: r if r.returncode == 1 else None)(
        daemon.cli("measurements", "--json", check=False)), timeout=30, what="the inconsistency")
    m = json.loads(r.stdout)
    assert m["consistent"] is False and f"PCR {BOOT_PCR}" in m["inconsistency"]
    assert "does not replay to the PCR values" in r.stderr
    r = daemon.cli("measurements", check=False)
    assert r.returncode == 1 and "log INCONSISTENT with the PCRs" in r.stdout


# ---- device info ---------------------------------------------------------------------------------

def child_pid(d, name):
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except (OSError, IndexError, ValueError):
            continue
        if ppid == d.proc.pid and argv0 == name.encode() and not process_gone(int(entry.name)):
            return int(entry.name)
    return None


def test_tpm_reset_measures_running_containers_again(daemon):
    """Killing the embedded swtpm and tpmd left a new log with the four boot events
    only, while the containers kept running unmeasured, and nothing was audited. trustmed now
    measures every running container again and audits the reset."""
    d = daemon
    for name in ("a", "b"):
        d.create(name)
        d.cli("start", name)
    before = measurements(d)
    configs = {e["name"] for e in before["events"] if e["type"] == "container-config"}
    assert configs == {"a", "b"}, before
    swtpm = int((d.run_dir / "tpm/swtpm.pid").read_text())
    tpmd = child_pid(d, "trustme-tpmd")
    os.kill(swtpm, signal.SIGKILL)
    os.kill(tpmd, signal.SIGKILL)
    wait_for(lambda: (child_pid(d, "trustme-tpmd") or tpmd) != tpmd, timeout=30,
             what="trustmed to restart trustme-tpmd")

    def remeasured():
        m = measurements(d)
        got = {e["name"] for e in m["events"] if e["type"] == "container-config"}
        return m if got == {"a", "b"} else None
    m = wait_for(remeasured, timeout=30, what="the containers measured again")
    assert int((d.run_dir / "tpm/swtpm.pid").read_text()) != swtpm
    assert m["consistent"] is True, m
    # the same events as before the reset, the boot events first
    assert [(e["pcr"], e["type"], e["name"], e["sha256"]) for e in m["events"]] == \
        [(e["pcr"], e["type"], e["name"], e["sha256"]) for e in before["events"]]
    # and the PCRs hold them: replayed from zero
    pcrs = {p["index"]: p["sha256"] for p in m["pcrs"]}
    assert replay(m["events"], 11) == pcrs[11] and replay(m["events"], BOOT_PCR) == pcrs[BOOT_PCR]
    resets = wait_for(lambda: audit(d, "tpm.reset"), timeout=10, what="the tpm.reset audit")
    assert "moved aside" in resets[-1]["detail"]
    assert len(audit(d, "tpm.remeasure")) >= 2
    assert [c["state"] for c in d.containers()] == ["running", "running"]
    # tpmd held quotes until trustmed said all was measured again (Measure.complete): then a
    # quote has every event, the containers' included
    def quote():
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(d.socket))
            s.sendall(raw_request(ATTEST, field_bytes(1, os.urandom(32)), 1))
            resp = recv_frame(s)
        if 26 not in resp:
            return None
        ev = parse(parse(resp[26][0])[1][0])
        return ev if 11 in ev else None
    q = wait_for(quote, timeout=10, what="a quote after the re-measurement")
    assert len(parse(q[11][0]).get(4, [])) == len(m["events"])
    assert "answering quotes" in d.log()


def test_boot_measurement_failure_withholds_the_secret(make_daemon):
    """With the run dir's tpm/ full, the boot measurement failed with ENOSPC and the
    device storage secret was unsealed anyway. Now it is withheld and the failure audited."""
    d = make_daemon(start=False)
    tpm_run = d.run_dir / "tpm"
    tpm_run.mkdir(parents=True)
    # one page: swtpm's pid file fits, the first line of the measurement log does not
    subprocess.run([tool("mount"), "-t", "tmpfs", "-o", "size=4k,mode=0755", "tmpfs", str(tpm_run)],
                   check=True)
    try:
        d.start()

        def withheld():
            i = info(d)
            return i if "withheld" in i["secret_problem"] else None
        i = wait_for(withheld, timeout=30, what="the secret problem")
        assert "No space left on device" in i["secret_problem"], i
        fails = wait_for(lambda: audit(d, "tpm.measure"), timeout=10, what="the audit")
        assert fails[-1]["result"] == "fail"
        time.sleep(0.5)
        assert "device storage secret unsealed" not in d.log()
        assert not (d.data_dir / "tpm/secret.blob").exists()
    finally:
        d.stop()
        subprocess.run([tool("umount"), str(tpm_run)], capture_output=True)


IMA_LOG = Path("/sys/kernel/security/ima/ascii_runtime_measurements")


def ima_device(make_daemon):
    from conftest import DEV_DEVICE_JSON, TEST_TPM
    d = make_daemon(start=False)
    d.data_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads(DEV_DEVICE_JSON)
    config["tpm"] = dict(TEST_TPM, boot_chain="ima")
    (d.data_dir / "device.json").write_text(json.dumps(config) + "\n")
    return d


@pytest.mark.skipif(IMA_LOG.exists(), reason="this kernel has IMA: the refusal is not reachable")
def test_ima_boot_chain_is_refused_without_ima(make_daemon):
    """A chain that starts below root, configured, must not silently fall back to
    trustmed measuring itself on a kernel without IMA."""
    d = ima_device(make_daemon)
    with pytest.raises(RuntimeError) as e:
        d.start()
    assert "has no IMA log" in str(e.value) and "weaker chain" in str(e.value)


@pytest.mark.skipif(not IMA_LOG.exists(), reason="this kernel has no IMA "
                    "(no /sys/kernel/security/ima): the kernel cannot measure trustmed")
def test_ima_boot_chain_accepts_a_kernel_measured_trustmed(make_daemon):
    d = ima_device(make_daemon)
    d.start()
    assert "boot chain: the kernel's IMA log holds trustmed" in d.log()


def test_device_info_describes_the_tpm_and_an_unprovisioned_ak(daemon):
    i = secret_ok(daemon)
    assert i["embedded"] is True and i["tcti"]
    assert i["boot_pcr"] == 12 and i["runtime_pcr"] == 11
    host, port = i["attest_address"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0  # the test daemons ask for a free port
    assert i["ak_public_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert re.fullmatch(r"000b[0-9a-f]{64}", i["ak_name"])  # nameAlg SHA-256, then the digest
    assert i["certificate"] is None and i["cert_chain_pem"] == ""

    out = daemon.cli("device", "info").stdout
    assert "embedded swtpm" in out and i["attest_address"] in out
    assert "AK certificate:  none; to provision it" in out
    assert "storage secret:  sealed" in out


# ---- provisioning ----------------------------------------------------------------------------------

def test_csr_issue_install_shows_the_certificate(daemon, pki, tmp_path):
    secret_ok(daemon)
    # To stdout by default, with tpmd's default common name.
    pem = daemon.cli("device", "csr").stdout
    assert pem.startswith("-----BEGIN CERTIFICATE REQUEST-----")
    subject = run("openssl", "req", "-noout", "-subject", "-verify", input=pem).stdout
    assert "trustme device" in subject

    cert = provision(daemon, pki, tmp_path, cn="edge-17")
    i = info(daemon)
    c = i["certificate"]
    assert c["subject"] == "CN=edge-17" and c["certificates"] == 2
    device_ca_subject = run("openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253",
                            "-in", pki["dir"] / "customer/device-ca.pem").stdout
    assert c["issuer"] == device_ca_subject.strip().removeprefix("subject=")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", c["not_after"])
    assert i["cert_chain_pem"].startswith(cert.read_text().strip())

    out = daemon.cli("device", "info").stdout
    assert "AK certificate:  CN=edge-17" in out and "chain:         2 certificates" in out
    csr_events = audit(daemon, "device.csr")
    assert [e["result"] for e in csr_events] == ["ok", "ok"]
    assert '"edge-17"' in csr_events[1]["detail"]
    # the EK's certificate, then the AK's through credential activation
    installs = audit(daemon, "device.cert.install")
    assert [e["result"] for e in installs] == ["ok", "ok"]
    assert "credential activation" in installs[1]["detail"]

    # The chain survives a restart of trustmed (tpmd keeps it in its data dir).
    daemon.restart()
    secret_ok(daemon)
    assert info(daemon)["certificate"]["subject"] == "CN=edge-17"


def test_a_certificate_for_another_key_is_refused(daemon, pki, tmp_path):
    secret_ok(daemon)
    key, csr = tmp_path / "other.key", tmp_path / "other.csr"
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-subj", "/CN=not this device", "-out", csr)
    other = issue(pki, csr, tmp_path / "other.pem")
    r = daemon.cli("device", "cert", "install", other, "--chain", pki["dir"] / "customer/device-ca.pem",
                   check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("trustme: device cert install: ")
    assert "not for this device's attestation key" in r.stderr
    assert info(daemon)["certificate"] is None
    fail = audit(daemon, "device.cert.install")
    assert [e["result"] for e in fail] == ["fail"] and "attestation key" in fail[0]["detail"]

    # A chain in the wrong order: tpmd names it.
    cert = issue(pki, daemon_csr(daemon, tmp_path), tmp_path / "device.pem")
    r = daemon.cli("device", "cert", "install", pki["dir"] / "customer/device-ca.pem", "--chain", cert,
                   check=False)
    assert r.returncode == 1 and "device cert install: " in r.stderr

    # Not certificates at all: refused before anything is sent.
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    r = daemon.cli("device", "cert", "install", junk, check=False)
    assert r.returncode == 1 and "holds no PEM certificate" in r.stderr
    # PEM armour around garbage reaches tpmd, which refuses it.
    junk.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    r = daemon.cli("device", "cert", "install", junk, check=False)
    assert r.returncode == 1 and r.stderr.startswith("trustme: device cert install: ")
    r = daemon.cli("device", "cert", "install", tmp_path / "missing.pem", check=False)
    assert r.returncode == 1 and "missing.pem" in r.stderr

    assert info(daemon)["certificate"] is None
    # The right certificate still goes in afterwards (its CA is the Software Signing sub-CA).
    daemon.cli("device", "cert", "install", cert, "--chain", pki["dir"] / "software-signing/sub-ca.pem")
    assert info(daemon)["certificate"]["certificates"] == 2


def test_csr_common_name_is_checked(daemon):
    secret_ok(daemon)
    r = daemon.cli("device", "csr", "--cn", "x" * 65, check=False)
    assert r.returncode == 1 and "at most 64" in r.stderr
    r = daemon.cli("device", "csr", "--cn", "tab\there", check=False)
    assert r.returncode == 1 and "printable ASCII" in r.stderr
    assert [e["result"] for e in audit(daemon, "device.csr")] == []  # refused before tpmd
    assert daemon.cli("device", "csr", "--cn", "x" * 64).returncode == 0


# ---- reseal ---------------------------------------------------------------------------------------

def recovery_key(d):
    path = d.run_dir / "tpm/recovery-key"  # never in the data dir (docs/ATTESTATION.md)
    wait_for(path.exists, timeout=30, what="the recovery key file")
    return path


def test_reseal_refuses_bad_input_and_keeps_serving(daemon, tmp_path):
    secret_ok(daemon)
    r = daemon.cli("device", "reseal", check=False)
    assert r.returncode == 2 and "--recovery-key-file" in r.stderr
    r = daemon.cli("device", "reseal", "00" * 32, check=False)
    assert r.returncode == 2 and "never from the command line" in r.stderr
    r = daemon.cli("device", "reseal", "--recovery-key-file", tmp_path / "none", check=False)
    assert r.returncode == 1 and "cannot open the recovery key file" in r.stderr

    bad = tmp_path / "bad-key"
    for content, says in [("hello\n", "first line has 5 characters"),
                          ("ab" * 31 + "\n", "first line has 62 characters"),
                          ("ab" * 31 + "zz\n", "character 63 is not a hexadecimal digit"),
                          ("\n" + "ab" * 32 + "\n", "first line has 0 characters"),
                          ("ab" * 300, "too large")]:
        bad.write_text(content)
        r = daemon.cli("device", "reseal", "--recovery-key-file", bad, check=False)
        assert r.returncode == 1 and says in r.stderr, (content, r.stderr)
        assert "not a recovery key file" in r.stderr or "too large" in r.stderr
    assert audit(daemon, "device.reseal") == []  # nothing reached trustmed

    # A well-formed key that is not this device's: tpmd refuses, nothing changes.
    real = recovery_key(daemon).read_text().split()[0]
    wrong = ("0" if real[0] != "0" else "1") + real[1:]
    bad.write_text(wrong + "\n")
    r = daemon.cli("device", "reseal", "--recovery-key-file", bad, check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("trustme: device reseal: ") and "wrong recovery key" in r.stderr
    assert [e["result"] for e in audit(daemon, "device.reseal")] == ["fail"]

    # A key of the wrong length straight on the protocol: trustmed refuses it itself.
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(daemon.socket))
        s.sendall(frame(field_varint(1, 1) + field_varint(2, 5) + field_bytes(37, field_bytes(1, b"k" * 5))))
        resp = recv_frame(s)
    assert resp[2] == [5] and 10 in resp
    err = parse(resp[10][0])
    assert err[1] == [22] and b"must have 32" in err[2][0]

    i = secret_ok(daemon)
    assert i["secret_sealed"] is True
    assert daemon.cli("list").returncode == 0


def test_reseal_with_the_recovery_key_after_an_update(daemon, tmp_path):
    """An edited device.json measures differently: the secret no longer unseals, until the
    recovery key reseals it to the new state."""
    secret_ok(daemon)
    key = tmp_path / "recovery-key"
    shutil.copy(recovery_key(daemon), key)
    # Reseal on an unchanged device is harmless.
    out = daemon.cli("device", "reseal", "--recovery-key-file", key).stdout
    assert "sealed to the current boot state" in out

    daemon.stop()  # powers the embedded TPM off: the PCRs start fresh
    device = daemon.data_dir / "device.json"
    device.write_text(device.read_text() + " \n")  # the "authorised update"
    daemon.start()

    def sealed_elsewhere():
        r = daemon.cli("device", "info", "--json", check=False)
        return r.returncode == 0 and "another boot state" in json.loads(r.stdout)["secret_problem"]
    wait_for(sealed_elsewhere, timeout=30, what="the sealed secret to refuse the new boot state")
    assert "PROBLEM: the device storage secret is sealed to another boot state" in \
        daemon.cli("device", "info").stdout
    assert measurements(daemon)["events"][3]["sha256"] == sha256_file(device)

    # The key from stdin this time.
    r = daemon.cli("device", "reseal", "--recovery-key-file", "-", input=key.read_text())
    assert "sealed to the current boot state" in r.stdout
    secret_ok(daemon)
    assert [e["result"] for e in audit(daemon, "device.reseal")] == ["ok", "ok"]

    # Sealed to the new state for good: another restart needs no recovery.
    daemon.restart()
    secret_ok(daemon)


# ---- trustme attest ------------------------------------------------------------------------------

def write_refs(pki, path, values):
    """Reference values (format 2, docs/ATTESTATION.md): valid for a day, PCRs 11 and 12, the
    boot events required."""
    now = time.time()
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    path.write_text(json.dumps({
        "format": "trustme-reference-values", "version": 2, "rim_version": 1,
        "not_before": stamp(now - 60), "not_after": stamp(now + 86400), "pcrs": [11, 12],
        "required": [{"type": "binary", "name": n} for n in ("trustmed", "trustme-scd", "trustme-tpmd")]
        + [{"type": "device-config", "name": "device.json"}],
        "values": values}))
    run(PKI_TOOL, "sign", path, "--pki", pki["dir"], "--signer", "software",
        "--passphrase-file", pki["pass"])
    return path


def trust_args(pki):
    """Each role's root and CA (docs/ATTESTATION.md), revocation checked off: these tests are
    about the CLI, test_attestation's about revocation."""
    d = pki["dir"]
    return ["--ak-anchor", d / "customer/general-root-ca.pem",
            "--device-ca", d / "customer/device-ca.pem",
            "--rim-anchor", d / "software-signing/root-ca.pem",
            "--rim-ca", d / "software-signing/sub-ca.pem", "--no-crl"]


def boot_refs(daemon):
    return [{"type": "binary", "name": "trustmed", "sha256": sha256_file(TRUSTMED)},
            {"type": "binary", "name": "trustme-scd", "sha256": sha256_file(SCD)},
            {"type": "binary", "name": "trustme-tpmd", "sha256": sha256_file(TPMD)},
            {"type": "device-config", "name": "device.json",
             "sha256": sha256_file(daemon.data_dir / "device.json")}]


def test_attest_checks_the_local_quote_like_trustme_verify(daemon, pki, tmp_path):
    secret_ok(daemon)
    measurements(daemon)
    anchors = trust_args(pki)
    refs = write_refs(pki, tmp_path / "refs.json", boot_refs(daemon))

    # Not provisioned yet: the quote is fine, the certificate chain is not.
    r = daemon.cli("attest", *anchors, "--reference", refs, "--json", check=False)
    assert r.returncode == 1, r.stderr
    rep = json.loads(r.stdout)
    assert rep["verdict"] == "untrusted"
    checks = {c["name"]: c for c in rep["checks"]}
    assert checks["certificate chain"]["ok"] is False
    assert checks["nonce"]["ok"] is True and checks["event log"]["ok"] is True

    provision(daemon, pki, tmp_path)
    r = daemon.cli("attest", *anchors, "--reference", refs, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^verdict: trusted \(4 events\)$", r.stdout, re.M)
    for name in ("certificate chain", "AK binding", "quote signature", "nonce", "PCR digest",
                 "event log", "reference values", "TPM clock"):
        assert re.search(rf"^{re.escape(name)}\s+ok\b", r.stdout, re.M), r.stdout
    rep = json.loads(daemon.cli("attest", *anchors, "--reference", refs, "--pcr", "12", "--json").stdout)
    assert rep["verdict"] == "trusted" and rep["events"] == 4

    # Reference values without the trustmed that runs: untrusted, and the report says so.
    partial = write_refs(pki, tmp_path / "partial.json", boot_refs(daemon)[1:])
    r = daemon.cli("attest", *anchors, "--reference", partial, check=False)
    assert r.returncode == 1 and re.search(r"^reference values\s+FAIL\b", r.stdout, re.M)
    assert "verdict: untrusted" in r.stdout

    # Usage errors are 2, as for trustme-verify.
    r = daemon.cli("attest", "--reference", refs, "--no-crl", check=False)
    assert r.returncode == 2 and "--ak-anchor" in r.stderr
    # no revocation check without being told so
    r = daemon.cli("attest", *anchors[:-1], "--reference", refs, check=False)
    assert r.returncode == 2 and "--no-crl" in r.stderr, r.stderr
    # the old --anchor, which trusted a root for every role, says what replaced it
    r = daemon.cli("attest", "--anchor", pki["dir"] / "customer/general-root-ca.pem",
                   "--reference", refs, check=False)
    assert r.returncode == 2 and "--device-ca" in r.stderr, r.stderr
    r = daemon.cli("attest", *anchors, check=False)
    assert r.returncode == 2 and "--reference" in r.stderr
    r = daemon.cli("attest", *anchors, "--reference", refs, "--pcr", "24", check=False)
    assert r.returncode == 2
    r = daemon.cli("attest", *anchors, "--reference", tmp_path / "none.json", check=False)
    assert r.returncode == 2


def test_attest_exits_3_when_no_quote_can_be_had(daemon, pki, tmp_path):
    refs = write_refs(pki, tmp_path / "refs.json", boot_refs(daemon))
    anchors = trust_args(pki)
    daemon.stop()
    r = daemon.cli("attest", *anchors, "--reference", refs, check=False)
    assert r.returncode == 3 and "cannot connect to trustmed" in r.stderr


# ---- the protocol ---------------------------------------------------------------------------------

MEASUREMENTS, DEVICE_CSR, ATTEST = 33, 34, 38


def raw_request(body_field, body, req_id):
    return frame(field_varint(1, 1) + field_varint(2, req_id) + field_bytes(body_field, body))


def test_bad_attest_requests_and_vanishing_clients(daemon):
    secret_ok(daemon)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(daemon.socket))
        s.sendall(raw_request(ATTEST, field_bytes(1, b"n" * 5), 1))
        err = parse(recv_frame(s)[10][0])
        assert err[1] == [22] and b"32 random bytes" in err[2][0]
        s.sendall(raw_request(ATTEST, field_bytes(1, b"n" * 32) + field_varint(2, 24), 2))
        err = parse(recv_frame(s)[10][0])
        assert err[1] == [22] and b"PCR 24 does not exist" in err[2][0]
        s.sendall(raw_request(ATTEST, field_bytes(1, b"n" * 32) + field_varint(2, 12) + field_varint(2, 12), 3))
        err = parse(recv_frame(s)[10][0])
        assert err[1] == [22] and b"given twice" in err[2][0]
        # A good one: the evidence is tpmd's AttestResponse, echoing this request's id.
        s.sendall(raw_request(ATTEST, field_bytes(1, b"n" * 32), 4))
        resp = recv_frame(s)
        assert resp[2] == [4] and 26 in resp
        evidence = parse(parse(resp[26][0])[1][0])
        assert evidence[2] == [4] and 11 in evidence  # id, Quote

    # Clients that leave before tpmd answers: the answers are dropped, the work is done.
    for i in range(5):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(daemon.socket))
            s.sendall(raw_request(DEVICE_CSR, b"", 10 + i) + raw_request(MEASUREMENTS, b"", 20 + i)
                      + raw_request(ATTEST, field_bytes(1, b"n" * 32), 30 + i))
    wait_for(lambda: len(audit(daemon, "device.csr")) == 5, what="the CSRs of the vanished clients")
    assert all(e["result"] == "ok" for e in audit(daemon, "device.csr"))
    assert measurements(daemon)["consistent"] is True
    assert daemon.cli("device", "info").returncode == 0
