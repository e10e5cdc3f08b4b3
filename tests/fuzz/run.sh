#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Build the libFuzzer targets in build-fuzz/ (or $FUZZ_BUILD; clang, ASan + UBSan, every source instrumented) and
# run each for a while, starting from the seeds in tests/fuzz/corpus/<target>/.
#
#   tests/fuzz/run.sh [seconds per target, default 30] [target...]
#
# New inputs go to build-fuzz/corpus/<target>/ (the committed seeds stay small); a crashing input
# is written to build-fuzz/artifacts/ and the script exits 1 after running the rest.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD:-$root/build-fuzz} # FUZZ_BUILD: another build dir
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(control config guestos_config audit syncmsg scd_request scd_files attest_response refvalues mlog
                                           tpmd_request anchor_table enroll_bundle)

if ! [ -f "$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a)" ]; then
    echo "libFuzzer runtime missing: apt-get install libclang-rt-14-dev" >&2
    exit 2
fi

if ! [ -f "$build/build.ninja" ]; then
    # fuzzer-no-link puts coverage into the libraries too; recovering from UB would hide it.
    CC=clang meson setup "$build" "$root" -Dfuzz=true -Dbuildtype=debugoptimized \
        -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=all'
fi
ninja -C "$build" fuzzers

# scd_request, tpmd_request: past 16 KiB a packet is no longer read into locked memory (packet.h).
declare -A max_len=([control]=8192 [config]=4096 [audit]=8192 [syncmsg]=4200 [scd_request]=20000
                    [scd_files]=8300 [guestos_config]=8192 [attest_response]=16384
                    [refvalues]=8192 [mlog]=8192 [tpmd_request]=20000
                    [anchor_table]=8192 [enroll_bundle]=16384)
failed=()
for t in "${targets[@]}"; do
    corpus=$build/corpus/$t
    mkdir -p "$corpus" "$build/artifacts"
    args=(-max_total_time="$seconds" -max_len="${max_len[$t]:-4096}" -print_final_stats=1
          -artifact_prefix="$build/artifacts/$t-")
    [ -f "$root/tests/fuzz/$t.dict" ] && args+=(-dict="$root/tests/fuzz/$t.dict")
    echo "=== fuzz_$t for ${seconds}s"
    if ! "$build/tests/fuzz/fuzz_$t" "${args[@]}" "$corpus" "$root/tests/fuzz/corpus/$t"; then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "crashes in: ${failed[*]} (inputs in $build/artifacts/)" >&2
    exit 1
fi
echo "no crashes in: ${targets[*]}"
