# SPDX-License-Identifier: GPL-2.0-or-later
"""Encrypted container storage with real fscrypt and real tokens (soft tokens in trustme-scd,
PKCS#11 through SoftHSM2): what is on the disk after stop, PINs and their lockout, PUK unlock,
PIN change, wipe, the token service dying during a start, and key hygiene. test_scd.py has the
token service's own protocol, verification service and confinement."""
import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import anchors
from conftest import BUILD, TRUSTME, cgroup_dirs, loops_backed_by, mounts_below, wait_for
from tools import tool

KDF = ["--scd-kdf-n", "1024"]  # a cheap scrypt: these tests are about behaviour, not cost
PIN, PUK = "7391", "12345678"
MARKER = "TRUSTME-MARKER-1f4c9a"
SECRET_NAME = "secret-name-7d2e5b.txt"
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


@pytest.fixture
def sdaemon(make_daemon):
    return make_daemon(extra_args=KDF)


def pin_file(d, *lines):
    path = d.base / f"pins-{time.monotonic_ns()}"
    path.write_text("".join(f"{line}\n" for line in lines))
    path.chmod(0o600)
    return path


def create_paired(d, name, token=None, pin=PIN, puk=PUK, **config):
    d.create(name, token=token or {"type": "soft"}, **config)
    secrets = (pin,) if (token or {}).get("type") == "pkcs11" else (pin, puk)
    d.cli("change-pin", "--pin-file", pin_file(d, *secrets), name)
    return name


def start(d, name, pin=PIN, check=True):
    return d.cli("start", "--pin-file", pin_file(d, pin), name, check=check)


def enc(d, name):
    return d.state(name)["encryption"]


def container_dir(d, name):
    return d.data_dir / "containers" / d.state(name)["uuid"]


def write_marker(d, name):
    d.sh(name, f"echo {MARKER} > /root/{SECRET_NAME}; sync")


def assert_nothing_mounted(d, name):
    uuid = d.state(name)["uuid"]
    assert loops_backed_by(d.base) == []
    assert mounts_below(d.base) == []
    assert all(not (p / "cgroup.procs").exists() or not (p / "cgroup.procs").read_text().strip()
               for p in cgroup_dirs(uuid))


# ---- fscrypt inspection on the host -----------------------------------------------------------

def _iowr(nr, size):
    return (3 << 30) | (size << 16) | (ord("f") << 8) | nr


FS_IOC_GET_ENCRYPTION_POLICY_EX = _iowr(22, 9)
FS_IOC_GET_ENCRYPTION_KEY_STATUS = _iowr(26, 128)
KEY_STATUS_ABSENT = 1


@contextmanager
def host_mount(d, image):
    """The stopped container's data image, mounted read-only on the host."""
    mnt = d.base / "inspect"
    mnt.mkdir(exist_ok=True)
    subprocess.run([tool("mount"), "-o", "loop,ro", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run([tool("umount"), str(mnt)], check=True)


def key_identifier_and_status(directory):
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        pol = bytearray(struct.pack("<Q", 24) + bytes(24))
        fcntl.ioctl(fd, FS_IOC_GET_ENCRYPTION_POLICY_EX, pol)
        assert pol[8] == 2, "a v2 policy"
        assert (pol[9], pol[10]) == (1, 4), "AES-256-XTS contents, AES-256-CTS names"
        ident = bytes(pol[16:32])
        arg = bytearray(128)
        struct.pack_into("<I", arg, 0, 2)  # FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER
        arg[8:24] = ident
        fcntl.ioctl(fd, FS_IOC_GET_ENCRYPTION_KEY_STATUS, arg)
        return ident.hex(), struct.unpack_from("<I", arg, 64)[0]
    finally:
        os.close(fd)


def fscrypt_keys_in_kernel():
    """Identifiers of fscrypt keys the kernel holds now (their user claims show in /proc/keys)."""
    text = Path("/proc/keys").read_text()
    return {word.split(".")[0] for line in text.splitlines() for word in line.split()
            if word.endswith(".uid.0") and len(word.split(".")[0]) == 32}


# ---- encryption at rest ---------------------------------------------------------------------

def test_marker_and_its_name_are_ciphertext_after_stop(sdaemon):
    d = sdaemon
    create_paired(d, "vault")
    start(d, "vault")
    write_marker(d, "vault")
    assert d.sh("vault", f"cat /root/{SECRET_NAME}").stdout == f"{MARKER}\n"
    keys_while_running = fscrypt_keys_in_kernel()
    d.cli("stop", "--kill", "vault")
    wait_for(lambda: loops_backed_by(d.base) == [], what="the data volume to be released")

    raw = (container_dir(d, "vault") / "data.img").read_bytes()
    assert MARKER.encode() not in raw and SECRET_NAME.encode() not in raw

    # Mounted again, without the key: names and contents stay ciphertext, the key is absent.
    with host_mount(d, container_dir(d, "vault") / "data.img") as mnt:
        ident, status = key_identifier_and_status(mnt / "encrypted")
        assert status == KEY_STATUS_ABSENT
        names = os.listdir(mnt / "encrypted")
        assert names and "upper" not in names
    assert ident in keys_while_running, "the key was in the kernel while the container ran"
    assert ident not in fscrypt_keys_in_kernel(), "and left it with the stop"

    start(d, "vault")
    assert d.sh("vault", f"cat /root/{SECRET_NAME}").stdout == f"{MARKER}\n"
    e = enc(d, "vault")
    assert (e["backend"], e["token"], e["locked"], e["key_created"]) == ("fscrypt", "soft", False, True)
    listing = d.cli("list").stdout
    assert "fscrypt/soft" in listing


def test_wrong_pin_starts_nothing(sdaemon):
    d = sdaemon
    create_paired(d, "w")
    r = start(d, "w", pin="9999", check=False)
    assert r.returncode != 0 and "wrong PIN" in r.stderr and "2 tries left" in r.stderr
    st = d.state("w")
    assert st["state"] == "stopped" and "wrong PIN" in st["last_error"]
    assert not (container_dir(d, "w") / "data.img").exists(), "no volume made for a wrong PIN"
    assert not (container_dir(d, "w") / "key.wrapped").exists()
    assert_nothing_mounted(d, "w")
    # with data in place, a wrong PIN still mounts nothing and touches nothing
    start(d, "w")
    write_marker(d, "w")
    d.cli("stop", "--kill", "w")
    image = container_dir(d, "w") / "data.img"
    before = image.read_bytes()
    assert start(d, "w", pin="0000", check=False).returncode != 0
    assert_nothing_mounted(d, "w")
    assert image.read_bytes() == before


def test_start_without_pin_and_unpaired_start_are_refused(sdaemon):
    d = sdaemon
    d.create("lonely", token={"type": "soft"})
    e = enc(d, "lonely")
    assert e["token"] == "soft" and e["paired"] is False
    r = d.cli("start", "lonely", input="", check=False)
    assert r.returncode != 0 and "no PIN yet" in r.stderr and "change-pin" in r.stderr
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, PUK), "lonely")
    r = d.cli("start", "lonely", input="", check=False)  # stdin is not a terminal: read from it
    assert r.returncode != 0 and "no PIN given" in r.stderr
    d.cli("start", "lonely", input=f"{PIN}\n")
    assert d.state("lonely")["state"] == "running"


