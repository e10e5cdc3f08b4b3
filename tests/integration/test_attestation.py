# SPDX-License-Identifier: GPL-2.0-or-later
"""Attestation end to end (docs/ATTESTATION.md), against real daemons, each with its own embedded
swtpm: a provisioned device running a container on a signed GuestOS passes trustme-verify and
`trustme attest`; each kind of forged or stale evidence fails the one check responsible for it;
the device storage secret follows the boot measurement and comes back with the recovery key; the
anchored GuestOS version outlives a restored data dir; a killed trustme-tpmd comes back with a
consistent log.

One PKI and one GuestOS build (test_guestos.Env) and one healthy device (module fixtures) serve
most tests. Forged evidence is made offline: a response saved with `trustme-verify
--save-response`, edited field by field with pb.py and checked again with `--response`, which
runs the same checks on the bytes as a live verification does."""
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

import anchors
import conftest
from conftest import BUILD, TEST_PREFIX, TRUSTMED, Daemon, process_gone, wait_for
from pb import encode, frame, parse
from test_device import SCD, TPMD, manufacturer, measurements, provision, recovery_key, secret_ok
# env: test_guestos's module fixture (one PKI, a second one, the GuestOS builds)
from test_guestos import env  # noqa: F401
from test_guestos import GUESTOS_TOOL, PKI_TOOL, create, install, logs_show, run, start_with_device
from test_storage import KDF, PIN, PUK, pin_file
from tools import tool

VERIFY = BUILD / "src/verify/trustme-verify"
BOOT, RUNTIME = 12, 11
# trustme-verify --json: always these eight, in this order
CHECKS = ["certificate chain", "AK binding", "quote signature", "nonce", "PCR digest", "event log",
          "reference values", "TPM clock"]
SEALED_ELSEWHERE = "the device storage secret is sealed to another boot state"
# Reference values that cannot be used (signer, version, validity) fail their check, and leave
# the verifier without the PCRs its policy asks for: "PCR digest" says "not checked".
REFS_UNUSABLE = ("reference values", "PCR digest")

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


