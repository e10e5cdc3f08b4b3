#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# bench-section: yes
# Container migration between two devices (docs/MIGRATION.md): bench/migrate.py, for run-all.sh
# (--section DIR [--smoke]); 100 MiB data volume, MIGRATE_RUNS runs (default 5).
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/migrate.py" "$@"