def test_create_pairs_with_pin_file(sdaemon):
    d = sdaemon
    path = d.configs / "p.json"
    path.write_text(f'{{"name":"p","rootfs":{{"path":"{d.rootfs}"}},"init":"/bin/sleep",'
                    f'"args":["1000000"],"token":{{"type":"soft"}}}}')
    r = d.cli("create", "--pin-file", pin_file(d, PIN, PUK), path)
    assert "PIN and PUK set" in r.stdout
    assert enc(d, "p")["paired"] is True
    start(d, "p")


def test_short_pin_and_puk_equal_to_pin_are_refused(sdaemon):
    d = sdaemon
    d.create("s", token={"type": "soft"})
    r = d.cli("change-pin", "--pin-file", pin_file(d, "12", PUK), "s", check=False)
    assert r.returncode != 0 and "at least 4" in r.stderr
    r = d.cli("change-pin", "--pin-file", pin_file(d, "qwertzui", "qwertzui"), "s", check=False)
    assert r.returncode != 0 and "PUK" in r.stderr
    assert enc(d, "s")["paired"] is False


def test_unencrypted_container_is_shown_as_such(sdaemon):
    d = sdaemon
    d.create("plain", token="none")
    e = enc(d, "plain")
    assert (e["backend"], e["token"]) == ("none", "none")
    d.cli("start", "plain", input="")  # no PIN asked
    write_marker(d, "plain")
    d.cli("stop", "--kill", "plain")
    assert "none (" in d.cli("state", "plain").stdout
    # honest: without a token the data is stored in clear
    wait_for(lambda: loops_backed_by(d.base) == [], what="the volume to be released")
    assert MARKER.encode() in (container_dir(d, "plain") / "data.img").read_bytes()
    r = d.cli("change-pin", "--pin-file", pin_file(d, PIN, PUK), "plain", check=False)
    assert r.returncode != 0 and "has no token" in r.stderr


def test_tmpfs_data_cannot_take_a_token(sdaemon):
    d = sdaemon
    path = d.configs / "t.json"
    path.write_text(f'{{"name":"t","rootfs":{{"path":"{d.rootfs}"}},"data_size_mb":0,'
                    f'"token":{{"type":"soft"}}}}')
    r = d.cli("create", path, check=False)
    assert r.returncode != 0 and "$.token" in r.stderr


# ---- PINs, lockout, PUK -----------------------------------------------------------------------

def test_lockout_persists_across_scd_and_trustmed_restarts(sdaemon):
    d = sdaemon
    create_paired(d, "lk")
    # a correct PIN before the limit resets the counter
    assert start(d, "lk", pin="0000", check=False).returncode != 0
    assert start(d, "lk", pin="1111", check=False).returncode != 0
    assert enc(d, "lk")["pin_tries_left"] == 1
    start(d, "lk")
    assert enc(d, "lk")["pin_tries_left"] == 3
    d.cli("stop", "--kill", "lk")

    for wrong in ("0000", "1111", "2222"):
        assert start(d, "lk", pin=wrong, check=False).returncode != 0
    e = enc(d, "lk")
    assert e["locked"] is True and e["pin_tries_left"] == 0
    r = start(d, "lk", check=False)
    assert r.returncode != 0 and "locked" in r.stderr and "token unlock" in r.stderr
    assert "LOCKED" in d.cli("state", "lk").stdout

    old = d.scd_pid()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: d.scd_pid() not in (None, old), what="scd to be restarted")
    wait_for(lambda: enc(d, "lk").get("status_known"), what="the token state after the restart")
    assert enc(d, "lk")["locked"] is True
    d.restart()
    wait_for(lambda: enc(d, "lk").get("status_known"), what="the token state after the restart")
    assert enc(d, "lk")["locked"] is True
    assert start(d, "lk", check=False).returncode != 0, "even the right PIN is refused"

    events = [(e["event"], e["result"]) for e in d.audit_events()]
    assert ("token.unlock", "fail") in events and ("token.unlock", "ok") in events
    assert ("token.lockout", "fail") in events


def test_puk_unlock(sdaemon):
    d = sdaemon
    create_paired(d, "pk")
    for wrong in ("0000", "1111", "2222"):
        start(d, "pk", pin=wrong, check=False)
    assert enc(d, "pk")["locked"]
    r = d.cli("token", "unlock", "--pin-file", pin_file(d, "87654321", "5173"), "pk", check=False)
    assert r.returncode != 0 and "wrong PUK" in r.stderr
    assert enc(d, "pk")["puk_tries_left"] == 9
    d.cli("token", "unlock", "--pin-file", pin_file(d, PUK, "5173"), "pk")
    e = enc(d, "pk")
    assert e["locked"] is False and e["pin_tries_left"] == 3
    assert start(d, "pk", check=False).returncode != 0, "the old PIN is gone"
    start(d, "pk", pin="5173")
    events = [(e["event"], e["result"]) for e in d.audit_events()]
    assert ("token.puk_unlock", "fail") in events and ("token.puk_unlock", "ok") in events


def test_change_pin(sdaemon):
    d = sdaemon
    create_paired(d, "cp")
    start(d, "cp")
    write_marker(d, "cp")
    d.cli("stop", "--kill", "cp")
    r = d.cli("change-pin", "--pin-file", pin_file(d, "0000", "4862"), "cp", check=False)
    assert r.returncode != 0 and "wrong PIN" in r.stderr
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, "4862"), "cp")
    assert start(d, "cp", check=False).returncode != 0, "the old PIN fails"
    start(d, "cp", pin="4862")
    assert d.sh("cp", f"cat /root/{SECRET_NAME}").stdout == f"{MARKER}\n", "same data, new PIN"
    events = [(e["event"], e["result"]) for e in d.audit_events()]
    assert ("token.pin_change", "ok") in events and ("token.pin_change", "fail") in events


# ---- wipe ----------------------------------------------------------------------------------

def test_wipe_erases_and_an_old_wrapped_key_is_useless(sdaemon):
    d = sdaemon
    create_paired(d, "wp")
    start(d, "wp")
    write_marker(d, "wp")
    d.cli("stop", "--kill", "wp")
    cdir = container_dir(d, "wp")
    old_key = (cdir / "key.wrapped").read_bytes()
    r = d.cli("wipe", "wp", check=False)
    assert r.returncode == 0, r.stderr
    assert not (cdir / "key.wrapped").exists() and not (cdir / "data.img").exists()
    e = enc(d, "wp")
    assert e["paired"] is False and e["key_created"] is False
    assert list((d.data_dir / "scd/tokens").glob(d.state("wp")["uuid"] + "*")) == []

    create_paired_again = d.cli("change-pin", "--pin-file", pin_file(d, PIN, PUK), "wp")
    assert create_paired_again.returncode == 0
    start(d, "wp")
    assert d.sh("wp", f"cat /root/{SECRET_NAME}", check=False).returncode != 0, "begins empty"
    d.cli("stop", "--kill", "wp")

    (cdir / "key.wrapped").write_bytes(old_key)  # a copy kept from before the wipe
    r = start(d, "wp", check=False)
    assert r.returncode != 0 and "authenticate" in r.stderr
    assert_nothing_mounted(d, "wp")
    assert ("container.wipe", "ok") in [(e["event"], e["result"]) for e in d.audit_events()]


def test_wipe_refuses_a_running_container_and_remove_wipes(sdaemon):
    d = sdaemon
    create_paired(d, "rm")
    start(d, "rm")
    r = d.cli("wipe", "rm", check=False)
    assert r.returncode != 0 and "stop it before wiping" in r.stderr
    d.cli("stop", "--kill", "rm")
    uuid = d.state("rm")["uuid"]
    assert list((d.data_dir / "scd/tokens").glob(uuid + "*"))
    d.cli("remove", "rm")
    assert list((d.data_dir / "scd/tokens").glob(uuid + "*")) == []
    assert not (d.data_dir / "containers" / uuid).exists()


