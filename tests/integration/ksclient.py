# SPDX-License-Identifier: GPL-2.0-or-later
"""A client of the per-container keystore (proto/keystore.proto, docs/KEYSTORE.md) for the tests,
built on pb.py: it speaks to /run/trustme/keystore.sock of a running container through
/proc/<init>/root, as the container's own processes do from inside."""
import socket
import struct

from pb import encode, field_bytes, field_varint, frame, parse

ALG = {"ec": 1, "rsa": 2, "aes": 3, "hmac": 4}
PURPOSE = {"sign": 1, "verify": 2, "encrypt": 3, "decrypt": 4, "wrap": 5, "agree": 6}
DIGEST = {"none": 0, "sha256": 1, "sha384": 2, "sha512": 3}
PAD = {"none": 0, "pss": 1, "pkcs1": 2, "oaep": 3, "pkcs7": 4}
MODE = {"none": 0, "gcm": 1, "cbc": 2, "ctr": 3}

# KsError
OK = 0
ERR = {
    "INVALID_ARGUMENT": 1, "UNSUPPORTED_ALGORITHM": 2, "UNSUPPORTED_KEY_SIZE": 3, "KEY_NOT_FOUND": 4,
    "KEY_EXISTS": 5, "INCOMPATIBLE_PURPOSE": 6, "INCOMPATIBLE_DIGEST": 7, "INCOMPATIBLE_PADDING": 8,
    "INCOMPATIBLE_BLOCK_MODE": 9, "INVALID_MAC_LENGTH": 10, "KEY_NOT_YET_VALID": 11, "KEY_EXPIRED": 12,
    "KEY_MAX_OPS_EXCEEDED": 13, "KEY_RATE_LIMITED": 14, "AUTH_REQUIRED": 15, "AUTH_FAILED": 16,
    "TOO_MANY_OPERATIONS": 17, "INVALID_HANDLE": 18, "VERIFICATION_FAILED": 19, "INVALID_KEY_BLOB": 20,
    "INVALID_INPUT_LENGTH": 21, "INVALID_NONCE": 22, "INVALID_TAG": 23, "STORAGE": 24, "TOO_MANY_KEYS": 25,
    "INTERNAL": 26, "MALFORMED_MESSAGE": 27, "UNSUPPORTED_PURPOSE": 28, "ATTESTATION_UNAVAILABLE": 29,
    "TPM_UNAVAILABLE": 767,
}
SECURITY = {"software": 0, "tpm": 1}


class KsError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def auths(purposes=(), digests=(), paddings=(), modes=(), min_mac=None, not_before=None, not_after=None,
          uses=None, min_secs=None, caller_nonce=None):
    f = {}
    if purposes:
        f[1] = [PURPOSE[p] for p in purposes]
    if digests:
        f[2] = [DIGEST[d] for d in digests]
    if paddings:
        f[3] = [PAD[p] for p in paddings]
    if modes:
        f[4] = [MODE[m] for m in modes]
    for num, v in ((5, min_mac), (6, not_before), (7, not_after), (8, uses), (9, min_secs)):
        if v is not None:
            f[num] = [v]
    if caller_nonce is not None:
        f[11] = [int(caller_nonce)]
    return encode(f)


def params(purpose, digest=None, padding=None, mode=None, mac=None, nonce=None, aad=None, passphrase=None,
           prehashed=None):
    f = {1: [PURPOSE[purpose]]}
    if digest:
        f[2] = [DIGEST[digest]]
    if padding:
        f[3] = [PAD[padding]]
    if mode:
        f[4] = [MODE[mode]]
    if mac is not None:
        f[5] = [mac]
    if nonce is not None:
        f[6] = [nonce]
    if aad is not None:
        f[7] = [aad]
    if passphrase is not None:
        f[8] = [passphrase]
    if prehashed is not None:
        f[560] = [int(prehashed)]
    return encode(f)


