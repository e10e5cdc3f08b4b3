# SPDX-License-Identifier: GPL-2.0-or-later
"""Fresh-eyes review of the device's side of the fleet's pull over TLS (`trustme-fleet
attest-tls`, docs/FLEET.md "The pull path over TLS"): the network offers TLS 1.2, talks plain
text, completes handshakes and then idles or sends a frame a byte at a time, announces a 4 GiB
frame, and holds every connection slot that way while a genuine client asks for its quote. One
provisioned device with its TLS key in its TPM; no fleet database is needed for these."""
import os
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

import conftest
from pb import encode, frame, parse
from test_attestation import attest_address, module_daemon, pki_of
from test_device import PKI_TOOL
from test_fleet import attest_tls
from test_guestos import env  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def endpoint(env, test_root, rootfs):  # noqa: F811
    """A provisioned device, its TLS certificate (key in its TPM) and attest-tls in front of its
    tpmd: (address, device)."""
    d = module_daemon(test_root, rootfs, "ftr")
    p = None
    try:
        conftest.provisioned_device(d, env, "fleet-review")
        work = Path(test_root) / "fleet-review-tls"
        work.mkdir()
        d.cli("device", "csr", "--tls", "--cn", "fleet-review tls", "--out", work / "tls.csr")
        pki = pki_of(env)
        subprocess.run([str(PKI_TOOL), "issue", "--pki", pki["dir"], "--ca", "device", "--profile", "tls", "--csr",
                        work / "tls.csr", "--out", work / "tls.pem", "--passphrase-file", pki["pass"]],
                       check=True, capture_output=True, timeout=60)
        (work / "chain.pem").write_text((work / "tls.pem").read_text() + env.cert("device-ca").read_text())
        addr, p = attest_tls(d, work / "chain.pem", attest_address(d))
        yield addr, d
    finally:
        if p:
            p.terminate()
            p.wait(timeout=10)
        d.teardown()


def tls_client(addr, maximum=ssl.TLSVersion.TLSv1_3):
    host, port = addr.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = maximum
    raw = socket.create_connection((host, int(port)), timeout=20)
    return ctx.wrap_socket(raw)


def closed_within(s, seconds):
    """Seconds until the peer closed s (reading all it sends), or None if still open."""
    t0 = time.monotonic()
    s.settimeout(0.5)
    while time.monotonic() - t0 < seconds:
        try:
            if not s.recv(4096):
                return time.monotonic() - t0
        except (socket.timeout, TimeoutError):
            continue
        except (ssl.SSLError, OSError):
            return time.monotonic() - t0
    return None


def quote_over_tls(addr):
    s = tls_client(addr)
    with s:
        s.sendall(frame(encode({1: [1], 2: [9], 3: [os.urandom(32)], 4: [11]})))
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
            chunk = s.recv(65536)
            assert chunk, "closed before the whole answer"
            data += chunk
    return parse(data[4:])


def test_tls_downgrade_and_plain_text_are_refused(endpoint):
    addr, _ = endpoint
    with pytest.raises(ssl.SSLError):
        tls_client(addr, maximum=ssl.TLSVersion.TLSv1_2)
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall(frame(encode({1: [1], 2: [9], 3: [os.urandom(32)], 4: [11]})))
        assert closed_within(s, 15) is not None
        # nothing but a TLS alert came back: no quote in the clear
    assert 2 in quote_over_tls(addr)  # the genuine client gets its answer (field id)


def test_idle_and_slow_clients_are_cut_and_do_not_lock_out(endpoint):
    """After the handshake: a client that sends nothing, one that sends its frame header a byte
    every 2 s, one that announces a 4 GiB frame. Each is closed by the device's 10 s per
    request (the 4 GiB one at once); 16 such slow clients held at once do not keep a genuine
    client from its quote."""
    addr, _ = endpoint
    idle = tls_client(addr)
    huge = tls_client(addr)
    huge.sendall(struct.pack(">I", 0xFFFFFFFF))
    t = closed_within(huge, 5)
    assert t is not None and t < 3, t
    slow = tls_client(addr)
    t0 = time.monotonic()
    cut = None
    for b in b"\x00\x00\x00\x40" + b"\x00" * 8:
        try:
            slow.send(bytes([b]))
        except (ssl.SSLError, OSError):
            cut = time.monotonic() - t0
            break
        if closed_within(slow, 2) is not None:
            cut = time.monotonic() - t0
            break
    assert cut is not None and cut < 14, f"a client sending a byte every 2 s held its slot {cut} s"
    t = closed_within(idle, 15)
    assert t is not None, "an idle client kept its connection"
    held = [tls_client(addr) for _ in range(16)]
    try:
        for s in held:
            s.send(b"\x00")  # a frame begun
        t0 = time.monotonic()
        answer = quote_over_tls(addr)
        print(f"a genuine quote over TLS with 16 slow clients holding the slots: {time.monotonic() - t0:.2f} s")
        assert 2 in answer and answer[2] == [9], answer
    finally:
        for s in held:
            s.close()


def test_connection_flood_from_one_address_does_not_cut_others(endpoint):
    """A client at another address (127.0.0.2, as any host that reaches the port) keeps opening
    TCP connections and sends nothing: each one takes a child, and when the 16 are taken the
    oldest connection is closed for the new one. A genuine client's exchange (its handshake needs
    a TPM signature) must not be the one closed. The flood is paced (a few hundred connections a
    second, far more than 16 per handshake): unpaced, it overflows the kernel's accept queue and
    delays every connection, which is the network's business (SYN cookies, a firewall), not the
    eviction rule this checks."""
    import threading
    addr, _ = endpoint
    host, port = addr.rsplit(":", 1)
    stop = threading.Event()
    opened = [0]

    def flood():
        socks = []
        while not stop.is_set():
            try:
                s = socket.socket()
                s.bind(("127.0.0.2", 0))
                s.setblocking(False)
                s.connect_ex((host, int(port)))  # no wait for the answer: as fast as SYNs go
                socks.append(s)
                opened[0] += 1
            except OSError:
                time.sleep(0.005)
            if len(socks) > 256:
                socks.pop(0).close()
            time.sleep(0.004)
        for s in socks:
            s.close()
    threads = [threading.Thread(target=flood)]
    for t in threads:
        t.start()
    ok = failed = 0
    try:
        time.sleep(0.5)
        for _ in range(12):
            try:
                if 2 in quote_over_tls(addr):
                    ok += 1
            except (ssl.SSLError, OSError, AssertionError):
                failed += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"{opened[0]} flood connections; genuine exchanges: {ok} answered, {failed} cut")
    assert ok == 12, f"{failed} of 12 genuine exchanges were cut by one address's connection flood"
