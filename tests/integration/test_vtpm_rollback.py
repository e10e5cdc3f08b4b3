# SPDX-License-Identifier: GPL-2.0-or-later
"""Rollback of a vTPM's state by root with file operations at the moments the anchor used to take
the file as found (docs/VTPM.md "The state"): trustme-vtpm killed after the file was replaced, the
file replaced while the vTPM is stopped after an unclean end (an older copy, another container's,
a truncated one), and trustme-vtpm dying between writing the state and telling trustmed."""
import os
import signal
import time

from conftest import wait_for
from test_vtpm import KDF, create, start, state_file, tpm_rootfs, vtpm_pid  # noqa: F401 (fixture)

INDEX = "0x1500018"


def nv_write(d, name, value):
    d.sh(name, f"cd /tmp && printf {value} > v && tpm2_nvwrite {INDEX} -C o -i v")


def nv_read(d, name):
    return d.run(name, "tpm2_nvread", INDEX, "-C", "o").stdout


def stop(d, name):
    d.cli("stop", name)
    wait_for(lambda: not vtpm_pid(d, name), what=f"{name}'s vTPM to stop")


def refused(d, name, why):
    r = start(d, name, check=False)
    assert r.returncode != 0, f"{name} started with a state that is not its own"
    assert why in d.state(name)["last_error"], d.state(name)["last_error"]


def test_replaced_state_and_killed_vtpm_is_refused_then_stopped_copies(make_daemon, tpm_rootfs):
    """Root copies the state, the guest writes on, root puts the copy back and kills trustme-vtpm
    (its TPM with it): the anchor takes the state the TPM wrote last, the restart refuses the
    copy, and the copy never serves. Then, stopped after that unclean end: an older copy, another
    container's state or a truncated file is refused; the state it wrote last starts."""
    d = make_daemon(extra_args=KDF)
    create(d, "r", tpm_rootfs)
    create(d, "o", tpm_rootfs)
    start(d, "o")
    stop(d, "o")
    start(d, "r")
    d.sh("r", f"tpm2_nvdefine {INDEX} -C o -s 4 -a 'ownerread|ownerwrite|authread|authwrite' >/dev/null")
    nv_write(d, "r", "old1")
    sf = state_file(d, "r")
    old = sf.read_bytes()
    nv_write(d, "r", "new2")
    newest = sf.read_bytes()
    assert newest != old
    sf.write_bytes(old)
    helper = vtpm_pid(d, "r")
    os.kill(helper, signal.SIGKILL)
    wait_for(lambda: any(e.get("event") == "vtpm.restart" and e.get("result") == "fail" for e in d.audit_events()),
             timeout=15, what="the restart to be refused")
    assert any(e.get("event") == "vtpm.rollback" for e in d.audit_events())
    time.sleep(0.5)
    assert vtpm_pid(d, "r") is None, "a vTPM was started on the restored copy"
    assert "old1" not in d.run("r", "tpm2_nvread", INDEX, "-C", "o", check=False).stdout
    stop(d, "r")
    # Stopped after the unclean end: the anchor is the state the TPM wrote, not the file it left.
    refused(d, "r", "not the one anchored")
    sf.write_bytes(state_file(d, "o").read_bytes())
    refused(d, "r", "not the one anchored")
    sf.write_bytes(newest[:len(newest) // 2])
    refused(d, "r", "not the one anchored")
    sf.write_bytes(b"")
    refused(d, "r", "not the one anchored")
    sf.write_bytes(newest)
    start(d, "r")
    assert "new2" in nv_read(d, "r")
    # An unclean end without an attack: kill -9 of trustme-vtpm, it comes back, the guest writes
    # on; a copy from before the kill restored while stopped is refused.
    before_kill = sf.read_bytes()
    helper = vtpm_pid(d, "r")
    os.kill(helper, signal.SIGKILL)
    wait_for(lambda: vtpm_pid(d, "r") not in (None, helper), timeout=15,
             what="the vTPM to come back")
    wait_for(lambda: d.sh("r", "tpm2_getrandom 4 >/dev/null", check=False).returncode == 0, timeout=10,
             what="the vTPM to answer")
    nv_write(d, "r", "new3")
    # truncated under the running vTPM, then the vTPM stopped (SIGTERM): trustme-vtpm writes back
    # what it committed; the restarted vTPM serves the last write
    last = sf.read_bytes()
    with open(sf, "r+b") as f:
        f.truncate(100)
    helper = vtpm_pid(d, "r")
    os.kill(helper, signal.SIGTERM)
    wait_for(lambda: vtpm_pid(d, "r") not in (None, helper), timeout=15, what="the vTPM to come back")
    wait_for(lambda: d.sh("r", "tpm2_getrandom 4 >/dev/null", check=False).returncode == 0, timeout=10,
             what="the vTPM to answer")
    assert "new3" in nv_read(d, "r")
    assert sf.read_bytes() != last[:100]
    stop(d, "r")
    newest = sf.read_bytes()
    sf.write_bytes(before_kill)
    refused(d, "r", "not the one anchored")
    # a FIFO in its place (the state directory is the vTPM uid's): refused, trustmed not blocked
    sf.unlink()
    os.mkfifo(sf, 0o600)
    r = start(d, "r", check=False)
    assert r.returncode != 0 and "cannot read the vTPM state" in d.state("r")["last_error"]
    assert d.cli("vtpm", "info", "r", check=False).returncode == 0
    sf.unlink()
    sf.write_bytes(newest)
    start(d, "r")
    assert "new3" in nv_read(d, "r")
    stop(d, "r")


def test_crash_between_writing_the_state_and_reporting_it(make_daemon, tpm_rootfs):
    """trustme-vtpm dies after it wrote a new state to the temporary file and announced it, before
    or after the rename: the file is then the old state or the new one, the command's response
    never left, and trustmed accepts either (no state lost beyond the last completed command, no
    refused start); the next stop anchors what the restarted vTPM wrote."""
    d = make_daemon(extra_args=KDF)
    create(d, "c", tpm_rootfs)
    start(d, "c")
    d.sh("c", f"tpm2_nvdefine {INDEX} -C o -s 4 -a 'ownerread|ownerwrite|authread|authwrite' >/dev/null")
    nv_write(d, "c", "aaaa")
    crash_at = state_file(d, "c").parent / "test-crash-at"
    for point, value in (("vtpm-state-before-rename", "bbbb"), ("vtpm-state-after-rename", "cccc")):
        helper = vtpm_pid(d, "c")
        crash_at.write_text(point + "\n")
        r = d.sh("c", f"cd /tmp && printf {value} > v && tpm2_nvwrite {INDEX} -C o -i v", check=False)
        assert r.returncode != 0, f"{point}: the write completed although the vTPM died in it"
        assert not crash_at.exists(), f"{point}: the crash point was not reached"
        wait_for(lambda: vtpm_pid(d, "c") not in (None, helper), timeout=15,
                 what=f"the vTPM to come back after {point}")
        wait_for(lambda: d.sh("c", "tpm2_getrandom 4 >/dev/null", check=False).returncode == 0, timeout=10,
                 what="the vTPM to answer")
        got = nv_read(d, "c")
        assert "aaaa" in got or value in got, got
        nv_write(d, "c", "aaaa")
    stop(d, "c")
    start(d, "c")
    assert "aaaa" in nv_read(d, "c")
    assert not any(e.get("event") == "vtpm.rollback" for e in d.audit_events())
    stop(d, "c")
