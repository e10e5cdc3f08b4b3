# SPDX-License-Identifier: GPL-2.0-or-later
"""trustme-guestos import (docs/GUESTOS.md "Importing an OCI image"): layouts made here
(oci_images.py) covering every layer feature, unpacked and compared file by file with
`umoci unpack`, the reference; hostile images refused with nothing left behind; the image config
mapped into guestos.json; byte-identical images from the same image."""
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

import oci_images as oci
from conftest import BUILD, loops_backed_by, mounts_below
from tools import tool

GUESTOS = BUILD / "src/tools/guestos/trustme-guestos"
PKI = BUILD / "src/tools/pki/trustme-pki"

pytestmark = pytest.mark.skipif(not GUESTOS.exists(), reason=f"{GUESTOS} is not built")

# security.capability v2 granting cap_net_raw (bit 13), permitted and effective
CAP_NET_RAW = bytes([0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0]) + bytes(8)
CAP_NET_RAW = bytes([1, 0, 0, 2]) + CAP_NET_RAW[4:]
LONG = "opt/" + "d" * 120 + "/" + "f" * 150


@pytest.fixture
def work(test_root):
    path = Path(tempfile.mkdtemp(prefix="oci-", dir=test_root))
    (path / "out").mkdir()
    yield path
    for m in sorted(mounts_below(path), key=len, reverse=True):
        subprocess.run([tool("umount"), m], capture_output=True)
    for loop in loops_backed_by(path):
        subprocess.run([tool("losetup"), "-d", loop], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def guestos(*args, check=True, env=None):
    r = subprocess.run([str(GUESTOS), *map(str, args)], capture_output=True, text=True, timeout=600,
                       env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"trustme-guestos {args} -> {r.returncode}\n{r.stderr}")
    return r


def import_(src, out, *extra, name="img", version=1, check=True, env=None):
    return guestos("import", src, "--name", name, "--version", version, "--out", out,
                   *(extra or ("--unsigned",)), check=check, env=env)


def strict_json(path):
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicate keys in {path}: {keys}"
        return dict(pairs)
    return json.loads(Path(path).read_bytes(), object_pairs_hook=no_duplicates)


def sha256_file(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree(root):
    """Every entry below root: type, mode, owner, content, link target, extended attributes
    (user.* and security.capability), and which entries are hard links of one another."""
    root = Path(root)
    entries, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] if dirpath == str(root) else []:
            pass
        for name in dirnames + filenames + ([] if dirpath != str(root) else ["."]):
            p = Path(dirpath) / name if name != "." else root
            rel = str(p.relative_to(root)) if name != "." else "."
            st = os.lstat(p)
            e = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
            if stat.S_ISREG(st.st_mode):
                e["sha256"] = sha256_file(p)
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                e["target"] = os.readlink(p)
                inodes.setdefault(st.st_ino, []).append(rel)
            if not stat.S_ISLNK(st.st_mode):
                try:
                    names = sorted(os.listxattr(p, follow_symlinks=False))
                except OSError:  # a squashfs without any extended attribute
                    names = []
                e["xattrs"] = {k: os.getxattr(p, k, follow_symlinks=False).hex() for k in names
                               if k.startswith("user.") or k == "security.capability"}
            entries[rel] = e
    links = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return entries, links


def mount_image(img, where):
    where.mkdir()
    subprocess.run([tool("mount"), "-t", "squashfs", "-o", "loop,ro", str(img), str(where)], check=True)
    return where


def umount(where):
    subprocess.run([tool("umount"), str(where)], check=True)


def umoci_tree(layout, ref, bundle):
    subprocess.run([tool("umoci"), "unpack", "--image", f"{layout}:{ref}", str(bundle)], check=True,
                   capture_output=True)
    return tree(bundle / "rootfs")


def imported_tree(gdir, where):
    mnt = mount_image(gdir / "root.img", where)
    try:
        return tree(mnt)
    finally:
        umount(mnt)


# ---- the corpus ---------------------------------------------------------------------------------

def f(name, data=b"", **kw):
    return {"name": name, "type": "file", "data": data, **kw}


def d(name, **kw):
    return {"name": name, "type": "dir", **kw}


BASE = [
    d("./", mode=0o755),
    d("bin"), d("etc"), d("usr"), d("usr/bin"), d("opt"), d("opt/keep"), d("tmp", mode=0o1777),
    d("var"), d("var/cache", mode=0o700, uid=5, gid=5),
    f("bin/tool", b"#!/bin/sh\necho tool\n", mode=0o755),
    f("usr/bin/su", b"su", mode=0o4755),
    f("usr/bin/wall", b"wall", mode=0o2755, gid=5),
    f("usr/bin/ping", b"ping", mode=0o755, xattrs={"security.capability": CAP_NET_RAW}),
    f("etc/owned", b"secret", mode=0o640, uid=1000, gid=1000),
    f("etc/conf", b"a=1\n", xattrs={"user.note": "kept"}),
    f("etc/gone", b"to be whited out"),
    d("dirgone"), f("dirgone/x", b"x"),
    {"name": "bin/sh", "type": "symlink", "target": "/usr/bin/tool"},
    {"name": "lib", "type": "symlink", "target": "usr/lib"},
    {"name": "usr/bin/tool2", "type": "link", "target": "bin/tool"},
    {"name": "run", "type": "dir"}, {"name": "run/fifo", "type": "fifo", "mode": 0o600},
    d("opt/" + "d" * 120), f(LONG, b"long name"),
    d("opq"), f("opq/a", b"a"), d("opq/sub"), f("opq/sub/c", b"c"),
    f("sparse", b"\0" * 65536 + b"end"),
]
UPPER = [
    f("etc/.wh.gone"), f(".wh.dirgone"),
    d("opq"), f("opq/.wh..wh..opq"), f("opq/new", b"new"),
    f("etc/conf", b"replaced\n", mode=0o600),  # a file over a file
    d("opt/keep/sub"),  # into a lower directory
    {"name": "usr/bin/tool3", "type": "link", "target": "bin/tool"},  # a link to a lower file
    d("var/cache", mode=0o750, uid=5, gid=6),  # a directory's metadata changed
]
TOP = [
    f("bin/sh", b"no longer a link", mode=0o755),  # a file over a symbolic link
    d("etc/gone"), f("etc/gone/again", b"a directory where a whited-out file was"),
    f("usr/bin/new", b"zstd layer"),
]


def corpus(path, compression, ref="latest"):
    return oci.single(path, [BASE, UPPER, TOP], {"Cmd": ["/bin/tool"]}, ref=ref,
                      compression=compression)


def test_corpus_matches_umoci(work):
    """Every layer feature, gzip and zstd and uncompressed: the tree in root.img is the tree
    umoci unpacks (umoci 0.4.7 reads no zstd: it gets the same layers gzip-compressed)."""
    corpus(work / "mixed", [None, "gzip", "zstd"])
    corpus(work / "gz", "gzip")
    gdir = Path(import_(work / "mixed", work / "out").stdout.strip())
    got, got_links = imported_tree(gdir, work / "mnt")
    want, want_links = umoci_tree(work / "gz", "latest", work / "bundle")
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k] == want[k], k
    assert got_links == want_links
    # and what the corpus is about, spelled out
    assert got["usr/bin/su"]["mode"] == oct(0o104755)
    assert got["usr/bin/ping"]["xattrs"] == {"security.capability": CAP_NET_RAW.hex()}
    assert got["etc/owned"]["uid"] == 1000 and got["var/cache"]["gid"] == 6
    assert "etc/gone/again" in got and "dirgone" not in got
    assert sorted(k for k in got if k.startswith("opq/")) == ["opq/new"]
    assert ["bin/tool", "usr/bin/tool2", "usr/bin/tool3"] in got_links
    assert LONG in got and got["run/fifo"]["mode"] == oct(0o10600)


