"""The per-cell readout as a step of a workflow: :class:`CellReadout`, called once per segmented stack.

The inference workflow calls it from an ignite handler
(:class:`scripts.cells.handler.CellReadoutHandler`), the phasor workflow from
:class:`scripts.phasor.job.PhasorJob` (its ``post_step``); both are switched by the config id
``cells``. Per stack it measures the cells (:func:`scripts.cells.measure_cells`) and writes, into
``output_dir``::

    cells/<stem>_instances.tif                        cells, nuclei, lipid droplets (ImageJ TIFF, pixel size)
    cells/<stem>_instances_{cells,nuclei,lipid_droplets}.nii.gz   the same maps as NIfTI (``nifti``)
    cells/<stem>_cells_overlay.png                    outlines, ids, CH₂ image, legend, scale bar, QC flag (``overlays``)
    cells.csv                                         one row per cell per stack
    cells_summary.csv                                 one row per stack

The two tables are updated after every stack, atomically, with the stack's rows replaced and the
rows of other stacks kept (:mod:`scripts.cells.tables`).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from scripts.cells.columns import CELL_COLUMNS, IMAGE_COLUMNS
from scripts.cells.instances import InstanceParameters
from scripts.cells.measure import CellMeasurement, measure_cells
from scripts.cells.tables import update_stack_rows
from scripts.cells.writers import csv_value, write_cell_outputs
from scripts.io.overlay import ch2_image
from scripts.io.writer import check_writable

logger = logging.getLogger(__name__)

CELLS_CSV, SUMMARY_CSV, CELLS_DIR = "cells.csv", "cells_summary.csv", "cells"


def as_switch(value: Any, name: str = "cells") -> bool:
    """A switch given in Python, YAML or on the command line (``--cells false`` arrives as the string "false")."""
    if isinstance(value, bool | int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise ValueError(f"{name} must be true or false, got {value!r}.")


class CellReadout:
    """Measure the cells of one segmented stack and write its files and table rows (see the module docstring).

    Args:
        output_dir: the workflow's output folder; per-stack files go to its ``cells/`` sub-folder.
        enabled: switch (config id ``cells``); when false, calls do nothing and no folder is made.
        default_pixel_size_um: pixel size used, with a logged warning, for stacks whose file records
            none (HSRS: ~0.25 µm).
        overlays: write the overlay PNG per stack.
        nifti: write the instance maps also as NIfTI.
        parameters: instance sizes and thresholds (:class:`~scripts.cells.instances.InstanceParameters`
            or a dict of its fields); default: the class defaults.

    Examples:
        >>> import tempfile
        >>> from scripts.simulation.phantom import simulate_phantom
        >>> ph = simulate_phantom(1, 96, 96)
        >>> with tempfile.TemporaryDirectory() as out:
        ...     m = CellReadout(out)("field", ph.stack, ph.wavenumbers, ph.labels, pixel_size_um=0.25)
        ...     sorted(p.name for p in Path(out).iterdir() if not p.name.startswith("."))  # without lock files
        ['cells', 'cells.csv', 'cells_summary.csv']
    """

    def __init__(
        self,
        output_dir: str | Path,
        enabled: bool | str = True,
        default_pixel_size_um: float = 0.25,
        overlays: bool | str = True,
        nifti: bool | str = True,
        parameters: InstanceParameters | dict | None = None,
    ):
        self.enabled = as_switch(enabled, "cells")
        self.overlays, self.nifti = as_switch(overlays, "overlays"), as_switch(nifti, "nifti")
        px = float(default_pixel_size_um)
        if not math.isfinite(px) or px <= 0:
            raise ValueError(
                f"default_pixel_size_um must be a positive number of µm per pixel (HSRS: ~0.25), got "
                f"{default_pixel_size_um!r}."
            )
        self.default_pixel_size_um = px
        self.parameters = InstanceParameters(**parameters) if isinstance(parameters, dict) else parameters
        self.output_dir = Path(output_dir)
        if self.enabled:
            self.output_dir = check_writable(self.output_dir)
        #: wall time (s) of the readout per stem: ``measure``, ``files`` (instance maps, overlay), ``tables``,
        #: ``total``; and ``cpu``, the process's CPU time for all of it
        self.timings: dict[str, dict[str, float]] = {}
        self._warned_pixel_size = False

    @property
    def cells_dir(self) -> Path:
        return self.output_dir / CELLS_DIR

    @staticmethod
    def recorded_pixel_size(recorded: Any) -> float | None:
        """``recorded`` (µm) when it is a positive number, else None."""
        try:
            px = float(recorded) if recorded is not None else math.nan
        except (TypeError, ValueError):
            px = math.nan
        return px if math.isfinite(px) and px > 0 else None

    def pixel_size(self, recorded: Any, stem: str) -> float:
        """The stack's recorded pixel size (µm) when it is a positive number, else the default (logged)."""
        px = self.recorded_pixel_size(recorded)
        if px is not None:
            return px
        log = logger.warning if not self._warned_pixel_size else logger.info
        log(
            "%s: the file records no pixel size; µm and µm² columns use the configured %.4g µm "
            "(cells_pixel_size_um; set it to your microscope's pixel size)",
            stem,
            self.default_pixel_size_um,
        )
        self._warned_pixel_size = True
        return self.default_pixel_size_um

    def __call__(
        self,
        stem: str,
        stack: np.ndarray,
        wavenumbers: np.ndarray,
        labels: np.ndarray,
        pixel_size_um: float | None = None,
        axis_check: str = "",
        flag: str = "",
    ) -> CellMeasurement | None:
        """Measure one stack, write its files and update the tables; None when disabled.

        Args:
            stem: name of the stack (file names and the ``stack`` column).
            stack: (K, H, W) stack, row-major, raw or intensity-normalised (the lipid-to-protein ratio
                is background-corrected and does not change under one offset and scale for the whole stack).
            wavenumbers: (K,) Raman shift of each frame, cm⁻¹.
            labels: (H, W) semantic label map (0 background, 1 nucleus, 2 lipid droplet).
            pixel_size_um: the pixel size the file records, or None.
            axis_check: the reader's verdict on the spectral axis (``"assumed"``: the overlay shows the mean image
                instead of the CH₂ one).
            flag: the QC verdict the overlay prints ("" for a stack that is not flagged;
                :func:`scripts.engine.segmentation_writer.overlay_flag`).
        """
        if not self.enabled:
            return None
        t0, c0 = time.perf_counter(), time.process_time()
        px = self.pixel_size(pixel_size_um, stem)
        m = measure_cells(stack, wavenumbers, labels, px, stem, self.parameters)
        t1 = time.perf_counter()
        self.cells_dir.mkdir(exist_ok=True)
        options = None
        if self.overlays:
            options = {
                "ch2": ch2_image(stack, wavenumbers, axis_check),
                "flag": flag,
                "pixel_size_assumed": self.recorded_pixel_size(pixel_size_um) is None,
            }
        write_cell_outputs(
            self.cells_dir, m, nifti=self.nifti, overlay=self.overlays, table=False, overlay_options=options
        )
        t2 = time.perf_counter()
        update_stack_rows(self.output_dir / CELLS_CSV, stem, m.rows, CELL_COLUMNS, csv_value)
        update_stack_rows(self.output_dir / SUMMARY_CSV, stem, [m.summary], IMAGE_COLUMNS, csv_value)
        t3 = time.perf_counter()
        cpu = time.process_time() - c0
        self.timings[stem] = {"measure": t1 - t0, "files": t2 - t1, "tables": t3 - t2, "total": t3 - t0, "cpu": cpu}
        logger.info(
            "%s: per-cell readout %.2f s (measure %.2f s, files %.2f s): %d cells -> %s",
            stem,
            t3 - t0,
            t1 - t0,
            t2 - t1,
            len(m.rows),
            self.output_dir / CELLS_CSV,
        )
        return m
