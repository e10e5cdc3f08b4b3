# SPDX-License-Identifier: GPL-2.0-or-later
"""trustme-pki (docs/PKI.md): the development PKI, checked by parsing what it writes with the
openssl CLI (never by trusting the tool's own output), and its signatures checked with the
daemon's verifier (trustme-pki verify links src/scd/verify.c) and with `openssl dgst`.

Every test works in its own temporary directory; SoftHSM tests get a private SOFTHSM2_CONF and
token directory. All are removed afterwards, also on failure."""
import datetime
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BUILD, TEST_PREFIX
from tools import tool

PKI = BUILD / "src/tools/pki/trustme-pki"
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
PASS = "correct horse battery staple"
PIN = "123456"

CERTS = {
    # name: (path, issuer, kind)
    "root-ca": ("software-signing/root-ca", None, "root"),
    "sub-ca": ("software-signing/sub-ca", "root-ca", "sub"),
    "signing": ("software-signing/signing", "sub-ca", "signing"),
    "general-root-ca": ("customer/general-root-ca", None, "root"),
    "guestos-ca": ("customer/guestos-ca", "general-root-ca", "sub"),
    "guestos-signing": ("customer/guestos-signing", "guestos-ca", "signing"),
    "device-ca": ("customer/device-ca", "general-root-ca", "sub"),
}
CAS = ["root-ca", "sub-ca", "general-root-ca", "guestos-ca", "device-ca"]
ALGS = ["ecdsa-p256", "rsa-pss-3072"]
SIGNERS = {"software": ("signing", "sub-ca", "root-ca"),
           "guestos": ("guestos-signing", "guestos-ca", "general-root-ca")}


# ---- helpers ---------------------------------------------------------------------------------

