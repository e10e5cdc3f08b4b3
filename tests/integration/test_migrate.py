# SPDX-License-Identifier: GPL-2.0-or-later
"""Container migration between two devices (docs/MIGRATION.md), each its own trustmed with its own
trustme-tpmd and embedded swtpm: the target offers a TPM-held migration key, the source verifies
the offer with the verifier's checks and exports the container's data key wrapped for that key,
the target imports once and signs a receipt, the source commits (crypto-erase, signed tombstone).
Refused, naming the failing check: a target whose device config is not approved, a replayed
offer, a bundle with any part altered, a bundle for another target, a second import, commit
without a valid receipt, abort without the target's signed refusal.

One module fixture holds the two devices (S the source, T the target), provisioned under one
PKI, with the same GuestOS installed."""
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import conftest
from conftest import TEST_PREFIX, TRUSTMED, Daemon
from test_attestation import make_refs, pki_of, swtpm_installed  # noqa: F401 (fixture)
from test_device import SCD, TPMD, provision, run, secret_ok
from test_guestos import env  # noqa: F401 (fixture)
from test_guestos import GUESTOS_TOOL, PKI_TOOL, install, start_with_device
from test_storage import KDF, MARKER, PIN, PUK, SECRET_NAME, pin_file

pytestmark = pytest.mark.skipif(not all(p.exists() for p in (TPMD, PKI_TOOL, GUESTOS_TOOL)),
                                reason="trustme-tpmd, trustme-pki or trustme-guestos is missing")


def device(test_root, rootfs, tag):
    base = Path(tempfile.mkdtemp(prefix=f"d-mig-{tag}-", dir=test_root))
    return Daemon(base, f"{TEST_PREFIX}-{os.getpid()}-mig-{tag}", rootfs, KDF)


@pytest.fixture(scope="module")
def pair(env, test_root, rootfs):
    s = device(test_root, rootfs, "s")
    t = device(test_root, rootfs, "t")
    try:
        start_with_device(s, env.device())
        secret_ok(s)
        provision(s, pki_of(env), s.base, cn="device-s")
        conftest.provisioned_device(t, env, "device-t", like=s)
        gos = env.build("bb", 1)
        install(s, gos)
        install(t, gos)
        # S is a target too (of the bundle for another target), after m ran on it.
        refs = make_refs(env, s.base / "refs.json", [gos], [("device-config", t.data_dir / "device.json"),
                                                            ("container-config", container_config(s, "m"))])
        # Reference values approving another device config only: the target's is not approved.
        other_cfg = s.base / "other-device.json"
        other_cfg.write_text(json.dumps({**json.loads((t.data_dir / "device.json").read_text()),
                                         "comment": "another config"}))
        bad_refs = make_refs(env, s.base / "bad-refs.json", [gos], [("device-config", other_cfg)])
        trust = ["--ak-anchor", env.cert("general-root-ca"), "--device-ca", env.cert("device-ca"),
                 "--rim-anchor", env.cert("root-ca"), "--rim-ca", env.cert("sub-ca"),
                 "--crl", env.pki / "crls.pem"]
        pcrs = json.loads(refs.read_text())["pcrs"]
        yield SimpleNamespace(s=s, t=t, refs=refs, bad_refs=bad_refs, trust=trust, pcrs=pcrs, n=0, gos=gos, env=env)
    finally:
        t.teardown()
        s.teardown()


def container_config(d, name):
    cfg = {"name": name, "guestos": {"name": "bb"}, "token": {"type": "soft"}, "data_size_mb": 16}
    path = d.configs / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def make_container(d, name):
    d.cli("create", container_config(d, name))
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, PUK), name)