def make_refs(env, out, guestos=(), configs=(), version=1, validity=(), signer="software",
              sign_args=None):
    """Signed reference values of this build's binaries, GuestOS dirs and config files: version
    VERSION, valid a year from now unless validity gives rim's --not-before/--not-after, signed
    by the PKI's signer (or with sign_args: --key KEY --cert CERT --chain PEM)."""
    args = ["rim", "--out", out, "--version", str(version), *validity,
            "--binary", TRUSTMED, "--binary", SCD, "--binary", TPMD]
    for g in guestos:
        args += ["--guestos", g]
    for kind, path in configs:
        args += ["--config", f"{kind}={path}"]
    run(PKI_TOOL, *args)
    run(PKI_TOOL, "sign", out, *(sign_args or ["--pki", env.pki, "--signer", signer]),
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
    """trustme-verify with each role's root and CA, the reference values and the CRLs of a
    device's PKI (docs/ATTESTATION.md "Trust: who may sign what")."""

    def __init__(self, env, refs, work):
        self.env = env
        self.refs = refs
        self.work = work
        self.trust = {"ak-anchor": env.cert("general-root-ca"), "device-ca": env.cert("device-ca"),
                      "rim-anchor": env.cert("root-ca"), "rim-ca": env.cert("sub-ca")}
        self.crls = env.pki / "crls.pem"
        self._n = 0

    def args(self, trust=None, crl=True):
        """The trust options, with trust's entries (a file or a list of files) replacing the
        PKI's."""
        t = {**self.trust, **(trust or {})}
        return [a for k, v in t.items() for f in (v if isinstance(v, list) else [v])
                for a in (f"--{k}", f)] + \
            (["--crl", self.crls] if crl else ["--no-crl"])

    def _run(self, *target, trust=None, refs=None, extra=(), crl=True):
        cmd = [VERIFY, *target, *self.args(trust, crl), "--reference", refs or self.refs,
               "--json", *extra]
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
        conftest.provisioned_device(d, env, "device-b", like=healthy.d)
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

    # the TPM's clock as it signed it
    assert rep["clock"]["clock"] > 0 and rep["clock"]["safe"] is True, rep
    assert f"reset count {rep['clock']['reset_count']}," in det["TPM clock"], det
    # the quote covers exactly the PCRs the reference values name, every required event is there
    assert f"PCRs {RUNTIME}, {BOOT} " in det["PCR digest"] or f"PCRs {RUNTIME}, {BOOT}" in \
        det["PCR digest"], det
    assert "the 4 required ones present (version 1," in det["reference values"], det

    # the same verdict from the device itself, through trustmed
    r = d.cli("attest", *v.args(), "--reference", v.refs, "--json")
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
        q[140] = a_quote[140]                # ak_parent_name
    # B's TPM wrote B's AK as qualifiedSigner: "AK binding" names it too (since field 140)
    det = assert_fails(healthy.verifier.offline(edit_quote(raw, as_a), nonce), "AK binding",
                       "quote signature")
    assert "another key" in det["quote signature"], det
    assert "qualifiedSigner" in det["AK binding"], det
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
    trust = {"ak-anchor": env.cert("general-root-ca", env.local_pki)}
    assert_fails(healthy.verifier.offline(raw, nonce, trust=trust), "certificate chain")


def test_revoked_ak_certificate_fails_the_chain(env, healthy, saved, tmp_path):
    """A second certificate for A's AK is revoked; the response carries it instead of the
    installed one (the chain is not covered by the quote, so this is what a device whose
    certificate was revoked sends). Revoking the installed one would break the other tests."""
    raw, nonce = saved
    csr = tmp_path / "again.csr"
    d = healthy.d
    d.cli("device", "csr", "--out", csr)
    # the Device CA encrypts it to the TPM's EK: the device decrypts it when installing it, and
    # the installed chain is put back afterwards
    installed = tmp_path / "installed.pem"
    installed.write_text(json.loads(d.cli("device", "info", "--json").stdout)["cert_chain_pem"])
    enc = tmp_path / "revoked.enc.pem"
    run(PKI_TOOL, "issue", "--pki", env.pki, "--ca", "device", "--csr", csr, "--out", enc,
        "--ek-anchor", manufacturer(pki_of(env))[1], "--passphrase-file", env.passfile)
    d.cli("device", "cert", "install", enc)
    new_chain = json.loads(d.cli("device", "info", "--json").stdout)["cert_chain_pem"]
    d.cli("device", "cert", "install", installed)
    cert = tmp_path / "revoked.pem"
    cert.write_text(new_chain.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
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


# ---- 2b. the network and the device choosing what is evidence -----------------------------------

def read_frame(sock):
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError("connection closed")
            data += chunk
        return data
    (n,) = struct.unpack(">I", exactly(4))
    return exactly(n)


class RewritingProxy:
    """The attacker on the network between trustme-verify and tpmd's attestation endpoint: each
    request's PCR selection (AttestRequest.pcrs, field 4) becomes `pcrs`, and the response's log
    keeps only the events keep(event fields) accepts, renumbered without gaps. Everything else
    (the genuine quote of the PCRs it asked for, the certificate) passes unchanged."""

    def __init__(self, target, pcrs, keep):
        host, port = target.rsplit(":", 1)
        self.target, self.pcrs, self.keep = (host, int(port)), pcrs, keep
        self.requested = []  # the selections the verifier asked for
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.address = f"127.0.0.1:{self.srv.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                client, _ = self.srv.accept()
            except OSError:
                return
            try:
                with client, socket.create_connection(self.target, timeout=10) as up:
                    req = parse(read_frame(client))
                    self.requested.append(req.get(4, []))
                    req[4] = list(self.pcrs)
                    up.sendall(frame(encode(req)))
                    top = parse(read_frame(up))
                    if 11 in top:
                        quote = parse(top[11][0])
                        kept = [e for e in quote_events(quote) if self.keep(e)]
                        for seq, e in enumerate(kept):
                            e[1] = [seq]
                        set_events(quote, kept)
                        top[11] = [encode(quote)]
                    client.sendall(frame(encode(top)))
            except (OSError, EOFError):
                pass

    def close(self):
        self.srv.close()
        self.thread.join(timeout=10)


@pytest.mark.parametrize("pcrs,keep,failing", [
    # PCR 12 quoted alone, PCR 11's events (the GuestOS and container that run) dropped: the
    # boot events replay to the genuine quote, and all of them are approved
    ([BOOT], lambda e: e[2] != [RUNTIME], {"PCR digest"}),
    # PCR 0, never extended, and no log at all: nothing to disagree with but the policy
    ([0], lambda e: False, {"PCR digest", "reference values"}),
], ids=["boot-pcr-only", "pcr0-no-log"])
def test_rewriting_proxy_cannot_choose_the_pcrs(healthy, pcrs, keep, failing):
    """The selection is the verifier's (the signed reference values' "pcrs"), and
    a quote of anything else fails "PCR digest", naming both selections; a log without the
    required boot events fails "reference values". Before, both verdicts were "trusted"."""
    d, v = healthy.d, healthy.verifier
    proxy = RewritingProxy(attest_address(d), pcrs, keep)
    try:
        det = assert_fails(v._run(proxy.address), *failing)
    finally:
        proxy.close()
    assert proxy.requested == [[RUNTIME, BOOT]], proxy.requested  # what the verifier asked for
    got = ", ".join(str(p) for p in pcrs)
    assert (f"the quote selects PCRs {got}, but {RUNTIME}, {BOOT} were requested (the reference "
            "values' policy)") in det["PCR digest"], det
    if "reference values" in failing:
        assert "4 of 4 required events are not in the quoted log: binary trustme-scd, binary " \
            "trustme-tpmd, binary trustmed, ..." in det["reference values"], det
    # the device itself, asked directly, is still trusted
    assert_trusted(v.live(d))


def test_reference_values_from_the_wrong_signer(env, healthy, saved, tmp_path):
    """Reference values count only when a certificate of the RIM-signing CA
    (--rim-ca, the Software Signing sub-CA) signed them. Signed by the GuestOS signing key (a
    codeSigning certificate under the Customer root), or by a codeSigning certificate the Device
    CA issued for a software key, they fail "reference values" even with that root trusted for
    them too."""
    raw, nonce = saved
    v = healthy.verifier
    by_guestos = make_refs(env, tmp_path / "refs-guestos.json", [healthy.gos], healthy.configs,
                           signer="guestos")
    key, csr, cert = tmp_path / "sw.key", tmp_path / "sw.csr", tmp_path / "sw-signing.pem"
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", key, "-subj", "/CN=not a release signer", "-out", csr)
    # trustme-pki certifies nothing for the Device CA without credential activation now: a
    # codeSigning certificate for a software key made with the Device CA's key directly
    ext = tmp_path / "signing.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=codeSigning\nsubjectKeyIdentifier=hash\n"
                   "authorityKeyIdentifier=keyid:always\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", env.cert("device-ca"), "-CAkey",
        env.cert("device-ca").with_suffix(".key"), "-passin", f"file:{env.passfile}", "-extfile",
        ext, "-days", "30", "-set_serial", "0x5151", "-out", cert)
    by_device_ca = make_refs(env, tmp_path / "refs-devca.json", [healthy.gos], healthy.configs,
                             sign_args=["--key", key, "--cert", cert,
                                        "--chain", env.cert("device-ca")])
    # both roots trusted for reference values, as --anchor did for everything
    both_roots = {"rim-anchor": [env.cert("root-ca"), env.cert("general-root-ca")]}
    for refs in (by_guestos, by_device_ca):
        det = assert_fails(v.offline(raw, nonce, refs=refs, trust=both_roots), *REFS_UNUSABLE)
        assert "was not issued by a CA that signs reference values (--rim-ca)" in \
            det["reference values"], det
        # with the Software Signing root as --rim-anchor, the chain does not even verify
        assert_fails(v.offline(raw, nonce, refs=refs), *REFS_UNUSABLE)
    # the PKI's own release signature still passes
    assert_trusted(v.offline(raw, nonce))


def test_ak_certificate_from_the_wrong_ca(env, healthy, saved, tmp_path):
    """Only the Device CA (--device-ca, compared whole) issues AK certificates. A
    certificate for A's own AK from the GuestOS signing CA or the Software Signing sub-CA (with
    the device profile: clientAuth) fails "certificate chain", --expect-ak or not; so does a
    "leaf" with CA:TRUE from the Device CA itself."""
    raw, nonce = saved
    v = healthy.verifier
    csr = tmp_path / "ak.csr"
    healthy.d.cli("device", "csr", "--out", csr)
    name_a = ak_name(healthy.d)
    # both roots trusted for AK certificates, as --anchor did for everything
    both_roots = {"ak-anchor": [env.cert("general-root-ca"), env.cert("root-ca")]}
    cases = []
    for ca, ca_cert in (("guestos", "guestos-ca"), ("software", "sub-ca")):
        cert = tmp_path / f"ak-by-{ca}.pem"
        run(PKI_TOOL, "issue", "--pki", env.pki, "--ca", ca, "--profile", "device", "--csr", csr,
            "--out", cert, "--passphrase-file", env.passfile)
        cases.append((cert.read_text() + env.cert(ca_cert).read_text()).encode())
    # CA:TRUE, digitalSignature, clientAuth, issued by the Device CA's own key
    ext = tmp_path / "ca-leaf.ext"
    ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,"
                   "keyCertSign\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\n"
                   "authorityKeyIdentifier=keyid:always\n")
    ca_leaf = tmp_path / "ak-ca-leaf.pem"
    run("openssl", "x509", "-req", "-in", csr, "-CA", env.cert("device-ca"), "-CAkey",
        env.cert("device-ca").with_suffix(".key"), "-passin", f"file:{env.passfile}", "-extfile",
        ext, "-days", "30", "-set_serial", "0x7e57ca1eaf", "-out", ca_leaf)
    cases.append((ca_leaf.read_text() + env.cert("device-ca").read_text()).encode())
    for i, chain in enumerate(cases):
        def with_chain(q, chain=chain):
            q[6] = [chain]
        forged = edit_quote(raw, with_chain)
        for extra in ((), ("--expect-ak", name_a)):
            det = assert_fails(v.offline(forged, nonce, trust=both_roots, extra=extra),
                               "certificate chain")
            want = "is a CA certificate (CA:TRUE)" if i == 2 else \
                "was not issued by a Device CA (--device-ca)"
            assert want in det["certificate chain"], (i, det)
    assert_trusted(v.offline(raw, nonce, trust=both_roots))


