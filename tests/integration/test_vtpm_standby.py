# SPDX-License-Identifier: GPL-2.0-or-later
"""The standby trustme-vtpm (docs/VTPM.md "The standby"): once a vTPM container's run has ended
and its state is anchored, trustmed launches the next run's trustme-vtpm, which waits for its key;
the next start takes it instead of creating the process. It holds nothing (no key, no state), is
dropped by whatever changes the vTPM between runs, is noticed when it dies, ends with trustmed, and
is never re-adopted as a running vTPM."""
import array
import fcntl
import json
import os
import shutil
import signal
import termios
from pathlib import Path

from conftest import BUILD, process_gone, wait_for
from test_vtpm import (KDF, SCHED_IDLE, create, start, state_file, tpm_rootfs, vtpm_pid,  # noqa: F401
                       vtpm_processes)


def info(d, name):
    return json.loads(d.cli("vtpm", "info", "--json", name).stdout)


def waiting_standby(d, name, other_than=None):
    """The standby's pid once trustmed says it waits for its key (exec'd and linked)."""
    def ready():
        s = info(d, name).get("standby")
        return s["pid"] if s and s["waiting"] and s["pid"] != other_than else None
    return wait_for(ready, timeout=60, interval=0.1, what="a waiting standby trustme-vtpm")


def pipe_bytes(pid, fd):
    """What is unread in pid's pipe fd (FIONREAD on the same pipe, opened through /proc)."""
    own = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK)
    try:
        buf = array.array("i", [0])
        fcntl.ioctl(own, termios.FIONREAD, buf)
        return buf[0]
    finally:
        os.close(own)


def policy(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[38])


def status(pid):
    return {k: v.strip() for k, v in (line.split(":", 1) for line in
                                      Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)}


def fds(pid):
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


def stop(d, name):
    d.cli("stop", name)
    wait_for(lambda: not vtpm_pid(d, name), timeout=30, what="the vTPM to stop")


def test_a_stop_leaves_a_standby_that_holds_nothing_and_the_next_start_takes_it(make_daemon, tpm_rootfs):
    d = make_daemon(extra_args=KDF)
    create(d, "s", tpm_rootfs)
    start(d, "s")
    serving = vtpm_pid(d, "s")
    uid = status(serving)["Uid"]
    d.sh("s", "tpm2_getrandom 8 >/dev/null")
    stop(d, "s")
    sb = waiting_standby(d, "s")
    assert not info(d, "s")["running"] and "pid" not in info(d, "s")
    # The vTPM's uid, no capabilities, no_new_privs, not dumpable (no ptrace, no /proc/PID/fd of
    # its uid), at SCHED_IDLE; no helper.pid: nothing for a next trustmed to adopt.
    st = status(sb)
    assert st["Uid"] == uid and st["CapEff"] == "0000000000000000" and st["CapBnd"] == "0000000000000000"
    assert st["NoNewPrivs"] == "1"
    assert policy(sb) == SCHED_IDLE
    uuid = d.state("s")["uuid"]
    assert not (d.run_dir / "vtpm" / uuid / "helper.pid").exists()
    # Nothing secret: its key pipe (fd 3) is empty and open, its state memfd (fd 7) empty, and no
    # fd names the state file.
    f = fds(sb)
    assert f[3].startswith("pipe:") and f[7].startswith("/memfd:vtpm-state"), f
    assert os.stat(f"/proc/{sb}/fd/7").st_size == 0
    assert not any("tpm2.state" in t for t in f.values()), f
    assert pipe_bytes(sb, 3) == 0, "its key pipe holds something"
    # The next start takes it: the same process serves, at the ordinary scheduling.
    start(d, "s")
    assert vtpm_pid(d, "s") == sb
    assert info(d, "s")["pid"] == sb
    assert policy(sb) == 0
    assert d.sh("s", "tpm2_getrandom 8 >/dev/null; echo ok").stdout.strip() == "ok"
    assert (d.run_dir / "vtpm" / uuid / "helper.pid").read_text().split()[0] == str(sb)
    stop(d, "s")
    assert waiting_standby(d, "s") != sb


