# SPDX-License-Identifier: GPL-2.0-or-later
"""vTPM EK certificates (docs/VTPM.md "EK certificates") with the real swtpm, tpmd and tpm2-tools:
the device's vTPM-issuing key is certified by the Device CA after the TPM's AK vouches for it, and
every vTPM's EKs get certificates at the TCG NV indices that name the container and its GuestOS
and chain to the demo PKI; a vTPM of another device does not chain to this device's issuer."""
import json
import time
import os
import tempfile
from pathlib import Path

import pytest

from conftest import BUILD
from test_device import PKI_TOOL, provision, run, secret_ok
from test_vtpm import KDF, PIN, create, pin_file, start, tpm_rootfs, vtpm_pid  # noqa: F401 (fixture)
from conftest import wait_for

GUESTOS_TOOL = BUILD / "src/tools/guestos/trustme-guestos"
PASSPHRASE = "vtpm-ek-passphrase"
NV = {"rsa": "0x01c00002", "ecc": "0x01c0000a"}


@pytest.fixture(scope="module")
def pki(test_root):
    work = Path(tempfile.mkdtemp(prefix="vtpm-ek-", dir=test_root))
    passfile = work / "pass"
    passfile.write_text(PASSPHRASE + "\n")
    passfile.chmod(0o600)
    run(PKI_TOOL, "init", work / "pki", "--passphrase-file", passfile)
    return {"dir": work / "pki", "pass": passfile, "work": work}


@pytest.fixture(scope="module")
def gos(pki, tpm_rootfs):
    """A signed GuestOS of the tpm2-tools root."""
    out = pki["work"] / "gos"
    out.mkdir(exist_ok=True)
    path = dict(os.environ, PATH=f"{PKI_TOOL.parent}:{os.environ['PATH']}")
    built = run(GUESTOS_TOOL, "build", tpm_rootfs, "--name", "tpmos", "--version", "3", "--out", out,
                "--init", "/bin/sh", "--arg", "-c", "--arg", "trap 'exit 0' TERM; sleep 1000000 & wait",
                "--pki", pki["dir"], "--signer", "guestos", "--passphrase-file", pki["pass"], env=path)
    return Path(built.stdout.strip())


def cert(pki, name):
    return next(p for p in pki["dir"].rglob(f"{name}.pem") if p.parent.name != "crl")


def device(make_daemon, pki, tmp, allow_unsigned=False):
    """A daemon trusting the PKI, its AK enrolled, and its vTPM issuer certified."""
    d = make_daemon(extra_args=KDF, start=False)
    d.data_dir.mkdir(parents=True, exist_ok=True)
    conf = {"trust": {
        "software_signing_root": str(cert(pki, "root-ca")), "general_root": str(cert(pki, "general-root-ca")),
        "guestos_cas": [str(cert(pki, "guestos-ca"))]}}
    if allow_unsigned:  # development containers (a plain rootfs), as the vTPM tests use
        conf["policy"] = {"allow_unsigned": True}
    (d.data_dir / "device.json").write_text(json.dumps(conf))
    d.start()
    secret_ok(d)
    tmp.mkdir(parents=True, exist_ok=True)
    # Before the AK is enrolled the Device CA would have nothing to check the issuer against.
    r = d.cli("device", "csr", "--vtpm-issuer", "--out", tmp / "early.csr", check=False)
    assert r.returncode != 0 and "not enrolled" in r.stderr
    provision(d, pki, tmp)
    d.cli("device", "csr", "--vtpm-issuer", "--out", tmp / "issuer.csr")
    run(PKI_TOOL, "issue", "--pki", pki["dir"], "--ca", "device", "--profile", "vtpm-issuer", "--csr",
        tmp / "issuer.csr", "--out", tmp / "issuer.pem", "--passphrase-file", pki["pass"])
    d.cli("device", "cert", "install", tmp / "issuer.pem", "--chain", cert(pki, "device-ca"))
    info = json.loads(d.cli("device", "info", "--json").stdout)
    assert "BEGIN CERTIFICATE" in info["vtpm_issuer_chain_pem"]
    assert "vTPM issuer:     CN=trustme vTPM issuer" in d.cli("device", "info").stdout
    return d


