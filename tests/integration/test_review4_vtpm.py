# SPDX-License-Identifier: GPL-2.0-or-later
"""Review 4 (fresh eyes): trustme-vtpm hosting libtpms itself, attacked from inside a container.
The guest reaches the vTPM's sockets at /run/tpm (a read-only bind mount of the vTPM's pub
directory, 0666 sockets): the tests use the very same sockets from the host. docs/SECURITY.md
"Review 4" has a row for each attack."""
import os
import re
import socket
import struct
import time

import pytest

from conftest import wait_for
from test_vtpm import create, pub_dir, replay, start, tpm_rootfs, vd, vtpm_pid  # noqa: F401

GET_RANDOM = struct.pack(">HIIH", 0x8001, 12, 0x17B, 8)
TPM_RC_INITIALIZE = 0x100


def _connect(d, name, sock="tpm.sock"):
    dfd = os.open(pub_dir(d, name), os.O_PATH)
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(f"/proc/self/fd/{dfd}/{sock}")
    finally:
        os.close(dfd)
    return s


def _read_rsp(s):
    rsp = b""
    while len(rsp) < 10 or len(rsp) < struct.unpack(">I", rsp[2:6])[0]:
        chunk = s.recv(4096)
        if not chunk:
            return rsp
        rsp += chunk
    return rsp


def _rc(rsp):
    return struct.unpack(">I", rsp[6:10])[0]


def _pcr_holds_the_log(d, name):
    log = d.sh(name, "cat /run/tpm/event.log").stdout
    pcr = int(log.split()[0])
    out = d.sh(name, f"tpm2_pcrread sha256:{pcr}").stdout
    return bytes.fromhex(re.search(r"0x([0-9A-F]{64})", out).group(1)) == replay(log, pcr)


def _answers_at_once(d, name, limit=2.0):
    t = time.monotonic()
    with _connect(d, name) as s:
        s.sendall(GET_RANDOM)
        rsp = _read_rsp(s)
    return len(rsp) == 20 and _rc(rsp) == 0 and time.monotonic() - t < limit


def test_hostile_frames_on_the_command_socket(vd, tpm_rootfs):
    """A command split into single-byte writes, three commands in one write, a size field of
    2^32-1, of 5 (below the header), of 4097, and a connection closed mid-command: the split and
    the batch are answered (each command once, in order); the bad sizes close that connection
    only; the vTPM stays the same TPM for everyone (its PCRs still replay the event log)."""
    d = vd
    create(d, "f", tpm_rootfs)
    start(d, "f")
    try:
        helper = vtpm_pid(d, "f")
        with _connect(d, "f") as s:
            for b in GET_RANDOM:
                s.sendall(bytes([b]))
                time.sleep(0.01)
            rsp = _read_rsp(s)
            assert len(rsp) == 20 and _rc(rsp) == 0
            s.sendall(GET_RANDOM * 3)
            got = b""
            while len(got) < 60:
                chunk = s.recv(4096)
                assert chunk
                got += chunk
            assert len(got) == 60 and all(_rc(got[i:i + 20]) == 0 for i in (0, 20, 40))
        for size in (0xFFFFFFFF, 5, 4097):
            with _connect(d, "f") as s:
                s.sendall(struct.pack(">HII", 0x8001, size, 0x17B) + b"\0" * 2)
                assert s.recv(4096) == b"", f"size {size:#x}: the connection stays open"
        with _connect(d, "f") as s:
            s.sendall(GET_RANDOM[:7])
        assert _answers_at_once(d, "f")
        assert vtpm_pid(d, "f") == helper, "the vTPM process was replaced"
        assert _pcr_holds_the_log(d, "f")
    finally:
        d.cli("stop", "f", check=False)


