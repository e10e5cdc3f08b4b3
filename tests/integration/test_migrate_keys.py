# SPDX-License-Identifier: GPL-2.0-or-later
"""Migration of a container with its vTPM, keystore and secure storage (docs/MIGRATION.md
"Carried keys"), between two devices with their own trustmed, tpmd and swtpm: a key made in the
vTPM on the source signs on the target (same public key, the signature verifies), a keystore key
signs with the same public key, a secure storage object reads back the same, the vTPM's EK
certificates are the target's issuer's, and the source no longer has the container. Every new
part of the bundle is checked (an altered one is refused, naming it; an altered anchor line fails
the GCM tag), and kill -9 at the new steps leaves exactly one device that can start it.

The module has its own two devices (the round trip starts a vTPM on the target, which its
later quotes would show): the source S and the target T, each with a vTPM issuer."""
import base64
import hashlib
import json
import os
import subprocess

import pytest

from conftest import process_gone, wait_for
from ksclient import Keystore, auths, params
from test_attestation import make_refs, pki_of, swtpm_installed  # noqa: F401 (fixture)
from test_device import PKI_TOOL, provision, secret_ok
from test_guestos import env  # noqa: F401 (fixture)
from test_guestos import install, start_with_device
from test_migrate import device, flipped, imp, layout, migrating, refused_expired
from test_migrate import offer as migrate_offer
from test_migrate_crash import arm, hooks_built, names, restart_trustmed
from test_migrate_review import assemble, pb_fields, rsa_of_tpm2b_public, signature_of
from test_storage import KDF, PIN, PUK, pin_file  # noqa: F401
from test_vtpm import ENV, tpm_rootfs  # noqa: F401 (fixture)
from tools import tool

import conftest

PERSISTENT = "0x81000005"


def issuer(d, env, tag):
    """d's vTPM issuer, certified by env's Device CA (docs/VTPM.md "EK certificates")."""
    csr, pem = d.base / f"issuer-{tag}.csr", d.base / f"issuer-{tag}.pem"
    d.cli("device", "csr", "--vtpm-issuer", "--out", csr)
    subprocess.run([str(PKI_TOOL), "issue", "--pki", str(env.pki), "--ca", "device", "--profile", "vtpm-issuer",
                    "--csr", str(csr), "--out", str(pem), "--passphrase-file", str(env.passfile)], check=True,
                   capture_output=True)
    d.cli("device", "cert", "install", pem, "--chain", env.cert("device-ca"))
    return json.loads(d.cli("device", "info", "--json").stdout)["vtpm_issuer_chain_pem"]


@pytest.fixture(scope="module")
def kp(env, test_root, rootfs, tpm_rootfs):  # noqa: F811 (fixtures)
    s = device(test_root, rootfs, "ks")
    t = device(test_root, rootfs, "kt")
    try:
        start_with_device(s, env.device())
        secret_ok(s)
        provision(s, pki_of(env), s.base, cn="device-ks")
        conftest.provisioned_device(t, env, "device-kt", like=s)
        gos = env.build("tpmos", 1, tree=str(tpm_rootfs),
                        extra=("--init", "/bin/sh", "--arg", "-c", "--arg", "trap 'exit 0' TERM; sleep 1000000 & wait"))
        install(s, gos)
        install(t, gos)
        chains = {"s": issuer(s, env, "s"), "t": issuer(t, env, "t")}
        # The target starts no container before its offers: its device config and the GuestOS.
        refs = make_refs(env, s.base / "refs.json", [gos], [("device-config", t.data_dir / "device.json")])
        trust = ["--ak-anchor", env.cert("general-root-ca"), "--device-ca", env.cert("device-ca"),
                 "--rim-anchor", env.cert("root-ca"), "--rim-ca", env.cert("sub-ca"),
                 "--crl", env.pki / "crls.pem"]
        pcrs = json.loads(refs.read_text())["pcrs"]
        from types import SimpleNamespace
        yield SimpleNamespace(s=s, t=t, refs=refs, trust=trust, pcrs=pcrs, n=0, chains=chains)
    finally:
        t.teardown()
        s.teardown()


pytestmark = pytest.mark.skipif(not hooks_built(), reason="needs a build with -Dtest_hooks=true")


def make(d, name):
    cfg = {"name": name, "guestos": {"name": "tpmos"}, "token": {"type": "soft"}, "data_size_mb": 16,
           "vtpm": True, "keystore": True, "env": ENV}
    path = d.configs / f"{name}.json"
    path.write_text(json.dumps(cfg))
    d.cli("create", path)
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, PUK), name)


