# SPDX-License-Identifier: GPL-2.0-or-later
"""Review 5: the migration endpoint (docs/MIGRATION.md "Over TCP") and `trustme migrate send` as
their attackers: the network between the devices (a man in the middle, a fake target) and
whoever reaches the target's port. Each test performs one attack; docs/SECURITY.md has a
"Review 5" row for each. The two devices come from test_migrate_tcp.py's module fixture (a fresh
pair for this module)."""
import os
import secrets
import socket
import struct
import threading
import time

import pytest

from test_attestation import swtpm_installed  # noqa: F401 (fixture)
from test_guestos import env  # noqa: F401 (fixture)
from test_migrate_review import self_signer
from test_migrate_tcp import (CHUNK, ak_name, announcement, answer, challenge, closed, connect,  # noqa: F401
                              export_by_hand, field, frame, make_container, offer_over_tcp, pair, pytestmark,
                              read_varint, recv_exact, send)
from test_storage import PIN, PUK, pin_file

EMSGSIZE, EPROTO, EBUSY, ENOSPC, EINVAL, EPERM = 90, 71, 16, 28, 22, 1
ANNOUNCER = "tcp4"  # the source's container whose exported bundle announces the raw uploads here


def inbox(p):
    return p.t.data_dir / "migrate-in"


def wait_empty_inbox(p, timeout=60):
    deadline = time.time() + timeout
    while list(inbox(p).iterdir()) and time.time() < deadline:
        time.sleep(0.2)
    return list(inbox(p).iterdir())


def announcer(p):
    """The source's container exported (by hand) to an open offer of the target: its announcement
    authenticates the raw uploads of these tests (bytes that are not its bundle import nothing and
    leave the offer open)."""
    if not getattr(p, "announcer", None):
        make_container(p.s, ANNOUNCER)
        p.announcer = export_by_hand(p, ANNOUNCER)
    return p.announcer


def begin_upload(p, size, timeout=60):
    """A connection whose announced bundle the endpoint took (ready), announced by the source;
    retried while another upload (an earlier test's, being dropped) still holds the slot."""
    announcer(p)
    deadline = time.time() + timeout
    while True:
        sock = connect(p)
        sock.sendall(frame(field(940, 1) + field(951, announcement(p.s, ANNOUNCER, challenge(sock), size))))
        a = answer(sock)
        if a is not None and a.get(948) == 1:
            return sock
        sock.close()
        assert a is not None and a.get(946) == EBUSY and time.time() < deadline, a
        time.sleep(0.5)


def fields(buf):
    """Top-level fields of a protobuf message in order: [(number, wire type, raw value)]."""
    out, i = [], 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        if key & 7 == 2:
            n, i = read_varint(buf, i)
            out.append((key >> 3, 2, buf[i:i + n]))
            i += n
        else:
            v, i = read_varint(buf, i)
            out.append((key >> 3, 0, v))
    return out


def encode(flds):
    return b"".join(field(n, v) for n, _, v in flds)


def migrating(d, name):
    return d.state(name).get("migrating", False)


# ---- the endpoint, attacked by whoever reaches its port ------------------------------------------

