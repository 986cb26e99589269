"""Overlay pictures of label maps on an HSRS stack: RGB composition and PNG writing (atomic)."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
from scripts.io.writer import atomic_path

logger = logging.getLogger(__name__)


#: Overlay colours (RGB 0–1): nucleus, lipid droplet, ground-truth outline.
NUCLEUS_RGB, LIPID_DROPLET_RGB, TRUTH_RGB = (0.1, 0.6, 1.0), (1.0, 0.85, 0.0), (1.0, 0.2, 0.2)


def overlay_rgb(
    stack: np.ndarray, labels: np.ndarray, truth: np.ndarray | None = None, alpha: float = 0.45
) -> np.ndarray:
    """RGB overlay (H, W, 3) in [0, 1]: the mean image in grey, nuclei blue, lipid droplets yellow, truth outlined red."""
    from skimage.segmentation import find_boundaries

    grey = np.asarray(stack, np.float32).mean(0)
    lo, hi = np.percentile(grey, [1, 99.5])
    grey = np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for value, colour in ((1, NUCLEUS_RGB), (2, LIPID_DROPLET_RGB)):
        mask = labels == value
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(colour)
    if truth is not None:
        rgb[find_boundaries(truth, mode="inner") & (truth > 0)] = TRUTH_RGB
    return rgb


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an RGB float image as PNG, atomically."""
    import matplotlib.image

    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, np.clip(rgb, 0, 1), format="png")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)
