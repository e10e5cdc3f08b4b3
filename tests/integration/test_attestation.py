"""Attestation end to end (docs/ATTESTATION.md), against real daemons, each with its own embedded
swtpm: a provisioned device running a container on a signed GuestOS passes trustme-verify and
`trustme attest`; each kind of forged or stale evidence fails the one check responsible for it;
the device storage secret follows the boot measurement and comes back with the recovery key; the
anti-rollback counter outlives a restored data dir; a killed trustme-tpmd comes back with a
consistent log.

One PKI and one GuestOS build (test_guestos.Env) and one healthy device (module fixtures) serve
most tests. Forged evidence is made offline: a response saved with `trustme-verify
--save-response`, edited field by field with pb.py and checked again with `--response`, which
runs the same checks on the bytes as a live verification does."""
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import BUILD, TEST_PREFIX, TRUSTMED, Daemon, process_gone, wait_for
from pb import encode, parse
from test_device import SCD, TPMD, measurements, provision, recovery_key, secret_ok
# env: test_guestos's module fixture (one PKI, a second one, the GuestOS builds)
from test_guestos import env  # noqa: F401
from test_guestos import GUESTOS_TOOL, PKI_TOOL, create, install, logs_show, run, start_with_device
from test_storage import KDF, PIN, PUK, pin_file
from tools import tool

VERIFY = BUILD / "src/verify/trustme-verify"
BOOT, RUNTIME = 12, 11
# trustme-verify --json: always these seven, in this order
CHECKS = ["certificate chain", "AK binding", "quote signature", "nonce", "PCR digest", "event log",
          "reference values"]
SEALED_ELSEWHERE = "the device storage secret is sealed to another boot state"

pytestmark = pytest.mark.skipif(
    not all(p.exists() for p in (VERIFY, TPMD, PKI_TOOL, GUESTOS_TOOL)),
    reason="trustme-verify, trustme-tpmd, trustme-pki or trustme-guestos is missing")


@pytest.fixture(autouse=True)
def swtpm_installed():
    """trustme-tpmd starts swtpm: without it, fail naming its package (tools.py)."""
    tool("swtpm")


# ---- helpers ------------------------------------------------------------------------------------

def pki_of(env):
    """test_device's provisioning helpers take the PKI this way."""
    return {"dir": env.pki, "pass": env.passfile}


def make_refs(env, out, guestos=(), configs=()):
    """Signed reference values of this build's binaries, GuestOS dirs and config files."""
    args = ["rim", "--out", out, "--binary", TRUSTMED, "--binary", SCD, "--binary", TPMD]
    for g in guestos:
        args += ["--guestos", g]
    for kind, path in configs:
        args += ["--config", f"{kind}={path}"]
    run(PKI_TOOL, *args)
    run(PKI_TOOL, "sign", out, "--pki", env.pki, "--signer", "software",
        "--passphrase-file", env.passfile)
    return out


def attest_address(d):
    return json.loads(d.cli("device", "info", "--json").stdout)["attest_address"]


def failed(report):
    return {c["name"] for c in report["checks"] if not c["ok"]}


def details(report):
    return {c["name"]: c["detail"] for c in report["checks"]}


def assert_trusted(result):
    rc, rep = result
    assert rc == 0 and failed(rep) == set(), json.dumps(rep, indent=1)
    return rep


def assert_fails(result, *names):
    """Exit status 1, and exactly the named checks failed (the others still pass: each kind of
    forgery is caught by the check responsible for it, not by accident by another)."""
    rc, rep = result
    assert (rc, failed(rep)) == (1, set(names)), json.dumps(rep, indent=1)
    return details(rep)


def edit_quote(raw, edit):
    """A saved AttestResponse with its Quote (field 11) changed by edit(quote fields)."""
    top = parse(raw)
    quote = parse(top[11][0])
    edit(quote)
    top[11] = [encode(quote)]
    return encode(top)


def quote_events(quote):
    """Quote.events as field dicts: 1 seq, 2 pcr, 3 type, 4 name, 5 sha256 (proto/attest.proto)."""
    return [parse(e) for e in quote[4]]


def set_events(quote, events):
    quote[4] = [encode(e) for e in events]


def child_pid(d, name):
    """The pid of the daemon's child whose argv[0] is name (trustme-tpmd), or None."""
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


