# SPDX-License-Identifier: GPL-2.0-or-later
"""The CLI's command line (src/cli/args.c) and what is generated from its verb table
(src/cli/verbs.c): --help of each verb, the man page, the bash and zsh completions, and
docs/CLI.md's list of verbs."""
import json
import re
import subprocess

import pytest

from conftest import BUILD, REPO, TRUSTME
from tools import tool

CLIDOC = BUILD / "src/cli/trustme-clidoc"
MAN = BUILD / "src/cli/trustme.1"
BASH_COMPLETION = BUILD / "src/cli/completions/trustme"
ZSH_COMPLETION = BUILD / "src/cli/completions/_trustme"


def table():
    """{verb: (args, [(long option, short option or None, takes a value)])} from the table."""
    out = subprocess.run([str(CLIDOC), "table"], capture_output=True, text=True, check=True).stdout
    verbs = {}
    for line in out.splitlines():
        name, args, opts = line.split("\t")
        parsed = []
        words = opts.split()
        for i, w in enumerate(words):
            if w.startswith("--"):
                short = words[i + 1] if i + 1 < len(words) and re.fullmatch(r"-\w", words[i + 1]) else None
                parsed.append((w.split("=")[0], short, "=" in w))
        verbs[name] = (args, parsed)
    return verbs


def cli(*args, **kw):
    return subprocess.run([str(TRUSTME), *map(str, args)], capture_output=True, text=True,
                          timeout=30, **kw)


def test_table_has_every_verb():
    verbs = table()
    for v in ("create", "start", "stop", "run", "exec list", "exec kill", "token unlock",
              "guestos install", "device cert install", "device reseal", "attest"):
        assert v in verbs, v
    assert len(verbs) >= 30


def test_every_verb_help_lists_every_option():
    for verb, (args, opts) in table().items():
        r = cli(*verb.split(), "--help")
        assert r.returncode == 0, (verb, r.stderr)
        assert r.stdout.startswith(f"Usage: trustme {verb} "), r.stdout
        for name, short, _ in opts:
            assert name in r.stdout, (verb, name)
            if short:
                assert f"{short}, {name}" in r.stdout, (verb, short, name)
        assert args in r.stdout.splitlines()[0], (verb, args)


def test_global_help_lists_every_verb():
    out = cli("--help").stdout
    for verb in table():
        assert re.search(rf"^  {re.escape(verb)}  ", out, re.M), verb
    for group in ("device", "device cert", "guestos", "exec"):
        r = cli(*group.split(), "--help")
        assert r.returncode == 0 and "Commands:" in r.stdout, (group, r.stderr)


def test_unknown_option_is_a_usage_error_naming_help():
    r = cli("stop", "--bogus", "c")
    assert r.returncode == 2
    assert "trustme stop: unknown option --bogus" in r.stderr and "trustme stop --help" in r.stderr
    r = cli("stop", "-x", "c")
    assert r.returncode == 2 and "unknown option -x" in r.stderr
    r = cli("--bogus", "list")
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr and "trustme --help" in r.stderr
    r = cli("stop", "--kill=yes", "c")
    assert r.returncode == 2 and "option --kill takes no value" in r.stderr
    r = cli("frobnicate")
    assert r.returncode == 2 and 'unknown command "frobnicate"' in r.stderr
    r = cli("device", "frobnicate")
    assert r.returncode == 2 and 'unknown subcommand "frobnicate"' in r.stderr and "cert install" in r.stderr


def test_missing_value_or_argument_is_a_usage_error():
    r = cli("stop", "c", "--timeout")
    assert r.returncode == 2 and "option --timeout needs a value" in r.stderr, r.stderr
    r = cli("stop", "c", "-t")
    assert r.returncode == 2 and "option -t needs a value" in r.stderr, r.stderr
    r = cli("--run-dir")
    assert r.returncode == 2 and "option --run-dir needs a value" in r.stderr
    r = cli("stop")
    assert r.returncode == 2 and "expected CONTAINER" in r.stderr and "Usage: trustme stop" in r.stderr
    r = cli("state", "a", "b")
    assert r.returncode == 2 and "unexpected argument b" in r.stderr
    r = cli("stop", "--timeout=soon", "c")
    assert r.returncode == 2 and "--timeout takes 0..3600 seconds" in r.stderr


