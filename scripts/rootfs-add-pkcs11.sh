#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Put the keystore's PKCS#11 module and Debian's PKCS#11 clients into a guest root file system
# (one made by scripts/mkrootfs.sh): pkcs11-tool (opensc), openssl with its PKCS#11 engine
# (libengine-pkcs11-openssl), p11-kit, libtrustme-pkcs11.so in /usr/lib/<multiarch>/pkcs11/ with
# its p11-kit registration (dist/p11-kit/trustme.module), the libraries they need (found with
# ldd), /etc/ssl/openssl-pkcs11.cnf loading the engine with the module, and /etc/pkcs11.env to
# source. docs/KEYSTORE.md "PKCS#11".
#   scripts/rootfs-add-pkcs11.sh DIR MODULE
set -eu
[ $# -eq 2 ] || { echo "usage: $0 DIR MODULE" >&2; exit 2; }
dir=$1 module=$2
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
engine=/usr/lib/$arch/engines-3/pkcs11.so
for f in /usr/bin/pkcs11-tool /usr/bin/openssl /usr/bin/p11-kit "$engine" "$module"; do
    [ -e "$f" ] || { echo "rootfs-add-pkcs11: $f missing (scripts/install-deps.sh installs opensc, openssl, p11-kit, libengine-pkcs11-openssl; ninja -C build makes the module)" >&2; exit 1; }
done
# The libraries go to /lib/<multiarch> (the busybox guest has no ld.so.cache: LD_LIBRARY_PATH).
copy_libs() {
    ldd "$1" | sed -n 's/.* => \(\/[^ ]*\) (0x.*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p' | while read -r lib; do
        case $lib in
            /lib64/*) dst=$dir$lib ;;
            *) dst=$dir/lib/$arch/$(basename "$lib") ;;
        esac
        mkdir -p "$(dirname "$dst")"
        [ -e "$dst" ] || cp -L "$lib" "$dst"
    done
}
mkdir -p "$dir/usr/bin" "$dir/usr/lib/$arch/pkcs11" "$dir/usr/lib/$arch/engines-3" "$dir/etc/ssl"
for b in /usr/bin/pkcs11-tool /usr/bin/openssl /usr/bin/p11-kit; do
    rm -f "$dir$b"   # busybox may have an applet of that name
    cp -L "$b" "$dir$b"
    copy_libs "$b"
done
cp -L "$engine" "$dir$engine"
copy_libs "$engine"
cp -L "$module" "$dir/usr/lib/$arch/pkcs11/libtrustme-pkcs11.so"
copy_libs "$module"
mkdir -p "$dir/usr/share/p11-kit/modules"
cp "$(dirname "$0")/../dist/p11-kit/trustme.module" "$dir/usr/share/p11-kit/modules/"
cat > "$dir/etc/ssl/openssl-pkcs11.cnf" <<CNF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $engine
MODULE_PATH = /usr/lib/$arch/pkcs11/libtrustme-pkcs11.so
init = 0
CNF
cat > "$dir/etc/pkcs11.env" <<ENV
export LD_LIBRARY_PATH=/lib/$arch OPENSSL_CONF=/etc/ssl/openssl-pkcs11.cnf
P11MODULE=/usr/lib/$arch/pkcs11/libtrustme-pkcs11.so
ENV
