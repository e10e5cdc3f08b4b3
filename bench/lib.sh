# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=bash
# Shared helpers for the benchmark scripts (sourced, not run). bash only.
# The including script sets ROOT (the repository) before sourcing this file.

TRUSTMED=${TRUSTMED:-$ROOT/build/src/daemon/trustmed}
TRUSTME=${TRUSTME:-$ROOT/build/src/cli/trustme}
TRUSTME_SCD=${TRUSTME_SCD:-$ROOT/build/src/scd/trustme-scd}
TRUSTME_TPMD=${TRUSTME_TPMD:-$ROOT/build/src/tpmd/trustme-tpmd}

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "run as root (containers, mounts and cgroups need it)"; }

# bench_dirs NAME OUTDIR [ENVFILE]: makes W (a scratch dir, /tmp/trustme-bench-NAME.*) and OUT
# (OUTDIR, or a new temporary directory; absolute), and with ENVFILE an empty OUT/ENVFILE, ENV_OUT,
# that fact KEY VALUE appends to (sourced later by run-all.sh).
bench_dirs() {
    W=$(mktemp -d "/tmp/trustme-bench-$1.XXXXXX")
    chmod 711 "$W" # trustme-tpmd's user must reach its dirs below (trustmed checks)
    OUT=$2
    [ -n "$OUT" ] || OUT=$(mktemp -d /tmp/trustme-bench-out.XXXXXX)
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    ENV_OUT=${3:+$OUT/$3}
    [ -z "$ENV_OUT" ] || : >"$ENV_OUT"
}
fact() { printf '%s=%q\n' "$1" "$2" >>"$ENV_OUT"; }

# install_bench_deps: the packages of scripts/install-deps.sh --bench, unless SKIP_INSTALL=1 (run-all.sh
# installs once for all).
install_bench_deps() {
    [ "${SKIP_INSTALL:-0}" = 1 ] || "$ROOT/scripts/install-deps.sh" --bench ||
        die "scripts/install-deps.sh --bench failed"
}

# ensure_build DIR: brings the four binaries (trustmed, the CLI trustme, the token service
# trustme-scd and the TPM service trustme-tpmd) up to date and copies them into DIR, then points
# TRUSTMED, TRUSTME and TRUSTME_SCD at the copies, so that someone rebuilding the shared build
# directory during a benchmark can neither break it nor change a binary half-way. trustme-scd and
# trustme-tpmd go next to the copied trustmed, which is where trustmed looks for them first (it does
# not start without a tpmd), and the per-container helpers trustme-vtpm and trustme-keystore into
# DIR/../vtpm and DIR/../keystore, where a build tree's trustmed looks for them. The build directory is shared with people editing the tree, so a
# failing build (someone's edit in progress) is not fatal while the binaries exist: the benchmark
# then measures the binaries as they are, and says so.
# With BENCH_BINARIES_READY=1 (set by run-all.sh for the scripts it runs) TRUSTMED and TRUSTME
# already are such copies (with trustme-scd and trustme-tpmd next to TRUSTMED) and are used as they are.
ensure_build() {
    local dir=$1 _
    if [ "${BENCH_BINARIES_READY:-0}" = 1 ] && [ -x "$TRUSTMED" ] && [ -x "$TRUSTME" ] &&
        [ -x "$(dirname "$TRUSTMED")/trustme-scd" ]; then
        TRUSTME_SCD=$(dirname "$TRUSTMED")/trustme-scd
        TRUSTME_TPMD=$(dirname "$TRUSTMED")/trustme-tpmd
        return 0
    fi
    [ -d "$ROOT/build" ] || die "no build directory: meson setup build && ninja -C build"
    if ! ninja -C "$ROOT/build" src/daemon/trustmed src/cli/trustme src/cli/trustme-crypto-verbs src/scd/trustme-scd \
        src/tpmd/trustme-tpmd src/vtpm/trustme-vtpm src/keystore/trustme-keystore >/dev/null 2>&1; then
        [ -x "$TRUSTMED" ] && [ -x "$TRUSTME" ] && [ -x "$TRUSTME_SCD" ] && [ -x "$TRUSTME_TPMD" ] ||
            die "ninja -C build failed and the binaries are missing"
        log "warning: ninja -C build failed (tree being edited?); using the existing binaries from" \
            "$(date -r "$TRUSTMED" '+%F %T')"
    fi
    mkdir -p "$dir"
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        # trustme runs trustme-crypto-verbs from beside itself for `vtpm info`, `attest`, ...
        if cp -p "$TRUSTMED" "$TRUSTME" "$(dirname "$TRUSTME")/trustme-crypto-verbs" "$dir/" 2>/dev/null &&
            cp -p "$TRUSTME_SCD" "$dir/trustme-scd" 2>/dev/null &&
            cp -p "$TRUSTME_TPMD" "$dir/trustme-tpmd" 2>/dev/null &&
            "$dir/trustmed" --version >/dev/null 2>&1 && "$dir/trustme" --version >/dev/null 2>&1 &&
            "$dir/trustme-scd" --help >/dev/null 2>&1; then
            TRUSTMED=$dir/trustmed
            TRUSTME=$dir/trustme
            TRUSTME_SCD=$dir/trustme-scd
            TRUSTME_TPMD=$dir/trustme-tpmd
            # A build tree's trustmed takes its per-container helpers from ../vtpm and ../keystore
            # beside its own directory (DIR's parent must be the caller's own: a work dir).
            for h in vtpm/trustme-vtpm keystore/trustme-keystore; do
                mkdir -p "$dir/../${h%/*}"
                cp -p "$ROOT/build/src/$h" "$dir/../$h" || die "no $ROOT/build/src/$h"
            done
            return 0
        fi
        sleep 1 # being relinked right now
    done
    die "could not copy working trustmed, trustme and trustme-scd binaries out of $ROOT/build"
}

