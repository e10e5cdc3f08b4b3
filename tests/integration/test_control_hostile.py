# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile clients of the control sockets (docs/PROTOCOL.md "Bad input", docs/ROLES.md): floods of
idle connections and half frames from inside a container with "control": "restricted", random
frames, and the administrator who must still get in while it lasts (docs/SECURITY.md)."""
import json
import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import TRUSTME, wait_for
from tools import tool
from pb import field_bytes, field_varint, frame, parse
from test_roles import IN_CLI, create, inside, roles_rootfs  # noqa: F401 (a fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE_IN = "/usr/local/bin/tm-probe"
SOCK_IN = "/run/trustme/control.sock"


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid, timeout=10.0):
    """trustmed's fd count once the start's tail is over (fds it closes a moment after the start
    answered: on a loaded machine later than the answer), so that new ones can be counted."""
    deadline = time.monotonic() + timeout
    last = fds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = fds(pid)
        if now == last:
            return now
        last = now
    return last


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int([l for l in f if l.startswith("VmRSS")][0].split()[1])


def start_flood(d, name, n, hold_s, seed=1):
    """tm-probe ctlflood inside the container, through an exec session; returns once it holds
    its connections."""
    p = subprocess.Popen([str(TRUSTME), "--run-dir", str(d.run_dir), "run", name, "--", PROBE_IN,
                          "ctlflood", SOCK_IN, str(n), str(hold_s), str(seed)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = p.stdout.readline()
    assert first.startswith("opened:"), (first, p.stderr.read() if p.poll() is not None else "")
    return p, int(first.split()[1])


def finish_flood(p):
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return dict(l.split(": ") for l in out.splitlines() if ": " in l)


def admin_serves(d):
    """The host's administrator: list, and a command in another container."""
    assert d.cli("list").returncode == 0
    assert d.run("x", "/bin/echo", "still here").stdout == "still here\n"


def test_restricted_flood_does_not_lock_out_the_admin(make_daemon, roles_rootfs):
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    create(d, roles_rootfs, "x")
    d.cli("start", "r")
    d.cli("start", "x")
    pid = d.proc.pid
    fds_before = fds(pid)
    log_before = len(d.log().splitlines())
    p, opened = start_flood(d, "r", 300, 6)
    try:
        assert opened == 300  # none refused: the oldest idle ones were closed for the new ones
        for _ in range(3):
            admin_serves(d)
        # the container's own new client gets in too (its oldest idle connection makes room)
        assert inside(d, "r", "state", "r").returncode == 0
        # trustmed holds at most the socket's limit of them
        assert fds(pid) <= fds_before + 32 + 16, fds(pid) - fds_before
    finally:
        result = finish_flood(p)
    assert int(result["closed_by_daemon"]) >= 300 - 32 - 1, result
    admin_serves(d)
    wait_for(lambda: fds(pid) <= fds_before + 2, what="trustmed's fds back to what they were")
    grown = d.log().splitlines()[log_before:]
    assert len(grown) < 100, "\n".join(grown[-50:])
    assert any("similar messages left out" in l or "closed for a new client" in l for l in grown)


# ---- raw requests from inside a restricted container ------------------------------------------

STATE, GUESTOS_INSTALL = 11, 29


def as_restricted(d, name, requests, repeat=None):
    """Raw requests on name's restricted socket from a process in its pid namespace (what the
    socket's peer check looks at); the process itself runs the host's python3."""
    pid = d.state(name)["pid"]
    sock = f"/proc/{pid}/root{SOCK_IN}"
    r = subprocess.run([tool("nsenter"), "-t", str(pid), "-p", "--", "/usr/bin/python3",
                        os.path.join(HERE, "rawclient.py"), sock,
                        json.dumps([[b, sub.hex()] for b, sub in requests]),
                        *([str(repeat)] if repeat else [])],
                       capture_output=True, text=True, timeout=120, cwd=HERE)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def install_errors(d, name, paths):
    replies = as_restricted(d, name, [(GUESTOS_INSTALL, field_bytes(1, p.encode())) for p in paths])
    assert all("error" in x for x in replies), replies
    return [x["error"][1] for x in replies]


