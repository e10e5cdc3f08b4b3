# SPDX-License-Identifier: GPL-2.0-or-later
"""Runs last: nothing this run made may be left on the host. Every check looks only for what this
run made (conftest.RUN_ID in its names, or the names its daemons were given), so that another
test run on the same machine, alive at the same time, neither fails these checks nor is failed
by them."""
import subprocess
from pathlib import Path

from conftest import (NET_PREFIX, TEST_BRIDGES, TEST_PREFIX, TEST_VETHS, cgroup_dirs, net_links,
                      nft_tables)
from tools import tool


def test_no_mounts_left():
    """Mounts below the run's directories, or naming them (an overlay's lower and upper dirs, a
    tmpfs whose source is the prefix)."""
    with open("/proc/self/mountinfo") as f:
        left = [l.split()[4] for l in f if TEST_PREFIX in l]
    assert left == []


def test_no_loop_devices_left():
    out = subprocess.run([tool("losetup"), "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                         capture_output=True, text=True).stdout
    assert [l for l in out.splitlines() if TEST_PREFIX in l] == []


def test_no_cgroups_left():
    assert cgroup_dirs(TEST_PREFIX) == []


def in_our_cgroup(pid):
    """A process in a cgroup of this run's daemons (a container's init or exec, wherever the
    process's own name points)."""
    try:
        return TEST_PREFIX in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


def test_no_processes_left():
    out = subprocess.run([tool("ps"), "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    ours = [l for l in out.splitlines()[1:]
            if ("trustmed" in l and TEST_PREFIX in l)
            or ("tm-probe" in l and " Z" not in l and in_our_cgroup(l.split()[0]))
            or (("swtpm" in l or "trustme-tpmd" in l) and TEST_PREFIX in l)
            # the fleet tests' PostgreSQL (tests/integration/pgcluster.py)
            or ("postgres" in l and f"{TEST_PREFIX}-pg-" in l)]
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
    """No bridge of a test daemon, no veth of any container this run's daemons had, no interface
    named with this run's prefix (test "physical" interfaces, test_network_nft's outside) is left
    on the host."""
    left = [l for l in net_links()
            if l in TEST_BRIDGES or l in TEST_VETHS or l.startswith(NET_PREFIX)]
    assert left == []
