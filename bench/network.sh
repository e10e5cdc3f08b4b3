#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck disable=SC1090,SC1091,SC2034 # lib.sh is sourced at run time and uses TMD_PID
# Container networking: what a bridged container adds to a start, and TCP throughput
# from a container to the host over its veth against the host's loopback. Run as root:
#
#   bench/network.sh [OUTDIR]
#
# 1. Latency. One private trustmed with a bridge and subnet of its own (device.json network,
#    "nat": false: nothing of the host's routing is touched), two containers on the busybox rootfs
#    of scripts/mkrootfs.sh, {"init": "/bin/true", "data_size_mb": 0, "token": "none"}, one with
#    "network": {"mode": "none"}, one "bridged". `trustme start --attach NAME` (start to exit: the
#    network's setup and its teardown) as in start_latency.sh, in two situations:
#      another  a third bridged container (sleeping) runs throughout: the bridge exists, the common
#               case. ROUNDS rounds of `hyperfine -N --warmup WARMUP --runs RUNS`, order rotated.
#      first    no other bridged container: before each run (untimed, --prepare) the script waits
#               until the bridge is gone (trustmed deletes it NET_BRIDGE_LINGER_MS after the last
#               bridged container) and 0.5 s more, so every bridged start makes the bridge. One round of
#               FIRST_RUNS runs of each; the none container gets the same prepare.
#    And start alone, stop alone: `trustme start NAME` of the same configs with a sleeping init
#    (--prepare stops it, untimed), and `trustme stop --kill NAME` (--prepare starts it), with the
#    other bridged container running; ROUNDS rounds of RUNS runs, order alternated.
# 2. Throughput. iperf3 (Debian's, dynamically linked) in a rootfs of its own: the busybox rootfs
#    plus /usr/bin/iperf3 and the shared libraries ldd lists. The container's init is the iperf3
#    client; the server runs on the host bound to the bridge address, on a port in the container's
#    "host_ports" (containers reach host services only so: docs/NETWORK.md). Against the host's
#    loopback: client and server on the host, 127.0.0.1. IPERF_REPS runs of each, alternating,
#    each `iperf3 -c ADDR -p PORT -t IPERF_SECONDS -O 1 -J` (one TCP stream, first second omitted);
#    the figure is the receiver's bits per second.
# Writes into OUTDIR (default: a temporary directory, printed at the end):
#   net-another-roundN.json, net-first.json, net-start-roundN.json, net-stop-roundN.json  hyperfine JSON
#   net-iperf-{veth,lo}-N.json   iperf3 -J
#   net-cpu.tsv   "MODE START_US STOP_US" per start and stop (CPU of trustmed's cgroup, microseconds)
#   network.env   facts for the report (run-all.sh network_section)
#   network-latency.md, network-throughput.md   the tables
#    And CPU per start and per stop: the CPU time of a cgroup holding trustmed (moved in after its
#    start: its nft helper, veth deleter and setup processes inherit it) and the containers (below it,
#    --cgroup-parent), around each `trustme start` and `trustme stop --kill` of the sleeping configs,
#    CPU_REPS of each, alternating.
# Environment: RUNS (30), WARMUP (3), ROUNDS (3), FIRST_RUNS (30), IPERF_REPS (5), IPERF_SECONDS (5), CPU_REPS (20),
# SKIP_INSTALL=1 to skip install-deps.sh. Everything it makes (daemon, containers, bridge, veths,
# nftables tables, iperf3 servers, cgroups, files) is removed on exit, also on failure or interruption.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-3}
FIRST_RUNS=${FIRST_RUNS:-30}
IPERF_REPS=${IPERF_REPS:-5}
IPERF_SECONDS=${IPERF_SECONDS:-5}
CPU_REPS=${CPU_REPS:-20}
CG_PARENT=trustme-bench-net
ID_BASE=3700000000 # 4 containers * 65536 ids from here; clear of the other scripts' and the tests' ids
BRIDGE=tmbn$(($$ % 100000))
IPERF_PORT=$((15201 + $$ % 1000))
LO_PORT=$((IPERF_PORT + 1))

