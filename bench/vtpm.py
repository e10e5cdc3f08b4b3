#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The per-container vTPM's costs (docs/VTPM.md), standalone, as root:

    bench/vtpm.py [BUILD_DIR] [RUNS]

1. trustme-vtpm from exec to "ready" (its TPM started, 3 events extended, the platform hierarchy
   off, the sockets listening): a new state, and an existing one (decrypting it). This is what a
   start with a vTPM adds before its setup process (plus one anchor read from tpmd's memory).
2. The resident memory of trustme-vtpm (and of any child it has: an swtpm in revisions before
   trustme-vtpm hosted libtpms itself) right after some commands, 0.25 s later (a burst's end)
   and after 2.5 s idle; RSS, PSS and USS.
3. Command round trips the way the swtpm TCTI does them (a new connection per command):
   TPM2_GetRandom(32), TPM2_PCR_Read(sha256:11), TPM2_Quote (ECC P-256 restricted signing key
   made once with TPM2_CreatePrimary) and TPM2_Sign of a SHA-256 digest (ECC P-256 unrestricted
   signing key, likewise), through trustme-vtpm and directly on Debian's swtpm (the same libtpms,
   a TPM 2.0 with an AES-256 encrypted state, started with startup-clear), interleaved (one through each per round, the order alternating) so
   that changing load hits both alike; and the CPU time the processes used per command
   (/proc/PID/schedstat), which load does not inflate as it does wall time.
Medians (and p90) of RUNS rounds each, in milliseconds."""
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUILD = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "build").resolve()
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
HELPER = BUILD / "src/vtpm/trustme-vtpm"


def cmd_pw(cc, handles, params):
    """A command with a password session (empty auth) on its handles."""
    auth = struct.pack(">IHBH", 0x40000009, 0, 0, 0)
    body = b"".join(struct.pack(">I", h) for h in handles) + struct.pack(">I", len(auth)) + auth + params
    return struct.pack(">HII", 0x8002, 10 + len(body), cc) + body


def cmd_plain(cc, params):
    return struct.pack(">HII", 0x8001, 10 + len(params), cc) + params


GET_RANDOM = cmd_plain(0x17B, struct.pack(">H", 32))
PCR_READ = cmd_plain(0x17E, struct.pack(">IHB3s", 1, 0x000B, 3, bytes([0, 8, 0])))
# An ECC P-256 restricted signing key (ECDSA-SHA256): fixedTPM|fixedParent|sensitiveDataOrigin|
# userWithAuth|restricted|sign.
ECC_PUBLIC = struct.pack(">HHIH", 0x0023, 0x000B, 0x00050072, 0) + \
    struct.pack(">HHHHHHH", 0x0010, 0x0018, 0x000B, 0x0003, 0x0010, 0, 0)
CREATE_PRIMARY = cmd_pw(0x131, [0x40000001],
                        struct.pack(">HHH", 4, 0, 0) + struct.pack(">H", len(ECC_PUBLIC)) + ECC_PUBLIC +
                        struct.pack(">HI", 0, 0))


# The same key unrestricted: it signs any digest (fixedTPM|fixedParent|sensitiveDataOrigin|
# userWithAuth|sign).
SIGN_PUBLIC = struct.pack(">HHIH", 0x0023, 0x000B, 0x00040072, 0) + \
    struct.pack(">HHHHHHH", 0x0010, 0x0018, 0x000B, 0x0003, 0x0010, 0, 0)
CREATE_SIGN_KEY = cmd_pw(0x131, [0x40000001],
                         struct.pack(">HHH", 4, 0, 0) + struct.pack(">H", len(SIGN_PUBLIC)) + SIGN_PUBLIC +
                         struct.pack(">HI", 0, 0))


def sign(handle):
    """TPM2_Sign of a 32-byte digest, ECDSA-SHA256, with a null hash-check ticket."""
    return cmd_pw(0x15D, [handle], struct.pack(">H", 32) + bytes(range(32)) + struct.pack(">HH", 0x0018, 0x000B) +
                  struct.pack(">HIH", 0x8024, 0x40000007, 0))


def quote(handle):
    return cmd_pw(0x158, [handle], struct.pack(">H", 8) + b"benchnon" + struct.pack(">H", 0x0010) +
                  struct.pack(">IHB3s", 1, 0x000B, 3, bytes([0, 8, 0])))


def transact(path, cmd):
    for _ in range(10):
        r = transact_once(path, cmd)
        if struct.unpack(">I", r[6:10])[0] != 0x922:  # TPM_RC_RETRY
            break
    if struct.unpack(">I", r[6:10])[0] != 0:
        raise RuntimeError(f"TPM rc 0x{struct.unpack('>I', r[6:10])[0]:x}")
    return r


def transact_once(path, cmd):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(cmd)
        head = recv_exactly(s, 10)
        size, rc = struct.unpack(">II", head[2:10])
        rest = recv_exactly(s, size - 10)
    return head + rest


def recv_exactly(s, n):
    """n bytes, or an error when the TPM's process closed the socket (it died mid-command)."""
    buf = b""
    while len(buf) < n:
        got = s.recv(n - len(buf))
        if not got:
            raise RuntimeError(f"the TPM closed the connection after {len(buf)} of {n} bytes")
        buf += got
    return buf


def start_helper(run, state):
    k_r, k_w = os.pipe()
    e_r, e_w = os.pipe()
    r_r, r_w = os.pipe()
    os.write(k_w, bytes(range(32)))
    os.close(k_w)
    os.write(e_w, b"".join(b"11 %s\n" % (bytes([i]) * 32).hex().encode() for i in range(3)))
    os.close(e_w)

    def pre():
        for src, dst in ((k_r, 3), (e_r, 4), (r_w, 5)):
            os.dup2(src, dst)
    t = time.perf_counter()
    p = subprocess.Popen([str(HELPER), "--run-dir", str(run), "--state-dir", str(state)], preexec_fn=pre,
                         pass_fds=(3, 4, 5))
    os.close(r_w)
    said = b""
    while not said.endswith(b"R"):  # "W" (it waits for its key, which is there already), then "R"
        got = os.read(r_r, 16)
        assert got, said
        said += got
    elapsed = time.perf_counter() - t
    for fd in (k_r, e_r, r_r):
        os.close(fd)
    return p, elapsed


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def private_kib(pid):
    """Memory only this process holds (Private_Clean + Private_Dirty, its USS): what one more vTPM
    costs on a device where another swtpm (tpmd's, another container's) already maps the shared
    libraries, which RSS counts again in every process."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def pss_kib(pid):
    """Its proportional share of the pages it maps (shared pages divided by their mappers)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def stats(xs):
    xs = sorted(xs)
    return statistics.median(xs) * 1000, xs[int(len(xs) * 0.9)] * 1000


def cpu_ns(pids):
    """CPU time the processes have used (/proc/PID/schedstat's first field, in ns)."""
    return sum(int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) for pid in pids)


