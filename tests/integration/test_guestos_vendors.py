# SPDX-License-Identifier: GPL-2.0-or-later
"""GuestOS trust between vendors and over time: two GuestOS vendors under one General
root, names bound to their first signer, CAs marked for GuestOS signing, revocation of what is
installed, and replays of old signed configs. The attacker is a vendor holding a registered
GuestOS Signing CA, or someone replaying old validly signed files."""
import hashlib
import json
import shutil
import ssl
from pathlib import Path

import pytest

import anchors
from conftest import wait_for
from test_guestos import (PKI_TOOL, container, create, env, gdaemon, gentry, glist,  # noqa: F401
                          install, logs_show, run, start_with_device, store)


def cert_sha256(path):
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(path.read_text())).hexdigest()


class Vendor:
    """A second GuestOS vendor: its own GuestOS Signing CA, issued by the same General root
    (trustme-pki issue --ca general-root --profile guestos-ca), and a signing key below it."""

    def __init__(self, env, name):
        d = env.tmpdir(f"vendor-{name}-")
        self.ca_key, ca_csr, self.ca = d / "ca.key", d / "ca.csr", d / "ca.pem"
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-aes-256-cbc", "-pass", f"file:{env.passfile}", "-out", self.ca_key)
        run("openssl", "req", "-new", "-key", self.ca_key, "-passin", f"file:{env.passfile}",
            "-out", ca_csr, "-subj", f"/O={name}/CN={name} GuestOS Signing CA")
        run(PKI_TOOL, "issue", "--pki", env.pki, "--ca", "general-root", "--profile", "guestos-ca",
            "--csr", ca_csr, "--out", self.ca, "--passphrase-file", env.passfile)
        key, csr, cert, ext = d / "key.pem", d / "csr.pem", d / "cert.pem", d / "ext"
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=codeSigning\nsubjectKeyIdentifier=hash\n"
                       "authorityKeyIdentifier=keyid:always\n")
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-aes-256-cbc", "-pass", f"file:{env.passfile}", "-out", key)
        run("openssl", "req", "-new", "-key", key, "-passin", f"file:{env.passfile}", "-out", csr,
            "-subj", f"/O={name}/CN={name}")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
            "-passin", f"file:{env.passfile}", "-days", "30", "-extfile", ext, "-out", cert)
        self.key = (key, cert, self.ca)
        self.sha256 = cert_sha256(self.ca)


@pytest.fixture(scope="module")
def vendor_x(env):
    return Vendor(env, "vendorX")


def refused(d, src, *needles):
    before = (glist(d), store(d))
    r = install(d, src, check=False)
    assert r.returncode != 0, r.stdout
    for n in needles:
        assert n in r.stderr, r.stderr
    assert (glist(d), store(d)) == before
    return r.stderr


# ---- a GuestOS name belongs to whoever signs it first ---------------------------------------------

def test_name_belongs_to_its_first_signer(gdaemon, env, vendor_x):
    ours = cert_sha256(env.cert("guestos-ca"))
    d = gdaemon(guestos_cas=[str(env.cert("guestos-ca")), str(vendor_x.ca)])
    install(d, env.build("bb", 1))
    create(d, "c")
    d.cli("start", "c")
    logs_show(d, "c", "marker-v1")
    # vendorX signs a higher version of our name: refused, with both CAs named
    err = refused(d, env.build("bb", 2, tree="v2", key=vendor_x.key), "not installed",
                  f"belongs to the GuestOS Signing CA with SHA-256 {ours}", vendor_x.sha256,
                  "trust.guestos_owners")
    assert "CN=vendorX" in err
    events = [e for e in d.audit_events() if e["event"] == "guestos.install"]
    assert events[-1]["result"] == "fail"
    # root rewrites the store's record of the owner: the TPM anchor decides, not the file
    rec = d.data_dir / "guestos/bb-1/install.json"
    doc = json.loads(rec.read_text())
    assert doc["ca_sha256"] == ours
    doc["ca_sha256"] = vendor_x.sha256
    rec.write_text(json.dumps(doc))
    d.cli("stop", "--kill", "c")
    d.restart()
    refused(d, env.build("bb", 2, tree="v2", key=vendor_x.key), "belongs to the GuestOS Signing CA")
    # vendorX's own names are its own
    assert install(d, env.build("vx", 1, key=vendor_x.key)).stdout.startswith("installed vx-1")
    # and ours stay ours, also after a restart and after every version of bb is gone
    d.cli("remove", "c")
    d.cli("guestos", "remove", "bb")
    d.restart()
    refused(d, env.build("bb", 2, tree="v2", key=vendor_x.key), "belongs to the GuestOS Signing CA")
    refused(d, env.build("vx", 2, tree="v2"), f"SHA-256 {vendor_x.sha256}")
    assert install(d, env.build("bb", 2, tree="v2")).stdout.startswith("installed bb-2")


