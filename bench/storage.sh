#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck disable=SC1090,SC1091,SC2154 # lib.sh and the facts files are sourced at run time
# Encrypted container storage: what the fscrypt data volume costs in throughput and in start
# latency. Run as root:
#
#   bench/storage.sh [OUTDIR]
#
# 1. Throughput. Sequential write (dd bs=1M conv=fsync, IO_MB MiB) and then read (after
#    sync + echo 3 > /proc/sys/vm/drop_caches, so that it reads through the loop device from the
#    disk) of one file, in four places, all on an ext4 image of DATA_MB MiB (mkfs.ext4 -m 0 -O
#    encrypt, as trustme makes it) on a loop device, in a file on the same host file system:
#      ct-enc     inside a container with an encrypted data volume (soft token; fscrypt v2)
#      host-enc   on the host, in a plain fscrypt v2 directory with trustme's policy (AES-256-XTS
#                 contents, AES-256-CTS names, PAD_32, 64-byte raw key; bench/storage_helper.c)
#      ct-plain   inside a container with an unencrypted data volume ("token": "none")
#      host-plain on the host, in a plain directory of such an image
#    The same static busybox dd runs everywhere, timed by bench/storage_helper.c (CLOCK_MONOTONIC
#    around fork+exec+wait of dd, so trustme's `run` round trip is not in the figure). One
#    unmeasured pass first fills every volume until it is full and deletes that again, so that
#    every block of every (sparse) image file is allocated on the host before the measurement.
#    Then IO_REPS repetitions, the order of the four places rotated each time.
# 2. Start latency. `trustme start --attach` of /bin/true (start, init exits, container stopped
#    again, as in start_latency.sh) for containers with a DATA_LAT_MB MiB data volume that exists
#    already: unencrypted, encrypted with the default scrypt cost (N = 32768), and encrypted with
#    "kdf_n": 1024; and the KDF alone: `openssl kdf ... SCRYPT` with n:32768 and n:1024, and
#    `openssl version` (the process start to subtract), all in one hyperfine invocation per round
#    (LAT_ROUNDS rounds, the order rotated, RUNS runs each). Then PAIRED iterations of an
#    interleaved loop: each of the three starts once and scrypt in one process (/usr/bin/python3
#    hashlib.scrypt: OpenSSL's scrypt as trustme-scd calls it, no process start), so that every
#    start is compared with an unencrypted start and a KDF from the same second. Last, trustme-scd
#    under strace -T for STRACE_STARTS starts: its own share of an unlock.
# Writes into OUTDIR (default: a temporary directory, printed at the end):
#   storage-io.tsv                  every timed dd: repetition, place, write|read, seconds, and the
#                                   kernel CPU time the machine spent meanwhile
#   storage-lat-roundN.json         hyperfine --export-json of each latency round
#   storage-paired.tsv              the interleaved loop: iteration, step, ms
#   storage-scd.strace              trustme-scd's system calls during the strace'd starts
#   storage.env                     facts for the report (run-all.sh)
#   storage-io.md, storage-lat.md   its tables (throughput; latency), storage.md both
# Environment: IO_REPS (default 9), IO_MB (128), DATA_MB (256), DATA_LAT_MB (16), RUNS (40),
# LAT_ROUNDS (3), WARMUP (3), PAIRED (80), STRACE_STARTS (10), SKIP_INSTALL=1 to skip
# install-deps.sh. Everything it makes is removed on exit, also on failure or interruption:
# containers, trustmed and its token service, mounts, loop devices, the host fscrypt key, cgroups,
# files.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

IO_REPS=${IO_REPS:-9}
IO_MB=${IO_MB:-128}
DATA_MB=${DATA_MB:-256}
DATA_LAT_MB=${DATA_LAT_MB:-16}
RUNS=${RUNS:-40}
LAT_ROUNDS=${LAT_ROUNDS:-3}
WARMUP=${WARMUP:-3}
PAIRED=${PAIRED:-80}
STRACE_STARTS=${STRACE_STARTS:-10}
CG_PARENT=trustme-bench-stor
ID_BASE=3700000000          # 5 containers * 65536 ids from here; clear of the other scripts' ids
PIN=2580
PUK=24681357

need_root
bench_dirs stor "${1:-}" storage.env