def test_a_killed_standby_is_noticed_and_the_start_launches_anew(make_daemon, tpm_rootfs):
    d = make_daemon(extra_args=KDF)
    create(d, "k", tpm_rootfs)
    start(d, "k")
    stop(d, "k")
    sb = waiting_standby(d, "k")
    os.kill(sb, signal.SIGKILL)
    wait_for(lambda: "standby" not in info(d, "k"), timeout=30, what="trustmed to notice the standby's end")
    assert "its standby trustme-vtpm ended" in d.log()
    start(d, "k")
    served = vtpm_pid(d, "k")
    assert served and served != sb
    assert d.sh("k", "tpm2_getrandom 8 >/dev/null; echo ok").stdout.strip() == "ok"
    stop(d, "k")
    waiting_standby(d, "k")


def test_the_standby_does_not_bypass_the_anchor(make_daemon, tpm_rootfs):
    """The state is read and checked at the start, as without a standby: an older copy put back
    while the standby waits is refused; the right one starts."""
    d = make_daemon(extra_args=KDF)
    create(d, "a", tpm_rootfs)
    start(d, "a")
    stop(d, "a")
    sf = state_file(d, "a")
    old = sf.read_bytes()
    start(d, "a")
    d.sh("a", "cd /tmp && tpm2_createprimary -C o -c p.ctx >/dev/null && "
              "tpm2_evictcontrol -C o -c p.ctx 0x81000005 >/dev/null")
    stop(d, "a")
    newest = sf.read_bytes()
    sb = waiting_standby(d, "a")
    sf.write_bytes(old)
    r = start(d, "a", check=False)
    assert r.returncode != 0 and "not the one anchored" in d.state("a")["last_error"]
    # The start took the standby and gave it up: it ended without a key; a new one waits.
    wait_for(lambda: process_gone(sb), timeout=30, what="the refused start's trustme-vtpm to end")
    assert sf.read_bytes() == old, "the refused vTPM wrote its state"
    sb2 = waiting_standby(d, "a", other_than=sb)
    sf.write_bytes(newest)
    start(d, "a")
    assert vtpm_pid(d, "a") == sb2
    assert d.sh("a", "tpm2_readpublic -c 0x81000005 >/dev/null; echo ok").stdout.strip() == "ok"
    stop(d, "a")


def test_reset_wipe_config_change_and_remove_drop_the_standby(make_daemon, tpm_rootfs):
    d = make_daemon(extra_args=KDF)
    create(d, "r", tpm_rootfs)
    start(d, "r")
    eks = [e["name"] for e in info(d, "r")["eks"]]
    stop(d, "r")
    sb = waiting_standby(d, "r")
    # A reset: the standby held the state directory that goes; a new one for the new vTPM.
    d.cli("vtpm", "reset", "r")
    wait_for(lambda: process_gone(sb), timeout=30, what="the standby to go at the reset")
    sb2 = waiting_standby(d, "r", other_than=sb)
    start(d, "r")
    assert vtpm_pid(d, "r") == sb2
    assert [e["name"] for e in info(d, "r")["eks"]] != eks, "no new vTPM after the reset"
    stop(d, "r")
    # A wipe right after the stop is not refused for the standby ("still saving its state").
    sb3 = waiting_standby(d, "r", other_than=sb2)
    d.cli("wipe", "r")
    wait_for(lambda: process_gone(sb3), timeout=30, what="the standby to go at the wipe")
    sb4 = waiting_standby(d, "r", other_than=sb3)
    # A config without a vTPM: the standby goes, and none comes back.
    cfg = json.loads((d.configs / "r.json").read_text())
    cfg["vtpm"] = False
    path = d.configs / "r-novtpm.json"
    path.write_text(json.dumps(cfg))
    d.cli("update", "r", path)
    wait_for(lambda: process_gone(sb4), timeout=30, what="the standby to go at the update")
    assert "standby" not in info(d, "r")
    assert not vtpm_processes(d, "r")
    # Back on, and removed: the standby goes with the container.
    cfg["vtpm"] = True
    path.write_text(json.dumps(cfg))
    d.cli("update", "r", path)
    sb5 = waiting_standby(d, "r", other_than=sb4)
    d.cli("remove", "r")
    wait_for(lambda: process_gone(sb5), timeout=30, what="the standby to go with the container")


