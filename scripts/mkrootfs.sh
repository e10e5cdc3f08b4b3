#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Build a minimal busybox guest root file system (busybox-static) in DIR.
#   scripts/mkrootfs.sh DIR [EXTRA_BINARY...]
# Extra binaries (static) are copied into DIR/usr/local/bin. Idempotent: an existing DIR is
# refreshed. Optionally pack it: scripts/mkrootfs.sh DIR && mksquashfs DIR img -noappend
set -eu

[ $# -ge 1 ] || { echo "usage: $0 DIR [EXTRA_BINARY...]" >&2; exit 2; }
dir=$1; shift
busybox=/bin/busybox
[ -x "$busybox" ] && "$busybox" --list >/dev/null 2>&1 || { echo "mkrootfs: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
file -L "$busybox" 2>/dev/null | grep -q "statically linked" || ldd "$busybox" 2>&1 | grep -q "not a dynamic" ||
    { echo "mkrootfs: $busybox is not static (install busybox-static)" >&2; exit 1; }

mkdir -p "$dir"
for d in bin sbin usr/bin usr/sbin usr/local/bin etc root tmp proc sys dev run var/log home; do
    mkdir -p "$dir/$d"
done
chmod 1777 "$dir/tmp"
chmod 0700 "$dir/root"
cp "$busybox" "$dir/bin/busybox"
for applet in $("$busybox" --list-full); do
    [ -e "$dir/$applet" ] || ln -s /bin/busybox "$dir/$applet"
done
cat > "$dir/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PW
cat > "$dir/etc/group" <<'GR'
root:x:0:
tty:x:5:
nogroup:x:65534:
GR
echo trustme-guest > "$dir/etc/hostname"
: > "$dir/etc/resolv.conf"
for bin in "$@"; do
    cp "$bin" "$dir/usr/local/bin/"
done
