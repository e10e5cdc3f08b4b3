# SPDX-License-Identifier: GPL-2.0-or-later
"""Third outside review: TPM-held keystore keys (docs/KEYSTORE.md "TPM-held keys") against the
container's root, who has its own socket to the very vTPM that holds them (/run/tpm/tpm.sock)
and real tpm2-tools in its root (test_vtpm.py's guest)."""
import os
import re
import signal
import time

import pytest

from conftest import wait_for
from ksclient import ERR, KsError, SstoreError, auths, params
from test_keystore import keystore_pids, service_of
from test_keystore_tpm import ks
from test_sstore import needs_hooks
from test_vtpm import KDF, create, start, tpm_rootfs  # noqa: F401 (fixture)


KS_TPM_PASSPHRASE_TRIES = 3  # src/keystore/keys.h


def guest_tpm(d, name, script):
    """A tpm2-tools command run by the container's root, on its own vTPM socket."""
    return d.sh(name, script, check=False)


def lockout_tool(rootfs):
    """tpm2_dictionarylockout in the guest's root (a name of the tpm2 multi-call binary)."""
    link = rootfs / "usr/bin/tpm2_dictionarylockout"
    if not link.exists():
        link.symlink_to("tpm2")


def lockout_state(d, name):
    """(failed authorisations counted, the most before lockout) as the guest reads them."""
    r = guest_tpm(d, name, "tpm2_getcap properties-variable")
    assert r.returncode == 0, r.stderr
    values = dict(re.findall(r"(TPM2_PT_LOCKOUT_COUNTER|TPM2_PT_MAX_AUTH_FAIL):\s*(0x[0-9a-fA-F]+|\d+)", r.stdout))
    return int(values["TPM2_PT_LOCKOUT_COUNTER"], 0), int(values["TPM2_PT_MAX_AUTH_FAIL"], 0)


def guess(k, alias, passphrase):
    """'signed', 'wrong' (the vTPM checked and refused it) or 'lockout' (not checked)."""
    try:
        k.one_shot(alias, params("sign", "sha256", passphrase=passphrase), b"m")
        return "signed"
    except KsError as e:
        assert e.code == ERR["AUTH_FAILED"], (e.code, e.message)
        return "lockout" if "lockout" in e.message else "wrong"


def index_version(d, name):
    """The version of the container's key index (a secure store: docs/KEYSTORE.md "Key blobs at
    rest"): one per anchored commit of a key blob. From its superblock slots (docs/SECURE_STORAGE.md:
    magic, store id length and id, the version big-endian), the newer one."""
    best = 0
    for slot in (d.data_dir / "keystore" / d.state(name)["uuid"] / "index").glob("super.[01]"):
        b = slot.read_bytes()
        if b[:8] == b"TMSSTOR1":
            k = 9 + b[8]
            best = max(best, int.from_bytes(b[k:k + 8], "big"))
    return best


def test_the_vtpm_lockout_bounds_passphrase_guesses_by_the_containers_root(make_daemon, tpm_rootfs):  # noqa: F811
    """The container's root (or any process in it that may use the keystore socket) guesses the
    passphrase of a TPM-held key through the keystore, and clears the vTPM's dictionary-attack
    lockout on its own vTPM socket whenever it is reached. Was open (9 guesses checked where the
    lockout allows 3, without end); now the service counts each try in the anchored key index
    before the vTPM sees it and refuses the key after 3 wrong ones in a row, whatever the vTPM's
    lockout says."""
    lockout_tool(tpm_rootfs)
    d = make_daemon(extra_args=KDF)
    create(d, "kp", tpm_rootfs, keystore=True)
    start(d, "kp")
    with ks(d, "kp") as k:
        k.generate("pp", "ec", 256, auths(["sign"], ["sha256"]), passphrase=b"correct horse", security="tpm")
        _, max_tries = lockout_state(d, "kp")
        assert 0 < max_tries < 100, max_tries
        checked = 0
        for rnd in range(3):
            for i in range(max_tries + 1):
                got = guess(k, "pp", f"guess {rnd}-{i}".encode())
                if got == "lockout":
                    break
                assert got == "wrong"
                checked += 1
            assert got == "lockout", "the vTPM never locked out"
            # The guest, on its own socket: an unowned vTPM's lockout auth is empty.
            r = guest_tpm(d, "kp", "tpm2_dictionarylockout -c")
            if r.returncode != 0:
                break  # the reset is refused: the lockout holds
        assert checked == KS_TPM_PASSPHRASE_TRIES, checked
        # The service's lockout: even the right passphrase is refused without being tried.
        with pytest.raises(KsError) as e:
            k.one_shot("pp", params("sign", "sha256", passphrase=b"correct horse"), b"m")
        assert e.value.code == ERR["AUTH_FAILED"] and "keystore's lockout" in e.value.message, e.value.message
        assert "vTPM" not in e.value.message, e.value.message
        assert checked <= max_tries, (
            f"{checked} wrong passphrases were checked by the vTPM, its lockout allows {max_tries}: the "
            "container's root reset it between rounds")


