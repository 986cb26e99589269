"""Tables with one row per stack (``summary.csv``, ``phasor_statistics.csv``) that never lose a row.

A run updates the rows of the stacks it processed, keyed by stem, and keeps every other row, so
reusing an output folder adds to the earlier results instead of dropping them. Each update takes
an exclusive lock (``fcntl.flock`` on ``.<table>.lock`` beside the table), reads the table, merges
and writes it atomically (:func:`scripts.io.atomic.atomic_path`) before releasing the lock, so two
runs writing into one folder at once both keep their rows, and a reader never sees half a table.

Examples:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = Path(d) / "summary.csv"
    ...     _ = update_table(path, [{"stem": "b", "area": 2}], ["stem", "area"])
    ...     rows = update_table(path, [{"stem": "a", "area": 1}, {"stem": "b", "area": 3}], ["stem", "area"])
    ...     [(r["stem"], r["area"]) for r in rows]
    [('a', '1'), ('b', '3')]
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from scripts.io.atomic import atomic_path, write_error
from scripts.io.errors import HSRSOutputError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; single runs are still atomic
    fcntl = None


def lock_path(table: str | Path) -> Path:
    """The lock file of a table: ``.<name>.lock`` in the same folder (kept; removing it would race)."""
    table = Path(table)
    return table.with_name(f".{table.name}.lock")


@contextlib.contextmanager
def table_lock(table: str | Path) -> Iterator[None]:
    """Hold the exclusive lock of ``table`` (blocks while another process holds it)."""
    path = lock_path(table)
    try:
        handle = open(path, "a+")  # noqa: SIM115 - kept open while the lock is held
    except OSError as e:
        raise write_error(path, e) from e
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def read_table(table: str | Path, key: str = "stem") -> tuple[list[dict[str, str]], list[str]]:
    """Rows (as strings) and column names of a CSV table; ``([], [])`` when it does not exist.

    Raises :class:`~scripts.io.errors.HSRSOutputError` when the file exists but is not a table
    keyed by ``key`` (some other file with that name in the output folder): it is never overwritten.
    """
    table = Path(table)
    if not table.is_file():
        return [], []
    with open(table, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    if key not in columns:
        raise HSRSOutputError(
            f"{table}: this file exists but is not a table written by this bundle (no {key!r} column); it was left "
            "as it is: move it away or choose another --output_dir."
        )
    return rows, columns


def _as_text(value: Any) -> str:
    return "" if value is None else str(value)


def merge_rows(
    existing: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], key: str = "stem"
) -> list[dict[str, str]]:
    """``existing`` updated by ``new``: a new row replaces the row with the same key; sorted by key."""
    merged = {str(r[key]): {k: _as_text(v) for k, v in r.items()} for r in existing}
    for row in new:
        merged[str(row[key])] = {k: _as_text(v) for k, v in row.items()}
    return [merged[k] for k in sorted(merged)]


def write_table(table: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` (missing columns empty, unknown keys dropped) to ``table`` atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(table) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return Path(table)


class LockedTable:
    """A table while its lock is held (see :func:`locked_table`)."""

    def __init__(self, path: Path, columns: Sequence[str], key: str):
        self.path, self.columns, self.key = path, list(columns), key

    def update(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
        """Merge ``rows`` into the table on disk, write it atomically and return all its rows."""
        existing, existing_columns = read_table(self.path, self.key)
        columns = self.columns + [c for c in existing_columns if c not in self.columns]
        merged = merge_rows(existing, rows, self.key)
        write_table(self.path, merged, columns)
        return merged


@contextlib.contextmanager
def locked_table(table: str | Path, columns: Sequence[str], key: str = "stem") -> Iterator[LockedTable]:
    """Hold the lock of ``table`` and give a :class:`LockedTable` to update it; write related files inside.

    Example (the phasor job writes its datalist from the merged rows under the same lock)::

        with locked_table(out / "phasor_statistics.csv", CSV_COLUMNS) as table:
            rows = table.update(new_rows)
            write_datalist(rows)
    """
    table = Path(table)
    with table_lock(table):
        yield LockedTable(table, columns, key)


def update_table(
    table: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], key: str = "stem"
) -> list[dict[str, str]]:
    """Merge ``rows`` into ``table`` by ``key`` under its lock (see the module docstring); returns all rows.

    Columns: ``columns`` first, then any other column the table already has (kept, never dropped).
    """
    with locked_table(table, columns, key) as locked:
        return locked.update(rows)
