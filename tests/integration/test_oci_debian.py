# SPDX-License-Identifier: GPL-2.0-or-later
"""A real distribution as an OCI image: a minimal Debian bookworm made by debootstrap from
Debian's packages (once per test run), packed into an OCI layout by umoci, imported twice
(identical images), installed and run by trustmed: apt-get and bash work in the container, and
init starts in the image's WorkingDir as its User.

debootstrap keeps the packages it downloads in TRUSTME_DEBOOTSTRAP_CACHE (default
/var/cache/trustme-tests/debootstrap, 45 MiB): the first run on a machine downloads them (minutes,
depending on the mirror), later runs only install them (about a minute on 2 cores).
TRUSTME_DEBIAN_ROOTFS names a ready tree to copy instead (for working on this test)."""
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import BUILD, TERM_INIT, wait_for
from tools import tool

GUESTOS = BUILD / "src/tools/guestos/trustme-guestos"
MIRROR = os.environ.get("TRUSTME_DEBIAN_MIRROR", "http://deb.debian.org/debian")

pytestmark = pytest.mark.skipif(not GUESTOS.exists(), reason=f"{GUESTOS} is not built")


def run(*argv, **kw):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise subprocess.CalledProcessError(r.returncode, r.args, r.stdout, r.stderr[-3000:])
    return r


@pytest.fixture(scope="session")
def debian_layout(test_root):
    """bookworm (minbase) as an OCI layout with one layer, tag "bookworm"."""
    work = Path(tempfile.mkdtemp(prefix="debian-", dir=test_root))
    rootfs = work / "rootfs"
    ready = os.environ.get("TRUSTME_DEBIAN_ROOTFS")
    cache = Path(os.environ.get("TRUSTME_DEBOOTSTRAP_CACHE", "/var/cache/trustme-tests/debootstrap"))
    try:
        if ready:
            run(tool("cp"), "-a", ready, rootfs)
        else:
            cache.mkdir(parents=True, exist_ok=True)
            run(tool("debootstrap"), f"--cache-dir={cache}", "--variant=minbase", "bookworm", rootfs,
                MIRROR, timeout=1200)
    except subprocess.CalledProcessError as e:
        pytest.fail(f"debootstrap failed (it needs {MIRROR}):\n{e.stdout[-2000:]}{e.stderr[-2000:]}")
    # debootstrap makes device nodes in /dev, which an image may not carry (the importer
    # refuses them; trustmed gives each container its own /dev)
    for p in sorted((rootfs / "dev").rglob("*"), reverse=True):
        if not p.is_dir() or p.is_symlink():
            p.unlink()
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
    layout = work / "layout"
    run(tool("umoci"), "init", "--layout", layout)
    run(tool("umoci"), "new", "--image", f"{layout}:bookworm")
    # unpack + repack, not `umoci insert DIR /`: insert names every entry absolutely ("/bin"),
    # which the importer refuses
    run(tool("umoci"), "unpack", "--image", f"{layout}:bookworm", work / "bundle")
    run(tool("cp"), "-a", f"{rootfs}/.", work / "bundle/rootfs/")
    run(tool("umoci"), "repack", "--image", f"{layout}:bookworm", work / "bundle")
    shutil.rmtree(work / "bundle")
    run(tool("umoci"), "config", "--image", f"{layout}:bookworm",
        "--config.cmd", "bash", "--config.cmd", "-c", "--config.cmd",
        "echo ready uid=$(id -u) gid=$(id -g) cwd=$PWD; trap 'exit 0' TERM; sleep infinity & wait",
        "--config.workingdir", "/srv/work", "--config.user", "nobody",
        "--config.env", "GREETING=from-the-image", "--config.exposedports", "8080/tcp",
        "--config.volume", "/var/lib/app")
    shutil.rmtree(rootfs)
    yield layout
    shutil.rmtree(work, ignore_errors=True)


def test_debian_image_runs(debian_layout, test_root, daemon):
    out = Path(tempfile.mkdtemp(prefix="deb-out-", dir=test_root))
    try:
        paths = []
        for sub in ("a", "b"):
            (out / sub).mkdir()
            r = run(GUESTOS, "import", debian_layout, "--ref", "bookworm", "--name", "debian",
                    "--version", 1, "--out", out / sub, "--unsigned", timeout=600)
            paths.append(Path(r.stdout.strip()))
        a, b = paths
        assert (a / "root.img").read_bytes() == (b / "root.img").read_bytes()
        assert (a / "guestos.json").read_bytes() == (b / "guestos.json").read_bytes()
        doc = json.loads((a / "guestos.json").read_text())
        assert doc["init"] == "/usr/bin/bash" or doc["init"] == "/bin/bash", doc["init"]
        assert doc["working_dir"] == "/srv/work"
        assert doc["user"] == {"uid": 65534, "gid": 65534}
        assert doc["ports"] == ["8080/tcp"]
        assert {"mount_point": "/var/lib/app", "kind": "data"} in doc["mounts"]

        daemon.cli("guestos", "install", a, timeout=300)
        cfg = daemon.configs / "deb.json"
        cfg.write_text(json.dumps({"name": "deb", "guestos": {"name": "debian"}, "token": "none",
                                   "data_size_mb": 16}))
        daemon.cli("create", cfg)
        daemon.cli("start", "deb")
        wait_for(lambda: "ready" in daemon.cli("logs", "deb").stdout, timeout=30, what="init's line")
        assert "ready uid=65534 gid=65534 cwd=/srv/work" in daemon.cli("logs", "deb").stdout
        r = daemon.run("deb", "/usr/bin/apt-get", "--version")
        assert r.stdout.startswith("apt 2.6"), r.stdout
        r = daemon.run("deb", "/bin/bash", "-c", 'echo "$((6 * 7)) $GREETING $BASH_VERSION"')
        assert r.stdout.startswith("42 from-the-image 5.2"), r.stdout
        daemon.cli("stop", "deb", timeout=60)
    finally:
        shutil.rmtree(out, ignore_errors=True)