def test_the_containers_root_cannot_sign_with_the_keys_the_keystore_has_loaded(make_daemon, tpm_rootfs):  # noqa: F811
    """The keystore keeps its storage key and the last key it signed with loaded in the vTPM that
    the guest shares. The container's root lists the vTPM's transient objects on its own socket,
    signs with each (as tpm2-tools does: an empty password), then flushes them all: no signature,
    and the keystore's next use reconnects, reloads and still counts (2 uses, then refused)."""
    d = make_daemon(extra_args=KDF)
    create(d, "kg", tpm_rootfs, keystore=True)
    start(d, "kg")
    with ks(d, "kg") as k:
        k.generate("u2", "ec", 256, auths(["sign"], ["sha256"], uses=2), security="tpm")
        k.one_shot("u2", params("sign", "sha256"), b"first")  # the key is loaded now
        r = guest_tpm(d, "kg", "tpm2_getcap handles-transient")
        assert r.returncode == 0, r.stderr
        handles = sorted(set(re.findall(r"0x8[0-9a-fA-F]{7}", r.stdout)))
        refusals = []
        for h in handles:
            r = guest_tpm(d, "kg", f"cd /tmp && echo m > m && tpm2_sign -c {h} -g sha256 -o s.bin m")
            assert r.returncode != 0, f"the container's root signed with the vTPM object {h}"
            refusals.append(r.stderr)
        # The signing key's refusal is the vTPM's authorisation check (its authValue is the
        # keystore's), not a missing object.
        assert any(re.search(r"0x9a2|0x98e|authori[sz]ation", x, re.I) for x in refusals), refusals
        for h in handles:
            guest_tpm(d, "kg", f"tpm2_flushcontext {h}")
        k.one_shot("u2", params("sign", "sha256"), b"second")
        with pytest.raises(KsError) as e:
            k.one_shot("u2", params("sign", "sha256"), b"third")
        assert e.value.code == ERR["KEY_MAX_OPS_EXCEEDED"], e.value.message
    print(f"transient objects the guest saw while the keystore held its key: {handles}")


def restart_keystore(d, name):
    """kill -9 the container's keystore service; trustmed restarts it, which reads every blob
    (and its count of wrong passphrases) from its file again."""
    victim = service_of(d, name)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in keystore_pids(d), timeout=10, what=f"{name}'s old keystore gone")

    def served():
        try:
            with ks(d, name) as k:
                k.list()
            return True
        except (OSError, KsError):
            return False
    wait_for(served, timeout=10, what=f"{name}'s keystore back")


def test_wrong_passphrases_of_a_tpm_key_are_counted_across_restarts(make_daemon, tpm_rootfs):  # noqa: F811
    """The count of wrong passphrases is in the key's blob, which the anchored key index names:
    killing the keystore (trustmed restarts it) does not reset it. A right passphrase resets it;
    three wrong ones in a row lock the key for good. The keystore checks each passphrase against
    the verifier in the key's blob first: no wrong one reaches the vTPM (its lockout count stays)."""
    lockout_tool(tpm_rootfs)
    d = make_daemon(extra_args=KDF)
    create(d, "kc", tpm_rootfs, keystore=True)
    start(d, "kc")
    with ks(d, "kc") as k:
        k.generate("pc", "ec", 256, auths(["sign"], ["sha256"]), passphrase=b"right", security="tpm")
        assert [guess(k, "pc", p) for p in (b"w1", b"w2", b"right")] == ["wrong", "wrong", "signed"]
        guest_tpm(d, "kc", "tpm2_dictionarylockout -c")  # the vTPM's own lockout (3) is the guest's to clear
        assert [guess(k, "pc", p) for p in (b"w3", b"w4")] == ["wrong", "wrong"]
    restart_keystore(d, "kc")
    guest_tpm(d, "kc", "tpm2_dictionarylockout -c")
    before, _ = lockout_state(d, "kc")
    with ks(d, "kc") as k:
        assert guess(k, "pc", b"w5") == "wrong"  # the third in a row, across the restart
        assert guess(k, "pc", b"right") == "lockout"
        assert guess(k, "pc", b"w6") == "lockout"
    after, _ = lockout_state(d, "kc")
    assert after == before, (before, after)  # w5 was refused by the keystore's verifier
    restart_keystore(d, "kc")
    with ks(d, "kc") as k:
        assert guess(k, "pc", b"right") == "lockout"


