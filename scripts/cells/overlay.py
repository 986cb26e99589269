"""Overlay figure of the per-cell readout: cell outlines with ids, nuclei and lipid droplets in colour on the
stack's mean image, beside its CH₂ image; a legend, a scale bar, the QC verdict when the stack is flagged.

The figure is the bundle's overlay figure (:class:`scripts.io.overlay.OverlayFigure`: numpy pixels and
matplotlib text on an Agg canvas, no pyplot, no global state, safe in workers and servers). Outlines are
rasterised at the image's own resolution and enlarged by an integer factor with nearest-neighbour (at least
512 px on the short side), so they stay one image pixel wide and exact; fields larger than 2048 px are
shown at every n-th pixel (the figure says so).
"""

from __future__ import annotations

import numpy as np
from scripts.cells.instances import CellInstances
from scripts.io.overlay import SCALE_BAR_UM, LegendEntry, OverlayFigure, scale_bar_length_um, stretch
from skimage.segmentation import find_boundaries

#: Colours (RGB 0–1) of the overlay.
COLOURS: dict[str, tuple[float, float, float]] = {
    "nucleus": (0.1, 0.6, 1.0),
    "lipid_droplet": (1.0, 0.85, 0.0),
    "lipid_droplet_outside_cells": (1.0, 0.25, 0.25),
    "cell_outline": (0.2, 1.0, 0.4),
    "cell_without_nucleus": (1.0, 0.5, 0.0),
}
__all__ = ["COLOURS", "SCALE_BAR_UM", "overlay_figure", "overlay_png", "overlay_rgb", "scale_bar_length_um"]


def overlay_rgb(mean_image: np.ndarray, instances: CellInstances, alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 1]: grey mean image, nuclei and droplets tinted, cell outlines drawn.

    Cells without a nucleus are outlined in another colour, and droplets outside every cell too.
    """
    grey = stretch(mean_image)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    outside = instances.droplet_cell[instances.droplets] == 0
    tints = (
        (instances.nuclei > 0, "nucleus"),
        ((instances.droplets > 0) & ~outside, "lipid_droplet"),
        ((instances.droplets > 0) & outside, "lipid_droplet_outside_cells"),
    )
    for mask, name in tints:
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(COLOURS[name])
    edges = find_boundaries(instances.cells, mode="inner") & (instances.cells > 0)
    no_nucleus = ~instances.has_nucleus[instances.cells]
    rgb[edges & ~no_nucleus] = COLOURS["cell_outline"]
    rgb[edges & no_nucleus] = COLOURS["cell_without_nucleus"]
    return rgb


#: The legend of the cells overlay.
LEGEND = (
    LegendEntry("nucleus", COLOURS["nucleus"]),
    LegendEntry("lipid droplet", COLOURS["lipid_droplet"]),
    LegendEntry("lipid droplet outside cells", COLOURS["lipid_droplet_outside_cells"]),
    LegendEntry("cell (id)", COLOURS["cell_outline"], outline=True),
    LegendEntry("cell without nucleus", COLOURS["cell_without_nucleus"], outline=True),
)


def overlay_figure(
    mean_image: np.ndarray,
    instances: CellInstances,
    pixel_size_um: float | None = None,
    title: str | None = None,
    max_ids: int = 500,
    ch2: tuple[np.ndarray, str] | None = None,
    flag: str = "",
    pixel_size_assumed: bool = False,
) -> OverlayFigure:
    """The overlay figure (:func:`overlay_png`'s arguments) as an :class:`~scripts.io.overlay.OverlayFigure`."""
    h, w = instances.cells.shape
    n = instances.n_cells
    ids = []
    if 0 < n <= max_ids:
        flat = instances.cells.ravel()
        area = np.bincount(flat, minlength=n + 1)
        yy = np.bincount(flat, weights=np.repeat(np.arange(h, dtype=float), w), minlength=n + 1)
        xx = np.bincount(flat, weights=np.tile(np.arange(w, dtype=float), h), minlength=n + 1)
        ids = [(yy[i] / area[i], xx[i] / area[i], str(i)) for i in np.flatnonzero(area[1:]) + 1]
    background, background_title = ch2 if ch2 is not None else (mean_image, "mean image")
    notes = [f"{n} cells; ids not drawn above {max_ids}"] if n > max_ids else []
    return OverlayFigure(
        panels=[
            (stretch(background), background_title),
            (overlay_rgb(mean_image, instances), "cells on the mean image"),
        ],
        legend=LEGEND,
        title=title or "",
        pixel_size_um=pixel_size_um,
        pixel_size_assumed=pixel_size_assumed and bool(pixel_size_um),
        flag=flag,
        notes=notes,
        labels=ids,
    )


def overlay_png(
    mean_image: np.ndarray,
    instances: CellInstances,
    pixel_size_um: float | None = None,
    title: str | None = None,
    max_ids: int = 500,
    ch2: tuple[np.ndarray, str] | None = None,
    flag: str = "",
    pixel_size_assumed: bool = False,
) -> bytes:
    """The overlay figure as PNG bytes.

    Args:
        mean_image: (H, W) mean intensity over the frames (the overlay's background).
        instances: the instance maps.
        pixel_size_um: lateral pixel size, µm; draws a scale bar when given.
        title: figure title (e.g. the stack's name).
        max_ids: write cell ids only when there are at most this many cells (a note says so).
        ch2: ``(image, title)`` of the panel beside the overlay (:func:`scripts.io.overlay.ch2_image`); default the
            mean image.
        flag: the QC verdict, printed in a red banner ("" for a stack that is not flagged).
        pixel_size_assumed: ``pixel_size_um`` is a default, not the file's (the scale bar is marked, a note says so).

    Returns:
        PNG file content.
    """
    return (
        overlay_figure(mean_image, instances, pixel_size_um, title, max_ids, ch2, flag, pixel_size_assumed)
        .render()
        .png()
    )
