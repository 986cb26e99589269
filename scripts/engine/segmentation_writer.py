"""Writing segmentation results: label maps (NIfTI + TIFF), overlay PNGs and a per-image summary CSV.

The summary's ``ood_score``, ``qc_flag`` and ``qc_reason`` come from the quality check
(:class:`scripts.qc.handler.QualityCheck`, which leaves them in ``item["qc"]``); empty without it.

:class:`SegmentationWriter` is an ignite handler for the inference and evaluation workflows. It is
a handler rather than a post-processing transform so that MONAI Label, which runs the bundle's
pre/post-processing itself, does not write files on the server.

``summary.csv`` never loses a row (:mod:`scripts.io.tables`): each image updates its own row (keyed
by stem) under a file lock, so rows of earlier runs into the same folder, and of a run writing
into it at the same time, are kept. Stacks skipped with ``skip_errors`` get a row with the reason
in the ``error`` column (:meth:`SegmentationWriter.record_skipped`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from scipy import ndimage
from scripts.io.errors import as_bool
from scripts.io.formats import stack_stem
from scripts.io.orientation import to_row_major
from scripts.io.overlay import save_png, stack_overlay_figure
from scripts.io.tables import read_table, update_table
from scripts.io.writer import check_writable, write_label_map
from scripts.qc.reference import AXIS_FLAGS

logger = logging.getLogger(__name__)


SUMMARY_FIELDS = (
    "stem",
    "image",
    "height",
    "width",
    "pixel_size_um",
    "nucleus_area_px",
    "nucleus_count",
    "lipid_droplet_area_px",
    "lipid_droplet_count",
    "lipid_droplet_mean_diameter_px",
    "nucleus_area_um2",
    "lipid_droplet_area_um2",
    "axis_check",
    "ood_score",
    "qc_flag",
    "qc_reason",
    "error",
)
#: Columns of the quality check (:mod:`scripts.qc`), handed over as ``item["qc"]`` by its handler.
QC_FIELDS = ("ood_score", "qc_flag", "qc_reason")


def label_statistics(labels: np.ndarray) -> dict[str, float]:
    """Areas (px), object counts and mean lipid-droplet diameter of a (H, W) label map."""
    nucleus, droplets = labels == 1, labels == 2
    _, n_nuclei = ndimage.label(nucleus)
    ld_objects, n_ld = ndimage.label(droplets)
    sizes = np.bincount(ld_objects.ravel())[1:] if n_ld else np.zeros(0)
    return {
        "nucleus_area_px": int(nucleus.sum()),
        "nucleus_count": int(n_nuclei),
        "lipid_droplet_area_px": int(droplets.sum()),
        "lipid_droplet_count": int(n_ld),
        "lipid_droplet_mean_diameter_px": round(float(np.mean(2 * np.sqrt(sizes / np.pi))), 3) if n_ld else 0.0,
    }


def as_label_map(pred: Any) -> np.ndarray:
    """A pipeline's (1, X, Y) label map, or (C, X, Y) one-hot / probabilities, as a row-major (H, W) uint8 map."""
    arr = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    if arr.ndim == 3 and arr.shape[0] > 1:  # one-hot or probabilities (C, X, Y)
        arr = arr.argmax(0)
    return np.ascontiguousarray(to_row_major(np.asarray(arr).reshape(arr.shape[-2:]))).astype(np.uint8)


def axis_flag(meta: dict, image: Any) -> str:
    """``meta["axis_check"]`` of the prediction or its image ("" when the reader did not record one)."""
    flag = meta.get("axis_check") or (image.meta.get("axis_check") if isinstance(image, MetaTensor) else None)
    return str(flag[0] if isinstance(flag, list | tuple) and flag else flag or "")


def overlay_flag(qc: dict | None, axis_check: str = "") -> str:
    """The verdict an overlay prints for a flagged stack ("" otherwise): the quality check's (``item["qc"]``, which
    includes the axis check's when the QC ran), else the reader's axis check when it contradicts the chemistry."""
    qc = qc or {}
    if str(qc.get("qc_flag", "")) == "flagged":
        score = qc.get("ood_score")
        value = f" (ood_score {score})" if score not in (None, "") else ""
        reason = str(qc.get("qc_reason") or "").strip()
        return f"QC FLAGGED{value}: not like the training data" + (f": {reason}" if reason else "")
    if axis_check in AXIS_FLAGS:
        return f"AXIS CHECK FLAGGED ({axis_check}): the stored spectral axis disagrees with the stack's chemistry"
    return ""


