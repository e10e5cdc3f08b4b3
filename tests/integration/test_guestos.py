# SPDX-License-Identifier: GPL-2.0-or-later
"""The signed GuestOS store (docs/GUESTOS.md, docs/CONFIG.md "Device"): install, verification of
signatures, chains, images and policy, containers running a GuestOS and its updates, images
hashed at every start, signed configs, removal, and a crash during an install.

Every refusal is checked for what it must not do: `guestos list` and the store directory stay as
they were (no new or partial entry), a running container is unaffected and the daemon answers.
The GuestOSes are built with trustme-guestos and signed with a trustme-pki development PKI, both
from the same build directory."""
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import BUILD, TEST_PREFIX, TRUSTME, Daemon, loops_backed_by, wait_for
from tools import argv

GUESTOS_TOOL = BUILD / "src/tools/guestos/trustme-guestos"
PKI_TOOL = BUILD / "src/tools/pki/trustme-pki"
PASSPHRASE = "guestos-test-passphrase"
DESCRIPTION = "busybox demo guest"
# pid 1 of every test GuestOS: says which version it is, then waits
INIT_SCRIPT = "cat /etc/gos-marker; exec sleep 1000000"

pytestmark = pytest.mark.skipif(not (GUESTOS_TOOL.exists() and PKI_TOOL.exists()),
                                reason="trustme-guestos or trustme-pki is not built")


def run(*cmd, check=True, **kw):
    r = subprocess.run(argv(*cmd), capture_output=True, text=True, timeout=300, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


class Env:
    """One development PKI (and a second one as a device's local root), marked root file systems
    and the GuestOS builds made from them, shared by the whole module."""

    def __init__(self, work, rootfs):
        self.work = work
        self.passfile = work / "pass"
        self.passfile.write_text(PASSPHRASE + "\n")
        self.passfile.chmod(0o600)
        self.pki = work / "pki"
        self.local_pki = work / "local-pki"
        for p in (self.pki, self.local_pki):
            run(PKI_TOOL, "init", p, "--passphrase-file", self.passfile)
        self.rootfs = {}
        for tag in ("v1", "v2"):
            tree = work / f"rootfs-{tag}"
            shutil.copytree(rootfs, tree, symlinks=True)
            (tree / "etc/gos-marker").write_text(f"marker-{tag}\n")
            self.rootfs[tag] = tree
        self._builds = {}
        self._n = 0

    # PKI files
    def cert(self, name, pki=None):
        pki = pki or self.pki
        return next(p for p in pki.rglob(f"{name}.pem") if p.parent.name != "crl")

    def crls(self, pki=None):
        return sorted(str(p) for p in ((pki or self.pki) / "crl").glob("*.pem"))

    def tmpdir(self, prefix="t-"):
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.work))

    def build(self, name="bb", version=1, signer="guestos", tree="v1", pki=None, key=None,
              extra=()):
        """The directory of a GuestOS built (once) with trustme-guestos. signer: "guestos",
        "software", None (unsigned); key: (KEY, CERT, CHAIN) to sign with a key file."""
        pki = pki or self.pki
        k = (name, version, signer, tree, str(pki), key, tuple(extra))
        if k not in self._builds:
            out = self.tmpdir("build-")
            args = ["build", self.rootfs.get(tree, tree), "--name", name, "--version", version,
                    "--out", out, "--init", "/bin/sh", "--arg", "-c", "--arg", INIT_SCRIPT,
                    "--description", DESCRIPTION, *extra]
            if key:
                args += ["--key", key[0], "--cert", key[1], "--chain", key[2],
                         "--passphrase-file", self.passfile]
            elif signer:
                args += ["--pki", pki, "--signer", signer, "--passphrase-file", self.passfile]
            else:
                args += ["--unsigned"]
            # trustme-guestos finds trustme-pki beside itself or on $PATH; in a build tree, neither
            path = dict(os.environ, PATH=f"{PKI_TOOL.parent}:{os.environ['PATH']}")
            self._builds[k] = Path(run(GUESTOS_TOOL, *args, env=path).stdout.strip())
        return self._builds[k]

    def copy(self, src):
        """A private copy of a build, to tamper with."""
        dst = self.tmpdir("copy-") / src.name
        shutil.copytree(src, dst, symlinks=True)
        return dst

    def sign(self, path, signer="guestos", pki=None):
        for suffix in (".sig", ".chain.pem"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        run(PKI_TOOL, "sign", path, "--pki", pki or self.pki, "--signer", signer,
            "--passphrase-file", self.passfile)

    def issue(self, ca="guestos", profile="signing", validity=()):
        """A key (encrypted PKCS#8, as trustme-pki sign wants it) and a certificate for it issued
        by one of the PKI's CAs; returns (KEY, CERT, CHAIN) for trustme-guestos --key."""
        d = self.tmpdir("issued-")
        key, csr, cert = d / "key.pem", d / "csr.pem", d / "cert.pem"
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-aes-256-cbc", "-pass", f"file:{self.passfile}", "-out", key)
        run("openssl", "req", "-new", "-key", key, "-passin", f"file:{self.passfile}", "-out", csr,
            "-subj", f"/CN=test {ca} {profile} {d.name}")
        if ca == "device":
            # trustme-pki's Device CA certifies only TPM keys through credential activation
            # (docs/ATTESTATION.md "Enrollment"): a device-profile certificate for a plain key
            # comes from the Device CA's key through openssl
            ext = d / "ext"
            ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                           "extendedKeyUsage=clientAuth\n")
            ca_cert = self.cert("device-ca")
            run("openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey",
                ca_cert.with_suffix(".key"), "-passin", f"file:{self.passfile}", "-days", "30",
                "-extfile", ext, "-out", cert)
            return key, cert, ca_cert
        run(PKI_TOOL, "issue", "--pki", self.pki, "--ca", ca, "--profile", profile, "--csr", csr,
            "--out", cert, *validity, "--passphrase-file", self.passfile)
        return key, cert, self.cert(f"{ca}-ca")

    def root_issued_leaf(self):
        """A codeSigning leaf certificate issued straight by the General root (openssl)."""
        d = self.tmpdir("leaf-")
        key, csr, cert, ext = d / "key.pem", d / "csr.pem", d / "cert.pem", d / "ext"
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=codeSigning\n")
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=leaf under the General root")
        root = self.cert("general-root-ca")
        run("openssl", "x509", "-req", "-in", csr, "-CA", root, "-CAkey", root.with_suffix(".key"),
            "-passin", f"file:{self.passfile}", "-days", "30", "-extfile", ext, "-out", cert)
        return cert

    def device(self, policy=None, guestos_cas=None, crls=None, local=False, **extra):
        trust = {"software_signing_root": str(self.cert("root-ca")),
                 "general_root": str(self.cert("general-root-ca")),
                 "guestos_cas": [str(self.cert("guestos-ca"))] if guestos_cas is None else guestos_cas}
        if crls:
            trust["crls"] = crls
        if local:
            trust["local_root"] = str(self.cert("general-root-ca", self.local_pki))
        return {"trust": trust, "policy": policy or {}, **extra}


