# SPDX-License-Identifier: GPL-2.0-or-later
"""The installation (docs/PACKAGING.md): `meson install` puts every program where the FHS and
systemd look for it, with a man page each, and the systemd unit passes systemd-analyze verify."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, REPO
from tools import tool


def installed():
    """{build output: install path} from meson's introspection (prefix included)."""
    return json.loads((BUILD / "meson-info/intro-installed.json").read_text())


def prefix():
    opts = json.loads((BUILD / "meson-info/intro-buildoptions.json").read_text())
    return next(o["value"] for o in opts if o["name"] == "prefix")


def test_programs_land_in_fhs_paths():
    p = prefix()
    dest = set(installed().values())
    for path in ("sbin/trustmed", "bin/trustme", "bin/trustme-verify", "bin/trustme-pki", "bin/trustme-guestos",
                 "libexec/trustme/trustme-scd", "libexec/trustme/trustme-tpmd",
                 "libexec/trustme/trustme-crypto-verbs",
                 "share/man/man1/trustme.1", "share/man/man8/trustmed.8",
                 "share/bash-completion/completions/trustme", "share/zsh/vendor-completions/_trustme",
                 "share/trustme/proto/control.proto"):
        assert f"{p}/{path}" in dest, path
    units = [d for d in dest if d.endswith("/systemd/system/trustmed.service")]
    assert units and any(d.endswith("/sysusers.d/trustme.conf") for d in dest) \
        and any(d.endswith("/tmpfiles.d/trustme.conf") for d in dest)


def test_every_installed_program_has_a_man_page():
    dest = set(installed().values())
    programs = [d for d in dest if re.search(r"/(s?bin|libexec/trustme)/[^/]+$", d)]
    assert len(programs) >= 7
    pages = {os.path.basename(d).rsplit(".", 1)[0] for d in dest if "/share/man/man" in d}
    missing = [p for p in programs if os.path.basename(p) not in pages]
    assert missing == [], "add a page to dist/man/ and its name to dist/meson.build's man_pages"


def test_unit_passes_systemd_analyze_verify(tmp_path):
    """Installed to a staging dir: verify checks the ExecStart binary and the man pages that
    Documentation= names (found through MANPATH)."""
    subprocess.run([tool("meson"), "install", "-C", str(BUILD), "--no-rebuild", "--quiet",
                    "--destdir", str(tmp_path)], check=True, capture_output=True)
    p = prefix()
    unit = next(tmp_path.rglob("trustmed.service"))
    text = unit.read_text()
    assert f"ExecStart={p}/sbin/trustmed\n" in text
    staged = tmp_path / "unit" / "trustmed.service"
    staged.parent.mkdir()
    staged.write_text(text.replace(f"ExecStart={p}/sbin/", f"ExecStart={tmp_path}{p}/sbin/"))
    r = subprocess.run([tool("systemd-analyze"), "verify", str(staged)], capture_output=True, text=True,
                       env=dict(os.environ, MANPATH=f"{tmp_path}{p}/share/man", SYSTEMD_LOG_LEVEL="notice"))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    for key in ("Type=notify", "Delegate=yes", "KillMode=process", "RestartKillSignal=SIGQUIT"):
        assert f"\n{key}\n" in text, key


def test_sysusers_defines_the_helpers_default_users():
    """trustmed's default helper users (its --help) are the ones the sysusers file makes, and
    systemd-sysusers parses the file."""
    conf = REPO / "dist/sysusers.d/trustme.conf"
    users = re.findall(r"^u\s+(\S+)", conf.read_text(), re.M)
    help_text = subprocess.run([str(BUILD / "src/daemon/trustmed"), "--help"], capture_output=True,
                               text=True).stdout
    assert set(re.findall(r"\(default (trustme-[a-z]+)\)", help_text)) == set(users) == {"trustme-scd", "trustme-tpm", "trustme-keystore"}
    r = subprocess.run([tool("systemd-sysusers"), "--dry-run", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0 and "Failed" not in r.stderr, r.stderr
