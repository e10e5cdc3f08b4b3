# SPDX-License-Identifier: GPL-2.0-or-later
"""Fixtures for trustme's integration tests: real trustmed daemons in private directories.

Every test that uses `daemon` gets its own trustmed with its own data dir, run dir, cgroup parent
and id range, and its teardown removes everything the daemon made (processes, cgroups, loop
devices, mounts, files) even when the test failed. Run as root: /usr/bin/python3 -m pytest.
"""
import fcntl
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tools import tool

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("TRUSTME_BUILD", REPO / "build"))
TRUSTMED = BUILD / "src/daemon/trustmed"
TRUSTME = BUILD / "src/cli/trustme"
PROBE = BUILD / "tests/probe/tm-probe"
CGROUP_ROOT = Path("/sys/fs/cgroup")


# ---- what this run makes, and only this run -------------------------------------------------
# Other test runs (another worktree, another CI job) may run on the same machine at the same time:
# everything this run makes is named with RUN_ID, and the leak checks look only for that, never for
# a generic "trustme-test" or "tm..." name that would see the other run's live objects.

def _run_id():
    """This pytest process's pid in base 36, always 5 digits (pids are < 36**5): unique among the
    runs alive at once, and no run's id is a prefix of another's."""
    n, digits = os.getpid(), ""
    for _ in range(5):
        n, r = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
    return digits


RUN_ID = _run_id()
# Directories, cgroups, tmpfs sources, daemons' command lines: "trustme-test-" + RUN_ID.
TEST_PREFIX = f"trustme-test-{RUN_ID}"
# Network interfaces (15 characters at most): "tt" + RUN_ID + at most 8 more (bridges, test
# "physical" interfaces, the outside veth of test_network_nft.py).
NET_PREFIX = f"tt{RUN_ID}"


