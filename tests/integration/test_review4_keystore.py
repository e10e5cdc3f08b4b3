# SPDX-License-Identifier: GPL-2.0-or-later
"""Review 4 (fresh eyes): the vTPM's TPM2_Certify of a TPM-held keystore key (docs/KEYSTORE.md
"Key attestation", `trustme-verify --key-attestation ... --vtpm-key`), attacked by the container's
root who took its keystore process over (it holds a genuine container certificate and signs any
key certificate: test_keystore_tpm.py does the same). The certification is what it must not be
able to make for a key that is not in the vTPM. docs/SECURITY.md "Review 4" has a row for each."""
import hashlib
import json
import os
import socket
import struct
import subprocess

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import BUILD
from pb import field_bytes, field_varint
from test_device import pki  # noqa: F401  (the module-scoped PKI fixture)
from test_keystore_tpm import (CERTIFY_OID, KD_OID, _ext_value, _steal_container_cert,  # noqa: F401
                               _vtpm_owner_key, auths, ks, kt)
from tools import tool

AKV = 0x81018000
CC_CERTIFY, CC_POLICY_COMMAND_CODE = 0x148, 0x16C


def _tpm(sock, cmd):
    """One raw TPM command on the vTPM's guest socket (what /run/tpm/tpm.sock is inside)."""
    sock.sendall(cmd)
    rsp = b""
    while len(rsp) < 10 or len(rsp) < struct.unpack(">I", rsp[2:6])[0]:
        chunk = sock.recv(4096)
        assert chunk, "the vTPM closed the connection"
        rsp += chunk
    return rsp


def _cmd(tag, cc, body):
    return struct.pack(">HII", tag, 10 + len(body), cc) + body


def _b(data):
    return struct.pack(">H", len(data)) + data


FIXED_TPM, FIXED_PARENT, SENSITIVE_ORIGIN, USER_WITH_AUTH, ADMIN_WITH_POLICY, SIGN = \
    0x2, 0x10, 0x20, 0x40, 0x80, 0x40000
TPM_RH_OWNER, TPM_RH_NULL, TPM_RS_PW = 0x40000001, 0x40000007, 0x40000009


def _public(key, attrs, auth_policy=b""):
    """A TPMT_PUBLIC for key's point (ECDSA-SHA256 on P-256) with the attributes it claims."""
    nums = key.public_key().public_numbers()
    return (struct.pack(">HHI", 0x0023, 0x000B, attrs) + _b(auth_policy) +
            struct.pack(">HHHHH", 0x0010, 0x0018, 0x000B, 0x0003, 0x0010) +
            _b(nums.x.to_bytes(32, "big")) + _b(nums.y.to_bytes(32, "big")))


def _sensitive(key):
    """TPM2B_SENSITIVE: ECC, empty authValue and seed, the private scalar."""
    d = key.private_numbers().private_value.to_bytes(32, "big")
    return _b(struct.pack(">H", 0x0023) + _b(b"") + _b(b"") + _b(d))


