# SPDX-License-Identifier: GPL-2.0-or-later
"""Fresh-eyes review of the vTPM EK certificate check (`trustme-verify --vtpm-ek`, `trustme-owner
take --ek-cert`; docs/VTPM.md "Verifying in an attestation"): certificate tricks under a vTPM
issuer (an intermediate CA it signed, a wrong EKU, a CA as the leaf, an issuer without the
policy, another container's name), the vTPM events on a PCR the verifier did not quote, and the
EK certificate of the other EK. The vTPM issuer's key is in the device's TPM, so the tricks are
made under a PKI of the test's own that the verifier is told to trust as root and Device CA:
what is tested is the verifier's logic, the only thing between such a certificate and a pass."""
import json
import time
import uuid as uuidlib

from conftest import BUILD
from test_device import run
from test_vtpm import create, start, tpm_rootfs  # noqa: F401 (fixture)
from test_vtpm_ekcert import cert, device, ek_bundles, pki, signed_refs  # noqa: F401 (fixture)

VERIFY = BUILD / "src/verify/trustme-verify"
OWNER = BUILD / "src/owner/trustme-owner"
POLICY = "2.25.76063360283489276769017081434749016287"  # the vTPM-issuer policy (TM_OID_VTPM_ISSUER)
EXT = f"""[ca]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
[vtpm]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign
certificatePolicies={POLICY}
[ek]
basicConstraints=critical,CA:FALSE
keyUsage=critical,keyAgreement
extendedKeyUsage=2.23.133.8.1
[ek_server]
basicConstraints=critical,CA:FALSE
keyUsage=critical,keyAgreement
extendedKeyUsage=serverAuth
[ek_ca]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,keyAgreement
extendedKeyUsage=2.23.133.8.1
"""


class Pki:
    """A PKI of the test's own (openssl): root -> Device CA -> vTPM issuer -> ..."""

    def __init__(self, tmp):
        self.tmp = tmp
        (tmp / "ext").write_text(EXT)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", tmp / "root.key", "-out", tmp / "root.pem", "-subj", "/CN=review root", "-days", "2",
            "-extensions", "ca", "-config", tmp / "ext")
        self.issue("devca", "root", "ca", "/CN=review Device CA")
        self.issue("issuer", "devca", "vtpm", "/CN=review vTPM issuer")
        self.issue("plainissuer", "devca", "ca", "/CN=review issuer without the policy")

    def issue(self, name, ca, ext, subj, pubkey=None):
        t = self.tmp
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            t / f"{name}.key", "-out", t / f"{name}.csr", "-subj", subj)
        force = ["-force_pubkey", pubkey] if pubkey else []
        run("openssl", "x509", "-req", "-in", t / f"{name}.csr", *force, "-CA", t / f"{ca}.pem", "-CAkey",
            t / f"{ca}.key", "-days", "1", "-extfile", t / "ext", "-extensions", ext, "-out", t / f"{name}.pem")
        return t / f"{name}.pem"

    def bundle(self, *names):
        out = self.tmp / f"bundle-{'-'.join(names)}.pem"
        out.write_text("".join((self.tmp / f"{n}.pem").read_text() for n in names))
        return out


