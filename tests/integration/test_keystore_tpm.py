# SPDX-License-Identifier: GPL-2.0-or-later
"""TPM-held keystore keys (docs/KEYSTORE.md "TPM-held keys"): a key generated with security level
tpm lives in the container's own vTPM (the real swtpm behind trustme-vtpm), signs there, reports
per tag who enforces it, refuses what the TPM cannot hold, and is bound to its container."""
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from conftest import Daemon, TEST_PREFIX, wait_for
from test_device import pki  # noqa: F401  (the module-scoped PKI fixture)
from ksclient import ERR, Keystore, KsError, auths, params
from pb import parse

PIN, PUK = "7391", "12345678"
TPM, SOFTWARE = 1, 0


def _pin_file(d, *lines):
    path = d.base / f"pins-{time.monotonic_ns()}"
    path.write_text("".join(f"{line}\n" for line in lines))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def kt(test_root, rootfs):
    """One daemon: two containers with a vTPM and a keystore (ta, tb), one with a keystore only."""
    base = Path(tempfile.mkdtemp(prefix="kt-", dir=test_root))
    d = Daemon(base, f"{TEST_PREFIX}-kstpm", rootfs, ["--scd-kdf-n", "1024"])
    try:
        d.start()
        wait_for(lambda: "device storage secret unsealed" in d.log(), timeout=60, what="the device secret")
        for name in ("ta", "tb"):
            d.create(name, keystore=True, vtpm=True, token={"type": "soft"})
            d.cli("change-pin", "--pin-file", _pin_file(d, PIN, PUK), name)
            r = d.cli("start", "--pin-file", _pin_file(d, PIN), name, check=False)
            assert r.returncode == 0, f"{r.stderr}\n{d.log()[-3000:]}"
        d.create("tn", keystore=True)
        d.cli("start", "tn")
        yield d
    finally:
        d.teardown()


def ks(d, name):
    return Keystore(Path(f"/proc/{d.state(name)['pid']}/root/run/trustme/keystore.sock"))


def refused(fn, code):
    with pytest.raises(KsError) as e:
        fn()
    assert e.value.code == ERR[code], (e.value.code, e.value.message)
    return e.value.message


def enforcement(chars):
    return {parse(e)[761][0].decode(): parse(e)[762][0] if 762 in parse(e) else 0 for e in chars.get(760, [])}


