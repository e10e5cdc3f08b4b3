#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck disable=SC1090,SC1091,SC2154 # lib.sh and the facts files are sourced at run time
# Start-to-exit latency of /bin/true in one busybox rootfs: trustme against runc, crun, LXC and
# bubblewrap, all measured in the same run with hyperfine. trustme runs the product's real path: the
# rootfs built into a squashfs GuestOS signed by a development PKI (trustme-pki init), installed
# into the store of a private trustmed whose device.json trusts that PKI under the default device
# policy (no allow_unsigned), so every start checks the GuestOS's signature state, hashes or
# re-validates its image, measures it into the runtime PCR and raises its anti-rollback counter.
# Four trustme configs: no data volume, a 16 MiB unencrypted volume, the same volume encrypted
# (soft token, scrypt N = 1024), and the KDF of that encryption alone (`openssl kdf` minus `openssl
# version`, both in the same hyperfine run), so that the encrypted start can be reported beyond it.
# Run as root:
#
#   bench/start_latency.sh [OUTDIR]
#
# Writes into OUTDIR (default: a temporary directory, printed at the end):
#   latency-roundN-K.json  hyperfine --export-json of block K of round N: trustme (3 configs), runc,
#                        lxc-execute, bwrap, the KDF and its baseline, the order rotated each round
#   latency-roundcrunN-K.json  crun with the hugetlb workaround (if it worked), alternating with
#                        trustme without a volume, in rounds of their own
#   latency-summary.json the runs of all rounds pooled: median, mean, σ, min, max, each round's median
#   latency.env        facts for the report (crun's failure as-is, the workaround and its undo)
#   latency.md         the table of medians and ratios
# Environment: RUNS (default 50), WARMUP (default 5), LAT_ROUNDS (default 3), SKIP_INSTALL=1 to skip
# install-deps.sh. Each command is its own hyperfine block (RUNS runs), the order rotated each
# round; on a shared machine prefer many short blocks (e.g. RUNS=5 LAT_ROUNDS=12).
# cpu.tsv holds trustmed's CPU (with everything it runs) around each block of trustme starts.
#
# crun 1.8 refuses the hybrid cgroup layout of this machine as long as cgroup v2 has a controller
# (hugetlb here). The script records that failure, then moves hugetlb to a v1 hierarchy for the
# crun measurement only and undoes that afterwards, verifying that the host is back to its
# original state (docs/BENCHMARKS.md, notes). Everything it makes is removed on exit, also on
# failure or interruption.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

RUNS=${RUNS:-50}
LAT_ROUNDS=${LAT_ROUNDS:-3}
WARMUP=${WARMUP:-5}
CG_PARENT=trustme-bench
ID_BASE=3000000000          # far above the ids the integration tests use (1e6 + n * 4Mi)
RUNC_ID=trustme-bench-runc
CRUN_ID=trustme-bench-crun
LXC_NAME=trustme-bench-lxc
HUGETLB_MNT=/sys/fs/cgroup/hugetlb

need_root
bench_dirs lat "${1:-}" latency.env

TMD_PID=
WORKAROUND_ACTIVE=0
LXC_PIVOT_EXISTED=()

# mounts_of FSTYPE: "MOUNTPOINT SUPER_OPTIONS" of each mount of that type.
mounts_of() {
    awk -v t="$1" '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == t) print $5, $(i + 3); break } }' \
        /proc/self/mountinfo
}

# --- the crun workaround and its undo -----------------------------------------------------------
cgroup_state() {
    # What the workaround changes: hugetlb's hierarchy id, v2's controller list, the mount point.
    printf 'hugetlb-hierarchy=%s v2-controllers=[%s] hugetlb-v1-mount=%s hugetlb-dir=%s\n' \
        "$(awk '$1 == "hugetlb" {print $2}' /proc/cgroups)" \
        "$(cat "$V2/cgroup.controllers" 2>/dev/null)" \
        "$(mounts_of cgroup | awk '$2 ~ /(^|,)hugetlb(,|$)/ {print $1}' | paste -sd,)" \
        "$([ -d "$HUGETLB_MNT" ] && echo yes || echo no)"
}

apply_workaround() {
    mkdir "$HUGETLB_MNT" || return 1
    WORKAROUND_ACTIVE=1
    if ! mount -t cgroup -o hugetlb cgroup "$HUGETLB_MNT"; then
        rmdir "$HUGETLB_MNT"
        WORKAROUND_ACTIVE=0
        return 1
    fi
}