# ---- the token service failing -----------------------------------------------------------

def test_scd_killed_during_a_start(sdaemon):
    d = sdaemon
    create_paired(d, "k")
    start(d, "k")
    write_marker(d, "k")
    d.cli("stop", "--kill", "k")
    old = d.scd_pid()
    os.kill(old, signal.SIGSTOP)  # the start will wait on it
    try:
        cmd = [str(BUILD / "src/cli/trustme"), "--run-dir", str(d.run_dir), "start", "--pin-file",
               str(pin_file(d, PIN)), "k"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: d.state("k")["state"] == "starting", what="the start to wait for scd")
    finally:
        os.kill(old, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "token service" in err
    st = d.state("k")
    assert st["state"] == "stopped" and "token service" in st["last_error"]
    assert_nothing_mounted(d, "k")
    wait_for(lambda: d.scd_pid() not in (None, old), what="scd to come back")
    wait_for(lambda: enc(d, "k").get("status_known"), what="the new scd to report")
    start(d, "k")
    assert d.sh("k", f"cat /root/{SECRET_NAME}").stdout == f"{MARKER}\n"


# ---- PKCS#11 (SoftHSM2) ----------------------------------------------------------------------

@pytest.fixture
def softhsm(test_root):
    """A SoftHSM2 token of our own, readable by the token service's user."""
    if not Path(SOFTHSM).exists():
        pytest.skip(f"SoftHSM2 is not installed ({SOFTHSM} missing)")
    base = Path(subprocess.run([tool("mktemp"), "-d", str(test_root / "hsm-XXXXXX")], capture_output=True,
                               text=True, check=True).stdout.strip())
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    subprocess.run([tool("softhsm2-util"), "--init-token", "--free", "--label", "box", "--pin", PIN,
                    "--so-pin", "87654321"], env=env, check=True, capture_output=True)
    shutil.chown(base, "trustme-scd", "trustme-scd")
    for p in base.rglob("*"):
        shutil.chown(p, "trustme-scd", "trustme-scd")
    base.chmod(0o755)
    yield base, conf
    shutil.rmtree(base, ignore_errors=True)


def test_pkcs11_token_flows(make_daemon, softhsm):
    base, conf = softhsm
    d = make_daemon(extra_args=[*KDF, "--scd-bind", str(base)], env={"SOFTHSM2_CONF": str(conf)})
    token = {"type": "pkcs11", "module": SOFTHSM, "label": "box"}
    create_paired(d, "hsm", token=token)
    e = enc(d, "hsm")
    assert (e["token"], e["paired"]) == ("pkcs11", True)
    start(d, "hsm")
    write_marker(d, "hsm")
    d.cli("stop", "--kill", "hsm")
    wait_for(lambda: loops_backed_by(d.base) == [], what="the volume to be released")
    assert MARKER.encode() not in (container_dir(d, "hsm") / "data.img").read_bytes()

    # lockout by our own counter, persisted across an scd restart, unlocked with the SO PIN
    for wrong in ("0000", "1111", "2222"):
        r = start(d, "hsm", pin=wrong, check=False)
        assert r.returncode != 0
    assert enc(d, "hsm")["locked"] is True
    old = d.scd_pid()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: d.scd_pid() not in (None, old), what="scd to be restarted")
    wait_for(lambda: enc(d, "hsm").get("status_known"), what="the token state")
    assert enc(d, "hsm")["locked"] is True
    assert start(d, "hsm", check=False).returncode != 0
    d.cli("token", "unlock", "--pin-file", pin_file(d, "87654321", "2468"), "hsm")
    start(d, "hsm", pin="2468")
    assert d.sh("hsm", f"cat /root/{SECRET_NAME}").stdout == f"{MARKER}\n"
    d.cli("stop", "--kill", "hsm")

    # PIN change: the token's own PIN changes
    d.cli("change-pin", "--pin-file", pin_file(d, "2468", "1357"), "hsm")
    assert start(d, "hsm", pin="2468", check=False).returncode != 0
    start(d, "hsm", pin="1357")
    d.cli("stop", "--kill", "hsm")

    # wipe with the PIN destroys the key object on the token too
    d.cli("wipe", "--pin-file", pin_file(d, "1357"), "hsm")
    assert enc(d, "hsm")["paired"] is False
    objects = subprocess.run([tool("pkcs11-tool"), "--module", SOFTHSM, "--token-label", "box", "--login",
                              "--pin", "1357", "--list-objects"], capture_output=True, text=True,
                             env=dict(os.environ, SOFTHSM2_CONF=str(conf))).stdout
    assert d.state("hsm")["uuid"] not in objects


# ---- device config: the dm-crypt backend -----------------------------------------------------

def test_dmcrypt_backend_is_refused_without_device_mapper(make_daemon):
    d = make_daemon(start=False)
    d.data_dir.mkdir(parents=True, exist_ok=True)
    (d.data_dir / "device.json").write_text('{"storage": {"backend": "dm-crypt"}}')
    if Path("/dev/mapper/control").exists():
        pytest.skip("this kernel has device-mapper: the refusal cannot be shown here")
    with pytest.raises(RuntimeError, match="device-mapper"):
        d.start()


def test_device_config_is_strict(make_daemon):
    d = make_daemon(start=False)
    d.data_dir.mkdir(parents=True, exist_ok=True)
    (d.data_dir / "device.json").write_text('{"storage": {"backend": "rot13"}}')
    with pytest.raises(RuntimeError, match=r"\$\.storage\.backend"):
        d.start()
    (d.data_dir / "device.json").write_text('{"storage": {"backend": "fscrypt"}, "x": 1}')
    with pytest.raises(RuntimeError, match=r"\$\.x"):
        d.start()


@pytest.mark.skipif(not Path("/dev/mapper/control").exists(),
                    reason="this kernel has no device-mapper (CONFIG_MD is off): dm-crypt and "
                           "dm-integrity cannot run here; see docs/STORAGE.md")
def test_dmcrypt_marker_is_ciphertext_after_stop(make_daemon):
    d = make_daemon(start=False, extra_args=KDF)
    d.data_dir.mkdir(parents=True, exist_ok=True)
    (d.data_dir / "device.json").write_text('{"storage": {"backend": "dm-crypt"}, '
                                            '"policy": {"allow_unsigned": true}}')
    d.start()
    create_paired(d, "dm")
    start(d, "dm")
    assert enc(d, "dm")["backend"] == "dm-crypt"
    write_marker(d, "dm")
    d.cli("stop", "--kill", "dm")
    wait_for(lambda: loops_backed_by(d.base) == [], what="the volume to be released")
    raw = (container_dir(d, "dm") / "data.img").read_bytes()
    assert MARKER.encode() not in raw and SECRET_NAME.encode() not in raw
    start(d, "dm")
    assert d.sh("dm", f"cat /root/{SECRET_NAME}").stdout == f"{MARKER}\n"


def test_autostart_skips_an_encrypted_container(sdaemon):
    d = sdaemon
    create_paired(d, "auto", autostart=True)
    d.create("autoplain", autostart=True)
    d.restart()
    wait_for(lambda: d.state("autoplain")["state"] == "running", what="the plain one to start")
    assert d.state("auto")["state"] == "stopped"
    assert ("container.autostart", "fail") in [(e["event"], e["result"]) for e in d.audit_events()]