TMD_PID=
STRACE_PID=
HOST_MNTS=()                # mounted host images, in mount order
HOST_LOOPS=()               # their loop devices
HOST_KEY_ID=                # the host fscrypt key, while added
HELPER=$W/storage_helper

# Host side: the key first (nothing may have a file open then), then the mounts, then the loops.
host_teardown() {
    local i
    if [ -n "$HOST_KEY_ID" ]; then
        "$HELPER" key-remove "$W/host-enc" "$HOST_KEY_ID" || log "warning: could not remove the host fscrypt key"
        HOST_KEY_ID=
    fi
    for ((i = ${#HOST_MNTS[@]} - 1; i >= 0; i--)); do
        umount "${HOST_MNTS[i]}" || umount -l "${HOST_MNTS[i]}"
    done
    HOST_MNTS=()
    for i in "${HOST_LOOPS[@]}"; do
        losetup -d "$i" 2>/dev/null || true
    done
    HOST_LOOPS=()
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$STRACE_PID" ]; then
        kill -INT "$STRACE_PID" 2>/dev/null
        wait "$STRACE_PID" 2>/dev/null
    fi
    stop_trustmed
    host_teardown
    rmdir_cgroups "$CG_PARENT"
    remove_work_dir "$W"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- preparation --------------------------------------------------------------------------------
install_bench_deps
for t in hyperfine jq gcc openssl mkfs.ext4 losetup /usr/bin/python3; do
    command -v "$t" >/dev/null || die "$t is missing (scripts/install-deps.sh --bench)"
done
id trustme-scd >/dev/null 2>&1 || die "no user trustme-scd for the token service (scripts/install-deps.sh adds it)"
[ -e /sys/fs/ext4/features/encryption ] ||
    die "this kernel's ext4 has no encryption support (CONFIG_FS_ENCRYPTION)"
ensure_build "$W/bin"

log "compiling bench/storage_helper.c (static)"
gcc -Wall -Wextra -O2 -static -o "$HELPER" "$ROOT/bench/storage_helper.c" || die "cannot compile bench/storage_helper.c"
log "building the busybox rootfs"
R=$W/rootfs
"$ROOT/scripts/mkrootfs.sh" "$R" "$HELPER" >/dev/null
CT_HELPER=/usr/local/bin/storage_helper

printf '%s\n%s\n' "$PIN" "$PUK" >"$W/pair"
printf '%s\n' "$PIN" >"$W/pin"
chmod 600 "$W/pair" "$W/pin"

log "starting trustmed (cgroup parent $CG_PARENT)"
mkdir -p "$W/tm/data"
echo '{"policy": {"allow_unsigned": true}}' >"$W/tm/data/device.json" # a development rootfs
start_trustmed "$W/tm" "$CG_PARENT" "$ID_BASE"
# NAME INIT DATA_MB TOKEN_JSON: writes and creates a container config.
make_container() {
    local init='"init":"/bin/true"'
    [ "$2" = sleep ] && init='"init":"/bin/sleep","args":["1000000"]'
    printf '{"name":"%s","rootfs":{"path":"%s"},%s,"data_size_mb":%s,"token":%s}\n' "$1" "$R" "$init" "$3" "$4" \
        >"$W/$1.json"
    tm create "$W/$1.json" >/dev/null
}
make_container io-enc sleep "$DATA_MB" '{"type":"soft"}'
make_container io-plain sleep "$DATA_MB" '"none"'
make_container lat-plain true "$DATA_LAT_MB" '"none"'
make_container lat-enc true "$DATA_LAT_MB" '{"type":"soft"}'
make_container lat-enc1k true "$DATA_LAT_MB" '{"type":"soft","kdf_n":1024}'
for c in io-enc lat-enc lat-enc1k; do
    tm change-pin --pin-file "$W/pair" "$c" >/dev/null || die "trustme change-pin $c failed"
done
# The scrypt N each soft token was made with, from the token service's own records.
kdf_n_of() {
    local uuid f
    uuid=$(tm state --json "$1" | jq -r .uuid)
    f="$W/tm/data/scd/tokens/$uuid.soft"
    if [ -f "$f" ]; then jq -r '.kdf.N // empty' "$f" 2>/dev/null || true; fi
}
KDF_N_DEFAULT=$(kdf_n_of lat-enc)
KDF_N_LOW=$(kdf_n_of lat-enc1k)
fact KDF_N_DEFAULT "${KDF_N_DEFAULT:-unknown}"
fact KDF_N_LOW "${KDF_N_LOW:-unknown}"
log "soft tokens: default scrypt N = ${KDF_N_DEFAULT:-?}, low N = ${KDF_N_LOW:-?}"

# The first start of each creates (formats) its data volume: not what is measured.
tm start --pin-file "$W/pin" io-enc >/dev/null || die "trustme start io-enc failed"
tm start io-plain >/dev/null || die "trustme start io-plain failed"
tm start --attach lat-plain || die "trustme start --attach lat-plain failed"
tm start --attach --pin-file "$W/pin" lat-enc || die "trustme start --attach lat-enc failed"
tm start --attach --pin-file "$W/pin" lat-enc1k || die "trustme start --attach lat-enc1k failed"
ENC_STATE=$(tm state --json io-enc | jq -r '"\(.encryption.backend // "none")/\(.encryption.token // "none")"')
PLAIN_STATE=$(tm state --json io-plain | jq -r '"\(.encryption.backend // "none")/\(.encryption.token // "none")"')
[ "$ENC_STATE" = fscrypt/soft ] || die "io-enc is not encrypted with a soft token: $ENC_STATE"
case $PLAIN_STATE in fscrypt/*) die "io-plain is encrypted: $PLAIN_STATE" ;; esac
fact ENC_STATE "$ENC_STATE"

# Host images: the same size and mkfs options as trustme's data volume, loop device, mount options.
host_image() { # NAME: makes, attaches and mounts $W/NAME.img at $W/NAME
    local loop
    truncate -s "${DATA_MB}M" "$W/$1.img"
    mkfs.ext4 -q -F -m 0 -O encrypt "$W/$1.img"
    loop=$(losetup -f --show "$W/$1.img")
    HOST_LOOPS+=("$loop")
    mkdir -p "$W/$1"
    mount -o nodev,nosuid "$loop" "$W/$1"
    HOST_MNTS+=("$W/$1")
}
host_image host-enc
host_image host-plain
head -c 64 /dev/urandom >"$W/host.key"
chmod 600 "$W/host.key"
HOST_KEY_ID=$("$HELPER" key-add "$W/host-enc" "$W/host.key")
mkdir "$W/host-enc/encrypted"
"$HELPER" policy "$W/host-enc/encrypted" "$HOST_KEY_ID"
lsattr -d "$W/host-enc/encrypted" | awk '{exit $1 !~ /E/}' || die "the host directory is not encrypted"
mkdir "$W/host-plain/plain"

# --- 1. throughput ------------------------------------------------------------------------------
PLACES=(ct-enc host-enc ct-plain host-plain)
# on PLACE ARG...: runs `storage_helper ARG...` in that place, busybox dd being "dd" there.
on() {
    local p=$1
    shift
    case $p in
    ct-enc) tm run io-enc -- "$CT_HELPER" "$@" </dev/null ;;
    ct-plain) tm run io-plain -- "$CT_HELPER" "$@" </dev/null ;;
    host-*) "$HELPER" "$@" </dev/null ;;
    esac
}
dd_of() { case $1 in ct-*) echo /bin/dd ;; *) echo "$R/bin/busybox dd" ;; esac; }
file_of() {
    case $1 in
    ct-*) echo /root/bench.dat ;;
    host-enc) echo "$W/host-enc/encrypted/bench.dat" ;;
    host-plain) echo "$W/host-plain/plain/bench.dat" ;;
    esac
}
# Kernel CPU time of the whole machine so far (system + irq + softirq, in clock ticks): the
# encryption and decryption happen there (partly in kworkers), not in dd's own account.
kernel_ticks() { awk '$1 == "cpu" {print $4 + $7 + $8; exit}' /proc/stat; }
TICK=$(getconf CLK_TCK)
# timed PLACE ARG...: prints the seconds that storage_helper measured and the kernel CPU seconds
# the machine spent meanwhile (tab-separated).
timed() {
    local out k0 k1
    k0=$(kernel_ticks)
    out=$(on "$1" time "${@:2}" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
    k1=$(kernel_ticks)
    awk -v k=$((k1 - k0)) -v hz="$TICK" '$1 == "elapsed" {printf "%s\t%.2f\n", $2, k / hz}' <<<"$out"
}
drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
    # What every read needs besides the file itself, back in the page cache: the same for all places.
    cat "$R/bin/busybox" "$R$CT_HELPER" "$HELPER" "$TRUSTME" >/dev/null
}

log "throughput: filling each volume once (every block of the image files allocated)"
for p in "${PLACES[@]}"; do
    f=$(file_of "$p")
    # shellcheck disable=SC2046 # dd_of is a command and its argument
    on "$p" time $(dd_of "$p") if=/dev/zero of="$f.fill" bs=1M >/dev/null 2>&1 || true # ends at ENOSPC
    on "$p" time /bin/rm -f "$f.fill" >/dev/null 2>&1 || die "cannot remove the fill file in $p"
done
sync
printf 'rep\tplace\top\tseconds\tkernel_cpu_s\n' >"$OUT/storage-io.tsv"
for rep in $(seq "$IO_REPS"); do
    log "throughput: repetition $rep/$IO_REPS ($IO_MB MiB written with conv=fsync, then read after drop_caches)"
    for k in "${!PLACES[@]}"; do
        p=${PLACES[$(((k + rep - 1) % ${#PLACES[@]}))]}
        f=$(file_of "$p")
        on "$p" time /bin/rm -f "$f" >/dev/null 2>&1 || die "cannot remove $f in $p"
        sync
        # shellcheck disable=SC2046
        s=$(timed "$p" $(dd_of "$p") if=/dev/zero of="$f" bs=1M count="$IO_MB" conv=fsync) ||
            die "the write in $p failed"
        printf '%s\t%s\twrite\t%s\n' "$rep" "$p" "$s" >>"$OUT/storage-io.tsv"
        drop_caches
        # shellcheck disable=SC2046
        s=$(timed "$p" $(dd_of "$p") if="$f" of=/dev/null bs=1M) || die "the read in $p failed"
        printf '%s\t%s\tread\t%s\n' "$rep" "$p" "$s" >>"$OUT/storage-io.tsv"
    done
done
tm stop --kill io-enc >/dev/null
tm stop --kill io-plain >/dev/null
host_teardown
log "host fscrypt key removed, host images unmounted"

# --- 2. start latency ---------------------------------------------------------------------------
KDF="openssl kdf -keylen 32 -kdfopt pass:$PIN -kdfopt salt:0123456789abcdef0123456789abcdef -kdfopt r:8 -kdfopt p:1 -kdfopt maxmem_bytes:67108864"
NAMES=("start unencrypted" "start encrypted N=32768" "start encrypted N=1024"
       "openssl kdf scrypt N=32768" "openssl kdf scrypt N=1024" "openssl version")
CMDS=("$TRUSTME --run-dir $TMD_RUN start --attach lat-plain"
      "$TRUSTME --run-dir $TMD_RUN start --attach --pin-file $W/pin lat-enc"
      "$TRUSTME --run-dir $TMD_RUN start --attach --pin-file $W/pin lat-enc1k"
      "$KDF -kdfopt n:32768 SCRYPT" "$KDF -kdfopt n:1024 SCRYPT" "openssl version")
for round in $(seq "$LAT_ROUNDS"); do
    log "latency round $round/$LAT_ROUNDS: $RUNS runs (+$WARMUP warm-up) of each command"
    args=()
    for k in "${!NAMES[@]}"; do
        i=$(((k + round - 1) % ${#NAMES[@]}))
        args+=(-n "${NAMES[$i]}" "${CMDS[$i]}")
    done
    hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style basic \
        --export-json "$OUT/storage-lat-round$round.json" "${args[@]}" >&2
done

# The same three starts and the KDF in one process (hashlib.scrypt: OpenSSL's scrypt, as
# trustme-scd calls it), interleaved: one of each per iteration, the order rotated, so that each
# start is compared with an unencrypted start and a KDF measured within a fraction of a second
# (the machine's load changes over seconds). PAIRED iterations.
log "interleaved starts and in-process KDF: $PAIRED iterations"
/usr/bin/python3 - "$TRUSTME" "$TMD_RUN" "$W/pin" "$PIN" "$PAIRED" >"$OUT/storage-paired.tsv" <<'PY'
import hashlib, subprocess, sys, time
trustme, run, pinfile, pin, iters = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].encode(), int(sys.argv[5])
salt = bytes(range(32))
def start(*args):
    cmd = [trustme, "--run-dir", run, "start", "--attach", *args]
    return lambda: subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
def kdf(n):
    return lambda: hashlib.scrypt(pin, salt=salt, n=n, r=8, p=1, maxmem=80 << 20, dklen=32)
steps = [("plain", start("lat-plain")), ("enc", start("--pin-file", pinfile, "lat-enc")),
         ("enc1k", start("--pin-file", pinfile, "lat-enc1k")), ("kdf", kdf(32768)), ("kdf1k", kdf(1024))]
print("iter\tstep\tms")
for i in range(iters):
    for k in range(len(steps)):
        name, fn = steps[(k + i) % len(steps)]
        t = time.perf_counter()
        fn()
        print(f"{i}\t{name}\t{(time.perf_counter() - t) * 1000:.4f}")
PY

# Where the token service's part of an unlock goes: trustme-scd under strace -T for STRACE_STARTS
# starts at N=1024 (strace stops it at each traced call, so its absolute times are inflated a little).
SCD_PID=$(ps -o pid=,comm= --ppid "$TMD_PID" | awk '$2 == "trustme-scd" {print $1; exit}')
if [ -n "$SCD_PID" ] && command -v strace >/dev/null; then
    log "trustme-scd under strace for $STRACE_STARTS starts (N=1024)"
    strace -p "$SCD_PID" -tt -T -e trace=recvfrom,sendto,fsync,rename -o "$W/scd.strace" 2>/dev/null &
    STRACE_PID=$!
    sleep 0.5
    for _ in $(seq "$STRACE_STARTS"); do
        tm start --attach --pin-file "$W/pin" lat-enc1k
    done
    sleep 0.2
    kill -INT "$STRACE_PID" 2>/dev/null || true
    wait "$STRACE_PID" 2>/dev/null || true
    STRACE_PID=
    cp "$W/scd.strace" "$OUT/storage-scd.strace"
fi

# --- facts --------------------------------------------------------------------------------------
fact IO_REPS "$IO_REPS"
fact IO_MB "$IO_MB"
fact DATA_MB "$DATA_MB"
fact DATA_LAT_MB "$DATA_LAT_MB"
fact STOR_RUNS "$RUNS"
fact STOR_LAT_ROUNDS "$LAT_ROUNDS"
fact STOR_WARMUP "$WARMUP"
fact STOR_PAIRED "$PAIRED"
fact STOR_STRACE_STARTS "$STRACE_STARTS"
fact AES_NI_CONFIG "$( (zcat /proc/config.gz 2>/dev/null || true) | grep -E '^(# )?CONFIG_CRYPTO_AES_NI_INTEL[ =]' || echo unknown)"
# The kernel's implementations now (the highest priority is used): fscrypt used them above.
crypto_driver() {
    awk -v want="$1" '/^name/ {n = $3} /^driver/ {d = $3} /^priority/ {p = $3}
        /^$/ {if (n == want) print d " (priority " p ")"}' /proc/crypto | sort -u | paste -sd, -
}
fact KERNEL_XTS "$(crypto_driver 'xts(aes)')"
fact KERNEL_CTS "$(crypto_driver 'cts(cbc(aes))')"
fact CPU_AES_FLAG "$(grep -m1 -ow aes /proc/cpuinfo || echo no)"
fact OPENSSL_XTS_16K "$(openssl speed -elapsed -seconds 1 -bytes 16384 -evp aes-256-xts 2>/dev/null |
    awk '/^AES-256-XTS/ {v = $2; sub(/k$/, "", v); printf "%.0f", v * 1000 / 1e6}')"
fact PY_OPENSSL "$(/usr/bin/python3 -c 'import ssl; print(" ".join(ssl.OPENSSL_VERSION.split()[:2]))')"
fact OPENSSL_VERSION "$(openssl version | awk '{print $1, $2}')"
fact IMAGE_FS "$(findmnt -n -o FSTYPE,SOURCE -T "$W" | awk '{print $1 " on " $2}')"

# --- the tables ---------------------------------------------------------------------------------
python3 - "$OUT" "$LAT_ROUNDS" "$IO_MB" >>"$ENV_OUT" <<'PY'
import csv, json, os, re, statistics as st, sys
out, rounds, io_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
med = st.median
facts, md = {}, []
tsv = lambda f: list(csv.DictReader(open(f"{out}/{f}"), delimiter="\t"))
def quartiles(v):
    q = st.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
    return q[0], q[2]

# 1. throughput
thr, kcpu = {}, {}   # (place, op) -> {rep: MB/s}, [kernel CPU s]
for r in tsv("storage-io.tsv"):
    thr.setdefault((r["place"], r["op"]), {})[int(r["rep"])] = io_mb * 1048576 / 1e6 / float(r["seconds"])
    kcpu.setdefault((r["place"], r["op"]), []).append(float(r["kernel_cpu_s"]))
places = [("ct-enc", "encrypted container (fscrypt v2 data volume, soft token)"),
          ("host-enc", "host: fscrypt v2 directory, same policy, ext4 on loop"),
          ("ct-plain", "unencrypted container (`\"token\": \"none\"`)"),
          ("host-plain", "host: plain directory, ext4 on loop")]
ops = ("write", "read")
M = {(p, o): med(thr[(p, o)].values()) for p, _ in places for o in ops}
md.append("| where | write MB/s: median (min–max) | read MB/s: median (min–max) | kernel CPU s per write / read (median, whole machine) |")
md.append("|---|---:|---:|---:|")
for p, label in places:
    cells = [f"**{M[(p, o)]:.0f}** ({min(thr[(p, o)].values()):.0f}–{max(thr[(p, o)].values()):.0f})" for o in ops]
    md.append(f"| {label} | " + " | ".join(cells) + f" | {med(kcpu[(p, 'write')]):.2f} / {med(kcpu[(p, 'read')]):.2f} |")
    for o in ops:
        facts[f"MBS_{p.replace('-', '_').upper()}_{o.upper()}"] = f"{M[(p, o)]:.1f}"
        facts[f"KCPU_{p.replace('-', '_').upper()}_{o.upper()}"] = f"{med(kcpu[(p, o)]):.2f}"
md.append("")
ratios = [("**encrypted container / host fscrypt directory** (target ≥ 0.9)", "ct-enc", "host-enc", "CT_HOST"),
          ("encrypted container / unencrypted container", "ct-enc", "ct-plain", "ENC_PLAIN"),
          ("host fscrypt directory / host plain directory", "host-enc", "host-plain", "HOSTENC_HOSTPLAIN"),
          ("unencrypted container / host plain directory", "ct-plain", "host-plain", "CTPLAIN_HOSTPLAIN")]
md.append("| throughput ratio | write: ratio of the medians (range of the per-repetition ratios) | read: the same |")
md.append("|---|---:|---:|")
for label, a, b, key in ratios:
    cells = []
    for o in ops:
        r = M[(a, o)] / M[(b, o)]
        per = [thr[(a, o)][k] / thr[(b, o)][k] for k in sorted(thr[(a, o)]) if k in thr[(b, o)]]
        cells.append(f"**{r:.2f}×** ({min(per):.2f}–{max(per):.2f})")
        facts[f"RATIO_{key}_{o.upper()}"] = f"{r:.3f}"
    md.append(f"| {label} | " + " | ".join(cells) + " |")
md.append("")

# 2. latency: hyperfine, pooled over the rounds
md.append("@@LAT@@")
runs = {}
for rnd in range(1, rounds + 1):
    for res in json.load(open(f"{out}/storage-lat-round{rnd}.json"))["results"]:
        x = runs.setdefault(res["command"], {"t": [], "rm": {}})
        x["t"] += res["times"]
        x["rm"][rnd] = res["median"] * 1000
L = {c: med(x["t"]) * 1000 for c, x in runs.items()}
rm = lambda c, k: runs[c]["rm"][k]
f2 = lambda v: f"{v:.2f}"
order = ["start unencrypted", "start encrypted N=32768", "start encrypted N=1024",
         "openssl kdf scrypt N=32768", "openssl kdf scrypt N=1024", "openssl version"]
md.append("| command (hyperfine) | median (ms) | median of each round (ms) | min–max (ms) |")
md.append("|---|---:|---:|---:|")
for c in order:
    x = runs[c]
    md.append(f"| {c} | **{f2(L[c])}** | " + " / ".join(f2(x['rm'][k]) for k in sorted(x["rm"])) +
              f" | {f2(min(x['t']) * 1000)}–{f2(max(x['t']) * 1000)} |")
md.append("")

# the interleaved loop: per-iteration differences
it = {}
for r in tsv("storage-paired.tsv"):
    it.setdefault(int(r["iter"]), {})[r["step"]] = float(r["ms"])
P = {s: med([v[s] for v in it.values()]) for s in ("plain", "enc", "enc1k", "kdf", "kdf1k")}
b32 = [v["enc"] - v["plain"] - v["kdf"] for v in it.values()]
b1 = [v["enc1k"] - v["plain"] - v["kdf1k"] for v in it.values()]
d32p = [v["enc"] - v["plain"] for v in it.values()]
d1p = [v["enc1k"] - v["plain"] for v in it.values()]
def rng(fn):
    v = [fn(k) for k in range(1, rounds + 1)]
    return f"{min(v):.2f} … {max(v):.2f}"
d32 = L["start encrypted N=32768"] - L["start unencrypted"]
d1 = L["start encrypted N=1024"] - L["start unencrypted"]
cli32 = L["openssl kdf scrypt N=32768"] - L["openssl version"]
cli1 = L["openssl kdf scrypt N=1024"] - L["openssl version"]
iq = lambda v: "%.2f … %.2f" % quartiles(v)
md.append("| difference (ms) | N = 32768 (default) | N = 1024 |")
md.append("|---|---:|---:|")
md.append(f"| hyperfine: encrypted start − unencrypted start (pooled medians; range round by round) | {d32:.2f} ({rng(lambda k: rm('start encrypted N=32768', k) - rm('start unencrypted', k))}) | "
          f"{d1:.2f} ({rng(lambda k: rm('start encrypted N=1024', k) - rm('start unencrypted', k))}) |")
md.append(f"| hyperfine: KDF alone = `openssl kdf` − `openssl version` (range round by round) | {cli32:.2f} ({rng(lambda k: rm('openssl kdf scrypt N=32768', k) - rm('openssl version', k))}) | "
          f"{cli1:.2f} ({rng(lambda k: rm('openssl kdf scrypt N=1024', k) - rm('openssl version', k))}) |")
md.append(f"| hyperfine: encrypted start beyond the KDF (the two rows above subtracted) | {d32 - cli32:.2f} | {d1 - cli1:.2f} |")
md.append(f"| interleaved: encrypted start − unencrypted start, per iteration (median; interquartile range) | {med(d32p):.2f} ({iq(d32p)}) | {med(d1p):.2f} ({iq(d1p)}) |")
md.append(f"| interleaved: KDF alone in one process (hashlib.scrypt; median) | {P['kdf']:.2f} | {P['kdf1k']:.2f} |")
md.append(f"| **interleaved: encrypted start beyond the KDF**, per iteration: start − unencrypted start − KDF (median; interquartile range; target < 5) | **{med(b32):.2f}** ({iq(b32)}) | **{med(b1):.2f}** ({iq(b1)}) |")
md.append("")
md.append(f"Interleaved loop ({len(it)} iterations), medians: unencrypted start {P['plain']:.2f} ms, encrypted start "
          f"{P['enc']:.2f} ms (N = 32768) and {P['enc1k']:.2f} ms (N = 1024). Cross-check of the KDF's share: "
          f"start(N = 32768) − start(N = 1024) = {L['start encrypted N=32768'] - L['start encrypted N=1024']:.2f} ms (hyperfine), "
          f"KDF(32768) − KDF(1024) = {cli32 - cli1:.2f} ms (`openssl kdf`), {P['kdf'] - P['kdf1k']:.2f} ms (in one process).")
facts.update(LAT_PLAIN_MS=f2(L["start unencrypted"]), LAT_ENC_MS=f2(L["start encrypted N=32768"]),
             LAT_ENC1K_MS=f2(L["start encrypted N=1024"]), DELTA_ENC_MS=f2(d32), DELTA_ENC1K_MS=f2(d1),
             KDF_CLI_MS=f2(cli32), KDF1K_CLI_MS=f2(cli1), BEYOND_ENC_CLI_MS=f2(d32 - cli32),
             BEYOND_ENC1K_CLI_MS=f2(d1 - cli1), KDF_INPROC_MS=f2(P["kdf"]), KDF1K_INPROC_MS=f2(P["kdf1k"]),
             DELTA_ENC_PAIRED_MS=f2(med(d32p)), DELTA_ENC1K_PAIRED_MS=f2(med(d1p)),
             BEYOND_ENC_MS=f2(med(b32)), BEYOND_ENC1K_MS=f2(med(b1)))

# trustme-scd's part, from strace
path = f"{out}/storage-scd.strace"
if os.path.exists(path):
    def ms(line):
        h, m, s = line.split()[0].split(":")
        return (int(h) * 3600 + int(m) * 60 + float(s)) * 1000
    dur = lambda l: float(re.search(r"<([\d.]+)>\s*$", l).group(1)) * 1000 if re.search(r"<([\d.]+)>\s*$", l) else 0.0
    reqs, cur = [], None
    for l in open(path):
        if re.match(r"\S+ recvfrom\(3, \"", l):
            cur = {"t0": ms(l), "fs": [], "rename": 0.0}
        elif cur is None:
            continue
        elif " fsync(" in l:
            cur["fs"].append((ms(l), dur(l)))
        elif " rename(" in l:
            cur["rename"] += dur(l)
        elif re.match(r"\S+ sendto\(3,", l):
            cur["t"] = ms(l) - cur["t0"]
            reqs.append(cur)
            cur = None
    # An unlock writes the PIN-try counter twice (file fsync, rename, directory fsync each time):
    # before the PIN is checked and after; the check (scrypt, unwrap) is in between.
    unl = [r for r in reqs if len(r["fs"]) == 4]
    if unl:
        t = med([r["t"] for r in unl])
        tries = med([sum(d for _, d in r["fs"]) + r["rename"] for r in unl])
        check = med([r["fs"][2][0] - (r["fs"][1][0] + r["fs"][1][1]) for r in unl])
        md.append("")
        md.append(f"trustme-scd's part of an unlock at N = 1024 (strace -T of trustme-scd, medians of {len(unl)} unlocks; "
                  f"strace inflates these a little): request received → reply sent {t:.2f} ms; of that, the PIN check "
                  f"between the two writes of the PIN-try counter (scrypt, unwrap, the second write's temporary file) "
                  f"{check:.2f} ms, and the counter itself, written and synced before the PIN is checked and reset after "
                  f"(4 fsyncs, 2 renames) {tries:.2f} ms.")
        facts.update(SCD_REQ_MS=f2(t), SCD_TRIES_MS=f2(tries), SCD_CHECK1K_MS=f2(check))
    # Since the counts are anchored in the TPM (trustmed counts each attempt with one NV write
    # before scd sees the PIN), scd writes no file during an unlock.
    quiet = [r for r in reqs if not r["fs"] and r["rename"] == 0.0]
    if quiet and not unl:
        t = med([r["t"] for r in quiet])
        md.append("")
        md.append(f"trustme-scd's part of an unlock at N = 1024 (strace -T of trustme-scd, medians of {len(quiet)} "
                  f"requests): request received → reply sent {t:.2f} ms, no file written: the attempt is counted "
                  f"in the TPM by trustmed (docs/STORAGE.md), whose debug log has the rest ('data key after').")
        facts.update(SCD_REQ_MS=f2(t))
split = md.index("@@LAT@@")
open(f"{out}/storage-io.md", "w").write("\n".join(md[:split]).strip() + "\n")
open(f"{out}/storage-lat.md", "w").write("\n".join(md[split + 1:]).strip() + "\n")
open(f"{out}/storage.md", "w").write("\n".join(x for x in md if x != "@@LAT@@") + "\n")
for k, v in facts.items():
    print(f"{k}={v}")
PY
cat "$OUT/storage.md"
log "results in $OUT"