def test_lying_sizes_are_refused_and_leave_nothing(pair):
    p = pair
    # A last chunk that overruns the announced size.
    with begin_upload(p, CHUNK + 10) as s:
        s.sendall(frame(field(944, b"a" * CHUNK)))
        s.sendall(frame(field(944, b"b" * 11)))
        a = answer(s)
        assert a is not None and a[946] == EMSGSIZE and b"exceed" in a[947], a
        assert closed(s)
    # Announce small, send more in the first chunk.
    with begin_upload(p, 10) as s:
        s.sendall(frame(field(944, b"c" * 11)))
        a = answer(s)
        assert a is not None and a[946] == EMSGSIZE, a
    # A chunk other than the last of the wrong size.
    with begin_upload(p, 3 * CHUNK) as s:
        s.sendall(frame(field(944, b"d" * 1000)))
        a = answer(s)
        assert a is not None and a[946] == EPROTO and b"other than the last" in a[947], a
    # Nothing announced, or an empty bundle; a chunk without an announcement.
    for req in (field(940, 1) + field(943, 0), field(940, 1) + field(944, b"x" * 100), field(944, b"y"),
                field(940, 1) + field(951, field(957, 0))):
        with connect(p) as s:
            s.sendall(frame(req))
            a = answer(s)
            assert a is not None and 947 in a and 948 not in a, a
    # A complete bundle of garbage: an unsigned error, nothing installed, its file gone.
    with begin_upload(p, 4096) as s:
        s.sendall(frame(field(944, secrets.token_bytes(4096))))
        a = answer(s)
        assert a is not None and 947 in a and 945 not in a, a
    assert wait_empty_inbox(p) == []
    # A frame announcing 4 GiB - 1, and one inside a chunk: refused before it is buffered.
    with begin_upload(p, 2 * CHUNK) as s:
        s.sendall(struct.pack(">I", 0xFFFFFFFF) + b"z" * 64)
        a = answer(s)
        assert a is not None and a[946] == EMSGSIZE, a
    assert wait_empty_inbox(p) == []


def test_bad_offer_requests_are_refused(pair):
    p = pair
    bad = [field(940, 1) + field(941, b"n" * 31),  # short nonce
           field(940, 1) + field(941, b"n" * 32) + field(942, 24),  # PCR out of range
           field(940, 1) + field(941, b"n" * 32) + field(942, 7) + field(942, 7),  # a PCR twice
           field(941, b"n" * 32),  # no version
           field(940, 99) + field(941, b"n" * 32)]  # another version
    for req in bad:
        with connect(p) as s:
            s.sendall(frame(req))
            a = answer(s)
            assert a is not None and 947 in a and 945 not in a, (req, a)
            assert closed(s)


def test_second_upload_is_busy_and_the_slot_comes_back(pair):
    p = pair
    first = begin_upload(p, 3 * CHUNK)
    try:
        first.sendall(frame(field(944, b"e" * CHUNK)))
        with connect(p) as s:
            a = announce_raw(p, s, 100)
            assert a is not None and a[946] == EBUSY, a
    finally:
        first.close()
    # The half bundle goes with its connection; the slot is free again.
    assert wait_empty_inbox(p) == []
    with begin_upload(p, 100) as s:
        pass
    assert wait_empty_inbox(p) == []


def test_slowloris_on_the_upload_slot_is_cut_after_30s(pair):
    """One byte every 2 s of a chunk's frame: each frame must be whole within 30 s, bytes that
    trickle in do not extend it."""
    p = pair
    s = begin_upload(p, 3 * CHUNK)
    t0 = time.time()
    cut = None
    try:
        payload = frame(field(944, b"f" * CHUNK))
        for i in range(60):
            try:
                s.sendall(payload[i:i + 1])
            except OSError:
                cut = time.time() - t0
                break
            s.settimeout(2)
            try:
                if s.recv(1) == b"":
                    cut = time.time() - t0
                    break
            except socket.timeout:
                pass
            except OSError:
                cut = time.time() - t0
                break
    finally:
        s.close()
    assert cut is not None and 25 < cut < 75, cut
    assert wait_empty_inbox(p) == []
    with begin_upload(p, 100):
        pass


def test_announced_size_is_refused_when_the_disk_cannot_take_twice_it(pair):
    p = pair
    st = os.statvfs(inbox(p))
    avail = st.f_bavail * st.f_frsize
    size = 64 << 30  # the default migrate.max_bundle_mb
    if 2 * size + (64 << 20) < avail:
        pytest.skip("this disk could take the largest bundle allowed")
    with connect(p) as s:
        a = announce_raw(p, s, min(size, max(avail, 1 << 20)))
        assert a is not None and a[946] == ENOSPC and b"free" in a[947], a
    assert wait_empty_inbox(p) == []


