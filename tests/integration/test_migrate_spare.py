# SPDX-License-Identifier: GPL-2.0-or-later
"""The offer's key made ahead (docs/MIGRATION.md "Offer"): after answering an offer, the target's
tpmd makes the next offer's key (`<data>/tpm/migrate/spare.{pub,priv}`), so that an offer costs a
certify, not an RSA key creation. Every offer still has a key of its own, certified over its own
nonce; a spare that is not a migration key under the current boot PCR's policy is never taken;
and an offer made from the spare migrates as any other.

Its own pair of devices (test_migrate.py's module fixture)."""
import time

from conftest import wait_for
from test_attestation import swtpm_installed  # noqa: F401 (fixture)
from test_guestos import env  # noqa: F401 (fixture)
from test_migrate import export, imp, make_container, offer, pair  # noqa: F401 (fixture)
from test_migrate_crash import owned_by


def spare(d):
    m = d.data_dir / "tpm" / "migrate"
    return m / "spare.pub", m / "spare.priv"


def offers_from_spare(d):
    return d.log().count("(the spare made ahead)")


def test_each_offer_takes_the_spare_once(pair):
    p = pair
    first, _ = offer(p, p.t)
    pub, priv = spare(p.t)
    wait_for(lambda: pub.exists() and priv.exists(), timeout=60, what="the spare key made")
    spare_pub = pub.read_bytes()
    n = offers_from_spare(p.t)
    second, _ = offer(p, p.t)
    assert offers_from_spare(p.t) == n + 1
    # The spare became the offer's own key: renamed to the offer id, not left for another offer.
    offer_id = [ln for ln in p.t.log().splitlines() if "(the spare made ahead)" in ln][-1].split("offer ")[1][:32]
    mig = p.t.data_dir / "tpm" / "migrate"
    assert (mig / f"{offer_id}.pub").read_bytes() == spare_pub
    assert spare_pub in second.read_bytes() and spare_pub not in first.read_bytes()
    # A new spare follows, another key.
    wait_for(lambda: pub.exists() and priv.exists(), timeout=60, what="the next spare key")
    assert pub.read_bytes() != spare_pub
    # The offer from the spare migrates as any other.
    make_container(p.s, "m")
    off, nonce = offer(p, p.t)
    bundle, _ = export(p, "m", off, nonce)
    receipt, _ = imp(p, p.t, bundle)
    p.s.cli("migrate", "commit", "m", "--receipt", receipt)
    owned_by(p, p.t, p.s, "m")


def test_a_spare_under_another_policy_is_not_taken(pair):
    """A spare.pub whose policy is not PolicyPCR on the boot PCR's current value (a boot PCR that
    changed, or a file put there) is left alone: the offer makes its own key."""
    p = pair
    offer(p, p.t)
    pub, priv = spare(p.t)
    wait_for(lambda: pub.exists() and priv.exists(), timeout=60, what="the spare key made")
    data = bytearray(pub.read_bytes())
    # TPM2B_PUBLIC: size(2) type(2) nameAlg(2) attributes(4) authPolicy.size(2) authPolicy(32)
    assert data[10:12] == b"\x00\x20"
    data[12] ^= 0x01
    pub.write_bytes(bytes(data))
    n = offers_from_spare(p.t)
    off, _ = offer(p, p.t)
    assert offers_from_spare(p.t) == n
    assert bytes(data) not in off.read_bytes()
    # The bad spare is replaced by a good one after this offer.
    wait_for(lambda: pub.exists() and pub.read_bytes() != bytes(data), timeout=60, what="a new spare")
    time.sleep(0.5)
    n = offers_from_spare(p.t)
    offer(p, p.t)
    assert offers_from_spare(p.t) == n + 1
