# SPDX-License-Identifier: GPL-2.0-or-later
"""trustme run: exec sessions with exit codes, stdin, stdout/stderr, a pty, large output."""
import hashlib
import os
import subprocess

import pytest

from conftest import TRUSTME, wait_for


@pytest.fixture
def running(daemon):
    daemon.create("box")
    daemon.cli("start", "box")
    return daemon


def test_exit_codes_are_propagated(running):
    assert running.sh("box", "exit 0").returncode == 0
    assert running.sh("box", "exit 42", check=False).returncode == 42
    r = running.sh("box", "kill -9 $$", check=False)
    assert r.returncode == 128 + 9


def test_missing_command_is_127_with_message(running):
    r = running.run("box", "/no/such/cmd", check=False)
    assert r.returncode == 127
    assert "cannot execute /no/such/cmd in the container" in r.stderr


def test_command_found_through_path(running):
    assert running.run("box", "echo", "hello", "world").stdout == "hello world\n"


def test_stdout_and_stderr_are_separate(running):
    r = running.sh("box", "echo to-out; echo to-err >&2")
    assert r.stdout == "to-out\n" and r.stderr == "to-err\n"


def test_stdin_is_relayed_and_closed(running):
    data = "".join(f"line {i}\n" for i in range(1000))
    r = running.run("box", "cat", input=data)
    assert r.stdout == data
    assert running.run("box", "wc", "-l", input="a\nb\n").stdout.split()[0] == "2"


def test_large_output_arrives_intact(running):
    """8 MiB through the relay (more than the connection's high-water mark) without loss."""
    r = running.sh("box", "head -c 8388608 /dev/urandom | tee /tmp/blob | md5sum; md5sum /tmp/blob >&2")
    assert r.stdout.split()[0] == r.stderr.split()[0]
    r = subprocess.run([str(TRUSTME), "--run-dir", str(running.run_dir), "run", "box", "--",
                        "cat", "/tmp/blob"], capture_output=True, timeout=60)
    assert r.returncode == 0 and len(r.stdout) == 8 << 20
    assert hashlib.md5(r.stdout).hexdigest() == running.sh("box", "md5sum /tmp/blob").stdout.split()[0]


def test_environment(running):
    env = running.run("box", "env").stdout.splitlines()
    assert "container=trustme" in env and "HOME=/root" in env
    assert any(e.startswith("PATH=") for e in env)
    r = running.cli("run", "-e", "FOO=bar baz", "box", "--", "sh", "-c", "echo $FOO")
    assert r.stdout == "bar baz\n"


def test_config_env_reaches_init_and_sessions(daemon):
    daemon.create("envbox", env={"STAGE": "prod"})
    daemon.cli("start", "envbox")
    assert daemon.sh("envbox", "echo $STAGE").stdout == "prod\n"
    assert daemon.sh("envbox", "tr '\\0' '\\n' < /proc/1/environ | grep STAGE").stdout == "STAGE=prod\n"


def test_pty_session(running):
    """-t gives the command a terminal from the container's own devpts."""
    r = running.cli("run", "-t", "box", "--", "/usr/local/bin/tm-probe", "tty")
    assert "stdin_tty: 1" in r.stdout and "stdout_tty: 1" in r.stdout
    r = running.cli("run", "-t", "box", "--", "sh", "-c", "tty; exit 5", check=False)
    assert r.returncode == 5 and "/dev/pts/" in r.stdout


def test_pty_session_reads_input(running):
    r = running.cli("run", "-t", "box", "--", "sh", "-c", "read x; echo got:$x", input="hello\n")
    assert "got:hello" in r.stdout


def test_run_requires_a_running_container(daemon):
    daemon.create("idle")
    r = daemon.run("idle", "true", check=False)
    assert r.returncode == 125 and "start it first" in r.stderr


def test_run_usage_errors(running):
    r = running.cli("run", "box", check=False)
    assert r.returncode == 2 and "Usage" in r.stderr
    r = running.cli("run", "-e", "NOEQUALS", "box", "--", "true", check=False)
    assert r.returncode == 2


def test_session_ends_when_client_vanishes(running):
    """Killing the client closes the session's pipes; the daemon keeps serving."""
    p = subprocess.Popen([str(TRUSTME), "--run-dir", str(running.run_dir), "run", "box", "--",
                          "sh", "-c", "echo started; while :; do echo tick; sleep 0.05; done"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"started\n"
    p.kill()
    p.wait()
    # the shell dies of SIGPIPE once its output has nowhere to go
    wait_for(lambda: "tick" not in running.sh("box", "ps").stdout and
             "while" not in running.sh("box", "ps").stdout, what="orphaned session to end")
    assert running.sh("box", "echo alive").stdout == "alive\n"


def test_signal_is_forwarded(running):
    p = subprocess.Popen([str(TRUSTME), "--run-dir", str(running.run_dir), "run", "box", "--",
                          "sh", "-c", "trap 'echo got-int; exit 9' INT; echo ready; while :; do sleep 0.05; done"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(2)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 9 and b"got-int" in out


def test_many_parallel_sessions(running):
    procs = [subprocess.Popen([str(TRUSTME), "--run-dir", str(running.run_dir), "run", "box", "--",
                               "sh", "-c", f"echo {i}; exit {i % 7}"], stdout=subprocess.PIPE)
             for i in range(20)]
    for i, p in enumerate(procs):
        out, _ = p.communicate(timeout=30)
        assert out == f"{i}\n".encode() and p.returncode == i % 7


def test_exec_session_audit(running):
    running.sh("box", "true")
    events = [e["event"] for e in running.audit_events()]
    assert "exec.start" in events and "exec.end" in events


def test_large_input_to_a_pty_session(running):
    """More input than a pty buffers at once must all arrive (input waits for room)."""
    data = ("y" * 99 + "\n") * 3000
    r = running.cli("run", "-t", "box", "--", "sh", "-c", "stty -echo -icanon; head -c 300000 | wc -c",
                    input=data, timeout=30)
    # (the terminal echoes input that arrives before stty -echo takes effect)
    assert r.stdout.rstrip().endswith("300000")


def test_exec_sessions_get_no_host_fds(running):
    """Neither with pipes nor with a pty does a session's command hold anything but its stdio."""
    for tty in ([], ["-t"]):
        out = running.cli("run", *tty, "box", "--", "/usr/local/bin/tm-probe", "fds").stdout
        assert out.split() == ["fds:", "0", "1", "2"], (tty, out)


def test_sessions_join_the_containers_own_user_namespace(daemon):
    """A container whose init moved into a nested user namespace (where the container's root is
    owner, with every capability) must not get exec sessions started in there."""
    daemon.create("nest", init="/usr/bin/unshare", args=["-r", "-U", "/bin/sleep", "1000000"])
    daemon.cli("start", "nest")
    base = daemon.state("nest")["uid_base"]
    wait_for(lambda: daemon.sh("nest", "cat /proc/1/uid_map").stdout.split()[:2] == ["0", "0"],
             what="init to enter its nested namespace")
    own = daemon.sh("nest", "cat /proc/self/uid_map").stdout.split()
    assert own == ["0", str(base), "65536"], own
    daemon.kill9()
    daemon.start()
    # after a restart trustmed finds the namespace again through another process still in it,
    # or refuses to run commands rather than join the nested one
    r = daemon.sh("nest", "cat /proc/self/uid_map", check=False)
    assert r.returncode == 0 and r.stdout.split() == own or "own user namespace" in r.stderr
