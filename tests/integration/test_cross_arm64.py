# SPDX-License-Identifier: GPL-2.0-or-later
"""The arm64 cross build's lists stay in step with what they describe (docs/PACKAGING.md, "arm64"),
so that a new build dependency or a new skip is caught here in a second, not only by CI's long
arm64 part (scripts/cross-test.sh) or not at all (the docs)."""
import re

from conftest import REPO

# Build-Depends that run on the build machine (Multi-Arch: foreign, or debhelper's own): a cross
# build takes the machine's amd64 package, so they are not installed for arm64.
BUILD_TOOLS = {"debhelper-compat", "meson", "ninja-build", "protobuf-c-compiler", "systemd"}
# Build-Depends whose arm64 -dev package cannot be installed beside the machine's amd64 one (not
# Multi-Arch: same): the arm64 runtime library named here is installed instead, with the
# machine's headers (scripts/cross-test.sh).
ARM64_STAND_INS = {"libtpms-dev": "libtpms0"}


def shell_list(script, name):
    m = re.search(rf'^{name}="([^"]*)"', script, re.M)
    assert m, f"scripts/install-deps.sh no longer assigns {name}=\"...\""
    return set(m.group(1).split())


def build_depends():
    """debian/control's Build-Depends as (package, build profile restrictions)."""
    control = (REPO / "debian/control").read_text()
    m = re.search(r"^Build-Depends:(.*?)^\S", control, re.M | re.S)
    assert m, "debian/control has no Build-Depends"
    deps = []
    for item in m.group(1).split(","):
        item = item.strip()
        if item:
            name = re.match(r"[a-z0-9][a-z0-9+.-]*", item).group(0)
            deps.append((name, re.findall(r"<([^>]*)>", item)))
    return deps


def test_every_library_build_dependency_is_installed_for_arm64():
    """install-deps.sh --arm64 installs, for arm64, every Build-Depends the cross package build
    needs: all but the build machine's tools and what its profiles (nocheck,
    pkg.trustme.nofleet) leave out."""
    arm64 = shell_list((REPO / "scripts/install-deps.sh").read_text(), "ARM64_LIBS")
    needed = {name for name, profiles in build_depends()
              if name not in BUILD_TOOLS
              and not any(p in ("!nocheck", "!pkg.trustme.nofleet") for p in profiles)}
    assert needed, "no library found in Build-Depends: the parser above is out of date"
    # A -dev package that is not Multi-Arch: same cannot sit beside the machine's own; the arm64
    # library stands in for it (scripts/cross-test.sh points pkg-config at it).
    missing = {name for name in needed - arm64 if ARM64_STAND_INS.get(name) not in arm64}
    assert not missing, f"add to ARM64_LIBS in scripts/install-deps.sh (or to BUILD_TOOLS here): {missing}"


def test_the_qemu_skip_list_is_documented():
    """Every unit test scripts/cross-test.sh skips under qemu-user has its row, with the reason,
    in docs/PACKAGING.md, and each names a unit test that exists."""
    script = (REPO / "scripts/cross-test.sh").read_text()
    m = re.search(r'^skip_reasons="([^"]*)"', script, re.M)
    assert m, "scripts/cross-test.sh no longer assigns skip_reasons=\"...\""
    skipped = [line.split("\t")[0] for line in m.group(1).splitlines() if line.strip()]
    assert skipped, "cross-test.sh skips nothing: then drop the docs' table and this test's premise"
    unit = (REPO / "tests/unit/meson.build").read_text()
    docs = (REPO / "docs/PACKAGING.md").read_text()
    for name in skipped:
        assert f"'{name}'" in unit, f"cross-test.sh skips {name}, which tests/unit/meson.build does not have"
        assert re.search(rf"^\| `{re.escape(name)}` \| \S", docs, re.M), \
            f"docs/PACKAGING.md's table of tests skipped under qemu-user has no row for {name}"