def offer(p, lifetime=None):
    return migrate_offer(p, p.t, lifetime)


def export(p, name, check=True, lifetime=None):
    off, nonce = offer(p, lifetime)
    p.last_offer = off
    p.n += 1
    out = p.s.base / f"bundle-{p.n}"
    r = p.s.cli("migrate", "export", name, "--offer", off, "--nonce", nonce, "--out", out,
                "--pin-file", pin_file(p.s, PIN, PUK), *p.trust, "--reference", p.refs, check=check)
    return out, r


def starts(d, name):
    return d.cli("start", "--pin-file", pin_file(d, PIN), name, check=False)


def ks(d, name):
    return Keystore(f"/proc/{d.state(name)['pid']}/root/run/trustme/keystore.sock")


def run(*a):
    return subprocess.run([str(x) for x in a], capture_output=True, text=True)


def anchored(d):
    """The names in d's tpmd anchor table, from its newest table file (docs/ATTESTATION.md)."""
    best = None
    for f in (d.data_dir / "tpm").glob("anchor.table*"):
        text = f.read_text(errors="replace")
        lines = text.splitlines()
        if not text.startswith("trustme-anchor 1\n") or len(lines) < 2:
            continue
        version = int(lines[1].split()[1])
        if best is None or version > best[0]:
            best = (version, lines[2:])
    assert best, list((d.data_dir / "tpm").iterdir())
    return {line.split(" ", 1)[0] for line in best[1]}


def with_manifest(bundle, manifest, tag):
    """bundle with its manifest replaced (the rest as it was: the source's signature no longer
    covers it, and what the manifest names is checked first)."""
    data = bundle.read_bytes()
    mlen = int.from_bytes(data[8:12], "big")
    out = bundle.with_name(f"{bundle.name}-{tag}")
    out.write_bytes(data[:8] + len(manifest).to_bytes(4, "big") + manifest + data[12 + mlen:])
    return out


# kill -9 of the source's trustmed after it read the anchors (nothing written yet), of the
# target's after it wrote the carried anchors (nothing installed yet): one device has it.
def test_source_killed_reading_the_anchors_keeps_it(kp):
    p = kp
    make(p.s, "ka")
    arm(p.s.data_dir, "migrate-export-anchors")
    bundle, r = export(p, "ka", check=False)
    assert r.returncode != 0
    restart_trustmed(p.s)
    assert not bundle.exists() and not list(p.s.base.glob("bundle-*.part"))
    assert not migrating(p.s, "ka")
    r = starts(p.s, "ka")
    assert r.returncode == 0, r.stderr
    with ks(p.s, "ka") as k:  # keys, a key index, a store and a TP object for the next cases to carry
        k.generate("ka-ec", "ec", 256, auths(["sign"], ["sha256"]))
        k.commit([("o", b"x")])
        k.tp_write("ka-tp", b"tp")
    p.s.cli("stop", "ka")
    assert "ka" not in names(p.t)


def test_target_killed_after_writing_the_anchors_refuses_on_retry(kp):
    p = kp
    bundle, _ = export(p, "ka")
    assert "anchor vtpm " in layout(bundle)["manifest"][1]
    arm(p.t.data_dir, "migrate-import-anchored")
    _, r = imp(p, p.t, bundle, check=False)
    assert r.returncode != 0
    restart_trustmed(p.t)
    refusal, r = imp(p, p.t, bundle, check=False)
    assert r.returncode == 1 and "refused:" in r.stderr and "spent here" in r.stderr, r.stderr
    assert "ka" not in names(p.t) and not list((p.t.data_dir / "containers").glob(".new-*"))
    p.s.cli("migrate", "abort", "ka", "--refusal", refusal)
    r = starts(p.s, "ka")
    assert r.returncode == 0, r.stderr
    p.s.cli("stop", "ka")


