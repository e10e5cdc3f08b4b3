#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck disable=SC1090,SC1091,SC2154 # lib.sh is sourced at run time
# The per-container vTPM's costs through trustmed (docs/VTPM.md, docs/BENCHMARKS.md): start-to-exit
# of /bin/true in a signed busybox GuestOS with an encrypted data volume (soft token), with and
# without "vtpm": true, measured in alternation (a round starts each once, the order alternating,
# so that changing load falls on both alike):
#   - from rest: before each timed start the last run is over (PAUSE, the same for both, then for
#     the vTPM container until its vTPM has stopped, its state is anchored and, with a trustmed
#     that makes one, its standby trustme-vtpm waits: docs/VTPM.md "The standby"), with the CPU
#     of trustmed and everything it starts per run (start, stop, anchor, the standby's launch);
#   - the immediate restart: the same container started again as soon as its last start returned
#     (its vTPM still stopping: the start waits for its anchor);
#   - back to back: one start after the other, as this script measured before the standby (half
#     of the vTPM starts are immediate restarts, and the vTPM's stop falls on the next start);
#   - the first start after trustmed's own start (a standby made by the daemon's start);
#   - the first start of a new vTPM (its manufacture: EKs made, certified if the device has a vTPM
#     issuer, measured) against the first start of the same container without one (both format
#     their data volume).
# Then bench/vtpm.py for the vTPM alone: its start, its memory, and GetRandom, PCR_Read, Quote and
# Sign through trustme-vtpm against Debian's swtpm socket directly (the peer). Run as root:
#
#   bench/vtpm.sh [OUTDIR]
#
# Writes OUTDIR/vtpm-start.txt (each round from rest: ms without, ms with, CPU ms without, CPU ms
# with), OUTDIR/vtpm.env (facts), OUTDIR/vtpm.md (the tables).
# Environment: RUNS (default 30), WARMUP (default 3), IMM_RUNS (immediate restarts, default 10),
# DAEMON_RUNS (trustmed restarts, default 3), PAUSE (s, default 0.5), MEM_STANDBYS (stopped vTPM
# containers whose standbys' memory is measured at once, default 10), PY_RUNS (bench/vtpm.py's
# runs, default 200), SKIP_PY=1, SKIP_INSTALL=1; BENCH_BINARIES_READY=1 with TRUSTMED and TRUSTME
# set measures other binaries (lib.sh ensure_build: trustme-scd and trustme-tpmd beside trustmed,
# trustme-vtpm in ../vtpm). Everything it makes is removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
IMM_RUNS=${IMM_RUNS:-10}
DAEMON_RUNS=${DAEMON_RUNS:-3}
PAUSE=${PAUSE:-0.5}
MEM_STANDBYS=${MEM_STANDBYS:-10}
PY_RUNS=${PY_RUNS:-200}
CG_PARENT=trustme-bench-vtpm
CPU_CG=trustme-bench-vtpm-cpu # trustmed and all it starts: CPU per run
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
    [ -z "${CPU_DIR:-}" ] || rmdir "$CPU_DIR" 2>/dev/null || log "warning: $CPU_DIR could not be removed"
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
# CPU of trustmed and everything it starts (tpmd, scd, trustme-vtpm, the setup process, the
# container), in microseconds: trustmed is started in a cgroup of its own, which what it starts
# inherits: cpuacct.usage (cgroup v1; trustmed makes no cpuacct cgroups of its own), or cpu.stat
# (v2) of that cgroup and of the containers' (--cgroup-parent, which keeps what removed containers
# used). Without either: /proc's clock ticks (lib.sh cpu_ms, 10 ms steps).
CPU_DIR=
if [ -d /sys/fs/cgroup/cpuacct ]; then
    CPU_DIR=/sys/fs/cgroup/cpuacct/$CPU_CG
    CPU_HOME=/sys/fs/cgroup/cpuacct$(awk -F: '$2 ~ /(^|,)cpuacct(,|$)/ {print $3}' /proc/$$/cgroup)
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    CPU_DIR=/sys/fs/cgroup/$CPU_CG
    CPU_HOME=/sys/fs/cgroup$(awk -F: '$1 == "0" {print $3}' /proc/$$/cgroup)
