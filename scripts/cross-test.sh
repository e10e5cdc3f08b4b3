#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# trustme for arm64 on an amd64 Debian 12 machine (docs/PACKAGING.md, "arm64"): built with Debian's
# cross toolchain against arm64 libraries installed beside the machine's own (multiarch), the unit
# tests run under qemu-user, and the Debian packages built for arm64.
#   scripts/cross-test.sh [--no-package] [--clean] [arm64]
# All output goes to build-arm64/ in the tree (ignored by git): the meson build (build-arm64/build:
# only what the unit tests need, since the package build compiles the programs), its cross file,
# a small sysroot for qemu (the arm64 SoftHSM2 module) and the packages (build-arm64/pkg/*.deb).
# --clean removes build-arm64/ and does nothing else. As root it first installs what it needs
# (scripts/install-deps.sh --arm64). The last line is "N passed, N failed": one per unit test
# run under qemu and one per other step; skipped tests are listed with their reasons before it.
set -u
cd "$(dirname "$0")/.." || exit 1
repo=$PWD
package=yes arch=arm64
for opt in "$@"; do
    case $opt in
        --no-package) package=no ;;
        --clean) rm -rf "$repo/build-arm64"; echo "cross-test.sh: removed build-arm64/"; exit 0 ;;
        arm64) arch=arm64 ;;
        *) echo "usage: $0 [--no-package] [--clean] [arm64]" >&2; exit 2 ;;
    esac
done
triplet=aarch64-linux-gnu qemu=qemu-aarch64 elf="ARM aarch64"
out=$repo/build-$arch
build=$out/build

# Unit tests that cannot run under qemu-user, with the reason (docs/PACKAGING.md has the same list).
# Never skipped on real arm64 hardware: this list is for the emulator only.
skip_reasons="lifecycle	qemu-user 7.2 has no clone3 (it returns ENOSYS), and trustmed forks each container's setup process with clone3(CLONE_PIDFD)"

if [ "$(id -u)" = 0 ]; then
    scripts/install-deps.sh --arm64 || exit 1
fi
for tool in $triplet-gcc $triplet-pkg-config $qemu file dpkg-buildpackage; do
    command -v "$tool" >/dev/null ||
        { echo "cross-test.sh: $tool is missing: run scripts/install-deps.sh --arm64 as root" >&2; exit 1; }
done

passed=0 failed=0
check() { # check WHAT COMMAND...: one step
    what=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "ok: $what"
    else failed=$((failed + 1)); echo "FAILED: $what"; fi
}
elapsed() { echo "   $(($(date +%s) - $1)) s"; }
mkdir -p "$out/sysroot"
start_all=$(date +%s)

# The PKCS#11 tests dlopen SoftHSM2's module, which must be an arm64 one. libsofthsm2:arm64 cannot
# be installed beside the machine's amd64 softhsm2 (not Multi-Arch: same), so its package is
# unpacked into a sysroot that qemu searches first (-L): /usr/lib/softhsm/libsofthsm2.so is then
# the arm64 module for the tests, and every other path the machine's own (the multiarch
# libraries in /usr/lib/aarch64-linux-gnu, softhsm2-util and swtpm, which run natively).
if [ ! -e "$out/sysroot/usr/lib/softhsm/libsofthsm2.so" ]; then
    rm -rf "$out/debs" && mkdir -p "$out/debs" && chmod 0777 "$out/debs" # apt's _apt user writes it
    if (cd "$out/debs" && apt-get download -q "libsofthsm2:$arch" >/dev/null 2>&1); then
        dpkg-deb -x "$out"/debs/libsofthsm2_*.deb "$out/sysroot"
        rm -rf "$out/sysroot/usr/share" "$out/debs"
    else
        skip_reasons="$skip_reasons
token_pkcs11	no arm64 SoftHSM2 module: apt-get download libsofthsm2:$arch failed"
    fi
fi

