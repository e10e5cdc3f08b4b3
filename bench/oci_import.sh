#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck disable=SC1091 # lib.sh is sourced at run time
# OCI import cost: `trustme-guestos import` of a Debian bookworm image against what one would do
# by hand with the reference tools, in the same run on the same file system. Run as root:
#
#   bench/oci_import.sh [OUTDIR]
#
# The image: `debootstrap --variant=minbase bookworm` from MIRROR (or the tree in DEBIAN_ROOTFS,
# copied), its device nodes removed (an image carries none), packed by umoci into an OCI layout
# (one gzip layer). Then ROUNDS rounds of `hyperfine -N --warmup 1 --runs RUNS`, order rotated:
#   import     trustme-guestos import LAYOUT --ref bookworm ... --unsigned   (digest checks,
#              unpack, squashfs lz4 keeping owners, SHA-256 of root.img, guestos.json)
#   reference  umoci unpack --image LAYOUT:bookworm BUNDLE, then mksquashfs BUNDLE/rootfs IMG with
#              the same options (lz4, -reproducible, times 0)
# each preceded (untimed) by removing the previous output. The ratio is import / reference of the
# pooled medians (target <= 1.0). Whether both made the same root.img byte for byte is recorded.
# Writes into OUTDIR (default: a temporary directory, printed at the end): oci-roundN.json
# (hyperfine --export-json), oci.env (facts), oci.md (the table).
# Environment: RUNS (5), ROUNDS (3), MIRROR (http://deb.debian.org/debian), DEBIAN_ROOTFS,
# BUILD (ROOT/build). Everything it makes is removed on exit, also on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

RUNS=${RUNS:-5}
ROUNDS=${ROUNDS:-3}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BUILD=${BUILD:-$ROOT/build}
GUESTOS=$BUILD/src/tools/guestos/trustme-guestos

need_root
bench_dirs oci "${1:-}" oci.env
trap 'rm -rf "$W"' EXIT INT TERM
[ -x "$GUESTOS" ] || die "$GUESTOS is not built (scripts/build.sh)"
for t in umoci mksquashfs hyperfine debootstrap; do
    command -v "$t" >/dev/null || die "$t is missing (scripts/install-deps.sh --bench)"
done

if [ -n "${DEBIAN_ROOTFS:-}" ]; then
    cp -a "$DEBIAN_ROOTFS" "$W/rootfs"
else
    log "debootstrap bookworm from $MIRROR ..."
    start=$(date +%s)
    debootstrap --variant=minbase bookworm "$W/rootfs" "$MIRROR" >"$W/debootstrap.log" 2>&1 ||
        die "debootstrap failed: $(tail -3 "$W/debootstrap.log")"
    fact DEBOOTSTRAP_S $(($(date +%s) - start))
fi
find "$W/rootfs/dev" -mindepth 1 ! -type d -delete
umoci init --layout "$W/layout"
umoci new --image "$W/layout:bookworm"
umoci unpack --image "$W/layout:bookworm" "$W/pack" >/dev/null # not insert: it names entries "/bin"
cp -a "$W/rootfs/." "$W/pack/rootfs/"
umoci repack --image "$W/layout:bookworm" "$W/pack"
rm -rf "$W/pack"
umoci config --image "$W/layout:bookworm" --config.cmd /bin/bash
fact IMAGE_MB "$(du -sm "$W/layout" | cut -f1)"
fact TREE_MB "$(du -sm "$W/rootfs" | cut -f1)"
rm -rf "$W/rootfs"
mkdir "$W/out"

import_cmd="$GUESTOS import $W/layout --ref bookworm --name deb --version 1 --out $W/out --unsigned"
ref_cmd="sh -c 'umoci unpack --image $W/layout:bookworm $W/bundle >/dev/null && mksquashfs $W/bundle/rootfs $W/ref.img -noappend -quiet -no-progress -comp lz4 -reproducible -mkfs-time 0 -all-time 0'"
import_prep="rm -rf $W/out/deb-1"
ref_prep="rm -rf $W/bundle $W/ref.img"

for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        order=(-n import --prepare "$import_prep" "$import_cmd" -n reference --prepare "$ref_prep" "$ref_cmd")
    else
        order=(-n reference --prepare "$ref_prep" "$ref_cmd" -n import --prepare "$import_prep" "$import_cmd")
    fi
    log "round $r/$ROUNDS"
    hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$OUT/oci-round$r.json" "${order[@]}" >/dev/null
done

# The two roads end in the same file: the importer unpacks as umoci does.
if cmp -s "$W/out/deb-1/root.img" "$W/ref.img"; then fact SAME_IMAGE yes; else fact SAME_IMAGE no; fi

python3 - "$OUT" "$ROUNDS" "$ENV_OUT" <<'PY'
import json, statistics, sys
out, rounds, env = sys.argv[1], int(sys.argv[2]), sys.argv[3]
times = {"import": [], "reference": []}
for r in range(1, rounds + 1):
    for res in json.load(open(f"{out}/oci-round{r}.json"))["results"]:
        times[res["command"]].extend(res["times"])
imp, ref = statistics.median(times["import"]), statistics.median(times["reference"])
with open(env, "a") as f:
    f.write(f"OCI_IMPORT_S={imp:.3f}\nOCI_REFERENCE_S={ref:.3f}\nOCI_RATIO={imp / ref:.3f}\n")
with open(f"{out}/oci.md", "w") as f:
    f.write("| | median (s) | runs |\n|---|---|---|\n")
    f.write(f"| trustme-guestos import | {imp:.2f} | {len(times['import'])} |\n")
    f.write(f"| umoci unpack + mksquashfs | {ref:.2f} | {len(times['reference'])} |\n")
    f.write(f"| ratio | {imp / ref:.2f} | |\n")
PY
cat "$ENV_OUT" "$OUT/oci.md"
log "results in $OUT"
