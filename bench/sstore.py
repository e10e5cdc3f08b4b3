#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Secure storage: commit latency and throughput against a plain file written with fsync and
rename, in the same run (docs/BENCHMARKS.md, "Secure storage"). Run as root:

    bench/sstore.py [OUTDIR] [--commits N] [--tpmd PATH] [--tool PATH] [--cases SIZExK,...]

(--tpmd, --tool: another trustme-tpmd or trustme-sstore-tool binary, e.g. one built from another
revision, to compare two builds run after run; --cases: only these cases, e.g. 131072x1.)

A real trustme-tpmd with its embedded swtpm is started (as trustmed does: the trustme-tpm user,
fd 3 a SOCK_SEQPACKET socket) and bench/../build/src/sstore/trustme-sstore-tool commits one
object per commit through it, each commit interleaved with the same bytes written to a plain
file (write a temporary file, fsync, rename, fsync the directory: src/lib/fileio.c
write_file_atomic). Both write into one directory on the same file system as the tpmd data dir
(under /var/tmp, a disk, not tmpfs). Object sizes 64 B, 4 KiB, 64 KiB (in the superblock) and
128 KiB (a file of its own), one store per commit; and 8 stores committed as one batch (one anchor update)
against 8 plain files. Writes sstore.tsv (size, batch, i, ms of the round, of which the anchor
update, plain ms), sstore.md (per commit: median and p95 latency, commits/s, the ratios) and
sstore.env (the median ratios, for bench/run-all.sh)."""
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
TPMD = BUILD / "src/tpmd/trustme-tpmd"
TOOL = BUILD / "src/sstore/trustme-sstore-tool"
# (object size, stores per batch)
CASES = ((64, 1), (4096, 1), (65536, 1), (131072, 1), (64, 8), (4096, 8))


def start_tpmd(base):
    pw = pwd.getpwnam("trustme-tpm")
    for d in ("data", "run"):
        (base / d).mkdir(parents=True)
        os.chown(base / d, pw.pw_uid, pw.pw_gid)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    log = open(base / "tpmd.log", "ab")
    proc = subprocess.Popen(
        [shutil.which("setpriv"), "--reuid", "trustme-tpm", "--regid", "trustme-tpm", "--clear-groups", str(TPMD),
         "--data-dir", str(base / "data"), "--run-dir", str(base / "run"), "--attest-address", "127.0.0.1:0"],
        preexec_fn=lambda: os.dup2(theirs.fileno(), 3), close_fds=False, stdout=log, stderr=log)
    theirs.close()
    ours.recv(1 << 16)  # Ready
    return proc, ours


def stop_tpmd(proc, sock, base):
    proc.terminate()
    sock.close()
    proc.wait(timeout=30)
    pid_file = base / "run/swtpm.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), 9)
        except (ProcessLookupError, ValueError):
            pass


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    args = sys.argv[1:]
    n = 200
    global TPMD, TOOL
    for opt in ("--tpmd", "--tool"):
        if opt in args:
            i = args.index(opt)
            globals()[opt[2:].upper()] = Path(args[i + 1])
            del args[i:i + 2]
    cases = CASES
    if "--cases" in args:
        i = args.index("--cases")
        cases = tuple(tuple(int(x) for x in c.split("x")) for c in args[i + 1].split(","))
        del args[i:i + 2]
    if "--commits" in args:
        i = args.index("--commits")
        n = int(args[i + 1])
        del args[i:i + 2]
    out = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="trustme-bench-out."))
    out.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="trustme-bench-sstore.", dir="/var/tmp"))
    os.chmod(base, 0o711)
    proc, sock = start_tpmd(base)
    rows, table = [], []
    try:
        key = base / "key"
        key.write_bytes(os.urandom(32))
        for size, k in cases:
            plain = base / f"plain-{size}-{k}"
            plain.mkdir()
            r = subprocess.run([str(TOOL), "--dir", str(base / f"store-{size}-{k}"), "--store", f"bench-{size}-{k}",
                                "--key-file", str(key), "--tpmd-fd", str(sock.fileno()),
                                "bench", str(n), str(size), str(plain), str(k)],
                               pass_fds=(sock.fileno(),), capture_output=True, check=True, timeout=3600)
            recs = [json.loads(line) for line in r.stdout.decode().splitlines()]
            s_ms = [x["sstore_ms"] / k for x in recs]
            a_ms = [x["anchor_ms"] / k for x in recs]
            p_ms = [x["plain_ms"] / k for x in recs]
            rows += [(size, k, x["i"], x["sstore_ms"], x["anchor_ms"], x["plain_ms"]) for x in recs]
            table.append((size, k, statistics.median(s_ms), pct(s_ms, 95), statistics.median(a_ms),
                          statistics.median(p_ms), pct(p_ms, 95),
                          1000 * len(s_ms) / sum(s_ms), 1000 * len(p_ms) / sum(p_ms)))
    finally:
        stop_tpmd(proc, sock, base)
        shutil.rmtree(base, ignore_errors=True)
    with open(out / "sstore.tsv", "w") as f:
        f.write("size\tbatch\ti\tsstore_ms\tanchor_ms\tplain_ms\n")
        for r in rows:
            f.write("%d\t%d\t%d\t%.3f\t%.3f\t%.3f\n" % r)
    md = ["| object | stores per batch | sstore median / p95 ms | of which tpmd's anchor update (median) "
          "| plain median / p95 ms | sstore commits/s | plain writes/s | ratio (median) | ratio (throughput) |",
          "|---|---|---|---|---|---|---|---|---|"]
    for size, k, sm, s95, am, pm, p95, st, pt in table:
        md.append(f"| {size} B | {k} | {sm:.2f} / {s95:.2f} | {am:.2f} | {pm:.2f} / {p95:.2f} | {st:.0f} | {pt:.0f} | "
                  f"{sm / pm:.2f}x | {pt / st:.2f}x |")
    (out / "sstore.md").write_text("\n".join(md) + "\n")
    # facts for bench/run-all.sh's Targets table: the median ratio per case
    (out / "sstore.env").write_text("".join(f"SSTORE_RATIO_{size}_{k}={sm / pm:.2f}\n"
                                            for size, k, sm, s95, am, pm, p95, st, pt in table))
    print("\n".join(md))
    print(f"(written to {out})")


if __name__ == "__main__":
    main()