@pytest.fixture(scope="module")
def env(test_root, rootfs):
    work = Path(tempfile.mkdtemp(prefix="gos-env-", dir=test_root))
    yield Env(work, rootfs)
    shutil.rmtree(work, ignore_errors=True)


def start_with_device(daemon, device):
    """Start a daemon (made with start=False) with this device.json."""
    daemon.data_dir.mkdir(parents=True, exist_ok=True)
    (daemon.data_dir / "device.json").write_text(json.dumps(device))
    return daemon.start()


@pytest.fixture
def gdaemon(make_daemon, env):
    """A daemon with the real policy: nothing unsigned or locally signed, the PKI's roots and
    GuestOS-signing CA."""
    def make(**device):
        return start_with_device(make_daemon(start=False), env.device(**device))
    return make


def install(d, src, check=True):
    return d.cli("guestos", "install", src, check=check, timeout=120)


def glist(d):
    return json.loads(d.cli("guestos", "list", "--json").stdout)


def gentry(d, name, version):
    return next(g for g in glist(d) if g["name"] == name and g["version"] == version)


def store(d):
    return sorted(os.listdir(d.data_dir / "guestos"))



def container(d, name):
    return next(c for c in d.containers() if c["name"] == name)


def create(d, name, guestos="bb", version=None, **extra):
    cfg = {"name": name, "guestos": {"name": guestos}, "token": "none", "data_size_mb": 16, **extra}
    if version:
        cfg["guestos"]["version"] = version
    path = d.configs / f"{name}.json"
    path.write_text(json.dumps(cfg))
    d.cli("create", path)
    return name


def logs_show(d, name, text):
    wait_for(lambda: text in d.cli("logs", name).stdout, timeout=10, what=f"{text} in {name}'s log")


