#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck disable=SC1090,SC1091,SC2154 # lib.sh is sourced at run time
# The per-container keystore (docs/KEYSTORE.md): ECDSA P-256 signatures per second three ways,
# each for SECS seconds of wall time, ROUNDS rounds, the order rotated:
#   socket-depth1   one-shot signs through a running container's /run/trustme/keystore.sock
#                   (reached from the host through /proc/<init>/root), one request at a time
#   socket-depth16  the same with 16 requests in flight on one connection
#   tpm-depth1      one-shot signs with a TPM-held key (security level tpm: the key in the
#                   container's vTPM, docs/KEYSTORE.md "TPM-held keys"), one at a time; a second
#                   container with a vTPM and a soft token
#   openssl         EVP_DigestSign in one process (the floor of what the service does per sign)
#   pkcs11          SoftHSM2 through PKCS#11 (C_Sign, CKM_ECDSA), in process, a session key
#   trustme-pkcs11  libtrustme-pkcs11 (the container's PKCS#11 module) in front of the same
#                   socket: C_SignInit + C_Sign (CKM_ECDSA) with a keystore key, one at a time
# All single-threaded; bench/keystore_helper.c does the measuring. Run as root:
#
#   bench/keystore.sh [OUTDIR]
#
# Writes OUTDIR/keystore.tsv (round, mode, signatures, seconds, per second), OUTDIR/keystore.md
# (the table of docs/BENCHMARKS.md) and prints the medians.
# Environment: SECS (default 3), ROUNDS (5). Everything it makes is removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

SECS=${SECS:-3}
ROUNDS=${ROUNDS:-5}
CG_PARENT=trustme-bench-ks
need_root
bench_dirs ks "${1:-}"
TRUSTMED=${TRUSTMED:-$ROOT/build/src/daemon/trustmed}
TRUSTME=${TRUSTME:-$ROOT/build/src/cli/trustme}
TRUSTME_SCD=${TRUSTME_SCD:-$ROOT/build/src/scd/trustme-scd}
TRUSTME_TPMD=${TRUSTME_TPMD:-$ROOT/build/src/tpmd/trustme-tpmd}
HELPER=$ROOT/build/bench/keystore_helper
P11MODULE=$ROOT/build/src/keystore/pkcs11/libtrustme-pkcs11.so
SOFTHSM=/usr/lib/softhsm/libsofthsm2.so
ensure_build "$W/bin"
[ -x "$HELPER" ] && [ -f "$P11MODULE" ] || die "no $HELPER or $P11MODULE: ninja -C build"

cleanup() {
    stop_trustmed
    rmdir_cgroups "$CG_PARENT"
    remove_work_dir "$W"
}
trap cleanup EXIT INT TERM

mkdir -p "$W/data"
echo '{"policy": {"allow_unsigned": true}}' >"$W/data/device.json" # a development rootfs
start_trustmed "$W" "$CG_PARENT" 4100000000 # one container; clear of the other scripts' ids
mkdir -p "$W/rootfs"
"$ROOT/scripts/mkrootfs.sh" "$W/rootfs" >/dev/null
cat >"$W/ks.json" <<JSON
{"name": "ks", "rootfs": {"path": "$W/rootfs"}, "init": "/bin/sleep", "args": ["1000000"],
 "data_size_mb": 0, "keystore": true}
JSON
tm create "$W/ks.json" >/dev/null
# A keystore needs the device storage secret, which the TPM service unseals just after start-up.
for _ in $(seq 300); do tm start ks >/dev/null 2>&1 && break; sleep 0.2; done
[ "$(tm state --json ks | jq -r .state)" = running ] || die "the keystore container did not start"
PID=$(tm state --json ks | jq -r .pid)
SOCK=/proc/$PID/root/run/trustme/keystore.sock
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
# A vTPM needs a token and a data volume (docs/VTPM.md).
cat >"$W/kt.json" <<JSON
{"name": "kt", "rootfs": {"path": "$W/rootfs"}, "init": "/bin/sleep", "args": ["1000000"],
 "data_size_mb": 16, "token": {"type": "soft"}, "vtpm": true, "keystore": true}
JSON
tm create "$W/kt.json" >/dev/null
printf '7391\n12345678\n' >"$W/pins" && chmod 600 "$W/pins"
tm change-pin --pin-file "$W/pins" kt >/dev/null
printf '7391\n' >"$W/pin" && chmod 600 "$W/pin"
tm start --pin-file "$W/pin" kt >/dev/null || die "the vTPM keystore container did not start"
TSOCK=/proc/$(tm state --json kt | jq -r .pid)/root/run/trustme/keystore.sock
for _ in $(seq 100); do [ -S "$TSOCK" ] && break; sleep 0.05; done

mkdir -p "$W/softhsm"
printf 'directories.tokendir = %s\nobjectstore.backend = file\n' "$W/softhsm" >"$W/softhsm2.conf"
export SOFTHSM2_CONF=$W/softhsm2.conf
softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 12345678 >/dev/null

modes=(socket1 socket16 tpm1 openssl pkcs11 trustme-pkcs11)
: >"$OUT/keystore.tsv"
for r in $(seq "$ROUNDS"); do
    for i in "${!modes[@]}"; do
        m=${modes[$(((i + r) % ${#modes[@]}))]}
        case $m in
        socket1) line=$("$HELPER" socket "$SOCK" "$SECS" 1) ;;
        socket16) line=$("$HELPER" socket "$SOCK" "$SECS" 16) ;;
        tpm1) line=$("$HELPER" socket-tpm "$TSOCK" "$SECS" 1) ;;
        openssl) line=$("$HELPER" openssl "$SECS") ;;
        pkcs11) line=$("$HELPER" pkcs11 "$SOFTHSM" bench 1234 "$SECS") ;;
        trustme-pkcs11) line=$(TRUSTME_KEYSTORE_SOCKET=$SOCK "$HELPER" pkcs11 "$P11MODULE" "trustme keystore" x \
            "$SECS" token) ;;
        esac
        printf '%s\t%s\n' "$r" "${line// /$'\t'}" >>"$OUT/keystore.tsv"
        log "round $r: $line"
    done
done
echo "median signatures/s over $ROUNDS rounds of ${SECS} s:"
median() { awk -v m="$1" '$2 == m {print $5}' "$OUT/keystore.tsv" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
range() { awk -v m="$1" '$2 == m {print $5}' "$OUT/keystore.tsv" | sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {print lo "–" hi}'; }
OPENSSL_MED=$(median openssl)
{
    echo "| way | median | rounds (min–max) | vs OpenSSL |"
    echo "|---|---|---|---|"
    for m in socket-depth16:"keystore socket, 16 in flight" socket-depth1:"keystore socket, 1 at a time" \
        trustme-pkcs11:"libtrustme-pkcs11 over the socket, 1 at a time" \
        tpm-depth1:"keystore socket, TPM-held key (vTPM), 1 at a time" openssl:"OpenSSL in process" \
        pkcs11:"SoftHSM2 via PKCS#11, in process"; do
        med=$(median "${m%%:*}")
        printf '| %s | %s/s | %s | %s× |\n' "${m#*:}" "$med" "$(range "${m%%:*}")" \
            "$(awk -v a="$med" -v b="$OPENSSL_MED" 'BEGIN {printf "%.2f", a / b}')"
    done
} >"$OUT/keystore.md"
for m in socket-depth1 socket-depth16 tpm-depth1 openssl pkcs11 trustme-pkcs11; do
    printf '  %-16s %s\n' "$m" "$(median "$m")"
done
echo "results: $OUT/keystore.tsv, $OUT/keystore.md"