def test_running_encrypted_container_is_readopted(sdaemon):
    """trustmed dies: the key stays in the running container's file system, the next trustmed
    adopts it, and the stop still takes the key away."""
    d = sdaemon
    create_paired(d, "ad")
    start(d, "ad")
    write_marker(d, "ad")
    d.kill9()
    d.start()
    assert d.state("ad")["adopted"] is True
    assert d.sh("ad", f"cat /root/{SECRET_NAME}").stdout == f"{MARKER}\n"
    wait_for(lambda: enc(d, "ad").get("status_known"), what="the token state")
    assert enc(d, "ad")["paired"] is True
    d.cli("stop", "--kill", "ad")
    wait_for(lambda: loops_backed_by(d.base) == [], what="the volume to be released")
    with host_mount(d, container_dir(d, "ad") / "data.img") as mnt:
        assert key_identifier_and_status(mnt / "encrypted")[1] == KEY_STATUS_ABSENT


# ---- PINs on a terminal ---------------------------------------------------------------------

def on_terminal(cmd, answers, timeout=30):
    """Run cmd on a new pseudo terminal, answering each prompt in turn; (status, output)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(cmd[0], cmd)
    out = b""
    deadline = time.time() + timeout

    pos = 0  # where the next prompt is looked for: after the last one answered

    def read_until(want):
        """Read until want appears after pos (None: to the end); True if it did."""
        nonlocal out
        while (want is None or want not in out[pos:]) and time.time() < deadline:
            if not select.select([fd], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side is gone
                break
            if not chunk:
                break
            out += chunk
        return want is not None and want in out[pos:]

    try:
        for prompt, answer in answers:
            assert read_until(prompt.encode()), f"no prompt {prompt!r} in {out!r}"
            pos = out.index(prompt.encode(), pos) + len(prompt)
            if answer is not None:
                os.write(fd, answer.encode() + b"\n")
        read_until(None)
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_pins_on_a_terminal_are_not_echoed(sdaemon):
    d = sdaemon
    path = d.configs / "tty.json"
    path.write_text(f'{{"name":"tty","rootfs":{{"path":"{d.rootfs}"}},"init":"/bin/sleep",'
                    f'"args":["1000000"],"token":{{"type":"soft"}}}}')
    cli = [str(BUILD / "src/cli/trustme"), "--run-dir", str(d.run_dir)]
    status, out = on_terminal([*cli, "create", str(path)], [
        ("New PIN for tty", "4826"), ("Repeat New PIN", "4827"),      # a typo: asked again
        ("differ", None),
        ("New PIN for tty", "4826"), ("Repeat New PIN", "4826"),
        ("PUK for tty", "93716482"), ("Repeat PUK", "93716482")])
    assert status == 0, out
    assert "PIN and PUK set" in out and "4826" not in out and "93716482" not in out
    status, out = on_terminal([*cli, "start", "tty"], [("PIN for tty", "4826")])
    assert status == 0 and "tty started" in out and "4826" not in out, out


# ---- root doing file operations, and a copy of the data directory ---------------------------

def token_files(d, name):
    uuid = d.state(name)["uuid"]
    return {p.name: p for p in (d.data_dir / "scd/tokens").glob(uuid + ".*")}


def snapshot(paths):
    return {p: p.read_bytes() for p in paths if p.exists()}


def restore(snap):
    for p, data in snap.items():
        p.write_bytes(data)


def anchor_files(d):
    return anchors.files(d.data_dir / "tpm")


def offline_guesses(soft_path, uuid, guesses, slot_name="pin"):
    """The attacker with a copy of <uuid>.soft: scrypt each guess with the file's parameters and
    see whether the slot's GCM tag fits, as the file's own format describes it; also through
    HKDF with an empty salt (the KDF chain without a device secret). Returns the guesses that
    opened the slot."""
    import base64
    import hashlib
    import json as js
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    f = js.loads(Path(soft_path).read_text())
    kdf, slot = f["kdf"], f[slot_name]
    salt, nonce, ct = (base64.b64decode(slot[k]) for k in ("salt", "nonce", "ct"))
    aad = f"trustme soft token v{f['version']}:{uuid}:{slot_name}".encode()
    found = []
    for g in guesses:
        k = hashlib.scrypt(g.encode(), salt=salt, n=kdf["N"], r=kdf["r"], p=kdf["p"],
                           maxmem=1 << 30, dklen=32)
        for key in (k, HKDF(hashes.SHA256(), 32, None, b"trustme soft token slot v2").derive(k)):
            try:
                AESGCM(key).decrypt(nonce, ct, aad)
                found.append(g)
            except InvalidTag:
                pass
    return found


def test_offline_guess_loop_over_token_files_confirms_nothing(sdaemon):
    """With copies of every file of the data dir (the token files, the wrapped key, tpmd's
    files), a guess loop that has the right PIN and PUK among its guesses confirms neither: the
    slot keys need the TPM-sealed device secret."""
    d = sdaemon
    create_paired(d, "ofl")
    start(d, "ofl")
    d.cli("stop", "--kill", "ofl")
    uuid = d.state("ofl")["uuid"]
    copy = d.base / "stolen"
    shutil.copytree(d.data_dir, copy, symlinks=True)
    soft = copy / "scd/tokens" / f"{uuid}.soft"
    guesses = ["0000", "1111", "2468", PIN, "9999"]
    assert offline_guesses(soft, uuid, guesses) == [], "the file alone confirmed a PIN"
    assert offline_guesses(soft, uuid, ["00000000", PUK], "puk") == [], "it confirmed the PUK"
    # and on the device it still works
    start(d, "ofl")


def test_lockout_survives_deleting_and_restoring_every_counter_file(sdaemon):
    """Between wrong guesses, root deletes or restores every file that bears a count (scd's
    tries file, its token files, tpmd's anchor table), also across scd and trustmed restarts:
    no fourth try, and a missing or older anchor table fails closed."""
    d = sdaemon
    create_paired(d, "dl")
    start(d, "dl")
    d.cli("stop", "--kill", "dl")
    files = token_files(d, "dl")
    tries = d.data_dir / "scd/tokens" / (d.state("dl")["uuid"] + ".tries")
    fresh = snapshot(list(files.values()) + [tries] + anchor_files(d))  # count 0

    assert start(d, "dl", pin="0000", check=False).returncode != 0
    tries.unlink(missing_ok=True)  # delete after a guess
    assert start(d, "dl", pin="1111", check=False).returncode != 0
    restore({p: b for p, b in fresh.items() if p.parent.name == "tokens"})  # restore scd's files
    old = d.scd_pid()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: d.scd_pid() not in (None, old), what="scd to be restarted")
    # a new scd process is not yet a serving one: trustmed answers "being restarted" until
    # it has reconnected, so wait for the token state it reads back from the new scd
    wait_for(lambda: enc(d, "dl").get("status_known"), what="the token state after the restart")
    r = start(d, "dl", pin="2222", check=False)
    assert r.returncode != 0 and "locked" in r.stderr, r.stderr
    e = enc(d, "dl")
    assert e["locked"] is True and e["pin_tries_left"] == 0

    # the fourth try, with the right PIN, after every kind of file operation:
    tries.unlink(missing_ok=True)
    r = start(d, "dl", check=False)
    assert r.returncode != 0 and "locked" in r.stderr, "deleting the tries file lifted the lock"
    d.stop()
    restore(fresh)  # scd's files and tpmd's anchor table as they were at count 0
    for p in anchor_files(d):
        if p not in fresh:
            p.unlink(missing_ok=True)
    d.start()
    r = start(d, "dl", check=False)
    assert r.returncode != 0, "a restored anchor table lifted the lock"
    assert "older" in r.stderr and "anchor" in r.stderr, r.stderr
    assert ("tpm.anchor", "fail") in [(e["event"], e["result"]) for e in d.audit_events()]
    d.stop()
    for p in anchors.slots(d.data_dir / "tpm"):
        p.unlink(missing_ok=True)
    d.start()
    r = start(d, "dl", check=False)
    assert r.returncode != 0 and "missing" in r.stderr, "a deleted anchor table lifted the lock"


def test_lockout_after_trustmed_restart_with_restored_token_files(sdaemon):
    """With the anchor table left alone: scd's files restored across a trustmed restart
    give no try back, and the right PIN still works after the PUK."""
    d = sdaemon
    create_paired(d, "rs")
    files = token_files(d, "rs")
    tries = d.data_dir / "scd/tokens" / (d.state("rs")["uuid"] + ".tries")
    fresh = snapshot(list(files.values()) + [tries])
    for wrong in ("0000", "1111"):
        assert start(d, "rs", pin=wrong, check=False).returncode != 0
    d.stop()
    restore(fresh)
    tries.unlink(missing_ok=True)
    d.start()
    # list and state show the anchored count, not scd's restored one
    wait_for(lambda: enc(d, "rs").get("pin_tries_left") == 1, timeout=10,
             what="the anchored count after the restart")
    r = start(d, "rs", pin="2222", check=False)
    assert r.returncode != 0 and "locked" in r.stderr
    assert start(d, "rs", check=False).returncode != 0
    d.cli("token", "unlock", "--pin-file", pin_file(d, PUK, "8264"), "rs")
    start(d, "rs", pin="8264")


def test_one_containers_lockout_does_not_lock_another(sdaemon):
    d = sdaemon
    create_paired(d, "la")
    create_paired(d, "lb")
    for wrong in ("0000", "1111", "2222"):
        assert start(d, "la", pin=wrong, check=False).returncode != 0
    assert enc(d, "la")["locked"] is True
    assert enc(d, "lb")["pin_tries_left"] == 3
    start(d, "lb")


def test_parallel_wrong_starts_check_one_pin(sdaemon):
    d = sdaemon
    create_paired(d, "par")
    path = pin_file(d, "0000")
    cmd = [str(TRUSTME), "--run-dir", str(d.run_dir), "start", "--pin-file", str(path), "par"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(20)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode != 0 for p in procs)
    # each answer is one of: the PIN was checked ("wrong PIN: ..."), another operation was under
    # way (busy), or the token was locked by then (found by scd, or already known to trustmed,
    # which then refuses before asking: "its token is locked after too many wrong PINs"); never
    # more checks than tries
    checked = [err for _, err in outs if "wrong PIN:" in err]
    others = [err for _, err in outs if "wrong PIN:" not in err]
    refusals = ("under way", "is starting", "locked after 3 wrong PINs",
                "its token is locked after too many wrong PINs")
    assert all(any(w in e for w in refusals) for e in others), sorted(set(others))
    assert 1 <= len(checked) <= 3
    assert enc(d, "par")["pin_tries_left"] == 3 - len(checked)


def test_old_token_files_are_refused_after_change_pin(sdaemon):
    """Restoring the .soft from before a PIN change does not bring the old PIN back."""
    d = sdaemon
    create_paired(d, "oc")
    start(d, "oc")
    d.cli("stop", "--kill", "oc")
    before = snapshot(token_files(d, "oc").values())
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, "4862"), "oc")
    after = snapshot(token_files(d, "oc").values())
    restore(before)
    r = start(d, "oc", check=False)
    assert r.returncode != 0 and "anchored" in r.stderr, r.stderr
    r = start(d, "oc", pin="4862", check=False)
    assert r.returncode != 0, "files that are not the anchored ones are refused altogether"
    restore(after)
    start(d, "oc", pin="4862")


def test_old_soft_swapped_in_after_the_anchor_check_is_refused(sdaemon):
    """Found in review: scd compared the anchored digest with the token files, then took the
    tokens directory's lock and read them again to use them. Root holds that lock (flock on the
    directory), waits for scd to block on it after the check, swaps in the .soft from before a
    PIN change and lets go: the old PIN opened the data. The files must be checked and used as
    the same bytes."""
    d = sdaemon
    create_paired(d, "sw")
    start(d, "sw")
    d.cli("stop", "--kill", "sw")
    soft = token_files(d, "sw")[d.state("sw")["uuid"] + ".soft"]
    old = soft.read_bytes()
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, "4862"), "sw")
    cur = soft.read_bytes()
    scd = d.scd_pid()
    fd = os.open(soft.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        cmd = [str(TRUSTME), "--run-dir", str(d.run_dir), "start", "--pin-file",
               str(pin_file(d, PIN)), "sw"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: "lock" in Path(f"/proc/{scd}/wchan").read_text(), timeout=20,
                 what="scd to wait for the tokens directory's lock")
        tmp = soft.with_name("swap-tmp")
        tmp.write_bytes(old)
        os.replace(tmp, soft)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    _, err = p.communicate(timeout=60)
    soft.write_bytes(cur)
    assert p.returncode != 0, "the old .soft, swapped in after the check, opened the data"
    assert "anchored" in err, err
    assert_nothing_mounted(d, "sw")
    start(d, "sw", pin="4862")
    d.cli("stop", "--kill", "sw")


def test_restored_copies_after_wipe_are_useless(sdaemon):
    """After a wipe, the copied token files, wrapped key and data image are refused."""
    d = sdaemon
    create_paired(d, "ow")
    start(d, "ow")
    write_marker(d, "ow")
    d.cli("stop", "--kill", "ow")
    cdir = container_dir(d, "ow")
    tries = d.data_dir / "scd/tokens" / (d.state("ow")["uuid"] + ".tries")
    kept = snapshot(list(token_files(d, "ow").values()) + [tries, cdir / "key.wrapped",
                                                           cdir / "data.img"])
    d.cli("wipe", "ow")
    restore(kept)
    r = start(d, "ow", check=False)
    assert r.returncode != 0, r.stderr
    assert_nothing_mounted(d, "ow")
    d.restart()  # scd now reports the restored token as paired
    wait_for(lambda: enc(d, "ow").get("status_known"), what="the token state after the restart")
    assert enc(d, "ow")["paired"] is True
    r = start(d, "ow", check=False)
    assert r.returncode != 0 and "wiped" in r.stderr, r.stderr
    assert_nothing_mounted(d, "ow")


def test_emulated_tpm_is_reported_and_a_copied_data_dir(make_daemon):
    """With the embedded swtpm the device binding is emulated, and trustme says so (log,
    device info, list, state). Its state lives outside the data dir: a copy of the data dir
    alone, started on another path, opens nothing; a copy that takes the emulator's state along
    is this device (the honest limit of an emulator); with tpm.require_hardware encrypted
    containers are refused outright."""
    import json as js
    d = make_daemon(extra_args=KDF)
    create_paired(d, "em")
    start(d, "em")
    d.cli("stop", "--kill", "em")
    info = js.loads(d.cli("device", "info", "--json").stdout)
    assert info["emulated"] is True and info["require_hardware"] is False
    assert info["swtpm_state_dir"] == str(d.base / "swtpm-state")
    assert "EMULATED" in d.cli("device", "info").stdout
    assert "emulated-tpm" in d.cli("list").stdout
    assert enc(d, "em")["tpm_emulated"] is True
    assert "device binding:  EMULATED" in d.cli("state", "em").stdout
    assert "the device binding of encrypted containers is emulated" in d.log()
    assert not (d.data_dir / "tpm/swtpm").exists(), "the emulator's state is in the data dir"
    assert (d.base / "swtpm-state/swtpm").is_dir()
    d.stop()

    e = make_daemon(extra_args=KDF, start=False)
    subprocess.run([tool("cp"), "-a", str(d.data_dir), str(e.data_dir)], check=True)
    e.start()
    r = start(e, "em", check=False)
    assert r.returncode != 0, "a copy of the data dir alone opened a container"
    e.stop()

    shutil.rmtree(e.base / "swtpm-state", ignore_errors=True)
    subprocess.run([tool("cp"), "-a", str(d.base / "swtpm-state"), str(e.base / "swtpm-state")],
                   check=True)
    e.start()
    start(e, "em")  # the copy with the emulator's state is this device: documented, not hidden
    e.cli("stop", "--kill", "em")
    e.stop()

    device = e.data_dir / "device.json"
    config = js.loads(device.read_text())
    config["tpm"]["require_hardware"] = True
    device.write_text(js.dumps(config) + "\n")
    e.start()
    r = start(e, "em", check=False)
    assert r.returncode != 0 and "require_hardware" in r.stderr, r.stderr
    assert "encrypted containers are refused" in e.cli("device", "info").stdout
    e.create("nw", token={"type": "soft"})
    r = e.cli("change-pin", "--pin-file", pin_file(e, PIN, PUK), "nw", check=False)
    assert r.returncode != 0 and "require_hardware" in r.stderr, r.stderr


# ---- PIN policy, secrets in memory, core dumps ----------------------------------------------

def test_pin_policy_refusals(sdaemon):
    d = sdaemon
    d.create("pp", token={"type": "soft"})
    cases = [
        (b"0000\n" + PUK.encode() + b"\n", "trivial"),
        (b"1234\n" + PUK.encode() + b"\n", "trivial"),
        (b"    \n" + PUK.encode() + b"\n", "whitespace"),
        (b"\xff\xfe\xfd\xfc\n" + PUK.encode() + b"\n", "UTF-8"),
        (b"12\n" + PUK.encode() + b"\n", "at least 4"),
    ]
    for data, why in cases:
        path = d.base / f"pins-{time.monotonic_ns()}"
        path.write_bytes(data)
        r = d.cli("change-pin", "--pin-file", path, "pp", check=False)
        assert r.returncode != 0 and why in r.stderr, (data, r.stderr)
        assert enc(d, "pp")["paired"] is False
    # a PIN file with CRLF line endings: the line ending is stripped, not made part of the PIN
    path = d.base / "pins-crlf"
    path.write_bytes(b"7391\r\n" + PUK.encode() + b"\r\n")
    d.cli("change-pin", "--pin-file", path, "pp")
    start(d, "pp", pin="7391")
    d.cli("stop", "--kill", "pp")
    # refused at create: nothing is left behind
    cfg = d.configs / "refusedpin.json"
    cfg.write_text(f'{{"name":"refusedpin","rootfs":{{"path":"{d.rootfs}"}},"token":{{"type":"soft"}}}}')
    r = d.cli("create", "--pin-file", pin_file(d, "1111", PUK), cfg, check=False)
    assert r.returncode != 0 and "trivial" in r.stderr and "not created" in r.stderr, r.stderr
    assert "refusedpin" not in [c["name"] for c in d.containers()]
    assert list((d.data_dir / "containers").glob("*")) == [
        container_dir(d, "pp")], "a refused create left a container directory"


def test_pin_policy_is_configurable(make_daemon):
    from conftest import DEV_DEVICE_JSON
    import json as js
    d = make_daemon(extra_args=KDF, start=False)
    d.data_dir.mkdir(parents=True, exist_ok=True)
    config = js.loads(DEV_DEVICE_JSON)
    config["pin"] = {"min_length": 6, "allow_trivial": True}
    (d.data_dir / "device.json").write_text(js.dumps(config) + "\n")
    d.start()
    d.create("pq", token={"type": "soft"})
    r = d.cli("change-pin", "--pin-file", pin_file(d, "73915", PUK), "pq", check=False)
    assert r.returncode != 0 and "at least 6" in r.stderr, r.stderr
    d.cli("change-pin", "--pin-file", pin_file(d, "111111", PUK), "pq")  # trivial allowed here


def process_memory_contains(pid, needles):
    """Search every readable mapping of pid for the needles (bytes); returns those found."""
    found = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if "r" not in perms:
                continue
            start_, end_ = (int(x, 16) for x in addr.split("-"))
            # Beyond 1 GiB it is a sanitizer's shadow memory (reserved, never a copy of
            # trustmed's data); the rest is read in overlapping chunks, not all at once.
            if end_ - start_ > 1 << 30:
                continue
            overlap = max(len(n) for n in needles)
            pos, tail = start_, b""
            while pos < end_:
                try:
                    mem.seek(pos)
                    chunk = mem.read(min(1 << 20, end_ - pos))
                except (OSError, OverflowError, ValueError):
                    break
                if not chunk:
                    break
                data = tail + chunk
                found.update(n for n in needles if n in data)
                tail = data[-overlap:]
                pos += len(chunk)
    return found


def test_pins_and_puks_are_not_left_in_trustmeds_memory(sdaemon):
    """The PUK and PIN of a request are wiped from every copy trustmed made (the frame read on
    its stack, the unpacked request, the copies kept across the round trips to tpmd)."""
    d = sdaemon
    pin, puk = "Pn-4f8e2a91", "Pk-93b1c7d0e5"
    create_paired(d, "mem", pin=pin, puk=puk)
    start(d, "mem", pin=pin)
    d.cli("stop", "--kill", "mem")
    d.cli("change-pin", "--pin-file", pin_file(d, pin, pin + "x"), "mem")
    d.cli("list")
    found = process_memory_contains(d.proc.pid, [pin.encode(), puk.encode()])
    assert found == set(), f"trustmed's memory still holds {found}"


def helper_pid(d, comm):
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == d.proc.pid and stat.split("(", 1)[1].startswith(comm[:15] + ")"):
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def test_a_crash_leaves_no_core(make_daemon, tmp_path):
    """trustmed, scd and tpmd hold keys and PINs: not dumpable and a core limit of 0, so
    SIGSEGV or SIGABRT writes no core even where the limit would allow one."""
    import resource
    cwd = os.getcwd()
    old = resource.getrlimit(resource.RLIMIT_CORE)
    where = tmp_path / "cores"
    where.mkdir()
    where.chmod(0o1777)
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    os.chdir(where)
    try:
        d = make_daemon(extra_args=KDF)
        scd = d.scd_pid()
        tpmd = wait_for(lambda: helper_pid(d, "trustme-tpmd"), what="tpmd")
        for pid in (d.proc.pid, scd, tpmd):
            limits = Path(f"/proc/{pid}/limits").read_text()
            line = next(l for l in limits.splitlines() if l.startswith("Max core file size"))
            assert line.split()[4:6] == ["0", "0"], (pid, line)
        # not dumpable: /proc/PID/status belongs to root even for the helpers' own users. A
        # helper found right after its exec is still being linked (dumpable until its main()
        # runs, holding nothing yet): wait for its main to have run; a helper that never turns
        # non-dumpable times out here.
        for pid in (scd, tpmd):
            wait_for(lambda: os.stat(f"/proc/{pid}/status").st_uid == 0, what=f"pid {pid} not dumpable")
        os.kill(tpmd, signal.SIGSEGV)
        wait_for(lambda: helper_pid(d, "trustme-tpmd") not in (None, tpmd), what="tpmd again")
        os.kill(d.proc.pid, signal.SIGABRT)
        d.proc.wait(timeout=30)
        time.sleep(0.5)
        assert [p.name for p in where.iterdir()] == [], "a crash left a core"
    finally:
        os.chdir(cwd)
        resource.setrlimit(resource.RLIMIT_CORE, old)


def test_a_container_sees_no_host_paths_of_data_images(sdaemon):
    """From inside a container, neither the loop devices' backing files (other containers'
    data images, by UUID) nor /proc/mounts (the overlay's options) show host paths."""
    d = sdaemon
    create_paired(d, "hp1")
    create_paired(d, "hp2")
    start(d, "hp1")
    start(d, "hp2")
    host = str(d.base)
    uuids = [d.state(n)["uuid"] for n in ("hp1", "hp2")]
    for name in ("hp1", "hp2"):
        r = d.sh(name, "cat /sys/block/loop*/loop/backing_file "
                       "/sys/devices/virtual/block/loop*/loop/backing_file 2>/dev/null; true")
        assert host not in r.stdout and not any(u in r.stdout for u in uuids), r.stdout
        for view in ("/proc/mounts", "/proc/self/mountinfo"):
            text = d.sh(name, f"cat {view}").stdout
            assert host not in text and not any(u in text for u in uuids), text
        # init's stdout and stderr (the console FIFO in the host's run dir)
        text = d.sh(name, "ls -l /proc/1/fd/").stdout
        assert host not in text and not any(u in text for u in uuids), text
    d.cli("stop", "--kill", "hp1")
    d.cli("stop", "--kill", "hp2")


def test_recovery_key_is_never_kept_in_the_data_dir(make_daemon, tmp_path):
    """The first seal's recovery key goes to the run dir (a tmpfs on a device), or to the
    path the admin names; the data dir (and a copy of it) never holds it, and one left there by
    a crash or an older trustme is moved out at the next start."""
    d = make_daemon(extra_args=KDF)
    create_paired(d, "rk")  # pairing needs the device secret: sealed by now
    key = d.run_dir / "tpm/recovery-key"
    wait_for(key.exists, what="the recovery key in the run dir")
    text = key.read_bytes().strip()
    assert len(text) == 64
    hits = [p for p in d.data_dir.rglob("*") if p.is_file() and text in p.read_bytes()]
    assert hits == [], f"the recovery key is in {hits}"
    d.stop()
    # an older trustme left it in the data dir: moved out at the next start
    (d.data_dir / "tpm/recovery-key").write_bytes(text + b"\n")
    named = d.base / "keys"
    named.mkdir()
    shutil.chown(named, user="trustme-tpm")
    d.extra_args += ["--recovery-key-file", str(named / "rk")]
    d.start()
    wait_for(lambda: (named / "rk").exists(), what="the recovery key at the named path")
    assert (named / "rk").read_bytes().strip() == text
    # tpmd writes the new place first, then erases the old one: wait for both
    wait_for(lambda: not (d.data_dir / "tpm/recovery-key").exists(),
             what="the recovery key gone from the data dir")


def test_an_unsealable_device_secret_costs_no_try(sdaemon):
    """A changed boot state (here: device.json's bytes) makes the device secret unsealable:
    starts are refused with that reason, and no PIN try is counted for it."""
    d = sdaemon
    create_paired(d, "ds")
    d.stop()
    device = d.data_dir / "device.json"
    device.write_text(device.read_text().rstrip("\n") + " \n")  # other bytes, same meaning
    d.start()
    for _ in range(4):
        r = start(d, "ds", check=False)
        assert r.returncode != 0 and "sealed to another boot state" in r.stderr, r.stderr
    wait_for(lambda: enc(d, "ds").get("status_known"), what="the token state")
    assert enc(d, "ds")["pin_tries_left"] == 3


# ---- re-keying and the two-phase change ---------------------------------------------------------

def key_file(d, name):
    return container_dir(d, name) / "key.wrapped"


def pending_files(d, name):
    uuid = d.state(name)["uuid"]
    return [d.data_dir / "scd/tokens" / f"{uuid}.soft.new", key_file(d, name).with_name("key.wrapped.new")]


def test_change_pin_and_puk_unlock_rekey_old_files_are_useless(sdaemon):
    """A PIN change and a PUK unlock give the token a new KEK and re-wrap key.wrapped (same
    data); the .soft and key.wrapped from before, restored together or the .soft alone, do not
    bring the old PIN back."""
    d = sdaemon
    create_paired(d, "rk")
    start(d, "rk")
    write_marker(d, "rk")
    d.cli("stop", "--kill", "rk")
    soft = token_files(d, "rk")[d.state("rk")["uuid"] + ".soft"]
    assert '"version":3' in soft.read_text()
    before = snapshot([soft, key_file(d, "rk")])
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, "4862"), "rk")
    assert key_file(d, "rk").read_bytes() != before[key_file(d, "rk")], "re-wrapped"
    assert all(not p.exists() for p in pending_files(d, "rk"))
    after = snapshot([soft, key_file(d, "rk")])
    for restored in (before, {soft: before[soft]}):
        restore(restored)
        for pin in (PIN, "4862"):
            r = start(d, "rk", pin=pin, check=False)
            assert r.returncode != 0 and "anchored" in r.stderr, r.stderr
        restore(after)
    start(d, "rk", pin="4862")
    assert d.sh("rk", f"cat /root/{SECRET_NAME}").stdout == f"{MARKER}\n", "same data, new KEK"
    d.cli("stop", "--kill", "rk")
    # a PUK unlock re-keys as well
    d.cli("token", "unlock", "--pin-file", pin_file(d, PUK, "5173"), "rk")
    assert key_file(d, "rk").read_bytes() != after[key_file(d, "rk")]
    unlocked = snapshot([soft, key_file(d, "rk")])
    restore(after)
    r = start(d, "rk", pin="4862", check=False)
    assert r.returncode != 0 and "anchored" in r.stderr, r.stderr
    restore(unlocked)
    start(d, "rk", pin="5173")
    d.cli("stop", "--kill", "rk")


