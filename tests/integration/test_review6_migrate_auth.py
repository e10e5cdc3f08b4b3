# SPDX-License-Identifier: GPL-2.0-or-later
"""Review 6 (fresh eyes): the migration endpoint's source authentication (docs/MIGRATION.md "The
announcement", "Source binding"). The attackers: the network (connect, replay, cut), root on
another device of the same PKI (a key the Device CA certified), whoever reaches the port with
hostile encodings. Each test performs one attack; docs/SECURITY.md has a "Review 6" row for each.
A fresh pair of devices for this module (test_migrate_tcp.py's fixture)."""
import datetime
import hashlib
import secrets
import socket
import threading
import time
import uuid as uuidlib

import pytest

from test_attestation import swtpm_installed  # noqa: F401 (fixture)
from test_guestos import env  # noqa: F401 (fixture)
from test_migrate_review import self_signer
from test_migrate_tcp import (CHUNK, answer, challenge, closed, connect, field, frame, make_container,  # noqa: F401
                              pair, pytestmark, send)
from test_review5_migrate_net import (ANNOUNCER, announce_raw, announcer, begin_upload, encode, fields, parts,
                                      wait_empty_inbox)

EBUSY = 16
NONCE_LABEL = b"trustme migrate source"  # src/lib/migrate_nonce.h


def device_ca(env):
    return (env.cert("device-ca"), env.cert("device-ca").with_suffix(".key"), env.passfile.read_text().strip())


def leaf_of_device_ca(env, key_kind="ec", eku="client", digital_signature=True, cn="device-x"):
    """A certificate from the PKI's Device CA for a key of ours (root on another device of the PKI
    holds such a key: its AK): (private key, chain PEM: leaf then Device CA, leaf DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    ca_path, ca_key_path, ca_pass = device_ca(env)
    ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), ca_pass.encode())
    key = ec.generate_private_key(ec.SECP256R1()) if key_kind == "ec" else \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    usage = {"client": ExtendedKeyUsageOID.CLIENT_AUTH, "server": ExtendedKeyUsageOID.SERVER_AUTH}[eku]
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=digital_signature, content_commitment=not digital_signature,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=False, crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM) + ca_path.read_bytes(), \
        cert.public_bytes(serialization.Encoding.DER)


def sign_rs(key, data):
    """r || s (64 bytes) of an ECDSA P-256 signature; for an RSA key its signature's first 64 bytes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())[:64]


def nonce_naming(leaf_der):
    """A source nonce that names the certificate leaf_der (src/lib/migrate_nonce.c)."""
    r = secrets.token_bytes(16)
    ak_id = hashlib.sha256(leaf_der).digest()
    return r + hashlib.sha256(NONCE_LABEL + ak_id + r).digest()[:16]


def own_offer(p, nonce):
    """An offer of the target over nonce (anyone may ask for one): its id."""
    with connect(p) as s:
        s.sendall(frame(field(940, 1) + field(941, nonce) + b"".join(field(942, n) for n in p.pcrs)))
        a = answer(s)
    assert a is not None and 945 in a, a
    off = {n: v for n, _, v in fields(a[945])}
    return off[600].decode()


def forged_upload(key, chain, chal, offer_id, size, bundle_id=None, uuid=None, digest=None):
    """A MigrateUpload for offer_id signed by key (with chain) over chal: the source's format."""
    bundle_id = bundle_id or secrets.token_hex(16)
    uuid = uuid or str(uuidlib.uuid4())
    digest = digest or secrets.token_hex(32)
    text = (f"upload\nbundle {bundle_id}\noffer {offer_id}\nuuid {uuid}\ndigest {digest}\nsize {size}\n"
            f"challenge {chal.hex()}\n").encode()
    sig = sign_rs(key, b"trustme-migrate-v1\0" + text)
    return (field(953, offer_id.encode()) + field(954, bundle_id.encode()) + field(955, uuid.encode())
            + field(956, digest.encode()) + field(957, size) + field(958, sig) + field(959, chain))