def announce_raw(p, sock, size):
    """The source's genuine announcement of size bytes on sock: the endpoint's answer."""
    announcer(p)
    sock.sendall(frame(field(940, 1) + field(951, announcement(p.s, ANNOUNCER, challenge(sock), size))))
    return answer(sock)


def parts(p):
    return list(inbox(p).glob("*.part")) + list(inbox(p).glob("*.bundle"))


def test_unauthenticated_upload_reserves_nothing(pair):
    """Before, a bundle_size was enough: the target reserved it at once (fallocate, up to
    migrate.max_bundle_mb or half the free space) and held it, and the one upload slot, at 1 MiB
    per 30 s. Now only the source's signed announcement takes them."""
    p = pair
    for req in (field(940, 1) + field(943, 256 << 20),  # the old announcement
                field(940, 1) + field(950, 1)):  # a challenge, then nothing: idle, evicted or cut
        with connect(p) as s:
            s.sendall(frame(req))
            a = answer(s)
            assert a is not None and parts(p) == [], a
            if 943 in parse_req(req):
                assert a[946] == EPERM and b"source authentication" in a[947], a
                assert closed(s)
    # The slot is free: the genuine source's upload is taken at once.
    with begin_upload(p, 100, timeout=5):
        pass
    assert wait_empty_inbox(p) == []


def parse_req(buf):
    return {n: v for n, _, v in fields(buf)}


def impostor_upload(genuine, chal, sign, offer_id=None):
    """A MigrateUpload as genuine's, for offer_id (default genuine's), signed for chal by sign
    (test_migrate_review.self_signer: a key and certificate of the attacker's)."""
    g = parse_req(genuine)
    offer = offer_id or g[953].decode()
    text = (f"upload\nbundle {g[954].decode()}\noffer {offer}\nuuid {g[955].decode()}\ndigest {g[956].decode()}\n"
            f"size {g[957]}\nchallenge {chal.hex()}\n").encode()
    tail = sign(text)
    sig, chain = tail[12:76], tail[80:]
    return (field(953, offer.encode()) + field(954, g[954]) + field(955, g[955]) + field(956, g[956])
            + field(957, g[957]) + field(958, sig) + field(959, chain))


def refused_announcement(p, upload=None, chal=True):
    """Send upload (default: made by upload(chal) on the connection's challenge); the answer. The
    endpoint reserved nothing and closed the connection."""
    with connect(p) as s:
        ch = challenge(s) if chal else None
        s.sendall(frame(field(940, 1) + field(951, upload(ch) if callable(upload) else upload)))
        a = answer(s)
        assert a is not None and 947 in a and 948 not in a and 945 not in a, a
        assert closed(s)
    assert parts(p) == []
    return a[947].decode()


