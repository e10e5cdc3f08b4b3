# SPDX-License-Identifier: GPL-2.0-or-later
"""trustmed's layer rule (docs/ARCHITECTURE.md): scripts/check-layers on the build's objects, and
on a made-up build whose core/ calls up into api/, which it must refuse."""
import ast
import re
import subprocess
import sys
from pathlib import Path

from conftest import BUILD, REPO
from tools import tool

CHECK = REPO / "scripts" / "check-layers"
# The daemon's folders as check-layers knows them (its ORDER, without main and lib), so that a
# new folder needs no second list here.
FOLDERS = [f for f in ast.literal_eval(re.search(r"^ORDER = (\[.*\])$", CHECK.read_text(),
                                                 re.M).group(1)) if f not in ("main", "lib")]


def run_check(build):
    return subprocess.run([sys.executable, CHECK, build], capture_output=True, text=True)


def test_daemon_keeps_the_layer_rule():
    r = run_check(BUILD)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "check-layers: ok" in r.stdout


def make_fake_build(root, sources):
    """A build tree of one object per folder: sources maps folder -> C text (default: empty)."""
    daemon = root / "src" / "daemon"
    for folder in FOLDERS + ["main", "lib"]:
        if folder == "main":
            out = daemon / "trustmed.p" / "main.c.o"
        elif folder == "lib":
            out = root / "src" / "lib" / "libtrustme.a"
        else:
            out = daemon / folder / f"libtrustmed-{folder}.a"
        out.parent.mkdir(parents=True, exist_ok=True)
        src = root / f"{folder}.c"
        src.write_text(sources.get(folder, f"int fake_{folder}_unit;\n"))
        obj = root / f"{folder}.o"
        subprocess.run([tool("cc"), "-c", "-o", obj, src], check=True)
        if out.suffix == ".a":
            subprocess.run([tool("ar"), "rcs", out, obj], check=True)
        else:
            obj.rename(out)


def test_a_call_from_core_up_into_api_fails(tmp_path):
    make_fake_build(tmp_path, {
        "api": "int conn_send_fake(int x) { return x; }\n",
        "core": "int conn_send_fake(int);\nint core_fake(void) { return conn_send_fake(1); }\n",
    })
    r = run_check(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL: core -> api is not allowed: conn_send_fake" in r.stdout


def test_allowed_calls_pass(tmp_path):
    make_fake_build(tmp_path, {
        "core": "int core_fake(int x) { return x; }\n",
        "api": "int core_fake(int);\nint api_fake(void) { return core_fake(1); }\n",
    })
    r = run_check(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "api       -> core        1" in r.stdout
