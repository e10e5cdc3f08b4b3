#!/bin/sh
# Configure (once) and build trustme into build/. Usage: scripts/build.sh
set -eu
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
    meson setup build --buildtype=debugoptimized >/dev/null
fi
ninja -C build