def test_name_handed_over_by_device_json(gdaemon, env, vendor_x):
    d = gdaemon(guestos_cas=[str(env.cert("guestos-ca")), str(vendor_x.ca)])
    install(d, env.build("bb", 1))
    refused(d, env.build("bb", 2, tree="v2", key=vendor_x.key), "belongs to")
    # the device owner hands bb to vendorX
    dev = json.loads((d.data_dir / "device.json").read_text())
    dev["trust"]["guestos_owners"] = {"bb": vendor_x.sha256}
    d.stop()
    (d.data_dir / "device.json").write_text(json.dumps(dev))
    d.start()
    assert install(d, env.build("bb", 2, tree="v2", key=vendor_x.key)).stdout.startswith("installed bb-2")
    refused(d, env.build("bb", 3), "bound by device.json")
    # a malformed binding is a device config error naming the path
    dev["trust"]["guestos_owners"] = {"bb": "ABC"}
    d.stop()
    (d.data_dir / "device.json").write_text(json.dumps(dev))
    with pytest.raises(RuntimeError, match=r"\$\.trust\.guestos_owners\.bb"):
        d.start()


def test_only_marked_cas_register(gdaemon, env, vendor_x):
    d = gdaemon(guestos_cas=[])
    cas = d.data_dir / "trust/cas"

    def ca_refused(cert, *needles):
        r = d.cli("ca", "register", cert, check=False)
        assert r.returncode != 0
        for n in needles:
            assert n in r.stderr, r.stderr
        assert not cas.exists() or list(cas.iterdir()) == []
        assert [e for e in d.audit_events() if e["event"] == "ca.register"][-1]["result"] == "fail"

    ca_refused(env.cert("general-root-ca"), "CA not registered", "the trust anchor itself")
    ca_refused(env.cert("device-ca"), "CA not registered", "not marked for GuestOS signing")
    out = d.cli("ca", "register", vendor_x.ca).stdout
    assert vendor_x.sha256 in out, out


def test_unmarked_ca_in_device_json_signs_nothing(gdaemon, env):
    """A Device CA listed as a GuestOS CA in device.json, and a codeSigning leaf it issued: the
    chain passes through a listed CA, which lacks the mark."""
    key = env.issue(ca="device", profile="signing")
    d = gdaemon(guestos_cas=[str(env.cert("device-ca"))])
    refused(d, env.build("bb", 7, key=key), "signature rejected", "not marked for GuestOS signing")


# ---- no GuestOS name shares anti-rollback state with another -----------------------------------

def old_counter_index(name):
    """The NV counter the old scheme gave a GuestOS name: 16 bits of a hash."""
    md = hashlib.sha256(b"trustme-guestos:" + name.encode()).digest()
    return md[0] << 8 | md[1]


def colliding_name(victim):
    want = old_counter_index(victim)
    return next(f"app{i}" for i in range(1 << 22) if old_counter_index(f"app{i}") == want)


