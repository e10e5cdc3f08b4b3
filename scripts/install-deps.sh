#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Installs the Debian packages trustme needs to build, run its demo and run its tests.
# Idempotent: packages already present are not fetched again, and apt-get update runs
# only when something is missing. Usage: scripts/install-deps.sh [--bench] [--ci]
# The default list is everything scripts/demo.sh and scripts/test.sh use, nothing more:
# tests/integration/tools.py names the package of every program and module the tests call, and
# tests/integration/test_tools.py checks that each is in PKGS below.
set -eu

PKGS="gcc libc6-dev binutils pkg-config meson ninja-build
      protobuf-c-compiler libprotobuf-c-dev libjansson-dev libseccomp-dev libcap-dev libssl-dev
      libcmocka-dev libp11-kit-dev nettle-dev libcryptsetup-dev softhsm2 opensc openssl
      libtss2-dev swtpm tpm2-tools
      libnftables-dev nftables
      postgresql postgresql-client libpq-dev libmicrohttpd-dev libgnutls28-dev chromium
      busybox-static e2fsprogs squashfs-tools erofs-utils util-linux
      python3 python3-pytest python3-cryptography iproute2 procps mount coreutils
      bash zsh groff-base clang-format git"
# Peers and tools the benchmarks compare against; not needed for the demo or the tests.
BENCH_PKGS="hyperfine runc crun lxc bubblewrap time jq strace iperf3"
# What .ci/run adds (scripts/ci-sanitize.sh): clang with its sanitizer and libFuzzer runtimes,
# and llvm-symbolizer for readable sanitizer reports.
CI_PKGS="clang libclang-rt-14-dev llvm"

[ "$(id -u)" = 0 ] || { echo "install-deps: run as root (apt-get needs it)" >&2; exit 1; }
for opt in "$@"; do
    case $opt in
        --bench) PKGS="$PKGS $BENCH_PKGS" ;;
        --ci) PKGS="$PKGS $CI_PKGS" ;;
        *) echo "usage: $0 [--bench] [--ci]" >&2; exit 2 ;;
    esac
done

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# The token service (trustme-scd) runs as a system user of its own.
id trustme-scd >/dev/null 2>&1 ||
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin trustme-scd
# So does the TPM service (trustme-tpmd); where a TPM's device nodes belong to group tss
# (/dev/tpmrm0 on hardware), it joins that group.
id trustme-tpm >/dev/null 2>&1 ||
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin trustme-tpm
if getent group tss >/dev/null && ! id -nG trustme-tpm | grep -qw tss; then
    usermod -a -G tss trustme-tpm
fi

[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