def nvread(d, name, kind):
    """The DER at the EK certificate's TCG index, read inside the container with tpm2_nvread."""
    out = d.sh(name, f"tpm2_nvread {NV[kind]} -o /tmp/ek.der >/dev/null && od -An -v -tx1 /tmp/ek.der").stdout
    return bytes.fromhex("".join(out.split()))


def openssl_verify(pki, issuer, leaf):
    return run("openssl", "verify", "-CAfile", cert(pki, "general-root-ca"), "-untrusted", cert(pki, "device-ca"),
               "-untrusted", issuer, leaf, check=False)


def test_vtpm_ek_certificates_chain_to_the_device_and_the_pki(make_daemon, pki, gos, tmp_path):
    d = device(make_daemon, pki, tmp_path / "d1")
    issuer = tmp_path / "d1/issuer.pem"
    text = run("openssl", "x509", "-in", issuer, "-noout", "-text").stdout
    assert "CA:TRUE, pathlen:0" in text and "Certificate Sign" in text
    assert "2.25.76063360283489276769017081434749016287" in text
    d.cli("ca", "register", cert(pki, "guestos-ca"))
    d.cli("guestos", "install", gos, timeout=120)
    cfg = d.configs / "g.json"
    cfg.write_text(json.dumps({"name": "g", "guestos": {"name": "tpmos"}, "token": {"type": "soft"},
                               "data_size_mb": 16, "vtpm": True, "env": {"LD_LIBRARY_PATH": "/lib/x86_64-linux-gnu"}}))
    d.cli("create", cfg)
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, "12345678"), "g")
    start(d, "g")
    uuid = d.state("g")["uuid"]
    info = json.loads(d.cli("vtpm", "info", "--json", "g").stdout)
    eks = {e["kind"]: e for e in info["eks"]}
    for kind in ("rsa", "ecc"):
        der = nvread(d, "g", kind)
        leaf = tmp_path / f"ek-{kind}.der"
        leaf.write_bytes(der)
        pem = tmp_path / f"ek-{kind}.pem"
        run("openssl", "x509", "-inform", "DER", "-in", leaf, "-out", pem)
        # Root -> Device CA -> this device's vTPM issuer -> the EK certificate.
        r = openssl_verify(pki, issuer, pem)
        assert r.returncode == 0 and ": OK" in r.stdout, r.stdout + r.stderr
        text = run("openssl", "x509", "-in", pem, "-noout", "-text", "-nameopt", "RFC2253").stdout
        assert f"CN={uuid},OU=GuestOS tpmos-3,O=trustme container" in text
        assert f"URI:urn:uuid:{uuid}" in text
        assert ("Key Encipherment" if kind == "rsa" else "Key Agreement") in text
        assert "2.23.133.8.1" in text and "CA:FALSE" in text
        # It certifies the EK the guest finds at the TCG handle, and trustmed's record is it.
        assert eks[kind]["cert_pem"].strip() == pem.read_text().strip()
        handle = "0x81010001" if kind == "rsa" else "0x81010002"
        d.sh("g", f"tpm2_readpublic -c {handle} -f pem -o /tmp/ek.pem >/dev/null")
        guest_pub = d.sh("g", "cat /tmp/ek.pem").stdout
        cert_pub = run("openssl", "x509", "-in", pem, "-noout", "-pubkey").stdout
        assert guest_pub.strip() == cert_pub.strip()
        # The guest can read but not rewrite or delete it (platform-written, write-locked).
        assert d.sh("g", f"echo x > /tmp/x && tpm2_nvwrite {NV[kind]} -C o -i /tmp/x", check=False).returncode != 0
        assert d.sh("g", f"tpm2_nvundefine {NV[kind]} -C o", check=False).returncode != 0
        assert nvread(d, "g", kind) == der
    shown = d.cli("vtpm", "info", "g").stdout
    assert f"cert:    CN={uuid},OU=GuestOS tpmos-3,O=trustme container" in shown
    assert "issuer:  CN=trustme vTPM issuer" in shown
    # The same certificates after a stop and a start (nothing issued again).
    d.cli("stop", "g")
    wait_for(lambda: not vtpm_pid(d, "g"), what="the vTPM to stop")
    start(d, "g")
    assert json.loads(d.cli("vtpm", "info", "--json", "g").stdout)["eks"] == info["eks"]
    assert nvread(d, "g", "ecc") == (tmp_path / "ek-ecc.der").read_bytes()
    # trustme-pki checks the chain too, and names the container.
    r = run(PKI_TOOL, "verify-ek", tmp_path / "ek-ecc.pem", "--anchor", cert(pki, "general-root-ca"),
            "--chain", info_chain(d, tmp_path, pki))
    assert f"container {uuid}" in r.stdout and "GuestOS tpmos-3" in r.stdout

    # Another device (its own trustmed and swtpm, enrolled under the same Device CA): its vTPM's
    # EK certificates chain to its own issuer, never to this device's.
    d2 = device(make_daemon, pki, tmp_path / "d2")
    d2.cli("ca", "register", cert(pki, "guestos-ca"))
    d2.cli("guestos", "install", gos, timeout=120)
    d2.cli("create", cfg)
    d2.cli("change-pin", "--pin-file", pin_file(d2, PIN, "12345678"), "g")
    start(d2, "g")
    other = tmp_path / "other-ecc.pem"
    (tmp_path / "other-ecc.der").write_bytes(nvread(d2, "g", "ecc"))
    run("openssl", "x509", "-inform", "DER", "-in", tmp_path / "other-ecc.der", "-out", other)
    assert openssl_verify(pki, tmp_path / "d2/issuer.pem", other).returncode == 0
    r = openssl_verify(pki, issuer, other)
    assert r.returncode != 0, r.stdout
    r = run(PKI_TOOL, "verify-ek", other, "--anchor", cert(pki, "general-root-ca"), "--chain",
            info_chain(d, tmp_path, pki), check=False)
    assert r.returncode == 1
    d2.cli("stop", "g")
    d.cli("stop", "g")


