# SPDX-License-Identifier: GPL-2.0-or-later
"""Per-container secure storage (docs/SECURE_STORAGE.md) against a real trustme-tpmd and its
swtpm: the store's anchor is an entry of tpmd's anchor table. trustme-sstore-tool stands where
the keystore service stands and talks to tpmd over the link this test holds (as trustmed would).

Every tamper and rollback case is refused with its reason and reported ("sstore.refused"), a
kill -9 at each step of a commit leaves the old or the new state, two stores never see each
other's objects, tamper-proof objects outlive a wipe."""
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import anchors
from conftest import BUILD, TEST_PREFIX
from pb import field_bytes, field_varint, parse
from test_tpmd import Tpmd, swtpm_processes
from tools import tool

SSTORE = BUILD / "src/sstore/trustme-sstore-tool"
BIG = 70000  # above 64 KiB an object has a file of its own; below, it lives in the superblock


def hooks_built():
    """Crash points (src/lib/test_hooks.h) exist only in a build with -Dtest_hooks=true."""
    opts = json.loads((BUILD / "meson-info/intro-buildoptions.json").read_text())
    return any(o["name"] == "test_hooks" and o["value"] is True for o in opts)


needs_hooks = pytest.mark.skipif(not hooks_built(), reason="needs a build with -Dtest_hooks=true "
                                 "(scripts/build.sh makes one)")


@pytest.fixture(scope="module")
def tpmd():
    tool("swtpm")
    base = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}-sstore-", dir="/tmp"))
    os.chmod(base, 0o755)
    t = Tpmd(base / "tpmd")
    try:
        yield t.start()
    finally:
        t.cleanup()
        left = swtpm_processes(base)
        shutil.rmtree(base, ignore_errors=True)
        assert left == [], f"swtpm processes left: {left}"


class Store:
    def __init__(self, tpmd, base, store_id, key=None):
        self.tpmd = tpmd
        self.dir = Path(base) / store_id
        self.id = store_id
        self.keyfile = Path(base) / f"{store_id}.key"
        if not self.keyfile.exists() or key is not None:
            self.keyfile.write_bytes(key or os.urandom(32))

    def argv(self, *args):
        return [str(SSTORE), "--dir", str(self.dir), "--store", self.id, "--key-file", str(self.keyfile),
                "--tpmd-fd", str(self.tpmd.sock.fileno()), *args]

    def run(self, *args, check=True, **kw):
        r = subprocess.run(self.argv(*args), pass_fds=(self.tpmd.sock.fileno(),), capture_output=True,
                           timeout=60, **kw)
        if check:
            assert r.returncode == 0, r.stderr.decode()
        return r

    def fails(self, *args):
        r = self.run(*args, check=False)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        return r.stderr.decode()

    def commit(self, *changes):
        return int(self.run("commit", *changes).stdout.split()[1])

    def get(self, oid):
        return self.run("get", oid).stdout.decode()

    def objects(self):
        """Every object and its value: the whole visible state."""
        out = {}
        for line in self.run("list").stdout.decode().splitlines():
            oid = line.split()[0]
            out[oid] = self.get(oid)
        return out

    def status(self):
        return dict(line.split(" ", 1) for line in self.run("status").stdout.decode().splitlines())

    def object_files(self):
        return sorted((self.dir / "obj").iterdir())


@pytest.fixture
def base():
    d = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}-sstore-d-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def table_version(tpmd):
    """The anchor table's version: the number of its updates, each one NV write."""
    return anchors.version(tpmd.data)


def copy_tree(src, dst):
    subprocess.run([tool("cp"), "-a", str(src), str(dst)], check=True)


def restore_tree(saved, dst):
    shutil.rmtree(dst)
    copy_tree(saved, dst)