def test_old_or_expired_reference_values(env, healthy, saved, tmp_path):
    """Reference values carry a version and a validity period. --min-version
    refuses older ones; expired and not yet valid ones fail "reference values"."""
    raw, nonce = saved
    v = healthy.verifier
    old = make_refs(env, tmp_path / "refs-v1.json", [healthy.gos], healthy.configs, version=1)
    new = make_refs(env, tmp_path / "refs-v2.json", [healthy.gos], healthy.configs, version=2)
    det = assert_fails(v.offline(raw, nonce, refs=old, extra=("--min-version", "2")),
                       *REFS_UNUSABLE)
    assert "version 1 is older than --min-version 2" in det["reference values"], det
    assert_trusted(v.offline(raw, nonce, refs=new, extra=("--min-version", "2")))
    expired = make_refs(env, tmp_path / "refs-expired.json", [healthy.gos], healthy.configs,
                        validity=("--not-before", "20250101000000Z",
                                  "--not-after", "20260101000000Z"))
    det = assert_fails(v.offline(raw, nonce, refs=expired), *REFS_UNUSABLE)
    assert "version 1 expired at 2026-01-01T00:00:00Z" in det["reference values"], det
    future = make_refs(env, tmp_path / "refs-future.json", [healthy.gos], healthy.configs,
                       validity=("--not-before", "20400101000000Z",
                                 "--not-after", "20410101000000Z"))
    det = assert_fails(v.offline(raw, nonce, refs=future), *REFS_UNUSABLE)
    assert "is not valid before 2040-01-01T00:00:00Z" in det["reference values"], det
    # a version 1 file (no policy, no validity) is not accepted any more
    legacy = tmp_path / "refs-format1.json"
    doc = json.loads(Path(new).read_text())
    legacy.write_text(json.dumps({"format": doc["format"], "version": 1,
                                  "values": doc["values"]}))
    run(PKI_TOOL, "sign", legacy, "--pki", env.pki, "--signer", "software",
        "--passphrase-file", env.passfile)
    det = assert_fails(v.offline(raw, nonce, refs=legacy), *REFS_UNUSABLE)
    assert "$.version: 1, expected 2" in det["reference values"], det