def test_altered_carried_parts_and_anchor_lines_are_refused(kp):
    p = kp
    bundle, _ = export(p, "ka", lifetime=1)
    off = p.last_offer
    lay = layout(bundle)
    carried = [n for n in lay["parts"] if n.startswith(("vtpm", "keystore/"))]
    assert "vtpm/tpm2.state" in carried and "vtpm-ek" in carried
    assert any(n.startswith("keystore/index/") for n in carried) and "keystore/ka-ec.key" in carried, carried
    assert all(f"\nanchor {k} " in lay["manifest"][1] for k in ("vtpm", "sstore", "sstore-keys"))
    for name in carried:
        start, size = lay["parts"][name]
        for at in {start, start + size - 1} if size else ():  # (the store's empty lock file)
            _, r = imp(p, p.t, flipped(bundle, at, f"{name.replace('/', '_')}-{at}"), check=False)
            assert r.returncode != 0 and f"part {name}: its SHA-256 is not the manifest's" in r.stderr, r.stderr
    # An anchor value altered in the manifest: the source's signature over the head refuses it
    # before the offer is spent; the offer then expires and its signed refusal lets the source
    # abort.
    text = lay["manifest"][1]
    at = lay["manifest"][0] + text.index("anchor vtpm ") + len("anchor vtpm ") + 3
    data = bytearray(bundle.read_bytes())
    data[at] = ord("1") if data[at] == ord("0") else ord("0")  # another hex digit: the format holds
    altered = bundle.with_name(bundle.name + "-anchor")
    altered.write_bytes(bytes(data))
    _, r = imp(p, p.t, altered, check=False)
    assert r.returncode != 0 and "source authentication" in r.stderr and "refused:" not in r.stderr, r.stderr
    # The tamper-proof object, a manifest line (docs/MIGRATION.md "Carried keys"): its value
    # altered, the signature refuses it; more objects than a store's quota of 8 (the index listing
    # them too), or an object its index does not list, are refused as the bundle's format. Each
    # before the offer is spent.
    assert "\ntp-index " in text and "\ntp ka-tp " in text, text
    at = lay["manifest"][0] + text.index("\ntp ka-tp ") + len("\ntp ka-tp ") + 5
    data = bytearray(bundle.read_bytes())
    data[at] = ord("1") if data[at] == ord("0") else ord("0")
    altered = bundle.with_name(bundle.name + "-tp")
    altered.write_bytes(bytes(data))
    _, r = imp(p, p.t, altered, check=False)
    assert r.returncode != 0 and "source authentication" in r.stderr and "refused:" not in r.stderr, r.stderr
    lines = text.splitlines()
    value = next(line for line in lines if line.startswith("tp ka-tp ")).split()[2]
    head = [line for line in lines if not line.startswith("tp")]
    ids = [f"t{i}" for i in range(9)]
    many = "\n".join(head + ["tp-index " + "".join(i.encode().hex() + "00" for i in ids)] +
                     [f"tp {i} {value}" for i in ids]) + "\n"
    _, r = imp(p, p.t, with_manifest(bundle, many.encode(), "tp-quota"), check=False)
    assert r.returncode != 0 and "quota of 8" in r.stderr and "refused:" not in r.stderr, r.stderr
    unlisted = "\n".join(head + [next(line for line in lines if line.startswith("tp-index ")), f"tp other {value}"])
    _, r = imp(p, p.t, with_manifest(bundle, (unlisted + "\n").encode(), "tp-unlisted"), check=False)
    assert r.returncode != 0 and "not the next one its index lists" in r.stderr, r.stderr
    assert "ka" not in names(p.t)
    p.s.cli("migrate", "abort", "ka", "--refusal", refused_expired(p, p.t, bundle, off))
    assert not migrating(p.s, "ka")


def test_rolled_back_vtpm_state_is_not_exported(kp):
    """Root on the source puts another vTPM state file in place before the export: the export
    refuses it (the target would anchor and serve it otherwise)."""
    p = kp
    uuid = p.s.state("ka")["uuid"]
    state = p.s.data_dir / "containers" / uuid / "vtpm" / "tpm2.state"
    saved, st = state.read_bytes(), state.stat()
    state.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))
    try:
        _, r = export(p, "ka", check=False)
        assert r.returncode != 0 and "not the one anchored" in r.stderr, r.stderr
        assert not migrating(p.s, "ka")
    finally:
        state.write_bytes(saved)
        os.chown(state, st.st_uid, st.st_gid)


