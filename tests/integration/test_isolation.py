# SPDX-License-Identifier: GPL-2.0-or-later
"""Isolation as a guest meets it: every check runs inside a real container started by a real
trustmed (fixtures in conftest.py) and looks at what the kernel actually lets the guest see and
do -- namespaces, id mapping, /dev, /proc, seccomp, capabilities, cgroup limits, the freezer and
the root file system. Host-side facts (cgroup counters, /proc/<pid>/status of init) are read from
the host only to confirm what the guest observed.
"""
import json
import os
import socket
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import CGROUP_ROOT, wait_for
from tools import tool

# The system calls tm-probe's "syscalls" subcommand tries; all are on the seccomp deny list
# (src/daemon/modules/seccomp.c) and must answer EPERM.
DENIED_SYSCALLS = [
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "open_by_handle_at", "bpf", "perf_event_open", "keyctl", "add_key", "userfaultfd", "swapon",
    "reboot", "io_uring_setup", "clock_settime", "tiocsti",
]

# Capability numbers (linux/capability.h).
CAP = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_SETGID": 6,
    "CAP_SETUID": 7, "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22, "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_MKNOD": 27,
    "CAP_AUDIT_CONTROL": 30, "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34,
}
# Dropped from every container unless its config keeps them (src/daemon/modules/caps.c).
DEFAULT_DROPPED = [
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_TIME", "CAP_SYS_BOOT", "CAP_SYSLOG",
    "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_AUDIT_CONTROL", "CAP_SYS_PTRACE",
    "CAP_LINUX_IMMUTABLE",
]
# Additionally dropped when there is no user namespace (container root == host root).
DROPPED_WITHOUT_USERNS = ["CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_SYS_RESOURCE"]

PROBE = "/usr/local/bin/tm-probe"
IDS_PER_CONTAINER = 65536

# What /dev must hold, exactly (src/daemon/modules/devices.c): path -> ("c", major, minor),
# ("L", link target) or ("d",).
EXPECTED_DEV = {
    "/dev": ("d",),
    "/dev/null": ("c", 1, 3),
    "/dev/zero": ("c", 1, 5),
    "/dev/full": ("c", 1, 7),
    "/dev/random": ("c", 1, 8),
    "/dev/urandom": ("c", 1, 9),
    "/dev/tty": ("c", 5, 0),
    "/dev/ptmx": ("L", "pts/ptmx"),
    "/dev/pts": ("d",),
    "/dev/pts/ptmx": ("c", 5, 2),  # the container's own devpts instance
    "/dev/shm": ("d",),
    "/dev/mqueue": ("d",),
    "/dev/fd": ("L", "/proc/self/fd"),
    "/dev/stdin": ("L", "/proc/self/fd/0"),
    "/dev/stdout": ("L", "/proc/self/fd/1"),
    "/dev/stderr": ("L", "/proc/self/fd/2"),
}

# Lists every node below /dev as "PATH TYPE DETAILS" (majors/minors in hex, as stat prints them).
LIST_DEV = r'''find /dev | while read f; do
  if [ -L "$f" ]; then echo "$f L $(readlink "$f")";
  elif [ -c "$f" ]; then echo "$f c $(stat -c '%t %T' "$f")";
  elif [ -b "$f" ]; then echo "$f b $(stat -c '%t %T' "$f")";
  elif [ -d "$f" ]; then echo "$f d";
  else echo "$f f"; fi
done'''


# ---- helpers ----------------------------------------------------------------------------------

