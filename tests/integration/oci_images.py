# SPDX-License-Identifier: GPL-2.0-or-later
"""OCI image layouts, OCI archives and docker-archives made here, byte by byte, for the import
tests (no registry, no network). A layer is a list of entries; an entry is a dict with "name" and
"type" (file, dir, symlink, link, fifo, chr) and optionally data, mode, uid, gid, target, xattrs,
raw (a TarInfo field override for hostile entries)."""
import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

from tools import tool

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
         "link": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE,
         "blk": tarfile.BLKTYPE}


def tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.type = TYPES[e.get("type", "file")]
            ti.mode = e.get("mode", 0o755 if ti.type == tarfile.DIRTYPE else 0o644)
            ti.uid, ti.gid = e.get("uid", 0), e.get("gid", 0)
            ti.mtime = e.get("mtime", 1700000000)
            ti.linkname = e.get("target", "")
            if ti.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                ti.devmajor, ti.devminor = e.get("dev", (1, 3))
            pax = {}
            for k, v in e.get("xattrs", {}).items():
                # tarfile writes str values; binary ones go through surrogateescape
                pax["SCHILY.xattr." + k] = v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v
            ti.pax_headers = pax
            data = e.get("data", b"")
            ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
            for k, v in e.get("raw", {}).items():
                setattr(ti, k, v)
            t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def compress(data, how):
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return subprocess.run([tool("zstd"), "-q", "-c"], input=data, check=True,
                              capture_output=True).stdout
    return data


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layout:
    """An OCI image layout directory being written."""

    def __init__(self, path):
        self.path = Path(path)
        (self.path / "blobs/sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.index = []

    def blob(self, data, media_type):
        d = digest(data)
        (self.path / "blobs/sha256" / d[7:]).write_bytes(data)
        return {"mediaType": media_type, "digest": d, "size": len(data)}

    def image(self, layers, config=None, arch="amd64", os_="linux", compression=None):
        """layers: lists of entries; compression: one of None/gzip/zstd per layer or for all.
        Returns the manifest descriptor (not yet in index.json)."""
        descs, diff_ids = [], []
        for i, entries in enumerate(layers):
            # bytes: the blob as it is (already compressed as compression says), for broken ones
            raw = entries if isinstance(entries, bytes) else tar_bytes(entries)
            how = compression[i] if isinstance(compression, list) else compression
            diff_ids.append(digest(raw))
            data = raw if isinstance(entries, bytes) else compress(raw, how)
            descs.append(self.blob(data, LAYER + ("+" + how if how else "")))
        cfg = {"architecture": arch, "os": os_, "config": config or {},
               "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        cdesc = self.blob(json.dumps(cfg).encode(), OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc, "layers": descs}
        mdesc = self.blob(json.dumps(manifest).encode(), OCI_MANIFEST)
        mdesc["platform"] = {"architecture": arch, "os": os_}
        return mdesc

    def add(self, desc, ref=None):
        d = dict(desc)
        if ref:
            d["annotations"] = {"org.opencontainers.image.ref.name": ref}
        self.index.append(d)
        self.write_index()

    def write_index(self):
        (self.path / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.index}))


def single(path, layers, config=None, ref="latest", compression=None):
    lay = Layout(path)
    lay.add(lay.image(layers, config, compression=compression), ref)
    return lay


def tar_dir(src, dst):
    """An OCI archive / docker-archive: a tar of a directory's contents."""
    with tarfile.open(dst, "w") as t:
        for p in sorted(Path(src).rglob("*")):
            t.add(p, arcname=str(p.relative_to(src)), recursive=False)


def docker_archive(path, layers, config=None, tag="img:latest"):
    """What `docker save` writes: manifest.json, <config hex>.json, <n>/layer.tar."""
    path = Path(path)
    path.mkdir(parents=True)
    names, diff_ids = [], []
    for i, entries in enumerate(layers):
        raw = tar_bytes(entries)
        (path / f"l{i}").mkdir()
        (path / f"l{i}/layer.tar").write_bytes(raw)
        names.append(f"l{i}/layer.tar")
        diff_ids.append(digest(raw))
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": config or {},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cname = digest(cfg)[7:] + ".json"
    (path / cname).write_bytes(cfg)
    (path / "manifest.json").write_text(json.dumps(
        [{"Config": cname, "RepoTags": [tag], "Layers": names}]))
    return path
