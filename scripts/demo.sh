#!/bin/sh
# trustme end to end: install, build, start trustmed in a scratch directory, build a busybox guest,
# create and start a container, run commands in it, list, stop, verify the audit log, clean up.
#   scripts/demo.sh [--keep]   (--keep leaves trustmed and the container running at the end)
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root" >&2; exit 1; }
keep=no; [ "${1:-}" = "--keep" ] && keep=yes

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "installing dependencies and building"
scripts/install-deps.sh
scripts/build.sh >/dev/null

work=$(mktemp -d /tmp/trustme-demo.XXXXXX)
trustmed_pid=
cleanup() {
    [ "$keep" = yes ] && return
    if [ -n "$trustmed_pid" ] && kill -0 "$trustmed_pid" 2>/dev/null; then
        kill -TERM "$trustmed_pid"    # trustmed stops its containers, then exits
        wait "$trustmed_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

step "building a busybox guest root file system"
scripts/mkrootfs.sh "$work/rootfs"
du -sh "$work/rootfs"

step "starting trustmed (data and run dirs in $work)"
build/src/daemon/trustmed --data-dir "$work/data" --run-dir "$work/run" \
    --cgroup-parent trustme-demo --log-level warn &
trustmed_pid=$!
i=0; until [ -S "$work/run/control.sock" ]; do
    i=$((i + 1)); [ $i -lt 500 ] || { echo "trustmed did not start" >&2; exit 1; }; sleep 0.01
done
trustme() { echo "\$ trustme $*"; build/src/cli/trustme --run-dir "$work/run" "$@"; }

cat > "$work/demo.json" <<JSON
{
  "name": "demo",
  "rootfs": {"path": "$work/rootfs"},
  "init": "/bin/sh",
  "args": ["-c", "echo guest up; while :; do sleep 3600; done"],
  "hostname": "demo-guest",
  "memory_limit_mb": 128,
  "pids_limit": 256,
  "data_size_mb": 32
}
JSON
step "creating and starting a container"
cat "$work/demo.json"
trustme create "$work/demo.json"
trustme start demo

step "running commands inside it"
trustme run demo -- sh -c 'echo "hostname: $(hostname)"; echo "whoami:   $(id)"; echo "uid map:  $(cat /proc/self/uid_map)"'
trustme run demo -- ps
trustme run demo -- ip link
trustme run demo -- sh -c 'echo "written by the guest" > /root/hello; cat /root/hello'
pid=$(build/src/cli/trustme --run-dir "$work/run" state demo | awk '/^init pid:/ {print $3}')
echo "on the host, the guest's root (init, pid $pid) is uid $(awk '/^Uid:/ {print $2}' /proc/$pid/status)"

step "listing containers"
trustme list
trustme state demo

[ "$keep" = yes ] && { echo; echo "left running: trustme --run-dir $work/run ...; stop with kill $trustmed_pid"; exit 0; }

step "stopping it"
trustme stop --timeout 2 demo
trustme list

step "the audit log"
trustme audit
trustme audit --verify
echo
echo "demo complete: everything it made is removed on exit"
