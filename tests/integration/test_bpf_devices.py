# SPDX-License-Identifier: GPL-2.0-or-later
"""The cgroup v2 device program, checked on its own: only what the rules allow passes."""
import os
from pathlib import Path

import pytest

from conftest import BUILD, TEST_PREFIX

CHECK = BUILD / "tests/probe/bpfdev-check"


def unified_root():
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        if f[f.index("-") + 1] == "cgroup2":
            return Path(f[4])
    return None


def test_generated_device_program_enforces_the_rules(tmp_path):
    root = unified_root()
    if root is None:
        pytest.skip("no cgroup v2 hierarchy mounted: the BPF device program is not used here")
    import subprocess
    cg = root / f"{TEST_PREFIX}-bpf-{os.getpid()}"
    r = subprocess.run([str(CHECK), str(cg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    got = dict(line.rsplit(": ", 1) for line in r.stdout.splitlines())
    assert got == {
        "/dev/null rw": "ok",
        "/dev/urandom r": "ok",
        "/dev/urandom w": "EPERM",   # rule grants read only
        "/dev/zero r": "EPERM",      # not listed
        "/dev/full r": "EPERM",
        "mknod 1:3 m": "ok",
        "mknod 1:9 m": "EPERM",      # no "m" for urandom
    }
    assert not cg.exists()


def bpf_prog_fds(pid):
    fds = Path(f"/proc/{pid}/fd")
    n = 0
    for fd in fds.iterdir():
        try:
            n += os.readlink(fd) == "anon_inode:bpf-prog"
        except OSError:
            pass  # closed meanwhile
    return n


def test_no_program_fd_per_stopped_container(daemon):
    """trustmed keeps no fd of a container's device program once it is attached (the attachment
    holds it), only the one program it last loaded, which the next start with the same
    instructions reuses: 20 containers started and stopped leave at most that one
    anon_inode:bpf-prog fd behind, not one each."""
    if not unified_root():
        pytest.skip("no cgroup v2 hierarchy: no device programs")
    d = daemon
    pid = d.proc.pid
    before = bpf_prog_fds(pid)
    for i in range(20):
        d.create(f"b{i}", data_size_mb=0)
        d.cli("start", f"b{i}")
        d.cli("stop", "--timeout", "0", f"b{i}")
    d.cli("start", "b0")
    assert bpf_prog_fds(pid) <= before + 1
    # and the running one is still guarded by its program (a node outside the list is refused)
    r = d.run("b0", "/usr/local/bin/tm-probe", "mknod", "/dev/x", "c", "1", "1", check=False)
    assert "mknod: ok" not in r.stdout
