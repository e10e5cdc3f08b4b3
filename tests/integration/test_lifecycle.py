# SPDX-License-Identifier: GPL-2.0-or-later
"""Container lifecycle through the CLI: create, start, stop, freeze, remove, failures, autostart."""
import json
import os
from pathlib import Path

import pytest

from conftest import BUILD, cgroup_dirs, loops_backed_by, wait_for


def test_full_lifecycle(daemon):
    """create -> list -> start -> running -> stop -> stopped -> remove, with state at each step."""
    daemon.create("web", hostname="web-host")
    assert [c["name"] for c in daemon.containers()] == ["web"]
    st = daemon.state("web")
    assert st["state"] == "stopped" and st["pid"] == 0 and st["uuid"]

    out = daemon.cli("start", "web").stdout
    assert "web started" in out
    st = daemon.state("web")
    assert st["state"] == "running" and st["pid"] > 0
    assert Path(f"/proc/{st['pid']}").exists()

    daemon.cli("stop", "--timeout", "1", "web")
    st = daemon.state("web")
    assert st["state"] == "stopped" and st["pid"] == 0
    assert st["last_exit"] == "killed by SIGKILL"  # sleep as pid 1 ignores SIGTERM

    daemon.cli("remove", "web")
    assert daemon.containers() == []
    assert not list((daemon.data_dir / "containers").iterdir())


def test_containers_by_uuid(daemon):
    daemon.create("byid")
    uuid = daemon.state("byid")["uuid"]
    daemon.cli("start", uuid)
    assert daemon.state(uuid)["state"] == "running"
    daemon.cli("stop", "--kill", uuid)
    assert daemon.state("byid")["state"] == "stopped"


def test_config_is_returned_verbatim(daemon):
    daemon.create("cfg", env={"A": "1"})
    raw = daemon.cli("config", "cfg").stdout
    assert raw == (daemon.configs / "cfg.json").read_text()


def test_graceful_stop_with_sigterm(daemon):
    """An init that handles SIGTERM stops within the timeout, exit status recorded."""
    daemon.create("graceful", init="/bin/sh",
                  args=["-c", "trap 'exit 3' TERM; while :; do sleep 0.05; done"])
    daemon.cli("start", "graceful")
    daemon.cli("stop", "graceful")
    assert daemon.state("graceful")["last_exit"] == "exited 3"


def test_refused_transitions_have_clear_errors(daemon):
    daemon.create("r")
    r = daemon.cli("stop", "r", check=False)
    assert r.returncode != 0 and "cannot stop: the container is stopped" in r.stderr
    r = daemon.cli("freeze", "r", check=False)
    assert r.returncode != 0 and "cannot freeze" in r.stderr
    daemon.cli("start", "r")
    r = daemon.cli("start", "r", check=False)
    assert r.returncode != 0 and "cannot start: the container is running" in r.stderr
    r = daemon.cli("remove", "r", check=False)
    assert r.returncode != 0 and "stop it before removing it" in r.stderr
    r = daemon.cli("unfreeze", "r", check=False)
    assert r.returncode != 0 and "cannot unfreeze: the container is running" in r.stderr
    r = daemon.cli("state", "nosuch", check=False)
    assert r.returncode != 0 and 'no container "nosuch"' in r.stderr


def test_start_attach_relays_output_and_status(daemon):
    daemon.create("att", init="/bin/sh", args=["-c", "echo out; echo err >&2; exit 7"])
    r = daemon.cli("start", "--attach", "att", check=False)
    assert r.returncode == 7
    assert r.stdout == "out\n" and r.stderr == "err\n"
    st = daemon.state("att")
    assert st["state"] == "stopped" and st["last_exit"] == "exited 7"


def test_start_attach_relays_stdin(daemon):
    daemon.create("cat", init="/bin/cat", args=[])
    r = daemon.cli("start", "--attach", "cat", input="line one\nline two\n")
    assert r.stdout == "line one\nline two\n"


