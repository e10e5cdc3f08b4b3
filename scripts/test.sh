#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The whole test suite: unit tests (cmocka, no root) and integration tests (pytest against real
# daemons, as root). Installs what it needs and builds first. The last line of output is
# "N passed, N failed"; the exit status is non-zero if anything failed.
#   scripts/test.sh [PYTEST_ARGS...]     e.g. scripts/test.sh -k lifecycle
set -u
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (the integration tests create namespaces, cgroups and loop devices)" >&2; exit 1; }

scripts/install-deps.sh || exit 1
scripts/build.sh >/dev/null || { echo "test.sh: build failed (run scripts/build.sh to see why)" >&2; exit 1; }

results=build/test-results
rm -rf "$results"
mkdir -p "$results"

echo "== unit tests"
# cmocka writes one JUnit file per suite, named by the suite's group (every suite calls
# cmocka_run_group_tests_name: unnamed groups share one file and overwrite each other's
# counts), so that every test case is counted; meson's own status catches a suite that crashed
# before writing its file.
CMOCKA_MESSAGE_OUTPUT=xml CMOCKA_XML_FILE="$PWD/$results/unit-%g.xml" \
    meson test -C build --print-errorlogs
unit_status=$?

echo "== integration tests"
# Debian's pytest belongs to /usr/bin/python3 (another python3 may come first on PATH).
/usr/bin/python3 -m pytest tests/integration -q -rs -p no:cacheprovider \
    --junitxml="$results/integration.xml" "$@"

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
                print(f"FAILED unit test {case.get('classname', '')}::{case.get('name')}")
        elif "skipped" in kinds:
            skipped += 1
        else:
            passed += 1
if int(sys.argv[2]) != 0 and unit_failed == 0:
    print("FAILED a unit test suite ended without reporting (see the meson output above)")
    failed += 1
if passed + failed == 0:
    failed = 1  # no results at all is a failure, not a success
if skipped:
    print(f"({skipped} skipped, with reasons above)")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