def offer(p, dev, lifetime=None, source=None):
    """An offer of dev over a fresh nonce of the source (S unless given), which names the source's
    AK (`trustme migrate nonce`): (offer path, nonce hex). lifetime: seconds."""
    p.n += 1
    nonce = (source or p.s).cli("migrate", "nonce").stdout.strip()
    assert len(nonce) == 64, nonce
    out = p.s.base / f"offer-{p.n}"
    extra = ("--lifetime", str(lifetime)) if lifetime else ()
    dev.cli("migrate", "offer", "--nonce", nonce, "--out", out, *extra,
            *[a for n in p.pcrs for a in ("--pcr", str(n))])
    EXPIRES[out] = time.time() + (lifetime or 86400)
    return out, nonce


EXPIRES = {}  # offer path -> when it expires (the target's clock is this machine's)


def refused_expired(p, dev, bundle, off):
    """The target's signed refusal of a genuine bundle whose offer expired: how a test gets one now
    that an altered bundle is refused before the offer is spent (the source's signature)."""
    time.sleep(max(0, EXPIRES[off] + 1.5 - time.time()))
    refusal, r = imp(p, dev, bundle, check=False)
    assert r.returncode == 1 and "refused:" in r.stderr and "expired" in r.stderr, r.stderr
    return refusal


def export(p, name, off, nonce, refs=None, check=True):
    p.n += 1
    out = p.s.base / f"bundle-{p.n}"
    r = p.s.cli("migrate", "export", name, "--offer", off, "--nonce", nonce, "--out", out,
                "--pin-file", pin_file(p.s, PIN, PUK), *p.trust, "--reference", refs or p.refs, check=check)
    return out, r


def imp(p, dev, bundle, check=True):
    p.n += 1
    out = p.s.base / f"receipt-{p.n}"
    return out, dev.cli("migrate", "import", bundle, "--out", out, check=check)


def flipped(bundle, offset, tag):
    data = bytearray(bundle.read_bytes())
    data[offset] ^= 0x01
    out = bundle.with_name(f"{bundle.name}-{tag}")
    out.write_bytes(bytes(data))
    return out


def layout(bundle):
    """Offsets of the bundle's regions (docs/MIGRATION.md "Bundle"): manifest, wrapped key,
    sealed keys, each part (name -> (offset, size)), and the source's signature after them
    ("auth": where it starts, "sig" and "chain": (offset, size))."""
    data = bundle.read_bytes()
    assert data[:8] == b"TMMIGv2\n"
    mlen = int.from_bytes(data[8:12], "big")
    manifest = data[12:12 + mlen].decode()
    off = 12 + mlen
    wlen = int.from_bytes(data[off:off + 4], "big")
    wrapped = off + 4
    sealed = wrapped + wlen + 12
    off = sealed + 128 + 16
    parts = {}
    for line in manifest.splitlines():
        if line.startswith("part "):
            _, name, size, _ = line.split()
            parts[name] = (off, int(size))
            off += int(size)
    auth = off
    assert data[off:off + 8] == b"TMMIGsrc" and int.from_bytes(data[off + 8:off + 12], "big") == 64
    sig = (off + 12, 64)
    clen = int.from_bytes(data[off + 76:off + 80], "big")
    chain = (off + 80, clen)
    assert off + 80 + clen == len(data)
    return {"manifest": (12, manifest), "wrapped": wrapped, "sealed": sealed, "parts": parts, "auth": auth,
            "sig": sig, "chain": chain}


def migrating(d, name):
    return d.state(name).get("migrating", False)