def test_objects_and_one_nv_write_per_commit(tpmd, base):
    s = Store(tpmd, base, "c-basic")
    assert s.status()["version"] == "0"
    before = table_version(tpmd)
    assert s.commit("+a=alpha", "+b=beta", "!c=gamma") == 1
    assert table_version(tpmd) == before + 1  # one anchor update (one NV write) for 3 objects
    assert s.objects() == {"a": "alpha", "b": "beta", "c": "gamma"}
    assert s.commit("-a", "+b=beta2") == 2
    assert table_version(tpmd) == before + 2
    assert s.objects() == {"b": "beta2", "c": "gamma"}
    # all or nothing: one bad change refuses the whole commit, nothing is written or anchored
    assert "exists" in s.fails("commit", "+b=beta3", "!c=again")
    assert "no object a" in s.fails("commit", "+b=beta3", "-a")
    assert s.objects() == {"b": "beta2", "c": "gamma"} and s.status()["version"] == "2"
    assert table_version(tpmd) == before + 2
    # no plaintext on disk: neither the values nor the ids
    for f in s.dir.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert b"beta2" not in data and b"gamma" not in data, f
    assert not any(b"gamma" in f.name.encode() for f in s.object_files())
    # small objects live in the superblock; a big one has two slot files of its own that take
    # its versions in turn, overwritten in place (the same inodes: no new file, no directory sync)
    assert s.object_files() == []
    s.commit("+big=" + "1" * BIG)
    s.commit("+big=" + "2" * BIG)
    slots = {f.name: f.stat().st_ino for f in s.object_files()}
    assert sorted(n.rsplit("-", 1)[1] for n in slots) == ["s0", "s1"] and s.get("big") == "2" * BIG, slots
    for v in "34":
        s.commit("+big=" + v * BIG)
        assert {f.name: f.stat().st_ino for f in s.object_files()} == slots
        assert s.get("big") == v * BIG
    # deleted: both slot files go
    s.commit("-big")
    assert s.object_files() == []
    # bad input: a clear error
    assert "object id" in s.fails("commit", "+has space=1")
    assert "no object zz" in s.fails("get", "zz")


def test_replaced_object_older_version_is_refused(tpmd, base):
    s = Store(tpmd, base, "c-replace")
    s.commit("+pin=" + "1" * BIG, "+other=x")
    old = {f.name: f.read_bytes() for f in s.object_files()}
    s.commit("+pin=" + "2" * BIG)
    new = [f for f in s.object_files() if f.name not in old]
    assert len(new) == 1
    old_pin = next(v for k, v in old.items() if k.split("-")[0] == new[0].name.split("-")[0])
    new[0].write_bytes(old_pin)  # the older version of the object, under the current name
    err = s.fails("get", "pin")
    assert "sstore.refused: EBADMSG" in err and "does not match the superblock" in err, err
    assert "1111" not in s.run("get", "pin", check=False).stdout.decode()
    assert len(old) == 1
    assert s.get("other") == "x"  # the untouched object is still served
    assert "pin" in s.fails("verify")


def test_swapped_objects_are_refused(tpmd, base):
    s = Store(tpmd, base, "c-swap")
    s.commit("+a=" + "A" * BIG, "+b=" + "B" * BIG)  # same size: only the contents tell them apart
    fa, fb = s.object_files()
    da, db = fa.read_bytes(), fb.read_bytes()
    fa.write_bytes(db)
    fb.write_bytes(da)
    for oid in ("a", "b"):
        assert "does not match the superblock" in s.fails("get", oid)
    # and renamed (file names swapped) instead of the contents: the same
    fa.write_bytes(da)
    fb.write_bytes(db)
    tmp = fa.with_name("x")
    fa.rename(tmp)
    fb.rename(fa)
    tmp.rename(fb)
    for oid in ("a", "b"):
        assert "does not match the superblock" in s.fails("get", oid)


def test_store_rollback_missing_and_edited_superblock_refused(tpmd, base):
    s = Store(tpmd, base, "c-rollback")
    s.commit("+k=v1")
    saved = base / "saved-v1"
    copy_tree(s.dir, saved)
    s.commit("+k=v2")
    s.commit("+k=v3")
    # the whole store restored from an older copy (both superblock slots and every object)
    restore_tree(saved, s.dir)
    err = s.fails("get", "k")
    assert "sstore.refused: ESTALE" in err and "rolled back" in err and "version 1" in err, err
    assert "version 3" in err
    # a newer commit on top of the old copy is refused as well: nothing is served or written
    assert "rolled back" in s.fails("commit", "+k=v4")
    # the store removed
    shutil.rmtree(s.dir)
    err = s.fails("list")
    assert "ENOENT" in err and "missing, but the TPM anchors version 3" in err, err


