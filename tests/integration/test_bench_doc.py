# SPDX-License-Identifier: GPL-2.0-or-later
"""bench/assemble_doc.py, which bench/run-all.sh uses to write docs/BENCHMARKS.md: a full run
adds the plug-in scripts' sections and never drops a section or target row it did not make."""
import importlib.util
import sys

from conftest import REPO

spec = importlib.util.spec_from_file_location("assemble_doc", REPO / "bench/assemble_doc.py")
assemble_doc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(assemble_doc)

CORE = """# Benchmarks

Generated.

## Machine

| | |
|---|---|
| cores | 2 |

## Start latency

new figures

## Targets

| target | measured | result |
|---|---|---|
| start <= lxc | 1 vs 2 | **PASS** |

## Notes

- noise
"""

OLD = """# Benchmarks

Old.

## Start latency

old figures

## Keystore signatures (`bench/keystore.sh`)

written by hand

### A subsection

kept with it

## Targets

| target | measured | result |
|---|---|---|
| start <= lxc | 3 vs 2 | **FAIL** |
| keystore sign <= 2x openssl | 1.5x | **PASS** |

## Notes

- old notes
"""


def assemble(tmp_path, monkeypatch, capsys, core, old, plugins=None):
    (tmp_path / "core.md").write_text(core)
    (tmp_path / "old.md").write_text(old)
    for name, files in (plugins or {}).items():
        (tmp_path / "sections" / name).mkdir(parents=True)
        for f, text in files.items():
            (tmp_path / "sections" / name / f).write_text(text)
    monkeypatch.setattr(sys, "argv", ["assemble_doc.py", str(tmp_path / "core.md"), str(tmp_path / "sections"),
                                      str(tmp_path / "old.md")])
    assemble_doc.main()
    return capsys.readouterr().out


def test_plugins_go_in_and_nothing_is_dropped(tmp_path, monkeypatch, capsys):
    doc = assemble(tmp_path, monkeypatch, capsys, CORE, OLD, {
        "vtpm": {"section.md": "## Per-container vTPM (`bench/vtpm.py`)\n\nmeasured now\n",
                 "targets.md": "| vtpm start < 10 ms | 200 ms | **FAIL** |\n"}})
    heads = [l for l in doc.splitlines() if l.startswith("## ")]
    assert heads == ["## Machine", "## Start latency", "## Per-container vTPM (`bench/vtpm.py`)",
                     "## Keystore signatures (`bench/keystore.sh`)", "## Targets", "## Notes"]
    # this run's figures replace the old ones; the hand-written section stays, said so, whole
    assert "new figures" in doc and "old figures" not in doc
    keystore = doc.split("## Keystore signatures")[1].split("## Targets")[0]
    assert assemble_doc.KEPT in keystore and "written by hand" in keystore and "kept with it" in keystore
    targets = doc.split("## Targets")[1].split("## Notes")[0]
    assert "| start <= lxc | 1 vs 2 | **PASS** |" in targets and "3 vs 2" not in targets
    assert "| vtpm start < 10 ms | 200 ms | **FAIL** |" in targets
    assert "| keystore sign <= 2x openssl (kept from the previous document) | 1.5x | **PASS** |" in targets
    assert "old notes" not in doc and "- noise" in doc
    # the next run with the same inputs writes the same document: no second "kept" line
    (tmp_path / "again").mkdir()
    again = assemble(tmp_path / "again", monkeypatch, capsys, CORE, doc)
    assert again.count(assemble_doc.KEPT) == 2  # keystore, and vtpm (not made by that run)
    assert again.count("(kept from the previous document)") == 2
    assert again.count("kept with it") == 1


def test_a_plugin_that_writes_its_section_again_replaces_the_kept_one(tmp_path, monkeypatch, capsys):
    doc = assemble(tmp_path, monkeypatch, capsys, CORE, OLD, {
        "keystore": {"section.md": "## Keystore signatures (`bench/keystore.sh`)\n\nmeasured by the script\n"}})
    assert "measured by the script" in doc and "written by hand" not in doc and assemble_doc.KEPT not in doc
