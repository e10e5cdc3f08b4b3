# SPDX-License-Identifier: GPL-2.0-or-later
"""The export's bundle is written by a worker process (docs/MIGRATION.md "Export"): trustmed
answers its other clients meanwhile, the CLI shows the worker's progress, and a worker that dies
leaves the container free on the source, with no `.part` and no lock.

Its own pair of devices (test_migrate.py's module fixture), one big container."""
import subprocess
import time

from conftest import TRUSTME
from test_attestation import swtpm_installed  # noqa: F401 (fixture)
from test_guestos import env  # noqa: F401 (fixture)
from test_migrate import container_config, export, offer, pair  # noqa: F401 (fixture)
from test_migrate_crash import arm, hooks_built, starts
from test_storage import PIN, PUK, pin_file

import json
import pytest

BIG_MIB = 768


def big_container(d, name):
    path = container_config(d, name)
    cfg = json.loads(path.read_text())
    cfg["data_size_mb"] = BIG_MIB
    path.write_text(json.dumps(cfg))
    d.cli("create", path)
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, PUK), name)
    # The volume is made at the first start.
    d.cli("start", "--pin-file", pin_file(d, PIN), name, timeout=300)
    d.cli("stop", "--kill", name)
    assert (d.data_dir / "containers" / d.state(name)["uuid"] / "data.img").stat().st_size >= BIG_MIB << 20


def test_trustmed_serves_others_while_a_large_export_runs(pair):
    p = pair
    big_container(p.s, "big")
    off, nonce = offer(p, p.t)
    out = p.s.base / "bundle-big"
    t0 = time.monotonic()
    proc = subprocess.Popen([str(TRUSTME), "--run-dir", str(p.s.run_dir), "migrate", "export", "big", "--offer",
                             str(off), "--nonce", nonce, "--out", str(out), "--pin-file", str(pin_file(p.s, PIN, PUK)),
                             *map(str, p.trust), "--reference", str(p.refs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lists = []  # (latency, whether the export was still running when the list came back)
    try:
        # Wait until the worker has started writing (the .part exists), then ask.
        part = out.with_name(out.name + ".part")
        while proc.poll() is None and not part.exists():
            time.sleep(0.01)
        # The lock says exporting while the worker writes: an abort without the target's refusal
        # must not release it under a bundle still being written.
        r = p.s.cli("migrate", "abort", "big", check=False)
        aborted_during = proc.poll() is None
        assert r.returncode != 0 or not aborted_during, r.stdout
        if aborted_during:
            assert "under way" in r.stderr, r.stderr
        while proc.poll() is None:
            t = time.monotonic()
            r = p.s.cli("list", timeout=30)
            lists.append((time.monotonic() - t, proc.poll() is None))
            assert "big" in r.stdout
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    total = time.monotonic() - t0
    assert proc.returncode == 0, stderr
    assert out.exists() and out.stat().st_size > BIG_MIB << 20
    # The CLI showed the worker's progress (a line a second, and one at the end).
    assert "MiB written" in stderr, stderr
    during = [lat for lat, running in lists if running]
    assert len(during) >= 2, (lists, total)
    # Each answer came long before the export ended (blocked, one would wait for all of it).
    assert max(during) < min(2.0, total / 3), (lists, total)
    assert aborted_during, "the export ended before the abort was tried: a bigger volume is needed"
    assert p.s.state("big")["migrating"]
    # Complete now: only the target's refusal releases it.
    r = p.s.cli("migrate", "abort", "big", check=False)
    assert r.returncode != 0 and "signed refusal" in r.stderr, r.stderr


@pytest.mark.skipif(not hooks_built(), reason="needs a build with -Dtest_hooks=true (scripts/build.sh)")
def test_a_dead_export_worker_leaves_the_container_free(pair):
    """The worker killed (alone) before it wrote anything: trustmed answers the export with the
    failure, removes the lock and the .part; the container starts here and exports again."""
    p = pair
    name = "wdead"
    p.s.cli("create", container_config(p.s, name))
    p.s.cli("change-pin", "--pin-file", pin_file(p.s, PIN, PUK), name)
    off, nonce = offer(p, p.t)
    armed = arm(p.s.data_dir, "migrate-export-worker")
    bundle, r = export(p, name, off, nonce, check=False)
    assert r.returncode != 0 and "export worker died" in r.stderr, r.stderr
    assert not armed.exists()
    assert p.s.proc.poll() is None, "trustmed itself lives on"
    assert not bundle.exists() and not bundle.with_name(bundle.name + ".part").exists()
    assert not p.s.state(name).get("migrating", False)
    r = starts(p.s, name)
    assert r.returncode == 0, r.stderr
    p.s.cli("stop", "--kill", name)
    off, nonce = offer(p, p.t)
    bundle, _ = export(p, name, off, nonce)
    assert bundle.exists() and p.s.state(name)["migrating"]