def snapshot(d):
    return {"guestos": glist(d), "store": store(d),
            "containers": [(c["name"], c["state"], c["pid"]) for c in d.containers()]}


def assert_refused(d, src, *needles, bystander=None):
    """Install of src fails with a message containing needles, and nothing changes."""
    before = snapshot(d)
    r = install(d, src, check=False)
    assert r.returncode != 0, r.stdout
    for n in needles:
        assert n in r.stderr, r.stderr
    after = snapshot(d)
    assert after == before
    assert not [e for e in after["store"] if e.startswith(".")]
    if bystander:
        assert container(d, bystander)["state"] == "running"
        assert d.sh(bystander, "cat /etc/gos-marker").stdout.startswith("marker-")
    return r.stderr


# ---- a daemon shared by the refusal tests -------------------------------------------------------

@pytest.fixture(scope="module")
def sd(env, test_root, rootfs):
    """Real policy with CRLs of every CA and a local root (not allowed), bb-2 installed and the
    container "by" running on it. Refusals must leave all of that exactly as it is."""
    base = Path(tempfile.mkdtemp(prefix="d-store-", dir=test_root))
    d = Daemon(base, f"{TEST_PREFIX}-{os.getpid()}-guestos-store", rootfs)
    try:
        start_with_device(d, env.device(crls=env.crls(), local=True))
        install(d, env.build("bb", 2, tree="v2"))
        create(d, "by")
        d.cli("start", "by")
        logs_show(d, "by", "marker-v2")
        yield d
    finally:
        d.teardown()


def refused(sd, src, *needles):
    return assert_refused(sd, src, *needles, bystander="by")


# ---- happy path ---------------------------------------------------------------------------------

def test_restricted_guestos_list_names_no_other_container(gdaemon, env):
    """used_by on a restricted socket names the container itself at most: before, guestos list
    told a restricted container which other containers exist (which its state refuses to)."""
    from pb import parse
    from test_control_hostile import as_restricted
    d = gdaemon()
    install(d, env.build("bb", 1))
    create(d, "secret-neighbour")
    create(d, "r", control="restricted")
    d.cli("start", "r")
    logs_show(d, "r", "marker-v1")
    assert sorted(gentry(d, "bb", 1)["used_by"]) == ["r", "secret-neighbour"]  # the admin's view
    [reply] = as_restricted(d, "r", [(31, b"")])  # guestos list
    info = parse(bytes.fromhex(reply["fields"]["1"]))  # the one GuestOS
    assert [u.decode() for u in info.get(6, [])] == ["r"], info


def test_signed_guestos_runs_and_updates(gdaemon, env):
    d = gdaemon()
    out = install(d, env.build("bb", 1)).stdout
    assert out.startswith("installed bb-1 (signed by ") and "GuestOS Signing" in out, out
    g = gentry(d, "bb", 1)
    assert (g["trust"], g["architecture"], g["used_by"]) == ("signed", os.uname().machine, [])
    assert "GuestOS Signing" in g["signer"] and g["size"] > 0
    assert store(d) == ["bb-1"]

    create(d, "c")
    create(d, "pinned", version=1)
    for name in ("c", "pinned"):
        d.cli("start", name)
        logs_show(d, name, "marker-v1")
    c = container(d, "c")
    assert (c["guestos"], c["guestos_version"], c["trust"], c["config_trust"]) == \
        ("bb", 1, "signed", "unsigned")
    assert sorted(gentry(d, "bb", 1)["used_by"]) == ["c", "pinned"]

    # version 2 arrives while both run on version 1
    assert install(d, env.build("bb", 2, tree="v2")).stdout.startswith("installed bb-2 (signed")
    assert store(d) == ["bb-1", "bb-2"]
    assert [(g["name"], g["version"]) for g in glist(d)] == [("bb", 1), ("bb", 2)]
    assert container(d, "c")["guestos_version"] == 1       # running: what it runs
    assert d.sh("c", "cat /etc/gos-marker").stdout == "marker-v1\n"

    # the next start takes the newest; the pinned container stays
    for name in ("c", "pinned"):
        d.cli("stop", "--kill", name)
        d.cli("start", name)
    logs_show(d, "c", "marker-v2")
    assert d.sh("c", "cat /etc/gos-marker").stdout == "marker-v2\n"
    assert d.sh("pinned", "cat /etc/gos-marker").stdout == "marker-v1\n"
    assert (container(d, "c")["guestos_version"], container(d, "pinned")["guestos_version"]) == (2, 1)
    assert gentry(d, "bb", 2)["used_by"] == ["c"] and gentry(d, "bb", 1)["used_by"] == ["pinned"]
    events = [e["event"] for e in d.audit_events()]
    assert events.count("guestos.install") == 2