def test_whiteouts_hide_lower_layers_only(work):
    """A whiteout or opaque marker hides what lower layers made, not what its own layer put
    there before it (the marker may come anywhere in its layer)."""
    lower = [d("o"), f("o/lower", b"1"), f("gone", b"1"), f("kept", b"1")]
    upper = [f("o/early", b"2"), f("o/.wh..wh..opq"), f("o/late", b"2"), f("kept", b"2"),
             f(".wh.kept"), f(".wh.gone")]
    oci.single(work / "layout", [lower, upper], {"Cmd": ["/x"]})
    got, _ = imported_tree(Path(import_(work / "layout", work / "out").stdout.strip()), work / "mnt")
    assert sorted(got) == [".", "kept", "o", "o/early", "o/late"]
    assert got["kept"]["sha256"] == hashlib.sha256(b"2").hexdigest()


def test_archives_give_the_same_image(work):
    """An OCI archive and a docker-archive of the same layers: the same root.img, byte for byte."""
    corpus(work / "layout", "gzip")
    oci.tar_dir(work / "layout", work / "layout.tar")
    docker = oci.docker_archive(work / "docker", [BASE, UPPER, TOP], {"Cmd": ["/bin/tool"]})
    oci.tar_dir(docker, work / "docker.tar")
    images = []
    for i, src in enumerate([work / "layout", work / "layout.tar", work / "docker.tar", docker]):
        gdir = Path(import_(src, work / "out", version=i + 1).stdout.strip())
        images.append(sha256_file(gdir / "root.img"))
        doc = strict_json(gdir / "guestos.json")
        if i < 2:
            assert doc["oci"]["manifest"].startswith("sha256:")
        else:
            assert "manifest" not in doc["oci"]
    assert len(set(images)) == 1


