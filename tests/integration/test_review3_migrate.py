# SPDX-License-Identifier: GPL-2.0-or-later
"""Third outside review: attacks on migration's TPM-anchored lock (docs/MIGRATION.md "The lock in
the TPM"), as root on the source who wants the container on two devices. The two devices come
from test_migrate.py's module fixture (a fresh pair for this module)."""
import json

from test_migrate import (container_config, cycle, export, imp, migrating, offer, pair,  # noqa: F401
                          pytestmark, refused_expired)
from test_attestation import swtpm_installed  # noqa: F401 (fixture)
from test_guestos import env  # noqa: F401 (fixture)
from test_migrate_review import with_data
from test_storage import PIN, pin_file


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
    b1, _, off = cycle(p, "ex3", lifetime=1)
    refusal = refused_expired(p, p.t, b1, off)
    p.s.cli("migrate", "abort", "ex3", "--refusal", refusal)
    assert not migrating(p.s, "ex3")
    b2, _ = cycle(p, "ex3")
    receipt, _ = imp(p, p.t, b2)
    p.s.cli("migrate", "commit", "ex3", "--receipt", receipt)


def test_a_config_edited_to_no_token_does_not_start_the_exported_container(pair):
    """Only a container with a soft token migrates, so only those ask the TPM for a lock at
    their start. Root on the source, after the export, removes the lock file and edits the
    container's config to `"token": "none"` (no TPM check then), restarts trustmed and starts it:
    it must not run with its data while the target has it."""
    p = pair
    with_data(p, "ex4")
    p.s.cli("start", "--pin-file", pin_file(p.s, PIN), "ex4")
    p.s.sh("ex4", "echo review3-secret-data > /marker")
    p.s.cli("stop", "ex4")
    uuid = p.s.state("ex4")["uuid"]
    cdir = p.s.data_dir / "containers" / uuid
    b1, _ = cycle(p, "ex4")
    lock, cfg = cdir / "migrating", cdir / "config.json"
    saved_lock, saved_cfg = lock.read_bytes(), cfg.read_bytes()
    p.s.kill9()
    lock.unlink()
    cfg.write_text(json.dumps({**json.loads(saved_cfg), "token": "none"}))
    p.s.start()
    listed = [c for c in p.s.containers() if c["name"] == "ex4"]
    r = p.s.cli("start", "ex4", check=False) if listed else None
    try:
        if r is not None and r.returncode == 0:
            seen = p.s.sh("ex4", "cat /marker 2>&1; ls -a / 2>&1", check=False)
            assert "review3-secret-data" not in seen.stdout, "the exported container ran here with its data"
    finally:
        if r is not None and r.returncode == 0:
            p.s.cli("stop", "ex4")
    outcome = "not listed" if not listed else (r.stderr.strip() or "started without its data")
    print(f"edited config: {outcome}")
    # Put back, the genuine migration completes.
    p.s.kill9()
    lock.write_bytes(saved_lock)
    cfg.write_bytes(saved_cfg)
    p.s.start()
    receipt, _ = imp(p, p.t, b1)
    p.s.cli("migrate", "commit", "ex4", "--receipt", receipt)


def manifest_ids(lay):
    fields = dict(line.split(" ", 1) for line in lay["manifest"][1].splitlines() if " " in line)
    return fields["bundle"], fields["offer"]


def test_a_receipt_again_for_a_container_that_was_never_installed(pair):
    """The import of a bundle failed after its offer was spent (here its offer expired: a signed
    refusal): the target never had the data key.
    Root on the target then makes a container of that UUID out of another one (its directory
    renamed), writes `migrated.from` with the receipt text (every field of it is in the bundle
    and its manifest) and asks for the receipt again. A receipt would let the source commit and
    erase a container that no device has."""
    p = pair
    with_data(p, "ra")
    uuid = p.s.state("ra")["uuid"]
    b1, lay, off = cycle(p, "ra", lifetime=1)
    lock = p.s.data_dir / "containers" / uuid / "migrating"
    digest = next(ln.split(" ", 1)[1] for ln in lock.read_text().splitlines() if ln.startswith("digest "))
    refusal = refused_expired(p, p.t, b1, off)
    # Root on the target: another container's directory under the bundle's UUID.
    p.t.cli("create", container_config(p.t, "decoy"))
    decoy = p.t.data_dir / "containers" / p.t.state("decoy")["uuid"]
    p.t.kill9()
    decoy.rename(decoy.with_name(uuid))
    bundle_id, offer_id = manifest_ids(lay)
    (decoy.with_name(uuid) / "migrated.from").write_text(
        f"receipt\nbundle {bundle_id}\noffer {offer_id}\nuuid {uuid}\ndigest {digest}\n")
    p.t.start()
    receipt = p.s.base / "receipt-forged-again"
    r = p.t.cli("migrate", "import", b1, "--out", receipt, "--receipt-again", check=False)
    if r.returncode == 0:
        c = p.s.cli("migrate", "commit", "ra", "--receipt", receipt, check=False)
        erased = c.returncode == 0
    else:
        erased = False
    assert r.returncode != 0 and not erased, (
        f"the target signed a receipt for a container it never installed (commit: "
        f"{'erased the source' if erased else 'refused'})")
    p.s.cli("migrate", "abort", "ra", "--refusal", refusal)
    assert not migrating(p.s, "ra")
