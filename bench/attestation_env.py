#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Shell variables (ATT_*) for the Attestation section of docs/BENCHMARKS.md, from one or more OUTDIRs
of bench/attestation.sh:

    bench/attestation_env.py [--alone] [--build DIR] OUTDIR... > attestation.env

attestation.sh runs it on its own OUTDIR (attestation.env there, sourced by bench/run-all.sh, which
renders the section with attestation_section / attestation_target_rows). Given several OUTDIRs (runs
of attestation.sh alone), every figure is the median of the runs' medians and the *_RUNS / *_RANGE
variables list or bound the run medians; ATT_RUN_NOTE then says where the figures come from (also for
one run with --alone: a run of attestation.sh alone rendered into a file that run-all.sh made).

Numbers are formatted here (ms: 2 decimals for round trips, 3 for tpmd requests; verifications/s:
integers), so that the section shows exactly what the result files give. Facts that runs made before
attestation.sh recorded them lack (kernel, tpm2-tss, OpenSSL: taken from this machine now; compiler
and buildtype: from --build DIR, only if its trustmed has the run's build time; else "n/a").
"""
import glob
import json
import os
import platform
import re
import shlex
import statistics as st
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMO_COMMIT = "a191b2f"  # tpmd: a counter raise to the value tpmd last saw answers without the TPM
WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}

args = sys.argv[1:]
fallback_build, alone = None, False
while args[:1] in (["--build"], ["--alone"]):
    if args[0] == "--alone":
        alone, args = True, args[1:]
    else:
        fallback_build, args = args[1], args[2:]
if not args:
    sys.exit("usage: attestation_env.py [--alone] [--build DIR] OUTDIR...")
dirs = args
V = {}


def out(k, v):
    V["ATT_" + k] = str(v)


def f2(x):
    return f"{x:.2f}"


def f3(x):
    return f"{x:.3f}"


def f0(x):
    return f"{x:.0f}"


def same(vals):
    """The value if all runs agree, else all of them."""
    vals = [str(v) for v in vals]
    return vals[0] if len(set(vals)) == 1 else " / ".join(vals)


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def build_facts(build, built):
    """buildtype, optimization/debug flags and compiler of a meson build dir whose trustmed has the
    build time `built` (so that it is the build the run measured); {} if not."""
    try:
        import datetime
        t = os.path.getmtime(f"{build}/src/daemon/trustmed")
        if datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") != built:
            return {}
        opts = {o["name"]: o["value"] for o in json.load(open(f"{build}/meson-info/intro-buildoptions.json"))}
        cc = ""
        for line in open(f"{build}/meson-logs/meson-log.txt", errors="replace"):
            m = re.match(r'C compiler for the host machine: .*?"(.*)"\)', line)
            if m:
                cc = m.group(1)
        return {"buildtype": opts.get("buildtype", ""),
                "cflags": f"-O{opts.get('optimization', '')}" + (" -g" if opts.get("debug") else ""), "compiler": cc}
    except (OSError, ValueError, KeyError):
        return {}


runs = []
for d in dirs:
    s = json.load(open(f"{d}/attestation-summary.json"))
    f = s["facts"]
    f.setdefault("rounds", len(glob.glob(f"{d}/attestation-round*.json")))
    f.setdefault("warmup", 3)  # not recorded before; every run before that used the default, 3
    f.setdefault("loop_runs", sum(1 for _ in open(f"{d}/loop.txt")))
    f.setdefault("measure_runs", sum(1 for l in open(f"{d}/measure.txt") if l.startswith("new1 ")))
    f.setdefault("extend_runs", sum(1 for _ in open(f"{d}/extend.txt")))
    if "verify_seconds" not in f:
        m = re.search(r"in ([0-9.]+) s", open(f"{d}/verify-round1.txt").read())
        f["verify_seconds"] = f"{float(m.group(1)):g}" if m else "n/a"
    if not f.get("kernel"):
        f["kernel"] = f"{platform.release()} ({platform.machine()})"
    if not f.get("tss"):
        f["tss"] = sh(["pkg-config", "--modversion", "tss2-esys"]) or "n/a"
    if not f.get("openssl"):
        f["openssl"] = (sh(["openssl", "version"]).split() + ["", "n/a"])[1]
    if not f.get("compiler"):
        f.update(build_facts(fallback_build, f["built"]) if fallback_build else {})
    for k in ("compiler", "buildtype", "cflags"):
        f.setdefault(k, "n/a")
    # Measure: the lines themselves, for the log size and the drift over a run
    lines = [l.split() for l in open(f"{d}/measure.txt")]
    s["log_events"] = sum(int(l[2]) for l in lines)
    new4 = [float(l[1]) for l in lines if l[0] == "new4"][1:]
    third = max(1, len(new4) // 3)
    s["drift"] = st.median(new4[-third:]) / st.median(new4[:third])
    s["ncrls"] = open(f"{d}/inputs/crls.pem").read().count("BEGIN X509 CRL")
    s["response_bytes"] = os.path.getsize(f"{d}/inputs/response.bin")
    runs.append(s)

n = len(runs)
facts = [r["facts"] for r in runs]
out("NRUNS", n)
out("NRUNS_WORD", WORDS.get(n, str(n)))
out("NRUNS_TEXT", "one run" if n == 1 else f"{WORDS.get(n, n)} runs")
dates = [f["date"] for f in facts]
if n == 1:
    out("DATE", dates[0])
elif dates[0][:10] == dates[-1][:10]:
    out("DATE", f"{dates[0][:16]}–{dates[-1][11:16]} UTC")
else:
    out("DATE", f"{dates[0]} – {dates[-1]}")
out("REV", same(f["revision"] for f in facts))
out("BUILT", same(f["built"] for f in facts))
for k in ("cpu", "nproc", "kernel", "tss", "tpm2_tools", "openssl", "events",
          "containers", "rounds", "warmup", "loop_runs", "verify_seconds", "measure_runs", "extend_runs"):
    out(k.upper(), same(f[k] for f in facts))
cc = [f"{f['compiler']}, `{f['cflags']}` ({f['buildtype']})" if f["compiler"] != "n/a" else "not recorded by the run"
      for f in facts]
out("COMPILER", same(cc))
out("SWTPM", same(re.sub(r"^TPM emulator version ([^,]*).*", r"\1", f["swtpm"]) for f in facts))
out("HYPERFINE", same(f["hyperfine"].split()[-1] for f in facts))
out("RUNS_PER_ROUND", same(r["roundtrip_cli"]["trustme-verify"]["n"] // r["facts"]["rounds"] for r in runs))
out("N_PER_RUN", same(r["roundtrip_cli"]["trustme-verify"]["n"] for r in runs))
out("NCRLS", same(r["ncrls"] for r in runs))
sizes = [r["response_bytes"] for r in runs]  # the certificates' DER lengths vary by a few bytes
out("RESPONSE_BYTES", str(sizes[0]) if min(sizes) == max(sizes) else f"{min(sizes)}–{max(sizes)}")
out("LOG_EVENTS", same(r["log_events"] for r in runs))
loads = [float(f["loadavg_at_end"].split()[0]) for f in facts]
lo, hi = f"{min(loads):.1f}", f"{max(loads):.1f}"
each = "the run" if n == 1 else "each run"
out("LOAD", f"about {lo} at the end of {each}" if lo == hi else f"{lo}–{hi} at the end of {each}")
# The CounterRaise figure is tpmd's memo only if the measured revision has it.
revs = {f["revision"] for f in facts}
memo = [subprocess.run(["git", "-C", ROOT, "merge-base", "--is-ancestor", MEMO_COMMIT, r],
                       capture_output=True).returncode for r in revs]
out("COUNTER_MEMO", "yes" if all(c == 0 for c in memo) else "no" if all(c == 1 for c in memo) else "unknown")


def agg(name, vals, fmt):
    """NAME (median of the run values), NAME_RUNS (a / b / c), NAME_RANGE (min–max)."""
    out(name, fmt(st.median(vals)))
    out(name + "_RUNS", " / ".join(fmt(v) for v in vals))
    out(name + "_RANGE", f"{fmt(min(vals))}–{fmt(max(vals))}")
    return st.median(vals)


# 1. round trip, command lines (hyperfine)
cli = {"TV": "trustme-verify", "PEER": "tpm2_quote + tpm2_checkquote", "SAVED": "trustme-verify --response (saved)"}
med = {}
for k, c in cli.items():
    med[k] = agg("RT_" + k, [r["roundtrip_cli"][c]["median"] for r in runs], f2)
    out(f"RT_{k}_MINMAX", f"{f2(min(r['roundtrip_cli'][c]['min'] for r in runs))}–"
                          f"{f2(max(r['roundtrip_cli'][c]['max'] for r in runs))}")
out("RT_RATIO_PEER", f2(med["TV"] / med["PEER"]))
out("RT_RATIO_SAVED", f2(med["TV"] / med["SAVED"]))
out("RT_RATIO_ROUND_MIN", f2(min(r["roundtrip_ratio"]["round_min"] for r in runs)))
out("RT_RATIO_ROUND_MAX", f2(max(r["roundtrip_ratio"]["round_max"] for r in runs)))
peer = [r["roundtrip_cli"][cli["PEER"]]["median"] for r in runs]
peer_rounds = [v for r in runs for v in r["roundtrip_cli"][cli["PEER"]]["round_medians"]]
spread = peer if n > 1 else peer_rounds
out("PEER_SPREAD_PCT", f0((max(spread) / min(spread) - 1) * 100))
out("PEER_SPREAD", f"{f0(min(spread))}–{f0(max(spread))}")
# in-process loop
out("LOOP_N", same(r["roundtrip_loop"]["n"] for r in runs))
loop = {}
for k in ("fetch", "check", "total"):
    K = "LOOP_" + k.upper()
    loop[k] = agg(K, [r["roundtrip_loop"][k]["median"] for r in runs], f2)
    out(K + "_P", f"{f2(st.median(r['roundtrip_loop'][k]['p10'] for r in runs))}–"
                  f"{f2(st.median(r['roundtrip_loop'][k]['p90'] for r in runs))}")
# where trustme-verify's time goes
out("RT_EXCHANGE", f"{med['TV'] - med['SAVED']:.1f}")
out("RT_CHECKS", f"{loop['check']:.1f}")

# 2. throughput
tp = {}
for k, key in (("ONCE", "refs_once"), ("CRLS", "refs_once_crls"), ("EACH", "refs_each")):
    tp[k] = agg("TP_" + k, [r["throughput"][key]["median"] for r in runs], f0)
    rounds = [v for r in runs for v in r["throughput"][key]["rounds"]]
    out(f"TP_{k}_ROUNDS", f"{f0(min(rounds))}–{f0(max(rounds))}")
    out(f"TP_{k}_LOWEST", f0(min(rounds)))
out("TP_CRL_COST_MS", f2(1000 / tp["CRLS"] - 1000 / tp["ONCE"]))
refsig = 1000 / tp["EACH"] - 1000 / tp["ONCE"]
out("RT_REFSIG", f"{refsig:.1f}")
out("RT_START_REST", f0(med["SAVED"] - loop["check"] - refsig))
out("TP_EACH_FRACTION", f2(tp["EACH"] / tp["ONCE"]))

# 3. measure
ms = {}
for k in ("new1", "new3", "new4", "again4", "counter", "extend"):
    K = "M_" + k.upper()
    ms[k] = agg(K, [r["measure"][k]["median"] for r in runs], f3)
    out(K + "_P", f"{f3(st.median(r['measure'][k]['p10'] for r in runs))}–"
                  f"{f3(st.median(r['measure'][k]['p90'] for r in runs))}")
out("M_NEW1_PER", f3(ms["new1"]))
out("M_NEW3_PER", f3(ms["new3"] / 3))
out("M_NEW4_PER", f3(ms["new4"] / 4))
slope = agg("M_SLOPE", [r["measure"]["per_event_slope"] for r in runs], f3)
agg("M_FIXED", [r["measure"]["fixed"] for r in runs], f3)
out("M_EVENT_EXTRA", f3(slope - ms["extend"]))
total = agg("M_WITH_COUNTER", [r["measure"]["new4"]["median"] + r["measure"]["counter"]["median"] for r in runs], f3)
out("M_WITH_COUNTER_PASS", "PASS" if total < 0.5 else "FAIL")
drift = max(abs(r["drift"] - 1) for r in runs)
out("M_DRIFT_PCT", f0(drift * 100))
# how much the in-process and per-request figures moved between runs
if n > 1:
    moved = []
    for r_key, keys in (("roundtrip_loop", ("fetch", "check", "total")),
                        ("measure", ("new1", "new3", "new4", "again4", "counter", "extend"))):
        for k in keys:
            v = [r[r_key][k]["median"] for r in runs]
            moved.append(max(v) / min(v) - 1)
    out("BETWEEN_RUNS_PCT", f0(max(moved) * 100))
else:
    out("BETWEEN_RUNS_PCT", "")

if n > 1 or alone:
    note = (f"*This section and its rows in Targets are from {V['ATT_NRUNS_TEXT']} of `bench/attestation.sh` alone on "
            f"{V['ATT_DATE']} (revision {V['ATT_REV']}, binaries built {V['ATT_BUILT']}), not from the run of "
            f"`run-all.sh` that made the rest of this file.")
    if n > 1:
        note += (f" Figures are the **median of the {WORDS.get(n, n)} runs' medians**, with the run medians next "
                 f"to them.")
    out("RUN_NOTE", "\n" + note + "*\n")
else:
    out("RUN_NOTE", "")

for k, v in V.items():
    print(f"{k}={shlex.quote(v)}")