def _certify_external(d, name, key, challenge, attrs, with_private, hierarchy, policy):
    """The container's root loads a software key of its own into its vTPM with TPM2_LoadExternal
    (its public area only, or with its private part) claiming attrs, and asks the owner's key AKv
    (empty authorisation, as the keystore uses it) to certify it over SHA-256 of the verifier's
    challenge: with a policy session satisfying PolicyCommandCode(Certify) when policy (the
    object's authPolicy), else with the object's empty password. Returns (stage, TPM rc, the
    packed KsTpmCertify or None): stage is "load" or "certify"."""
    auth_policy = hashlib.sha256(bytes(32) + struct.pack(">II", CC_POLICY_COMMAND_CODE, CC_CERTIFY)).digest() \
        if policy else b""
    pub = _public(key, attrs, auth_policy)
    uuid = d.state(name)["uuid"]
    dfd = os.open(d.run_dir / "vtpm" / uuid / "pub", os.O_PATH)
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(20)
            s.connect(f"/proc/self/fd/{dfd}/tpm.sock")
            # the keystore's storage key and key take two of the vTPM's three object slots: the
            # guest flushes them (its own keys only: the keystore reloads them at the next use)
            r = _tpm(s, _cmd(0x8001, 0x17A, struct.pack(">III", 1, 0x80000000, 16)))
            for i in range(struct.unpack(">I", r[15:19])[0]):
                _tpm(s, _cmd(0x8001, 0x165, r[19 + 4 * i:23 + 4 * i]))
            private = _sensitive(key) if with_private else _b(b"")
            r = _tpm(s, _cmd(0x8001, 0x167, private + _b(pub) + struct.pack(">I", hierarchy)))
            if _rc(r):
                return "load", _rc(r), None
            obj = struct.unpack(">I", r[10:14])[0]
            try:
                if policy:
                    r = _tpm(s, _cmd(0x8001, 0x176, struct.pack(">II", TPM_RH_NULL, TPM_RH_NULL) +
                                     _b(os.urandom(16)) + _b(b"") + struct.pack(">BHH", 1, 0x0010, 0x000B)))
                    assert _rc(r) == 0, f"StartAuthSession: {_rc(r):#x}"
                    session = struct.unpack(">I", r[10:14])[0]
                    r = _tpm(s, _cmd(0x8001, CC_POLICY_COMMAND_CODE, struct.pack(">II", session, CC_CERTIFY)))
                    assert _rc(r) == 0, f"PolicyCommandCode: {_rc(r):#x}"
                else:
                    session = TPM_RS_PW
                auth = (struct.pack(">I", session) + _b(b"") + b"\x00" + _b(b"") +
                        struct.pack(">I", TPM_RS_PW) + _b(b"") + b"\x00" + _b(b""))
                body = (struct.pack(">II", obj, AKV) + struct.pack(">I", len(auth)) + auth +
                        _b(hashlib.sha256(challenge).digest()) + struct.pack(">H", 0x0010))
                r = _tpm(s, _cmd(0x8002, CC_CERTIFY, body))
                if _rc(r):
                    if policy:
                        _tpm(s, _cmd(0x8001, 0x165, struct.pack(">I", session)))
                    return "certify", _rc(r), None
            finally:
                _tpm(s, _cmd(0x8001, 0x165, struct.pack(">I", obj)))
    finally:
        os.close(dfd)
    # parameterSize, certifyInfo (TPM2B_ATTEST), signature (TPMT_SIGNATURE: alg, hash, r, s)
    at = 14
    n = struct.unpack(">H", r[at:at + 2])[0]
    attest = r[at + 2:at + 2 + n]
    sig_at = at + 2 + n
    rn = struct.unpack(">H", r[sig_at + 4:sig_at + 6])[0]
    sn = struct.unpack(">H", r[sig_at + 6 + rn:sig_at + 8 + rn])[0]
    sig = r[sig_at:sig_at + 8 + rn + sn]
    return "certify", 0, field_bytes(820, pub) + field_bytes(821, attest) + field_bytes(822, sig) + \
        field_varint(823, AKV)


def _rc(rsp):
    return struct.unpack(">I", rsp[6:10])[0]


