# SPDX-License-Identifier: GPL-2.0-or-later
"""Fifth outside review: the passphrase verifier of TPM-held keystore keys (docs/KEYSTORE.md
"Wrong passphrases of TPM-held keys") against the container's root, who chooses every byte on
its keystore socket, can spend its own TPM write budget and may open many connections; and root
on the host with file operations on the key store."""
import os
import shutil
import signal
import subprocess
import threading

import pytest

from ksclient import ERR, KsError, SstoreError, auths, params
from conftest import wait_for
from tools import tool
from test_keystore import service_of
from test_keystore_tpm import ks
from test_sstore import BIG, Store, base, tpmd  # noqa: F401 (fixtures)
from test_review3_keystore import KS_TPM_PASSPHRASE_TRIES, guess, index_version
from test_vtpm import KDF, create, start, tpm_rootfs  # noqa: F401 (fixture)


def try_sign(k, alias, passphrase):
    """'signed', 'wrong', 'lockout' or the name of another refusal (e.g. 'STORAGE')."""
    try:
        k.one_shot(alias, params("sign", "sha256", passphrase=passphrase), b"m")
        return "signed"
    except KsError as e:
        if e.code == ERR["AUTH_FAILED"]:
            return "lockout" if "lockout" in e.message else "wrong"
        return next(n for n, c in ERR.items() if c == e.code)


def spend_budget(k):
    """Commits through the container's own secure storage until its TPM write budget refuses."""
    n = 0
    while True:
        try:
            k.commit([(f"b{n % 4}", b"b" * 16)])
        except SstoreError as e:
            assert "TPM write budget" in e.message, e.message
            return n
        n += 1
        assert n < 200, "the budget never refused a commit"


def service_of_or_none(d, name):
    try:
        return service_of(d, name)
    except AssertionError:
        return None


def test_a_spent_budget_is_no_passphrase_oracle(make_daemon, tpm_rootfs):  # noqa: F811
    """The container's root spends its own TPM write budget, then tries passphrases. A right one
    needs no commit; a wrong one cannot be counted. Before the fix the wrong ones were refused
    STORAGE uncounted and the right one signed: an oracle with no bound on the guesses (one
    scrypt each). Now the first wrong one's count holds in memory and every later try of the key,
    the right one too, is refused untried until that count is stored; deleting the key (which
    would drop it from memory) is refused the same way and leaves it loaded."""
    d = make_daemon(extra_args=KDF)
    create(d, "ka", tpm_rootfs, keystore=True)
    start(d, "ka")
    with ks(d, "ka") as k:
        k.generate("pa", "ec", 256, auths(["sign"], ["sha256"]), passphrase=b"right", security="tpm")
        assert try_sign(k, "pa", b"right") == "signed"
        spend_budget(k)
        v0 = index_version(d, "ka")
        answers = [try_sign(k, "pa", p) for p in (b"w1", b"w2", b"w3", b"w4", b"right")]
        assert answers == ["STORAGE"] * 5, answers
        with pytest.raises(KsError) as e:
            k.delete("pa")
        assert e.value.code == ERR["STORAGE"], (e.value.code, e.value.message)
        assert try_sign(k, "pa", b"right") == "STORAGE"
        # the refused commits wrote at most the one slot the TPM did not anchor
        assert index_version(d, "ka") <= v0 + 1
    # another connection sees the same loaded key and its count
    with ks(d, "ka") as k2:
        assert try_sign(k2, "pa", b"right") == "STORAGE"


