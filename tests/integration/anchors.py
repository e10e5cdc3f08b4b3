# SPDX-License-Identifier: GPL-2.0-or-later
"""tpmd's anchor table on disk (src/tpmd/anchor.h): two slots written in place, version N in slot
N mod 2; the TPM's NV index holds the version and the SHA-256 of the slot that is the table. Tests
that look at the table, or save and restore it as root would, go through these helpers."""
import re
from pathlib import Path

SLOTS = ("anchor.table.0", "anchor.table.1")
# the names before the slots, read (and adopted) by tpmd when it finds them
LEGACY = ("anchor.table", "anchor.table.new")


def slots(tpm_dir):
    return [Path(tpm_dir) / n for n in SLOTS]


def files(tpm_dir):
    """Every file tpmd reads as a table: what a restore of "the anchor table" puts back."""
    return slots(tpm_dir) + [Path(tpm_dir) / n for n in LEGACY]


def file_version(path):
    m = re.search(rb"^version (\d+)$", Path(path).read_bytes(), re.M)
    return int(m.group(1)) if m else -1


def current(tpm_dir):
    """The slot holding the newest version (the anchored one, unless someone edited the files),
    or None when there is none."""
    have = [p for p in slots(tpm_dir) if p.exists()]
    return max(have, key=file_version) if have else None


def version(tpm_dir):
    """The table's version: the number of its updates, each one NV write (0: none)."""
    p = current(tpm_dir)
    return file_version(p) if p else 0


def table_bytes(tpm_dir):
    p = current(tpm_dir)
    return p.read_bytes() if p else b""


def save(tpm_dir):
    """The table files as they are now (what a copy of the disk holds)."""
    return {p.name: p.read_bytes() for p in files(tpm_dir) if p.exists()}


def restore(tpm_dir, saved):
    """Put saved table files back, removing any that were not there then."""
    for p in files(tpm_dir):
        if p.name in saved:
            p.write_bytes(saved[p.name])
        else:
            p.unlink(missing_ok=True)
