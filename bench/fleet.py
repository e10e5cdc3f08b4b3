#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""trustme-fleet under load (docs/BENCHMARKS.md "Fleet"). Run as root from the repository, after
scripts/build.sh:

    bench/fleet.py [--devices N] [--interval S] [--seconds T] [--workers W] [--threads K]
                   [--baseline BINARY [--rounds R]] [--smoke] [OUTFILE]

A device simulator: N real trustme-tpmd instances (each with its own embedded swtpm, started as
the tests start them: tests/integration/test_tpmd.py Tpmd), each with its EK certified by a test
manufacturer CA and its AK certified by a development PKI's Device CA through credential
activation, its boot events measured (the build's trustmed, trustme-scd, trustme-tpmd). A
private PostgreSQL (tests/integration/pgcluster.py), one group of interval S with signed
reference values of those binaries, every device enrolled (pull), W worker processes (default
2) of K threads each (default 1). After
a warm-up of one interval, T seconds are measured: verdicts per minute, their latency (the
worker's request to recorded verdict, latency_ms) p50/p99, how late devices were attested
(gaps between verdicts beyond the interval), and the database's bytes per verdict. Writes a JSON
summary to OUTFILE (default stdout).

--baseline BINARY: the same devices and database measured alternately with another
trustme-fleet (e.g. one built from an older commit) and this build's, R rounds each (default 2),
the workers restarted between them: the summary has both sides' per-round results, their medians
and the ratio of this build's median verdicts/min to the baseline's. --smoke: 3 devices, 5 s
measured (a check that the bench runs, a few seconds plus setup)."""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/integration"))

from pb import field_bytes  # noqa: E402
from pgcluster import Cluster, conninfo_env  # noqa: E402
from test_tpmd import (BOOT, CERT_INSTALL, CSR, DEVICE_CSR, OK, PKI, TPMD, Tpmd, event,  # noqa: E402
                       install_ek_cert, manufacturer_ca)

FLEET = ROOT / "build/src/fleet/trustme-fleet"
SCD = ROOT / "build/src/scd/trustme-scd"
TRUSTMED = ROOT / "build/src/daemon/trustmed"


def sh(*args, env=None):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} -> {r.returncode}\n{r.stderr}")
    return r.stdout


def sha_file(path):
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).digest()


def worker_cpu(pid):
    """CPU seconds (user + system) of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree(pid):
    """pid and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
        except OSError:
            pass
    return out


def run_workers(a, binary, env, pg, tpmds, work, procs):
    """Start the workers (binary), warm up one interval, measure a.seconds; the summary."""
    for w in range(a.workers):
        log = open(work / f"worker-{w}.log", "w")
        procs.append(subprocess.Popen([str(binary), "worker", "--name", f"w{w}", "--poll-ms", "50",
                                       "--threads", str(a.threads)],
                                      stdout=log, stderr=log, env=env))
    time.sleep(a.interval + 2)
    start_id = int(pg.psql("SELECT coalesce(max(id), 0) FROM verdicts", db="bench")[0][0])
    perf = None
    if a.perf:
        perf = subprocess.Popen(["perf", "record", "-q", "-F", "499", "-g", "-o", a.perf, "-p",
                                 ",".join(str(p.pid) for p in procs), "--", "sleep", str(a.seconds)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # where the machine's CPU goes: the workers, the simulated devices (tpmd and its swtpm),
    # PostgreSQL (the postmaster and its backends)
    groups = {"workers": [p.pid for p in procs],
              "devices": [p for t in tpmds for p in (t.proc.pid, t.swtpm_pid())],
              "postgres": tree(int((pg.data / "postmaster.pid").read_text().split()[0]))}
    cpu0 = {k: {p: worker_cpu(p) for p in v} for k, v in groups.items()}
    time.sleep(a.seconds)
    cpu = {k: sum(worker_cpu(p) - c for p, c in v.items()) for k, v in cpu0.items()}
    cpu_s = cpu["workers"]
    if perf:
        perf.wait(timeout=60)
    rows = pg.psql(f"SELECT device_id, extract(epoch FROM at), latency_ms, trusted, worker FROM verdicts "
                   f"WHERE id > {start_id} ORDER BY id", db="bench")
    size = int(pg.psql("SELECT pg_total_relation_size('verdicts')", db="bench")[0][0])
    total = int(pg.psql("SELECT count(*) FROM verdicts", db="bench")[0][0])
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=30)

    lat = sorted(int(r[2]) for r in rows)
    untrusted = sum(r[3] != "t" for r in rows)
    by_dev = {}
    for r in rows:
        by_dev.setdefault(r[0], []).append(float(r[1]))
    gaps = sorted(b - x for ts in by_dev.values() for x, b in zip(ts, ts[1:]))
    late = [g - a.interval for g in gaps]

    def pct(xs, p):
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else None
    res = {
        "devices": a.devices, "interval_s": a.interval, "workers": a.workers, "threads": a.threads, "seconds": a.seconds,
        "offered_per_min": round(a.devices * 60 / a.interval, 1),
        "verdicts": len(rows), "untrusted": untrusted,
        "verdicts_per_min": round(len(rows) * 60 / a.seconds, 1),
        "latency_ms_p50": pct(lat, 50), "latency_ms_p99": pct(lat, 99), "latency_ms_max": lat[-1] if lat else None,
        "lateness_s_p50": round(pct(late, 50), 3) if late else None,
        "lateness_s_p99": round(pct(late, 99), 3) if late else None,
        "verdict_bytes": round(size / total) if total else None,
        "bytes_per_device_day_at_1_per_min": round(size / total * 1440) if total else None,
        "workers_seen": sorted({r[4] for r in rows}),
        "worker_cpu_ms_per_verdict": round(cpu_s * 1000 / len(rows), 2) if rows else None,
        "device_cpu_ms_per_verdict": round(cpu["devices"] * 1000 / len(rows), 2) if rows else None,
        "postgres_cpu_ms_per_verdict": round(cpu["postgres"] * 1000 / len(rows), 2) if rows else None,
        "cpu_ms_per_verdict": round(sum(cpu.values()) * 1000 / len(rows), 2) if rows else None,
        "load_average": os.getloadavg()[0],
    }
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per worker process")
    ap.add_argument("--perf", help="perf record the workers during the measurement into this file "
                    "(their CPU by library and function: docs/BENCHMARKS.md \"Where a verdict's time goes\")")
    ap.add_argument("--baseline", help="another trustme-fleet binary to measure alternately with this build's")
    ap.add_argument("--rounds", type=int, default=2, help="with --baseline: measurements per binary")
    ap.add_argument("--smoke", action="store_true", help="3 devices, 5 s: does the bench run")
    ap.add_argument("out", nargs="?")
    a = ap.parse_args()
    if a.smoke:
        a.devices, a.seconds, a.interval = 3, 5, 2

    work = Path(tempfile.mkdtemp(prefix="trustme-bench-fleet-", dir="/tmp"))
    os.chmod(work, 0o755)
    tpmds, procs, pg = [], [], None
    global FLEET
    try:
        # a copy: a rebuild during the run must not pull the binary from under the workers
        shutil.copy(FLEET, work / "trustme-fleet")
        FLEET = work / "trustme-fleet"
        pw = work / "pass"
        pw.write_text("bench passphrase\n")
        pki = work / "pki"
        sh(PKI, "init", pki, "--passphrase-file", pw)
        mkey, mcert = manufacturer_ca(work)
        refs = work / "refs.json"
        sh(PKI, "rim", "--out", refs, "--version", "1", "--pcr", "11", "--pcr", "12",
           "--binary", TRUSTMED, "--binary", SCD, "--binary", TPMD)
        sh(PKI, "sign", refs, "--pki", pki, "--signer", "software", "--passphrase-file", pw)
        boot = [event(BOOT, "binary", p.name, sha_file(p)) for p in (TRUSTMED, SCD, TPMD)]

        pg = Cluster().start()
        conninfo = pg.create_db("bench")
        env = conninfo_env(conninfo)
        sh(FLEET, "migrate", env=env)
        sh(FLEET, "trust", "--ak-anchor", pki / "customer/general-root-ca.pem", "--device-ca",
           pki / "customer/device-ca.pem", "--rim-anchor", pki / "software-signing/root-ca.pem",
           "--rim-ca", pki / "software-signing/sub-ca.pem", "--no-crl", env=env)
        sh(FLEET, "group", "bench", "--reference", refs, "--interval", a.interval, env=env)

        t0 = time.monotonic()
        for i in range(a.devices):
            t = Tpmd(work / f"d{i}")
            tpmds.append(t)
            t.start()
            t.measure(*boot)
            install_ek_cert(t, work, mkey, mcert)
            csr = work / f"d{i}.csr"
            csr.write_bytes(t.ok(DEVICE_CSR, field_bytes(1, f"bench-{i}".encode()), CSR)[1][0])
            enc = work / f"d{i}.enc.pem"
            sh(PKI, "issue", "--pki", pki, "--ca", "device", "--csr", csr, "--out", enc,
               "--passphrase-file", pw, "--ek-anchor", mcert)
            t.ok(CERT_INSTALL, field_bytes(1, enc.read_bytes() + (pki / "customer/device-ca.pem").read_bytes()), OK)
            info = t.info()
            host, port = t.attest_address()
            (work / f"d{i}.json").write_text(json.dumps({"ak_name": info[4][0].hex(),
                                                        "cert_chain_pem": info[5][0].decode()}))
            sh(FLEET, "enroll", f"d{i}", "--group", "bench", "--info", work / f"d{i}.json",
               "--address", f"{host}:{port}", env=env)
        setup_s = time.monotonic() - t0

        def measure(binary):
            procs = []
            try:
                return run_workers(a, binary, env, pg, tpmds, work, procs)
            finally:
                for p in procs:
                    p.kill()
                    p.wait()

        if a.baseline:
            base = Path(a.baseline)
            shutil.copy(base, work / "trustme-fleet-baseline")
            sides = {"baseline": [], "this": []}
            for _ in range(a.rounds):
                sides["baseline"].append(measure(work / "trustme-fleet-baseline"))
                sides["this"].append(measure(FLEET))

            def med(side, key):
                xs = [r[key] for r in sides[side] if r.get(key) is not None]
                return statistics.median(xs) if xs else None
            keys = ("verdicts_per_min", "latency_ms_p50", "latency_ms_p99", "worker_cpu_ms_per_verdict",
                    "device_cpu_ms_per_verdict", "postgres_cpu_ms_per_verdict", "cpu_ms_per_verdict", "load_average")
            res = {"devices": a.devices, "interval_s": a.interval, "workers": a.workers, "threads": a.threads,
                   "seconds": a.seconds, "setup_s": round(setup_s, 1), "rounds": a.rounds,
                   "median": {side: {k: med(side, k) for k in keys} for side in sides},
                   "rounds_results": sides}
            b, t = res["median"]["baseline"]["verdicts_per_min"], res["median"]["this"]["verdicts_per_min"]
            res["ratio_verdicts_per_min"] = round(t / b, 3) if b else None
            bc, tc = res["median"]["baseline"]["cpu_ms_per_verdict"], res["median"]["this"]["cpu_ms_per_verdict"]
            res["ratio_cpu_ms_per_verdict"] = round(tc / bc, 3) if bc else None
        else:
            res = measure(FLEET)
            res["setup_s"] = round(setup_s, 1)
        text = json.dumps(res, indent=1)
        if a.out:
            Path(a.out).write_text(text + "\n")
        print(text)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for t in tpmds:
            t.cleanup()
        if pg:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