def test_parallel_connections_get_no_more_than_three_verdicts(make_daemon, tpm_rootfs):  # noqa: F811
    """Eight connections send wrong passphrases of one key at once (two each), racing the count:
    at most three are checked ('wrong'), every other one meets the lockout, and the right one
    after them too."""
    d = make_daemon(extra_args=KDF)
    create(d, "kp", tpm_rootfs, keystore=True)
    start(d, "kp")
    with ks(d, "kp") as k:
        k.generate("pp", "ec", 256, auths(["sign"], ["sha256"]), passphrase=b"right", security="tpm")
    answers, lock = [], threading.Lock()
    barrier = threading.Barrier(8)

    def worker(i):
        with ks(d, "kp") as k:
            barrier.wait(timeout=60)
            for j in range(2):
                a = try_sign(k, "pp", f"w{i}-{j}".encode())
                with lock:
                    answers.append(a)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert len(answers) == 16, answers
    assert answers.count("wrong") == KS_TPM_PASSPHRASE_TRIES, answers
    assert answers.count("lockout") == 16 - KS_TPM_PASSPHRASE_TRIES, answers
    with ks(d, "kp") as k:
        assert guess(k, "pp", b"right") == "lockout"


def test_the_cached_authvalue_does_not_outlive_its_key(make_daemon, tpm_rootfs):  # noqa: F811
    """A loaded key keeps the authValue that last passed its verifier. Another connection with a
    wrong passphrase is still counted; the key deleted and made again under the same name with
    another passphrase does not sign with the old one (the cache went with the old key, and the
    new key's salt makes another authValue anyway), and its own count starts afresh (it is
    another key in the vTPM: guesses at it tell nothing of the old one)."""
    d = make_daemon(extra_args=KDF)
    create(d, "kc", tpm_rootfs, keystore=True)
    start(d, "kc")
    with ks(d, "kc") as k, ks(d, "kc") as k2:
        k.generate("pc", "ec", 256, auths(["sign"], ["sha256"]), passphrase=b"old", security="tpm")
        assert guess(k, "pc", b"old") == "signed"  # cached now
        assert guess(k2, "pc", b"new") == "wrong"
        assert guess(k2, "pc", b"old") == "signed"
        k2.delete("pc")
        k2.generate("pc", "ec", 256, auths(["sign"], ["sha256"]), passphrase=b"new", security="tpm")
        assert guess(k, "pc", b"old") == "wrong"
        assert guess(k, "pc", b"new") == "signed"
        assert guess(k2, "pc", b"old") == "wrong"


def test_an_older_copy_of_the_key_store_does_not_reset_the_count(make_daemon, tpm_rootfs):  # noqa: F811
    """Root on the host copies the container's whole key store (blobs and index) before two
    wrong passphrases, writes the copy back and has the service restarted: the index's anchor
    names the newer version, so the old one (count 0) does not open. Without a valid copy nothing
    signs, which root on the host could cause by deleting the store anyway."""
    d = make_daemon(extra_args=KDF)
    create(d, "kr", tpm_rootfs, keystore=True)
    start(d, "kr")
    store = d.data_dir / "keystore" / d.state("kr")["uuid"]
    saved = store.parent / (store.name + ".saved")
    with ks(d, "kr") as k:
        k.generate("pr", "ec", 256, auths(["sign"], ["sha256"]), passphrase=b"right", security="tpm")
    subprocess.run([tool("cp"), "-a", str(store), str(saved)], check=True)  # owners and modes kept
    try:
        with ks(d, "kr") as k:
            assert [guess(k, "pr", p) for p in (b"w1", b"w2")] == ["wrong", "wrong"]
        for e in store.iterdir():  # in place: the directory is the service's mount
            shutil.rmtree(e) if e.is_dir() and not e.is_symlink() else e.unlink()
        subprocess.run([tool("cp"), "-a", f"{saved}/.", str(store)], check=True)
        victim = service_of(d, "kr")
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: service_of_or_none(d, "kr") not in (None, victim), timeout=60, what="kr's keystore back")

        def answers():
            try:
                with ks(d, "kr") as k:
                    return [try_sign(k, "pr", p) for p in (b"w3", b"w4", b"right")]
            except OSError:
                return None
        a = wait_for(answers, timeout=60, what="kr's keystore answering")
        assert "signed" not in a and "wrong" not in a, a
        with ks(d, "kr") as k:
            with pytest.raises(KsError) as e:
                k.list()
        assert "roll" in e.value.message or "older" in e.value.message, e.value.message
    finally:
        shutil.rmtree(saved, ignore_errors=True)


