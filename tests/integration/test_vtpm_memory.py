# SPDX-License-Identifier: GPL-2.0-or-later
"""trustme-vtpm's secrets in memory (docs/VTPM.md "Secrets in memory"): the state key and the TPM's
state in the clear live in locked mappings that core dumps leave out, the key nowhere else in the
process, and the process is not dumpable (no core file, no ptrace or /proc/PID/mem by its uid)."""
import re
import struct
import subprocess
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import PROBE, REPO

KDF = ["--scd-kdf-n", "1024"]
PIN, PUK = "7391", "12345678"
MAGIC = b"TMVTPM1\n"


def _pin_file(d, *lines):
    path = d.base / f"pins-{time.monotonic_ns()}"
    path.write_text("".join(f"{line}\n" for line in lines))
    path.chmod(0o600)
    return path


def _vtpm_pid(d, name):
    """Its serving trustme-vtpm, not the standby waiting for the next start (SCHED_IDLE)."""
    uuid = d.state(name)["uuid"].encode()
    for e in Path("/proc").iterdir():
        if not e.name.isdigit():
            continue
        try:
            cmd = (e / "cmdline").read_bytes()
            policy = int((e / "stat").read_text().rsplit(")", 1)[1].split()[38])
        except (OSError, IndexError, ValueError):
            continue
        if cmd.startswith(b"trustme-vtpm\0") and uuid in cmd and policy != 5:
            return int(e.name)
    return None


def _mappings(pid):
    """(start, end, name, rss KiB, locked KiB, VmFlags) of every mapping, from smaps."""
    out = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
        if m:
            out.append({"start": int(m.group(1), 16), "end": int(m.group(2), 16), "perms": m.group(3),
                        "name": m.group(4), "rss": 0, "locked": 0, "flags": []})
        elif line.startswith("Rss:"):
            out[-1]["rss"] = int(line.split()[1])
        elif line.startswith("Locked:"):
            out[-1]["locked"] = int(line.split()[1])
        elif line.startswith("VmFlags:"):
            out[-1]["flags"] = line.split()[1:]
    return out


def _read(mem, m):
    try:
        mem.seek(m["start"])
        return mem.read(m["end"] - m["start"])
    except OSError:
        return b""


def _transact(path, cmd):
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(cmd)
        head = b""
        while len(head) < 10:
            head += s.recv(10 - len(head))
        size = struct.unpack(">I", head[2:6])[0]
        rest = b""
        while len(rest) < size - 10:
            rest += s.recv(size - 10 - len(rest))
    return head + rest


def test_state_key_and_clear_state_are_locked_and_not_dumpable(make_daemon, test_root):
    d = make_daemon(extra_args=KDF)
    rootfs = test_root / "rootfs-vtpm-memory"
    subprocess.run([str(REPO / "scripts/mkrootfs.sh"), str(rootfs), str(PROBE)], check=True)
    d.create("m", rootfs={"path": str(rootfs)}, token={"type": "soft"}, vtpm=True,
             init="/bin/sh", args=["-c", "trap 'exit 0' TERM; sleep 1000000 & wait"])
    d.cli("change-pin", "--pin-file", _pin_file(d, PIN, PUK), "m")
    r = d.cli("start", "--pin-file", _pin_file(d, PIN), "m", check=False)
    assert r.returncode == 0, f"{r.stderr}\n{d.log()[-3000:]}"
    uuid = d.state("m")["uuid"]
    pid = _vtpm_pid(d, "m")
    assert pid
    # A command that changes the state (an NV index defined by the owner), as the guest would send
    # it on its socket: the state in memory is then what the TPM stored last, not only what it
    # loaded.
    pub = d.run_dir / "vtpm" / uuid / "pub"
    auth = struct.pack(">IHBH", 0x40000009, 0, 0, 0)
    nvpub = struct.pack(">IHIHH", 0x01500020, 0x000B, 0x00060006, 0, 8)
    body = struct.pack(">I", 0x40000001) + struct.pack(">I", len(auth)) + auth + struct.pack(">H", 0) + \
        struct.pack(">H", len(nvpub)) + nvpub
    rsp = _transact(pub / "tpm.sock", struct.pack(">HII", 0x8002, 10 + len(body), 0x12A) + body)
    assert struct.unpack(">I", rsp[6:10])[0] == 0, rsp.hex()
    state = (d.data_dir / "containers" / uuid / "vtpm" / "tpm2.state").read_bytes()
    assert state.startswith(MAGIC)
    nonce, ct = state[8:20], state[20:]

    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(re.search(r"Uid:\s+(\d+)", status).group(1))
    assert uid != 0
    # Not dumpable: its /proc/PID/mem is then root's, not the vTPM uid's; and no core file size.
    assert Path(f"/proc/{pid}/mem").stat().st_uid == 0
    assert re.search(r"Max core file size\s+0\s+0", Path(f"/proc/{pid}/limits").read_text())

    maps = _mappings(pid)
    secret = [m for m in maps if "lo" in m["flags"] and "dd" in m["flags"]]
    assert len(secret) >= 2, [(hex(m["start"]), m["flags"]) for m in maps if m["locked"]]
    assert all(m["locked"] == m["rss"] and m["rss"] > 0 for m in secret)
    key = plain = None
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        locked = [_read(mem, m) for m in secret]
        # The key: the 32 bytes in a locked mapping that decrypt the state file.
        for data in locked:
            for off in range(0, min(len(data), 4096) - 32, 8):
                try:
                    plain = AESGCM(data[off:off + 32]).decrypt(nonce, ct, MAGIC)
                except Exception:
                    continue
                key = data[off:off + 32]
                break
            if key:
                break
        assert key, "the state key is in no locked mapping"
        # The state in the clear (as the TPM stored it last) is in a locked mapping too.
        assert len(plain) > 1000 and any(plain in data for data in locked)
        # And the key nowhere else in the process (its stack, heap, libtpms's and OpenSSL's memory).
        for m in maps:
            if m in secret or not m["perms"].startswith("r") or m["name"] in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            assert key not in _read(mem, m), f"a copy of the state key in {m['name'] or 'an anonymous mapping'}"
    d.cli("stop", "m")
