#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck disable=SC1090,SC1091,SC2154 # lib.sh and the facts files are sourced at run time
# Where trustme's start-to-exit time goes. Run as root:
#
#   bench/profile_start.sh [OUTDIR]
#
# 1. A private trustmed at --log-level debug: medians of its own phase timestamps (ms resolution)
#    over RUNS start --attach of /bin/true, with a 16 MiB data volume and without.
# 2. The same trustmed binary under `strace -f --seccomp-bpf -T` (only the syscalls named below stop,
#    so the overhead stays small): per start, the median duration of the expensive kernel calls.
# 3. A probe of the kernel cost of moving a fresh process into cgroups, independent of trustme: the
#    first write of a pid to a v1 cgroup.procs waits for an RCU grace period (percpu rwsem
#    cgroup_threadgroup_rwsem taken for writing); writing "0" to the v1 `tasks` file from the
#    (single-threaded) process itself does not take that lock, and clone3(CLONE_INTO_CGROUP)
#    places a child into a v2 cgroup without a migration.
# Writes OUTDIR/profile.md and OUTDIR/profile.env. Environment: RUNS (default 20), SKIP_INSTALL=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

RUNS=${RUNS:-20}
CG_PARENT=trustme-bench-prof
ID_BASE=3300000000
need_root
bench_dirs prof "${1:-}"
TMD_PID=
STRACE_PID=

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    stop_trustmed
    [ -n "$STRACE_PID" ] && wait "$STRACE_PID" 2>/dev/null
    rmdir_cgroups "$CG_PARENT"
    rmdir_cgroups trustme-bench-probe
    remove_work_dir "$W"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_bench_deps
command -v python3 >/dev/null || die "python3 is missing"
ensure_build "$W/bin"
R=$W/rootfs
"$ROOT/scripts/mkrootfs.sh" "$R" >/dev/null
# The product's real path: a signed GuestOS in the store of each trustmed (lib.sh signed_guestos).
ensure_tools "$W/bin"
signed_guestos "$W" "$R" profh
PROFH_DIR=$GUESTOS_DIR
signed_guestos "$W" "$R" prof "$W/tm1/data"
mkdir -p "$W/tm2/data"
cp "$W/tm1/data/device.json" "$W/tm2/data/"

# prof-vol, prof-novol: the product's path, the image verified once (docs/GUESTOS.md "Verified
# once"); prof-hashed: no volume either, on a GuestOS of its own whose store image is touched
# before each start, so that every start hashes it in full, as every start did before.
make_configs() {
    install_guestos "$GUESTOS_DIR"
    install_guestos "$PROFH_DIR"
    printf '{"name":"prof-hashed","guestos":{"name":"profh"},"init":"/bin/true","data_size_mb":0}\n' >"$W/hashed.json"
    tm create "$W/hashed.json" >/dev/null
    tm start --attach prof-hashed
    printf '{"name":"prof-vol","guestos":{"name":"prof"},"init":"/bin/true","data_size_mb":16,"token":"none"}\n' >"$W/vol.json"
    printf '{"name":"prof-novol","guestos":{"name":"prof"},"init":"/bin/true","data_size_mb":0}\n' >"$W/novol.json"
    tm create "$W/vol.json" >/dev/null
    tm create "$W/novol.json" >/dev/null
    tm start --attach prof-vol
    tm start --attach prof-novol
}
run_starts() { # [hashed]: also the starts that hash
    local _
    for _ in $(seq "$RUNS"); do tm start --attach prof-vol; done
    for _ in $(seq "$RUNS"); do tm start --attach prof-novol; done
    [ "${1:-}" = hashed ] || return 0
    for _ in $(seq "$RUNS"); do
        touch "$TMD_DATA/guestos/profh-1/root.img"
        tm start --attach prof-hashed
    done
}

# --- 1. phases from trustmed's own debug log ----------------------------------------------------
log "phase timestamps (debug log), $RUNS starts per config"
mkdir -p "$W/tm1/data" "$W/tm1/run"
"$TRUSTMED" --data-dir "$W/tm1/data" --run-dir "$W/tm1/run" --cgroup-parent "$CG_PARENT" \
    --id-base "$ID_BASE" --scd-binary "$TRUSTME_SCD" --tpmd-binary "$TRUSTME_TPMD" --swtpm-state-dir "$W/tm1/swtpm" \
    --log-level debug </dev/null >"$W/debug.log" 2>&1 &