def test_tpm_key_signs_in_the_vtpm_and_reports_who_enforces_what(kt):
    with ks(kt, "ta") as k:
        ch = k.generate("t1", "ec", 256, auths(["sign", "verify"], ["sha256"], uses=5), security="tpm")
        assert ch[5][0] == TPM
        assert enforcement(ch) == {"key_material": TPM, "purposes": TPM, "digests": SOFTWARE,
                                   "usage_count_limit": SOFTWARE}
        pub = serialization.load_der_public_key(k.public_key("t1"))
        assert isinstance(pub.curve, ec.SECP256R1)
        sig, _ = k.one_shot("t1", params("sign", "sha256"), b"signed by the vTPM")
        pub.verify(sig, b"signed by the vTPM", ec.ECDSA(hashes.SHA256()))
        h = hashlib.sha256(b"prehashed").digest()
        sig, _ = k.one_shot("t1", params("sign", "sha256", prehashed=True), h)
        pub.verify(sig, h, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        # streaming, and the service verifies with the public key
        handle, _ = k.begin("t1", params("sign", "sha256"))
        k.update(handle, b"part one, ")
        sig = k.finish(handle, b"part two")
        k.one_shot("t1", params("verify", "sha256"), b"part one, part two", signature=sig)
        # the characteristics as stored say the same (and count the uses)
        listed = {parse(c)[1][0].decode(): parse(c) for c in parse(k.call(19, b"")[14][0]).get(1, [])}
        assert listed["t1"][5][0] == TPM and listed["t1"][7][0] == 3
        assert enforcement(listed["t1"])["key_material"] == TPM
        # P-384 too
        k.generate("t384", "ec", 384, auths(["sign"], ["sha384"]), security="tpm")
        sig, _ = k.one_shot("t384", params("sign", "sha384"), b"x")
        serialization.load_der_public_key(k.public_key("t384")).verify(sig, b"x", ec.ECDSA(hashes.SHA384()))
        # a service key reports its level as before, with no TPM tag
        ch = k.generate("s1", "ec", 256, auths(["sign"], ["sha256"]))
        assert ch.get(5, [0])[0] == SOFTWARE and enforcement(ch) == {}
        for alias in ("t1", "t384", "s1"):
            k.delete(alias)


def test_what_the_tpm_cannot_hold_is_refused(kt):
    with ks(kt, "ta") as k:
        for alg, size, a in (("aes", 256, auths(["encrypt", "decrypt"], modes=["gcm"], min_mac=128)),
                             ("hmac", 256, auths(["sign"], ["sha256"], min_mac=256)),
                             ("rsa", 2048, auths(["sign"], ["sha256"], ["pss"]))):
            msg = refused(lambda: k.generate("x", alg, size, a, security="tpm"), "UNSUPPORTED_ALGORITHM")
            assert "vTPM" in msg
        refused(lambda: k.generate("x", "ec", 256, auths(["sign", "agree"], ["sha256"]), security="tpm"),
                "INCOMPATIBLE_PURPOSE")
        refused(lambda: k.generate("x", "ec", 256, auths(["verify"], ["sha256"]), security="tpm"),
                "INCOMPATIBLE_PURPOSE")
        refused(lambda: k.generate("x", "ec", 521, auths(["sign"], ["sha256"]), security="tpm"),
                "UNSUPPORTED_KEY_SIZE")
        assert "x" not in k.list()
    with ks(kt, "tn") as k:  # no vTPM: no TPM-held key, and no quiet service key instead
        msg = refused(lambda: k.generate("x", "ec", 256, auths(["sign"], ["sha256"]), security="tpm"),
                      "TPM_UNAVAILABLE")
        assert "vtpm" in msg
        assert "x" not in k.list()


def test_refusals_of_a_tpm_key(kt):
    with ks(kt, "ta") as k:
        ch = k.generate("tp", "ec", 256, auths(["sign", "verify"], ["sha256"], uses=2), passphrase=b"open sesame",
                        security="tpm")
        assert enforcement(ch)["passphrase_required"] == TPM
        refused(lambda: k.one_shot("tp", params("sign", "sha256"), b"m"), "AUTH_REQUIRED")
        # the keystore's verifier refuses the wrong passphrase before the vTPM sees it (and a
        # refused use is not counted)
        msg = refused(lambda: k.one_shot("tp", params("sign", "sha256", passphrase=b"wrong"), b"m"), "AUTH_FAILED")
        assert "wrong passphrase" in msg and "keystore checked it" in msg
        refused(lambda: k.one_shot("tp", params("sign", "sha384", passphrase=b"open sesame"), b"m"),
                "INCOMPATIBLE_DIGEST")
        refused(lambda: k.one_shot("tp", params("decrypt", passphrase=b"open sesame"), b"m"), "UNSUPPORTED_PURPOSE")
        for _ in range(2):
            k.one_shot("tp", params("sign", "sha256", passphrase=b"open sesame"), b"m")
        refused(lambda: k.one_shot("tp", params("sign", "sha256", passphrase=b"open sesame"), b"m"),
                "KEY_MAX_OPS_EXCEEDED")
        k.generate("tv", "ec", 256, auths(["sign"], ["sha256"], not_after=int(time.time()) - 10), security="tpm")
        refused(lambda: k.one_shot("tv", params("sign", "sha256"), b"m"), "KEY_EXPIRED")
        k.delete("tp")
        k.delete("tv")


def test_tpm_key_blob_copied_to_another_container_fails(kt):
    d = kt
    with ks(d, "ta") as k:
        k.generate("moved", "ec", 256, auths(["sign"], ["sha256"]), security="tpm")
    src = d.data_dir / "keystore" / d.state("ta")["uuid"] / "moved.key"
    dst = d.data_dir / "keystore" / d.state("tb")["uuid"] / "moved.key"
    shutil.copy2(src, dst)
    try:
        with ks(d, "tb") as k:
            assert "moved" not in k.list()
            refused(lambda: k.one_shot("moved", params("sign", "sha256"), b"m"), "INVALID_KEY_BLOB")
    finally:
        dst.unlink()
    with ks(d, "ta") as k:  # still the owner's
        k.one_shot("moved", params("sign", "sha256"), b"m")
        k.delete("moved")


def test_tpm_key_survives_a_vtpm_restart(kt):
    """trustme-vtpm killed: trustmed restarts it, the keystore connects anew and the key (whose
    blob only this vTPM loads) still signs. In the vTPM's first run, before any command stored
    anything: the blob depends only on the seeds its manufacture made, which must be on disk
    before the first client is served (they were not, and the restarted vTPM refused the blob)."""
    d = kt
    d.create("tr", keystore=True, vtpm=True, token={"type": "soft"})
    d.cli("change-pin", "--pin-file", _pin_file(d, PIN, PUK), "tr")
    r = d.cli("start", "--pin-file", _pin_file(d, PIN), "tr", check=False)
    assert r.returncode == 0, f"{r.stderr}\n{d.log()[-3000:]}"
    with ks(d, "tr") as k:
        k.generate("rs", "ec", 256, auths(["sign"], ["sha256"]), security="tpm")
        k.one_shot("rs", params("sign", "sha256"), b"before")
        pidfile = d.run_dir / "vtpm" / d.state("tr")["uuid"] / "helper.pid"
        old = int(pidfile.read_text().split()[0])
        import os
        import signal
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() and int(pidfile.read_text().split()[0]) != old,
                 timeout=30, what="the vTPM's restart")

        def signs():
            try:
                k.one_shot("rs", params("sign", "sha256"), b"after")
                return True
            except KsError as e:
                assert e.code == ERR["TPM_UNAVAILABLE"], e
                return False
        wait_for(signs, timeout=30, interval=0.2, what="a signature after the vTPM's restart")
        k.delete("rs")
    d.cli("stop", "--kill", "tr")



