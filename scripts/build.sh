#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Configure (once) and build trustme into build/, the development and test build: with the
# tests' crash points (-Dtest_hooks=true, docs/TESTING.md). Usage: scripts/build.sh
set -eu
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
    meson setup build --buildtype=debugoptimized -Dtest_hooks=true >/dev/null
elif ! grep -q '"name": "test_hooks", "value": true' build/meson-info/intro-buildoptions.json 2>/dev/null; then
    meson configure build -Dtest_hooks=true >/dev/null
fi
ninja -C build