def _claim_net_slot():
    """Subnets are the machine's, not the run's: two runs using the same subnet on two bridges
    would route each other's packets. Each run holds a slot (an flock, released when the process
    ends however it ends) and derives its subnets from it (net_subnet)."""
    for slot in range(8):
        f = open(f"/run/lock/trustme-test-net-{slot}.lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return slot, f
        except BlockingIOError:
            f.close()
    raise RuntimeError("8 test runs already hold all network slots on this machine")


NET_SLOT, _net_slot_lock = _claim_net_slot()


def net_subnet(use, k):
    """A /24 of this run: 10.<160 + 8*use + slot>.<k>.0/24 (as "10.x.k"), use 0..4 for a test file's
    own range (test_network.py 0, test_network_nft.py 1, its outside 2). 10.160-10.199 is used by
    nothing else: the demo and docs/NETWORK.md use 10.223 and 10.224, older test runs 10.200-10.252."""
    return f"10.{160 + 8 * use + NET_SLOT}.{k}"

_daemon_ids = itertools.count(1)


def pytest_configure(config):
    if os.geteuid() != 0:
        raise pytest.UsageError("the integration tests need root (they create namespaces and cgroups)")
    for binary in (TRUSTMED, TRUSTME, PROBE):
        if not binary.exists():
            raise pytest.UsageError(f"{binary} is missing: build first (meson setup build && ninja -C build)")


# ---- host state, for cleanup and leak checks ------------------------------------------------

def cgroup_dirs(name_part):
    """Every cgroup directory (any hierarchy) whose name contains name_part."""
    found = []
    # os.walk ignores directories that vanish while it looks (the daemon may be removing them)
    for top, dirs, _ in os.walk(CGROUP_ROOT):
        found += [Path(top) / d for d in dirs if name_part in d]
    return found


def process_gone(pid):
    """True if pid no longer runs. A zombie counts as gone: an adopted init is reparented to the
    host's PID 1, which reaps when it likes."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def processes_naming(path, also=b""):
    """Pids of processes whose command line names something below path (swtpm, tpmd) and holds
    also. One read of each command line: a process may exit between a listing and a second read."""
    found = []
    needle = str(path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if needle in cmdline and also in cmdline and not process_gone(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def mounts_below(prefix):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(prefix))]


def loops_backed_by(prefix):
    out = subprocess.run([tool("losetup"), "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                         capture_output=True, text=True).stdout
    result = []
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1].startswith(str(prefix)):
            result.append(parts[0])
    return result


# Every network.bridge a test daemon's device.json named: their trustme nftables tables are
# removed at teardown, and test_zz_leaks checks that none is left.
TEST_BRIDGES = set()
# The host ends of the veths of every container a test daemon ever had (tm + 10 hex digits of the
# UUID), collected at teardown: test_zz_leaks checks that none is left.
TEST_VETHS = set()


def nft_tables(bridge):
    """trustme's nftables tables of a bridge that exist, as "family name" (docs/NETWORK.md)."""
    out = subprocess.run([tool("nft"), "list", "tables"], capture_output=True, text=True).stdout
    return sorted(" ".join(l.split()[1:3]) for l in out.splitlines()
                  if len(l.split()) == 3 and l.split()[2] == f"trustme-{bridge}")


def remove_nft_tables(bridge):
    for family in ("inet", "bridge"):
        subprocess.run([tool("nft"), "delete", "table", family, f"trustme-{bridge}"], capture_output=True)


def net_links():
    """Names of the host's links."""
    out = subprocess.run([tool("ip"), "-o", "link"], capture_output=True, text=True).stdout
    return [l.split(":")[1].strip().split("@")[0] for l in out.splitlines() if ":" in l]


UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def container_veths(data_dir):
    """The veth names of every container of a data dir, also of removed ones (from the audit
    log, which names every container ever created)."""
    data_dir = Path(data_dir)
    uuids = {p.name for p in (data_dir / "containers").glob("*-*")}
    try:
        uuids |= set(UUID_RE.findall((data_dir / "audit.log").read_text(errors="replace")))
    except OSError:
        pass
    return {"tm" + u.replace("-", "")[:10] for u in uuids}


def remove_net_links(data_dir, bridge):
    """A test daemon's bridge and its containers' veths (tm + 10 hex digits of the UUID)."""
    ours = container_veths(data_dir)
    for link in net_links():
        if link == bridge or link in ours:
            subprocess.run([tool("ip"), "link", "del", link], capture_output=True)


# A report of AddressSanitizer, LeakSanitizer or UBSan (scripts/ci-sanitize.sh runs part of the
# suite against daemons built with them, TRUSTME_BUILD=build-asan): trustmed, trustme-scd and
# trustme-tpmd write them to trustmed's stderr, the daemon's log. A daemon a sanitizer stopped may
# be restarted (scd is supervised) and a test may pass on: the teardown fails the test instead.
SANITIZER_REPORT = re.compile(r"ERROR: (?:Address|Leak)Sanitizer|runtime error: |"
                              r"SUMMARY: \w+Sanitizer|LeakSanitizer has encountered a fatal error")


# Every report found in the log of a daemon torn down so far; the autouse fixtures below fail the
# test (or, for a daemon of a module's or the session's fixtures, the session) that left one.
SANITIZER_FINDINGS = []


def sanitizer_reports(text):
    """The sanitizer reports in text: each from its first line to its SUMMARY line (at most 40
    lines: the stack that says where)."""
    reports, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if SANITIZER_REPORT.search(lines[i]):
            end = i
            while end < len(lines) - 1 and end - i < 40 and "SUMMARY: " not in lines[end]:
                end += 1
            reports.append("\n".join(lines[i:end + 1]))
            i = end
        i += 1
    return reports


def kill_cgroup_tasks(path):
    for procs in Path(path).rglob("cgroup.procs"):
        try:
            for pid in procs.read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        except OSError:
            pass


def with_descendants(dirs):
    """dirs and every cgroup below them, whatever their names (a delegated unit's cgroup holds
    "supervisor" and the containers' parent)."""
    found = set()
    for d in dirs:
        for top, _, _ in os.walk(d):
            found.add(Path(top))
    return sorted(found)


def remove_cgroups(name_part):
    """Kill everything in matching cgroups and remove them, deepest first. Scanned again until none
    is left (up to 10 s): under load, processes die slowly, and a daemon winding down may still
    make a child cgroup after a scan, which then kept its parent (a single 2 s pass left some)."""
    deadline = time.monotonic() + 10
    while (dirs := with_descendants(cgroup_dirs(name_part))) and time.monotonic() < deadline:
        for d in dirs:
            freezer_state = d / "freezer.state"
            if freezer_state.exists():
                try:
                    freezer_state.write_text("THAWED")
                except OSError:
                    pass
            kill_cgroup_tasks(d)
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass
        if cgroup_dirs(name_part):
            time.sleep(0.05)


# ---- the daemon ------------------------------------------------------------------------------

DEV_DEVICE_JSON = '{"policy": {"allow_unsigned": true}}\n'
# Test daemons run side by side: each attestation endpoint takes a free port.
TEST_TPM = {"attest_address": "127.0.0.1:0"}


# An init that exits at SIGTERM (a plain sleep as pid 1 ignores it, so every stop of the daemon
# would wait the full 10 s before its SIGKILL): for tests that stop daemons with containers running.
TERM_INIT = {"init": "/bin/sh", "args": ["-c", "trap 'exit 0' TERM; sleep 1000000 & wait"]}


class CliError(AssertionError):
    pass


class Daemon:
    """One trustmed in private directories, driven through the trustme CLI."""

    def __init__(self, base, name, rootfs, extra_args=(), env=None):
        self.base = Path(base)
        self.base.chmod(0o711)  # trustme-tpmd's user must reach its dirs below
        self.data_dir = self.base / "data"
        self.run_dir = self.base / "run"
        self.cgroup_parent = name
        n = next(_daemon_ids)
        # Each daemon gets its own id region so that daemons never share host uids.
        self.id_base = 1_000_000 + n * 65536 * 64
        self.rootfs = rootfs
        self.extra_args = list(extra_args)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.test_bridge = None  # device.json's network.bridge, when it names one
        self.log_path = self.base / f"trustmed-{n}.log"
        self.configs = self.base / "configs"
        self.configs.mkdir(parents=True, exist_ok=True)

    # daemon process
    def start(self):
        # Most tests run containers on a plain rootfs directory: a development device. The
        # GuestOS tests (test_guestos.py) write their own device.json with the real policy.
        device = self.data_dir / "device.json"
        if not device.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            device.write_text(DEV_DEVICE_JSON)
        try:
            config = json.loads(device.read_text())
        except ValueError:
            config = None  # a test of a broken device.json
        if isinstance(config, dict) and isinstance(config.get("network"), dict) \
                and isinstance(config["network"].get("bridge"), str):
            self.test_bridge = config["network"]["bridge"]
            TEST_BRIDGES.add(self.test_bridge)
        if isinstance(config, dict) and "tpm" not in config:
            config["tpm"] = TEST_TPM
            device.write_text(json.dumps(config) + "\n")
        log_start = len(self.log())
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [str(TRUSTMED), "--data-dir", str(self.data_dir), "--run-dir", str(self.run_dir),
             "--cgroup-parent", self.cgroup_parent, "--id-base", str(self.id_base),
             "--log-level", "debug", "--swtpm-state-dir", str(self.base / "swtpm-state"),
             *self.extra_args],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env)
        log.close()
        sock = self.run_dir / "control.sock"
        # Without an admin socket on the host (docs/ROLES.md) there is nothing to connect to:
        # "ready" in the log says it is up.
        no_socket = isinstance(config, dict) and config.get("admin_socket_in_root") is False
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"trustmed exited with {self.proc.returncode}:\n{self.log()}")
            if no_socket and "ready: " in self.log()[log_start:]:
                return self
            if sock.exists():
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(str(sock))
                    return self
                except OSError:
                    pass
            time.sleep(0.01)
        raise RuntimeError(f"trustmed did not come up:\n{self.log()}")

    def stop(self, timeout=30):
        """SIGTERM: trustmed stops its containers and exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def scd_pid(self):
        """The pid of this daemon's trustme-scd, or None while there is none."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.proc.pid and cmd == b"trustme-scd" and not process_gone(int(entry.name)):
                return int(entry.name)
        return None

    def kill9(self):
        """Simulate a crash: containers keep running."""
        self.proc.kill()
        self.proc.wait()

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    @property
    def socket(self):
        return self.run_dir / "control.sock"

    # CLI
    def cli(self, *args, input=None, check=True, timeout=60):
        cmd = [str(TRUSTME), "--run-dir", str(self.run_dir), *map(str, args)]
        r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout,
                           text=isinstance(input, str) or input is None)
        err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode(errors="replace")
        SANITIZER_FINDINGS.extend(sanitizer_reports(err))  # a sanitized CLI's own findings
        if check and r.returncode != 0:
            raise CliError(f"{' '.join(cmd)} -> {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def create(self, name, **config):
        """Create a container; without an explicit token, an unencrypted one (the storage tests
        in test_storage.py give tokens)."""
        cfg = {"name": name, "rootfs": {"path": str(self.rootfs)}, "init": "/bin/sleep",
               "args": ["1000000"], "data_size_mb": 16}
        cfg.update(config)
        if cfg.get("data_size_mb") != 0:
            cfg.setdefault("token", "none")
        path = self.configs / f"{name}.json"
        path.write_text(json.dumps(cfg))
        self.cli("create", path)
        return name

    def state(self, name):
        return json.loads(self.cli("state", "--json", name).stdout)

    def containers(self):
        return json.loads(self.cli("list", "--json").stdout)

    def run(self, name, *cmd, input=None, check=True, timeout=60):
        return self.cli("run", name, "--", *cmd, input=input, check=check, timeout=timeout)

    def sh(self, name, script, **kw):
        return self.run(name, "/bin/sh", "-c", script, **kw)

    def audit_events(self):
        out = self.cli("audit", "--json").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    # cleanup
    def teardown(self):
        try:
            if self.proc and self.proc.poll() is None:
                for c in self.containers():
                    if c["state"] != "stopped":
                        self.cli("stop", "--kill", c["name"], check=False, timeout=30)
        except Exception:
            pass
        self.stop()
        # Whatever a failed test left: processes, cgroups, mounts, loops, files. A trustmed
        # killed with -9 leaves its embedded swtpm running on purpose (the TPM outlives it).
        # Scanned until none is left: an swtpm that a tpmd started as the scan ran (it forks to
        # daemonize, and the child has the same command line) escaped a single pass.
        deadline = time.monotonic() + 5
        while (pids := processes_naming(self.base)) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        remove_cgroups(self.cgroup_parent)
        TEST_VETHS.update(container_veths(self.data_dir))
        if self.test_bridge:
            remove_nft_tables(self.test_bridge)
            remove_net_links(self.data_dir, self.test_bridge)
        for m in sorted(mounts_below(self.base), key=len, reverse=True):
            subprocess.run([tool("umount"), "-l", m], capture_output=True)
        for loop in loops_backed_by(self.base):
            subprocess.run([tool("losetup"), "-d", loop], capture_output=True)
        SANITIZER_FINDINGS.extend(sanitizer_reports(self.log()))
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def no_sanitizer_findings_left():
    yield
    assert SANITIZER_FINDINGS == [], "sanitizer reports in trustmed's log:\n" + "\n\n".join(SANITIZER_FINDINGS)


@pytest.fixture(autouse=True)
def no_sanitizer_findings():
    """After every test's daemons are gone: no sanitizer report in their logs."""
    yield
    found = list(SANITIZER_FINDINGS)
    SANITIZER_FINDINGS.clear()  # reported here, not again at the end of the session
    assert found == [], "sanitizer reports in trustmed's log:\n" + "\n\n".join(found)


@pytest.fixture(scope="session")
def test_root():
    root = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}-"))
    root.chmod(0o711)  # trustme-tpmd's user must reach its dirs below (docs/ATTESTATION.md)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def rootfs(test_root):
    """A busybox guest with tm-probe in /usr/local/bin."""
    path = test_root / "rootfs"
    subprocess.run([str(REPO / "scripts/mkrootfs.sh"), str(path), str(PROBE)], check=True)
    return path