def run_pki(*args, ok=True, env=None, timeout=120):
    p = subprocess.run([str(PKI), *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=timeout, stdin=subprocess.DEVNULL)
    if ok is True:
        assert p.returncode == 0, f"trustme-pki {args} failed ({p.returncode}):\n{p.stderr}"
    elif ok is not None:
        assert p.returncode == ok, f"trustme-pki {args}: exit {p.returncode}, want {ok}:\n" \
                                   f"{p.stdout}{p.stderr}"
    return p


def openssl(*args, ok=True):
    p = subprocess.run([tool("openssl"), *map(str, args)], capture_output=True, text=True)
    if ok:
        assert p.returncode == 0, f"openssl {args}:\n{p.stdout}{p.stderr}"
    return p


def cert_text(path):
    return openssl("x509", "-in", path, "-noout", "-text").stdout


def ext_block(text, name):
    """The lines of extension `name` in `openssl x509 -text`: (critical, value)."""
    m = re.search(rf"^\s+X509v3 {re.escape(name)}:( critical)?\s*\n((?:\s{{16,}}.*\n)+)", text,
                  re.M)
    if not m:
        return None
    return bool(m.group(1)), " ".join(l.strip() for l in m.group(2).splitlines())


def dates(path):
    out = openssl("x509", "-in", path, "-noout", "-startdate", "-enddate",
                  "-dateopt", "iso_8601").stdout
    d = {}
    for line in out.splitlines():
        k, v = line.split("=", 1)
        d[k] = datetime.datetime.strptime(v.strip(), "%Y-%m-%d %H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
    return d["notBefore"], d["notAfter"]


def serial(path):
    return openssl("x509", "-in", path, "-noout", "-serial").stdout.strip().split("=")[1]


def pem_blocks(path, label="CERTIFICATE"):
    text = Path(path).read_text()
    return re.findall(rf"-----BEGIN {label}-----\n.*?-----END {label}-----\n", text, re.S)


def make_csr(d, name, extra=()):
    key, csr = d / f"{name}.key", d / f"{name}.csr"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-subj", f"/O=test/CN={name}", "-out", csr, *extra)
    return key, csr


# ---- AK enrollment without a TPM: a software "EK" and an independent ActivateCredential ------------

def _pem_blocks(data):
    import base64
    out = []
    for m in re.finditer(rb"-----BEGIN ([A-Z0-9 ]+)-----\n(.*?)-----END \1-----", data, re.S):
        out.append((m.group(1).decode(), base64.b64decode(m.group(2))))
    return out


def _pem(label, der):
    import base64
    b = base64.encodebytes(der).decode().replace("\n", "")
    return (f"-----BEGIN {label}-----\n" + "\n".join(b[i:i + 64] for i in range(0, len(b), 64)) +
            f"\n-----END {label}-----\n").encode()


def device_bundle(d, name):
    """What `trustme device csr` makes, with software keys: a CSR, the AK's TPMT_PUBLIC (claiming
    a restricted fixedTPM signing key) and an EK certificate from a test manufacturer CA whose
    EK private key the test holds (to activate the credential itself). Returns (csr key,
    bundle, manufacturer cert, EK private key, AK name)."""
    import hashlib
    import struct
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    key, csr = make_csr(d, name)
    mkey, mcert = d / "m.key", d / "m.pem"
    if not mcert.exists():
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", mkey, "-out", mcert, "-subj", "/CN=test manufacturer", "-days", "30",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ek_key = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives import serialization
    (d / f"{name}.ek.pub").write_bytes(ek_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    run_pki("ek-cert", "--ek", d / f"{name}.ek.pub", "--key", mkey, "--cert", mcert, "--out",
            d / f"{name}.ek.pem")
    nums = load_pem_private_key(key.read_bytes(), None).public_key().public_numbers()
    tpmt = struct.pack(">HHIHHHHHHH", 0x0023, 0x000B, 0x00050472, 0, 0x0010, 0x0018, 0x000B,
                       0x0003, 0x0010, 32) + nums.x.to_bytes(32, "big") + struct.pack(">H", 32) + \
        nums.y.to_bytes(32, "big")
    bundle = d / f"{name}.bundle"
    bundle.write_bytes(csr.read_bytes() + _pem("TRUSTME AK PUBLIC", tpmt) +
                       (d / f"{name}.ek.pem").read_bytes())
    return key, bundle, mcert, ek_key, b"\x00\x0b" + hashlib.sha256(tpmt).digest()


def activate(path, ek_key, name):
    """TPM2_ActivateCredential's math (Part 1 §24, Annex C.6.4), written from the spec apart
    from trustme-pki's: the certificate (PEM) in trustme-pki's encrypted output."""
    import hashlib
    import hmac
    import struct
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    blocks = dict(_pem_blocks(Path(path).read_bytes()))
    blob, secret, enc = (blocks["TRUSTME CREDENTIAL BLOB"], blocks["TRUSTME ENCRYPTED SECRET"],
                         blocks["TRUSTME ENCRYPTED CERTIFICATE"])
    assert len(secret) == 70 and struct.unpack(">HH", secret[:4]) == (68, 32) \
        and secret[36:38] == b"\x00\x20"
    x, y = secret[4:36], secret[38:70]
    peer = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                         ec.SECP256R1()).public_key()
    z = ek_key.exchange(ec.ECDH(), peer)
    ekx = ek_key.public_key().public_numbers().x.to_bytes(32, "big")
    seed = hashlib.sha256(struct.pack(">I", 1) + z + b"IDENTITY\0" + x + ekx).digest()

    def kdfa(label, context, bits):
        return hmac.new(seed, struct.pack(">I", 1) + label + b"\0" + context + struct.pack(">I", bits),
                        hashlib.sha256).digest()[:bits // 8]
    (size,) = struct.unpack(">H", blob[:2])
    assert size == len(blob) - 2 and blob[2:4] == b"\x00\x20"
    outer, enc_identity = blob[4:36], blob[36:]
    hkey = kdfa(b"INTEGRITY", b"", 256)
    assert hmac.compare_digest(outer, hmac.new(hkey, enc_identity + name, hashlib.sha256).digest()), \
        "integrity HMAC mismatch"
    d = Cipher(algorithms.AES(kdfa(b"STORAGE", name, 128)), modes.CFB(bytes(16))).decryptor()
    plain = d.update(enc_identity) + d.finalize()
    cred = plain[2:2 + struct.unpack(">H", plain[:2])[0]]
    der = AESGCM(cred).decrypt(enc[:12], enc[12:], b"trustme-ak-certificate-v1")
    return _pem("CERTIFICATE", der)


def issue_device(pki, d, name, pf, extra=()):
    """A device certificate through enrollment, decrypted in software; returns (csr key, cert)."""
    key, bundle, mcert, ek_key, ak_name = device_bundle(d, name)
    enc = d / f"{name}.enc.pem"
    run_pki("issue", "--pki", pki, "--ca", "device", "--csr", bundle, "--out", enc,
            "--ek-anchor", mcert, "--passphrase-file", pf, *extra)
    cert = d / f"{name}.pem"
    cert.write_bytes(activate(enc, ek_key, ak_name))
    return key, cert


@pytest.fixture
def tmp():
    d = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}-pki-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def pass_file(d, text=PASS):
    f = d / "pass"
    f.write_text(text + "\n")
    return f


def make_pki(d, alg="ecdsa-p256", name="pki"):
    run_pki("init", d / name, "--algorithm", alg, "--passphrase-file", pass_file(d))
    return d / name


@pytest.fixture(scope="module", params=ALGS)
def built(request):
    """One PKI per algorithm for the read-only checks (RSA key generation is slow)."""
    d = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}-pki-"))
    try:
        yield request.param, make_pki(d, request.param)
    finally:
        shutil.rmtree(d, ignore_errors=True)


class SoftHSM:
    def __init__(self, base, label="pki-test"):
        self.dir = base / "softhsm"
        (self.dir / "tokens").mkdir(parents=True)
        self.conf = self.dir / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {self.dir / 'tokens'}\n"
                             "objectstore.backend = file\nlog.level = ERROR\n")
        self.env = dict(os.environ, SOFTHSM2_CONF=str(self.conf))
        self.label = label
        subprocess.run([tool("softhsm2-util"), "--init-token", "--free", "--label", label,
                        "--pin", PIN, "--so-pin", "87654321"], env=self.env, check=True,
                       capture_output=True)
        self.pin = self.dir / "pin"
        self.pin.write_text(PIN + "\n")

    def objects(self, kind="privkey"):
        out = subprocess.run([tool("pkcs11-tool"), "--module", SOFTHSM, "--token-label", self.label,
                              "--login", "--pin", PIN, "--list-objects", "--type", kind],
                             env=self.env, capture_output=True, text=True, check=True).stdout
        return re.findall(r"^\s*label:\s*(\S+)", out, re.M), out


@pytest.fixture
def softhsm(tmp):
    hsm = SoftHSM(tmp)
    yield hsm  # the token dir is inside tmp, removed with it


# ---- usage -----------------------------------------------------------------------------------

def test_help_and_usage_errors(tmp):
    out = run_pki("--help").stdout
    for verb in ("init", "sign", "verify", "issue", "revoke", "crl"):
        assert f"\n  {verb} " in out
    run_pki("frobnicate", ok=2)
    run_pki("init", ok=2)
    run_pki("init", tmp / "x", "--algorithm", "dsa", ok=2)
    run_pki("init", tmp / "x", "--passphrase-file", "a", "--pkcs11", "pkcs11:token=t", ok=2)
    run_pki("sign", tmp / "f", "--pki", tmp, ok=2)
    run_pki("verify", tmp / "f", ok=2)
    assert not (tmp / "x").exists()


# ---- init: layout, certificates, CRLs ------------------------------------------------------