def context(d, *results):
    """Text for an assertion message: the CLI results involved and the daemon's log."""
    parts = []
    for r in results:
        if isinstance(r, subprocess.CompletedProcess):
            parts.append(f"$ {' '.join(map(str, r.args))}\n-> {r.returncode}\n"
                         f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        else:
            parts.append(str(r))
    return "\n".join(parts) + f"\n---- trustmed log ----\n{d.log()[-6000:]}"


def kv(text):
    """tm-probe's "key: value" lines (and /proc/*/status lines) as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def started(d, name, **config):
    d.create(name, **config)
    d.cli("start", name)
    st = d.state(name)
    assert st["state"] == "running" and st["pid"] > 0, context(d, st)
    return st


def host_status(pid):
    return kv(Path(f"/proc/{pid}/status").read_text())


def cap_bits(hexmask):
    return int(hexmask, 16)


def parse_dev_listing(out):
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        path, kind = parts[0], parts[1]
        if kind in ("c", "b"):
            found[path] = (kind, int(parts[2], 16), int(parts[3], 16))
        elif kind == "L":
            found[path] = ("L", parts[2])
        else:
            found[path] = (kind,)
    return found


def memory_oom_kills(d, uuid_):
    """The host's OOM-kill count for the container's memory cgroup (v1 or v2)."""
    v1 = CGROUP_ROOT / "memory" / d.cgroup_parent / uuid_ / "memory.oom_control"
    if v1.exists():
        return int(kv(v1.read_text().replace(" ", ":"))["oom_kill"]), v1
    for base in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        v2 = base / d.cgroup_parent / uuid_ / "memory.events"
        if v2.exists():
            return int(kv(v2.read_text().replace(" ", ":"))["oom_kill"]), v2
    raise AssertionError(f"no memory cgroup for {uuid_} under {CGROUP_ROOT}")


def pids_cgroup_file(d, uuid_, name):
    for base in (CGROUP_ROOT / "pids", CGROUP_ROOT, CGROUP_ROOT / "unified"):
        f = base / d.cgroup_parent / uuid_ / name
        if f.exists():
            return f
    raise AssertionError(f"no pids cgroup for {uuid_} under {CGROUP_ROOT}")


# ---- namespaces ---------------------------------------------------------------------------------

def test_init_is_pid1_and_ps_shows_only_the_container(daemon):
    """The container has its own pid namespace: its init is pid 1 there (and a normal pid on the
    host), and `ps` inside lists only init and the ps process itself."""
    d = daemon
    st = started(d, "pidns", args=["1000001"])
    r = d.run("pidns", "ps")
    lines = [l.split(None, 3) for l in r.stdout.splitlines()[1:] if l.strip()]
    procs = {int(p[0]): p[2] for p in lines}
    assert procs.get(1) == "/bin/sleep", context(d, r)
    assert set(procs.values()) <= {"/bin/sleep", "ps"} and len(procs) == 2, context(d, r)
    r2 = d.sh("pidns", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '")
    own, init_cmd = r2.stdout.splitlines()
    assert int(own) != 1 and init_cmd.strip() == "/bin/sleep 1000001", context(d, r2)
    # The host sees the same process as an ordinary pid whose innermost pid is 1.
    nspid = host_status(st["pid"])["NSpid"].split()
    assert st["pid"] != 1 and nspid[-1] == "1" and len(nspid) >= 2, context(d, st, nspid)


def test_namespaces_differ_from_the_host(daemon):
    """Every namespace of an exec session (pid, net, uts, ipc, mnt, user, cgroup) is the
    container's own, not the host's (compared by namespace inode)."""
    d = daemon
    st = started(d, "ns")
    kinds = ["pid", "net", "uts", "ipc", "mnt", "user", "cgroup"]
    r = d.sh("ns", " ; ".join(f"readlink /proc/self/ns/{k}" for k in kinds))
    inside = r.stdout.split()
    assert len(inside) == len(kinds), context(d, r)
    for kind, ns in zip(kinds, inside):
        assert ns != os.readlink(f"/proc/self/ns/{kind}"), context(d, f"{kind} is the host's", r)
        # ... and the same as init's: the session joined the container, it did not make its own.
        assert ns == os.readlink(f"/proc/{st['pid']}/ns/{kind}"), context(d, f"{kind} differs from init", r)


def namespace_holders(ns_link):
    """Pids of the host's processes in the namespace ns_link ("user:[...]", "net:[...]")."""
    kind = ns_link.split(":")[0]
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.readlink(p / "ns" / kind) == ns_link:
                    found.append(int(p.name))
            except OSError:
                pass  # ended meanwhile, or a kernel thread
    return found


def test_each_start_gets_fresh_user_and_network_namespaces(daemon):
    """A restarted container gets a new user namespace with its own private mapping and a new
    network namespace holding nothing of its last run (an address its root added to lo is gone);
    no process but init is in them (the helper that made them is gone). Namespace inode numbers
    are reused once a namespace is freed, so they cannot tell old from new: the content does."""
    d = daemon
    st1 = started(d, "fresh", data_size_mb=0)
    user1 = os.readlink(f"/proc/{st1['pid']}/ns/user")
    net1 = os.readlink(f"/proc/{st1['pid']}/ns/net")
    assert namespace_holders(user1) == [st1["pid"]] and namespace_holders(net1) == [st1["pid"]], context(d, st1)
    d.sh("fresh", "ip addr add 10.213.7.7/32 dev lo")
    assert "10.213.7.7" in d.sh("fresh", "ip -o addr show dev lo").stdout
    d.cli("stop", "--kill", "fresh")
    d.cli("start", "fresh")
    st2 = d.state("fresh")
    assert st2["state"] == "running", context(d, st2)
    user2 = os.readlink(f"/proc/{st2['pid']}/ns/user")
    net2 = os.readlink(f"/proc/{st2['pid']}/ns/net")
    assert namespace_holders(user2) == [st2["pid"]] and namespace_holders(net2) == [st2["pid"]], context(d, st2)
    r = d.sh("fresh", "ip -o addr show; echo ---; cat /proc/self/uid_map /proc/self/gid_map")
    addrs, maps = r.stdout.split("---\n")
    assert "10.213.7.7" not in addrs and "127.0.0.1" in addrs, context(d, r)
    base = str(st2["uid_base"])
    assert [l.split() for l in maps.splitlines()] == [["0", base, str(IDS_PER_CONTAINER)]] * 2, context(d, r)


def test_hostname_from_config_and_default_is_name(daemon):
    """The UTS namespace carries the configured hostname, or the container name by default, and
    the host's hostname is untouched."""
    d = daemon
    host_before = socket.gethostname()
    started(d, "named", hostname="web-1")
    started(d, "plain")
    r1 = d.sh("named", "hostname; cat /proc/sys/kernel/hostname; uname -n")
    assert r1.stdout.split() == ["web-1"] * 3, context(d, r1)
    r2 = d.run("plain", "hostname")
    assert r2.stdout.strip() == "plain", context(d, r2)
    assert socket.gethostname() == host_before


def test_network_namespace_has_only_lo_and_it_is_up(daemon):
    """The network namespace holds exactly the loopback device, which is up and has 127.0.0.1."""
    d = daemon
    started(d, "net")
    r = d.sh("net", "cat /proc/net/dev; echo ---; ls /sys/class/net; echo ---; "
                    "cat /sys/class/net/lo/flags; echo ---; ip -o addr show dev lo")
    netdev, sysnet, flags, addrs = r.stdout.split("---\n")
    ifaces = [l.split(":")[0].strip() for l in netdev.splitlines()[2:] if ":" in l]
    assert ifaces == ["lo"], context(d, r)
    assert sysnet.split() == ["lo"], context(d, r)
    assert int(flags.strip(), 16) & 0x1, context(d, "lo is not IFF_UP", r)  # IFF_UP
    assert "127.0.0.1" in addrs, context(d, r)


def test_container_root_is_an_unprivileged_host_uid(daemon):
    """uid/gid 0 inside are mapped to the container's private range: the maps inside read
    "0 <uid_base> 65536" and the host sees init running as uid/gid uid_base, not 0."""
    d = daemon
    st = started(d, "uid")
    base = st["uid_base"]
    assert st["user_namespace"] is True and base >= IDS_PER_CONTAINER, context(d, st)
    r = d.sh("uid", "cat /proc/self/uid_map; cat /proc/self/gid_map; id -u")
    uid_map, gid_map, uid = r.stdout.splitlines()
    assert uid_map.split() == ["0", str(base), str(IDS_PER_CONTAINER)], context(d, r)
    assert gid_map.split() == ["0", str(base), str(IDS_PER_CONTAINER)], context(d, r)
    assert uid.strip() == "0", context(d, r)
    status = host_status(st["pid"])
    assert status["Uid"].split() == [str(base)] * 4, context(d, status)
    assert status["Gid"].split() == [str(base)] * 4, context(d, status)


# ---- /dev ---------------------------------------------------------------------------------------

def test_dev_holds_exactly_the_allowed_nodes(daemon):
    """/dev is a fresh tmpfs with exactly the built-in allowlist: the six character devices, the
    ptmx link into the container's own devpts, pts/ shm/ mqueue/ and the fd links; nothing else
    (no block devices, no console, no host nodes)."""
    d = daemon
    started(d, "dev")
    r = d.sh("dev", LIST_DEV)
    found = parse_dev_listing(r.stdout)
    missing = {p: v for p, v in EXPECTED_DEV.items() if found.get(p) != v}
    extra = {p: v for p, v in found.items() if p not in EXPECTED_DEV}
    assert not missing and not extra, context(d, f"wrong: {missing}\nextra: {extra}", r)


def test_config_device_is_added_and_openable(daemon):
    """A config "devices" entry adds that node to /dev (and to the device cgroup): /dev/fuse
    (c 10:229) exists with the right numbers and can be opened read-write."""
    d = daemon
    started(d, "fuse", devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}])
    r = d.sh("fuse", LIST_DEV)
    found = parse_dev_listing(r.stdout)
    assert found.get("/dev/fuse") == ("c", 10, 229), context(d, r)
    extra = set(found) - set(EXPECTED_DEV) - {"/dev/fuse"}
    assert not extra, context(d, f"extra: {extra}", r)
    r = d.run("fuse", PROBE, "open", "/dev/fuse")
    assert kv(r.stdout).get("open") == "ok", context(d, r)


