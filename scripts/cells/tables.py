"""Tables over all stacks of a run (``cells.csv``, ``cells_summary.csv``) updated one stack at a time.

Each update replaces the rows of one stack and keeps the rows of every other stack, so reusing an
output folder adds to the earlier results, a stack processed again gets its new rows, and an
interrupted run leaves a table consistent with the stacks done so far. The update holds an
exclusive lock (``fcntl.flock`` on ``.<table>.lock`` beside the table, where available), reads the
table, merges and writes it atomically (temporary file, then rename), so two runs writing into one
folder keep both their rows and a reader never sees half a table.

Examples:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = Path(d) / "cells.csv"
    ...     columns = ["stack", "cell_id"]
    ...     _ = update_stack_rows(path, "b", [{"stack": "b", "cell_id": 1}], columns)
    ...     _ = update_stack_rows(path, "a", [{"stack": "a", "cell_id": 1}, {"stack": "a", "cell_id": 2}], columns)
    ...     _ = update_stack_rows(path, "b", [], columns)  # b processed again: no cell now
    ...     path.read_text().splitlines()
    ['stack,cell_id', 'a,1', 'a,2']
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from scripts.io.writer import atomic_path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; each write is still atomic
    fcntl = None

#: The column that names the stack of a row.
KEY = "stack"


@contextlib.contextmanager
def table_lock(table: str | Path) -> Iterator[None]:
    """Hold the exclusive lock of ``table`` (``.<name>.lock`` beside it; blocks while another process holds it)."""
    table = Path(table)
    with open(table.with_name(f".{table.name}.lock"), "a+") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def read_rows(table: str | Path) -> list[dict[str, str]]:
    """The rows of a table as strings; ``[]`` when it does not exist.

    Raises:
        ValueError: the file exists but has no ``stack`` column (not a table of this readout); it
            is left as it is.
    """
    table = Path(table)
    if not table.is_file():
        return []
    with open(table, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames or []
    if KEY not in columns:
        raise ValueError(
            f"{table}: this file exists but is not a per-cell table (no {KEY!r} column); it was left as it is: "
            "move it away or choose another output folder."
        )
    return rows


def _sort_key(row: Mapping[str, str]) -> tuple:
    cell = row.get("cell_id", "")
    return (row[KEY], int(cell) if str(cell).isdigit() else 0)


def update_stack_rows(
    table: str | Path, stack: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], format_value=str
) -> int:
    """Replace the rows of ``stack`` in ``table`` by ``rows``, keep all other rows, write atomically.

    Args:
        table: the CSV file (created with its header when missing, even for no rows).
        stack: the stack whose rows are replaced.
        rows: its new rows (dicts with the keys of ``columns``; may be empty).
        columns: the column order.
        format_value: turns a value of ``rows`` into its CSV text.

    Returns:
        The number of rows in the table after the update.
    """
    table = Path(table)
    columns = list(columns)
    new = [{c: format_value(row[c]) for c in columns} for row in rows]
    with table_lock(table):
        kept = [{c: r.get(c) or "" for c in columns} for r in read_rows(table) if r[KEY] != stack]
        merged = sorted(kept + new, key=_sort_key)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(merged)
        with atomic_path(table) as tmp:
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return len(merged)
