# SPDX-License-Identifier: GPL-2.0-or-later
"""trustme-vtpm's start as trustmed now runs it (docs/VTPM.md "Lifetime"): started while trustmed
still checks the state against its anchor, it waits for its key on fd 3 before it reads any
state, and a manufacture is said with the key. A start given up before the key leaves the state
as it was."""
import os
import subprocess

from conftest import BUILD

HELPER = BUILD / "src/vtpm/trustme-vtpm"
KEY = bytes(range(32))
EVENTS = b"".join(b"11 %s\n" % (bytes([i]) * 32).hex().encode() for i in range(3))


def _dirs(tmp_path):
    run = tmp_path / "run"
    (run / "priv").mkdir(parents=True)
    (run / "pub").mkdir()
    state = tmp_path / "state"
    state.mkdir()
    return run, state


def _spawn(run, state):
    """The helper with fds 3 (key), 4 (events), 5 (ready) as pipes; our ends returned."""
    k_r, k_w = os.pipe()
    e_r, e_w = os.pipe()
    r_r, r_w = os.pipe()

    def pre():
        for src, dst in ((k_r, 3), (e_r, 4), (r_w, 5)):
            os.dup2(src, dst)
    p = subprocess.Popen([str(HELPER), "--run-dir", str(run), "--state-dir", str(state)], preexec_fn=pre,
                         pass_fds=(3, 4, 5), stderr=subprocess.PIPE)
    for fd in (k_r, e_r, r_w):
        os.close(fd)
    return p, k_w, e_w, r_r


def _read_until(fd, ends):
    out = b""
    while not out or out[-1:] not in ends:
        got = os.read(fd, 4096)
        if not got:
            break
        out += got
    return out


def test_without_its_key_it_ends_and_leaves_the_state(tmp_path):
    """trustmed gives a start up while trustme-vtpm waits for its key (the anchor refused the state,
    the PIN was wrong, the container was stopped): it closes the key pipe. The helper ends without
    having read or written the state: before, it read the state first and wrote it back at its
    end (a synced rewrite of a state it never ran)."""
    run, state = _dirs(tmp_path)
    p, k, e, r = _spawn(run, state)
    try:
        os.write(k, KEY)
        os.close(k)
        os.write(e, EVENTS)
        os.close(e)
        assert _read_until(r, (b"R",)) == b"WR"  # "W": it waited for its key first
    finally:
        p.terminate()
        p.wait(timeout=30)
    f = state / "tpm2.state"
    before = f.stat()
    data = f.read_bytes()
    p, k, e, r = _spawn(run, state)
    try:
        os.close(k)  # no key
        assert p.wait(timeout=30) == 3
        assert os.read(r, 16) == b"W", "it said more than that it waits for its key"
    finally:
        os.close(e)
        os.close(r)
        if p.poll() is None:
            p.kill()
            p.wait()
    after = f.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "the state was written again"
    assert f.read_bytes() == data
    assert not (state / "tpm2.state.tmp").exists()


def test_manufacture_is_said_with_the_key(tmp_path):
    """trustmed decides on a manufacture only after the anchor read, when trustme-vtpm runs
    already: "M" after the key makes it make the EKs and report them ("EK rsa|ecc", then "E")
    before it reads its events."""
    run, state = _dirs(tmp_path)
    p, k, e, r = _spawn(run, state)
    try:
        os.write(k, KEY + b"M")
        os.close(k)
        msg = _read_until(r, (b"E", b"R"))
        assert msg.startswith(b"W") and msg.endswith(b"E"), msg
        kinds = [line.split()[1] for line in msg[1:-1].decode().splitlines()]
        assert kinds == ["rsa", "ecc"], msg
        os.write(e, EVENTS)
        os.close(e)
        assert _read_until(r, (b"R",)).endswith(b"R")
    finally:
        p.terminate()
        p.wait(timeout=30)
        os.close(r)