KD_OID = "2.25.39619141288605083686793323509539602413"
CERTIFY_OID = "2.25.17508486204022160331953604609801929246"


def _der_len(b, i):
    """The length at b[i] (DER) and where its contents start."""
    if b[i] < 0x80:
        return b[i], i + 1
    n = b[i] & 0x7f
    return int.from_bytes(b[i + 1:i + 1 + n], "big"), i + 1 + n


def _oid_der(oid):
    arcs = [int(a) for a in oid.split(".")]
    out = bytes([40 * arcs[0] + arcs[1]])
    for a in arcs[2:]:
        enc = [a & 0x7f]
        while a > 0x7f:
            a >>= 7
            enc.append(0x80 | (a & 0x7f))
        out += bytes(reversed(enc))
    return b"\x06" + bytes([len(out)]) + out


def _ext_value(cert, oid):
    """The OCTET STRING of a certificate's extension oid (cryptography does not take 2.25 OIDs
    with arcs this long)."""
    i = cert.index(_oid_der(oid)) + len(_oid_der(oid))
    if cert[i] == 0x01:  # critical
        i += 3
    assert cert[i] == 0x04
    n, i = _der_len(cert, i + 1)
    return cert[i:i + n]


def _spki_of(cert_der):
    import subprocess
    from tools import tool
    pem = subprocess.run([tool("openssl"), "x509", "-inform", "DER", "-pubkey", "-noout"], input=cert_der,
                         capture_output=True, check=True).stdout
    return subprocess.run([tool("openssl"), "pkey", "-pubin", "-outform", "DER"], input=pem,
                          capture_output=True, check=True).stdout


def _vtpm_owner_key(d, name, tmp_path):
    """What trustme-owner --fleet-key leaves in a vTPM (docs/FLEET.md "vTPM quotes"): a restricted
    ECDSA P-256 signing primary of the endorsement hierarchy, persistent at 0x81018000, and its
    KEY.json. Made here with tpm2-tools on the vTPM's socket (the owner's credential activation
    against the EK, which binds it to the vTPM, is trustme-owner's and not repeated here)."""
    import json
    import subprocess
    from tools import tool
    uuid = d.state(name)["uuid"]
    # a short path to the vTPM's sockets: the test's own is longer than a socket address allows
    short = Path(tempfile.mkdtemp(prefix="v", dir="/tmp")) / "p"
    short.symlink_to(f"{d.run_dir}/vtpm/{uuid}/pub")
    env = {**os.environ, "TPM2TOOLS_TCTI": f"swtpm:path={short}/tpm.sock"}
    ctx, pub = tmp_path / f"akv-{name}.ctx", tmp_path / f"akv-{name}.pub"

    def tpm2(*args):
        r = subprocess.run([tool("tpm2"), *map(str, args)], env=env, capture_output=True, text=True)
        assert r.returncode == 0, (args, r.stderr[-600:])
    try:
        tpm2("createprimary", "-C", "e", "-G", "ecc256:ecdsa-sha256:null", "-c", ctx,
             "-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign")
        tpm2("evictcontrol", "-C", "o", "-c", ctx, "0x81018000")
        tpm2("readpublic", "-c", "0x81018000", "-o", pub)
    finally:
        shutil.rmtree(short.parent)
    key = tmp_path / f"key-{name}.json"
    key.write_text(json.dumps({"container": uuid, "handle": 0x81018000, "public": pub.read_bytes()[2:].hex()}))
    return key