def test_mknod_of_block_device_fails(daemon):
    """Root in a user-namespaced container cannot create device nodes: mknod of a block device
    (loop0, b 7:0) and of a character device (c 1:1, /dev/mem) both fail."""
    d = daemon
    started(d, "mk")
    r = d.sh("mk", f"{PROBE} mknod /tmp/blk b 7 0; {PROBE} mknod /dev/mem c 1 1; "
                   "ls /tmp/blk /dev/mem 2>&1", check=False)
    results = [l for l in r.stdout.splitlines() if l.startswith("mknod:")]
    assert len(results) == 2 and all(l != "mknod: ok" for l in results), context(d, r)
    assert "No such file" in r.stdout, context(d, r)


def test_privileged_container_device_cgroup_and_proc_sys(daemon):
    """With "user_namespace": false the container's root is the host's root, so the device
    cgroup and the read-only /proc/sys are what stand between it and the host: mknod of block and
    character devices fails, a /dev/mem node planted from the host cannot be opened (EPERM from
    the device cgroup), /proc/sys/kernel/hostname is read-only (EROFS), the extra privileged caps
    are gone and no_new_privs is set."""
    d = daemon
    st = started(d, "priv", user_namespace=False)
    assert st["uid_base"] == 0 and st["user_namespace"] is False, context(d, st)
    r = d.sh("priv", "cat /proc/self/uid_map")
    assert r.stdout.split()[:2] == ["0", "0"], context(d, r)

    r = d.sh("priv", f"{PROBE} mknod /tmp/blk b 7 0; {PROBE} mknod /tmp/mem c 1 1")
    assert r.stdout.splitlines() and all(l != "mknod: ok" for l in r.stdout.splitlines()), context(d, r)

    # A node that got into the container some other way (here: made by the host through the
    # container's root) must still be refused by the device cgroup.
    planted = Path(f"/proc/{st['pid']}/root/dev/tm-mem")
    os.mknod(planted, stat.S_IFCHR | 0o666, os.makedev(1, 1))
    r = d.sh("priv", f"ls -l /dev/tm-mem; {PROBE} open /dev/tm-mem; {PROBE} open /dev/null")
    opens = [l for l in r.stdout.splitlines() if l.startswith("open:")]
    assert opens == ["open: EPERM", "open: ok"], context(d, r)

    old = socket.gethostname()
    r = d.run("priv", PROBE, "write", "/proc/sys/kernel/hostname", "pwned")
    assert kv(r.stdout).get("write") == "EROFS", context(d, r)
    assert socket.gethostname() == old

    r = d.run("priv", "cat", "/proc/self/status")
    status = kv(r.stdout)
    bnd = cap_bits(status["CapBnd"])
    for name in DEFAULT_DROPPED + DROPPED_WITHOUT_USERNS:
        assert not bnd & (1 << CAP[name]), context(d, f"{name} in CapBnd", r)
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", context(d, r)