def test_option_equals_value_works_like_two_words(daemon, tmp_path):
    """--opt=value and --opt value, for the global options and a verb's alike."""
    daemon.create("eq")
    r = subprocess.run([str(TRUSTME), f"--run-dir={daemon.run_dir}", "list"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and "eq" in r.stdout, r.stderr
    r = subprocess.run([str(TRUSTME), f"--socket={daemon.socket}", "state", "eq"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "stopped" in r.stdout, r.stderr
    daemon.cli("start", "eq")
    out = daemon.cli("run", "--env=A=1", "-eB=2", "--env", "C=3", "eq", "--", "/bin/sh", "-c",
                     "echo $A$B$C").stdout
    assert out == "123\n"
    daemon.cli("stop", "--timeout=0", "eq")
    assert daemon.state("eq")["state"] == "stopped"
    daemon.cli("start", "eq")
    daemon.cli("stop", "eq", "-t0")  # a short option's value in the same word, after the name
    assert daemon.state("eq")["state"] == "stopped"
    csr = tmp_path / "x.csr"
    r = daemon.cli("device", "csr", f"--out={csr}", "--cn=eq-device", check=False)
    assert r.returncode == 0 and csr.read_text().startswith("-----BEGIN"), r.stderr


def test_exec_kill_takes_a_dash_signal_as_an_argument(daemon):
    """`exec kill C SESSION -9`: options end at the container, so -9 is the signal."""
    daemon.create("box")
    daemon.cli("start", "box")
    running = daemon
    r = running.cli("exec", "kill", "box", "999", "-9", check=False)
    assert r.returncode == 1 and "unknown option" not in r.stderr, r.stderr
    r = running.cli("exec", "kill", "box", "999", "NOSUCHSIG", check=False)
    assert r.returncode == 2 and "no signal NOSUCHSIG" in r.stderr


def test_man_page_renders_without_warnings_and_has_every_verb():
    text = MAN.read_text()
    r = subprocess.run([tool("groff"), "-man", "-ww", "-z", str(MAN)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    for verb, (_, opts) in table().items():
        assert f".SS {verb.replace('-', chr(92) + '-')}\n" in text, verb
        for name, _, _ in opts:
            assert name.replace("-", "\\-") in text, (verb, name)


def bash_complete(*words):
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
              '_trustme; printf "%s\\n" "${COMPREPLY[@]}"')
    r = subprocess.run([tool("bash"), "-c", script, "bash", str(BASH_COMPLETION), "trustme", *words],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_bash_completion_has_every_verb_and_option():
    r = subprocess.run([tool("bash"), "-n", str(BASH_COMPLETION)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    verbs = table()
    assert {v.split()[0] for v in verbs} <= bash_complete("")
    for verb, (_, opts) in verbs.items():
        words = verb.split()
        if len(words) > 1:
            assert words[-1] in bash_complete(*words[:-1], ""), verb
        assert {name for name, _, _ in opts} | {"--help"} == bash_complete(*words, "--"), verb
    assert bash_complete("create", "--pin-file", str(REPO / "READ")) == {str(REPO / "README.md")}


# zsh's completion system needs a terminal; its functions are replaced by ones that print what
# they were given, and the generated _trustme is run on a command line.
ZSH_STUBS = r"""
_arguments() { print -r -- "ARGUMENTS ${words[1]}|$CURRENT|$*" }
_describe() { print -r -- "DESCRIBE ${(P)4}" }
compadd() { print -r -- "COMPADD $*" }
_files() { print -r -- "FILES $*" }
f=$1; shift
words=("$@"); CURRENT=$#words; PREFIX=${words[CURRENT]}
source $f
"""


def zsh_complete(*words):
    r = subprocess.run([tool("zsh"), "-f", "-c", ZSH_STUBS, "zsh", str(ZSH_COMPLETION), "trustme",
                        *words], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return r.stdout


def test_zsh_completion_has_every_verb_and_option():
    r = subprocess.run([tool("zsh"), "-n", str(ZSH_COMPLETION)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    verbs = table()
    top = zsh_complete("")
    assert top.startswith("DESCRIBE ")
    assert {v.split()[0] for v in verbs} <= {w.split(":")[0] for w in top.split()[1:] if ":" in w}
    assert zsh_complete("--r") == "COMPADD -- --socket --run-dir --version --help\n"
    for verb, (_, opts) in verbs.items():
        words = verb.split()
        if len(words) > 1:
            assert f" {words[-1]}:" in zsh_complete(*words[:-1], ""), verb
        out = zsh_complete("--run-dir", "/x", *words, "")
        # _arguments sees the verb's last word as the command, the word completed after it
        assert out.startswith(f"ARGUMENTS {verb}|2|"), (verb, out)
        for name, short, value in opts:
            assert f"{name}{'=' if value else ''}[" in out, (verb, name)
            if short:
                assert f"{short}{'+' if value else ''}[" in out, (verb, short)


def test_cli_md_documents_exactly_the_verbs():
    """docs/CLI.md's table of commands names every verb of the table, and no other."""
    doc = (REPO / "docs/CLI.md").read_text()
    section = doc.split("## trustme\n", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for row in re.findall(r"^\| (.*?) \| ", section, re.M):
        for code in re.findall(r"`([^`]+)`", row):
            words = []
            for w in code.split():
                if not re.fullmatch(r"[a-z][a-z-]*", w):
                    break
                words.append(w)
            if words:
                verb = " ".join(words)
                documented.add(verb)
                # and each option shown with it is one of the verb's
                known = {name for name, _, _ in table().get(verb, ("", []))[1]}
                for opt in re.findall(r"(?<![\w-])--[a-z][a-z-]*", code):
                    assert opt in known, (verb, opt)
    assert documented == set(table()), (documented ^ set(table()))


def test_attest_and_trustme_verify_share_their_options():
    """One definition (src/verify/attest_optlist.h): every option of `trustme attest` is one of
    trustme-verify's, with the same help and the same checks of its value."""
    verify = BUILD / "src/verify/trustme-verify"
    vhelp = " ".join(subprocess.run([str(verify), "--help"], capture_output=True, text=True,
                                    check=True).stdout.split())
    ahelp = " ".join(cli("attest", "--help").stdout.split("Options:")[1].split())
    opts = table()["attest"][1]
    assert {"--ak-anchor", "--device-ca", "--rim-anchor", "--rim-ca", "--crl", "--no-crl",
            "--reference", "--min-version", "--pcr", "--json"} == {n for n, _, _ in opts}
    for name, _, _ in opts:
        assert name in vhelp, name
        help_text = re.search(rf"{name}(?:=\S+)? (.*?)(?: \(repeatable\))? (?:--|-h,)", ahelp).group(1)
        assert help_text in vhelp, (name, help_text)
    for bad, msg in ((["--pcr", "99"], "--pcr 99: expected a PCR index 0..23"),
                     (["--min-version", "x"], "--min-version x: expected a version number"),
                     (["--anchor", "a.pem"], "--anchor trusted a root for every role")):
        a = cli("attest", *bad)
        v = subprocess.run([str(verify), *bad, "host:1"], capture_output=True, text=True)
        assert a.returncode == v.returncode == 2 and msg in a.stderr and msg in v.stderr, \
            (bad, a.stderr, v.stderr)


def _sanitized_build():
    opts = json.loads((BUILD / "meson-info/intro-buildoptions.json").read_text())
    return any(o["name"] == "b_sanitize" and o["value"] != "none" for o in opts)


def test_trustme_loads_no_openssl_and_relays_the_verbs_that_need_it(tmp_path):
    """trustme is linked without libcrypto and libtss2 (every run paid for loading them; docs/CLI.md
    "Programs"), and as a static PIE: no shared library and no dynamic loader at all (the loader's
    work was half the CLI's CPU in a start), still position-independent, with -z now and full
    RELRO (a sanitized build links it dynamically). The verbs that need them are run by
    trustme-crypto-verbs from beside a build tree's trustme, with the same arguments, and a
    trustme without it says so."""
    needed = subprocess.run([tool("readelf"), "-d", str(TRUSTME)], capture_output=True, text=True, check=True).stdout
    libs = re.findall(r"\(NEEDED\).*\[(.+)\]", needed)
    assert not [lib for lib in libs if "crypto" in lib or "tss2" in lib], libs
    assert "BIND_NOW" in needed or re.search(r"FLAGS_1.*NOW", needed), needed
    if not _sanitized_build():
        headers = subprocess.run([tool("readelf"), "-lhW", str(TRUSTME)], capture_output=True, text=True,
                                 check=True).stdout
        assert libs == [] and "INTERP" not in headers, (libs, headers)
        assert "DYN (Position-Independent Executable file)" in headers and "GNU_RELRO" in headers, headers
    helper = BUILD / "src/cli/trustme-crypto-verbs"
    assert "libcrypto" in subprocess.run([tool("readelf"), "-d", str(helper)], capture_output=True, text=True,
                                         check=True).stdout
    sock = tmp_path / "no.sock"
    # the helper parses and runs the verb: its own reason, with the socket option passed along
    for verb in (["device", "info"], ["vtpm", "info", "c1"], ["measurements"]):
        r = cli("--socket", sock, *verb)
        assert r.returncode == 1 and f"cannot connect to trustmed at {sock}" in r.stderr, (verb, r.stderr)
    r = cli("--socket", sock, "attest")
    assert r.returncode == 2 and "--reference REFS.json is required" in r.stderr, r.stderr
    lone = tmp_path / "trustme"
    lone.write_bytes(TRUSTME.read_bytes())
    lone.chmod(0o755)
    r = subprocess.run([str(lone), "--socket", str(sock), "device", "info"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and f"cannot run {tmp_path}/trustme-crypto-verbs" in r.stderr, r.stderr
    # the verbs that only talk to trustmed stay in trustme
    r = subprocess.run([str(lone), "--socket", str(sock), "list"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "cannot connect to trustmed" in r.stderr, r.stderr
