#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck disable=SC1090,SC1091 # lib.sh is sourced at run time
# GuestOS image verification: SHA-256 throughput of trustme's own code (what trustmed runs on every
# image before a container starts) against sha256sum and OpenSSL. Run as root or not:
#
#   bench/hash_throughput.sh [OUTDIR]
#
# One random file of SIZE_MB MiB in a scratch directory, read once so that the page cache holds it
# (every run then measures hashing plus the copy out of the page cache, not the disk). Four
# commands hash it, all in one `hyperfine -N --warmup WARMUP --runs RUNS` invocation per round,
# ROUNDS rounds with the order rotated, runs pooled:
#   hash_helper            tm_sha256_fd (src/lib/sha256_fd.c) with the block function chosen for
#                          this CPU (SHA-NI where it has them)
#   hash_helper --nettle   the same, with nettle forced (what CPUs without the SHA extensions run)
#   sha256sum              coreutils
#   openssl dgst -sha256   OpenSSL (its assembly; the speed limit of this CPU)
# Before that, each runs once and their digests must be equal (else the script fails).
# bench/hash_helper.c is built by meson (bench/meson.build) in BUILD (default ROOT/build), with
# trustmed's compiler flags; HASH_HELPER=PATH uses a given binary instead.
# Writes into OUTDIR (default: a temporary directory, printed at the end):
#   hash-roundN.json   hyperfine --export-json of each round
#   hash.env           facts for the report (run-all.sh)
#   hash.md            its table
# Environment: SIZE_MB (default 256), RUNS (10), WARMUP (2), ROUNDS (3), SKIP_INSTALL=1 to skip
# install-deps.sh. The scratch directory (with the file) is removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

