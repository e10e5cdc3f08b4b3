# SPDX-License-Identifier: GPL-2.0-or-later
"""Review of the keystore's second part (docs/KEYSTORE.md, docs/SECURITY.md "Attacks tried"):
attacks by root in a container on wrapped keys and on key attestation, each run for real against
the keystore service and trustmed."""
import ctypes
import os
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

from conftest import wait_for
from ksclient import ERR, Keystore, KsError, auths, encode, params, wrap_key
from test_device import pki  # noqa: F401  (the module-scoped PKI fixture)
from test_keystore import service_of


@pytest.fixture(scope="module")
def rk_daemon(test_root, rootfs):
    from conftest import Daemon, TEST_PREFIX
    base = Path(tempfile.mkdtemp(prefix="ksr-", dir=test_root))
    d = Daemon(base, f"{TEST_PREFIX}-ksreview", rootfs)
    try:
        d.start()
        wait_for(lambda: "device storage secret unsealed" in d.log(), timeout=60, what="the device secret")
        d.create("ra", keystore=True)
        d.cli("start", "ra")
        yield d
    finally:
        d.teardown()


def ks(d, name):
    return Keystore(Path(f"/proc/{d.state(name)['pid']}/root/run/trustme/keystore.sock"))


def refused(fn, code):
    with pytest.raises(KsError) as e:
        fn()
    assert e.value.code == ERR[code], f"{e.value.code}: {e.value.message} (expected {code})"
    return e.value


def test_wrapping_key_that_also_decrypts_or_was_imported_is_refused(rk_daemon):
    """Root in a container makes a 'wrapping key' it can also use to decrypt (purposes wrap and
    decrypt), or imports one whose private key it knows, and shows it (with its attestation) to a
    server: the server's transport key, then the wrapped key, would be the container's in the
    clear. Both are refused; a wrapping key has the purpose wrap alone and is generated inside."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    d = rk_daemon
    secret = os.urandom(32)
    with ks(d, "ra") as k:
        try:
            k.generate("wd", "rsa", 2048, auths(["wrap", "decrypt"], ["sha256"], ["oaep"]))
        except KsError as e:
            assert e.code == ERR["INCOMPATIBLE_PURPOSE"], e
        else:
            wrapped = wrap_key(k.public_key("wd"), "aes", secret, auths(["encrypt"], modes=["gcm"], min_mac=128))
            transport, _ = k.one_shot("wd", params("decrypt", "sha256", "oaep"), wrapped[1][0])
            got = AESGCM(transport).decrypt(wrapped[2][0], wrapped[4][0], wrapped[3][0])
            k.delete("wd")
            pytest.fail(f"a wrap+decrypt key was made; the server's wrapped key came out in the clear: "
                        f"{got == secret}")
        known = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = known.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        try:
            k.import_key("wi", "rsa", der, auths(["wrap"], ["sha256"], ["oaep"]))
        except KsError as e:
            assert e.code == ERR["INCOMPATIBLE_PURPOSE"], e
        else:
            k.delete("wi")
            pytest.fail("a wrapping key whose private key the container knows was imported")
        # the honest wrapping key still works
        k.generate("w", "rsa", 2048, auths(["wrap"], ["sha256"], ["oaep"]))
        wrapped = wrap_key(k.public_key("w"), "aes", secret, auths(["encrypt"], modes=["gcm"], min_mac=128))
        k.import_wrapped("from-server", "w", encode(wrapped))
        ct, nonce = k.one_shot("from-server", params("encrypt", mode="gcm"), b"x")
        assert AESGCM(secret).decrypt(nonce, ct, None) == b"x"
        for a in ("w", "from-server"):
            k.delete(a)


def test_wrapped_key_replayed(rk_daemon):
    """The container keeps a server's wrapped key and imports it again under another alias (to get
    a second copy past a usage limit, or back after deleting it): with a wrapping key limited to
    one use (which the server sees in its attestation) the replay is refused."""
    d = rk_daemon
    secret = os.urandom(32)
    desc = auths(["encrypt"], modes=["gcm"], min_mac=128, uses=1)
    with ks(d, "ra") as k:
        k.generate("w1", "rsa", 2048, auths(["wrap"], ["sha256"], ["oaep"], uses=1))
        wrapped = encode(wrap_key(k.public_key("w1"), "aes", secret, desc))
        k.import_wrapped("once", "w1", wrapped)
        refused(lambda: k.import_wrapped("twice", "w1", wrapped), "KEY_MAX_OPS_EXCEEDED")
        k.delete("once")
        refused(lambda: k.import_wrapped("once", "w1", wrapped), "KEY_MAX_OPS_EXCEEDED")
        assert "twice" not in k.list() and "once" not in k.list()
        k.delete("w1")


def _link_of(pid):
    """The keystore service's fd 3 (its link to trustmed), as code running in it would hold it."""
    pidfd = os.pidfd_open(pid)
    fd = ctypes.CDLL(None, use_errno=True).syscall(438, pidfd, 3, 0)  # pidfd_getfd
    os.close(pidfd)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    s = socket.socket(fileno=fd)
    s.settimeout(20)
    return s