need_root
bench_dirs net "${1:-}" network.env
chmod 0711 "$W" # trustme-tpm (trustmed's tpmd) must reach its dirs below W, and the binaries there
TMD_PID=
SERVERS=()

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    stop_trustmed
    # Whatever trustmed could not remove (it was killed, say): only this run's names.
    for fam in inet bridge; do nft delete table "$fam" "trustme-$BRIDGE" 2>/dev/null; done
    for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
        if [ "$l" = "$BRIDGE" ] || printf '%s\n' "${VETHS[@]:-}" | grep -qx "$l"; then
            log "warning: removing leftover link $l"
            ip link del "$l" 2>/dev/null
        fi
    done
    rmdir_cgroups "$CG_PARENT"
    remove_work_dir "$W"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
VETHS=()

install_bench_deps
for t in hyperfine jq python3 iperf3 ip nft ldd; do
    command -v "$t" >/dev/null || die "$t is missing (scripts/install-deps.sh --bench)"
done
ensure_build "$W/bin"

# A /24 no route of the host covers yet (the integration tests use 10.200-249.x).
SUBNET=
for _ in $(seq 50); do
    cand=10.253.$((RANDOM % 250 + 1))
    if ! ip -4 route show | grep -q "^$cand\." && ! ip -4 addr show | grep -q "inet $cand\."; then
        SUBNET=$cand
        break
    fi
done
[ -n "$SUBNET" ] || die "no free 10.253.x.0/24 subnet found"
BR_ADDR=$SUBNET.1