def test_restricted_guestos_install_resolves_inside_the_container(make_daemon, roles_rootfs):
    """Before: host paths were opened in the host's view, and the errors told a file ("Not a
    directory") from a directory ("cannot open guestos.json") from nothing at all."""
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    d.cli("start", "r")
    host_dir, host_file, missing = str(d.base), str(d.log_path), str(d.base / "nope")
    errors = install_errors(d, "r", [host_dir, host_file, missing])
    # all three alike: none of them exists in the container
    assert [e.replace(p, "P") for e, p in zip(errors, [host_dir, host_file, missing])] == \
        ["GuestOS not installed: cannot open the directory P: No such file or directory"] * 3, errors
    # a directory of the container's own is what it names
    d.sh("r", "mkdir -p /tmp/g && echo '{' > /tmp/g/guestos.json && "
              f"ln -s {os.path.dirname(host_dir)} /tmp/up && ln -s / /tmp/slash")
    own = install_errors(d, "r", ["/tmp/g"])[0]
    assert "guestos.json" in own and "No such file" not in own, own
    # symlinks resolve inside its root; /proc/<pid>/root is refused (a magic link)
    via_link, via_root, via_proc1, via_self = install_errors(d, "r", [
        f"/tmp/up/{os.path.basename(host_dir)}", f"/tmp/slash{host_dir}", "/proc/1/root/tmp/g",
        "/proc/self/root/tmp/g"])
    assert "No such file or directory" in via_link and "No such file or directory" in via_root
    for e in (via_proc1, via_self):
        assert "Too many levels of symbolic links" in e or "No such file" in e, e
        assert "guestos.json" not in e
    # and trustmed's own /proc/<pid>/root from the host's view is not the container's
    e = install_errors(d, "r", [f"/proc/{d.proc.pid}/root{host_dir}"])[0]
    assert "guestos.json" not in e and "Not a directory" not in e, e


def test_restricted_state_is_the_containers_own_view(make_daemon, roles_rootfs):
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    d.cli("start", "r")
    host = d.state("r")
    assert host["pid"] and host["uid_base"] and host["rootfs"]
    [reply] = as_restricted(d, "r", [(STATE, field_bytes(1, b"r"))])
    info = reply["fields"]
    assert bytes.fromhex(info["1"]) == b"r" and info["3"] == 3  # name, RUNNING
    for field, what in (("4", "pid"), ("5", "last_error"), ("7", "uid_base"), ("8", "rootfs")):
        assert field not in info, f"{what} shown on the restricted socket: {info}"
    # what the CLI inside prints
    out = inside(d, "r", "state", "r").stdout
    assert "init pid" not in out and str(host["pid"]) not in out
    assert str(host["uid_base"]) not in out and str(host["rootfs"]) not in out


# ---- everything at once: the hostile-client test of the suite ----------------------------------

# Read-only requests about things that do not exist: mutated, they still cannot touch the
# containers the test checks afterwards (no name or uuid of theirs is in any template).
TEMPLATES = [
    (10, b""),                                  # list
    (11, field_bytes(1, b"nosuch")),            # state
    (13, field_bytes(1, b"nosuch")),            # config
    (24, field_bytes(1, b"nosuch")),            # logs
    (31, b""),                                  # guestos list
    (100, field_bytes(1, b"nosuch")),           # exec list
    (18, field_bytes(1, b"nosuch") + field_bytes(2, b"/bin/true")),  # run
    (21, field_bytes(1, b"data")),              # stdin without a session
    (23, field_varint(1, 15)),                  # signal without a session
]


def hostile_frame(rng):
    kind = rng.randrange(4)
    if kind == 0:  # random bytes as a payload
        payload = rng.randbytes(rng.randrange(0, 2048))
    else:          # a plausible request with bytes flipped, cut or appended
        body, sub = rng.choice(TEMPLATES)
        payload = bytearray(field_varint(1, 1) + field_varint(2, rng.randrange(1, 1 << 40)) +
                            field_bytes(body, sub))
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(3)
            if op == 0 and payload:
                payload[rng.randrange(len(payload))] = rng.randrange(256)
            elif op == 1 and payload:
                del payload[rng.randrange(len(payload)):]
            else:
                payload += rng.randbytes(rng.randrange(1, 32))
        payload = bytes(payload)
    data = frame(payload)
    if rng.randrange(10) == 0:  # a half frame: cut anywhere, header included
        data = data[:rng.randrange(len(data))]
    return data


