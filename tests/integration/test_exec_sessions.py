"""Exec sessions under load (issue 11 §3): stdin with backpressure instead of loss, the cap of
sessions per connection, and commands that outlived their CLI (trustme exec list / kill)."""
import os
import subprocess
import time

import pytest

from conftest import TRUSTME, wait_for


@pytest.fixture
def running(daemon):
    daemon.create("box")
    daemon.cli("start", "box")
    return daemon


def test_piped_stdin_is_never_lost(running):
    """48 MiB into a command that reads nothing for 4 s: trustmed stops reading the client
    while the pipe is full (before: it dropped all past 16 MiB and logged it 1453 times)."""
    size = 48 << 20
    log_before = len(running.log())
    p = subprocess.Popen(f"head -c {size} /dev/zero | {TRUSTME} --run-dir {running.run_dir} "
                         f"run box -- sh -c 'sleep 4; wc -c'", shell=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = running.proc.pid
    time.sleep(2)  # the command sleeps; the pipe and trustmed's buffer are full
    with open(f"/proc/{pid}/status") as f:
        rss = int([l for l in f if l.startswith("VmRSS")][0].split()[1])
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert out.strip() == str(size)
    assert rss < 16 * 1024, f"trustmed buffered the input: VmRSS {rss} KiB"
    assert "input overflow" not in running.log()[log_before:]


def test_stdin_and_output_flow_together(running):
    """cat echoes 24 MiB back while it is still being sent: backpressure both ways, no
    deadlock between the client's writes and its reads."""
    size = 24 << 20
    r = subprocess.run(f"head -c {size} /dev/urandom | tee {running.base}/in | {TRUSTME} "
                       f"--run-dir {running.run_dir} run box -- cat | cmp - {running.base}/in "
                       f"&& echo same", shell=True, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "same", r.stderr
