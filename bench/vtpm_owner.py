#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Take-ownership of a container's vTPM end to end (docs/VTPM.md "Remote take-ownership"), as root:

    bench/vtpm_owner.py OUTDIR [--runs N]

One trustmed of the build tree (the integration tests' Daemon, its embedded swtpm) with a vTPM
container, provisioned by a fresh test PKI; signed reference values for the device and the
container. Each run resets the vTPM (stop, `trustme vtpm reset`, start: new EKs, not timed) and
times `trustme-owner take` over loopback: the device's quote and its verification, the EK check,
the salted session, the attestation key, MakeCredential/ActivateCredential, the vTPM quote and
the container's log, and the three authorisation changes, process start to exit. Writes
OUTDIR/vtpm_owner.md (a table) and OUTDIR/vtpm_owner.env (OWN_* figures, ms)."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests/integration"))

from conftest import PROBE, TEST_PREFIX, Daemon  # noqa: E402
from test_device import provision  # noqa: E402
from test_vtpm import _copy_with_libs, create, start  # noqa: E402
from test_vtpm_owner import OWNER, RUNTIME, Pki, attest_address, container_log, sign_refs  # noqa: E402
from tools import tool  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    out = Path(a.outdir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}-bench-owner-"))
    root.chmod(0o711)
    d = None
    try:
        rootfs = root / "rootfs"
        subprocess.run([str(REPO / "scripts/mkrootfs.sh"), str(rootfs), str(PROBE)], check=True,
                       capture_output=True)
        tpm2 = tool("tpm2")
        _copy_with_libs(rootfs, [tpm2, "/usr/lib/x86_64-linux-gnu/libtss2-tcti-swtpm.so.0"])
        pki = Pki(root)
        base = Path(tempfile.mkdtemp(prefix="d-", dir=root))
        d = Daemon(base, f"{TEST_PREFIX}-{os.getpid()}-bench-owner", rootfs, ["--scd-kdf-n", "1024"])
        d.start()
        create(d, "c", rootfs)
        start(d, "c")
        provision(d, {"dir": pki.dir, "pass": pki.passfile}, base, cn="bench-device")
        import json
        m = json.loads(d.cli("measurements", "--json").stdout)
        values = [{"type": e["type"], "name": e["name"], "sha256": e["sha256"]} for e in m["events"]
                  if e["type"] != "vtpm-ek"]
        refs = sign_refs(pki, root / "refs.json", values, [RUNTIME, 12])
        cvalues = []
        for line in container_log(d, "c").splitlines():
            _, typ, sha, name = line.split(" ", 3)
            cvalues.append({"type": typ, "name": name, "sha256": sha})
        crefs = sign_refs(pki, root / "crefs.json", cvalues, [RUNTIME])
        uuid = d.state("c")["uuid"]
        times = []
        for i in range(a.runs):
            if i:
                d.cli("stop", "c")
                for _ in range(500):
                    if d.state("c")["state"] == "stopped" and not (d.run_dir / "vtpm" / uuid / "pub/tpm.sock").exists():
                        break
                    time.sleep(0.02)
                d.cli("vtpm", "reset", "c")
                start(d, "c")
            auth = root / f"auth-{i}.json"
            t0 = time.monotonic()
            r = subprocess.run([OWNER, "take", attest_address(d), "--container", uuid, *pki.trust, "--reference",
                                refs, "--container-reference", crefs, "--auth-out", auth],
                               capture_output=True, text=True, timeout=60)
            times.append((time.monotonic() - t0) * 1000)
            if r.returncode != 0:
                sys.exit(f"trustme-owner failed:\n{r.stdout}{r.stderr}")
        med = statistics.median(times)
        worst = max(times)
        (out / "vtpm_owner.env").write_text(f"OWN_RUNS={a.runs}\nOWN_MEDIAN_MS={med:.1f}\nOWN_MAX_MS={worst:.1f}\n")
        (out / "vtpm_owner.md").write_text(
            "| take-ownership, end to end (trustme-owner process start to exit) | ms |\n|---|---|\n"
            f"| median of {a.runs} | {med:.1f} |\n| slowest | {worst:.1f} |\n")
        print(f"take-ownership: median {med:.1f} ms, slowest {worst:.1f} ms ({a.runs} runs)")
    finally:
        if d:
            d.teardown()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