# trustme-vtpm links libtpms. libtpms-dev:arm64 cannot be installed beside the machine's amd64
# libtpms-dev (not Multi-Arch: same), but libtpms0:arm64 can (install-deps.sh --arm64), and the
# headers are the same for every architecture: a pkg-config file of our own names the arm64
# library. The package build checks no build dependencies for the same reason (-d below).
mkdir -p "$out/pkgconfig"
cat >"$out/pkgconfig/libtpms.pc" <<EOF
Name: libtpms
Description: libtpms (the arm64 library, the machine's headers)
Version: $(dpkg-query -W -f '${Version}' "libtpms0:$arch" 2>/dev/null | sed 's/-.*//')
Libs: -l:libtpms.so.0
Cflags: -I/usr/include
EOF
export PKG_CONFIG_PATH="$out/pkgconfig"

# The cross file: the toolchain, and qemu-user to run what the build made (meson test). Replaced
# only when it changed: meson reconfigures the build whenever it is newer.
cat >"$out/cross.ini.new" <<EOF
[binaries]
c = '$triplet-gcc'
ar = '$triplet-ar'
strip = '$triplet-strip'
pkgconfig = '$triplet-pkg-config'
exe_wrapper = ['$qemu', '-L', '$out/sysroot']

[host_machine]
system = 'linux'
cpu_family = 'aarch64'
cpu = 'aarch64'
endian = 'little'
EOF
if cmp -s "$out/cross.ini.new" "$out/cross.ini"; then rm "$out/cross.ini.new"; else mv "$out/cross.ini.new" "$out/cross.ini"; fi

echo "== building for $arch (meson in build-$arch/build, the unit tests' targets)"
start=$(date +%s)
setup() {
    [ -f "$build/build.ninja" ] && return 0
    # As scripts/build.sh, but without trustme-fleet: its libpq-dev is not installed for arm64.
    meson setup "$build" --cross-file "$out/cross.ini" --buildtype=debugoptimized \
        -Dtest_hooks=true -Dfleet=false >"$out/setup.log" 2>&1 || { tail -20 "$out/setup.log"; return 1; }
}
all_tests=
compile() {
    all_tests=$(meson test -C "$build" --no-rebuild --list 2>/dev/null) && [ -n "$all_tests" ] || return 1
    # The unit tests' executables (and what they link); the programs are the package build's.
    targets=$(meson introspect --tests "$build" | /usr/bin/python3 -c '
import json, os, sys
print(" ".join(sorted({os.path.relpath(t["cmd"][0], sys.argv[1]) for t in json.load(sys.stdin)})))' "$build") ||
        return 1
    # shellcheck disable=SC2086
    if ! ninja -C "$build" $targets >"$out/build.log" 2>&1; then
        tail -30 "$out/build.log"
        return 1
    fi
    if grep -q 'warning:' "$out/build.log"; then grep 'warning:' "$out/build.log"; return 1; fi
}
check "meson setup --cross-file (arm64)" setup
check "the unit tests built for $arch, without warnings" compile
elapsed "$start"

is_arch() { # is_arch FILE...: every file an ELF for the target
    for f in "$@"; do
        file -b "$f" | grep -q "^ELF 64-bit LSB .*, $elf," || { echo "not $arch: $f: $(file -b "$f")"; return 1; }
    done
}
# shellcheck disable=SC2046
check "the unit tests are $arch executables (file)" is_arch $(meson introspect --tests "$build" |
    /usr/bin/python3 -c 'import json, sys; print(" ".join(sorted({t["cmd"][0] for t in json.load(sys.stdin)})))')

# meson's testlog.json: "OK FAILED CASES", the tests that passed and failed and the cmocka cases
# the passed ones ran.
count_tests() {
    /usr/bin/python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, re, sys
ok = bad = cases = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    if t["result"] == "OK":
        ok += 1
        text = t.get("stdout", "") + (t.get("stderr") or "")
        cases += sum(int(n) for n in re.findall(r"^\[  PASSED  \] (\d+) test\(s\)", text, re.M))
    else:
        bad += 1
        print(f"FAILED: unit test {t['name']} under qemu: {t['result']}", file=sys.stderr)
print(ok, bad, cases)
PY
}

echo "== the unit tests under $qemu"
start=$(date +%s)
run="" skipped=0
for t in $all_tests; do
    reason=$(printf '%s\n' "$skip_reasons" | awk -F'\t' -v t="$t" '$1 == t {print $2}')
    if [ -n "$reason" ]; then echo "SKIP: $t: $reason"; skipped=$((skipped + 1)); else run="$run $t"; fi
done
if [ -z "$run" ]; then
    # nothing built (counted above): `meson test` without names would run every test
    echo "no unit tests to run"
else
    # Emulated code runs several times slower (scrypt, RSA key generation): the tests' own
    # timeouts, set for native runs, times 3.
    # shellcheck disable=SC2086
    meson test -C "$build" --no-rebuild --print-errorlogs --timeout-multiplier 3 $run >"$out/test.log" 2>&1
    grep -E '^ *[0-9]+/[0-9]+ ' "$out/test.log"
    counts=$(count_tests) || counts="0 1 0"
    # shellcheck disable=SC2086
    set -- $counts
    passed=$((passed + $1)) failed=$((failed + $2))
    echo "unit tests under $qemu: $1 passed, $2 failed, $skipped skipped ($3 cmocka cases passed)"
    [ "$2" = 0 ] || echo "   the failures' output: build-$arch/build/meson-logs/testlog.txt"
fi
elapsed "$start"

if [ "$package" = yes ]; then
    echo "== the Debian packages for $arch (dpkg-buildpackage -a $arch, a copy of the tree in build-$arch/pkg/src)"
    start=$(date +%s)
    rm -rf "$out/pkg" && mkdir -p "$out/pkg/src"
    git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$out/pkg/src"
    # nocheck: the unit tests ran above; pkg.trustme.nofleet: no libpq-dev for arm64 (debian/rules).
    pkgbuild() {
        (cd "$out/pkg/src" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
            dpkg-buildpackage -a "$arch" -d -Pcross,nocheck,pkg.trustme.nofleet -b -us -uc) \
            >"$out/pkg/build.log" 2>&1 || { tail -30 "$out/pkg/build.log"; return 1; }
        rm -rf "$out/pkg/src"
    }
    check "dpkg-buildpackage -a $arch -b -us -uc" pkgbuild
    elapsed "$start"
    debs_arch() {
        for p in trustme trustme-tools trustme-verify; do
            deb=$(ls "$out/pkg/${p}_"*"_$arch.deb" 2>/dev/null) || { echo "no $p package"; return 1; }
            a=$(dpkg-deb -f "$deb" Architecture)
            echo "   $(basename "$deb"): Architecture: $a"
            [ "$a" = "$arch" ] || return 1
        done
    }
    check "the packages are Architecture: $arch (dpkg-deb -I)" debs_arch
    programs_arch() {
        rm -rf "$out/pkg/x" && dpkg-deb -x "$out"/pkg/trustme_*_"$arch".deb "$out/pkg/x" &&
            is_arch "$out"/pkg/x/usr/sbin/* "$out"/pkg/x/usr/bin/* "$out"/pkg/x/usr/libexec/trustme/* &&
            rm -rf "$out/pkg/x"
    }
    check "the package's programs are $arch executables (file)" programs_arch
    # The packaged trustme-guestos takes, by default, the image of an index for the platform it
    # was built for. Its import cannot run under qemu-user 7.2 (no openat2: ENOSYS), so this
    # asks it, under qemu, which default it would use.
    guestos_platform() {
        rm -rf "$out/pkg/x" && dpkg-deb -x "$out"/pkg/trustme-tools_*_"$arch".deb "$out/pkg/x" &&
            "$qemu" -L "$out/sysroot" "$out/pkg/x/usr/bin/trustme-guestos" --help >"$out/pkg/help" 2>&1 &&
            grep "default --platform" "$out/pkg/help" && grep -q "default --platform: linux/$arch$" "$out/pkg/help" &&
            rm -rf "$out/pkg/x"
    }
    check "trustme-guestos's default --platform is linux/$arch (under $qemu)" guestos_platform
fi

echo "cross test ($arch) took $(($(date +%s) - start_all)) s"
echo "skipped under qemu: $skipped unit test(s), the reasons above"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