def test_console_log_when_not_attached(daemon):
    daemon.create("log", init="/bin/sh", args=["-c", "echo to-console; exec sleep 100000"])
    daemon.cli("start", "log")
    uuid = daemon.state("log")["uuid"]
    console = daemon.run_dir / "containers" / uuid / "console.log"
    wait_for(lambda: console.exists() and "to-console" in console.read_text(), what="console output")
    assert daemon.cli("logs", "log").stdout == "to-console\n"
    daemon.cli("stop", "--kill", "log")
    daemon.cli("start", "log")
    wait_for(lambda: daemon.cli("logs", "log").stdout == "to-console\n", what="new run's log")
    assert daemon.cli("logs", "--previous", "log").stdout == "to-console\n"
    assert daemon.cli("logs", "nosuch", check=False).returncode == 1


def test_console_log_is_bounded(daemon):
    """A container printing without end cannot fill the run dir (a tmpfs, i.e. host memory)."""
    daemon.create("chatty", init="/bin/sh", args=["-c", "head -c 8388608 /dev/zero | tr '\\0' x; exec sleep 100000"])
    daemon.cli("start", "chatty")
    run = daemon.run_dir / "containers" / daemon.state("chatty")["uuid"]
    log, old = run / "console.log", run / "console.log.1"

    def size(p):
        # trustmed rotates by renaming console.log to console.log.1 and then making a new one: a
        # stat between the two finds neither at that name
        try:
            return p.stat().st_size
        except FileNotFoundError:
            return 0

    def settled():
        sizes = [size(p) for p in (log, old)]
        ps = daemon.sh("chatty", "ps").stdout
        return "head" not in ps and "tr" not in ps.split() and sizes
    wait_for(settled, timeout=30, what="the output to be written")
    total = sum(size(p) for p in (log, old))
    assert total <= 2 * 1024 * 1024 + 65536, total
    assert old.exists() and set(old.read_bytes()) == {ord("x")}


def test_console_survives_readoption(daemon):
    """init's output still reaches the console log after trustmed was killed and came back."""
    daemon.create("talk", init="/bin/sh", args=[
        "-c", "echo first; while :; do [ -e /tmp/go ] && { echo second; rm /tmp/go; }; sleep 0.05; done"])
    daemon.cli("start", "talk")
    console = daemon.run_dir / "containers" / daemon.state("talk")["uuid"] / "console.log"
    wait_for(lambda: "first" in console.read_text(), what="first line")
    daemon.kill9()
    daemon.start()
    daemon.sh("talk", "touch /tmp/go")
    wait_for(lambda: "second" in console.read_text(), what="output after re-adoption")


def test_background_writer_survives_trustmed_restart(daemon):
    """A process sharing init's console (not pid 1, so SIGPIPE would kill it) keeps running and
    logging while trustmed is down and after it comes back."""
    daemon.create("bg", init="/bin/sh", args=[
        "-c", "(i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.01; done) & wait"])
    daemon.cli("start", "bg")
    console = daemon.run_dir / "containers" / daemon.state("bg")["uuid"] / "console.log"
    wait_for(lambda: console.read_text().count("tick") > 5, what="ticks")
    daemon.kill9()
    import time
    time.sleep(0.5)  # ~50 ticks written while nobody reads
    daemon.start()
    before = console.read_text().count("tick")
    wait_for(lambda: console.read_text().count("tick") > before + 20, what="ticks after the restart")
    assert "while" in daemon.sh("bg", "ps").stdout or "sleep" in daemon.sh("bg", "ps").stdout
    lines = [l for l in console.read_text().splitlines() if l.startswith("tick ")]
    numbers = [int(l.split()[1]) for l in lines]
    assert numbers == list(range(1, len(numbers) + 1)), "no tick may be lost"