def test_tpm2_shutdown_and_startup_as_tpm_commands(vd, tpm_rootfs):
    """The control channel refuses CMD_INIT; the guest sends TPM2_Shutdown(STATE) and
    TPM2_Shutdown(CLEAR) and then TPM2_Startup(CLEAR) / (STATE) as plain TPM commands, to reset
    the PCRs its measurements are in or to have the saved state resumed at the next start. Held:
    Startup is refused (TPM_RC_INITIALIZE: no _TPM_Init without CMD_INIT), the PCRs still replay
    the log, the vTPM keeps serving; after a stop and start (the vTPM's own Startup(CLEAR)) the PCR
    again holds exactly the log's events."""
    d = vd
    create(d, "s", tpm_rootfs)
    start(d, "s")
    try:
        with _connect(d, "s") as s:
            for su in (1, 0):  # TPM_SU_STATE, TPM_SU_CLEAR
                s.sendall(struct.pack(">HIIH", 0x8001, 12, 0x145, su))
                assert _rc(_read_rsp(s)) == 0
            for su in (0, 1):
                s.sendall(struct.pack(">HIIH", 0x8001, 12, 0x144, su))
                assert _rc(_read_rsp(s)) == TPM_RC_INITIALIZE
            s.sendall(GET_RANDOM)
            assert _rc(_read_rsp(s)) == 0
        assert _pcr_holds_the_log(d, "s")
        with _connect(d, "s") as s:
            s.sendall(struct.pack(">HIIH", 0x8001, 12, 0x145, 1))
            assert _rc(_read_rsp(s)) == 0
        d.cli("stop", "s")
        wait_for(lambda: not vtpm_pid(d, "s"), what="the vTPM to stop")
        start(d, "s")
        assert _pcr_holds_the_log(d, "s")
    finally:
        d.cli("stop", "s", check=False)


def test_control_commands_that_are_never_read_do_not_stall_the_vtpm(vd, tpm_rootfs):
    """Any process of the container writes control commands (allowed and refused, 16 in one
    write, a partial one) to /run/tpm/tpm.sock.ctrl and reads no answer, on all 16 control
    slots. Before: trustme-vtpm wrote each answer blocking (SO_SNDTIMEO 5 s); once the socket's
    buffer held a few hundred unread answers it stopped for 5 s per such client, the container's
    TPM silent for all its processes (and each refusal was a line in trustmed's log). Now answers
    are sent without blocking, a client that does not read them is dropped, refusals are logged
    at most once a second: a TPM command from another process is answered at once."""
    d = vd
    create(d, "c", tpm_rootfs)
    start(d, "c")
    held = []
    try:
        with _connect(d, "c", "tpm.sock.ctrl") as s:
            s.sendall(struct.pack(">I", 1) * 16)  # 16 in one read: refused as a whole
            assert s.recv(4096)[:4] == struct.pack(">I", 0x0A)
        with _connect(d, "c", "tpm.sock.ctrl") as s:
            s.sendall(b"\0\0")  # a partial command: refused, nothing waits for the rest
            assert s.recv(4096)[:4] == struct.pack(">I", 0x0A)
        log_before = d.log().count("refused a control command")
        flood = struct.pack(">I", 1) + struct.pack(">I", 2) * 15  # 64 bytes: one read, one refusal
        for _ in range(16):
            s = _connect(d, "c", "tpm.sock.ctrl")
            s.setblocking(False)
            sent = 0
            try:
                while sent < 64 * 4000:
                    sent += s.send(flood)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                pass
            held.append(s)
        time.sleep(1)
        slow = []
        for _ in range(5):
            t = time.monotonic()
            assert _answers_at_once(d, "c", limit=30), "the vTPM did not answer"
            slow.append(time.monotonic() - t)
            time.sleep(0.2)
        assert max(slow) < 2, f"the vTPM stalled behind control clients that read nothing: {slow}"
        assert d.log().count("refused a control command") - log_before < 30, "each refusal is a log line"
        assert _pcr_holds_the_log(d, "c")
    finally:
        for s in held:
            s.close()
        d.cli("stop", "c", check=False)


def _ecc_create_primary():
    auth = struct.pack(">IHBH", 0x40000009, 0, 0, 0)
    pub = struct.pack(">HHIH", 0x0023, 0x000B, 0x00030072, 0) + struct.pack(">HHHHHHH", 0x0006, 128, 0x0043, 0x0010,
                                                                             0x0003, 0x0010, 0) + struct.pack(">H", 0)
    body = struct.pack(">I", 0x4000000B) + struct.pack(">I", len(auth)) + auth + struct.pack(">HHH", 4, 0, 0) + \
        struct.pack(">H", len(pub)) + pub + struct.pack(">HI", 0, 0)
    return struct.pack(">HII", 0x8002, 10 + len(body), 0x131) + body


