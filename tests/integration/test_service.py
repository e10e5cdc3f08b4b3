# SPDX-License-Identifier: GPL-2.0-or-later
"""trustmed as a systemd service (docs/PACKAGING.md), without systemd as PID 1: the notify
protocol against a real $NOTIFY_SOCKET listener, the journal's log format, a delegated cgroup
(a unit's cgroup made by hand, $INVOCATION_ID set) and a restart (SIGQUIT) that leaves the
containers to the next trustmed."""
import os
import re
import signal
import socket
import stat
import subprocess

import pytest

import conftest
from conftest import TEST_PREFIX, cgroup_dirs, process_gone, remove_cgroups, wait_for


def recv_all(sock, timeout):
    """The notify datagrams that arrive within timeout seconds, as one string each."""
    sock.settimeout(timeout)
    got = []
    try:
        while True:
            got.append(sock.recv(4096).decode())
            sock.settimeout(0.2)
    except socket.timeout:
        pass
    return got


def test_notify_protocol_and_journal_log_format(make_daemon, tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    listener.bind(str(path))
    d = make_daemon(start=False, env={"NOTIFY_SOCKET": str(path)})
    # stderr is the log file: JOURNAL_STREAM names it, as journald names its stream
    d.log_path.touch()
    st = os.stat(d.log_path)
    d.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    d.start()
    msgs = recv_all(listener, 10)
    ready = [m for m in msgs if "READY=1" in m.splitlines()]
    assert ready, f"no READY=1 among {msgs}"
    assert re.search(r"^STATUS=serving .*control\.sock, 0 containers running$", ready[0], re.M), ready
    # the socket is trustmed's alone: its helpers do not inherit it
    scd = d.scd_pid()
    assert scd and b"NOTIFY_SOCKET" not in open(f"/proc/{scd}/environ", "rb").read()
    assert d.stop() == 0
    msgs = recv_all(listener, 2)
    assert any("STOPPING=1" in m.splitlines() for m in msgs), msgs
    listener.close()
    # sd-daemon priority prefixes and no timestamps of its own, from trustmed and its helpers
    lines = [l for l in d.log().splitlines() if l]
    assert lines and all(re.match(r"<[0-7]>trustme", l) for l in lines), lines[:5]
    assert any(l.startswith("<6>trustmed: ready: ") for l in lines)
    assert any(l.startswith("<6>trustme-tpmd: ") or l.startswith("<7>trustme-tpmd: ") for l in lines)
    assert not any(re.match(r"\d\d:\d\d:\d\d", l) for l in lines)


def cgroup_mounts():
    mounts = []
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        fstype = line.split(" - ")[1].split()[0]
        if fstype in ("cgroup", "cgroup2") and fields[3] == "/":
            mounts.append(fields[4])
    return mounts


@pytest.fixture
def unit_cgroup(tmp_path, monkeypatch):
    """A service unit's cgroup in every hierarchy, as systemd makes it with Delegate=yes, and a
    trustmed started in it: a wrapper that moves itself there and execs the real one."""
    unit = f"{TEST_PREFIX}-unit.service"
    procs = []
    for m in cgroup_mounts():
        d = os.path.join(m, unit)
        os.makedirs(d, exist_ok=True)
        for f in ("cpuset.cpus", "cpuset.mems"):
            if os.path.exists(os.path.join(d, f)):
                with open(os.path.join(m, f)) as src, open(os.path.join(d, f), "w") as dst:
                    dst.write(src.read())
        procs.append(os.path.join(d, "cgroup.procs"))
    wrapper = tmp_path / "trustmed"
    wrapper.write_text("#!/bin/sh\n" + "".join(f"echo $$ > {p}\n" for p in procs) +
                       f'exec {conftest.TRUSTMED} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(conftest, "TRUSTMED", wrapper)
    yield unit
    remove_cgroups(unit)


def test_delegated_cgroup_and_restart_leaves_containers(make_daemon, unit_cgroup):
    d = make_daemon(env={"INVOCATION_ID": "0123456789abcdef0123456789abcdef"})
    assert f"delegated by {unit_cgroup}" in d.log()
    d.create("svc")
    d.cli("start", "svc")
    st = d.state("svc")
    dirs = cgroup_dirs(st["uuid"])
    assert dirs and all(f"/{unit_cgroup}/{d.cgroup_parent}/" in str(p) for p in dirs), dirs
    # trustmed left the unit's own cgroup for the supervisor leaf (v2: no process in a cgroup
    # whose children get controllers)
    for m in cgroup_mounts():
        leaf = os.path.join(m, unit_cgroup, "supervisor", "cgroup.procs")
        assert str(d.proc.pid) in open(leaf).read().split(), leaf
        assert open(os.path.join(m, unit_cgroup, "cgroup.procs")).read().split() == []
    scd = d.scd_pid()
    # a restart: SIGQUIT (the unit's RestartKillSignal) ends trustmed and its helpers, not the
    # container
    d.proc.send_signal(signal.SIGQUIT)
    assert d.proc.wait(30) == 0
    wait_for(lambda: process_gone(scd), what="trustme-scd to end with trustmed")
    assert not process_gone(st["pid"]), "the container must outlive a restart"
    d.start()
    st2 = d.state("svc")
    assert st2["state"] == "running" and st2["pid"] == st["pid"] and st2["adopted"]
    assert d.sh("svc", "echo hi").stdout == "hi\n"
    events = [e["event"] for e in d.audit_events()]
    assert "daemon.detach" in events and "container.adopt" in events
    d.cli("stop", "--timeout", "1", "svc")
    assert cgroup_dirs(st["uuid"]) == []


def test_trustmed_outside_its_build_tree_finds_no_helper(tmp_path):
    """A trustmed that is not the installed one takes its helpers from its build tree only:
    copied elsewhere it finds none, not even one lying next to it."""
    copy = tmp_path / "bin" / "trustmed"
    copy.parent.mkdir()
    copy.write_bytes(conftest.TRUSTMED.read_bytes())
    copy.chmod(0o755)
    (copy.parent / "trustme-scd").write_bytes((conftest.BUILD / "src/scd/trustme-scd").read_bytes())
    (copy.parent / "trustme-scd").chmod(0o755)
    (tmp_path / "data").mkdir()
    (tmp_path / "data/device.json").write_text(conftest.DEV_DEVICE_JSON)
    cg = f"{TEST_PREFIX}-helperpath"
    try:
        r = subprocess.run([str(copy), "--data-dir", str(tmp_path / "data"), "--run-dir", str(tmp_path / "run"),
                            "--cgroup-parent", cg, "--swtpm-state-dir", str(tmp_path / "swtpm")],
                           capture_output=True, text=True, timeout=30)
    finally:
        remove_cgroups(cg)
    assert r.returncode == 1
    assert f"a build tree's trustmed looks for {tmp_path}/bin/../scd/trustme-scd" in r.stderr, r.stderr


def test_version_names_cli_daemon_and_protocol(daemon, tmp_path):
    """`trustme version`: the CLI's and the daemon's release and protocol (meson.build's version)."""
    import json
    release = re.search(r"version : '([^']+)'", (conftest.REPO / "meson.build").read_text()).group(1)
    out = daemon.cli("version").stdout
    assert f"trustme (CLI)  {release}, protocol 1\n" in out and f"trustmed       {release}, protocol 1\n" in out, out
    j = json.loads(daemon.cli("version", "--json").stdout)
    assert j == {"cli": release, "cli_protocol": 1, "daemon": release, "daemon_protocol": 1}
    # no daemon: the CLI's own line, then the reason, exit status 1
    r = subprocess.run([str(conftest.TRUSTME), "--run-dir", str(tmp_path), "version"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout.startswith(f"trustme (CLI)  {release}") and "trustmed " not in r.stdout
