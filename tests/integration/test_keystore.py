# SPDX-License-Identifier: GPL-2.0-or-later
"""The per-container keystore (docs/KEYSTORE.md): its service and socket, keys bound to the
container and device, the authorisation list enforced on every use, isolation between containers."""
import os
import struct
import subprocess
import time
from pathlib import Path

import pytest

import anchors
from conftest import wait_for
from test_device import pki  # noqa: F401  (the module-scoped PKI fixture)
from ksclient import ERR, OK, Keystore, KsError, SstoreError, auths, encode, params, wrap_key
from pb import field_bytes, field_varint, frame, parse
from tools import tool


@pytest.fixture(scope="module")
def ks_daemon(test_root, rootfs):
    from conftest import Daemon, TEST_PREFIX
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="ks-", dir=test_root))
    d = Daemon(base, f"{TEST_PREFIX}-keystore", rootfs)
    try:
        d.start()
        wait_for(lambda: "device storage secret unsealed" in d.log(), timeout=60, what="the device secret")
        for name in ("ka", "kb"):
            d.create(name, keystore=True)
            d.cli("start", name)
        yield d
    finally:
        d.teardown()


def sock_of(d, name):
    return Path(f"/proc/{d.state(name)['pid']}/root/run/trustme/keystore.sock")


def ks(d, name):
    return Keystore(sock_of(d, name))


def test_socket_inside(ks_daemon):
    d = ks_daemon
    out = d.sh("ka", "ls -l /run/trustme/keystore.sock").stdout
    assert out.startswith("s"), out
    with ks(d, "ka") as k:
        assert isinstance(k.list(), list)
    st = d.state("ka")
    assert st["keystore"] is True and st["keystore_running"] is True
    assert "keystore:        /run/trustme/keystore.sock inside, service running" in d.cli("state", "ka").stdout


def test_ec_sign_verifies_with_openssl(ks_daemon, tmp_path):
    d = ks_daemon
    with ks(d, "ka") as k:
        k.generate("ec1", "ec", 256, auths(["sign", "verify"], ["sha256"]))
        sig, _ = k.one_shot("ec1", params("sign", "sha256"), b"hello")
        (tmp_path / "pub.der").write_bytes(k.public_key("ec1"))
        (tmp_path / "data").write_bytes(b"hello")
        (tmp_path / "sig").write_bytes(sig)
        r = subprocess.run([tool("openssl"), "dgst", "-sha256", "-verify", str(tmp_path / "pub.der"), "-keyform", "DER",
                            "-signature", str(tmp_path / "sig"), str(tmp_path / "data")], capture_output=True)
        assert r.returncode == 0, r.stderr
        k.one_shot("ec1", params("verify", "sha256"), b"hello", signature=sig)
        with pytest.raises(KsError) as e:
            k.one_shot("ec1", params("verify", "sha256"), b"hellO", signature=sig)
        assert e.value.code == ERR["VERIFICATION_FAILED"]
        k.delete("ec1")


def test_burst_and_split_requests_are_answered_in_order(ks_daemon):
    """The service reads what the socket holds at once (docs/KEYSTORE.md "The socket inside the
    container"): more requests than it serves per wakeup in one write, and a request cut at every
    byte, are all answered, in order; bytes of the next request read along stay for it."""
    d = ks_daemon
    with ks(d, "ka") as k:
        k.generate("burst", "ec", 256, auths(["sign"], ["sha256"]))
        prm = params("sign", "sha256")

        def req(rid, data):
            body = encode({1: [b"burst"], 2: [prm], 3: [data]})
            return frame(field_varint(1, 1) + field_varint(2, rid) + field_bytes(16, body))

        def answers(n):
            got = []
            for _ in range(n):
                (ln,) = struct.unpack(">I", k._recv_exact(4))
                resp = parse(k._recv_exact(ln))
                got.append((resp[1][0], resp.get(2, [0])[0]))
            return got

        # 200 at once: over the 64 a connection gets per wakeup, and over the read buffer
        burst = b"".join(req(1000 + i, b"m%d" % i) for i in range(200))
        k.sock.sendall(burst)
        assert answers(200) == [(1000 + i, OK) for i in range(200)]
        # one request byte by byte, and one whose first bytes come with the one before
        one = req(2000, b"slow")
        for i in range(len(one)):
            k.sock.sendall(one[i:i + 1])
            time.sleep(0.002)
        assert answers(1) == [(2000, OK)]
        a, b = req(2001, b"a"), req(2002, b"b")
        k.sock.sendall(a + b[:3])
        time.sleep(0.2)
        k.sock.sendall(b[3:])
        assert answers(2) == [(2001, OK), (2002, OK)]
        # the connection still serves ordinary calls
        sig, _ = k.one_shot("burst", prm, b"after")
        assert sig
        k.delete("burst")


def refused(fn, code):
    with pytest.raises(KsError) as e:
        fn()
    assert e.value.code == ERR[code], (e.value.code, e.value.message)
    assert e.value.message  # a sentence saying what was refused
    return e.value.message