def test_layout_and_key_files(tmp):
    pki = make_pki(tmp)
    files = sorted(str(p.relative_to(pki)) for p in pki.rglob("*") if p.is_file())
    expected = sorted([f"{CERTS[n][0]}.pem" for n in CERTS] + [f"{CERTS[n][0]}.key" for n in CERTS]
                      + [f"crl/{ca}.pem" for ca in CAS] + ["crls.pem", "pki.json"])
    assert files == expected
    assert [p.name for p in tmp.iterdir() if p.name.startswith(".")] == []  # no temp dir left
    for n, (path, _, _) in CERTS.items():
        key = pki / f"{path}.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
        # scrypt + AES-256-CBC PKCS#8, and the key belongs to the certificate
        parsed = openssl("asn1parse", "-in", key).stdout
        assert ":scrypt" in parsed and ":aes-256-cbc" in parsed
        pub_key = openssl("pkey", "-in", key, "-passin", f"file:{pass_file(tmp)}",
                          "-pubout").stdout
        pub_cert = openssl("x509", "-in", pki / f"{path}.pem", "-noout", "-pubkey").stdout
        assert pub_key == pub_cert
        assert openssl("pkey", "-in", key, "-passin", "pass:wrong", "-noout",
                       ok=False).returncode != 0
    meta = json.loads((pki / "pki.json").read_text())
    assert meta["format"] == 1 and meta["algorithm"] == "ecdsa-p256"
    assert "pkcs11_module" not in meta
    for n, (path, issuer, _) in CERTS.items():
        assert meta["keys"][n]["key"] == f"{path}.key"
        assert meta["keys"][n]["cert"] == f"{path}.pem"
        if issuer:
            issued = [e["serial"] for e in meta["cas"][issuer]["issued"]]
            assert serial(pki / f"{path}.pem") in issued
    assert sorted(meta["cas"]) == sorted(CAS)
    for ca in CAS:
        assert meta["cas"][ca]["crl_number"] == 1 and meta["cas"][ca]["revoked"] == []


def test_certificate_profiles(built):
    alg, pki = built
    skis = {}
    now = datetime.datetime.now(datetime.timezone.utc)
    for n, (path, issuer, kind) in CERTS.items():
        pem = pki / f"{path}.pem"
        text = cert_text(pem)
        assert "Version: 3 (0x2)" in text
        bc, ku, eku = (ext_block(text, e) for e in ("Basic Constraints", "Key Usage",
                                                     "Extended Key Usage"))
        if kind in ("root", "sub"):
            # The customer hierarchy has one level more: general root -> Device CA -> a device's
            # vTPM issuer -> vTPM EK certificates (docs/VTPM.md).
            depth = {"general-root-ca": 2, "device-ca": 1}.get(n, 1 if kind == "root" else 0)
            assert bc == (True, f"CA:TRUE, pathlen:{depth}"), n
            assert ku == (True, "Certificate Sign, CRL Sign"), n
            assert eku is None, n
        else:
            assert bc == (True, "CA:FALSE"), n
            assert ku == (True, "Digital Signature"), n
            assert eku == (False, "Code Signing"), n
        ski = ext_block(text, "Subject Key Identifier")
        assert ski and not ski[0]
        skis[n] = ski[1]
        aki = ext_block(text, "Authority Key Identifier")
        if kind == "root":
            assert aki is None
            assert "Subject Alternative Name" not in text
        # 16 random bytes, positive: 32 hex digits, first below 8
        s = serial(pem)
        assert len(s) == 32 and int(s[0], 16) < 8, s
        nb, na = dates(pem)
        assert abs((nb - now).total_seconds()) < 600
        assert abs((na - nb).days - 3650) <= 1
        if alg == "ecdsa-p256":
            assert "Public Key Algorithm: id-ecPublicKey" in text and "NIST CURVE: P-256" in text
            assert text.count("Signature Algorithm: ecdsa-with-SHA256") == 2
        else:
            assert "Public-Key: (3072 bit)" in text
            assert text.count("Signature Algorithm: rsassaPss") == 2
            assert "Hash Algorithm: sha256" in text and "Mask Algorithm: mgf1 with sha256" in text
            assert "Salt Length: 0x20" in text
    for n, (path, issuer, kind) in CERTS.items():
        text = cert_text(pki / f"{path}.pem")
        if issuer:
            assert ext_block(text, "Authority Key Identifier")[1] == skis[issuer], n
            subj = openssl("x509", "-in", pki / f"{CERTS[issuer][0]}.pem", "-noout",
                           "-subject").stdout.split("=", 1)[1]
            iss = openssl("x509", "-in", pki / f"{path}.pem", "-noout",
                          "-issuer").stdout.split("=", 1)[1]
            assert subj == iss
    assert len(set(skis.values())) == len(skis)


def test_chains_verify_with_openssl(built):
    alg, pki = built
    for n, (path, issuer, kind) in CERTS.items():
        chain = [n]
        while CERTS[chain[-1]][1]:
            chain.append(CERTS[chain[-1]][1])
        root = pki / f"{CERTS[chain[-1]][0]}.pem"
        args = ["verify", "-x509_strict", "-CAfile", root, "-crl_check_all", "-CRLfile",
                pki / "crls.pem"]
        if len(chain) > 2:
            args += ["-untrusted", pki / f"{CERTS[chain[1]][0]}.pem"]
        out = openssl(*args, pki / f"{path}.pem").stdout
        assert out.strip().endswith(": OK"), (n, out)
    # the two hierarchies are separate: a GuestOS signer does not chain to the software root
    p = openssl("verify", "-CAfile", pki / "software-signing/root-ca.pem", "-untrusted",
                pki / "customer/guestos-ca.pem", pki / "customer/guestos-signing.pem", ok=False)
    assert p.returncode != 0


def test_crls_at_init(built):
    alg, pki = built
    bundle = pem_blocks(pki / "crls.pem", "X509 CRL")
    assert len(bundle) == 5
    for ca in CAS:
        crl = pki / "crl" / f"{ca}.pem"
        assert crl.read_text() in bundle
        out = openssl("crl", "-in", crl, "-CAfile", pki / f"{CERTS[ca][0]}.pem", "-noout",
                      "-text")
        assert "verify OK" in out.stderr + out.stdout
        text = out.stdout
        assert "Version 2 (0x1)" in text and "No Revoked Certificates." in text
        assert re.search(r"X509v3 CRL Number: \n\s+1\n", text)
        aki = re.search(r"X509v3 Authority Key Identifier: \n\s+(\S+)", text).group(1)
        assert aki == ext_block(cert_text(pki / f"{CERTS[ca][0]}.pem"),
                                "Subject Key Identifier")[1]
        last = openssl("crl", "-in", crl, "-noout", "-lastupdate", "-nextupdate").stdout
        lu, nu = (datetime.datetime.strptime(l.split("=", 1)[1], "%b %d %H:%M:%S %Y GMT")
                  for l in last.splitlines())
        assert (nu - lu).days == 30


