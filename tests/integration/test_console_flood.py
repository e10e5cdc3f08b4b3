# SPDX-License-Identifier: GPL-2.0-or-later
"""A container flooding its console (`yes` as init) must not keep trustmed busy: console logging
is bounded per container (docs/SECURITY.md "The daemon")."""
import os
import time

from conftest import wait_for

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def trustmed_cpu(d, seconds):
    """The share of one core trustmed used over the next `seconds`."""
    t0, c0 = time.monotonic(), cpu_seconds(d.proc.pid)
    time.sleep(seconds)
    return (cpu_seconds(d.proc.pid) - c0) / (time.monotonic() - t0)


def test_console_flood_keeps_trustmed_idle(daemon):
    d = daemon
    d.create("flood", init="/usr/bin/yes", args=["trustme-flood"], data_size_mb=0)
    d.cli("start", "flood")
    wait_for(lambda: "trustme-flood" in d.cli("logs", "flood").stdout, what="the flood in the log")
    share = trustmed_cpu(d, 5)
    print(f"trustmed CPU with a flooding container: {share:.1%} of a core")
    assert share < 0.10, f"trustmed used {share:.0%} of a core draining one container's console"
    # still serving, the log still shows the container's output (lines may be cut where a
    # write was), and the slowing down was said once, not per wake-up
    assert d.state("flood")["state"] == "running"
    lines = d.cli("logs", "flood").stdout.split("\n")
    assert len(lines) > 1000 and set(lines[1:-1]) == {"trustme-flood"}
    assert d.log().count("console output beyond 256 KiB/s is slowed down") == 1
    d.cli("stop", "--timeout", "0", "flood")
