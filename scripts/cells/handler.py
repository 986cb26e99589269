"""The per-cell readout in the inference workflow: :class:`CellReadoutHandler`, an ignite handler.

Attached to the evaluator of ``configs/inference.yaml`` after the
:class:`~scripts.engine.segmentation_writer.SegmentationWriter`, it passes every decollated item
(its predicted label map and its stack) to a :class:`~scripts.cells.readout.CellReadout`. It is a
handler, like the writer, so that MONAI Label, which runs the bundle's pre/post-processing itself,
writes no files on the server.

What the readout gets from the engine output:

- **labels**: ``item["pred"]`` after post-processing (argmax), MONAI's (1, X, Y), made row-major.
- **stack**: ``item["image"]``, the network's input — resampled to the canonical grid and
  intensity-normalised (one offset and one scale for the whole stack), (K, X, Y) made row-major.
  The readout's lipid-to-protein ratios subtract the background spectrum of the cell-free pixels,
  which removes that offset, and are ratios, which removes that scale: they are the ratios of the
  stack as read, on the canonical grid.
- **wavenumbers**: ``meta["wavenumbers"]`` of the image (the resampling sets them to the canonical
  grid); when missing, :data:`~scripts.spectra.axis.CANONICAL_WAVENUMBERS` for a stack of that many
  frames.
- **pixel size**: ``meta["pixel_size_um"]`` when the file records it, else the readout's default
  (config id ``cells_pixel_size_um``), logged.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from scripts.cells.readout import CellReadout
from scripts.engine.segmentation_writer import as_label_map, axis_flag, overlay_flag
from scripts.io.formats import stack_stem
from scripts.io.orientation import to_row_major
from scripts.spectra.axis import CANONICAL_WAVENUMBERS

logger = logging.getLogger(__name__)


def _as_numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def stack_wavenumbers(meta: dict, num_frames: int, source: str) -> np.ndarray:
    """The (K,) wavenumbers of a pipeline image: ``meta["wavenumbers"]``, else the canonical grid when K matches."""
    recorded = meta.get("wavenumbers")
    if recorded is not None:
        wn = _as_numpy(recorded).astype(np.float64).ravel()
        if wn.size == num_frames:
            return wn
    if num_frames == CANONICAL_WAVENUMBERS.size:
        return CANONICAL_WAVENUMBERS.copy()
    raise ValueError(
        f"{source}: the image has {num_frames} frames and no matching meta['wavenumbers']; the per-cell readout needs "
        "the Raman shift of every frame (keep SpectralResampled in the preprocessing, or set cells false)."
    )


class CellReadoutHandler:
    """Ignite handler: the per-cell readout of every item of the engine output (see the module docstring).

    Args:
        readout: the :class:`~scripts.cells.readout.CellReadout` (its ``enabled`` is the config id ``cells``;
            when false the handler attaches nothing).
        pred_key, image_key: keys of the decollated engine output (``engine.state.output``).
    """

    def __init__(self, readout: CellReadout, pred_key: str = "pred", image_key: str = "image"):
        self.readout, self.pred_key, self.image_key = readout, pred_key, image_key

    def attach(self, engine) -> None:
        from ignite.engine import Events

        if self.readout.enabled:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine) -> None:
        for item in engine.state.output:
            self.process_item(item)

    def process_item(self, item: dict):
        """Run the readout on one decollated item; returns its :class:`~scripts.cells.measure.CellMeasurement`."""
        pred, image = item[self.pred_key], item.get(self.image_key)
        if image is None:
            raise KeyError(f"the engine output has no {self.image_key!r}: the per-cell readout needs the stack.")
        meta = image.meta if isinstance(image, MetaTensor) else {}
        pred_meta = pred.meta if isinstance(pred, MetaTensor) else {}
        source = str(
            pred_meta.get("filename_or_obj") or meta.get("filename_or_obj") or f"image_{len(self.readout.timings)}"
        )
        stem = stack_stem(source)
        stack = np.ascontiguousarray(to_row_major(_as_numpy(image)))
        labels = as_label_map(pred)
        try:
            wavenumbers = stack_wavenumbers(meta, stack.shape[0], source)
            axis = axis_flag(pred_meta or meta, image)
            flag = overlay_flag(item.get("qc"), axis)
            return self.readout(stem, stack, wavenumbers, labels, meta.get("pixel_size_um"), axis, flag)
        except Exception as e:
            raise RuntimeError(
                f"{source}: the per-cell readout failed ({type(e).__name__}: {e}); its label maps are written. "
                "Run without it with --cells false."
            ) from e