def refused(p, upload, chal=True):
    """upload(challenge) on a fresh connection: the refusal's text; nothing reserved, closed."""
    with connect(p) as s:
        ch = challenge(s) if chal else secrets.token_bytes(32)
        s.sendall(frame(field(940, 1) + field(951, upload(ch) if callable(upload) else upload)))
        a = answer(s)
        assert a is not None and 947 in a and 948 not in a and 945 not in a, a
        assert closed(s)
    assert parts(p) == []
    return a[947].decode(errors="replace")


# ---- the challenge -----------------------------------------------------------------------------

def test_a_connection_gets_one_challenge_and_one_announcement(pair):
    """A second challenge on a connection (to collect several signed texts, or to reset the spent
    one), and a second announcement after a refused one: refused, the connection closed."""
    p = pair
    with connect(p) as s:
        challenge(s)
        s.sendall(frame(field(940, 1) + field(950, 1)))
        a = answer(s)
        assert a is not None and 947 in a and b"one challenge per connection" in a[947], a
        assert closed(s)
    # The genuine announcement answered for another connection's challenge, then on this one the
    # genuine one after the refusal: the connection is gone with the first refusal.
    announcer(p)
    with connect(p) as s:
        ch = challenge(s)
        from test_migrate_tcp import announcement
        other = announcement(p.s, ANNOUNCER, secrets.token_bytes(32), 100)
        s.sendall(frame(field(940, 1) + field(951, other)))
        a = answer(s)
        assert a is not None and 947 in a and b"signature does not verify" in a[947], a
        try:
            s.sendall(frame(field(940, 1) + field(951, announcement(p.s, ANNOUNCER, ch, 100))))
        except OSError:
            pass
        assert closed(s)
    assert parts(p) == []


# ---- hostile encodings -------------------------------------------------------------------------

