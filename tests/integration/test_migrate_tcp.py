# SPDX-License-Identifier: GPL-2.0-or-later
"""Migration over the target's TCP endpoint (docs/MIGRATION.md "Over TCP"): device.json
migrate.address on the target, `trustme migrate send` on the source. Two devices, each its own
trustmed, tpmd and embedded swtpm, as in test_migrate.py. The round trip (the data on the target,
the source's copy erased), a connection dropped mid-bundle (nothing imported, the source locked
and the same bundle sent again), oversized and malformed frames refused while the endpoint serves
others, a paced flood of idle connections that does not keep a migration out, and the endpoint
off by default."""
import json
import os
import secrets
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import conftest
from conftest import TEST_PREFIX, Daemon
from test_attestation import make_refs, pki_of, swtpm_installed  # noqa: F401 (fixture)
from test_device import TPMD, measurements, provision, secret_ok
from test_guestos import env  # noqa: F401 (fixture)
from test_guestos import GUESTOS_TOOL, PKI_TOOL, install, start_with_device
from test_storage import KDF, MARKER, PIN, PUK, SECRET_NAME, pin_file

pytestmark = pytest.mark.skipif(not all(p.exists() for p in (TPMD, PKI_TOOL, GUESTOS_TOOL)),
                                reason="trustme-tpmd, trustme-pki or trustme-guestos is missing")

NAMES = ("tcp1", "tcp2", "tcp3", "tcp4")
CHUNK = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def container_config(d, name):
    cfg = {"name": name, "guestos": {"name": "bb"}, "token": {"type": "soft"}, "data_size_mb": 16}
    path = d.configs / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture(scope="module")
def pair(env, test_root, rootfs):
    s = Daemon(Path(tempfile.mkdtemp(prefix="d-mtcp-s-", dir=test_root)), f"{TEST_PREFIX}-{os.getpid()}-mtcp-s",
               rootfs, KDF)
    t = Daemon(Path(tempfile.mkdtemp(prefix="d-mtcp-t-", dir=test_root)), f"{TEST_PREFIX}-{os.getpid()}-mtcp-t",
               rootfs, KDF)
    try:
        start_with_device(s, env.device())
        secret_ok(s)
        provision(s, pki_of(env), s.base, cn="device-s")
        # The target: the source's device.json and its migration endpoint.
        port = free_port()
        t.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = json.loads((s.data_dir / "device.json").read_text())
        cfg["migrate"] = {"address": f"127.0.0.1:{port}"}
        (t.data_dir / "device.json").write_text(json.dumps(cfg))
        t.start()
        secret_ok(t)
        measurements(t)
        provision(t, {"dir": env.pki, "pass": env.passfile}, t.base, cn="device-t")
        gos = env.build("bb", 1)
        install(s, gos)
        install(t, gos)
        refs = make_refs(env, s.base / "refs.json", [gos],
                         [("device-config", t.data_dir / "device.json")]
                         + [("container-config", container_config(s, n)) for n in NAMES])
        trust = ["--ak-anchor", env.cert("general-root-ca"), "--device-ca", env.cert("device-ca"),
                 "--rim-anchor", env.cert("root-ca"), "--rim-ca", env.cert("sub-ca"),
                 "--crl", env.pki / "crls.pem", "--reference", refs]
        yield SimpleNamespace(s=s, t=t, to=f"127.0.0.1:{port}", port=port, trust=trust,
                              pcrs=json.loads(refs.read_text())["pcrs"])
    finally:
        t.teardown()
        s.teardown()


def make_container(d, name):
    d.cli("create", container_config(d, name))
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, PUK), name)
    d.cli("start", "--pin-file", pin_file(d, PIN), name)
    d.sh(name, f"echo {MARKER}-{name} > /root/{SECRET_NAME}; sync")
    d.cli("stop", name)


def ak_name(d):
    for line in d.cli("device", "info").stdout.splitlines():
        if line.startswith("AK name:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no AK name")


