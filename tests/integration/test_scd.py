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
