# SPDX-License-Identifier: GPL-2.0-or-later
"""trustme-tpmd on its own: started directly (as trustmed would, as the unprivileged trustme-tpm
user with fd 3 a SOCK_SEQPACKET socket), with its embedded swtpm. Measurements and the log, bad
input, the TCP attestation endpoint with a quote checked here independently, device CSR and
certificate install, and the swtpm's life across kills and clean stops of tpmd.

Every test removes every process it made (tpmd and swtpm) and its directories, also on failure."""
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from conftest import BUILD, SANITIZER_FINDINGS, TEST_PREFIX, process_gone, sanitizer_reports
from pb import field_bytes, field_varint, frame, parse
from tools import tool

TPMD = BUILD / "src/tpmd/trustme-tpmd"
PKI = BUILD / "src/tools/pki/trustme-pki"
USER = "trustme-tpm"
BOOT, RUNTIME = 12, 11

# Response bodies (proto/tpmd.proto)
ERROR, MEASURED, LOG, CSR, DEVICE_INFO, OK, READY, ATTEST = 10, 11, 12, 15, 16, 17, 18, 19
STORAGE_SECRET, RESEAL, OLD_COUNTER_GET, OLD_COUNTER_RAISE = 12, 13, 14, 15
SECRET = 13
# Request bodies
MEASURE, GET_LOG, DEVICE_CSR, CERT_INSTALL, GET_DEVICE_INFO, ATTEST_RQ = 10, 11, 16, 17, 18, 19


def event(pcr, typ, name, sha):
    return field_varint(2, pcr) + field_bytes(3, typ.encode()) + field_bytes(4, name.encode()) + \
        field_bytes(5, sha)


def event_digest(pcr, typ, name, sha):
    """docs/ATTESTATION.md: what the PCR is extended with, computed independently of tpmd."""
    t, n = typ.encode(), name.encode()
    return hashlib.sha256(b"trustme-event-v1" + struct.pack(">I", pcr) + struct.pack(">H", len(t)) +
                          t + struct.pack(">H", len(n)) + n + sha).digest()


def replay(events, pcr):
    value = bytes(32)
    for e in events:
        if e["pcr"] == pcr:
            value = hashlib.sha256(value + event_digest(e["pcr"], e["type"], e["name"],
                                                        e["sha256"])).digest()
    return value


def decode_event(raw):
    f = parse(raw)
    return {"seq": f.get(1, [0])[0], "pcr": f.get(2, [0])[0], "type": f[3][0].decode(),
            "name": f[4][0].decode(), "sha256": f[5][0]}


def decode_pcrs(raws):
    return {parse(p).get(1, [0])[0]: parse(p)[2][0] for p in raws}


