#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# bench/vtpm_owner.sh OUTDIR: bench/vtpm_owner.py with RUNS runs (default 10), for run-all.sh.
set -euo pipefail
exec "$(dirname "$0")/vtpm_owner.py" "$1" --runs "${RUNS:-10}"