def info_chain(d, tmp, pki):
    """The device's vTPM issuer chain as `trustme device info` shows it."""
    path = tmp / f"issuer-chain-{d.base.name}.pem"
    path.write_text(json.loads(d.cli("device", "info", "--json").stdout)["vtpm_issuer_chain_pem"])
    return path


def test_device_ca_refuses_what_the_ak_did_not_certify(make_daemon, pki, tmp_path):
    """The Device CA issues a vTPM issuer only for a key the device's AK certified for that very
    request: an ordinary request, or one whose parts were swapped, is refused."""
    out = tmp_path / "x.pem"
    key, csr = tmp_path / "k.pem", tmp_path / "plain.csr"
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
        "-out", csr, "-subj", "/CN=not in a TPM")
    args = ["issue", "--pki", pki["dir"], "--ca", "device", "--profile", "vtpm-issuer", "--out", out,
            "--passphrase-file", pki["pass"]]
    r = run(PKI_TOOL, *args, "--csr", csr, check=False)
    assert r.returncode == 1 and "not a vTPM-issuer request" in r.stderr
    d = device(make_daemon, pki, tmp_path / "d")
    bundle = (tmp_path / "d/issuer.csr").read_text()
    # Another request (an ordinary key's) with the certification of the TPM's key.
    swapped = tmp_path / "swapped.csr"
    swapped.write_text(csr.read_text() + bundle.split("-----END CERTIFICATE REQUEST-----\n", 1)[1])
    r = run(PKI_TOOL, *args, "--csr", swapped, check=False)
    assert r.returncode == 1 and "the request's self-signature" not in r.stderr, r.stderr
    assert "not made for this request" in r.stderr, r.stderr
    # The bundle checked against another PKI's Device CA: its AK certificate is not that CA's.
    other = tmp_path / "other-pki"
    run(PKI_TOOL, "init", other, "--passphrase-file", pki["pass"])
    r = run(PKI_TOOL, "issue", "--pki", other, "--ca", "device", "--profile", "vtpm-issuer", "--out", out,
            "--passphrase-file", pki["pass"], "--csr", tmp_path / "d/issuer.csr", check=False)
    assert r.returncode == 1 and "not issued by this Device CA" in r.stderr, r.stderr
    assert not out.exists()


