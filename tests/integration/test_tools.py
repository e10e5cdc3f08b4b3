# SPDX-License-Identifier: GPL-2.0-or-later
"""What the tests call on the host is what scripts/install-deps.sh installs (tools.py): a fresh
Debian 12 machine must pass `scripts/test.sh` with nothing installed by hand."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tools
from conftest import REPO

HERE = Path(__file__).resolve().parent


def default_packages():
    """The packages install-deps.sh installs without options (its PKGS assignment)."""
    script = (REPO / "scripts/install-deps.sh").read_text()
    m = re.search(r'^PKGS="([^"]*)"', script, re.M)
    assert m, "scripts/install-deps.sh no longer assigns PKGS=\"...\""
    return set(m.group(1).split())


def test_every_program_package_is_installed_by_default():
    missing = {f"{p} ({pkg})" for p, pkg in tools.PACKAGES.items() if pkg not in default_packages()}
    assert missing == set(), "add to install-deps.sh's PKGS"


def test_every_module_package_is_installed_by_default():
    missing = {f"{m} ({pkg})" for m, pkg in tools.MODULES.items() if pkg not in default_packages()}
    missing |= {f"{lib} ({pkg})" for lib, pkg in tools.LIBRARIES.items() if pkg not in default_packages()}
    assert missing == set(), "add to install-deps.sh's PKGS"


def sources():
    return sorted(p for p in HERE.glob("*.py") if p.name != "tools.py")


def test_every_imported_module_is_known():
    """A third-party import not listed in tools.MODULES would pass here (where it happens to be
    installed) and fail on a fresh machine."""
    local = {p.stem for p in HERE.glob("*.py")}
    unknown = set()
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local and top not in tools.MODULES:
                    unknown.add(f"{path.name}: {top}")
    assert unknown == set(), "add them to tools.MODULES with their Debian package"


def test_no_program_called_by_bare_name():
    """Every host program goes through tools.tool()/argv(): a bare name in a command list, or a
    shutil.which of its own, would bypass the package check above."""
    names = "|".join(re.escape(n) for n in tools.PACKAGES)
    bare = re.compile(r'(?:subprocess\.\w+|Popen|run)\(\s*\[\s*["\'][\w.+-]+["\']'
                      r'|\[\s*["\'](?:%s)["\']' % names)
    found = []
    for path in sources():
        text = path.read_text()
        found += [f"{path.name}: {m.group(0)}" for m in bare.finditer(text)]
        found += [f"{path.name}: shutil.which" for _ in re.finditer(r"shutil\.which\(", text)]
    assert found == []


def test_missing_program_fails_naming_its_package(monkeypatch):
    monkeypatch.setitem(tools.PACKAGES, "trustme-no-such-program", "trustme-some-package")
    with pytest.raises(pytest.fail.Exception, match="Debian package trustme-some-package"):
        tools.tool("trustme-no-such-program")


def test_unlisted_program_is_an_error():
    with pytest.raises(KeyError, match="not in PACKAGES"):
        tools.tool("trustme-unlisted-program")


def test_argv_resolves_bare_names_only():
    assert tools.argv("openssl", "version")[0].endswith("/openssl")
    assert tools.argv(Path("/bin/sh"), 1) == ["/bin/sh", "1"]


def test_run_names_are_this_runs():
    """Everything this run makes is named with its RUN_ID (conftest.py), in names short enough
    for a network interface (15 characters: the prefix leaves 8)."""
    import conftest
    assert len(conftest.RUN_ID) == 5
    assert conftest.TEST_PREFIX.endswith(conftest.RUN_ID)
    assert conftest.NET_PREFIX.endswith(conftest.RUN_ID) and len(conftest.NET_PREFIX) + 8 <= 15
    assert 0 <= conftest.NET_SLOT < 8


def test_sanitizer_reports_are_found_in_a_log():
    from conftest import sanitizer_reports
    log = "\n".join([
        "08:12:21.717 trustme-tpmd debug: measured container-config w into PCR 11",
        "../src/daemon/modules/devices.c:45:48: runtime error: null pointer passed as argument 2",
        "SUMMARY: UndefinedBehaviorSanitizer: undefined-behavior ../src/daemon/modules/devices.c:45:48",
        "08:12:21.724 trustmed info: stopping",
        "==10231==ERROR: LeakSanitizer: detected memory leaks",
        "Direct leak of 56 byte(s) in 1 object(s) allocated from:",
        "    #1 0x56151fec7822 in tm_loop_io ../src/lib/event.c:100:20",
        "SUMMARY: AddressSanitizer: 56 byte(s) leaked in 1 allocation(s).",
        "==23103==LeakSanitizer has encountered a fatal error.",
    ])
    reports = sanitizer_reports(log)
    assert len(reports) == 3
    assert "devices.c:45" in reports[0] and "tm_loop_io" in reports[1]
    assert sanitizer_reports("08:12:21 trustmed info: ready\nWARNING: reading executable name failed") == []


def check_references(root):
    return subprocess.run([sys.executable, str(REPO / "scripts/check-references"), str(root)],
                          capture_output=True, text=True, timeout=60)


def test_docs_and_comments_cite_only_what_the_repository_has():
    """Docs and comments point to files under docs/ or state the fact; never to a design
    document, notes or issue numbers a reader of the repository cannot open."""
    r = check_references(REPO)
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("line", [
    "/* as DESIGN.md §7 says */", "see ../shared/notes", "(issue 13)", "# Issue 12 §5: x",  # check-references: example
    "the guide's table", "The issue asks for", "(seed 004, docs/PKI.md)", '"""§2: x"""',  # check-references: example
    "platform.md: fwd", "the design guide"])  # check-references: example
def test_reference_check_finds_each_kind(tmp_path, line):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/x.c").write_text(f"int x;\n{line}\n")
    r = check_references(tmp_path)
    assert r.returncode == 1 and "src/x.c:2:" in r.stdout, r.stdout


def test_reference_check_lets_specifications_be_cited(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/X.md").write_text("KDFa (TPM 2.0 Part 1 §11.4.10.2); RFC 5280 §4.2; "
                                        "docs/STORAGE.md \"Tokens\"; the issuer's seed\n")
    assert check_references(tmp_path).returncode == 0