# Without a user namespace every one of these would be the host's: refused unless
# device.json allows privileged containers.
PRIVILEGED_CAPS = ["CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE",
                   "CAP_DAC_READ_SEARCH", "CAP_SYS_BOOT", "CAP_SYS_TIME", "CAP_SYSLOG", "CAP_BPF",
                   "CAP_SYS_RESOURCE", "CAP_MAC_ADMIN", "CAP_AUDIT_CONTROL", "CAP_PERFMON"]


@pytest.mark.parametrize("cap", PRIVILEGED_CAPS)
def test_dangerous_caps_without_userns_are_refused(daemon, cap):
    d = daemon
    cfg = {"name": "p", "rootfs": {"path": str(d.rootfs)}, "init": "/bin/true",
           "user_namespace": False, "capabilities": [cap]}
    (d.configs / "p.json").write_text(json.dumps(cfg))
    r = d.cli("create", d.configs / "p.json", check=False)
    assert r.returncode != 0, context(d, r)
    assert f"$.capabilities: {cap} without a user namespace" in r.stderr, context(d, r)
    assert "policy.allow_privileged" in r.stderr and d.containers() == []
    assert d.audit_events()[-1]["event"] == "config.reject"


def test_what_is_not_privileged(daemon):
    """A kept capability in a user namespace is checked by the kernel against the host's
    namespace; no user namespace without keeps, or keeping only what a container's root has by
    default in its own namespaces (NET_ADMIN, MKNOD: device cgroup), is not privileged either."""
    d = daemon
    for name, cfg in [("u", dict(capabilities=["CAP_SYS_PTRACE", "CAP_SYS_TIME"])),
                      ("n", dict(user_namespace=False)),
                      ("m", dict(user_namespace=False, capabilities=["CAP_NET_ADMIN", "CAP_MKNOD"]))]:
        d.create(name, **cfg)
        st = d.state(name)
        assert st["privileged"] is False and st["privileged_caps"] == "", context(d, st)
    assert "PRIVILEGED" not in d.cli("list").stdout


