"""Runs last: nothing the suite made may be left on the host."""
import subprocess
from pathlib import Path

import re

from conftest import TEST_BRIDGES, TEST_PREFIX, cgroup_dirs, net_links, nft_tables


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


def test_no_nft_tables_left():
    """No trustme nftables table of any bridge a test daemon was given."""
    assert [t for b in sorted(TEST_BRIDGES) for t in nft_tables(b)] == []


def test_no_links_left():
    """No bridge of a test daemon, no container veth (tm + 10 hex digits), no test "physical"
    interface (tph..., test_network.py) is left on the host."""
    left = [l for l in net_links()
            if l in TEST_BRIDGES or re.fullmatch(r"tm[0-9a-f]{10}", l) or l.startswith("tph")]
    assert left == []
