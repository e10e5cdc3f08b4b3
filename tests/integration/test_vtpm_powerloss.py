# SPDX-License-Identifier: GPL-2.0-or-later
"""A container's vTPM when trustmed and trustme-vtpm both die while it runs (docs/VTPM.md "The
anchor"): what a power loss does to them. Each command that changed the TPM's state is anchored
in the physical TPM before its response leaves, so the next start takes the state of the last
completed command: no refused start, no key lost. A guest that spends its TPM write budget gets
its later commits anchored only at the vTPM's end, and is told so in the audit log."""
import os
import signal
from pathlib import Path

from conftest import wait_for
from test_vtpm import KDF, create, start, state_file, tpm_rootfs, vtpm_pid  # noqa: F401 (fixture)

INDEX = "0x150001a"


def nv_write(d, name, value):
    d.sh(name, f"cd /tmp && printf {value} > v && tpm2_nvwrite {INDEX} -C o -i v")


def nv_read(d, name):
    return d.run(name, "tpm2_nvread", INDEX, "-C", "o").stdout


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def kill_both(d, name):
    """trustmed first, then the vTPM it left running: nobody is left to anchor its last state."""
    helper = vtpm_pid(d, name)
    assert helper
    d.kill9()
    os.kill(helper, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{helper}").exists() or b"trustme-vtpm" not in _cmdline(helper),
             what="the vTPM to end")
    d.start()
    d.cli("stop", name, check=False)
    wait_for(lambda: d.state(name)["state"] == "stopped", timeout=30, what=f"{name} to stop")


def test_both_killed_keep_the_last_completed_command(make_daemon, tpm_rootfs):
    d = make_daemon(extra_args=KDF)
    create(d, "p", tpm_rootfs)
    start(d, "p")
    d.sh("p", f"tpm2_nvdefine {INDEX} -C o -s 4 -a 'ownerread|ownerwrite|authread|authwrite' >/dev/null")
    d.sh("p", "cd /tmp && tpm2_createprimary -C o -c p.ctx >/dev/null && "
              "tpm2_evictcontrol -C o -c p.ctx 0x81000005 >/dev/null")
    nv_write(d, "p", "one1")
    nv_write(d, "p", "two2")
    kill_both(d, "p")
    start(d, "p")
    assert "two2" in nv_read(d, "p")
    d.sh("p", "tpm2_readpublic -c 0x81000005 >/dev/null")
    assert not any(e.get("event") == "vtpm.rollback" for e in d.audit_events())
    # and again, across a second run: the start's own stores (its Startup) are no commit of
    # their own, so a run whose guest changed nothing leaves the anchored file as it was
    sf = state_file(d, "p")
    before = sf.read_bytes()
    d.sh("p", "tpm2_getrandom 8 >/dev/null")
    kill_both(d, "p")
    assert sf.read_bytes() == before
    start(d, "p")
    assert "two2" in nv_read(d, "p")
    d.cli("stop", "p")


def test_a_crash_after_the_anchor_before_the_rename_takes_the_synced_file(make_daemon, tpm_rootfs):
    """trustme-vtpm dies after trustmed anchored its new state and before it renamed the synced
    temporary file into place (what a power loss there leaves): the vTPM comes back on the anchored
    state, the temporary file, and the next start accepts it."""
    d = make_daemon(extra_args=KDF)
    create(d, "t", tpm_rootfs)
    start(d, "t")
    d.sh("t", f"tpm2_nvdefine {INDEX} -C o -s 4 -a 'ownerread|ownerwrite|authread|authwrite' >/dev/null")
    nv_write(d, "t", "aaaa")
    sf = state_file(d, "t")
    crash_at = sf.parent / "test-crash-at"
    helper = vtpm_pid(d, "t")
    crash_at.write_text("vtpm-state-before-rename\n")
    r = d.sh("t", f"cd /tmp && printf bbbb > v && tpm2_nvwrite {INDEX} -C o -i v", check=False)
    assert r.returncode != 0, "the write completed although the vTPM died in it"
    assert not crash_at.exists()
    wait_for(lambda: vtpm_pid(d, "t") not in (None, helper), timeout=15, what="the vTPM to come back")
    assert "taken from tpm2.state.tmp" in d.log()
    wait_for(lambda: d.sh("t", "tpm2_getrandom 4 >/dev/null", check=False).returncode == 0, timeout=10,
             what="the vTPM to answer")
    assert "bbbb" in nv_read(d, "t")  # the anchored state: the write the TPM made
    kill_both(d, "t")
    start(d, "t")
    assert "bbbb" in nv_read(d, "t")
    assert not any(e.get("event") == "vtpm.rollback" for e in d.audit_events())
    d.cli("stop", "t")


def test_a_spent_budget_anchors_at_the_end_only(make_daemon, tpm_rootfs):
    """Past its TPM write budget (120 anchored commits, shared with its keystore) the guest's
    commands still work, their state is anchored when the vTPM ends, and the audit log says so;
    a death of both daemons in that phase fails closed (docs/VTPM.md "Known limits")."""
    d = make_daemon(extra_args=KDF)
    create(d, "b", tpm_rootfs)
    start(d, "b")
    d.sh("b", f"tpm2_nvdefine {INDEX} -C o -s 4 -a 'ownerread|ownerwrite|authread|authwrite' >/dev/null")
    d.sh("b", f"cd /tmp && i=0; while [ $i -lt 125 ]; do printf '%04d' $i > v; "
              f"tpm2_nvwrite {INDEX} -C o -i v >/dev/null || exit 1; i=$((i + 1)); done", timeout=300)
    assert "0124" in nv_read(d, "b")
    assert any(e.get("event") == "vtpm.anchor" and "budget spent" in e.get("detail", "")
               for e in d.audit_events()), [e for e in d.audit_events() if e.get("event") == "vtpm.anchor"]
    # a clean stop anchors the last state, budget or not
    d.cli("stop", "b")
    wait_for(lambda: vtpm_pid(d, "b") is None, what="the vTPM to stop")
    start(d, "b")
    assert "0124" in nv_read(d, "b")
    nv_write(d, "b", "last")
    kill_both(d, "b")
    r = start(d, "b", check=False)
    assert r.returncode != 0 and "not the one anchored" in d.state("b")["last_error"]


def test_trustmed_exits_while_a_stopping_vtpm_makes_its_last_commit(make_daemon, tpm_rootfs):
    """SIGTERM to trustmed right after a container's stop, while its vTPM still anchors its final
    commit (as the README demo's clean-up does): trustmed waits for that vTPM and then exits,
    although the vTPM's end then needs no anchor write of its own."""
    d = make_daemon(extra_args=KDF)
    create(d, "x", tpm_rootfs)
    start(d, "x")
    d.sh("x", "tpm2_getrandom 4 >/dev/null")
    d.cli("stop", "--kill", "x")
    d.proc.send_signal(signal.SIGTERM)
    # Before the fix: never (the CI's package test hung in the demo's clean-up); a timeout fails.
    d.proc.wait(20)
