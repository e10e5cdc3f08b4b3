#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# SHA-256 in memory: trustme's tm_sha256 against nettle and OpenSSL (bench/sha256_libs.c), for the
# library decision in docs/ARCHITECTURE.md ("Libraries"). Run as root or not:
#
#   bench/sha256_libs.sh [ROUNDS] [RUNS]
#
# ROUNDS (default 3) runs of the helper, each with RUNS (default 21) interleaved runs per
# implementation and size (4 KiB one-shot hashes, 16 MiB single updates), MiB/s of thread CPU
# time; then one round with NETTLE_FAT_OVERRIDE= (nettle without CPU extensions: on x86-64 its plain
# assembly, what trustme runs on a CPU without the SHA extensions). Prints a Markdown table of the
# per-round medians.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
ROUNDS=${1:-3}
RUNS=${2:-21}
ninja -C "$BUILD" bench/sha256_libs >/dev/null
H=$BUILD/bench/sha256_libs
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for r in $(seq "$ROUNDS"); do
    "$H" "$RUNS" | sed "s/^/round$r /" >>"$OUT"
done
NETTLE_FAT_OVERRIDE= "$H" "$RUNS" | grep -E '^nettle ' | sed 's/^nettle /nettle-noext /; s/^/c /' >>"$OUT"
head -1 "$OUT" | sed 's/^round1 //'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
echo
echo "| implementation | 4 KiB MiB/s (median per round) | 16 MiB MiB/s (median per round) |"
echo "|---|---|---|"
for impl in trustme nettle openssl nettle-noext; do
    small=$(awk -v i="$impl" '$2 == i && $3 == 4096 {printf "%s%.0f", sep, $4; sep=" / "}' "$OUT")
    big=$(awk -v i="$impl" '$2 == i && $3 == 16777216 {printf "%s%.0f", sep, $4; sep=" / "}' "$OUT")
    echo "| $impl | $small | $big |"
done
