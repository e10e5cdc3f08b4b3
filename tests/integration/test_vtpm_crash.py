# SPDX-License-Identifier: GPL-2.0-or-later
"""A container's vTPM under crashes (docs/VTPM.md "Crashes"), with real libtpms and tpm2-tools:
kill -9 of trustme-vtpm, of tpmd and of trustmed while a guest process writes to the vTPM. No
state is lost beyond the last completed command, nothing is corrupted, the vTPM comes back (or,
after a trustmed restart, is re-adopted), and the next start accepts its anchored state."""
import os
import re
import signal
import time
from pathlib import Path

from conftest import wait_for
from test_vtpm import KDF, create, start, tpm_rootfs, vtpm_pid  # noqa: F401 (fixture)

INDEX = "0x1500019"
# Writes 1, 2, 3, ... into the NV index and, after each write that completed, the number to
# /tmp/done: the guest's record of its last completed command.
WRITER = (f"cd /tmp && printf 00000000 > v && tpm2_nvdefine {INDEX} -C o -s 8 -a "
          f"'ownerread|ownerwrite|authread|authwrite' >/dev/null && tpm2_nvwrite {INDEX} -C o -i v && "
          "(i=0; while [ ! -e stop ]; do i=$((i + 1)); printf '%08d' $i > v; "
          f"tpm2_nvwrite {INDEX} -C o -i v >/dev/null 2>&1 && echo $i > done; done; touch stopped) "
          ">/dev/null 2>&1 &")


def nv_value(d, name):
    out = d.sh(name, f"tpm2_nvread {INDEX} -C o").stdout
    return int(re.search(r"(\d{8})", out).group(1))


def stop_writer_and_check(d, name):
    """Stop the guest's writer; the NV index holds its last completed write (or the one it was
    in when its vTPM went, which the TPM may have completed before the process saw it)."""
    d.sh(name, "touch /tmp/stop")
    wait_for(lambda: d.sh(name, "test -e /tmp/stopped", check=False).returncode == 0, timeout=20,
             what="the guest's writer to stop")
    done = int(d.sh(name, "cat /tmp/done").stdout)
    value = nv_value(d, name)
    assert value in (done, done + 1), (done, value)
    return value


def writes_progress(d, name):
    first = int(d.sh(name, "cat /tmp/done 2>/dev/null || echo 0").stdout or 0)
    wait_for(lambda: int(d.sh(name, "cat /tmp/done 2>/dev/null || echo 0").stdout or 0) > first + 2, timeout=20,
             what="the guest's writes to go on")


def test_kill9_of_trustmed_while_the_guest_uses_its_vtpm(make_daemon, tpm_rootfs):
    d = make_daemon(extra_args=KDF)
    create(d, "k", tpm_rootfs)
    start(d, "k")
    d.sh("k", "cd /tmp && tpm2_createprimary -C o -c p.ctx >/dev/null && "
              "tpm2_evictcontrol -C o -c p.ctx 0x81000003 >/dev/null")
    d.sh("k", WRITER)
    writes_progress(d, "k")
    helper = vtpm_pid(d, "k")
    init = d.state("k")["pid"]
    d.kill9()
    # The container and its vTPM outlive trustmed: the guest's commands go on meanwhile.
    before = _done_count(init)
    wait_for(lambda: _done_count(init) > before + 2, timeout=20, what="the guest's writes without trustmed")
    assert Path(f"/proc/{helper}").exists()
    d.start()
    wait_for(lambda: d.state("k")["state"] == "running", timeout=20, what="the container re-adopted")
    assert "re-adopted its vTPM" in d.log(), "\n".join(l for l in d.log().splitlines()
                                                     if "vTPM" in l or "vtpm" in l or "adopt" in l)
    assert any(e.get("event") == "vtpm.adopt" and e.get("result") == "ok" for e in d.audit_events())
    writes_progress(d, "k")
    assert vtpm_pid(d, "k") == helper
    d.sh("k", "tpm2_readpublic -c 0x81000003 >/dev/null")
    value = stop_writer_and_check(d, "k")
    # Its state is anchored when it stops: the next start takes it, with every completed write.
    d.cli("stop", "k")
    wait_for(lambda: not vtpm_pid(d, "k"), what="the vTPM to stop")
    start(d, "k")
    assert nv_value(d, "k") == value
    d.sh("k", "tpm2_readpublic -c 0x81000003 >/dev/null")
    d.cli("stop", "k")


def _done_count(init):
    """The guest's /tmp/done, read through its init's root (no trustmed needed)."""
    try:
        return int(Path(f"/proc/{init}/root/tmp/done").read_text())
    except (OSError, ValueError):
        return 0


def test_kill9_of_the_vtpm_helper_and_of_tpmd(make_daemon, tpm_rootfs):
    d = make_daemon(extra_args=KDF)
    create(d, "h", tpm_rootfs)
    start(d, "h")
    d.sh("h", WRITER)
    writes_progress(d, "h")
    # trustme-vtpm (the TPM with it): trustmed starts it again.
    helper = vtpm_pid(d, "h")
    os.kill(helper, signal.SIGKILL)
    wait_for(lambda: vtpm_pid(d, "h") not in (None, helper), timeout=15,
             what="the vTPM to come back")
    writes_progress(d, "h")
    # tpmd (the physical TPM's service): the vTPM goes on; trustmed starts a new tpmd.
    tpmd = next(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_tpmd_of(p, d))
    os.kill(tpmd, signal.SIGKILL)
    writes_progress(d, "h")
    wait_for(lambda: d.cli("device", "info", check=False).returncode == 0, timeout=30, what="a new tpmd")
    value = stop_writer_and_check(d, "h")
    d.cli("stop", "h")
    wait_for(lambda: not vtpm_pid(d, "h"), what="the vTPM to stop")
    start(d, "h")
    assert nv_value(d, "h") == value
    d.cli("stop", "h")


def _is_tpmd_of(entry, d):
    try:
        cmd = (entry / "cmdline").read_bytes()
        ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return False
    return cmd.startswith(b"trustme-tpmd") and ppid == d.proc.pid
