# SPDX-License-Identifier: GPL-2.0-or-later
"""GuestOS images verified once (docs/GUESTOS.md "Verified once", docs/SECURITY.md): a start
hashes an image in full, later starts trust the very inode trustmed has held since, unchanged.

The attacker is root on the device doing file operations on the store between two starts. Every
test first gets the image into the cache (a start that hashes, a start that does not), then
changes the image the way an attacker would while keeping what a weaker cache would key on (the
path, the size, the mtime), and checks that the next start hashes again and refuses a changed
image. A cache keyed on path, size and mtime, or one that trusted a path without pinning the
inode, would start the tampered image and fail these tests."""
import ctypes
import errno
import fcntl
import json
import mmap
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import TEST_PREFIX, Daemon, loops_backed_by, tool, wait_for
from test_guestos import GUESTOS_TOOL, PKI_TOOL, Env, install, start_with_device

pytestmark = pytest.mark.skipif(not (GUESTOS_TOOL.exists() and PKI_TOOL.exists()),
                                reason="trustme-guestos or trustme-pki is not built")

HASHED = "hashed in full"
CACHED = "unchanged since it was verified, not hashed again"


@pytest.fixture(scope="module")
def env(test_root, rootfs):
    work = Path(tempfile.mkdtemp(prefix="icache-env-", dir=test_root))
    yield Env(work, rootfs)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def cd(env, test_root, rootfs):
    """One daemon under the real policy with bb-1 installed and a container "c" on it whose init
    exits at once; "c" is started attached, so each start's progress lines come back."""
    base = Path(tempfile.mkdtemp(prefix="d-icache-", dir=test_root))
    d = Daemon(base, f"{TEST_PREFIX}-{os.getpid()}-icache", rootfs)
    try:
        start_with_device(d, env.device())
        install(d, env.build("bb", 1))
        cfg = {"name": "c", "guestos": {"name": "bb"}, "token": "none", "data_size_mb": 0,
               "init": "/bin/true", "args": []}
        path = d.configs / "c.json"
        path.write_text(json.dumps(cfg))
        d.cli("create", path)
        yield d
    finally:
        d.teardown()


def image(d):
    return d.data_dir / "guestos/bb-1/root.img"


class Started:
    """A start's outcome: its status, and its error and progress lines (trustmed's debug log of
    the start: the setup process reports how it verified each image)."""

    def __init__(self, r, log):
        self.returncode = r.returncode
        self.stderr = r.stderr + log


def start(d, check=True):
    mark = len(d.log())
    r = d.cli("start", "--attach", "c", check=False, timeout=120)
    s = Started(r, d.log()[mark:])
    if check:
        assert s.returncode == 0, s.stderr
    return s


def cached_start(d):
    """Brings the image into the cache and checks that an unchanged image is not hashed again."""
    first = start(d)
    if CACHED not in first.stderr:
        assert HASHED in first.stderr, first.stderr
    second = start(d)
    assert CACHED in second.stderr and HASHED not in second.stderr, second.stderr


def refused(d):
    r = start(d, check=False)
    assert r.returncode != 0, r.stderr
    assert "corrupted" in r.stderr and CACHED not in r.stderr, r.stderr
    return r


def flip(data, i):
    b = bytearray(data)
    b[i] ^= 0x01
    return bytes(b)


def times(p):
    st = os.stat(p)
    return st.st_atime_ns, st.st_mtime_ns


def restore(d, original, t):
    """Puts the genuine bytes back in place (a new write), with the old times."""
    with open(image(d), "r+b") as f:
        f.write(original)
        f.truncate(len(original))
    os.utime(image(d), ns=t)


def test_unchanged_image_is_hashed_once(cd):
    cached_start(cd)
    third = start(cd)
    assert CACHED in third.stderr, third.stderr
    assert "verified (inode" in cd.log()