def test_colliding_name_from_another_vendor_blocks_nothing(gdaemon, env, vendor_x):
    collider = colliding_name("busybox")
    assert old_counter_index(collider) == old_counter_index("busybox") and collider != "busybox"
    d = gdaemon(guestos_cas=[str(env.cert("guestos-ca")), str(vendor_x.ca)])
    install(d, env.build("busybox", 1))
    create(d, "c", guestos="busybox")
    d.cli("start", "c")
    logs_show(d, "c", "marker-v1")
    d.cli("stop", "--kill", "c")
    # vendorX's name, whose old counter was busybox's, at a far higher version
    out = install(d, env.build(collider, 20, key=vendor_x.key)).stdout
    assert out.startswith(f"installed {collider}-20"), out
    d.cli("start", "c")
    logs_show(d, "c", "marker-v1")
    d.cli("stop", "--kill", "c")
    assert install(d, env.build("busybox", 2, tree="v2")).stdout.startswith("installed busybox-2")
    d.cli("start", "c")
    logs_show(d, "c", "marker-v2")
    # the same after a restart of trustmed (and so of tpmd, which reloads its table)
    d.cli("stop", "--kill", "c")
    d.restart()
    d.cli("start", "c")
    logs_show(d, "c", "marker-v2")


def test_store_rollback_names_the_reason(gdaemon, env):
    """Only the GuestOS store is restored from an older copy: the anchor table is current."""
    d = gdaemon()
    install(d, env.build("bb", 1))
    create(d, "c")
    d.cli("stop", "--kill", "c", check=False)
    old = d.base / "store-with-bb-1"
    run("cp", "-a", d.data_dir / "guestos", old)
    install(d, env.build("bb", 2, tree="v2"))
    d.stop()
    run("rm", "-rf", d.data_dir / "guestos")
    run("mv", old, d.data_dir / "guestos")
    d.start()
    assert [(g["name"], g["version"]) for g in glist(d)] == [("bb", 1)]
    r = d.cli("start", "c", check=False)
    assert r.returncode != 0
    assert "version 2 is anchored in the TPM as installed, but the newest in the store is 1" \
        in r.stderr and "GuestOS store was rolled back" in r.stderr, r.stderr
    assert "version 2 is anchored" in d.state("c")["last_error"]
    fails = [e for e in d.audit_events() if e["event"] == "container.start" and e["result"] == "fail"]
    assert fails and "rolled back" in fails[-1]["detail"], fails
    # installing the anchored version again heals it
    install(d, env.build("bb", 2, tree="v2"))
    d.cli("start", "c")
    logs_show(d, "c", "marker-v2")
    # with no bb in the store at all, the anchor alone refuses an older version
    d.cli("stop", "--kill", "c")
    d.cli("remove", "c")
    d.cli("guestos", "remove", "bb", "--version", "1")
    d.cli("guestos", "remove", "bb", "--version", "2")
    r = install(d, env.build("bb", 1), check=False)
    assert r.returncode != 0 and "TPM anchors as installed: a downgrade is refused" in r.stderr
    install(d, env.build("bb", 2, tree="v2"))
    create(d, "c")
    d.cli("start", "c")
    logs_show(d, "c", "marker-v2")


def test_install_fails_closed_when_the_anchor_cannot_be_written(gdaemon, env):
    d = gdaemon()
    install(d, env.build("bb", 1))
    # tpmd writes the table's next slot before the NV write: a directory there makes the write
    # fail. Both slots, so that an update in between (the audit head's) cannot move past it; tpmd
    # keeps the table it loaded in memory, and the files are put back below.
    saved = anchors.save(d.data_dir / "tpm")
    blockers = anchors.slots(d.data_dir / "tpm")
    for blocker in blockers:
        blocker.unlink(missing_ok=True)
        blocker.mkdir()
        (blocker / "x").write_text("x")
    try:
        r = install(d, env.build("bb", 2, tree="v2"), check=False)
        assert r.returncode != 0
        assert "the TPM anchor of bb-2 cannot be written" in r.stderr, r.stderr
        assert "the install is undone" in r.stderr
        assert store(d) == ["bb-1"] and [g["version"] for g in glist(d)] == [1]
        ev = [e for e in d.audit_events() if e["event"] == "guestos.install"][-1]
        assert ev["result"] == "fail" and "bb-2" in ev["detail"], ev
    finally:
        for blocker in blockers:
            (blocker / "x").unlink()
            blocker.rmdir()
        anchors.restore(d.data_dir / "tpm", saved)
    assert install(d, env.build("bb", 2, tree="v2")).stdout.startswith("installed bb-2")


# ---- old signed container configs do not come back -------------------------------------------------

