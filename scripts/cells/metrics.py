"""Instance metrics for a benchmark: F1 of matched instances, panoptic quality, per-cell droplet errors.

All functions take (H, W) integer instance maps (0 background, each object one id) and are pure.
Two instances *match* when their intersection over union (IoU) is at least ``iou_threshold``;
matches are one-to-one, chosen to maximise the total IoU (Hungarian assignment; at thresholds
above 0.5 every candidate pair is already unique).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scripts.cells.instances import assign_droplets


@dataclass(frozen=True)
class InstanceMatch:
    """One-to-one matches between predicted and reference instances.

    Attributes:
        pred_ids, ref_ids: (M,) ids of the matched pairs.
        iou: (M,) their IoU.
        n_pred, n_ref: number of instances in each map.
    """

    pred_ids: np.ndarray
    ref_ids: np.ndarray
    iou: np.ndarray
    n_pred: int
    n_ref: int

    @property
    def tp(self) -> int:
        return int(self.iou.size)

    @property
    def fp(self) -> int:
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        return self.n_ref - self.tp


def _check_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(
            f"instance maps must have the same shape, got {pred.shape} (prediction) and {ref.shape} (reference)."
        )
    for name, a in (("prediction", pred), ("reference", ref)):
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"the {name} must be an integer instance map, got dtype {a.dtype}.")
        if a.size and a.min() < 0:
            raise ValueError(f"the {name} has negative ids (min {a.min()}); ids are 0 (background) or positive.")
    return pred.astype(np.int64, copy=False), ref.astype(np.int64, copy=False)


def match_instances(pred: np.ndarray, ref: np.ndarray, iou_threshold: float = 0.5) -> InstanceMatch:
    """Match predicted to reference instances by IoU.

    Args:
        pred, ref: (H, W) integer instance maps of the same shape.
        iou_threshold: least IoU of a match, in (0, 1].

    Returns:
        :class:`InstanceMatch`.
    """
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}.")
    pred, ref = _check_pair(pred, ref)
    pred_ids, pred_area = np.unique(pred[pred > 0], return_counts=True)
    ref_ids, ref_area = np.unique(ref[ref > 0], return_counts=True)
    both = (pred > 0) & (ref > 0)
    empty = np.zeros(0, np.int64)
    if not both.any():
        return InstanceMatch(empty, empty, np.zeros(0), pred_ids.size, ref_ids.size)
    base = int(ref.max()) + 1
    pairs, inter = np.unique(pred[both] * base + ref[both], return_counts=True)
    p, r = np.divmod(pairs, base)
    pi, ri = np.searchsorted(pred_ids, p), np.searchsorted(ref_ids, r)
    iou = inter / (pred_area[pi] + ref_area[ri] - inter)
    keep = iou >= iou_threshold
    pi, ri, iou = pi[keep], ri[keep], iou[keep]
    if iou.size:
        # candidates only: rows/columns of the ids that have one, then the best one-to-one assignment
        rows, row_of = np.unique(pi, return_inverse=True)
        cols, col_of = np.unique(ri, return_inverse=True)
        matrix = np.zeros((rows.size, cols.size))
        matrix[row_of, col_of] = iou
        a, b = linear_sum_assignment(matrix, maximize=True)
        ok = matrix[a, b] >= iou_threshold
        pi, ri, iou = rows[a[ok]], cols[b[ok]], matrix[a[ok], b[ok]]
    return InstanceMatch(pred_ids[pi], ref_ids[ri], iou, pred_ids.size, ref_ids.size)


def instance_f1(pred: np.ndarray, ref: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Detection F1 of instances matched at ``iou_threshold``.

    Returns:
        ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``; a ratio whose denominator is 0
        is NaN (e.g. F1 of two empty maps: nothing to detect, left out of means).
    """
    m = match_instances(pred, ref, iou_threshold)
    return {
        "tp": m.tp,
        "fp": m.fp,
        "fn": m.fn,
        "precision": _ratio(m.tp, m.tp + m.fp),
        "recall": _ratio(m.tp, m.tp + m.fn),
        "f1": _ratio(2 * m.tp, 2 * m.tp + m.fp + m.fn),
    }


