# SPDX-License-Identifier: GPL-2.0-or-later
"""Exec sessions under load: stdin with backpressure instead of loss, the cap of
sessions per connection, and commands that outlived their CLI (trustme exec list / kill)."""
import os
import signal
import subprocess
import time

import pytest

from conftest import TRUSTME, wait_for


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int([l for l in f if l.startswith("VmRSS")][0].split()[1])


@pytest.fixture
def running(daemon):
    daemon.create("box")
    daemon.cli("start", "box")
    return daemon


def test_piped_stdin_is_never_lost(running):
    """48 MiB into a command that reads nothing for 4 s: trustmed stops reading the client
    while the pipe is full (before: it dropped all past 16 MiB and logged it 1453 times)."""
    size = 48 << 20
    log_before = len(running.log())
    rss_before = rss_kib(running.proc.pid)
    p = subprocess.Popen(f"head -c {size} /dev/zero | {TRUSTME} --run-dir {running.run_dir} "
                         f"run box -- sh -c 'sleep 4; wc -c'", shell=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = running.proc.pid
    time.sleep(2)  # the command sleeps; the pipe and trustmed's buffer are full
    with open(f"/proc/{pid}/status") as f:
        rss = int([l for l in f if l.startswith("VmRSS")][0].split()[1])
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert out.strip() == str(size)
    assert rss < 16 * 1024, f"trustmed buffered the input: VmRSS {rss} KiB"
    assert "input overflow" not in running.log()[log_before:]
    time.sleep(0.5)
    assert rss_kib(running.proc.pid) < rss_before + 1024, "the input's buffers were kept"


def test_stdin_and_output_flow_together(running):
    """cat echoes 24 MiB back while it is still being sent: backpressure both ways, no
    deadlock between the client's writes and its reads."""
    size = 24 << 20
    src = running.base / "in"
    src.write_bytes(os.urandom(size))
    r = subprocess.run(f"{TRUSTME} --run-dir {running.run_dir} run box -- cat < {src} | "
                       f"cmp - {src} && echo same", shell=True, capture_output=True, text=True,
                       timeout=120)
    assert r.stdout.strip() == "same", r.stderr


# ---- the cap per connection, and commands that outlived their CLI ------------------------------

import json  # noqa: E402
import socket  # noqa: E402

from pb import field_bytes, field_varint, frame, parse  # noqa: E402
from test_protocol import error_of, recv_frame  # noqa: E402
from test_roles import NOT_ALLOWED, create, inside, roles_rootfs  # noqa: E402,F401

RUN = 18


STDIN = 21
SIGNAL = 23
STDIN_CREDIT_FIELD = 870  # RunRequest.stdin_credit and Response.stdin_credit
EXIT = 16


def run_request(req_id, *argv, container=b"box", credit=False):
    body = field_bytes(1, container) + b"".join(field_bytes(2, a.encode()) for a in argv)
    if credit:
        body += field_varint(STDIN_CREDIT_FIELD, 1)
    return frame(field_varint(1, 1) + field_varint(2, req_id) + field_bytes(RUN, body))


def session_frame(req_id, body_field, body):
    return frame(field_varint(1, 1) + field_varint(2, req_id) + field_bytes(body_field, body))


def granted(resp):
    """The bytes a StdinCredit reply grants (None for another reply)."""
    if STDIN_CREDIT_FIELD not in resp:
        return None
    return parse(resp[STDIN_CREDIT_FIELD][0]).get(871, [0])[0]


def exec_list(d, name):
    return json.loads(d.cli("exec", "list", "--json", name).stdout)


def test_exec_sessions_per_connection_are_capped(running):
    d = running
    pid = d.proc.pid
    fds_before = len(os.listdir(f"/proc/{pid}/fd"))
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(d.socket))
    try:
        for i in range(64):
            s.sendall(run_request(1000 + i, "/bin/sleep", "1000"))
        s.sendall(run_request(2000, "/bin/sleep", "1000"))
        while True:  # the 65th is refused; the others run (no reply until they end)
            resp = recv_frame(s, timeout=30)
            if resp[2] == [2000]:
                break
        code, msg = error_of(resp)
        assert code == 11 and "limit per connection" in msg, msg  # EAGAIN
        wait_for(lambda: len([e for e in exec_list(d, "box") if e["pid"]]) == 64,
                 what="64 sessions to run")
        fds_with = len(os.listdir(f"/proc/{pid}/fd"))
        assert fds_with - fds_before <= 64 * 5 + 4, fds_with - fds_before
        # another connection may run its own
        assert d.run("box", "/bin/echo", "other").stdout == "other\n"
    finally:
        s.close()
    # the client is gone; its 64 commands run on, orphaned, reachable by exec list / kill
    sessions = wait_for(lambda: (lambda l: l if len(l) == 64 and all(e["orphaned"] for e in l)
                                 else None)(exec_list(d, "box")), what="64 orphans")
    for e in sessions:
        d.cli("exec", "kill", "box", e["session"], "KILL")
    wait_for(lambda: exec_list(d, "box") == [], what="every session to end")
    wait_for(lambda: len(os.listdir(f"/proc/{pid}/fd")) <= fds_before + 1,
             what="trustmed's fds back to what they were")