def test_reproducible(work):
    corpus(work / "layout", ["gzip", "zstd", None])
    a = Path(import_(work / "layout", work / "out").stdout.strip())
    (work / "out2").mkdir()
    b = Path(import_(work / "layout", work / "out2").stdout.strip())
    assert (a / "root.img").read_bytes() == (b / "root.img").read_bytes()
    assert (a / "guestos.json").read_bytes() == (b / "guestos.json").read_bytes()


def test_multi_platform_index(work):
    """An index of an index (as registries serve it) with amd64 and arm64: the machine's own
    platform by default (the other one is listed first), --platform for another; the config
    must agree with the platform."""
    lay = oci.Layout(work / "multi")
    amd = lay.image([[f("which", b"amd64")]], {"Cmd": ["/which"]}, arch="amd64")
    arm = lay.image([[f("which", b"arm64")]], {"Cmd": ["/which"]}, arch="arm64")
    here = os.uname().machine
    nested = lay.blob(json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
                                  "manifests": [arm, amd] if here == "x86_64" else [amd, arm]}).encode(),
                      oci.OCI_INDEX)
    lay.add(nested, "latest")
    g1 = Path(import_(work / "multi", work / "out").stdout.strip())
    assert strict_json(g1 / "guestos.json")["architecture"] == here
    assert strict_json(g1 / "guestos.json")["oci"]["manifest"] == (amd if here == "x86_64" else arm)["digest"]
    g2 = Path(import_(work / "multi", work / "out", "--platform", "linux/arm64", "--unsigned",
                      version=2).stdout.strip())
    doc = strict_json(g2 / "guestos.json")
    assert doc["architecture"] == "aarch64" and doc["oci"]["manifest"] == arm["digest"]
    got, _ = imported_tree(g2, work / "mnt")
    assert got["which"]["sha256"] == hashlib.sha256(b"arm64").hexdigest()
    r = import_(work / "multi", work / "out", "--platform", "linux/riscv64", "--unsigned", version=3,
                check=False)
    assert r.returncode != 0 and "no image for linux/riscv64" in r.stderr, r.stderr


def test_config_mapped(work):
    passwd = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
    group = b"root:x:0:\nstaff:x:50:\napp:x:1001:\n"
    layers = [[d("etc"), f("etc/passwd", passwd), f("etc/group", group), d("usr"), d("usr/bin"),
               f("usr/bin/server", b"#!/bin/sh\n", mode=0o755), {"name": "bin", "type": "symlink",
                                                               "target": "usr/bin"}]]
    config = {"Entrypoint": ["server", "--port"], "Cmd": ["8080"],
              "Env": ["PATH=/bin:/usr/sbin", "LANG=C.UTF-8", "MODE=image"],
              "WorkingDir": "/srv/app/", "User": "app:staff",
              "ExposedPorts": {"8080/tcp": {}, "53/udp": {}, "9000": {}},
              "Volumes": {"/var/lib/data/": {}, "/cache": {}}}
    oci.single(work / "layout", layers, config)
    gdir = Path(import_(work / "layout", work / "out", "--unsigned", "--env", "MODE=cli").stdout.strip())
    doc = strict_json(gdir / "guestos.json")
    # "server" through the image's PATH: /bin is a symbolic link to usr/bin inside the image
    assert doc["init"] == "/bin/server" and doc["args"] == ["--port", "8080"]
    assert doc["env"] == {"PATH": "/bin:/usr/sbin", "LANG": "C.UTF-8", "MODE": "cli"}
    assert doc["working_dir"] == "/srv/app" and doc["user"] == {"uid": 1000, "gid": 50}
    assert doc["ports"] == ["53/udp", "8080/tcp", "9000/tcp"]
    assert [m for m in doc["mounts"] if m["kind"] == "data"] == [
        {"mount_point": "/cache", "kind": "data"}, {"mount_point": "/var/lib/data", "kind": "data"}]
    assert list(doc) == ["name", "version", "architecture", "init", "args", "env", "description",
                         "working_dir", "user", "ports", "oci", "mounts"]
    got, _ = imported_tree(gdir, work / "mnt")
    assert got["srv/app"]["mode"] == oct(0o40755)  # WorkingDir made in the image
    # --init replaces Entrypoint and Cmd
    g2 = Path(import_(work / "layout", work / "out", "--unsigned", "--init", "/usr/bin/server",
                      "--arg", "x", version=2).stdout.strip())
    doc = strict_json(g2 / "guestos.json")
    assert doc["init"] == "/usr/bin/server" and doc["args"] == ["x"]