def send(p, name, *extra, check=True):
    """`migrate send` to the target, named by its AK (--expect-ak, required unless
    --any-trusted-target)."""
    bundle = p.s.base / f"{name}.bundle"
    return bundle, p.s.cli("migrate", "send", name, "--to", p.to, "--bundle", bundle, "--expect-ak", ak_name(p.t),
                           "--pin-file", pin_file(p.s, PIN, PUK), *p.trust, *extra, check=check)


# ---- a minimal client of the endpoint's frames (proto/control.proto MigrateNetRequest) ----

def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(num, value):
    if isinstance(value, bytes):
        return varint(num << 3 | 2) + varint(len(value)) + value
    return varint(num << 3) + varint(value)


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def parse(buf):
    """Top-level fields of a MigrateNetResponse: {number: value}."""
    out, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        if key & 7 == 2:
            n, i = read_varint(buf, i)
            out[key >> 3] = buf[i:i + n]
            i += n
        else:
            out[key >> 3], i = read_varint(buf, i)
    return out


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            return None
        data += part
    return data


def closed(sock):
    """The endpoint closed the connection (a reset when our bytes were left unread)."""
    try:
        return recv_exact(sock, 1) is None
    except ConnectionResetError:
        return True


def answer(sock):
    hdr = recv_exact(sock, 4)
    if hdr is None:
        return None
    return parse(recv_exact(sock, struct.unpack(">I", hdr)[0]))


def connect(p, source="127.0.0.1"):
    sock = socket.create_connection(("127.0.0.1", p.port), timeout=60, source_address=(source, 0))
    return sock


def offer_over_tcp(p, sock):
    nonce = secrets.token_bytes(32)
    req = field(940, 1) + field(941, nonce) + b"".join(field(942, n) for n in p.pcrs)
    sock.sendall(frame(req))
    return answer(sock)


def challenge(sock):
    """The connection's challenge (MigrateNetRequest.challenge 950 -> MigrateNetResponse 952)."""
    sock.sendall(frame(field(940, 1) + field(950, 1)))
    a = answer(sock)
    assert a is not None and len(a.get(952, b"")) == 32, a
    return a[952]


def announcement(d, name, chal, size):
    """The source's signed announcement (a packed MigrateUpload) of name's exported bundle."""
    out = d.cli("migrate", "announce", name, "--challenge", chal.hex(), "--size", str(size)).stdout
    return bytes.fromhex(out.strip())


def announce(p, sock, name, size):
    """Announce name's exported bundle (size bytes) on sock as the source: the endpoint's answer."""
    sock.sendall(frame(field(940, 1) + field(951, announcement(p.s, name, challenge(sock), size))))
    return answer(sock)


def export_by_hand(p, name):
    """An offer over TCP for the source's nonce, and the export to it (the bundle kept): what
    send does before it sends."""
    with connect(p) as sock:
        nonce = bytes.fromhex(p.s.cli("migrate", "nonce").stdout.strip())  # names the source's AK
        sock.sendall(frame(field(940, 1) + field(941, nonce) + b"".join(field(942, n) for n in p.pcrs)))
        a = answer(sock)
    assert a is not None and 945 in a, a
    offer = p.s.base / f"{name}.offer"
    offer.write_bytes(a[945])
    bundle = p.s.base / f"{name}.bundle"
    p.s.cli("migrate", "export", name, "--offer", offer, "--nonce", nonce.hex(), "--out", bundle,
            "--pin-file", pin_file(p.s, PIN, PUK), *p.trust)
    return bundle


