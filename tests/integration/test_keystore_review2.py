# SPDX-License-Identifier: GPL-2.0-or-later
"""Fresh-eyes review of the keystore's TPM-anchored key index and of the containers' TPM NV write
budget (docs/KEYSTORE.md "Commit budget", docs/SECURITY.md "Attacks tried"): root in a container
trying to spend a key's uses past its count when the budget is gone, or to refill its budget by
restarts; root on the device rewriting a key's files while the key is used and its service is
killed; a hostile client of the keystore socket. Each runs against the real trustmed, tpmd and
keystore service."""
import errno
import os
import re
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import wait_for
from ksclient import ERR, Keystore, KsError, SstoreError, auths, encode, params
from test_keystore import keystore_pids, service_of


@pytest.fixture(scope="module")
def kr_daemon(test_root, rootfs):
    from conftest import Daemon, TEST_PREFIX
    base = Path(tempfile.mkdtemp(prefix="ksr2-", dir=test_root))
    d = Daemon(base, f"{TEST_PREFIX}-ksreview2", rootfs)
    try:
        d.start()
        wait_for(lambda: "device storage secret unsealed" in d.log(), timeout=60, what="the device secret")
        yield d
    finally:
        d.teardown()


def ks(d, name):
    return Keystore(Path(f"/proc/{d.state(name)['pid']}/root/run/trustme/keystore.sock"))


def started(d, name):
    if name not in [c["name"] for c in d.containers()]:
        d.create(name, keystore=True)
    if d.state(name).get("state") != "running":
        d.cli("start", name)


def refused(fn, code):
    with pytest.raises(KsError) as e:
        fn()
    assert e.value.code == ERR[code], f"{e.value.code}: {e.value.message} (expected {code})"
    return e.value


def kill_service(d, name):
    """kill -9 of the container's keystore service; returns once trustmed's new one serves."""
    victim = service_of(d, name)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in keystore_pids(d), timeout=10, what=f"{name}'s keystore gone")

    def served():
        try:
            with ks(d, name) as k:
                k.list()
            return True
        except (OSError, KsError, ConnectionError):
            return False
    wait_for(served, timeout=10, what=f"{name}'s keystore restarted")


def spend_budget(k, tag):
    """Commit until the container's TPM write budget refuses; returns (commits, the refusal)."""
    n = 0
    while n < 200:
        try:
            k.commit([(f"{tag}{n % 4}", b"b" * 16)])
        except SstoreError as e:
            return n, e
        n += 1
    raise AssertionError("200 commits and the budget never refused one")


def test_spent_budget_holds_usage_counts_and_survives_restarts(kr_daemon):
    """Root in container qa spends its TPM write budget, then (a) uses a key with a usage count
    (each use is a key index commit: with no budget left the use must be refused, not given
    uncounted), (b) kills its keystore service and (c) stops and starts the container, hoping
    for a fresh bucket. Another container (qb) commits and makes keys meanwhile."""
    d = kr_daemon
    started(d, "qa")
    started(d, "qb")
    with ks(d, "qa") as k:
        k.generate("q-count", "ec", 256, auths(["sign"], ["sha256"], uses=3))  # one index commit
        n, e = spend_budget(k, "q")
        assert n == 119 and e.errno == errno.EAGAIN and "TPM write budget is spent" in e.message, (n, e)
        wait_s = int(re.search(r"the next one in (\d+) s", e.message).group(1))
        assert 1 <= wait_s <= 30, e.message
        msg = refused(lambda: k.one_shot("q-count", params("sign", "sha256"), b"x"), "STORAGE").message
        assert "TPM write budget" in msg, msg
        assert k.read("q0") == b"b" * 16  # reads go on
    # (b) a killed service (as if a malformed request had crashed it) comes back with the bucket
    kill_service(d, "qa")
    with ks(d, "qa") as k:
        with pytest.raises(SstoreError) as e:
            k.commit([("after-kill", b"1")])
        assert e.value.errno == errno.EAGAIN, e.value
        refused(lambda: k.one_shot("q-count", params("sign", "sha256"), b"x"), "STORAGE")
    # (c) the container stopped and started: same UUID, same bucket
    d.cli("stop", "qa")
    d.cli("start", "qa")
    with ks(d, "qa") as k:
        with pytest.raises(SstoreError) as e:
            k.commit([("after-restart", b"1")])
        assert e.value.errno == errno.EAGAIN, e.value
        refused(lambda: k.generate("q-new", "ec", 256, auths(["sign"], ["sha256"])), "STORAGE")
        assert "q-new" not in k.list()
    # another container is not held to qa's budget
    with ks(d, "qb") as k:
        k.commit([("qb", b"1")])
        k.generate("qb-key", "ec", 256, auths(["sign"], ["sha256"]))
        k.one_shot("qb-key", params("sign", "sha256"), b"x")
        k.delete("qb-key")
        k.commit(deletes=["qb"])
    d.cli("stop", "qa")
    d.cli("remove", "qa")