def test_privileged_container_needs_the_policy_and_shows(make_daemon):
    d = make_daemon(start=False)
    d.data_dir.mkdir(parents=True, exist_ok=True)
    device = d.data_dir / "device.json"
    device.write_text(json.dumps({"policy": {"allow_unsigned": True, "allow_privileged": True}}))
    d.start()
    d.create("p", user_namespace=False, capabilities=["CAP_SYS_PTRACE", "CAP_SYS_ADMIN"])
    st = d.state("p")
    assert st["privileged"] is True and st["privileged_caps"] == "CAP_SYS_PTRACE,CAP_SYS_ADMIN"
    assert "privileged:      YES: keeps CAP_SYS_PTRACE,CAP_SYS_ADMIN" in d.cli("state", "p").stdout
    assert "PRIVILEGED (host root with dangerous capabilities): p" in d.cli("list").stdout
    ev = [e for e in d.audit_events() if e["event"] == "container.privileged"]
    assert len(ev) == 1 and "CAP_SYS_PTRACE,CAP_SYS_ADMIN" in ev[0]["detail"], ev
    d.cli("start", "p")
    ev = [e for e in d.audit_events() if e["event"] == "container.privileged"]
    assert len(ev) == 2 and "running as host root" in ev[1]["detail"], ev
    d.cli("stop", "--timeout", "0", "p")
    # The policy is read again at every start: taken back, the container no longer starts.
    d.stop()
    device.write_text(json.dumps({"policy": {"allow_unsigned": True}}))
    d.start()
    r = d.cli("start", "p", check=False)
    assert r.returncode != 0 and "policy.allow_privileged" in r.stderr, context(d, r)
    assert d.state("p")["state"] == "stopped"


# ---- /proc ------------------------------------------------------------------------------------

def test_proc_sys_and_sysrq_are_not_writable(daemon):
    """/proc/sys cannot be written (kernel.hostname, and net.ipv4.ip_forward, which the
    container's root would own through its network namespace were /proc/sys not read-only);
    /proc/sysrq-trigger, where the kernel has it, cannot be written either."""
    d = daemon
    started(d, "procsys")
    before = d.run("procsys", "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip()
    target = "0" if before == "1" else "1"
    r = d.sh("procsys", f"{PROBE} write /proc/sys/kernel/hostname x; "
                        f"{PROBE} write /proc/sys/net/ipv4/ip_forward {target}; "
                        f"{PROBE} write /proc/sysrq-trigger h")
    results = [l for l in r.stdout.splitlines() if l.startswith("write:")]
    assert len(results) == 3, context(d, r)
    assert all(l != "write: ok" for l in results), context(d, r)
    after = d.sh("procsys", "cat /proc/sys/net/ipv4/ip_forward; hostname").stdout.split()
    assert after == [before, "procsys"], context(d, r, after)


def test_sensitive_proc_files_are_masked(daemon):
    """Kernel memory, key, timer and symbol files in /proc are empty or absent, and the
    /proc/acpi and /sys/firmware directories are empty."""
    d = daemon
    started(d, "mask")
    files = ["kcore", "keys", "timer_list", "sched_debug", "latency_stats", "kallsyms",
             "kpagecount", "kpageflags", "kpagecgroup"]
    script = "".join(f'f=/proc/{f}; if [ -e $f ]; then echo "$f $(head -c 4096 $f 2>/dev/null | wc -c)"; '
                     f'else echo "$f absent"; fi; ' for f in files)
    script += "echo dirs $(ls -A /proc/acpi /sys/firmware 2>/dev/null | grep -v ':$' | grep -c .)"
    r = d.sh("mask", script)
    seen = dict(l.split(None, 1) for l in r.stdout.splitlines())
    for f in files:
        assert seen.get(f"/proc/{f}") in ("absent", "0"), context(d, f"/proc/{f} readable", r)
    assert seen.get("dirs") == "0", context(d, r)


MASKS = ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs", "/proc/kcore",
         "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats",
         "/proc/kallsyms", "/proc/kpagecount", "/proc/kpageflags", "/proc/kpagecgroup",
         "/proc/acpi", "/proc/scsi", "/sys/firmware"]

# The container's root tries every way to get rid of each mask (docs/SECURITY.md):
# unmount it, lazily, move it away, make it writable, bind /proc without its masks elsewhere,
# mount a fresh proc or sysfs. It may mount on top of a mask (that hides more, reveals nothing).
# Then it reports what it sees: each mask's mount, and the masked contents.
UNMASK = r"""
mkdir -p /tmp/m /tmp/p /tmp/s /tmp/b
n=0
for m in MASKS; do
  [ -e $m ] || continue
  umount $m 2>/dev/null && echo "umount-ok $m"
  umount -l $m 2>/dev/null && echo "umount-l-ok $m"
  mount --move $m /tmp/m 2>/dev/null && echo "move-ok $m"
  mount -o remount,bind,rw $m 2>/dev/null && echo "remount-rw-ok $m"
  mount -t tmpfs x $m 2>/dev/null && umount $m 2>/dev/null && umount $m 2>/dev/null && echo "over-then-twice-ok $m"
done
mount --bind /proc /tmp/b 2>/dev/null && echo "bind-proc-ok"
mount --bind /sys /tmp/b 2>/dev/null && echo "bind-sys-ok"
mount -t proc proc /tmp/p 2>/dev/null && echo "new-proc-ok"
mount -t sysfs sysfs /tmp/s 2>/dev/null && echo "new-sysfs-ok"
for m in MASKS; do
  [ -e $m ] || continue
  awk -v m=$m '$5 == m {f=1} END {print (f ? "mounted" : "GONE"), m}' /proc/self/mountinfo
done
for d in /proc /tmp/b /tmp/p; do
  [ -e $d/kallsyms ] && echo "kallsyms $d $(head -c 4096 $d/kallsyms | wc -c)"
  [ -e $d/keys ] && echo "keys $d $(head -c 4096 $d/keys | wc -c)"
  [ -d $d/acpi ] && echo "acpi $d $(ls -A $d/acpi | wc -l)"
done
for d in /sys /tmp/b /tmp/s; do
  [ -d $d/firmware ] && echo "firmware $d $(ls -A $d/firmware | wc -l)"
done
echo x > /proc/sys/kernel/hostname 2>/dev/null && echo "proc-sys-write-ok"
echo done
""".replace("MASKS", " ".join(MASKS))


