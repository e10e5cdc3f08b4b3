# SPDX-License-Identifier: GPL-2.0-or-later
"""A soft token moves with its PIN, its PUK and its lockout counts (docs/MIGRATION.md "The
token"): two devices, each with its own trustmed, scd, tpmd and embedded swtpm. The export takes
the PIN and the PUK; the target's scd builds a token from their carried form under its own device
secret, and the counts of the source's TPM are anchored in the target's. Covered: the round trip
with the same PIN and no change-pin; the wrong-PUK count carried to a block on the target; the
PIN count (reset by the export's right PIN, as by any right PIN); a locked token is not exported
and stays locked; a wrong or missing PUK refuses the export, costing one PUK try and no PIN try;
the PUK works on the target; a bundle whose token part is altered is refused, naming the part.
kill -9 at the new step of the import is in test_migrate_crash.py (migrate-import-token-built).

The two devices come from test_migrate.py's module fixture (a fresh pair for this module)."""
import pytest

from test_attestation import make_refs, swtpm_installed  # noqa: F401 (fixture)
from test_guestos import env  # noqa: F401 (fixture)
from test_migrate import (container_config, cycle, export, flipped, imp, make_container, migrating,  # noqa: F401
                          offer, pair)
from test_storage import PIN, PUK, pin_file

# Every container that starts on the target is measured there: the reference values approve them.
NAMES = ["tk", "tp", "tl", "tw", "tx"]


@pytest.fixture(scope="module")
def tok(pair, env):  # noqa: F811 (fixtures)
    p = pair
    p.refs = make_refs(env, p.s.base / "token-refs.json", [env.build("bb", 1)],
                       [("device-config", p.t.data_dir / "device.json"),
                        *[("container-config", container_config(p.s, n)) for n in NAMES]])
    return p


def enc(d, name):
    return d.state(name)["encryption"]


def starts(d, name, pin=PIN):
    return d.cli("start", "--pin-file", pin_file(d, pin), name, check=False)


def wrong_puk(d, name):
    r = d.cli("token", "unlock", "--pin-file", pin_file(d, "87654321", "5173"), name, check=False)
    assert r.returncode != 0 and "wrong PUK" in r.stderr, r.stderr


def migrate(p, name):
    """Export name to T, import, commit: T has it, S does not."""
    bundle, _ = cycle(p, name)
    receipt, r = imp(p, p.t, bundle)
    p.s.cli("migrate", "commit", name, "--receipt", receipt)
    assert name not in {c["name"] for c in p.s.containers()}
    return bundle


def test_same_pin_and_puk_count_after_migration(tok):
    p = tok
    make_container(p.s, "tk")
    assert starts(p.s, "tk").returncode == 0
    p.s.cli("stop", "tk")
    # Two wrong PUKs and two wrong PINs on the source. The export's right PIN resets the PIN count
    # (as every right PIN does); the PUK count is not reset by a right PUK at the export.
    wrong_puk(p.s, "tk")
    wrong_puk(p.s, "tk")
    for _ in range(2):
        assert starts(p.s, "tk", pin="9999").returncode != 0
    assert enc(p.s, "tk")["pin_tries_left"] == 1 and enc(p.s, "tk")["puk_tries_left"] == 8
    bundle, lay = cycle(p, "tk")
    # Nothing of the token is in the bundle in the clear: its part is sealed.
    data = bundle.read_bytes()
    off, size = lay["parts"]["token.carried"]
    part = data[off:off + size]
    assert size == 142 and part[:8] == b"TMTOKv1\n" and PIN.encode() not in part and PUK.encode() not in part
    assert PIN.encode() not in data[:lay["parts"]["config.json"][0]]
    receipt, _ = imp(p, p.t, bundle)
    p.s.cli("migrate", "commit", "tk", "--receipt", receipt)
    e = enc(p.t, "tk")
    assert e["paired"] is True and e["pin_tries_left"] == 3 and e["puk_tries_left"] == 8, e
    # Paired with the owner's PIN: a change-pin without the current PIN (pairing) is refused, and
    # the same PIN opens the container with no step before.
    r = p.t.cli("change-pin", "--pin-file", pin_file(p.t, "2580", "87654321"), "tk", check=False)
    assert r.returncode != 0, r.stdout
    r = starts(p.t, "tk", pin="9999")
    assert r.returncode != 0 and "wrong PIN: 2 tries left" in r.stderr, r.stderr
    r = starts(p.t, "tk")
    assert r.returncode == 0, r.stderr
    p.t.cli("stop", "tk")
    assert enc(p.t, "tk")["pin_tries_left"] == 3
    # The carried PUK count goes on where the source left it: 8 more wrong PUKs block the token.
    for _ in range(7):
        wrong_puk(p.t, "tk")
    assert enc(p.t, "tk")["puk_tries_left"] == 1
    r = p.t.cli("token", "unlock", "--pin-file", pin_file(p.t, "87654321", "5173"), "tk", check=False)
    assert r.returncode != 0 and "blocked for good" in r.stderr, r.stderr
    assert enc(p.t, "tk")["blocked"] is True
    r = starts(p.t, "tk")
    assert r.returncode != 0 and "blocked" in r.stderr, r.stderr
    # The files of the token are the target's own: scd's files differ from the source's (another
    # device secret), and a start there refuses restored or edited ones as for any token.
    audit = [e["event"] for e in p.t.audit_events()]
    assert "token.lockout" in audit


