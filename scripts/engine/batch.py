"""Folder inference across processes (``torchrun``) and reruns that finish only the missing stacks.

- :func:`pending_stacks` gives this process its share of the datalist, with MONAI's
  ``partition_dataset`` (rank ``r`` of ``n`` takes stacks ``r, r + n, …``; no padding, so every
  stack belongs to exactly one process), and with ``resume`` leaves out the stacks whose outputs
  are already complete. The share depends only on the datalist, the rank and the number of
  processes, never on what other processes have written meanwhile, so two processes can never
  both take, or both leave, a stack.
- :func:`stack_is_complete` is the test of "complete": every output file of the stack exists
  (each is written atomically, :mod:`scripts.io.atomic`, so one that exists is whole) and its row
  in ``summary.csv`` (and the other listed tables) is there without an error. The rows are written
  after the files, so a process killed while writing a stack leaves it incomplete, and the rerun
  writes it again.
- :func:`init_process_group` / :func:`local_device`: one process per GPU with NCCL, or CPU
  processes with gloo; used by ``configs/multi_gpu_inference.yaml``.

The tables are shared by all processes safely: :func:`scripts.io.tables.update_table` merges each
row under a file lock.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from monai.data import partition_dataset
from scripts.io.errors import as_bool
from scripts.io.formats import stack_stem
from scripts.io.tables import read_table

logger = logging.getLogger(__name__)


def rank_and_world_size() -> tuple[int, int]:
    """(rank, number of processes) of the ``torch.distributed`` process group, or of torchrun's
    environment (``RANK``, ``WORLD_SIZE``) before it is initialised; (0, 1) for a plain run."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def local_device() -> torch.device:
    """``cuda:LOCAL_RANK`` (made the current CUDA device) when there is a GPU, else the CPU."""
    if torch.cuda.is_available():
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def init_process_group() -> bool:
    """Join torchrun's process group (NCCL with GPUs, gloo without) unless already joined; True if distributed."""
    if not torch.distributed.is_available() or "WORLD_SIZE" not in os.environ:
        return False
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return True


def destroy_process_group() -> None:
    """Leave the process group (at the end of a run); a no-op when there is none."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def rank_share(datalist: Sequence[dict], rank: int, world_size: int) -> list[dict]:
    """This rank's stacks: MONAI's ``partition_dataset`` without padding (each stack in exactly one share)."""
    datalist = list(datalist)
    if world_size <= 1:
        return datalist
    if len(datalist) < world_size:  # partition_dataset refuses; the same interleaved split, some shares empty
        return datalist[rank : rank + 1]
    return partition_dataset(datalist, num_partitions=world_size, shuffle=False, even_divisible=False)[rank]


def _rows_by_stem(table: Path, key: str) -> dict[str, dict[str, str]]:
    rows, _ = read_table(table, key)
    return {r[key]: r for r in rows}


def stack_is_complete(
    item: dict,
    output_dir: str | Path,
    files: Sequence[str],
    tables: Mapping[str, str],
    rows: dict[str, dict[str, dict[str, str]]] | None = None,
) -> bool:
    """True when every output of the stack ``item["image"]`` is in ``output_dir``.

    Args:
        item: a datalist entry.
        output_dir: the output folder.
        files: output file names relative to ``output_dir``, with ``{stem}`` for the stack's stem.
        tables: tables (relative to ``output_dir``) and their key column (``"stem"`` for ``summary.csv``,
            ``"stack"`` for ``cells_summary.csv``); each must hold a row for the stem with an empty
            ``error``, and, where the table has an ``image`` column, this very stack's path (a
            stack of another folder with the same stem does not count).
        rows: the tables' rows by stem, when already read (:func:`pending_stacks` reads each once).
    """
    output_dir = Path(output_dir)
    image = str(item["image"])
    stem = stack_stem(image)
    if not all(_is_output(output_dir / f.format(stem=stem)) for f in files):
        return False
    for table, key in tables.items():
        by_stem = rows[table] if rows is not None else _rows_by_stem(output_dir / table, key)
        row = by_stem.get(stem)
        if row is None or row.get("error"):
            return False
        if row.get("image") and Path(row["image"]).resolve() != Path(image).resolve():
            return False
    return True


def _is_output(path: Path) -> bool:
    """A written output: a file, or an OME-Zarr folder (renamed into place only when complete)."""
    return path.is_file() or (path.name.endswith(".zarr") and path.is_dir())


def writer_outputs(writer) -> tuple[list[str], dict[str, str]]:
    """Output files (``{stem}`` patterns) and tables a :class:`~scripts.engine.segmentation_writer.SegmentationWriter`
    (or a :class:`~scripts.engine.mosaic.MosaicSegmenter`) writes for each stack."""
    files = [f"{{stem}}.{fmt}" for fmt in writer.formats]
    if writer.overlays:
        files.append("{stem}_overlay.png")
    return files, {writer.summary_csv: "stem"} if writer.summary_csv else {}


def pending_stacks(
    datalist: Sequence[dict],
    writer,
    resume: bool = False,
    files: Sequence[str] = (),
    tables: Mapping[str, str] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> list[dict]:
    """The stacks this process segments: its share of ``datalist``, less the complete ones when ``resume``.

    Args:
        datalist: every stack of the run (after the pre-flight), in a fixed order.
        writer: the run's ``SegmentationWriter``, or the tiled path's ``MosaicSegmenter`` (its folder, formats,
            overlays and summary table).
        resume: leave out the stacks whose outputs are all there (:func:`stack_is_complete`); a rerun
            after an interrupted run (or a dead rank) then writes the missing stacks and rewrites none.
        files, tables: further outputs of each stack (e.g. the per-cell readout's), as in
            :func:`stack_is_complete`.
        rank, world_size: default: the process group's, or torchrun's environment (see
            :func:`rank_and_world_size`).
    """
    if rank is None or world_size is None:
        rank, world_size = rank_and_world_size()
    share = rank_share(datalist, rank, world_size)
    who = f"process {rank + 1} of {world_size}: " if world_size > 1 else ""
    if not as_bool(resume, "resume"):
        if world_size > 1:
            logger.info("%s%d of the %d stacks", who, len(share), len(datalist))
        return share
    out = Path(writer.output_dir)
    writer_files, writer_tables = writer_outputs(writer)
    all_files, all_tables = [*writer_files, *files], {**writer_tables, **(tables or {})}
    rows = {t: _rows_by_stem(out / t, key) for t, key in all_tables.items()}
    todo = [
        item for item in share if item.get("error") or not stack_is_complete(item, out, all_files, all_tables, rows)
    ]
    logger.info(
        "%s%d of the %d stacks; %d already complete in %s (resume), %d to segment",
        who,
        len(share),
        len(datalist),
        len(share) - len(todo),
        out,
        len(todo),
    )
    return todo