def test_every_refusal_has_its_error(ks_daemon):
    d = ks_daemon
    now = int(time.time())
    with ks(d, "ka") as k:
        k.generate("r-ec", "ec", 256, auths(["sign"], ["sha256"]))
        refused(lambda: k.one_shot("r-ec", params("verify", "sha256"), b"x", b"sig"), "INCOMPATIBLE_PURPOSE")
        refused(lambda: k.one_shot("r-ec", params("encrypt"), b"x"), "UNSUPPORTED_PURPOSE")
        refused(lambda: k.one_shot("r-ec", params("sign", "sha384"), b"x"), "INCOMPATIBLE_DIGEST")
        k.generate("r-rsa", "rsa", 2048, auths(["sign", "encrypt", "decrypt"], ["sha256"], ["pss", "oaep"]))
        refused(lambda: k.one_shot("r-rsa", params("sign", "sha256", "pkcs1"), b"x"), "INCOMPATIBLE_PADDING")
        refused(lambda: k.one_shot("r-rsa", params("encrypt", "sha256", "pkcs1"), b"x"), "INCOMPATIBLE_PADDING")
        sig, _ = k.one_shot("r-rsa", params("sign", "sha256", "pss"), b"x")
        assert len(sig) == 256
        ct, _ = k.one_shot("r-rsa", params("encrypt", "sha256", "oaep"), b"secret")
        assert k.one_shot("r-rsa", params("decrypt", "sha256", "oaep"), ct)[0] == b"secret"
        k.generate("r-aes", "aes", 256, auths(["encrypt", "decrypt"], modes=["gcm"], min_mac=128))
        refused(lambda: k.one_shot("r-aes", params("encrypt", mode="cbc", padding="pkcs7"), b"x"),
                "INCOMPATIBLE_BLOCK_MODE")
        refused(lambda: k.one_shot("r-aes", params("encrypt", mode="gcm", mac=96), b"x"), "INVALID_MAC_LENGTH")
        refused(lambda: k.one_shot("r-aes", params("encrypt", mode="gcm", nonce=b"\0" * 12), b"x"), "INVALID_NONCE")
        ct, nonce = k.one_shot("r-aes", params("encrypt", mode="gcm", aad=b"hdr"), b"plain")
        assert k.one_shot("r-aes", params("decrypt", mode="gcm", nonce=nonce, aad=b"hdr"), ct)[0] == b"plain"
        bad = ct[:-1] + bytes([ct[-1] ^ 1])
        refused(lambda: k.one_shot("r-aes", params("decrypt", mode="gcm", nonce=nonce, aad=b"hdr"), bad),
                "INVALID_TAG")
        k.generate("r-hmac", "hmac", 256, auths(["sign", "verify"], ["sha256"], min_mac=128))
        refused(lambda: k.one_shot("r-hmac", params("sign", "sha256", mac=64), b"x"), "INVALID_MAC_LENGTH")
        mac, _ = k.one_shot("r-hmac", params("sign", "sha256", mac=256), b"x")
        k.one_shot("r-hmac", params("verify", "sha256"), b"x", mac)
        refused(lambda: k.one_shot("r-hmac", params("verify", "sha256"), b"y", mac), "VERIFICATION_FAILED")
        refused(lambda: k.one_shot("r-hmac", params("verify", "sha256"), b"x", mac[:8]), "INVALID_MAC_LENGTH")
        # validity dates
        k.generate("r-old", "ec", 256, auths(["sign"], ["sha256"], not_before=now - 7200, not_after=now - 3600))
        refused(lambda: k.one_shot("r-old", params("sign", "sha256"), b"x"), "KEY_EXPIRED")
        k.generate("r-new", "ec", 256, auths(["sign"], ["sha256"], not_before=now + 3600))
        refused(lambda: k.one_shot("r-new", params("sign", "sha256"), b"x"), "KEY_NOT_YET_VALID")
        # usage count
        k.generate("r-count", "ec", 256, auths(["sign"], ["sha256"], uses=2))
        k.one_shot("r-count", params("sign", "sha256"), b"x")
        k.one_shot("r-count", params("sign", "sha256"), b"x")
        refused(lambda: k.one_shot("r-count", params("sign", "sha256"), b"x"), "KEY_MAX_OPS_EXCEEDED")
        # rate
        k.generate("r-rate", "ec", 256, auths(["sign"], ["sha256"], min_secs=60))
        k.one_shot("r-rate", params("sign", "sha256"), b"x")
        refused(lambda: k.one_shot("r-rate", params("sign", "sha256"), b"x"), "KEY_RATE_LIMITED")
        # passphrase
        k.generate("r-pass", "ec", 256, auths(["sign"], ["sha256"]), passphrase=b"correct horse")
        refused(lambda: k.one_shot("r-pass", params("sign", "sha256"), b"x"), "AUTH_REQUIRED")
        refused(lambda: k.one_shot("r-pass", params("sign", "sha256", passphrase=b"wrong"), b"x"), "AUTH_FAILED")
        k.one_shot("r-pass", params("sign", "sha256", passphrase=b"correct horse"), b"x")
        # the key's own limits, at creation
        refused(lambda: k.generate("r-bad", "ec", 521, auths(["sign"], ["sha256"])), "UNSUPPORTED_KEY_SIZE")
        refused(lambda: k.generate("r-bad", "rsa", 1024, auths(["sign"], ["sha256"])), "UNSUPPORTED_KEY_SIZE")
        refused(lambda: k.generate("r-bad", "hmac", 256, auths(["encrypt"], ["sha256"], min_mac=128)),
                "UNSUPPORTED_PURPOSE")
        refused(lambda: k.generate("r-ec", "ec", 256, auths(["sign"], ["sha256"])), "KEY_EXISTS")
        refused(lambda: k.generate("../x", "ec", 256, auths(["sign"], ["sha256"])), "INVALID_ARGUMENT")
        refused(lambda: k.one_shot("nope", params("sign", "sha256"), b"x"), "KEY_NOT_FOUND")
        for a in k.list():
            if a.startswith("r-"):
                k.delete(a)


def test_streaming_and_operation_bound(ks_daemon, tmp_path):
    d = ks_daemon
    with ks(d, "ka") as k:
        k.generate("s-ec", "ec", 384, auths(["sign"], ["sha384"]))
        h, _ = k.begin("s-ec", params("sign", "sha384"))
        for i in range(10):
            k.update(h, b"chunk%d" % i)
        sig = k.finish(h)
        (tmp_path / "pub").write_bytes(k.public_key("s-ec"))
        (tmp_path / "data").write_bytes(b"".join(b"chunk%d" % i for i in range(10)))
        (tmp_path / "sig").write_bytes(sig)
        assert subprocess.run([tool("openssl"), "dgst", "-sha384", "-verify", str(tmp_path / "pub"), "-keyform", "DER",
                               "-signature", str(tmp_path / "sig"), str(tmp_path / "data")],
                              capture_output=True).returncode == 0
        refused(lambda: k.update(h, b"more"), "INVALID_HANDLE")
        k.generate("s-aes", "aes", 128, auths(["encrypt", "decrypt"], modes=["ctr", "cbc"], paddings=["pkcs7"]))
        h, nonce = k.begin("s-aes", params("encrypt", mode="cbc", padding="pkcs7"))
        ct = k.update(h, b"a" * 20) + k.finish(h, b"b" * 5)
        h, _ = k.begin("s-aes", params("decrypt", mode="cbc", padding="pkcs7", nonce=nonce))
        assert k.update(h, ct[:7]) + k.finish(h, ct[7:]) == b"a" * 20 + b"b" * 5
        handles = [k.begin("s-ec", params("sign", "sha384"))[0] for _ in range(16)]
        refused(lambda: k.begin("s-ec", params("sign", "sha384")), "TOO_MANY_OPERATIONS")
        for h in handles:
            k.abort(h)
        k.one_shot("s-ec", params("sign", "sha384"), b"x")
    # operations of a connection that went away are gone with it
    with ks(d, "ka") as k:
        handles = [k.begin("s-ec", params("sign", "sha384"))[0] for _ in range(16)]
    with ks(d, "ka") as k:
        k.one_shot("s-ec", params("sign", "sha384"), b"x")
        refused(lambda: k.finish(handles[0]), "INVALID_HANDLE")
        k.delete("s-ec")
        k.delete("s-aes")


def files_below(path):
    for root, _, names in os.walk(path):
        for n in names:
            p = Path(root) / n
            if p.is_file() and not p.is_symlink():
                yield p


