# SPDX-License-Identifier: GPL-2.0-or-later
"""trustmed's resident memory (docs/BENCHMARKS.md "Memory"): what it maps for good."""
import time
from pathlib import Path

from conftest import wait_for


def test_trustmed_loads_no_nss_module(daemon):
    """The helper services' users come from /etc/passwd and /etc/group themselves: an NSS lookup
    would leave nsswitch.conf's modules (libnss_systemd, and libm with it) mapped in trustmed for
    the rest of its life, about 600 KiB of its RSS."""
    assert daemon.cli("list").returncode == 0  # up, scd and tpmd started under their users
    maps = Path(f"/proc/{daemon.proc.pid}/maps").read_text()
    nss = sorted({line.split()[-1] for line in maps.splitlines() if "libnss_" in line})
    assert nss == [], f"trustmed maps NSS modules: {nss}"


def _child(daemon, name):
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except (OSError, IndexError, ValueError):
            continue
        if ppid == daemon.proc.pid and cmd == name.encode():
            return int(entry.name)
    return None


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int([l for l in f if l.startswith("VmRSS")][0].split()[1])


def _wait_idle_small(pids, limit_kib=4096, timeout=15):
    """Every pid's VmRSS below limit_kib within timeout (the services give memory back
    TM_IDLE_RELEASE_MS = 2 s after their last request); returns the last figures."""
    deadline = time.monotonic() + timeout
    while True:
        rss = {name: _rss_kib(pid) for name, pid in pids.items()}
        if all(v < limit_kib for v in rss.values()) or time.monotonic() > deadline:
            return rss
        time.sleep(0.25)


def test_services_give_memory_back_when_idle(daemon, tmp_path):
    """trustmed (no client connected), trustme-scd and trustme-tpmd drop their heap's free pages
    and the library pages their work touched (libcrypto's, most of it) once idle: each below 4 MiB
    RSS, and the next request still works (the pages come back from the page cache)."""
    assert daemon.cli("list").returncode == 0
    # A child between its fork and its exec still shows trustmed's command line: on a loaded
    # machine the services may not have reached their exec when the first request is answered.
    def services():
        found = {"trustmed": daemon.proc.pid, "trustme-scd": _child(daemon, "trustme-scd"),
                 "trustme-tpmd": _child(daemon, "trustme-tpmd")}
        return found if all(found.values()) else None
    pids = wait_for(services, timeout=30, interval=0.1, what="trustme-scd and trustme-tpmd")
    rss = _wait_idle_small(pids)
    assert all(v < 4096 for v in rss.values()), f"idle VmRSS (KiB): {rss}"
    # tpmd signs a CSR in the TPM with OpenSSL after the drop, then gives it back again.
    csr = tmp_path / "device.csr"
    daemon.cli("device", "csr", f"--out={csr}", "--cn=idle-device")
    assert csr.read_text().startswith("-----BEGIN CERTIFICATE REQUEST-----")
    rss = _wait_idle_small(pids)
    assert all(v < 4096 for v in rss.values()), f"idle VmRSS after a CSR (KiB): {rss}"
