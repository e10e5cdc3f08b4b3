# SPDX-License-Identifier: GPL-2.0-or-later
"""A review of container migration (docs/MIGRATION.md) as its attackers: the network between the
devices (it carries offers, bundles, receipts and refusals), root on either device, and whoever
hands trustmed a malformed bundle. Each test performs one attack; docs/SECURITY.md "Container
migration" has a row for each.

The two devices come from test_migrate.py's module fixture (a fresh pair for this module)."""
import json
import os
import signal
import stat
import struct
import subprocess
import threading
import time

from test_migrate import (cycle, export, imp, layout, make_container,  # noqa: F401
                          migrating, offer, pair, pytestmark, refused_expired)
from test_attestation import swtpm_installed  # noqa: F401 (fixture)
from test_guestos import env  # noqa: F401 (fixture)
from test_roles import roles_rootfs  # noqa: F401 (fixture)
from test_storage import PIN, PUK, pin_file


def child_pid(d, comm):
    """The pid of d's trustmed's child named comm (its trustme-tpmd)."""
    for e in os.scandir("/proc"):
        if not e.name.isdigit():
            continue
        try:
            st = open(f"/proc/{e.name}/stat").read()
        except OSError:
            continue
        name, rest = st[st.index("(") + 1:st.rindex(")")], st[st.rindex(")") + 2:].split()
        if name == comm and int(rest[1]) == d.proc.pid:
            return int(e.name)
    raise AssertionError(f"no {comm} under trustmed {d.proc.pid}")


def holds_open(pid, path):
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{fd}") == str(path):
                return True
        except OSError:
            pass
    return False


def with_data(p, name):
    """A container of S with its data image (made by its first start)."""
    make_container(p.s, name)
    p.s.cli("start", "--pin-file", pin_file(p.s, PIN), name)
    p.s.cli("stop", name)


def serving(d):
    """trustmed still answers everyone."""
    assert isinstance(d.containers(), list)