def test_no_crl_is_said_explicitly(healthy, saved):
    """Without --crl nothing was checked for revocation, silently. Now that is a
    usage error unless --no-crl says so, and the report says it was not checked."""
    raw, nonce = saved
    v = healthy.verifier
    path = v.work / "no-crl.bin"
    path.write_bytes(raw)
    r = run(VERIFY, "--response", path, "--nonce", nonce, *v.args()[:-2], "--reference", v.refs,
            check=False)
    assert r.returncode == 2 and "--no-crl" in r.stderr and not r.stdout, r
    r = run(VERIFY, "--response", path, "--nonce", nonce, *v.args(), "--no-crl",
            "--reference", v.refs, check=False)
    assert r.returncode == 2 and "exclude each other" in r.stderr, r
    rep = assert_trusted(v.offline(raw, nonce, crl=False))
    assert "revocation not checked" in details(rep)["certificate chain"], rep
    # and --anchor, which trusted one root for every role, is gone with a pointer
    r = run(VERIFY, "--response", path, "--nonce", nonce, "--anchor", v.trust["ak-anchor"],
            "--reference", v.refs, "--no-crl", check=False)
    assert r.returncode == 2 and "--device-ca" in r.stderr, r


def test_reset_count_going_backwards(healthy):
    """The report carries the TPM's clockInfo; a verifier that remembers the reset
    count it saw (--last-reset) refuses a lower one."""
    d, v = healthy.d, healthy.verifier
    rep = assert_trusted(v.live(d))
    resets = rep["clock"]["reset_count"]
    assert_trusted(v.live(d, extra=("--last-reset", str(resets))))
    if resets > 0:
        rep = assert_trusted(v.live(d, extra=("--last-reset", str(resets - 1))))
        assert "the TPM was reset since" in details(rep)["TPM clock"], rep
    if resets < 2**32 - 1:
        det = assert_fails(v.live(d, extra=("--last-reset", str(resets + 1))), "TPM clock")
        assert f"lower than {resets + 1} seen last (--last-reset)" in det["TPM clock"], det