# Unmounts the v1 hugetlb hierarchy. The kernel destroys the hierarchy (and hands hugetlb back to
# v2) asynchronously after the umount, usually within a fraction of a second, so poll for that and
# never mount again while it may still be on its way. But a v1 hierarchy that still has child
# cgroups at umount time (also ones rmdir'ed a moment ago and not yet released) outlives the
# umount, and nothing destroys it once they are gone: then mount it again (that re-attaches the
# same hierarchy), remove leftover children, and umount once more.
wait_hugetlb_released() { # up to 5 s
    local i
    for i in $(seq 50); do
        [ "$(awk '$1 == "hugetlb" {print $2}' /proc/cgroups)" = 0 ] && return 0
        sleep 0.1
    done
    return 1
}
undo_workaround() {
    [ "$WORKAROUND_ACTIVE" = 1 ] || return 0
    local i
    for i in 1 2 3 4 5 6; do
        if ! mountpoint -q "$HUGETLB_MNT"; then
            mount -t cgroup -o hugetlb cgroup "$HUGETLB_MNT" || return 1
        fi
        find "$HUGETLB_MNT" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
        sleep 0.2
        umount "$HUGETLB_MNT" || { sleep 1; continue; }
        if wait_hugetlb_released; then
            [ -d "$HUGETLB_MNT" ] && rmdir "$HUGETLB_MNT"
            WORKAROUND_ACTIVE=0
            UNDO_TRIES=$i
            [ "$(cgroup_state)" = "$ORIG_CGROUP_STATE" ]
            return
        fi
        log "hugetlb hierarchy still alive after umount (attempt $i): $(cgroup_state)"
    done
    return 1
}

# --- cleanup ------------------------------------------------------------------------------------
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ "$WORKAROUND_ACTIVE" = 1 ]; then
        undo_workaround || log "ERROR: could not undo the hugetlb workaround: $(cgroup_state)"
    fi
    stop_trustmed
    if command -v runc >/dev/null; then runc --root "$W/runc-state" delete -f "$RUNC_ID" >/dev/null 2>&1; fi
    if command -v crun >/dev/null; then crun --root "$W/crun-state" delete -f "$CRUN_ID" >/dev/null 2>&1; fi
    if command -v lxc-stop >/dev/null && [ -d "$W/lxc/$LXC_NAME" ]; then
        lxc-stop -P "$W/lxc" -n "$LXC_NAME" -k >/dev/null 2>&1
    fi
    rmdir_cgroups "$RUNC_ID"
    rmdir_cgroups "$CRUN_ID"
    rmdir_cgroups "lxc.payload.$LXC_NAME"
    rmdir_cgroups "lxc.monitor.$LXC_NAME"
    rmdir_cgroups "$CG_PARENT"
    # LXC leaves an (empty) lxc.pivot cgroup in every hierarchy; remove those it made here.
    local m
    for m in /sys/fs/cgroup/*/; do
        if [ -d "${m}lxc.pivot" ] && [[ " ${LXC_PIVOT_EXISTED[*]} " != *" ${m}lxc.pivot "* ]]; then
            rmdir "${m}lxc.pivot" 2>/dev/null
        fi
    done
    remove_work_dir "$W"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- preparation --------------------------------------------------------------------------------
install_bench_deps
for t in hyperfine runc crun lxc-execute bwrap jq; do
    command -v "$t" >/dev/null || die "$t is missing (scripts/install-deps.sh --bench)"
done
ensure_build "$W/bin"

V2=$(mounts_of cgroup2 | awk '{print $1; exit}')
[ -n "$V2" ] || die "no cgroup2 mount found"
ORIG_CGROUP_STATE=$(cgroup_state)
fact ORIG_CGROUP_STATE "$ORIG_CGROUP_STATE"
for m in /sys/fs/cgroup/*/; do [ -d "${m}lxc.pivot" ] && LXC_PIVOT_EXISTED+=("${m}lxc.pivot"); done

log "building the busybox rootfs and a signed GuestOS of it"
R=$W/rootfs
"$ROOT/scripts/mkrootfs.sh" "$R" >/dev/null
ensure_tools "$W/bin"
signed_guestos "$W" "$R" bench "$W/tm/data"