def check_masks_held(d, out):
    lines = out.splitlines()
    assert lines and lines[-1] == "done", context(d, out)
    bad = [l for l in lines if "-ok" in l or l.startswith("GONE")]
    assert not bad, context(d, f"masks removed: {bad}", out)
    for l in lines:
        if l.split()[0] in ("kallsyms", "keys", "acpi", "firmware"):
            assert l.split()[-1] == "0", context(d, f"unmasked: {l}", out)
    assert "mounted /proc/sys" in lines and "mounted /sys/firmware" in lines, context(d, out)


def test_masks_survive_the_container_root_from_init(daemon):
    """init (root of a default container, with CAP_SYS_ADMIN in its user namespace) cannot
    unmount, move, remount writable or bypass any /proc or /sys mask: the kernel locked them."""
    d = daemon
    d.create("unmask-init", init="/bin/sh", args=["-c", UNMASK])
    r = d.cli("start", "--attach", "unmask-init", check=False)
    check_masks_held(d, r.stdout)


def test_masks_survive_the_container_root_from_exec(daemon):
    """The same from an exec session (trustme run), which joins init's mount namespace."""
    d = daemon
    started(d, "unmask-exec")
    r = d.sh("unmask-exec", UNMASK, check=False)
    check_masks_held(d, r.stdout)
    # and what one session tried did not change what the next one sees
    check_masks_held(d, d.sh("unmask-exec", UNMASK, check=False).stdout)


# ---- seccomp and capabilities -----------------------------------------------------------------

def check_syscalls(d, result):
    got = kv(result.stdout)
    wrong = {s: got.get(s) for s in DENIED_SYSCALLS if got.get(s) != "EPERM"}
    assert not wrong, context(d, f"not EPERM: {wrong}", result)


def test_seccomp_denies_dangerous_syscalls_in_init(daemon):
    """The seccomp filter is on init itself: with tm-probe as init (start --attach), module
    loading, kexec, open_by_handle_at, bpf, keyctl, userfaultfd, perf, swapon, reboot, io_uring,
    clock_settime and TIOCSTI all get EPERM."""
    d = daemon
    d.create("sc-init", init=PROBE, args=["syscalls"])
    r = d.cli("start", "--attach", "sc-init", check=False)
    assert r.returncode == 0, context(d, r)
    check_syscalls(d, r)


def test_seccomp_and_caps_in_exec_session(daemon):
    """An exec session (trustme run) gets the same filter (the denied calls get EPERM, Seccomp: 2)
    and the same bounding set as init: the default-dropped capabilities are missing and ordinary
    root capabilities are present. In a user namespace root keeps CAP_SYS_ADMIN (of that
    namespace), so no_new_privs is not needed and stays 0 (src/daemon/modules/seccomp.c)."""
    d = daemon
    st = started(d, "sc-exec")
    check_syscalls(d, d.run("sc-exec", PROBE, "syscalls"))
    r = d.run("sc-exec", "cat", "/proc/self/status")
    status = kv(r.stdout)
    assert status["Seccomp"] == "2", context(d, r)
    assert status["NoNewPrivs"] == "0", context(d, r)
    bnd = cap_bits(status["CapBnd"])
    for name in DEFAULT_DROPPED:
        assert not bnd & (1 << CAP[name]), context(d, f"{name} in CapBnd", r)
    for name in ["CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"]:
        assert bnd & (1 << CAP[name]), context(d, f"{name} missing from CapBnd", r)
    assert status["CapAmb"] == "0000000000000000", context(d, r)
    init = host_status(st["pid"])
    assert init["CapBnd"] == status["CapBnd"] and init["Seccomp"] == "2", context(d, init, r)


