# SPDX-License-Identifier: GPL-2.0-or-later
"""Third outside review: TPM-held keystore keys (docs/KEYSTORE.md "TPM-held keys") against the
container's root, who has its own socket to the very vTPM that holds them (/run/tpm/tpm.sock)
and real tpm2-tools in its root (test_vtpm.py's guest)."""
import re

import pytest

from ksclient import ERR, KsError, auths, params
from test_keystore_tpm import ks
from test_vtpm import KDF, create, start, tpm_rootfs  # noqa: F401 (fixture)


def guest_tpm(d, name, script):
    """A tpm2-tools command run by the container's root, on its own vTPM socket."""
    return d.sh(name, script, check=False)


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


@pytest.mark.xfail(strict=True, reason="the vTPM's dictionary-attack lockout is the container's own: an unowned "
                   "vTPM's lockout authorisation is empty, so its root resets the counter (TPM2_DictionaryAttack"
                   "LockReset) or raises maxTries at will, and guesses a TPM-held key's passphrase through the "
                   "keystore without bound; fix: the service counts wrong passphrases of each TPM-held key in its "
                   "anchored key index, as it counts uses (docs/SECURITY.md, review 3)")
def test_the_vtpm_lockout_bounds_passphrase_guesses_by_the_containers_root(make_daemon, tpm_rootfs):  # noqa: F811
    """The container's root (or any process in it that may use the keystore socket) guesses the
    passphrase of a TPM-held key through the keystore. The docs count wrong ones towards the
    vTPM's dictionary-attack lockout; the guest clears that lockout on its own vTPM socket
    whenever it is reached. The number of guesses the vTPM checks must stay bounded."""
    link = tpm_rootfs / "usr/bin/tpm2_dictionarylockout"
    if not link.exists():
        link.symlink_to("tpm2")
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
        assert guess(k, "pp", b"correct horse") in ("signed", "lockout")
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