def swtpm_processes(base):
    """Every swtpm whose command line names base (ours, whoever started it)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                args = (entry / "cmdline").read_bytes().split(b"\0")
                if args[0].endswith(b"swtpm") and any(str(base).encode() in a for a in args) \
                        and not process_gone(int(entry.name)):
                    found.append(int(entry.name))
        except OSError:
            pass
    return found


class Tpmd:
    """One trustme-tpmd on private dirs owned by trustme-tpm, talked to over its fd 3."""

    def __init__(self, base):
        self.base = Path(base)
        self.data = self.base / "data"
        self.run = self.base / "run"
        pw = pwd.getpwnam(USER)
        for d in (self.data, self.run):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, pw.pw_uid, pw.pw_gid)
        self.proc = None
        self.sock = None
        self.next_id = 1
        self.log = open(self.base / "tpmd.log", "ab")

    def start(self, *extra):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [tool("setpriv"), "--reuid", USER, "--regid", USER, "--clear-groups", str(TPMD),
             "--data-dir", str(self.data), "--run-dir", str(self.run),
             "--attest-address", "127.0.0.1:0", "--log-level", "debug", *extra],
            preexec_fn=lambda: os.dup2(theirs.fileno(), 3), close_fds=False,
            stdout=self.log, stderr=self.log)
        theirs.close()
        self.sock = ours
        self.sock.settimeout(20)
        ready = parse(self.sock.recv(1 << 16)[4:])
        self.log.flush()
        assert READY in ready, f"no Ready: {(self.base / 'tpmd.log').read_text()[-2000:]}"
        assert ready[2] == [0]
        self.ready = parse(ready[READY][0])
        assert self.ready[1] == [self.proc.pid]
        return self

    def send_raw(self, packet):
        self.sock.send(packet)
        return parse(self.sock.recv(1 << 23)[4:])

    def call(self, body_field, body=b""):
        rid = self.next_id
        self.next_id += 1
        resp = self.send_raw(frame(field_varint(1, 1) + field_varint(2, rid) +
                                   field_bytes(body_field, body)))
        assert resp[2] == [rid]
        return resp

    def ok(self, body_field, body=b"", expect=None):
        resp = self.call(body_field, body)
        assert ERROR not in resp, f"error: {parse(resp[ERROR][0])}"
        if expect is not None:
            assert expect in resp, resp
            return parse(resp[expect][0])
        return resp

    def error(self, body_field, body=b""):
        resp = self.call(body_field, body)
        assert ERROR in resp, f"expected an error, got {resp}"
        e = parse(resp[ERROR][0])
        return e[1][0], e.get(2, [b""])[0].decode()

    def measure(self, *events):
        m = self.ok(MEASURE, b"".join(field_bytes(1, e) for e in events), MEASURED)
        return m.get(1, [0])[0], m.get(2, [0])[0]

    def get_log(self):
        l = self.ok(GET_LOG, b"", LOG)
        return ([decode_event(e) for e in l.get(1, [])], decode_pcrs(l.get(2, [])),
                bool(l.get(3, [0])[0]), l.get(4, [b""])[0].decode())

    def info(self):
        return self.ok(GET_DEVICE_INFO, b"", DEVICE_INFO)

    def attest_address(self):
        host, port = self.info()[6][0].decode().rsplit(":", 1)
        return host, int(port)

    def swtpm_pid(self):
        return int((self.run / "swtpm.pid").read_text())

    def close_link(self):
        """trustmed died: its end of the link closes, nothing else. tpmd exits, swtpm stays."""
        self.sock.close()
        self.proc.wait(timeout=15)
        assert self.proc.returncode == 0
        self.proc = None

    def stop(self):
        """trustmed's clean stop: SIGTERM, then its end closes at once (the EOF may arrive
        first). tpmd powers the embedded TPM off."""
        self.proc.send_signal(signal.SIGTERM)
        self.sock.close()
        self.proc.wait(timeout=15)
        assert self.proc.returncode == 0
        self.proc = None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.sock.close()
        self.proc = None

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.sock:
            self.sock.close()
        for pid in swtpm_processes(self.base):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while swtpm_processes(self.base) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.log.close()
        SANITIZER_FINDINGS.extend(sanitizer_reports((self.base / "tpmd.log").read_text()))


@pytest.fixture
def tpmd_dir():
    tool("swtpm")  # tpmd starts it: without it, fail naming its package (tools.py)
    # Not under pytest's tmp_path: trustme-tpm must be able to reach it.
    base = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}-tpmd-", dir="/tmp"))
    os.chmod(base, 0o755)
    made = []
    try:
        yield base, made
    finally:
        for t in made:
            t.cleanup()
        left = swtpm_processes(base)
        shutil.rmtree(base, ignore_errors=True)
        assert left == [], f"swtpm processes left: {left}"


@pytest.fixture
def new_tpmd(tpmd_dir):
    base, made = tpmd_dir

    def make(sub="t"):
        t = Tpmd(base / sub)
        made.append(t)
        return t
    return make


@pytest.fixture
def tpmd(new_tpmd):
    return new_tpmd().start()


def sha(s):
    return hashlib.sha256(s.encode()).digest()


# ---- the link to trustmed ----------------------------------------------------------------------

def test_measure_and_log(tpmd):
    boot = [event(BOOT, "binary", "trustmed", sha("d")), event(BOOT, "binary", "trustme-scd", sha("s")),
            event(BOOT, "device-config", "device.json", sha("j"))]
    assert tpmd.measure(*boot) == (3, 0)
    # the same items again (a second start of the same thing) are skipped, new ones added
    assert tpmd.measure(*boot) == (0, 3)
    assert tpmd.measure(event(RUNTIME, "container-config", 'c "1"\\x', sha("c")), boot[0]) == (1, 1)
    events, pcrs, consistent, why = tpmd.get_log()
    assert consistent, why
    assert [e["seq"] for e in events] == [0, 1, 2, 3]
    assert [(e["pcr"], e["name"]) for e in events] == [
        (BOOT, "trustmed"), (BOOT, "trustme-scd"), (BOOT, "device.json"), (RUNTIME, 'c "1"\\x')]
    assert set(pcrs) == {BOOT, RUNTIME}
    # the PCRs hold exactly what an independent replay of the documented digest gives
    assert pcrs[BOOT] == replay(events, BOOT) != bytes(32)
    assert pcrs[RUNTIME] == replay(events, RUNTIME)
    # and tpm2-tools reading the TPM directly agrees
    out = subprocess.run([tool("tpm2_pcrread"), f"sha256:{BOOT}", "-T", f"swtpm:path={tpmd.run}/swtpm.sock"],
                         capture_output=True, text=True)
    if out.returncode == 0:  # the swtpm serves one client at a time; tpmd is idle now
        assert pcrs[BOOT].hex().upper() in out.stdout.upper()
    # the log file is one JSON object per line, as documented
    lines = (tpmd.run / "measurements.log").read_text().splitlines()
    assert [json.loads(l)["seq"] for l in lines] == [0, 1, 2, 3]
    assert json.loads(lines[0]) == {"seq": 0, "pcr": BOOT, "type": "binary", "name": "trustmed",
                                    "sha256": sha("d").hex()}


TPMD_GARBAGE = [
    b"",
    b"\x00\x00",
    b"\xff\xff\xff\xff" + b"x" * 16,
    struct.pack(">I", 100) + b"short",
    frame(b"\xff\xff\xff\xff\xff"),
    frame(field_varint(1, 99) + field_varint(2, 5)),                      # wrong version
    frame(field_varint(1, 1) + field_varint(2, 6)),                       # no body
    frame(field_varint(1, 1) + field_varint(2, 7) + field_bytes(99, b"")),  # unknown body
    os.urandom(3000),
]


def test_bad_input_gets_errors_and_tpmd_goes_on(tpmd):
    for packet in TPMD_GARBAGE:
        resp = tpmd.send_raw(packet)
        assert ERROR in resp, f"an Error for {packet[:16]!r}"
        assert parse(resp[ERROR][0])[1][0] > 0
    good = event(BOOT, "binary", "ok", sha("ok"))
    bad_events = [
        field_varint(2, 24) + field_bytes(3, b"binary") + field_bytes(4, b"x") + field_bytes(5, sha("x")),
        event(BOOT, "kernel", "x", sha("x")),
        event(BOOT, "binary", "", sha("x")),
        event(BOOT, "binary", "tab\there", sha("x")),
        event(BOOT, "binary", "x" * 256, sha("x")),
        event(BOOT, "binary", "x", sha("x")[:31]),
        field_bytes(3, b"binary") + field_bytes(4, b"x") + field_bytes(5, sha("x")),  # no PCR
    ]
    for bad in bad_events:
        # a batch with one bad item measures nothing, not even the good one before it
        code, msg = tpmd.error(MEASURE, field_bytes(1, good) + field_bytes(1, bad))
        assert code == 22 and "item 1" in msg, msg
    events, pcrs, consistent, _ = tpmd.get_log()
    assert events == [] and consistent and pcrs[BOOT] == bytes(32)
    assert tpmd.measure(good) == (1, 0)


def test_refuses_to_run_without_fd3(tpmd_dir):
    base, _ = tpmd_dir
    out = subprocess.run([str(TPMD), "--data-dir", str(base), "--run-dir", str(base)],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "fd 3" in out.stderr
    out = subprocess.run([str(TPMD), "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "--attest-address" in out.stdout


# ---- remote attestation ---------------------------------------------------------------------------

def attest_request(rid, nonce, pcrs=(), version=1):
    return field_varint(1, version) + field_varint(2, rid) + field_bytes(3, nonce) + \
        b"".join(field_varint(4, p) for p in pcrs)


def tcp_call(conn, payload):
    conn.sendall(frame(payload))
    hdr = recv_exact(conn, 4)
    return parse(recv_exact(conn, struct.unpack(">I", hdr)[0]))


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def parse_tpms_attest(b):
    """The fields of a quote's TPMS_ATTEST a verifier checks."""
    magic, typ = struct.unpack(">IH", b[:6])
    pos = 6
    n = struct.unpack(">H", b[pos:pos + 2])[0]
    pos += 2 + n                                  # qualifiedSigner
    n = struct.unpack(">H", b[pos:pos + 2])[0]
    extra = b[pos + 2:pos + 2 + n]
    pos += 2 + n
    pos += 17 + 8                                 # clockInfo, firmwareVersion
    count = struct.unpack(">I", b[pos:pos + 4])[0]
    pos += 4
    sel = []
    for _ in range(count):
        alg, size = struct.unpack(">HB", b[pos:pos + 3])
        bits = int.from_bytes(b[pos + 3:pos + 3 + size], "little")
        sel.append((alg, [i for i in range(8 * size) if bits >> i & 1]))
        pos += 3 + size
    n = struct.unpack(">H", b[pos:pos + 2])[0]
    digest = b[pos + 2:pos + 2 + n]
    assert pos + 2 + n == len(b)
    return magic, typ, extra, sel, digest