TMD_PID=$!
TMD_RUN=$W/tm1/run
TMD_DATA=$W/tm1/data
for _ in $(seq 100); do [ -S "$TMD_RUN/control.sock" ] && tm list >/dev/null 2>&1 && break; sleep 0.05; done
make_configs
mark=$(wc -c <"$W/debug.log")
run_starts hashed
tail -c +"$((mark + 1))" "$W/debug.log" >"$W/debug.part"
stop_trustmed

# --- 2. the expensive syscalls, under strace --seccomp-bpf --------------------------------------
STRACE_OK=0
if command -v strace >/dev/null; then
    log "syscall durations under strace --seccomp-bpf"
    mkdir -p "$W/tm2/data" "$W/tm2/run"
    strace -f --seccomp-bpf -tt -T -o "$W/strace.out" \
        -e trace=write,fsopen,fsconfig,ioctl,clone3,execve,exit_group,fsync,fdatasync \
        "$TRUSTMED" --data-dir "$W/tm2/data" --run-dir "$W/tm2/run" --cgroup-parent "$CG_PARENT" \
        --id-base "$ID_BASE" --scd-binary "$TRUSTME_SCD" --tpmd-binary "$TRUSTME_TPMD" --swtpm-state-dir "$W/tm2/swtpm" \
        --log-level warn </dev/null >"$W/strace-daemon.log" 2>&1 &
    STRACE_PID=$!
    TMD_RUN=$W/tm2/run
    for _ in $(seq 100); do
        [ -S "$TMD_RUN/control.sock" ] && tm list >/dev/null 2>&1 && break
        sleep 0.05
    done
    # strace's child is trustmed: signal that one (ours), never strace's other relatives.
    TMD_PID=$(ps -o pid= --ppid "$STRACE_PID" | tr -d ' ' | head -n1)
    [ -n "$TMD_PID" ] || die "trustmed under strace did not start"
    make_configs
    mark=$(wc -l <"$W/strace.out")
    run_starts
    tail -n +"$((mark + 1))" "$W/strace.out" >"$W/strace.part"
    stop_trustmed
    wait "$STRACE_PID" 2>/dev/null || true
    STRACE_PID=
    STRACE_OK=1
fi

# --- 3. the cgroup migration probe --------------------------------------------------------------
log "cgroup migration probe"
python3 - "$W" "$STRACE_OK" "$RUNS" >"$OUT/profile.md" <<'EOF'
import ctypes, os, re, signal, statistics as st, struct, sys, time

w, strace_ok, runs = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
med = lambda v: st.median(v) if v else float("nan")

def ms(ts):
    h, m, s = ts.split(":")
    return (int(h) * 3600 + int(m) * 60 + float(s)) * 1000

# 1. debug log phases
phases = {}
cur = None
for line in open(f"{w}/debug.part", errors="replace"):
    m = re.match(r"(\d\d:\d\d:\d\d\.\d+) trustmed \w+: (\S+) \(", line)
    # the setup process's progress: "NAME: image PATH hashed in full..." / "... unchanged since..."
    p = re.match(r"(\d\d:\d\d:\d\d\.\d+) trustmed debug: (\S+): image ", line)
    if p and cur is not None and ("hashed in full" in line or "unchanged since it was verified" in line):
        cur["v"] = ms(p.group(1))
        continue
    if not m:
        continue
    t, name = ms(m.group(1)), m.group(2)
    if "--start--> starting" in line:
        cur = {"a": t}
    elif cur is not None and line.rstrip().endswith(": starting"):
        cur["b"] = t
    elif cur is not None and "--started--> running" in line:
        cur["c"] = t
    elif cur is not None and "stopped (init exited" in line and "c" in cur:
        cur["d"] = t
        phases.setdefault(name, []).append(cur)
        cur = None
