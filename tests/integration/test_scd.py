# SPDX-License-Identifier: GPL-2.0-or-later
"""trustme-scd, the token service: its protocol under garbage (standalone and live behind
trustmed), its signature and certificate-chain verification service, and its confinement."""
import ctypes
import os
import pwd
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD, wait_for
from pb import field_bytes, field_varint, frame, parse
from tools import tool


def secrets_file(d, *lines):
    path = d.base / f"secrets-{time.monotonic_ns()}"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def _pidfd_getfd(pid, fd):
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(434, pid, 0)  # pidfd_open
    if pidfd < 0:
        raise OSError(ctypes.get_errno(), "pidfd_open")
    try:
        dup = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
        if dup < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
        return dup
    finally:
        os.close(pidfd)


def trustmed_end_of_scd_socket(d, scd):
    """A duplicate of trustmed's end of its socket to scd (the peer of scd's fd 3)."""
    peer = os.stat(f"/proc/{scd}/fd/3").st_ino
    out = subprocess.run([tool("ss"), "-x", "-a", "-p"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[7] == str(peer) and f"pid={d.proc.pid}," in line:
            fd = int(line.split(f"pid={d.proc.pid},fd=")[1].split(")")[0])
            return socket.socket(fileno=_pidfd_getfd(d.proc.pid, fd))
    raise AssertionError(f"no socket of trustmed is connected to scd's (inode {peer}):\n{out}")


SCD_GARBAGE = [
    b"",                                              # an empty packet
    b"\x00\x00",                                      # not even a header
    b"\xff\xff\xff\xff" + b"x" * 16,                   # a header announcing 4 GiB
    struct.pack(">I", 100) + b"short",                # header and size disagree
    frame(b"\xff\xff\xff\xff\xff"),                   # a frame of nonsense
    frame(field_varint(1, 99) + field_varint(2, 5)),  # wrong protocol version
    frame(field_varint(1, 1) + field_varint(2, 6)),   # no body
    frame(field_varint(1, 1) + field_varint(2, 7) + field_bytes(99, b"")),  # unknown body
    frame(field_varint(1, 1) + field_varint(2, 8) + field_bytes(12, field_bytes(1, b"not-a-uuid"))),
    frame(field_varint(1, 1) + field_varint(2, 9) + field_bytes(11, field_bytes(2, b"12\x0034"))),
    os.urandom(3000),
]


@pytest.fixture
def scd(tmp_path):
    """A trustme-scd of our own (not confined: the protocol is what is tested), talked to
    directly. Yields the socket; checks that scd ends cleanly when the socket is closed."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    state = tmp_path / "state"
    state.mkdir()
    # scd takes its socket as fd 3 (dup2 makes it inheritable; close_fds would close it again)
    proc = subprocess.Popen([str(BUILD / "src/scd/trustme-scd"), "--state-dir", str(state)],
                            preexec_fn=lambda: os.dup2(theirs.fileno(), 3), close_fds=False,
                            stderr=subprocess.DEVNULL)
    theirs.close()
    ours.settimeout(10)
    try:
        ready = parse(ours.recv(65536)[4:])
        assert 15 in ready  # Ready
        yield ours
        assert proc.poll() is None, "scd is still running"
    finally:
        ours.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "scd ends cleanly when trustmed closes the socket"


def call(sock, req_id, body_field, body):
    """Send one request; the top-level fields of the response."""
    sock.send(frame(field_varint(1, 1) + field_varint(2, req_id) + field_bytes(body_field, body)))
    resp = parse(sock.recv(1 << 20)[4:])
    assert resp[2] == [req_id]
    return resp


def test_scd_answers_garbage_with_errors(scd):
    """Malformed packets: an Error for each, and scd goes on."""
    for packet in SCD_GARBAGE:
        scd.send(packet)
        resp = parse(scd.recv(65536)[4:])
        assert 10 in resp, f"an Error for {packet[:16]!r}"
        assert parse(resp[10][0])[1][0] > 0
    # a valid request still works
    resp = call(scd, 42, 16, field_bytes(1, b"123e4567-e89b-42d3-a456-426614174000"))
    assert 12 in resp                       # TokenStatus
    assert parse(resp[12][0])[1] == [0]     # not paired


# ---- the verification service ----------------------------------------------------------------

def openssl(*args, cwd):
    subprocess.run([tool("openssl"), *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d, root_cn="test-root", leaf_eku="codeSigning"):
    """A root CA and an ECDSA P-256 signing certificate issued by it, made with the openssl CLI."""
    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-subj", f"/CN={root_cn}", "-days", "2",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=signer", cwd=d)
    (d / "leaf.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage={leaf_eku}\nsubjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext", cwd=d)
    (d / "data").write_bytes(b"guestos.json contents\n")
    openssl("dgst", "-sha256", "-sign", "leaf.key", "-out", "data.sig", "data", cwd=d)
    return d


def verify(sock, req_id, pki, anchor=None, data=None, eku="1.3.6.1.5.5.7.3.3"):
    body = (field_bytes(1, data if data is not None else (pki / "data").read_bytes())
            + field_bytes(2, (pki / "data.sig").read_bytes())
            + field_bytes(3, (pki / "leaf.pem").read_bytes())
            + field_bytes(4, (anchor or pki / "ca.pem").read_bytes())
            + field_bytes(6, eku.encode()))
    return call(sock, req_id, 17, body)


def error_code(resp):
    assert 10 in resp, f"an Error, not {resp}"
    err = parse(resp[10][0])
    return err[1][0], err.get(2, [b""])[0].decode()


def test_scd_verifies_signatures_and_chains(scd, tmp_path):
    pki = make_pki(tmp_path / "pki")
    resp = verify(scd, 1, pki)
    assert 13 in resp, f"a VerifyResult, not {resp}"
    result = parse(resp[13][0])
    assert b"CN=signer" in result[1][0] and b"CN=test-root" in result[2][0]
    assert len(result[3][0]) == 64 and result[4] == [2]

    code, msg = error_code(verify(scd, 2, pki, data=b"guestos.json contents, altered\n"))
    assert code == 74, msg  # EBADMSG: the signature does not cover this data
    other = make_pki(tmp_path / "other", root_cn="other-root")
    code, msg = error_code(verify(scd, 3, pki, anchor=other / "ca.pem"))
    assert code == 129, msg  # EKEYREJECTED: no chain to the given anchor
    code, msg = error_code(verify(scd, 4, pki, eku="1.3.6.1.5.5.7.3.1"))
    assert code == 129 and "usage" in msg.lower(), msg  # serverAuth is not what was signed for
    wrong_eku = make_pki(tmp_path / "tls", leaf_eku="serverAuth")
    code, msg = error_code(verify(scd, 5, wrong_eku))
    assert code == 129, msg
    code, msg = error_code(call(scd, 6, 17, field_bytes(3, b"-----BEGIN CERTIFICATE-----\ngarbage")))
    assert code == 22, msg  # EINVAL, named


def test_garbage_to_the_live_scd_socket(daemon):
    d = daemon
    d.create("g", token={"type": "soft", "kdf_n": 1024})
    d.cli("change-pin", "--pin-file", secrets_file(d, "7391", "12345678"), "g")
    scd = wait_for(d.scd_pid, what="scd")
    sock = trustmed_end_of_scd_socket(d, scd)
    try:
        for packet in SCD_GARBAGE * 3:
            sock.send(packet)
    finally:
        sock.close()
    time.sleep(0.3)
    assert d.scd_pid() == scd, "scd kept running"
    d.cli("start", "--pin-file", secrets_file(d, "7391"), "g")  # and still serves trustmed
    assert d.state("g")["state"] == "running"


def test_scd_is_confined(daemon):
    scd = wait_for(daemon.scd_pid, what="scd")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{scd}/status").read_text().splitlines())
    uid = int(status["Uid"].split()[0])
    assert uid != 0 and all(int(status[k], 16) == 0 for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb"))
    assert status["NoNewPrivs"].strip() == "1"
    gid = int(status["Gid"].split()[0])
    user = pwd.getpwuid(uid).pw_name
    assert {int(g) for g in status["Groups"].split()} == set(os.getgrouplist(user, gid)), \
        "its user's groups, nothing of trustmed's"
    assert os.readlink(f"/proc/{scd}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert os.readlink(f"/proc/{scd}/ns/net") != os.readlink("/proc/self/ns/net")
    root = Path(f"/proc/{scd}/root")
    assert (root / "state/tokens").is_dir() or (root / "state").is_dir()
    assert not (root / "root").exists() and not (root / "home").exists()
    assert not (root / daemon.data_dir.relative_to("/") / "containers").exists()


# ---- re-keying: the attacker who has the TPM -------------------------------------------------

def scd_req(sock, req_id, body_field, body, anchor=None):
    """A request with an optional token_anchor (181); the response's top-level fields."""
    extra = field_bytes(181, anchor) if anchor else b""
    sock.send(frame(field_varint(1, 1) + field_varint(2, req_id) + extra +
                    field_bytes(body_field, body)))
    resp = parse(sock.recv(1 << 20)[4:])
    assert resp[2] == [req_id]
    return resp


def files_digest(resp):
    return parse(resp[3][0])[180][0]


def test_old_soft_and_old_pin_after_rekey_with_the_tpm(scd, tmp_path):
    """Against root with TPM access (docs/STORAGE.md, "Who can guess PINs"): it unseals the device secret and can anchor
    whatever it likes, so here it plays trustmed to a real scd with the right device secret and
    its own anchors. It knew the old PIN (or PUK) and kept the old .soft: after a PIN change and
    after a PUK unlock, the old .soft with the old PIN no longer opens the current key.wrapped.
    (What it does open is the old key.wrapped, if that was kept too: the data key itself is not
    changed by a PIN change; docs/STORAGE.md says so.)"""
    uuid = b"123e4567-e89b-42d3-a456-426614174abc"
    soft = tmp_path / "state/tokens" / (uuid.decode() + ".soft")
    assert 14 in scd_req(scd, 1, 18, field_bytes(1, os.urandom(32)))  # the device secret
    spec = field_varint(1, 1) + field_varint(2, 1024)
    r = scd_req(scd, 2, 10, field_bytes(1, uuid) + field_bytes(2, spec) + field_bytes(3, b"7391") +
                field_bytes(4, b"12345678"))
    assert 14 in r, r
    anchor = files_digest(r)
    assert b'"version":3' in soft.read_bytes()
    r = scd_req(scd, 3, 11, field_bytes(1, uuid) + field_bytes(2, b"7391"), anchor)
    key = parse(r[11][0])
    data_key, wrapped0 = key[1][0], key[2][0]
    old_soft, old_anchor = soft.read_bytes(), anchor

    def change(req_id, body_field, secret, new_pin, wrapped):
        nonlocal anchor
        r = scd_req(scd, req_id, body_field, field_bytes(1, uuid) + field_bytes(2, secret) +
                    field_bytes(3, new_pin) + field_bytes(240, wrapped), anchor)
        assert 242 in r, r
        rk = parse(r[242][0])
        pending, wrapped_new = rk[1][0], rk[2][0]
        r = scd_req(scd, req_id + 100, 241, field_bytes(1, uuid) + field_bytes(2, pending), anchor)
        assert 14 in r and files_digest(r) == pending
        anchor = pending
        return wrapped_new

    def unwrap(req_id, pin, wrapped, with_anchor):
        r = scd_req(scd, req_id, 12, field_bytes(1, uuid) + field_bytes(2, pin) +
                    field_bytes(3, wrapped), with_anchor)
        return parse(r[11][0])[1][0] if 11 in r else parse(r[10][0])[1][0]

    wrapped1 = change(4, 13, b"7391", b"4862", wrapped0)
    assert wrapped1 != wrapped0
    assert unwrap(5, b"4862", wrapped1, anchor) == data_key, "the same data key, re-wrapped"
    cur_soft = soft.read_bytes()
    soft.write_bytes(old_soft)
    assert unwrap(6, b"7391", wrapped1, old_anchor) == 74, "EBADMSG: the old KEK opens nothing new"
    assert unwrap(7, b"7391", wrapped0, old_anchor) == data_key, "the residual the docs state"
    soft.write_bytes(cur_soft)

    # after a PUK unlock, likewise, for the PUK as well as the PIN of before
    before_unlock, before_anchor = soft.read_bytes(), anchor
    wrapped2 = change(8, 14, b"12345678", b"2580", wrapped1)
    assert unwrap(9, b"2580", wrapped2, anchor) == data_key
    soft.write_bytes(before_unlock)
    assert unwrap(10, b"4862", wrapped2, before_anchor) == 74
    r = scd_req(scd, 11, 14, field_bytes(1, uuid) + field_bytes(2, b"12345678") +
                field_bytes(3, b"1111") + field_bytes(240, wrapped2), before_anchor)
    assert 10 in r and parse(r[10][0])[1][0] == 74, "the old PUK side reaches only the old KEK"


def test_a_version_2_token_still_works_and_becomes_version_3(scd, tmp_path):
    """A soft token written by an older trustme (format 2: both slots hold the KEK) keeps
    working with this scd; its next PIN change makes it version 3 without the PUK (keeping the
    v2 PUK slot, "puk_key"), and a PUK unlock after that drops that too. The v2 file and blob are
    made here from the format's description (python cryptography), not by scd."""
    import base64
    import hashlib
    import json
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    uuid = b"123e4567-e89b-42d3-a456-426614174def"
    soft = tmp_path / "state/tokens" / (uuid.decode() + ".soft")
    ds, kek, data_key = os.urandom(32), os.urandom(32), os.urandom(64)
    assert 14 in scd_req(scd, 1, 18, field_bytes(1, ds))
    spec = field_varint(1, 1) + field_varint(2, 1024)
    assert 14 in scd_req(scd, 2, 10, field_bytes(1, uuid) + field_bytes(2, spec) +
                         field_bytes(3, b"7391") + field_bytes(4, b"12345678"))

    def slot(secret, name):
        salt, nonce = os.urandom(16), os.urandom(12)
        k = hashlib.scrypt(secret, salt=salt, n=1024, r=8, p=1, maxmem=1 << 26, dklen=32)
        k = HKDF(hashes.SHA256(), 32, ds, b"trustme soft token slot v2").derive(k)
        ct = AESGCM(k).encrypt(nonce, kek, b"trustme soft token v2:" + uuid + b":" + name)
        return {k: base64.b64encode(v).decode() for k, v in
                (("salt", salt), ("nonce", nonce), ("ct", ct))}

    soft.write_text(json.dumps({"version": 2, "kdf": {"alg": "scrypt", "N": 1024, "r": 8, "p": 1},
                                "pin": slot(b"7391", b"pin"), "puk": slot(b"12345678", b"puk")}))
    header = b"TMWK" + bytes([1, 1, 1, 0]) + os.urandom(12)
    wk = HKDF(hashes.SHA256(), 32, ds, b"trustme container key v1").derive(kek)
    blob = header + AESGCM(wk).encrypt(header[8:], data_key, header + uuid)
    anchor = parse(scd_req(scd, 3, 16, field_bytes(1, uuid))[12][0])[180][0]  # Status
    r = scd_req(scd, 4, 12, field_bytes(1, uuid) + field_bytes(2, b"7391") + field_bytes(3, blob),
                anchor)
    assert 11 in r and parse(r[11][0])[1][0] == data_key, r

    def change(req_id, body_field, secret, new_pin, wrapped):
        r = scd_req(scd, req_id, body_field, field_bytes(1, uuid) + field_bytes(2, secret) +
                    field_bytes(3, new_pin) + field_bytes(240, wrapped), anchor)
        assert 242 in r, r
        rk = parse(r[242][0])
        r = scd_req(scd, req_id + 100, 241, field_bytes(1, uuid) + field_bytes(2, rk[1][0]),
                    anchor)
        assert files_digest(r) == rk[1][0]
        return rk[1][0], rk[2][0]

    v2_text, v2_blob = soft.read_text(), blob
    anchor, blob = change(5, 13, b"7391", b"4862", blob)
    f = json.loads(soft.read_text())
    assert f["version"] == 3 and "puk_key" in f
    # review 2: a downgrade, the v2 file restored over the migrated one, is refused with the
    # anchor of the current file, for the old PIN and the new one, with either blob
    v3_text = soft.read_text()
    soft.write_text(v2_text)
    for i, (pin, b) in enumerate(((b"7391", v2_blob), (b"4862", blob), (b"7391", blob))):
        r = scd_req(scd, 50 + i, 12, field_bytes(1, uuid) + field_bytes(2, pin) +
                    field_bytes(3, b), anchor)
        assert 10 in r and parse(r[10][0])[1][0] == 116, ("ESTALE: not the anchored file", r)
    soft.write_text(v3_text)
    r = scd_req(scd, 6, 12, field_bytes(1, uuid) + field_bytes(2, b"4862") + field_bytes(3, blob),
                anchor)
    assert parse(r[11][0])[1][0] == data_key
    anchor, blob = change(7, 14, b"12345678", b"2580", blob)
    f = json.loads(soft.read_text())
    assert f["version"] == 3 and "puk_key" not in f
    r = scd_req(scd, 8, 12, field_bytes(1, uuid) + field_bytes(2, b"2580") + field_bytes(3, blob),
                anchor)
    assert parse(r[11][0])[1][0] == data_key


def test_a_swapped_puk_public_key_with_the_tpm(scd, tmp_path):
    """Review 2 (docs/SECURITY.md), root with TPM access (it has the device secret and anchors what it
    likes; here it plays trustmed): it puts an X25519 public key of its own as the file's puk_pub
    and anchors that file. The user's next PIN change, which does not know the PUK, seals the new
    KEK to that key: the attacker opens the current key.wrapped without any PIN. Nothing binds
    puk_pub to the PIN slot; docs/STORAGE.md ("Who can guess PINs") says so, and that this gives
    no more than the next start would (the key in the kernel). Asserted so the docs stay true."""
    import base64
    import json
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import (X25519PrivateKey,
                                                                  X25519PublicKey)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    uuid = b"123e4567-e89b-42d3-a456-426614174aaa"
    soft = tmp_path / "state/tokens" / (uuid.decode() + ".soft")
    ds = os.urandom(32)
    assert 14 in scd_req(scd, 1, 18, field_bytes(1, ds))
    spec = field_varint(1, 1) + field_varint(2, 1024)
    r = scd_req(scd, 2, 10, field_bytes(1, uuid) + field_bytes(2, spec) + field_bytes(3, b"7391") +
                field_bytes(4, b"12345678"))
    anchor = files_digest(r)
    key = parse(scd_req(scd, 3, 11, field_bytes(1, uuid) + field_bytes(2, b"7391"), anchor)[11][0])
    data_key, wrapped0 = key[1][0], key[2][0]

    mine = X25519PrivateKey.generate()
    pub = mine.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    f = json.loads(soft.read_text())
    f["puk_pub"] = base64.b64encode(pub).decode()
    soft.write_text(json.dumps(f, separators=(",", ":")))
    anchor = parse(scd_req(scd, 4, 16, field_bytes(1, uuid))[12][0])[180][0]  # "anchored"

    # the user changes the PIN
    r = scd_req(scd, 5, 13, field_bytes(1, uuid) + field_bytes(2, b"7391") +
                field_bytes(3, b"4862") + field_bytes(240, wrapped0), anchor)
    rk = parse(r[242][0])
    pending, wrapped1 = rk[1][0], rk[2][0]
    assert 14 in scd_req(scd, 6, 241, field_bytes(1, uuid) + field_bytes(2, pending), anchor)

    sealed = json.loads(soft.read_text())["sealed"]
    epk, nonce, ct = (base64.b64decode(sealed[k]) for k in ("epk", "nonce", "ct"))
    shared = mine.exchange(X25519PublicKey.from_public_bytes(epk))
    k = HKDF(hashes.SHA256(), 32, ds, b"trustme x25519 seal v1").derive(shared + epk + pub)
    kek = AESGCM(k).decrypt(nonce, ct, b"trustme soft token v3:" + uuid + b":sealed")
    wk = HKDF(hashes.SHA256(), 32, ds, b"trustme container key v1").derive(kek)
    header = wrapped1[:20]
    opened = AESGCM(wk).decrypt(header[8:], wrapped1[20:], header + uuid)
    assert opened == data_key, "documented as possible for root with TPM access"


def test_a_migrated_token_and_its_v2_file_with_the_tpm(scd, tmp_path):
    """Review 2 (docs/SECURITY.md), root with TPM access that kept a version 2 token file and knew its
    PIN: after the migrating PIN change and a further one, it reads the current file's puk_key
    with the v2 file's KEK, opens the PUK side and so the current KEK: the current key.wrapped
    opens without the current PIN. A PUK unlock ends that. Asserted as documented in
    docs/STORAGE.md "Not done" (a PIN change cannot re-key what only the PUK reaches)."""
    import base64
    import hashlib
    import json
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import (X25519PrivateKey,
                                                                  X25519PublicKey)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    uuid = b"123e4567-e89b-42d3-a456-426614174bbb"
    soft = tmp_path / "state/tokens" / (uuid.decode() + ".soft")
    ds, kek0, data_key = os.urandom(32), os.urandom(32), os.urandom(64)
    assert 14 in scd_req(scd, 1, 18, field_bytes(1, ds))
    spec = field_varint(1, 1) + field_varint(2, 1024)
    assert 14 in scd_req(scd, 2, 10, field_bytes(1, uuid) + field_bytes(2, spec) +
                         field_bytes(3, b"7391") + field_bytes(4, b"12345678"))

    def hk(key, info):
        return HKDF(hashes.SHA256(), 32, ds, info).derive(key)

    def slot(secret, name):
        salt, nonce = os.urandom(16), os.urandom(12)
        k = hk(hashlib.scrypt(secret, salt=salt, n=1024, r=8, p=1, maxmem=1 << 26, dklen=32),
               b"trustme soft token slot v2")
        ct = AESGCM(k).encrypt(nonce, kek0, b"trustme soft token v2:" + uuid + b":" + name)
        return {k: base64.b64encode(v).decode() for k, v in
                (("salt", salt), ("nonce", nonce), ("ct", ct))}

    soft.write_text(json.dumps({"version": 2, "kdf": {"alg": "scrypt", "N": 1024, "r": 8, "p": 1},
                                "pin": slot(b"7391", b"pin"), "puk": slot(b"12345678", b"puk")}))
    header = b"TMWK" + bytes([1, 1, 1, 0]) + os.urandom(12)
    blob = header + AESGCM(hk(kek0, b"trustme container key v1")).encrypt(header[8:], data_key,
                                                                          header + uuid)
    anchor = parse(scd_req(scd, 3, 16, field_bytes(1, uuid))[12][0])[180][0]

    def change(req_id, body_field, secret, new_pin, wrapped):
        r = scd_req(scd, req_id, body_field, field_bytes(1, uuid) + field_bytes(2, secret) +
                    field_bytes(3, new_pin) + field_bytes(240, wrapped), anchor)
        rk = parse(r[242][0])
        assert 14 in scd_req(scd, req_id + 100, 241, field_bytes(1, uuid) +
                             field_bytes(2, rk[1][0]), anchor)
        return rk[1][0], rk[2][0]

    def attacker_opens(wrapped):
        """kek0 (from the kept v2 file and its PIN) -> puk_key -> PUK private key -> sealed."""
        f = json.loads(soft.read_text())
        if "puk_key" not in f:
            return None
        b64 = base64.b64decode
        priv = AESGCM(hk(kek0, b"trustme soft token puk key v3")).decrypt(
            b64(f["puk_key"]["nonce"]), b64(f["puk_key"]["ct"]),
            b"trustme soft token v3:" + uuid + b":puk-key")
        mine = X25519PrivateKey.from_private_bytes(priv)
        pub = mine.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        epk = b64(f["sealed"]["epk"])
        k = hk(mine.exchange(X25519PublicKey.from_public_bytes(epk)) + epk + pub,
               b"trustme x25519 seal v1")
        kek = AESGCM(k).decrypt(b64(f["sealed"]["nonce"]), b64(f["sealed"]["ct"]),
                                b"trustme soft token v3:" + uuid + b":sealed")
        return AESGCM(hk(kek, b"trustme container key v1")).decrypt(wrapped[8:20], wrapped[20:],
                                                                    wrapped[:20] + uuid)

    anchor, blob = change(5, 13, b"7391", b"4862", blob)  # migrates to v3 with puk_key
    anchor, blob = change(6, 13, b"4862", b"2580", blob)  # a further PIN change
    assert attacker_opens(blob) == data_key, "documented: reachable until a PUK unlock"
    anchor, blob = change(7, 14, b"12345678", b"1593", blob)  # a PUK unlock ends it
    assert attacker_opens(blob) is None
