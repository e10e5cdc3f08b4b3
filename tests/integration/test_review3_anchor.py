# SPDX-License-Identifier: GPL-2.0-or-later
"""Third outside review: tpmd's anchor table with the NV handle it keeps between updates
(src/tpmd/anchor.c, docs/ATTESTATION.md "Anchored state"). Root copies the data dir and runs a
second tpmd on it against the same TPM (the embedded swtpm's socket), so that the first tpmd's
kept handle and version are stale: neither may then move the table behind the other's back."""
import shutil
import subprocess

from pb import field_bytes, parse
from test_tpmd import ERROR, Tpmd, new_tpmd, tpmd_dir  # noqa: F401 (fixtures)
from tools import tool

ANCHOR_RQ, ANCHOR_REPLY = 188, 189
ESTALE = 116


def entry(name, value=None):
    body = field_bytes(180, name.encode())
    return body + (field_bytes(181, value) if value is not None else b"")


def anchor(t, set_=(), get=()):
    body = b"".join(field_bytes(183, entry(n, v)) for n, v in set_) + b"".join(field_bytes(184, n.encode())
                                                                               for n in get)
    resp = t.call(ANCHOR_RQ, body)
    if ERROR in resp:
        e = parse(resp[ERROR][0])
        return None, (e[1][0], e.get(2, [b""])[0].decode())
    r = parse(resp[ANCHOR_REPLY][0])
    return ({parse(x)[180][0].decode(): parse(x).get(181, [b""])[0] for x in r.get(186, [])},
            r.get(187, [0])[0]), None


def ok(t, set_=(), get=()):
    got, err = anchor(t, set_, get)
    assert err is None, err
    return got


def test_a_second_tpmd_on_a_copied_data_dir_cannot_move_the_table(new_tpmd):  # noqa: F811
    a = new_tpmd("a").start()
    ok(a, set_=[("review3/x", b"\x01")])
    _, v1 = ok(a, set_=[("review3/x", b"\x02")])  # the second update uses the kept handle
    # Root copies the data dir (table at version v1) and runs a second tpmd on the same TPM.
    b = new_tpmd("b")
    shutil.rmtree(b.data)
    subprocess.run([tool("cp"), "-a", str(a.data), str(b.data)], check=True)
    b.start("--tcti", f"swtpm:path={a.run}/swtpm.sock")
    entries, vb = ok(b, get=["review3/x"])
    assert vb == v1 and entries == {"review3/x": b"\x02"}
    # Each moves the table once more, in turn: only the one whose version the TPM holds may.
    _, v2 = ok(a, set_=[("review3/x", b"\x03")])
    assert v2 == v1 + 1
    got, err = anchor(b, set_=[("review3/x", b"\x01")])
    assert got is None and err[0] == ESTALE and "another trustme on this TPM" in err[1], err
    # B failing left A's kept handle working: A updates again, B is still refused (its table is
    # not reloaded from A's file, which is not in B's dir).
    _, v3 = ok(a, set_=[("review3/y", b"\x07")])
    assert v3 == v2 + 1
    got, err = anchor(b, set_=[("review3/x", b"\x01")])
    assert got is None and err[0] == ESTALE, err
    # B read stale values all along (from its memory; docs/ATTESTATION.md): A's own are current.
    assert ok(b, get=["review3/x"])[0] == {"review3/x": b"\x02"}
    assert ok(a, get=["review3/x", "review3/y"])[0] == {"review3/x": b"\x03", "review3/y": b"\x07"}
    # A restarted (a new handle, the full check) loads its table; B's copy, restarted, is refused.
    a.close_link()
    a.start()
    assert ok(a, get=["review3/x"])[0] == {"review3/x": b"\x03"}
    b.close_link()
    b.start("--tcti", f"swtpm:path={a.run}/swtpm.sock")
    got, err = anchor(b, get=["review3/x"])
    assert got is None and "older" in err[1], err
