"""Runs last: nothing the suite made may be left on the host."""
import subprocess
from pathlib import Path

from conftest import TEST_PREFIX, cgroup_dirs


def test_no_mounts_left():
    with open("/proc/self/mountinfo") as f:
        left = [l.split()[4] for l in f if TEST_PREFIX in l or " overlay " in l]
    assert left == []


def test_no_loop_devices_left():
    out = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                         capture_output=True, text=True).stdout
    assert [l for l in out.splitlines() if TEST_PREFIX in l] == []


def test_no_cgroups_left():
    assert cgroup_dirs(TEST_PREFIX) == []


def test_no_processes_left():
    out = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    ours = [l for l in out.splitlines()[1:]
            if ("trustmed" in l and TEST_PREFIX in l) or ("tm-probe" in l and " Z" not in l)
            or (("swtpm" in l or "trustme-tpmd" in l) and TEST_PREFIX in l)]
    assert ours == []


def test_no_token_service_left():
    """Every test daemon's trustme-scd went with it (its state dir names the test's directory)."""
    left = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"trustme-scd\0"):
                if TEST_PREFIX in (entry / "mountinfo").read_text():
                    left.append(entry.name)
        except OSError:
            pass
    assert left == []