class Keystore:
    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.next_id = 1

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("keystore closed the connection")
            buf += chunk
        return buf

    def raw(self, body_field, body):
        """Send one request, return (error, message, fields of the response)."""
        rid = self.next_id
        self.next_id += 1
        req = field_varint(1, 1) + field_varint(2, rid) + field_bytes(body_field, body)
        self.sock.sendall(frame(req))
        (n,) = struct.unpack(">I", self._recv_exact(4))
        resp = parse(self._recv_exact(n))
        # a request that does not unpack is answered with id 0: its id could not be read
        assert resp.get(1, [0])[0] in (rid, 0 if resp.get(2, [0])[0] == ERR["MALFORMED_MESSAGE"] else rid), resp
        return resp.get(2, [0])[0], resp.get(3, [b""])[0].decode(), resp

    def call(self, body_field, body):
        code, msg, resp = self.raw(body_field, body)
        if code != OK:
            raise KsError(code, msg)
        return resp

    def generate(self, alias, alg, size=None, auth=b"", passphrase=None, security=None):
        f = {1: [alias.encode()], 2: [ALG[alg]]}
        if size:
            f[3] = [size]
        f[4] = [auth]
        if passphrase is not None:
            f[5] = [passphrase]
        if security is not None:
            f[763] = [SECURITY[security]]
        return parse(self.call(10, encode(f))[10][0])

    def import_key(self, alias, alg, material, auth=b"", passphrase=None):
        f = {1: [alias.encode()], 2: [ALG[alg]], 3: [auth], 5: [material]}
        if passphrase is not None:
            f[4] = [passphrase]
        return parse(self.call(11, encode(f))[10][0])

    def one_shot(self, alias, prm, data=b"", signature=None):
        f = {1: [alias.encode()], 2: [prm], 3: [data]}
        if signature is not None:
            f[4] = [signature]
        out = parse(self.call(16, encode(f)).get(12, [b""])[0])
        return out.get(1, [b""])[0], out.get(2, [None])[0]

    def begin(self, alias, prm):
        r = parse(self.call(12, encode({1: [alias.encode()], 2: [prm]}))[11][0])
        return r[1][0], r.get(2, [None])[0]

    def update(self, handle, data):
        return parse(self.call(13, encode({1: [handle], 2: [data]})).get(12, [b""])[0]).get(1, [b""])[0]

    def finish(self, handle, data=b"", signature=None):
        f = {1: [handle], 2: [data]}
        if signature is not None:
            f[3] = [signature]
        return parse(self.call(14, encode(f)).get(12, [b""])[0]).get(1, [b""])[0]

    def abort(self, handle):
        self.call(15, encode({1: [handle]}))

    def public_key(self, alias):
        return parse(self.call(17, encode({1: [alias.encode()]}))[13][0])[1][0]

    def delete(self, alias):
        self.call(18, encode({1: [alias.encode()]}))

    def list(self):
        resp = self.call(19, b"")
        keys = parse(resp[14][0]).get(1, []) if 14 in resp else []
        return sorted(parse(k)[1][0].decode() for k in keys)

    def import_wrapped(self, alias, wrapping_alias, wrapped, wrapping_passphrase=None, passphrase=None):
        f = {1: [alias.encode()], 2: [wrapping_alias.encode()], 3: [wrapped]}
        if wrapping_passphrase is not None:
            f[4] = [wrapping_passphrase]
        if passphrase is not None:
            f[5] = [passphrase]
        return parse(self.call(22, encode(f))[10][0])

    def attest(self, alias, challenge=b""):
        """Key attestation: the DER certificates, leaf first (key, container, the AK's chain)."""
        resp = self.call(21, encode({1: [alias.encode()], 2: [challenge]}))
        return parse(resp[15][0]).get(1, [])

    # Secure storage (proto/sstore.proto, docs/SECURE_STORAGE.md): KsRequest/KsResponse field 360.
    def sstore(self, op_field, body=b""):
        """One sstore.Request with op op_field; returns (op field of the answer, its fields):
        (360, {376: [errno], 377: [message]}) for a refusal."""
        resp = self.call(360, field_bytes(op_field, body))
        out = parse(resp[360][0])
        (num,) = out.keys()
        return num, parse(out[num][0])

    def sstore_ok(self, op_field, body=b""):
        num, f = self.sstore(op_field, body)
        if num == 360:
            raise SstoreError(f.get(376, [0])[0], f.get(377, [b""])[0].decode())
        return num, f

    def commit(self, puts=(), deletes=(), create_only=False):
        body = b""
        for oid, data in puts:
            obj = field_bytes(360, oid.encode()) + field_bytes(361, data)
            if create_only:
                obj += field_varint(364, 1)
            body += field_bytes(367, obj)
        for oid in deletes:
            body += field_bytes(368, oid.encode())
        return self.sstore_ok(372, body)[1][362][0]

    def read(self, oid, tamper_proof=False):
        body = field_bytes(365, oid.encode()) + (field_varint(366, 1) if tamper_proof else b"")
        return self.sstore_ok(371, body)[1].get(361, [b""])[0]

    def objects(self):
        _, f = self.sstore_ok(373)
        return sorted(parse(o)[360][0].decode() for o in f.get(360, []))

    def store_status(self):
        return self.sstore_ok(374)[1]

    def tp_write(self, oid, data):
        return self.sstore_ok(375, field_bytes(365, oid.encode()) + field_bytes(369, data))


def wrap_key(spki_der, alg, material, auth):
    """What a server does to provision a key into one keystore (docs/KEYSTORE.md "Wrapped keys"):
    a KsWrappedKey for the wrapping key spki_der, binding the algorithm and authorisations."""
    import os
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    pub = serialization.load_der_public_key(spki_der)
    transport = os.urandom(32)
    enc = pub.encrypt(transport, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    desc = encode({1: [ALG[alg]], 2: [auth]})
    iv = os.urandom(12)
    ct = AESGCM(transport).encrypt(iv, material, desc)
    return {1: [enc], 2: [iv], 3: [desc], 4: [ct]}


class SstoreError(Exception):
    def __init__(self, errno_, message):
        super().__init__(f"errno {errno_}: {message}")
        self.errno = errno_
        self.message = message
