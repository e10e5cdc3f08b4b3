"""The control protocol under hostile input: garbage, truncation, oversize, unknown messages,
vanishing clients, slow clients, unprivileged peers. The daemon must answer with an error or
close the connection, and keep serving everyone else."""
import os
import socket
import struct
import subprocess
import time

import pytest

from conftest import TRUSTME
from pb import field_bytes, field_varint, frame, parse
from tools import tool


def request(body_field, body=b"", version=1, req_id=7, with_id=True):
    msg = b""
    if version is not None:
        msg += field_varint(1, version)
    if with_id:
        msg += field_varint(2, req_id)
    if body_field:
        msg += field_bytes(body_field, body)
    return msg


LIST = 10
STATE = 11


def recv_frame(sock, timeout=5):
    sock.settimeout(timeout)
    hdr = b""
    while len(hdr) < 4:
        chunk = sock.recv(4 - len(hdr))
        if not chunk:
            return None
        hdr += chunk
    (n,) = struct.unpack(">I", hdr)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return parse(data)


def error_of(resp):
    """(code, message) if resp is an Error response, else None."""
    if 10 not in resp:
        return None
    err = parse(resp[10][0])
    return err.get(1, [0])[0], err.get(2, [b""])[0].decode()


def connect(daemon):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(daemon.socket))
    return s


def assert_serving(daemon):
    """A well-behaved client still gets answers."""
    assert daemon.cli("list").returncode == 0
    with connect(daemon) as s:
        s.sendall(frame(request(LIST, req_id=99)))
        resp = recv_frame(s)
        assert resp[2] == [99] and 12 in resp  # id echoed, ContainerList body


# ---- tests -------------------------------------------------------------------------------------

def test_valid_request_gets_id_and_version_echoed(daemon):
    with connect(daemon) as s:
        s.sendall(frame(request(LIST, req_id=123456789)))
        resp = recv_frame(s)
    assert resp[1] == [1] and resp[2] == [123456789] and 12 in resp


def test_garbage_payload_gets_an_error_and_the_connection_stays_usable(daemon):
    with connect(daemon) as s:
        s.sendall(frame(b"\xff\xfe\xfd this is not protobuf"))
        code, msg = error_of(recv_frame(s))
        assert "malformed request" in msg
        s.sendall(frame(request(LIST, req_id=5)))
        assert 12 in recv_frame(s)
    assert_serving(daemon)


def test_random_garbage_streams(daemon):
    for seed in range(20):
        with connect(daemon) as s:
            s.sendall(os.urandom(64 + seed * 37))
    assert_serving(daemon)


def test_oversized_frame_is_refused_and_closed(daemon):
    with connect(daemon) as s:
        s.sendall(struct.pack(">I", 64 << 20) + b"x" * 100)
        code, msg = error_of(recv_frame(s))
        assert "larger than" in msg
        assert recv_frame(s) is None  # closed
    assert_serving(daemon)


def test_truncated_frame_then_close(daemon):
    with connect(daemon) as s:
        s.sendall(struct.pack(">I", 1000) + b"only a little")
    with connect(daemon) as s:
        s.sendall(b"\x00\x00")  # half a header
    assert_serving(daemon)
    time.sleep(0.1)
    assert "closed in the middle of a message" in daemon.log()


def test_wrong_version_missing_id_and_unknown_body(daemon):
    with connect(daemon) as s:
        s.sendall(frame(request(LIST, version=2)))
        code, msg = error_of(recv_frame(s))
        assert "unsupported protocol version 2" in msg
        s.sendall(frame(request(LIST, version=None)))
        assert "unsupported protocol version 0" in error_of(recv_frame(s))[1]
        s.sendall(frame(request(LIST, with_id=False)))
        assert "without an id" in error_of(recv_frame(s))[1]
        s.sendall(frame(request(77, b"\x08\x01")))  # a body this daemon does not know
        assert "unknown request" in error_of(recv_frame(s))[1]
        s.sendall(frame(request(None)))  # no body at all
        assert "unknown request" in error_of(recv_frame(s))[1]
        s.sendall(frame(b""))  # zero-length frame = empty message
        assert "unsupported protocol version" in error_of(recv_frame(s))[1]
    assert_serving(daemon)


def test_missing_container_reference(daemon):
    with connect(daemon) as s:
        s.sendall(frame(request(STATE, b"")))  # ContainerRef without id
        assert "no container given" in error_of(recv_frame(s))[1]


