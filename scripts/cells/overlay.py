"""Overlay figure of the per-cell readout: cell outlines with ids, nuclei and lipid droplets in colour,
a legend and a scale bar, on the stack's mean image.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no global state), so it is safe in
workers and servers. Outlines are rasterised at the image's own resolution, so they stay exact at
any field size; the figure grows with the field (up to a cap) so that ids remain readable.
"""

from __future__ import annotations

import io

import numpy as np
from scripts.cells.instances import CellInstances
from skimage.segmentation import find_boundaries

#: Colours (RGB 0–1) of the overlay.
COLOURS: dict[str, tuple[float, float, float]] = {
    "nucleus": (0.1, 0.6, 1.0),
    "lipid_droplet": (1.0, 0.85, 0.0),
    "lipid_droplet_outside_cells": (1.0, 0.25, 0.25),
    "cell_outline": (0.2, 1.0, 0.4),
    "cell_without_nucleus": (1.0, 0.5, 0.0),
}
#: Scale-bar lengths to choose from, µm.
SCALE_BAR_UM = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def scale_bar_length_um(width_px: int, pixel_size_um: float, fraction: float = 0.2) -> float:
    """The longest of :data:`SCALE_BAR_UM` that spans at most ``fraction`` of the image width."""
    limit = fraction * width_px * pixel_size_um
    fitting = [v for v in SCALE_BAR_UM if v <= limit]
    return float(fitting[-1] if fitting else SCALE_BAR_UM[0])


def overlay_rgb(mean_image: np.ndarray, instances: CellInstances, alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 1]: grey mean image, nuclei and droplets tinted, cell outlines drawn.

    Cells without a nucleus are outlined in another colour, and droplets outside every cell too.
    """
    grey = np.asarray(mean_image, np.float32)
    finite = np.isfinite(grey)
    lo, hi = np.percentile(grey[finite], [1, 99.5]) if finite.any() else (0.0, 1.0)
    grey = np.clip((np.where(finite, grey, lo) - lo) / max(hi - lo, 1e-12), 0, 1)
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


def overlay_png(
    mean_image: np.ndarray,
    instances: CellInstances,
    pixel_size_um: float | None = None,
    title: str | None = None,
    max_ids: int = 500,
) -> bytes:
    """The overlay figure as PNG bytes.

    Args:
        mean_image: (H, W) mean intensity over the frames.
        instances: the instance maps.
        pixel_size_um: lateral pixel size, µm; draws a scale bar when given.
        title: figure title (e.g. the stack's name).
        max_ids: write cell ids only when there are at most this many cells (the title says so).

    Returns:
        PNG file content.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle
    from matplotlib.patheffects import withStroke

    h, w = instances.cells.shape
    # inches at 100 dpi: at least one screen pixel per image pixel, up to 3000 px
    side = float(np.clip(max(h, w) / 100, 6.0, 30.0))
    img_w, img_h = side * w / max(h, w), side * h / max(h, w)
    legend_h, title_h = 0.9, 0.5
    fig_w, fig_h = max(img_w, 6.0), img_h + legend_h + title_h
    fig = Figure(figsize=(fig_w, fig_h), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes(((1 - img_w / fig_w) / 2, legend_h / fig_h, img_w / fig_w, img_h / fig_h))
    ax.imshow(overlay_rgb(mean_image, instances), interpolation="nearest")
    ax.set_axis_off()
    n = instances.n_cells
    if 0 < n <= max_ids:
        ids = instances.cells.ravel()
        area = np.bincount(ids, minlength=n + 1)
        yy = np.bincount(ids, weights=np.repeat(np.arange(h, dtype=float), w), minlength=n + 1)
        xx = np.bincount(ids, weights=np.tile(np.arange(w, dtype=float), h), minlength=n + 1)
        stroke = [withStroke(linewidth=2, foreground="black")]
        for i in np.flatnonzero(area[1:]) + 1:
            ax.text(
                xx[i] / area[i],
                yy[i] / area[i],
                str(i),
                color="white",
                fontsize=9,
                ha="center",
                va="center",
                path_effects=stroke,
            )
    if pixel_size_um:
        length = scale_bar_length_um(w, pixel_size_um)
        bar = length / pixel_size_um
        x0, y0 = w - bar - 0.04 * w, h - 0.05 * h
        ax.add_patch(Rectangle((x0, y0), bar, max(h / 120, 2), color="white"))
        ax.text(
            x0 + bar / 2,
            y0 - 0.01 * h,
            f"{length:g} µm",
            color="white",
            fontsize=11,
            ha="center",
            va="bottom",
            path_effects=[withStroke(linewidth=2, foreground="black")],
        )
    handles = [
        Patch(facecolor=COLOURS["nucleus"], label="nucleus"),
        Patch(facecolor=COLOURS["lipid_droplet"], label="lipid droplet"),
        Patch(facecolor=COLOURS["lipid_droplet_outside_cells"], label="lipid droplet outside cells"),
        Patch(facecolor="none", edgecolor=COLOURS["cell_outline"], linewidth=2, label="cell (id)"),
        Patch(facecolor="none", edgecolor=COLOURS["cell_without_nucleus"], linewidth=2, label="cell without nucleus"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=10, frameon=False)
    text = title or ""
    if n > max_ids:
        text += f" ({n} cells; ids not drawn above {max_ids})"
    if text:
        ax.set_title(text, fontsize=12)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})  # 2x faster to encode, ~20 % larger
    return buffer.getvalue()