def module_daemon(test_root, rootfs, tag):
    base = Path(tempfile.mkdtemp(prefix=f"d-att-{tag}-", dir=test_root))
    return Daemon(base, f"{TEST_PREFIX}-{os.getpid()}-att-{tag}", rootfs, KDF)


def create_encrypted(d, name):
    """A container on GuestOS bb with a soft token, paired: its key needs the PIN *and* the
    device storage secret the TPM unseals (docs/STORAGE.md)."""
    create(d, name, token={"type": "soft"})
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, PUK), name)


def start_encrypted(d, name, check=True):
    return d.cli("start", "--pin-file", pin_file(d, PIN), name, check=check)


class Verifier:
    """trustme-verify with the anchors, reference values and CRLs of a device's PKI."""

    def __init__(self, env, refs, work):
        self.env = env
        self.refs = refs
        self.work = work
        self.anchors = [env.cert("general-root-ca"), env.cert("root-ca")]
        self.crls = env.pki / "crls.pem"
        self._n = 0

    def _run(self, *target, anchors=None, refs=None, extra=()):
        cmd = [VERIFY, *target]
        for a in anchors or self.anchors:
            cmd += ["--anchor", a]
        cmd += ["--reference", refs or self.refs, "--crl", self.crls, "--json", *extra]
        r = run(*cmd, check=False)
        # 2 (usage) and 3 (no quote) would mean the test is broken, not the evidence
        assert r.returncode in (0, 1), f"trustme-verify -> {r.returncode}: {r.stderr}"
        rep = json.loads(r.stdout)
        assert [c["name"] for c in rep["checks"]] == CHECKS
        assert rep["verdict"] == ("trusted" if r.returncode == 0 else "untrusted")
        return r.returncode, rep

    def live(self, d, **kw):
        return self._run(attest_address(d), **kw)

    def save(self, d):
        """Ask the device for a quote and keep the response: (rc, report, bytes, nonce hex)."""
        self._n += 1
        path = self.work / f"response-{self._n}.bin"
        rc, rep = self._run(attest_address(d), extra=("--save-response", path))
        nonce = Path(f"{path}.nonce").read_text().strip()
        assert len(nonce) == 64
        return rc, rep, path.read_bytes(), nonce

    def offline(self, raw, nonce, **kw):
        self._n += 1
        path = self.work / f"edited-{self._n}.bin"
        path.write_bytes(raw)
        return self._run("--response", path, "--nonce", nonce, **kw)


# ---- the healthy device -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def healthy(env, test_root, rootfs):
    """Device A: the real policy (signed GuestOSes only), bb-1 installed, the encrypted container
    "c" running on it, the AK provisioned by the PKI's Device CA, and reference values of exactly
    this software."""
    d = module_daemon(test_root, rootfs, "a")
    try:
        start_with_device(d, env.device())
        secret_ok(d)
        gos = env.build("bb", 1)
        install(d, gos)
        create_encrypted(d, "c")
        start_encrypted(d, "c")
        logs_show(d, "c", "marker-v1")
        # test_tpmd_killed_and_restarted starts this one later: its config is approved up front
        create(d, "late")
        provision(d, pki_of(env), d.base, cn="device-a")
        h = SimpleNamespace(d=d, gos=gos)
        h.configs = [("device-config", d.data_dir / "device.json"),
                     ("container-config", d.configs / "c.json"),
                     ("container-config", d.configs / "late.json")]
        h.refs = make_refs(env, d.base / "refs.json", [gos], h.configs)
        h.verifier = Verifier(env, h.refs, d.base)
        yield h
    finally:
        d.teardown()


@pytest.fixture(scope="module")
def saved(healthy):
    """One healthy response of device A and the nonce it answered: the material of the forgeries."""
    rc, rep, raw, nonce = healthy.verifier.save(healthy.d)
    assert_trusted((rc, rep))
    return raw, nonce