def test_hostile_announcement_encodings_are_refused_and_the_endpoint_serves(pair, env):
    """Malformed protobuf inside the upload, wrong wire types, ids of the wrong form, the largest
    size, a short or long signature, a chain over 16 KiB, with a NUL, of garbage PEM, of CA
    certificates only, r = s = 0: each refused before anything is reserved; the genuine source is
    ready right after."""
    p = pair
    announcer(p)
    ca_pem = env.cert("device-ca").read_bytes()
    good = dict(o=secrets.token_hex(16), b=secrets.token_hex(16), u=str(uuidlib.uuid4()), d=secrets.token_hex(32))

    def up(o=None, b=None, u=None, d=None, size=4096, sig=b"\x01" * 64, chain=None):
        return (field(953, (o or good["o"]).encode()) + field(954, (b or good["b"]).encode())
                + field(955, (u or good["u"]).encode()) + field(956, (d or good["d"]).encode()) + field(957, size)
                + field(958, sig) + field(959, chain if chain is not None else ca_pem))

    cases = [
        (b"\xff\xff\xff\xff", "malformed request"),  # the upload itself does not decode
        (field(953, b"a" * 32)[:-5], "malformed request"),  # a string cut short inside the upload
        (up().replace(field(958, b"\x01" * 64), field(958, 7)), "malformed"),  # signature as a varint
        (up(o=good["o"].upper()), "malformed"),  # upper-case hex
        (up(o=good["o"] + "0"), "malformed"),  # 33 hex digits
        (up(u="../../etc/passwd"), "malformed"),
        (up(d="zz" * 32), "malformed"),
        (up(size=0), "empty"),
        (up(size=(1 << 64) - 1), "more than this device takes"),
        (up(sig=b"\x01" * 63), "malformed"),
        (up(sig=b"\x01" * 65), "malformed"),
        (up(chain=b""), "certificate chain of 0 bytes"),
        (up(chain=b"A" * 16385), "certificate chain of 16385 bytes"),
        (up(chain=ca_pem + b"\0"), "NUL"),
        (up(chain=b"-----BEGIN CERTIFICATE-----\n" + b"QUFB" * 4000 + b"\n-----END CERTIFICATE-----\n"),
         "source authentication"),
        (up(chain=ca_pem * max(1, 16000 // max(1, len(ca_pem)))), "source authentication"),
        (up(sig=b"\0" * 64), "source authentication"),
    ]
    for upload, why in cases:
        text = refused(p, upload)
        assert why in text, (why, text)
    # Served on: the genuine source's announcement is taken at once.
    with begin_upload(p, 100, timeout=10):
        pass
    assert wait_empty_inbox(p) == []


# ---- keys of the PKI that are no source's AK ---------------------------------------------------

def test_device_ca_certificates_for_other_uses_are_refused(pair, env):
    """Keys the Device CA certified that are no AK-like signer: an RSA key (clientAuth), an EC key
    for serverAuth only, an EC key without digitalSignature; each for an offer made over a nonce
    naming it (the source binding would pass): refused at the chain check."""
    p = pair
    for kind, eku, ds, why in (("rsa", "client", True, "source authentication"),
                               ("ec", "server", True, "extendedKeyUsage"),
                               ("ec", "client", False, "digitalSignature")):
        key, chain, der = leaf_of_device_ca(env, kind, eku, ds)
        offer_id = secrets.token_hex(16)  # the chain is checked before the offer is read
        text = refused(p, lambda ch: forged_upload(key, chain, ch, offer_id, 4096))
        assert text.startswith("source authentication") and why in text, (kind, eku, ds, text)
    # The attacker's key with a chain of another order (Device CA first): refused as well.
    key, chain, der = leaf_of_device_ca(env)
    ca_pem = env.cert("device-ca").read_bytes()
    leaf_pem = chain[:len(chain) - len(ca_pem)]
    text = refused(p, lambda ch: forged_upload(key, ca_pem + leaf_pem, ch, secrets.token_hex(16), 4096))
    assert text.startswith("source authentication") or text.startswith("unknown offer"), text


# ---- root on another device of the PKI ---------------------------------------------------------

def announce_forged(p, key, chain, offer_id, size, source="127.0.0.1"):
    """A connection that announced size bytes for offer_id, signed by key: (socket, answer)."""
    s = connect(p, source)
    s.sendall(frame(field(940, 1) + field(951, forged_upload(key, chain, challenge(s), offer_id, size))))
    return s, answer(s)


def test_another_device_of_the_pki_cannot_hold_the_upload_slot(pair, env):
    """Root on another device of the PKI (a key the Device CA certified: its AK) asks for an offer
    over a nonce naming itself, announces and trickles 1 MiB per 29 s. Before, it held the one
    upload slot and the genuine source got EBUSY for as long as that went on; now the slots are
    per signer: the genuine source gets its own, the attacker's key no second one."""
    p = pair
    announcer(p)
    key, chain, der = leaf_of_device_ca(env, cn="device-x")
    offer_id = own_offer(p, nonce_naming(der))
    size = 8 * CHUNK
    hog, a = announce_forged(p, key, chain, offer_id, size)
    try:
        assert a is not None and a.get(948) == 1, a  # ready: a slot is its, the space reserved
        hog.sendall(frame(field(944, b"h" * CHUNK)))
        deadline = time.time() + 30
        while not parts(p) and time.time() < deadline:
            time.sleep(0.1)
        assert parts(p) and parts(p)[0].stat().st_blocks * 512 >= size
        # The same key once more (its offer is still open): no second slot.
        s2, a2 = announce_forged(p, key, chain, offer_id, size)
        with s2:
            assert a2 is not None and a2.get(946) == EBUSY and b"one upload per signer" in a2[947], a2
            assert closed(s2)
        # The genuine source, meanwhile: its own slot.
        with connect(p) as s:
            a3 = announce_raw(p, s, 100)
            assert a3 is not None and a3.get(948) == 1, a3
    finally:
        hog.close()
        wait_empty_inbox(p)


def test_uploads_at_once_are_capped(pair, env):
    """One slot per signer, MIGRATE_NET_MAX_UPLOADS (4) in all: a fifth signer gets EBUSY while
    four uploads run (from addresses of their own: one address keeps at most 4 connections)."""
    p = pair
    announcer(p)
    socks = []
    try:
        with connect(p) as g:
            a = announce_raw(p, g, 3 * CHUNK)
            assert a is not None and a.get(948) == 1, a
            socks.append(g)
            for i in range(3):
                key, chain, der = leaf_of_device_ca(env, cn=f"device-cap{i}")
                s, a = announce_forged(p, key, chain, own_offer(p, nonce_naming(der)), 3 * CHUNK, f"127.0.0.{3 + i}")
                socks.append(s)
                assert a is not None and a.get(948) == 1, (i, a)
            # A fifth signer: refused before its signature is checked, nothing reserved.
            key, chain, der = leaf_of_device_ca(env, cn="device-cap4")
            n = len(parts(p))
            s, a = announce_forged(p, key, chain, secrets.token_hex(16), 100, "127.0.0.7")
            with s:
                assert a is not None and a.get(946) == EBUSY and b"4 at once" in a[947], a
                assert closed(s)
            assert len(parts(p)) == n == 4
    finally:
        for s in socks:
            s.close()
        wait_empty_inbox(p)


# ---- flooding the signature checks -------------------------------------------------------------

class LockedOut(Exception):
    """The genuine `migrate send` did not get through the flood."""


def test_forged_announcement_flood_does_not_keep_a_migration_out(pair):
    """Unauthenticated connections from eight addresses (4 each, the per-peer bound) that each ask
    for a challenge and send a forged announcement with a 2-certificate chain at once, for the whole
    of a genuine `migrate send`: each costs the target a tpmd round trip and a chain check in scd,
    during which its connection was busy (not evictable), so they held every slot. Now such a
    connection is evictable (the peer holding most loses one), and the checks queued are capped per
    address (MIGRATE_NET_CHECKS_PER_PEER) and in all. The genuine send must still commit."""
    p = pair
    make_container(p.s, "tcp1")
    tail = self_signer()(b"x")
    chain = tail[80:]
    stop = threading.Event()
    done, checked, errors = [0], [0], [0]

    def forger(src):
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", p.port), timeout=60, source_address=(src, 0)) as s:
                    up = (field(953, secrets.token_hex(16).encode()) + field(954, secrets.token_hex(16).encode())
                          + field(955, str(uuidlib.uuid4()).encode()) + field(956, secrets.token_hex(32).encode())
                          + field(957, 4096) + field(958, secrets.token_bytes(64)) + field(959, chain))
                    s.sendall(frame(field(940, 1) + field(950, 1)) + frame(field(940, 1) + field(951, up)))
                    while (a := answer(s)) is not None:
                        checked[0] += b"source authentication" in a.get(947, b"")
                    done[0] += 1
            except OSError:
                errors[0] += 1
                time.sleep(0.01)

    threads = [threading.Thread(target=forger, args=(f"127.0.0.{2 + i % 8}",), daemon=True) for i in range(32)]
    for t in threads:
        t.start()
    try:
        time.sleep(3)
        _, r = send(p, "tcp1", check=False)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=90)
    assert checked[0] > 20, (done, checked, errors)
    if "committed" not in r.stdout:
        # After the flood the migration goes through: the same bundle sent again if it was
        # written (the container stays locked until then), else a send from the start.
        if p.s.state("tcp1").get("migrating", False):
            r2 = p.s.cli("migrate", "send", "tcp1", "--to", p.to, "--bundle", p.s.base / "tcp1.bundle", "--resend",
                         timeout=600, check=False)
        else:
            _, r2 = send(p, "tcp1", check=False)
        assert "committed" in r2.stdout, r.stdout + r.stderr + r2.stdout + r2.stderr
        raise LockedOut(r.stdout + r.stderr + f" (connections {done[0]}, checked {checked[0]})")
    assert any(c["name"] == "tcp1" for c in p.t.containers())
    assert parts(p) == []
