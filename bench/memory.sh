#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck disable=SC1090,SC1091,SC2154 # lib.sh and the facts files are sourced at run time
# Memory of trustmed and per container, and a check that trustme runs no helper process per
# container. Run as root:
#
#   bench/memory.sh [OUTDIR]
#
# Steps, all with one private trustmed (own data/run dirs, cgroup parent trustme-bench-mem):
#   1. trustmed's VmRSS idle without containers;
#   2. with N (default 50) created-but-stopped containers;
#   3. with the N containers running /bin/sleep 1000000 (data_size_mb 0: tmpfs upper layer);
#   4. host memory per running container beyond its own processes: the growth of the kernel's
#      Slab + Shmem counters (namespaces, mounts, overlay/tmpfs, cgroups, ...) divided by N; the
#      processes' own memory is their PSS plus KernelStack and PageTables. Cross-checks: the
#      (MemTotal - MemAvailable) delta minus all that (noisy on a shared machine), and what the
#      containers' memory cgroups were charged (v1 memory.usage_in_bytes, includes kernel memory);
#   5. the processes that are descendants of trustmed but in no container cgroup (helpers), other
#      than the token service trustme-scd and the TPM service trustme-tpmd with its swtpm (one each
#      per trustmed, not per container): must be 0;
#   6. trustmed's VmRSS after all containers were stopped again, and host memory then (leak check).
# Writes OUTDIR/memory.env (facts) and OUTDIR/memory.md (table). Environment: N (default 50), ROUNDS
# (start/stop cycles for the host counters, default 3), SKIP_INSTALL=1 to skip install-deps.sh. Everything it makes is removed on exit, also on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

N=${N:-50}
ROUNDS=${ROUNDS:-3}
START_MS=()
AFTER_STOP=()
CG_PARENT=trustme-bench-mem
ID_BASE=3500000000          # N * 65536 ids from here; far above the integration tests' ids

need_root
bench_dirs mem "${1:-}" memory.env
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
trap cleanup EXIT
trap 'exit 130' INT TERM

install_bench_deps
command -v jq >/dev/null || die "jq is missing"
ensure_build "$W/bin"