def test_announcements_without_a_valid_source_proof_are_refused(pair, env):
    """Whoever reaches the port, or a man in the middle with a captured announcement, or root on
    another device of the PKI: none of them gets a byte reserved or the upload slot; each refusal
    names its check, and the genuine source's upload is taken right after."""
    p = pair
    announcer(p)
    size = 3 * CHUNK
    genuine = announcement(p.s, ANNOUNCER, secrets.token_bytes(32), size)  # for another challenge
    g = parse_req(genuine)
    # No challenge asked on this connection.
    why = refused_announcement(p, genuine, chal=False)
    assert "challenge first" in why, why
    # A captured announcement replayed on a new connection (another challenge).
    why = refused_announcement(p, genuine)
    assert why.startswith("source authentication") and "signature does not verify" in why, why
    # The genuine announcement for this connection with its signature altered.
    flipped = lambda ch: encode([(n, w, v[:-1] + bytes([v[-1] ^ 1]) if n == 958 else v)  # noqa: E731
                                 for n, w, v in fields(announcement(p.s, ANNOUNCER, ch, size))])
    why = refused_announcement(p, flipped)
    assert why.startswith("source authentication") and "signature does not verify" in why, why
    # The size changed after signing (the signature covers it).
    bigger = lambda ch: encode([(n, w, v + 1 if n == 957 else v)  # noqa: E731
                                for n, w, v in fields(announcement(p.s, ANNOUNCER, ch, size))])
    why = refused_announcement(p, bigger)
    assert "signature does not verify" in why, why
    # A key and CA of the attacker's own.
    why = refused_announcement(p, lambda ch: impostor_upload(genuine, ch, self_signer()))
    assert why.startswith("source authentication") and "certificate chain" in why, why
    # Root on another device of the PKI (an AK certificate from the same Device CA) for the
    # source's offer: the offer's nonce names the source's AK.
    device_ca = (env.cert("device-ca"), env.cert("device-ca").with_suffix(".key"), env.passfile.read_text().strip())
    other = self_signer(device_ca, cn="device-x")
    why = refused_announcement(p, lambda ch: impostor_upload(genuine, ch, other))
    assert why.startswith("source binding") and g[953].decode() in why and "another source device" in why, why
    # The same device for an offer the target never made.
    why = refused_announcement(p, lambda ch: impostor_upload(genuine, ch, other, offer_id=secrets.token_hex(16)))
    assert why.startswith("unknown offer"), why
    # Malformed: no signature.
    why = refused_announcement(p, lambda ch: encode([f for f in fields(announcement(p.s, ANNOUNCER, ch, size))
                                                     if f[0] != 958]))
    assert "malformed" in why, why
    # The genuine source, right after: ready at once (the slot was never taken).
    with begin_upload(p, size, timeout=5):
        pass
    assert wait_empty_inbox(p) == []


# ---- a fake target or a man in the middle, attacking the source's `send` -------------------------

