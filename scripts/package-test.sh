#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The Debian packages end to end (docs/PACKAGING.md), as root on Debian 12: build them from a copy
# of the tree (dpkg-buildpackage -b -us -uc), check them with lintian (no errors), install them
# with apt, run the demo against the installed programs (scripts/demo.sh --installed), remove
# them (nothing left but state) and purge them (state, and the users the package made, gone).
#   scripts/package-test.sh [--fresh-users]
# --fresh-users first deletes the helper services' users (install-deps.sh made them), so that the
# package makes them and its purge removes them, and makes them again at the end: only on a
# machine where no other trustme runs (CI's last step). Without it the users are kept throughout.
# The last line is "N passed, N failed" (one per step).
set -u
cd "$(dirname "$0")/.."
repo=$PWD
[ "$(id -u)" = 0 ] || { echo "package-test.sh: run as root" >&2; exit 1; }
fresh=no
[ "${1:-}" = "--fresh-users" ] && fresh=yes
if dpkg-query -W -f='${Status}' trustme 2>/dev/null | grep -q installed || [ -e /var/lib/trustme ]; then
    echo "package-test.sh: trustme is installed here already, or /var/lib/trustme exists: not touching it" >&2
    exit 1
fi
scripts/install-deps.sh --package || exit 1

work=$(mktemp -d /tmp/trustme-package.XXXXXX)
# The packages dpkg still knows (installed, or removed with their config: rc); apt refuses to purge
# one it does not know at all (trustme-verify, which has no config, is gone after a remove).
known() { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' trustme trustme-tools trustme-verify trustme-pkcs11 2>/dev/null |
    awk '/^[ir]/ {print $2}'; }
cleanup() {
    pkgs=$(known)
    [ -n "$pkgs" ] && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 purge -y -qq $pkgs \
        >/dev/null 2>&1
    [ "$fresh" = yes ] && "$repo/scripts/install-deps.sh" >/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
passed=0 failed=0
check() { # check WHAT COMMAND...: one step
    what=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "ok: $what"
    else failed=$((failed + 1)); echo "FAILED: $what"; fi
}
users="trustme-scd trustme-tpm"
no_users() { for u in $users; do ! getent passwd "$u" >/dev/null || return 1; done; }
all_users() { for u in $users; do getent passwd "$u" >/dev/null || return 1; done; }
if [ "$fresh" = yes ]; then
    for u in $users; do userdel "$u" 2>/dev/null; groupdel "$u" 2>/dev/null; done
fi

start=$(date +%s)
echo "== building the packages (a copy of the tree in $work/src)"
mkdir "$work/src"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work/src"
build() {
    (cd "$work/src" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" dpkg-buildpackage -b -us -uc) \
        >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; return 1; }
}
check "dpkg-buildpackage -b -us -uc" build
echo "   $(($(date +%s) - start)) s"

# The PKCS#11 module is for a container's root, not the device: only checked to be packaged.
p11() { dpkg-deb -c "$work"/trustme-pkcs11_*.deb | grep -q 'usr/lib/.*/pkcs11/libtrustme-pkcs11.so$'; }
check "trustme-pkcs11 holds libtrustme-pkcs11.so in <libdir>/pkcs11" p11

echo "== lintian"
lint() {
    out=$(lintian --fail-on error --tag-display-limit 0 "$work"/trustme_*.changes 2>&1)
    rc=$?
    printf '%s\n' "$out" | grep -v "^running with root" || true
    return $rc
}
check "lintian: no errors" lint

echo "== installing with apt"
install() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        "$work"/trustme_*.deb "$work"/trustme-tools_*.deb "$work"/trustme-verify_*.deb \
        "$work"/trustme-pkcs11_*.deb >/dev/null
}
check "apt-get install ./trustme*.deb" install
check "installed: /usr/sbin/trustmed, helpers in /usr/libexec/trustme, man pages" \
    test -x /usr/sbin/trustmed -a -x /usr/libexec/trustme/trustme-scd -a -f /usr/share/man/man8/trustmed.8.gz
check "the helpers' users exist" all_users
check "tmpfiles made /var/lib/trustme" test -d /var/lib/trustme
analyze() { systemd-analyze verify /lib/systemd/system/trustmed.service; }
check "systemd-analyze verify (installed unit)" analyze

echo "== the demo against the installed programs"
check "scripts/demo.sh --installed" scripts/demo.sh --installed

echo "== removing"
remove() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 remove -y -qq trustme trustme-tools trustme-verify trustme-pkcs11 >/dev/null; }
check "apt-get remove" remove
gone() { ! test -e /usr/sbin/trustmed -o -e /usr/libexec/trustme -o -e /usr/bin/trustme-pki -o -e /usr/bin/trustme-verify; }
check "programs gone" gone
kept() { test -d /var/lib/trustme && all_users; }
check "state kept (/var/lib/trustme) and users kept" kept
rc() { dpkg-query -W -f='${db:Status-Abbrev}' trustme | grep -q '^rc'; }
check "trustme left as config-files (rc)" rc

echo "== purging"
# shellcheck disable=SC2046
purge() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 purge -y -qq $(known) >/dev/null; }
check "apt-get purge" purge
check "state gone" sh -c '! test -e /var/lib/trustme -o -e /var/lib/trustme-swtpm'
if [ "$fresh" = yes ]; then
    check "users the package made are gone" no_users
else
    check "users the package found are kept" all_users
fi
notinstalled() { ! dpkg-query -W -f='${db:Status-Abbrev}' trustme 2>/dev/null | grep -q '^[ir]'; }
check "nothing of the package left" notinstalled
echo "package test took $(($(date +%s) - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