def test_running_version_survives_a_daemon_crash(gdaemon, env):
    """A container re-adopted after kill -9 of trustmed still runs (and holds) its version."""
    d = gdaemon()
    install(d, env.build("bb", 1))
    create(d, "c")
    d.cli("start", "c")
    logs_show(d, "c", "marker-v1")
    install(d, env.build("bb", 2, tree="v2"))
    d.kill9()
    d.socket.unlink(missing_ok=True)
    d.start()
    c = container(d, "c")
    assert (c["state"], c["guestos_version"]) == ("running", 1), c
    assert gentry(d, "bb", 1)["used_by"] == ["c"]
    r = d.cli("guestos", "remove", "bb", "--version", "1", check=False)
    assert r.returncode != 0 and "used by c" in r.stderr, r.stderr
    assert d.sh("c", "cat /etc/gos-marker").stdout == "marker-v1\n"


def test_core_guestos_signed_by_software_signing(gdaemon, env):
    d = gdaemon()
    out = install(d, env.build("trustme-core", 1, signer="software")).stdout
    assert out.startswith("installed trustme-core-1 (signed by "), out
    assert gentry(d, "trustme-core", 1)["trust"] == "signed"


# ---- refused: integrity -------------------------------------------------------------------------

def flip_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_changed_byte_in_guestos_json(sd, env):
    src = env.copy(env.build("bb", 5))
    j = src / "guestos.json"
    text = j.read_text()
    assert DESCRIPTION in text
    j.write_text(text.replace(DESCRIPTION, DESCRIPTION[:-1] + "T"))  # still valid, still fits
    refused(sd, src, "signature rejected: signature does not verify")


def test_changed_byte_in_image(sd, env):
    src = env.copy(env.build("bb", 5))
    flip_byte(src / "root.img")
    refused(sd, src, "root.img", "corrupted")


def test_truncated_image(sd, env):
    src = env.copy(env.build("bb", 5))
    img = src / "root.img"
    size = img.stat().st_size
    os.truncate(img, size - 4096)
    refused(sd, src, "root.img", str(size))


def test_image_symlink(sd, env):
    good = env.build("bb", 5)
    src = env.copy(good)
    (src / "root.img").unlink()
    (src / "root.img").symlink_to(good / "root.img")
    refused(sd, src, "root.img", "symbolic link")


def test_symlinked_guestos_json(sd, env):
    good = env.build("bb", 5)
    src = env.copy(good)
    (src / "guestos.json").unlink()
    (src / "guestos.json").symlink_to(good / "guestos.json")
    refused(sd, src, "guestos.json", "symbolic link")


# ---- refused: signatures and chains -------------------------------------------------------------

def test_missing_signature(sd, env):
    src = env.copy(env.build("bb", 5))
    (src / "guestos.json.sig").unlink()
    (src / "guestos.json.chain.pem").unlink()
    refused(sd, src, "not signed", "allow")


def test_signature_without_chain(sd, env):
    src = env.copy(env.build("bb", 5))
    (src / "guestos.json.chain.pem").unlink()
    refused(sd, src, "guestos.json.sig without guestos.json.chain.pem")


def test_chain_without_signature(sd, env):
    src = env.copy(env.build("bb", 5))
    (src / "guestos.json.sig").unlink()
    refused(sd, src, "guestos.json.chain.pem without guestos.json.sig")


def test_core_guestos_signed_by_guestos_signer(sd, env):
    refused(sd, env.build("trustme-core", 1, signer="guestos"), "signature rejected",
            "Software Signing chain", "unable to get local issuer")


def test_guestos_signed_by_software_signer(sd, env):
    refused(sd, env.build("bb", 5, signer="software"), "signature rejected",
            "unable to get local issuer")


def test_signed_by_device_certificate(sd, env):
    key = env.issue(ca="device", profile="device")
    # its chain ends at the General root, but not through a GuestOS-signing CA (and its EKU is
    # clientAuth)
    refused(sd, env.build("bb", 5, key=key), "signature rejected",
            "does not pass through a registered GuestOS-signing CA")


