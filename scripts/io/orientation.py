"""Axis order of HSRS arrays: MONAI's ``(C, X, Y)`` inside bundle pipelines, row-major ``(…, H, W)`` elsewhere.

MONAI's readers and writers (``NibabelReader``, ``ITKReader``, ``PILReader``, ``SaveImage``, MONAI
Label's writer) treat the first spatial axis as **x** (image columns, left to right) and the second
as **y** (rows, top to bottom), with the affine mapping array indices to physical positions. NIfTI
files store the same order (X = columns). Microscopy tools (tifffile, Fiji, napari, NumPy code)
index images row-major as ``(H, W)`` = ``(y, x)``.

The bundle follows both conventions, each where it belongs:

=====================================  =========================  ==========================================
where                                   axis order                 why
=====================================  =========================  ==========================================
NIfTI on disk                           X = W, Y = H (, Z = K)     the NIfTI / ITK / Slicer convention
TIFF, ``.npy`` on disk                  (K, H, W)                  what Fiji, napari and tifffile expect
:func:`scripts.io.reader.read_hsrs`     (K, H, W)                  NumPy API for the phasor and simulator
:class:`scripts.io.reader.HSRSReader`   (K, X, Y) = (K, W, H)      MONAI pipelines, with the pixel size in
(bundle configs, MONAI Label)                                      ``meta["affine"]``
=====================================  =========================  ==========================================

So a label map predicted in a MONAI pipeline and written by MONAI's ``SaveImage``, by MONAI Label
or by :class:`~scripts.engine.segmentation_writer.SegmentationWriter` overlays its input stack in
Slicer / ITK-SNAP (NIfTI) and in Fiji / napari (TIFF) without a transpose.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def to_monai_xy(array: Array) -> Array:
    """Row-major ``(…, H, W)`` → MONAI's ``(…, X, Y)`` = ``(…, W, H)`` (a view; swap of the last two axes)."""
    return array.transpose(-1, -2) if isinstance(array, torch.Tensor) else np.swapaxes(array, -1, -2)


def to_row_major(array: Array) -> Array:
    """MONAI's ``(…, X, Y)`` → row-major ``(…, H, W)`` (a view; the inverse of :func:`to_monai_xy`)."""
    return array.transpose(-1, -2) if isinstance(array, torch.Tensor) else np.swapaxes(array, -1, -2)


def monai_affine(pixel_size_um: float | None) -> np.ndarray:
    """The 4×4 affine of a 2-D ``(X, Y)`` field: pixel size in µm on the diagonal (1 when unknown).

    4×4 like the affine MONAI's ``NibabelReader`` gives a 2-D NIfTI file, which MONAI's ``SaveImage``
    and MONAI Label's writers expect (with a 3×3 affine they fail to write a (1, X, Y) map).
    """
    pixel = float(pixel_size_um) if pixel_size_um is not None else 1.0
    return np.diag([pixel, pixel, 1.0, 1.0])