VERIFY = BUILD / "src/verify/trustme-verify"


def signed_refs(pki, d, out, events=None, pcrs=(11, 12)):
    """Reference values of everything the device measured (its vTPMs' EKs included), or of
    events, signed."""
    now = time.time()
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    if events is None:
        events = json.loads(d.cli("measurements", "--json").stdout)["events"]
    out.write_text(json.dumps({
        "format": "trustme-reference-values", "version": 2, "rim_version": 1, "not_before": stamp(now - 60),
        "not_after": stamp(now + 3600), "pcrs": list(pcrs), "required": [],
        "values": [{"type": e["type"], "name": e["name"], "sha256": e["sha256"]} for e in events]}))
    run(PKI_TOOL, "sign", out, "--pki", pki["dir"], "--signer", "software", "--passphrase-file", pki["pass"])
    return out


def verify_vtpm(d, pki, refs, *bundles):
    """trustme-verify against the device with --vtpm-ek for each bundle: (exit status, the
    "vTPM EK" lines)."""
    addr = json.loads(d.cli("device", "info", "--json").stdout)["attest_address"]
    r = run(VERIFY, addr, "--ak-anchor", cert(pki, "general-root-ca"), "--device-ca", cert(pki, "device-ca"),
            "--rim-anchor", cert(pki, "root-ca"), "--rim-ca", cert(pki, "sub-ca"), "--no-crl", "--reference",
            refs, *[a for b in bundles for a in ("--vtpm-ek", b)], check=False)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("vTPM EK")]
    assert len(lines) == len(bundles), r.stdout + r.stderr
    return r.returncode, lines


def ek_bundles(d, name, tmp):
    """Each EK certificate of the container's vTPM followed by the device's vTPM issuer chain."""
    chain = json.loads(d.cli("device", "info", "--json").stdout)["vtpm_issuer_chain_pem"]
    out = {}
    for e in json.loads(d.cli("vtpm", "info", "--json", name).stdout)["eks"]:
        out[e["kind"]] = tmp / f"{name}-{e['kind']}-{time.monotonic_ns()}.pem"
        out[e["kind"]].write_text(e["cert_pem"].strip() + "\n" + chain)
    return out


def forge(tmp, bundle, uuid):
    """An EK certificate for the same EK key and container, from a CA the attacker made itself
    (vTPM-issuer policy and all), as root on the device or the network could offer."""
    ca_key, ca, key, csr, leaf, pub = (tmp / n for n in ("fca.key", "fca.pem", "f.key", "f.csr", "f.pem", "ek.pub"))
    ext = tmp / "f.ext"
    ext.write_text("[ca]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign\n"
                   "certificatePolicies=2.25.76063360283489276769017081434749016287\n"
                   "[ek]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,keyAgreement\n"
                   "extendedKeyUsage=2.23.133.8.1\n")
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
        ca_key, "-out", ca, "-subj", "/CN=trustme vTPM issuer forged", "-days", "2", "-extensions", "ca",
        "-config", ext)
    run("openssl", "x509", "-in", bundle, "-noout", "-pubkey", "-out", pub)
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
        "-out", csr, "-subj", f"/CN={uuid}/OU=GuestOS none/O=trustme container")
    run("openssl", "x509", "-req", "-in", csr, "-force_pubkey", pub, "-CA", ca, "-CAkey", ca_key, "-days", "1",
        "-extfile", ext, "-extensions", "ek", "-out", leaf)
    out = tmp / "forged-bundle.pem"
    out.write_text(leaf.read_text() + ca.read_text())
    return out