log "building the rootfs (busybox) and the iperf3 rootfs (busybox + iperf3 and its libraries)"
R=$W/rootfs
"$ROOT/scripts/mkrootfs.sh" "$R" >/dev/null
RI=$W/rootfs-iperf3
"$ROOT/scripts/mkrootfs.sh" "$RI" >/dev/null
IPERF3=$(command -v iperf3)
cp -L --parents "$IPERF3" "$RI/"
for lib in $(ldd "$IPERF3" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    cp -L --parents "$lib" "$RI/"
done

mkdir -p "$W/tm/data"
jq -n --arg br "$BRIDGE" --arg sn "$SUBNET.0/24" \
    '{policy: {allow_unsigned: true}, network: {bridge: $br, subnet: $sn, nat: false}}' >"$W/tm/data/device.json"
log "starting trustmed (bridge $BRIDGE, subnet $SUBNET.0/24, cgroup parent $CG_PARENT/ct)"
start_trustmed "$W/tm" "$CG_PARENT/ct" "$ID_BASE"
# CPU is read from a cgroup that holds trustmed (moved in now: the nft helper, the veth deleter and
# every setup process are forked later and inherit it) and, below it, the containers: its usage
# counts all of them, at the kernel's resolution, also for processes that are gone.
if [ -d /sys/fs/cgroup/cpuacct ]; then
    CPU_CG=/sys/fs/cgroup/cpuacct/$CG_PARENT
else
    CPU_CG=/sys/fs/cgroup/$CG_PARENT # cgroup v2: cpu.stat's usage_usec
fi
mkdir -p "$CPU_CG/daemon"
echo "$TMD_PID" >"$CPU_CG/daemon/cgroup.procs" || die "cannot move trustmed into $CPU_CG/daemon"

mkct() { # NAME ROOTFS NETWORK-JSON INIT [ARG...]
    local name=$1 rootfs=$2 net=$3 init=$4
    shift 4
    local args='[]'
    [ $# = 0 ] || args=$(printf '%s\n' "$@" | jq -R . | jq -s -c .)
    jq -n --arg n "$name" --arg r "$rootfs" --argjson net "$net" --arg init "$init" --argjson a "$args" \
        '{name: $n, rootfs: {path: $r}, init: $init, args: $a, data_size_mb: 0, token: "none",
          network: $net}' >"$W/$name.json"
    tm create "$W/$name.json" >/dev/null || die "trustme create $name failed"
    VETHS+=("tm$(tm list --json | jq -r --arg n "$name" '.[] | select(.name == $n) | .uuid' | tr -d - | cut -c1-10)")
}
mkct none "$R" '{"mode": "none"}' /bin/true
mkct bridged "$R" '{"mode": "bridged"}' /bin/true
mkct sleep-none "$R" '{"mode": "none"}' /bin/sleep 1000000
mkct sleep-bridged "$R" '{"mode": "bridged"}' /bin/sleep 1000000
mkct other "$R" '{"mode": "bridged"}' /bin/sleep 1000000
mkct iperf "$RI" "{\"mode\": \"bridged\", \"host_ports\": [$IPERF_PORT]}" "$IPERF3" \
    -c "$BR_ADDR" -p "$IPERF_PORT" -t "$IPERF_SECONDS" -O 1 -J
for n in none bridged; do
    tm start --attach "$n" || die "trustme start --attach $n failed"
done

# The bridge's name goes first, then the deleting child waits out the kernel's RCU work: 0.5 s more,
# so that a start finds the machine as after a long idle, not in the middle of that deletion.
gone_cmd="sh -c 'sleep 0.3; while ip link show $BRIDGE >/dev/null 2>&1; do sleep 0.05; done; sleep 0.5'"
START=("$TRUSTME --run-dir $TMD_RUN start --attach none" "$TRUSTME --run-dir $TMD_RUN start --attach bridged")
NAMES=("none" "bridged")

# --- 1a. first bridged container: the bridge is made at every start -----------------------------
log "latency, first bridged container: $FIRST_RUNS runs each, waiting for the bridge to go before each"
hyperfine -N --style none --warmup 1 --runs "$FIRST_RUNS" --prepare "$gone_cmd" \
    --export-json "$OUT/net-first.json" -n "${NAMES[0]}" "${START[0]}" -n "${NAMES[1]}" "${START[1]}" >/dev/null

# --- 1b. another bridged container runs ---------------------------------------------------------
tm start other >/dev/null || die "trustme start other failed"
for ((r = 1; r <= ROUNDS; r++)); do
    args=()
    for ((i = 0; i < 2; i++)); do
        j=$(((i + r - 1) % 2))
        args+=(-n "${NAMES[j]}" "${START[j]}")
    done
    log "latency, another bridged container running: round $r of $ROUNDS"
    hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" \
        --export-json "$OUT/net-another-round$r.json" "${args[@]}" >/dev/null
done

# --- 1c. start alone, stop alone (another bridged container runs) -------------------------------
CLI="$TRUSTME --run-dir $TMD_RUN"
STOP_BOTH="sh -c '$CLI stop --kill sleep-none >/dev/null 2>&1; $CLI stop --kill sleep-bridged >/dev/null 2>&1; true'"
START_BOTH="sh -c '$CLI start sleep-none >/dev/null 2>&1; $CLI start sleep-bridged >/dev/null 2>&1; true'"
for ((r = 1; r <= ROUNDS; r++)); do
    log "start alone and stop alone: round $r of $ROUNDS"
    if [ $((r % 2)) = 1 ]; then order=(none bridged); else order=(bridged none); fi
    args=()
    for n in "${order[@]}"; do args+=(-n "$n" "$CLI start sleep-$n"); done
    hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" --export-json "$OUT/net-start-round$r.json" \
        --prepare "$STOP_BOTH" "${args[@]}" >/dev/null
    args=()
    for n in "${order[@]}"; do args+=(-n "$n" "$CLI stop --kill sleep-$n"); done
    hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" --export-json "$OUT/net-stop-round$r.json" \
        --prepare "$START_BOTH" "${args[@]}" >/dev/null
done
tm stop --kill sleep-none >/dev/null 2>&1 || true
tm stop --kill sleep-bridged >/dev/null 2>&1 || true

# --- 1d. CPU per start and per stop (another bridged container runs) ----------------------------
# The CPU time of trustmed's cgroup (trustmed, its nft helper and veth deleter, the setup processes,
# the containers) in microseconds, before and after each start (0.3 s after it returns: the setup
# process is reaped) and each stop --kill (0.3 s after: the veth deletion lands in it); CPU_REPS of
# each, alternating.
cg_cpu_us() {
    if [ -f "$CPU_CG/cpuacct.usage" ]; then
        echo $(($(cat "$CPU_CG/cpuacct.usage") / 1000))
    else
        awk '$1 == "usage_usec" {print $2}' "$CPU_CG/cpu.stat"
    fi
}
log "CPU per start and stop: $CPU_REPS starts of each, alternating"
: >"$OUT/net-cpu.tsv"
for ((k = 1; k <= CPU_REPS; k++)); do
    for n in none bridged; do
        c0=$(cg_cpu_us)
        tm start "sleep-$n" >/dev/null || die "trustme start sleep-$n failed"
        sleep 0.3
        c1=$(cg_cpu_us)
        tm stop --kill "sleep-$n" >/dev/null || true
        sleep 0.3
        c2=$(cg_cpu_us)
        echo "$n $((c1 - c0)) $((c2 - c1))" >>"$OUT/net-cpu.tsv"
    done
done

# --- 2. throughput ------------------------------------------------------------------------------
ip -4 addr show dev "$BRIDGE" | grep -q "inet $BR_ADDR/" || die "the bridge has no address $BR_ADDR"
iperf3 -s -B "$BR_ADDR" -p "$IPERF_PORT" >"$W/iperf-server-veth.log" 2>&1 &
SERVERS+=($!)
iperf3 -s -B 127.0.0.1 -p "$LO_PORT" >"$W/iperf-server-lo.log" 2>&1 &
SERVERS+=($!)
for _ in $(seq 50); do
    ss -Htln "sport = :$IPERF_PORT" | grep -q . && ss -Htln "sport = :$LO_PORT" | grep -q . && break
    sleep 0.1
done
for ((k = 1; k <= IPERF_REPS; k++)); do
    log "iperf3: repetition $k of $IPERF_REPS (container → host over the veth, then host loopback)"
    tm start --attach iperf >"$OUT/net-iperf-veth-$k.json" 2>"$W/iperf-ct.err" ||
        { cat "$W/iperf-ct.err" "$OUT/net-iperf-veth-$k.json" >&2; die "iperf3 in the container failed"; }
    iperf3 -c 127.0.0.1 -p "$LO_PORT" -t "$IPERF_SECONDS" -O 1 -J >"$OUT/net-iperf-lo-$k.json" ||
        die "iperf3 over loopback failed"
done
tm stop --kill other >/dev/null 2>&1 || true

# --- facts and tables ---------------------------------------------------------------------------
fact NET_RUNS "$RUNS"
fact NET_WARMUP "$WARMUP"
fact NET_ROUNDS "$ROUNDS"
fact NET_FIRST_RUNS "$FIRST_RUNS"
fact NET_IPERF_REPS "$IPERF_REPS"
fact NET_IPERF_SECONDS "$IPERF_SECONDS"
fact NET_IPERF_VERSION "$(iperf3 --version | head -n1)"
fact NET_NFT_VERSION "$(nft --version)"
fact NET_KERNEL "$(uname -r)"
fact NET_CPU "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
fact NET_NPROC "$(nproc)"
fact NET_CPU_REPS "$CPU_REPS"
fact NET_LOAD "$(cut -d' ' -f1-3 /proc/loadavg)"
fact NET_HYPERFINE "$(hyperfine --version)"
fact NET_LINGER_MS "$(awk '/define NET_BRIDGE_LINGER_MS/ {print $3}' "$ROOT/src/daemon/net/net.h")"
fact NET_REV "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
fact NET_DATE "$(date -u '+%Y-%m-%d %H:%M UTC')"
fact NET_LIBS "$(ldd "$IPERF3" | awk '$2 == "=>" {print $1}' | paste -sd' ')"

python3 - "$OUT" "$ROUNDS" "$IPERF_REPS" >>"$ENV_OUT" <<'PY'
import json, shlex, statistics as st, sys
out, rounds, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def load(files):
    times, per = {}, {}
    for k, f in enumerate(files):
        for res in json.load(open(f))["results"]:
            times.setdefault(res["command"], []).extend(x * 1000 for x in res["times"])
            per.setdefault(res["command"], []).append(res["median"] * 1000)
    return times, per

facts = {}
rows = ["| situation | command | median (ms) | median of each round (ms) | mean ± σ (ms) | min–max (ms) | added by bridged (ms) |",
        "|---|---|---:|---:|---:|---:|---:|"]
def block(key, label, cmd, files):
    times, per = load(files)
    n, b = st.median(times["none"]), st.median(times["bridged"])
    deltas = sorted(y - x for x, y in zip(per["none"], per["bridged"]))
    for name in ("none", "bridged"):
        t = times[name]
        added = "–" if name == "none" else f"**+{b - n:.2f}**" + (
            f" (rounds {deltas[0]:+.2f}…{deltas[-1]:+.2f})" if len(deltas) > 1 else "")
        rows.append(f"| {label} | `{cmd} {name}` | **{st.median(t):.2f}** | "
                    f"{' / '.join(f'{x:.2f}' for x in per[name])} | {st.mean(t):.2f} ± {st.stdev(t):.2f} | "
                    f"{min(t):.2f}–{max(t):.2f} | {added} |")
    facts.update({f"NET_{key}_NONE_MS": f"{n:.2f}", f"NET_{key}_BRIDGED_MS": f"{b:.2f}",
                  f"NET_{key}_ADDED_MS": f"{b - n:.2f}",
                  f"NET_{key}_ADDED_RANGE": f"{deltas[0]:.2f}–{deltas[-1]:.2f}",
                  f"NET_{key}_SIGMA_BRIDGED": f"{st.stdev(times['bridged']):.2f}"})
block("ANOTHER", "another bridged container runs", "trustme start --attach",
      [f"{out}/net-another-round{r}.json" for r in range(1, rounds + 1)])
block("FIRST", "first bridged container (makes the bridge)", "trustme start --attach", [f"{out}/net-first.json"])
block("START", "start alone (init sleeps), another runs", "trustme start",
      [f"{out}/net-start-round{r}.json" for r in range(1, rounds + 1)])
block("STOP", "stop alone (`--kill`), another runs", "trustme stop --kill",
      [f"{out}/net-stop-round{r}.json" for r in range(1, rounds + 1)])
cpu, cpu_stop = {}, {}
for line in open(f"{out}/net-cpu.tsv"):
    mode, start_us, stop_us = line.split()
    cpu.setdefault(mode, []).append(int(start_us) / 1000)
    cpu_stop.setdefault(mode, []).append(int(stop_us) / 1000)
cn, cb = st.mean(cpu["none"]), st.mean(cpu["bridged"])
sn, sb = st.mean(cpu_stop["none"]), st.mean(cpu_stop["bridged"])
rows.append(f"| CPU per start, trustmed's cgroup (mean of {len(cpu['none'])}; helpers, setup process and container "
            f"included), another runs | `trustme start` | none **{cn:.2f}**, bridged **{cb:.2f}** | – | – | – | **{cb - cn:+.2f}** |")
rows.append(f"| CPU per stop, trustmed's cgroup (mean of {len(cpu_stop['none'])}; the veth's deletion included), "
            f"another runs | `trustme stop --kill` | none **{sn:.2f}**, bridged **{sb:.2f}** | – | – | – | **{sb - sn:+.2f}** |")
facts.update({"NET_CPU_NONE_MS": f"{cn:.2f}", "NET_CPU_BRIDGED_MS": f"{cb:.2f}", "NET_CPU_ADDED_MS": f"{cb - cn:.2f}",
              "NET_CPU_STOP_NONE_MS": f"{sn:.2f}", "NET_CPU_STOP_BRIDGED_MS": f"{sb:.2f}",
              "NET_CPU_STOP_ADDED_MS": f"{sb - sn:.2f}"})
open(f"{out}/network-latency.md", "w").write("\n".join(rows) + "\n")

def gbits(f):
    return json.load(open(f))["end"]["sum_received"]["bits_per_second"] / 1e9
veth = [gbits(f"{out}/net-iperf-veth-{k}.json") for k in range(1, reps + 1)]
lo = [gbits(f"{out}/net-iperf-lo-{k}.json") for k in range(1, reps + 1)]
mv, ml = st.median(veth), st.median(lo)
ratios = sorted(v / l for v, l in zip(veth, lo))
rows = ["| path | median (Gbit/s) | each run (Gbit/s) | min–max | ratio to loopback |",
        "|---|---:|---:|---:|---:|",
        f"| container → host, veth + bridge (`iperf3 -c BRIDGE_ADDR` in the container) | **{mv:.2f}** | "
        f"{' / '.join(f'{x:.2f}' for x in veth)} | {min(veth):.2f}–{max(veth):.2f} | **{mv / ml:.2f}×** "
        f"(run by run {ratios[0]:.2f}–{ratios[-1]:.2f}) |",
        f"| host loopback (`iperf3 -c 127.0.0.1`) | **{ml:.2f}** | {' / '.join(f'{x:.2f}' for x in lo)} | "
        f"{min(lo):.2f}–{max(lo):.2f} | – |"]
open(f"{out}/network-throughput.md", "w").write("\n".join(rows) + "\n")
facts.update({"NET_VETH_GBITS": f"{mv:.2f}", "NET_LO_GBITS": f"{ml:.2f}", "NET_TP_RATIO": f"{mv / ml:.2f}",
              "NET_TP_RATIO_RANGE": f"{ratios[0]:.2f}–{ratios[-1]:.2f}"})
for k, v in facts.items():
    print(f"{k}={shlex.quote(v)}")
PY
cat "$OUT/network-latency.md" "$OUT/network-throughput.md"
log "results in $OUT"