def _steal_container_cert(d, name, spki):
    """Root in the container takes its keystore process over (a new one, before it asked for its
    container certificate) and has trustmed certify a key of its own: then it signs any key
    attestation it likes under the container's genuine certificate (test_keystore.py's
    test_taken_over_keystore_cannot_name_another_container does the same)."""
    import ctypes
    import signal
    import socket
    from pb import field_bytes, field_varint, frame, parse
    from test_keystore import _serves, keystore_pids, service_of
    old = service_of(d, name)
    os.kill(old, signal.SIGKILL)
    pid = wait_for(lambda: next((p for p in keystore_pids(d) if p != old and _serves(d, name, p)), None),
                   timeout=20, what=f"{name}'s keystore restarted")
    os.kill(pid, signal.SIGSTOP)
    try:
        pidfd = os.pidfd_open(pid)
        fd = ctypes.CDLL(None, use_errno=True).syscall(438, pidfd, 3, 0)
        os.close(pidfd)
        assert fd >= 0
        link = socket.socket(fileno=fd)
        link.settimeout(20)
        uuid = d.state(name)["uuid"]
        body = field_bytes(430, spki) + field_bytes(431, f"trustme container {uuid}".encode()) + \
            field_bytes(432, name.encode())
        link.send(frame(field_varint(1, 1) + field_varint(2, 78) + field_bytes(435, body)))
        resp = parse(link.recv(262144)[4:])
        link.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    return parse(resp[436][0])[433][0]