def ak_key(tpmt_public):
    """The EC public key in a marshalled TPMT_PUBLIC (ECC, no policy)."""
    typ, name_alg, attrs = struct.unpack(">HHI", tpmt_public[:8])
    assert typ == 0x0023 and name_alg == 0x000B
    assert attrs & 0x00010000 and attrs & 0x00040000 and attrs & 0x2  # restricted sign fixedTPM
    pos = 8
    n = struct.unpack(">H", tpmt_public[pos:pos + 2])[0]
    pos += 2 + n                                   # authPolicy
    pos += 2                                       # symmetric: TPM_ALG_NULL
    scheme, hash_alg, curve, kdf = struct.unpack(">HHHH", tpmt_public[pos:pos + 8])
    assert (scheme, hash_alg, curve, kdf) == (0x0018, 0x000B, 0x0003, 0x0010)
    pos += 8
    n = struct.unpack(">H", tpmt_public[pos:pos + 2])[0]
    x = tpmt_public[pos + 2:pos + 2 + n]
    pos += 2 + n
    n = struct.unpack(">H", tpmt_public[pos:pos + 2])[0]
    y = tpmt_public[pos + 2:pos + 2 + n]
    return ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                         ec.SECP256R1()).public_key()


def check_quote(quote, nonce, want_pcrs):
    """Verify a Quote message as a verifier would; returns (pcr values, events)."""
    attest, sig = quote[1][0], quote[2][0]
    pcrs = [parse(p) for p in quote.get(3, [])]
    values = [(p[1][0] if 1 in p else 0, p[2][0]) for p in pcrs]
    magic, typ, extra, sel, digest = parse_tpms_attest(attest)
    assert magic == 0xFF544347 and typ == 0x8018           # TPM_GENERATED_VALUE, ATTEST_QUOTE
    assert extra == nonce
    assert sel == [(0x000B, sorted(want_pcrs))]
    assert [i for i, _ in values] == sorted(want_pcrs)
    assert digest == hashlib.sha256(b"".join(v for _, v in values)).digest()
    sig_alg, hash_alg = struct.unpack(">HH", sig[:4])
    assert (sig_alg, hash_alg) == (0x0018, 0x000B)
    rn = struct.unpack(">H", sig[4:6])[0]
    r = int.from_bytes(sig[6:6 + rn], "big")
    sn = struct.unpack(">H", sig[6 + rn:8 + rn])[0]
    s = int.from_bytes(sig[8 + rn:8 + rn + sn], "big")
    key = ak_key(quote[5][0])
    key.verify(encode_dss_signature(r, s), attest, ec.ECDSA(hashes.SHA256()))
    # a verifier must notice any change: a flipped bit breaks the signature
    with pytest.raises(InvalidSignature):
        key.verify(encode_dss_signature(r, s), attest[:-1] + bytes([attest[-1] ^ 1]),
                   ec.ECDSA(hashes.SHA256()))
    return dict(values), [decode_event(e) for e in quote.get(4, [])], key


def test_attest_over_tcp(tpmd):
    tpmd.measure(event(BOOT, "binary", "trustmed", sha("d")),
                 event(RUNTIME, "guestos-config", "os-1/guestos.json", sha("g")))
    host, port = tpmd.attest_address()
    assert host == "127.0.0.1" and port > 0
    with socket.create_connection((host, port), timeout=10) as conn:
        nonce = os.urandom(32)
        resp = tcp_call(conn, attest_request(7, nonce))
        assert resp[1] == [1] and resp[2] == [7] and 11 in resp, resp
        values, events, key = check_quote(parse(resp[11][0]), nonce, [BOOT, RUNTIME])
        # the values are the PCRs, and the log replays to them
        assert values[BOOT] == replay(events, BOOT) and values[RUNTIME] == replay(events, RUNTIME)
        assert [e["name"] for e in events] == ["trustmed", "os-1/guestos.json"]
        # the AK is the key DeviceInfo shows
        pem = tpmd.info()[3][0]
        assert key.public_bytes(serialization.Encoding.PEM,
                                serialization.PublicFormat.SubjectPublicKeyInfo) == pem
        # several requests on one connection, other selections
        nonce = os.urandom(32)
        resp = tcp_call(conn, attest_request(8, nonce, [0, 23, BOOT]))
        values, _, _ = check_quote(parse(resp[11][0]), nonce, [0, 23, BOOT])
        assert values[0] == values[23] == bytes(32)
        # refusals: an Error each, and the connection goes on
        for bad in (attest_request(9, os.urandom(31)), attest_request(9, os.urandom(33)),
                    attest_request(9, b""), attest_request(9, os.urandom(32), [24]),
                    attest_request(9, os.urandom(32), [1, 1]),
                    attest_request(9, os.urandom(32), version=2), b"\xff\xff\xff"):
            resp = tcp_call(conn, bad)
            assert 10 in resp and 11 not in resp, (bad, resp)
            assert parse(resp[10][0])[1][0] > 0
        assert 11 in tcp_call(conn, attest_request(10, os.urandom(32)))
    # the same quote through trustmed's link
    nonce = os.urandom(32)
    ar = tpmd.ok(ATTEST_RQ, attest_request(3, nonce, [BOOT]), ATTEST)
    check_quote(parse(ar[11][0]), nonce, [BOOT])
    assert tpmd.error(ATTEST_RQ, attest_request(3, os.urandom(31)))[0] == 22


def test_attest_endpoint_survives_bad_clients(tpmd):
    host, port = tpmd.attest_address()
    # an oversized request: that connection is closed
    big = socket.create_connection((host, port), timeout=10)
    big.sendall(struct.pack(">I", 5000) + b"x" * 5000)
    try:
        assert big.recv(100) == b""
    except ConnectionResetError:
        pass  # closed with the rest of our request unread
    big.close()
    # a client that sends half a frame and then nothing is dropped after 10 s
    stuck = socket.create_connection((host, port), timeout=10)
    t0 = time.monotonic()
    stuck.sendall(b"\x00\x00")
    with socket.create_connection((host, port), timeout=10) as conn:
        assert 11 in tcp_call(conn, attest_request(1, os.urandom(32)))
    # trustmed's link is served meanwhile
    assert tpmd.info()
    stuck.settimeout(15)
    assert stuck.recv(1) == b""
    assert 9.5 <= time.monotonic() - t0 <= 13
    stuck.close()


def still_open(s):
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        s.setblocking(True)