def test_a_software_key_loaded_into_the_vtpm_is_not_certified_as_held_there(kt, pki, tmp_path):  # noqa: F811
    """The taken-over keystore makes a software key (its private part in the attacker's hands) and
    tries to have AKv certify it as made in the vTPM, for the verifier's challenge:
    - its public area alone through TPM2_LoadExternal, claiming fixedTPM | fixedParent |
      sensitiveDataOrigin | sign (the TPM checks no attribute of a public-only object), with
      adminWithPolicy and PolicyCommandCode(Certify) as its policy, or with userWithAuth: the
      certification's ADMIN role then needs an authValue or a policy, which a public-only object
      does not have (TPM_RC_AUTH_UNAVAILABLE);
    - with its private part, claiming the same: TPM2_LoadExternal refuses fixedTPM/fixedParent;
    - with its private part and honest attributes: AKv certifies it, and the attacker signs a key
      certificate of it with the genuine key description (security level tpm) under the
      container certificate: trustme-verify --vtpm-key refuses it ("not one made in the TPM").
    Held at each step; the genuine attestation passes."""
    import base64
    from test_device import provision
    from test_keystore import json_device_enrolled
    d = kt
    if not json_device_enrolled(d):
        provision(d, pki, tmp_path)
    key_json = _vtpm_owner_key(d, "ta", tmp_path)
    challenge = os.urandom(16)
    with ks(d, "ta") as k:
        k.generate("rv4-tpm", "ec", 256, auths(["sign"], ["sha256"]), security="tpm")
        certs = k.attest("rv4-tpm", challenge)

    def pem(ders):
        return "".join("-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(c).decode() + "-----END CERTIFICATE-----\n"
                       for c in ders)

    def check(ders):
        path = tmp_path / "att.pem"
        path.write_text(pem(ders))
        r = subprocess.run([str(BUILD / "src/verify/trustme-verify"), "--key-attestation", str(path),
                            "--ak-anchor", str(pki["dir"] / "customer/general-root-ca.pem"),
                            "--device-ca", str(pki["dir"] / "customer/device-ca.pem"), "--no-crl", "--json",
                            "--challenge", challenge.hex(), "--vtpm-key", str(key_json)],
                           capture_output=True, text=True)
        return r.returncode, json.loads(r.stdout) if r.stdout else r.stderr

    rc, rep = check(certs)
    assert rc == 0 and rep["tpm_certified"], rep

    mine = ec.generate_private_key(ec.SECP256R1())
    claimed = FIXED_TPM | FIXED_PARENT | SENSITIVE_ORIGIN | SIGN
    for hierarchy in (TPM_RH_OWNER, TPM_RH_NULL):
        stage, rc, ext = _certify_external(d, "ta", mine, challenge, claimed | ADMIN_WITH_POLICY, False, hierarchy,
                                           True)
        assert (stage, rc) == ("certify", 0x12F), f"public only, policy: {stage} {rc:#x}"
        stage, rc, ext = _certify_external(d, "ta", mine, challenge, claimed | USER_WITH_AUTH, False, hierarchy,
                                           False)
        assert (stage, rc) == ("certify", 0x12F), f"public only, password: {stage} {rc:#x}"
    stage, rc, ext = _certify_external(d, "ta", mine, challenge, claimed | USER_WITH_AUTH, True, TPM_RH_NULL, False)
    assert stage == "load" and rc != 0, f"with its private part, fixedTPM claimed: {stage} {rc:#x}"
    stage, rc, ext = _certify_external(d, "ta", mine, challenge, SIGN | USER_WITH_AUTH, True, TPM_RH_NULL, False)
    assert (stage, rc) == ("certify", 0) and ext, f"AKv did not certify the honest external key: {stage} {rc:#x}"

    att_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "att.key").write_bytes(att_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    spki = att_key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    cont = _steal_container_cert(d, "ta", spki)
    (tmp_path / "cont.pem").write_text(pem([cont]))
    desc = _ext_value(certs[0], KD_OID)
    (tmp_path / "pub.pem").write_bytes(mine.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "ext.cnf").write_text("\n".join(["[e]", "basicConstraints = critical,CA:FALSE",
                                                 f"{KD_OID} = DER:{desc.hex()}", f"{CERTIFY_OID} = DER:{ext.hex()}"])
                                      + "\n")

    def ossl(*args):
        subprocess.run([tool("openssl"), *map(str, args)], check=True, capture_output=True)
    ossl("req", "-new", "-key", tmp_path / "att.key", "-subj", "/CN=rv4-tpm", "-out", tmp_path / "f.csr")
    ossl("x509", "-req", "-in", tmp_path / "f.csr", "-CA", tmp_path / "cont.pem", "-CAkey", tmp_path / "att.key",
         "-force_pubkey", tmp_path / "pub.pem", "-extfile", tmp_path / "ext.cnf", "-extensions", "e",
         "-days", "1", "-set_serial", "9", "-outform", "DER", "-out", tmp_path / "f.der")
    forged = [(tmp_path / "f.der").read_bytes(), cont] + certs[2:]
    rc, rep = check(forged)
    assert rc == 1 and not rep.get("tpm_certified"), f"a software key passed as certified in the vTPM: {rep}"
    assert "not one made in the TPM" in rep["reason"], rep
