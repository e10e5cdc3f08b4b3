# SPDX-License-Identifier: GPL-2.0-or-later
"""trustme-guestos, the GuestOS builder (docs/GUESTOS.md): the directory it makes, guestos.json
exactly as documented, images that hash, measure and mount as described, and refusals that leave
nothing behind. Signed builds use trustme-pki from the same build directory."""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import BUILD, loops_backed_by, mounts_below
from tools import tool

GUESTOS = BUILD / "src/tools/guestos/trustme-guestos"
PKI = BUILD / "src/tools/pki/trustme-pki"

TOP_KEYS = {"name", "version", "architecture", "init", "args", "env", "description", "mounts"}
TOP_REQUIRED = {"name", "version", "architecture", "mounts"}
MOUNT_KEYS = {
    "shared": ["image", "mount_point", "fs_type", "kind", "size", "sha256"],
    "overlay": ["image", "mount_point", "fs_type", "kind", "size", "sha256"],
    "data": ["mount_point", "kind"],
    "tmpfs": ["mount_point", "kind", "size_mb"],
}

pytestmark = pytest.mark.skipif(not GUESTOS.exists(), reason=f"{GUESTOS} is not built")


@pytest.fixture
def out(test_root):
    """An empty output directory, removed with whatever is in it (mounts first)."""
    path = Path(tempfile.mkdtemp(prefix="gos-", dir=test_root))
    yield path
    for m in sorted(mounts_below(path), key=len, reverse=True):
        subprocess.run([tool("umount"), m], capture_output=True)
    for loop in loops_backed_by(path):
        subprocess.run([tool("losetup"), "-d", loop], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def guestos(*args, check=True, env=None):
    r = subprocess.run([str(GUESTOS), *map(str, args)], capture_output=True, text=True, env=env,
                       timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"trustme-guestos {args} -> {r.returncode}\n{r.stderr}")
    return r


def build(rootfs, out, *extra, name="busybox", version=3, check=True, env=None):
    return guestos("build", rootfs, "--name", name, "--version", version, "--out", out, *extra,
                   check=check, env=env)


def strict_json(path):
    """Parse like trustmed: duplicate keys are an error."""
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicate keys in {path}: {keys}"
        return dict(pairs)
    return json.loads(Path(path).read_bytes().decode("utf-8"), object_pairs_hook=no_duplicates)


def sha256_of(path):
    out = subprocess.run([tool("sha256sum"), str(path)], check=True, capture_output=True, text=True).stdout
    return out.split()[0]


@contextmanager
def mounted(image, fs_type, where):
    mnt = Path(where)
    mnt.mkdir()
    subprocess.run([tool("mount"), "-t", fs_type, "-o", "loop,ro", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run([tool("umount"), str(mnt)], check=True)
        mnt.rmdir()
    assert loops_backed_by(image) == []


def check_manifest(doc):
    """Exactly the keys of docs/GUESTOS.md, in its order, with its types."""
    assert set(doc) <= TOP_KEYS and TOP_REQUIRED <= set(doc)
    assert list(doc) == [k for k in ["name", "version", "architecture", "init", "args", "env",
                                     "description", "mounts"] if k in doc]
    assert isinstance(doc["version"], int) and not isinstance(doc["version"], bool)
    roots = [m for m in doc["mounts"] if m["mount_point"] == "/"]
    assert len(roots) == 1 and roots[0]["kind"] in ("shared", "overlay")
    for m in doc["mounts"]:
        expected = [k for k in MOUNT_KEYS[m["kind"]] if k != "size_mb" or "size_mb" in m]
        assert list(m) == expected, m
        if "sha256" in m:
            assert len(m["sha256"]) == 64 and m["sha256"] == m["sha256"].lower()
            int(m["sha256"], 16)
            assert isinstance(m["size"], int) and m["fs_type"] in ("squashfs", "erofs")


def check_images(gdir, doc):
    for m in doc["mounts"]:
        if "image" in m:
            img = gdir / m["image"]
            assert m["size"] == img.stat().st_size
            assert m["sha256"] == sha256_of(img)


def no_leftovers(out, expected=()):
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)


@pytest.mark.parametrize("fs", ["squashfs", "erofs"])
def test_build(rootfs, out, fs):
    r = build(rootfs, out, "--fs", fs, "--unsigned", "--init", "/bin/sh", "--arg", "-c",
              "--arg", "exec sleep infinity", "--env", "LANG=C", "--description", "busybox demo guest")
    gdir = out / "busybox-3"
    assert r.stdout.strip() == str(gdir)
    assert f"building root.img ({fs})" in r.stderr and "hashing root.img" in r.stderr
    no_leftovers(out, ["busybox-3"])
    # --unsigned: no .sig, no chain
    assert sorted(p.name for p in gdir.iterdir()) == ["guestos.json", "root.img"]
    assert oct(gdir.stat().st_mode & 0o777) == "0o755"

    doc = strict_json(gdir / "guestos.json")
    check_manifest(doc)
    assert doc == {
        "name": "busybox", "version": 3, "architecture": os.uname().machine, "init": "/bin/sh",
        "args": ["-c", "exec sleep infinity"], "env": {"LANG": "C"},
        "description": "busybox demo guest",
        "mounts": [{"image": "root.img", "mount_point": "/", "fs_type": fs, "kind": "overlay",
                    "size": doc["mounts"][0]["size"], "sha256": doc["mounts"][0]["sha256"]}]}
    check_images(gdir, doc)
    assert guestos("hash", gdir / "root.img").stdout.strip() == doc["mounts"][0]["sha256"]

    with mounted(gdir / "root.img", fs, out / "mnt") as mnt:
        busybox = mnt / "bin/busybox"
        assert busybox.is_file()
        assert hashlib.sha256(busybox.read_bytes()).hexdigest() == \
            hashlib.sha256((rootfs / "bin/busybox").read_bytes()).hexdigest()
        st = busybox.stat()
        assert (st.st_uid, st.st_gid, st.st_mtime) == (0, 0, 0)  # -all-root, times 0
    no_leftovers(out, ["busybox-3"])


@pytest.mark.parametrize("fs", ["squashfs", "erofs"])
def test_reproducible(rootfs, out, fs):
    """The same tree gives the same image: a rebuild can be checked against a release."""
    for sub in ("a", "b"):
        (out / sub).mkdir()
        build(rootfs, out / sub, "--fs", fs, "--unsigned")
    a = (out / "a/busybox-3/guestos.json").read_bytes()
    assert a == (out / "b/busybox-3/guestos.json").read_bytes()


def test_defaults_and_extra_mounts(rootfs, out):
    extra = out / "tools"
    (extra / "bin").mkdir(parents=True)
    (extra / "bin/hello").write_text("#!/bin/sh\necho hello\n")
    build(rootfs, out, "--unsigned", "--root-kind", "shared", "--data", "/var/lib/app",
          "--tmpfs", "/tmp:32", "--tmpfs", "/run", "--image", f"{extra}:/opt/tools:erofs",
          "--image", f"{extra}:/usr/share/x", "--arch", "aarch64")
    gdir = out / "busybox-3"
    doc = strict_json(gdir / "guestos.json")
    check_manifest(doc)
    assert doc["init"] == "/sbin/init" and doc["architecture"] == "aarch64"
    assert "args" not in doc and "env" not in doc and "description" not in doc
    assert [(m["mount_point"], m["kind"], m.get("image"), m.get("fs_type"), m.get("size_mb"))
            for m in doc["mounts"]] == [
        ("/", "shared", "root.img", "squashfs", None),
        ("/var/lib/app", "data", None, None, None),
        ("/tmp", "tmpfs", None, None, 32),
        ("/run", "tmpfs", None, None, None),
        ("/opt/tools", "shared", "opt-tools.img", "erofs", None),
        ("/usr/share/x", "shared", "usr-share-x.img", "squashfs", None)]
    assert sorted(p.name for p in gdir.iterdir()) == \
        ["guestos.json", "opt-tools.img", "root.img", "usr-share-x.img"]
    check_images(gdir, doc)
    with mounted(gdir / "opt-tools.img", "erofs", out / "mnt") as mnt:
        assert (mnt / "bin/hello").read_text() == "#!/bin/sh\necho hello\n"


def test_existing_target_refused(rootfs, out):
    target = out / "busybox-3"
    target.mkdir()
    (target / "marker").write_text("keep me")
    r = build(rootfs, out, "--unsigned", check=False)
    assert r.returncode != 0 and "exists" in r.stderr and str(target) in r.stderr
    assert "building" not in r.stderr  # refused before any work
    assert [p.name for p in target.iterdir()] == ["marker"]
    assert (target / "marker").read_text() == "keep me"
    no_leftovers(out, ["busybox-3"])


@pytest.mark.parametrize("args, message", [
    (["--name", "-bad", "--version", "1"], "name '-bad'"),
    (["--name", "a/b", "--version", "1"], "name 'a/b'"),
    (["--name", "x" * 64, "--version", "1"], "name 'xxxx"),
    (["--name", "ok", "--version", "0"], "version '0'"),
    (["--name", "ok", "--version", "07"], "version '07'"),
    (["--name", "ok", "--version", "-1"], "version '-1'"),
    (["--name", "ok", "--version", "9007199254740993"], "version '9007199254740993'"),
    (["--name", "ok", "--version", "1", "--data", "var/app"], "mount point 'var/app'"),
    (["--name", "ok", "--version", "1", "--data", "/var/../etc"], "mount point '/var/../etc'"),
    (["--name", "ok", "--version", "1", "--data", "/var//app"], "mount point '/var//app'"),
    (["--name", "ok", "--version", "1", "--tmpfs", "/tmp/"], "mount point '/tmp/'"),
    (["--name", "ok", "--version", "1", "--data", "/"], "'/' can only be the root image"),
    (["--name", "ok", "--version", "1", "--data", "/a", "--tmpfs", "/a"], "/a is given twice"),
    (["--name", "ok", "--version", "1", "--tmpfs", "/tmp:0"], "SIZE_MB"),
    (["--name", "ok", "--version", "1", "--init", "sbin/init"], "init 'sbin/init'"),
    (["--name", "ok", "--version", "1", "--env", "NOVALUE"], "environment 'NOVALUE'"),
    (["--name", "ok", "--version", "1", "--env", "1ST=x"], "environment '1ST=x'"),
    (["--name", "ok", "--version", "1", "--env", "A-B=x"], "environment 'A-B=x'"),
    (["--name", "ok", "--version", "1", "--image", "DIR:/guestos.json"], "guestos.json.img"),
    (["--name", "ok", "--version", "1", "--image", "DIR:/"], "the root image is made from ROOTFS_DIR"),
    (["--name", "ok", "--version", "1", "--arch", "x" * 32], "architecture"),
    (["--name", "ok", "--version", "1", "--description", "x" * 257], "description"),
    (["--name", "ok", "--version", "1", "--root-kind", "data"], "--root-kind"),
    (["--name", "ok", "--version", "1", "--fs", "ext4"], "--fs"),
    (["--name", "ok", "--version", "1", "--image", "/nonexistent-dir:/opt"], "/nonexistent-dir"),
    (["--name", "ok", "--version", "1", "--image", "DIR:/root"], "root.img"),
    (["--name", "ok", "--version", "1", "--out", "/nonexistent-out"], "/nonexistent-out"),
])
def test_bad_input_refused(rootfs, out, args, message):
    args = [a.replace("DIR", str(rootfs)) for a in args]
    r = guestos("build", rootfs, "--out", out, "--unsigned", *args, check=False)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert "building" not in r.stderr
    no_leftovers(out)


def test_too_many_mounts(rootfs, out):
    mounts = [a for i in range(16) for a in ("--tmpfs", f"/t{i}")]
    r = build(rootfs, out, "--unsigned", *mounts, check=False)
    assert r.returncode != 0 and "too many mounts" in r.stderr
    no_leftovers(out)
    build(rootfs, out, "--unsigned", *mounts[:30])  # 15 + '/' is the limit
    assert len(strict_json(out / "busybox-3/guestos.json")["mounts"]) == 16


def test_rootfs_must_be_a_directory(rootfs, out):
    r = build(rootfs / "bin/busybox", out, "--unsigned", check=False)
    assert r.returncode != 0 and "is not a directory" in r.stderr
    no_leftovers(out)


def test_signing_option_required(rootfs, out):
    r = build(rootfs, out, check=False)
    assert r.returncode == 2 and "--unsigned" in r.stderr
    r = build(rootfs, out, "--unsigned", "--pki", out, "--signer", "guestos", check=False)
    assert r.returncode == 2 and "excludes" in r.stderr
    r = build(rootfs, out, "--pki", out, "--signer", "root", check=False)
    assert r.returncode == 2 and "--signer" in r.stderr
    no_leftovers(out)


def test_tool_failure_reported_and_cleaned_up(rootfs, out):
    """mksquashfs failing half-way: its stderr is shown, the temporary directory is gone."""
    fake = out / "fakebin"
    fake.mkdir()
    (fake / "mksquashfs").write_text(
        '#!/bin/sh\necho partial > "$2"\necho "FATAL ERROR: disk on fire" >&2\nexit 1\n')
    (fake / "mksquashfs").chmod(0o755)
    dest = out / "dest"
    dest.mkdir()
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    r = build(rootfs, dest, "--unsigned", check=False, env=env)
    assert r.returncode == 1
    assert "mksquashfs exited with status 1" in r.stderr and "disk on fire" in r.stderr
    no_leftovers(dest)


def test_output_inside_source_refused(out):
    src = out / "tree"
    (src / "bin").mkdir(parents=True)
    r = build(src, src / "bin", "--unsigned", check=False)
    assert r.returncode != 0 and "inside source directory" in r.stderr
    assert sorted(p.name for p in src.iterdir()) == ["bin"] and not any((src / "bin").iterdir())


def test_interrupted_build_cleaned_up(rootfs, out):
    """SIGTERM while the image tool runs: the build stops after it, and removes its directory."""
    fake = out / "fakebin"
    fake.mkdir()
    (fake / "mksquashfs").write_text('#!/bin/sh\necho partial > "$2"\nsleep 1\n')
    (fake / "mksquashfs").chmod(0o755)
    dest = out / "dest"
    dest.mkdir()
    p = subprocess.Popen([str(GUESTOS), "build", str(rootfs), "--name", "busybox", "--version", "3",
                          "--out", str(dest), "--unsigned"], stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}"))
    deadline = time.time() + 10
    while not any(dest.iterdir()) and time.time() < deadline:
        time.sleep(0.01)
    p.terminate()
    _, err = p.communicate(timeout=30)
    assert p.returncode == 1 and "interrupted" in err
    no_leftovers(dest)


def test_hash(out):
    f = out / "data"
    f.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    assert guestos("hash", f).stdout == sha256_of(f) + "\n"
    (out / "empty").write_bytes(b"")
    assert guestos("hash", out / "empty").stdout.strip() == hashlib.sha256(b"").hexdigest()
    r = guestos("hash", out / "missing", check=False)
    assert r.returncode == 1 and "missing" in r.stderr


def test_help():
    r = guestos("--help")
    assert r.returncode == 0 and "build ROOTFS_DIR" in r.stdout and "--unsigned" in r.stdout
    assert guestos("bogus", check=False).returncode == 2


# ---- signed builds ---------------------------------------------------------------------------

@pytest.fixture
def pki(out):
    """A development PKI made by trustme-pki (from this build directory)."""
    if not PKI.exists():
        pytest.skip(f"{PKI} is not built")
    passphrase = out / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    passphrase.chmod(0o600)
    d = out / "pki"
    subprocess.run([str(PKI), "init", str(d), "--passphrase-file", str(passphrase)], check=True,
                   capture_output=True, timeout=120)
    return d, passphrase


def pki_env():
    """trustme-guestos looks next to itself, then on $PATH; in the build tree it is on neither."""
    return dict(os.environ, PATH=f"{PKI.parent}:{os.environ['PATH']}")


def verify_with_openssl(gdir, tmp):
    """The signature checks out with the leaf's public key, independently of trustme-pki."""
    chain = (gdir / "guestos.json.chain.pem").read_text()
    leaf = chain[:chain.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"
    (tmp / "leaf.pem").write_text(leaf)
    pub = subprocess.run([tool("openssl"), "x509", "-in", str(tmp / "leaf.pem"), "-pubkey", "-noout"],
                         check=True, capture_output=True, text=True).stdout
    (tmp / "leaf.pub").write_text(pub)
    cmd = [tool("openssl"), "dgst", "-sha256", "-verify", str(tmp / "leaf.pub"),
           "-signature", str(gdir / "guestos.json.sig")]
    if "RSA" in subprocess.run([tool("openssl"), "pkey", "-pubin", "-in", str(tmp / "leaf.pub"),
                                "-text", "-noout"], capture_output=True, text=True).stdout:
        cmd += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"]
    return subprocess.run(cmd + [str(gdir / "guestos.json")], capture_output=True, text=True)


def pki_verify(gdir, anchor, *extra):
    return subprocess.run([str(PKI), "verify", str(gdir / "guestos.json"), "--anchor", str(anchor),
                           *map(str, extra)], capture_output=True, text=True)


def check_signed(gdir, tmp):
    assert sorted(p.name for p in gdir.iterdir()) == \
        ["guestos.json", "guestos.json.chain.pem", "guestos.json.sig", "root.img"]
    doc = strict_json(gdir / "guestos.json")
    check_manifest(doc)
    check_images(gdir, doc)
    r = verify_with_openssl(gdir, tmp)
    assert r.returncode == 0 and "Verified OK" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("signer, anchor", [("guestos", "customer/general-root-ca.pem"),
                                            ("software", "software-signing/root-ca.pem")])
def test_signed_build(rootfs, out, pki, signer, anchor):
    d, passphrase = pki
    dest = out / "dest"
    dest.mkdir()
    r = build(rootfs, dest, "--pki", d, "--signer", signer, "--passphrase-file", passphrase,
              env=pki_env())
    gdir = dest / "busybox-3"
    assert r.stdout == f"{gdir}\n"  # trustme-pki's own output goes to stderr
    assert "signing guestos.json" in r.stderr
    no_leftovers(dest, ["busybox-3"])
    check_signed(gdir, out)

    r = pki_verify(gdir, d / anchor, "--crl", d / "crls.pem")
    assert r.returncode == 0, r.stderr
    other = "software-signing/root-ca.pem" if signer == "guestos" else "customer/general-root-ca.pem"
    assert pki_verify(gdir, d / other).returncode != 0

    # a changed byte in guestos.json no longer verifies
    tampered = out / "tampered"
    shutil.copytree(gdir, tampered)
    doc = (tampered / "guestos.json").read_text().replace('"version": 3', '"version": 4')
    (tampered / "guestos.json").write_text(doc)
    assert verify_with_openssl(tampered, out).returncode != 0
    assert pki_verify(tampered, d / anchor).returncode != 0


def test_signed_with_key_and_cert(rootfs, out, pki):
    """--key/--cert/--chain: the same signature from files, as a release engineer's key is."""
    d, passphrase = pki
    dest = out / "dest"
    dest.mkdir()
    build(rootfs, dest, "--key", d / "customer/guestos-signing.key",
          "--cert", d / "customer/guestos-signing.pem", "--chain", d / "customer/guestos-ca.pem",
          "--passphrase-file", passphrase, env=pki_env())
    gdir = dest / "busybox-3"
    check_signed(gdir, out)
    r = pki_verify(gdir, d / "customer/general-root-ca.pem")
    assert r.returncode == 0, r.stderr


def test_signing_failure_leaves_nothing(rootfs, out, pki):
    d, _ = pki
    wrong = out / "wrong"
    wrong.write_text("not the passphrase\n")
    dest = out / "dest"
    dest.mkdir()
    r = build(rootfs, dest, "--pki", d, "--signer", "guestos", "--passphrase-file", wrong,
              check=False, env=pki_env())
    assert r.returncode != 0 and "signing guestos.json" in r.stderr
    no_leftovers(dest)


def test_missing_pki_tool_refused_before_work(rootfs, out):
    empty = out / "emptybin"
    empty.mkdir()
    d = out / "pki-dir"
    d.mkdir()
    r = build(rootfs, out / "pki-dir", "--pki", d, "--signer", "guestos", check=False,
              env=dict(os.environ, PATH=str(empty)))
    assert r.returncode != 0 and "trustme-pki" in r.stderr and "building" not in r.stderr
    assert list(d.iterdir()) == []