fi
[ -z "$CPU_DIR" ] || mkdir -p "$CPU_DIR" || CPU_DIR=
cpu_us() {
    if [ -f "$CPU_DIR/cpuacct.usage" ]; then
        echo $(($(cat "$CPU_DIR/cpuacct.usage") / 1000))
    elif [ -f "$CPU_DIR/cpu.stat" ]; then
        local a b
        a=$(awk '/^usage_usec/ {print $2}' "$CPU_DIR/cpu.stat")
        b=$(awk '/^usage_usec/ {print $2}' "/sys/fs/cgroup/$CG_PARENT/cpu.stat" 2>/dev/null || true)
        echo $((a + ${b:-0}))
    else
        echo $(($(cpu_ms "$TMD_PID") * 1000))
    fi
}
daemon_up() { # trustmed started inside CPU_DIR (this shell goes in for the fork, and back)
    [ -z "$CPU_DIR" ] || echo $$ >"$CPU_DIR/cgroup.procs"
    start_trustmed "$W/tm" "$CG_PARENT" "$ID_BASE"
    [ -z "$CPU_DIR" ] || echo $$ >"$CPU_HOME/cgroup.procs"
}
log "starting trustmed (cgroup parent $CG_PARENT)"
daemon_up
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
ms_since() { awk -v a="$1" -v b="$(ms_now)" 'BEGIN {printf "%.1f", (b - a) / 1e6}'; }
start_ms() { # NAME: one start-to-exit in milliseconds
    local t0
    t0=$(ms_now)
    "$TRUSTME" --run-dir "$TMD_RUN" start --attach --pin-file "$W/pin" "$1" >/dev/null || die "trustme start $1 failed"
    ms_since "$t0"
}
FIRST_PLAIN=$(start_ms bench-plain)
FIRST_VTPM=$(start_ms bench-vtpm)
[ "$(tm vtpm info --json bench-vtpm | jq '.eks | length')" = 2 ] || die "bench-vtpm has no EKs after its first start"
fact FIRST_PLAIN "$FIRST_PLAIN"
fact FIRST_VTPM "$FIRST_VTPM"
log "first start: without vTPM $FIRST_PLAIN ms, with a new vTPM (manufacture) $FIRST_VTPM ms"

# Does this trustmed launch a standby after a run? (one built before it does not: then "at rest"
# is the vTPM stopped and its state anchored)
STANDBY=0
for _ in $(seq 100); do
    if tm vtpm info --json bench-vtpm | jq -e '.standby.waiting == true' >/dev/null; then
        STANDBY=1
        break
    fi
    sleep 0.05
