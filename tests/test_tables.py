"""scripts.io.tables: rows merged by stem under a lock, never lost -- also with two processes writing at once."""

from __future__ import annotations

import csv
import multiprocessing
from pathlib import Path

import pytest
from scripts.io.errors import HSRSOutputError
from scripts.io.tables import lock_path, update_table

COLUMNS = ["stem", "area", "error"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_second_run_updates_its_rows_and_keeps_the_others(tmp_path):
    table = tmp_path / "summary.csv"
    update_table(table, [{"stem": "a", "area": 1}, {"stem": "b", "area": 2}], COLUMNS)
    update_table(table, [{"stem": "b", "area": 5}, {"stem": "c", "area": 3}], COLUMNS)
    assert [(r["stem"], r["area"]) for r in _rows(table)] == [("a", "1"), ("b", "5"), ("c", "3")]
    assert lock_path(table).name == ".summary.csv.lock"


def test_columns_of_an_existing_table_are_kept(tmp_path):
    table = tmp_path / "summary.csv"
    table.write_text("stem,area,note\na,1,by hand\n")
    update_table(table, [{"stem": "b", "area": 2}], COLUMNS)
    rows = _rows(table)
    assert list(rows[0]) == ["stem", "area", "error", "note"]
    assert rows[0]["note"] == "by hand"
    assert rows[1]["stem"] == "b"


def test_a_foreign_file_with_the_table_name_is_refused_and_left_alone(tmp_path):
    table = tmp_path / "summary.csv"
    table.write_text("name,value\nx,1\n")
    with pytest.raises(HSRSOutputError, match=r"summary\.csv: this file exists but is not a table"):
        update_table(table, [{"stem": "a", "area": 1}], COLUMNS)
    assert table.read_text() == "name,value\nx,1\n"


def _writer(table: str, prefix: str, n: int) -> None:
    for i in range(n):
        update_table(table, [{"stem": f"{prefix}{i:03d}", "area": i}], COLUMNS)


def test_two_processes_writing_one_table_at_once_keep_every_row(tmp_path, monkeypatch):
    table = tmp_path / "summary.csv"
    monkeypatch.setenv("HSRS_TEST_SAVE_PAUSE_S", "0.002")  # widen the read-merge-write window
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(table), p, 40)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    stems = [r["stem"] for r in _rows(table)]
    assert stems == sorted([f"a{i:03d}" for i in range(40)] + [f"b{i:03d}" for i in range(40)])
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]
