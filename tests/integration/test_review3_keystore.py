# SPDX-License-Identifier: GPL-2.0-or-later
"""Third outside review: TPM-held keystore keys (docs/KEYSTORE.md "TPM-held keys") against the
container's root, who has its own socket to the very vTPM that holds them (/run/tpm/tpm.sock)
and real tpm2-tools in its root (test_vtpm.py's guest)."""
import os
import re
import signal

import pytest

from conftest import wait_for
from ksclient import ERR, KsError, auths, params
from test_keystore import keystore_pids, service_of
from test_keystore_tpm import ks
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
    three wrong ones in a row lock the key for good, and the vTPM never sees a fourth."""
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
    assert after == before + 1, (before, after)  # only w5 reached the vTPM
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