def test_edited_superblock_and_wrong_key_refused(tpmd, base):
    s = Store(tpmd, base, "c-edit")
    s.commit("+k=v1")
    s.commit("+k=v2")
    sb = s.dir / "super.0"  # version 2; "k" is inline, its ciphertext just before the MAC
    good = sb.read_bytes()
    for at in (-40, 20):  # an inline object's ciphertext; the header
        bad = bytearray(good)
        bad[at] ^= 1
        sb.write_bytes(bytes(bad))
        err = s.fails("get", "k")
        assert "EBADMSG" in err and "does not authenticate" in err, err
    sb.write_bytes(good)
    assert s.get("k") == "v2"
    # the other slot (version 1, intact) copied over the current one: the anchor says no
    shutil.copy(s.dir / "super.1", sb)
    assert "rolled back" in s.fails("get", "k")
    sb.write_bytes(good)
    assert s.get("k") == "v2"
    # the store's files with another key (another container's, or a forged one)
    other = Store(tpmd, base, "c-edit", key=os.urandom(32))
    assert "does not authenticate" in other.fails("get", "k")


def test_whole_data_dir_rollback_refused(tpmd, base):
    """Root restores the store *and* tpmd's anchor table from a copy of the disk: tpmd refuses
    the older table (its TPM NV index is newer), so the store is refused too."""
    s = Store(tpmd, base, "c-datadir")
    s.commit("+k=v1")
    saved_store = base / "store"
    copy_tree(s.dir, saved_store)
    saved_table = anchors.save(tpmd.data)
    s.commit("+k=v2")
    current_table = anchors.save(tpmd.data)
    tpmd.stop()
    try:
        restore_tree(saved_store, s.dir)
        anchors.restore(tpmd.data, saved_table)
        tpmd.start()
        err = s.fails("get", "k")
        assert "sstore.refused" in err and "TPM anchor" in err and "older" in err, err
    finally:
        if tpmd.proc:
            tpmd.stop()
        anchors.restore(tpmd.data, current_table)
        tpmd.start()
    # the right table back: the restored store is now an ordinary rollback, still refused
    assert "rolled back" in s.fails("get", "k")