def interleaved(paths, cmd, cpu_pids):
    """RUNS rounds; each round sends cmd once on every path, the order alternating, so load that
    comes and goes hits both alike. Per path: the wall times, and the CPU time its processes
    used per command (ns)."""
    times = {k: [] for k in paths}
    cpu = {k: 0 for k in paths}
    keys = list(paths)
    for i in range(RUNS):
        for k in (keys if i % 2 == 0 else keys[::-1]):
            c0 = cpu_ns(cpu_pids[k])
            t = time.perf_counter()
            transact(paths[k], cmd[k])
            times[k].append(time.perf_counter() - t)
            cpu[k] += cpu_ns(cpu_pids[k]) - c0
    return times, {k: cpu[k] / RUNS for k in paths}


def many_at_once(base, n=10):
    """n vTPMs side by side, as on a device with n containers, each right after a burst (an ECC
    primary key made, a Sign and a Quote): the sums of their RSS, PSS and USS. RSS counts the
    pages of libtpms, libcrypto and libc again in every process; PSS shares them out, so PSS / n
    is what one vTPM costs the host among n."""
    procs = []
    try:
        for i in range(n):
            run = base / f"many{i}"
            (run / "priv").mkdir(parents=True)
            (run / "pub").mkdir()
            (run / "state").mkdir()
            p, _ = start_helper(run, run / "state")
            procs.append(p)
        for i in range(n):
            path = str(base / f"many{i}" / "pub" / "tpm.sock")
            k = struct.unpack(">I", transact(path, CREATE_PRIMARY)[10:14])[0]
            s = struct.unpack(">I", transact(path, CREATE_SIGN_KEY)[10:14])[0]
            transact(path, quote(k))
            transact(path, sign(s))
        rss = sum(rss_kib(p.pid) for p in procs)
        pss = sum(pss_kib(p.pid) for p in procs)
        uss = sum(private_kib(p.pid) for p in procs)
        return rss, pss, uss
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def main():
    base = Path(tempfile.mkdtemp(prefix="vtpm-bench-"))
    os.chdir(base)
    procs = []
    try:
        run = base / "run"
        (run / "priv").mkdir(parents=True)
        (run / "pub").mkdir()
        starts_new, starts_old = [], []
        for i in range(min(RUNS, 20)):
            state = base / f"state{i}"
            state.mkdir()
            p, t = start_helper(run, state)
            starts_new.append(t)
            p.terminate()
            p.wait()
            p, t = start_helper(run, state)
            starts_old.append(t)
            p.terminate()
            p.wait()
        state = base / "state"
        state.mkdir()
        p, _ = start_helper(run, state)
        procs.append(p)
        proxy = "run/pub/tpm.sock"
        # The peer: Debian's swtpm, directly on its socket, with its own encrypted state.
        d = base / "direct"
        d.mkdir()
        keyfile = base / "key"
        keyfile.write_bytes(bytes(range(32)))
        sw = subprocess.Popen(["swtpm", "socket", "--tpm2", "--server", "type=unixio,path=direct/tpm.sock",
                               "--ctrl", "type=unixio,path=direct/tpm.sock.ctrl", "--tpmstate", "dir=direct",
                               "--key", f"file={keyfile},mode=aes-256-cbc,format=binary", "--flags",
                               "not-need-init,startup-clear", "--seccomp", "action=kill"])
        procs.append(sw)
        direct = "direct/tpm.sock"
        for _ in range(500):
            if os.path.exists(direct):
                break
            time.sleep(0.01)
        time.sleep(0.1)
        children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        paths = {"proxy": proxy, "direct": direct}
        cpu_pids = {"proxy": [p.pid] + [int(c) for c in children], "direct": [sw.pid]}
        keys = {}
        for name, path in paths.items():
            keys[name] = (struct.unpack(">I", transact(path, CREATE_PRIMARY)[10:14])[0],
                          struct.unpack(">I", transact(path, CREATE_SIGN_KEY)[10:14])[0])
        results, cpu = {}, {}
        for c, make in (("GetRandom", lambda k: GET_RANDOM), ("PCR_Read", lambda k: PCR_READ),
                        ("Quote", lambda k: quote(k[0])), ("Sign", lambda k: sign(k[1]))):
            times, used = interleaved(paths, {n: make(keys[n]) for n in paths}, cpu_pids)
            results[c] = {n: (stats(times[n]), statistics.median(a / b for a, b in zip(times["proxy"],
                                                                                      times["direct"])))
                          for n in paths}
            cpu[c] = used
        helper_rss = rss_kib(p.pid)
        children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        swtpm_rss = sum(rss_kib(int(c)) for c in children)
        helper_uss = private_kib(p.pid)
        swtpm_uss = sum(private_kib(int(c)) for c in children)
        helper_pss = pss_kib(p.pid) + sum(pss_kib(int(c)) for c in children)
        # trustme-vtpm drops its read-only library pages when a burst of commands is over (100 ms
        # without one; before, after 2 s: tm_idle_release).
        time.sleep(0.25)
        burst_rss = rss_kib(p.pid) + sum(rss_kib(int(c)) for c in children)
        burst_pss = pss_kib(p.pid) + sum(pss_kib(int(c)) for c in children)
        time.sleep(2.25)
        idle_rss = rss_kib(p.pid) + sum(rss_kib(int(c)) for c in children)
        print(f"runs: {RUNS} (starts: {len(starts_new)})")
        print(f"start to ready, new state:      median {stats(starts_new)[0]:.1f} ms, p90 {stats(starts_new)[1]:.1f}")
        print(f"start to ready, existing state: median {stats(starts_old)[0]:.1f} ms, p90 {stats(starts_old)[1]:.1f}")
        print(f"RSS: trustme-vtpm {helper_rss} KiB, its children (swtpm) {swtpm_rss} KiB, together "
              f"{helper_rss + swtpm_rss} KiB; swtpm alone (the peer) {rss_kib(sw.pid)} KiB")
        print(f"RSS 0.25 s after the last command: trustme-vtpm with its children {burst_rss} KiB (PSS {burst_pss} "
              f"KiB; right after the commands PSS {helper_pss} KiB)")
        print(f"RSS after 2.5 s idle: trustme-vtpm with its children {idle_rss} KiB; swtpm alone (the peer) "
              f"{rss_kib(sw.pid)} KiB")
        print(f"private (USS): trustme-vtpm {helper_uss} KiB, its children {swtpm_uss} KiB, "
              f"together {helper_uss + swtpm_uss} KiB")
        n_many = 10
        m_rss, m_pss, m_uss = many_at_once(base, n_many)
        print(f"{n_many} vTPMs at once, each right after a burst: per vTPM RSS {m_rss // n_many} KiB, "
              f"PSS {m_pss // n_many} KiB, USS {m_uss // n_many} KiB")
        print(f"| command ({RUNS} rounds, interleaved) | via trustme-vtpm (median / p90 ms) | swtpm directly | "
              "ratio of medians | median of paired ratios | CPU per command: trustme-vtpm (+ children) / "
              "swtpm alone (us) |")
        print("|---|---|---|---|---|---|")
        for c in ("GetRandom", "PCR_Read", "Quote", "Sign"):
            a, b = results[c]["proxy"][0], results[c]["direct"][0]
            print(f"| {c} | {a[0]:.3f} / {a[1]:.3f} | {b[0]:.3f} / {b[1]:.3f} | {a[0] / b[0]:.2f} | "
                  f"{results[c]['proxy'][1]:.2f} | {cpu[c]['proxy'] / 1000:.0f} / {cpu[c]['direct'] / 1000:.0f} |")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        os.chdir("/")
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
