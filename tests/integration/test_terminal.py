# SPDX-License-Identifier: GPL-2.0-or-later
"""The admin's terminal is not the container's to paint (docs/CLI.md): everything the
CLI prints for a person from fields others control is escaped (term_safe.h), `logs --raw` gives
the bytes, and `run -t` leaves the terminal as it found it. Run on a real pty."""
import json
import os
import pty
import select
import subprocess
import termios
import time

import pytest

from conftest import TRUSTME

ESC = "\x1b"
# What a hostile field carries: a title change, an OSC 52 clipboard write, erase-line, an 8-bit
# CSI (U+009B), a right-to-left override and a carriage return that would hide what came before.
PAINT = "\x1b]0;pwned\x07\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2K\u009b2J\u202e\rX"


def on_pty(d, *args, timeout=30):
    """Run the CLI with stdin/stdout/stderr on a new pty; its output as bytes, the exit code and
    the pty's termios before and after."""
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    p = subprocess.Popen([str(TRUSTME), "--run-dir", str(d.run_dir), *map(str, args)],
                         stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    out = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            out += chunk
        elif p.poll() is not None:
            break
    p.wait(timeout=5)
    after = termios.tcgetattr(slave)
    os.close(slave)
    os.close(master)
    return out, p.returncode, before, after


def no_raw_controls(out):
    """No ESC, BEL, CR (the pty turns \n into \r\n: those CRs are fine), 8-bit CSI or RLO."""
    text = out.replace(b"\r\n", b"\n")
    for bad in (b"\x1b", b"\x07", b"\r", "\u009b".encode(), "\u202e".encode()):
        assert bad not in text, (bad, out)


def test_error_message_and_audit_escape_a_hostile_name(daemon):
    d = daemon
    cfg = {"name": "evil" + PAINT, "rootfs": {"path": str(d.rootfs)}, "init": "/bin/true"}
    (d.configs / "evil.json").write_text(json.dumps(cfg))  # json.dumps writes \u001b escapes
    out, code, _, _ = on_pty(d, "create", d.configs / "evil.json")
    assert code != 0
    no_raw_controls(out)
    assert b"evil\\u001b]0;pwned\\u0007" in out and b"\\u009b2J\\u202e\\u000dX" in out, out
    # the refusal is in the audit log with the raw name; the plain view escapes it
    out, code, _, _ = on_pty(d, "audit")
    assert code == 0 and b"config.reject" in out
    no_raw_controls(out)
    assert b"\\u001b]52;c;cm0gLXJmIH4=\\u0007" in out, out
    # and --json stays JSON that says the same
    rec = [e for e in d.audit_events() if e["event"] == "config.reject"][-1]
    assert "evil" + PAINT in rec["detail"]


def test_state_list_and_logs_escape_container_controlled_fields(daemon):
    d = daemon
    d.create("painter", init="/bin/sh", args=["-c", f"printf '%s\\n' '{PAINT}' ; sleep 1000"],
             env={"X": PAINT}, data_size_mb=0)
    d.cli("start", "painter")
    d.create("badinit", init="/bin/" + PAINT.replace("\x07", "").replace("/", ""), data_size_mb=0)
    d.cli("start", "badinit", check=False)  # fails: its last error names the init path
    for args in (["state", "badinit"], ["list"], ["logs", "painter"], ["config", "painter"]):
        out, code, _, _ = on_pty(d, *args)
        assert code == 0, (args, out)
        no_raw_controls(out)
    out, _, _, _ = on_pty(d, "logs", "painter")
    assert b"\\u001b]0;pwned\\u0007" in out
    # --raw: the bytes as the container wrote them (for a pipe or a file)
    r = subprocess.run([str(TRUSTME), "--run-dir", str(d.run_dir), "logs", "--raw", "painter"],
                       capture_output=True, check=True)
    assert PAINT.encode() in r.stdout
    # config into a pipe: unchanged bytes, as created
    assert d.cli("config", "painter").stdout == (d.configs / "painter.json").read_text()


def test_run_t_restores_the_terminal(daemon):
    """A program that switches on the alternate screen, mouse tracking, bracketed paste, focus
    events, application cursor keys and hides the cursor, then dies, leaves none of it on: the
    CLI resets exactly those, and restores the pty's termios."""
    d = daemon
    d.create("tui", data_size_mb=0)
    d.cli("start", "tui")
    on = "\\033[?1049h\\033[?1000;1006h\\033[?2004h\\033[?1004h\\033[?1h\\033[?25l\\033[?7l"
    out, code, before, after = on_pty(d, "run", "-t", "tui", "--", "sh", "-c",
                                      f"printf '{on}'; kill -9 $$")
    assert code == 137
    assert after == before, "termios not restored"
    tail = out[out.rindex(b"\x1b[?7l") + 5:]
    for seq in (b"\x1b[?1049l", b"\x1b[?1000l", b"\x1b[?1006l", b"\x1b[?2004l", b"\x1b[?1004l",
                b"\x1b[?1l", b"\x1b[?25h", b"\x1b[?7h"):
        assert seq in tail, (seq, tail)
    # a program that cleans up after itself gets nothing added
    out, code, before, after = on_pty(d, "run", "-t", "tui", "--", "sh", "-c",
                                      "printf '\\033[?1049h\\033[?25l\\033[?25h\\033[?1049l'")
    assert code == 0 and after == before
    assert out.count(b"\x1b[?") == 4, out


def test_run_restores_modes_the_commands_stderr_switched(daemon):
    """Without -t the command's stderr reaches the terminal too: what it switches on there is
    reset as well (before: only stdout was watched, and mouse tracking stayed on)."""
    d = daemon
    d.create("tui", data_size_mb=0)
    d.cli("start", "tui")
    out, code, _, _ = on_pty(d, "run", "tui", "--", "sh", "-c",
                             "printf '\\033[?1049h\\033[?9h\\033[?1003;1016h' >&2; kill -9 $$")
    assert code == 137
    tail = out[out.rindex(b"\x1b[?1003;1016h") + len(b"\x1b[?1003;1016h"):]
    # X10 mouse (9) and SGR-pixel reports (1016) too (before: not in the table)
    for seq in (b"\x1b[?1049l", b"\x1b[?9l", b"\x1b[?1003l", b"\x1b[?1016l"):
        assert seq in tail, (seq, out)
