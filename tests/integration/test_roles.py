# SPDX-License-Identifier: GPL-2.0-or-later
"""The core container c0 and the control roles (docs/ROLES.md).

c0 starts first, stops last, always autostarts and has the admin socket inside; a container
with "control": "restricted" has a socket inside that allows its own state and the GuestOS list
and install only. The CLI inside is trustme-static (no shared libraries in the busybox rootfs).
"""
import json
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD, PROBE, REPO, TERM_INIT, CliError, mounts_below, process_gone, wait_for
from tools import tool

STATIC_CLI = BUILD / "src/cli/trustme-static"
IN_CLI = "/usr/local/bin/trustme-static"
NOT_ALLOWED = "is not allowed on this container's control socket (restricted role"


@pytest.fixture(scope="module")
def roles_rootfs(test_root):
    """The busybox guest with tm-probe and the static CLI."""
    if not STATIC_CLI.exists():
        pytest.skip(f"{STATIC_CLI} is missing")
    path = test_root / "rootfs-roles"
    subprocess.run([str(REPO / "scripts/mkrootfs.sh"), str(path), str(PROBE), str(STATIC_CLI)],
                   check=True)
    return path


def device_json(d, **extra):
    d.data_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"policy": {"allow_unsigned": True}, "core_container": "c0"}
    cfg.update(extra)
    (d.data_dir / "device.json").write_text(json.dumps(cfg) + "\n")


def create(d, rootfs, name, **config):
    return d.create(name, rootfs={"path": str(rootfs)}, **{**TERM_INIT, **config})


def inside(d, name, *args, check=True):
    """The static CLI inside a container, through an exec session (an admin request itself)."""
    return d.run(name, IN_CLI, *args, check=check)


def nsenter(pid, *args):
    """A command in a container's mount and pid namespaces, without trustmed: the way in when
    the host has no admin socket."""
    return subprocess.run([tool("nsenter"), "-t", str(pid), "-m", "-p", IN_CLI, *args],
                          capture_output=True, text=True, timeout=60)


def init_pid(d, uuid):
    return json.loads((d.run_dir / "containers" / uuid / "runtime.json").read_text())["pid"]


def control_sockets_below(*dirs):
    """Control sockets (tpmd's and swtpm's sockets are not)."""
    found = []
    for top in dirs:
        for root, _, files in os.walk(top):
            for f in files:
                p = Path(root) / f
                try:
                    if "control" in f and stat.S_ISSOCK(p.lstat().st_mode):
                        found.append(p)
                except OSError:
                    pass
    return found


def events(d, name):
    return [e for e in d.audit_events() if e["event"] == name]


@pytest.fixture
def core_daemon(make_daemon, roles_rootfs):
    """A daemon whose device.json names c0, with c0 and "other" created and the daemon
    restarted, so that the start-up started c0."""
    d = make_daemon(start=False)
    device_json(d)
    d.start()
    create(d, roles_rootfs, "c0")  # autostart false: c0 starts anyway
    create(d, roles_rootfs, "other")
    d.restart()
    wait_for(lambda: d.state("c0")["state"] == "running", what="c0 to start")
    return d


def test_c0_always_autostarts_and_manages_from_inside(core_daemon):
    d = core_daemon
    assert d.state("other")["state"] == "stopped"
    listed = json.loads(inside(d, "c0", "list", "--json").stdout)
    assert {c["name"] for c in listed} == {"c0", "other"}
    inside(d, "c0", "start", "other")
    assert d.state("other")["state"] == "running"
    inside(d, "c0", "stop", "other")
    assert d.state("other")["state"] == "stopped"
    # the socket exists in c0 only: on the host there is the admin socket and nothing else
    assert control_sockets_below(d.run_dir, d.data_dir) == [d.socket]
    st = d.sh("c0", "stat -c '%a %u' /run/trustme/control.sock").stdout.split()
    assert st == ["660", "0"]
    starts = [e for e in events(d, "container.start") if e["subject"].startswith("c0 ")]
    assert starts[-1]["actor"] == "autostart"
    audit = [e for e in events(d, "container.start") if e["subject"].startswith("other ")]
    assert " in c0" in audit[-1]["actor"]


def test_c0_starts_first_and_stops_last(make_daemon, roles_rootfs):
    d = make_daemon(start=False)
    device_json(d)
    d.start()
    for name in ("a", "b"):
        create(d, roles_rootfs, name, autostart=True)
    create(d, roles_rootfs, "c0")
    d.restart()
    wait_for(lambda: all(d.state(n)["state"] == "running" for n in ("a", "b", "c0")),
             what="all three to run")
    d.restart()  # SIGTERM: c0 last; then the start-up: c0 first
    wait_for(lambda: all(d.state(n)["state"] == "running" for n in ("a", "b", "c0")),
             what="all three to run again")
    ev = d.audit_events()
    last_stop = max(i for i, e in enumerate(ev) if e["event"] == "daemon.stop")
    stops = [e["subject"].split()[0] for e in ev[:last_stop] if e["event"] == "container.stop"]
    assert stops[-3:][-1] == "c0" and sorted(stops[-3:-1]) == ["a", "b"], stops
    starts = [e["subject"].split()[0] for e in ev[last_stop:] if e["event"] == "container.start"]
    assert starts[0] == "c0" and sorted(starts[1:]) == ["a", "b"], starts