# bench_device_json DATADIR: DATADIR/device.json (made if missing) with tpm.attest_address on a free
# port, unless it names one: tpmd's default port 9505 is taken by whichever other trustmed on the
# machine came first, and a tpmd that cannot listen exits (and is restarted, again and again).
bench_device_json() {
    local f=$1/device.json
    [ -f "$f" ] || echo '{}' >"$f"
    jq '.tpm.attest_address //= "127.0.0.1:0"' "$f" >"$f.new" && mv "$f.new" "$f"
}

# start_trustmed WORKDIR CGROUP_PARENT ID_BASE [TRUSTMED_OPTION...]: starts a private trustmed (with
# the token service TRUSTME_SCD); sets TMD_PID, TMD_RUN.
start_trustmed() {
    local w=$1 cg=$2 ids=$3
    shift 3
    mkdir -p "$w/data" "$w/run"
    TMD_RUN=$w/run
    bench_device_json "$w/data"
    "$TRUSTMED" --data-dir "$w/data" --run-dir "$w/run" --cgroup-parent "$cg" --id-base "$ids" \
        --scd-binary "$TRUSTME_SCD" --tpmd-binary "$TRUSTME_TPMD" --swtpm-state-dir "$w/swtpm" --log-level warn "$@" \
        </dev/null >>"$w/trustmed.log" 2>&1 &
    TMD_PID=$!
    for _ in $(seq 100); do
        [ -S "$w/run/control.sock" ] && "$TRUSTME" --run-dir "$w/run" list >/dev/null 2>&1 && return 0
        kill -0 "$TMD_PID" 2>/dev/null || { cat "$w/trustmed.log" >&2; die "trustmed exited at start"; }
        sleep 0.05
    done
    die "trustmed did not come up within 5 s"
}

tm() { "$TRUSTME" --run-dir "$TMD_RUN" "$@"; }

# Removes every container of our trustmed (stopping running ones), then stops trustmed and waits
# for it. Only our own trustmed (by PID) is signalled.
stop_trustmed() {
    [ -n "${TMD_PID:-}" ] || return 0
    if kill -0 "$TMD_PID" 2>/dev/null; then
        local names n
        names=$(tm list --json 2>/dev/null | jq -r '.[].name' 2>/dev/null || true)
        for n in $names; do
            tm stop --kill "$n" >/dev/null 2>&1 || true
        done
        for n in $names; do
            tm remove "$n" >/dev/null 2>&1 || log "warning: could not remove container $n"
        done
        kill -TERM "$TMD_PID" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$TMD_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$TMD_PID" 2>/dev/null; then
            log "warning: trustmed $TMD_PID still alive after 10 s, sending SIGTERM again (kill all)"
            kill -TERM "$TMD_PID" 2>/dev/null || true
            sleep 2
            kill -KILL "$TMD_PID" 2>/dev/null || true
        fi
    fi
    wait "$TMD_PID" 2>/dev/null || true
    TMD_PID=
}