def test_the_passphrase_alone_does_not_sign_at_the_vtpm(make_daemon, tpm_rootfs):  # noqa: F811
    """The guest could try passphrases on the key the keystore has loaded (its handle is visible
    on the guest's own vTPM socket), past the service's count. The key's authValue is SHA-256 of
    a label, a random 16-byte salt that is only in the keystore's encrypted blob, and the
    passphrase: even the right passphrase, given to the vTPM directly, does not sign."""
    lockout_tool(tpm_rootfs)
    d = make_daemon(extra_args=KDF)
    create(d, "kd", tpm_rootfs, keystore=True)
    start(d, "kd")
    with ks(d, "kd") as k:
        k.generate("pd", "ec", 256, auths(["sign"], ["sha256"]), passphrase=b"right", security="tpm")
        assert guess(k, "pd", b"right") == "signed"  # loaded now
        r = guest_tpm(d, "kd", "tpm2_getcap handles-transient")
        assert r.returncode == 0, r.stderr
        handles = sorted(set(re.findall(r"0x8[0-9a-fA-F]{7}", r.stdout)))
        assert len(handles) >= 2, handles
        refusals = []
        for h in handles:
            r = guest_tpm(d, "kd", f"cd /tmp && echo m > m && tpm2_sign -c {h} -p right -g sha256 -o s.bin m")
            assert r.returncode != 0, f"the right passphrase signed with the vTPM object {h}"
            refusals.append(r.stderr)
        assert any(re.search(r"0x9a2|0x98e|authori[sz]ation", x, re.I) for x in refusals), refusals
        guest_tpm(d, "kd", "tpm2_dictionarylockout -c")
        assert guess(k, "pd", b"right") == "signed"


def test_a_right_passphrase_signs_without_a_commit(make_daemon, tpm_rootfs):  # noqa: F811
    """A busy TPM-held key with a passphrase: the keystore checks the passphrase against the
    verifier in the key's blob (scrypt), so a right one needs no anchored commit. The container
    spends its whole TPM write budget (120 commits through its secure storage), then signs 20
    times with the right passphrase: all signed (before: each signature was one commit, refused
    as STORAGE "TPM write budget" once it was spent). A wrong passphrase still must be counted and
    stored before anything else: with the budget spent it is refused STORAGE, not tried; with a
    commit to spare it is counted, and 3 in a row lock the key, the right one too."""
    d = make_daemon(extra_args=KDF)
    create(d, "kv", tpm_rootfs, keystore=True)
    start(d, "kv")
    with ks(d, "kv") as k:
        k.generate("pv", "ec", 256, auths(["sign"], ["sha256"]), passphrase=b"right", security="tpm")
        k.one_shot("pv", params("sign", "sha256", passphrase=b"right"), b"m0")
        n = 0
        while True:
            try:
                k.commit([(f"b{n % 4}", b"b" * 16)])
            except SstoreError as e:
                assert "TPM write budget" in e.message, e.message
                break
            n += 1
            assert n < 200, "the budget never refused a commit"
        t0 = time.monotonic()
        for i in range(20):
            k.one_shot("pv", params("sign", "sha256", passphrase=b"right"), f"m{i}".encode())
        took = time.monotonic() - t0
        with pytest.raises(KsError) as e:
            k.one_shot("pv", params("sign", "sha256", passphrase=b"wrong"), b"m")
        assert e.value.code == ERR["STORAGE"] and "TPM write budget" in e.value.message, e.value.message
    print(f"budget spent after {n} commits; then 20 signatures with the right passphrase in {took:.2f} s")