def test_offer_of_an_unapproved_target_or_replayed_is_refused(pair):
    p = pair
    make_container(p.s, "m")
    p.s.cli("start", "--pin-file", pin_file(p.s, PIN), "m")
    p.s.sh("m", f"echo {MARKER} > /root/{SECRET_NAME}; sync")
    p.s.cli("stop", "m")
    off, nonce = offer(p, p.t)
    # The target's device config is not among the approved reference values.
    _, r = export(p, "m", off, nonce, refs=p.bad_refs, check=False)
    assert r.returncode == 1 and "offer refused: reference values" in r.stderr, r.stderr
    # An offer made over another nonce (an old offer replayed to a new export).
    _, r = export(p, "m", off, secrets.token_hex(32), check=False)
    assert r.returncode == 1 and "offer refused: nonce" in r.stderr, r.stderr
    # An offer over a nonce that S did not make (`trustme migrate nonce`): it names no AK of S, so
    # T would install no bundle of S for it. S refuses to export to it, before the PIN is tried.
    p.n += 1
    random_off, random_nonce = p.s.base / f"offer-{p.n}", secrets.token_hex(32)
    p.t.cli("migrate", "offer", "--nonce", random_nonce, "--out", random_off,
            *[a for n in p.pcrs for a in ("--pcr", str(n))])
    _, r = export(p, "m", random_off, random_nonce, check=False)
    assert r.returncode == 1 and "source binding: the nonce does not name this device's AK" in r.stderr, r.stderr
    assert not migrating(p.s, "m")
    p.s.cli("start", "--pin-file", pin_file(p.s, PIN), "m")  # still the source's to start
    p.s.cli("stop", "m")


def cycle(p, name, lifetime=None):
    """A fresh offer of T and an export of name to it: (bundle, layout), and with lifetime the
    offer too."""
    off, nonce = offer(p, p.t, lifetime)
    bundle, r = export(p, name, off, nonce)
    assert "locked (migrating)" in r.stdout
    return (bundle, layout(bundle), off) if lifetime else (bundle, layout(bundle))


def test_offer_of_a_target_running_another_trustmed_is_refused(pair, tmp_path):
    """The signed reference values approve a trustmed that is not the one the target runs: a copy
    of the build's with one byte of a string changed (it would run, and measures differently). To
    the source's verifier that is a target running an unapproved trustmed: refused at export,
    naming the check; nothing locked."""
    p = pair
    make_container(p.s, "tb")
    data = bytearray(TRUSTMED.read_bytes())
    at = data.index(b"trustme migrate")
    data[at] = ord("T")
    other = tmp_path / "trustmed"  # the name the reference values approve it under
    other.write_bytes(bytes(data))
    refs = tmp_path / "refs-other-trustmed.json"
    # The pair's approved values but for trustmed: the same GuestOS, scd, tpmd and device config.
    run(PKI_TOOL, "rim", "--out", refs, "--version", "1", "--binary", other, "--binary", SCD, "--binary", TPMD,
        "--guestos", p.gos, "--config", f"device-config={p.t.data_dir / 'device.json'}")
    run(PKI_TOOL, "sign", refs, "--pki", p.env.pki, "--signer", "software", "--passphrase-file", p.env.passfile)
    off, nonce = offer(p, p.t)
    _, r = export(p, "tb", off, nonce, refs=refs, check=False)
    why = [line for line in r.stderr.splitlines() if "offer refused: reference values" in line]
    assert r.returncode == 1 and why and "trustmed" in why[0], r.stderr
    # (Not started here: S is a target later, and its reference values name only m's config.)
    assert not migrating(p.s, "tb")