def panoptic_quality(pred: np.ndarray, ref: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Panoptic quality PQ = SQ × RQ (Kirillov et al. 2019) of one instance class.

    SQ (segmentation quality) is the mean IoU of the matches, RQ (recognition quality) is
    TP / (TP + FP/2 + FN/2), i.e. the F1 of the matches.

    Returns:
        ``pq``, ``sq``, ``rq``, ``tp``, ``fp``, ``fn``; NaN where undefined (no instance in either map;
        SQ with no match).
    """
    m = match_instances(pred, ref, iou_threshold)
    sq = float(m.iou.mean()) if m.tp else float("nan")
    rq = _ratio(m.tp, m.tp + 0.5 * m.fp + 0.5 * m.fn)
    pq = 0.0 if m.tp == 0 and np.isfinite(rq) else sq * rq
    return {"pq": pq, "sq": sq, "rq": rq, "tp": m.tp, "fp": m.fp, "fn": m.fn}


def cell_droplet_errors(
    pred_cells: np.ndarray,
    pred_droplets: np.ndarray,
    ref_cells: np.ndarray,
    ref_droplets: np.ndarray,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Per-cell lipid-droplet count and area errors over matched cells fully inside the field.

    Cells are matched at ``iou_threshold``; a matched pair counts when the reference cell does not
    touch the image border (a cut cell's droplets are cut too). Each droplet belongs to the cell
    holding most of its pixels (:func:`~scripts.cells.instances.assign_droplets`), in each map.

    Args:
        pred_cells, pred_droplets: predicted cell and droplet instance maps.
        ref_cells, ref_droplets: reference cell and droplet instance maps.
        iou_threshold: least IoU of a cell match.

    Returns:
        ``cells`` (number of pairs scored), ``count_mae`` and ``count_bias`` (droplets per cell,
        predicted − reference), ``area_mae_px`` and ``area_bias_px`` (total droplet area per cell,
        pixels); NaN when no pair is scored.
    """
    for cells, droplets, name in ((pred_cells, pred_droplets, "prediction"), (ref_cells, ref_droplets, "reference")):
        if np.shape(cells) != np.shape(droplets):
            raise ValueError(
                f"{name}: cell map {np.shape(cells)} and droplet map {np.shape(droplets)} differ in shape."
            )
    m = match_instances(pred_cells, ref_cells, iou_threshold)
    ref_cells = np.asarray(ref_cells)
    edge = np.unique(np.concatenate([ref_cells[0], ref_cells[-1], ref_cells[:, 0], ref_cells[:, -1]]))
    inside = ~np.isin(m.ref_ids, edge)
    pred_ids, ref_ids = m.pred_ids[inside], m.ref_ids[inside]
    nan = float("nan")
    if not pred_ids.size:
        return {"cells": 0, "count_mae": nan, "count_bias": nan, "area_mae_px": nan, "area_bias_px": nan}
    (pred_count, pred_area), (ref_count, ref_area) = (
        _droplets_per_cell(np.asarray(cells), np.asarray(droplets), ids)
        for cells, droplets, ids in ((pred_cells, pred_droplets, pred_ids), (ref_cells, ref_droplets, ref_ids))
    )
    dc, da = pred_count - ref_count, pred_area - ref_area
    return {
        "cells": int(pred_ids.size),
        "count_mae": float(np.abs(dc).mean()),
        "count_bias": float(dc.mean()),
        "area_mae_px": float(np.abs(da).mean()),
        "area_bias_px": float(da.mean()),
    }


def _droplets_per_cell(cells: np.ndarray, droplets: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Droplet count and total droplet area (px) of the cells ``ids``."""
    owner = assign_droplets(droplets, cells)
    area = np.bincount(droplets.ravel(), minlength=owner.size)[: owner.size].astype(float)
    n = max(int(cells.max(initial=0)), int(ids.max(initial=0))) + 1
    count = np.bincount(owner[1:], minlength=n)
    total = np.bincount(owner[1:], weights=area[1:], minlength=n)
    return count[ids].astype(float), total[ids]


def _ratio(num: float, den: float) -> float:
    return float(num) / den if den else float("nan")