def test_client_vanishing_mid_request(daemon):
    """Clients that disappear during a start --attach, a run, or a pending stop."""
    daemon.create("v", init="/bin/sh", args=["-c", "while :; do echo x; sleep 0.01; done"])
    p = subprocess.Popen([str(TRUSTME), "--run-dir", str(daemon.run_dir), "start", "--attach", "v"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p.stdout.readline()
    p.kill()
    p.wait()
    assert_serving(daemon)
    # init lost its stdio (writes fail with EPIPE; as pid 1 it ignores SIGPIPE) and runs on
    assert daemon.state("v")["state"] == "running"
    daemon.cli("stop", "--kill", "v")
    daemon.create("w")
    daemon.cli("start", "w")
    p = subprocess.Popen([str(TRUSTME), "--run-dir", str(daemon.run_dir), "stop", "--timeout", "5", "w"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.2)
    p.kill()
    from conftest import wait_for
    wait_for(lambda: daemon.state("w")["state"] == "stopped", timeout=15, what="stop to finish")
    assert_serving(daemon)


def test_slow_client_does_not_block_others(daemon):
    slow = connect(daemon)
    slow.sendall(struct.pack(">I", 100) + b"abc")  # and then nothing
    try:
        for _ in range(5):
            assert_serving(daemon)
    finally:
        slow.close()


def test_client_that_never_reads_does_not_block_others(daemon):
    """A client floods requests and never reads the replies: the daemon keeps serving others."""
    s = connect(daemon)
    s.setblocking(False)
    payload = frame(request(LIST))
    sent = 0
    try:
        for _ in range(20000):
            try:
                s.send(payload)
                sent += 1
            except BlockingIOError:
                break
        assert_serving(daemon)
    finally:
        s.close()
    assert_serving(daemon)


def test_many_connections(daemon):
    socks = []
    try:
        for _ in range(200):
            try:
                socks.append(connect(daemon))
            except OSError:
                break
        assert_serving_after_close = True
    finally:
        for s in socks:
            s.close()
    assert_serving(daemon)


def test_control_socket_is_root_only(daemon):
    mode = os.stat(daemon.socket).st_mode & 0o777
    assert mode == 0o600
    r = subprocess.run([tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", str(TRUSTME),
                        "--run-dir", str(daemon.run_dir), "list"], capture_output=True, text=True)
    assert r.returncode != 0 and "permission denied" in r.stderr


def trustmed_fds(daemon):
    return len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))


def test_second_stream_on_one_connection_is_refused(daemon):
    before = trustmed_fds(daemon)
    AUDIT = 20
    with connect(daemon) as s:
        for i in range(50):
            s.sendall(frame(request(AUDIT, req_id=100 + i)))
        time.sleep(0.5)
    time.sleep(0.2)
    assert trustmed_fds(daemon) <= before + 1
    assert_serving(daemon)


def test_fd_exhaustion_does_not_spin(daemon):
    """With its fd limit reached, trustmed pauses accepting instead of burning CPU."""
    pid = daemon.proc.pid
    subprocess.run([tool("prlimit"), f"--pid={pid}", "--nofile=48:"], check=True)
    socks = []
    try:
        for _ in range(80):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(daemon.socket))
            except (BlockingIOError, OSError):
                pass
            socks.append(s)
        ticks = lambda: sum(int(x) for x in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[11:13])
        t0 = ticks()
        time.sleep(1.0)
        assert ticks() - t0 < 30, "trustmed is spinning"  # 30 ticks = 0.3 s of CPU in 1 s
        assert daemon.log().count("Too many open files") < 30
    finally:
        for s in socks:
            s.close()
        subprocess.run([tool("prlimit"), f"--pid={pid}", "--nofile=1024:"], check=True)
    time.sleep(0.3)
    assert_serving(daemon)


def test_non_reading_client_cannot_grow_memory(daemon):
    pid = daemon.proc.pid
    rss = lambda: int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1])
    before = rss()
    s = connect(daemon)
    s.setblocking(False)
    payload = frame(request(LIST)) * 1000
    deadline = time.time() + 3
    while time.time() < deadline:
        try:
            s.send(payload)
        except BlockingIOError:
            time.sleep(0.01)
    assert rss() - before < 16 * 1024, "trustmed buffered replies without bound"
    assert_serving(daemon)
    s.close()


START = 14


def test_start_without_a_pin_asks_for_one(daemon):
    """A client that does not know a container is encrypted learns that it needs the PIN
    (Error.pin_required) and nothing starts; with the PIN, the same request starts it."""
    daemon.create("sealed", token={"type": "soft", "kdf_n": 1024})
    pins = daemon.base / "pins"
    pins.write_text("1234\n12345678\n")
    daemon.cli("change-pin", "--pin-file", pins, "sealed")
    with connect(daemon) as s:
        s.sendall(frame(request(START, field_bytes(1, b"sealed"), req_id=5)))
        resp = recv_frame(s)
        assert resp[2] == [5]
        err = parse(resp[10][0])
        assert err[1] == [126] and err[3] == [1]  # ENOKEY, pin_required
        assert daemon.state("sealed")["state"] == "stopped"
        s.sendall(frame(request(START, field_bytes(1, b"sealed") + field_bytes(3, b"1234"), req_id=6)))
        while True:
            resp = recv_frame(s)
            if 11 not in resp:  # past the Progress messages
                break
        assert resp[2] == [6] and 13 in resp, resp  # ContainerInfo
    assert daemon.state("sealed")["state"] == "running"