def test_restored_and_forged_pending_files_are_removed_not_used(sdaemon):
    """Pending files nobody anchored: the .soft and key.wrapped from before a change, put back as
    <uuid>.soft.new and key.wrapped.new, and pending files root writes himself, are removed at the
    next use and never used; the old PIN stays refused, the new one works."""
    d = sdaemon
    create_paired(d, "pf")
    start(d, "pf")
    write_marker(d, "pf")
    d.cli("stop", "--kill", "pf")
    soft = token_files(d, "pf")[d.state("pf")["uuid"] + ".soft"]
    old_soft, old_key = soft.read_bytes(), key_file(d, "pf").read_bytes()
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, "4862"), "pf")
    soft_new, key_new = pending_files(d, "pf")
    for forged in ((old_soft, old_key), (b'{"version":3}', b"TMWK" + bytes(96))):
        soft_new.write_bytes(forged[0])
        key_new.write_bytes(forged[1])
        r = start(d, "pf", check=False)
        assert r.returncode != 0 and "wrong PIN" in r.stderr, r.stderr
        assert not soft_new.exists() and not key_new.exists(), "removed at the next use"
        start(d, "pf", pin="4862")
        assert d.sh("pf", f"cat /root/{SECRET_NAME}").stdout == f"{MARKER}\n"
        d.cli("stop", "--kill", "pf")