def test_key_attestation_of_a_tpm_held_key_carries_the_vtpms_certify(kt, pki, tmp_path):
    """A TPM-held key's attestation carries the vTPM's TPM2_Certify of it by the vTPM owner's key,
    which trustme-verify --vtpm-key checks: genuine passes; a service key attested as TPM-held
    (by a taken-over keystore holding a genuine container certificate) fails, with the TPM key's
    certification or without any; a tampered certification fails; another container's pinned key
    fails. Runs last in this file: it takes ta's keystore over."""
    import base64
    import json
    import subprocess
    from tools import tool
    from conftest import BUILD
    from pb import field_bytes, field_varint, parse
    from test_device import provision
    from test_keystore import json_device_enrolled
    d = kt
    if not json_device_enrolled(d):
        provision(d, pki, tmp_path)
    key_json = _vtpm_owner_key(d, "ta", tmp_path)
    challenge = os.urandom(16)
    with ks(d, "ta") as k:
        k.generate("att-tpm", "ec", 256, auths(["sign"], ["sha256"]), security="tpm")
        k.generate("att-soft", "ec", 256, auths(["sign"], ["sha256"]))
        certs = k.attest("att-tpm", challenge)
        soft = k.attest("att-soft", challenge)

    def pem(ders):
        return "".join("-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(c).decode() + "-----END CERTIFICATE-----\n"
                       for c in ders)

    def check(ders, *extra):
        path = tmp_path / "att.pem"
        path.write_text(pem(ders))
        r = subprocess.run([str(BUILD / "src/verify/trustme-verify"), "--key-attestation", str(path),
                            "--ak-anchor", str(pki["dir"] / "customer/general-root-ca.pem"),
                            "--device-ca", str(pki["dir"] / "customer/device-ca.pem"), "--no-crl", "--json",
                            "--challenge", challenge.hex(), *map(str, extra)], capture_output=True, text=True)
        return r.returncode, json.loads(r.stdout) if r.stdout else r.stderr

    rc, rep = check(certs, "--vtpm-key", key_json)
    assert rc == 0 and rep["tpm_certified"], rep
    assert "certified by the vTPM's key" in rep["tpm_evidence"] and rep["key"]["security_level"] == "tpm", rep
    # without the pinned key the certification is shown, its signer not checked
    rc, rep = check(certs)
    assert rc == 0 and not rep["tpm_certified"] and "not checked" in rep["tpm_evidence"], rep
    # a service key has nothing to prove
    rc, rep = check(soft, "--vtpm-key", key_json)
    assert rc == 0 and rep["key"]["security_level"] == "software" and not rep["tpm_certified"], rep
    # another container's pinned key
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(key_json.read_text()), "container": d.state("tb")["uuid"]}))
    rc, rep = check(certs, "--vtpm-key", other)
    assert rc == 1 and "another container" in rep["reason"], rep

    # the taken-over keystore: a container certificate of its own key, then key attestations of its making
    att_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "att.key").write_bytes(att_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    spki = att_key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    cont = _steal_container_cert(d, "ta", spki)
    (tmp_path / "cont.pem").write_text(pem([cont]))
    desc, certify = _ext_value(certs[0], KD_OID), _ext_value(certs[0], CERTIFY_OID)
    tpm_pub, soft_pub = _spki_of(certs[0]), _spki_of(soft[0])

    def forge(pub, certify_ext):
        """A key certificate for pub under the stolen container certificate, with the genuine
        key description (security level tpm) and certify_ext (or none), made with openssl."""
        (tmp_path / "pub.der").write_bytes(pub)
        exts = ["[e]", "basicConstraints = critical,CA:FALSE", f"{KD_OID} = DER:{desc.hex()}"]
        if certify_ext is not None:
            exts.append(f"{CERTIFY_OID} = DER:{certify_ext.hex()}")
        (tmp_path / "ext.cnf").write_text("\n".join(exts) + "\n")
        def ossl(*args):
            subprocess.run([tool("openssl"), *map(str, args)], check=True, capture_output=True)
        ossl("pkey", "-pubin", "-inform", "DER", "-in", tmp_path / "pub.der", "-out", tmp_path / "pub.pem")
        ossl("req", "-new", "-key", tmp_path / "att.key", "-subj", "/CN=att-tpm", "-out", tmp_path / "f.csr")
        ossl("x509", "-req", "-in", tmp_path / "f.csr", "-CA", tmp_path / "cont.pem", "-CAkey", tmp_path / "att.key",
             "-force_pubkey", tmp_path / "pub.pem", "-extfile", tmp_path / "ext.cnf", "-extensions", "e",
             "-days", "1", "-set_serial", "7", "-outform", "DER", "-out", tmp_path / "f.der")
        return [(tmp_path / "f.der").read_bytes(), cont] + certs[2:]

    # the forger's own chain with the genuine content verifies: what fails below is the content
    rc, rep = check(forge(tpm_pub, certify), "--vtpm-key", key_json)
    assert rc == 0 and rep["tpm_certified"], rep
    # a service key described as TPM-held, with the TPM key's certification, or with none
    rc, rep = check(forge(soft_pub, certify), "--vtpm-key", key_json)
    assert rc == 1 and "certified another key" in rep["reason"], rep
    rc, rep = check(forge(soft_pub, None), "--vtpm-key", key_json)
    assert rc == 1 and "no TPM2_Certify" in rep["reason"], rep
    # the certification tampered with: its signature, its TPMS_ATTEST (the certified name)
    f = parse(certify)

    def rebuilt(field, edit):
        parts = {n: f[n][0] for n in (820, 821, 822)}
        parts[field] = edit(parts[field])
        return b"".join(field_bytes(n, parts[n]) for n in (820, 821, 822)) + field_varint(823, f[823][0])
    flip_last = lambda b: b[:-1] + bytes([b[-1] ^ 1])  # noqa: E731
    rc, rep = check(forge(tpm_pub, rebuilt(822, flip_last)), "--vtpm-key", key_json)
    assert rc == 1 and "not signed by the vTPM key" in rep["reason"], rep
    rc, rep = check(forge(tpm_pub, rebuilt(821, flip_last)), "--vtpm-key", key_json)
    assert rc == 1 and "not signed by the vTPM key" in rep["reason"], rep
    # TPMS_ATTEST: magic, type, qualifiedSigner, extraData, clockInfo (17), firmwareVersion (8),
    # then the certified name (size, algorithm 000b, digest): a byte of its digest flipped
    a = f[821][0]
    at = 8 + int.from_bytes(a[6:8], "big")
    at += 2 + int.from_bytes(a[at:at + 2], "big") + 17 + 8
    assert a[at + 2:at + 4] == bytes.fromhex("000b")
    name_at = at + 4
    rc, rep = check(forge(tpm_pub, rebuilt(821, lambda b: b[:name_at] + bytes([b[name_at] ^ 1]) +
                                                         b[name_at + 1:])), "--vtpm-key", key_json)
    assert rc == 1 and "names another key" in rep["reason"], rep