@pytest.mark.parametrize("validity,reason", [
    (("--not-before", "20200101000000Z", "--not-after", "20210101000000Z"), "has expired"),
    (("--not-before", "20990101000000Z", "--not-after", "21000101000000Z"), "is not yet valid"),
], ids=["expired", "not-yet-valid"])
def test_signing_certificate_out_of_validity(sd, env, validity, reason):
    key = env.issue(validity=validity)
    refused(sd, env.build("bb", 5, key=key), "signature rejected", f"certificate {reason} at depth 0")


def test_revoked_signing_certificate(gdaemon, env):
    d = gdaemon(crls=env.crls())
    key = env.issue()
    assert install(d, env.build("bb", 3, key=key)).stdout.startswith("installed bb-3 (signed")
    run(PKI_TOOL, "revoke", "--pki", env.pki, key[1], "--reason", "keyCompromise",
        "--passphrase-file", env.passfile)
    # the CRL files are read at every verification: no restart needed; the installed bb-3 is
    # found revoked too (test_guestos_vendors.py)
    wait_for(lambda: gentry(d, "bb", 3)["trust"] == "revoked", timeout=20, what="bb-3 revoked")
    assert_refused(d, env.build("bb", 4, key=key), "signature rejected", "revoked")


def test_locally_signed_refused_by_policy(sd, env):
    refused(sd, env.build("bb", 5, pki=env.local_pki), "signature rejected",
            "unable to get local issuer")


# ---- refused: what the GuestOS says -------------------------------------------------------------

def test_downgrade_and_same_version(sd, env):
    refused(sd, env.build("bb", 1), "no downgrade")
    refused(sd, env.build("bb", 2, tree="v2"), "no downgrade")


def test_wrong_architecture(sd, env):
    other = "aarch64" if os.uname().machine != "aarch64" else "x86_64"
    refused(sd, env.build("bb", 5, extra=("--arch", other)), other)


def edited(env, edit):
    """A copy of a good build with guestos.json edited and properly re-signed: only the edit
    can be at fault."""
    src = env.copy(env.build("bb", 5))
    j = src / "guestos.json"
    doc = json.loads(j.read_text())
    edit(doc)
    j.write_text(json.dumps(doc, indent=2) + "\n")
    env.sign(j)
    return src


def test_unknown_key_in_guestos_json(sd, env):
    src = edited(env, lambda doc: doc.update(colour="blue"))
    refused(sd, src, "guestos.json: $.colour: unknown key")


def test_resigned_edit_is_accepted_otherwise(gdaemon, env):
    """The control for the edits below: editing and re-signing as they do installs."""
    d = gdaemon()
    src = edited(env, lambda doc: doc.update(description="edited"))
    assert install(d, src).stdout.startswith("installed bb-5 (signed")


def test_data_mounts_sharing_a_directory(sd, env):
    """Data mounts live in mounts/<mount point with '/' as '_'> on the data volume: /a_b and /a/b
    would be one directory, each container's two mounts seeing each other's files."""
    src = edited(env, lambda doc: doc["mounts"].extend([{"mount_point": "/a_b", "kind": "data"},
                                                        {"mount_point": "/a/b", "kind": "data"}]))
    refused(sd, src, 'data mounts "/a_b" and "/a/b" would share one directory')


@pytest.mark.parametrize("declared", ["ext4", "erofs"])
def test_fs_type_that_is_not_the_image(sd, env, declared):
    """guestos.json declares a file system the (squashfs) image is not: refused at install with
    the image's real type, not at a later start with a kernel error."""
    src = edited(env, lambda doc: doc["mounts"][0].update(fs_type=declared))
    refused(sd, src, f'image root.img of bb-5 is a squashfs image, but guestos.json says fs_type "{declared}"')


def test_fs_type_mismatch_in_the_store_refuses_start(gdaemon, env):
    """A store whose guestos.json was changed behind trustmed's back (installed configs are not
    re-verified at start-up, docs/SECURITY.md) still gets the check at each start."""
    d = gdaemon()
    install(d, env.build("bb", 1))
    create(d, "c")
    d.stop()
    j = d.data_dir / "guestos/bb-1/guestos.json"
    doc = json.loads(j.read_text())
    doc["mounts"][0]["fs_type"] = "ext4"
    j.write_text(json.dumps(doc, indent=2) + "\n")
    d.start()
    r = d.cli("start", "c", check=False)
    assert r.returncode != 0
    assert 'image root.img of bb-1 is a squashfs image, but guestos.json says fs_type "ext4"' in r.stderr, r.stderr
    assert d.state("c")["state"] == "stopped"