def test_two_stores_do_not_see_each_other(tpmd, base):
    a, b = Store(tpmd, base, "c-one"), Store(tpmd, base, "c-two")
    # both open at once (long-running), requests interleaved; one at a time on the tpmd link
    # (it is trustmed's, which serialises its requests): b starts once a has answered
    pa = subprocess.Popen(a.argv("serve"), pass_fds=(tpmd.sock.fileno(),), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE)
    pb = None
    try:
        assert 374 in serve_call(pa, field_bytes(374, b""))
        pb = subprocess.Popen(b.argv("serve"), pass_fds=(tpmd.sock.fileno(),), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
        assert 374 in serve_call(pb, field_bytes(374, b""))
        for i in range(5):
            for p, who in ((pa, "one"), (pb, "two")):
                r = serve_call(p, commit_rq(("same", f"{who}-{i}".encode() * (BIG // 5)), (f"only-{who}", b"x")))
                assert 374 in r, r  # a StoreStatus
        for p, who, other in ((pa, "one", "two"), (pb, "two", "one")):
            r = serve_call(p, read_rq("same"))
            assert parse(r[361][0])[361][0] == f"{who}-4".encode() * (BIG // 5)
            r = serve_call(p, read_rq(f"only-{other}"))
            assert 360 in r and parse(r[360][0])[376][0] == 2, r  # ENOENT
            ids = [parse(o)[360][0].decode() for o in parse(serve_call(p, list_rq())[373][0]).get(360, [])]
            assert ids == [f"only-{who}", "same"], ids
        # the same store twice at once: refused, the first goes on
        assert "in use by another process" in a.fails("list")
    finally:
        for p in (pa, pb):
            if p:
                p.stdin.close()
                assert p.wait(timeout=30) == 0
    # one store's object file copied into the other under its name: refused
    fa = {f.name.split("-")[0] for f in a.object_files()}
    fb = {f.name.split("-")[0] for f in b.object_files()}
    assert fa and fb and fa.isdisjoint(fb)  # file names depend on the store's key
    # "same" is the one object with files in each store ("x" is inline; its two slot files): a's
    # over b's
    same_a, same_b = a.object_files(), b.object_files()
    assert len(same_a) == len(same_b) == 2
    for fa_, fb_ in zip(same_a, same_b):
        fb_.write_bytes(fa_.read_bytes())
    err = b.fails("get", "same")
    assert "sstore.refused" in err and "does not match the superblock" in err, err


def serve_call(p, body):
    p.stdin.write(struct.pack(">I", len(body)) + body)
    p.stdin.flush()
    n = struct.unpack(">I", p.stdout.read(4))[0]
    return parse(p.stdout.read(n))


def commit_rq(*puts):
    objs = b"".join(field_bytes(367, field_bytes(360, k.encode()) + field_bytes(361, v)) for k, v in puts)
    return field_bytes(372, objs)


def read_rq(oid, tp=False):
    return field_bytes(371, field_bytes(365, oid.encode()) + (field_varint(366, 1) if tp else b""))


def list_rq():
    return field_bytes(373, b"")


def test_serve_bad_requests_answered_and_store_goes_on(tpmd, base):
    s = Store(tpmd, base, "c-serve")
    p = subprocess.Popen(s.argv("serve"), pass_fds=(tpmd.sock.fileno(),), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        for bad in (b"", field_bytes(372, b""), field_bytes(371, b""), b"\xff\xff\xff",
                    commit_rq(("bad id", b"v")), commit_rq(("big", b"x" * (256 * 1024 + 1)))):
            r = serve_call(p, bad)
            assert 360 in r, (bad[:20], r)
            e = parse(r[360][0])
            assert e[376][0] > 0 and e[377][0], e
        assert 374 in serve_call(p, commit_rq(("k", b"v")))
        r = parse(serve_call(p, read_rq("k"))[361][0])
        assert r[361][0] == b"v" and r[362][0] == 1
    finally:
        p.stdin.close()
        assert p.wait(timeout=30) == 0


@needs_hooks
@pytest.mark.parametrize("point,expect", [("sstore-objects-written", "old"), ("sstore-before-anchor", "old"),
                                          ("sstore-after-anchor", "new")])
def test_kill9_mid_commit_leaves_old_or_new(tpmd, base, point, expect):
    s = Store(tpmd, base, f"c-crash-{point.split('-')[1]}")
    # g has a file of its own: its next version goes into the slot file of its version before
    # (written in place), while the anchored superblock names the other
    s.commit("+g=" + "0" * BIG)
    s.commit("+a=a1", "+b=b1", "+c=c1", "+g=" + "1" * BIG)
    old = s.objects()
    (s.dir / "test-crash-at").write_text(point + "\n")
    r = s.run("commit", "+a=a2", "-b", "+d=d2", "+g=" + "2" * BIG, check=False)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    new = {"a": "a2", "c": "c1", "d": "d2", "g": "2" * BIG}
    assert s.objects() == (old if expect == "old" else new)
    s.run("verify")
    # and the store goes on from there
    s.commit("+e=e")
    assert s.objects() == {**(old if expect == "old" else new), "e": "e"}
    assert not (s.dir / "test-crash-at").exists()


def test_kill9_at_random_moments(tpmd, base):
    """Commits of two objects that must always agree, killed at random moments (also while tpmd
    answers): every state found is a whole commit."""
    s = Store(tpmd, base, "c-random")
    # x has a file of its own (its two slot files, written in place in turn), y is inline
    s.commit("+x=" + "0" * 6 + "p" * BIG, "+y=0")
    seen = 0
    for i in range(12):
        p = subprocess.Popen(s.argv("commit", f"+x={i + 1:06d}" + "p" * BIG, f"+y={i + 1}"),
                             pass_fds=(tpmd.sock.fileno(),), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.003 * (i % 6))
        p.send_signal(signal.SIGKILL)
        p.wait()
        state = s.objects()
        assert int(state["x"][:6]) == int(state["y"]), (state["x"][:6], state["y"])
        assert int(state["y"]) >= seen
        seen = int(state["y"])


def test_tamper_proof_objects_outlive_a_wipe(tpmd, base):
    s = Store(tpmd, base, "c-tp")
    s.commit("+k=v")
    s.run("tp-write", "rollback-idx", "7")
    s.run("tp-write", "attempts", "2")
    assert s.run("tp-read", "rollback-idx").stdout == b"7"
    # not in the store's directory: wipe it (and its anchor, as a container wipe does)
    s.run("wipe")
    assert not s.dir.exists()
    assert s.status()["version"] == "0" and s.status()["tamper_proof"] == "2"
    assert s.run("tp-read", "rollback-idx").stdout == b"7"
    assert "no object k" in s.fails("get", "k")
    # not in plaintext in tpmd's files
    assert b"rollback-idx" in anchors.table_bytes(tpmd.data)  # ids are names, values are not
    # readable only by its own store: another store sees none of it, even with the same key
    other = Store(tpmd, base, "c-tp-other", key=s.keyfile.read_bytes())
    assert "no tamper-proof object" in other.fails("tp-read", "rollback-idx")
    # quota: 8 objects of at most 96 bytes
    assert "at most 96 bytes" in s.fails("tp-write", "big", "x" * 97)
    for i in range(6):
        s.run("tp-write", f"n{i}", str(i))
    assert "EDQUOT" in s.fails("tp-write", "ninth", "9")
    s.run("tp-delete", "n0")
    s.run("tp-write", "ninth", "9")
    assert s.run("tp-read", "ninth").stdout == b"9"
    for oid in ("rollback-idx", "attempts", "n1", "n2", "n3", "n4", "n5", "ninth"):
        s.run("tp-delete", oid)
    assert s.status()["tamper_proof"] == "0"


def test_batch_of_two_stores_is_one_nv_write(tpmd, base):
    a, b = Store(tpmd, base, "c-batch-a"), Store(tpmd, base, "c-batch-b")
    a.commit("+seed=a")
    before = table_version(tpmd)
    a.run("batch", str(b.dir), b.id, str(b.keyfile), "+k=v", "+l=w")
    assert table_version(tpmd) == before + 1
    assert a.objects() == {"seed": "a", "k": "v", "l": "w"} and a.status()["version"] == "2"
    assert b.objects() == {"k": "v", "l": "w"} and b.status()["version"] == "1"
    # all or nothing across the batch: b has no "seed", so deleting it refuses both
    assert "no object seed" in a.fails("batch", str(b.dir), b.id, str(b.keyfile), "-seed")
    assert table_version(tpmd) == before + 1 and a.objects()["seed"] == "a"


@needs_hooks
def test_tpmd_killed_after_its_nv_write_mid_commit(tpmd, base):
    """tpmd dies after the TPM took the new anchor, before it answered: the commit reports a
    failure, and once tpmd is back the store opens at the new version (the TPM's word), whole."""
    s = Store(tpmd, base, "c-tpmd-crash")
    s.commit("+a=1", "+b=1")
    (tpmd.data / "test-crash-at").write_text("tpmd-anchor-written\n")
    err = s.fails("commit", "+a=2", "+b=2")
    assert "anchoring the commit" in err, err
    tpmd.proc.wait(timeout=15)
    tpmd.sock.close()
    tpmd.proc = None
    tpmd.start()
    assert s.objects() == {"a": "2", "b": "2"} and s.status()["version"] == "2"
    s.commit("+a=3")
    assert s.objects() == {"a": "3", "b": "2"}
