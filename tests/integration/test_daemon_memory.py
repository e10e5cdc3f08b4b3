# SPDX-License-Identifier: GPL-2.0-or-later
"""trustmed's resident memory (docs/BENCHMARKS.md "Memory"): what it maps for good."""
from pathlib import Path


def test_trustmed_loads_no_nss_module(daemon):
    """The helper services' users come from /etc/passwd and /etc/group themselves: an NSS lookup
    would leave nsswitch.conf's modules (libnss_systemd, and libm with it) mapped in trustmed for
    the rest of its life, about 600 KiB of its RSS."""
    assert daemon.cli("list").returncode == 0  # up, scd and tpmd started under their users
    maps = Path(f"/proc/{daemon.proc.pid}/maps").read_text()
    nss = sorted({line.split()[-1] for line in maps.splitlines() if "libnss_" in line})
    assert nss == [], f"trustmed maps NSS modules: {nss}"