@pytest.fixture(scope="module")
def other(env, healthy, test_root, rootfs):
    """Device B: another TPM (its own swtpm) running the same software with the same device.json
    bytes, so its boot PCR equals A's; provisioned with a certificate of its own. B alone is a
    healthy device."""
    d = module_daemon(test_root, rootfs, "b")
    try:
        d.data_dir.mkdir(parents=True)
        shutil.copy(healthy.d.data_dir / "device.json", d.data_dir / "device.json")
        d.start()
        secret_ok(d)
        measurements(d)
        provision(d, pki_of(env), d.base, cn="device-b")
        rc, rep, raw, nonce = healthy.verifier.save(d)
        assert_trusted((rc, rep))
        # Any device of the PKI running approved software passes unless the verifier names the
        # one it means (--expect-ak, test_relayed_device_fails_expect_ak); the leaf's subject in
        # the "certificate chain" detail says whose evidence this is.
        assert details(rep)["certificate chain"].startswith("CN=device-b,"), rep
        d.saved = raw, nonce
        yield d
    finally:
        d.teardown()


# ---- 1. a healthy device ------------------------------------------------------------------------

def test_healthy_device_is_trusted(healthy):
    d, v = healthy.d, healthy.verifier
    rep = assert_trusted(v.live(d))
    # 4 boot events, then c's start: its guestos.json, its image, its config
    assert rep["events"] >= 7, rep
    det = details(rep)
    assert "not revoked" in det["certificate chain"], det
    events = [(e["pcr"], e["type"], e["name"]) for e in measurements(d)["events"]]
    for e in [(BOOT, "binary", "trustmed"), (BOOT, "binary", "trustme-scd"),
              (BOOT, "binary", "trustme-tpmd"), (BOOT, "device-config", "device.json"),
              (RUNTIME, "guestos-config", "bb-1/guestos.json"),
              (RUNTIME, "guestos-image", "bb-1/root.img"), (RUNTIME, "container-config", "c")]:
        assert e in events, events
    # the encrypted container really got its key: the device storage secret reached scd
    assert d.state("c")["state"] == "running"

    # the same verdict from the device itself, through trustmed
    args = [a for anchor in v.anchors for a in ("--anchor", anchor)]
    r = d.cli("attest", *args, "--reference", v.refs, "--crl", v.crls, "--json")
    local = json.loads(r.stdout)
    assert local["verdict"] == "trusted" and failed(local) == set(), local
    assert [c["name"] for c in local["checks"]] == CHECKS and local["events"] == rep["events"]


# ---- 2. forged and stale evidence ---------------------------------------------------------------

def test_edited_event_name_fails_the_event_log(healthy, saved):
    """The log claims another image name ran: names are covered by the PCR, so the replay no
    longer gives the quoted value. (Reference values match by type and hash only, so they
    still pass: only the event log can tell.)"""
    raw, nonce = saved

    def edit(q):
        events = quote_events(q)
        image = next(e for e in events if e[3] == [b"guestos-image"])
        image[4] = [b"bb-1/r00t.img"]
        set_events(q, events)
    det = assert_fails(healthy.verifier.offline(edit_quote(raw, edit), nonce), "event log")
    assert f"PCR {RUNTIME}" in det["event log"], det


def test_edited_event_hash_fails_the_event_log(healthy, saved):
    """The log claims trustmed's hash is trustme-scd's: an approved hash, so the reference
    values pass, but the PCR was extended with the real one."""
    raw, nonce = saved

    def edit(q):
        events = quote_events(q)
        by_name = {e[4][0]: e for e in events}
        by_name[b"trustmed"][5] = by_name[b"trustme-scd"][5]
        set_events(q, events)
    det = assert_fails(healthy.verifier.offline(edit_quote(raw, edit), nonce), "event log")
    assert f"PCR {BOOT}" in det["event log"], det


def test_dropped_event_fails_the_event_log(healthy, saved):
    """Hiding that container c ran: its config event, the last of the log, left out (no gap in
    the sequence numbers to give it away; the replay does)."""
    raw, nonce = saved

    def edit(q):
        events = quote_events(q)
        assert (events[-1][3], events[-1][4]) == ([b"container-config"], [b"c"])
        set_events(q, events[:-1])
    det = assert_fails(healthy.verifier.offline(edit_quote(raw, edit), nonce), "event log")
    assert f"PCR {RUNTIME}" in det["event log"], det


def test_replayed_response_fails_the_nonce(healthy, saved):
    """An old, genuine response offered to a verifier that sent a fresh nonce: only the nonce
    gives it away, everything else in it is authentic."""
    raw, _ = saved
    det = assert_fails(healthy.verifier.offline(raw, os.urandom(32).hex()), "nonce")
    assert "replayed" in det["nonce"], det


