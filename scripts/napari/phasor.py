"""The phasor of one stack kept between edits: its histogram, cursors the user moves, the label map again.

:class:`PhasorSession` runs the bundle's phasor (:class:`scripts.phasor.segmenter.PhasorSegmenter`) once up to the
phasor coordinates (steps 1–3: canonical grid, background, transform), then segments from them: first with the
cursors fitted to the image (the parameters file as ``configs/phasor.yaml`` uses it), then, after every cursor
move, with the cursors where the user put them (``auto_cursors: false`` and explicit ``cursors``), which takes
only steps 4–8. The parameters in use are saved with :meth:`PhasorParameters.save` to a
``phasor_parameters.yaml`` that ``configs/phasor.yaml --parameters_file`` reads and that gives the same label
maps on the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scripts.napari.segmentation import StackInput
from scripts.phasor.parameters import CURSOR_NAMES, PhasorParameters, load_parameters
from scripts.phasor.segmenter import PhasorResult, PhasorSegmenter

#: Name of the saved parameters, as ``configs/phasor.yaml`` writes them into its output folder.
PARAMETERS_NAME = "phasor_parameters.yaml"


class PhasorSession:
    """The phasor of ``item`` with ``parameters`` (default: the tuned ``configs/phasor_parameters.yaml``).

    Attributes:
        parameters: the parameters of the current label map (explicit cursors once one was moved).
        result: the current :class:`~scripts.phasor.segmenter.PhasorResult`.
        cursors: the cursor centres ``{name: (G, S)}`` of the current result.
    """

    def __init__(self, item: StackInput, parameters: PhasorParameters | None = None):
        self.item = item
        self.parameters = parameters if parameters is not None else load_parameters()
        self.coords = PhasorSegmenter(self.parameters).phasor(item.stack, item.wavenumbers, source=item.source)
        self.result = self._segment(self.parameters)

    @classmethod
    def from_file(cls, item: StackInput, parameters_file: str | Path | None = None) -> PhasorSession:
        return cls(item, load_parameters(parameters_file))

    def _segment(self, parameters: PhasorParameters) -> PhasorResult:
        result = PhasorSegmenter(parameters).segment_phasor(self.coords)
        self.parameters, self.result = parameters, result
        return result

    @property
    def labels(self) -> np.ndarray:
        return self.result.labels

    @property
    def cursors(self) -> dict[str, tuple[float, float]]:
        return {name: (float(c.real), float(c.imag)) for name, c in self.result.cursors.items()}

    def move_cursors(self, positions: Mapping[str, tuple[float, float]]) -> PhasorResult:
        """Segment again with the cursors at ``positions`` (the others stay where they are)."""
        unknown = set(positions) - set(CURSOR_NAMES)
        if unknown:
            raise ValueError(f"unknown cursor(s) {sorted(unknown)}; the cursors are {CURSOR_NAMES}.")
        cursors = {**self.cursors, **{k: (float(v[0]), float(v[1])) for k, v in positions.items()}}
        return self._segment(self.parameters.replace(auto_cursors=False, cursors=cursors))

    def move_cursor(self, name: str, g: float, s: float) -> PhasorResult:
        return self.move_cursors({name: (g, s)})

    def refit(self) -> PhasorResult:
        """Back to the cursors fitted to the image (``auto_cursors: true``, no explicit cursors)."""
        return self._segment(self.parameters.replace(auto_cursors=True, cursors=None))

    def histogram(self, bins: int = 200) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
        """The 2-D histogram (S rows, G columns) of the foreground pixels' filtered phasors and its G, S limits:
        the bulk of the pixels (0.5–99.5th percentiles) and every cursor, square, with a margin."""
        r = self.result
        keep = r.foreground & np.isfinite(r.real) & np.isfinite(r.imag)
        g, s = r.real[keep].astype(np.float64), r.imag[keep].astype(np.float64)
        xs, ys = [c[0] for c in self.cursors.values()], [c[1] for c in self.cursors.values()]
        if g.size:
            xs += list(np.percentile(g, [0.5, 99.5]))
            ys += list(np.percentile(s, [0.5, 99.5]))
        cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
        half = min(max(max(xs) - min(xs), max(ys) - min(ys)) / 2 + 0.05, 1.1)
        g_lim, s_lim = (cx - half, cx + half), (cy - half, cy + half)
        counts, _, _ = np.histogram2d(s, g, bins=bins, range=(s_lim, g_lim))
        return counts, g_lim, s_lim

    def save(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the parameters in use (``phasor_parameters.yaml``) for ``configs/phasor.yaml --parameters_file``."""
        header = (
            f"Phasor parameters set in napari on {self.item.name} (scripts.napari.phasor).\n"
            "Segment a folder with them:\n"
            f"  python -m monai.bundle run --config_file configs/phasor.yaml --parameters_file {Path(path).name} "
            "--dataset_dir D --output_dir O"
        )
        info = {"stack": self.item.source, "cursors_moved_by_hand": not self.parameters.auto_cursors}
        return self.parameters.save(path, header=header, extra={"napari": info, **(dict(extra) if extra else {})})