# ---- sign / verify ---------------------------------------------------------------------------

@pytest.mark.parametrize("signer", sorted(SIGNERS))
def test_sign_verify_round_trip(built, signer, tmp):
    alg, pki = built
    leaf, inter, root = SIGNERS[signer]
    data = tmp / "image.bin"
    data.write_bytes(os.urandom(300_000))
    run_pki("sign", data, "--pki", pki, "--signer", signer, "--passphrase-file", pass_file(tmp))
    sig, chain = Path(f"{data}.sig"), Path(f"{data}.chain.pem")
    # the chain: signer first, then the intermediate, never the root
    blocks = pem_blocks(chain)
    assert blocks == [(pki / f"{CERTS[leaf][0]}.pem").read_text(),
                      (pki / f"{CERTS[inter][0]}.pem").read_text()]
    # openssl agrees on the format: DER ECDSA, or RSA-PSS with a 32-byte salt
    pub = tmp / "pub.pem"
    pub.write_text(openssl("x509", "-in", pki / f"{CERTS[leaf][0]}.pem", "-noout",
                           "-pubkey").stdout)
    extra = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"] \
        if alg == "rsa-pss-3072" else []
    openssl("dgst", "-sha256", *extra, "-verify", pub, "-signature", sig, data)
    if alg == "ecdsa-p256":
        assert openssl("asn1parse", "-inform", "DER", "-in", sig).stdout.count("INTEGER") == 2
    else:
        assert len(sig.read_bytes()) == 384
        # the salt is 32 bytes: a verifier insisting on 20 fails
        p = openssl("dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt",
                    "rsa_pss_saltlen:20", "-verify", pub, "-signature", sig, data, ok=False)
        assert p.returncode != 0
    anchor = pki / f"{CERTS[root][0]}.pem"
    out = run_pki("verify", data, "--anchor", anchor, "--crl", pki / "crls.pem",
                  "--eku", "codeSigning").stdout
    assert f"signer: CN=trustme {'Software' if signer == 'software' else 'GuestOS'} Signing" in out
    assert "anchor: CN=" + ("trustme Software Signing Root CA" if signer == "software"
                            else "trustme General Root CA") in out
    # the other hierarchy's root is no anchor for it
    other = pki / f"{CERTS[SIGNERS['guestos' if signer == 'software' else 'software'][2]][0]}.pem"
    p = run_pki("verify", data, "--anchor", other, ok=1)
    assert "certificate chain" in p.stderr
    # one changed byte
    raw = bytearray(data.read_bytes())
    raw[123_456] ^= 0x01
    data.write_bytes(bytes(raw))
    p = run_pki("verify", data, "--anchor", anchor, ok=1)
    assert "signature does not verify" in p.stderr
    raw[123_456] ^= 0x01
    data.write_bytes(bytes(raw))
    run_pki("verify", data, "--anchor", anchor)
    # one changed byte of the signature
    s = bytearray(sig.read_bytes())
    s[-3] ^= 0x40
    sig.write_bytes(bytes(s))
    run_pki("verify", data, "--anchor", anchor, ok=1)


def test_verify_never_trusts_the_chain_file(built, tmp):
    alg, pki = built
    data = tmp / "f"
    data.write_bytes(b"hello")
    run_pki("sign", data, "--pki", pki, "--signer", "software", "--passphrase-file",
            pass_file(tmp))
    chain = Path(f"{data}.chain.pem")
    # a chain file carrying its own root, verified against an unrelated anchor: refused
    chain.write_text(chain.read_text() + (pki / "software-signing/root-ca.pem").read_text())
    run_pki("verify", data, "--anchor", pki / "customer/general-root-ca.pem", ok=1)
    # the EKU is enforced
    p = run_pki("verify", data, "--anchor", pki / "software-signing/root-ca.pem", "--eku",
                "clientAuth", ok=1)
    assert "extendedKeyUsage lacks" in p.stderr


def test_sign_with_key_cert_chain_drops_root(built, tmp):
    alg, pki = built
    data = tmp / "f"
    data.write_bytes(b"x" * 10)
    full = tmp / "full-chain.pem"
    full.write_text((pki / "customer/guestos-ca.pem").read_text() +
                    (pki / "customer/general-root-ca.pem").read_text())
    run_pki("sign", data, "--key", pki / "customer/guestos-signing.key", "--cert",
            pki / "customer/guestos-signing.pem", "--chain", full, "--passphrase-file",
            pass_file(tmp))
    assert pem_blocks(f"{data}.chain.pem") == [
        (pki / "customer/guestos-signing.pem").read_text(),
        (pki / "customer/guestos-ca.pem").read_text()]
    run_pki("verify", data, "--anchor", pki / "customer/general-root-ca.pem")
    # a key that does not belong to the certificate is refused before anything is written
    os.unlink(f"{data}.sig")
    p = run_pki("sign", data, "--key", pki / "customer/device-ca.key", "--cert",
                pki / "customer/guestos-signing.pem", "--passphrase-file", pass_file(tmp), ok=1)
    assert "does not belong" in p.stderr
    assert not Path(f"{data}.sig").exists()


