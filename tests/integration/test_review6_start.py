# SPDX-License-Identifier: GPL-2.0-or-later
"""Review 6 (fresh eyes) of the start path's cuts: the mount namespace init hands trustmed
(TM_SYNC_MNTNS) and the cleanup after the answer, the early vTPM start with a wrong PIN, the
bridged start's deferred nft sync and the CLONE_VM namespace helper. The main attacker is root in
the container (it controls init's program and its timing). Each test passes when the attack is
held (docs/SECURITY.md, "Review 6 (fresh eyes): the start path's cuts")."""
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import TRUSTME, cgroup_dirs, loops_backed_by, process_gone, wait_for
from test_network_nft import (LISTENER, bridged, connect, host_if, link_exists, net_daemon,  # noqa: F401
                              nft_helper, second_with_helper_stopped)
from test_vtpm import PIN, create, pin_file, state_file, vtpm_pid
from tools import tool


def _mnt_fds(pid):
    """How many of pid's fds name a mount namespace."""
    n = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            n += os.readlink(fd).startswith("mnt:[")
        except OSError:
            pass  # closed meanwhile
    return n


def _fd_count(pid):
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _fds(pid):
    """What pid's fds name (one entry per fd)."""
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out.append(f"{fd.name}:{os.readlink(fd)}")
        except OSError:
            pass
    return out


def test_init_has_no_sync_socket_to_forge_a_namespace(daemon):
    """A forged or extra TM_SYNC_MNTNS (e.g. an fd of the host's mount namespace, or of
    something else) needs the sync socket: init's program, the first code of the container's,
    finds no socket among its fds (the socket closed on exec; everything from fd 4 on was closed
    before)."""
    daemon.create("fds", init="/bin/sh",
                  args=["-c", "for f in /proc/self/fd/*; do readlink $f; done; exit 0"])
    r = daemon.cli("start", "--attach", "fds", check=False)
    assert r.returncode == 0, r.stderr
    links = r.stdout.split()
    assert len(links) >= 3, r.stdout  # stdin, stdout, stderr (and the directory being listed)
    assert not [x for x in links if x.startswith("socket:")], r.stdout
    assert "mnt:[" not in r.stdout, r.stdout


def test_container_mount_namespaces_do_not_outlive_the_run(daemon):
    """root in the container copies its mounts (the data volume among them) into mount
    namespaces of its own, held by background processes, and has init exit at once: trustmed's
    reference goes with the cleanup after the answer, the container's namespaces go with its
    processes (the pid namespace's end kills them), the loop device is released, no cgroup is
    left, and an immediate next start of the same container runs on fresh cgroups, five times
    in a row (no cleanup of the old run races the new one)."""
    base = _mnt_fds(daemon.proc.pid)
    script = ("unshare -m sleep 1000 & unshare -m sh -c 'cd /; sleep 1000' & "
              "sleep 1000 & exit 4")
    daemon.create("hold", init="/bin/sh", args=["-c", script], data_size_mb=16)
    uuid = daemon.state("hold")["uuid"]
    for _ in range(5):
        r = daemon.cli("start", "--attach", "hold", check=False)
        assert r.returncode == 4, r.stderr
        st = daemon.state("hold")
        assert st["state"] == "stopped" and st["last_exit"] == "exited 4", st
        assert cgroup_dirs(uuid) == []
        assert _mnt_fds(daemon.proc.pid) == base, "trustmed kept a mount namespace"
        wait_for(lambda: loops_backed_by(daemon.data_dir / "containers" / uuid) == [], timeout=30,
                 what="the data volume's loop device to be released")
    # a running one is stopped the same way
    daemon.create("hold2", init="/bin/sh", args=["-c", "unshare -m sleep 1000 & exec sleep 1000"],
                  data_size_mb=16)
    daemon.cli("start", "hold2")
    uuid2 = daemon.state("hold2")["uuid"]
    daemon.cli("stop", "--kill", "hold2")
    assert _mnt_fds(daemon.proc.pid) == base
    wait_for(lambda: loops_backed_by(daemon.data_dir / "containers" / uuid2) == [], timeout=30,
             what="the data volume's loop device to be released")
    daemon.cli("start", "hold2")
    assert daemon.state("hold2")["state"] == "running"
    daemon.cli("stop", "--kill", "hold2")