# meminfo_kib FIELD...: the median of 5 samples, 0.2 s apart, of each field (kB), in order.
# "Used" is MemTotal - MemAvailable.
meminfo_kib() {
    local s i samples=""
    for s in 1 2 3 4 5; do
        samples+=$(awk '{v[$1] = $2}
             END {print v["MemTotal:"] - v["MemAvailable:"], v["MemFree:"], v["Slab:"], v["SUnreclaim:"],
                  v["KernelStack:"], v["PageTables:"], v["Shmem:"]}' /proc/meminfo)$'\n'
        [ $s = 5 ] || sleep 0.2
    done
    for i in 1 2 3 4 5 6 7; do
        printf '%s\n' "$samples" | awk 'NF' | cut -d' ' -f"$i" | sort -n | sed -n 3p
    done | paste -sd' '
}
MEMFIELDS=(Used MemFree Slab SUnreclaim KernelStack PageTables Shmem)

# The processes in our container cgroups (pids hierarchy if it is v1, else the v2 one).
cgroup_root() {
    local d
    for d in /sys/fs/cgroup/pids /sys/fs/cgroup/unified /sys/fs/cgroup; do
        [ -d "$d/$CG_PARENT" ] && { echo "$d/$CG_PARENT"; return; }
    done
}
container_pids() {
    local r
    r=$(cgroup_root)
    [ -n "$r" ] || return 0
    find "$r" -mindepth 2 -name cgroup.procs -exec cat {} + 2>/dev/null | sort -n
}
# slab_snapshot: "CACHE BYTES" (active objects * object size) for every slab cache.
slab_snapshot() {
    awk 'NR > 2 {print $1, $2 * $4}' /proc/slabinfo 2>/dev/null || true
}
descendants() { # PID: all descendants (by PPid), one per line
    ps -eo pid=,ppid= | awk -v root="$1" '{kids[$2] = kids[$2] " " $1}
        END {q[1] = root; n = 1; for (i = 1; i <= n; i++) {m = split(kids[q[i]], k, " ");
             for (j = 1; j <= m; j++) {q[++n] = k[j]; print k[j]}}}'
}
sum_smaps() { # FIELD PIDS...: sum of FIELD (kB) from smaps_rollup
    local f=$1 p total=0 v
    shift
    for p in "$@"; do
        v=$(awk -v f="$f:" '$1 == f {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

log "building the busybox rootfs"
R=$W/rootfs
"$ROOT/scripts/mkrootfs.sh" "$R" >/dev/null
# The product's real path: a signed GuestOS in the store (lib.sh signed_guestos).
ensure_tools "$W/bin"
signed_guestos "$W" "$R" mem "$W/tm/data"
sync -f "$R/bin/busybox" # its page cache is written back, so it is clean and shared like any binary

log "starting trustmed"
start_trustmed "$W/tm" "$CG_PARENT" "$ID_BASE"
install_guestos "$GUESTOS_DIR"
# Idle: trustme-scd and trustme-tpmd give memory back 2 s after their last request (the install's
# signature check and anchor; src/lib/idle_memory.h). tpmd's last request comes up to 2 s after
# the install: trustmed anchors the audit log's head at most every 2 s (AUDIT_ANCHOR_MS in
# src/daemon/services/audit_anchor.c), so idle means 4 s after the install, plus a margin.
sleep 5
RSS_IDLE=$(vmrss_kib "$TMD_PID")
# The token service: trustmed's own child, one per trustmed whatever the number of containers.
scd_pids() { ps -o pid=,comm= --ppid "$TMD_PID" | awk '$2 == "trustme-scd" {print $1}'; }
SCD_PID=$(scd_pids | head -n1)
fact SCD_RSS_IDLE_KIB "$( [ -n "$SCD_PID" ] && vmrss_kib "$SCD_PID" || echo n/a)"
fact SCD_PSS_IDLE_KIB "$( [ -n "$SCD_PID" ] && sum_smaps Pss "$SCD_PID" || echo n/a)"
fact RSS_IDLE_KIB "$RSS_IDLE"
fact RSS_IDLE_DETAIL "$(grep -E '^(RssAnon|RssFile|RssShmem):' "/proc/$TMD_PID/status" | tr -s ' \t\n' ' ')"
fact PSS_IDLE_KIB "$(sum_smaps Pss "$TMD_PID")"
# The biggest contributors to that RSS, by mapping (file name, or [heap], [stack], [anon]).
rss_by_mapping() { # PID: the 5 largest mappings by RSS (file name, or [heap], [stack], [anon])
    awk '/^[0-9a-f]+-[0-9a-f]+ / {n = ($6 == "" ? "[anon]" : $6); sub(/.*\//, "", n)}
        /^Rss:/ {r[n] += $2} END {for (k in r) print r[k], k}' "/proc/$1/smaps" | sort -rn | head -n 5 |
        awk '{printf "%s%s %s kB", (NR > 1 ? ", " : ""), $2, $1}'
}
fact RSS_IDLE_BY_MAPPING "$(rss_by_mapping "$TMD_PID")"
TPMD_PID=$(ps -o pid=,comm= --ppid "$TMD_PID" | awk '$2 == "trustme-tpmd" {print $1}' | head -n1)
fact TPMD_RSS_IDLE_KIB "$( [ -n "$TPMD_PID" ] && vmrss_kib "$TPMD_PID" || echo n/a)"
fact TPMD_PSS_IDLE_KIB "$( [ -n "$TPMD_PID" ] && sum_smaps Pss "$TPMD_PID" || echo n/a)"
fact SCD_RSS_BY_MAPPING "$( [ -n "$SCD_PID" ] && rss_by_mapping "$SCD_PID" || echo n/a)"
log "trustmed idle: VmRSS $RSS_IDLE kB"

log "creating $N containers"
for i in $(seq -w 1 "$N"); do
    printf '{"name":"mem%s","guestos":{"name":"mem"},"init":"/bin/sleep","args":["1000000"],"data_size_mb":0}\n' \
        "$i" >"$W/c$i.json"
    tm create "$W/c$i.json" >/dev/null
done
sleep 1
RSS_STOPPED=$(vmrss_kib "$TMD_PID")
fact RSS_STOPPED_KIB "$RSS_STOPPED"
log "trustmed with $N stopped containers: VmRSS $RSS_STOPPED kB"

# Host-wide counters move with everything else running on the machine, so the start/stop cycle is
# done ROUNDS times and the median delta of each counter is reported.
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
declare -A DELTAS
for round in $(seq "$ROUNDS"); do
    read -r -a MEM_BEFORE <<<"$(meminfo_kib)"
    [ "$round" = 1 ] && slab_snapshot >"$W/slab.before"
    NPROC_BEFORE=$(ps -e --no-headers | wc -l)
    log "round $round/$ROUNDS: starting $N containers"
    T0=$(date +%s%N)
    for i in $(seq -w 1 "$N"); do
        tm start "mem$i" >/dev/null
    done
    T1=$(date +%s%N)
    START_MS+=("$(( (T1 - T0) / 1000000 ))")
    running=$(tm list --json | jq '[.[] | select(.state == "running")] | length')
    [ "$running" = "$N" ] || die "only $running of $N containers are running"
    sleep 2
    read -r -a MEM_RUNNING <<<"$(meminfo_kib)"
    NPROC_RUNNING=$(ps -e --no-headers | wc -l)
    for i in "${!MEMFIELDS[@]}"; do
        DELTAS[${MEMFIELDS[$i]}]+=" $((MEM_RUNNING[i] - MEM_BEFORE[i]))"
    done
    log "round $round: host used-memory delta $((MEM_RUNNING[0] - MEM_BEFORE[0])) kB"

    if [ "$round" = 1 ]; then
        slab_snapshot >"$W/slab.running"
        # The slab caches that grew most, per container (noisy for small caches: other load).
        fact SLAB_TOP "$(awk -v n="$N" 'NR == FNR {b[$1] = $2; next} {d = $2 - b[$1]; if (d > 0) print d, $1}' \
            "$W/slab.before" "$W/slab.running" | sort -rn | head -n 8 |
            awk -v n="$N" '{printf "%s%s %.1f", (NR > 1 ? ", " : ""), $2, $1 / n / 1024}')"
        RSS_RUNNING=$(vmrss_kib "$TMD_PID")
        fact RSS_RUNNING_KIB "$RSS_RUNNING"
        log "trustmed with $N running containers: VmRSS $RSS_RUNNING kB"
        mapfile -t CPIDS < <(container_pids)
        mapfile -t DESC < <(descendants "$TMD_PID")
        HELPERS=()
        declare -A IN_CONTAINER=()
        for p in "${CPIDS[@]}"; do IN_CONTAINER[$p]=1; done
        mapfile -t SCDS < <(scd_pids)
        for p in "${SCDS[@]}"; do IN_CONTAINER[$p]=1; done # not a helper: the daemon's service
        # Nor the TPM service and its embedded swtpm: one per trustmed, whatever the containers.
        for p in $(ps -o pid=,comm= --ppid "$TMD_PID" | awk '$2 == "trustme-tpmd" {print $1}'); do
            IN_CONTAINER[$p]=1
            for q in $(descendants "$p"); do IN_CONTAINER[$q]=1; done
        done
        for p in "${DESC[@]}"; do
            [ -n "${IN_CONTAINER[$p]:-}" ] || HELPERS+=("$p")
        done
        fact SCD_PROCS "${#SCDS[@]}"
        # And the other way round: a process in a container cgroup that trustmed did not start.
        declare -A IS_DESC=()
        for p in "${DESC[@]}"; do IS_DESC[$p]=1; done
        STRAYS=()
        for p in "${CPIDS[@]}"; do
            [ -n "${IS_DESC[$p]:-}" ] || STRAYS+=("$p")
        done
        fact STRAY_PROCS "${#STRAYS[@]}"
        fact CONTAINER_PROCS "${#CPIDS[@]}"
        fact TRUSTMED_DESCENDANTS "${#DESC[@]}"
        fact HELPER_PROCS "${#HELPERS[@]}"
        fact HELPER_LIST "$(for p in "${HELPERS[@]}"; do ps -o pid=,comm=,args= -p "$p"; done | tr -s ' \n' ' ')"
        fact HOST_NPROC_DELTA "$((NPROC_RUNNING - NPROC_BEFORE))"
        # Processes that name themselves after trustme, other than the daemons and the CLI.
        fact OTHER_TRUSTME_PROCS "$(ps -eo comm= | grep -i trustme | grep -vx trustmed | grep -vx trustme | sort | uniq -c | tr -s ' \n' ' ')"
        log "processes: ${#CPIDS[@]} in container cgroups, ${#DESC[@]} descendants of trustmed, helpers: ${#HELPERS[@]}"
        fact CONTAINER_RSS_KIB "$(sum_smaps Rss "${CPIDS[@]}")"
        fact CONTAINER_PSS_KIB "$(sum_smaps Pss "${CPIDS[@]}")"
        fact CONTAINER_PSS_ANON_KIB "$(sum_smaps Pss_Anon "${CPIDS[@]}")"
        cg_usage=0
        cg_kmem=0
        for f in /sys/fs/cgroup/memory/"$CG_PARENT"/*/memory.usage_in_bytes; do
            [ -f "$f" ] || continue
            cg_usage=$((cg_usage + $(cat "$f")))
            cg_kmem=$((cg_kmem + $(cat "${f%usage_in_bytes}kmem.usage_in_bytes" 2>/dev/null || echo 0)))
        done
        fact CGROUP_USAGE_KIB "$((cg_usage / 1024))"
        fact CGROUP_KMEM_KIB "$((cg_kmem / 1024))"
    fi

    log "round $round: stopping the containers"
    for i in $(seq -w 1 "$N"); do
        tm stop --kill "mem$i" >/dev/null
    done
    sleep 2
    read -r -a MEM_AFTER <<<"$(meminfo_kib)"
    AFTER_STOP+=("$((MEM_AFTER[0] - MEM_BEFORE[0]))")
done
for f in "${MEMFIELDS[@]}"; do
    # shellcheck disable=SC2086
    fact "HOST_${f}_DELTA_KIB" "$(median ${DELTAS[$f]})"
    fact "HOST_${f}_DELTAS_KIB" "${DELTAS[$f]# }"
done
fact HOST_Used_AFTER_STOP_DELTA_KIB "$(median "${AFTER_STOP[@]}")"
fact START_ALL_MS "$(median "${START_MS[@]}")"
RSS_AFTER=$(vmrss_kib "$TMD_PID")
fact RSS_AFTER_STOP_KIB "$RSS_AFTER"
fact ROUNDS "$ROUNDS"
fact N "$N"

# --- summary ------------------------------------------------------------------------------------
. "$ENV_OUT"
per() { awk -v v="$1" -v n="$N" 'BEGIN {printf "%.0f", v / n}'; }
KERNEL_OWN=$((HOST_KernelStack_DELTA_KIB + HOST_PageTables_DELTA_KIB))
BEYOND=$((HOST_Slab_DELTA_KIB + HOST_Shmem_DELTA_KIB))
fact PER_CONTAINER_BEYOND_KIB "$(per "$BEYOND")"
RESIDUAL=$(awk -v u="$HOST_Used_DELTA_KIB" -v p="$CONTAINER_PSS_KIB" -v k="$KERNEL_OWN" -v n="$N" \
    'BEGIN {printf "%.0f", (u - p - k) / n}')
fact PER_CONTAINER_RESIDUAL_KIB "$RESIDUAL"
{
    echo "| quantity | value |"
    echo "|---|---:|"
    echo "| trustmed VmRSS, idle, no containers | **$RSS_IDLE KiB** ($(awk -v v="$RSS_IDLE" 'BEGIN {printf "%.2f", v / 1024}') MiB) |"
    echo "| trustmed VmRSS, $N containers created, all stopped | $RSS_STOPPED KiB |"
    echo "| trustmed VmRSS, $N containers running | $RSS_RUNNING KiB |"
    echo "| trustmed VmRSS, after stopping them again | $RSS_AFTER_STOP_KIB KiB |"
    echo "| token service trustme-scd (one per trustmed), VmRSS (PSS) idle | $SCD_RSS_IDLE_KIB KiB ($SCD_PSS_IDLE_KIB KiB) |"
    echo "| TPM service trustme-tpmd (one per trustmed; its swtpm not counted), VmRSS (PSS) idle | $TPMD_RSS_IDLE_KIB KiB ($TPMD_PSS_IDLE_KIB KiB) |"
    echo "| containers' own processes per container: PSS (RSS) | $(per "$CONTAINER_PSS_KIB") KiB ($(per "$CONTAINER_RSS_KIB") KiB) |"
    echo "| containers' own processes per container: kernel stack + page tables (KernelStack, PageTables deltas) | $(per "$KERNEL_OWN") KiB |"
    echo "| **host memory per container beyond its own processes**: (Slab + Shmem) delta / $N | **$(per "$BEYOND") KiB** |"
    echo "| of which unreclaimable slab (SUnreclaim) | $(per "$HOST_SUnreclaim_DELTA_KIB") KiB |"
    echo "| cross-check: ((MemTotal − MemAvailable) delta − PSS − kernel stack − page tables) / $N | $RESIDUAL KiB (rounds: $HOST_Used_DELTAS_KIB KiB for all $N) |"
    echo "| cross-check: charged to the container's memory cgroup (of which kernel memory) | $(per "$CGROUP_USAGE_KIB") KiB ($(per "$CGROUP_KMEM_KIB") KiB) |"
    echo "| slab caches that grew most, KiB per container | ${SLAB_TOP:-n/a} |"
    echo "| host used-memory delta after stopping all $N again (per container) | $(per "$HOST_Used_AFTER_STOP_DELTA_KIB") KiB |"
    echo "| time to start all $N (\`trustme start\` one after another) | $START_ALL_MS ms |"
    echo "| processes in container cgroups / descendants of trustmed / of them the token service / **helpers** | $CONTAINER_PROCS / $TRUSTMED_DESCENDANTS / $SCD_PROCS / **$HELPER_PROCS** |"
} >"$OUT/memory.md"
cat "$OUT/memory.md"
log "results in $OUT"