def test_wrong_and_empty_passphrase(tmp):
    pki = make_pki(tmp)
    data = tmp / "f"
    data.write_bytes(b"data")
    wrong = tmp / "wrong"
    wrong.write_text("not the passphrase\n")
    p = run_pki("sign", data, "--pki", pki, "--signer", "software", "--passphrase-file", wrong,
                ok=1)
    assert "wrong passphrase" in p.stderr
    assert not Path(f"{data}.sig").exists()
    key, bundle, mcert, _, _ = device_bundle(tmp, "d")
    run_pki("issue", "--pki", pki, "--ca", "device", "--csr", bundle, "--ek-anchor", mcert,
            "--out", tmp / "d.pem", "--passphrase-file", wrong, ok=1)
    assert not (tmp / "d.pem").exists()
    empty = tmp / "empty"
    empty.write_text("\n")
    p = run_pki("init", tmp / "other", "--passphrase-file", empty, ok=1)
    assert "empty" in p.stderr and not (tmp / "other").exists()
    # no passphrase file and no terminal: refused, not an unencrypted key
    p = subprocess.run([tool("setsid"), str(PKI), "init", str(tmp / "other")], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 1 and not (tmp / "other").exists()


def test_ek_certificate_must_be_an_endorsement_keys(tmp):
    """Found in review: the Device CA accepted as "EK certificate" any certificate chaining
    to an --ek-anchor: a signing leaf (or a CA) under the manufacturer root whose key its holder
    has in software could activate the credential and so get an AK certificate for a software
    key. Now the EK certificate must be an end entity with keyUsage keyAgreement, no signing.
    And no EK certificate was ever checked for revocation: --ek-crl."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    pki = make_pki(tmp)
    pf = tmp / "pass"
    key, bundle, mcert, ek_key, ak_name = device_bundle(tmp, "d")
    mkey = load_pem_private_key((tmp / "m.key").read_bytes(), None)
    issuer = x509.load_pem_x509_certificate(mcert.read_bytes()).subject
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(ku, ca):
        b = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=not an EK"))
             .issuer_name(issuer).public_key(ek_key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(ek_key.public_key()), False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 mkey.public_key()), False))
        if ku:
            b = b.add_extension(x509.KeyUsage(**{**dict.fromkeys(
                ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                 "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
                False), **ku}), critical=True)
        return b.sign(mkey, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    head = bundle.read_bytes().split(b"-----BEGIN CERTIFICATE-----")[0]
    for name, pem, why in (
            ("signing", cert({"digital_signature": True}, False), "keyUsage"),
            ("both", cert({"digital_signature": True, "key_agreement": True}, False), "keyUsage"),
            ("none", cert(None, False), "keyUsage"),
            ("ca", cert({"key_agreement": True, "key_cert_sign": True}, True), "CA certificate")):
        forged = tmp / f"{name}.bundle"
        forged.write_bytes(head + pem)
        p = run_pki("issue", "--pki", pki, "--ca", "device", "--csr", forged, "--out",
                    tmp / f"{name}.enc", "--ek-anchor", mcert, "--passphrase-file", pf, ok=1)
        assert why in p.stderr, (name, p.stderr)
        assert not (tmp / f"{name}.enc").exists()
    # an AK with a policy (a software key loaded public only into the TPM needs one for the
    # ADMIN role of ActivateCredential) is refused, with adminWithPolicy or not
    import hashlib
    import struct
    blocks = _pem_blocks(bundle.read_bytes())
    tpmt = dict(blocks)["TRUSTME AK PUBLIC"]
    policy = hashlib.sha256(b"PolicyCommandCode(ActivateCredential)").digest()
    for attrs in (0x00050472, 0x000504f2):
        dressed = struct.pack(">HHIH", 0x0023, 0x000B, attrs, 32) + policy + tpmt[10:]
        forged = tmp / f"policy-{attrs:x}.bundle"
        forged.write_bytes(b"".join(_pem(label, dressed if label == "TRUSTME AK PUBLIC" else der)
                                    for label, der in blocks))
        p = run_pki("issue", "--pki", pki, "--ca", "device", "--csr", forged, "--out",
                    tmp / "policy.enc", "--ek-anchor", mcert, "--passphrase-file", pf, ok=1)
        assert "authPolicy" in p.stderr and not (tmp / "policy.enc").exists(), p.stderr
    # the manufacturer's EK certificate (keyAgreement) still enrolls
    issue_device(pki, tmp, "ok", pf)
    # --ek-crl: a revoked EK certificate is refused, one the CRL does not name enrolls
    ek_cert = x509.load_pem_x509_certificate((tmp / "d.ek.pem").read_bytes())

    def crl(revoked):
        b = (x509.CertificateRevocationListBuilder().issuer_name(issuer)
             .last_update(now - datetime.timedelta(minutes=1))
             .next_update(now + datetime.timedelta(days=1))
             .add_extension(x509.CRLNumber(1), False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 mkey.public_key()), False))
        for serial in revoked:
            b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                          .revocation_date(now - datetime.timedelta(minutes=1))
                                          .build())
        path = tmp / f"crl-{len(revoked)}.pem"
        path.write_bytes(b.sign(mkey, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        return path
    p = run_pki("issue", "--pki", pki, "--ca", "device", "--csr", bundle, "--out",
                tmp / "revoked.enc", "--ek-anchor", mcert, "--ek-crl", crl([ek_cert.serial_number]),
                "--passphrase-file", pf, ok=1)
    assert "revoked" in p.stderr and not (tmp / "revoked.enc").exists(), p.stderr
    run_pki("issue", "--pki", pki, "--ca", "device", "--csr", bundle, "--out", tmp / "fine.enc",
            "--ek-anchor", mcert, "--ek-crl", crl([]), "--passphrase-file", pf)
    p = run_pki("issue", "--pki", pki, "--ca", "device", "--csr", bundle, "--out",
                tmp / "nocrl.enc", "--ek-anchor", mcert, "--ek-crl", mcert,
                "--passphrase-file", pf, ok=1)
    assert "no PEM CRL" in p.stderr


# ---- revoke / crl ----------------------------------------------------------------------------

def test_revoked_signer_fails_with_crl(tmp):
    pki = make_pki(tmp)
    data = tmp / "f"
    data.write_bytes(b"payload")
    pf = pass_file(tmp)
    run_pki("sign", data, "--pki", pki, "--signer", "software", "--passphrase-file", pf)
    anchor = pki / "software-signing/root-ca.pem"
    run_pki("verify", data, "--anchor", anchor, "--crl", pki / "crls.pem")
    run_pki("revoke", "--pki", pki, pki / "software-signing/signing.pem", "--reason",
            "keyCompromise", "--passphrase-file", pf)
    p = run_pki("verify", data, "--anchor", anchor, "--crl", pki / "crls.pem", ok=1)
    assert "certificate revoked" in p.stderr
    # per-CA files work the same (every CA of the chain needs its CRL)
    run_pki("verify", data, "--anchor", anchor, "--crl", pki / "crl/root-ca.pem", "--crl",
            pki / "crl/sub-ca.pem", ok=1)
    run_pki("verify", data, "--anchor", anchor)  # without CRLs it passes
    text = openssl("crl", "-in", pki / "crl/sub-ca.pem", "-noout", "-text").stdout
    assert serial(pki / "software-signing/signing.pem") in text.replace(":", "")
    assert "Key Compromise" in text and re.search(r"CRL Number: \n\s+2\n", text)
    p = openssl("verify", "-crl_check", "-CAfile", anchor, "-untrusted",
                pki / "software-signing/sub-ca.pem", "-CRLfile", pki / "crls.pem",
                pki / "software-signing/signing.pem", ok=False)
    assert p.returncode != 0 and "revoked" in p.stdout + p.stderr
    meta = json.loads((pki / "pki.json").read_text())
    rev = meta["cas"]["sub-ca"]["revoked"]
    assert [r["serial"] for r in rev] == [serial(pki / "software-signing/signing.pem")]
    assert rev[0]["reason"] == "keyCompromise" and meta["cas"]["sub-ca"]["crl_number"] == 2
    # twice is an error; an unrelated certificate is not this PKI's
    run_pki("revoke", "--pki", pki, pki / "software-signing/signing.pem", "--passphrase-file",
            pf, ok=1)
    other = make_pki(tmp, name="other")
    p = run_pki("revoke", "--pki", pki, other / "customer/guestos-signing.pem",
                "--passphrase-file", pf, ok=1)
    assert "not issued by any CA" in p.stderr
    # the GuestOS hierarchy is unaffected
    run_pki("sign", data, "--pki", pki, "--signer", "guestos", "--passphrase-file", pf)
    run_pki("verify", data, "--anchor", pki / "customer/general-root-ca.pem", "--crl",
            pki / "crls.pem")


def test_crl_renewal(tmp):
    pki = make_pki(tmp)
    pf = pass_file(tmp)
    run_pki("crl", "--pki", pki, "--ca", "device", "--days", "7", "--passphrase-file", pf)
    meta = json.loads((pki / "pki.json").read_text())
    assert meta["cas"]["device-ca"]["crl_number"] == 2 and meta["cas"]["sub-ca"]["crl_number"] == 1
    text = openssl("crl", "-in", pki / "crl/device-ca.pem", "-noout", "-text").stdout
    assert re.search(r"CRL Number: \n\s+2\n", text)
    assert (pki / "crl/device-ca.pem").read_text() in (pki / "crls.pem").read_text()
    run_pki("crl", "--pki", pki, "--passphrase-file", pf)
    meta = json.loads((pki / "pki.json").read_text())
    assert [meta["cas"][c]["crl_number"] for c in CAS] == [2, 2, 2, 2, 3]
    run_pki("crl", "--pki", pki, "--ca", "signing", "--passphrase-file", pf, ok=2)


# ---- issue -----------------------------------------------------------------------------------

def test_issue_expired_and_not_yet_valid(tmp):
    pki = make_pki(tmp)
    pf = pass_file(tmp)
    anchor, sub = pki / "software-signing/root-ca.pem", pki / "software-signing/sub-ca.pem"
    data = tmp / "f"
    data.write_bytes(b"image")
    for name, nb, na, why in (("old", "20200101000000Z", "20210101000000Z", "expired"),
                              ("future", "20990101000000Z", "21000101000000Z", "not yet valid")):
        key, csr = make_csr(tmp, name)
        cert = tmp / f"{name}.pem"
        run_pki("issue", "--pki", pki, "--ca", "software", "--csr", csr, "--out", cert,
                "--not-before", nb, "--not-after", na, "--passphrase-file", pf)
        b, a = dates(cert)
        assert b.strftime("%Y%m%d%H%M%SZ") == nb and a.strftime("%Y%m%d%H%M%SZ") == na
        p = openssl("verify", "-CAfile", anchor, "-untrusted", sub, cert, ok=False)
        assert p.returncode != 0 and f"certificate is {why}" in p.stdout + p.stderr \
            or f"certificate has {why}" in p.stdout + p.stderr
        # the tool signs with it (tests need such signatures); the verifier refuses them
        run_pki("sign", data, "--key", key, "--cert", cert, "--chain", sub)
        p = run_pki("verify", data, "--anchor", anchor, ok=1)
        assert why in p.stderr
    # validity options are checked
    run_pki("issue", "--pki", pki, "--ca", "software", "--csr", csr, "--out", tmp / "x.pem",
            "--not-before", "2020-01-01", "--passphrase-file", pf, ok=2)
    run_pki("issue", "--pki", pki, "--ca", "software", "--csr", csr, "--out", tmp / "x.pem",
            "--not-before", "20210101000000Z", "--not-after", "20200101000000Z",
            "--passphrase-file", pf, ok=2)


def test_issue_extra_signer_and_device(tmp):
    pki = make_pki(tmp)
    pf = pass_file(tmp)
    # a second GuestOS signer; its CSR asks for CA rights and clientAuth, which it does not get
    key, csr = make_csr(tmp, "signer2", ["-addext", "basicConstraints=critical,CA:TRUE",
                                         "-addext", "extendedKeyUsage=clientAuth"])
    cert = tmp / "signer2.pem"
    run_pki("issue", "--pki", pki, "--ca", "guestos", "--csr", csr, "--out", cert, "--days", "10",
            "--passphrase-file", pf)
    text = cert_text(cert)
    assert ext_block(text, "Basic Constraints") == (True, "CA:FALSE")
    assert ext_block(text, "Extended Key Usage") == (False, "Code Signing")
    assert "Subject: O = test, CN = signer2" in text
    b, a = dates(cert)
    assert (a - b).days == 10
    assert ext_block(text, "Authority Key Identifier")[1] == \
        ext_block(cert_text(pki / "customer/guestos-ca.pem"), "Subject Key Identifier")[1]
    data = tmp / "f"
    data.write_bytes(b"guest")
    run_pki("sign", data, "--key", key, "--cert", cert, "--chain", pki / "customer/guestos-ca.pem")
    run_pki("verify", data, "--anchor", pki / "customer/general-root-ca.pem", "--crl",
            pki / "crls.pem")
    meta = json.loads((pki / "pki.json").read_text())
    assert serial(cert) in [e["serial"] for e in meta["cas"]["guestos-ca"]["issued"]]

    # a device certificate: clientAuth, no codeSigning
    key, dev = issue_device(pki, tmp, "device1", pf)
    csr = tmp / "device1.csr"
    text = cert_text(dev)
    assert ext_block(text, "Extended Key Usage") == (False, "TLS Web Client Authentication")
    assert "Code Signing" not in text
    assert ext_block(text, "Key Usage") == (True, "Digital Signature")
    assert ext_block(text, "Basic Constraints") == (True, "CA:FALSE")
    b, a = dates(dev)
    assert (a - b).days == 365
    out = openssl("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile",
                  pki / "customer/general-root-ca.pem", "-untrusted",
                  pki / "customer/device-ca.pem", dev).stdout
    assert out.strip().endswith(": OK")
    run_pki("sign", data, "--key", key, "--cert", dev, "--chain", pki / "customer/device-ca.pem")
    p = run_pki("verify", data, "--anchor", pki / "customer/general-root-ca.pem", ok=1)
    assert "lacks Code Signing" in p.stderr
    run_pki("verify", data, "--anchor", pki / "customer/general-root-ca.pem", "--eku", "clientAuth")

    # a CSR whose self-signature is broken is refused
    bad = tmp / "bad.csr"
    der = bytearray(subprocess.run([tool("openssl"), "req", "-in", str(csr), "-outform", "DER"],
                                   capture_output=True, check=True).stdout)
    der[-5] ^= 0x10
    (tmp / "bad.der").write_bytes(bytes(der))
    openssl("req", "-inform", "DER", "-in", tmp / "bad.der", "-out", bad)
    p = run_pki("issue", "--pki", pki, "--ca", "software", "--csr", bad, "--out", tmp / "bad.pem",
                "--passphrase-file", pf, ok=1)
    assert "self-signature" in p.stderr and not (tmp / "bad.pem").exists()
    bundle = tmp / "bad.bundle"
    bundle.write_bytes(bad.read_bytes() + (tmp / "device1.bundle").read_bytes().split(
        b"-----END CERTIFICATE REQUEST-----\n")[1])
    p = run_pki("issue", "--pki", pki, "--ca", "device", "--csr", bundle, "--out", tmp / "bad.pem",
                "--ek-anchor", tmp / "m.pem", "--passphrase-file", pf, ok=1)
    assert "self-signature" in p.stderr and not (tmp / "bad.pem").exists()
    # an ordinary CSR is no proof of a TPM: the Device CA refuses it (docs/ATTESTATION.md "Enrollment")
    p = run_pki("issue", "--pki", pki, "--ca", "device", "--csr", csr, "--out", tmp / "plain.pem",
                "--ek-anchor", tmp / "m.pem", "--passphrase-file", pf, ok=1)
    assert "no proof that its key lives in a TPM" in p.stderr and not (tmp / "plain.pem").exists()
    p = run_pki("issue", "--pki", pki, "--ca", "device", "--csr", csr, "--out", tmp / "plain.pem",
                "--passphrase-file", pf, ok=2)
    assert "--ek-anchor" in p.stderr


# ---- init is atomic --------------------------------------------------------------------------

def tree(d):
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(d.rglob("*"))}


def test_init_refuses_existing_dir(tmp):
    existing = tmp / "pki"
    (existing / "customer").mkdir(parents=True)
    (existing / "customer" / "keep.txt").write_text("mine")
    before = tree(existing)
    p = run_pki("init", existing, "--passphrase-file", pass_file(tmp), ok=1)
    assert "exists" in p.stderr
    assert tree(existing) == before
    empty = tmp / "empty"
    empty.mkdir()
    run_pki("init", empty, "--passphrase-file", pass_file(tmp), ok=1)
    assert list(empty.iterdir()) == []
    # a PKI made once is not remade
    pki = make_pki(tmp, name="real")
    before = tree(pki)
    run_pki("init", pki, "--passphrase-file", pass_file(tmp), ok=1)
    run_pki("init", f"{pki}/", "--passphrase-file", pass_file(tmp), ok=1)
    assert tree(pki) == before
    assert sorted(p.name for p in tmp.iterdir()) == ["empty", "pass", "pki", "real"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_killed_init_leaves_no_dir(tmp, sig):
    target = tmp / "pki"
    proc = subprocess.Popen([str(PKI), "init", str(target), "--algorithm", "rsa-pss-3072",
                             "--passphrase-file", str(pass_file(tmp))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait until it is building (its temporary directory exists), then stop it
    deadline = time.time() + 10
    while time.time() < deadline and not any(p.name.startswith(".pki.tmp-")
                                             for p in tmp.iterdir()):
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("init finished before the signal arrived")
    assert not target.exists()
    left = [p.name for p in tmp.iterdir() if p.name != "pass"]
    if sig == signal.SIGKILL:
        assert all(n.startswith(".pki.tmp-") for n in left)  # only the temp dir, never DIR
    else:
        assert proc.returncode == 1 and b"interrupted" in err
        assert left == []


def test_failed_init_leaves_nothing(tmp):
    """A file system that fills up half way: the partial PKI is removed."""
    fs = tmp / "small"
    fs.mkdir()
    subprocess.run([tool("mount"), "-t", "tmpfs", "-o", "size=48k", f"{TEST_PREFIX}-pki", str(fs)],
                   check=True)
    try:
        p = run_pki("init", fs / "pki", "--passphrase-file", pass_file(tmp), ok=1)
        assert "No space left" in p.stderr
        assert list(fs.iterdir()) == []
    finally:
        subprocess.run([tool("umount"), str(fs)], check=True)


# ---- keys on a PKCS#11 token (SoftHSM2) -------------------------------------------------------

@pytest.mark.parametrize("alg", ALGS)
def test_softhsm_init_sign_issue_revoke(tmp, softhsm, alg):
    env = softhsm.env
    pki = tmp / "pki"
    run_pki("init", pki, "--algorithm", alg, "--pkcs11", f"pkcs11:token={softhsm.label}",
            "--pin-file", softhsm.pin, env=env)
    assert list(pki.rglob("*.key")) == []
    meta = json.loads((pki / "pki.json").read_text())
    assert meta["pkcs11_module"] == SOFTHSM and meta["algorithm"] == alg
    labels, listing = softhsm.objects()
    assert len(labels) == 7
    # generated on the token, never extractable
    assert listing.count("never extractable") == 7 and listing.count("local") >= 7
    for n in CERTS:
        uri = meta["keys"][n]["key"]
        assert uri.startswith(f"pkcs11:token={softhsm.label};id=%") and uri.endswith(
            ";type=private") and ";object=" in uri
        assert uri.split(";object=")[1].split(";")[0] in labels
    for n, (path, issuer, kind) in CERTS.items():
        text = cert_text(pki / f"{path}.pem")
        assert ("rsassaPss" if alg == "rsa-pss-3072" else "ecdsa-with-SHA256") in text
    for signer, (leaf, inter, root) in SIGNERS.items():
        out = openssl("verify", "-x509_strict", "-crl_check_all", "-CRLfile", pki / "crls.pem",
                      "-CAfile", pki / f"{CERTS[root][0]}.pem", "-untrusted",
                      pki / f"{CERTS[inter][0]}.pem", pki / f"{CERTS[leaf][0]}.pem").stdout
        assert out.strip().endswith(": OK")

    data = tmp / "f"
    data.write_bytes(os.urandom(5000))
    run_pki("sign", data, "--pki", pki, "--signer", "guestos", "--pin-file", softhsm.pin, env=env)
    anchor = pki / "customer/general-root-ca.pem"
    run_pki("verify", data, "--anchor", anchor, "--crl", pki / "crls.pem")
    # by URI, with the module in the URI
    uri = meta["keys"]["signing"]["key"] + f"?module-path={SOFTHSM}"
    run_pki("sign", data, "--key", uri, "--cert", pki / "software-signing/signing.pem",
            "--chain", pki / "software-signing/sub-ca.pem", "--pin-file", softhsm.pin, env=env)
    run_pki("verify", data, "--anchor", pki / "software-signing/root-ca.pem", "--crl",
            pki / "crls.pem")

    key, csr = make_csr(tmp, "signer2")
    cert = tmp / "signer2.pem"
    run_pki("issue", "--pki", pki, "--ca", "guestos", "--csr", csr, "--out", cert, "--pin-file",
            softhsm.pin, env=env)
    run_pki("sign", data, "--key", key, "--cert", cert, "--chain", pki / "customer/guestos-ca.pem")
    run_pki("verify", data, "--anchor", anchor, "--crl", pki / "crls.pem")
    run_pki("revoke", "--pki", pki, cert, "--pin-file", softhsm.pin, env=env)
    run_pki("verify", data, "--anchor", anchor, "--crl", pki / "crls.pem", ok=1)
    run_pki("verify", data, "--anchor", anchor)
    out = openssl("crl", "-in", pki / "crl/guestos-ca.pem", "-CAfile",
                  pki / "customer/guestos-ca.pem", "-noout", "-text")
    assert "verify OK" in out.stdout + out.stderr

    # a wrong PIN is refused and signs nothing
    bad = tmp / "badpin"
    bad.write_text("000000\n")
    os.unlink(f"{data}.sig")
    p = run_pki("sign", data, "--pki", pki, "--signer", "guestos", "--pin-file", bad, env=env,
                ok=1)
    assert "wrong PIN" in p.stderr and not Path(f"{data}.sig").exists()
    # a second PKI on the same token does not disturb the first
    run_pki("init", tmp / "pki2", "--algorithm", alg, "--pkcs11",
            f"pkcs11:token={softhsm.label}", "--pin-file", softhsm.pin, env=env)
    assert len(softhsm.objects()[0]) == 14
    run_pki("sign", data, "--pki", pki, "--signer", "guestos", "--pin-file", softhsm.pin, env=env)
    run_pki("verify", data, "--anchor", anchor)


def test_softhsm_failed_init_leaves_no_keys(tmp, softhsm):
    env = softhsm.env
    uri = f"pkcs11:token={softhsm.label}"
    # DIR exists: refused before the token is touched
    (tmp / "exists").mkdir()
    run_pki("init", tmp / "exists", "--pkcs11", uri, "--pin-file", softhsm.pin, env=env, ok=1)
    # wrong PIN, unknown token
    bad = tmp / "badpin"
    bad.write_text("000000\n")
    p = run_pki("init", tmp / "a", "--pkcs11", uri, "--pin-file", bad, env=env, ok=1)
    assert "wrong PIN" in p.stderr
    p = run_pki("init", tmp / "a", "--pkcs11", "pkcs11:token=nosuch", "--pin-file", softhsm.pin,
                env=env, ok=1)
    assert "no PKCS#11 token" in p.stderr
    # the disk fills up half way: the keys already made on the token are destroyed
    fs = tmp / "small"
    fs.mkdir()
    subprocess.run([tool("mount"), "-t", "tmpfs", "-o", "size=24k", f"{TEST_PREFIX}-pki", str(fs)],
                   check=True)
    try:
        run_pki("init", fs / "pki", "--pkcs11", uri, "--pin-file", softhsm.pin, env=env, ok=1)
        assert list(fs.iterdir()) == []
    finally:
        subprocess.run([tool("umount"), str(fs)], check=True)
    assert softhsm.objects()[0] == [] and softhsm.objects("pubkey")[0] == []
    assert not (tmp / "a").exists()