def listening_ports(pid):
    """TCP ports pid listens on: its socket inodes against /proc/net/tcp{,6} in state LISTEN."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:
                ports.add(int(f[1].split(":")[1], 16))
    return ports


def listening(pid, port, timeout=30):
    """trustmed opens the endpoint just after its control socket, which start() waits for."""
    deadline = time.time() + timeout
    while port not in listening_ports(pid) and time.time() < deadline:
        time.sleep(0.1)
    return port in listening_ports(pid)


def test_endpoint_off_by_default(pair):
    p = pair
    assert "migrate" not in json.loads((p.s.data_dir / "device.json").read_text())
    assert listening_ports(p.s.proc.pid) == set()
    assert not (p.s.data_dir / "migrate-in").exists()
    assert listening(p.t.proc.pid, p.port)


def test_round_trip_over_tcp(pair):
    p = pair
    make_container(p.s, "tcp1")
    uuid = p.s.state("tcp1")["uuid"]
    bundle, r = send(p, "tcp1")
    assert "imported by the target" in r.stdout and "committed" in r.stdout, r.stdout + r.stderr
    assert "MiB sent" in r.stderr
    answer_file = Path(f"{bundle}.answer")
    assert answer_file.exists()
    # The source's copy is erased: it cannot start the container again.
    assert not any(c["name"] == "tcp1" for c in p.s.containers())
    assert (p.s.data_dir / "migrated" / f"{uuid}.tombstone").exists()
    r = p.s.cli("start", "--pin-file", pin_file(p.s, PIN), "tcp1", check=False)
    assert r.returncode != 0
    # The target's copy of the bundle is gone; the container runs there with its data.
    assert list((p.t.data_dir / "migrate-in").iterdir()) == []
    assert p.t.state("tcp1")["uuid"] == uuid
    p.t.cli("start", "--pin-file", pin_file(p.t, PIN), "tcp1")
    assert p.t.sh("tcp1", f"cat /root/{SECRET_NAME}").stdout.strip() == f"{MARKER}-tcp1"
    p.t.cli("stop", "tcp1")
    events = [(e["event"], e.get("actor", "")) for e in p.t.audit_events()]
    assert any(ev == "migrate.import" and "tcp 127.0.0.1" in actor for ev, actor in events), events


def test_malformed_and_oversized_frames_are_refused_and_others_served(pair):
    p = pair
    # A frame announcing more than a chunk: refused, the connection closed.
    with connect(p) as bad:
        bad.sendall(struct.pack(">I", 64 << 20) + b"x" * 16)
        a = answer(bad)
        assert a is not None and a[946] == 90 and b"larger" in a[947], a  # EMSGSIZE
        assert closed(bad)
    # Garbage that does not decode: refused.
    with connect(p) as bad:
        bad.sendall(frame(b"\xff\xff\xff\xff\xff"))
        a = answer(bad)
        assert a is not None and b"malformed" in a[947], a
        assert closed(bad)
    # A bundle announced beyond the device's bound: refused before a byte of it is sent (and before
    # its signature is checked).
    with connect(p) as bad:
        challenge(bad)
        bad.sendall(frame(field(940, 1) + field(951, field(957, 1 << 50) + field(958, b"s" * 64))))
        a = answer(bad)
        assert a is not None and 947 in a and b"bytes" in a[947], a
    # Meanwhile and after, the endpoint answers a genuine request with an offer.
    with connect(p) as good:
        a = offer_over_tcp(p, good)
        assert a is not None and 945 in a and 947 not in a, a


def test_dropped_mid_bundle_imports_nothing_and_resends(pair):
    p = pair
    make_container(p.s, "tcp2")
    # The offer over TCP, the export by hand (its file kept), then a sender that stops half way.
    bundle = export_by_hand(p, "tcp2")
    data = bundle.read_bytes()
    assert len(data) > 2 * CHUNK
    with connect(p) as sock:
        assert announce(p, sock, "tcp2", len(data))[948] == 1
        sock.sendall(frame(field(944, data[:CHUNK])))
        sock.sendall(frame(field(944, data[CHUNK:2 * CHUNK]))[:CHUNK // 2])  # cut inside a frame
    inbox = p.t.data_dir / "migrate-in"
    deadline = time.time() + 30
    while list(inbox.iterdir()) and time.time() < deadline:
        time.sleep(0.2)
    assert list(inbox.iterdir()) == []  # the half bundle is gone
    assert not any(c["name"] == "tcp2" for c in p.t.containers())
    # The source stays locked, as with a lost file.
    assert p.s.state("tcp2").get("migrating", False)
    r = p.s.cli("start", "--pin-file", pin_file(p.s, PIN), "tcp2", check=False)
    assert r.returncode != 0 and "migrating" in r.stderr, r.stderr
    # The same bundle sent again: imported and committed.
    r = p.s.cli("migrate", "send", "tcp2", "--to", p.to, "--bundle", bundle, "--resend")
    assert "committed" in r.stdout, r.stdout + r.stderr
    assert not any(c["name"] == "tcp2" for c in p.s.containers())
    assert any(c["name"] == "tcp2" for c in p.t.containers())


def test_idle_flood_does_not_keep_a_migration_out(pair):
    p = pair
    make_container(p.s, "tcp3")
    stop = threading.Event()
    held, opened = [], [0]

    def flood():
        # Paced connections from another address that never send a request, for the whole
        # migration: each takes a slot until it is evicted or times out.
        while not stop.is_set():
            try:
                held.append(connect(p, source="127.0.0.2"))
                opened[0] += 1
                if len(held) > 64:  # evicted long ago: the endpoint closed them
                    held.pop(0).close()
            except OSError:
                pass
            time.sleep(0.05)

    th = threading.Thread(target=flood, daemon=True)
    th.start()
    try:
        time.sleep(2)
        _, r = send(p, "tcp3")
        assert "committed" in r.stdout, r.stdout + r.stderr
    finally:
        stop.set()
        th.join()
        for sock in held:
            sock.close()
    assert opened[0] > 40  # more than all the slots together
    assert any(c["name"] == "tcp3" for c in p.t.containers())


def test_a_killed_targets_half_bundle_goes_at_its_start(pair):
    """trustmed killed while it received a bundle: the next one removes the .part (the source
    still has its bundle) and serves the endpoint again."""
    p = pair
    inbox = p.t.data_dir / "migrate-in"
    make_container(p.s, "tcp4")
    export_by_hand(p, "tcp4")
    with connect(p) as sock:
        assert announce(p, sock, "tcp4", 3 * CHUNK)[948] == 1
        sock.sendall(frame(field(944, secrets.token_bytes(CHUNK))))
        deadline = time.time() + 30
        while not list(inbox.glob("*.part")) and time.time() < deadline:
            time.sleep(0.1)
        assert len(list(inbox.glob("*.part"))) == 1
        p.t.kill9()
    p.t.start()
    assert listening(p.t.proc.pid, p.port)  # the endpoint's start cleaned the directory before
    assert list(inbox.iterdir()) == []


def test_send_names_its_target(pair):
    """The address names no device: send refuses to run without the target's AK name
    (--expect-ak) unless the owner says any trusted device will do (--any-trusted-target)."""
    p = pair
    p.s.cli("create", container_config(p.s, "tcp1x"))
    for extra in ((), ("--expect-ak", ak_name(p.t), "--any-trusted-target")):
        bundle = p.s.base / "tcp1x.bundle"
        r = p.s.cli("migrate", "send", "tcp1x", "--to", p.to, "--bundle", bundle,
                    "--pin-file", pin_file(p.s, PIN, PUK), *p.trust, *extra, check=False)
        assert r.returncode == 2 and ("--expect-ak" in r.stderr), r.stdout + r.stderr
        assert not bundle.exists() and not p.s.state("tcp1x").get("migrating", False)
    p.s.cli("remove", "tcp1x")


def test_offers_are_rate_limited(pair):
    """Each offer is a TPM key and an NV write: anyone reaching the endpoint gets a burst of 8,
    then one per 15 minutes (the tests before used some). The refused one is answered, not signed."""
    p = pair
    answers = []
    for _ in range(10):
        with connect(p) as sock:
            answers.append(offer_over_tcp(p, sock))
        if 947 in answers[-1]:
            break
    assert any(945 in a for a in answers) or len(answers) == 1
    last = answers[-1]
    assert 947 in last and b"too many offers" in last[947], last
    assert last[946] == 11  # EAGAIN