def test_the_puk_works_on_the_target(tok):
    p = tok
    make_container(p.s, "tp")
    migrate(p, "tp")
    for _ in range(3):
        assert starts(p.t, "tp", pin="9999").returncode != 0
    e = enc(p.t, "tp")
    assert e["locked"] is True, e
    r = starts(p.t, "tp")
    assert r.returncode != 0 and "locked" in r.stderr, r.stderr
    p.t.cli("token", "unlock", "--pin-file", pin_file(p.t, PUK, "2580"), "tp")
    e = enc(p.t, "tp")
    assert e["locked"] is False and e["pin_tries_left"] == 3 and e["puk_tries_left"] == 10, e
    r = starts(p.t, "tp", pin="2580")
    assert r.returncode == 0, r.stderr
    p.t.cli("stop", "tp")


def test_a_locked_token_is_not_exported_and_stays_locked(tok):
    p = tok
    make_container(p.s, "tl")
    for _ in range(3):
        assert starts(p.s, "tl", pin="9999").returncode != 0
    assert enc(p.s, "tl")["locked"] is True
    off, nonce = offer(p, p.t)
    _, r = export(p, "tl", off, nonce, check=False)
    assert r.returncode != 0 and "locked after 3 wrong PINs" in r.stderr, r.stderr
    assert not migrating(p.s, "tl") and enc(p.s, "tl")["locked"] is True
    assert "tl" not in {c["name"] for c in p.t.containers()}
    # Unlocked with the PUK, it migrates with its new PIN.
    p.s.cli("token", "unlock", "--pin-file", pin_file(p.s, PUK, "2580"), "tl")
    off, nonce = offer(p, p.t)
    out = p.s.base / "bundle-tl"
    p.s.cli("migrate", "export", "tl", "--offer", off, "--nonce", nonce, "--out", out,
            "--pin-file", pin_file(p.s, "2580", PUK), *p.trust, "--reference", p.refs)
    receipt, _ = imp(p, p.t, out)
    p.s.cli("migrate", "commit", "tl", "--receipt", receipt)
    assert starts(p.t, "tl").returncode != 0
    r = starts(p.t, "tl", pin="2580")
    assert r.returncode == 0, r.stderr
    p.t.cli("stop", "tl")


def test_a_wrong_or_missing_puk_refuses_the_export(tok):
    p = tok
    make_container(p.s, "tw")
    off, nonce = offer(p, p.t)
    out = p.s.base / "bundle-tw"
    args = ["migrate", "export", "tw", "--offer", off, "--nonce", nonce, "--out", out, *p.trust,
            "--reference", p.refs]
    r = p.s.cli(*args, "--pin-file", pin_file(p.s, PIN), check=False)
    assert r.returncode != 0 and "PUK" in r.stderr, r.stderr
    r = p.s.cli(*args, "--pin-file", pin_file(p.s, PIN, "87654321"), check=False)
    assert r.returncode != 0 and "wrong PUK: 9 tries left" in r.stderr, r.stderr
    e = enc(p.s, "tw")
    assert e["puk_tries_left"] == 9 and e["pin_tries_left"] == 3, e
    # A wrong PIN costs a PIN try and no PUK try (the PUK is not tried).
    r = p.s.cli(*args, "--pin-file", pin_file(p.s, "9999", PUK), check=False)
    assert r.returncode != 0 and "wrong PIN: 2 tries left" in r.stderr, r.stderr
    e = enc(p.s, "tw")
    assert e["puk_tries_left"] == 9 and e["pin_tries_left"] == 2, e
    assert not migrating(p.s, "tw") and not out.exists()
    assert starts(p.s, "tw").returncode == 0
    p.s.cli("stop", "tw")


def test_an_altered_token_part_is_refused(tok):
    p = tok
    make_container(p.s, "tx")
    bundle, lay = cycle(p, "tx")
    off, size = lay["parts"]["token.carried"]
    # Refused by its digest before the offer is spent, naming the part; the genuine bundle imports.
    for at in (off, off + size // 2, off + size - 1):
        _, r = imp(p, p.t, flipped(bundle, at, f"tok-{at}"), check=False)
        assert r.returncode != 0 and "part token.carried" in r.stderr, r.stderr
    assert "tx" not in {c["name"] for c in p.t.containers()}
    receipt, _ = imp(p, p.t, bundle)
    p.s.cli("migrate", "commit", "tx", "--receipt", receipt)
    r = starts(p.t, "tx")
    assert r.returncode == 0, r.stderr
    p.t.cli("stop", "tx")
    # The PUK is in neither device's log.
    for d in (p.s, p.t):
        assert PUK not in d.log()