def test_config_capability_is_kept_but_seccomp_still_applies(daemon):
    """"capabilities": ["CAP_SYS_TIME"] keeps exactly that one in the bounding set (the other
    default drops stay dropped), yet clock_settime is still refused by seccomp."""
    d = daemon
    st = started(d, "keep", capabilities=["CAP_SYS_TIME"])
    r = d.run("keep", "cat", "/proc/self/status")
    bnd = cap_bits(kv(r.stdout)["CapBnd"])
    assert bnd & (1 << CAP["CAP_SYS_TIME"]), context(d, r)
    for name in DEFAULT_DROPPED:
        if name != "CAP_SYS_TIME":
            assert not bnd & (1 << CAP[name]), context(d, f"{name} in CapBnd", r)
    assert cap_bits(host_status(st["pid"])["CapBnd"]) == bnd, context(d, r)
    r = d.run("keep", PROBE, "syscalls")
    assert kv(r.stdout).get("clock_settime") == "EPERM", context(d, r)


# ---- cgroup limits ----------------------------------------------------------------------------

def test_memory_limit_oom_kills_inside_only(daemon):
    """memory_limit_mb 32: allocating 200 MiB in an exec session is OOM-killed (exit 137) after
    reaching at most the limit; init keeps running with the same pid, the daemon keeps serving,
    and the host's memory cgroup of the container counts the OOM kill."""
    d = daemon
    st = started(d, "oom", memory_limit_mb=32)
    kills_before, where = memory_oom_kills(d, st["uuid"])
    r = d.run("oom", PROBE, "alloc", "200", check=False, timeout=60)
    assert r.returncode == 137, context(d, r)
    assert "alloc: done" not in r.stdout, context(d, r)
    reached = [int(l.split()[1]) for l in r.stdout.splitlines() if l.startswith("allocated:")]
    assert reached and max(reached) <= 32, context(d, r)
    kills_after, _ = memory_oom_kills(d, st["uuid"])
    assert kills_after > kills_before, context(d, f"{where}: oom_kill {kills_before} -> {kills_after}")
    after = d.state("oom")
    assert after["state"] == "running" and after["pid"] == st["pid"], context(d, after)
    assert host_status(st["pid"])["Name"] == "sleep"
    assert d.run("oom", "echo", "alive").stdout.strip() == "alive", context(d)


def test_pids_limit_stops_fork_bomb(daemon):
    """pids_limit 20: a fork bomb gets fewer than 20 children before fork fails; afterwards the
    container's init, new exec sessions, the daemon and the host's own forks all still work."""
    d = daemon
    st = started(d, "bomb", pids_limit=20)
    assert pids_cgroup_file(d, st["uuid"], "pids.max").read_text().strip() == "20"
    r = d.run("bomb", PROBE, "forkbomb", "1000", check=False)
    out = kv(r.stdout)
    assert r.returncode == 0 and "forked" in out, context(d, r)
    assert int(out["forked"]) < 20, context(d, r)
    assert out["fork_error"] not in ("none", ""), context(d, r)
    after = d.state("bomb")
    assert after["state"] == "running" and after["pid"] == st["pid"], context(d, after)
    wait_for(lambda: int(pids_cgroup_file(d, st["uuid"], "pids.current").read_text()) <= 2,
             what="the fork bomb's children to be gone")
    assert d.run("bomb", "echo", "alive").stdout.strip() == "alive", context(d)
    assert subprocess.run([tool("true")]).returncode == 0  # the host can still fork


def read_counter(d, name):
    def once():
        r = d.run(name, "cat", "/tmp/c", check=False)
        return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None
    return int(wait_for(once, timeout=5, what="the counter file"))


def test_freeze_stops_progress_and_unfreeze_resumes(daemon):
    """freeze stops every process of the container: a counter ticking every 10 ms (init =
    tm-probe counter) barely advances over a frozen half second compared with an unfrozen one
    and does not move at all while frozen; state is "frozen" and `trustme run` is refused with a
    message saying so; after unfreeze it ticks again."""
    d = daemon
    st = started(d, "frz", init=PROBE, args=["counter", "/tmp/c"])
    host_view = Path(f"/proc/{st['pid']}/root/tmp/c")
    read_counter(d, "frz")

    a = read_counter(d, "frz")
    time.sleep(0.5)
    unfrozen = read_counter(d, "frz") - a

    c = read_counter(d, "frz")
    d.cli("freeze", "frz")
    t0 = time.time()
    assert d.state("frz")["state"] == "frozen", context(d, d.state("frz"))
    v1 = host_view.read_text()
    r = d.run("frz", "cat", "/tmp/c", check=False)
    assert r.returncode != 0 and "frozen" in r.stderr, context(d, r)
    time.sleep(max(0.0, 0.5 - (time.time() - t0)))
    v2 = host_view.read_text()
    d.cli("unfreeze", "frz")
    frozen = read_counter(d, "frz") - c

    assert v1 == v2, context(d, f"counter moved while frozen: {v1!r} -> {v2!r}")
    assert unfrozen >= 15, context(d, f"counter too slow unfrozen: {unfrozen}")
    assert frozen <= unfrozen / 3, context(d, f"frozen period +{frozen}, unfrozen +{unfrozen}")
    assert d.state("frz")["state"] == "running"
    e = read_counter(d, "frz")
    wait_for(lambda: read_counter(d, "frz") > e + 5, timeout=5, what="the counter to tick again")


