# SPDX-License-Identifier: GPL-2.0-or-later
"""TPM-held keystore keys (docs/KEYSTORE.md "TPM-held keys"): a key generated with security level
tpm lives in the container's own vTPM (the real swtpm behind trustme-vtpm), signs there, reports
per tag who enforces it, refuses what the TPM cannot hold, and is bound to its container."""
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from conftest import Daemon, TEST_PREFIX, wait_for
from ksclient import ERR, Keystore, KsError, auths, params
from pb import parse

PIN, PUK = "7391", "12345678"
TPM, SOFTWARE = 1, 0


def _pin_file(d, *lines):
    path = d.base / f"pins-{time.monotonic_ns()}"
    path.write_text("".join(f"{line}\n" for line in lines))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def kt(test_root, rootfs):
    """One daemon: two containers with a vTPM and a keystore (ta, tb), one with a keystore only."""
    base = Path(tempfile.mkdtemp(prefix="kt-", dir=test_root))
    d = Daemon(base, f"{TEST_PREFIX}-kstpm", rootfs, ["--scd-kdf-n", "1024"])
    try:
        d.start()
        wait_for(lambda: "device storage secret unsealed" in d.log(), timeout=60, what="the device secret")
        for name in ("ta", "tb"):
            d.create(name, keystore=True, vtpm=True, token={"type": "soft"})
            d.cli("change-pin", "--pin-file", _pin_file(d, PIN, PUK), name)
            r = d.cli("start", "--pin-file", _pin_file(d, PIN), name, check=False)
            assert r.returncode == 0, f"{r.stderr}\n{d.log()[-3000:]}"
        d.create("tn", keystore=True)
        d.cli("start", "tn")
        yield d
    finally:
        d.teardown()


def ks(d, name):
    return Keystore(Path(f"/proc/{d.state(name)['pid']}/root/run/trustme/keystore.sock"))


def refused(fn, code):
    with pytest.raises(KsError) as e:
        fn()
    assert e.value.code == ERR[code], (e.value.code, e.value.message)
    return e.value.message


def enforcement(chars):
    return {parse(e)[761][0].decode(): parse(e)[762][0] if 762 in parse(e) else 0 for e in chars.get(760, [])}