log "starting trustmed (cgroup parent $CG_PARENT)"
start_trustmed "$W/tm" "$CG_PARENT" "$ID_BASE"
install_guestos "$GUESTOS_DIR"
PIN=2580
PUK=24681357
printf '%s\n%s\n' "$PIN" "$PUK" >"$W/pair"
printf '%s\n' "$PIN" >"$W/pin"
chmod 600 "$W/pair" "$W/pin"
mkct() { # NAME DATA_MB TOKEN_JSON
    printf '{"name":"%s","guestos":{"name":"bench"},"init":"/bin/true","data_size_mb":%s,"token":%s}\n' \
        "$1" "$2" "$3" >"$W/$1.json"
    tm create "$W/$1.json" >/dev/null || die "trustme create $1 failed"
}
mkct bench-vol 16 '"none"'
mkct bench-novol 0 '"none"'
mkct bench-enc 16 '{"type":"soft","kdf_n":1024}'
tm change-pin --pin-file "$W/pair" bench-enc >/dev/null || die "trustme change-pin bench-enc failed"
# The first start formats the data volume; it is not what is measured, so do it once here.
tm start --attach bench-vol || die "trustme start --attach bench-vol failed"
tm start --attach bench-novol || die "trustme start --attach bench-novol failed"
tm start --attach --pin-file "$W/pin" bench-enc || die "trustme start --attach bench-enc failed"
[ "$(tm list --json | jq -r '.[] | select(.name == "bench-novol") | .trust')" = signed ] ||
    die "bench-novol does not run a signed GuestOS: $(tm list --json)"
[ "$(tm state --json bench-enc | jq -r '.encryption.token // "none"')" = soft ] ||
    die "bench-enc is not encrypted: $(tm state --json bench-enc)"
KDF="openssl kdf -keylen 32 -kdfopt pass:$PIN -kdfopt salt:0123456789abcdef0123456789abcdef -kdfopt r:8 -kdfopt p:1 -kdfopt n:1024 SCRYPT"

# OCI bundles whose root is the same rootfs directory (read-only), from each runtime's own
# default spec; only the process and a findable cgroup path are changed.
make_bundle() { # RUNTIME DIR ID
    mkdir -p "$2"
    (cd "$2" && "$1" spec)
    jq --arg r "$R" --arg cg "/$3" \
        '.root = {path: $r, readonly: true} | .process.args = ["/bin/true"] |
         .process.terminal = false | .linux.cgroupsPath = $cg' "$2/config.json" >"$2/config.json.new"
    mv "$2/config.json.new" "$2/config.json"
}
make_bundle runc "$W/runc" "$RUNC_ID"
make_bundle crun "$W/crun" "$CRUN_ID"
runc --root "$W/runc-state" run --bundle "$W/runc" "$RUNC_ID" || die "runc run failed"

mkdir -p "$W/lxc"
cat >"$W/lxc.conf" <<EOF
lxc.uts.name = $LXC_NAME
lxc.rootfs.path = dir:$R
lxc.mount.auto = proc:mixed sys:ro
lxc.net.0.type = empty
lxc.apparmor.profile = unconfined
lxc.init.cmd = /bin/true
EOF
LXC_CMD="lxc-execute -P $W/lxc -n $LXC_NAME -f $W/lxc.conf -- /bin/true"
$LXC_CMD || die "lxc-execute failed"
BWRAP_CMD="bwrap --unshare-all --die-with-parent --ro-bind $R / --proc /proc --dev /dev /bin/true"
$BWRAP_CMD || die "bwrap failed"

# --- crun as-is ---------------------------------------------------------------------------------
crun_try() { # ARGS...: runs crun once, sets CRUN_RC and CRUN_MSG
    set +e
    CRUN_MSG=$(crun --root "$W/crun-state" "$@" run --bundle "$W/crun" "$CRUN_ID" 2>&1)
    CRUN_RC=$?
    set -e
    CRUN_MSG=$(printf '%s' "$CRUN_MSG" | tr '\n' ' ' | cut -c1-300)
    crun --root "$W/crun-state" delete -f "$CRUN_ID" >/dev/null 2>&1 || true
}
crun_try
CRUN_ASIS_RC=$CRUN_RC
fact CRUN_ASIS_RC "$CRUN_RC"
fact CRUN_ASIS_MSG "$CRUN_MSG"
log "crun run as-is: rc $CRUN_RC${CRUN_MSG:+: $CRUN_MSG}"
crun_try --cgroup-manager=disabled
CRUN_DISABLED_ASIS_RC=$CRUN_RC
fact CRUN_DISABLED_ASIS_RC "$CRUN_RC"
fact CRUN_DISABLED_ASIS_MSG "$CRUN_MSG"
log "crun --cgroup-manager=disabled run as-is: rc $CRUN_RC${CRUN_MSG:+: $CRUN_MSG}"