done
fact STANDBY "$STANDBY"
LATE=0 # vTPM starts whose container was not at rest PAUSE after the last start returned
at_rest() { # NAME: its last run is over (see the header)
    [ "$1" = bench-vtpm ] || return 0
    tm vtpm info --json bench-vtpm |
        jq -e --argjson sb "$STANDBY" '(.running | not) and .anchor_matches and ($sb == 0 or .standby.waiting == true)' \
            >/dev/null
}
rest() { # NAME: until NAME is at rest (after PAUSE: see settle); LATE counts the waits past PAUSE
    at_rest "$1" && return 0
    LATE=$((LATE + 1))
    for _ in $(seq 200); do
        at_rest "$1" && return 0
        sleep 0.05
    done
    die "$1 did not come to rest within 10 s"
}
settle() { # NAME: PAUSE, the same for both containers, then until NAME is at rest
    sleep "$PAUSE"
    rest "$1"
}
median() { sort -n "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
order_of() { if (($1 % 2 == 0)); then echo "bench-plain bench-vtpm"; else echo "bench-vtpm bench-plain"; fi; }
short() { [ "$1" = bench-plain ] && echo plain || echo vtpm; }
timed() { printf '%s\n' "$(start_ms "$1")" >>"$W/$(short "$1").$2"; } # NAME KIND: one start into its list
medians() { # KIND PREFIX: the median of each container's list, as PREFIX_PLAIN and PREFIX_VTPM
    local plain vtpm
    plain=$(median "$W/plain.$1")
    vtpm=$(median "$W/vtpm.$1")
    printf -v "$2_PLAIN" '%s' "$plain"
    printf -v "$2_VTPM" '%s' "$vtpm"
    fact "$2_PLAIN" "$plain"
    fact "$2_VTPM" "$vtpm"
}

log "$RUNS rounds (+$WARMUP warm-up) from rest, interleaved (the order alternating), CPU per run"
for f in plain.ms vtpm.ms plain.cpu vtpm.cpu; do : >"$W/$f"; done
settle bench-vtpm
for ((i = 0; i < WARMUP + RUNS; i++)); do
    for n in $(order_of "$i"); do
        c0=$(cpu_us)
        ms=$(start_ms "$n")
        sleep "$PAUSE" # the run's stop, its anchor and the next standby's launch: counted to this run
        c1=$(cpu_us)
        rest "$n" # (its trustme vtpm info is not counted)
        ((i < WARMUP)) && continue
        echo "$ms" >>"$W/$(short "$n").ms"
        awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.1f\n", (b - a) / 1000}' >>"$W/$(short "$n").cpu"
    done
done
MED_PLAIN=$(median "$W/plain.ms")
MED_VTPM=$(median "$W/vtpm.ms")
CPU_PLAIN=$(median "$W/plain.cpu")
CPU_VTPM=$(median "$W/vtpm.cpu")
paste -d' ' "$W/plain.ms" "$W/vtpm.ms" "$W/plain.cpu" "$W/vtpm.cpu" >"$OUT/vtpm-start.txt"
fact MED_PLAIN "$MED_PLAIN"
fact MED_VTPM "$MED_VTPM"
fact CPU_PLAIN "$CPU_PLAIN"
fact CPU_VTPM "$CPU_VTPM"
fact LATE "$LATE"

log "$IMM_RUNS immediate restarts of each (the same container again as soon as its start returned)"
: >"$W/plain.imm" && : >"$W/vtpm.imm"
for ((i = 0; i < IMM_RUNS; i++)); do
    for n in $(order_of "$i"); do
        settle "$n"
        start_ms "$n" >/dev/null
        timed "$n" imm
    done
done
medians imm IMM

log "$RUNS rounds back to back (the order alternating, no pause: as measured before the standby)"
: >"$W/plain.b2b" && : >"$W/vtpm.b2b"
settle bench-vtpm
for ((i = 0; i < RUNS; i++)); do
    for n in $(order_of "$i"); do
        timed "$n" b2b
    done
done
medians b2b B2B

log "$DAEMON_RUNS times: trustmed restarted (SIGTERM, a new one), then the first start of each from rest"
: >"$W/plain.first" && : >"$W/vtpm.first"
for ((i = 0; i < DAEMON_RUNS; i++)); do
    settle bench-vtpm
    kill -TERM "$TMD_PID"
    wait "$TMD_PID" 2>/dev/null || true
    daemon_up
    for n in $(order_of "$i"); do
        settle "$n"
        timed "$n" first
    done
done
medians first DAEMON

# What a waiting standby costs (RSS, PSS, USS = Private_Clean + Private_Dirty, smaps_rollup): one
# alone (no other trustme-vtpm maps libtpms: its pages count as its own), then MEM_STANDBYS at once
# (MEM_STANDBYS - 1 more stopped vTPM containers, never started, trustmed restarted: the daemon's
# start launches one for each).
mem_kib() { awk '/^Rss:/ {r = $2} /^Pss:/ {p = $2} /^Private_(Clean|Dirty):/ {u += $2} END {print r, p, u}' \
    "/proc/$1/smaps_rollup"; }
MEM_LINE=
if [ "$STANDBY" = 1 ] && ((MEM_STANDBYS > 0)); then
    settle bench-vtpm
    read -r SB_RSS SB_PSS SB_USS < <(mem_kib "$(tm vtpm info --json bench-vtpm | jq -r .standby.pid)")
    fact SB_RSS "$SB_RSS"
    fact SB_PSS "$SB_PSS"
    fact SB_USS "$SB_USS"
    for ((i = 1; i < MEM_STANDBYS; i++)); do mkct "bench-sb$i" true; done
    kill -TERM "$TMD_PID"
    wait "$TMD_PID" 2>/dev/null || true
    daemon_up
    names="bench-vtpm$(for ((i = 1; i < MEM_STANDBYS; i++)); do printf ' bench-sb%d' "$i"; done)"
    for n in $names; do
        for _ in $(seq 600); do
            tm vtpm info --json "$n" | jq -e '.standby.waiting == true' >/dev/null && break
            sleep 0.05
        done
    done
    sleep 1 # (settled)
    : >"$W/mem"
    for n in $names; do mem_kib "$(tm vtpm info --json "$n" | jq -r .standby.pid)" >>"$W/mem"; done
    read -r N_RSS N_PSS N_USS < <(awk '{r += $1; p += $2; u += $3} END {printf "%.0f %.0f %.0f\n", r / NR, p / NR, u / NR}' "$W/mem")
    fact MEM_STANDBYS "$MEM_STANDBYS"
    fact N_RSS "$N_RSS"
    fact N_PSS "$N_PSS"
    fact N_USS "$N_USS"
    MEM_LINE="a waiting standby trustme-vtpm alone: RSS $SB_RSS KiB, PSS $SB_PSS KiB, USS $SB_USS KiB; $MEM_STANDBYS at once, per standby: RSS $N_RSS KiB, PSS $N_PSS KiB, USS $N_USS KiB"
fi
stop_trustmed

if [ "${SKIP_PY:-0}" = 1 ]; then
    : >"$OUT/vtpm-alone.md"
else
    log "bench/vtpm.py: the vTPM alone ($PY_RUNS runs)"
    # (the peer swtpm reports every disconnect on stderr: kept apart)
    python3 "$ROOT/bench/vtpm.py" "$ROOT/build" "$PY_RUNS" >"$OUT/vtpm-alone.md" 2>"$W/vtpm-py.err" ||
        { tail -n 20 "$W/vtpm-py.err" >&2; die "bench/vtpm.py failed"; }
fi

diff_of() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a - b}'; }
{
    echo "| start-to-exit of /bin/true, encrypted 16 MiB volume (median ms) | without vTPM | with vTPM | **difference** |"
    echo "|---|---|---|---|"
    printf '| from rest (%s rounds; PAUSE %s s, the vTPM stopped, anchored%s) | %.1f | %.1f | **%s** |\n' \
        "$RUNS" "$PAUSE" "$([ "$STANDBY" = 1 ] && echo ", its standby waiting")" "$MED_PLAIN" "$MED_VTPM" \
        "$(diff_of "$MED_VTPM" "$MED_PLAIN")"
    printf '| CPU per run from rest: trustmed and all it starts, start to rest (ms) | %.1f | %.1f | **%s** |\n' \
        "$CPU_PLAIN" "$CPU_VTPM" "$(diff_of "$CPU_VTPM" "$CPU_PLAIN")"
    printf '| immediate restart (the same container again at once; %s each) | %.1f | %.1f | **%s** |\n' \
        "$IMM_RUNS" "$IMM_PLAIN" "$IMM_VTPM" "$(diff_of "$IMM_VTPM" "$IMM_PLAIN")"
    printf '| back to back, the order alternating (as measured before; %s rounds) | %.1f | %.1f | **%s** |\n' \
        "$RUNS" "$B2B_PLAIN" "$B2B_VTPM" "$(diff_of "$B2B_VTPM" "$B2B_PLAIN")"
    printf '| first start after trustmed started (%s restarts) | %.1f | %.1f | **%s** |\n' \
        "$DAEMON_RUNS" "$DAEMON_PLAIN" "$DAEMON_VTPM" "$(diff_of "$DAEMON_VTPM" "$DAEMON_PLAIN")"
    printf '| first start (formats the volume; with a vTPM: manufactures it) | %s | %s | %s |\n' \
        "$FIRST_PLAIN" "$FIRST_VTPM" "$(diff_of "$FIRST_VTPM" "$FIRST_PLAIN")"
    echo
    echo "vTPM starts not at rest $PAUSE s after the last start returned (waited for): $LATE"
    [ -z "$MEM_LINE" ] || { echo; echo "$MEM_LINE"; }
    echo
    cat "$OUT/vtpm-alone.md"
} >"$OUT/vtpm.md"
cat "$OUT/vtpm.md"
log "results in $OUT"
