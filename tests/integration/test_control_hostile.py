"""Hostile clients of the control sockets (docs/PROTOCOL.md "Bad input", docs/ROLES.md): floods of
idle connections and half frames from inside a container with "control": "restricted", random
frames, and the administrator who must still get in while it lasts (issue 11 §2, §4)."""
import os
import random
import socket
import struct
import subprocess
import time

import pytest

from conftest import TRUSTME, wait_for
from pb import field_bytes, field_varint, frame, parse
from test_roles import IN_CLI, create, inside, roles_rootfs  # noqa: F401 (a fixture)

PROBE_IN = "/usr/local/bin/tm-probe"
SOCK_IN = "/run/trustme/control.sock"


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


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