def test_another_tpms_quote(healthy, saved, other):
    """B's genuine quote (same software, same boot PCR value) passed off as A's. With A's AK and
    certificate claimed, everything matches except that A's key did not sign it: "quote
    signature" is the check that names it. With B's own AK left in (only the certificate
    swapped), the certificate is not for that AK: "AK binding", and the signature still does
    not verify with the certified key."""
    a_quote = parse(parse(saved[0])[11][0])
    raw, nonce = other.saved

    def as_a(q):
        q[5], q[6] = a_quote[5], a_quote[6]  # ak_public, cert_chain_pem
    det = assert_fails(healthy.verifier.offline(edit_quote(raw, as_a), nonce), "quote signature")
    assert "another key" in det["quote signature"], det
    assert det["certificate chain"].startswith("CN=device-a,"), det

    def with_a_cert(q):
        q[6] = a_quote[6]
    det = assert_fails(healthy.verifier.offline(edit_quote(raw, with_a_cert), nonce),
                       "AK binding", "quote signature")
    assert "belongs to another key" in det["AK binding"], det


def ak_name(d):
    return json.loads(d.cli("device", "info", "--json").stdout)["ak_name"]


def test_relayed_device_fails_expect_ak(healthy, other):
    """A verifier that means device A names A's AK: B's genuine evidence (a relay) fails the
    AK binding, A's own passes."""
    v, name_a = healthy.verifier, ak_name(healthy.d)
    assert name_a != ak_name(other)
    raw, nonce = other.saved
    assert_fails(v.offline(raw, nonce, extra=("--expect-ak", name_a)), "AK binding")
    assert_trusted(v.live(healthy.d, extra=("--expect-ak", name_a)))


def test_certificate_of_another_pki_fails_the_chain(env, healthy, saved):
    """Anchored at another PKI's General root (the reference values' software root stays): the
    AK certificate does not chain. The quote itself is still fine."""
    raw, nonce = saved
    anchors = [env.cert("general-root-ca", env.local_pki), env.cert("root-ca")]
    assert_fails(healthy.verifier.offline(raw, nonce, anchors=anchors), "certificate chain")


def test_revoked_ak_certificate_fails_the_chain(env, healthy, saved, tmp_path):
    """A second certificate for A's AK is revoked; the response carries it instead of the
    installed one (the chain is not covered by the quote, so this is what a device whose
    certificate was revoked sends). Revoking the installed one would break the other tests."""
    raw, nonce = saved
    csr = tmp_path / "again.csr"
    healthy.d.cli("device", "csr", "--out", csr)
    cert = tmp_path / "revoked.pem"
    run(PKI_TOOL, "issue", "--pki", env.pki, "--ca", "device", "--csr", csr, "--out", cert,
        "--passphrase-file", env.passfile)
    chain = (cert.read_text() + env.cert("device-ca").read_text()).encode()

    def with_cert(q):
        q[6] = [chain]
    forged = edit_quote(raw, with_cert)
    assert_trusted(healthy.verifier.offline(forged, nonce))  # not revoked yet: fine
    run(PKI_TOOL, "revoke", "--pki", env.pki, cert, "--reason", "keyCompromise",
        "--passphrase-file", env.passfile)
    det = assert_fails(healthy.verifier.offline(forged, nonce), "certificate chain")
    assert "revoked" in det["certificate chain"], det
    # the installed certificate is not affected
    assert_trusted(healthy.verifier.offline(raw, nonce))


def test_edited_pcr_value_fails_digest_and_log(healthy, saved):
    """A reported PCR value changed: the quote's pcrDigest covers the reported values ("PCR
    digest"), and the log no longer replays to the reported value ("event log"). Both must
    fail: there is no way to change a reported value that only one of them notices."""
    raw, nonce = saved

    def edit(q):
        pcrs = [parse(p) for p in q[3]]
        boot = next(p for p in pcrs if p[1] == [BOOT])
        boot[2] = [bytes([boot[2][0][0] ^ 1]) + boot[2][0][1:]]
        q[3] = [encode(p) for p in pcrs]
    assert_fails(healthy.verifier.offline(edit_quote(raw, edit), nonce), "PCR digest", "event log")