def srk_name(d, tmp):
    """The Name of the SRK trustme-tpmd keeps loaded: the transient object of the device's swtpm
    that is a restricted decryption key (tpmd keeps two, the SRK and the AK; the TCTI connects
    per command, so tpm2-tools can read them between tpmd's commands)."""
    env = {**os.environ, "TPM2TOOLS_TCTI": f"swtpm:path={d.run_dir}/tpm/swtpm.sock"}
    handles = run("tpm2_getcap", "handles-transient", env=env).stdout.split()
    names = {}
    for h in (x.strip("- ") for x in handles if x.strip("- ").startswith("0x8")):
        out = run("tpm2_readpublic", "-c", h, "-n", tmp / f"{h}.name", env=env).stdout
        attrs = next(line for line in out.splitlines() if line.strip().startswith("value:")
                     and "fixedtpm" in line)
        names[h] = ("restricted" in attrs and "decrypt" in attrs, (tmp / f"{h}.name").read_bytes())
    srk = [n for is_srk, n in names.values() if is_srk]
    assert len(srk) == 1, names
    return srk[0], [n for _, n in names.values()]


def test_qualified_signer_of_a_real_quote(healthy, saved, tmp_path):
    """On tpmd's real quote: the qualifiedSigner is the AK's qualified name under
    the SRK (docs/ATTESTATION.md), which trustme-verify checks with the SRK's Name tpmd sends
    (Quote.ak_parent_name, field 140). Another parent's name, as a forger would send with a
    made-up qualifiedSigner, fails "AK binding"; so does a quote without the field."""
    raw, nonce = saved
    v = healthy.verifier
    rep = assert_trusted(v.offline(raw, nonce))
    assert "qualifiedSigner is its qualified name" in details(rep)["AK binding"], rep
    srk, loaded = srk_name(healthy.d, tmp_path)
    quote = parse(parse(raw)[11][0])
    assert quote[140] == [srk], "tpmd sends another name than its SRK's"

    def without_parent(q):
        del q[140]
    det = assert_fails(v.offline(edit_quote(raw, without_parent), nonce), "AK binding")
    assert "does not send its AK's parent name" in det["AK binding"], det
    ak = b"\x00\x0b" + hashlib.sha256(quote[5][0]).digest()
    assert ak in loaded, "the AK is not one of the swtpm's transient objects"

    def with_parent(name):
        def edit(q):
            q[140] = [name]
        return edit_quote(raw, edit)
    rep = assert_trusted(v.offline(with_parent(srk), nonce))
    assert "qualifiedSigner is its qualified name" in details(rep)["AK binding"], rep
    det = assert_fails(v.offline(with_parent(b"\x00\x0b" + os.urandom(32)), nonce), "AK binding")
    assert "qualifiedSigner (000b" in det["AK binding"], det


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
    out = d.cli("device", "reseal", "--recovery-key-file", d.run_dir / "tpm/recovery-key").stdout
    assert "sealed to the current boot state" in out, out
    secret_ok(d)
    start_encrypted(d, "c")
    assert d.sh("c", "cat /root/kept.txt").stdout == "kept-across-reseal\n"


