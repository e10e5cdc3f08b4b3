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
# Writes OUTDIR/keystore.tsv (round, mode, signatures, seconds, per second, the client's CPU us per
# signature, and for the socket modes the keystore service's), OUTDIR/keystore.md (the table of
# docs/BENCHMARKS.md) and prints the medians, with the one-at-a-time rate against the service's
# target of 5000/s and the service's + client's CPU time per signature (the figure that does not
# depend on the machine's load: 1e6 / that is the rate one core would give).
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
# The keystore service of container ks: a trustme-keystore below our trustmed whose /state is
# ks's key directory (the other container's service is below it too).
KS_UUID=$(tm state --json ks | jq -r .uuid)
svc_pid() {
    local p
    for p in $(ps -eo pid=,ppid=,comm= | awk -v root="$TMD_PID" '{pp[$1] = $2; c[$1] = $3}
        END {for (p in c) if (c[p] == "trustme-keystor") {q = p; while (q > 1) {if (q == root) {print p; break}
            q = pp[q]}}}'); do
        grep -q "keystore/$KS_UUID " "/proc/$p/mountinfo" 2>/dev/null && { echo "$p"; return 0; }
    done
    return 1
}
SVC=$(svc_pid) || die "no keystore service of container ks below trustmed $TMD_PID"
TCK=$(getconf CLK_TCK)
svc_ticks() { awk '{print $14 + $15}' "/proc/$SVC/stat" 2>/dev/null || echo 0; }
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
        t0=$(svc_ticks)
        case $m in
        socket1) line=$("$HELPER" socket "$SOCK" "$SECS" 1) ;;
        socket16) line=$("$HELPER" socket "$SOCK" "$SECS" 16) ;;
        tpm1) line=$("$HELPER" socket-tpm "$TSOCK" "$SECS" 1) ;;
        openssl) line=$("$HELPER" openssl "$SECS") ;;
        pkcs11) line=$("$HELPER" pkcs11 "$SOFTHSM" bench 1234 "$SECS") ;;
        trustme-pkcs11) line=$(TRUSTME_KEYSTORE_SOCKET=$SOCK "$HELPER" pkcs11 "$P11MODULE" "trustme keystore" x \
            "$SECS" token) ;;
        esac
        t1=$(svc_ticks)
        # The service's CPU per signature (its key made at the start included: negligible)
        case $m in
        socket1 | socket16 | trustme-pkcs11)
            line="$line $(awk -v a="$t0" -v b="$t1" -v t="$TCK" -v n="$(echo "$line" | awk '{print $2}')" \
                'BEGIN {printf "%.1f", n ? (b - a) / t / n * 1e6 : 0}')"
            ;;
        *) line="$line -" ;;
        esac
        printf '%s\t%s\n' "$r" "${line// /$'\t'}" >>"$OUT/keystore.tsv"
        log "round $r: $line"
    done
done
echo "median signatures/s over $ROUNDS rounds of ${SECS} s:"
median() { awk -v m="$1" '$2 == m {print $5}' "$OUT/keystore.tsv" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
range() { awk -v m="$1" '$2 == m {print $5}' "$OUT/keystore.tsv" | sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {print lo "–" hi}'; }
# service + client CPU us per signature (columns 7 and 6)
cpu_median() { awk -v m="$1" '$2 == m && $7 != "-" {print $6 + $7}' "$OUT/keystore.tsv" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
OPENSSL_MED=$(median openssl)
{
    echo "| way | median | rounds (min–max) | vs OpenSSL | CPU per signature, service + client |"
    echo "|---|---|---|---|---|"
    for m in socket-depth16:"keystore socket, 16 in flight" socket-depth1:"keystore socket, 1 at a time" \
        trustme-pkcs11:"libtrustme-pkcs11 over the socket, 1 at a time" \
        tpm-depth1:"keystore socket, TPM-held key (vTPM), 1 at a time" openssl:"OpenSSL in process" \
        pkcs11:"SoftHSM2 via PKCS#11, in process"; do
        med=$(median "${m%%:*}")
        cpu=$(cpu_median "${m%%:*}")
        [ -n "$cpu" ] || [ "${m%%:*}" = tpm-depth1 ] || cpu=$(awk -v m="${m%%:*}" '$2 == m {print $6}' "$OUT/keystore.tsv" | sort -n |
            awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
        printf '| %s | %s/s | %s | %s× | %s |\n' "${m#*:}" "$med" "$(range "${m%%:*}")" \
            "$(awk -v a="$med" -v b="$OPENSSL_MED" 'BEGIN {printf "%.2f", a / b}')" "${cpu:+$cpu us}"
    done
    ONE=$(median socket-depth1)
    CPU1=$(cpu_median socket-depth1)
    echo
    echo "One request at a time (a synchronous client, as PKCS#11 and OpenSSL users call it): $ONE/s of wall time"
    echo "against the target of 5000/s ($(awk -v a="$ONE" 'BEGIN {print (a >= 5000 ? "met" : "not met")}') at this load);"
    echo "CPU time per signature, service + client: $CPU1 us (median), which is"
    echo "$(awk -v c="$CPU1" 'BEGIN {printf "%.0f", (c > 0 ? 1e6 / c : 0)}')/s on one core whatever the load."
} >"$OUT/keystore.md"
for m in socket-depth1 socket-depth16 tpm-depth1 openssl pkcs11 trustme-pkcs11; do
    printf '  %-16s %s/s\n' "$m" "$(median "$m")"
done
printf '  socket-depth1 against the target 5000/s: %s; CPU us per signature (service + client): %s\n' \
    "$(awk -v a="$(median socket-depth1)" 'BEGIN {print (a >= 5000 ? "met" : "NOT met")}')" "$(cpu_median socket-depth1)"
echo "results: $OUT/keystore.tsv, $OUT/keystore.md"
