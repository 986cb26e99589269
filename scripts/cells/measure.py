"""Per-cell readout of one HSRS stack: :func:`measure_cells` (instances, per-cell rows, image summary).

All per-cell values come from whole-image label sums (:func:`numpy.bincount` over the instance
maps), so the cost grows with the number of pixels, not with the number of cells.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from scripts.cells.bands import (
    RAMAN_BANDS,
    background_level,
    background_pixels,
    band_ratio,
    band_weights,
    corrected_band_sums,
    project_frames,
)
from scripts.cells.columns import AGGREGATED, CELL_COLUMNS, IMAGE_COLUMNS
from scripts.cells.instances import CellInstances, InstanceParameters, segment_instances

logger = logging.getLogger(__name__)


@dataclass
class CellMeasurement:
    """The per-cell readout of one stack.

    Attributes:
        stem: name of the stack.
        instances: the instance maps (:class:`~scripts.cells.instances.CellInstances`).
        rows: one dict per cell, keys and order of :data:`~scripts.cells.columns.CELL_COLUMNS`.
        summary: one dict, keys and order of :data:`~scripts.cells.columns.IMAGE_COLUMNS`.
        mean_image: (H, W) float32 mean intensity over the frames (for overlays).
        pixel_size_um: lateral pixel size, µm.
    """

    stem: str
    instances: CellInstances
    rows: list[dict]
    summary: dict
    mean_image: np.ndarray
    pixel_size_um: float


def _check_inputs(stack, wavenumbers, labels, pixel_size_um, stem):
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"{stem}: the stack must be (K, H, W), one image per Raman shift; got shape {stack.shape}.")
    if not np.issubdtype(stack.dtype, np.number) or np.iscomplexobj(stack):
        raise ValueError(f"{stem}: the stack must hold real numbers, got dtype {stack.dtype}.")
    wn = np.asarray(wavenumbers, np.float64).ravel()
    if wn.size != stack.shape[0] or not np.isfinite(wn).all():
        raise ValueError(
            f"{stem}: {wn.size} wavenumbers for {stack.shape[0]} frames (or some are not finite); "
            "give one Raman shift in cm⁻¹ per frame, e.g. meta['wavenumbers']."
        )
    arr = np.asarray(labels)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != stack.shape[1:]:
        raise ValueError(
            f"{stem}: label map of shape {np.shape(labels)} does not match the stack's image size {stack.shape[1:]}."
        )
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{stem}: the label map must be integers 0/1/2, got dtype {arr.dtype}.")
    if arr.size and (arr.min() < 0 or arr.max() > 2 or (arr.dtype.kind == "f" and (arr != np.round(arr)).any())):
        unknown = [v for v in np.unique(arr).tolist() if v not in (0, 1, 2)]
        raise ValueError(
            f"{stem}: unknown label values {unknown[:10]}; expected 0 background, 1 nucleus, 2 lipid droplet."
        )
    try:
        px = float(pixel_size_um)
    except (TypeError, ValueError):
        px = float("nan")
    if not np.isfinite(px) or px <= 0:
        raise ValueError(
            f"{stem}: pixel_size_um must be a positive number of µm per pixel (HSRS: ~0.25), got {pixel_size_um!r}."
        )
    return stack, wn, arr.astype(np.uint8, copy=False), px


def measure_cells(
    stack: np.ndarray,
    wavenumbers: np.ndarray,
    labels: np.ndarray,
    pixel_size_um: float,
    stem: str = "stack",
    parameters: InstanceParameters | None = None,
) -> CellMeasurement:
    """Cell, nucleus and lipid-droplet instances of one stack and a table row per cell.

    Args:
        stack: (K, H, W) HSRS stack, one image per Raman shift, any real dtype (raw or normalised).
        wavenumbers: (K,) Raman shift of each frame, cm⁻¹ (any order); the stack must cover the
            CH₂ (2835–2865 cm⁻¹) and CH₃ (2915–2945 cm⁻¹) bands.
        labels: (H, W) or (1, H, W) semantic label map: 0 background, 1 nucleus, 2 lipid droplet
            (the network's or the phasor's).
        pixel_size_um: lateral pixel size, µm.
        stem: name of the stack, written in every row and in log messages.
        parameters: instance sizes and thresholds (:class:`~scripts.cells.instances.InstanceParameters`).

    Returns:
        :class:`CellMeasurement`. A field with no cell gives no rows (and a summary row with zero
        counts); both cases are logged, never raised.

    Raises:
        ValueError: wrong shapes, label values other than 0/1/2, wavenumbers of the wrong length or
            not covering the bands, a pixel size that is not a positive number.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> labels = np.zeros((64, 64), np.uint8); labels[20:40, 20:40] = 1
        >>> stack = rng.normal(1.0, 0.01, (32, 64, 64)); stack[:, 12:48, 12:48] += 1.0
        >>> m = measure_cells(stack, np.linspace(2800, 3050, 32), labels, 0.25, "demo")
        >>> len(m.rows), m.rows[0]["has_nucleus"], m.rows[0]["nucleus_area_px"]
        (1, True, 400)
    """
    t0 = time.perf_counter()
    stack, wn, labels, px = _check_inputs(stack, wavenumbers, labels, pixel_size_um, stem)
    k = stack.shape[0]
    weights = np.stack([np.full(k, 1.0 / k)] + [band_weights(wn, c, hw, stem) for c, hw in RAMAN_BANDS.values()])
    images = project_frames(stack, weights)
    mean_image, bands = images[0], images[1:]
    inst = segment_instances(labels, mean_image, px, parameters)
    background, background_source = background_pixels(mean_image, inst.foreground)
    rows = _cell_rows(inst, bands, background, px, stem)
    summary = _image_summary(inst, rows, labels.shape, px, stem, background_source)
    _log(summary, stem, time.perf_counter() - t0)
    return CellMeasurement(stem, inst, rows, summary, mean_image, px)


def _cell_rows(inst: CellInstances, bands: np.ndarray, background: np.ndarray, px: float, stem: str) -> list[dict]:
    n = inst.n_cells
    if n == 0:
        return []
    cells = inst.cells
    h, w = cells.shape
    flat = cells.ravel()
    area = np.bincount(flat, minlength=n + 1).astype(float)
    cy = np.bincount(flat, weights=np.repeat(np.arange(h, dtype=float), w), minlength=n + 1)
    cx = np.bincount(flat, weights=np.tile(np.arange(w, dtype=float), h), minlength=n + 1)
    nucleus_area = np.bincount(inst.nuclei.ravel(), minlength=n + 1)[: n + 1].astype(float)
    cytoplasm_area = area - nucleus_area
    edge = np.unique(np.concatenate([cells[0], cells[-1], cells[:, 0], cells[:, -1]]))
    touches = np.zeros(n + 1, bool)
    touches[edge] = True

    owner = inst.droplet_cell
    droplet_area = np.bincount(inst.droplets.ravel(), minlength=owner.size)[: owner.size].astype(float)
    count = np.bincount(owner[1:], minlength=n + 1)[: n + 1].astype(float)
    total = np.bincount(owner[1:], weights=droplet_area[1:], minlength=n + 1)[: n + 1]
    diameter_sum = np.bincount(owner[1:], weights=2 * np.sqrt(droplet_area[1:] / np.pi), minlength=n + 1)[: n + 1]

    cytoplasm = np.where(inst.nuclei > 0, 0, cells)
    droplet_owner = owner[inst.droplets]
    level = background_level(bands, background)
    ratios = {}
    for name, regions in (("cell", cells), ("cytoplasm", cytoplasm), ("droplets", droplet_owner)):
        sums, region_area = corrected_band_sums(bands, regions, n, level)
        ratio = band_ratio(sums[0], sums[1])
        ratio[region_area == 0] = np.nan
        ratios[name] = ratio

    with np.errstate(divide="ignore", invalid="ignore"):
        has_cyto = cytoplasm_area > 0
        n_c = np.where(inst.has_nucleus & has_cyto, nucleus_area / np.where(has_cyto, cytoplasm_area, 1), np.nan)
        mean_area = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        mean_diameter = np.where(count > 0, diameter_sum / np.maximum(count, 1) * px, np.nan)
        fraction = np.where(has_cyto, total / np.where(has_cyto, cytoplasm_area, 1), np.nan)
    px2 = px * px
    columns = {
        "stack": [stem] * n,
        "cell_id": np.arange(1, n + 1),
        "centroid_y": cy[1:] / area[1:],
        "centroid_x": cx[1:] / area[1:],
        "touches_border": touches[1:],
        "has_nucleus": inst.has_nucleus[1:],
        "cell_area_px": area[1:].astype(int),
        "cell_area_um2": area[1:] * px2,
        "nucleus_area_px": nucleus_area[1:].astype(int),
        "nucleus_area_um2": nucleus_area[1:] * px2,
        "cytoplasm_area_px": cytoplasm_area[1:].astype(int),
        "cytoplasm_area_um2": cytoplasm_area[1:] * px2,
        "n_c_ratio": n_c[1:],
        "droplet_count": count[1:].astype(int),
        "droplet_total_area_px": total[1:].astype(int),
        "droplet_total_area_um2": total[1:] * px2,
        "droplet_mean_area_px": mean_area[1:],
        "droplet_mean_area_um2": mean_area[1:] * px2,
        "droplet_mean_diameter_um": mean_diameter[1:],
        "droplet_area_fraction": fraction[1:],
        "lipid_to_protein_cell": ratios["cell"][1:],
        "lipid_to_protein_cytoplasm": ratios["cytoplasm"][1:],
        "lipid_to_protein_droplets": ratios["droplets"][1:],
    }
    assert list(columns) == list(CELL_COLUMNS), "the row keys must follow CELL_COLUMNS"
    values = [np.asarray(v).tolist() if not isinstance(v, list) else v for v in columns.values()]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def _image_summary(
    inst: CellInstances, rows: list[dict], shape: tuple[int, int], px: float, stem: str, background_source: str
) -> dict:
    complete = [r for r in rows if not r["touches_border"]]
    with_nucleus = sum(r["has_nucleus"] for r in rows)
    summary = {
        "stack": stem,
        "height_px": shape[0],
        "width_px": shape[1],
        "pixel_size_um": px,
        "foreground_source": inst.foreground_source,
        "background_source": background_source,
        "foreground_area_um2": float(inst.foreground.sum()) * px * px if inst.foreground is not None else float("nan"),
        "cells": len(rows),
        "complete_cells": len(complete),
        "cells_with_nucleus": with_nucleus,
        "cells_without_nucleus": len(rows) - with_nucleus,
        "cells_touching_border": len(rows) - len(complete),
        "droplets": inst.n_droplets,
        "droplets_outside_cells": int((inst.droplet_cell[1:] == 0).sum()),
    }
    for name in AGGREGATED:
        values = np.array([r[name] for r in complete], float)
        values = values[np.isfinite(values)]
        summary[f"mean_{name}"] = float(values.mean()) if values.size else float("nan")
        summary[f"median_{name}"] = float(np.median(values)) if values.size else float("nan")
    assert list(summary) == list(IMAGE_COLUMNS), "the summary keys must follow IMAGE_COLUMNS"
    return summary


def _log(summary: dict, stem: str, seconds: float) -> None:
    if summary["cells"] == 0:
        logger.warning(
            "%s: no cells found (%d lipid droplets, foreground from %s); the per-cell table has no rows for this stack.",
            stem,
            summary["droplets"],
            summary["foreground_source"],
        )
    elif summary["cells_with_nucleus"] == 0:
        logger.warning(
            "%s: no nucleus in the label map; %d foreground blobs became cells without nucleus (has_nucleus false).",
            stem,
            summary["cells"],
        )
    logger.info(
        "%s: %d cells (%d with nucleus, %d touching the border), %d lipid droplets (%d outside cells); "
        "foreground from %s, background from %s; %.2f s",
        stem,
        summary["cells"],
        summary["cells_with_nucleus"],
        summary["cells_touching_border"],
        summary["droplets"],
        summary["droplets_outside_cells"],
        summary["foreground_source"],
        summary["background_source"],
        seconds,
    )
