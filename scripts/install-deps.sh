#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Installs the Debian packages trustme needs to build, run its demo and run its tests.
# Idempotent: packages already present are not fetched again, and apt-get update runs
# only when something is missing. Usage: scripts/install-deps.sh [--bench] [--ci] [--package] [--arm64]
# The default list is everything scripts/demo.sh and scripts/test.sh use, nothing more:
# tests/integration/tools.py names the package of every program and module the tests call, and
# tests/integration/test_tools.py checks that each is in PKGS below.
set -eu

PKGS="gcc libc6-dev binutils pkg-config meson ninja-build
      protobuf-c-compiler libprotobuf-c-dev libjansson-dev libseccomp-dev libcap-dev libssl-dev
      libcmocka-dev libp11-kit-dev nettle-dev libcryptsetup-dev softhsm2 opensc openssl libengine-pkcs11-openssl p11-kit
      libtss2-dev libtpms-dev swtpm tpm2-tools libtss2-tcti-swtpm0 tpm2-openssl
      libnftables-dev nftables
      postgresql postgresql-client libpq-dev libmicrohttpd-dev libgnutls28-dev chromium
      busybox-static e2fsprogs squashfs-tools erofs-utils util-linux
      libarchive-dev zstd umoci debootstrap
      python3 python3-pytest python3-cryptography iproute2 procps mount coreutils
      bash zsh groff-base clang-format git libc-bin systemd"
# Peers and tools the benchmarks compare against; not needed for the demo or the tests.
BENCH_PKGS="hyperfine runc crun lxc bubblewrap time jq strace iperf3"
# What .ci/run adds (scripts/ci-sanitize.sh): clang with its sanitizer and libFuzzer runtimes,
# and llvm-symbolizer for readable sanitizer reports.
CI_PKGS="clang libclang-rt-14-dev llvm"
# What scripts/package-test.sh adds: building and checking the Debian packages.
PACKAGE_PKGS="dpkg-dev debhelper lintian"
# What scripts/cross-test.sh adds (--arm64; docs/PACKAGING.md): Debian's cross toolchain, qemu-user
# (/usr/bin/qemu-aarch64, started directly: no binfmt_misc needed) and the arm64 libraries the
# build links, installed beside the machine's own (multiarch: dpkg --add-architecture arm64). Not
# libpq-dev, libmicrohttpd-dev, libgnutls28-dev (trustme-fleet, left out: libpq-dev is not
# Multi-Arch: same, its arm64 package would remove the amd64 one), nor softhsm2 (the same):
# cross-test.sh unpacks libsofthsm2:arm64 into its build dir; libstdc++6 is what that module needs.
ARM64_PKGS="crossbuild-essential-arm64 qemu-user file dpkg-dev debhelper"
ARM64_LIBS="pkg-config libprotobuf-c-dev libjansson-dev libseccomp-dev libcap-dev libssl-dev
            libp11-kit-dev nettle-dev libcryptsetup-dev libtss2-dev libnftables-dev libarchive-dev
            libcmocka-dev libstdc++6 libtpms0"

[ "$(id -u)" = 0 ] || { echo "install-deps: run as root (apt-get needs it)" >&2; exit 1; }
arm64=no
for opt in "$@"; do
    case $opt in
        --bench) PKGS="$PKGS $BENCH_PKGS" ;;
        --ci) PKGS="$PKGS $CI_PKGS" ;;
        --package) PKGS="$PKGS $PACKAGE_PKGS" ;;
        --arm64)
            arm64=yes
            PKGS="$PKGS $ARM64_PKGS"
            for p in $ARM64_LIBS; do PKGS="$PKGS $p:arm64"; done
            ;;
        *) echo "usage: $0 [--bench] [--ci] [--package] [--arm64]" >&2; exit 2 ;;
    esac
done
if [ "$arm64" = yes ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "install-deps: adding the arm64 architecture (dpkg --add-architecture arm64)"
    dpkg --add-architecture arm64
fi

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "install-deps: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    if [ "$arm64" = yes ]; then
        # A package of the other architecture that is not Multi-Arch: same replaces the machine's
        # own (libpq-dev, softhsm2): refuse, rather than remove what other builds here use.
        # shellcheck disable=SC2086
        removed=$(apt-get -o DPkg::Lock::Timeout=600 -s install --no-install-recommends $missing | grep '^Remv') || true
        if [ -n "$removed" ]; then
            printf 'install-deps: installing these would remove packages; not done:\n%s\n' "$removed" >&2
            exit 1
        fi
    fi
    # shellcheck disable=SC2086
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
fi

# The helper services (trustme-scd, trustme-tpmd) run as system users of their own, defined in
# dist/sysusers.d/trustme.conf (also what the package installs). Made after the packages
# (tpm-udev makes group tss): by systemd-sysusers from that file where it exists, otherwise by
# useradd/usermod from the same file's `u` and `m` lines.
sysusers="$(cd "$(dirname "$0")/.." && pwd)/dist/sysusers.d/trustme.conf"
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers "$sysusers"
else
    grep -E '^u[[:space:]]' "$sysusers" | while read -r _ user _; do
        id "$user" >/dev/null 2>&1 ||
            useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
    done
    grep -E '^m[[:space:]]' "$sysusers" | while read -r _ user group _; do
        getent group "$group" >/dev/null && ! id -nG "$user" | grep -qw "$group" && usermod -a -G "$group" "$user"
        true
    done
fi
