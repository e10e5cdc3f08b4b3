# SPDX-License-Identifier: GPL-2.0-or-later
"""The audit log: events recorded, the hash chain verifies, and tampering is detected."""
import json


def events_of(daemon):
    return [e["event"] for e in daemon.audit_events()]


def test_security_events_are_recorded(daemon):
    daemon.create("a", init="/bin/sh", args=["-c", "exit 3"])
    daemon.cli("start", "--attach", "a", check=False)
    daemon.create("b")
    daemon.cli("start", "b")
    daemon.sh("b", "true")
    daemon.cli("stop", "--kill", "b")
    bad = daemon.configs / "bad.json"
    bad.write_text('{"name": "x", "rootfs": {"path": "/"}, "bogus": 1}')
    daemon.cli("create", bad, check=False)
    daemon.cli("remove", "a")
    ev = daemon.audit_events()
    names = [e["event"] for e in ev]
    for expected in ("daemon.start", "container.create", "container.start", "container.stop",
                     "exec.start", "exec.end", "config.reject", "container.remove"):
        assert expected in names, expected
    reject = [e for e in ev if e["event"] == "config.reject"][0]
    assert "$.bogus: unknown key" in reject["detail"] and reject["actor"].startswith("uid=0 pid=")
    stop = [e for e in ev if e["event"] == "container.stop" and e["subject"].startswith("a ")][0]
    assert "exited 3" in stop["detail"]
    # every record links to the previous one
    for prev, cur in zip(ev, ev[1:]):
        assert cur["prev"] == prev["hash"] and cur["seq"] == prev["seq"] + 1


def test_verify_passes_on_an_untouched_log(daemon):
    daemon.create("v")
    r = daemon.cli("audit", "--verify")
    assert "audit log intact" in r.stdout and "up to the daemon's last record" in r.stdout


def _tamper(daemon, edit):
    log = daemon.data_dir / "audit.log"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(edit(lines)))


def test_edited_record_is_detected(daemon):
    daemon.create("first")
    daemon.create("second")
    _tamper(daemon, lambda ls: [l.replace('"first (', '"frost (') for l in ls])
    r = daemon.cli("audit", "--verify", check=False)
    assert r.returncode == 1 and "BROKEN at record 2" in r.stdout and "edited" in r.stdout


def test_removed_record_is_detected(daemon):
    daemon.create("r1")
    daemon.create("r2")
    _tamper(daemon, lambda ls: ls[:1] + ls[2:])
    r = daemon.cli("audit", "--verify", check=False)
    assert r.returncode == 1 and "BROKEN at record 2" in r.stdout


def test_removed_tail_is_detected_and_recorded_after_restart(daemon):
    daemon.create("t1")
    daemon.create("t2")
    _tamper(daemon, lambda ls: ls[:-1])
    r = daemon.cli("audit", "--verify", check=False)
    assert r.returncode == 1 and "removed from its end" in r.stdout
    daemon.restart()
    ev = daemon.audit_events()
    tampered = [e for e in ev if e["event"] == "audit.tampered"]
    assert tampered and "removed" in tampered[0]["detail"]
    # the gap is permanent: verification keeps failing at the first record after it
    r = daemon.cli("audit", "--verify", check=False)
    assert r.returncode == 1 and "BROKEN at record 3" in r.stdout


def test_offline_verification_of_a_copy(daemon, tmp_path):
    daemon.create("o")
    copy = tmp_path / "audit.log"
    copy.write_bytes((daemon.data_dir / "audit.log").read_bytes())
    r = daemon.cli("audit", "--verify", "--file", copy)
    assert "audit log intact" in r.stdout
    copy.write_text(copy.read_text().replace('"ok"', '"OK"', 1))
    assert daemon.cli("audit", "--verify", "--file", copy, check=False).returncode == 1


def test_human_output(daemon):
    daemon.create("h")
    out = daemon.cli("audit").stdout
    assert "container.create" in out and "h (" in out


def test_rotated_log_verifies_across_files_and_a_removed_middle_file_is_reported(make_daemon):
    """device.json's audit rotation (docs/AUDIT.md "Rotation"): 1 KiB files, 3 kept. The chain runs
    on across the files, through the daemon and offline; a rotated file removed from the middle
    is named by the records it held."""
    d = make_daemon(start=False)
    d.data_dir.mkdir(parents=True, exist_ok=True)
    (d.data_dir / "device.json").write_text(json.dumps(
        {"policy": {"allow_unsigned": True}, "audit": {"max_file_kb": 1, "keep_files": 3}}))
    d.start()
    bad = d.configs / "bad.json"
    bad.write_text('{"name": "x", "rootfs": {"path": "/"}, "bogus": 1}')
    for _ in range(30):
        d.cli("create", bad, check=False)
    rotated = sorted(p.name for p in d.data_dir.glob("audit.log.*"))
    assert len(rotated) == 3 and all(len(n) == len("audit.log.") + 12 for n in rotated), rotated
    first = int(rotated[0].rsplit(".", 1)[1])
    assert first > 1  # older files went (keep_files)
    for args in (("audit", "--verify"), ("audit", "--verify", "--file", d.data_dir / "audit.log")):
        r = d.cli(*args)
        assert "audit log intact" in r.stdout and f"the chain starts at record {first}" in r.stdout, r.stdout
    ev = d.audit_events()
    rot = [e for e in ev if e["event"] == "audit.rotate"]
    assert rot and "removed audit.log." in " ".join(e["detail"] for e in rot)
    # the middle file goes
    middle = d.data_dir / rotated[1]
    lo = int(rotated[1].rsplit(".", 1)[1])
    hi = int(rotated[2].rsplit(".", 1)[1]) - 1
    middle.unlink()
    for args in (("audit", "--verify"), ("audit", "--verify", "--file", d.data_dir / "audit.log")):
        r = d.cli(*args, check=False)
        assert r.returncode == 1 and f"in {rotated[2]}: records {lo} to {hi} are missing before this file" in r.stdout, \
            r.stdout
