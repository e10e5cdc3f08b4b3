# SPDX-License-Identifier: GPL-2.0-or-later
"""Fifth outside review: the vTPM's commits anchored before their response (docs/VTPM.md "The
state"): root on the host plants `tpm2.state.tmp` and kills the vTPM; the container's root stores
on every command to spend its TPM write budget, while another container uses its own vTPM."""
import json
import os
import signal
import threading
import time

from conftest import wait_for
from test_vtpm import KDF, create, start, state_file, tpm_rootfs, vtpm_pid  # noqa: F401 (fixture)
from test_vtpm_powerloss import INDEX, kill_both, nv_read, nv_write


def define(d, name):
    d.sh(name, f"tpm2_nvdefine {INDEX} -C o -s 4 -a 'ownerread|ownerwrite|authread|authwrite' >/dev/null")


def plant(src_bytes, dst, like):
    dst.write_bytes(src_bytes)
    st = like.stat()
    os.chown(dst, st.st_uid, st.st_gid)
    os.chmod(dst, 0o600)


def test_a_planted_tmp_file_is_not_taken(make_daemon, tpm_rootfs):  # noqa: F811
    """Root on the host writes an older state of the container (and then another container's
    state) as `tpm2.state.tmp` and kills trustme-vtpm: trustmed takes the temporary file only
    when it is the state the TPM anchors, so the vTPM comes back on its newest state, and after a
    stop and start too; no rollback is reported."""
    d = make_daemon(extra_args=KDF)
    create(d, "pa", tpm_rootfs)
    create(d, "pb", tpm_rootfs)
    start(d, "pa")
    start(d, "pb")
    define(d, "pa")
    define(d, "pb")
    nv_write(d, "pa", "aaaa")
    nv_write(d, "pb", "xxxx")
    sf, other = state_file(d, "pa"), state_file(d, "pb")
    older = sf.read_bytes()
    nv_write(d, "pa", "bbbb")
    tmp = sf.with_name("tpm2.state.tmp")
    for planted in (older, other.read_bytes()):
        plant(planted, tmp, sf)
        helper = vtpm_pid(d, "pa")
        os.kill(helper, signal.SIGKILL)
        wait_for(lambda: vtpm_pid(d, "pa") not in (None, helper), timeout=60, what="the vTPM to come back")
        wait_for(lambda: d.sh("pa", "tpm2_getrandom 4 >/dev/null", check=False).returncode == 0, timeout=30,
                 what="the vTPM to answer")
        assert "bbbb" in nv_read(d, "pa")
    assert "taken from tpm2.state.tmp" not in d.log()
    d.cli("stop", "pa")
    wait_for(lambda: vtpm_pid(d, "pa") is None, timeout=30, what="the vTPM to stop")
    start(d, "pa")
    assert "bbbb" in nv_read(d, "pa")
    assert "xxxx" in nv_read(d, "pb")
    assert not any(e.get("event") == "vtpm.rollback" for e in d.audit_events())
    d.cli("stop", "pa")
    d.cli("stop", "pb")


def test_a_guest_storing_on_every_command_throttles_only_itself(make_daemon, tpm_rootfs):  # noqa: F811
    """The container's root stores on every command (NV writes in a loop, past its 120 anchored
    commits). Meanwhile another container writes to its own vTPM and the administrator asks
    trustmed: both are answered promptly, the other container's commits stay anchored (its own
    budget: a power loss keeps its last write) and only the looping one is audited as over its
    budget."""
    d = make_daemon(extra_args=KDF)
    create(d, "la", tpm_rootfs)
    create(d, "lb", tpm_rootfs)
    start(d, "la")
    start(d, "lb")
    define(d, "la")
    define(d, "lb")
    done = {}

    def loop():
        done["r"] = d.sh("la", f"cd /tmp && i=0; while [ $i -lt 140 ]; do printf '%04d' $i > v; "
                               f"tpm2_nvwrite {INDEX} -C o -i v >/dev/null || exit 1; i=$((i + 1)); done",
                         check=False, timeout=600)
    t = threading.Thread(target=loop)
    t.start()
    worst = 0.0
    try:
        for i in range(6):
            t0 = time.monotonic()
            nv_write(d, "lb", f"b{i:03d}")
            d.cli("list")
            worst = max(worst, time.monotonic() - t0)
    finally:
        t.join(timeout=600)
    assert not t.is_alive() and done["r"].returncode == 0, done.get("r")
    assert worst < 15, f"another container's write and a list took {worst:.1f} s"
    assert "0139" in nv_read(d, "la")
    spent = [e for e in d.audit_events() if e.get("event") == "vtpm.anchor" and "budget spent" in e.get("detail", "")]

    def of(name):
        return [e for e in spent if d.state(name)["uuid"] in json.dumps(e) or f'"{name}"' in json.dumps(e)]
    assert of("la") and not of("lb"), spent
    # lb's last write was anchored before its response: a death of both daemons keeps it
    kill_both(d, "lb")
    start(d, "lb")
    assert "b005" in nv_read(d, "lb")
    print(f"worst write + list of the other container during the loop: {worst:.2f} s")
    d.cli("stop", "lb")
    d.cli("stop", "la")
