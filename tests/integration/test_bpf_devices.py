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
