"""Tables over all stacks of a run (``cells.csv``, ``cells_summary.csv``) updated one stack at a time.

Each update replaces the rows of one stack — any number of them, none for a field without cells —
and keeps the rows of every other stack, so reusing an output folder adds to the earlier results,
a stack processed again gets its new rows, and an interrupted run leaves a table consistent with
the stacks done so far. Like ``summary.csv`` (:mod:`scripts.io.tables`, whose lock, reader and
writer this uses), the update holds the table's exclusive lock (``.<table>.lock`` beside it),
reads the table, merges and writes it atomically, so two runs writing into one folder keep both
their rows and a reader never sees half a table.

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

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scripts.io.tables import read_table, table_lock, write_table

#: The column that names the stack of a row.
KEY = "stack"


def _sort_key(row: Mapping[str, str]) -> tuple:
    cell = str(row.get("cell_id", ""))
    return (row[KEY], int(cell) if cell.isdigit() else 0)


def update_stack_rows(
    table: str | Path,
    stack: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    format_value: Callable[[Any], str] = str,
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

    Raises:
        scripts.io.errors.HSRSOutputError: the file exists but is not a table with a ``stack``
            column (it is left as it is), or it cannot be written.
    """
    columns = list(columns)
    new = [{c: format_value(row[c]) for c in columns} for row in rows]
    with table_lock(table):
        existing, _ = read_table(table, key=KEY)
        kept = [{c: r.get(c) or "" for c in columns} for r in existing if r[KEY] != stack]
        merged = sorted(kept + new, key=_sort_key)
        write_table(table, merged, columns)
    return len(merged)