@pytest.fixture(scope="session")
def squashfs_image(test_root, rootfs):
    img = test_root / "rootfs.sqfs"
    subprocess.run([tool("mksquashfs"), str(rootfs), str(img), "-noappend", "-quiet", "-comp", "lz4"],
                   check=True, stdout=subprocess.DEVNULL)
    return img


@pytest.fixture(scope="session")
def erofs_image(test_root, rootfs):
    img = test_root / "rootfs.erofs"
    subprocess.run([tool("mkfs.erofs"), "-zlz4", str(img), str(rootfs)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return img


@pytest.fixture
def make_daemon(test_root, rootfs, request):
    """Factory for daemons; all are torn down after the test."""
    made = []

    def make(extra_args=(), start=True, env=None):
        n = len(made)
        base = Path(tempfile.mkdtemp(prefix="d-", dir=test_root))
        test = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:40]
        name = f"{TEST_PREFIX}-{test}-{n}"
        d = Daemon(base, name, rootfs, extra_args, env)
        made.append(d)
        return d.start() if start else d

    yield make
    for d in made:
        d.teardown()


@pytest.fixture
def daemon(make_daemon):
    return make_daemon()


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def provisioned_device(d, env, cn, like=None, secret=True):
    """Start daemon d (made with start=False) as an attestable device and return it: trustmed
    with its trustme-tpmd and embedded swtpm, the boot measurements in, the AK certified by
    env's PKI (test_device.provision: EK certificate, csr, issue, install). like: a device whose
    device.json bytes d gets (so its boot PCR is that device's), else env.device(). secret: check
    the storage secret unseals (first start: it is sealed). Shared by test_attestation.py and
    test_fleet.py; imported late, those modules import this one."""
    from test_device import measurements, provision, secret_ok
    from test_guestos import start_with_device
    if like is None:
        start_with_device(d, env.device())
    else:
        d.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(like.data_dir / "device.json", d.data_dir / "device.json")
        d.start()
    if secret:
        secret_ok(d)
    measurements(d)
    provision(d, {"dir": env.pki, "pass": env.passfile}, d.base, cn=cn)
    return d