def test_unlogged_extend_fails_only_the_event_log(healthy, other):
    """The honest variant of a PCR that does not match the log: something extends the runtime
    PCR behind tpmd's back (here tpm2_pcrextend on B's swtpm, while no tpmd holds it: trustmed
    killed, so its tpmd exits and leaves the TPM running). The quote, digest and values are
    genuine; only the log does not replay to them."""
    d = other
    tpmd = child_pid(d, "trustme-tpmd")
    assert tpmd, "no trustme-tpmd below trustmed"
    d.kill9()
    wait_for(lambda: process_gone(tpmd), timeout=15, what="trustme-tpmd to exit with trustmed")
    run("tpm2_pcrextend", f"{RUNTIME}:sha256=" + "ab" * 32, "-T",
        f"swtpm:path={d.run_dir}/tpm/swtpm.sock")
    d.socket.unlink(missing_ok=True)
    d.start()
    # trustme measurements says so too (exit status 1), once the new tpmd has replayed the log
    r = wait_for(lambda: (lambda r: r if r.returncode == 1 else None)(
        d.cli("measurements", "--json", check=False)), timeout=30, what="the inconsistency")
    m = json.loads(r.stdout)
    assert m["consistent"] is False and f"PCR {RUNTIME}" in m["inconsistency"], m
    det = assert_fails(healthy.verifier.live(d), "event log")
    assert f"PCR {RUNTIME}" in det["event log"], det


def test_image_missing_from_the_reference_values(env, healthy, saved):
    """Reference values made without --guestos: the GuestOS that ran is not an approved one.
    Everything else about the evidence is genuine."""
    raw, nonce = saved
    refs = make_refs(env, healthy.d.base / "refs-no-guestos.json", configs=healthy.configs)
    det = assert_fails(healthy.verifier.offline(raw, nonce, refs=refs), "reference values")
    for unapproved in ("guestos-config bb-1/guestos.json", "guestos-image bb-1/root.img"):
        assert unapproved in det["reference values"], det


# ---- 3. the sealed device storage secret --------------------------------------------------------

def test_changed_boot_measurement_needs_the_recovery_key(make_daemon, env, tmp_path):
    d = start_with_device(make_daemon(extra_args=KDF, start=False), env.device())
    secret_ok(d)
    install(d, env.build("bb", 1))
    create_encrypted(d, "c")
    start_encrypted(d, "c")
    d.sh("c", "echo kept-across-reseal > /root/kept.txt; sync")
    d.cli("stop", "--kill", "c")  # (its init, sleep as pid 1, ignores SIGTERM)
    key = tmp_path / "recovery-key"
    shutil.copy(recovery_key(d), key)

    # An "update" of device.json that changes nothing but its bytes: the runtime PCR spelled out
    # with its default value. The boot PCR measures the bytes, so the PCR policy no longer holds.
    d.stop()  # powers the embedded TPM off: a reboot
    device = d.data_dir / "device.json"
    cfg = json.loads(device.read_text())
    cfg["tpm"]["runtime_pcr"] = RUNTIME
    device.write_text(json.dumps(cfg) + "\n")
    d.start()
    wait_for(lambda: SEALED_ELSEWHERE in json.loads(
        d.cli("device", "info", "--json").stdout)["secret_problem"], timeout=30,
        what="the sealed secret to refuse the new boot state")

    r = start_encrypted(d, "c", check=False)
    assert r.returncode != 0 and SEALED_ELSEWHERE in r.stderr, r.stderr
    assert d.state("c")["state"] == "stopped"

    # a wrong recovery key is refused and changes nothing
    blob = (d.data_dir / "tpm/secret.blob").read_bytes()
    real = key.read_text().split()[0]
    wrong = tmp_path / "wrong-key"
    wrong.write_text(("0" if real[0] != "0" else "1") + real[1:] + "\n")
    r = d.cli("device", "reseal", "--recovery-key-file", wrong, check=False)
    assert r.returncode == 1 and "wrong recovery key" in r.stderr, r.stderr
    assert (d.data_dir / "tpm/secret.blob").read_bytes() == blob
    r = start_encrypted(d, "c", check=False)
    assert r.returncode != 0 and SEALED_ELSEWHERE in r.stderr, r.stderr

    # the documented recovery: no restart, the container starts with its data intact
    out = d.cli("device", "reseal", "--recovery-key-file", d.data_dir / "tpm/recovery-key").stdout
    assert "sealed to the current boot state" in out, out
    secret_ok(d)
    start_encrypted(d, "c")
    assert d.sh("c", "cat /root/kept.txt").stdout == "kept-across-reseal\n"