def forge(genuine, offer_path, uuid, anchors):
    """A bundle anyone holding the public offer can make (test_migrate_review.py), here with
    another manifest UUID and anchor lines."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    lay = layout(genuine)
    data = genuine.read_bytes()
    head = [line if not line.startswith("uuid ") else f"uuid {uuid}"
            for line in lay["manifest"][1].splitlines() if not line.startswith(("part ", "anchor "))]
    parts = [(n, data[o:o + size]) for n, (o, size) in lay["parts"].items() if n in ("config.json", "data.img")]
    manifest = ("\n".join(head) + "\n" + "".join(
        f"part {n} {len(b)} {hashlib.sha256(b).hexdigest()}\n" for n, b in parts) +
        "".join(f"anchor {k} {v}\n" for k, v in anchors)).encode()
    key = rsa_of_tpm2b_public(pb_fields(offer_path.read_bytes())[601])
    k = os.urandom(32)
    wrapped = key.encrypt(k, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    gk = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"trustme migrate bundle v1").derive(k)
    iv = os.urandom(12)
    sealed = AESGCM(gk).encrypt(iv, os.urandom(64) + bytes(64), manifest)
    out = genuine.with_name(genuine.name + "-forged")
    out.write_bytes(assemble(manifest, wrapped, iv, sealed, parts, signature_of(genuine)))
    return out


def test_carried_anchors_cannot_name_another_containers_entries(kp):
    """A bundle made from the public offer whose manifest UUID is not a UUID: "<ka's uuid>.keys"
    (its "sstore" anchor would be ka's key index entry) is longer than the field and refused as a
    format error; one of the field's length ending ".keys" gets to the anchors (after the spend) and
    is refused before any entry is written: the manifest's UUID must be a UUID."""
    p = kp
    make(p.s, "kf")
    off, nonce = offer(p)
    p.n += 1
    genuine = p.s.base / f"bundle-{p.n}"
    p.s.cli("migrate", "export", "kf", "--offer", off, "--nonce", nonce, "--out", genuine,
            "--pin-file", pin_file(p.s, PIN, PUK), *p.trust, "--reference", p.refs)
    victim = p.s.state("ka")["uuid"]
    bad = forge(genuine, off, f"{victim}.keys", [("sstore", "00" * 41)])
    _, r = imp(p, p.t, bad, check=False)
    assert r.returncode != 0 and 'manifest line "uuid" expected' in r.stderr, r.stderr
    # One that parses is refused before the offer is spent: the source did not sign it. (The
    # target's UUID check, `the manifest's uuid is not a UUID`, stays for a source that did.)
    bad = forge(genuine, off, victim[:-5] + ".keys", [("sstore", "00" * 41)])
    _, r = imp(p, p.t, bad, check=False)
    assert r.returncode != 0 and "source authentication" in r.stderr and "refused:" not in r.stderr, r.stderr
    assert not any(c["name"] == "kf" for c in p.t.containers())


def test_vtpm_keystore_and_secure_storage_move_with_the_container(kp, tmp_path):
    p = kp
    make(p.s, "v")
    r = starts(p.s, "v")
    assert r.returncode == 0, r.stderr
    # A key in the vTPM, made persistent; its public part and a signature.
    p.s.sh("v", f"cd /root && tpm2_createprimary -C o -c p.ctx >/dev/null && "
                f"tpm2_create -C p.ctx -G ecc:ecdsa-sha256 -u k.pub -r k.priv >/dev/null && "
                f"tpm2_load -C p.ctx -u k.pub -r k.priv -c k.ctx >/dev/null && "
                f"tpm2_evictcontrol -C o -c k.ctx {PERSISTENT} >/dev/null && "
                f"tpm2_readpublic -c {PERSISTENT} -f pem -o k.pem >/dev/null && sync")
    pem_s = p.s.sh("v", "cat /root/k.pem").stdout
    assert "BEGIN PUBLIC KEY" in pem_s
    with ks(p.s, "v") as k:
        k.generate("mig-ec", "ec", 256, auths(["sign", "verify"], ["sha256"]))
        ks_pub = k.public_key("mig-ec")
        k.commit([("doc", b"secure storage object carried")])
        k.tp_write("tp-carried", b"tamper-proof object carried")
    ek_s = json.loads(p.s.cli("vtpm", "info", "--json", "v").stdout)["eks"]
    assert ek_s and all(e.get("cert_issuer") for e in ek_s), ek_s
    uuid = p.s.state("v")["uuid"]
    p.s.cli("stop", "v")
    wait_for(lambda: not json.loads(p.s.cli("vtpm", "info", "--json", "v").stdout).get("running"), timeout=20,
             what="the vTPM saved")
    standby = wait_for(lambda: (json.loads(p.s.cli("vtpm", "info", "--json", "v").stdout).get("standby") or {})
                       .get("pid"), timeout=60, interval=0.1, what="the source's standby trustme-vtpm")

    bundle, r = export(p, "v")
    # The container is to start on the target: its standby here goes (docs/VTPM.md "The standby").
    wait_for(lambda: process_gone(standby), timeout=30, what="the standby to go at the export")
    assert "standby" not in json.loads(p.s.cli("vtpm", "info", "--json", "v").stdout)
    lay = layout(bundle)
    assert {"vtpm/tpm2.state", "vtpm-ek", "keystore/mig-ec.key"} <= set(lay["parts"]), lay["parts"]
    assert not any(n.startswith("vtpm-ek-cert") for n in lay["parts"])
    receipt, r = imp(p, p.t, bundle)
    assert f"sstore-tp/{uuid}/tp-carried" in anchored(p.s)
    p.s.cli("migrate", "commit", "v", "--receipt", receipt)
    assert "v" not in names(p.s) and not (p.s.data_dir / "keystore" / uuid).exists()
    # The commit's erase removed the tamper-proof objects from the source's table too.
    wait_for(lambda: not any(n.startswith(f"sstore-tp/{uuid}") for n in anchored(p.s)), timeout=30,
             interval=0.5, what="the source's tamper-proof entries removed")
    assert starts(p.s, "v").returncode != 0

    # The first start moves the carried keystore into place: killed after re-owning it, before
    # the move, the next start finishes it.
    arm(p.t.data_dir, "keystore-adopt-owned")
    assert starts(p.t, "v").returncode != 0
    restart_trustmed(p.t)
    assert (p.t.data_dir / "containers" / uuid / "keystore").exists()
    r = starts(p.t, "v")
    assert r.returncode == 0, r.stderr + p.t.log()[-3000:]
    try:
        # The vTPM key: the same public key, and its signature on the target verifies.
        p.t.sh("v", f"cd /root && echo carried > m && tpm2_sign -c {PERSISTENT} -g sha256 -f plain -o sig m && "
                    f"tpm2_readpublic -c {PERSISTENT} -f pem -o k2.pem >/dev/null")
        assert p.t.sh("v", "cat /root/k2.pem").stdout == pem_s
        root = tmp_path
        (root / "k.pem").write_text(pem_s)
        (root / "m").write_bytes(b"carried\n")
        (root / "sig").write_bytes(bytes.fromhex(p.t.sh("v", "od -An -v -tx1 /root/sig").stdout.replace(" ", "")
                                                .replace("\n", "")))
        v = run(tool("openssl"), "dgst", "-sha256", "-verify", root / "k.pem", "-signature", root / "sig",
                root / "m")
        assert v.returncode == 0, v.stdout + v.stderr
        # The keystore key and the secure storage object.
        with ks(p.t, "v") as k:
            assert k.public_key("mig-ec") == ks_pub
            sig, _ = k.one_shot("mig-ec", params("sign", "sha256"), b"hello")
            (root / "ks.der").write_bytes(ks_pub)
            (root / "hello").write_bytes(b"hello")
            (root / "ks.sig").write_bytes(sig)
            v = run(tool("openssl"), "dgst", "-sha256", "-verify", root / "ks.der", "-keyform", "DER",
                    "-signature", root / "ks.sig", root / "hello")
            assert v.returncode == 0, v.stdout + v.stderr
            assert k.read("doc") == b"secure storage object carried"
            assert k.read("tp-carried", tamper_proof=True) == b"tamper-proof object carried"
        # The EKs are the same keys, certified now by the target's vTPM issuer, and recorded.
        ek_t = json.loads(p.t.cli("vtpm", "info", "--json", "v").stdout)["eks"]
        assert [e["name"] for e in ek_t] == [e["name"] for e in ek_s]
        assert all(e["cert_issuer"] and e["cert_issuer"] != s["cert_issuer"] for e, s in zip(ek_t, ek_s)), ek_t
        nv = bytes.fromhex("".join(p.t.sh("v", "tpm2_nvread 0x01c0000a -o /tmp/ek.der >/dev/null && "
                                               "od -An -v -tx1 /tmp/ek.der").stdout.split()))
        ecc = next(e for e in ek_t if e["kind"] == "ecc")
        body = "".join(line for line in ecc["cert_pem"].splitlines() if "-----" not in line)
        assert nv == base64.b64decode(body), "the vTPM's NV holds the target's certificate"
    finally:
        p.t.cli("stop", "v")
    assert (p.t.data_dir / "keystore" / uuid).exists()
    assert not (p.t.data_dir / "containers" / uuid / "keystore").exists()