def test_vtpm_ek_certificate_tricks(make_daemon, pki, tpm_rootfs, tmp_path):  # noqa: F811
    d = device(make_daemon, pki, tmp_path / "d", allow_unsigned=True)
    create(d, "v", tpm_rootfs)
    start(d, "v")
    uuid = d.state("v")["uuid"]
    refs = signed_refs(pki, d, tmp_path / "refs.json")
    real = ek_bundles(d, "v", tmp_path)
    ecc_pub = tmp_path / "ecc.pub"
    run("openssl", "x509", "-in", real["ecc"], "-noout", "-pubkey", "-out", ecc_pub)
    own = Pki(tmp_path)
    anchors, devcas = tmp_path / "anchors.pem", tmp_path / "devcas.pem"
    anchors.write_text(cert(pki, "general-root-ca").read_text() + (tmp_path / "root.pem").read_text())
    devcas.write_text(cert(pki, "device-ca").read_text() + (tmp_path / "devca.pem").read_text())
    addr = json.loads(d.cli("device", "info", "--json").stdout)["attest_address"]

    def verify(bundle, *extra):
        r = run(VERIFY, addr, "--ak-anchor", anchors, "--device-ca", devcas, "--rim-anchor", cert(pki, "root-ca"),
                "--rim-ca", cert(pki, "sub-ca"), "--no-crl", "--reference", refs, "--vtpm-ek", bundle, *extra,
                check=False)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("vTPM EK")]
        assert len(lines) == 1, r.stdout + r.stderr
        return r.returncode, lines[0]

    # Control: a certificate for the real EK under the test's vTPM issuer passes, so each refusal
    # below is the verifier's rule at work, not a broken PKI.
    own.issue("good", "issuer", "ek", f"/CN={uuid}/O=trustme container", ecc_pub)
    rc, ln = verify(own.bundle("good", "issuer", "devca"))
    assert rc == 0 and " ok " in ln, ln
    # An intermediate CA (with the vTPM-issuer policy) signed by the vTPM issuer, the EK under it.
    own.issue("inter", "issuer", "vtpm", "/CN=review intermediate under the vTPM issuer")
    own.issue("deep", "inter", "ek", f"/CN={uuid}/O=trustme container", ecc_pub)
    rc, ln = verify(own.bundle("deep", "inter", "issuer", "devca"))
    assert rc == 1 and "FAIL" in ln and "was not certified by a Device CA" in ln, ln
    # The EK certificate with another EKU, or a CA as the EK certificate.
    own.issue("server", "issuer", "ek_server", f"/CN={uuid}/O=trustme container", ecc_pub)
    rc, ln = verify(own.bundle("server", "issuer", "devca"))
    assert rc == 1 and "not an EK certificate" in ln, ln
    own.issue("leafca", "issuer", "ek_ca", f"/CN={uuid}/O=trustme container", ecc_pub)
    rc, ln = verify(own.bundle("leafca", "issuer", "devca"))
    assert rc == 1 and "not an EK certificate" in ln, ln
    # Issued by a CA of the Device CA that is no vTPM issuer (no policy), or by the Device CA.
    own.issue("nopolicy", "plainissuer", "ek", f"/CN={uuid}/O=trustme container", ecc_pub)
    rc, ln = verify(own.bundle("nopolicy", "plainissuer", "devca"))
    assert rc == 1 and "not issued by a vTPM issuer" in ln, ln
    own.issue("bydevca", "devca", "ek", f"/CN={uuid}/O=trustme container", ecc_pub)
    rc, ln = verify(own.bundle("bydevca", "devca"))
    assert rc == 1 and "not issued by a vTPM issuer" in ln, ln
    # The vTPM issuer's own certificate as the leaf.
    rc, ln = verify(own.bundle("issuer", "devca"))
    assert rc == 1 and "FAIL" in ln, ln
    # The real EK under another container's name (a UUID this device never logged).
    other = str(uuidlib.uuid4())
    own.issue("otheruuid", "issuer", "ek", f"/CN={other}/O=trustme container", ecc_pub)
    rc, ln = verify(own.bundle("otheruuid", "issuer", "devca"))
    assert rc == 1 and "names no vTPM EK" in ln, ln
    # A CN that is the UUID with more after it, or upper case.
    own.issue("longcn", "issuer", "ek", f"/CN={uuid}x/O=trustme container", ecc_pub)
    rc, ln = verify(own.bundle("longcn", "issuer", "devca"))
    assert rc == 1 and "CN is not a UUID" in ln, ln
    # The genuine bundle, with the verifier quoting only PCR 12: the vtpm-ek events (PCR 11) are
    # not evidence then.
    rc, ln = verify(real["ecc"], "--pcr", "12")
    assert rc == 1 and "names no vTPM EK" in ln, ln
    rc, ln = verify(real["ecc"])
    assert rc == 0 and " ok " in ln, ln

    # trustme-owner take uses the container's ECC EK: the RSA EK's certificate (genuine, the same
    # container's) vouches for another key and must not pass for it.
    log = (d.run_dir / "vtpm" / uuid / "pub/event.log").read_text().splitlines()
    crefs = signed_refs(pki, d, tmp_path / "crefs.json", [dict(zip(("pcr", "type", "sha256", "name"),
                                                                   ln.split(" ", 3))) for ln in log], (11,))

    def take(bundle):
        auth = tmp_path / f"auth-{time.monotonic_ns()}.json"
        r = run(OWNER, "take", addr, "--container", uuid, "--ak-anchor", cert(pki, "general-root-ca"),
                "--device-ca", cert(pki, "device-ca"), "--rim-anchor", cert(pki, "root-ca"), "--rim-ca",
                cert(pki, "sub-ca"), "--no-crl", "--reference", refs, "--container-reference", crefs,
                "--auth-out", auth, "--ek-cert", bundle, check=False)
        step = [ln for ln in r.stdout.splitlines() if ln.startswith("vTPM EK certificate")]
        return r.returncode, step, auth

    rc, step, auth = take(real["rsa"])
    assert rc == 1 and step and "FAIL" in step[0] and not auth.exists(), (rc, step)
    assert "ECC" in step[0] or "ecc" in step[0], step
    rc, step, auth = take(real["ecc"])
    assert rc == 0 and step and " ok " in step[0] and auth.exists(), (rc, step)
    d.cli("stop", "v")