def hooks_built():
    import json
    opts = json.loads((BUILD / "meson-info/intro-buildoptions.json").read_text())
    return any(o["name"] == "test_hooks" and o["value"] is True for o in opts)


def crash_at(d, who, point):
    """Arm a crash point (src/lib/test_hooks.h): trustmed reads its data dir, scd its state dir."""
    where = d.data_dir / ("scd" if who == "scd" else "")
    f = where / "test-crash-at"
    f.write_text(point + "\n")
    st = where.stat()
    os.chown(f, st.st_uid, st.st_gid)  # scd must be able to remove it
    return f


# (point, who dies, the PIN that works afterwards)
CRASH_POINTS = [
    ("scd-pending-written", "scd", "old"),
    ("trustmed-pending-written", "trustmed", "old"),
    ("trustmed-pending-anchored", "trustmed", "new"),
    ("scd-committed", "scd", "new"),
    ("trustmed-committed", "trustmed", "new"),
]


@pytest.mark.skipif(not hooks_built(), reason="needs a build with -Dtest_hooks=true "
                    "(scripts/build.sh makes one)")
@pytest.mark.parametrize("point,who,works", CRASH_POINTS, ids=[p[0] for p in CRASH_POINTS])
@pytest.mark.parametrize("op", ["change-pin", "puk-unlock"])
def test_kill9_during_a_pin_change_never_bricks(sdaemon, point, who, works, op):
    """STORAGE.md "Changing a PIN": scd or trustmed killed (SIGKILL, at a crash point of a test
    build) at each step of a PIN change or PUK unlock. After the restart the container starts with
    exactly one of the two PINs, the one the anchor says — the new one once its pending digest was
    anchored — with its data, the other PIN is refused, no pending file is left behind, and a
    further change works."""
    d = sdaemon
    create_paired(d, "k9")
    start(d, "k9")
    write_marker(d, "k9")
    d.cli("stop", "--kill", "k9")
    armed = crash_at(d, who, point)
    scd = d.scd_pid()
    if op == "change-pin":
        r = d.cli("change-pin", "--pin-file", pin_file(d, PIN, "4862"), "k9", check=False)
    else:
        r = d.cli("token", "unlock", "--pin-file", pin_file(d, PUK, "4862"), "k9", check=False)
    assert r.returncode != 0, "the operation did not get its answer"
    assert not armed.exists(), f"{who} passed {point}"
    if who == "trustmed":
        d.proc.wait(timeout=10)
        d.start()
    else:
        wait_for(lambda: d.scd_pid() not in (None, scd), what="scd to be restarted")
    good, bad = (PIN, "4862") if works == "old" else ("4862", PIN)
    wait_for(lambda: enc(d, "k9").get("status_known"), what="the token state")
    r = start(d, "k9", pin=bad, check=False)
    assert r.returncode != 0 and "wrong PIN" in r.stderr, r.stderr
    start(d, "k9", pin=good)
    assert d.sh("k9", f"cat /root/{SECRET_NAME}").stdout == f"{MARKER}\n"
    d.cli("stop", "--kill", "k9")
    assert all(not p.exists() for p in pending_files(d, "k9")), "settled, nothing pending"
    d.cli("change-pin", "--pin-file", pin_file(d, good, "2580"), "k9")
    start(d, "k9", pin="2580")
    d.cli("stop", "--kill", "k9")