@pytest.mark.parametrize("image", ["../root.img", "..", "sub/root.img"])
def test_image_name_with_path(sd, env, image):
    src = edited(env, lambda doc: doc["mounts"][0].update(image=image))
    if "/" in image:
        (src / "sub").mkdir(exist_ok=True)
        shutil.copy(src / "root.img", src / "sub/root.img")
    refused(sd, src, "$.mounts[0].image", "is not a plain file name")


@pytest.mark.parametrize("image", ["install.json", "guestos.json", "guestos.json.sig"])
def test_image_named_like_a_store_file(sd, env, image):
    src = edited(env, lambda doc: doc["mounts"][0].update(image=image))
    if image == "install.json":
        shutil.copy(src / "root.img", src / image)
    refused(sd, src, "$.mounts[0].image")


@pytest.mark.parametrize("image", ["/root.img", "/tmp/root.img"])
def test_image_name_absolute(sd, env, image):
    src = edited(env, lambda doc: doc["mounts"][0].update(image=image))
    refused(sd, src, "$.mounts[0].image", "is not a plain file name")


# ---- CAs ----------------------------------------------------------------------------------------

def test_unregistered_guestos_ca(gdaemon, env):
    src = env.build("bb", 1)
    # no GuestOS-signing CA at all
    d = gdaemon(guestos_cas=[])
    assert_refused(d, src, "no GuestOS-signing CA is registered")
    # a CA is registered (one under the General root), but not the one in the chain
    d = gdaemon(guestos_cas=[str(env.cert("device-ca"))])
    assert_refused(d, src, "does not pass through a registered GuestOS-signing CA")


def test_ca_register(gdaemon, env):
    d = gdaemon(guestos_cas=[])
    src = env.build("bb", 1)
    cas = d.data_dir / "trust/cas"

    def ca_refused(cert, *needles):
        r = d.cli("ca", "register", cert, check=False)
        assert r.returncode != 0
        for n in needles:
            assert n in r.stderr, r.stderr
        assert not cas.exists() or list(cas.iterdir()) == []

    # a leaf issued by the General root itself: the chain is fine, but it is no CA
    ca_refused(env.root_issued_leaf(), "CA not registered", "the certificate is not a CA")
    # a leaf below a GuestOS-signing CA, a CA of the software chain, a CA under another root
    for cert in (env.cert("guestos-signing"), env.cert("sub-ca"),
                 env.cert("guestos-ca", env.local_pki)):
        ca_refused(cert, "CA not registered", "unable to get local issuer certificate at depth 0")
    # more than one certificate
    two = d.base / "two.pem"
    two.write_text(env.cert("guestos-ca").read_text() + env.cert("device-ca").read_text())
    ca_refused(two, "exactly one certificate")
    assert_refused(d, src, "no GuestOS-signing CA")

    out = d.cli("ca", "register", env.cert("guestos-ca")).stdout
    assert out.startswith("registered ") and "GuestOS Signing CA" in out, out
    assert len(list(cas.glob("*.pem"))) == 1
    assert "ca.register" in [e["event"] for e in d.audit_events()]
    assert install(d, src).stdout.startswith("installed bb-1 (signed")
    # it survives a restart
    d.restart()
    assert install(d, env.build("bb", 2, tree="v2")).stdout.startswith("installed bb-2 (signed")


# ---- allowed by policy ----------------------------------------------------------------------------

def test_unsigned_allowed_by_policy(gdaemon, env):
    d = gdaemon(policy={"allow_unsigned": True})
    out = install(d, env.build("bb", 1, signer=None)).stdout
    assert out.startswith("installed bb-1 (unsigned"), out
    assert gentry(d, "bb", 1)["trust"] == "unsigned"
    create(d, "c")
    d.cli("start", "c")
    logs_show(d, "c", "marker-v1")
    assert container(d, "c")["trust"] == "unsigned"
    # a signature that is there but wrong is refused even here
    src = env.copy(env.build("bb", 5))
    flip_byte(src / "guestos.json.sig", 10)
    assert_refused(d, src, "signature rejected", bystander="c")

    # the policy is re-checked at every start
    d.cli("stop", "--kill", "c")
    d.stop()
    (d.data_dir / "device.json").write_text(json.dumps(env.device()))
    d.start()
    r = d.cli("start", "c", check=False)
    assert r.returncode != 0 and "no longer allows" in r.stderr, r.stderr
    assert container(d, "c")["state"] == "stopped" and glist(d)[0]["trust"] == "unsigned"


