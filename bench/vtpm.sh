#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck disable=SC1090,SC1091,SC2154 # lib.sh is sourced at run time
# The per-container vTPM's costs through trustmed (docs/VTPM.md, docs/BENCHMARKS.md): start-to-exit
# of /bin/true in a signed busybox GuestOS with an encrypted data volume (soft token), with and
# without "vtpm": true, measured in alternation (a round starts each once, the order alternating,
# so that changing load falls on both alike); the first start of a new vTPM (its
# manufacture: EKs made, certified if the device has a vTPM issuer, measured) against the first
# start of the same container without one (both format their data volume). Then bench/vtpm.py for
# the vTPM alone: its start, its memory, and GetRandom, PCR_Read, Quote and Sign through trustme-vtpm
# against Debian's swtpm socket directly (the peer). Run as root:
#
#   bench/vtpm.sh [OUTDIR]
#
# Writes OUTDIR/vtpm-start.txt (each round: ms without, ms with), OUTDIR/vtpm.env (facts), OUTDIR/vtpm.md (the tables).
# Environment: RUNS (default 30), WARMUP (default 3), PY_RUNS (bench/vtpm.py's runs, default 200),
# SKIP_INSTALL=1. Everything it makes is removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
PY_RUNS=${PY_RUNS:-200}
CG_PARENT=trustme-bench-vtpm
ID_BASE=3100000000 # its vTPM uids are just below it

need_root
bench_dirs vtpm "${1:-}" vtpm.env
# shellcheck disable=SC2034 # lib.sh's start_trustmed and stop_trustmed use it
TMD_PID=

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    stop_trustmed
    rmdir_cgroups "$CG_PARENT"
    remove_work_dir "$W"
    exit "$rc"
}
trap cleanup EXIT INT TERM

install_bench_deps
for t in jq swtpm; do
    command -v "$t" >/dev/null || die "$t is missing (scripts/install-deps.sh --bench)"
done
ensure_build "$W/bin"

log "building the busybox rootfs and a signed GuestOS of it"
R=$W/rootfs
"$ROOT/scripts/mkrootfs.sh" "$R" >/dev/null
ensure_tools "$W/bin"
signed_guestos "$W" "$R" bench "$W/tm/data"
log "starting trustmed (cgroup parent $CG_PARENT)"
start_trustmed "$W/tm" "$CG_PARENT" "$ID_BASE"
install_guestos "$GUESTOS_DIR"
printf '%s\n%s\n' 2580 24681357 >"$W/pair"
printf '%s\n' 2580 >"$W/pin"
chmod 600 "$W/pair" "$W/pin"
mkct() { # NAME VTPM
    printf '{"name":"%s","guestos":{"name":"bench"},"init":"/bin/true","data_size_mb":16,"token":{"type":"soft","kdf_n":1024},"vtpm":%s}\n' \
        "$1" "$2" >"$W/$1.json"
    tm create "$W/$1.json" >/dev/null || die "trustme create $1 failed"
    tm change-pin --pin-file "$W/pair" "$1" >/dev/null || die "trustme change-pin $1 failed"
}
mkct bench-plain false
mkct bench-vtpm true
ms_now() { date +%s%N; }
first() { # NAME: the first start's milliseconds
    local t0 t1
    t0=$(ms_now)
    tm start --attach --pin-file "$W/pin" "$1" >/dev/null || die "trustme start --attach $1 failed"
    t1=$(ms_now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1e6}'
}
FIRST_PLAIN=$(first bench-plain)
FIRST_VTPM=$(first bench-vtpm)
[ "$(tm vtpm info --json bench-vtpm | jq '.eks | length')" = 2 ] || die "bench-vtpm has no EKs after its first start"
fact FIRST_PLAIN "$FIRST_PLAIN"
fact FIRST_VTPM "$FIRST_VTPM"
log "first start: without vTPM $FIRST_PLAIN ms, with a new vTPM (manufacture) $FIRST_VTPM ms"

log "$RUNS rounds (+$WARMUP warm-up) of both starts, interleaved (the order alternating)"
start_ms() { # NAME: one start-to-exit in milliseconds
    local t0 t1
    t0=$(ms_now)
    "$TRUSTME" --run-dir "$TMD_RUN" start --attach --pin-file "$W/pin" "$1" >/dev/null || die "trustme start $1 failed"
    t1=$(ms_now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f\n", (b - a) / 1e6}'
}
: >"$W/plain.ms"
: >"$W/vtpm.ms"
for ((i = 0; i < WARMUP + RUNS; i++)); do
    if ((i % 2 == 0)); then order="bench-plain bench-vtpm"; else order="bench-vtpm bench-plain"; fi
    for n in $order; do
        ms=$(start_ms "$n")
        ((i < WARMUP)) && continue
        if [ "$n" = bench-plain ]; then echo "$ms" >>"$W/plain.ms"; else echo "$ms" >>"$W/vtpm.ms"; fi
    done
done
median() { sort -n "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
MED_PLAIN=$(median "$W/plain.ms")
MED_VTPM=$(median "$W/vtpm.ms")
paste -d' ' "$W/plain.ms" "$W/vtpm.ms" >"$OUT/vtpm-start.txt"
fact MED_PLAIN "$MED_PLAIN"
fact MED_VTPM "$MED_VTPM"
stop_trustmed

log "bench/vtpm.py: the vTPM alone ($PY_RUNS runs)"
# (the peer swtpm reports every disconnect on stderr: kept apart)
python3 "$ROOT/bench/vtpm.py" "$ROOT/build" "$PY_RUNS" >"$OUT/vtpm-alone.md" 2>"$W/vtpm-py.err" ||
    { tail -n 20 "$W/vtpm-py.err" >&2; die "bench/vtpm.py failed"; }

{
    echo "| start-to-exit of /bin/true, encrypted 16 MiB volume | median ms |"
    echo "|---|---|"
    printf '| without vTPM | %.1f |\n' "$MED_PLAIN"
    printf '| with vTPM | %.1f |\n' "$MED_VTPM"
    printf '| **difference** | **%.1f** |\n' "$(awk -v a="$MED_VTPM" -v b="$MED_PLAIN" 'BEGIN {print a - b}')"
    printf '| first start, without vTPM (formats the volume) | %s |\n' "$FIRST_PLAIN"
    printf '| first start, with a new vTPM (formats the volume, manufactures the vTPM) | %s |\n' "$FIRST_VTPM"
    echo
    cat "$OUT/vtpm-alone.md"
} >"$OUT/vtpm.md"
cat "$OUT/vtpm.md"
log "results in $OUT"
