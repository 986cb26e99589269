"""The phasor plot of one segmented stack, with its cursors: :func:`plot_phasor_result`.

Drawn with phasorpy's :class:`~phasorpy.plot.PhasorPlot` on a matplotlib ``Figure`` rendered by
the Agg backend (no pyplot state, no display needed): the 2-D histogram of the foreground
pixels' median-filtered (G, S), the fitted cytoplasm and nucleus clusters as ellipses, the lipid
cursor (a circle for ``ld_rule="circle"``), the cytoplasm–nucleus and cytoplasm–lipid mixing
lines, and where the nucleus and lipid-droplet thresholds cut them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from phasorpy.plot import PhasorPlot
from scripts.io.writer import atomic_path
from scripts.phasor.segmenter import PhasorResult

#: Cursor colours (matplotlib names).
CURSOR_COLOURS = {"cytoplasm": "tab:green", "nucleus": "tab:blue", "lipid": "tab:orange"}


def plot_phasor_result(result: PhasorResult, path: str | Path, title: str = "", dpi: int = 100) -> Path:
    """Write the phasor plot of ``result`` as a PNG (atomically) and return ``path``.

    Parameters
    ----------
    result : PhasorResult
        From :meth:`scripts.phasor.segmenter.PhasorSegmenter.segment`.
    path : str or Path
        Output ``.png``; its folder must exist.
    title : str
        Plot title (e.g. the stack's name); the threshold and areas are appended.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile
    >>> from scripts.phasor.segmenter import PhasorSegmenter
    >>> from scripts.simulation.phantom import simulate_phantom
    >>> ph = simulate_phantom(0, 64, 64)
    >>> res = PhasorSegmenter().segment(ph.stack, ph.wavenumbers)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_phasor_result(res, Path(d) / "p.png").stat().st_size > 1000
    True
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: phasor plots are written as .png files.")
    p, cursors = result.parameters, result.cursors
    fg = result.foreground & np.isfinite(result.real) & np.isfinite(result.imag)
    g, s = result.real[fg], result.imag[fg]
    xlim, ylim = _limits(g, s, [(c.real, c.imag) for c in cursors.values()])

    fig = Figure(figsize=(6.0, 5.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    stats = result.statistics()
    heading = (
        (f"{title}\n" if title else "")
        + f"threshold {result.threshold:.3g}; nucleus {stats['nucleus_px']} px; {stats['lipid_droplet_count']} droplets"
    )
    plot = PhasorPlot(allquadrants=True, ax=ax, xlim=xlim, ylim=ylim, title=heading, xticks=None, yticks=None)
    if g.size:
        plot.hist2d(g, s, bins=256, cmap="Greys")
    c, n, lip = cursors["cytoplasm"], cursors["nucleus"], cursors["lipid"]
    for cursor in (c, n):
        plot.cursor(
            cursor.real,
            cursor.imag,
            radius=cursor.radius,
            radius_minor=cursor.radius_minor,
            angle=cursor.angle,
            color=CURSOR_COLOURS[cursor.name],
            label=f"{cursor.name} ({cursor.source})",
            lw=1.5,
        )
    if p.ld_rule == "circle":
        plot.cursor(
            lip.real,
            lip.imag,
            radius=lip.radius,
            color=CURSOR_COLOURS["lipid"],
            lw=1.5,
            label=f"lipid droplet ({lip.source})",
        )
    ax.plot(
        [lip.real],
        [lip.imag],
        "o",
        color=CURSOR_COLOURS["lipid"],
        ms=5,
        label=None if p.ld_rule == "circle" else f"lipid ({lip.source})",
    )
    for end, fraction, colour, what in (
        (n, p.nucleus_threshold if p.nucleus_rule == "line" else None, CURSOR_COLOURS["nucleus"], "nucleus"),
        (lip, p.ld_threshold if p.ld_rule == "line" else None, CURSOR_COLOURS["lipid"], "droplet"),
    ):
        plot.line([c.real, end.real], [c.imag, end.imag], color=colour, ls="--", lw=1.0)
        if fraction is not None:  # fraction of `end` on the line: the threshold point
            ax.plot(
                [c.real + fraction * (end.real - c.real)],
                [c.imag + fraction * (end.imag - c.imag)],
                "|",
                color=colour,
                ms=14,
                mew=2,
                label=f"{what} threshold ({fraction:.2f})",
            )
    ax.legend(loc="best", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def _limits(g: np.ndarray, s: np.ndarray, points: list[tuple[float, float]]) -> tuple[tuple, tuple]:
    """Axis limits around the bulk of the pixels (1–99th percentiles) and all cursors, square, with a margin."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if g.size:
        xs += list(np.percentile(g, [1, 99]))
        ys += list(np.percentile(s, [1, 99]))
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    half = max(max(xs) - min(xs), max(ys) - min(ys)) / 2 + 0.08
    half = min(half, 1.1)
    return (cx - half, cx + half), (cy - half, cy + half)
