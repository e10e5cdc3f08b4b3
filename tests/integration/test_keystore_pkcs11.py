# SPDX-License-Identifier: GPL-2.0-or-later
"""libtrustme-pkcs11 (docs/KEYSTORE.md "PKCS#11") inside a container whose root holds Debian's
pkcs11-tool (OpenSC) and openssl with its PKCS#11 engine (libp11): they make and use keystore keys
through the module without knowing the keystore, every signature verifies outside the container
with the public key the keystore exports, and the private key is never readable."""
import hashlib
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BUILD, PROBE, REPO, TEST_PREFIX, Daemon, wait_for
from ksclient import Keystore, auths
from tools import library, tool

MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libtrustme-pkcs11.so"
ENGINE = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so"
ENV = ". /etc/pkcs11.env; cd /tmp; "
P11 = f"pkcs11-tool --module {MODULE} "


@pytest.fixture(scope="module")
def p11_rootfs(test_root):
    """A busybox guest with Debian's pkcs11-tool, openssl, OpenSSL's PKCS#11 engine and their
    libraries, and the module installed where Debian's p11-kit and OpenSC look for modules: by
    scripts/rootfs-add-pkcs11.sh, as the demo's."""
    path = test_root / "rootfs-pkcs11"
    subprocess.run([str(REPO / "scripts/mkrootfs.sh"), str(path), str(PROBE)], check=True)
    for name in ("pkcs11-tool", "openssl", "p11-kit", "ldd"):
        tool(name)  # a missing one fails the test naming its package
    library(ENGINE)
    subprocess.run([str(REPO / "scripts/rootfs-add-pkcs11.sh"), str(path),
                    str(BUILD / "src/keystore/pkcs11/libtrustme-pkcs11.so")], check=True)
    return path


@pytest.fixture(scope="module")
def pd(test_root, rootfs, p11_rootfs):
    base = Path(tempfile.mkdtemp(prefix="p11-", dir=test_root))
    d = Daemon(base, f"{TEST_PREFIX}-pkcs11", rootfs)
    try:
        d.start()
        wait_for(lambda: "device storage secret unsealed" in d.log(), timeout=60, what="the device secret")
        d.create("p", rootfs={"path": str(p11_rootfs)}, keystore=True)
        d.cli("start", "p")
        d.p11_rootfs = p11_rootfs
        yield d
    finally:
        d.teardown()


@pytest.fixture(scope="module")
def pt(pd):
    """A second container of the same daemon and rootfs with a vTPM (so a token and a PIN): for
    keys of security level tpm (docs/KEYSTORE.md "TPM-held keys")."""
    def pin_file(*lines):
        path = pd.base / f"pins-{time.monotonic_ns()}"
        path.write_text("".join(f"{line}\n" for line in lines))
        path.chmod(0o600)
        return path
    pd.create("pt", rootfs={"path": str(pd.p11_rootfs)}, keystore=True, vtpm=True, token={"type": "soft"})
    pd.cli("change-pin", "--pin-file", pin_file("7391", "12345678"), "pt")
    r = pd.cli("start", "--pin-file", pin_file("7391"), "pt", check=False)
    assert r.returncode == 0, f"{r.stderr}\n{pd.log()[-3000:]}"
    return pd


def ks(d, c="p"):
    return Keystore(Path(f"/proc/{d.state(c)['pid']}/root/run/trustme/keystore.sock"))


def sh(d, script, check=True, c="p"):
    r = d.sh(c, ENV + script, check=False)
    if check:
        assert r.returncode == 0, f"{script}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def put(d, name, data, c="p"):
    (Path(f"/proc/{d.state(c)['pid']}/root/tmp") / name).write_bytes(data)


def get(d, name, c="p"):
    return (Path(f"/proc/{d.state(c)['pid']}/root/tmp") / name).read_bytes()


def verify(tmp_path, spki, data, sig, *opts):
    (tmp_path / "pub.der").write_bytes(spki)
    (tmp_path / "data").write_bytes(data)
    (tmp_path / "sig").write_bytes(sig)
    return subprocess.run([tool("openssl"), "dgst", "-sha256", "-verify", str(tmp_path / "pub.der"), "-keyform", "DER",
                           *opts, "-signature", str(tmp_path / "sig"), str(tmp_path / "data")],
                          capture_output=True, text=True)