def test_wrong_pin_with_the_early_vtpm_leaves_nothing(make_daemon, rootfs):
    """trustme-vtpm is started before the PIN is checked. A wrong PIN (the attacker here has the
    CLI, not the container) leaves no trustme-vtpm, no helper.pid, no vTPM state, no fd in
    trustmed; after it the right PIN starts the container."""
    d = make_daemon()  # the default scrypt cost: a PIN check long enough to see the early vTPM
    create(d, "v", rootfs)
    uuid = d.state("v")["uuid"]
    run = d.run_dir / "vtpm" / uuid

    def wrong():
        seen, pidfile_seen, done = set(), [], threading.Event()

        def watch():  # the early trustme-vtpm, while the PIN is checked
            while not done.is_set():
                pid = vtpm_pid(d, "v")
                if pid:
                    seen.add(pid)
                if (run / "helper.pid").exists():
                    pidfile_seen.append(True)

        t = threading.Thread(target=watch)
        t.start()
        try:
            r = d.cli("start", "--pin-file", pin_file(d, "0000"), "v", check=False)
        finally:
            done.set()
            t.join()
        print(f"early trustme-vtpm seen: {sorted(seen)}")
        assert not pidfile_seen, "helper.pid written for a trustme-vtpm without its key"
        for pid in seen:
            wait_for(lambda: process_gone(pid), timeout=30, what=f"the early trustme-vtpm {pid} to end")
        assert r.returncode != 0 and "wrong PIN" in r.stderr, r.stderr
        assert d.state("v")["state"] == "stopped"
        wait_for(lambda: vtpm_pid(d, "v") is None, timeout=30, what="the early trustme-vtpm to end")
        assert not (run / "helper.pid").exists()
        assert not state_file(d, "v").exists(), "a vTPM state was made for a wrong PIN"

    wrong()
    time.sleep(0.5)  # the CLI's connection may still be open for a moment after the CLI is gone
    fds = _fds(d.proc.pid)
    wrong()  # a third wrong PIN would lock the token
    deadline = time.time() + 10
    while len(_fds(d.proc.pid)) > len(fds) and time.time() < deadline:
        time.sleep(0.05)
    now = _fds(d.proc.pid)
    assert len(now) <= len(fds), f"wrong PINs left fds in trustmed: {sorted(set(now) - set(fds))}"
    # the right PIN (two tries are used; this one resets the count)
    r = d.cli("start", "--pin-file", pin_file(d, PIN), "v", check=False)
    assert r.returncode == 0, r.stderr
    assert vtpm_pid(d, "v") is not None and (run / "helper.pid").exists()
    d.cli("stop", "--kill", "v")
    wait_for(lambda: vtpm_pid(d, "v") is None, timeout=30, what="trustme-vtpm to end")


def test_nft_helper_killed_while_a_start_waits_for_its_rules(net_daemon):
    """The bridged start no longer waits for its nft sync before the fork: the rules are in
    flight while the setup process makes the veth. The helper is killed (SIGKILL, as anything on
    the host might) with a start's rules sent and unanswered: the start must not bring eth0 up on
    the lost sync. It completes with its rules in the table (trustmed runs the lost script again),
    and the container is reachable only then."""
    d = net_daemon()
    b_if, helper = second_with_helper_stopped(d)
    start = subprocess.Popen([str(TRUSTME), "--run-dir", str(d.run_dir), "start", "b"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: link_exists(b_if), timeout=30, what=f"{b_if} made while the rules are pending")
        link = subprocess.run([tool("ip"), "-o", "link", "show", b_if], capture_output=True, text=True).stdout
        assert "LOWER_UP" not in link, link
        assert connect(f"{d.net}.21", 80, timeout=0.5) is None
    finally:
        os.kill(helper, signal.SIGKILL)
        out, err = start.communicate(timeout=60)
    assert start.returncode == 0, err
    rules = subprocess.run([tool("nft"), "list", "table", "bridge", f"trustme-{d.bridge}"],
                           capture_output=True, text=True, check=True).stdout
    assert b_if in rules and host_if(d, "a") in rules
    wait_for(lambda: connect(f"{d.net}.21", 80, timeout=0.5) == "b", what="b listening")
    d.cli("stop", "--timeout", "0", "a")
    d.cli("stop", "--timeout", "0", "b")


def _children(pid):
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _userns_helper(d, host_userns):
    """(setup process, namespace helper) while the helper lives, else None."""
    for setup in _children(d.proc.pid):
        for child in _children(setup):
            try:
                if os.readlink(f"/proc/{child}/ns/user") != host_userns:
                    return setup, child
            except OSError:
                pass
    return None


def test_namespace_helper_dies_with_the_setup_process(daemon):
    """The user+network namespace helper (userns.c, CLONE_VM since the setup path's cut) only
    waits to be killed by the setup process. When the setup process itself is killed while the
    helper lives (a stop while starting kills it, as does trustmed's death through its
    PDEATHSIG), the helper must not stay behind for good, holding a user and a network namespace
    and the setup process's address space (a copy of trustmed's). The window is short: the test
    tries starts until it catches a helper alive."""
    host_userns = os.readlink("/proc/self/ns/user")
    daemon.create("ns")
    caught = []
    for _ in range(40):
        start = subprocess.Popen([str(TRUSTME), "--run-dir", str(daemon.run_dir), "start", "ns"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        found = None
        while start.poll() is None and not found:
            found = _userns_helper(daemon, host_userns)
        if found:
            setup, helper = found
            os.kill(setup, signal.SIGKILL)
            caught.append(helper)
        start.communicate(timeout=60)
        if daemon.state("ns")["state"] != "stopped":
            daemon.cli("stop", "--kill", "ns")
        if caught:
            break
    if not caught:
        pytest.skip("no start's namespace helper was caught alive")
    helper = caught[0]
    try:
        wait_for(lambda: process_gone(helper), timeout=10, what=f"the namespace helper {helper} to die")
    finally:
        if not process_gone(helper):
            os.kill(helper, signal.SIGKILL)