def _mntns_fds(pid, ino):
    """trustmed's (pid's) fds that name the mount namespace with inode ino."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == f"mnt:[{ino}]":
                found.append(fd.name)
        except OSError:
            pass  # closed meanwhile
    return found


def test_trustmed_keeps_inits_mount_namespace_until_it_has_answered(daemon):
    """trustmed holds init's mount namespace from init's exec on (init sends it), so that the
    container's mounts are torn down after the exit is answered, not inside init's exit; after the
    stop no reference is left, and the data volume's loop device is gone."""
    daemon.create("ns")
    daemon.cli("start", "ns")
    st = daemon.state("ns")
    ino = os.stat(f"/proc/{st['pid']}/ns/mnt").st_ino
    assert _mntns_fds(daemon.proc.pid, ino), "trustmed holds no reference to init's mount namespace"
    daemon.cli("stop", "--kill", "ns")
    assert _mntns_fds(daemon.proc.pid, ino) == []
    assert loops_backed_by(daemon.data_dir / "containers" / st["uuid"]) == []
    # an attached start: the status arrives, and the next request finds everything released
    daemon.create("quick", init="/bin/sh", args=["-c", "exit 5"])
    assert daemon.cli("start", "--attach", "quick", check=False).returncode == 5
    st = daemon.state("quick")
    assert st["state"] == "stopped" and st["last_exit"] == "exited 5"
    assert loops_backed_by(daemon.data_dir / "containers" / st["uuid"]) == []
    assert cgroup_dirs(st["uuid"]) == []


def _hooks_built():
    opts = json.loads((BUILD / "meson-info/intro-buildoptions.json").read_text())
    return any(o["name"] == "test_hooks" and o["value"] is True for o in opts)


@pytest.mark.skipif(not _hooks_built(), reason="needs a build with -Dtest_hooks=true (scripts/build.sh)")
def test_exit_answered_then_trustmed_killed_loses_nothing(daemon):
    """trustmed killed right after it answered an attached start with the exit status, before
    any cleanup (crash point container-exit-answered): the client has its status, the synced
    audit record of the exit is there (once, also after the restart), the container's mounts and
    its data volume's loop device went with trustmed's reference, and the restarted trustmed
    removes the cgroups."""
    daemon.create("crash", init="/bin/sh", args=["-c", "exit 7"])
    uuid = daemon.state("crash")["uuid"]
    (daemon.data_dir / "test-crash-at").write_text("container-exit-answered\n")
    r = daemon.cli("start", "--attach", "crash", check=False)
    assert r.returncode == 7, r.stderr
    assert daemon.proc.wait(timeout=30) == -9
    assert not (daemon.data_dir / "test-crash-at").exists()
    wait_for(lambda: loops_backed_by(daemon.data_dir / "containers" / uuid) == [],
             what="the data volume's loop device to go with trustmed")
    stops = lambda: [json.loads(line) for line in (daemon.data_dir / "audit.log").read_text().splitlines()
                     if '"container.stop"' in line and uuid in line]
    assert [e["detail"] for e in stops()] == ["init exited 7"]
    daemon.start()
    st = daemon.state("crash")
    assert st["state"] == "stopped" and st["pid"] == 0
    wait_for(lambda: cgroup_dirs(uuid) == [], what="the cgroups to be removed")
    assert len(stops()) == 1, stops()
    assert daemon.cli("start", "--attach", "crash", check=False).returncode == 7


def test_failed_start_lands_stopped_with_reason_and_nothing_left(daemon):
    """A start that fails (init missing) undoes everything and keeps the reason."""
    daemon.create("broken", init="/no/such/init")
    r = daemon.cli("start", "broken", check=False)
    assert r.returncode != 0
    assert "cannot execute /no/such/init" in r.stderr, r.stderr
    st = daemon.state("broken")
    assert st["state"] == "stopped"
    assert "No such file or directory" in st["last_error"]
    assert cgroup_dirs(st["uuid"]) == []
    assert loops_backed_by(daemon.base) == []
    events = [e for e in daemon.audit_events() if e["event"] == "container.start"]
    assert events[-1]["result"] == "fail" and "/no/such/init" in events[-1]["detail"]
    # and the container still starts once fixed (here: with a working init via another config)
    daemon.create("fixed")
    daemon.cli("start", "fixed")


def test_bad_cpus_fails_start_cleanly(daemon):
    daemon.create("cpus", cpus="1000")
    r = daemon.cli("start", "cpus", check=False)
    assert r.returncode != 0 and "not available on this host" in r.stderr
    st = daemon.state("cpus")
    assert st["state"] == "stopped" and "cpus" in st["last_error"]
    assert cgroup_dirs(st["uuid"]) == []