def test_orphaned_command_can_be_listed_and_signalled(running):
    d = running
    p = subprocess.Popen([str(TRUSTME), "--run-dir", str(d.run_dir), "run", "box", "--", "sh", "-c",
                          "trap '' HUP PIPE; echo ready; exec sleep 1000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    [attached] = exec_list(d, "box")
    assert not attached["orphaned"] and attached["command"] == "sh" and attached["pid"] > 1
    p.kill()
    p.wait()
    [orphan] = wait_for(lambda: (lambda l: l if l and l[0]["orphaned"] else None)(exec_list(d, "box")),
                        what="the session to be orphaned")
    assert orphan["session"] == attached["session"]
    # the pid is the container's view of it
    assert str(orphan["pid"]) in d.sh("box", "ps -o pid,args").stdout
    text = d.cli("exec", "list", "box").stdout
    assert "orphaned" in text and str(orphan["session"]) in text
    r = d.cli("exec", "kill", "box", "999999", check=False)
    assert r.returncode != 0 and "no exec session 999999" in r.stderr
    d.cli("exec", "kill", "box", orphan["session"], "TERM")
    wait_for(lambda: exec_list(d, "box") == [], what="the command to end")
    kills = [e for e in d.audit_events() if e["event"] == "exec.kill"]
    assert kills and "SIGTERM" in kills[-1]["detail"]


def test_exec_list_and_kill_are_admin_only(make_daemon, roles_rootfs):
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    create(d, roles_rootfs, "x")
    d.cli("start", "r")
    d.cli("start", "x")
    p = subprocess.Popen([str(TRUSTME), "--run-dir", str(d.run_dir), "run", "x", "--", "sleep", "1000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        [e] = wait_for(lambda: exec_list(d, "x"), what="the session")
        for args in (("exec", "list", "x"), ("exec", "list", "r"),
                     ("exec", "kill", "x", str(e["session"]), "KILL"),
                     ("exec", "kill", "r", str(e["session"]), "KILL")):
            r = inside(d, "r", *args, check=False)
            assert r.returncode != 0 and NOT_ALLOWED in r.stderr, (args, r.stderr)
        assert exec_list(d, "x")[0]["session"] == e["session"]  # untouched
        denied = [ev["detail"] for ev in d.audit_events() if ev["event"] == "control.denied"]
        assert any("request=exec_kill target=x" in x for x in denied), denied
    finally:
        p.kill()
        p.wait()


def test_interrupt_reaches_a_command_whose_stdin_is_full(running):
    """SIGINT to the CLI while the command reads nothing and its stdin is full: the signal is
    delivered (found in review: it queued behind stdin frames that trustmed did not read; now the
    CLI sends stdin only within trustmed's credit, so the connection is always read)."""
    p = subprocess.Popen([str(TRUSTME), "--run-dir", str(running.run_dir), "run", "box", "--",
                          "sleep", "1000"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    feeder_done = []

    def feed():
        try:
            while True:
                p.stdin.write(b"\0" * 65536)
        except (BrokenPipeError, ValueError, OSError):
            feeder_done.append(True)
    import threading
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    time.sleep(3)  # the pipe, trustmed's queue and the socket are full
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        pytest.fail("the CLI did not end after SIGINT while the command's stdin was full")
    assert p.returncode == 130, p.returncode


def test_stdin_waits_longer_than_the_partial_frame_timeout(running):
    """The command reads nothing for 40 s while 8 MiB are piped in: trustmed stops reading the
    connection (stdin full), maybe in the middle of a frame the client sent whole. That is not
    a client holding half a message: the connection must not be closed after 30 s."""
    size = 8 << 20
    r = subprocess.run(f"head -c {size} /dev/zero | {TRUSTME} --run-dir {running.run_dir} "
                       f"run box -- sh -c 'sleep 40; wc -c'", shell=True, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(size)


def test_stdin_credit_is_granted_as_the_command_reads(running):
    """A client that asks for credit gets a window, sends within it, and gets more as the
    command takes its input; a signal sent behind a full window reaches the command at once."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(running.socket))
        s.sendall(run_request(5, "sh", "-c", "head -c 1048576 >/dev/null; echo read; sleep 1000",
                              credit=True))
        window = None
        while window is None:
            resp = recv_frame(s, timeout=30)
            assert resp is not None and error_of(resp) is None, resp
            window = granted(resp)
        assert 0 < window <= 1 << 20, window
        # 1 MiB through the window: no more than granted is ever sent
        left, sent, chunk = window, 0, b"\0" * 16384
        out = b""
        while sent < 1 << 20:
            while left and sent < 1 << 20:
                n = min(len(chunk), left, (1 << 20) - sent)
                s.sendall(session_frame(5, STDIN, field_bytes(1, chunk[:n])))
                left -= n
                sent += n
            while sent < 1 << 20 and not left:
                resp = recv_frame(s, timeout=30)
                assert resp is not None and error_of(resp) is None, resp
                left += granted(resp) or 0
                if 15 in resp:
                    out += parse(resp[15][0]).get(2, [b""])[0]
        while b"read" not in out:
            resp = recv_frame(s, timeout=30)
            assert resp is not None and error_of(resp) is None, resp
            if 15 in resp:
                out += parse(resp[15][0]).get(2, [b""])[0]
        # now sleep reads nothing: fill the whole window, then the signal
        while left:
            n = min(len(chunk), left)
            s.sendall(session_frame(5, STDIN, field_bytes(1, chunk[:n])))
            left -= n
        t = time.monotonic()
        s.sendall(session_frame(5, SIGNAL, field_varint(1, signal.SIGTERM)))
        while True:
            resp = recv_frame(s, timeout=30)
            assert resp is not None and error_of(resp) is None, resp
            if EXIT in resp:
                break
        assert parse(resp[EXIT][0]).get(1) == [128 + signal.SIGTERM], resp
        assert time.monotonic() - t < 10


def test_stdin_beyond_the_window_is_bounded(running):
    """A client asks for credit and then floods stdin regardless (hostile, or broken): trustmed
    does not buffer more than before credits existed (its connection waits, which only it
    notices), logs it, and serves everyone else meanwhile."""
    pid = running.proc.pid
    rss_before = rss_kib(pid)
    log_before = len(running.log())
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(str(running.socket))
        s.sendall(run_request(5, "sleep", "1000", credit=True))
        window = None
        while window is None:
            resp = recv_frame(s, timeout=30)
            assert resp is not None and error_of(resp) is None, resp
            window = granted(resp)
        s.setblocking(False)
        data = session_frame(5, STDIN, field_bytes(1, b"\0" * 65536))
        sent, stalled_since, pending = 0, None, b""
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                pending = pending or data  # whole frames: a partial send is finished first
                n = s.send(pending)
                pending = pending[n:]
                sent += n
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.time()
                if time.time() - stalled_since > 5:
                    break  # trustmed stopped reading this connection
                time.sleep(0.05)
        assert sent > 3 * window, (sent, window)
        rss = rss_kib(pid)
        # others are served while this connection waits
        assert running.cli("list", timeout=20).returncode == 0
        assert running.run("box", "echo", "served", timeout=30).stdout.strip() == "served"
        print(f"window {window}, sent {sent} bytes, trustmed VmRSS {rss_before} -> {rss} KiB")
        assert rss < rss_before + 8 * 1024, f"trustmed buffered the flood: VmRSS {rss_before} -> {rss} KiB"
        assert "bytes of input with" in running.log()[log_before:]
    finally:
        s.close()
    # the abandoned command is an orphan like any other: listed, and killed
    wait_for(lambda: any(e["orphaned"] for e in exec_list(running, "box")), timeout=10,
             what="the flooding client's command to be orphaned")
    for e in exec_list(running, "box"):
        running.cli("exec", "kill", "box", e["session"], "KILL", check=False)