def _hmac_session():
    """TPM2_StartAuthSession: no salt, no bind, an HMAC session with SHA-256."""
    body = struct.pack(">II", 0x40000007, 0x40000007) + struct.pack(">H", 16) + bytes(16) + struct.pack(">H", 0) + \
        struct.pack(">BHH", 0x00, 0x0010, 0x000B)
    return struct.pack(">HII", 0x8001, 10 + len(body), 0x176) + body


def _relay_open(address, uuid, cmd):
    """The network: a connection to the attestation endpoint that relays cmd to the container's
    vTPM; returned open with the vTPM's response code."""
    from pb import encode, frame, parse
    from test_vtpm_owner import Mitm
    s = Mitm._connect(address)
    s.settimeout(30)
    s.sendall(frame(encode({1: [1], 2: [7], 540: [encode({1: [uuid.encode()], 2: [cmd]})]})))
    answer = parse(Mitm._recv(s))
    rsp = parse(answer[541][0])[1][0] if 541 in answer else b""
    return s, (struct.unpack(">I", rsp[6:10])[0] if len(rsp) >= 10 else None)


def _relay_create_primary(address, uuid):
    """The network: one VtpmRelayRequest carrying an ECC CreatePrimary (which the relay allows) to
    the container's vTPM, on a connection of its own, closed once answered (or after 30 s)."""
    from pb import encode, frame, parse
    from test_vtpm_owner import Mitm
    with Mitm._connect(address) as s:
        s.settimeout(30)
        s.sendall(frame(encode({1: [1], 2: [7], 540: [encode({1: [uuid.encode()], 2: [_ecc_create_primary()]})]})))
        answer = parse(Mitm._recv(s))
    return answer


def _fill_vtpm(address, uuid):
    """Three relay connections with an object each and three with a session each (the vTPM's
    loaded objects and sessions), all left open."""
    held = []
    for cmd in [_ecc_create_primary()] * 3 + [_hmac_session()] * 3:
        s, rc = _relay_open(address, uuid, cmd)
        held.append(s)
        assert rc == 0, f"relayed command failed: 0x{rc:x}" if rc is not None else "no vTPM response"
    return held


def test_a_wedged_vtpm_does_not_hold_tpmd_when_relay_connections_close(vd, tpm_rootfs):
    """Six relay connections each leave an object or a session in the container's vTPM; the vTPM
    then stops answering (SIGSTOP stands in for a guest that keeps it busy) and the network closes
    the six. tpmd flushes what each left: before, on a blocking socket with 500 ms timeouts in its
    one thread (3 s in all here, during which no container could start and no verifier was
    answered); now in its event loop. The administrator's request is answered at once."""
    import signal
    from test_attestation import attest_address
    d = vd
    create(d, "w", tpm_rootfs)
    start(d, "w")
    uuid = d.state("w")["uuid"]
    pid = vtpm_pid(d, "w")
    held = _fill_vtpm(attest_address(d), uuid)
    os.kill(pid, signal.SIGSTOP)
    try:
        for s in held:
            s.close()
        held = []
        time.sleep(0.2)  # tpmd sees the six ends
        t0 = time.monotonic()
        d.cli("device", "info", "--json")
        took = time.monotonic() - t0
        assert took < 1.5, f"tpmd answered the administrator after {took:.1f} s"
    finally:
        for s in held:
            s.close()
        os.kill(pid, signal.SIGCONT)
        d.cli("stop", "w", check=False)


def test_what_closed_relay_connections_left_is_flushed(vd, tpm_rootfs):
    """The flush in tpmd's event loop still flushes: after six relay connections that filled the
    vTPM's object and session slots are closed, the next ones find room again."""
    from test_attestation import attest_address
    d = vd
    create(d, "f", tpm_rootfs)
    start(d, "f")
    uuid = d.state("f")["uuid"]
    address = attest_address(d)
    try:
        for _ in range(2):
            held = _fill_vtpm(address, uuid)
            for s in held:
                s.close()
            time.sleep(1)
    finally:
        d.cli("stop", "f", check=False)