def test_development_rootfs_refused_by_policy(gdaemon, env):
    d = gdaemon()
    path = d.configs / "dev.json"
    path.write_text(json.dumps({"name": "dev", "rootfs": {"path": str(env.rootfs["v1"])},
                                "token": "none", "data_size_mb": 16}))
    r = d.cli("create", path, check=False)
    assert r.returncode != 0 and "policy.allow_unsigned" in r.stderr, r.stderr
    assert d.containers() == []


def test_locally_signed_allowed_by_policy(gdaemon, env):
    d = gdaemon(policy={"allow_locally_signed": True}, local=True)
    out = install(d, env.build("bb", 1, pki=env.local_pki)).stdout
    assert out.startswith("installed bb-1 (locally-signed"), out
    assert gentry(d, "bb", 1)["trust"] == "locally-signed"
    create(d, "c")
    d.cli("start", "c")
    logs_show(d, "c", "marker-v1")
    assert container(d, "c")["trust"] == "locally-signed"
    # properly signed GuestOSes are still "signed" on such a device
    assert install(d, env.build("bb", 2, tree="v2")).stdout.startswith("installed bb-2 (signed ")


# ---- images hashed at every start ----------------------------------------------------------------

def test_corrupted_store_image_refuses_start(gdaemon, env):
    d = gdaemon()
    install(d, env.build("bb", 1))
    install(d, env.build("other", 1))
    create(d, "c")
    create(d, "o", guestos="other")
    d.cli("start", "o")
    logs_show(d, "o", "marker-v1")
    img = d.data_dir / "guestos/bb-1/root.img"
    flip_byte(img)
    before = snapshot(d)

    r = d.cli("start", "c", check=False)
    assert r.returncode != 0 and "corrupted" in r.stderr, r.stderr
    st = d.state("c")
    assert st["state"] == "stopped"
    assert "image root.img of bb-1 corrupted" in st["last_error"], st
    ev = [e for e in d.audit_events() if e["event"] == "guestos.corrupted"]
    assert len(ev) == 1 and "root.img" in json.dumps(ev[0]), ev
    assert snapshot(d) == before
    assert loops_backed_by(d.data_dir / "guestos/bb-1") == []
    assert d.sh("o", "cat /etc/gos-marker").stdout == "marker-v1\n"

    # the same byte back: it starts
    flip_byte(img)
    d.cli("start", "c")
    logs_show(d, "c", "marker-v1")


# ---- remove ------------------------------------------------------------------------------------------

def test_remove_refused_while_used(gdaemon, env):
    d = gdaemon()
    install(d, env.build("bb", 1))
    create(d, "c")
    r = d.cli("guestos", "remove", "bb", check=False)
    assert r.returncode != 0 and "used by c" in r.stderr, r.stderr      # stopped, but would run it
    d.cli("start", "c")
    install(d, env.build("bb", 2, tree="v2"))
    r = d.cli("guestos", "remove", "bb", "--version", "1", check=False)
    assert r.returncode != 0 and "used by c" in r.stderr, r.stderr      # running on it
    assert store(d) == ["bb-1", "bb-2"]
    d.cli("stop", "--kill", "c")
    d.cli("guestos", "remove", "bb", "--version", "1")                  # c would take 2 now
    assert store(d) == ["bb-2"] and [g["version"] for g in glist(d)] == [2]
    d.cli("remove", "c")
    d.cli("guestos", "remove", "bb")
    assert store(d) == [] and glist(d) == []
    assert d.cli("guestos", "remove", "bb", check=False).returncode != 0


# ---- signed configs ----------------------------------------------------------------------------------

