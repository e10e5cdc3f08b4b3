# SPDX-License-Identifier: GPL-2.0-or-later
"""trustmed dying and coming back: running containers are re-adopted (still running, still
managed); what died meanwhile is cleaned up without leftovers."""
import os
import signal
from pathlib import Path

from conftest import cgroup_dirs, loops_backed_by, process_gone, wait_for


def test_running_container_is_readopted_after_kill9(daemon):
    daemon.create("keep")
    daemon.cli("start", "keep")
    daemon.sh("keep", "echo before > /root/f")
    pid = daemon.state("keep")["pid"]

    daemon.kill9()
    assert Path(f"/proc/{pid}").exists(), "the container must survive its manager's crash"
    daemon.start()

    st = daemon.state("keep")
    assert st["state"] == "running" and st["pid"] == pid and st["adopted"]
    # still managed: exec, freeze, stop all work on the adopted init
    assert daemon.sh("keep", "cat /root/f").stdout == "before\n"
    daemon.sh("keep", "echo after > /root/g")
    daemon.cli("freeze", "keep")
    assert daemon.state("keep")["state"] == "frozen"
    daemon.cli("unfreeze", "keep")
    daemon.cli("stop", "--timeout", "1", "keep")
    st = daemon.state("keep")
    assert st["state"] == "stopped" and process_gone(pid)
    assert cgroup_dirs(st["uuid"]) == [] and loops_backed_by(daemon.base) == []
    # and its data survived all of it
    daemon.cli("start", "keep")
    assert daemon.sh("keep", "cat /root/f /root/g").stdout == "before\nafter\n"
    events = [e["event"] for e in daemon.audit_events()]
    assert "container.adopt" in events


def test_frozen_container_is_readopted_frozen(daemon):
    daemon.create("ice")
    daemon.cli("start", "ice")
    daemon.cli("freeze", "ice")
    daemon.kill9()
    daemon.start()
    assert daemon.state("ice")["state"] == "frozen"
    daemon.cli("unfreeze", "ice")
    assert daemon.sh("ice", "echo thawed").stdout == "thawed\n"


def test_container_that_died_while_daemon_was_down_is_cleaned_up(daemon):
    daemon.create("gone")
    daemon.cli("start", "gone")
    st = daemon.state("gone")
    daemon.kill9()
    os.kill(st["pid"], signal.SIGKILL)
    wait_for(lambda: process_gone(st["pid"]), what="init to die")
    daemon.start()
    after = daemon.state("gone")
    assert after["state"] == "stopped" and after["pid"] == 0
    assert after["last_exit"] == "ended while trustmed was not running"
    wait_for(lambda: cgroup_dirs(st["uuid"]) == [], what="cgroups to be removed")
    assert loops_backed_by(daemon.base) == []
    daemon.cli("start", "gone")  # and it starts again
    assert daemon.state("gone")["state"] == "running"


def test_readoption_survives_pid_reuse_check(daemon):
    """A runtime record pointing at some other process is not adopted."""
    daemon.create("stale")
    daemon.cli("start", "stale")
    st = daemon.state("stale")
    daemon.kill9()
    os.kill(st["pid"], signal.SIGKILL)
    wait_for(lambda: process_gone(st["pid"]), what="init to die")
    # point the record at an unrelated live process (this test's python)
    runtime = daemon.run_dir / "containers" / st["uuid"] / "runtime.json"
    runtime.write_text(runtime.read_text().replace(f'"pid":{st["pid"]}', f'"pid":{os.getpid()}'))
    daemon.start()
    assert daemon.state("stale")["state"] == "stopped"
    assert Path(f"/proc/{os.getpid()}").exists()  # and nobody killed us


def test_interrupted_start_leaves_nothing(daemon):
    """trustmed killed before it recorded a start: the next one kills what that start left in the
    container's cgroups and removes them. (Simulated deterministically: a crash between init's
    exec and the runtime record leaves exactly this state.)"""
    daemon.create("half")
    daemon.cli("start", "half")
    st = daemon.state("half")
    daemon.kill9()
    (daemon.run_dir / "containers" / st["uuid"] / "runtime.json").unlink()
    daemon.start()
    after = daemon.state("half")
    assert after["state"] == "stopped"
    wait_for(lambda: process_gone(st["pid"]), what="orphan to be killed")
    wait_for(lambda: cgroup_dirs(st["uuid"]) == [], what="leftover cgroups to go")
    wait_for(lambda: loops_backed_by(daemon.base) == [], what="loop devices to detach")
    assert any(e["event"] == "container.cleanup" for e in daemon.audit_events())
    daemon.cli("start", "half")
    assert daemon.sh("half", "echo ok").stdout == "ok\n"


def test_exec_sessions_after_readoption_get_seccomp_and_caps(daemon):
    daemon.create("sec")
    daemon.cli("start", "sec")
    daemon.kill9()
    daemon.start()
    status = daemon.sh("sec", "cat /proc/self/status").stdout
    assert "Seccomp:\t2" in status
    capbnd = int([l for l in status.splitlines() if l.startswith("CapBnd")][0].split()[1], 16)
    assert not capbnd & (1 << 16)  # CAP_SYS_MODULE


def test_last_start_time_survives_restarts(daemon):
    """"last started" (started_at) of a container is kept through every way trustmed can come
    back: re-adoption after kill -9, init dying while trustmed was down, a clean stop followed by
    a restart or a kill -9 (it lived only in the run dir's runtime.json, which goes at the stop)."""
    d = daemon
    d.create("t")
    d.cli("start", "t")
    first = d.state("t")["started_at"]
    assert first > 0
    d.kill9()
    d.start()
    assert d.state("t")["started_at"] == first  # re-adopted
    pid = d.state("t")["pid"]
    d.kill9()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: process_gone(pid), what="init to die")
    d.start()
    st = d.state("t")
    assert st["state"] == "stopped" and st["started_at"] == first, st  # died meanwhile
    d.stop()
    d.start()
    assert d.state("t")["started_at"] == first  # stopped, clean restart
    d.cli("start", "t")
    d.cli("stop", "--timeout", "0", "t")
    second = d.state("t")["started_at"]
    assert second >= first
    d.kill9()
    d.start()
    st = d.state("t")
    assert st["started_at"] == second, st  # stopped, trustmed killed
    assert "last started:    -" not in d.cli("state", "t").stdout