def test_pipelined_updates_cannot_bring_an_older_config_back(gdaemon, env):
    """Signed updates of one container sent at once on four connections, one of version N+3,
    three of N+1: each was checked against the current config (N) before any was applied, then
    anchored in turn (N+3, then N+1: the anchor went down) and applied in turn: the older config
    ended up in place. One update of a container at a time; the others are refused."""
    import socket
    from pb import field_bytes, field_varint, frame, parse
    from rawclient import recv_frame
    d = gdaemon(policy={"signed_configs": True})
    install(d, env.build("bb", 1))

    def cfg(version, memory):
        path = d.configs / f"p1-{version}.json"
        path.write_text(json.dumps({"name": "p1", "guestos": {"name": "bb"}, "token": "none",
                                    "data_size_mb": 16, "memory_limit_mb": memory,
                                    "config_version": version}))
        env.sign(path)
        return path
    d.cli("create", cfg(2, 32))
    cdir = next(p.parent for p in (d.data_dir / "containers").glob("*/config.json")
                if json.loads(p.read_text())["name"] == "p1")

    def update_msg(rid, path):
        sub = (field_bytes(1, b"p1") + field_bytes(2, path.read_bytes()) +
               field_bytes(3, Path(f"{path}.sig").read_bytes()) +
               field_bytes(4, Path(f"{path}.chain.pem").read_bytes()))
        return frame(field_varint(1, 1) + field_varint(2, rid) + field_bytes(28, sub))

    def answer(sock):
        while True:
            resp = recv_frame(sock)
            if 11 not in resp:   # Progress
                return parse(resp[10][0]) if 10 in resp else None
    current = 2
    for _ in range(10):   # a race: tried a few times (before the fix it was lost 1 time in 3)
        newer, older = cfg(current + 3, 128), cfg(current + 1, 64)
        socks = [socket.socket(socket.AF_UNIX) for _ in range(4)]
        try:
            for sock in socks:
                sock.settimeout(60)
                sock.connect(str(d.socket))
            for i, sock in enumerate(socks):
                sock.sendall(update_msg(i + 1, newer if i == 0 else older))
            replies = [answer(sock) for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        # whichever came first is applied; the others are refused (busy, or not above it)
        applied = [current + 3 if i == 0 else current + 1 for i, r in enumerate(replies) if r is None]
        assert len(applied) == 1, f"several updates applied, the last one wins: {replies}"
        conf = json.loads((cdir / "config.json").read_text())
        assert conf["config_version"] == applied[0], (conf, replies)
        current = applied[0]
    # and the anchor stayed: an older one cannot come now either
    r = d.cli("update", "p1", cfg(current - 1, 16), check=False)
    assert r.returncode != 0 and "config_version" in r.stderr, r.stderr
    d.cli("start", "p1")
    d.cli("stop", "--kill", "p1")


def test_older_signed_config_is_refused(gdaemon, env):
    d = gdaemon(policy={"signed_configs": True})
    install(d, env.build("bb", 1))

    def cfg(tag, version, memory):
        path = d.configs / f"s1-{tag}.json"
        path.write_text(json.dumps({"name": "s1", "guestos": {"name": "bb"}, "token": "none",
                                    "data_size_mb": 16, "memory_limit_mb": memory,
                                    "config_version": version}))
        env.sign(path)
        return path

    old, new = cfg("old", 1, 64), cfg("new", 2, 128)
    d.cli("create", old)
    uuid_dirs = [p.parent for p in (d.data_dir / "containers").glob("*/config.json")
                 if json.loads(p.read_text())["name"] == "s1"]
    assert len(uuid_dirs) == 1
    cdir = uuid_dirs[0]
    saved = d.base / "s1-config-copy"
    run("cp", "-a", cdir, saved)
    d.cli("start", "s1")   # anchors config_version 1
    d.cli("stop", "--kill", "s1")
    assert "config signed" in d.cli("update", "s1", new).stdout
    ev = [e for e in d.audit_events() if e["event"] == "container.update"][-1]
    assert "config signed, version 2" in ev["detail"], ev
    memory = lambda: json.loads((cdir / "config.json").read_text())["memory_limit_mb"]  # noqa: E731
    assert memory() == 128

    def replay_refused():
        r = d.cli("update", "s1", old, check=False)
        assert r.returncode != 0, r.stdout
        assert "$.config_version: 1 does not raise the current config's version 2" in r.stderr or \
            "$.config_version: 1 is not above version 2, which this device's TPM anchors" in r.stderr, \
            r.stderr
        assert memory() == 128
        ev = [e for e in d.audit_events() if e["event"] == "config.reject"][-1]
        assert "config_version" in ev["detail"], ev

    replay_refused()
    d.restart()
    replay_refused()

    # root restores the container's config files from the copy: the start names it
    d.stop()
    for f in ("config.json", "config.json.sig", "config.json.chain.pem"):
        run("cp", "-a", saved / f, cdir / f)
    d.start()
    assert memory() == 64
    r = d.cli("start", "s1", check=False)
    assert r.returncode != 0
    assert "its config has config_version 1, but version 2 is anchored in the TPM" in r.stderr, r.stderr
    assert "restored from an older copy" in d.state("s1")["last_error"]
    replay_refused_at = lambda path, v: d.cli("update", "s1", path, check=False)  # noqa: E731
    r = replay_refused_at(old, 1)
    assert r.returncode != 0 and "does not raise the current config's version 1" in r.stderr
    # the file says 1 now: the anchor alone refuses version 2 again (only a higher one heals)
    r = replay_refused_at(new, 2)
    assert r.returncode != 0
    assert "2 is not above version 2, which this device's TPM anchors" in r.stderr, r.stderr
    assert memory() == 64
    # a newer signed config heals it
    d.cli("update", "s1", cfg("newer", 3, 96))
    d.cli("start", "s1")
    assert memory() == 96
    # removing the container drops its anchor entry
    tpm_dir = d.data_dir / "tpm"
    assert f"config/{cdir.name} ".encode() in anchors.table_bytes(tpm_dir)
    d.cli("stop", "--kill", "s1")
    d.cli("remove", "s1")
    wait_for(lambda: f"config/{cdir.name} ".encode() not in anchors.table_bytes(tpm_dir), timeout=10,
             what="the config's anchor entry to go")


def test_owner_kept_while_the_anchor_lags_the_store(gdaemon, env, vendor_x):
    """The store holds bb-1 of our vendor, but the TPM anchors nothing for bb yet (a crash
    between the install's store write and its anchor write; a store from before the anchor
    table): vendorX's bb-2 must still be refused (before: accepted, vendorX owned bb)."""
    ours = cert_sha256(env.cert("guestos-ca"))
    cas = [str(env.cert("guestos-ca")), str(vendor_x.ca)]
    d1 = gdaemon(guestos_cas=cas)
    install(d1, env.build("bb", 1))
    d1.stop()
    d = gdaemon(guestos_cas=cas)
    d.stop()
    shutil.copytree(d1.data_dir / "guestos/bb-1", d.data_dir / "guestos/bb-1")
    d.start()
    assert gentry(d, "bb", 1)["trust"] == "signed"
    refused(d, env.build("bb", 2, tree="v2", key=vendor_x.key), "not installed",
            f"belongs to the GuestOS Signing CA with SHA-256 {ours}", vendor_x.sha256)
    # our own vendor's next version still installs, and anchors the owner
    install(d, env.build("bb", 3, tree="v2"))
    refused(d, env.build("bb", 4, key=vendor_x.key), "not installed", ours)


# ---- revocation reaches what is installed -------------------------------------------------------

def trust_of(d, name, version):
    return gentry(d, name, version)["trust"]


def test_revoked_signer_stops_installed_guestos(gdaemon, env):
    d = gdaemon(crls=env.crls())
    key = env.issue()
    src = env.build("bb", 21, key=key)
    install(d, src)
    create(d, "c")
    d.cli("start", "c")
    logs_show(d, "c", "marker-v1")
    d.cli("stop", "--kill", "c")
    assert trust_of(d, "bb", 21) == "signed"
    run(PKI_TOOL, "revoke", "--pki", env.pki, key[1], "--reason", "keyCompromise",
        "--passphrase-file", env.passfile)
    # the CRL files changed: noticed without a restart, by the next start at the latest
    r = d.cli("start", "c", check=False)
    assert r.returncode != 0
    assert "GuestOS bb-21 is revoked: a certificate of its signer's chain is revoked" in r.stderr, \
        r.stderr
    assert "certificate revoked" in r.stderr
    st = d.state("c")
    assert st["state"] == "stopped" and "revoked" in st["last_error"], st
    assert container(d, "c")["trust"] == "revoked"
    assert trust_of(d, "bb", 21) == "revoked"
    events = d.audit_events()
    assert [e for e in events if e["event"] == "guestos.revoked" and "bb-21" in e["detail"]]
    fails = [e for e in events if e["event"] == "container.start" and e["result"] == "fail"]
    assert "revoked" in fails[-1]["detail"]
    # and after a restart of trustmed, before any start: the start-up re-check
    d.restart()
    wait_for(lambda: trust_of(d, "bb", 21) == "revoked", timeout=20, what="bb-21 shown revoked")
    r = d.cli("start", "c", check=False)
    assert r.returncode != 0 and "revoked" in r.stderr, r.stderr


def test_emptied_or_partial_crls_do_not_unrevoke(gdaemon, env):
    """Root empties the CRL files device.json names, or keeps only the General root's: the
    revocation status of the installed GuestOS's signer can no longer be checked, so it must
    not start (before: an empty file turned CRL checking off, a missing CA's CRL only logged a
    warning, and the revoked GuestOS started again)."""
    crl_dir = env.tmpdir("crls-")

    def copy_crls():
        for p in env.crls():
            (crl_dir / Path(p).name).write_bytes(Path(p).read_bytes())
    copy_crls()
    mine = sorted(str(p) for p in crl_dir.glob("*.pem"))
    assert len(mine) >= 2, mine
    d = gdaemon(crls=mine)
    key = env.issue()
    install(d, env.build("bb", 23, key=key))
    create(d, "c")
    d.cli("start", "c")
    logs_show(d, "c", "marker-v1")
    d.cli("stop", "--kill", "c")
    run(PKI_TOOL, "revoke", "--pki", env.pki, key[1], "--reason", "keyCompromise",
        "--passphrase-file", env.passfile)
    copy_crls()
    r = d.cli("start", "c", check=False)
    assert r.returncode != 0 and "revoked" in r.stderr, r.stderr
    root_crl = next(p for p in mine if "root" in Path(p).name and "general" in Path(p).name)
    saved = {p: Path(p).read_bytes() for p in mine}
    # every CRL file emptied: nothing would be checked at all
    for p in mine:
        Path(p).write_bytes(b"")
    r = d.cli("start", "c", check=False)
    assert r.returncode != 0, "a revoked GuestOS started with emptied CRL files"
    assert "revocation" in r.stderr or "revoked" in r.stderr or "CRL" in r.stderr, r.stderr
    r = install(d, env.build("bb", 24, key=env.issue()), check=False)
    assert r.returncode != 0 and "CRL" in r.stderr, r.stderr
    # only the General root's CRL left (in every file): the signing CA's revocations are unknown;
    # then files without a CRL in them
    for content in (saved[root_crl], b"\n"):
        for p in mine:
            Path(p).write_bytes(content)
        r = d.cli("start", "c", check=False)
        assert r.returncode != 0, f"a revoked GuestOS started with CRL files {content[:20]!r}"
        assert trust_of(d, "bb", 23) == "revoked"
    # the real CRLs back: refused as revoked, as before
    for p in mine:
        Path(p).write_bytes(saved[p])
    r = d.cli("start", "c", check=False)
    assert r.returncode != 0 and "certificate revoked" in r.stderr, r.stderr


def test_crl_change_is_noticed_without_a_start(gdaemon, env):
    d = gdaemon(crls=env.crls())
    key = env.issue()
    install(d, env.build("bb", 22, key=key))
    assert trust_of(d, "bb", 22) == "signed"
    run(PKI_TOOL, "revoke", "--pki", env.pki, key[1], "--reason", "keyCompromise",
        "--passphrase-file", env.passfile)
    wait_for(lambda: trust_of(d, "bb", 22) == "revoked", timeout=20, what="bb-22 shown revoked")


def test_ca_unregister(gdaemon, env, vendor_x):
    d = gdaemon()
    sha = vendor_x.sha256
    assert sha in d.cli("ca", "register", vendor_x.ca).stdout
    install(d, env.build("vy", 1, key=vendor_x.key))
    create(d, "v", guestos="vy")
    d.cli("start", "v")
    logs_show(d, "v", "marker-v1")
    d.cli("stop", "--kill", "v")
    r = d.cli("ca", "unregister", "0" * 64, check=False)
    assert r.returncode != 0 and "no CA with SHA-256" in r.stderr, r.stderr
    r = d.cli("ca", "unregister", "XYZ", check=False)
    assert r.returncode != 0 and "64 lower-case hex" in r.stderr, r.stderr
    assert "unregistered" in d.cli("ca", "unregister", sha).stdout
    assert not (d.data_dir / f"trust/cas/{sha}.pem").exists()
    ev = [e for e in d.audit_events() if e["event"] == "ca.unregister"]
    assert [e["result"] for e in ev] == ["fail", "ok"], ev
    r = d.cli("start", "v", check=False)
    assert r.returncode != 0
    assert "no registered GuestOS Signing CA vouches for its signer any more" in r.stderr, r.stderr
    assert trust_of(d, "vy", 1) == "revoked"
    r = install(d, env.build("vy", 2, tree="v2", key=vendor_x.key), check=False)
    assert r.returncode != 0
    # registered again: it starts again
    d.cli("ca", "register", vendor_x.ca)
    d.cli("start", "v")
    logs_show(d, "v", "marker-v1")
    assert trust_of(d, "vy", 1) == "signed"


def test_start_is_one_tpmd_request_and_a_refused_one_measures_nothing(gdaemon, env):
    """A start's anchor checks (GuestOS version, config_version) and its measurement are one
    request to trustme-tpmd, which measures only if the anchored entries allow the start; one
    they refuse measures nothing."""
    from test_device import measurements
    d = gdaemon(policy={"signed_configs": True})
    install(d, env.build("bb", 1))

    def cfg(tag, version):
        path = d.configs / f"one-{tag}.json"
        path.write_text(json.dumps({"name": "one", "guestos": {"name": "bb"}, "token": "none",
                                    "data_size_mb": 0, "init": "/bin/true",
                                    "config_version": version}))
        env.sign(path)
        return path

    old, new = cfg("old", 1), cfg("new", 2)
    d.cli("create", old)
    cdir = [p.parent for p in (d.data_dir / "containers").glob("*/config.json")
            if json.loads(p.read_text())["name"] == "one"][0]
    saved = d.base / "one-config-copy"
    shutil.copytree(cdir, saved)

    def requests_of_a_start():
        """The start's requests to tpmd: its measure requests, and "decided" when tpmd found
        the anchored entries other than expected (then trustmed decides, anchors, measures
        again). Anchor requests are left out: the audit log's head is anchored every 2 s."""
        mark = len(d.log())
        d.cli("start", "--attach", "one")
        log = d.log()[mark:].splitlines()
        return [line.split(": ")[-1] for line in log if "trustme-tpmd request" in line
                and line.endswith(": measure")] + \
            ["decided" for line in log if "not what the start expected" in line]

    # the first start anchors config_version 1: tpmd finds it unanchored, measures nothing;
    # trustmed anchors it and measures
    assert requests_of_a_start() == ["measure", "measure", "decided"]
    # from then on: one request per start
    assert requests_of_a_start() == ["measure"]
    assert requests_of_a_start() == ["measure"]
    d.cli("update", "one", new)
    assert requests_of_a_start() in (["measure"], ["measure", "measure", "decided"])
    assert requests_of_a_start() == ["measure"]
    d.restart()   # nothing cached in trustmed: still one request
    assert requests_of_a_start() == ["measure"]

    # the config rolled back to version 1 (a different config, so a different event): refused,
    # and nothing of it measured
    d.stop()
    for f in ("config.json", "config.json.sig", "config.json.chain.pem"):
        shutil.copy2(saved / f, cdir / f)
    d.start()
    before = measurements(d)["events"]
    r = d.cli("start", "one", check=False)
    assert r.returncode != 0
    assert "its config has config_version 1, but version 2 is anchored in the TPM" in r.stderr, r.stderr
    assert measurements(d)["events"] == before
