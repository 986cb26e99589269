"""The documentation and the bundled demo data stay true to the code."""

from __future__ import annotations

import hashlib
import re
from dataclasses import fields, is_dataclass

import pytest
from scripts.benchmark import update_markdown
from scripts.cells import CELL_COLUMNS, IMAGE_COLUMNS, columns_markdown
from scripts.simulate import main
from scripts.simulation.envelope import EnvelopeRanges
from scripts.simulation.phantom import PRESETS, InstrumentRanges, OrganismRanges, PhantomPreset, TissueRanges

from tests.conftest import REPO

DEMO = REPO / "docs" / "demo_data"


def _fmt(v) -> str:
    if v is None:
        return "–"
    if is_dataclass(v):
        return "below"
    if isinstance(v, tuple) and all(isinstance(x, int) for x in v):
        return "/".join(map(str, v))
    if isinstance(v, tuple):
        return f"{v[0]:g}–{v[1]:g}" if v[0] != v[1] else f"{v[0]:g}"
    return f"{v:g}"


def _rows(text: str, header: str, cls, values) -> None:
    text = text[text.index(header) :]  # the table that starts with this header
    text = text[: text.index("\n\n")]
    for f in fields(cls):
        row = re.search(rf"^\| `{f.name}` \| (.*) \|$", text, re.MULTILINE)
        assert row, f"docs/simulation.md has no row for {f.name}"
        cells = [c.strip() for c in row.group(1).split("|")]
        assert cells == [_fmt(getattr(v, f.name)) for v in values], f.name


def test_simulation_doc_tables_match_presets():
    text = (REPO / "docs" / "simulation.md").read_text()
    _rows(
        text,
        "| parameter | easy |",
        PhantomPreset,
        [PRESETS[p] for p in ("easy", "default", "hard", "tissue", "randomized")],
    )
    _rows(text, "| `TissueRanges` field |", TissueRanges, [TissueRanges()])
    _rows(text, "| `InstrumentRanges` field |", InstrumentRanges, [InstrumentRanges()])
    _rows(text, "| `EnvelopeRanges` field |", EnvelopeRanges, [EnvelopeRanges()])
    _rows(text, "| `OrganismRanges` field |", OrganismRanges, [OrganismRanges()])
    assert {"easy", "default", "hard", "tissue", "randomized", "raw_spectral_focusing"} <= set(PRESETS)


def test_demo_data_is_small_and_regenerates_byte_for_byte(tmp_path):
    files = sorted(p for p in DEMO.rglob("*") if p.is_file())
    assert sum(p.stat().st_size for p in files) <= 5 * 1024 * 1024
    # the documented command (docs/simulation.md, `make demo-data`)
    main(["--out", str(tmp_path), "--num", "3", "--seed", "7", "--size", "128", "--dtype", "uint16"])
    fresh = {
        p.relative_to(tmp_path): hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*") if p.is_file()
    }
    committed = {p.relative_to(DEMO): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert fresh == committed


def test_benchmark_updates_only_its_section():
    text = "# R\n\n<!-- begin:a -->\nold a\n<!-- end:a -->\n\n<!-- begin:b -->\nold b\n<!-- end:b -->\n"
    new = update_markdown(text, "a", "new a")
    assert "new a" in new
    assert "old a" not in new
    assert "old b" in new
    appended = update_markdown(new, "c", "c body")
    assert appended.endswith("<!-- begin:c -->\nc body\n<!-- end:c -->\n")


@pytest.mark.parametrize(
    ("block", "columns"), [("cell_columns", CELL_COLUMNS), ("cell_summary_columns", IMAGE_COLUMNS)]
)
def test_cells_page_column_tables_are_those_of_the_code(block, columns):
    """docs/cells.md's tables of cells.csv and cells_summary.csv are columns_markdown of scripts/cells/columns.py."""
    text = (REPO / "docs" / "cells.md").read_text()
    found = re.search(rf"<!-- begin:{block} -->\n(.*?)<!-- end:{block} -->", text, re.DOTALL)
    assert found, f"docs/cells.md has no <!-- begin:{block} --> block"
    assert found.group(1) == columns_markdown(
        columns
    ), f"docs/cells.md's {block} table is out of date: replace it by scripts.cells.columns.columns_markdown's output"
