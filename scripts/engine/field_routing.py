"""Which stacks inference segments whole and which in tiles: one command for any field size.

``configs/inference.yaml`` segments a stack **whole** (read in one piece; NIfTI and TIFF label maps, overlay, QC,
per-cell readout) when its estimated peak memory fits ``memory_gib``, and otherwise through the **tiled** path of
:class:`scripts.engine.mosaic.MosaicSegmenter` (the same windows, hence the same labels; a tiled TIFF or OME-Zarr
label map, the overlay from a downsampled view and the ``summary.csv`` row, in bounded memory), with one INFO line
naming the stack, its estimated need and what the tiled path leaves out. A folder mixing 512² stacks and a
4096² mosaic then just works. ``tiling`` forces either path: ``always`` (what ``configs/mosaic.yaml`` sets) or
``never`` (every stack whole, whatever it needs).

The estimate (:func:`whole_field_bytes`) is the process now, the network's activations for one batch of its
largest windows, and per field pixel the working memory of the whole-stack path (the bound
:meth:`~scripts.engine.mosaic.MosaicSegmenter.bytes_per_region_px` gives for a region, which the whole field is)
plus, when stacks overlap in time (``prefetch`` reads the next stack while one is segmented, background writing
writes the last one meanwhile), :data:`NEIGHBOUR_FACTOR` times that again for the neighbouring stack, taken to be
of the same size. Measured (2026-12-08, this bundle's CPU path, 64-frame uint16 TIFFs): one 1024² stack peaked at
2.0 GiB and one 2048² at 4.7 GiB (about 900 bytes per pixel, the bound's 928), a folder of 1024² stacks at 3.3 GiB.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scripts.io.errors import HSRSInputError, HSRSOptionError, as_bool
from scripts.io.formats import stack_stem
from scripts.io.headers import read_header
from scripts.io.mosaic import GIB, open_lazily
from scripts.io.preflight import report_problems

logger = logging.getLogger(__name__)

#: ``tiling`` settings: auto (by ``memory_gib``), always (every stack tiled), never (every stack whole)
TILING_MODES = ("auto", "always", "never")
#: working memory of a neighbouring stack (prefetched / being written) per pixel, as a multiple of one stack's:
#: a folder of 1024²×64 uint16 stacks peaked 1.24 GiB above one such stack alone (2026-12-08)
NEIGHBOUR_FACTOR = 1.35


@dataclass
class FieldRoutes:
    """The datalist split by path, each in datalist order: ``whole`` (the evaluator) and ``tiled`` (the mosaic)."""

    whole: list[dict] = field(default_factory=list)
    tiled: list[dict] = field(default_factory=list)


def whole_field_bytes(shape: Sequence[int], itemsize: int, mosaic, overlapping: bool = True) -> float:
    """Estimated peak resident memory (bytes) of segmenting a stack of ``shape`` (K, H, W), stored with ``itemsize``
    bytes a value, whole (see the module docstring); ``mosaic`` (a :class:`~scripts.engine.mosaic.MosaicSegmenter`)
    knows the network's windows and the per-pixel working memory."""
    frames, h, w = (int(s) for s in shape)
    per_px = mosaic.bytes_per_region_px(frames, itemsize)
    if overlapping:
        per_px *= 1 + NEIGHBOUR_FACTOR
    return mosaic.fixed_bytes() + per_px * h * w


def route_fields(
    datalist: Sequence[dict],
    mosaic,
    tiling: str = "auto",
    prefetch: int = 1,
    background_writing: bool = True,
    skip_errors: bool = False,
) -> FieldRoutes:
    """Split ``datalist`` (after the pre-flight) into stacks segmented whole and stacks segmented in tiles.

    Args:
        datalist: ``[{"image": path, ...}, ...]``; items the pre-flight marked with ``"error"`` stay on the whole
            path, where ``--skip_errors`` records them.
        mosaic: the tiled path's :class:`~scripts.engine.mosaic.MosaicSegmenter`; its ``memory_gib`` is the budget.
        tiling: ``auto``, ``always`` or ``never`` (:data:`TILING_MODES`).
        prefetch, background_writing: the whole path's settings (whether neighbouring stacks share the memory).
        skip_errors: a tiled stack the tiled path cannot read within ``memory_gib`` (a large ``.nii.gz`` or folder
            of frames, which are read whole; chunks larger than the budget) is refused here, before any stack is
            segmented, in one line naming it (all such stacks at once); with ``skip_errors`` it gets ``"error"``
            instead and stays on the whole path, which records it in ``summary.csv``.
    """
    if tiling not in TILING_MODES:
        raise HSRSOptionError(f"tiling must be one of {list(TILING_MODES)}, got {tiling!r}.")
    routes = FieldRoutes()
    budget = mosaic.memory_bytes
    overlapping = len(datalist) > 1 and (int(prefetch) > 0 or bool(background_writing))
    for item in datalist:
        if item.get("error") or tiling == "never":
            routes.whole.append(item)
        elif tiling == "always":
            routes.tiled.append(item)
        else:
            header = read_header(item["image"])
            need = whole_field_bytes(header.shape, header.dtype.itemsize, mosaic, overlapping)
            if need <= budget:
                routes.whole.append(item)
            else:
                routes.tiled.append(item)
                _log_tiled(header, need, budget)
    return _readable_in_parts(routes, mosaic, skip_errors)


def _log_tiled(header, need: float, budget: float) -> None:
    h, w = header.field
    logger.info(
        "%s: %d×%d px × %d frames needs about %s GiB whole, more than memory_gib=%g: segmented in tiles within "
        "it (same labels; label map %s.tif, overlay and summary row, no NIfTI map, QC score or per-cell "
        "readout; --memory_gib %g segments it whole)",
        header.path.name,
        h,
        w,
        header.frames,
        _gib(need),
        budget / GIB,
        stack_stem(str(header.path)),
        math.ceil(need / GIB * 2) / 2,
    )


def _readable_in_parts(routes: FieldRoutes, mosaic, skip_errors: bool) -> FieldRoutes:
    """Open each tiled stack as the tiled path will (:func:`scripts.io.mosaic.open_lazily`), so that one it cannot
    read within ``memory_gib`` is refused now, with every other such stack, rather than after hours of work."""
    problems: dict[int, str] = {}
    for i, item in enumerate(routes.tiled):
        try:
            open_lazily(item["image"], mosaic.data_headroom(Path(item["image"])), mosaic.memory_bytes / GIB).close()
        except HSRSInputError as error:
            problems[i] = str(error)
    if not problems:
        return routes
    if not as_bool(skip_errors, "skip_errors"):
        raise report_problems(
            list(problems.values()),
            len(routes.tiled),
            "stacks too large to segment whole",
            " (--skip_errors true segments the others)",
        )
    for reason in problems.values():
        logger.warning("%s (--skip_errors: recorded, not segmented)", reason)
    routes.whole += [dict(item, error=problems[i]) for i, item in enumerate(routes.tiled) if i in problems]
    routes.tiled = [item for i, item in enumerate(routes.tiled) if i not in problems]
    return routes


def _gib(nbytes: float) -> str:
    gib = nbytes / GIB
    return f"{gib:.1f}" if gib >= 1 else f"{gib:.2g}"