def test_restricted_socket_allowlist(make_daemon, roles_rootfs):
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    create(d, roles_rootfs, "x")
    d.cli("start", "r")
    d.cli("start", "x")
    uuid = d.state("r")["uuid"]
    # allowed: its own state (by name and by uuid), the GuestOS list
    assert json.loads(inside(d, "r", "state", "--json", "r").stdout)["name"] == "r"
    assert json.loads(inside(d, "r", "state", "--json", uuid).stdout)["name"] == "r"
    inside(d, "r", "guestos", "list")
    # refused: everything else, whatever exists or not
    refused = [("state", "x"), ("state", "nosuch"), ("list",), ("start", "x"), ("stop", "x"),
               ("stop", "r"), ("remove", "x"), ("run", "x", "--", "/bin/true"),
               ("create", "/etc/hostname"), ("audit",), ("freeze", "x")]
    for args in refused:
        r = inside(d, "r", *args, check=False)
        assert r.returncode != 0, args
        assert NOT_ALLOWED in r.stderr or "state of another container is not allowed" in r.stderr, \
            (args, r.stderr)
    denied = events(d, "control.denied")
    # one at least per refusal (run also sends its stdin's end, refused too)
    assert len(denied) >= len(refused)
    assert all("role=restricted" in e["detail"] and e["subject"].startswith("r ") and
               " in r" in e["actor"] for e in denied)
    details = " | ".join(e["detail"] for e in denied)
    # (the CLI's start asks for the state first: that is what is refused there)
    for what in ("request=list", "request=stop target=x", "request=remove target=x",
                 "request=run target=x", "request=create", "request=state target=nosuch"):
        assert what in details, details
    assert d.state("x")["state"] == "running"
    # an ordinary container has no socket inside
    assert d.sh("x", "test -e /run/trustme/control.sock", check=False).returncode != 0


def test_restricted_socket_refuses_processes_outside_the_container(make_daemon, roles_rootfs):
    """The path is reachable from the host through /proc/<pid>/root; the role is not."""
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    d.cli("start", "r")
    path = f"/proc/{d.state('r')['pid']}/root/run/trustme/control.sock"
    r = d.cli("--socket", path, "state", "r", check=False)
    assert r.returncode != 0
    denied = events(d, "control.denied")
    assert denied and "is not a process of r" in denied[-1]["detail"]


def test_c0_restarted_when_it_dies_not_when_stopped(core_daemon):
    d = core_daemon
    pid = d.state("c0")["pid"]
    os.kill(pid, signal.SIGKILL)
    # One state per poll: two could see "running" (before the kill is noticed) and then the
    # pid of no init at all.
    wait_for(lambda: (lambda st: st["state"] == "running" and st["pid"] not in (pid, None, 0))(
        d.state("c0")), what="c0 to be restarted")
    assert events(d, "core.restart")
    inside(d, "c0", "list")  # the new start has a new socket
    d.cli("stop", "c0")      # asked for: it stays stopped
    time.sleep(2.5)
    assert d.state("c0")["state"] == "stopped"


def test_c0_socket_renewed_after_trustmed_restart(core_daemon):
    """The listening socket dies with trustmed; the re-adopting one makes a new one in c0."""
    d = core_daemon
    pid = d.state("c0")["pid"]
    d.kill9()
    d.start()
    st = d.state("c0")
    assert st["state"] == "running" and st["pid"] == pid and st["adopted"]
    assert {c["name"] for c in json.loads(inside(d, "c0", "list", "--json").stdout)} == {"c0", "other"}


def test_no_admin_socket_in_root(core_daemon):
    d = core_daemon
    uuid = d.state("c0")["uuid"]
    d.stop()
    device_json(d, admin_socket_in_root=False)
    d.start()
    assert not d.socket.exists()
    assert control_sockets_below(d.run_dir, d.data_dir) == []
    pid = wait_for(lambda: (d.run_dir / "containers" / uuid / "runtime.json").exists() and
                   init_pid(d, uuid), what="c0 to run")
    r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(nsenter(pid, "list", "--json")),
                 what="the admin socket in c0")
    assert {c["name"] for c in json.loads(r.stdout)} == {"c0", "other"}
    r = nsenter(pid, "start", "other")
    assert r.returncode == 0, r.stderr
    assert nsenter(pid, "state", "other").stdout.count("running")
    # c0 is the only way in: it cannot be stopped or frozen
    for cmd in ("stop", "freeze"):
        r = nsenter(pid, cmd, "c0")
        assert r.returncode != 0 and "core container" in r.stderr, r.stderr
    # killed, it comes back, with a socket again
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: process_gone(pid), what="c0's init to die")
    new = wait_for(lambda: (d.run_dir / "containers" / uuid / "runtime.json").exists() and
                   init_pid(d, uuid) != pid and init_pid(d, uuid), timeout=15, what="c0 to restart")
    wait_for(lambda: nsenter(new, "list").returncode == 0, what="the admin socket in the new c0")
    # shutdown stops both (c0 last); nothing is left: no sockets, no mounts
    assert d.stop() == 0
    assert control_sockets_below(d.run_dir, d.data_dir) == []
    assert mounts_below(d.base) == []
    assert process_gone(new)


def test_admin_socket_in_root_false_needs_an_unlocked_c0(make_daemon, roles_rootfs):
    d = make_daemon(start=False)
    device_json(d, admin_socket_in_root=False)
    with pytest.raises(RuntimeError, match="does not exist"):
        d.start()
