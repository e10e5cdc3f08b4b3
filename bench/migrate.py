#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Container migration between two devices (docs/MIGRATION.md), as root:

    bench/migrate.py --section DIR [--smoke] [--runs N] [--mib M]      (bench/migrate.sh for run-all)

Two trustmeds of the build tree (the integration tests' Daemon, each with its own embedded
swtpm), provisioned by a fresh test PKI, the same GuestOS installed on both. A container with a
soft token and an M MiB data volume (default 100; filled with random bytes) is created on the
source. A first offer, without tpmd's spare key (the key created in the TPM), is reported apart.
Each run: the target's offer (`trustme migrate offer`, with the spare key made after the previous
offer; the bench waits for it, as two devices would not share cores), the source's verification of it
alone (an export to a container that does not exist: every check runs, then trustmed says so),
the export (verification, the data key unwrapped with the PIN, the bundle written; `trustme list` asked over and over
meanwhile, its longest wait kept), a plain copy
of the bundle (the bytes a transport must move, timed in the same run), the import on the target
(the TPM unwraps, every part hashed, the container installed, the receipt signed). Between runs
the target's copy is removed and the source's lock file deleted by hand (a commit would erase the
source's container). The offer and verify steps are also given in CPU time (the CLI's, and that
of both devices' trustmed, scd, tpmd and swtpm). Writes DIR/section.md and DIR/targets.md. MIGRATE_RUNS, MIGRATE_MIB: the
defaults of --runs and --mib."""
import argparse
import json
import os
import resource
import secrets
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests/integration"))

import conftest  # noqa: E402
from conftest import TEST_PREFIX, Daemon  # noqa: E402
from test_attestation import make_refs, pki_of  # noqa: E402
from test_device import measurements, provision, secret_ok  # noqa: E402
from test_migrate_tcp import answer, field, frame, free_port  # noqa: E402
from test_guestos import Env, install, start_with_device  # noqa: E402
from test_storage import PIN, PUK, pin_file  # noqa: E402

KDF = ["--scd-kdf-n", "1024"]


def timed(fn):
    t = time.monotonic()
    fn()
    return (time.monotonic() - t) * 1000


def daemon_pids(*devs):
    """trustmed, scd, tpmd and the embedded swtpm (daemonized: found by its state dir) of devs."""
    out = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if any(str(d.base).encode() in cmd for d in devs):
                out.add(int(p.name))
    return sorted(out)


def cpu_ms(pids):
    tck, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total * 1000 / tck


def measured(fn, pids):
    """Wall ms, and CPU ms of the CLI (children) plus the daemons (10 ms ticks), of fn."""
    r0, c0 = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_ms(pids)
    w = timed(fn)
    r1, c1 = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_ms(pids)
    return w, (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1000 + c1 - c0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--section", required=True)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("MIGRATE_RUNS", "5")))
    ap.add_argument("--mib", type=int, default=int(os.environ.get("MIGRATE_MIB", "100")))
    a = ap.parse_args()
    if a.smoke:
        a.runs, a.mib = 1, 16
    out = Path(a.section)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}-bench-mig-"))
    root.chmod(0o711)
    devs = []
    try:
        rootfs = root / "rootfs"
        subprocess.run([str(REPO / "scripts/mkrootfs.sh"), str(rootfs), str(conftest.PROBE)], check=True,
                       capture_output=True)
        (root / "env").mkdir()
        env = Env(root / "env", rootfs)
        s = Daemon(Path(tempfile.mkdtemp(prefix="s-", dir=root)), f"{TEST_PREFIX}-{os.getpid()}-bm-s", rootfs, KDF)
        t = Daemon(Path(tempfile.mkdtemp(prefix="t-", dir=root)), f"{TEST_PREFIX}-{os.getpid()}-bm-t", rootfs, KDF)
        devs = [s, t]
        start_with_device(s, env.device())
        secret_ok(s)
        # Both devices hold an AK certificate: the target authenticates the source by its AK.
        provision(s, pki_of(env), s.base, cn="bench-source")
        # The target: the source's device.json and the migration endpoint (docs/MIGRATION.md "Over
        # TCP"), whose offer is timed too.
        port = free_port()
        t.data_dir.mkdir(parents=True, exist_ok=True)
        tcfg = json.loads((s.data_dir / "device.json").read_text())
        tcfg["migrate"] = {"address": f"127.0.0.1:{port}"}
        (t.data_dir / "device.json").write_text(json.dumps(tcfg))
        t.start()
        secret_ok(t)
        measurements(t)
        provision(t, pki_of(env), t.base, cn="bench-target")
        gos = env.build("bb", 1)
        install(s, gos)
        install(t, gos)
        refs = make_refs(env, root / "refs.json", [gos], [("device-config", t.data_dir / "device.json")])
        pcrs = json.loads(refs.read_text())["pcrs"]
        trust = ["--ak-anchor", env.cert("general-root-ca"), "--device-ca", env.cert("device-ca"),
                 "--rim-anchor", env.cert("root-ca"), "--rim-ca", env.cert("sub-ca"),
                 "--crl", env.pki / "crls.pem", "--reference", refs]
        def make_container(name):
            cfg = s.configs / f"{name}.json"
            cfg.write_text(json.dumps({"name": name, "guestos": {"name": "bb"}, "token": {"type": "soft"},
                                       "data_size_mb": a.mib + 16}))
            s.cli("create", cfg)
            s.cli("change-pin", "--pin-file", pin_file(s, PIN, PUK), name)
            s.cli("start", "--pin-file", pin_file(s, PIN), name)
            s.sh(name, f"head -c {a.mib * 1024 * 1024} /dev/urandom > /root/fill; sync", timeout=600)
            s.cli("stop", name)

        def tcp_offer(nonce):
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                sock.sendall(frame(field(940, 1) + field(941, bytes.fromhex(nonce))
                                   + b"".join(field(942, n) for n in pcrs)))
                got = answer(sock)
            assert got and 945 in got, got

        def spare_ready():
            deadline = time.monotonic() + 60
            while not spare.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)

        rows = {k: [] for k in ("tcp_offer", "tcp_offer_cpu", "offer", "verify", "export", "copy", "import", "bundle_mib", "offer_cpu",
                                "verify_cpu", "list_during")}
        pids = daemon_pids(s, t)
        spare = t.data_dir / "tpm" / "migrate" / "spare.pub"
        first = {}
        for i in range(a.runs + 1):
            # The source's nonce names its AK (docs/MIGRATION.md "Source binding").
            nonce = s.cli("migrate", "nonce").stdout.strip()
            offer = root / f"offer-{i}"
            # The first offer after the start has no spare key: it creates its key (reported
            # apart). Each offer then has tpmd make the next one's; on two devices that runs
            # while the source verifies, here it would compete for the cores: waited for.
            w, c = measured(lambda: t.cli("migrate", "offer", "--nonce", nonce, "--out", offer,
                                          *[x for n in pcrs for x in ("--pcr", str(n))]), pids)
            spare_ready()
            if i:
                # The same offer over the endpoint: no CLI process on the target.
                tw, tc = measured(lambda: tcp_offer(secrets.token_hex(32)), pids)
                rows["tcp_offer"].append(tw)
                rows["tcp_offer_cpu"].append(tc)
                spare_ready()
            if i == 0:
                first["offer"], first["offer_cpu"] = w, c
            else:
                rows["offer"].append(w)
                rows["offer_cpu"].append(c)
            # Verification alone: the container does not exist, so the CLI stops right after it.
            v = {}

            def verify_only():
                v["r"] = s.cli("migrate", "export", "no-such", "--offer", offer, "--nonce", nonce, "--out",
                               root / "none", "--pin-file", pin_file(s, PIN), *trust, check=False)
            w, c = measured(verify_only, pids)
            if i:
                rows["verify"].append(w)
                rows["verify_cpu"].append(c)
            assert "no-such" in v["r"].stderr and "offer refused" not in v["r"].stderr, v["r"].stderr
            if i == 0:
                continue
            # A container of its own per run: the source's TPM records each export, so a
            # container once exported can only be committed or aborted, never exported again.
            name = f"m{i}"
            make_container(name)
            bundle = root / f"bundle-{i}"
            # `trustme list` on the source, over and over while the export runs (its worker writes
            # the bundle; trustmed answers meanwhile): the longest wait.
            t0 = time.monotonic()
            proc = subprocess.Popen([str(conftest.TRUSTME), "--run-dir", str(s.run_dir), "migrate", "export", name,
                                     "--offer", str(offer), "--nonce", nonce, "--out", str(bundle), "--pin-file",
                                     str(pin_file(s, PIN, PUK)), *map(str, trust)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            waits = []
            while proc.poll() is None:
                waits.append(timed(lambda: s.cli("list")))
            err = proc.communicate()[1]
            assert proc.returncode == 0, err
            rows["export"].append((time.monotonic() - t0) * 1000)
            rows["list_during"].append(max(waits) if waits else 0)
            rows["bundle_mib"].append(bundle.stat().st_size / 1048576)
            copy = root / f"copy-{i}"
            rows["copy"].append(timed(lambda: subprocess.run(["cp", bundle, copy], check=True)))
            bundle.unlink()
            receipt = root / f"receipt-{i}"
            rows["import"].append(timed(lambda: t.cli("migrate", "import", copy, "--out", receipt, timeout=600)))
            copy.unlink()
            # The protocol's end: the source commits on the receipt (its copy crypto-erased), and the
            # target drops the imported container, so that the disks do not fill up over the runs.
            s.cli("migrate", "commit", name, "--receipt", receipt)
            t.cli("remove", name)
        med = {k: statistics.median(v) for k, v in rows.items()}
        beyond = med["import"] - med["copy"]
        load = " ".join(open("/proc/loadavg").read().split()[:3])
        ok_import = beyond < 2000
        ok_verify = med["offer"] + med["verify"] < 50
        ok_verify_cpu = med["offer_cpu"] + med["verify_cpu"] < 50
        (out / "section.md").write_text(f"""## Migration (`bench/migrate.py`)

Two trustmeds of the build tree, each with its own embedded swtpm, provisioned by a test PKI; a
container with a soft token and a {a.mib} MiB data volume filled with random bytes (a bundle of
{med['bundle_mib']:.0f} MiB). Medians of {a.runs} run(s), wall time of each `trustme` command,
load average {load} (docs/MIGRATION.md has the protocol):

| step | ms |
|---|---|
| offer (target: the spare key taken, certified, quoted; CPU {med['offer_cpu']:.0f} ms) | {med['offer']:.0f} |
| offer over the target's migration endpoint (the same, no CLI process there; CPU {med['tcp_offer_cpu']:.0f} ms) | {med['tcp_offer']:.0f} |
| (the first offer after a start: no spare yet, the key created in the TPM; CPU {first['offer_cpu']:.0f} ms) | {first['offer']:.0f} |
| verify (source: the verifier's checks and the key's certification, alone; CPU {med['verify_cpu']:.0f} ms) | {med['verify']:.0f} |
| export (verify, PIN, data key, bundle written and synced) | {med['export']:.0f} |
| the longest `trustme list` on the source while the export ran (its worker writes the bundle) | {med['list_during']:.0f} |
| copy of the bundle (`cp`, the bytes a transport moves) | {med['copy']:.0f} |
| import (target: TPM unwrap, every part hashed, install, receipt) | {med['import']:.0f} |

Target time beyond the copy: {beyond:.0f} ms against < 2000 ms: {'PASS' if ok_import else 'FAIL'}.
Offer and verify: {med['offer'] + med['verify']:.0f} ms against < 50 ms: {'PASS' if ok_verify else 'FAIL'}; in CPU
time (both CLIs, trustmed, scd, tpmd and swtpm of both devices; 10 ms ticks for the daemons)
{med['offer_cpu'] + med['verify_cpu']:.0f} ms: {'PASS' if ok_verify_cpu else 'FAIL'}. Each of the two is a CLI process (about 10 ms
of CPU to start, mostly the dynamic linker relocating libcrypto).
""")
        (out / "targets.md").write_text(
            f"| migration: target time beyond copying {a.mib} MiB | {beyond:.0f} ms | "
            f"**{'PASS' if ok_import else 'FAIL'}** |\n"
            f"| migration: offer + verify < 50 ms (wall / CPU) | {med['offer'] + med['verify']:.0f} / "
            f"{med['offer_cpu'] + med['verify_cpu']:.0f} ms | "
            f"**{'PASS' if ok_verify else 'FAIL'} / {'PASS' if ok_verify_cpu else 'FAIL'}** |\n")
        print((out / "section.md").read_text())
        return 0
    finally:
        for d in devs:
            d.teardown()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
