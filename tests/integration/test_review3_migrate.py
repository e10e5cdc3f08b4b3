# SPDX-License-Identifier: GPL-2.0-or-later
"""Third outside review: attacks on migration's TPM-anchored lock (docs/MIGRATION.md "The lock in
the TPM"), as root on the source who wants the container on two devices. The two devices come
from test_migrate.py's module fixture (a fresh pair for this module)."""

from test_migrate import cycle, export, imp, migrating, offer, pair, pytestmark  # noqa: F401
from test_attestation import swtpm_installed  # noqa: F401 (fixture)
from test_guestos import env  # noqa: F401 (fixture)
from test_migrate_review import with_data


def test_a_second_export_after_the_lock_file_was_removed_is_refused(pair):
    """Root on the source exports the container (the TPM anchors the lock), deletes the lock file
    and restarts trustmed, then exports it again to another offer: two complete bundles, one
    per offer, so two targets could each install the container (and the second bundle's anchor
    would replace the first's, so the source would even commit with the second receipt). Before
    this review only the start, abort and commit asked the TPM; the export asked only the file."""
    p = pair
    with_data(p, "ex2")
    uuid = p.s.state("ex2")["uuid"]
    lock = p.s.data_dir / "containers" / uuid / "migrating"
    b1, _ = cycle(p, "ex2")
    saved = lock.read_bytes()
    for restart in (False, True):
        lock.unlink(missing_ok=True)
        if restart:
            p.s.kill9()
            p.s.start()
        off2, nonce2 = offer(p, p.t)
        b2, r = export(p, "ex2", off2, nonce2, check=False)
        assert r.returncode != 0, "a second bundle of a container whose export the TPM anchors"
        assert "TPM records that a bundle of it was exported" in r.stderr, r.stderr
        assert not b2.exists() and not b2.with_name(b2.name + ".part").exists()
        assert not lock.exists(), "the refused export wrote a lock file"
        ev = [e for e in p.s.audit_events() if e.get("event") == "migrate.lock"]
        assert ev and ev[-1].get("result") == "fail", ev
    # The genuine migration still completes: the first bundle imports, the lock file put back
    # commits with its receipt.
    receipt, _ = imp(p, p.t, b1)
    lock.write_bytes(saved)
    p.s.cli("migrate", "commit", "ex2", "--receipt", receipt)
    assert not any(c["name"] == "ex2" for c in p.s.containers())
    assert any(c["name"] == "ex2" for c in p.t.containers())


def test_an_unlocked_container_exports_once_the_tpm_answers(pair):
    """Control: the export's new read of the lock's anchor does not refuse a container that never
    migrated, nor one whose earlier migration was aborted with the target's refusal."""
    p = pair
    with_data(p, "ex3")
    b1, lay = cycle(p, "ex3")
    data = bytearray(b1.read_bytes())
    data[lay["wrapped"] + 3] ^= 1
    bad = b1.with_name(b1.name + "-bad")
    bad.write_bytes(bytes(data))
    refusal, r = imp(p, p.t, bad, check=False)
    assert r.returncode == 1 and "refused:" in r.stderr, r.stderr
    p.s.cli("migrate", "abort", "ex3", "--refusal", refusal)
    assert not migrating(p.s, "ex3")
    b2, _ = cycle(p, "ex3")
    receipt, _ = imp(p, p.t, b2)
    p.s.cli("migrate", "commit", "ex3", "--receipt", receipt)