SIZE_MB=${SIZE_MB:-256}
RUNS=${RUNS:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
BUILD=${BUILD:-$ROOT/build}

bench_dirs hash "${1:-}" hash.env
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    rm -rf --one-file-system "$W"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_bench_deps
for t in hyperfine jq python3 sha256sum openssl; do
    command -v "$t" >/dev/null || die "$t is missing (scripts/install-deps.sh --bench)"
done

# The helper, copied out of the build directory like ensure_build's binaries (someone may be
# rebuilding it); a failing build with an existing helper measures that helper, and says so.
if [ -z "${HASH_HELPER:-}" ]; then
    [ -d "$BUILD" ] || die "no build directory $BUILD: meson setup build && ninja -C build (or set BUILD)"
    if ! ninja -C "$BUILD" bench/hash_helper >/dev/null 2>&1; then
        [ -x "$BUILD/bench/hash_helper" ] || die "ninja -C $BUILD bench/hash_helper failed"
        log "warning: ninja -C $BUILD failed (tree being edited?); using bench/hash_helper from" \
            "$(date -r "$BUILD/bench/hash_helper" '+%F %T')"
    fi
    HASH_HELPER=$BUILD/bench/hash_helper
fi
cp -p "$HASH_HELPER" "$W/hash_helper"
H=$W/hash_helper
IMPL=$("$H" --impl) || die "$H --impl failed"

F=$W/random.bin
log "writing $SIZE_MB MiB of random data to $F"
head -c "$((SIZE_MB * 1048576))" /dev/urandom >"$F"
[ "$(stat -c %s "$F")" = "$((SIZE_MB * 1048576))" ] || die "could not write $F"
cat "$F" >/dev/null # into the page cache

NAMES=("trustme ($IMPL)" "trustme (nettle)" "sha256sum" "openssl dgst -sha256")
CMDS=("$H $F" "$H --nettle $F" "sha256sum $F" "openssl dgst -sha256 -r $F")

# Equal digests first: a fast wrong hash is worth nothing.
DIGESTS=()
for c in "${CMDS[@]}"; do
    d=$($c | awk '{print $1; exit}') || die "$c failed"
    DIGESTS+=("$d")
done
for i in "${!DIGESTS[@]}"; do
    [ "${DIGESTS[i]}" = "${DIGESTS[0]}" ] ||
        die "digests differ: ${NAMES[0]} ${DIGESTS[0]}, ${NAMES[i]} ${DIGESTS[i]}"
done
log "all four digests equal: ${DIGESTS[0]}"

for ((r = 1; r <= ROUNDS; r++)); do
    args=()
    for ((i = 0; i < ${#CMDS[@]}; i++)); do
        j=$(((i + r - 1) % ${#CMDS[@]}))
        args+=(-n "${NAMES[j]}" "${CMDS[j]}")
    done
    log "round $r of $ROUNDS"
    hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" --export-json "$OUT/hash-round$r.json" \
        "${args[@]}" >/dev/null
done

fact HASH_IMPL "$IMPL"
fact HASH_DIGEST "${DIGESTS[0]}"
fact HASH_SIZE_MB "$SIZE_MB"
fact HASH_RUNS "$RUNS"
fact HASH_WARMUP "$WARMUP"
fact HASH_ROUNDS "$ROUNDS"
fact HASH_CPU_FLAGS "$(grep -m1 -ow -e sha_ni -e sse4_1 -e avx2 /proc/cpuinfo | paste -sd' ' - || true)"
fact HASH_SHA256SUM_VERSION "$(sha256sum --version | head -n1 | sed 's/^sha256sum (\(.*\)) /\1 /')"
# coreutils can be built to use libcrypto's SHA-256; then it would not be the C baseline it is here.
if ldd "$(command -v sha256sum)" 2>/dev/null | grep -q libcrypto; then
    fact HASH_SHA256SUM_CRYPTO "linked with libcrypto"
else
    fact HASH_SHA256SUM_CRYPTO "its own C code, not linked with libcrypto"
fi
fact HASH_OPENSSL_VERSION "$(openssl version | awk '{print $1, $2}')"
fact HASH_CC "$(cc --version | head -n1)"
if [ "$HASH_HELPER" = "$BUILD/bench/hash_helper" ]; then
    fact HASH_BUILDTYPE "$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
        jq -r '.[] | select(.name == "buildtype") | .value' || echo unknown)"
else
    fact HASH_BUILDTYPE "unknown (HASH_HELPER given)"
fi
fact HASH_FS "$(findmnt -n -o FSTYPE,SOURCE -T "$W" | awk '{print $1 " on " $2}')"

# --- the table ----------------------------------------------------------------------------------
python3 - "$OUT" "$ROUNDS" "$SIZE_MB" "${NAMES[@]}" >>"$ENV_OUT" <<'PY'
import json, statistics as st, sys
out, rounds, size_mb, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
mb = size_mb * 1048576 / 1e6
times, per_round = {n: [] for n in names}, {n: {} for n in names}
for r in range(1, rounds + 1):
    for res in json.load(open(f"{out}/hash-round{r}.json"))["results"]:
        times[res["command"]] += res["times"]
        per_round[res["command"]][r] = res["median"]
med = {n: st.median(times[n]) for n in names}
ni, port, ref, ossl = names
ratio = lambda a, b: med[b] / med[a]                                   # throughput a / b
rng = lambda a, b: sorted(per_round[b][r] / per_round[a][r] for r in range(1, rounds + 1))
md = ["| command | median (ms) | min–max (ms) | MB/s (median) | throughput ÷ sha256sum's (range round by round) |",
      "|---|---|---|---|---|"]
for n in names:
    rr = rng(n, ref)
    md.append(f"| `{n}` | {med[n] * 1000:.1f} | {min(times[n]) * 1000:.1f}–{max(times[n]) * 1000:.1f} "
              f"| {mb / med[n]:.0f} | {ratio(n, ref):.2f} ({rr[0]:.2f}–{rr[-1]:.2f}) |")
open(f"{out}/hash.md", "w").write("\n".join(md) + "\n")
facts = {
    "HASH_MBS_BEST": f"{mb / med[ni]:.0f}", "HASH_MBS_PORTABLE": f"{mb / med[port]:.0f}",
    "HASH_MBS_SHA256SUM": f"{mb / med[ref]:.0f}", "HASH_MBS_OPENSSL": f"{mb / med[ossl]:.0f}",
    "HASH_RATIO": f"{ratio(ni, ref):.2f}", "HASH_RATIO_MIN": f"{rng(ni, ref)[0]:.2f}",
    "HASH_RATIO_PORTABLE": f"{ratio(port, ref):.2f}", "HASH_RATIO_OPENSSL": f"{ratio(ni, ossl):.2f}",
    "HASH_SPEEDUP": f"{med[port] / med[ni]:.1f}",
}
for k, v in facts.items():
    print(f"{k}={v}")
PY
cat "$OUT/hash.md"
. "$ENV_OUT"
log "trustme ($IMPL) / sha256sum: ${HASH_RATIO}× (target ≥ 0.9); results in $OUT"