# ---- secure storage: the two slot files of a big object, against root with file operations ----

def slots_of(s):
    """{'s0': path, 's1': path} of the store's one big object."""
    files = s.object_files()
    assert len(files) == 2, files
    return {f.name.rsplit("-", 1)[1]: f for f in files}


def test_the_slots_of_one_object_swapped_truncated_or_linked_are_refused(tpmd, base):  # noqa: F811
    """Root swaps an object's two slot files (the older version becomes the current name),
    truncates the current one, makes it a symlink to the other: each read is refused as tamper
    (the superblock holds the SHA-256 of the current slot's ciphertext), the older version is
    never served, and the genuine content put back reads again."""
    s = Store(tpmd, base, "r5-slots")
    s.commit("+big=" + "1" * BIG, "+small=x")
    s.commit("+big=" + "2" * BIG)
    sl = slots_of(s)
    data = {k: f.read_bytes() for k, f in sl.items()}
    # swapped by rename
    tmp = sl["s0"].with_name("x")
    sl["s0"].rename(tmp)
    sl["s1"].rename(sl["s0"])
    tmp.rename(sl["s1"])
    err = s.fails("get", "big")
    assert "does not match the superblock" in err, err
    for k, f in sl.items():
        f.write_bytes(data[k])
    assert s.get("big") == "2" * BIG
    # truncated, then empty
    for k, f in sl.items():
        f.write_bytes(data[k][:len(data[k]) // 2])
    err = s.fails("get", "big")
    assert "does not match the superblock" in err, err
    for k, f in sl.items():
        f.write_bytes(b"")
    assert s.run("get", "big", check=False).returncode != 0
    # each slot a symlink to the other's genuine content (the older version under the live name)
    for k, f in sl.items():
        f.unlink()
    other = base / "elsewhere"
    other.mkdir()
    (other / "s0").write_bytes(data["s1"])
    (other / "s1").write_bytes(data["s0"])
    sl["s0"].symlink_to(other / "s0")
    sl["s1"].symlink_to(other / "s1")
    r = s.run("get", "big", check=False)
    assert r.returncode != 0 and b"1111" not in r.stdout, r
    # put back: served again, and the small object was never touched
    for k, f in sl.items():
        f.unlink()
        f.write_bytes(data[k])
    assert s.get("big") == "2" * BIG and s.get("small") == "x"


def test_a_dead_slot_linked_to_another_file_is_not_written_through(tpmd, base):  # noqa: F811
    """Root hard-links an object's dead slot (the one the next commit writes in place) to another
    store's object file, and the dead superblock slot to the live one. Before the fix the commit
    wrote through the links: the other store's object was overwritten (refused as tamper there)
    and the live superblock was replaced before the anchor named the new one (a crash there left
    neither). Now a file with more than one link is replaced by a new one: both stay intact."""
    a = Store(tpmd, base, "r5-link-a")
    b = Store(tpmd, base, "r5-link-b")
    a.commit("+big=" + "A" * BIG)
    b.commit("+big=" + "B" * BIG)
    (bfile,) = b.object_files()
    (afile,) = a.object_files()
    dead = afile.with_name(afile.name[:-1] + ("1" if afile.name.endswith("0") else "0"))
    assert not dead.exists()
    os.link(bfile, dead)
    a.commit("+big=" + "C" * BIG)
    assert b.get("big") == "B" * BIG
    assert a.get("big") == "C" * BIG
    assert os.stat(dead).st_ino != os.stat(bfile).st_ino
    # the superblock slots: super.<v % 2> is written by the commit of version v
    v = int(a.status()["version"])
    live, dead_sb = a.dir / f"super.{v % 2}", a.dir / f"super.{(v + 1) % 2}"
    dead_sb.unlink()
    os.link(live, dead_sb)
    before = live.read_bytes()
    a.commit("+big=" + "D" * BIG)
    assert os.stat(live).st_ino != os.stat(dead_sb).st_ino
    assert live.read_bytes() == before  # the older slot untouched until the anchor moved on
    assert a.get("big") == "D" * BIG