class FakeTarget:
    """A TCP server answering each connection with handler(sock) in a thread."""

    def __init__(self, handler):
        self.handler = handler
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.5)
        self.port = self.lsock.getsockname()[1]
        self.stop = threading.Event()
        self.threads = []
        self.th = threading.Thread(target=self.serve, daemon=True)
        self.th.start()

    def serve(self):
        while not self.stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except (socket.timeout, OSError):
                continue
            c.settimeout(120)
            t = threading.Thread(target=self.run, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def run(self, c):
        try:
            self.handler(c)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop.set()
        self.th.join()
        self.lsock.close()
        for t in self.threads:
            t.join(timeout=130)


def read_frame(sock):
    hdr = recv_exact(sock, 4)
    if hdr is None:
        return None
    return recv_exact(sock, struct.unpack(">I", hdr)[0])


def proxy(p, transform):
    """A man in the middle that forwards to the real endpoint and passes each of its answers
    through transform(response bytes) -> response bytes."""
    def handle(c):
        with socket.create_connection(("127.0.0.1", p.port), timeout=300) as up:
            def pump():
                try:
                    while True:
                        data = c.recv(65536)
                        if not data:
                            break
                        up.sendall(data)
                except OSError:
                    pass
                try:
                    up.shutdown(socket.SHUT_WR)  # the endpoint closes at once, not after 30 s
                except OSError:
                    pass
            t = threading.Thread(target=pump, daemon=True)
            t.start()
            while True:
                resp = read_frame(up)
                if resp is None:
                    break
                c.sendall(frame(transform(resp)))
            t.join(timeout=130)
    return FakeTarget(handle)


def with_signed_answer(resp, change):
    """resp with its MigrateMessage (945) changed by change(fields) when it is a receipt."""
    top = fields(resp)
    out = []
    for n, w, v in top:
        if n == 945:
            m = fields(v)
            if any(f[0] == 608 for f in m) and any(f[0] == 606 for f in m):
                v = encode(change(m))
        out.append((n, w, v))
    return encode(out)


def send_via(p, port, name, *extra):
    """send through port (a fake target or a man in the middle); without --expect-ak the source
    lets any trusted device answer (--any-trusted-target), as the attacks here need."""
    bundle = p.s.base / f"{name}.bundle"
    named = "--expect-ak" in extra or "--resend" in extra
    return bundle, p.s.cli("migrate", "send", name, "--to", f"127.0.0.1:{port}", "--bundle", bundle,
                           "--pin-file", pin_file(p.s, PIN, PUK), *p.trust, *extra,
                           *(() if named else ("--any-trusted-target",)), check=False, timeout=600)


def test_fake_target_lies_in_its_answers_nothing_is_locked(pair):
    """A fake target: a frame announcing 4 GiB, an error with terminal escapes, an answer that
    is no offer, and a genuine offer captured earlier (over another nonce) replayed."""
    p = pair
    make_container(p.s, "tcp3")
    with connect(p) as s:
        captured = offer_over_tcp(p, s)[945]
    answers = [struct.pack(">I", 0xFFFFFFFF) + b"x" * 16,
               frame(field(946, 1) + field(947, b"\x1b]0;owned\x07\x1b[2Jrefused")),
               frame(field(948, 1)),
               frame(field(945, captured))]
    for raw in answers:
        def handle(c, raw=raw):
            read_frame(c)
            c.sendall(raw)
        fake = FakeTarget(handle)
        try:
            _, r = send_via(p, fake.port, "tcp3")
        finally:
            fake.close()
        assert r.returncode != 0, r.stdout
        assert "\x1b" not in r.stdout + r.stderr
        assert not migrating(p.s, "tcp3"), r.stderr
    assert "nonce" in r.stderr.lower() or "refused" in r.stderr, r.stderr
    # The genuine endpoint still takes it.
    _, r = send(p, "tcp3")
    assert "committed" in r.stdout, r.stdout + r.stderr


def test_mitm_forged_receipt_and_refusal_are_not_committed(pair):
    """A man in the middle passes the offer and the bundle and changes the target's answer: the
    receipt's signature flipped, then the receipt turned into a refusal. Neither commits nor
    aborts; the container stays locked, and the genuine receipt, sent again, commits."""
    p = pair
    make_container(p.s, "tcp1")

    def flip(m):
        return [(n, w, v[:-1] + bytes([v[-1] ^ 1]) if n == 608 else v) for n, w, v in m]

    mitm = proxy(p, lambda resp: with_signed_answer(resp, flip))
    try:
        bundle, r = send_via(p, mitm.port, "tcp1")
    finally:
        mitm.close()
    assert r.returncode != 0 and "committed" not in r.stdout, r.stdout + r.stderr
    assert migrating(p.s, "tcp1")
    answer_file = f"{bundle}.answer"
    r = p.s.cli("migrate", "commit", "tcp1", "--receipt", answer_file, check=False)
    assert r.returncode != 0 and migrating(p.s, "tcp1"), r.stdout + r.stderr
    # The receipt (sent again by the target) turned into a refusal: the abort refuses it.
    mitm = proxy(p, lambda resp: with_signed_answer(resp, lambda m: m + [(609, 2, b"expired")]))
    try:
        _, r = send_via(p, mitm.port, "tcp1", "--resend")
    finally:
        mitm.close()
    assert r.returncode != 0 and "refused" in r.stderr, r.stdout + r.stderr
    r = p.s.cli("migrate", "abort", "tcp1", "--refusal", answer_file, check=False)
    assert r.returncode != 0 and migrating(p.s, "tcp1"), r.stdout + r.stderr
    r = p.s.cli("start", "--pin-file", pin_file(p.s, PIN), "tcp1", check=False)
    assert r.returncode != 0
    # The genuine answer commits.
    r = p.s.cli("migrate", "send", "tcp1", "--to", p.to, "--bundle", bundle, "--resend", timeout=600)
    assert "committed" in r.stdout, r.stdout + r.stderr
    # A captured bundle replayed to the target afterwards: the network has no announcement of the
    # source for it (a captured one answers another challenge); on a connection another bundle's
    # announcement opened it is not the bundle announced. Nothing installed.
    with begin_upload(p, bundle.stat().st_size) as s:
        data = bundle.read_bytes()
        for i in range(0, len(data), CHUNK):
            s.sendall(frame(field(944, data[i:i + CHUNK])))
        a = answer(s)
        assert a is not None and 945 not in a and b"not the one its source announced" in a[947], a
    assert [c["name"] for c in p.t.containers()].count("tcp1") == 1


def test_mitm_redirect_to_another_device_is_refused_with_expect_ak(pair):
    """send checked that the offer came from some device of the PKI running approved software, not
    which one: a man in the middle could hand on another such device's offer and the container
    went there. --expect-ak NAME pins the target (as trustme-verify's). Here the man in the
    middle passes the genuine target's offer while the source expects another device (its own
    AK, a device of the same PKI): refused before anything is locked; with the target's name it
    goes through."""
    p = pair
    make_container(p.s, "tcp2")
    mitm = proxy(p, lambda resp: resp)
    try:
        _, r = send_via(p, mitm.port, "tcp2", "--expect-ak", ak_name(p.s))
        assert r.returncode != 0 and "expected device" in r.stderr, r.stdout + r.stderr
        assert not migrating(p.s, "tcp2")
        # A malformed name is refused before any offer is asked for.
        _, r = send_via(p, mitm.port, "tcp2", "--expect-ak", "000b")
        assert r.returncode == 2 and "--expect-ak" in r.stderr, r.stdout + r.stderr
        _, r = send_via(p, mitm.port, "tcp2", "--expect-ak", ak_name(p.t))
        assert "committed" in r.stdout, r.stdout + r.stderr
    finally:
        mitm.close()
    assert any(c["name"] == "tcp2" for c in p.t.containers())


def test_a_used_offer_is_answered_without_an_upload(pair, env):
    """The announcer's bundle imported (its offer used, the receipt kept from the source as if
    lost): the source announcing it again (a --resend) gets the receipt again at once, without the
    bytes and without a reservation; another device of the PKI gets `source binding` for it."""
    p = pair
    bundle = announcer(p)
    data = bundle.read_bytes()
    with begin_upload(p, len(data)) as s:
        for i in range(0, len(data), CHUNK):
            s.sendall(frame(field(944, data[i:i + CHUNK])))
        a = answer(s)
    assert a is not None and 945 in a and 609 not in parse_req(a[945]), a
    receipt = p.s.base / f"{ANNOUNCER}.answer"
    receipt.write_bytes(a[945])
    with connect(p) as s:
        a = announce_raw(p, s, len(data))
        assert parts(p) == []
    assert a is not None and 945 in a and 948 not in a, a
    again = parse_req(a[945])
    assert 608 in again and 609 not in again and again[606] == parse_req(receipt.read_bytes())[606], again
    device_ca = (env.cert("device-ca"), env.cert("device-ca").with_suffix(".key"), env.passfile.read_text().strip())
    genuine = announcement(p.s, ANNOUNCER, secrets.token_bytes(32), len(data))
    why = refused_announcement(p, lambda ch: impostor_upload(genuine, ch, self_signer(device_ca, cn="device-x")))
    assert why.startswith("source binding"), why
    p.s.cli("migrate", "commit", ANNOUNCER, "--receipt", receipt)
    assert any(c["name"] == ANNOUNCER for c in p.t.containers())


def test_paced_offers_cannot_fill_the_anchor_table(pair):
    """Each offer's entry stays in tpmd's anchor table until 7 days after it expired (a late import
    still gets its signed refusal). At one offer a minute a paced peer put 10 000 entries there in
    a week, more than the table's 4096: in under 3 days every anchored state of the device (starts,
    tokens, exports) failed with ENOSPC. Now one per 15 minutes after the burst: at most 684. Last
    in this module: it uses up the burst."""
    p = pair
    last = None
    for _ in range(12):
        with connect(p) as s:
            last = offer_over_tcp(p, s)
        if 947 in last:
            break
        time.sleep(0.2)
    assert last is not None and b"too many offers" in last[947], last
    wait = int(last[947].split(b"try again in ")[1].split(b" s")[0])
    # The next one in up to 15 minutes since the daemon's start (this module runs a few): not
    # within the minute as before.
    assert 120 < wait <= 15 * 60 + 1, last[947]