# ---- 4. anti-rollback ---------------------------------------------------------------------------

def test_anchor_blocks_a_downgrade_after_a_data_dir_rollback(make_daemon, env):
    d = start_with_device(make_daemon(start=False), env.device())
    v1, v2 = env.build("bb", 1), env.build("bb", 2, tree="v2")
    install(d, v1)
    create(d, "c")
    d.cli("start", "c")
    logs_show(d, "c", "marker-v1")
    d.cli("stop", "--kill", "c")  # (its init, sleep as pid 1, ignores SIGTERM)
    d.stop()
    # The copy an attacker keeps: the data dir, without the embedded TPM's state (its NV holds
    # the anchor of the anchor table; kept outside the data dir, --swtpm-state-dir; on hardware
    # it lives in the chip). cp -a: tpmd's files keep their owner (trustme-tpm).
    old = d.base / "data-with-v1"
    subprocess.run([tool("cp"), "-a", d.data_dir, old], check=True)
    shutil.rmtree(old / "tpm/swtpm", ignore_errors=True)  # (now kept outside: --swtpm-state-dir)

    d.start()
    install(d, v2)
    d.cli("start", "c")
    logs_show(d, "c", "marker-v2")
    d.cli("stop", "--kill", "c")
    d.stop()  # powers the swtpm off; its NV (the table's version and digest) stays
    current_table = anchors.save(d.data_dir / "tpm")

    # roll the data dir back, keeping the TPM
    tpm_now = d.base / "swtpm-now"
    tpm_inside = (d.data_dir / "tpm/swtpm").exists()
    if tpm_inside:
        os.rename(d.data_dir / "tpm/swtpm", tpm_now)
    shutil.rmtree(d.data_dir)
    os.rename(old, d.data_dir)
    if tpm_inside:
        os.rename(tpm_now, d.data_dir / "tpm/swtpm")
    d.start()
    store = json.loads(d.cli("guestos", "list", "--json").stdout)
    assert [(g["name"], g["version"]) for g in store] == [("bb", 1)]

    # the whole anchor table is older than the TPM anchors: nothing that depends on it goes on
    r = d.cli("start", "c", check=False)
    assert r.returncode != 0, r.stdout
    assert "TPM-anchored state is unavailable" in r.stderr and "older" in r.stderr, r.stderr
    assert d.state("c")["state"] == "stopped"
    r = install(d, v2, check=False)
    assert r.returncode != 0 and "TPM-anchored versions cannot be read" in r.stderr, r.stderr

    # the administrator puts the current table back: now the store itself is seen rolled back
    d.stop()
    anchors.restore(d.data_dir / "tpm", current_table)
    d.start()
    r = d.cli("start", "c", check=False)
    assert r.returncode != 0, r.stdout
    assert "version 2 is anchored in the TPM as installed, but the newest in the store is 1" \
        in r.stderr, r.stderr
    r = install(d, v1, check=False)
    assert r.returncode != 0 and "downgrade" in r.stderr, r.stderr

    # installing the anchored version again heals it
    install(d, v2)
    d.cli("start", "c")
    logs_show(d, "c", "marker-v2")

    # Above, v1 was refused by the store itself (it still held bb-1). With no bb in the store at
    # all, the anchor alone refuses it.
    d.cli("stop", "--kill", "c")
    d.cli("remove", "c")
    d.cli("guestos", "remove", "bb", "--version", "1")
    d.cli("guestos", "remove", "bb", "--version", "2")
    r = install(d, v1, check=False)
    assert r.returncode != 0 and "TPM anchors as installed: a downgrade is refused" in r.stderr, \
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