def test_idle_clients_do_not_lock_out_verifiers(tpmd):
    """16 idle connections used to make every verifier fail until they closed.
    A new client evicts the connection that waited longest without a request, a peer's own first,
    and one address holds at most 8 connections, so it cannot evict another address's."""
    host, port = tpmd.attest_address()
    other = socket.socket()
    other.bind(("127.0.0.2", 0))
    other.settimeout(10)
    other.connect((host, port))
    idle = [socket.create_connection((host, port), timeout=10) for _ in range(16)]
    try:
        time.sleep(0.2)
        # the verifier is served while all 16 are still open
        with socket.create_connection((host, port), timeout=10) as conn:
            assert 11 in tcp_call(conn, attest_request(1, os.urandom(32)))
        time.sleep(0.1)
        # 127.0.0.1 holds at most 8 of them; the oldest were evicted
        open_now = [still_open(s) for s in idle]
        assert sum(open_now) <= 8 and all(open_now[-7:]), open_now
        # a flood from 127.0.0.1 never evicts 127.0.0.2's idle connection
        flood = [socket.create_connection((host, port), timeout=10) for _ in range(40)]
        time.sleep(0.2)
        assert still_open(other)
        assert 11 in tcp_call(other, attest_request(2, os.urandom(32)))
        for s in flood:
            s.close()
    finally:
        for s in idle:
            s.close()
        other.close()
    assert tpmd.info()


# ---- device identity ---------------------------------------------------------------------------