# ---- 4. anti-rollback ---------------------------------------------------------------------------

def test_counter_blocks_a_downgrade_after_a_data_dir_rollback(make_daemon, env):
    d = start_with_device(make_daemon(start=False), env.device())
    v1, v2 = env.build("bb", 1), env.build("bb", 2, tree="v2")
    install(d, v1)
    create(d, "c")
    d.cli("start", "c")
    logs_show(d, "c", "marker-v1")
    d.cli("stop", "--kill", "c")  # (its init, sleep as pid 1, ignores SIGTERM)
    d.stop()
    # The copy an attacker keeps: everything but the embedded TPM's state. <data>/tpm/swtpm is
    # the TPM's NV (the counters): on hardware it lives in the chip, out of the data dir's reach.
    # cp -a: tpmd's files keep their owner (trustme-tpm).
    old = d.base / "data-with-v1"
    subprocess.run([tool("cp"), "-a", d.data_dir, old], check=True)
    shutil.rmtree(old / "tpm/swtpm")

    d.start()
    install(d, v2)
    d.cli("start", "c")
    logs_show(d, "c", "marker-v2")
    d.cli("stop", "--kill", "c")
    d.stop()  # powers the swtpm off; its NV (counter = 2) stays in tpm/swtpm

    # roll the data dir back, keeping the TPM
    tpm_now = d.base / "swtpm-now"
    os.rename(d.data_dir / "tpm/swtpm", tpm_now)
    shutil.rmtree(d.data_dir)
    os.rename(old, d.data_dir)
    os.rename(tpm_now, d.data_dir / "tpm/swtpm")
    d.start()
    store = json.loads(d.cli("guestos", "list", "--json").stdout)
    assert [(g["name"], g["version"]) for g in store] == [("bb", 1)]

    r = d.cli("start", "c", check=False)
    assert r.returncode != 0, r.stdout
    assert "restored from an older copy" in r.stderr, r.stderr
    assert "version 2 recorded in the TPM" in r.stderr, r.stderr
    assert d.state("c")["state"] == "stopped"
    r = install(d, v1, check=False)
    assert r.returncode != 0 and "downgrade" in r.stderr, r.stderr

    # installing the current version again heals it
    install(d, v2)
    d.cli("start", "c")
    logs_show(d, "c", "marker-v2")

    # Above, v1 was refused by the store itself (it still held bb-1). With no bb in the store at
    # all, the TPM's counter alone refuses it.
    d.cli("stop", "--kill", "c")
    d.cli("remove", "c")
    d.cli("guestos", "remove", "bb", "--version", "1")
    d.cli("guestos", "remove", "bb", "--version", "2")
    r = install(d, v1, check=False)
    assert r.returncode != 0 and "TPM records as installed: a downgrade is refused" in r.stderr, \
        r.stderr
    install(d, v2)


# ---- 5. trustme-tpmd killed ---------------------------------------------------------------------

def test_tpmd_killed_and_restarted(healthy):
    """Runs last on device A: kill -9 of trustme-tpmd. trustmed restarts it; the swtpm (the
    device's TPM) and the log outlive it, so the log is still consistent, later starts are still
    measured, and the device still attests."""
    d, v = healthy.d, healthy.verifier
    before = measurements(d)
    tpmd = child_pid(d, "trustme-tpmd")
    assert tpmd, "no trustme-tpmd below trustmed"
    os.kill(tpmd, 9)
    wait_for(lambda: (child_pid(d, "trustme-tpmd") or tpmd) != tpmd, timeout=30,
             what="trustmed to restart trustme-tpmd")
    m = measurements(d)
    assert m["consistent"] is True and m["events"] == before["events"], m
    assert "log consistent with the PCRs" in d.cli("measurements").stdout
    # the new tpmd unsealed the device storage secret again (same boot state): keys still open
    secret_ok(d)
    d.cli("stop", "--kill", "c")
    start_encrypted(d, "c")

    d.cli("start", "late")
    after = measurements(d)
    assert len(after["events"]) == len(before["events"]) + 1, after
    last = after["events"][-1]
    assert (last["type"], last["name"]) == ("container-config", "late")
    assert after["consistent"] is True
    rep = assert_trusted(v.live(d))
    assert rep["events"] == len(after["events"])