def test_altered_bundles_and_refusals(pair):
    p = pair
    bundle, lay, off = cycle(p, "m", lifetime=1)
    assert migrating(p.s, "m")
    # The lock is on disk: a source trustmed killed after the export still refuses the start.
    p.s.kill9()
    p.s.start()
    assert migrating(p.s, "m") and p.s.state("m")["state"] == "stopped"
    r = p.s.cli("start", "--pin-file", pin_file(p.s, PIN), "m", check=False)
    assert r.returncode != 0 and "migrating" in r.stderr, r.stderr
    assert "migrating" in p.s.cli("list").stdout
    off2, nonce2 = offer(p, p.t)
    _, r = export(p, "m", off2, nonce2, check=False)
    assert r.returncode != 0 and "migrating already" in r.stderr
    # Every part altered: refused by its digest, before the offer is spent.
    for name, (start, size) in lay["parts"].items():
        for at in (start, start + size - 1):
            _, r = imp(p, p.t, flipped(bundle, at, f"{name}-{at}"), check=False)
            assert r.returncode != 0 and f"part {name}: its SHA-256 is not the manifest's" in r.stderr, r.stderr
    assert not any(c["name"] == "m" for c in p.t.containers())
    # Abort without the target's refusal: refused (a bundle was exported).
    r = p.s.cli("migrate", "abort", "m", check=False)
    assert r.returncode != 0 and "signed refusal" in r.stderr
    # The manifest, the wrapped key, the sealed keys altered: the source's signature over the
    # head does not verify, refused before the offer is spent.
    for region in ("manifest", "wrapped", "sealed"):
        at = lay["manifest"][0] + lay["manifest"][1].index("\nname ") + 6 if region == "manifest" else lay[region] + 5
        _, r = imp(p, p.t, flipped(bundle, at, region), check=False)
        assert r.returncode != 0 and "source authentication" in r.stderr, r.stderr
        assert "refused:" not in r.stderr and "signature does not verify" in r.stderr, r.stderr
    # The offer expired meanwhile: the genuine bundle gets a signed refusal; then it can no
    # longer import, and the source aborts with the refusal.
    refusal = refused_expired(p, p.t, bundle, off)
    _, r = imp(p, p.t, bundle, check=False)
    assert r.returncode != 0 and "unknown or was used already" in r.stderr, r.stderr
    # A refusal with its signature altered does not release the lock.
    forged = flipped(refusal, len(refusal.read_bytes()) - 40, "forged")
    r = p.s.cli("migrate", "abort", "m", "--refusal", forged, check=False)
    assert r.returncode != 0 and "abort" in r.stderr, r.stderr
    p.s.cli("migrate", "abort", "m", "--refusal", refusal)
    assert not migrating(p.s, "m")


def test_round_trip_once_and_only_on_its_target(pair):
    p = pair
    # A bundle for another target (made for S's own offer) does not import on T.
    make_container(p.s, "other")
    off_s, nonce_s = offer(p, p.s)
    b_other, _ = export(p, "other", off_s, nonce_s)
    _, r = imp(p, p.t, b_other, check=False)
    assert r.returncode != 0 and "made for another device's AK" in r.stderr, r.stderr

    bundle, _ = cycle(p, "m")
    receipt, r = imp(p, p.t, bundle)
    assert "imported m" in r.stdout
    uuid = p.s.state("m")["uuid"]
    assert p.t.state("m")["uuid"] == uuid
    # A second import of the same bundle: refused.
    _, r = imp(p, p.t, bundle, check=False)
    assert r.returncode != 0 and "exists here already" in r.stderr, r.stderr
    # Commit without a valid receipt: a receipt of another bundle, one altered.
    r = p.s.cli("migrate", "commit", "m", "--receipt", flipped(receipt, len(receipt.read_bytes()) - 40, "bad"),
                check=False)
    assert r.returncode != 0 and "receipt" in r.stderr, r.stderr
    r = p.s.cli("migrate", "commit", "other", "--receipt", receipt, check=False)
    assert r.returncode != 0 and "another bundle" in r.stderr, r.stderr
    assert migrating(p.s, "m")
    p.s.cli("migrate", "commit", "m", "--receipt", receipt)
    assert not any(c["name"] == "m" for c in p.s.containers())
    assert not (p.s.data_dir / "containers" / uuid).exists()
    tomb = (p.s.data_dir / "migrated" / f"{uuid}.tombstone").read_text()
    assert tomb.startswith("tombstone\n") and f"uuid {uuid}" in tomb and "signature " in tomb
    # On the target: the container starts with its data and the owner's PIN, with no step before.
    p.t.cli("start", "--pin-file", pin_file(p.t, PIN), "m")
    assert p.t.sh("m", f"cat /root/{SECRET_NAME}").stdout.strip() == MARKER
    p.t.cli("stop", "m")
    events = [e["event"] for e in p.s.audit_events()]
    assert {"migrate.export", "migrate.commit", "migrate.abort"} <= set(events)
    assert {"migrate.offer", "migrate.import"} <= {e["event"] for e in p.t.audit_events()}
