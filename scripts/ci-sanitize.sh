#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The sanitizer half of CI (.ci/run runs it after scripts/test.sh), as root:
#   1. every unit test built with AddressSanitizer + UndefinedBehaviorSanitizer (clang), run;
#   2. the daemons and CLI of that build under part of the integration suite (TRUSTME_BUILD):
#      the control protocol, lifecycle, storage and the token service, tpmd, attestation and
#      the GuestOS store;
#   3. every libFuzzer target in tests/fuzz built with the same sanitizers and run over its
#      committed corpus, tests/fuzz/corpus/<target>/ (each input once: -runs=0).
# Build dir: build-asan/ (or $ASAN_BUILD). The last line of output is "N passed, N failed"
# (each unit test case, integration test and fuzz target counts once); the exit status is
# non-zero if anything failed. Usage: scripts/ci-sanitize.sh [PYTEST_ARGS...]
set -u
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "ci-sanitize.sh: run as root (the integration tests need it)" >&2; exit 1; }

build=${ASAN_BUILD:-build-asan}
scripts/install-deps.sh --ci || exit 1
if [ ! -f "$build/build.ninja" ]; then
    # -fno-sanitize-recover: UBSan stops at its first finding (by default it prints and goes on,
    # and a daemon that goes on fails no test). b_lundef=false: clang's sanitizer runtimes are
    # linked into executables only, so shared objects may not insist on resolving their symbols.
    CC=clang meson setup "$build" -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
        -Db_lundef=false -Dc_args=-fno-sanitize-recover=all -Dfuzz=true >/dev/null ||
        { echo "ci-sanitize.sh: meson setup of $build failed" >&2; exit 1; }
fi
{ ninja -C "$build" >/dev/null && ninja -C "$build" fuzzers >/dev/null; } ||
    { echo "ci-sanitize.sh: build failed (ninja -C $build; ninja -C $build fuzzers)" >&2; exit 1; }
# trustmed, the tests' guests and the tests' tools are the normal build's where static linking
# rules out ASan (trustme-static, tm-probe: tests/probe/meson.build).

results=$build/test-results
rm -rf "$results"
mkdir -p "$results"

# The sanitizers' options, for every sanitized process that sees this environment (trustmed, the
# CLI, a standalone scd or tpmd in a test). trustmed hands scd and tpmd fixed environments, so
# they run on the built-in defaults (and, for scd, src/scd/sanitizer_options.c).
#   detect_leaks=1: LeakSanitizer at every exit (the default on x86_64, said here so that it also
#     holds for a standalone scd, whose built-in default is off);
#   print_stacktrace=1: UBSan says where, not only what.
export ASAN_OPTIONS=detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1
# Reports name functions and lines (llvm-symbolizer comes with install-deps.sh --ci).
command -v llvm-symbolizer >/dev/null && export ASAN_SYMBOLIZER_PATH="$(command -v llvm-symbolizer)"

echo "== unit tests (ASan + UBSan)"
CMOCKA_MESSAGE_OUTPUT=xml CMOCKA_XML_FILE="$PWD/$results/unit-%g.xml" \
    meson test -C "$build" --print-errorlogs
unit_status=$?

echo "== integration tests against sanitized daemons"
# A representative part, a few minutes under ASan: the control protocol (framing, garbage,
# floods), container lifecycle, encrypted storage through trustme-scd, trustme-tpmd on its own,
# the TPM verbs and attestation through trustmed, secure storage (src/sstore) on a real tpmd, and
# the GuestOS store.
# Not here: the bounds on trustmed's memory (for a client that never reads, after large frames,
# and once idle). ASan keeps freed memory in quarantine (and grows every allocation by its redzones), so
# the RSS it measures is ASan's; scripts/test.sh checks those bounds on the normal build. Nor the
# core-dump test: the sanitizers catch the fatal signal and manage dumpability themselves.
TRUSTME_BUILD="$PWD/$build" /usr/bin/python3 -m pytest -q -rs -p no:cacheprovider \
    --junitxml="$results/integration.xml" \
    --deselect tests/integration/test_protocol.py::test_non_reading_client_cannot_grow_memory \
    --deselect tests/integration/test_protocol.py::test_memory_is_given_back_after_large_frames \
    --deselect tests/integration/test_protocol.py::test_idle_trustmed_gives_back_freed_heap \
    --deselect tests/integration/test_storage.py::test_a_crash_leaves_no_core \
    tests/integration/test_protocol.py tests/integration/test_lifecycle.py \
    tests/integration/test_storage.py tests/integration/test_scd.py \
    tests/integration/test_tpmd.py tests/integration/test_sstore.py tests/integration/test_device.py \
    tests/integration/test_guestos.py tests/integration/test_zz_leaks.py "$@"

echo "== fuzz targets over their corpora (ASan + UBSan)"
# One JUnit case per target, so that the summary below counts them like the tests.
fuzz_xml=$results/fuzz.xml
echo '<testsuite name="fuzz">' >"$fuzz_xml"
for corpus in tests/fuzz/corpus/*/; do
    t=$(basename "$corpus")
    exe=$build/tests/fuzz/fuzz_$t
    log=$results/fuzz_$t.log
    if [ ! -x "$exe" ]; then
        echo "FAILED fuzz_$t: no such target for tests/fuzz/corpus/$t"
        echo "<testcase classname=\"fuzz\" name=\"$t\"><failure/></testcase>" >>"$fuzz_xml"
    elif "$exe" -runs=0 "$corpus" >"$log" 2>&1; then
        echo "fuzz_$t: $(ls "$corpus" | wc -l) inputs, no finding"
        echo "<testcase classname=\"fuzz\" name=\"$t\"/>" >>"$fuzz_xml"
    else
        echo "FAILED fuzz_$t (its output follows; docs/TESTING.md: a crash becomes a corpus entry)"
        tail -n 40 "$log"
        echo "<testcase classname=\"fuzz\" name=\"$t\"><failure/></testcase>" >>"$fuzz_xml"
    fi
done
# Every target is replayed: a target without a corpus directory is a failure too.
for exe in "$build"/tests/fuzz/fuzz_*; do
    t=${exe##*/fuzz_}
    # (meson's fuzz_<target>.p object directories are there too)
    if [ -f "$exe" ] && [ -x "$exe" ] && [ ! -d "tests/fuzz/corpus/$t" ]; then
        echo "FAILED fuzz_$t: no corpus in tests/fuzz/corpus/$t"
        echo "<testcase classname=\"fuzz\" name=\"$t\"><failure/></testcase>" >>"$fuzz_xml"
    fi
done
echo '</testsuite>' >>"$fuzz_xml"

exec /usr/bin/python3 - "$results" "$unit_status" <<'PY'
import sys, pathlib, xml.etree.ElementTree as ET
passed = failed = skipped = unit_failed = 0
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.xml")):
    for case in ET.parse(f).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            failed += 1
            if f.name.startswith("unit-"):
                unit_failed += 1
                print(f"FAILED sanitized unit test {case.get('classname', '')}::{case.get('name')}")
        elif "skipped" in kinds:
            skipped += 1
        else:
            passed += 1
if int(sys.argv[2]) != 0 and unit_failed == 0:
    print("FAILED a sanitized unit test suite ended without reporting (see the meson output above)")
    failed += 1
if passed + failed == 0:
    failed = 1
if skipped:
    print(f"({skipped} skipped, with reasons above)")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
