#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck disable=SC1090,SC1091,SC2154,SC2034 # lib.sh is sourced at run time; it reads the TRUSTME* variables
# Start-to-exit latency of two revisions of trustme in the same run, so that a change can be shown
# not to make starts slower on a machine whose load changes from minute to minute. Run as root:
#
#   bench/compare-revs.sh REV_A REV_B [OUTDIR]
#
# Each revision is exported (git archive, nothing in this checkout changes) and built into a
# scratch directory (meson, --buildtype=debugoptimized, the same options for both): trustmed, the
# CLI, trustme-scd, trustme-tpmd, trustme-pki and trustme-guestos. Each revision's own tools build a
# busybox GuestOS signed by its own development PKI (the product's real path, as start_latency.sh),
# and each revision's trustmed runs at the same time as the other's, with its own data and run dirs,
# cgroup parent, id base and embedded swtpm. Two containers in each: no data volume, and a 16 MiB
# unencrypted data volume. hyperfine then runs `trustme start --attach` of each of the four in
# turn, RUNS at a time, the order rotated each round: short blocks over many rounds, so that the
# load of a shared machine, which changes from minute to minute, falls on both revisions alike.
# Around each block the CPU time of that revision's trustmed (with its reaped setup processes and
# inits), trustme-tpmd, swtpm and trustme-scd is read from /proc: CPU per start, which the load
# hardly changes, is the second figure to compare.
#
# Writes into OUTDIR (default: a temporary directory, printed at the end):
#   compare-roundN-K.json  hyperfine --export-json of each block
#   cpu.tsv              per block: command, starts, daemon CPU ms
#   compare.md           per config: the pooled median and the fastest run of each revision, daemon
#                        CPU ms per start (the CLI's own is hyperfine's user + system), ratios B / A
#   compare.env          the revisions, commits and machine facts
# Environment: RUNS (default 5), WARMUP (default 1), ROUNDS (default 12), SKIP_INSTALL=1 to skip
# install-deps.sh.
#
# bench/run-all.sh does not run this script, not even with --smoke: it builds two trees (several
# minutes on a small machine) and compares revisions, which a run of HEAD's benchmarks has no
# second one of. Everything it makes is removed on exit, also on failure or interruption.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

[ $# -ge 2 ] || die "usage: bench/compare-revs.sh REV_A REV_B [OUTDIR]"
REV_A=$1
REV_B=$2
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-12}
CG_A=trustme-bench-rev-a
CG_B=trustme-bench-rev-b
ID_A=3100000000 # far above the ids the tests (1e6 + n * 4Mi) and start_latency.sh (3e9) use
ID_B=3200000000

need_root
COMMIT_A=$(git -C "$ROOT" rev-parse --verify "$REV_A^{commit}") || die "no revision $REV_A"
COMMIT_B=$(git -C "$ROOT" rev-parse --verify "$REV_B^{commit}") || die "no revision $REV_B"
bench_dirs rev "${3:-}" compare.env

PID_A=
PID_B=
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    for s in A B; do
        eval "TMD_PID=\$PID_$s TMD_RUN=\$W/$s/tm/run TRUSTME=\$W/$s/bin/trustme"
        stop_trustmed
    done
    rmdir_cgroups "$CG_A"
    rmdir_cgroups "$CG_B"
    remove_work_dir "$W"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_bench_deps
for t in hyperfine jq meson ninja; do
    command -v "$t" >/dev/null || die "$t is missing (scripts/install-deps.sh --bench)"
done

# build SIDE COMMIT: W/SIDE/src (exported), W/SIDE/build, the binaries copied into W/SIDE/bin.
build() {
    local side=$1 commit=$2 s=$W/$1 t
    mkdir -p "$s/src" "$s/bin"
    git -C "$ROOT" archive "$commit" | tar -x -C "$s/src"
    log "building $side ($commit)"
    meson setup "$s/build" "$s/src" --buildtype=debugoptimized >"$s/meson.log" 2>&1 ||
        { tail -n 30 "$s/meson.log" >&2; die "meson setup of $commit failed"; }
    ninja -C "$s/build" src/daemon/trustmed src/cli/trustme src/scd/trustme-scd src/tpmd/trustme-tpmd \
        src/tools/guestos/trustme-guestos src/tools/pki/trustme-pki >"$s/ninja.log" 2>&1 ||
        { tail -n 30 "$s/ninja.log" >&2; die "building $commit failed"; }
    for t in daemon/trustmed cli/trustme scd/trustme-scd tpmd/trustme-tpmd tools/guestos/trustme-guestos \
        tools/pki/trustme-pki; do
        cp -p "$s/build/src/$t" "$s/bin/"
    done
}
build A "$COMMIT_A"
build B "$COMMIT_B"

log "building the busybox rootfs"
"$ROOT/scripts/mkrootfs.sh" "$W/rootfs" >/dev/null