def test_write_in_place_with_size_and_mtime_restored(cd):
    cached_start(cd)
    img = image(cd)
    original, t = img.read_bytes(), times(img)
    fd = os.open(img, os.O_WRONLY)
    try:
        os.pwrite(fd, flip(original[len(original) // 2:len(original) // 2 + 1], 0), len(original) // 2)
    finally:
        os.close(fd)
    os.utime(img, ns=t)
    assert img.stat().st_size == len(original) and times(img) == t
    refused(cd)
    restore(cd, original, t)
    r = start(cd)
    assert HASHED in r.stderr, r.stderr


def test_mmap_write_with_mtime_restored(cd):
    cached_start(cd)
    img = image(cd)
    original, t = img.read_bytes(), times(img)
    with open(img, "r+b") as f:
        m = mmap.mmap(f.fileno(), 0)
        m[100] ^= 0x01
        m.flush()
        m.close()
    os.utime(img, ns=t)
    refused(cd)
    restore(cd, original, t)
    start(cd)


def test_replaced_by_a_copy_with_the_same_times(cd):
    cached_start(cd)
    img = image(cd)
    original, t = img.read_bytes(), times(img)
    st = img.stat()
    fake = img.with_name(".root.img.fake")
    fake.write_bytes(flip(original, len(original) - 10))
    os.chown(fake, st.st_uid, st.st_gid)
    os.chmod(fake, st.st_mode & 0o7777)
    os.utime(fake, ns=t)
    os.rename(fake, img)
    refused(cd)
    restore(cd, original, t)
    start(cd)


def test_truncated_and_rewritten(cd):
    cached_start(cd)
    img = image(cd)
    original, t = img.read_bytes(), times(img)
    os.truncate(img, 0)
    with open(img, "r+b") as f:
        f.write(flip(original, 0))
    os.utime(img, ns=t)
    refused(cd)
    restore(cd, original, t)
    start(cd)


def test_attribute_changes_make_it_hashed_again(cd):
    """The times set (touch -d), chmod and back, chattr +i and -i: the bytes are the same, but
    trustmed cannot know that without hashing."""
    img = image(cd)
    mode = img.stat().st_mode & 0o7777
    edits = [lambda: os.utime(img, ns=(1, 1)),  # touch -d @0: utimensat, as touch does
             lambda: (os.chmod(img, 0o600), os.chmod(img, mode))]
    if subprocess.run([tool("chattr"), "+i", str(img)], capture_output=True).returncode == 0:
        subprocess.run([tool("chattr"), "-i", str(img)], check=True)
        edits.append(lambda: (subprocess.run([tool("chattr"), "+i", str(img)], check=True),
                              subprocess.run([tool("chattr"), "-i", str(img)], check=True)))
    for edit in edits:
        cached_start(cd)
        edit()
        r = start(cd)
        assert HASHED in r.stderr and CACHED not in r.stderr, r.stderr


def test_store_directory_mounted_over(cd):
    """A copy of the GuestOS's directory, one byte changed, with every time kept (cp -a), bind-
    mounted over it: another device and inode, whatever the times say."""
    cached_start(cd)
    store = cd.data_dir / "guestos/bb-1"
    copy = Path(tempfile.mkdtemp(prefix="icache-over-", dir=cd.base)) / "bb-1"
    subprocess.run([tool("cp"), "-a", str(store), str(copy)], check=True)
    img = copy / "root.img"
    t = times(img)
    data = img.read_bytes()
    with open(img, "r+b") as f:
        f.seek(len(data) // 3)
        f.write(flip(data[len(data) // 3:len(data) // 3 + 1], 0))
    os.utime(img, ns=t)
    subprocess.run([tool("mount"), "--bind", str(copy), str(store)], check=True)
    try:
        refused(cd)
    finally:
        subprocess.run([tool("umount"), str(store)], check=True)
    # the genuine inode again, which nothing changed: trusted as it was
    r = start(cd)
    assert CACHED in r.stderr, r.stderr


def test_a_restarted_daemon_hashes_again(cd):
    cached_start(cd)
    cd.stop()
    cd.start()
    r = start(cd)
    assert HASHED in r.stderr and CACHED not in r.stderr, r.stderr


def kernel_clones_detached_mounts():
    """Whether open_tree(OPEN_TREE_CLONE) takes a detached mount (Linux 6.15 on): made here, with a
    tmpfs, independent of trustmed."""
    libc = ctypes.CDLL(None, use_errno=True)
    sys_open_tree, sys_fsopen, sys_fsconfig, sys_fsmount = 428, 430, 431, 432  # x86_64, aarch64 alike
    fs = libc.syscall(sys_fsopen, b"tmpfs", 0)
    if fs < 0:
        return False
    try:
        if libc.syscall(sys_fsconfig, fs, 6, None, None, 0) < 0:  # FSCONFIG_CMD_CREATE
            return False
        mnt = libc.syscall(sys_fsmount, fs, 0, 0)
        if mnt < 0:
            return False
        clone = libc.syscall(sys_open_tree, mnt, b"", 1 | 0x1000)  # OPEN_TREE_CLONE | AT_EMPTY_PATH
        os.close(mnt)
        if clone < 0:
            return False
        os.close(clone)
        return True
    finally:
        os.close(fs)


def test_kept_mount_is_cloned_and_goes_with_the_entry(cd):
    """A trusted image is mounted once: later starts clone trustmed's kept mount (one loop device
    for all of them, attached while trustmed runs), and any change to the image drops it with the
    cache entry. Each start on main attached a loop device of its own and released it at stop."""
    if not kernel_clones_detached_mounts():
        pytest.skip("this kernel cannot clone a detached mount (before Linux 6.15): no kept mounts")
    cached_start(cd)
    kept = loops_backed_by(image(cd))
    assert len(kept) == 1, kept  # the container stopped, the kept mount holds its loop device
    for _ in range(2):
        r = start(cd)
        assert "its kept mount cloned" in r.stderr, r.stderr
        assert loops_backed_by(image(cd)) == kept
    # an attribute change (the content is the same): hashed again, a new kept mount, the old one gone
    img = image(cd)
    os.chmod(img, 0o640)
    try:
        r = start(cd)
        assert HASHED in r.stderr and "kept mount cloned" not in r.stderr, r.stderr
        # one: the new kept mount's; the old one's detached when the change dropped the entry
        wait_for(lambda: len(loops_backed_by(img)) == 1, what="the old kept mount's loop device to detach")
    finally:
        os.chmod(img, 0o600)
    # trustmed gone: nothing of it is left attached
    cd.stop()
    try:
        wait_for(lambda: loops_backed_by(img) == [], what="the kept mount's loop device to detach")
    finally:
        cd.start()


FS_IOC_ENABLE_VERITY = 0x40806685
FS_IOC_MEASURE_VERITY = 0xc0046686


def verity_unavailable(where):
    """Why fs-verity cannot be used for files in where, or None."""
    probe = Path(tempfile.mkdtemp(prefix="icache-verity-", dir=where)) / "probe"
    try:
        probe.write_bytes(b"x" * 8192)
        fd = os.open(probe, os.O_RDONLY)
        try:
            # struct fsverity_enable_arg (128 bytes): version 1, SHA-256, 4096-byte blocks
            arg = (ctypes.c_uint32 * 32)()
            arg[0], arg[1], arg[2] = 1, 1, 4096
            fcntl.ioctl(fd, FS_IOC_ENABLE_VERITY, bytes(arg))
        except OSError as e:
            return f"{errno.errorcode.get(e.errno, e.errno)} ({os.strerror(e.errno)})"
        finally:
            os.close(fd)
    finally:
        shutil.rmtree(probe.parent, ignore_errors=True)
    return None


def test_fs_verity_enabled_where_the_kernel_has_it(cd):
    why = verity_unavailable(cd.data_dir)
    if why:
        pytest.skip(f"no fs-verity for the store's file system on this kernel: FS_IOC_ENABLE_VERITY "
                    f"gives {why}; images are verified once and cached by inode instead")
    cached_start(cd)
    fd = os.open(image(cd), os.O_RDONLY)
    try:
        buf = bytearray(4 + 64)
        buf[2:4] = (64).to_bytes(2, "little")
        fcntl.ioctl(fd, FS_IOC_MEASURE_VERITY, buf)
    finally:
        os.close(fd)
    r = start(cd)
    assert CACHED in r.stderr, r.stderr