def _ask_certificate(link, spki):
    """Asks for a container certificate over a taken-over link. The fresh service may still have
    its own start-up request in flight: its answer can come first (another id), and trustmed
    takes one request at a time (EBUSY), so skip other ids and ask again while busy."""
    from pb import field_bytes, field_varint, frame, parse
    deadline, buf = time.monotonic() + 20, b""
    while True:
        link.send(frame(field_varint(1, 1) + field_varint(2, 99) + field_bytes(435, field_bytes(430, spki))))
        while True:
            while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
                buf += link.recv(262144)
            n = 4 + int.from_bytes(buf[:4], "big")
            resp, buf = parse(buf[4:n]), buf[n:]
            if resp.get(2, [None])[0] == 99:
                break
        busy = 10 in resp and b"one request at a time" in parse(resp[10][0]).get(2, [b""])[0]
        if not busy or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def test_attestation_requests_do_not_flood_the_audit_log(rk_daemon, pki, tmp_path):
    """Root in the container asks for key attestations in a loop before the device is enrolled:
    each one made trustmed ask tpmd for a container certificate and audit
    `keystore.attestation_key ok` ("certified by the AK") although tpmd refused. Now a refusal is
    audited as fail, at most once a minute; a service whose key is certified gets no second
    certificate (code in a taken-over keystore could otherwise keep the TPM signing)."""
    import subprocess
    from pb import field_bytes, field_varint, frame, parse
    from test_device import provision
    from tools import tool
    d = rk_daemon
    with ks(d, "ra") as k:
        k.generate("att", "ec", 256, auths(["sign"], ["sha256"]))
        for _ in range(20):
            refused(lambda: k.attest("att", b"c"), "ATTESTATION_UNAVAILABLE")
    recs = [e for e in d.audit_events() if e["event"] == "keystore.attestation_key"]
    assert len(recs) <= 1 and all(e["result"] == "fail" for e in recs), recs
    provision(d, pki, tmp_path)
    with ks(d, "ra") as k:
        assert len(k.attest("att", b"c")) >= 3
        assert len(k.attest("att", b"d")) >= 3  # the service's certificate is reused
    recs = [e for e in d.audit_events() if e["event"] == "keystore.attestation_key"]
    assert [e["result"] for e in recs].count("ok") == 1, recs
    # code in the keystore process asks for a second certificate on its link
    key = subprocess.run([tool("openssl"), "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                         capture_output=True, check=True).stdout
    spki = subprocess.run([tool("openssl"), "pkey", "-pubout", "-outform", "DER"], input=key,
                          capture_output=True, check=True).stdout
    pid = service_of(d, "ra")
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        link = _link_of(pid)
        for rid in (71, 72):
            link.send(frame(field_varint(1, 1) + field_varint(2, rid) + field_bytes(435, field_bytes(430, spki))))
            resp = parse(link.recv(262144)[4:])
            assert resp[2][0] == rid and 10 in resp and 436 not in resp, resp
            assert parse(resp[10][0])[1][0] == 1, resp  # EPERM
        link.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    with ks(d, "ra") as k:  # the service goes on
        assert len(k.attest("att", b"e")) >= 3


def test_secure_store_cannot_fill_the_data_dir(rk_daemon):
    """Root in the container commits 256 KiB objects in a loop: the store's files are in the data
    dir shared with every container, the audit log and tpmd's anchor table (1024 objects of 256
    KiB: 256 MiB). Each store is held to 16 MiB now (EDQUOT); after deleting, commits work again.
    Ids with '/' and '..' are names, never paths: the files stay in the store's directory."""
    import errno
    from ksclient import SstoreError
    d = rk_daemon
    store = d.data_dir / "keystore" / d.state("ra")["uuid"] / "sstore"
    blob = os.urandom(256 * 1024)
    written = []
    with ks(d, "ra") as k:
        k.commit([("../../../../escape", b"x"), ("a/b", b"y")])
        assert k.read("../../../../escape") == b"x" and k.read("a/b") == b"y"
        assert not list(d.data_dir.rglob("escape")) and all(p.parent in (store, store / "obj")
                                                               for p in store.rglob("*"))
        with pytest.raises(SstoreError) as e:
            for i in range(80):  # 20 MiB
                k.commit([(f"big{i}", blob)])
                written.append(f"big{i}")
        assert e.value.errno == errno.EDQUOT, e.value
        size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
        assert size <= 16 * 1024 * 1024 and len(written) >= 60, (size, len(written))
        assert k.read("a/b") == b"y"  # the store goes on
        k.commit(deletes=written[:8])
        k.commit([("big-again", blob)])
        k.commit(deletes=written[8:] + ["big-again", "a/b", "../../../../escape"])


def test_taken_over_keystore_link_flood_does_not_fill_trustmeds_log(rk_daemon):
    """Code in the container's keystore process writes garbage and refused requests on its link to
    trustmed as fast as it can (and reads no answer): each one was a line in trustmed's log (one
    container could grow it without bound); now at most a few lines per 10 s, trustmed keeps
    serving its clients, and the service works after."""
    import time
    from pb import field_bytes, field_varint, frame
    d = rk_daemon
    pid = service_of(d, "ra")
    before = len(d.log())
    os.kill(pid, signal.SIGSTOP)
    try:
        link = _link_of(pid)
        link.setblocking(False)
        garbage = frame(b"\xff" * 24)
        refused_req = frame(field_varint(1, 1) + field_varint(2, 5) + field_bytes(18, b""))  # GetDeviceInfo
        sent = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sent < 20000:
            try:
                link.send(garbage if sent % 2 else refused_req)
                sent += 1
            except BlockingIOError:
                time.sleep(0.001)
        t0 = time.monotonic()
        d.cli("list")
        list_s = time.monotonic() - t0
        time.sleep(1)
        link.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    grown = len(d.log()) - before
    print(f"{sent} packets on the link; trustmed's log grew {grown} bytes; `list` took {list_s:.3f} s")
    assert sent >= 1000
    assert grown < 20000, f"{sent} packets made {grown} bytes of trustmed's log"
    assert list_s < 5
    with ks(d, "ra") as k:
        k.commit([("after-flood", b"1")])
        assert k.read("after-flood") == b"1"
        k.commit(deletes=["after-flood"])


def test_forged_key_description_cannot_write_to_the_verifiers_terminal(rk_daemon, pki, tmp_path):
    """Code in the container's keystore process holds the container attestation key and so signs
    any key description: it names its key with terminal escapes (OSC 52 clipboard write, a title)
    and a quote. trustme-verify printed the alias raw to the verifier's terminal (and its --json
    lost the key); aliases are [A-Za-z0-9._-] by the keystore's rules, anything else is shown as
    '?' now. A description claiming a TPM-enforced key (none exist) was trusted; it is refused."""
    import base64
    import json
    import subprocess
    from tools import tool
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from conftest import BUILD
    from pb import encode, parse
    from test_device import provision
    from test_keystore import json_device_enrolled, keystore_pids
    d = rk_daemon
    if not json_device_enrolled(d):
        provision(d, pki, tmp_path)
    # a fresh keystore process (its attestation key not yet certified), taken over
    old = service_of(d, "ra")
    os.kill(old, signal.SIGKILL)
    uuid_dir = (d.data_dir / "keystore" / d.state("ra")["uuid"]).stat().st_ino

    def fresh():
        for p in keystore_pids(d):
            try:
                if p != old and os.stat(f"/proc/{p}/root/state").st_ino == uuid_dir:
                    return p
            except OSError:
                pass
        return None
    pid = wait_for(fresh, timeout=20, what="ra's keystore restarted")
    old = pid
    cont_key = ec.generate_private_key(ec.SECP256R1())
    spki = cont_key.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    os.kill(pid, signal.SIGSTOP)
    try:
        link = _link_of(pid)
        resp = _ask_certificate(link, spki)
        link.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert 436 in resp, resp
    reply = parse(resp[436][0])
    cont_der = reply[433][0]
    ident = _ext_value(cont_der, "2.25.20704862868584675038316440976047001675")
    alias = '\x1b]52;c;cHduZWQ=\x07\x1b]0;owned\x07k", "x": "'
    chars = encode({1: [alias.encode()], 2: [1], 3: [256], 4: [encode({1: [1]})], 5: [0]})
    desc = encode({1: [1], 2: [b"c"], 3: [0], 4: [chars], 5: [ident]})
    # the key attestation, signed with the container attestation key (cryptography cannot read the
    # container certificate's OIDs: openssl makes it)
    pem = serialization.Encoding.PEM
    (tmp_path / "cont.key").write_bytes(cont_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
    (tmp_path / "cont.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(cont_der) +
                                        b"-----END CERTIFICATE-----\n")
    (tmp_path / "ext.cnf").write_text("basicConstraints=critical,CA:FALSE\n"
                                      f"2.25.39619141288605083686793323509539602413=DER:{desc.hex()}\n")
    openssl = tool("openssl")
    subprocess.run([openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", tmp_path / "leaf.key", "-subj", "/CN=k", "-out", tmp_path / "leaf.csr"],
                   check=True, capture_output=True)
    subprocess.run([openssl, "x509", "-req", "-in", tmp_path / "leaf.csr", "-CA", tmp_path / "cont.pem", "-CAkey",
                    tmp_path / "cont.key", "-CAcreateserial", "-days", "1", "-extfile", tmp_path / "ext.cnf",
                    "-out", tmp_path / "leaf.pem"], check=True, capture_output=True)
    chain = reply[434][0].decode()
    path = tmp_path / "forged.pem"
    path.write_text((tmp_path / "leaf.pem").read_text() + (tmp_path / "cont.pem").read_text() + chain)
    args = [str(BUILD / "src/verify/trustme-verify"), "--key-attestation", str(path), "--ak-anchor",
            str(pki["dir"] / "customer/general-root-ca.pem"), "--device-ca",
            str(pki["dir"] / "customer/device-ca.pem"), "--no-crl", "--any-challenge"]
    text = subprocess.run(args, capture_output=True)
    assert text.returncode == 0, text.stdout + text.stderr  # the chain is genuine: the process holds the key
    assert b"\x1b" not in text.stdout and b"\x07" not in text.stdout, text.stdout
    js = subprocess.run(args + ["--json"], capture_output=True, text=True)
    rep = json.loads(js.stdout)
    assert rep["key"] is not None and "\x1b" not in rep["key"]["alias"], rep
    assert rep["container"]["uuid"] == d.state("ra")["uuid"]
    # the same process claims a TPM-enforced key (no trustme keystore makes one yet)
    chars = encode({1: [b"k"], 2: [1], 3: [256], 4: [encode({1: [1]})], 5: [1]})
    desc = encode({1: [1], 2: [b"c"], 3: [1], 4: [chars], 5: [ident]})
    (tmp_path / "ext.cnf").write_text("basicConstraints=critical,CA:FALSE\n"
                                      f"2.25.39619141288605083686793323509539602413=DER:{desc.hex()}\n")
    subprocess.run([openssl, "x509", "-req", "-in", tmp_path / "leaf.csr", "-CA", tmp_path / "cont.pem", "-CAkey",
                    tmp_path / "cont.key", "-CAcreateserial", "-days", "1", "-extfile", tmp_path / "ext.cnf",
                    "-out", tmp_path / "leaf.pem"], check=True, capture_output=True)
    path.write_text((tmp_path / "leaf.pem").read_text() + (tmp_path / "cont.pem").read_text() + chain)
    js = subprocess.run(args + ["--json"], capture_output=True, text=True)
    rep = json.loads(js.stdout)
    assert js.returncode == 1 and "security level" in rep["reason"], rep
    # the taken-over process used up its one certificate: a fresh one for the tests after (it
    # may have ended already: trustmed restarts a keystore whose link misbehaved)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_for(lambda: fresh() not in (None, pid), timeout=20, what="ra's keystore restarted")


def _der_len(b, i):
    n = b[i]
    if n < 0x80:
        return n, i + 1
    k = n & 0x7f
    return int.from_bytes(b[i + 1:i + 1 + k], "big"), i + 1 + k


def _ext_value(der, oid):
    """The extnValue bytes of the extension oid in a DER certificate."""
    arcs = [int(a) for a in oid.split(".")]
    body = bytes([arcs[0] * 40 + arcs[1]])
    for a in arcs[2:]:
        enc = [a & 0x7f]
        a >>= 7
        while a:
            enc.append(0x80 | (a & 0x7f))
            a >>= 7
        body += bytes(reversed(enc))
    i = der.index(bytes([6, len(body)]) + body) + 2 + len(body)
    if der[i] == 1:  # critical
        i += 3
    assert der[i] == 4
    n, i = _der_len(der, i + 1)
    return der[i:i + n]


def test_malformed_wrapped_keys_are_refused_and_the_service_goes_on(rk_daemon):
    """importWrappedKey with broken protobuf, lengths and fields (IV of 0 and 64 bytes, an empty or
    oversized ciphertext, a transport key of 1 and 4096 bytes, a description without purposes, of
    another algorithm, garbage): each one an error, no key made, the service serves on."""
    d = rk_daemon
    secret = os.urandom(32)
    good_desc = auths(["encrypt"], modes=["gcm"], min_mac=128)
    with ks(d, "ra") as k:
        k.generate("wm", "rsa", 2048, auths(["wrap"], ["sha256"], ["oaep"]))
        w = wrap_key(k.public_key("wm"), "aes", secret, good_desc)
        variants = [b"", b"\xff" * 40, encode({1: [b"\x00"]}), encode({**w, 2: [b""]}), encode({**w, 2: [b"\x00" * 64]}),
                    encode({**w, 4: [b""]}), encode({**w, 4: [b"\x00" * 16]}), encode({**w, 4: [b"\x00" * 300000]}),
                    encode({**w, 1: [b"\x01"]}), encode({**w, 1: [os.urandom(4096)]}),
                    encode({**w, 3: [b"\xff\xff"]}), encode({k2: v for k2, v in w.items() if k2 != 3})]
        for v in variants:
            with pytest.raises(KsError):
                k.import_wrapped("bad", "wm", v)
        # an authentic wrapped key whose description has no purposes, or names another algorithm
        for desc_alg, desc in (("aes", auths()), ("ec", good_desc), ("hmac", good_desc)):
            with pytest.raises(KsError):
                k.import_wrapped("bad", "wm", encode(wrap_key(k.public_key("wm"), desc_alg, secret, desc)))
        assert "bad" not in k.list()
        k.import_wrapped("good", "wm", encode(w))
        for a in ("wm", "good"):
            k.delete(a)


def test_commit_flood_of_one_container_delays_another_boundedly(rk_daemon):
    """Root in container rf commits in a loop (each commit one anchor update: an NV write in the
    TPM, through tpmd's one queue shared by every container); rb commits meanwhile. rb's commits
    wait behind rf's (one at a time per container), but they go through; rf's flood ends at its
    TPM write budget (docs/KEYSTORE.md "Commit budget"): exactly 120 commits, then EAGAIN with
    the reason, audited once; a key generation (a key index commit) is refused the same way; rb
    is not affected. The figures are printed."""
    import errno
    import statistics
    import threading
    import time
    from ksclient import SstoreError
    d = rk_daemon
    for name in ("rb", "rf"):
        if name not in [c["name"] for c in d.containers()]:
            d.create(name, keystore=True)
            d.cli("start", name)

    def timed(k, n, tag):
        out = []
        for i in range(n):
            t0 = time.monotonic()
            k.commit([(f"{tag}{i % 4}", b"v" * 64)])
            out.append(time.monotonic() - t0)
        return out
    with ks(d, "rb") as kb:
        alone = timed(kb, 10, "b")
    stop = threading.Event()
    flood = [0, None]

    def flooder():
        with ks(d, "rf") as kf:
            while not stop.is_set():
                try:
                    kf.commit([(f"f{flood[0] % 4}", b"x" * 64)])
                except SstoreError as e:
                    flood[1] = e
                    return
                flood[0] += 1
    t0 = time.monotonic()
    t = threading.Thread(target=flooder)
    t.start()
    try:
        time.sleep(1)
        with ks(d, "rb") as kb:
            during = timed(kb, 10, "b")
    finally:
        t.join(timeout=120)
        stop.set()
    print(f"rb commit alone: median {statistics.median(alone) * 1000:.1f} ms, max {max(alone) * 1000:.1f} ms; "
          f"during rf's flood ({flood[0]} commits in {time.monotonic() - t0:.1f} s): median "
          f"{statistics.median(during) * 1000:.1f} ms, max {max(during) * 1000:.1f} ms")
    assert max(during) < 10, during
    e = flood[1]
    assert e is not None and e.errno == errno.EAGAIN and "TPM write budget is spent" in e.message, e
    assert flood[0] == 120, flood  # every anchor update of rf counts (no key index commit before)
    with ks(d, "rf") as kf:
        with pytest.raises(KsError) as ke:
            kf.generate("rf-key", "ec", 256, auths(["sign"], ["sha256"]))
        assert ke.value.code == ERR["STORAGE"] and "TPM write budget" in ke.value.message, ke.value
        assert kf.read("f0") == b"x" * 64  # reads cost no NV write: still served
    events = [e for e in d.audit_events() if e["event"] == "keystore.commit_budget"]
    assert len(events) == 1 and events[0]["result"] == "fail", events
    with ks(d, "rb") as kb:
        kb.commit(deletes=[f"b{i}" for i in range(4)])
    d.cli("stop", "rb")
    d.cli("stop", "rf")
    d.cli("remove", "rf")


def test_key_attestation_of_a_revoked_device(rk_daemon, pki, tmp_path):
    """The network replays a genuine key attestation of a device whose AK certificate the Device CA
    has since revoked: with the CRL it is refused (before the revocation the same file verifies).
    Kept last in this file: it revokes the module's device."""
    import base64
    import json
    import subprocess
    from conftest import BUILD
    from test_device import PKI_TOOL, provision
    from test_keystore import json_device_enrolled
    d = rk_daemon
    if not json_device_enrolled(d):
        provision(d, pki, tmp_path)
    with ks(d, "ra") as k:
        k.generate("rv", "ec", 256, auths(["sign"], ["sha256"]))
        certs = k.attest("rv", b"n")
        k.delete("rv")
    path = tmp_path / "att.pem"
    path.write_text("".join("-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(c).decode() +
                            "-----END CERTIFICATE-----\n" for c in certs))
    args = [str(BUILD / "src/verify/trustme-verify"), "--key-attestation", str(path), "--ak-anchor",
            str(pki["dir"] / "customer/general-root-ca.pem"), "--device-ca",
            str(pki["dir"] / "customer/device-ca.pem"), "--crl", str(pki["dir"] / "crls.pem"), "--json",
            "--any-challenge"]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    chain = json.loads(d.cli("device", "info", "--json").stdout)["cert_chain_pem"]
    leaf = tmp_path / "ak.pem"
    leaf.write_text(chain.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
    subprocess.run([str(PKI_TOOL), "revoke", "--pki", str(pki["dir"]), str(leaf), "--reason", "keyCompromise",
                    "--passphrase-file", str(pki["pass"])], check=True, capture_output=True)
    r = subprocess.run(args, capture_output=True, text=True)
    rep = json.loads(r.stdout)
    assert r.returncode == 1 and "revoked" in rep["reason"], rep