class SegmentationWriter:
    """Ignite handler writing, per image, ``<stem>.nii.gz`` + ``<stem>.tif`` label maps, ``<stem>_overlay.png``
    and a row of ``summary.csv`` (areas, counts) into ``output_dir``.

    Args:
        output_dir: where results go; created and checked for write access at construction, so an
            unwritable folder fails before any work.
        pred_key, image_key: keys of the decollated engine output (``engine.state.output``).
        label_key: optional ground truth key; when given, overlays outline the truth in red.
        formats: label-map formats (``"nii.gz"``, ``"tif"``); empty to write only overlays/CSV.
        overlays: write overlay PNGs: the CH₂ image beside the label map on the mean image, legend, scale bar, the
            QC verdict when the stack is flagged (:func:`scripts.io.overlay.stack_overlay_figure`).
        summary_csv: file name of the summary table (its row is updated atomically after each image;
            rows of other stacks are kept).
        default_pixel_size_um: the overlays' scale bar for stacks whose file records no pixel size (marked as
            assumed; config id ``cells_pixel_size_um``); None: no scale bar for them.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        pred_key: str = "pred",
        image_key: str = "image",
        label_key: str | None = None,
        formats: tuple[str, ...] | list[str] = ("nii.gz", "tif"),
        overlays: bool = True,
        summary_csv: str | None = "summary.csv",
        default_pixel_size_um: float | None = 0.25,
    ):
        self.output_dir = check_writable(output_dir)
        self.pred_key, self.image_key, self.label_key = pred_key, image_key, label_key
        self.formats, self.summary_csv = tuple(formats), summary_csv
        self.overlays = as_bool(overlays, "overlays")
        self.default_pixel_size_um = None if default_pixel_size_um is None else float(default_pixel_size_um)
        self.rows: dict[str, dict] = {}
        self.skipped: dict[str, str] = {}

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.report)

    def __call__(self, engine) -> None:
        for item in engine.state.output:
            self.write_item(item)

    def write_item(self, item: dict) -> dict:
        """Write the outputs of one decollated item; returns its summary row."""
        pred, image = item[self.pred_key], item.get(self.image_key)
        meta = pred.meta if isinstance(pred, MetaTensor) else {}
        if not meta.get("filename_or_obj") and isinstance(image, MetaTensor):
            meta = image.meta
        source = str(meta.get("filename_or_obj", f"image_{len(self.rows)}"))
        stem = stack_stem(source)
        labels = as_label_map(pred)
        pixel = meta.get("pixel_size_um")
        pixel = float(pixel) if pixel is not None and np.isfinite(float(pixel)) else None
        if self.formats:
            write_label_map(self.output_dir / stem, labels, formats=self.formats, pixel_size_um=pixel)
        if self.overlays and image is not None:
            truth = as_label_map(item[self.label_key]) if self.label_key and self.label_key in item else None
            stack = to_row_major(image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image))
            axis = axis_flag(meta, image)
            image_meta = image.meta if isinstance(image, MetaTensor) else meta
            wavenumbers = image_meta.get("wavenumbers", meta.get("wavenumbers"))
            if isinstance(wavenumbers, torch.Tensor):
                wavenumbers = wavenumbers.detach().cpu().numpy()
            figure = stack_overlay_figure(
                stack,
                labels,
                truth,
                wavenumbers=None if wavenumbers is None else np.asarray(wavenumbers, float).ravel()[: stack.shape[0]],
                axis_check=axis,
                pixel_size_um=pixel or self.default_pixel_size_um,
                pixel_size_assumed=pixel is None and self.default_pixel_size_um is not None,
                flag=overlay_flag(item.get("qc"), axis),
                title=stem,
            )
            save_png(self.output_dir / f"{stem}_overlay.png", figure)
        stats = label_statistics(labels)
        row = {
            "stem": stem,
            "image": source,
            "height": labels.shape[0],
            "width": labels.shape[1],
            "pixel_size_um": pixel or "",
            **stats,
        }
        row["nucleus_area_um2"] = round(stats["nucleus_area_px"] * pixel**2, 3) if pixel else ""
        row["lipid_droplet_area_um2"] = round(stats["lipid_droplet_area_px"] * pixel**2, 3) if pixel else ""
        row["axis_check"] = axis_flag(meta, image)  # the reader's verdict on the spectral axis (README, data contract)
        qc = item.get("qc") or {}  # the quality check's handler, attached before this one (scripts.qc.handler)
        row.update({k: qc.get(k, "") for k in QC_FIELDS})
        row["error"] = ""
        self.rows[stem] = row
        if self.summary_csv:
            self._write_summary(row)
        logger.info(
            "%s: nucleus %d px, %d lipid droplets -> %s",
            stem,
            stats["nucleus_area_px"],
            stats["lipid_droplet_count"],
            self.output_dir,
        )
        return row

    def record_skipped(self, item: dict, reason: str) -> dict:
        """Record a stack that was skipped (``skip_errors``): a summary row with the reason; returns the row.

        Called by :class:`scripts.io.dataset.SkipErrorsDataset` (also from DataLoader worker
        processes: the summary update is process-safe).
        """
        source = str(item.get(self.image_key, item) if isinstance(item, dict) else item)
        stem = stack_stem(source)
        row = {"stem": stem, "image": source, "error": reason}
        self.skipped[stem] = reason
        if self.summary_csv:
            self._write_summary(row)
        return row

    def _write_summary(self, row: dict) -> None:
        update_table(self.output_dir / self.summary_csv, [row], SUMMARY_FIELDS)

    def report(self, engine=None, stacks: Sequence[dict] | None = None) -> None:
        """End of run: a WARNING when stacks were skipped (their reasons are in the summary table).

        ``stacks``: this run's datalist. Stacks skipped by a DataLoader worker process are recorded in the
        table by that process; with ``stacks`` they are counted from the table, else only this process's.
        """
        skipped = dict(self.skipped)
        if stacks is not None and self.summary_csv and (self.output_dir / self.summary_csv).exists():
            wanted = {stack_stem(str(s.get(self.image_key, ""))) for s in stacks if isinstance(s, dict)}
            rows, _ = read_table(self.output_dir / self.summary_csv)
            skipped.update(
                {r["stem"]: r["error"] for r in rows if r.get("error") and r["stem"] in wanted - set(self.rows)}
            )
        if skipped:
            logger.warning(
                "%d stack(s) written, %d skipped (reasons in the 'error' column of %s)",
                len(self.rows),
                len(skipped),
                self.output_dir / (self.summary_csv or ""),
            )
