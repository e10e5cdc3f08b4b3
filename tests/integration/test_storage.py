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

from conftest import BUILD, cgroup_dirs, loops_backed_by, mounts_below, wait_for
from tools import tool

KDF = ["--scd-kdf-n", "1024"]  # a cheap scrypt: these tests are about behaviour, not cost
PIN, PUK = "1234", "12345678"
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
    r = d.cli("change-pin", "--pin-file", pin_file(d, "abcdefgh", "abcdefgh"), "s", check=False)
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
    r = d.cli("token", "unlock", "--pin-file", pin_file(d, "87654321", "5555"), "pk", check=False)
    assert r.returncode != 0 and "wrong PUK" in r.stderr
    assert enc(d, "pk")["puk_tries_left"] == 9
    d.cli("token", "unlock", "--pin-file", pin_file(d, PUK, "5555"), "pk")
    e = enc(d, "pk")
    assert e["locked"] is False and e["pin_tries_left"] == 3
    assert start(d, "pk", check=False).returncode != 0, "the old PIN is gone"
    start(d, "pk", pin="5555")
    events = [(e["event"], e["result"]) for e in d.audit_events()]
    assert ("token.puk_unlock", "fail") in events and ("token.puk_unlock", "ok") in events


def test_change_pin(sdaemon):
    d = sdaemon
    create_paired(d, "cp")
    start(d, "cp")
    write_marker(d, "cp")
    d.cli("stop", "--kill", "cp")
    r = d.cli("change-pin", "--pin-file", pin_file(d, "0000", "4321"), "cp", check=False)
    assert r.returncode != 0 and "wrong PIN" in r.stderr
    d.cli("change-pin", "--pin-file", pin_file(d, PIN, "4321"), "cp")
    assert start(d, "cp", check=False).returncode != 0, "the old PIN fails"
    start(d, "cp", pin="4321")
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