# ---- file descriptors, files, processes -------------------------------------------------------

def test_init_and_exec_start_with_only_stdio(daemon):
    """No daemon file descriptor leaks into the container: init (tm-probe fds, start --attach)
    and an exec session both see exactly fds 0, 1, 2."""
    d = daemon
    d.create("fds", init=PROBE, args=["fds"])
    r = d.cli("start", "--attach", "fds", check=False)
    assert r.returncode == 0 and r.stdout.strip() == "fds: 0 1 2", context(d, r)
    d.create("fds2")
    d.cli("start", "fds2")
    r = d.run("fds2", PROBE, "fds")
    assert r.stdout.strip() == "fds: 0 1 2", context(d, r)


def test_host_files_and_processes_are_invisible(daemon, rootfs):
    """A marker file on the host (in /tmp and /root) cannot be found anywhere inside by
    `find /`, while a file made inside can (the search works); the container's writes do not
    reach the host's rootfs directory; and no host process (trustmed, pytest) shows in /proc."""
    d = daemon
    started(d, "files")
    marker = f"tm-host-marker-{uuid.uuid4().hex}"
    planted = [Path("/tmp") / marker, Path("/root") / marker]
    try:
        for p in planted:
            p.write_text("host secret\n")
        r = d.sh("files", f"touch /root/{marker}-inside; find / -name '{marker}*' 2>/dev/null",
                 check=False)
        assert r.stdout.split() == [f"/root/{marker}-inside"], context(d, r)
    finally:
        for p in planted:
            p.unlink(missing_ok=True)
    assert not (rootfs / "root" / f"{marker}-inside").exists()
    assert not list(rootfs.rglob(f"{marker}*"))

    r = d.sh("files", r"""for p in /proc/[0-9]*; do """
                      r"""echo "${p#/proc/}|$(tr '\0' ' ' < $p/cmdline 2>/dev/null)"; done""")
    procs = dict(l.split("|", 1) for l in r.stdout.splitlines() if "|" in l)
    assert "1" in procs and procs["1"].startswith("/bin/sleep"), context(d, r)
    assert len(procs) <= 3, context(d, r)
    assert not any("trustmed" in c or "pytest" in c for c in procs.values()), context(d, r)


def test_two_containers_are_isolated_from_each_other(daemon):
    """Two running containers: each sees only its own processes and hostname, a file written in
    one is not in the other, and their host id ranges do not overlap (nor include host root)."""
    d = daemon
    a = started(d, "alpha", args=["1000001"])
    b = started(d, "beta", args=["1000002"])
    d.sh("alpha", "echo a > /tmp/only-in-alpha; echo a > /root/only-in-alpha")
    ra = d.sh("alpha", "hostname; ps; find / -name 'only-in-*' 2>/dev/null", check=False)
    rb = d.sh("beta", "hostname; ps; find / -name 'only-in-*' 2>/dev/null", check=False)
    assert ra.stdout.splitlines()[0] == "alpha" and rb.stdout.splitlines()[0] == "beta", context(d, ra, rb)
    assert "1000001" in ra.stdout and "1000002" not in ra.stdout, context(d, ra)
    assert "1000002" in rb.stdout and "1000001" not in rb.stdout, context(d, rb)
    assert "only-in-alpha" in ra.stdout, context(d, ra)
    assert "only-in-alpha" not in rb.stdout, context(d, rb)
    ba, bb = a["uid_base"], b["uid_base"]
    assert ba > 0 and bb > 0, context(d, a, b)
    assert ba + IDS_PER_CONTAINER <= bb or bb + IDS_PER_CONTAINER <= ba, context(d, a, b)
    ma = d.run("alpha", "cat", "/proc/self/uid_map").stdout.split()
    mb = d.run("beta", "cat", "/proc/self/uid_map").stdout.split()
    assert ma == ["0", str(ba), str(IDS_PER_CONTAINER)] and mb == ["0", str(bb), str(IDS_PER_CONTAINER)]
    assert os.readlink(f"/proc/{a['pid']}/ns/pid") != os.readlink(f"/proc/{b['pid']}/ns/pid")


# ---- image root file systems ------------------------------------------------------------------

@pytest.mark.parametrize("image", ["squashfs_image", "erofs_image"])
def test_image_rootfs(daemon, request, image):
    """A squashfs or erofs image works as the root file system: the container starts from it,
    runs the guest's binaries, and can write (into its overlay) although the image is read-only."""
    d = daemon
    path = request.getfixturevalue(image)
    name = image.split("_")[0]
    d.create(name, rootfs={"path": str(path)})
    r = d.cli("start", name, check=False)
    assert r.returncode == 0, context(d, r)
    r = d.sh(name, f"cat /etc/hostname; {PROBE} fds; echo w > /etc/written; cat /etc/written")
    assert r.stdout.split("\n")[:3] == ["trustme-guest", "fds: 0 1 2", "w"], context(d, r)
