# SPDX-License-Identifier: GPL-2.0-or-later
"""kill -9 of either device's trustmed or tpmd at each step of a migration (docs/MIGRATION.md
"Crashes"), at the crash points of a test build (src/lib/test_hooks.h). After the restart exactly
one device can start the container — the source while the export had not finished — `trustme
list` and `trustme state` agree on both, and nothing half-done is left: no `containers/.new-*`
staging dir on the target, no `<bundle>.part` next to the bundle, no spent private blob
(`tpm/migrate/*.priv.used`) on the target.

The two devices of test_migrate.py's module fixture are shared by every case (one container
each, 16 MiB volume)."""
import os

import pytest

from conftest import BUILD, CliError, wait_for
from test_attestation import make_refs, swtpm_installed  # noqa: F401 (fixture)
from test_guestos import env  # noqa: F401 (fixture)
from test_migrate import container_config, export, imp, make_container, offer, pair  # noqa: F401 (fixture)
from test_storage import PIN, PUK, pin_file


def hooks_built():
    import json
    opts = json.loads((BUILD / "meson-info/intro-buildoptions.json").read_text())
    return any(o["name"] == "test_hooks" and o["value"] is True for o in opts)


pytestmark = pytest.mark.skipif(not hooks_built(), reason="needs a build with -Dtest_hooks=true "
                                "(scripts/build.sh makes one)")


# Every container that starts on the target is measured there: the reference values must
# approve each one's config, or the next offer's quote is refused.
NAMES = [f"c{t}" for t in ("locked", "write", "written", "marked", "offer", "spent", "staged", "installed",
                           "checked", "tombstone", "wiped", "decrypted", "built")]


@pytest.fixture(scope="module")
def crash(pair, env):  # noqa: F811 (fixtures)
    p = pair
    p.refs = make_refs(env, p.s.base / "crash-refs.json", [env.build("bb", 1)],
                       [("device-config", p.t.data_dir / "device.json"),
                        *[("container-config", container_config(p.s, n)) for n in NAMES]])
    return p


def arm(where, point):
    f = where / "test-crash-at"
    f.write_text(point + "\n")
    st = where.stat()
    os.chown(f, st.st_uid, st.st_gid)  # tpmd runs as its own user and must remove it
    return f


def names(d):
    return {c["name"] for c in d.containers()}


def restart_trustmed(d):
    d.proc.wait(timeout=15)
    d.start()


def tpmd_back(d, do):
    """Run do() until it got past "TPM service unavailable" (trustmed restarts a killed tpmd)."""
    def tried():
        r = do()
        return None if "TPM service" in r[1].stderr else r
    return wait_for(tried, timeout=30, what="tpmd back")


def starts(d, name):
    return d.cli("start", "--pin-file", pin_file(d, PIN), name, check=False)


def owned_by(p, owner, other, name):
    """owner starts the container with the owner's PIN, other cannot; both agree."""
    r = starts(owner, name)
    assert r.returncode == 0, r.stderr
    owner.cli("stop", "--kill", name)
    assert not owner.state(name).get("migrating", False)
    if name in names(other):
        assert other.state(name).get("migrating", False), "the other copy is locked"
        assert "migrating" in other.cli("state", name).stdout
        r = starts(other, name)
        # (a source killed in the commit's erase has no token left: the CLI says so first)
        assert r.returncode != 0 and ("migrating" in r.stderr or "has no PIN yet" in r.stderr), r.stderr
    else:
        assert starts(other, name).returncode != 0


def nothing_half_done(p):
    left = list((p.t.data_dir / "containers").glob(".new-*")) + list((p.s.data_dir / "containers").glob(".new-*"))
    left += list(p.s.base.glob("bundle-*.part"))
    left += list((p.t.data_dir / "tpm" / "migrate").glob("*.priv.used"))
    assert not left, left


def new_container(p, tag):
    name = f"c{tag}"
    assert name in NAMES
    make_container(p.s, name)
    return name


def export_ok(p, name):
    off, nonce = offer(p, p.t)
    bundle, r = export(p, name, off, nonce)
    return bundle


def finish(p, name, bundle):
    """Import on T and commit on S, as without a crash."""
    receipt, _ = imp(p, p.t, bundle)
    p.s.cli("migrate", "commit", name, "--receipt", receipt)
    assert name not in names(p.s)


# The source's trustmed killed during the export. Before the lock says exported no bundle
# exists under its name: the restarted trustmed removes the .part and releases the lock.
EXPORT_POINTS = [("migrate-export-locked", "data"), ("migrate-export-mid-write", "container"),
                 ("migrate-export-written", "data")]


@pytest.mark.parametrize("point,where", EXPORT_POINTS, ids=[p[0] for p in EXPORT_POINTS])
def test_source_killed_before_the_export_finished_keeps_it(crash, point, where):
    p = crash
    name = new_container(p, point.split("-")[-1])
    uuid = p.s.state(name)["uuid"]
    off, nonce = offer(p, p.t)
    armed = arm(p.s.data_dir / "containers" / uuid if where == "container" else p.s.data_dir, point)
    bundle, r = export(p, name, off, nonce, check=False)
    assert r.returncode != 0 and not armed.exists(), r.stderr
    restart_trustmed(p.s)
    assert not bundle.exists(), "no bundle under its name"
    nothing_half_done(p)
    owned_by(p, p.s, p.t, name)
    # And it migrates afterwards, to a fresh offer.
    finish(p, name, export_ok(p, name))
    owned_by(p, p.t, p.s, name)