# setup SIDE CGROUP_PARENT ID_BASE: its signed GuestOS, its trustmed, its two containers.
setup() {
    local side=$1 s=$W/$1
    TRUSTMED=$s/bin/trustmed TRUSTME=$s/bin/trustme
    TRUSTME_SCD=$s/bin/trustme-scd TRUSTME_TPMD=$s/bin/trustme-tpmd
    TRUSTME_PKI=$s/bin/trustme-pki TRUSTME_GUESTOS=$s/bin/trustme-guestos
    signed_guestos "$s" "$W/rootfs" bench "$s/tm/data"
    log "starting $side's trustmed (cgroup parent $2)"
    start_trustmed "$s/tm" "$2" "$3"
    eval "PID_$side=\$TMD_PID"
    install_guestos "$GUESTOS_DIR"
    local name mb
    for name in novol:0 vol:16; do
        mb=${name#*:}
        name=bench-${name%:*}
        printf '{"name":"%s","guestos":{"name":"bench"},"init":"/bin/true","data_size_mb":%s,"token":"none"}\n' \
            "$name" "$mb" >"$s/$name.json"
        tm create "$s/$name.json" >/dev/null || die "$side: trustme create $name failed"
        tm start --attach "$name" || die "$side: trustme start --attach $name failed"
    done
}
setup A "$CG_A" "$ID_A"
setup B "$CG_B" "$ID_B"

NAMES=()
CMDS=()
SIDES=()
for cfg in novol vol; do
    for side in A B; do
        NAMES+=("$side $cfg")
        SIDES+=("$side")
        CMDS+=("$W/$side/bin/trustme --run-dir $W/$side/tm/run start --attach bench-$cfg")
    done
done
printf 'command\tstarts\tcpu_ms\n' >"$OUT/cpu.tsv"
for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS: $RUNS runs (+$WARMUP warm-up) of each command"
    for k in "${!NAMES[@]}"; do
        i=$(((k + round - 1) % ${#NAMES[@]}))
        eval "pid=\$PID_${SIDES[$i]}"
        c0=$(cpu_ms "$pid")
        hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style none \
            --export-json "$OUT/compare-round$round-$k.json" -n "${NAMES[$i]}" "${CMDS[$i]}" >&2
        sleep 0.2 # the last stop's cleanup
        c1=$(cpu_ms "$pid")
        printf '%s\t%s\t%s\n' "${NAMES[$i]}" $((RUNS + WARMUP)) $((c1 - c0)) >>"$OUT/cpu.tsv"
    done
done

fact REV_A "$REV_A"
fact REV_B "$REV_B"
fact COMMIT_A "$COMMIT_A"
fact COMMIT_B "$COMMIT_B"
fact RUNS "$RUNS"
fact ROUNDS "$ROUNDS"
fact DATE "$(date -u '+%F %R UTC')"
fact CPU "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
fact NCPU "$(nproc)"
fact KERNEL "$(uname -r)"
fact LOADAVG "$(cut -d' ' -f1-3 /proc/loadavg)"

# The runs of all rounds pooled per command: median and fastest in ms, the CLI's CPU per run.
jq -s '[.[].results[]] | group_by(.command) | map({key: .[0].command,
        value: {median: ([.[].times[]] | sort | if length % 2 == 1 then .[length / 2 | floor]
                else (.[length / 2 - 1] + .[length / 2]) / 2 end * 1000),
                min: ([.[].times[]] | min * 1000),
                cli_cpu: (([.[] | (.user + .system)] | add / length) * 1000)}}) | from_entries' \
    "$OUT"/compare-round*.json >"$OUT/medians.json"
# Daemon CPU per start, all blocks of a command pooled.
awk -F'\t' 'NR > 1 { n[$1] += $2; c[$1] += $3 } END { for (k in n) printf "%s\t%.1f\n", k, c[k] / n[k] }' \
    "$OUT/cpu.tsv" | jq -R -s 'split("\n") | map(select(length > 0) | split("\t") | {key: .[0], value: (.[1] | tonumber)})
        | from_entries' >"$OUT/cpu.json"
{
    printf '| config | %s (A) median ms | %s (B) median ms | B / A | fastest A / B ms | daemon CPU per start A / B ms | B / A | CLI CPU A / B ms |\n' \
        "${COMMIT_A:0:7}" "${COMMIT_B:0:7}"
    printf '|---|---|---|---|---|---|---|---|\n'
    for cfg in novol vol; do
        jq -r --arg c "$cfg" --slurpfile cpu "$OUT/cpu.json" '.["A " + $c] as $a | .["B " + $c] as $b |
            $cpu[0]["A " + $c] as $ca | $cpu[0]["B " + $c] as $cb |
            def r2: . * 100 | round / 100;
            "| \(if $c == "novol" then "no data volume" else "16 MiB data volume" end) | \($a.median | r2) | \($b.median | r2) | \($b.median / $a.median * 1000 | round / 1000) | \($a.min | r2) / \($b.min | r2) | \($ca) / \($cb) | \(if $ca > 0 then ($cb / $ca * 1000 | round / 1000) else "-" end) | \($a.cli_cpu | r2) / \($b.cli_cpu | r2) |"' \
            "$OUT/medians.json"
    done
} >"$OUT/compare.md"
cat "$OUT/compare.md"
log "results in $OUT (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