print("Phases from trustmed's debug log (ms, 1 ms resolution; medians of %d starts each):\n" % runs)
print("| config | request → starting (policy and revocation checks, measurement and anti-rollback counter through tpmd, cgroups, device policy, fork) | starting → image verified (setup process: namespaces, data volume, the image opened and verified) | image verified → running (loop device, image, overlay and kernel file system mounts, cgroup attach, clone init, exec) | running → stopped (init runs and exits, reaped, state saved) | total in trustmed |")
print("|---|---:|---:|---:|---:|---:|")
for name, label in (("prof-vol", "16 MiB volume, image verified once"), ("prof-novol", "no volume, image verified once"),
                    ("prof-hashed", "no volume, image hashed in full (as before)")):
    L = [x for x in phases.get(name, []) if "v" in x]
    print(f"| {label} | {med([x['b'] - x['a'] for x in L]):.1f} | {med([x['v'] - x['b'] for x in L]):.1f} | "
          f"{med([x['c'] - x['v'] for x in L]):.1f} | {med([x['d'] - x['c'] for x in L]):.1f} | "
          f"{med([x['d'] - x['a'] for x in L]):.1f} |")
print()

# 2. strace: split into starts at the daemon's clone3 of the setup process
if strace_ok:
    starts, seg = [], None
    for line in open(f"{w}/strace.part"):
        if "clone3({flags=CLONE_PIDFD" in line:
            seg = []
            starts.append(seg)
        if seg is not None:
            seg.append(line)
    def dur(l):
        m = re.search(r"<(\d+\.\d+)>$", l.rstrip())
        return float(m.group(1)) * 1000 if m else 0.0
    stats = {"vol": {}, "novol": {}}
    for seg in starts:
        # only a start with a data volume mounts ext4 (the GuestOS image is squashfs or erofs, and
        # its loop device may be one attached at an earlier start, so loops cannot tell them apart)
        kind = "vol" if any('fsopen("ext4"' in l for l in seg) else "novol"
        s = stats[kind]
        add = lambda k, v: s.setdefault(k, []).append(v)
        # the setup process joining its cgroups: "0" to each v1 tasks file (or, in older
        # builds, its pid to cgroup.procs)
        pidw = [dur(l) for l in seg if re.search(r'write\(\d+, "\d+", \d+\)', l)]
        if pidw:
            add("cgroup joins of the setup process (all v1 hierarchies)", sum(pidw))
            add("  of which the first", pidw[0])
        creates = [l for l in seg if "FSCONFIG_CMD_CREATE" in l]
        # the data volume's file system (the GuestOS image on its loop device is squashfs or erofs)
        src = [i for i, l in enumerate(seg) if 'fsopen("ext4"' in l]
        ext4 = 0.0
        if src:
            nxt = [l for l in seg[src[0] + 1:] if "FSCONFIG_CMD_CREATE" in l]
            if nxt:
                ext4 = dur(nxt[0])
                add("ext4 mount of the data volume (fsconfig CMD_CREATE)", ext4)
        loops = [dur(l) for l in seg if "LOOP_CONFIGURE" in l]
        if loops:
            add("loop device attach (LOOP_CONFIGURE)", sum(loops))
        add("all other mount creations (fsconfig CMD_CREATE)", sum(dur(l) for l in creates) - ext4)
        add("fsync + fdatasync (state files, audit log)", sum(dur(l) for l in seg if "fsync(" in l or "fdatasync(" in l))
        inits = {l.split()[0] for l in seg if 'execve("' in l}
        ex = {}
        for l in seg:
            p = l.split()
            if p[0] in inits and "exit_group(" in l:
                ex[p[0]] = ms(p[1])
            elif p[0] in ex and "+++ exited" in l:
                add("init's exit (exit_group → exited: namespace and mount teardown)", ms(p[1]) - ex.pop(p[0]))
    print("Expensive kernel calls per start under `strace -f --seccomp-bpf -T` (ms, medians over %d starts each; "
          "strace inflates the absolute values somewhat):\n" % runs)
    keys = []
    for k in list(stats["vol"]) + list(stats["novol"]):
        if k not in keys:
            keys.append(k)
    print("| kernel call | 16 MiB volume | no volume |")
    print("|---|---:|---:|")
    for k in keys:
        f = lambda kind: ("%.2f" % med(stats[kind][k])) if stats[kind].get(k) else "–"
        print(f"| {k} | {f('vol')} | {f('novol')} |")
    print()