def test_verifier_checks_the_vtpm_ek_chain(make_daemon, pki, tpm_rootfs, tmp_path):  # noqa: F811
    """trustme-verify --vtpm-ek: a vTPM's EK certificate passes only when it chains through this
    PKI's Device CA and a vTPM issuer to the verifier's root and certifies the EK the attested
    device's quoted log names last for that container."""
    d = device(make_daemon, pki, tmp_path / "d", allow_unsigned=True)
    create(d, "v", tpm_rootfs)
    start(d, "v")
    uuid = d.state("v")["uuid"]
    refs = signed_refs(pki, d, tmp_path / "refs.json")
    old = ek_bundles(d, "v", tmp_path)
    rc, lines = verify_vtpm(d, pki, refs, old["ecc"], old["rsa"])
    assert rc == 0 and all(" ok " in ln and f"container {uuid}" in ln for ln in lines), lines
    # A certificate for the very same EK from a CA outside the PKI: refused.
    rc, (ln,) = verify_vtpm(d, pki, refs, forge(tmp_path, old["ecc"], uuid))
    assert rc == 1 and "FAIL" in ln and "does not chain" in ln, ln
    # The bundle without the Device CA cannot reach the root either.
    alone = tmp_path / "alone.pem"
    alone.write_text(old["ecc"].read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
    rc, (ln,) = verify_vtpm(d, pki, refs, alone)
    assert rc == 1 and "does not chain" in ln, ln
    # After a reset the container has new EKs: the old certificate still chains, but its key is
    # not the EK the device logged last for the container.
    d.cli("stop", "v")
    wait_for(lambda: not vtpm_pid(d, "v"), what="the vTPM to stop")
    d.cli("vtpm", "reset", "v")
    start(d, "v")
    refs = signed_refs(pki, d, tmp_path / "refs2.json")
    rc, (ln,) = verify_vtpm(d, pki, refs, old["ecc"])
    assert rc == 1 and "not the EK the device logged last" in ln and "reset since" in ln, ln
    new = ek_bundles(d, "v", tmp_path)
    rc, lines = verify_vtpm(d, pki, refs, *new.values())
    assert rc == 0, lines
    # trustme-owner take --ek-cert: the old certificate stops it before any command reaches the
    # vTPM; the current one passes and the take goes on to the end.
    log = (d.run_dir / "vtpm" / uuid / "pub/event.log").read_text().splitlines()
    crefs = signed_refs(pki, d, tmp_path / "crefs.json", [dict(zip(("pcr", "type", "sha256", "name"),
                                                                   ln.split(" ", 3))) for ln in log], (11,))
    addr = json.loads(d.cli("device", "info", "--json").stdout)["attest_address"]

    def take(bundle, container=uuid):
        auth = tmp_path / f"auth-{time.monotonic_ns()}.json"
        r = run(BUILD / "src/owner/trustme-owner", "take", addr, "--container", container, "--ak-anchor",
                cert(pki, "general-root-ca"), "--device-ca", cert(pki, "device-ca"), "--rim-anchor",
                cert(pki, "root-ca"), "--rim-ca", cert(pki, "sub-ca"), "--no-crl", "--reference", refs,
                "--container-reference", crefs, "--auth-out", auth, "--ek-cert", bundle, check=False)
        step = [ln for ln in r.stdout.splitlines() if ln.startswith("vTPM EK certificate")]
        return r.returncode, step, auth

    rc, step, auth = take(old["ecc"])
    assert rc == 1 and step and "FAIL" in step[0] and "reset since" in step[0] and not auth.exists(), step
    rc, step, auth = take(new["ecc"])
    assert rc == 0 and step and " ok " in step[0] and auth.exists(), step
    d.cli("stop", "v")