def test_a_busy_vtpm_does_not_hold_tpmd(vd, tpm_rootfs):
    """The container's root keeps its own vTPM busy (ten processes making RSA keys, 0.4 s each);
    the network opens attestation-endpoint connections that relay an ECC CreatePrimary to that
    vTPM (each leaves a handle that tpmd flushes when the connection closes) and closes them,
    hundreds a second. Meanwhile the administrator asks tpmd for the device's information: held,
    answered within a fraction of a second (0.3 to 0.65 s in three runs at load 25; most relayed
    commands were answered at once). The wedged vTPM's case is the next test."""
    import subprocess
    import threading
    from conftest import TRUSTME
    from test_attestation import attest_address
    d = vd
    create(d, "t", tpm_rootfs)
    start(d, "t")
    uuid = d.state("t")["uuid"]
    address = attest_address(d)
    busy = subprocess.Popen([str(TRUSTME), "--run-dir", str(d.run_dir), "run", "t", "--", "/bin/sh", "-c",
                             "cd /tmp && tpm2_createprimary -C o -c p.ctx >/dev/null 2>&1 && "
                             "tpm2_evictcontrol -C o -c p.ctx 0x81000005 >/dev/null 2>&1; "
                             "for i in 1 2 3 4 5 6 7 8 9 10; do (while [ ! -e /tmp/busy.stop ]; do "
                             "tpm2_create -C 0x81000005 -G rsa2048 -u k$i.pub -r k$i.priv >/dev/null 2>&1; "
                             "done) & done; wait"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()

    def network():
        while not stop.is_set():
            try:
                _relay_create_primary(address, uuid)
            except OSError:
                time.sleep(0.05)
    # one network client: more would hold the vTPM's three object slots with their relayed keys,
    # and the guest's key generation would fail at once instead of keeping the vTPM busy
    threads = [threading.Thread(target=network, daemon=True) for _ in range(1)]
    try:
        time.sleep(2)
        for t in threads:
            t.start()
        time.sleep(3)
        worst = 0.0
        for _ in range(6):
            t0 = time.monotonic()
            d.cli("device", "info", "--json")
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.3)
        assert worst < 3, f"tpmd answered the administrator after {worst:.1f} s"
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        d.sh("t", "touch /tmp/busy.stop", check=False)
        try:
            busy.wait(60)
        except subprocess.TimeoutExpired:
            busy.kill()
            busy.wait()
        d.cli("stop", "t", check=False)


def test_every_command_code_with_garbage_keeps_the_vtpm(vd, tpm_rootfs):
    """libtpms runs inside trustme-vtpm, under a seccomp filter that kills the process at any
    system call it does not list: a command that reached an unlisted call (or crashed libtpms)
    would take the vTPM down. Every TPM 2.0 command code (0x11F-0x1A0), with and without
    sessions, with a body of 0xff and one of random bytes, from one connection (a body of zeros too
    in the review's run). Held: each
    gets a TPM answer, the same trustme-vtpm serves on (no restart), its PCRs replay the log."""
    import random
    d = vd
    create(d, "g", tpm_rootfs)
    start(d, "g")
    try:
        helper = vtpm_pid(d, "g")
        rnd = random.Random(4)
        with _connect(d, "g") as s:
            s.settimeout(30)
            for cc in range(0x11F, 0x1A1):
                for tag in (0x8001, 0x8002):
                    noise = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 300)))
                    for body in (b"\xff" * 40, noise):
                        s.sendall(struct.pack(">HII", tag, 10 + len(body), cc) + body)
                        rsp = _read_rsp(s)
                        assert len(rsp) >= 10, f"no answer to command {cc:#x}"
        assert vtpm_pid(d, "g") == helper, "the vTPM died and was started again"
        assert not any(e.get("event") == "vtpm.restart" for e in d.audit_events())
        assert _pcr_holds_the_log(d, "g")
    finally:
        d.cli("stop", "g", check=False)