def test_pkcs11_tool_makes_and_uses_an_ec_key(pd, tmp_path):
    d = pd
    sh(d, P11 + "--keypairgen --key-type EC:prime256v1 --label p11ec --id 01")
    with ks(d) as k:
        assert "p11ec" in k.list()
        spki = k.public_key("p11ec")
    listing = sh(d, P11 + "--list-objects").stdout
    assert "Private Key Object; EC" in listing and "label:      p11ec" in listing, listing
    assert "Public Key Object; EC" in listing, listing
    data = b"signed inside, checked outside\n" * 100
    put(d, "data", data)
    # the hashing mechanism (the keystore hashes) and the raw one (pkcs11-tool hashes)
    sh(d, P11 + "--sign -m ECDSA-SHA256 --label p11ec -i data -o sig --signature-format openssl")
    r = verify(tmp_path, spki, data, get(d, "sig"))
    assert r.returncode == 0, r.stderr
    put(d, "hash", hashlib.sha256(data).digest())
    sh(d, P11 + "--sign -m ECDSA --label p11ec -i hash -o sig2 --signature-format openssl")
    assert verify(tmp_path, spki, data, get(d, "sig2")).returncode == 0
    # a signature of other data does not verify: the check is real
    assert verify(tmp_path, spki, data + b"x", get(d, "sig2")).returncode != 0


def test_openssl_engine_signs_with_keystore_keys(pd, tmp_path):
    d = pd
    with ks(d) as k:
        k.generate("p11rsa", "rsa", 2048, auths(["sign"], ["sha256"], ["pkcs1", "pss"]))
        k.generate("p11ec384", "ec", 384, auths(["sign"], ["sha256", "sha384"]))
        rsa_spki, ec_spki = k.public_key("p11rsa"), k.public_key("p11ec384")
    data = b"openssl through libp11 and libtrustme-pkcs11"
    put(d, "data", data)
    sh(d, "openssl dgst -sha256 -engine pkcs11 -keyform engine -sign 'pkcs11:object=p11ec384;type=private' "
          "-out ec.sig data")
    assert verify(tmp_path, ec_spki, data, get(d, "ec.sig")).returncode == 0
    # RSA PKCS#1 v1.5: the engine hands the module a DigestInfo (CKM_RSA_PKCS)
    sh(d, "openssl dgst -sha256 -engine pkcs11 -keyform engine -sign 'pkcs11:object=p11rsa;type=private' "
          "-out rsa.sig data")
    assert verify(tmp_path, rsa_spki, data, get(d, "rsa.sig")).returncode == 0
    # RSA-PSS (CKM_RSA_PKCS_PSS with its parameters)
    sh(d, "openssl dgst -sha256 -engine pkcs11 -keyform engine -sign 'pkcs11:object=p11rsa;type=private' "
          "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -out pss.sig data")
    r = verify(tmp_path, rsa_spki, data, get(d, "pss.sig"), "-sigopt", "rsa_padding_mode:pss",
               "-sigopt", "rsa_pss_saltlen:digest")
    assert r.returncode == 0, r.stderr
    # the key's authorisation list still holds: SHA-512 is not among its digests
    r = sh(d, "openssl dgst -sha512 -engine pkcs11 -keyform engine -sign 'pkcs11:object=p11rsa;type=private' "
              "-out bad.sig data", check=False)
    assert r.returncode != 0


def test_private_key_is_not_readable(pd):
    d = pd
    sh(d, P11 + "--keypairgen --key-type EC:prime256v1 --label p11secret")
    attrs = sh(d, P11 + "--list-objects --type privkey --label p11secret").stdout
    assert "never extractable" in attrs and "sensitive" in attrs, attrs
    # nor can a key be made extractable
    r = sh(d, P11 + "--keypairgen --key-type EC:prime256v1 --label p11out --extractable", check=False)
    assert r.returncode != 0
    with ks(d) as k:
        assert "p11out" not in k.list()