def test_cgroup_failure_while_the_setup_process_mounts_leaves_nothing(daemon):
    """The cgroups are made by trustmed while the setup process already mounts (module.h
    prepare_after_fork): when making them fails, the setup process, with its mounts, loop device
    and namespaces, is gone too, the start is reported failed with the cgroups' reason, and the
    next start of a good config goes through."""
    daemon.create("late", cpus="1000", data_size_mb=16)
    r = daemon.cli("start", "late", check=False)
    assert r.returncode != 0 and "not available on this host" in r.stderr, r.stderr
    st = daemon.state("late")
    assert st["state"] == "stopped" and st["last_error"].startswith("cgroups:"), st
    assert cgroup_dirs(st["uuid"]) == []
    # The killed setup process held the data volume's loop device in its mount namespace only.
    wait_for(lambda: loops_backed_by(daemon.base) == [], timeout=20)
    daemon.create("late-ok", data_size_mb=16)
    daemon.cli("start", "late-ok")
    assert daemon.state("late-ok")["state"] == "running"


def test_cpuset_is_applied(daemon):
    daemon.create("pin", cpus="0")
    daemon.cli("start", "pin")
    uuid = daemon.state("pin")["uuid"]
    cpus = Path(f"/sys/fs/cgroup/cpuset/{daemon.cgroup_parent}/{uuid}/cpuset.cpus")
    assert cpus.read_text().strip() == "0"


def test_data_survives_stop_start_and_daemon_restart(daemon):
    daemon.create("keep")
    daemon.cli("start", "keep")
    daemon.sh("keep", "echo precious > /root/file; rm /bin/vi")
    daemon.cli("stop", "--kill", "keep")
    daemon.cli("start", "keep")
    assert daemon.sh("keep", "cat /root/file").stdout == "precious\n"
    daemon.cli("stop", "--kill", "keep")
    daemon.restart()
    daemon.cli("start", "keep")
    assert daemon.sh("keep", "cat /root/file").stdout == "precious\n"
    assert daemon.sh("keep", "test -e /bin/vi", check=False).returncode == 1


def test_data_volume_created_with_configured_size(daemon):
    daemon.create("sized", data_size_mb=24)
    r = daemon.cli("start", "sized")
    assert "creating the data volume (24 MiB)" in r.stderr
    uuid = daemon.state("sized")["uuid"]
    img = daemon.data_dir / "containers" / uuid / "data.img"
    assert img.stat().st_size == 24 << 20
    # files the container writes belong to its id range on the host
    daemon.sh("sized", "echo x > /root/owned")
    base = daemon.state("sized")["uid_base"]
    assert base >= daemon.id_base


def test_no_data_volume_is_ephemeral(daemon):
    daemon.create("eph", data_size_mb=0)
    daemon.cli("start", "eph")
    daemon.sh("eph", "echo gone > /root/f")
    daemon.cli("stop", "--kill", "eph")
    daemon.cli("start", "eph")
    assert daemon.sh("eph", "cat /root/f", check=False).returncode != 0
    uuid = daemon.state("eph")["uuid"]
    assert not (daemon.data_dir / "containers" / uuid / "data.img").exists()


def test_privileged_container_without_user_namespace(daemon):
    daemon.create("priv", user_namespace=False)
    daemon.cli("start", "priv")
    st = daemon.state("priv")
    assert st["uid_base"] == 0 and not st["user_namespace"]
    assert daemon.sh("priv", "cat /proc/self/uid_map").stdout.split() == ["0", "0", "4294967295"]
    status = daemon.sh("priv", "grep CapBnd /proc/self/status").stdout
    capbnd = int(status.split()[1], 16)
    assert not capbnd & (1 << 21), "CAP_SYS_ADMIN must be dropped without a user namespace"


def test_squashfs_and_erofs_rootfs(daemon, squashfs_image, erofs_image):
    daemon.create("sq", rootfs={"path": str(squashfs_image)})
    daemon.create("ero", rootfs={"path": str(erofs_image), "type": "erofs"})
    for name in ("sq", "ero"):
        daemon.cli("start", name)
        assert daemon.sh(name, "echo ok > /root/x && cat /root/x").stdout == "ok\n"
        daemon.cli("stop", "--kill", name)
    assert loops_backed_by(daemon.base) == []