def test_kill9_of_trustmed_ends_the_standby_and_none_is_adopted(make_daemon, tpm_rootfs):
    d = make_daemon(extra_args=KDF)
    create(d, "t", tpm_rootfs)
    start(d, "t")
    stop(d, "t")
    sb = waiting_standby(d, "t")
    uuid = d.state("t")["uuid"]
    d.kill9()
    # Its key pipe's EOF ends it: no standby left behind a dead trustmed.
    wait_for(lambda: process_gone(sb), timeout=30, what="the standby to end with trustmed")
    assert not (d.run_dir / "vtpm" / uuid / "helper.pid").exists()
    log_len = len(d.log())
    d.start()
    # The next trustmed adopts nothing, and launches its own standby after its start.
    sb2 = waiting_standby(d, "t", other_than=sb)
    assert "re-adopted its vTPM" not in d.log()[log_len:]
    assert not any(e.get("event") == "vtpm.adopt" for e in d.audit_events())
    start(d, "t")
    assert vtpm_pid(d, "t") == sb2
    stop(d, "t")
    # SIGTERM: trustmed does not wait for its standbys (nothing to save): killed, and it exits.
    sb3 = waiting_standby(d, "t", other_than=sb2)
    assert d.stop(timeout=20) == 0
    wait_for(lambda: process_gone(sb3), timeout=30, what="the standby killed at trustmed's exit to end")


def test_a_standby_from_before_an_update_of_its_binary_is_not_used(make_daemon, tpm_rootfs, tmp_path):
    """trustme-vtpm (or libtpms, OpenSSL) replaced while a standby waits: the start must run the
    new code, so it launches anew rather than take the standby that maps the old file."""
    d = make_daemon(extra_args=KDF)
    create(d, "u", tpm_rootfs)
    start(d, "u")
    stop(d, "u")
    sb = waiting_standby(d, "u")
    binary = BUILD / "src/vtpm/trustme-vtpm"
    copy = binary.with_name("trustme-vtpm.standby-test")
    shutil.copy2(binary, copy)
    os.replace(copy, binary)  # the same bytes under a new inode: what a package update does
    start(d, "u")
    served = vtpm_pid(d, "u")
    assert served and served != sb
    assert "was replaced since its launch" in d.log()
    wait_for(lambda: process_gone(sb), timeout=30, what="the stale standby to go")
    stop(d, "u")


def test_a_start_right_after_the_stop_waits_for_the_anchor(make_daemon, tpm_rootfs):
    """The immediate restart: the last run's vTPM still saves when the start comes, so the start
    waits for its anchor (and launches its own trustme-vtpm then), and serves the last state."""
    d = make_daemon(extra_args=KDF)
    create(d, "i", tpm_rootfs)
    start(d, "i")
    d.sh("i", "cd /tmp && tpm2_createprimary -C o -c p.ctx >/dev/null && "
              "tpm2_evictcontrol -C o -c p.ctx 0x81000006 >/dev/null")
    d.cli("stop", "i")
    start(d, "i")  # at once: no wait for the vTPM's end
    assert d.sh("i", "tpm2_readpublic -c 0x81000006 >/dev/null; echo ok").stdout.strip() == "ok"
    assert json.loads(d.cli("vtpm", "info", "--json", "i").stdout)["running"]
    stop(d, "i")
    assert info(d, "i")["anchor_matches"]
    waiting_standby(d, "i")


def test_a_vtpm_that_rewrote_its_command_line_is_still_readopted(make_daemon, tpm_rootfs):
    """Review rev7. Code running in trustme-vtpm (a libtpms exploit through the guest's commands)
    can overwrite its own argv without a system call. The next trustmed recognised the vTPM it
    re-adopts by its command line, so after a kill -9 of trustmed such a vTPM was taken for ended:
    left running unwatched as the vTPM's uid beside the next start's trustme-vtpm and its
    standby (which it may then open between their exec and main(): docs/SECURITY.md). It is named
    by pid and start time now, which it cannot change."""
    d = make_daemon(extra_args=KDF)
    create(d, "r", tpm_rootfs)
    start(d, "r")
    pid = vtpm_pid(d, "r")
    d.kill9()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    arg_start, arg_end = int(fields[45]), int(fields[46])  # fields 48 and 49 of proc(5)
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(arg_start)
        mem.write(b"x" * (arg_end - arg_start - 1))
    assert b"trustme-vtpm" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    log_len = len(d.log())
    d.start()
    assert "re-adopted its vTPM" in d.log()[log_len:], d.log()[log_len:]
    assert info(d, "r").get("pid") == pid
    d.cli("stop", "r")
    wait_for(lambda: process_gone(pid), timeout=30, what="the re-adopted vTPM to stop with its container")