def test_racing_file_writes_and_kills_give_no_extra_use(kr_daemon):
    """Root on the device rewrites a 4-use key's files while the container uses it: the blob of
    its first version (no use spent) written back over <alias>.key and as <alias>.key.new, the
    file replaced by a symlink to that copy and by a hard link of it, as fast as it can, and the
    keystore service killed twice during the uses. However the races fall, the key signs at most
    4 times; afterwards it is spent."""
    d = kr_daemon
    started(d, "qc")
    keydir = d.data_dir / "keystore" / d.state("qc")["uuid"]
    blob, new = keydir / "q-race.key", keydir / "q-race.key.new"
    with ks(d, "qc") as k:
        k.generate("q-race", "ec", 256, auths(["sign"], ["sha256"], uses=4))
    st = blob.stat()
    fresh = blob.read_bytes()
    spare = keydir / "spare-copy"
    spare.write_bytes(fresh)
    os.chown(spare, st.st_uid, st.st_gid)
    stop = threading.Event()
    writes = [0]

    def root_writer():
        i = 0
        while not stop.is_set():
            tmp = keydir / f".rw{i % 2}"
            try:
                kind = i % 4
                if kind == 0:  # the unspent blob, atomically over the current one
                    tmp.write_bytes(fresh)
                    os.chown(tmp, st.st_uid, st.st_gid)
                    os.rename(tmp, blob)
                elif kind == 1:  # as the put's leftover
                    tmp.write_bytes(fresh)
                    os.chown(tmp, st.st_uid, st.st_gid)
                    os.rename(tmp, new)
                elif kind == 2:  # a symlink to the unspent copy
                    tmp.unlink(missing_ok=True)
                    os.symlink(spare, tmp)
                    os.rename(tmp, blob)
                else:  # a hard link of it
                    tmp.unlink(missing_ok=True)
                    os.link(spare, tmp)
                    os.rename(tmp, blob)
                writes[0] += 1
            except OSError:
                pass
            i += 1
            time.sleep(0.002)
    signed = 0
    t = threading.Thread(target=root_writer)
    t.start()
    try:
        for attempt in range(60):
            if attempt in (15, 35):
                kill_service(d, "qc")
            try:
                with ks(d, "qc") as k:
                    k.one_shot("q-race", params("sign", "sha256"), b"x")
                signed += 1
            except KsError as e:
                assert e.code in (ERR["INVALID_KEY_BLOB"], ERR["KEY_MAX_OPS_EXCEEDED"], ERR["STORAGE"]), e
            except ConnectionError:
                pass
    finally:
        stop.set()
        t.join()
    print(f"root wrote the key's files {writes[0]} times; the key signed {signed} times")
    assert writes[0] > 100
    assert signed <= 4, f"a 4-use key signed {signed} times while root rewrote its files"
    # The current files are gone or stale: the index still names the spent blob, which no copy is.
    for p in (blob, new, spare):
        p.unlink(missing_ok=True)
    with ks(d, "qc") as k:
        refused(lambda: k.one_shot("q-race", params("sign", "sha256"), b"x"), "INVALID_KEY_BLOB")
        k.delete("q-race")


def test_hostile_socket_client(kr_daemon):
    """Root in container qd: finishes and aborts operations begun by another connection of the
    same container, sends an authorisation list with 100 000 purposes and a request whose
    repeated field claims a huge count, and a frame announcing 4 GiB: each refused, the
    service serves the next request."""
    from pb import field_bytes, field_varint
    d = kr_daemon
    started(d, "qd")
    with ks(d, "qd") as a, ks(d, "qd") as b:
        a.generate("q-op", "ec", 256, auths(["sign"], ["sha256"]))
        handle, _ = a.begin("q-op", params("sign", "sha256"))
        refused(lambda: b.update(handle, b"x"), "INVALID_HANDLE")
        refused(lambda: b.finish(handle, b"x"), "INVALID_HANDLE")
        refused(lambda: b.abort(handle), "INVALID_HANDLE")
        a.update(handle, b"x")
        assert a.finish(handle)  # still a's, unharmed
        many = b"".join(field_varint(1, 1) for _ in range(100000))
        try:
            code, _, _ = b.raw(10, encode({1: [b"q-many"], 2: [1], 3: [256], 4: [many]}))
        except ConnectionError:
            code = None  # a frame over the limit: the connection is closed
        if code == 0:
            a.delete("q-many")
        # a packed repeated field whose length prefix claims far more than the frame holds
        code, _, _ = a.raw(10, field_bytes(1, b"q-huge") + field_varint(2, 1) + b"\x22\xff\xff\xff\xff\x0f")
        assert code == ERR["MALFORMED_MESSAGE"], code
        assert "q-op" in a.list()
    import socket
    import struct
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(Path(f"/proc/{d.state('qd')['pid']}/root/run/trustme/keystore.sock")))
        s.sendall(struct.pack(">I", 0xFFFFFFFF) + b"\0" * 64)
        answer = s.recv(4096)
        assert answer == b"" or b"too large" in answer, answer
    with ks(d, "qd") as k:
        k.one_shot("q-op", params("sign", "sha256"), b"y")
        k.delete("q-op")
