# SPDX-License-Identifier: GPL-2.0-or-later
"""The house rules of docs/CONTRIBUTING.md that a program can check: the C style of .clang-format
and the form of commit messages. Each check is a script of its own so that it can be run by hand
before a commit; these tests make a break of either fail the suite."""
import subprocess

import pytest

import tools
from conftest import REPO


def run(*args):
    return subprocess.run(list(args), cwd=REPO, capture_output=True, text=True)


def in_git_checkout():
    return run(tools.tool("git"), "rev-parse", "--git-dir").returncode == 0


def test_c_files_are_in_the_house_style():
    tools.tool("clang-format")
    r = run("scripts/check-format")
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_format_catches_a_misformatted_file(tmp_path):
    """The check must be able to fail: a copy of a source file with its indentation broken."""
    bad = tmp_path / "bad.c"
    bad.write_text("int f(void)\n{\n        return 1;\n}\n")
    (tmp_path / ".clang-format").write_text((REPO / ".clang-format").read_text())
    r = subprocess.run([tools.tool("clang-format"), "--style=file", "--dry-run", "-Werror", str(bad)],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0


def test_commit_messages_follow_the_rule():
    if not in_git_checkout():
        pytest.skip("not a git checkout: no history to check")
    r = run("scripts/check-commits")
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_source_file_names_its_licence():
    r = run("scripts/check-spdx")
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_spdx_catches_a_file_without_the_identifier(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "plain.c").write_text("int f(void);\n")
    (tmp_path / "src" / "tagged.c").write_text("/* SPDX-License-Identifier: GPL-2.0-or-later */\n")
    r = run("scripts/check-spdx", str(tmp_path))
    assert r.returncode == 1
    assert "src/plain.c" in r.stdout and "tagged.c" not in r.stdout