def test_wrong_passphrases_are_counted_before_the_answer(make_daemon, tpm_rootfs):  # noqa: F811
    """Each wrong passphrase of a TPM-held key is one anchored commit (the key index's version
    moves), made before the keystore answers; a right one is none, the right one after wrong
    ones one (the count's reset). 3 wrong in a row lock the key, the right passphrase too."""
    d = make_daemon(extra_args=KDF)
    create(d, "kw", tpm_rootfs, keystore=True)
    start(d, "kw")
    with ks(d, "kw") as k:
        k.generate("pw", "ec", 256, auths(["sign"], ["sha256"]), passphrase=b"right", security="tpm")

        def index_version_():
            return index_version(d, "kw")
        v0 = index_version_()
        for _ in range(5):
            assert guess(k, "pw", b"right") == "signed"
        assert index_version_() == v0
        assert guess(k, "pw", b"w1") == "wrong"
        assert index_version_() == v0 + 1
        assert guess(k, "pw", b"right") == "signed"  # the reset: stored
        assert index_version_() == v0 + 2
        for i in range(KS_TPM_PASSPHRASE_TRIES):
            assert guess(k, "pw", f"w{i + 2}".encode()) == "wrong"
        assert index_version_() == v0 + 2 + KS_TPM_PASSPHRASE_TRIES
        with pytest.raises(KsError) as e:
            k.one_shot("pw", params("sign", "sha256", passphrase=b"right"), b"m")
        assert e.value.code == ERR["AUTH_FAILED"] and "keystore's lockout" in e.value.message, e.value.message
        assert index_version_() == v0 + 2 + KS_TPM_PASSPHRASE_TRIES


@needs_hooks
def test_a_key_from_before_the_verifier_gains_it_at_its_first_right_passphrase(make_daemon, tpm_rootfs):  # noqa: F811
    """A TPM-held key whose blob has no passphrase verifier (made as before it existed: the test
    flag) keeps the counted path: each try is one anchored commit before the vTPM sees it, and
    the vTPM refuses a wrong one (its lockout count moves). Its first right passphrase (counted
    before the vTPM too) adds the verifier (one commit, with the count's reset); from then on a right passphrase needs no
    commit and a wrong one is the keystore's to refuse (the vTPM's count stays)."""
    lockout_tool(tpm_rootfs)
    d = make_daemon(extra_args=KDF)
    create(d, "ko", tpm_rootfs, keystore=True)
    start(d, "ko")
    flag = d.data_dir / "keystore" / d.state("ko")["uuid"] / "test-no-passphrase-verifier"
    with ks(d, "ko") as k:
        flag.write_text("")
        try:
            k.generate("po", "ec", 256, auths(["sign"], ["sha256"]), passphrase=b"right", security="tpm")
        finally:
            flag.unlink()
        guest_tpm(d, "ko", "tpm2_dictionarylockout -c")
        v0, (da0, _) = index_version(d, "ko"), lockout_state(d, "ko")
        with pytest.raises(KsError) as e:
            k.one_shot("po", params("sign", "sha256", passphrase=b"w1"), b"m")
        assert e.value.code == ERR["AUTH_FAILED"] and "vTPM" in e.value.message, e.value.message
        assert index_version(d, "ko") == v0 + 1 and lockout_state(d, "ko")[0] == da0 + 1
        # counted before the vTPM (as every try of such a key), then the verifier added and the
        # count reset: two commits, once
        assert guess(k, "po", b"right") == "signed"
        assert index_version(d, "ko") == v0 + 3
        for _ in range(3):
            assert guess(k, "po", b"right") == "signed"
        assert index_version(d, "ko") == v0 + 3
        with pytest.raises(KsError) as e:
            k.one_shot("po", params("sign", "sha256", passphrase=b"w2"), b"m")
        assert e.value.code == ERR["AUTH_FAILED"] and "keystore checked it" in e.value.message, e.value.message
        assert index_version(d, "ko") == v0 + 4 and lockout_state(d, "ko")[0] == da0 + 1
    # and after a restart (the blob read from its file again) the verifier is there
    restart_keystore(d, "ko")
    with ks(d, "ko") as k:
        assert guess(k, "po", b"right") == "signed"  # the reset after w2: one commit
        assert index_version(d, "ko") == v0 + 5
        assert guess(k, "po", b"right") == "signed"
        assert index_version(d, "ko") == v0 + 5