def test_signed_configs(gdaemon, env):
    d = gdaemon(policy={"signed_configs": True})
    install(d, env.build("bb", 1))

    def cfg(tag, signer=None, **extra):
        path = d.configs / f"c-{tag}.json"
        path.write_text(json.dumps({"name": "c", "guestos": {"name": "bb"}, "token": "none",
                                    "data_size_mb": 16, **extra}))
        if signer:
            env.sign(path, signer)
        return path

    r = d.cli("create", cfg("unsigned"), check=False)
    assert r.returncode != 0 and "signed configs" in r.stderr, r.stderr
    r = d.cli("create", cfg("software", "software"), check=False)
    assert r.returncode != 0 and "signature rejected" in r.stderr, r.stderr
    assert d.containers() == []

    r = d.cli("create", cfg("noversion", "guestos"), check=False)
    assert r.returncode != 0 and "$.config_version: a signed config needs a version" in r.stderr
    d.cli("create", cfg("signed", "guestos", config_version=1))
    c = container(d, "c")
    assert (c["config_trust"], c["trust"]) == ("signed", "signed")

    env_unsigned = cfg("u2", env={"X": "unsigned"})
    r = d.cli("update", "c", env_unsigned, check=False)
    assert r.returncode != 0 and "signed configs" in r.stderr, r.stderr
    r = d.cli("update", "c", cfg("s2", "software", env={"X": "software"}), check=False)
    assert r.returncode != 0 and "signature rejected" in r.stderr, r.stderr
    # a signature over other bytes than those sent
    tampered = cfg("t2", "guestos", env={"X": "signed"}, config_version=2)
    tampered.write_text(tampered.read_text().replace('"signed"', '"evil!!"'))
    r = d.cli("update", "c", tampered, check=False)
    assert r.returncode != 0 and "signature rejected" in r.stderr, r.stderr

    out = d.cli("update", "c", cfg("g2", "guestos", env={"X": "signed"}, config_version=2)).stdout
    assert "config signed" in out, out
    d.cli("start", "c")
    logs_show(d, "c", "marker-v1")
    assert d.sh("c", "echo $X").stdout == "signed\n"
    # what was verified stays known across a restart of trustmed
    d.cli("stop", "--kill", "c")
    d.restart()
    assert container(d, "c")["config_trust"] == "signed"


# ---- a crash in the middle of an install -----------------------------------------------------------

def lock_free(path):
    """Whether trustmed's flock on path could be taken now."""
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


@pytest.fixture(scope="module")
def big_guestos(env):
    """A GuestOS with a 300 MiB image: its install takes long enough to be interrupted."""
    big = env.tmpdir("bigroot-") / "root"
    shutil.copytree(env.rootfs["v1"], big, symlinks=True)
    with open(big / "random.bin", "wb") as f:
        for _ in range(300):
            f.write(os.urandom(1 << 20))
    src = env.build("big", 1, tree=big)
    shutil.rmtree(big.parent)
    return src


def install_in_background(d, src):
    """Start an install; return its CLI process once the staging directory exists."""
    gdir = d.data_dir / "guestos"
    proc = subprocess.Popen([str(TRUSTME), "--run-dir", str(d.run_dir), "guestos", "install",
                             str(src)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: [p for p in os.listdir(gdir) if p.startswith(".staging-")], timeout=30,
                 interval=0.001, what="the install's staging directory")
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc


def wait_for_worker_end(d):
    """The install worker (a fork of trustmed) ends with it, but only when it returns from the
    fsync it may be in. Until then it holds trustmed's lock on the data dir, so no new trustmed
    can clean up under its feet. It also holds trustmed's listening control socket, which may
    accept a connection a moment longer: the stale socket file goes, so that Daemon.start waits
    for the new trustmed's."""
    wait_for(lambda: lock_free(d.data_dir / ".lock"), timeout=60, what="the worker's end")
    d.socket.unlink(missing_ok=True)


def test_kill9_during_install_leaves_nothing(gdaemon, env, big_guestos):
    d = gdaemon()
    install(d, env.build("bb", 1))
    gdir = d.data_dir / "guestos"
    proc = install_in_background(d, big_guestos)
    try:
        # one install at a time
        r = install(d, env.build("bb", 2, tree="v2"), check=False)
        assert r.returncode != 0 and "another GuestOS install is under way" in r.stderr, r.stderr
        d.kill9()
    finally:
        out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0, out
    assert [p for p in os.listdir(gdir) if p.startswith(".staging-big-1.")]
    wait_for_worker_end(d)

    d.start()
    assert store(d) == ["bb-1"] and [g["name"] for g in glist(d)] == ["bb"], d.log()
    assert "left by an interrupted install" in d.log()
    assert install(d, big_guestos).stdout.startswith("installed big-1 (signed")
    assert store(d) == ["bb-1", "big-1"]


def test_sigterm_during_install_removes_staging(gdaemon, env, big_guestos):
    d = gdaemon()
    proc = install_in_background(d, big_guestos)
    try:
        assert d.stop() == 0
    finally:
        out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0, out
    # trustmed removed the staging directory itself before it exited
    assert store(d) == []
    wait_for_worker_end(d)
    d.start()
    assert glist(d) == [] and store(d) == []