# --- the measurement: trustme and the peers that work as-is -------------------------------------
# LAT_ROUNDS hyperfine invocations, the order of the commands rotated each time, so that a change
# of the machine's load (it is shared) does not fall on one runtime only; the runs are pooled.
NAMES=("trustme start --attach (16 MiB volume)" "trustme start --attach (no volume)"
       "trustme start --attach (16 MiB volume, encrypted)" "runc run" "lxc-execute" "bwrap --unshare-all"
       "KDF: openssl kdf scrypt N=1024" "KDF baseline: openssl version")
CMDS=("$TRUSTME --run-dir $TMD_RUN start --attach bench-vol" "$TRUSTME --run-dir $TMD_RUN start --attach bench-novol"
      "$TRUSTME --run-dir $TMD_RUN start --attach --pin-file $W/pin bench-enc"
      "runc --root $W/runc-state run --bundle $W/runc $RUNC_ID" "$LXC_CMD" "$BWRAP_CMD" "$KDF" "openssl version")
# Each command is its own hyperfine block, so that the CPU time of trustmed and everything it
# runs (its setup processes and inits, trustme-tpmd, swtpm, trustme-scd) can be read from /proc
# around a block of trustme starts: CPU per start, which the load hardly changes.
printf 'command\tstarts\tcpu_ms\n' >"$OUT/cpu.tsv"
# block ROUND K NAME CMD
block() {
    local c0=
    [[ $3 == trustme* || $3 == *"window: trustme"* ]] && c0=$(cpu_ms "$TMD_PID")
    hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style none \
        --export-json "$OUT/latency-round$1-$2.json" -n "$3" "$4" >&2
    if [ -n "$c0" ]; then
        sleep 0.2 # the last stop's cleanup
        printf '%s\t%s\t%s\n' "$3" $((RUNS + WARMUP)) $(($(cpu_ms "$TMD_PID") - c0)) >>"$OUT/cpu.tsv"
    fi
}
for round in $(seq "$LAT_ROUNDS"); do
    log "round $round/$LAT_ROUNDS: $RUNS runs (+$WARMUP warm-up) of each command"
    for k in "${!NAMES[@]}"; do
        i=$(( (k + round - 1) % ${#NAMES[@]} ))
        block "$round" "$k" "${NAMES[$i]}" "${CMDS[$i]}"
    done
done

# --- crun with the hugetlb workaround -----------------------------------------------------------
CRUN_MEASURED=none
if [ "$CRUN_ASIS_RC" = 0 ]; then
    fact CRUN_WORKAROUND "not needed"
    CRUN_MEASURED=as-is
elif [ "$ORIG_CGROUP_STATE" != "$(printf 'hugetlb-hierarchy=0 v2-controllers=[hugetlb] hugetlb-v1-mount= hugetlb-dir=no')" ]; then
    fact CRUN_WORKAROUND "not applied: the cgroup layout is not the one the workaround is for ($ORIG_CGROUP_STATE)"
else
    log "crun: moving hugetlb to a cgroup v1 hierarchy at $HUGETLB_MNT for the crun measurement"
    if apply_workaround; then
        fact CRUN_WORKAROUND_STATE "$(cgroup_state)"
        crun_try
        fact CRUN_WORKAROUND_RC "$CRUN_RC"
        if [ "$CRUN_RC" = 0 ]; then
            # In the same window, trustme without a volume alternates with crun in short
            # blocks: the crun ratio is the one of this window, whatever the load did before.
            CNAMES=("crun run (hugetlb moved to v1)" "crun --cgroup-manager=disabled run (hugetlb moved to v1)"
                    "crun window: trustme start --attach (no volume)")
            CCMDS=("crun --root $W/crun-state run --bundle $W/crun $CRUN_ID"
                   "crun --root $W/crun-state --cgroup-manager=disabled run --bundle $W/crun $CRUN_ID"
                   "${CMDS[1]}")
            for round in $(seq "$LAT_ROUNDS"); do
                for k in "${!CNAMES[@]}"; do
                    i=$(( (k + round - 1) % ${#CNAMES[@]} ))
                    block "crun$round" "$k" "${CNAMES[$i]}" "${CCMDS[$i]}"
                done
            done
            CRUN_MEASURED=workaround
        else
            log "crun still fails with the workaround: $CRUN_MSG"
            fact CRUN_WORKAROUND_MSG "$CRUN_MSG"
        fi
        UNDO_TRIES=
        if undo_workaround; then
            fact CRUN_WORKAROUND "applied and undone (after $UNDO_TRIES umount attempt(s)); host state verified equal to the original"
            log "hugetlb workaround undone after $UNDO_TRIES attempt(s): $(cgroup_state)"
        else
            fact CRUN_WORKAROUND "applied, UNDO FAILED: $(cgroup_state)"
            die "could not undo the hugetlb workaround: now $(cgroup_state), was $ORIG_CGROUP_STATE"
        fi
        crun_try
        fact CRUN_AFTER_UNDO_RC "$CRUN_RC"
        fact CRUN_AFTER_UNDO_MSG "$CRUN_MSG"
        log "crun after the undo (expected to fail again as originally): rc $CRUN_RC"
    else
        fact CRUN_WORKAROUND "could not be applied (mount -t cgroup -o hugetlb failed)"
    fi
fi
if [ "$CRUN_MEASURED" = none ] && [ "$CRUN_DISABLED_ASIS_RC" = 0 ]; then
    hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style basic --export-json "$OUT/latency-crun.json" \
        -n "crun --cgroup-manager=disabled run" \
        "crun --root $W/crun-state --cgroup-manager=disabled run --bundle $W/crun $CRUN_ID" >&2 &&
        CRUN_MEASURED=disabled
fi
if [ "$CRUN_MEASURED" = as-is ]; then
    hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style basic --export-json "$OUT/latency-crun.json" \
        -n "crun run" "crun --root $W/crun-state run --bundle $W/crun $CRUN_ID" >&2
fi
fact CRUN_MEASURED "$CRUN_MEASURED"
fact RUNS "$RUNS"
fact LAT_ROUNDS "$LAT_ROUNDS"
fact WARMUP "$WARMUP"

# --- the table ----------------------------------------------------------------------------------
python3 - "$OUT" "$LAT_ROUNDS" <<'PY'
import glob, json, os, re, statistics as st, sys
out, rounds = sys.argv[1], int(sys.argv[2])
order, runs = [], {}
files = sorted(glob.glob(f"{out}/latency-round*.json"), key=lambda f: [int(x) for x in re.findall(r"\d+", os.path.basename(f))])
files += [f"{out}/latency-crun.json"] if os.path.exists(f"{out}/latency-crun.json") else []
for f in files:
    m = re.search(r"latency-round(crun)?(\d+)", f)
    rnd = int(m.group(2)) if m else 0  # blocks of one round share its number
    for res in json.load(open(f))["results"]:
        c = res["command"]
        if c not in runs:
            order.append(c)
            runs[c] = {"times": [], "round_medians": {}, "cpu": []}
        runs[c]["times"] += res["times"]
        runs[c]["round_medians"][rnd] = res["median"]
        runs[c]["cpu"].append(((res["user"] + res["system"]) * 1000, len(res["times"])))
# trustmed's CPU (with tpmd, swtpm, scd, setup processes, inits) per start of each trustme block
daemon = {}
if os.path.exists(f"{out}/cpu.tsv"):
    for line in open(f"{out}/cpu.tsv").read().splitlines()[1:]:
        name, starts, ms = line.split("\t")
        d = daemon.setdefault(name, [0, 0])
        d[0] += int(starts)
        d[1] += int(ms)
first = list(order)
order.sort(key=lambda c: (not c.startswith("trustme"), c.startswith("crun"), first.index(c)))
summary = {}
for c in order:
    t = runs[c]["times"]
    cli = sum(a * n for a, n in runs[c]["cpu"]) / sum(n for _, n in runs[c]["cpu"])
    dcpu = daemon[c][1] / daemon[c][0] if c in daemon and daemon[c][0] else None
    summary[c] = {"median": st.median(t), "mean": st.mean(t), "stddev": st.pstdev(t), "min": min(t),
                  "max": max(t), "n": len(t), "round_medians": runs[c]["round_medians"],
                  "cpu_ms": cli + (dcpu or 0), "daemon_cpu_ms": dcpu}
json.dump(summary, open(f"{out}/latency-summary.json", "w"), indent=1)
tms = [c for c in order if c.startswith("trustme")]
f2 = lambda v: f"{v * 1000:.2f}"
lines = ["| command | median (ms) | median of each round (ms) | mean ± σ (ms) | min–max (ms) | CPU per start (ms) | "
         + " | ".join("ratio " + c.replace("trustme start --attach ", "trustme ") for c in tms) + " |",
         "|---|---:|---:|---:|---:|---:|" + "|".join("---:" for _ in tms) + "|"]
for c in order:
    x = summary[c]
    rm = " / ".join(f2(x["round_medians"][k]) for k in sorted(x["round_medians"]))
    cells = []
    for tc in tms:
        if tc == c:
            cells.append("–")
            continue
        ratio = summary[tc]["median"] / x["median"]
        common = sorted(set(x["round_medians"]) & set(summary[tc]["round_medians"]))
        per = [summary[tc]["round_medians"][k] / x["round_medians"][k] for k in common]
        cells.append(f"**{ratio:.2f}×**" + (f" ({min(per):.2f}–{max(per):.2f})" if len(per) > 1 else ""))
    cpu = f"{x['cpu_ms']:.1f}" + (f" (daemons {x['daemon_cpu_ms']:.1f})" if x["daemon_cpu_ms"] is not None else "")
    lines.append(f"| `{c}` | **{f2(x['median'])}** | {rm} | {f2(x['mean'])} ± {f2(x['stddev'])} | "
                 f"{f2(x['min'])}–{f2(x['max'])} | {cpu} | " + " | ".join(cells) + " |")
# crun ran in a window of its own (the hugetlb workaround), alternating with trustme: that ratio
cw, cr = "crun window: trustme start --attach (no volume)", "crun run (hugetlb moved to v1)"
if cw in summary and cr in summary:
    per = [summary[cw]["round_medians"][k] / summary[cr]["round_medians"][k]
           for k in sorted(set(summary[cw]["round_medians"]) & set(summary[cr]["round_medians"]))]
    summary["_crun_window_ratio"] = summary[cw]["median"] / summary[cr]["median"]
    json.dump(summary, open(f"{out}/latency-summary.json", "w"), indent=1)
    lines.append("")
    lines.append(f"In crun's window (hugetlb moved to v1, blocks alternating): trustme without a volume "
                 f"{f2(summary[cw]['median'])} ms against `crun run` {f2(summary[cr]['median'])} ms: "
                 f"**{summary['_crun_window_ratio']:.2f}×**" + (f" ({min(per):.2f}–{max(per):.2f} by round)" if per else "")
                 + ".")
# The encrypted start beyond its KDF: (encrypted - same volume unencrypted) - (KDF - process baseline).
enc, vol = "trustme start --attach (16 MiB volume, encrypted)", "trustme start --attach (16 MiB volume)"
kdf, base = "KDF: openssl kdf scrypt N=1024", "KDF baseline: openssl version"
if all(k in summary for k in (enc, vol, kdf, base)):
    m = {k: summary[k]["median"] * 1000 for k in (enc, vol, kdf, base)}
    beyond = (m[enc] - m[vol]) - (m[kdf] - m[base])
    summary["_encrypted_beyond_kdf_ms"] = beyond
    json.dump(summary, open(f"{out}/latency-summary.json", "w"), indent=1)
    lines.append("")
    lines.append(f"Encrypted start beyond the KDF: {beyond:.2f} ms (encrypted {m[enc]:.2f} − unencrypted "
                 f"{m[vol]:.2f} ms = {m[enc] - m[vol]:.2f} ms, of which the KDF alone {m[kdf] - m[base]:.2f} ms "
                 f"= `openssl kdf` {m[kdf]:.2f} − `openssl version` {m[base]:.2f} ms).")
open(f"{out}/latency.md", "w").write("\n".join(lines) + "\n")
PY
cat "$OUT/latency.md"
log "results in $OUT"