def hostile_session(path, rng, frames):
    """One connection: frames sent in random pieces, replies read now and then, closed."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        for data in frames:
            pos = 0
            while pos < len(data):
                n = rng.randrange(1, len(data) - pos + 1)
                s.sendall(data[pos:pos + n])
                pos += n
            if rng.randrange(3) == 0:
                s.settimeout(0.05)  # a reply, if one comes at once (half frames get none)
                try:
                    s.recv(65536)
                except (socket.timeout, OSError):
                    return


def test_hostile_clients_on_every_socket(make_daemon, roles_rootfs):
    """Random and mutated frames (seeded: TRUSTME_HOSTILE_SEED repeats a run), half frames, and a
    flood of connections from inside a restricted container, all at once, while the
    administrator moves data through a session. Afterwards trustmed serves, its fds and memory
    are back near where they were, the data arrived whole and the audit log verifies."""
    seed = int(os.environ.get("TRUSTME_HOSTILE_SEED", random.randrange(1 << 30)))
    print(f"TRUSTME_HOSTILE_SEED={seed}")
    rng = random.Random(seed)
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    create(d, roles_rootfs, "x")
    d.cli("start", "r")
    d.cli("start", "x")
    pid = d.proc.pid
    admin_serves(d)
    fds_before, rss_before = fds(pid), rss_kib(pid)
    data = rng.randbytes(4 << 20)
    transfer = subprocess.Popen([str(TRUSTME), "--run-dir", str(d.run_dir), "run", "x", "--",
                                 "sh", "-c", "sleep 1; cat"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    flood, _ = start_flood(d, "r", 300, 8, seed=seed & 0x7fffffff)
    deadline = time.time() + 20
    frames_sent = 0
    try:
        out_holder = {}
        feeder = threading.Thread(
            target=lambda: out_holder.update(zip(("out", "err"), transfer.communicate(data, timeout=120))))
        feeder.start()
        while frames_sent < 600 and time.time() < deadline:
            frames = [hostile_frame(rng) for _ in range(rng.randrange(1, 8))]
            try:
                hostile_session(str(d.socket), rng, frames)
            except OSError:
                pass  # closed by trustmed (a bad length): the next connection goes on
            frames_sent += len(frames)
            if frames_sent // 150 != (frames_sent - len(frames)) // 150:
                assert d.cli("list").returncode == 0  # the administrator, in the middle of it
        feeder.join(timeout=120)
    finally:
        result = finish_flood(flood)
    print(f"{frames_sent} hostile frames, flood: {result}")
    assert frames_sent >= 100
    assert transfer.returncode == 0 and out_holder["out"] == data, "the admin's data was damaged"
    assert d.proc.poll() is None, "trustmed died"
    for _ in range(3):
        admin_serves(d)
    assert inside(d, "r", "state", "r").returncode == 0
    wait_for(lambda: fds(pid) <= fds_before + 2, what="trustmed's fds back to what they were")
    time.sleep(0.5)
    assert rss_kib(pid) < rss_before + 4096, (rss_before, rss_kib(pid))
    d.cli("audit", "--verify")
    assert {c["name"]: c["state"] for c in d.containers()} == {"r": "running", "x": "running"}


def test_refused_requests_cannot_flood_the_audit_log(make_daemon, roles_rootfs):
    """3000 requests a restricted socket may not make: each is refused, but the audit log gets
    20 records and one that counts the rest (each record is synced to disk: one per refusal
    let the container fill the disk and keep trustmed busy)."""
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    d.cli("start", "r")
    t0 = time.time()
    [res] = [as_restricted(d, "r", [(10, b"")], repeat=3000)]  # list
    assert res == {"replies": 3000, "errors": {"1": 3000}}, res  # EPERM each
    admin_serves_list = d.cli("list")
    assert admin_serves_list.returncode == 0
    denied = lambda: [e for e in d.audit_events() if e["event"] == "control.denied"]
    summary = wait_for(lambda: [e for e in denied() if "not recorded one by one" in e["detail"]],
                       timeout=15, what="the summary record")
    one_by_one = [e for e in denied() if "request=list" in e["detail"]]
    assert len(one_by_one) <= 20 * (1 + int(time.time() - t0) // 10), len(one_by_one)
    counted = sum(int(e["detail"].split(": ")[1].split()[0]) for e in summary)
    assert len(one_by_one) + counted == 3000, (len(one_by_one), counted)
    assert summary[0]["subject"].startswith("r ")


def test_restricted_install_errors_do_not_name_host_paths(make_daemon, roles_rootfs):
    """A failure on the host's side (the store cannot be written) is reported without the host
    path of the store."""
    import hashlib
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    d.cli("start", "r")
    image = b"\0" * 4096
    gos = {"name": "hostile", "version": 1, "architecture": os.uname().machine,
           "mounts": [{"image": "root.img", "mount_point": "/", "fs_type": "squashfs",
                       "kind": "overlay", "size": len(image),
                       "sha256": hashlib.sha256(image).hexdigest()}]}
    d.sh("r", f"mkdir -p /tmp/h && head -c 4096 /dev/zero > /tmp/h/root.img && "
              f"echo '{json.dumps(gos)}' > /tmp/h/guestos.json")
    store = d.data_dir / "guestos"
    store.mkdir(exist_ok=True)
    subprocess.run([tool("chattr"), "+i", str(store)], check=True)
    try:
        [err] = install_errors(d, "r", ["/tmp/h"])
    finally:
        subprocess.run([tool("chattr"), "-i", str(store)], check=True)
    assert "Operation not permitted" in err and "<data dir>" in err, err
    assert str(d.data_dir) not in err and str(d.base) not in err, err
    # the administrator sees the real path in the audit log
    fails = [e for e in d.audit_events() if e["event"] == "guestos.install" and e["result"] == "fail"]
    assert fails and str(d.data_dir) in fails[-1]["detail"]


def test_restricted_half_frames_are_dropped_soon(make_daemon, roles_rootfs):
    """Below the socket's limit, half frames held open from a restricted container are closed
    after 5 s (30 s on the admin socket); idle connections stay until the idle timeout."""
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    d.cli("start", "r")
    p, opened = start_flood(d, "r", 8, 7)
    result = finish_flood(p)
    assert opened == 8
    assert int(result["closed_by_daemon"]) >= 4, result  # the 4 half headers and half frames


def test_failed_installs_cannot_flood_the_audit_log(make_daemon, roles_rootfs):
    """guestos install is allowed on a restricted socket; 2000 that fail (nothing there) are
    answered each, but audited 20 at a time and counted in one record for the rest."""
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    d.cli("start", "r")
    [res] = [as_restricted(d, "r", [(GUESTOS_INSTALL, field_bytes(1, b"/nonexistent"))],
                           repeat=2000)]
    assert res == {"replies": 2000, "errors": {"2": 2000}}, res  # ENOENT each
    fails = lambda: [e for e in d.audit_events() if e["event"] == "guestos.install"]
    summary = wait_for(lambda: [e for e in fails() if "not recorded one by one" in e["detail"]],
                       timeout=15, what="the summary record")
    one_by_one = [e for e in fails() if "not recorded" not in e["detail"]]
    counted = sum(int(e["detail"].split(": ")[1].split()[0]) for e in summary)
    assert len(one_by_one) + counted == 2000 and len(one_by_one) <= 60, (len(one_by_one), counted)
    assert summary[0]["subject"].startswith("r ")


CONNECT_AND_EXIT = r"""
import os, socket, sys
path, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def test_refused_peers_cannot_flood_the_audit_log(make_daemon, roles_rootfs):
    """A process of the container that connects and exits before trustmed accepts is refused
    (its pid is gone, so it may be someone else's by now). Before: one control.denied record,
    synced to disk, per such connection, unlimited; now 20 per window and a count of the rest."""
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    d.cli("start", "r")
    pid = d.state("r")["pid"]
    sock = f"/proc/{pid}/root{SOCK_IN}"
    rounds, per_round = 20, 15  # below the socket's backlog of 16: connect() never waits
    t0 = time.time()
    for _ in range(rounds):
        # trustmed stopped while they connect and exit: each is accepted after its peer is gone
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            subprocess.run([tool("nsenter"), "-t", str(pid), "-p", "--", "/usr/bin/python3", "-c",
                            CONNECT_AND_EXIT, sock, str(per_round)], check=True, timeout=60)
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        # served after trustmed accepted (and refused) every one before it: the backlog is free
        [reply] = as_restricted(d, "r", [(STATE, field_bytes(1, b"r"))])
        assert "error" not in reply, reply
    assert d.cli("list").returncode == 0
    denied = lambda: [e for e in d.audit_events() if e["event"] == "control.denied"]

    def tally():
        ev = denied()
        one = [e for e in ev if "is not a process of" in e["detail"]]
        counted = sum(int(e["detail"].split(": ")[1].split()[0]) for e in ev
                      if "not recorded one by one" in e["detail"])
        return len(one), counted
    # the last window's count is written when the window ends
    wait_for(lambda: sum(tally()) == rounds * per_round, timeout=15, what="every refusal counted")
    one_by_one, counted = tally()
    assert counted > 0
    assert one_by_one <= 20 * (1 + int(time.time() - t0) // 10), one_by_one


def test_restricted_install_cannot_fill_the_data_dir(make_daemon, roles_rootfs):
    """Under allow_unsigned the sizes in guestos.json are the client's: a sparse image of a
    declared 1 GiB (nothing on the container's own disk) was copied into the store until the
    file system was full, and only then found wrong. Now refused before a byte is copied."""
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    d.cli("start", "r")
    size = 1 << 30
    gos = {"name": "filler", "version": 1, "architecture": os.uname().machine,
           "mounts": [{"image": "root.img", "mount_point": "/", "fs_type": "squashfs",
                       "kind": "overlay", "size": size, "sha256": "00" * 32}]}
    d.sh("r", f"mkdir -p /tmp/h && truncate -s {size} /tmp/h/root.img && "
              f"echo '{json.dumps(gos)}' > /tmp/h/guestos.json")
    store = d.data_dir / "guestos"
    store.mkdir(exist_ok=True)
    # the data dir's file system, small: 64 MiB
    subprocess.run([tool("mount"), "-t", "tmpfs", "-o", "size=64m", "tm-rv11-store", str(store)], check=True)
    try:
        [err] = install_errors(d, "r", ["/tmp/h"])
        used = os.statvfs(store)
        used_bytes = (used.f_blocks - used.f_bfree) * used.f_frsize
    finally:
        subprocess.run([tool("umount"), "-l", str(store)], check=True)
    assert "do not fit into the GuestOS store's free space" in err, err
    assert used_bytes < (1 << 20), used_bytes  # nothing was copied


UNREAD_REPLIES = r"""
import socket, sys, time
sys.path.insert(0, sys.argv[4])
from pb import field_bytes, field_varint, frame
path, n, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
msg = frame(field_varint(1, 1) + field_varint(2, 7) + field_bytes(31, b""))  # guestos list
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.setblocking(False)
    # whole frames only (a tiny one is sent whole or not at all): no half frame is left
    try:
        for _ in range(400000):
            assert s.send(msg) == len(msg)
    except BlockingIOError:
        pass  # trustmed stopped reading: its queue of replies is full
    socks.append(s)
print("sent", flush=True)
time.sleep(hold)
"""


def test_restricted_connections_that_read_no_replies_are_closed(make_daemon, roles_rootfs):
    """32 connections that pipeline requests and never read a reply: each counted as busy (its
    replies pending), so neither evicted nor idle, holding ~1 MiB of trustmed's memory each,
    for as long as the container liked. Now closed once they read nothing for the idle timeout."""
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    d.cli("start", "r")
    pid = d.state("r")["pid"]
    tpid = d.proc.pid
    fds_before = settled_fds(tpid)
    p = subprocess.Popen([tool("nsenter"), "-t", str(pid), "-p", "--", "/usr/bin/python3", "-c",
                          UNREAD_REPLIES, f"/proc/{pid}/root{SOCK_IN}", "32", "240", HERE],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "sent"
        wait_for(lambda: fds(tpid) >= fds_before + 32, timeout=30, what="all 32 accepted")
        time.sleep(3)
        assert fds(tpid) >= fds_before + 32  # none closed yet: all busy with unread replies
        # idle timeout (120 s) plus a sweep period (30 s), and some slack for a loaded machine
        wait_for(lambda: fds(tpid) <= fds_before + 2, timeout=190, interval=1,
                 what="the connections that read nothing closed")
        assert d.cli("list").returncode == 0
    finally:
        p.kill()
        p.wait()