@pytest.mark.skipif(not hooks_built(), reason="needs a build with -Dtest_hooks=true "
                    "(scripts/build.sh makes one)")
def test_a_reserved_try_is_no_free_guess_across_kill9(sdaemon):
    """A start after a right PIN uses the try reserved in advance (no NV write before it). kill -9
    of trustmed right after sending such a try (a wrong PIN) to scd: the restarted trustmed counts
    the reservation it cannot vouch for, so the guess counted; two more wrong PINs lock the token,
    as three wrong PINs always do. A clean restart gives an unused reservation back, and a PUK
    unlock does not count it as a wrong PIN."""
    d = sdaemon
    create_paired(d, "rs")
    start(d, "rs")
    d.cli("stop", "--kill", "rs")
    d.restart()
    wait_for(lambda: enc(d, "rs").get("status_known"), what="the token state")
    assert enc(d, "rs")["pin_tries_left"] == 3, "a clean restart gives the reservation back"
    start(d, "rs")
    d.cli("stop", "--kill", "rs")
    # a wrong PUK counts as a wrong PUK only: the unused reserved PIN try is not a wrong PIN
    r = d.cli("token", "unlock", "--pin-file", pin_file(d, "87654321", "5173"), "rs", check=False)
    assert r.returncode != 0 and "wrong PUK" in r.stderr, r.stderr
    assert (enc(d, "rs")["pin_tries_left"], enc(d, "rs")["puk_tries_left"]) == (3, 9)
    start(d, "rs")  # reserves the next try, in this process
    d.cli("stop", "--kill", "rs")
    armed = crash_at(d, "trustmed", "trustmed-reserved-try-sent")
    r = start(d, "rs", pin="0000", check=False)
    assert r.returncode != 0 and not armed.exists(), "trustmed died with the try at scd"
    d.proc.wait(timeout=10)
    d.start()
    wait_for(lambda: enc(d, "rs").get("status_known"), what="the token state")
    assert enc(d, "rs")["pin_tries_left"] == 2, "the guess counted"
    for left in (1, 0):
        r = start(d, "rs", pin="0000", check=False)
        assert r.returncode != 0 and "wrong PIN" in r.stderr, r.stderr
        assert enc(d, "rs")["pin_tries_left"] == left
    r = start(d, "rs", check=False)
    assert r.returncode != 0 and "locked" in r.stderr, r.stderr