# rmdir_cgroups NAME: removes the (empty) cgroup NAME and its sub-cgroups in every hierarchy.
rmdir_cgroups() {
    local name=$1 m
    for m in /sys/fs/cgroup/*/; do
        [ -d "$m$name" ] || continue
        find "$m$name" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ -d "$m$name" ] && log "warning: cgroup $m$name could not be removed"
    done
    return 0
}

# Delete a scratch directory, first undoing whatever is still mounted or attached below it.
remove_work_dir() {
    local w=$1 mnt img
    for mnt in $(awk -v w="$w/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        log "warning: unmounting leftover $mnt"
        umount -l "$mnt"
    done
    for img in $(losetup -a 2>/dev/null | grep -F "$w/" | cut -d: -f1); do
        log "warning: detaching leftover $img"
        losetup -d "$img"
    done
    rm -rf --one-file-system "$w"
}

# cpu_ms PID: CPU time in ms of PID and all its descendants now alive, with the children each
# has reaped (utime + stime + cutime + cstime).
cpu_ms() {
    # A process may end between the glob and cat's open: not an error.
    { cat /proc/[0-9]*/stat 2>/dev/null || :; } | awk -v root="$1" -v hz="$(getconf CLK_TCK)" '
        { pid = $1; line = $0; sub(/^.*\) /, "", line); split(line, f, " ");
          ppid[pid] = f[2]; t[pid] = f[12] + f[13] + f[14] + f[15] }
        END { sum = 0; for (p in t) { q = p; while (q != root && (q in ppid) && q > 1) q = ppid[q];
                                      if (q == root) sum += t[p] }
              printf "%.0f", sum * 1000 / hz }'
}

vmrss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ensure_tools DIR: trustme-guestos and trustme-pki (built in BUILD, default ROOT/build) copied into
# DIR, as ensure_build does for the daemons; sets TRUSTME_GUESTOS and TRUSTME_PKI to the copies.
ensure_tools() {
    local dir=$1 build=${BUILD:-$ROOT/build}
    if ! ninja -C "$build" src/tools/guestos/trustme-guestos src/tools/pki/trustme-pki >/dev/null 2>&1; then
        [ -x "$build/src/tools/guestos/trustme-guestos" ] && [ -x "$build/src/tools/pki/trustme-pki" ] ||
            die "ninja -C $build failed and trustme-guestos or trustme-pki is missing"
        log "warning: ninja -C $build failed (tree being edited?); using the existing trustme-guestos and trustme-pki"
    fi
    mkdir -p "$dir"
    cp -p "$build/src/tools/guestos/trustme-guestos" "$build/src/tools/pki/trustme-pki" "$dir/"
    TRUSTME_GUESTOS=$dir/trustme-guestos
    TRUSTME_PKI=$dir/trustme-pki
}

# signed_guestos DIR ROOTFS NAME [DATADIR]: the product's real path for the start benchmarks. A
# development PKI in DIR/pki (trustme-pki init, passphrase in DIR/pki.pass), GuestOS NAME version 1
# built from ROOTFS (squashfs) and signed by its GuestOS signer into DIR/out/NAME-1 (GUESTOS_DIR),
# and, with DATADIR, DATADIR/device.json trusting that PKI under the default policy (no
# allow_unsigned: what a device runs), to be written before start_trustmed. Needs ensure_tools.
signed_guestos() {
    local dir=$1 rootfs=$2 name=$3 data=${4:-} p=$1/pki
    if [ ! -d "$p" ]; then
        printf 'bench passphrase\n' >"$dir/pki.pass"
        chmod 600 "$dir/pki.pass"
        "$TRUSTME_PKI" init "$p" --passphrase-file "$dir/pki.pass" >"$dir/pki.log" 2>&1 ||
            { cat "$dir/pki.log" >&2; die "trustme-pki init failed"; }
    fi
    mkdir -p "$dir/out"
    "$TRUSTME_GUESTOS" build "$rootfs" --name "$name" --version 1 --out "$dir/out" --init /bin/true \
        --pki "$p" --signer guestos --passphrase-file "$dir/pki.pass" >/dev/null 2>"$dir/build-$name.log" ||
        { cat "$dir/build-$name.log" >&2; die "trustme-guestos build $name failed"; }
    # shellcheck disable=SC2034 # for the scripts that source this file
    GUESTOS_DIR=$dir/out/$name-1
    if [ -n "$data" ]; then
        mkdir -p "$data"
        jq -n --arg root "$p/customer/general-root-ca.pem" --arg ca "$p/customer/guestos-ca.pem" \
            --arg crl1 "$p/crl/general-root-ca.pem" --arg crl2 "$p/crl/guestos-ca.pem" \
            '{trust: {general_root: $root, guestos_cas: [$ca], crls: [$crl1, $crl2]}}' >"$data/device.json"
        bench_device_json "$data"
    fi
}

# install_guestos DIR: `trustme guestos install DIR` into the running private trustmed, which must
# accept it as signed.
install_guestos() {
    local name
    tm guestos install "$1" >/dev/null 2>"$1.install.log" || { cat "$1.install.log" >&2; die "trustme guestos install $1 failed"; }
    name=$(jq -r .name "$1/guestos.json")
    [ "$(tm guestos list | awk -v n="$name" '$1 == n {print $3}')" = signed ] ||
        die "GuestOS $name is not installed as signed: $(tm guestos list)"
}