def test_no_key_material_in_plaintext(ks_daemon):
    d = ks_daemon
    aes = os.urandom(32)
    hmac = os.urandom(32)
    ec = subprocess.run([tool("openssl"), "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                         "-outform", "DER"], capture_output=True, check=True).stdout
    scalar = subprocess.run([tool("openssl"), "pkey", "-inform", "DER", "-noout", "-text"], input=ec,
                            capture_output=True, check=True).stdout.decode()
    priv = bytes.fromhex("".join(scalar.split("priv:")[1].split("pub:")[0].split()).replace(":", ""))
    assert len(priv) in (32, 33)
    priv = priv[-32:]
    with ks(d, "ka") as k:
        k.import_key("p-aes", "aes", aes, auths(["encrypt", "decrypt"], modes=["gcm"], min_mac=128))
        k.import_key("p-hmac", "hmac", hmac, auths(["sign"], ["sha256"], min_mac=256))
        k.import_key("p-ec", "ec", ec, auths(["sign"], ["sha256"]))
        k.one_shot("p-ec", params("sign", "sha256"), b"x")
        k.one_shot("p-aes", params("encrypt", mode="gcm"), b"x")
    checked = 0
    for base in (d.data_dir, d.run_dir):
        for p in files_below(base):
            try:
                data = p.read_bytes()
            except OSError:
                continue
            checked += 1
            for secret in (aes, hmac, priv, ec):
                assert secret not in data, f"key material in plaintext in {p}"
    assert checked > 3
    blobs = list((d.data_dir / "keystore").glob("*/p-*.key"))
    assert len(blobs) == 3
    with ks(d, "ka") as k:
        for a in ("p-aes", "p-hmac", "p-ec"):
            k.delete(a)


def test_blob_moved_to_another_container_is_useless(ks_daemon):
    d = ks_daemon
    with ks(d, "ka") as k:
        k.generate("m-ec", "ec", 256, auths(["sign"], ["sha256"]))
    ua, ub = d.state("ka")["uuid"], d.state("kb")["uuid"]
    src = d.data_dir / "keystore" / ua / "m-ec.key"
    dst = d.data_dir / "keystore" / ub / "m-ec.key"
    dst.write_bytes(src.read_bytes())
    os.chown(dst, src.stat().st_uid, src.stat().st_gid)
    with ks(d, "kb") as k:
        msg = refused(lambda: k.one_shot("m-ec", params("sign", "sha256"), b"x"), "INVALID_KEY_BLOB")
        assert "another container" in msg
        assert "m-ec" not in k.list()
    # and under another alias in the same container
    other = d.data_dir / "keystore" / ua / "m-renamed.key"
    other.write_bytes(src.read_bytes())
    os.chown(other, src.stat().st_uid, src.stat().st_gid)
    with ks(d, "ka") as k:
        refused(lambda: k.one_shot("m-renamed", params("sign", "sha256"), b"x"), "INVALID_KEY_BLOB")
        k.one_shot("m-ec", params("sign", "sha256"), b"x")
        k.delete("m-ec")
    other.unlink()
    dst.unlink()


def test_hostile_container_leaves_others_served(ks_daemon):
    d = ks_daemon
    import socket
    import struct
    with ks(d, "kb") as k:
        k.generate("h-ec", "ec", 256, auths(["sign"], ["sha256"]))
    path = sock_of(d, "ka")
    held = []
    # more connections than the service takes, garbage, a frame announcing 1 GiB, half a frame
    for i in range(40):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        try:
            s.connect(str(path))
        except OSError:
            s.close()
            continue
        held.append(s)
        try:
            if i % 4 == 0:
                s.sendall(struct.pack(">I", 12) + b"\xff" * 12)
            elif i % 4 == 1:
                s.sendall(struct.pack(">I", 1 << 30))
            elif i % 4 == 2:
                s.sendall(struct.pack(">I", 100) + b"\x08")
        except OSError:
            pass
    t0 = time.monotonic()
    with ks(d, "kb") as k:
        for _ in range(20):
            k.one_shot("h-ec", params("sign", "sha256"), b"x")
    assert time.monotonic() - t0 < 5
    for s in held:
        s.close()
    # the flooded keystore serves again once its clients are gone
    def served():
        try:
            with ks(d, "ka") as k:
                k.list()
            return True
        except OSError:
            return False
    wait_for(served, timeout=10, what="ka's keystore")
    with ks(d, "kb") as k:
        k.delete("h-ec")


def test_malformed_request_gets_an_error(ks_daemon):
    d = ks_daemon
    with ks(d, "ka") as k:
        code, msg, _ = k.raw(16, b"\xff\xff\xff")
        assert code == ERR["MALFORMED_MESSAGE"], msg
        assert isinstance(k.list(), list)  # the connection goes on


def keystore_pids(d):
    """trustmed's trustme-keystore children."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except (OSError, IndexError, ValueError):
            continue
        if ppid == d.proc.pid and cmd == b"trustme-keystore":
            pids.append(int(entry.name))
    return pids


def test_each_container_has_its_own_confined_service(ks_daemon):
    import pwd
    d = ks_daemon
    pids = keystore_pids(d)
    assert len(pids) == 2, pids
    uid = pwd.getpwnam("trustme-keystore").pw_uid
    ns = {}
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert fields["Uid"].split() == [str(uid)] * 4
        assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
        assert fields["NoNewPrivs"].strip() == "1"
        # not dumpable: its /proc/PID/environ is root's, not the service user's
        assert Path(f"/proc/{pid}/environ").stat().st_uid == 0
        ns[pid] = {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in ("pid", "mnt", "net", "ipc")}
        for n in ("pid", "mnt", "net", "ipc"):
            assert ns[pid][n] != os.readlink(f"/proc/{d.proc.pid}/ns/{n}"), n
        # its root holds its own container's key directory and nothing of the data dir besides
        root = Path(f"/proc/{pid}/root")
        assert {"dev", "state", "tmp", "usr"} <= {p.name for p in root.iterdir()}
        assert not (root / "data").exists() and not (root / "proc" / "1").exists()
        assert all(p.suffix == ".key" or p.name in ("sstore", "index") for p in (root / "state").iterdir())
    a, b = pids
    for n in ("pid", "mnt", "net", "ipc"):
        assert ns[a][n] != ns[b][n], f"the keystores of two containers share their {n} namespace"


def test_token_binds_the_keys_and_a_wipe_erases_them(make_daemon):
    """With a token the keystore key needs the data key: the keys come back at each start with the
    PIN, and a wipe (a new data key) leaves every old blob useless."""
    from test_storage import KDF, PIN, PUK, create_paired, pin_file, start
    d = make_daemon(extra_args=KDF)
    wait_for(lambda: "device storage secret unsealed" in d.log(), timeout=60, what="the device secret")
    create_paired(d, "kt", keystore=True)
    start(d, "kt")
    with ks(d, "kt") as k:
        k.generate("t-ec", "ec", 256, auths(["sign"], ["sha256"]))
        pub = k.public_key("t-ec")
        k.commit([("session", b"before the wipe")])
        k.tp_write("pin-tries", b"3")
    d.cli("stop", "kt")
    start(d, "kt")
    with ks(d, "kt") as k:
        assert k.public_key("t-ec") == pub
        k.one_shot("t-ec", params("sign", "sha256"), b"x")
    d.cli("stop", "kt")
    blob = next((d.data_dir / "keystore").glob("*/t-ec.key"))
    saved, st = blob.read_bytes(), blob.stat()
    r = d.cli("wipe", "kt", check=False)
    assert r.returncode == 0, r.stderr
    assert not blob.parent.exists()  # the wipe takes the keys and the secure store
    blob.parent.mkdir(mode=0o700)
    os.chown(blob.parent, st.st_uid, st.st_gid)
    blob.write_bytes(saved)  # a copy kept from before the wipe
    os.chown(blob, st.st_uid, st.st_gid)
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, PUK), "kt")
    start(d, "kt")
    import errno
    with ks(d, "kt") as k:
        refused(lambda: k.one_shot("t-ec", params("sign", "sha256"), b"x"), "INVALID_KEY_BLOB")
        # the secure store starts empty (its anchor went with it), its tamper-proof objects stay
        with pytest.raises(SstoreError) as e:
            k.read("session")
        assert e.value.errno == errno.ENOENT and "missing" not in e.value.message, e.value
        assert k.commit([("session", b"after the wipe")]) == 1
        assert k.read("session") == b"after the wipe"
        assert k.read("pin-tries", tamper_proof=True) == b"3"
    d.cli("stop", "kt")


def test_removed_container_takes_its_keys(ks_daemon):
    d = ks_daemon
    d.create("kr", keystore=True)
    d.cli("start", "kr")
    with ks(d, "kr") as k:
        k.generate("gone", "ec", 256, auths(["sign"], ["sha256"]))
        k.commit([("obj", b"x")])
        k.tp_write("tp1", b"y")
        assert k.read("tp1", tamper_proof=True) == b"y"
    uuid = d.state("kr")["uuid"]
    keydir = d.data_dir / "keystore" / uuid
    assert (keydir / "gone.key").exists()
    tpm_dir = d.data_dir / "tpm"
    names = (f"sstore/{uuid}".encode(), f"sstore-tp/{uuid}/tp1".encode())
    assert all(n in anchors.table_bytes(tpm_dir) for n in names)
    d.cli("stop", "kr")
    d.cli("remove", "kr")
    assert not keydir.exists()
    # and its secure store's anchors (the store's and the tamper-proof objects) leave tpmd's table
    wait_for(lambda: uuid.encode() not in anchors.table_bytes(tpm_dir), timeout=10, what="kr's anchors removed")


def test_killed_service_is_restarted_with_its_keys(ks_daemon):
    import signal
    d = ks_daemon
    with ks(d, "kb") as k:
        k.generate("k-ec", "ec", 256, auths(["sign"], ["sha256"]))
    before = set(keystore_pids(d))
    victim = next(p for p in before
                  if (Path(f"/proc/{p}/root/state") / "k-ec.key").exists())
    os.kill(victim, signal.SIGKILL)

    def served():
        try:
            with ks(d, "kb") as k:
                k.one_shot("k-ec", params("sign", "sha256"), b"x")
            return True
        except (OSError, KsError):
            return False
    wait_for(served, timeout=10, what="kb's keystore back")
    assert len(keystore_pids(d)) == 2 and victim not in keystore_pids(d)
    assert ("keystore.exit", "fail") in [(e["event"], e["result"]) for e in d.audit_events()]
    with ks(d, "kb") as k:
        k.delete("k-ec")


def restart_service(d, name):
    """kill -9 the container's keystore service (trustmed restarts it): it forgets the keys it had
    loaded, so that the next use reads the blob from its file."""
    import signal
    victim = service_of(d, name)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in keystore_pids(d) and len(keystore_pids(d)) >= 2, timeout=10,
             what=f"{name}'s keystore restarted")

    def served():
        try:
            with ks(d, name) as k:
                k.store_status()
            return True
        except SstoreError:
            return True  # answered
        except (OSError, KsError):
            return False
    wait_for(served, timeout=10, what=f"{name}'s keystore back")


def test_loaded_keys_follow_deletes_and_counts_survive_restarts(ks_daemon):
    """A key the service holds decoded (it keeps up to 32 loaded between uses) is forgotten at its
    delete: a later use, on any connection, finds no key, and a new key of the same alias signs
    with its own material. A usage count is stored before each use, so a restart of the service
    in between does not give the key more uses than its limit."""
    d = ks_daemon
    with ks(d, "ka") as k, ks(d, "ka") as k2:
        k.generate("cached", "ec", 256, auths(["sign"], ["sha256"]))
        spki = k.public_key("cached")
        k.one_shot("cached", params("sign", "sha256"), b"x")  # loaded now
        k2.delete("cached")
        refused(lambda: k.one_shot("cached", params("sign", "sha256"), b"x"), "KEY_NOT_FOUND")
        k.generate("cached", "ec", 256, auths(["sign"], ["sha256"]))
        assert k2.public_key("cached") != spki
        k.delete("cached")
        k.generate("counted", "ec", 256, auths(["sign"], ["sha256"], uses=3))
        k.one_shot("counted", params("sign", "sha256"), b"x")
        k.one_shot("counted", params("sign", "sha256"), b"x")
    restart_service(d, "ka")
    with ks(d, "ka") as k:
        k.one_shot("counted", params("sign", "sha256"), b"x")
        refused(lambda: k.one_shot("counted", params("sign", "sha256"), b"x"), "KEY_MAX_OPS_EXCEEDED")
    restart_service(d, "ka")
    with ks(d, "ka") as k:
        refused(lambda: k.one_shot("counted", params("sign", "sha256"), b"x"), "KEY_MAX_OPS_EXCEEDED")
        k.delete("counted")


def put_back(path, data, st):
    path.write_bytes(data)
    os.chown(path, st.st_uid, st.st_gid)


def test_restored_blob_of_a_deleted_or_spent_key_is_refused(ks_daemon):
    """Root on the device saves a key's blob, the container deletes the key (or spends its usage
    count), root writes the saved blob back: the key is not usable again, nor listed. The blob's
    SHA-256 is in the TPM-anchored key index, which names only the current blob of every key."""
    d = ks_daemon
    ua = d.state("ka")["uuid"]
    blob = d.data_dir / "keystore" / ua / "r-once.key"
    with ks(d, "ka") as k:
        k.generate("r-once", "ec", 256, auths(["sign"], ["sha256"], uses=1))
        saved, st = blob.read_bytes(), blob.stat()
        k.one_shot("r-once", params("sign", "sha256"), b"x")
        refused(lambda: k.one_shot("r-once", params("sign", "sha256"), b"x"), "KEY_MAX_OPS_EXCEEDED")
    # the spent key's older blob (one use left) written back while the service does not hold it
    spent = blob.read_bytes()
    restart_service(d, "ka")
    put_back(blob, saved, st)
    with ks(d, "ka") as k:
        msg = refused(lambda: k.one_shot("r-once", params("sign", "sha256"), b"x"), "INVALID_KEY_BLOB")
        assert "not the one the TPM-anchored key index names" in msg, msg
        refused(lambda: k.public_key("r-once"), "INVALID_KEY_BLOB")
    put_back(blob, spent, st)  # the current blob is the key again: spent
    with ks(d, "ka") as k:
        refused(lambda: k.one_shot("r-once", params("sign", "sha256"), b"x"), "KEY_MAX_OPS_EXCEEDED")
        k.delete("r-once")
    assert not blob.exists()
    put_back(blob, saved, st)  # a deleted key's blob written back
    try:
        with ks(d, "ka") as k:
            msg = refused(lambda: k.one_shot("r-once", params("sign", "sha256"), b"x"), "INVALID_KEY_BLOB")
            assert "not in the TPM-anchored key index" in msg, msg
            assert "r-once" not in k.list(), "a deleted key is listed again from its restored blob"
            # the alias is free: a new key under it replaces the stale file
            k.generate("r-once", "ec", 256, auths(["sign"], ["sha256"]))
            k.one_shot("r-once", params("sign", "sha256"), b"x")
            k.delete("r-once")
    finally:
        blob.unlink(missing_ok=True)
    refusals = [e for e in d.audit_events() if e["event"] == "keystore.blob_refused" and "r-once" in str(e)]
    assert refusals, "the refused blobs are not audited"


def test_blob_left_beside_its_old_version_by_a_crash_is_taken(ks_daemon):
    """A put writes <alias>.key.new, anchors its hash in the key index, then renames it: a crash
    after the anchor leaves the old blob in <alias>.key and the indexed one in <alias>.key.new.
    The next load takes the indexed one (the use it counted stays counted) and moves it into
    place; an unindexed .new (a put whose anchor never happened) is ignored and removed."""
    d = ks_daemon
    keydir = d.data_dir / "keystore" / d.state("ka")["uuid"]
    blob, new = keydir / "cr-two.key", keydir / "cr-two.key.new"
    with ks(d, "ka") as k:
        k.generate("cr-two", "ec", 256, auths(["sign"], ["sha256"], uses=2))
        before, st = blob.read_bytes(), blob.stat()
        k.one_shot("cr-two", params("sign", "sha256"), b"x")
    after = blob.read_bytes()
    restart_service(d, "ka")
    put_back(blob, before, st)  # as if the rename had not happened
    put_back(new, after, st)
    with ks(d, "ka") as k:
        k.one_shot("cr-two", params("sign", "sha256"), b"x")  # the second use, not a third
        refused(lambda: k.one_shot("cr-two", params("sign", "sha256"), b"x"), "KEY_MAX_OPS_EXCEEDED")
    assert not new.exists()
    current = blob.read_bytes()
    restart_service(d, "ka")
    put_back(new, before, st)  # a put that never got anchored
    with ks(d, "ka") as k:
        refused(lambda: k.one_shot("cr-two", params("sign", "sha256"), b"x"), "KEY_MAX_OPS_EXCEEDED")
        assert blob.read_bytes() == current and not new.exists()
        k.delete("cr-two")


def test_swapped_blobs_of_two_containers_are_refused(ks_daemon):
    """Root swaps two containers' blobs of the same alias: neither opens in the other (another
    keystore key and UUID, and not the blob its index names); swapped back, both are served."""
    d = ks_daemon
    ua, ub = d.state("ka")["uuid"], d.state("kb")["uuid"]
    pa, pb = (d.data_dir / "keystore" / u / "sw-ec.key" for u in (ua, ub))
    with ks(d, "ka") as a, ks(d, "kb") as b:
        a.generate("sw-ec", "ec", 256, auths(["sign"], ["sha256"]))
        b.generate("sw-ec", "ec", 256, auths(["sign"], ["sha256"]))
    da, db, st = pa.read_bytes(), pb.read_bytes(), pa.stat()
    restart_service(d, "ka")
    restart_service(d, "kb")
    put_back(pa, db, st)
    put_back(pb, da, st)
    with ks(d, "ka") as a, ks(d, "kb") as b:
        refused(lambda: a.one_shot("sw-ec", params("sign", "sha256"), b"x"), "INVALID_KEY_BLOB")
        refused(lambda: b.one_shot("sw-ec", params("sign", "sha256"), b"x"), "INVALID_KEY_BLOB")
    put_back(pa, da, st)
    put_back(pb, db, st)
    with ks(d, "ka") as a, ks(d, "kb") as b:
        a.one_shot("sw-ec", params("sign", "sha256"), b"x")
        b.one_shot("sw-ec", params("sign", "sha256"), b"x")
        a.delete("sw-ec")
        b.delete("sw-ec")


def test_rolled_back_or_removed_key_index_refuses_every_key(ks_daemon):
    """Root puts back the whole key directory (blobs and their index) from before a key's uses
    were spent: the index is older than the TPM anchors (ESTALE), so no key is served; with the
    index removed (its anchor stays in tpmd's table, which root cannot edit) no key is served
    either; the current files put back, the keys are served again."""
    import shutil
    d = ks_daemon
    keydir = d.data_dir / "keystore" / d.state("ka")["uuid"]
    index = keydir / "index"
    with ks(d, "ka") as k:
        k.generate("ix-once", "ec", 256, auths(["sign"], ["sha256"], uses=1))
        k.generate("ix-plain", "ec", 256, auths(["sign"], ["sha256"]))
    st = index.stat()
    old_index, old_blob = snapshot(index), (keydir / "ix-once.key").read_bytes()
    with ks(d, "ka") as k:
        k.one_shot("ix-once", params("sign", "sha256"), b"x")
    new_index, new_blob = snapshot(index), (keydir / "ix-once.key").read_bytes()
    try:
        restart_service(d, "ka")
        restore(index, old_index, (st.st_uid, st.st_gid))
        put_back(keydir / "ix-once.key", old_blob, st)
        with ks(d, "ka") as k:
            msg = refused(lambda: k.one_shot("ix-once", params("sign", "sha256"), b"x"), "STORAGE")
            assert "rolled back" in msg, msg
            refused(lambda: k.one_shot("ix-plain", params("sign", "sha256"), b"x"), "STORAGE")
            refused(lambda: k.list(), "STORAGE")
            refused(lambda: k.generate("ix-new", "ec", 256, auths(["sign"], ["sha256"])), "STORAGE")
        restart_service(d, "ka")
        shutil.rmtree(index)
        with ks(d, "ka") as k:
            msg = refused(lambda: k.one_shot("ix-plain", params("sign", "sha256"), b"x"), "STORAGE")
            assert "missing" in msg, msg
        refusals = [e for e in d.audit_events() if e["event"] == "keystore.blob_refused" and "key index" in str(e)]
        assert refusals, "the refused index is not audited"
    finally:
        restart_service(d, "ka")
        index.mkdir(mode=0o700, exist_ok=True)
        os.chown(index, st.st_uid, st.st_gid)
        (index / "obj").mkdir(mode=0o700, exist_ok=True)
        os.chown(index / "obj", st.st_uid, st.st_gid)
        restore(index, new_index, (st.st_uid, st.st_gid))
        put_back(keydir / "ix-once.key", new_blob, st)
    with ks(d, "ka") as k:
        refused(lambda: k.one_shot("ix-once", params("sign", "sha256"), b"x"), "KEY_MAX_OPS_EXCEEDED")
        k.one_shot("ix-plain", params("sign", "sha256"), b"x")
        k.delete("ix-once")
        k.delete("ix-plain")


def test_secure_storage_on_the_socket(ks_daemon):
    """Each container's objects through its own keystore socket: commits of several objects at
    once, reads, listing, create-only, deletes; the other container sees none of them."""
    import errno
    d = ks_daemon
    with ks(d, "ka") as a, ks(d, "kb") as b:
        v0 = a.store_status().get(362, [0])[0]
        v1 = a.commit([("pin-retries", b"3"), ("refresh-token", b"ka-secret" * 100), ("big", os.urandom(8192))])
        assert v1 == v0 + 1
        assert a.read("pin-retries") == b"3" and a.read("refresh-token") == b"ka-secret" * 100
        assert {"pin-retries", "refresh-token", "big"} <= set(a.objects())
        with pytest.raises(SstoreError) as e:
            a.commit([("pin-retries", b"9")], create_only=True)
        assert e.value.errno == errno.EEXIST
        assert a.commit([("pin-retries", b"2")], deletes=["big"]) == v1 + 1
        assert a.read("pin-retries") == b"2" and "big" not in a.objects()
        # kb: its own store, with none of ka's objects
        b.commit([("refresh-token", b"kb-secret")])
        assert b.read("refresh-token") == b"kb-secret"
        assert "pin-retries" not in b.objects()
        with pytest.raises(SstoreError) as e:
            b.read("pin-retries")
        assert e.value.errno == errno.ENOENT
        assert a.read("refresh-token") == b"ka-secret" * 100
        # a bad request is an error answer, and the store goes on
        with pytest.raises(SstoreError) as e:
            a.commit([("bad id", b"x")])
        assert e.value.errno == errno.EINVAL
        code, _, _ = a.raw(360, b"\xff\xff")
        assert code == ERR["MALFORMED_MESSAGE"]
        assert a.read("pin-retries") == b"2"
        assert isinstance(a.list(), list)  # keys and storage on one connection
    # no object's plaintext in any file
    for p in files_below(d.data_dir):
        try:
            assert b"ka-secret" not in p.read_bytes(), p
        except OSError:
            pass


def service_of(d, name):
    ino = (d.data_dir / "keystore" / d.state(name)["uuid"]).stat().st_ino
    for pid in keystore_pids(d):
        try:
            if Path(f"/proc/{pid}/root/state").stat().st_ino == ino:
                return pid
        except OSError:
            pass
    raise AssertionError(f"no keystore service for {name}")


def snapshot(path):
    return {p.relative_to(path): p.read_bytes() for p in files_below(path)}


def restore(path, snap, owner):
    for p in list(files_below(path)):
        if p.relative_to(path) not in snap:
            p.unlink()
    for rel, data in snap.items():
        (path / rel).write_bytes(data)
        os.chown(path / rel, *owner)


def test_secure_storage_rollback_is_refused(ks_daemon):
    """Root on the device puts back an older copy of a container's store: the keystore refuses
    it (ESTALE, the TPM anchors a newer version) and serves nothing stale; the current files
    put back are served again."""
    import errno
    import json
    import signal
    d = ks_daemon
    with ks(d, "kb") as k:
        k.commit([("counter", b"old")])
    store = d.data_dir / "keystore" / d.state("kb")["uuid"] / "sstore"
    st = store.stat()
    old = snapshot(store)
    with ks(d, "kb") as k:
        k.commit([("counter", b"new")])
    new = snapshot(store)
    victim = service_of(d, "kb")
    os.kill(victim, signal.SIGKILL)  # the store is opened again by the restarted service
    wait_for(lambda: victim not in keystore_pids(d) and len(keystore_pids(d)) == 2, timeout=10,
             what="kb's keystore restarted")
    restore(store, old, (st.st_uid, st.st_gid))

    def answer():
        try:
            with ks(d, "kb") as k:
                return k.read("counter")
        except SstoreError as e:
            return e
        except (OSError, KsError):
            return None
    wait_for(lambda: answer() is not None, timeout=10, what="kb's keystore back")
    e = answer()
    assert isinstance(e, SstoreError), e
    assert e.errno == errno.ESTALE and "rolled back" in e.message, e
    with ks(d, "kb") as k:
        for _ in range(20):  # each request is refused again, the audit log gets it once
            with pytest.raises(SstoreError) as e2:
                k.commit([("counter", b"forged")])
            assert e2.value.errno == errno.ESTALE
        assert isinstance(k.list(), list)  # its keys are still served
    refusals = [e for e in d.audit_events() if e["event"] == "sstore.refused"]
    assert len(refusals) == 1 and refusals[0]["result"] == "fail", refusals
    assert "rolled back" in json.dumps(refusals[0]) and d.state("kb")["uuid"] in json.dumps(refusals[0])
    restore(store, new, (st.st_uid, st.st_gid))
    with ks(d, "kb") as k:
        assert k.read("counter") == b"new"


def test_taken_over_keystore_reaches_only_its_own_anchors(ks_daemon):
    """Code running in ka's keystore process (a container root who broke it) speaks on its link to
    trustmed: asking for or setting kb's store anchor, another anchor of the table, or anything but
    an anchor request is refused (EPERM); its own anchor is answered."""
    import ctypes
    import errno
    import signal
    import socket
    import struct
    from pb import field_bytes, field_varint, frame, parse
    d = ks_daemon
    with ks(d, "ka") as k:
        k.commit([("x", b"1")])
    pid = service_of(d, "ka")
    ua, ub = d.state("ka")["uuid"], d.state("kb")["uuid"]
    os.kill(pid, signal.SIGSTOP)  # so that the service does not read the answers meant for us
    try:
        pidfd = os.pidfd_open(pid)
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.syscall(438, pidfd, 3, 0)  # pidfd_getfd: the service's link to trustmed
        os.close(pidfd)
        assert fd >= 0, os.strerror(ctypes.get_errno())
        link = socket.socket(fileno=fd)
        link.settimeout(10)

        def ask(rid, body):
            link.send(frame(field_varint(1, 1) + field_varint(2, rid) + body))
            data = link.recv(65536)
            resp = parse(data[4:])
            assert resp[2][0] == rid
            return resp

        def anchor_get(name):
            return field_bytes(188, field_bytes(184, name.encode()))
        for rid, body in ((901, anchor_get(f"sstore/{ub}")), (902, anchor_get("guestos/x")),
                          (903, field_bytes(188, field_bytes(183, field_bytes(180, f"sstore/{ub}".encode())
                                                                 + field_bytes(181, b"\0" * 41)))),
                          (904, anchor_get(f"sstore-tp/{ua}x")),
                          (905, field_bytes(18, b""))):  # GetDeviceInfo
            resp = ask(rid, body)
            assert 10 in resp, resp
            assert parse(resp[10][0])[1][0] == errno.EPERM, resp
        resp = ask(906, anchor_get(f"sstore/{ua}"))
        assert 189 in resp, resp
        entries = parse(resp[189][0]).get(186, [])
        assert len(entries) == 1 and parse(entries[0])[180][0] == f"sstore/{ua}".encode()
        link.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    with ks(d, "kb") as k:
        k.read("counter") if "counter" in k.objects() else k.objects()
    with ks(d, "ka") as k:
        assert k.read("x") == b"1"


def test_key_attestation_verifies_and_names_the_container(ks_daemon, pki, tmp_path):
    """A keystore key's attestation chains through the container's attestation key (certified by
    the device's AK, naming the container) to the Device CA; trustme-verify --key-attestation
    checks it and names the container and the key; a tampered one, another container's key
    under this container's certificate, or the wrong challenge fails."""
    import base64
    import json
    from conftest import BUILD
    from test_device import provision
    verify = BUILD / "src/verify/trustme-verify"
    d = ks_daemon
    with ks(d, "ka") as k:
        k.generate("att-ec", "ec", 256, auths(["sign", "verify"], ["sha256"], uses=100))
        k.generate("att-aes", "aes", 256, auths(["encrypt"], modes=["gcm"], min_mac=128))
        # the device is not enrolled yet: no AK certificate, no attestation
        refused(lambda: k.attest("att-ec", b"c"), "ATTESTATION_UNAVAILABLE")
    provision(d, pki, tmp_path)
    challenge = os.urandom(16)
    with ks(d, "ka") as k:
        certs = k.attest("att-ec", challenge)
        pub = k.public_key("att-ec")
        refused(lambda: k.attest("att-aes"), "UNSUPPORTED_ALGORITHM")  # a secret key has no public key
        refused(lambda: k.attest("att-ec", b"x" * 129), "INVALID_ARGUMENT")
    with ks(d, "kb") as k:
        k.generate("att-b", "ec", 256, auths(["sign"], ["sha256"]))
        certs_b = k.attest("att-b", challenge)
    assert len(certs) >= 3

    def pem(ders):
        return "".join("-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(c).decode() + "-----END CERTIFICATE-----\n"
                       for c in ders)

    def check(ders, *extra):
        path = tmp_path / "att.pem"
        path.write_text(pem(ders))
        r = subprocess.run([str(verify), "--key-attestation", str(path),
                            "--ak-anchor", str(pki["dir"] / "customer/general-root-ca.pem"),
                            "--device-ca", str(pki["dir"] / "customer/device-ca.pem"), "--no-crl", "--json",
                            *(extra if "--challenge" in extra else ("--any-challenge", *extra))],
                           capture_output=True, text=True)
        return r.returncode, json.loads(r.stdout) if r.stdout else r.stderr

    rc, rep = check(certs, "--challenge", challenge.hex())
    assert rc == 0 and rep["verdict"] == "trusted", rep
    assert rep["container"]["name"] == "ka" and rep["container"]["uuid"] == d.state("ka")["uuid"], rep
    assert len(rep["container"]["config_sha256"]) == 64
    assert rep["key"]["alias"] == "att-ec" and rep["key"]["algorithm"] == "EC" and rep["key"]["key_size"] == 256
    assert rep["key"]["purposes"] == "sign,verify" and rep["key"]["security_level"] == "software"
    assert rep["challenge"] == challenge.hex()
    # the certificate is for the key's own public key
    spki = subprocess.run([tool("openssl"), "x509", "-inform", "DER", "-pubkey", "-noout"], input=certs[0],
                          capture_output=True, check=True).stdout
    der = subprocess.run([tool("openssl"), "pkey", "-pubin", "-outform", "DER"], input=spki,
                         capture_output=True, check=True).stdout
    assert der == pub
    args = [str(verify), "--key-attestation", str(tmp_path / "att.pem"), "--ak-anchor",
            str(pki["dir"] / "customer/general-root-ca.pem"), "--device-ca",
            str(pki["dir"] / "customer/device-ca.pem"), "--no-crl"]
    text = subprocess.run(args + ["--challenge", challenge.hex()], capture_output=True, text=True)
    assert text.returncode == 0 and "container:  ka (" in text.stdout, text.stdout
    # freshness is the verifier's explicit choice: a copy of this attestation taken earlier
    # would verify as well, so neither --challenge nor --any-challenge is a usage error
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 2 and "--any-challenge" in r.stderr and not r.stdout, r
    r = subprocess.run(args + ["--any-challenge"], capture_output=True, text=True)
    assert r.returncode == 0 and f"challenge:  {challenge.hex()}" in r.stdout, r.stdout
    r = subprocess.run(args + ["--any-challenge", "--challenge", challenge.hex()], capture_output=True, text=True)
    assert r.returncode == 2, r
    # the wrong challenge
    rc, rep = check(certs, "--challenge", "00" * 16)
    assert rc == 1 and "challenge" in rep["reason"], rep
    # tampered: the key's description (its alias) edited in the key certificate
    i = certs[0].index(b"att-ec")
    forged = certs[0][:i] + b"att-ed" + certs[0][i + 6:]
    rc, rep = check([forged] + certs[1:])
    assert rc == 1 and "not signed by the container" in rep["reason"], rep
    # tampered: the container's identity (its name) edited in the container certificate
    cert = certs[1]
    i = cert.index(d.state("ka")["uuid"].encode())
    forged = cert[:i] + (b"0" if cert[i:i + 1] != b"0" else b"1") + cert[i + 1:]
    rc, rep = check([certs[0], forged] + certs[2:])
    assert rc == 1 and "not signed by the device's AK" in rep["reason"], rep
    # kb's key attestation presented under ka's container certificate
    rc, rep = check([certs_b[0]] + certs[1:])
    assert rc == 1, rep
    # kb's whole chain verifies and names kb
    rc, rep = check(certs_b)
    assert rc == 0 and rep["container"]["name"] == "kb", rep
    # without the AK's chain
    rc, rep = check(certs[:2])
    assert rc == 1, rep



def test_taken_over_keystore_cannot_name_another_container(ks_daemon, pki, tmp_path):
    """Code in ka's keystore process asks trustmed over its link for a container certificate with
    kb's name and identity: the certificate names ka (trustmed fills both in itself)."""
    import ctypes
    import signal
    import socket
    from pb import field_bytes, field_varint, frame, parse
    from test_device import provision
    d = ks_daemon
    if not json_device_enrolled(d):
        provision(d, pki, tmp_path)
    ua, ub = d.state("ka")["uuid"], d.state("kb")["uuid"]
    spki = subprocess.run([tool("openssl"), "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                          capture_output=True, check=True).stdout
    spki = subprocess.run([tool("openssl"), "pkey", "-pubout", "-outform", "DER"], input=spki,
                          capture_output=True, check=True).stdout
    # a new service (its first certificate: trustmed certifies one attestation key per service)
    old = service_of(d, "ka")
    os.kill(old, signal.SIGKILL)
    pid = wait_for(lambda: next((p for p in keystore_pids(d) if p != old and _serves(d, "ka", p)), None),
                   timeout=20, what="ka's keystore restarted")
    os.kill(pid, signal.SIGSTOP)
    try:
        pidfd = os.pidfd_open(pid)
        fd = ctypes.CDLL(None, use_errno=True).syscall(438, pidfd, 3, 0)
        os.close(pidfd)
        assert fd >= 0
        link = socket.socket(fileno=fd)
        link.settimeout(20)
        body = field_bytes(430, spki) + field_bytes(431, f"trustme container {ub}".encode()) + field_bytes(432, b"kb")
        link.send(frame(field_varint(1, 1) + field_varint(2, 77) + field_bytes(435, body)))
        resp = parse(link.recv(262144)[4:])
        link.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert 436 in resp, resp
    cert = parse(resp[436][0])[433][0]
    assert ua.encode() in cert and ub.encode() not in cert
    subject = subprocess.run([tool("openssl"), "x509", "-inform", "DER", "-noout", "-subject"], input=cert,
                             capture_output=True, check=True).stdout.decode()
    assert f"trustme container {ua}" in subject, subject


def _serves(d, name, pid):
    try:
        return Path(f"/proc/{pid}/root/state").stat().st_ino == \
            (d.data_dir / "keystore" / d.state(name)["uuid"]).stat().st_ino
    except OSError:
        return False


def json_device_enrolled(d):
    import json
    return bool(json.loads(d.cli("device", "info", "--json").stdout).get("cert_chain_pem"))



def test_import_wrapped_key(ks_daemon):
    """A server wraps an AES key for ka's keystore (RSA-OAEP wrapping key made there): ka imports
    it and encrypts with it (the server decrypts: it is the server's key), with the server's
    authorisations; nothing on the device holds the key in the clear; an edited description, another
    container's wrapping key or a key not authorised to wrap fails."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    d = ks_daemon
    secret = os.urandom(32)
    desc = auths(["encrypt"], modes=["gcm"], min_mac=128)
    with ks(d, "ka") as k:
        k.generate("wrap-rsa", "rsa", 2048, auths(["wrap"], ["sha256"], ["oaep"]))
        k.generate("dec-rsa", "rsa", 2048, auths(["decrypt"], ["sha256"], ["oaep"]))
        wrapped = wrap_key(k.public_key("wrap-rsa"), "aes", secret, desc)
        ch = k.import_wrapped("from-server", "wrap-rsa", encode(wrapped))
        assert ch[1][0] == b"from-server" and ch[8][0] == 1  # imported
        ct, nonce = k.one_shot("from-server", params("encrypt", mode="gcm"), b"for the server")
        assert AESGCM(secret).decrypt(nonce, ct, None) == b"for the server"
        # the server's authorisations, not the container's choice: no decrypt
        refused(lambda: k.one_shot("from-server", params("decrypt", mode="gcm", nonce=nonce), ct),
                "INCOMPATIBLE_PURPOSE")
        # the description edited (decrypt added): the tag does not match
        forged = dict(wrapped)
        forged[3] = [encode({1: [3], 2: [auths(["encrypt", "decrypt"], modes=["gcm"], min_mac=128)]})]
        refused(lambda: k.import_wrapped("forged", "wrap-rsa", encode(forged)), "INVALID_TAG")
        # a key not authorised to wrap
        refused(lambda: k.import_wrapped("forged", "dec-rsa", encode(wrap_key(k.public_key("dec-rsa"), "aes",
                                                                               secret, desc))),
                "INCOMPATIBLE_PURPOSE")
        refused(lambda: k.import_wrapped("forged", "wrap-rsa", b"\x0a\x01\x00"), "INVALID_ARGUMENT")
        assert "forged" not in k.list()
    # wrapped for ka: kb's wrapping key does not open it
    with ks(d, "kb") as k:
        k.generate("wrap-rsa", "rsa", 2048, auths(["wrap"], ["sha256"], ["oaep"]))
        refused(lambda: k.import_wrapped("from-server", "wrap-rsa", encode(wrapped)), "INVALID_KEY_BLOB")
        k.delete("wrap-rsa")
    for p in files_below(d.data_dir):
        try:
            assert secret not in p.read_bytes(), p
        except OSError:
            pass
    with ks(d, "ka") as k:
        for a in ("wrap-rsa", "dec-rsa", "from-server"):
            k.delete(a)



def test_taken_over_keystore_is_held_to_the_tamper_proof_quota(ks_daemon):
    """Code in ka's keystore process sets tamper-proof entries directly: a value without its index,
    an index of 9 objects, a value the index does not list, an index that drops a value still in
    the table: all refused, so it cannot fill tpmd's table; consistent changes pass."""
    import ctypes
    import errno
    import signal
    import socket
    from pb import field_bytes, field_varint, frame, parse
    d = ks_daemon
    ua = d.state("ka")["uuid"]
    pid = service_of(d, "ka")

    def entry(name, value=None):
        f = field_bytes(180, name.encode())
        return field_bytes(183, f + (field_bytes(181, value) if value is not None else field_varint(182, 1)))

    def index(*ids):
        return entry(f"sstore-tp/{ua}", b"".join(i.encode() + b"\0" for i in ids))

    def value(i, v=b"v"):
        return entry(f"sstore-tp/{ua}/{i}", v)

    os.kill(pid, signal.SIGSTOP)
    try:
        pidfd = os.pidfd_open(pid)
        fd = ctypes.CDLL(None, use_errno=True).syscall(438, pidfd, 3, 0)
        os.close(pidfd)
        assert fd >= 0
        link = socket.socket(fileno=fd)
        link.settimeout(20)

        def ask(rid, sets):
            link.send(frame(field_varint(1, 1) + field_varint(2, rid) + field_bytes(188, b"".join(sets))))
            resp = parse(link.recv(65536)[4:])
            assert resp[2][0] == rid
            return parse(resp[10][0])[1][0] if 10 in resp else 0

        assert ask(951, [value("q1")]) == errno.EPERM
        assert ask(952, [index(*[f"q{i}" for i in range(9)])]) == errno.EDQUOT
        assert ask(953, [index("q1"), value("q2")]) == errno.EPERM
        assert ask(954, [index("q1"), value("q1")]) == 0
        assert ask(955, [index("q2"), value("q2")]) == errno.EPERM  # q1 would stay, unlisted
        assert ask(956, [index("q2"), value("q2"), entry(f"sstore-tp/{ua}/q1")]) == 0
        assert ask(957, [entry(f"sstore-tp/{ua}"), entry(f"sstore-tp/{ua}/q2")]) == 0
        link.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    with ks(d, "ka") as k:  # the library's own tamper-proof writes pass
        k.tp_write("t1", b"x")
        assert k.read("t1", tamper_proof=True) == b"x"