# ---- cost ------------------------------------------------------------------------------------

def beyond_kdf_ms(log_text):
    """Each start's time beyond the KDF: trustmed's "data key after" (count, scd, reply) minus
    scd's "PIN checked in" (the KDF and the slot's AEAD), pairing the lines in order."""
    import re
    after = [float(x) for x in re.findall(r"data key after ([0-9.]+) ms", log_text)]
    pin = [float(x) for x in re.findall(r"PIN checked in ([0-9.]+) ms", log_text)]
    return [a - p for a, p in zip(after, pin)]


@pytest.mark.skipif(not os.environ.get("TRUSTME_BENCH"),
                    reason="a measurement (docs/BENCHMARKS.md): set TRUSTME_BENCH=1")
def test_start_cost_beyond_the_kdf(sdaemon):
    """The target of docs/STORAGE.md "Cost": a start's time beyond the KDF at N = 1024, median over STARTS starts
    (TRUSTME_BENCH_STARTS, default 25). Prints the figures; fails only when they are missing."""
    import statistics
    d = sdaemon
    create_paired(d, "cost")
    start(d, "cost")  # the first start makes the key: not measured
    d.cli("stop", "--kill", "cost")
    mark = len(d.log())
    for _ in range(int(os.environ.get("TRUSTME_BENCH_STARTS", "25"))):
        start(d, "cost")
        d.cli("stop", "--kill", "cost")
    ms = beyond_kdf_ms(d.log()[mark:])
    assert len(ms) >= 20, d.log()[mark:][-2000:]
    print(f"\nbeyond the KDF: n={len(ms)} median={statistics.median(ms):.2f} ms "
          f"min={min(ms):.2f} max={max(ms):.2f} all={[round(x, 2) for x in ms]}")