def test_autostart_containers_start_with_the_daemon(daemon):
    daemon.create("auto", autostart=True)
    daemon.create("manual")
    daemon.restart()
    wait_for(lambda: daemon.state("auto")["state"] == "running", what="autostart")
    assert daemon.state("manual")["state"] == "stopped"
    assert any(e["event"] == "container.start" and e["actor"] == "autostart"
               for e in daemon.audit_events())


def test_daemon_sigterm_stops_containers(daemon):
    daemon.create("a")
    daemon.create("b")
    daemon.cli("start", "a")
    daemon.cli("start", "b")
    pids = [daemon.state(n)["pid"] for n in ("a", "b")]
    assert daemon.stop() == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
    assert cgroup_dirs(daemon.cgroup_parent) == []


def test_stop_while_starting_and_stop_escalation(daemon):
    """A second stop with --kill escalates a pending graceful stop."""
    daemon.create("slow")
    daemon.cli("start", "slow")
    import subprocess
    from conftest import TRUSTME
    graceful = subprocess.Popen([str(TRUSTME), "--run-dir", str(daemon.run_dir), "stop",
                                 "--timeout", "30", "slow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: daemon.state("slow")["state"] == "stopping", what="stopping")
    daemon.cli("stop", "--kill", "slow")
    assert graceful.wait(10) == 0
    assert daemon.state("slow")["state"] == "stopped"


def test_two_daemons_side_by_side(make_daemon):
    """Two daemons with different dirs do not see or touch each other's containers."""
    d1, d2 = make_daemon(), make_daemon()
    d1.create("same")
    d2.create("same")
    d1.cli("start", "same")
    assert d2.state("same")["state"] == "stopped"
    d2.cli("start", "same")
    s1, s2 = d1.state("same"), d2.state("same")
    assert s1["uuid"] != s2["uuid"] and s1["pid"] != s2["pid"]
    assert s1["uid_base"] != s2["uid_base"]
    d1.cli("stop", "--kill", "same")
    assert d2.state("same")["state"] == "running"
    d1.stop()
    assert d2.state("same")["state"] == "running"


def test_second_daemon_on_same_dirs_is_refused(daemon):
    import subprocess
    from conftest import TRUSTMED
    r = subprocess.run([str(TRUSTMED), "--data-dir", str(daemon.data_dir), "--run-dir",
                        str(daemon.run_dir)], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "in use by another trustmed" in r.stderr
    assert daemon.containers() == []  # the first one still serves


def test_trustmed_rejects_bad_options(tmp_path):
    import subprocess
    from conftest import TRUSTMED
    for args, msg in ((["--data-dir", "relative"], "absolute path"),
                      (["--id-base", "0"], "--id-base"),
                      (["--log-level", "loud"], "--log-level"),
                      (["--cgroup-parent", "../x"], "--cgroup-parent"),
                      (["extra"], "unexpected argument")):
        r = subprocess.run([str(TRUSTMED), *args], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)
    r = subprocess.run([str(TRUSTMED), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "--data-dir" in r.stdout


def test_no_start_during_shutdown_and_no_zombies(daemon):
    import subprocess, time
    daemon.create("slowstop", init="/bin/sh", args=["-c", "trap 'sleep 1; exit 0' TERM; while :; do sleep 0.05; done"])
    daemon.create("late")
    daemon.cli("start", "slowstop")
    for i in range(5):
        daemon.sh("slowstop", "true")  # exec sessions leave no zombie helpers behind
    kids = open(f"/proc/{daemon.proc.pid}/task/{daemon.proc.pid}/children").read().split()
    zombies = [k for k in kids if open(f"/proc/{k}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"]
    assert zombies == []
    daemon.proc.send_signal(15)
    time.sleep(0.2)
    r = daemon.cli("start", "late", check=False)
    assert r.returncode != 0 and "shutting down" in r.stderr
    assert daemon.proc.wait(20) == 0