def test_source_killed_after_the_export_marked_its_lock(crash):
    """Killed between the lock's exported mark and the bundle's rename: the restart renames it;
    the source stays locked and the bundle imports."""
    p = crash
    name = new_container(p, "marked")
    off, nonce = offer(p, p.t)
    arm(p.s.data_dir, "migrate-export-marked")
    bundle, r = export(p, name, off, nonce, check=False)
    assert r.returncode != 0
    restart_trustmed(p.s)
    assert bundle.exists()
    assert p.s.state(name)["migrating"]
    r = starts(p.s, name)
    assert r.returncode != 0 and "migrating" in r.stderr
    nothing_half_done(p)
    finish(p, name, bundle)
    owned_by(p, p.t, p.s, name)


def test_target_tpmd_killed_making_the_offer_key(crash):
    """Offer: the target's tpmd stored the key and died before answering. No offer went out; a
    new one works (the unanswered key stays in tpm/migrate, usable by nobody: its id never left)."""
    p = crash
    name = new_container(p, "offer")
    armed = arm(p.t.data_dir / "tpm", "tpmd-migrate-offer-key")
    with pytest.raises(CliError):
        offer(p, p.t)
    assert not armed.exists()
    owned_by(p, p.s, p.t, name)

    def offered():
        try:
            return offer(p, p.t)
        except CliError as e:
            assert "TPM service" in str(e), e
            return None
    off, nonce = wait_for(offered, timeout=30, what="tpmd back")
    bundle, _ = export(p, name, off, nonce)
    finish(p, name, bundle)
    owned_by(p, p.t, p.s, name)


# The target killed during the import after the offer was spent and before the container was
# installed: a retry gets the target AK's signed refusal, and the source aborts with it.
IMPORT_SPENT = [("tpmd-migrate-spent", "tpmd"), ("tpmd-migrate-decrypted", "tpmd"),
                ("migrate-import-token-built", "trustmed"), ("migrate-import-staged", "trustmed")]


@pytest.mark.parametrize("point,who", IMPORT_SPENT, ids=[p[0] for p in IMPORT_SPENT])
def test_target_killed_after_the_spend_refuses_on_retry(crash, point, who):
    p = crash
    name = new_container(p, point.split("-")[-1])
    bundle = export_ok(p, name)
    armed = arm(p.t.data_dir / ("tpm" if who == "tpmd" else ""), point)
    _, r = imp(p, p.t, bundle, check=False)
    assert r.returncode != 0 and not armed.exists(), r.stderr
    if who == "trustmed":
        restart_trustmed(p.t)
        refusal, r = imp(p, p.t, bundle, check=False)
    else:
        refusal, r = tpmd_back(p.t, lambda: imp(p, p.t, bundle, check=False))
    assert r.returncode == 1 and "refused:" in r.stderr and "spent here" in r.stderr, r.stderr
    assert name not in names(p.t)
    nothing_half_done(p)
    r = p.t.cli("migrate", "import", bundle, "--out", p.s.base / f"no-{name}", "--receipt-again", check=False)
    assert r.returncode != 0 and "was not installed here" in r.stderr, r.stderr
    assert p.s.state(name)["migrating"]
    p.s.cli("migrate", "abort", name, "--refusal", refusal)
    owned_by(p, p.s, p.t, name)


def test_target_killed_after_the_install_keeps_it(crash):
    """Installed, killed before the receipt: the target has the container, the source stays
    locked; a second import is refused, and `import --receipt-again` signs the lost receipt, with
    which the source commits."""
    p = crash
    name = new_container(p, "installed")
    bundle = export_ok(p, name)
    arm(p.t.data_dir, "migrate-import-installed")
    _, r = imp(p, p.t, bundle, check=False)
    assert r.returncode != 0
    restart_trustmed(p.t)
    _, r = imp(p, p.t, bundle, check=False)
    assert r.returncode != 0 and "exists here already" in r.stderr, r.stderr
    nothing_half_done(p)
    owned_by(p, p.t, p.s, name)
    receipt = p.s.base / f"receipt-again-{name}"
    r = p.t.cli("migrate", "import", bundle, "--out", receipt, "--receipt-again")
    assert "installed from this bundle already" in r.stdout
    p.s.cli("migrate", "commit", name, "--receipt", receipt)
    assert name not in names(p.s)
    assert starts(p.t, name).returncode == 0
    p.t.cli("stop", "--kill", name)


# The source's trustmed killed during the commit: it stays locked, and the commit runs again.
COMMIT_POINTS = ["migrate-commit-checked", "migrate-commit-tombstone", "trustmed-wiped"]


@pytest.mark.parametrize("point", COMMIT_POINTS)
def test_source_killed_during_the_commit_commits_again(crash, point):
    p = crash
    name = new_container(p, point.split("-")[-1])
    uuid = p.s.state(name)["uuid"]
    receipt, _ = imp(p, p.t, export_ok(p, name))
    arm(p.s.data_dir, point)
    r = p.s.cli("migrate", "commit", name, "--receipt", receipt, check=False)
    assert r.returncode != 0
    restart_trustmed(p.s)
    tomb = p.s.data_dir / "migrated" / f"{uuid}.tombstone"
    assert tomb.exists() == (point != "migrate-commit-checked")
    owned_by(p, p.t, p.s, name)
    p.s.cli("migrate", "commit", name, "--receipt", receipt)
    assert name not in names(p.s) and not (p.s.data_dir / "containers" / uuid).exists()
    assert tomb.read_text().startswith("tombstone\n")
    nothing_half_done(p)