def test_tpm_key_signs_in_the_vtpm_and_reports_who_enforces_what(kt):
    with ks(kt, "ta") as k:
        ch = k.generate("t1", "ec", 256, auths(["sign", "verify"], ["sha256"], uses=5), security="tpm")
        assert ch[5][0] == TPM
        assert enforcement(ch) == {"key_material": TPM, "purposes": TPM, "digests": SOFTWARE,
                                   "usage_count_limit": SOFTWARE}
        pub = serialization.load_der_public_key(k.public_key("t1"))
        assert isinstance(pub.curve, ec.SECP256R1)
        sig, _ = k.one_shot("t1", params("sign", "sha256"), b"signed by the vTPM")
        pub.verify(sig, b"signed by the vTPM", ec.ECDSA(hashes.SHA256()))
        h = hashlib.sha256(b"prehashed").digest()
        sig, _ = k.one_shot("t1", params("sign", "sha256", prehashed=True), h)
        pub.verify(sig, h, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        # streaming, and the service verifies with the public key
        handle, _ = k.begin("t1", params("sign", "sha256"))
        k.update(handle, b"part one, ")
        sig = k.finish(handle, b"part two")
        k.one_shot("t1", params("verify", "sha256"), b"part one, part two", signature=sig)
        # the characteristics as stored say the same (and count the uses)
        listed = {parse(c)[1][0].decode(): parse(c) for c in parse(k.call(19, b"")[14][0]).get(1, [])}
        assert listed["t1"][5][0] == TPM and listed["t1"][7][0] == 3
        assert enforcement(listed["t1"])["key_material"] == TPM
        # P-384 too
        k.generate("t384", "ec", 384, auths(["sign"], ["sha384"]), security="tpm")
        sig, _ = k.one_shot("t384", params("sign", "sha384"), b"x")
        serialization.load_der_public_key(k.public_key("t384")).verify(sig, b"x", ec.ECDSA(hashes.SHA384()))
        # a service key reports its level as before, with no TPM tag
        ch = k.generate("s1", "ec", 256, auths(["sign"], ["sha256"]))
        assert ch.get(5, [0])[0] == SOFTWARE and enforcement(ch) == {}
        for alias in ("t1", "t384", "s1"):
            k.delete(alias)


def test_what_the_tpm_cannot_hold_is_refused(kt):
    with ks(kt, "ta") as k:
        for alg, size, a in (("aes", 256, auths(["encrypt", "decrypt"], modes=["gcm"], min_mac=128)),
                             ("hmac", 256, auths(["sign"], ["sha256"], min_mac=256)),
                             ("rsa", 2048, auths(["sign"], ["sha256"], ["pss"]))):
            msg = refused(lambda: k.generate("x", alg, size, a, security="tpm"), "UNSUPPORTED_ALGORITHM")
            assert "vTPM" in msg
        refused(lambda: k.generate("x", "ec", 256, auths(["sign", "agree"], ["sha256"]), security="tpm"),
                "INCOMPATIBLE_PURPOSE")
        refused(lambda: k.generate("x", "ec", 256, auths(["verify"], ["sha256"]), security="tpm"),
                "INCOMPATIBLE_PURPOSE")
        refused(lambda: k.generate("x", "ec", 521, auths(["sign"], ["sha256"]), security="tpm"),
                "UNSUPPORTED_KEY_SIZE")
        assert "x" not in k.list()
    with ks(kt, "tn") as k:  # no vTPM: no TPM-held key, and no quiet service key instead
        msg = refused(lambda: k.generate("x", "ec", 256, auths(["sign"], ["sha256"]), security="tpm"),
                      "TPM_UNAVAILABLE")
        assert "vtpm" in msg
        assert "x" not in k.list()


def test_refusals_of_a_tpm_key(kt):
    with ks(kt, "ta") as k:
        ch = k.generate("tp", "ec", 256, auths(["sign", "verify"], ["sha256"], uses=2), passphrase=b"open sesame",
                        security="tpm")
        assert enforcement(ch)["passphrase_required"] == TPM
        refused(lambda: k.one_shot("tp", params("sign", "sha256"), b"m"), "AUTH_REQUIRED")
        # the vTPM itself refuses the wrong authValue (and a refused use is not counted)
        msg = refused(lambda: k.one_shot("tp", params("sign", "sha256", passphrase=b"wrong"), b"m"), "AUTH_FAILED")
        assert "vTPM" in msg
        refused(lambda: k.one_shot("tp", params("sign", "sha384", passphrase=b"open sesame"), b"m"),
                "INCOMPATIBLE_DIGEST")
        refused(lambda: k.one_shot("tp", params("decrypt", passphrase=b"open sesame"), b"m"), "UNSUPPORTED_PURPOSE")
        for _ in range(2):
            k.one_shot("tp", params("sign", "sha256", passphrase=b"open sesame"), b"m")
        refused(lambda: k.one_shot("tp", params("sign", "sha256", passphrase=b"open sesame"), b"m"),
                "KEY_MAX_OPS_EXCEEDED")
        k.generate("tv", "ec", 256, auths(["sign"], ["sha256"], not_after=int(time.time()) - 10), security="tpm")
        refused(lambda: k.one_shot("tv", params("sign", "sha256"), b"m"), "KEY_EXPIRED")
        k.delete("tp")
        k.delete("tv")


def test_tpm_key_blob_copied_to_another_container_fails(kt):
    d = kt
    with ks(d, "ta") as k:
        k.generate("moved", "ec", 256, auths(["sign"], ["sha256"]), security="tpm")
    src = d.data_dir / "keystore" / d.state("ta")["uuid"] / "moved.key"
    dst = d.data_dir / "keystore" / d.state("tb")["uuid"] / "moved.key"
    shutil.copy2(src, dst)
    try:
        with ks(d, "tb") as k:
            assert "moved" not in k.list()
            refused(lambda: k.one_shot("moved", params("sign", "sha256"), b"m"), "INVALID_KEY_BLOB")
    finally:
        dst.unlink()
    with ks(d, "ta") as k:  # still the owner's
        k.one_shot("moved", params("sign", "sha256"), b"m")
        k.delete("moved")


def test_tpm_key_survives_a_vtpm_restart(kt):
    """trustme-vtpm killed: trustmed restarts it, the keystore connects anew and the key (whose
    blob only this vTPM loads) still signs."""
    d = kt
    with ks(d, "ta") as k:
        k.generate("rs", "ec", 256, auths(["sign"], ["sha256"]), security="tpm")
        k.one_shot("rs", params("sign", "sha256"), b"before")
        pidfile = d.run_dir / "vtpm" / d.state("ta")["uuid"] / "helper.pid"
        old = int(pidfile.read_text())
        import os
        import signal
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() and int(pidfile.read_text()) != old,
                 timeout=30, what="the vTPM's restart")

        def signs():
            try:
                k.one_shot("rs", params("sign", "sha256"), b"after")
                return True
            except KsError as e:
                assert e.code == ERR["TPM_UNAVAILABLE"], e
                return False
        wait_for(signs, timeout=30, interval=0.2, what="a signature after the vTPM's restart")
        k.delete("rs")