def test_rsa_oaep_decrypt(pd, tmp_path):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    d = pd
    sh(d, P11 + "--keypairgen --key-type rsa:2048 --label p11dec --usage-decrypt")
    with ks(d) as k:
        pub = serialization.load_der_public_key(k.public_key("p11dec"))
    ct = pub.encrypt(b"for the container only", padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    put(d, "ct", ct)
    sh(d, P11 + "--decrypt -m RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 "
          f"--id {b'p11dec'.hex()} -i ct -o pt")  # pkcs11-tool finds a key to decrypt by its ID only
    assert get(d, "pt") == b"for the container only"


def test_key_passphrase_is_a_context_specific_login(pd, tmp_path):
    d = pd
    with ks(d) as k:
        k.generate("p11pw", "ec", 256, auths(["sign"], ["sha256"]), passphrase=b"4711")
        spki = k.public_key("p11pw")
    put(d, "data", b"x")
    attrs = sh(d, P11 + "--list-objects --type privkey --label p11pw").stdout
    assert "always authenticate" in attrs, attrs
    # pkcs11-tool picks the key to sign with by its ID (else the first private key in the list)
    key = f"--id {b'p11pw'.hex()}"
    r = sh(d, P11 + f"--sign -m ECDSA-SHA256 {key} -i data -o sig", check=False)
    assert r.returncode != 0
    r = sh(d, P11 + f"--login --pin 0000 --sign -m ECDSA-SHA256 {key} -i data -o sig", check=False)
    assert r.returncode != 0 and "CKR_PIN_INCORRECT" in r.stderr, r.stderr
    sh(d, P11 + f"--login --pin 4711 --sign -m ECDSA-SHA256 {key} -i data -o sig --signature-format openssl")
    assert verify(tmp_path, spki, b"x", get(d, "sig")).returncode == 0


def test_prehashed_signing_keeps_the_authorisations(pd, tmp_path):
    """The keystore's `prehashed` signing (what the module's raw mechanisms use) signs only a hash
    of a digest the key is authorised for, of that digest's length."""
    from ksclient import ERR, KsError, params
    d = pd
    data = b"prehashed"
    with ks(d) as k:
        k.generate("p11pre", "ec", 256, auths(["sign", "verify"], ["sha256"]))
        spki = k.public_key("p11pre")
        sig, _ = k.one_shot("p11pre", params("sign", "sha256", prehashed=True), hashlib.sha256(data).digest())
        assert verify(tmp_path, spki, data, sig).returncode == 0
        k.one_shot("p11pre", params("verify", "sha256", prehashed=True), hashlib.sha256(data).digest(), signature=sig)
        for prm, inp, code in ((params("sign", "sha384", prehashed=True), hashlib.sha384(data).digest(),
                                "INCOMPATIBLE_DIGEST"),
                               (params("sign", "sha256", prehashed=True), hashlib.sha256(data).digest()[:20],
                                "INVALID_INPUT_LENGTH"),
                               (params("sign", "sha256", prehashed=True), data * 10, "INVALID_INPUT_LENGTH")):
            with pytest.raises(KsError) as e:
                k.one_shot("p11pre", prm, inp)
            assert e.value.code == ERR[code], e.value.message


def test_p11_kit_finds_the_module(pd):
    """Registered with p11-kit (dist/p11-kit/trustme.module), the module is found by programs that
    load their modules through p11-kit, with no path given."""
    out = sh(pd, "p11-kit list-modules").stdout
    assert "trustme: libtrustme-pkcs11.so" in out and "token: trustme keystore" in out, out
    assert "manufacturer: trustme" in out, out


def test_pkcs11_tool_and_openssl_sign_with_a_tpm_held_key(pt, tmp_path):
    """A key of security level tpm (generated in the container's vTPM through the keystore) is used
    through the module like any other: pkcs11-tool (hashing and raw mechanisms) and openssl's
    engine sign with it, and the signatures verify outside with the key the keystore exports."""
    d = pt
    with ks(d, "pt") as k:
        ch = k.generate("p11tpm", "ec", 256, auths(["sign"], ["sha256"]), security="tpm")
        assert ch[5][0] == 1  # KS_SECURITY_TPM: the key lives in the vTPM
        spki = k.public_key("p11tpm")
    data = b"signed in the vTPM, through PKCS#11\n" * 50
    put(d, "data", data, c="pt")
    listing = sh(d, P11 + "--list-objects --type privkey --label p11tpm", c="pt").stdout
    assert "Private Key Object; EC" in listing and "never extractable" in listing, listing
    key = f"--id {b'p11tpm'.hex()}"
    sh(d, P11 + f"--sign -m ECDSA-SHA256 {key} -i data -o sig --signature-format openssl", c="pt")
    assert verify(tmp_path, spki, data, get(d, "sig", c="pt")).returncode == 0
    put(d, "hash", hashlib.sha256(data).digest(), c="pt")
    sh(d, P11 + f"--sign -m ECDSA {key} -i hash -o sig2 --signature-format openssl", c="pt")
    assert verify(tmp_path, spki, data, get(d, "sig2", c="pt")).returncode == 0
    assert verify(tmp_path, spki, data + b"x", get(d, "sig2", c="pt")).returncode != 0
    sh(d, "openssl dgst -sha256 -engine pkcs11 -keyform engine -sign 'pkcs11:object=p11tpm;type=private' "
          "-out ossl.sig data", c="pt")
    assert verify(tmp_path, spki, data, get(d, "ossl.sig", c="pt")).returncode == 0
    # the key's authorisations still hold through the module: SHA-384 is not among its digests
    r = sh(d, P11 + f"--sign -m ECDSA-SHA384 {key} -i data -o bad.sig", check=False, c="pt")
    assert r.returncode != 0