def test_a_part_changed_after_its_digest_check_is_refused(pair):
    """Whoever serves the bundle file (a share, a stick, the file's owner) changes the data image
    after trustmed hashed it and before it copies it: the copy is what must match the manifest."""
    p = pair
    with_data(p, "df")
    bundle, lay = cycle(p, "df")
    start, size = lay["parts"]["data.img"]
    tpmd = child_pid(p.t, "trustme-tpmd")
    result = {}
    os.kill(tpmd, signal.SIGSTOP)  # holds the import between the digest check and the copy
    try:
        th = threading.Thread(target=lambda: result.update(r=imp(p, p.t, bundle, check=False)))
        th.start()
        deadline = time.monotonic() + 30
        while not holds_open(p.t.proc.pid, bundle):
            assert time.monotonic() < deadline and th.is_alive(), result
            time.sleep(0.02)
        time.sleep(0.2)  # bundle_open hashes every part before it asks tpmd
        with open(bundle, "r+b") as f:
            f.seek(start + size // 2)
            f.write(b"\xaa" * 4096)
    finally:
        os.kill(tpmd, signal.SIGCONT)
    th.join(60)
    _, r = result["r"]
    assert r.returncode != 0 and "data.img: it changed after its digest was checked" in r.stderr, r.stderr
    assert not any(c["name"] == "df" for c in p.t.containers())
    serving(p.t)


def _replace(data, old, new):
    assert old in data
    return data.replace(old, new, 1)


def test_malformed_bundles_are_refused_before_the_offer_is_spent(pair):
    """Truncations, huge lengths, bad part names and counts, a NUL, trailing bytes, a FIFO: each
    refused with a format error before tpmd is asked, so the genuine bundle still imports."""
    p = pair
    with_data(p, "fz")
    bundle, lay = cycle(p, "fz")
    data = bundle.read_bytes()
    mstart, manifest = lay["manifest"]
    mend = mstart + len(manifest)
    cuts = [0, 7, 8, 11, 12, mstart + 10, mend, mend + 3, lay["wrapped"] + 100, lay["sealed"] + 10,
            lay["sealed"] + 79] + [o + s // 2 for o, s in lay["parts"].values()] + [len(data) - 1]
    cases = {f"cut-{n}": data[:n] for n in cuts}
    cases["manifest-len-huge"] = data[:8] + b"\xff\xff\xff\xff" + data[12:]
    cases["manifest-len-max"] = data[:8] + struct.pack(">I", 8192) + data[12:]
    cases["manifest-len-zero"] = data[:8] + b"\0\0\0\0" + data[12:]
    cases["wrapped-len-huge"] = data[:mend] + b"\xff\xff\xff\xff" + data[mend + 4:]
    cases["wrapped-len-zero"] = data[:mend] + b"\0\0\0\0" + data[mend + 4:]
    cases["trailing"] = data + b"x"
    cases["magic"] = b"TMMIGv3\n" + data[8:]
    cases["version-1"] = b"TMMIGv1\n" + data[8:]
    # In the source's signature: its magic, its length, the chain's length, inside the chain.
    a, (c_off, c_len) = lay["auth"], lay["chain"]
    cuts += [a + 3, a + 20, a + 78, c_off + c_len // 2]
    cases.update({f"cut-{n}": data[:n] for n in cuts})
    cases["sig-magic"] = data[:a] + b"TMMIGsrX" + data[a + 8:]
    cases["sig-len"] = data[:a + 8] + struct.pack(">I", 63) + data[a + 12:]
    cases["chain-len-huge"] = data[:a + 76] + b"\xff\xff\xff\xff" + data[a + 80:]

    def with_manifest(text):
        m = text.encode()
        return data[:8] + struct.pack(">I", len(m)) + m + data[mend:]

    first_part = next(line for line in manifest.splitlines() if line.startswith("part config.json"))
    data_part = next(line for line in manifest.splitlines() if line.startswith("part data.img"))
    for tag, name in (("slash", "../../etc/x"), ("dot", ".token"), ("abs", "/etc/passwd"),
                      ("upper", "DATA.IMG"), ("long", "a" * 70)):
        cases[f"part-name-{tag}"] = with_manifest(_replace(manifest, "part data.img", f"part {name}"))
    cases["part-size-huge"] = with_manifest(_replace(manifest, data_part, data_part.replace(
        data_part.split()[2], "18446744073709551615")))
    cases["part-size-overflow"] = with_manifest(_replace(manifest, data_part, data_part.replace(
        data_part.split()[2], "99999999999999999999999")))
    cases["part-size-negative"] = with_manifest(_replace(manifest, data_part, data_part.replace(
        data_part.split()[2], "-1")))
    cases["part-twice"] = with_manifest(manifest + data_part + "\n")
    cases["parts-17"] = with_manifest(manifest + "".join(
        f"part p{i} 0 {'0' * 64}\n" for i in range(16)))
    cases["config-not-first"] = with_manifest(manifest.replace(first_part + "\n", "") + first_part + "\n")
    cases["no-parts"] = with_manifest(manifest.replace(first_part + "\n", "").replace(data_part + "\n", ""))
    cases["nul"] = with_manifest(_replace(manifest, "name fz", "name f\0"))
    cases["ends-early"] = with_manifest("\n".join(manifest.splitlines()[:4]) + "\n")
    cases["not-v1"] = with_manifest(_replace(manifest, "trustme-migrate-bundle 1", "trustme-migrate-bundle 2"))
    cases["uid-base-huge"] = with_manifest(_replace(manifest, "uid-base ", "uid-base 99999999999"))
    cases["offer-not-hex"] = with_manifest(_replace(manifest, "\noffer ", "\noffer ../"))
    for tag, blob in cases.items():
        path = bundle.with_name(f"{bundle.name}-{tag}")
        path.write_bytes(blob)
        _, r = imp(p, p.t, path, check=False)
        assert r.returncode != 0, tag
        assert "unknown or was used already" not in r.stderr and "refused:" not in r.stderr, (tag, r.stderr)
        assert any(w in r.stderr for w in ("bundle format", "truncated", "SHA-256", "manifest",
                                           "source authentication")), (tag, r.stderr)
    # Not a regular file: a FIFO nobody writes to must not hang trustmed.
    fifo = bundle.with_name(f"{bundle.name}-fifo")
    os.mkfifo(fifo)
    try:
        r = p.t.cli("migrate", "import", fifo, "--out", bundle.with_name("fifo-receipt"), check=False, timeout=20)
        assert r.returncode != 0 and "not a regular file" in r.stderr, r.stderr
    finally:
        fifo.unlink()
    serving(p.t)
    assert stat.S_ISREG(bundle.stat().st_mode)
    # None of them spent the offer: the genuine bundle imports.
    receipt, r = imp(p, p.t, bundle)
    assert "imported fz" in r.stdout
    p.s.cli("migrate", "commit", "fz", "--receipt", receipt)


def pb_fields(buf):
    """The length-delimited fields of a packed protobuf message: {number: bytes} (varints skipped)."""
    out, i = {}, 0
    while i < len(buf):
        key = shift = 0
        while True:
            b = buf[i]
            i += 1
            key |= (b & 0x7f) << shift
            shift += 7
            if b < 0x80:
                break
        if key & 7 == 0:  # a varint (the offer's expiry): skipped
            while buf[i] & 0x80:
                i += 1
            i += 1
            continue
        assert key & 7 == 2, key
        n = shift = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7f) << shift
            shift += 7
            if b < 0x80:
                break
        out[key >> 3] = buf[i:i + n]
        i += n
    return out


def pb_string(number, value):
    def varint(v):
        out = b""
        while v >= 0x80:
            out += bytes([v & 0x7f | 0x80])
            v >>= 7
        return out + bytes([v])
    return varint(number << 3 | 2) + varint(len(value)) + value


def rsa_of_tpm2b_public(blob):
    """The RSA public key in a marshalled TPM2B_PUBLIC (the offer's migration key)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    i = 2 + 2 + 2 + 4  # size, type, nameAlg, objectAttributes
    i += 2 + struct.unpack(">H", blob[i:i + 2])[0]  # authPolicy
    assert struct.unpack(">H", blob[i:i + 2])[0] == 0x0010  # symmetric: TPM_ALG_NULL
    i += 2 + 4 + 2  # symmetric, scheme (OAEP + hash), keyBits
    exp = struct.unpack(">I", blob[i:i + 4])[0] or 65537
    i += 4
    n = struct.unpack(">H", blob[i:i + 2])[0]
    return rsa.RSAPublicNumbers(exp, int.from_bytes(blob[i + 2:i + 2 + n], "big")).public_key()


def assemble(manifest, wrapped, iv, sealed, parts, tail):
    """A bundle's bytes (docs/MIGRATION.md "Bundle"): the head, the parts, then tail (the source's
    signature and chain)."""
    return (b"TMMIGv2\n" + struct.pack(">I", len(manifest)) + manifest + struct.pack(">I", len(wrapped)) +
            wrapped + iv + sealed + b"".join(b for _, b in parts) + tail)


def head_digest(manifest, wrapped, iv, sealed):
    """The bundle's head digest, as the receipt and the source's signature name it."""
    import hashlib
    return hashlib.sha256(struct.pack(">I", len(manifest)) + manifest + struct.pack(">I", len(wrapped)) + wrapped +
                          iv + sealed).hexdigest()


def signature_of(bundle):
    """The source's signature and chain at the end of a bundle."""
    return bundle.read_bytes()[layout(bundle)["auth"]:]


def forge_token_part(head, data_key):
    """A token part of the attacker's making (docs/MIGRATION.md "The token"): its own PIN and PUK,
    no wrong tries. It is sealed under the data key, which the attacker chose too."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    uuid = next(line.split()[1] for line in head if line.startswith("uuid "))
    info = b"trustme migrate token v1"
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=uuid.encode(), info=info).derive(data_key[:64])
    plain = bytes([0, 0]) + struct.pack(">Q", 1024) + os.urandom(2 * (16 + 32))
    iv = os.urandom(12)
    return b"TMTOKv1\n" + iv + AESGCM(key).encrypt(iv, plain, info + b"|" + uuid.encode())


def forge_bundle(genuine, offer_path, config, image, data_key, tail=None, sign=None):
    """What anyone holding the (public) offer can write: a bundle with the genuine bundle's ids,
    the attacker's config, data image and data key, K of the attacker's choosing. Its end is tail,
    by default the genuine bundle's signature and AK chain (the network has them); or sign(text)
    gives it (the attacker's own key)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    import hashlib
    head = [line for line in layout(genuine)["manifest"][1].splitlines() if not line.startswith("part ")]
    parts = [("config.json", config), ("data.img", image), ("token.carried", forge_token_part(head, data_key))]
    manifest = ("\n".join(head) + "\n" + "".join(
        f"part {n} {len(b)} {hashlib.sha256(b).hexdigest()}\n" for n, b in parts)).encode()
    key = rsa_of_tpm2b_public(pb_fields(offer_path.read_bytes())[601])
    k = os.urandom(32)
    wrapped = key.encrypt(k, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    gk = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"trustme migrate bundle v1").derive(k)
    iv = os.urandom(12)
    sealed = AESGCM(gk).encrypt(iv, data_key, manifest)
    if sign:
        ids = dict(line.split(" ", 1) for line in head[1:5])
        text = (f"export\nbundle {ids['bundle']}\noffer {ids['offer']}\nuuid {ids['uuid']}\n"
                f"digest {head_digest(manifest, wrapped, iv, sealed)}\n")
        tail = sign(text.encode())
    elif tail is None:
        tail = signature_of(genuine)
    out = genuine.with_name(genuine.name + "-forged")
    out.write_bytes(assemble(manifest, wrapped, iv, sealed, parts, tail))
    return out


def forged_from(p, name):
    """A container of S exported for a fresh offer of T: (offer, genuine bundle, a forged one that
    carries the genuine signature and chain)."""
    with_data(p, name)
    off, nonce = offer(p, p.t)
    genuine, _ = export(p, name, off, nonce)
    lay = layout(genuine)
    data = genuine.read_bytes()
    c_off, c_size = lay["parts"]["config.json"]
    forged = forge_bundle(genuine, off, data[c_off:c_off + c_size], os.urandom(lay["parts"]["data.img"][1]),
                          os.urandom(64) + bytes(64))
    return off, genuine, forged


def refused_unspent(p, bundle, why):
    """The target refuses bundle naming why, signs no refusal and installs nothing: the offer is
    not spent."""
    receipt, r = imp(p, p.t, bundle, check=False)
    assert r.returncode != 0 and "source authentication" in r.stderr and why in r.stderr, r.stdout + r.stderr
    assert "refused:" not in r.stderr and not receipt.exists(), r.stderr
    serving(p.t)


def test_a_bundle_forged_from_the_public_offer_is_refused(pair):
    """The network sees the offer (it is public: a key, its certification, a quote). It keeps the
    genuine bundle and hands the target one of its own making with the genuine ids and the genuine
    bundle's source signature and AK chain: the target would install the attacker's config, data
    and data key. The source's AK signed the genuine head, not this one: refused before the offer
    is spent, and the genuine bundle imports afterwards and commits."""
    p = pair
    off, genuine, forged = forged_from(p, "fg")
    refused_unspent(p, forged, "signature does not verify")
    assert not any(c["name"] == "fg" for c in p.t.containers())
    receipt, r = imp(p, p.t, genuine)
    assert "imported fg" in r.stdout
    p.s.cli("migrate", "commit", "fg", "--receipt", receipt)


def test_a_bundle_without_or_with_another_source_signature_is_refused(pair):
    """The network strips the signature; puts the signature of another genuine bundle of the same
    source on it (for another offer, or the same container's earlier export: a replay or a splice
    of two genuine bundles); swaps in another device's valid AK chain (the target's own, same PKI)
    with the genuine signature; or signs the forged head with its own key under a CA of its own
    making. Each refused before the offer is spent; the genuine bundle imports."""
    p = pair
    off, genuine, forged = forged_from(p, "fs")
    data = genuine.read_bytes()
    lay = layout(genuine)
    stripped = genuine.with_name(genuine.name + "-stripped")
    stripped.write_bytes(data[:lay["auth"]])
    refused_unspent(p, stripped, "carries no signature of its source")
    # Another genuine bundle (another container, another offer) of the same source: its signature.
    make_container(p.s, "fo")
    other, _, other_offer = cycle(p, "fo", lifetime=1)
    spliced = genuine.with_name(genuine.name + "-spliced")
    spliced.write_bytes(data[:lay["auth"]] + signature_of(other))
    refused_unspent(p, spliced, "signature does not verify")
    # The genuine signature with another device's genuine AK certificate chain.
    chain = json.loads(p.t.cli("device", "info", "--json").stdout)["cert_chain_pem"].encode()
    sig_off, _ = lay["sig"]
    swapped = genuine.with_name(genuine.name + "-other-ak")
    swapped.write_bytes(data[:sig_off + 64] + struct.pack(">I", len(chain)) + chain)
    refused_unspent(p, swapped, "signature does not verify")
    # The forged head signed with the attacker's own key, its certificate from its own CA.
    c_off, c_size = lay["parts"]["config.json"]
    signed = forge_bundle(genuine, off, data[c_off:c_off + c_size], os.urandom(lay["parts"]["data.img"][1]),
                          os.urandom(64) + bytes(64), sign=self_signer())
    refused_unspent(p, signed, "source's AK certificate chain")
    # The same with a clientAuth certificate from another CA under the General root (the GuestOS
    # Signing CA's key, which its holder has): the chain verifies, the issuer is no Device CA.
    gos_ca = (p.env.cert("guestos-ca"), p.env.cert("guestos-ca").with_suffix(".key"),
              p.env.passfile.read_text().strip())
    signed = forge_bundle(genuine, off, data[c_off:c_off + c_size], os.urandom(lay["parts"]["data.img"][1]),
                          os.urandom(64) + bytes(64), sign=self_signer(gos_ca))
    refused_unspent(p, signed, "was not issued by the Device CA")
    receipt, r = imp(p, p.t, genuine)
    assert "imported fs" in r.stdout
    p.s.cli("migrate", "commit", "fs", "--receipt", receipt)
    p.s.cli("migrate", "abort", "fo", "--refusal", refused_expired(p, p.t, other, other_offer))


def test_an_offer_is_good_for_the_source_whose_nonce_it_was_made_over(pair):
    """T's offer was made over S's nonce (`trustme migrate nonce` on S), which names S's AK. Root on
    another device of the PKI (its AK certificate from the same Device CA) sees the public offer and
    signs a bundle of its own for it: its signature and chain are genuine, so before the binding T
    installed that device's container and signed a receipt. Now tpmd refuses it before the offer is
    spent, naming the check; no refusal is signed, and S's genuine bundle imports afterwards. And T
    itself, a device of the PKI too, exporting a container of its own to an offer over S's nonce:
    its own export refuses, before the PIN is tried."""
    p = pair
    off, genuine, _ = forged_from(p, "ob")
    data = genuine.read_bytes()
    lay = layout(genuine)
    c_off, c_size = lay["parts"]["config.json"]
    device_ca = (p.env.cert("device-ca"), p.env.cert("device-ca").with_suffix(".key"),
                 p.env.passfile.read_text().strip())
    impostor = forge_bundle(genuine, off, data[c_off:c_off + c_size], os.urandom(lay["parts"]["data.img"][1]),
                            os.urandom(64) + bytes(64), sign=self_signer(device_ca, cn="device-x"))
    receipt, r = imp(p, p.t, impostor, check=False)
    assert r.returncode != 0 and "source binding" in r.stderr and "another source device" in r.stderr, r.stderr
    assert "source authentication" not in r.stderr, r.stderr  # the signature itself is genuine
    assert "refused:" not in r.stderr and not receipt.exists(), r.stderr
    assert not any(c["name"] == "ob" for c in p.t.containers())
    serving(p.t)
    # T as a source, for an offer (its own) over S's nonce.
    make_container(p.t, "tx")
    t_off, t_nonce = offer(p, p.t)
    p.n += 1
    out = p.t.base / f"bundle-{p.n}"
    r = p.t.cli("migrate", "export", "tx", "--offer", t_off, "--nonce", t_nonce, "--out", out,
                "--pin-file", pin_file(p.t, PIN, PUK), *p.trust, "--reference", p.refs, check=False)
    assert r.returncode == 1 and "source binding: the nonce does not name this device's AK" in r.stderr, r.stderr
    assert not out.exists() and not p.t.state("tx").get("migrating", False)
    # (Not started: T's quotes would show its config, which the reference values do not approve.)
    p.t.cli("remove", "tx")
    # The genuine bundle: it imports and commits.
    receipt, r = imp(p, p.t, genuine)
    assert "imported ob" in r.stdout
    p.s.cli("migrate", "commit", "ob", "--receipt", receipt)
    events = [e for e in p.t.audit_events() if e["event"] == "migrate.import" and "source binding" in str(e)]
    assert events, p.t.audit_events()[-5:]


def self_signer(ca=None, cn="device-s"):
    """sign(text) -> the tail of a bundle signed by a key of the attacker's, with a clientAuth
    certificate from a CA of its own (named as the PKI's are), or from ca: (certificate path,
    encrypted key path, passphrase), another CA of the PKI."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject, issuer, pub, signer, ca):
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer).public_key(pub)
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                          crl_sign=ca, encipher_only=False, decipher_only=False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False))
        if not ca:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        return b.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    if ca:
        ca_cert = x509.load_pem_x509_certificate(ca[0].read_bytes())
        ca_key = serialization.load_pem_private_key(ca[1].read_bytes(), ca[2].encode())
        chain = cert(cn, ca_cert.subject, key.public_key(), ca_key, False) + ca[0].read_bytes()
    else:
        chain = cert(cn, name("Device CA"), key.public_key(), ca_key, False) + \
            cert("Device CA", name("Device CA"), ca_key.public_key(), ca_key, True)

    def sign(text):
        r, s = decode_dss_signature(key.sign(b"trustme-migrate-v1\0" + text, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return b"TMMIGsrc" + struct.pack(">I", 64) + sig + struct.pack(">I", len(chain)) + chain
    return sign


def test_a_receipt_turned_into_a_refusal_or_another_migrations_refusal(pair):
    """The network holds a receipt (the target imported) and a refusal of another migration; it
    wants the source to release its lock too: two running copies."""
    p = pair
    make_container(p.s, "rr")
    make_container(p.s, "rx")
    bundle, lay = cycle(p, "rr")
    receipt, r = imp(p, p.t, bundle)
    # The receipt with a "refused" field added: the signature covers "receipt ...", not a refusal.
    turned = receipt.with_name(receipt.name + "-refusal")
    turned.write_bytes(receipt.read_bytes() + pb_string(609, b"whatever"))
    r = p.s.cli("migrate", "abort", "rr", "--refusal", turned, check=False)
    assert r.returncode != 0 and "receipt signature" in r.stderr, r.stderr
    # A genuine refusal of another migration (rx, its offer expired) for rr's lock.
    bx, lx, ox = cycle(p, "rx", lifetime=1)
    refusal = refused_expired(p, p.t, bx, ox)
    r = p.s.cli("migrate", "abort", "rr", "--refusal", refusal, check=False)
    assert r.returncode != 0 and "another bundle" in r.stderr, r.stderr
    assert migrating(p.s, "rr")
    # The receipt with the refusal's ids spliced in (the signature is the receipt's).
    f = pb_fields(receipt.read_bytes())
    g = pb_fields(refusal.read_bytes())
    spliced = receipt.with_name(receipt.name + "-spliced")
    spliced.write_bytes(b"".join(pb_string(n, g[n] if n in (600, 606, 607) else v) for n, v in f.items()))
    r = p.s.cli("migrate", "commit", "rx", "--receipt", spliced, check=False)
    assert r.returncode != 0 and "receipt" in r.stderr, r.stderr
    p.s.cli("migrate", "abort", "rx", "--refusal", refusal)
    p.s.cli("migrate", "commit", "rr", "--receipt", receipt)
    assert not migrating(p.s, "rx")
    p.s.cli("start", "--pin-file", pin_file(p.s, PIN), "rx")
    p.s.cli("stop", "rx")


def test_two_imports_of_one_bundle_at_once(pair):
    """The network hands the target the same bundle twice at once: one import, one clean
    failure, and no refusal (a refusal next to a receipt would release the source's lock)."""
    p = pair
    with_data(p, "tw")
    bundle, _ = cycle(p, "tw")
    results = []
    ths = [threading.Thread(target=lambda: results.append(imp(p, p.t, bundle, check=False))) for _ in range(2)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(120)
    ok = [(out, r) for out, r in results if r.returncode == 0]
    bad = [r for _, r in results if r.returncode != 0]
    assert len(ok) == 1 and len(bad) == 1, [r.stderr for _, r in results]
    assert "refused:" not in bad[0].stderr and ("exists here already" in bad[0].stderr or
                                               "unknown or was used already" in bad[0].stderr), bad[0].stderr
    p.s.cli("migrate", "commit", "tw", "--receipt", ok[0][0])


def test_a_restored_key_blob_does_not_decrypt_a_second_time(pair):
    """Root on the target keeps a copy of the offer's key blobs, lets the import spend the offer,
    removes the container, puts the blobs back and imports the same bundle again. The spend is in
    the TPM's anchor table, with the install: no decryption, and no signed refusal either (which
    would let the source abort while a copy of the container may be restored here)."""
    p = pair
    with_data(p, "sp")
    off, nonce = offer(p, p.t)
    bundle, _ = export(p, "sp", off, nonce)
    offer_id = pb_fields(off.read_bytes())[600].decode()
    blobs = {f: (f.read_bytes(), f.stat()) for f in p.t.base.rglob(f"migrate/{offer_id}.p*")}
    assert len(blobs) == 2, blobs
    receipt, _ = imp(p, p.t, bundle)
    p.t.cli("remove", "sp")
    for f, (b, st) in blobs.items():
        f.write_bytes(b)
        os.chown(f, st.st_uid, st.st_gid)  # as tpmd's user left them
        os.chmod(f, 0o600)
    try:
        _, r = imp(p, p.t, bundle, check=False)
        assert r.returncode != 0, "the restored key decrypted the bundle a second time: " + r.stdout
        assert "refused:" not in r.stderr and "a container was installed from it here" in r.stderr, r.stderr
    finally:
        p.s.cli("migrate", "commit", "sp", "--receipt", receipt)


def test_a_restricted_container_cannot_migrate(make_daemon, roles_rootfs):  # noqa: F811
    """Root in a container with the restricted control socket asks for an offer, an import (of a
    bundle it wrote) and an abort: migrate is an admin request (docs/ROLES.md)."""
    from conftest import TRUSTME
    from test_roles import NOT_ALLOWED, create
    from tools import tool
    d = make_daemon()
    create(d, roles_rootfs, "r", control="restricted")
    d.cli("start", "r")
    pid = d.state("r")["pid"]
    sock = f"/proc/{pid}/root/run/trustme/control.sock"
    # The host's full CLI in the container's pid namespace: any client the container could run.
    for args in (("migrate", "offer", "--nonce", "00" * 32, "--out", d.base / "o"),
                 ("migrate", "import", "/tmp/b", "--out", d.base / "r"), ("migrate", "abort", "r")):
        r = subprocess.run([tool("nsenter"), "-t", str(pid), "-p", str(TRUSTME), "--socket", sock, *map(str, args)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and NOT_ALLOWED in r.stderr, (args, r.stderr)
    assert not (d.data_dir / "migrate").exists() and not list(d.base.rglob("migrate/*.priv"))
    d.cli("stop", "r")


def test_the_source_restored_from_a_backup_after_commit_does_not_start(pair):
    """Root on the source copies the container's files (its dir, its token files) before the
    commit, puts them back after it and restarts trustmed: a second running copy, if the
    container started."""
    import shutil

    def copy(a, b):
        if a.is_dir() and not a.is_symlink():
            shutil.copytree(a, b, symlinks=True)
        else:
            shutil.copy2(a, b, follow_symlinks=False)
        for src in [a, *(a.rglob("*") if a.is_dir() and not a.is_symlink() else [])]:
            st = src.lstat()  # owners too, as root would keep them
            os.chown(b / src.relative_to(a), st.st_uid, st.st_gid, follow_symlinks=False)
    p = pair
    with_data(p, "bk")
    uuid = p.s.state("bk")["uuid"]
    bundle, _ = cycle(p, "bk")
    receipt, _ = imp(p, p.t, bundle)
    saved = p.s.base / "backup-bk"
    found = [f for f in p.s.data_dir.rglob(f"*{uuid}*") if not any(a.name.find(uuid) >= 0 for a in f.parents)]
    assert found
    for f in found:
        dst = saved / f.relative_to(p.s.base)
        dst.parent.mkdir(parents=True, exist_ok=True)
        copy(f, dst)
    p.s.cli("migrate", "commit", "bk", "--receipt", receipt)
    p.s.kill9()
    for f in found:
        if f.name.endswith(".tombstone"):
            continue
        if f.exists():
            (shutil.rmtree if f.is_dir() else os.unlink)(f)
        src = saved / f.relative_to(p.s.base)
        copy(src, f)
    lock = next((f for f in p.s.base.rglob("migrating") if uuid in str(f)), None)
    if lock:
        lock.unlink()  # the lock from before the export is gone too
    p.s.start()
    assert any(c["name"] == "bk" for c in p.s.containers())  # the restored files are a container again
    r = p.s.cli("start", "--pin-file", pin_file(p.s, PIN), "bk", check=False)
    assert r.returncode != 0 and "the TPM holds no state for its token" in r.stderr, r.stderr
    assert p.s.state("bk")["state"] == "stopped"
    p.s.cli("remove", "bk")


def test_the_source_lock_removed_by_root_does_not_let_it_start(pair):
    """Root on the source, after the target imported (or before), deletes the lock file and
    restarts trustmed: two running copies if the container starts. The TPM anchors the lock
    (an entry of tpmd's anchor table): the start is refused, with the reason in the state and
    the audit log, and the commit still works with a genuine receipt once the file is back."""
    p = pair
    with_data(p, "lk")
    bundle, _ = cycle(p, "lk")
    receipt, _ = imp(p, p.t, bundle)
    lock = p.s.data_dir / "containers" / p.s.state("lk")["uuid"] / "migrating"
    saved = lock.read_bytes()
    p.s.kill9()
    lock.unlink()
    p.s.start()
    r = p.s.cli("start", "--pin-file", pin_file(p.s, PIN), "lk", check=False)
    try:
        assert r.returncode != 0, "the source started the container the target imported: two running copies"
    finally:
        if r.returncode == 0:
            p.s.cli("stop", "lk")
    assert "its lock file was removed" in r.stderr, r.stderr
    st = p.s.state("lk")
    assert st["state"] == "stopped" and "its lock file was removed" in st.get("last_error", ""), st
    assert any(e.get("event") == "migrate.lock" and e.get("result") == "fail" for e in p.s.audit_events())
    # Without the file there is nothing to abort (and nothing to commit with): still no start.
    r = p.s.cli("migrate", "abort", "lk", check=False)
    assert r.returncode != 0
    lock.write_bytes(saved)
    p.s.cli("migrate", "commit", "lk", "--receipt", receipt)
    assert not any(c["name"] == "lk" for c in p.s.containers())


def test_an_older_lock_file_restored_with_its_refusal_does_not_release(pair):
    """Root on the source keeps the lock file and the target's signed refusal of an earlier,
    refused migration of the container; after its next export (which the target imports) it puts
    the old lock file back and aborts with the old refusal: both would be genuine, and the
    container would start here while the target runs it. The TPM anchors which lock stands."""
    p = pair
    with_data(p, "ol")
    uuid = p.s.state("ol")["uuid"]
    lock = p.s.data_dir / "containers" / uuid / "migrating"
    b1, l1, o1 = cycle(p, "ol", lifetime=1)
    old_lock = lock.read_bytes()
    refusal = refused_expired(p, p.t, b1, o1)
    p.s.cli("migrate", "abort", "ol", "--refusal", refusal)
    b2, _ = cycle(p, "ol")
    receipt, _ = imp(p, p.t, b2)
    new_lock = lock.read_bytes()
    for restart in (False, True):
        lock.write_bytes(old_lock)
        if restart:
            p.s.kill9()
            p.s.start()
        r = p.s.cli("migrate", "abort", "ol", "--refusal", refusal, check=False)
        assert r.returncode != 0 and "not the one the TPM anchored" in r.stderr, r.stderr
        r = p.s.cli("migrate", "abort", "ol", check=False)  # an "exporting" lock would need no refusal
        assert r.returncode != 0, r.stdout
        r = p.s.cli("start", "--pin-file", pin_file(p.s, PIN), "ol", check=False)
        assert r.returncode != 0 and "migrating" in r.stderr, r.stderr
    # A lock file edited to say the export never completed is refused the same way.
    lock.write_bytes(new_lock.replace(b"state exported", b"state exporting"))
    r = p.s.cli("migrate", "abort", "ol", check=False)
    assert r.returncode != 0 and "only the target's signed refusal" in r.stderr, r.stderr
    lock.write_bytes(new_lock)
    p.s.cli("migrate", "commit", "ol", "--receipt", receipt)