def test_csr_and_certificate(tpmd, tmp_path):
    pem = tpmd.ok(DEVICE_CSR, field_bytes(1, b"device 42"), CSR)[1][0]
    csr = tmp_path / "device.csr"
    csr.write_bytes(pem)
    out = subprocess.run([tool("openssl"), "req", "-verify", "-noout", "-in", str(csr), "-subject"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "CN = device 42" in out.stdout
    # the key in the request is the AK
    key = subprocess.run([tool("openssl"), "req", "-in", str(csr), "-noout", "-pubkey"],
                         capture_output=True, check=True).stdout
    assert key == tpmd.info()[3][0]
    # the default name comes from the AK's name
    default = tpmd.ok(DEVICE_CSR, b"", CSR)[1][0]
    (tmp_path / "default.csr").write_bytes(default)
    subj = subprocess.run([tool("openssl"), "req", "-verify", "-noout", "-subject", "-in",
                           str(tmp_path / "default.csr")], capture_output=True, text=True, check=True)
    ak_name = tpmd.info()[4][0]
    assert f"CN = trustme device {ak_name[2:10].hex()}" in subj.stdout
    assert tpmd.error(DEVICE_CSR, field_bytes(1, b"x" * 65))[0] == 22
    # the Device CA issues the certificate; tpmd installs it
    pw = tmp_path / "pass"
    pw.write_text("test passphrase\n")
    pki = tmp_path / "pki"
    subprocess.run([str(PKI), "init", str(pki), "--passphrase-file", str(pw)], check=True,
                   capture_output=True)
    # (the Device CA encrypts it to the TPM's EK: test_enrollment_through_credential_activation;
    # here the plain certificate that comes out of it, as a hardware device's CA may send it)
    mkey, mcert = manufacturer_ca(tmp_path)
    install_ek_cert(tpmd, tmp_path, mkey, mcert)
    csr.write_bytes(tpmd.ok(DEVICE_CSR, field_bytes(1, b"device 42"), CSR)[1][0])
    enc = tmp_path / "device.enc.pem"
    subprocess.run([str(PKI), "issue", "--pki", str(pki), "--ca", "device", "--csr", str(csr),
                    "--out", str(enc), "--passphrase-file", str(pw), "--ek-anchor", str(mcert)],
                   check=True, capture_output=True)
    tpmd.ok(CERT_INSTALL, field_bytes(1, enc.read_bytes()), OK)
    cert = tmp_path / "device.pem"
    cert.write_bytes((tpmd.data / "ak-chain.pem").read_bytes())
    (tpmd.data / "ak-chain.pem").unlink()
    tpmd.stop()
    tpmd.start()
    chain = cert.read_bytes() + (pki / "customer/device-ca.pem").read_bytes()
    # refusals first: a certificate for another key, garbage, a chain in the wrong order
    other_key = tmp_path / "other.key"
    subprocess.run([tool("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(other_key), "-subj", "/CN=other", "-days", "1",
                    "-out", str(tmp_path / "other.pem")], check=True, capture_output=True)
    code, msg = tpmd.error(CERT_INSTALL, field_bytes(1, (tmp_path / "other.pem").read_bytes()))
    assert code == 22 and "attestation key" in msg
    assert tpmd.error(CERT_INSTALL, field_bytes(1, b"-----BEGIN CERTIFICATE-----\nAAAA\n"))[0] == 22
    assert tpmd.error(CERT_INSTALL, field_bytes(1, b""))[0] == 22
    assert tpmd.error(CERT_INSTALL, field_bytes(1, (pki / "customer/device-ca.pem").read_bytes() +
                                                cert.read_bytes()))[0] == 22
    assert not (tpmd.data / "ak-chain.pem").exists()
    assert tpmd.info().get(5, [b""])[0] == b""
    tpmd.ok(CERT_INSTALL, field_bytes(1, chain), OK)
    stored = (tpmd.data / "ak-chain.pem").read_bytes()
    assert stored.count(b"BEGIN CERTIFICATE") == 2
    assert tpmd.info()[5][0] == stored
    # the chain verifies to the customer root, and the quote carries it
    root = pki / "customer/general-root-ca.pem"
    (tmp_path / "stored.pem").write_bytes(stored)
    subprocess.run([tool("openssl"), "verify", "-CAfile", str(root), "-untrusted", str(tmp_path / "stored.pem"),
                    str(cert)], check=True, capture_output=True)
    host, port = tpmd.attest_address()
    with socket.create_connection((host, port), timeout=10) as conn:
        resp = tcp_call(conn, attest_request(1, os.urandom(32)))
        assert parse(resp[11][0])[6][0] == stored


# ---- AK enrollment through credential activation (docs/ATTESTATION.md "Enrollment") -----------

def openssl(*args):
    subprocess.run([tool("openssl"), *map(str, args)], check=True, capture_output=True)


def manufacturer_ca(dirpath, name="m"):
    """A TPM manufacturer CA of our own, off the device, as the provisioning station has it."""
    key, cert = dirpath / f"{name}.key", dirpath / f"{name}.pem"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", cert, "-subj", f"/CN=test TPM manufacturer {name}", "-days", "30",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,keyCertSign,cRLSign")
    return key, cert


def pki(*args, check=True):
    r = subprocess.run([str(PKI), *map(str, args)], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def install_ek_cert(t, tmp, key, cert):
    ek = tmp / f"ek-{t.base.name}.pem"
    ek.write_bytes(t.info()[164][0])
    out = tmp / f"ek-cert-{t.base.name}.pem"
    pki("ek-cert", "--ek", ek, "--key", key, "--cert", cert, "--out", out)
    t.ok(CERT_INSTALL, field_bytes(1, out.read_bytes()), OK)
    return out


def ak_tpmt_public(pubkey, attrs=0x00050472):
    """An ECC P-256 TPMT_PUBLIC for a key (Part 2 §12.2.4), as a TPM would marshal an AK's."""
    nums = pubkey.public_numbers()
    return struct.pack(">HHIH", 0x0023, 0x000B, attrs, 0) + struct.pack(">H", 0x0010) + \
        struct.pack(">HH", 0x0018, 0x000B) + struct.pack(">H", 0x0003) + \
        struct.pack(">H", 0x0010) + struct.pack(">H", 32) + nums.x.to_bytes(32, "big") + \
        struct.pack(">H", 32) + nums.y.to_bytes(32, "big")


def pem_block(label, data):
    import base64
    b = base64.encodebytes(data).decode().replace("\n", "")
    lines = [b[i:i + 64] for i in range(0, len(b), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode()


def test_enrollment_through_credential_activation(new_tpmd, tmp_path):
    """The Device CA certified any CSR's key. Now it certifies an AK only in the
    bundle `trustme device csr` makes, with an EK certificate from a manufacturer anchor, and
    encrypts the certificate under a credential only the TPM holding both EK and AK can
    activate."""
    t = new_tpmd("a").start()
    other = new_tpmd("b").start()
    pw = tmp_path / "pass"
    pw.write_text("test passphrase\n")
    pkidir = tmp_path / "pki"
    pki("init", pkidir, "--passphrase-file", pw)
    ca = pkidir / "customer/device-ca.pem"
    mkey, mcert = manufacturer_ca(tmp_path)
    rogue_key, rogue_cert = manufacturer_ca(tmp_path, "rogue")

    def issue(bundle, out, *extra, check=True):
        return pki("issue", "--pki", pkidir, "--ca", "device", "--csr", bundle, "--out", out,
                   "--passphrase-file", pw, *extra, check=check)

    # the manufacturer certifies both TPMs' EKs; tpmd keeps the certificate
    assert tpmd_ek_missing(t)
    install_ek_cert(t, tmp_path, mkey, mcert)
    install_ek_cert(other, tmp_path, mkey, mcert)
    assert t.info()[165][0].count(b"BEGIN CERTIFICATE") == 1
    bundle = tmp_path / "device.csr"
    bundle.write_bytes(t.ok(DEVICE_CSR, b"", CSR)[1][0])
    text = bundle.read_text()
    assert "BEGIN CERTIFICATE REQUEST" in text and "BEGIN TRUSTME AK PUBLIC" in text \
        and "BEGIN CERTIFICATE-----" in text

    # an ordinary CSR from a software key: refused
    soft = tmp_path / "soft.csr"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", tmp_path / "soft.key", "-subj", "/CN=soft", "-out", soft)
    r = issue(soft, tmp_path / "x.pem", "--ek-anchor", mcert, check=False)
    assert r.returncode == 1 and "no proof that its key lives in a TPM" in r.stderr, r.stderr
    # without a manufacturer anchor: a usage error; with the wrong one: refused
    r = issue(bundle, tmp_path / "x.pem", check=False)
    assert r.returncode == 2 and "--ek-anchor" in r.stderr
    r = issue(bundle, tmp_path / "x.pem", "--ek-anchor", rogue_cert, check=False)
    assert r.returncode == 1 and "does not chain to an --ek-anchor" in r.stderr, r.stderr
    assert not (tmp_path / "x.pem").exists()

    # the genuine bundle: issued encrypted; only this TPM installs it
    enc = tmp_path / "device.pem"
    issue(bundle, enc, "--ek-anchor", mcert)
    assert b"BEGIN TRUSTME ENCRYPTED CERTIFICATE" in enc.read_bytes()
    assert b"BEGIN CERTIFICATE" not in enc.read_bytes()
    code, msg = other.error(CERT_INSTALL, field_bytes(1, enc.read_bytes() + ca.read_bytes()))
    assert "ActivateCredential failed" in msg, msg
    t.ok(CERT_INSTALL, field_bytes(1, enc.read_bytes() + ca.read_bytes()), OK)
    stored = (t.data / "ak-chain.pem").read_bytes()
    assert stored.count(b"BEGIN CERTIFICATE") == 2
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(stored.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n")
    key = subprocess.run([tool("openssl"), "x509", "-in", str(leaf), "-noout", "-pubkey"],
                         capture_output=True, check=True).stdout
    assert key == t.info()[3][0]
    quote_works(t)

    # a forged bundle: this device's AK, but the other TPM's EK certificate. The CA cannot tell;
    # the credential goes to the other TPM's EK, so this device cannot install it, and the
    # other TPM has no key with this AK's name
    ek_other = tmp_path / f"ek-cert-{other.base.name}.pem"
    forged = tmp_path / "forged.csr"
    forged.write_bytes(text.split("-----BEGIN CERTIFICATE-----")[0].encode() + ek_other.read_bytes())
    issue(forged, tmp_path / "forged.pem", "--ek-anchor", mcert)
    for dev in (t, other):
        code, msg = dev.error(CERT_INSTALL, field_bytes(1, (tmp_path / "forged.pem").read_bytes()))
        assert "ActivateCredential failed" in msg, msg

    # a software key dressed as an AK (a TPMT_PUBLIC claiming fixedTPM|restricted|sign for it)
    # with this device's genuine EK certificate: the name is not of a key in the TPM
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    softkey = load_pem_private_key((tmp_path / "soft.key").read_bytes(), None)
    dressed = tmp_path / "dressed.csr"
    dressed.write_bytes(soft.read_bytes() + pem_block("TRUSTME AK PUBLIC",
                                                      ak_tpmt_public(softkey.public_key())) +
                        (tmp_path / f"ek-cert-{t.base.name}.pem").read_bytes())
    issue(dressed, tmp_path / "dressed.pem", "--ek-anchor", mcert)
    code, msg = t.error(CERT_INSTALL, field_bytes(1, (tmp_path / "dressed.pem").read_bytes()))
    assert "ActivateCredential failed" in msg, msg
    # the same key claiming to be an unrestricted or decrypting key is refused by the CA
    for attrs in (0x00040472, 0x00070472):
        bad = tmp_path / "bad.csr"
        bad.write_bytes(soft.read_bytes() + pem_block("TRUSTME AK PUBLIC",
                                                      ak_tpmt_public(softkey.public_key(), attrs)) +
                        (tmp_path / f"ek-cert-{t.base.name}.pem").read_bytes())
        r = issue(bad, tmp_path / "bad.pem", "--ek-anchor", mcert, check=False)
        assert r.returncode == 1 and "attributes" in r.stderr, r.stderr
    # a bundle whose CSR key is not the AK's
    mixed = tmp_path / "mixed.csr"
    mixed.write_bytes(soft.read_bytes() + text.split("-----END CERTIFICATE REQUEST-----\n")[1].encode())
    r = issue(mixed, tmp_path / "mixed.pem", "--ek-anchor", mcert, check=False)
    assert r.returncode == 1 and "not the AK's" in r.stderr, r.stderr
    # the installed chain is unchanged by all of it
    assert (t.data / "ak-chain.pem").read_bytes() == stored
    t.stop()
    other.stop()


def test_credential_from_tpm2_makecredential_activates(tpmd, tmp_path):
    """Cross-check of the format with tpm2-tools' own MakeCredential (tpm2_makecredential
    --tcti none, OpenSSL in software): its blob for this TPM's EK and AK name, with a certificate
    encrypted as trustme-pki does, installs through tpmd's ActivateCredential."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    info = tpmd.info()
    (tmp_path / "ek.pem").write_bytes(info[164][0])
    cred = os.urandom(32)
    (tmp_path / "cred").write_bytes(cred)
    out = tmp_path / "mc.out"
    subprocess.run([tool("tpm2_makecredential"), "-T", "none", "-G", "ecc", "-u", str(tmp_path / "ek.pem"),
                    "-s", str(tmp_path / "cred"), "-n", info[4][0].hex(), "-o", str(out)],
                   check=True, capture_output=True)
    raw = out.read_bytes()
    assert raw[:8] == bytes.fromhex("badcc0de00000001")
    (blob_len,) = struct.unpack(">H", raw[8:10])
    blob, secret = raw[8:10 + blob_len], raw[10 + blob_len:]
    # a plain certificate for the AK (any CA will do for this check)
    pw = tmp_path / "pass"
    pw.write_text("test passphrase\n")
    pki("init", tmp_path / "pki", "--passphrase-file", pw)
    csr = tmp_path / "ak.csr"
    csr.write_bytes(tpmd.ok(DEVICE_CSR, b"", CSR)[1][0])
    pki("issue", "--pki", tmp_path / "pki", "--ca", "software", "--profile", "device", "--csr", csr,
        "--out", tmp_path / "ak.pem", "--passphrase-file", pw)
    der = subprocess.run([tool("openssl"), "x509", "-in", str(tmp_path / "ak.pem"), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    iv = os.urandom(12)
    enc = iv + AESGCM(cred).encrypt(iv, der, b"trustme-ak-certificate-v1")
    bundle = pem_block("TRUSTME CREDENTIAL BLOB", blob) + pem_block("TRUSTME ENCRYPTED SECRET", secret) + \
        pem_block("TRUSTME ENCRYPTED CERTIFICATE", enc)
    tpmd.ok(CERT_INSTALL, field_bytes(1, bundle + (tmp_path / "pki/software-signing/sub-ca.pem").read_bytes()), OK)
    assert (tpmd.data / "ak-chain.pem").read_bytes().count(b"BEGIN CERTIFICATE") == 2
    # a credential bound to another name does not activate
    subprocess.run([tool("tpm2_makecredential"), "-T", "none", "-G", "ecc", "-u", str(tmp_path / "ek.pem"),
                    "-s", str(tmp_path / "cred"), "-n", "000b" + "00" * 32, "-o", str(out)],
                   check=True, capture_output=True)
    raw = out.read_bytes()
    bad = pem_block("TRUSTME CREDENTIAL BLOB", raw[8:10 + blob_len]) + \
        pem_block("TRUSTME ENCRYPTED SECRET", raw[10 + blob_len:]) + pem_block("TRUSTME ENCRYPTED CERTIFICATE", enc)
    code, msg = tpmd.error(CERT_INSTALL, field_bytes(1, bad))
    assert "ActivateCredential failed" in msg, msg


def tpmd_ek_missing(t):
    info = t.info()
    return info.get(165, [b""])[0] == b"" and info[164][0].startswith(b"-----BEGIN PUBLIC KEY")


# ---- the swtpm's life ------------------------------------------------------------------------------

def test_kill_restart_and_power_off(new_tpmd):
    t = new_tpmd().start()
    info = t.info()
    ak_name, ak_pem = info[4][0], info[3][0]
    assert info[2] == [1] and info[10][0] == b"IBM"
    t.measure(event(BOOT, "binary", "trustmed", sha("d")), event(RUNTIME, "container-config", "c", sha("c")))
    swtpm = t.swtpm_pid()
    # kill -9: the swtpm (the device's TPM) stays, with its PCRs
    t.kill9()
    time.sleep(0.1)
    assert not process_gone(swtpm)
    # a crash between writing the log and extending: the next tpmd drops that entry
    with open(t.run / "measurements.log", "a") as f:
        f.write(json.dumps({"seq": 2, "pcr": BOOT, "type": "binary", "name": "never-extended",
                            "sha256": sha("n").hex()}, separators=(",", ":")) + "\n")
    t.start()
    assert t.swtpm_pid() == swtpm
    events, pcrs, consistent, why = t.get_log()
    assert consistent, why
    assert [e["name"] for e in events] == ["trustmed", "c"]
    assert pcrs[BOOT] == replay(events, BOOT) != bytes(32)
    assert t.info()[4][0] == ak_name
    # another process extending "our" PCR behind tpmd's back makes the log inconsistent
    t.kill9()
    tcti = ["-T", f"swtpm:path={t.run}/swtpm.sock"]
    subprocess.run([tool("tpm2_pcrextend"), f"{RUNTIME}:sha256=" + "11" * 32, *tcti], check=True,
                   capture_output=True)
    # leftovers (no resource manager): the dead tpmd's SRK and AK, plus a session and a key of
    # someone else's; the next tpmd flushes them all and keeps only its own two objects
    subprocess.run([tool("tpm2_startauthsession"), "-S", str(t.base / "s.ctx"), *tcti], check=True,
                   capture_output=True)
    subprocess.run([tool("tpm2_createprimary"), "-C", "o", "-c", str(t.base / "p.ctx"), *tcti],
                   check=True, capture_output=True)
    t.start()
    handles = subprocess.run([tool("tpm2_getcap"), "handles-transient", *tcti], check=True,
                             capture_output=True, text=True).stdout.split()
    assert len([h for h in handles if h.startswith("0x8")]) == 2, handles
    for kind in ("handles-loaded-session", "handles-saved-session"):
        assert subprocess.run([tool("tpm2_getcap"), kind, *tcti], check=True, capture_output=True,
                              text=True).stdout.strip() == ""
    log = (t.base / "tpmd.log").read_text()
    assert "flushed 3 transient objects" in log and "flushed 1 saved sessions" in log
    events, pcrs, consistent, why = t.get_log()
    assert not consistent and f"PCR {RUNTIME}" in why
    assert len(events) == 2
    # trustmed died (the link closed, no SIGTERM): tpmd exits, the TPM lives on
    t.close_link()
    assert not process_gone(swtpm)
    t.start()
    assert t.swtpm_pid() == swtpm and len(t.get_log()[0]) == 2
    # trustmed's stop powers the TPM off: swtpm gone, its files too
    t.stop()
    deadline = time.monotonic() + 5
    while not process_gone(swtpm) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process_gone(swtpm)
    assert not (t.run / "swtpm.pid").exists() and not (t.run / "swtpm.sock").exists()
    # the next start is a new TPM boot: fresh PCRs, a fresh log, the old one kept; same AK
    t.start()
    assert t.swtpm_pid() != swtpm
    events, pcrs, consistent, why = t.get_log()
    assert events == [] and consistent and pcrs[BOOT] == bytes(32)
    assert len((t.run / "measurements.log.old").read_text().splitlines()) == 2
    info = t.info()
    assert info[4][0] == ak_name and info[3][0] == ak_pem
    # SIGTERM alone (the link still open) is a stop as well
    swtpm = t.swtpm_pid()
    t.proc.send_signal(signal.SIGTERM)
    assert t.proc.wait(timeout=15) == 0
    t.proc = None
    assert swtpm_processes(t.base) == []


def test_no_quote_after_a_tpm_reset_until_trustmed_measured_again(new_tpmd):
    """Found in review: after a TPM reset the new tpmd answered quotes at once. trustmed
    measures the boot events, then the running containers again, in separate requests: a
    verifier polling in between got a quote of the boot events alone ("trusted (4 events)")
    while containers ran. tpmd now holds quotes after a reset until trustmed's Measure with
    complete (field 141), which trustmed sends behind the containers' measurements."""
    t = new_tpmd().start()
    t.measure(event(BOOT, "binary", "trustmed", sha("d")),
              event(RUNTIME, "container-config", "c", sha("c")))
    host, port = t.attest_address()
    assert 11 in t_quote(host, port)          # no reset yet: quotes as usual
    t.stop()                                  # the TPM powers off: the next start is a reset
    t.start()
    assert t.ready.get(160) == [1]            # log_restarted
    host, port = t.attest_address()
    t.measure(event(BOOT, "binary", "trustmed", sha("d")))   # the boot events are back...
    resp = t_quote(host, port)                # ...but the container is not: no quote
    assert 10 in resp and 11 not in resp, resp
    code, msg = parse(resp[10][0])[1][0], parse(resp[10][0])[2][0].decode()
    assert code == 11 and "TPM was reset" in msg, msg     # EAGAIN
    assert t.error(ATTEST_RQ, attest_request(3, os.urandom(32)))[0] == 11
    # the container again, then the end of the re-measurement: quotes again, with both events
    t.measure(event(RUNTIME, "container-config", "c", sha("c")))
    assert 10 in t_quote(host, port)
    t.ok(MEASURE, field_varint(141, 1), MEASURED)
    nonce = os.urandom(32)
    with socket.create_connection((host, port), timeout=10) as conn:
        resp = tcp_call(conn, attest_request(1, nonce))
    assert 11 in resp, resp
    _, events, _ = check_quote(parse(resp[11][0]), nonce, [RUNTIME, BOOT])
    assert [e["name"] for e in events] == ["trustmed", "c"]
    # a tpmd restart without a reset keeps its log: no hold
    t.kill9()
    t.start()
    assert t.ready.get(160) is None
    host, port = t.attest_address()
    assert 11 in t_quote(host, port)
    t.stop()


def t_quote(host, port):
    with socket.create_connection((host, port), timeout=10) as conn:
        return tcp_call(conn, attest_request(1, os.urandom(32)))


def test_swtpm_killed_under_requests_tpmd_exits(new_tpmd):
    """With the swtpm killed under a running tpmd, every later call failed with
    "Function called in the wrong order" until tpmd was killed. tpmd now exits with an error
    (trustmed restarts it) and the next tpmd starts a new swtpm."""
    import threading
    t = new_tpmd().start()
    host, port = t.attest_address()
    swtpm = t.swtpm_pid()
    stop = threading.Event()
    answers = []

    def flood():
        while not stop.is_set():
            try:
                with socket.create_connection((host, port), timeout=5) as conn:
                    answers.append(tcp_call(conn, attest_request(1, os.urandom(32))))
            except (OSError, EOFError):
                answers.append(None)
                time.sleep(0.01)
    threads = [threading.Thread(target=flood) for _ in range(3)]
    for th in threads:
        th.start()
    try:
        time.sleep(0.3)
        os.kill(swtpm, signal.SIGKILL)
        t.proc.wait(timeout=10)
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert t.proc.returncode == 1
    log = (t.base / "tpmd.log").read_text()
    assert "the connection to the TPM broke" in log
    assert sum(1 for a in answers if a and 11 in a) > 0
    t.sock.close()
    t.proc = None
    # the next tpmd has a TPM again: a new swtpm, fresh PCRs
    t.start()
    assert t.swtpm_pid() != swtpm
    assert t.get_log()[1][BOOT] == bytes(32)
    t.stop()


def test_swtpm_log_is_bounded(tpmd):
    """Swtpm.log grew ~18 MB/min under a quote flood. swtpm logs only with
    --swtpm-log (debugging)."""
    host, port = tpmd.attest_address()
    with socket.create_connection((host, port), timeout=10) as conn:
        for i in range(300):
            assert 11 in tcp_call(conn, attest_request(i, os.urandom(32)))
    log = tpmd.run / "swtpm.log"
    assert not log.exists() or log.stat().st_size < 4096


def quote_works(t):
    host, port = t.attest_address()
    nonce = os.urandom(32)
    with socket.create_connection((host, port), timeout=10) as conn:
        resp = tcp_call(conn, attest_request(1, nonce))
    assert 11 in resp, f"no quote: {parse(resp[10][0]) if 10 in resp else resp}"
    check_quote(parse(resp[11][0]), nonce, [RUNTIME, BOOT])


def test_da_lockout_does_not_stop_attestation(new_tpmd):
    """The AK was not noda, each unclean swtpm stop after a quote counted as a
    dictionary-attack failure, and after three every quote failed with TPM_RC_LOCKOUT. The AK is
    noda now, tpmd reports the DA state and clears it at start (empty lockout auth on swtpm)."""
    t = new_tpmd().start()
    quote_works(t)
    for _ in range(3):
        swtpm = t.swtpm_pid()
        t.kill9()
        os.kill(swtpm, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not process_gone(swtpm) and time.monotonic() < deadline:
            time.sleep(0.02)
        t.start()
        quote_works(t)
    info = t.info()
    assert info[160] == [0] and info[161] == [0] and info[162][0] >= 1
    # someone else's wrong passwords put the TPM into lockout: the next tpmd clears it
    t.kill9()
    tcti = ["-T", f"swtpm:path={t.run}/swtpm.sock"]
    subprocess.run([tool("tpm2_createprimary"), "-C", "o", "-p", "right", "-c", str(t.base / "p.ctx"),
                    "-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|decrypt",
                    *tcti], check=True, capture_output=True)
    for _ in range(4):
        # no resource manager: flush what each tool leaves loaded
        subprocess.run([tool("tpm2_flushcontext"), "-t", *tcti], check=True, capture_output=True)
        subprocess.run([tool("tpm2_flushcontext"), "-s", *tcti], check=True, capture_output=True)
        subprocess.run([tool("tpm2_create"), "-C", str(t.base / "p.ctx"), "-P", "wrong",
                        "-u", str(t.base / "k.pub"), "-r", str(t.base / "k.priv"), *tcti],
                       capture_output=True)
    out = subprocess.run([tool("tpm2_getcap"), "properties-variable", *tcti], check=True,
                         capture_output=True, text=True).stdout
    assert " inLockout: 1" in " ".join(out.split()).replace(" inLockout: ", " inLockout: "), out
    t.start()
    assert t.ready.get(163) == [1] and t.ready[162][0] >= 1, t.ready
    info = t.info()
    assert info[160] == [0] and info[161] == [0]
    assert "cleared the TPM's dictionary-attack failure count" in (t.base / "tpmd.log").read_text()
    quote_works(t)
    t.stop()


BOOT_EVENTS = [("binary", "trustmed"), ("binary", "trustme-scd"), ("binary", "trustme-tpmd"),
               ("device-config", "device.json")]


def test_pre_extended_boot_pcr_gets_no_secret(new_tpmd):
    """Root extends the boot PCR of a fresh TPM with the genuine layer's four digests,
    then a modified trustmed's own measurement fails (or is never sent): the seal's PCR policy is
    satisfied, but the log explains nothing of it. tpmd withholds the secret."""
    t = new_tpmd().start()
    events = [event(BOOT, typ, name, sha(name)) for typ, name in BOOT_EVENTS]
    t.measure(*events)
    secret = t.ok(STORAGE_SECRET, b"", SECRET)[1][0]
    t.stop()                      # power off: the next start is a fresh TPM boot
    t.start()
    t.kill9()                     # the swtpm stays, with fresh PCRs
    tcti = ["-T", f"swtpm:path={t.run}/swtpm.sock"]
    for typ, name in BOOT_EVENTS:
        subprocess.run([tool("tpm2_pcrextend"), f"{BOOT}:sha256=" + event_digest(BOOT, typ, name, sha(name)).hex(),
                        *tcti], check=True, capture_output=True)
    t.start()
    code, msg = t.error(STORAGE_SECRET)
    assert code == 1 and "nothing has been measured" in msg, msg
    # the genuine layer measuring itself now doubles the PCR: still no secret
    t.measure(*events)
    code, msg = t.error(STORAGE_SECRET)
    assert code == 1 and "does not explain" in msg, msg
    # a clean TPM boot with the genuine measurements gets it back
    t.stop()
    t.start()
    t.measure(*events)
    assert t.ok(STORAGE_SECRET, b"", SECRET)[1][0] == secret
    t.stop()


def test_runs_unprivileged_with_no_leftovers(new_tpmd):
    t = new_tpmd().start()
    st = os.stat(f"/proc/{t.swtpm_pid()}")
    uid = pwd.getpwnam(USER).pw_uid
    assert st.st_uid == uid
    status = Path(f"/proc/{t.proc.pid}/status").read_text()
    assert f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}" in status
    assert "CapEff:\t0000000000000000" in status
    # tpmd holds only its own fds: no inherited fd but the link (3)
    fds = os.listdir(f"/proc/{t.proc.pid}/fd")
    assert len(fds) < 16
    # swtpm did not inherit the link to trustmed
    swtpm_fds = [os.readlink(f"/proc/{t.swtpm_pid()}/fd/{f}") for f in os.listdir(f"/proc/{t.swtpm_pid()}/fd")]
    link = os.readlink(f"/proc/{t.proc.pid}/fd/3")
    assert link not in swtpm_fds
    # a second tpmd on the same run dir is refused
    second = subprocess.run([tool("setpriv"), "--reuid", USER, "--regid", USER, "--clear-groups", str(TPMD),
                             "--data-dir", str(t.data), "--run-dir", str(t.run)],
                            preexec_fn=lambda: os.dup2(0, 3), close_fds=False,
                            capture_output=True, text=True, timeout=10)
    assert second.returncode == 1 and "another trustme-tpmd" in second.stderr
    # data files are private to the tpmd user
    for name in ("ak.pub", "ak.priv"):
        st = os.stat(t.data / name)
        assert st.st_uid == uid and st.st_mode & 0o077 == 0
    t.stop()


# ---- the sealed secret, through tpmd ----------------------------------------------------------------



def test_storage_secret_and_counters(tpmd):
    tpmd.measure(event(BOOT, "binary", "trustmed", sha("d")))
    s = tpmd.ok(STORAGE_SECRET, b"", SECRET)
    secret = s[1][0]
    assert len(secret) == 32 and s[2] == [1]
    recovery = Path(s[3][0].decode())
    # never kept in the data dir: tpmd moves it to its run dir (a tmpfs on a device)
    assert recovery.parent == tpmd.run and recovery.exists()
    assert not (tpmd.data / "recovery-key").exists()
    assert tpmd.info()[9] == [1]
    again = tpmd.ok(STORAGE_SECRET, b"", SECRET)
    assert again[1][0] == secret and again.get(2, [0]) == [0]
    # another boot state: the PCR policy fails, and says so
    tpmd.measure(event(BOOT, "binary", "trustme-tpmd", sha("other")))
    code, msg = tpmd.error(STORAGE_SECRET)
    assert code == 13, msg
    # the recovery key reseals the same secret to the new state; a wrong one changes nothing
    key = bytes.fromhex(recovery.read_text().strip())
    assert tpmd.error(RESEAL, field_bytes(1, os.urandom(32)))[0] == 13
    assert tpmd.error(RESEAL, field_bytes(1, key[:31]))[0] == 22
    assert tpmd.ok(RESEAL, field_bytes(1, key), SECRET)[1][0] == secret
    assert tpmd.ok(STORAGE_SECRET, b"", SECRET)[1][0] == secret
    # the per-name NV counters are gone (the anchor table replaced them): refused as unknown
    assert tpmd.error(OLD_COUNTER_GET, field_bytes(1, b"os-a"))[0] == 95  # EOPNOTSUPP
    assert tpmd.error(OLD_COUNTER_RAISE, field_bytes(1, b"os-a") + field_varint(2, 5))[0] == 95