# 3. migration probe
hs = [d for d in sorted(os.listdir("/sys/fs/cgroup"))
      if os.path.exists(f"/sys/fs/cgroup/{d}/tasks")]
v2 = next((d for d in ("unified",) if os.path.exists(f"/sys/fs/cgroup/{d}/cgroup.subtree_control")), None)
probe = "trustme-bench-probe"
for h in hs + ([v2] if v2 else []):
    os.makedirs(f"/sys/fs/cgroup/{h}/{probe}", exist_ok=True)
if "cpuset" in hs:
    for f in ("cpuset.cpus", "cpuset.mems"):
        with open(f"/sys/fs/cgroup/cpuset/{probe}/{f}", "w") as fh:
            fh.write(open(f"/sys/fs/cgroup/cpuset/{f}").read())
libc = ctypes.CDLL(None, use_errno=True)
CLONE_INTO_CGROUP = 0x200000000
NR_CLONE3 = 435

def write(path, val):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, val.encode())
    finally:
        os.close(fd)

def child_work(mode):
    t = time.perf_counter()
    for h in hs:
        if mode == "procs":
            write(f"/sys/fs/cgroup/{h}/{probe}/cgroup.procs", str(os.getpid()))
        else:
            write(f"/sys/fs/cgroup/{h}/{probe}/tasks", "0")
    if v2 and mode != "tasks0+into":
        write(f"/sys/fs/cgroup/{v2}/{probe}/cgroup.procs", str(os.getpid()))
    return (time.perf_counter() - t) * 1000

def trial(mode, n=15, pause=0.05):
    res = []
    cgfd = os.open(f"/sys/fs/cgroup/{v2}/{probe}", os.O_RDONLY | os.O_DIRECTORY) if v2 else -1
    for _ in range(n):
        r, wfd = os.pipe()
        t0 = time.perf_counter()
        if mode == "tasks0+into" and v2:
            args = struct.pack("QQQQQQQQQQQ", CLONE_INTO_CGROUP, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, 0, 0, cgfd)
            buf = ctypes.create_string_buffer(args)
            pid = libc.syscall(NR_CLONE3, buf, len(args))
            if pid < 0:
                raise OSError(ctypes.get_errno(), "clone3")
        else:
            pid = os.fork()
        if pid == 0:
            spawn = (time.perf_counter() - t0) * 1000 if mode == "tasks0+into" else 0.0
            try:
                os.write(wfd, b"%f" % (spawn + child_work(mode)))
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        res.append(float(os.read(r, 64)))
        os.close(r)
        os.close(wfd)
        time.sleep(pause)
    if cgfd >= 0:
        os.close(cgfd)
    return res

rows = [("pid → `cgroup.procs` in every hierarchy (runc, LXC; trustme before it avoided the lock), 50 ms apart", trial("procs")),
        ("the same, back to back (2 ms apart, as in a benchmark loop)", trial("procs", pause=0.002)),
        ("`0` → `tasks` in every v1 hierarchy, pid → v2 `cgroup.procs`", trial("tasks0"))]
if v2:
    rows.append(("`0` → `tasks` in every v1 hierarchy, v2 by `clone3(CLONE_INTO_CGROUP)` (incl. the clone)", trial("tasks0+into")))
print("Moving a fresh single-threaded process into a new cgroup in all %d v1 hierarchies%s "
      "(ms, 15 trials each, independent of trustme). The first pid write takes cgroup_threadgroup_rwsem "
      "for writing, which waits for an RCU grace period unless another writer was there a moment before; "
      "writing 0 to a v1 `tasks` file (the calling thread only) skips that lock:\n" % (len(hs), " and v2" if v2 else ""))
print("| method | median | min | max |")
print("|---|---:|---:|---:|")
for label, v in rows:
    print(f"| {label} | {med(v):.2f} | {min(v):.2f} | {max(v):.2f} |")
for h in hs + ([v2] if v2 else []):
    os.rmdir(f"/sys/fs/cgroup/{h}/{probe}")
EOF
cat "$OUT/profile.md"
log "results in $OUT"