def test_config_errors(work):
    cases = {
        "nocmd": ({}, "neither Entrypoint nor Cmd"),
        "notfound": ({"Cmd": ["nosuch"]}, "not in the image's PATH"),
        "nouser": ({"Cmd": ["/x"], "User": "ghost"}, "no such user"),
    }
    for name, (config, message) in cases.items():
        oci.single(work / name, [[f("x", b"x", mode=0o755), d("etc"), f("etc/passwd", b"")]], config)
        r = import_(work / name, work / "out", check=False)
        assert r.returncode != 0 and message in r.stderr, (name, r.stderr)
    assert os.listdir(work / "out") == []


def test_signed_import(work):
    """Signed through the GuestOS Signing chain like a build: trustme-pki verifies it against
    the General root."""
    if not PKI.exists():
        pytest.skip(f"{PKI} is not built")
    passphrase = work / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    subprocess.run([str(PKI), "init", str(work / "pki"), "--passphrase-file", str(passphrase)],
                   check=True, capture_output=True, timeout=120)
    corpus(work / "layout", "gzip")
    env = dict(os.environ, PATH=f"{PKI.parent}:{os.environ['PATH']}")
    gdir = Path(import_(work / "layout", work / "out", "--pki", work / "pki", "--signer", "guestos",
                        "--passphrase-file", passphrase, env=env).stdout.strip())
    assert sorted(os.listdir(gdir)) == ["guestos.json", "guestos.json.chain.pem", "guestos.json.sig",
                                        "root.img"]
    r = subprocess.run([str(PKI), "verify", str(gdir / "guestos.json"), "--anchor",
                        str(work / "pki/customer/general-root-ca.pem")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # the reference values a verifier will want, computed from the image before any device runs it
    r = subprocess.run([str(PKI), "rim", "--out", str(work / "refs.json"), "--version", "1",
                        "--guestos", str(gdir)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    values = json.loads((work / "refs.json").read_text())["values"]
    assert {"type": "guestos-image", "name": "img-1/root.img",
            "sha256": sha256_file(gdir / "root.img")} in values


# ---- hostile images -----------------------------------------------------------------------------

def sym(name, target):
    return {"name": name, "type": "symlink", "target": target}


def link(name, target):
    return {"name": name, "type": "link", "target": target}


# name -> (layers, what the error must say). VICTIM is a file outside the tree that an escape
# would reach; it must be untouched afterwards.
def hostile_cases(victim):
    vdir, vname = str(victim.parent), victim.name
    return {
        "dotdot": ([[f("../escape", b"x")]], "leaves the tree"),
        "dotdot_inside": ([[d("a"), f("a/../../escape", b"x")]], "leaves the tree"),
        "absolute": ([[f(str(victim), b"x")]], "leaves the tree"),
        "hardlink_outside": ([[link("l", "../../../../" + str(victim))]], "outside the tree"),
        "hardlink_absolute": ([[link("l", str(victim))]], "outside the tree"),
        "write_through_symlink": ([[sym("s", vdir), f("s/" + vname, b"x")]], "symbolic link"),
        "write_through_symlink_next_layer": ([[sym("s", vdir)], [f("s/" + vname, b"x")]],
                                             "symbolic link"),
        "dir_through_symlink": ([[sym("s", vdir)], [d("s/" + vname)]], "symbolic link"),
        "whiteout_through_symlink": ([[sym("s", vdir)], [f("s/.wh." + vname)]], "symbolic link"),
        "opaque_through_symlink": ([[sym("s", vdir)], [f("s/.wh..wh..opq")]], "symbolic link"),
        "hardlink_through_symlink": ([[sym("s", vdir)], [link("l", "s/" + vname)]], "symbolic link"),
        "char_device": ([[{"name": "null", "type": "chr", "dev": (1, 3)}]], "device nodes"),
        "block_device": ([[{"name": "sda", "type": "blk", "dev": (8, 0)}]], "device nodes"),
        "whiteout_device": ([[{"name": "gone", "type": "chr", "dev": (0, 0)}]], "device nodes"),
        "bomb": ([[f("zeros", b"\0" * (24 << 20))]], "beyond the limit"),
    }


def hostile_ids():
    return list(hostile_cases(Path("/x/y")))


@pytest.mark.parametrize("case", hostile_ids())
def test_hostile_layers_refused(work, case):
    victim = work / "victim" / "file"
    victim.parent.mkdir()
    victim.write_text("untouched")
    layers, message = hostile_cases(victim)[case]
    oci.single(work / "layout", layers, {"Cmd": ["/x"]}, compression="gzip")
    r = import_(work / "layout", work / "out", "--unsigned", "--max-size", "16", check=False)
    assert r.returncode != 0, r.stderr
    assert message in r.stderr and ("layer 1 (" in r.stderr or "layer 2 (" in r.stderr), r.stderr
    assert os.listdir(work / "out") == []  # nothing left, not even the unpacked tree
    assert victim.read_text() == "untouched" and os.listdir(victim.parent) == ["file"]


def blob_of(layout, desc_index=0):
    """The first layer blob of the only image of a layout."""
    index = json.loads((layout / "index.json").read_text())
    m = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    return layout / "blobs/sha256" / m["layers"][desc_index]["digest"][7:], m


def test_bad_blobs_refused(work):
    def fresh(name):
        return oci.single(work / name, [[f("a", b"a" * 4096)], [f("b", b"b")]], {"Cmd": ["/a"]},
                          compression="gzip").path

    # a changed byte, same size
    p, _ = blob_of(fresh("flipped"))
    data = bytearray(p.read_bytes())
    data[-5] ^= 1
    p.write_bytes(bytes(data))
    # truncated
    p, _ = blob_of(fresh("truncated"))
    p.write_bytes(p.read_bytes()[:-10])
    # a blob whose digest and size are right but whose gzip stream ends early
    cut = oci.compress(oci.tar_bytes([f("a", os.urandom(100000))]), "gzip")[:-200]
    lay = oci.Layout(work / "cut")
    lay.add(lay.image([cut], {"Cmd": ["/a"]}, compression="gzip"), "latest")
    # the config blob replaced
    _, m = blob_of(fresh("config"))
    (work / "config/blobs/sha256" / m["config"]["digest"][7:]).write_text('{"os": "linux"}')
    # a blob missing
    p, _ = blob_of(fresh("missing"), 1)
    p.unlink()
    # a blob that is a symbolic link to a file outside
    p, _ = blob_of(fresh("symlinked"))
    shutil.copy(p, work / "outside-blob")
    p.unlink()
    p.symlink_to(work / "outside-blob")
    cases = {"flipped": "digest mismatch", "truncated": "truncated or replaced",
             "cut": "truncated gzip input", "config": "image config",
             "missing": "layer 2", "symlinked": "symbolic link"}
    for name, message in cases.items():
        r = import_(work / name, work / "out", check=False)
        assert r.returncode != 0 and message in r.stderr, (name, r.stderr)
        assert os.listdir(work / "out") == [], name


def test_hostile_archive_refused(work):
    """An OCI archive is unpacked before it is read: only plain files and directories, inside."""
    corpus(work / "layout", "gzip")
    import tarfile
    with tarfile.open(work / "evil.tar", "w") as t:
        for p in sorted((work / "layout").rglob("*")):
            t.add(p, arcname=str(p.relative_to(work / "layout")), recursive=False)
        ti = tarfile.TarInfo("blobs/../../escape")
        t.addfile(ti, None)
    r = import_(work / "evil.tar", work / "out", check=False)
    assert r.returncode != 0 and "leaves the tree" in r.stderr, r.stderr
    with tarfile.open(work / "evil2.tar", "w") as t:
        ti = tarfile.TarInfo("index.json")
        ti.type = tarfile.SYMTYPE
        ti.linkname = "/etc/passwd"
        t.addfile(ti, None)
    r = import_(work / "evil2.tar", work / "out", check=False)
    assert r.returncode != 0 and "entries of this type are refused" in r.stderr, r.stderr
    assert os.listdir(work / "out") == []
    assert not (work / "escape").exists() and not (work.parent / "escape").exists()


def test_interrupted_import_cleaned_up(work):
    """SIGINT while a layer is being applied: the import stops at the next entry and removes the
    unpacked tree; nothing is left in the output directory."""
    many = [d("m")] + [f(f"m/{i}", b"x") for i in range(40000)]
    oci.single(work / "layout", [many], {"Cmd": ["/x"]})
    p = subprocess.Popen([str(GUESTOS), "import", str(work / "layout"), "--name", "img", "--version",
                          "1", "--out", str(work / "out"), "--unsigned"], stderr=subprocess.PIPE,
                         text=True)
    try:
        assert "applying layer 1" in p.stderr.readline()
        p.send_signal(signal.SIGINT)
        err = p.communicate(timeout=120)[1]
    finally:
        p.kill()
        p.wait()
    assert p.returncode != 0 and "interrupted" in err, err
    assert "building root.img" not in err  # stopped in the layer, not after it
    assert os.listdir(work / "out") == []


def test_blob_changed_after_its_check_is_not_used(work):
    """Whoever can still write the layout directory (a shared or mounted directory) rewrites a
    layer blob in place after trustme-guestos checked its digest, while an earlier layer is being
    applied: the import uses the bytes it checked (a private copy), never the rewritten ones."""
    many = [d("m")] + [f(f"m/{i}", b"x") for i in range(10000)]  # a second or so to apply
    lay = oci.single(work / "layout", [many, [f("b", b"genuine!")]], {"Cmd": ["/b"]})
    blob, _ = blob_of(lay.path, 1)
    data = blob.read_bytes()
    at = data.index(b"genuine!")
    p = subprocess.Popen([str(GUESTOS), "import", str(work / "layout"), "--name", "img", "--version",
                          "1", "--out", str(work / "out"), "--unsigned"], stderr=subprocess.PIPE,
                         text=True)
    try:
        assert "applying layer 1" in p.stderr.readline()
        with open(blob, "r+b") as fh:  # same size, same tar header: only the data differs
            fh.seek(at)
            fh.write(b"hostile!")
        err = p.communicate(timeout=300)[1]
    finally:
        p.kill()
        p.wait()
    assert "applying layer 2" in err, err
    if p.returncode == 0:
        mnt = mount_image(work / "out/img-1/root.img", work / "mnt")
        try:
            assert (mnt / "b").read_bytes() == b"genuine!"
        finally:
            umount(mnt)
    else:
        assert "digest mismatch" in err, err


def test_entry_deeper_than_path_max_is_refused(work):
    """A layer whose tree, below the import's temporary directory, is deeper than PATH_MAX (20
    directories of 203 bytes and a file: a 4081-byte name, legal in a PAX tar): refused naming the
    entry, and nothing is left in the output directory. Before: the image was built, but the
    unpacked tree could not be removed ("File name too long") and stayed in --out."""
    comps = ["x" * 203] * 20
    deep = [d("/".join(comps[:i])) for i in range(1, len(comps) + 1)] + [f("/".join(comps) + "/f", b"deep")]
    oci.single(work / "layout", [deep], {"Cmd": ["/x"]})
    r = import_(work / "layout", work / "out", check=False)
    assert r.returncode != 0 and "longer than 4095 bytes" in r.stderr, r.stderr
    assert "cannot remove" not in r.stderr, r.stderr
    assert os.listdir(work / "out") == []


def test_passwd_that_is_a_fifo_is_refused(work):
    """An image whose /etc/passwd is a FIFO (a type layers may hold) and whose config names a
    User: the import reads /etc/passwd to map the user. Refused at once (before: open() waited for
    a writer for ever, and the import hung)."""
    layer = [d("etc"), {"name": "etc/passwd", "type": "fifo", "mode": 0o644},
             f("bin/x", b"#!/bin/sh\n", mode=0o755)]
    oci.single(work / "layout", [[d("bin")] + layer], {"Cmd": ["/bin/x"], "User": "someone"})
    p = subprocess.Popen([str(GUESTOS), "import", str(work / "layout"), "--name", "img", "--version", "1",
                          "--out", str(work / "out"), "--unsigned"], stderr=subprocess.PIPE, text=True)
    try:
        err = p.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("the import hung on an /etc/passwd that is a FIFO")
    assert p.returncode != 0 and "/etc/passwd" in err, err
    assert os.listdir(work / "out") == []
