"""Phasor pseudo-labels for a folder of HSRS stacks: :class:`PhasorJob`, run by ``configs/phasor.yaml``.

::

    python -m monai.bundle run --config_file configs/phasor.yaml --dataset_dir D --output_dir O

``D`` is a folder whose entries are stacks in any format :func:`scripts.io.reader.read_hsrs` reads
(``.nii``/``.nii.gz``, ``.tif``/``.tiff``, ``.npy`` with its sidecar, or a sub-folder of
single-page TIFF frames); sidecar ``.json`` files and anything else are ignored. For a folder
made by ``python -m scripts.simulate`` pass ``D/images``. ``O`` receives::

    O/labels/<stem>.nii.gz, O/labels/<stem>.tif   label maps: 0 background, 1 nucleus, 2 lipid droplet
    O/plots/<stem>_phasor.png                     phasor plot with the cursors of that stack
    O/phasor_statistics.csv                       one row per stack: threshold, areas, cursor centres, error
    O/datalist.json                               {"training": [{"image": <stack>, "label": <label .nii.gz>}, ...],
                                                   "validation": [...]}
    O/phasor_parameters.yaml                      the parameters used

All paths in ``datalist.json`` are absolute, so a training config can read it from anywhere; it is
what ``configs/train.yaml`` reads from its ``dataset_dir`` (pass ``--dataset_dir O``). Every
``round(1 / validation_fraction)``-th stack (in name order) goes to ``validation`` so that
training can select its best model; with a single stack, ``validation`` is empty.
The CSV and the datalist are updated after every stack (atomically, under a file lock:
:mod:`scripts.io.tables`), so an interrupted run leaves them consistent with the label maps already
written; rows of stacks from earlier runs into the same output folder, or from a run writing into
it at the same time, are kept (a stack's row is replaced when it is segmented again), and the
datalist lists every successful row of the table.

Errors: the folder, the output folder (created if missing; it must be writable) and the
parameters are checked before any stack is read. A stack that cannot be read or segmented stops
the run with an error naming the file (default), or, with ``skip_errors=True``, is logged, gets a
row with its error in the CSV and is left out of the datalist. An output that cannot be written
(disk full, output folder removed) always stops the run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scripts.io.datalist import folder_datalist
from scripts.io.errors import (
    HSRSError,
    HSRSInputError,
    HSRSOptionError,
    HSRSOutputError,
    InputNotFoundError,
    as_bool,
    find_user_error,
)
from scripts.io.formats import stack_format, stack_stem
from scripts.io.reader import read_hsrs
from scripts.io.tables import locked_table
from scripts.io.writer import LABEL_FORMATS, atomic_path, check_writable, write_label_map
from scripts.phasor.parameters import PhasorInputError, PhasorParameters, load_parameters
from scripts.phasor.plot import plot_phasor_result
from scripts.phasor.segmenter import PhasorSegmenter
from scripts.spectra.axis import CANONICAL_RANGE
from scripts.spectra.calibration import AXIS_CHECK_MODES

logger = logging.getLogger(__name__)

#: Columns of ``phasor_statistics.csv`` (cursor columns: G, S and source of each cursor; QC columns: how the cursors
#: were fitted, the cloud's distance from the references, the reader's axis check, and what to look at).
CSV_COLUMNS = [
    "stem",
    "image",
    "label",
    "error",
    "threshold",
    "foreground_px",
    "nucleus_px",
    "lipid_droplet_px",
    "lipid_droplet_count",
    "cytoplasm_g",
    "cytoplasm_s",
    "cytoplasm_cursor",
    "nucleus_g",
    "nucleus_s",
    "nucleus_cursor",
    "lipid_g",
    "lipid_s",
    "lipid_cursor",
    "cursor_fit",
    "cluster_px",
    "cloud_distance",
    "axis_check",
    "qc",
    "seconds",
]
CSV_NAME, DATALIST_NAME, PARAMETERS_NAME = "phasor_statistics.csv", "datalist.json", "phasor_parameters.yaml"


class PhasorJobError(RuntimeError):
    """A folder run stopped on a stack; the message names the stack and says how to continue."""


class PhasorJobInputError(PhasorJobError, HSRSError):
    """A folder run stopped on a stack the user can fix (a bad file): a user error, printed in one line."""


class PhasorJob:
    """Segment every stack of a folder with :class:`~scripts.phasor.segmenter.PhasorSegmenter` (see the module docstring).

    Parameters
    ----------
    dataset_dir : str, Path or sequence of them
        A folder of stacks, or an explicit list of stacks (files or TIFF-frame folders).
    output_dir : str or Path
        Where the outputs go; created if missing.
    parameters_file : str or Path, optional
        Tuned parameters (YAML/JSON). Default: ``configs/phasor_parameters.yaml``.
    parameters : PhasorParameters, optional
        Parameters given directly (instead of ``parameters_file``).
    skip_errors : bool
        Skip stacks that fail (logged, recorded in the CSV) instead of stopping.
    plots : bool
        Write a phasor plot per stack.
    label_formats : sequence of str
        Label-map formats, any of ``"nii.gz"``, ``"nii"``, ``"tif"``.
    assumed_wavenumber_range : (float, float)
        Wavenumbers assumed (logged) for stacks that store none.
    nan_policy : str
        ``"repair"`` or ``"raise"`` for NaN/Inf in stacks (see :func:`scripts.io.reader.read_hsrs`).
    axis_check : str
        ``"warn"``, ``"refuse"`` or ``"off"``: the spectral axis checked against each stack's chemistry
        (see :func:`scripts.io.reader.read_hsrs`); its verdict is the ``axis_check`` column.
    validation_fraction : float
        Share of the stacks listed under ``validation`` in ``datalist.json`` (0 lists all under ``training``).
    post_step : callable, optional
        Called after each stack's label maps are written, as ``post_step(stem=, stack=, wavenumbers=,
        labels=, pixel_size_um=)`` with the stack as read ((K, H, W), ``meta["wavenumbers"]``, the
        recorded pixel size or None) and its (H, W) label map; ``configs/phasor.yaml`` passes the
        per-cell readout (:class:`scripts.cells.readout.CellReadout`). Its errors count as the
        stack's errors (``skip_errors``).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out:  # the bundled demo stacks
    ...     rows = PhasorJob("docs/demo_data/images", out).run()
    ...     sorted(p.name for p in Path(out).iterdir() if not p.name.startswith("."))
    ['datalist.json', 'labels', 'phasor_parameters.yaml', 'phasor_statistics.csv', 'plots']
    """

    def __init__(
        self,
        dataset_dir: str | Path | Sequence[str | Path],
        output_dir: str | Path,
        parameters_file: str | Path | None = None,
        parameters: PhasorParameters | None = None,
        skip_errors: bool = False,
        plots: bool = True,
        label_formats: Sequence[str] = LABEL_FORMATS,
        assumed_wavenumber_range: Sequence[float] = CANONICAL_RANGE,
        nan_policy: str = "repair",
        validation_fraction: float = 0.2,
        axis_check: str = "warn",
        post_step: Callable[..., Any] | None = None,
    ):
        if parameters is not None and parameters_file is not None:
            raise ValueError("give parameters or parameters_file, not both.")
        if isinstance(dataset_dir, str | Path):
            self.dataset_dir: Path | None = Path(dataset_dir)
            self.stacks = [Path(item["image"]) for item in folder_datalist(self.dataset_dir)]
        else:
            self.dataset_dir = None
            self.stacks = [Path(p) for p in dataset_dir]
            if not self.stacks:
                raise HSRSInputError("the list of stacks is empty.")
            missing = [str(p) for p in self.stacks if not p.exists()]
            if missing:
                raise InputNotFoundError(f"these stacks do not exist: {missing[:5]}")
            for p in self.stacks:
                stack_format(p)  # raises for unsupported suffixes, naming the file
        stems: dict[str, Path] = {}
        for p in self.stacks:
            other = stems.setdefault(stack_stem(p), p)
            if other != p:
                raise HSRSInputError(f"{p} and {other} would both write outputs named {stack_stem(p)!r}; rename one.")
        unknown = [f for f in label_formats if f not in ("nii.gz", "nii", "tif")]
        if unknown or not label_formats:
            raise HSRSOptionError(
                f"label_formats must be a non-empty subset of ('nii.gz', 'nii', 'tif'), got {label_formats}."
            )
        if nan_policy not in ("repair", "raise"):
            raise HSRSOptionError(f"nan_policy must be 'repair' or 'raise', got {nan_policy!r}.")
        self.parameters = parameters if parameters is not None else load_parameters(parameters_file)
        self.output_dir = check_writable(output_dir).resolve()
        self.skip_errors, self.plots = as_bool(skip_errors, "skip_errors"), as_bool(plots, "plots")
        self.label_formats = tuple(label_formats)
        self.assumed_wavenumber_range = tuple(float(v) for v in assumed_wavenumber_range)
        self.nan_policy = nan_policy
        if axis_check not in AXIS_CHECK_MODES:
            raise HSRSOptionError(f"axis_check must be one of {AXIS_CHECK_MODES}, got {axis_check!r}.")
        self.axis_check = axis_check
        if not 0 <= validation_fraction < 1:
            raise HSRSOptionError(f"validation_fraction must be in [0, 1), got {validation_fraction}.")
        self.validation_fraction = float(validation_fraction)
        if post_step is not None and not callable(post_step):
            raise TypeError(
                f"post_step must be callable (stem=, stack=, wavenumbers=, labels=, pixel_size_um=), got {post_step!r}."
            )
        self.post_step = post_step

    def run(self) -> list[dict[str, Any]]:
        """Segment all stacks; returns the CSV rows (one dict per stack)."""
        labels_dir, plots_dir = self.output_dir / "labels", self.output_dir / "plots"
        labels_dir.mkdir(exist_ok=True)
        if self.plots:
            plots_dir.mkdir(exist_ok=True)
        self.parameters.save(
            self.output_dir / PARAMETERS_NAME,
            header="Parameters used by scripts.phasor.job.PhasorJob for the label maps in labels/.",
        )
        segmenter = PhasorSegmenter(self.parameters)
        rows: list[dict[str, Any]] = []
        n = len(self.stacks)
        for i, path in enumerate(self.stacks, start=1):
            stem = stack_stem(path)
            t0 = time.perf_counter()
            try:
                row = self._process(segmenter, path, stem, labels_dir, plots_dir)
            except Exception as e:  # any failure of one stack: stop naming it, or record it and go on
                if isinstance(find_user_error(e), HSRSOutputError):
                    raise  # a full disk or a vanished output folder fails every stack: stop, whatever skip_errors says
                message = str(e) if str(path) in str(e) else f"{path}: {e}"
                if not self.skip_errors:
                    error = PhasorJobInputError if find_user_error(e) is not None else PhasorJobError
                    raise error(
                        f"phasor job stopped at stack {i}/{n}: {message} (outputs of the {i - 1} stacks before it are in "
                        f"{self.output_dir}; set skip_errors (--skip_errors true) to record failing stacks and go on)."
                    ) from e
                logger.error("skipping %s: %s", path, message)
                row = {
                    "stem": stem,
                    "image": str(path.resolve()),
                    "label": "",
                    "error": f"{type(e).__name__}: {message}",
                }
            row["seconds"] = round(time.perf_counter() - t0, 3)
            rows.append(row)
            self._write_tables([row])
            logger.info(
                "[%d/%d] %s: %s",
                i,
                n,
                stem,
                row.get("error") or f"{row['nucleus_px']} nucleus px, " f"{row['lipid_droplet_count']} droplets",
            )
        return rows

    def _process(self, segmenter: PhasorSegmenter, path: Path, stem: str, labels_dir: Path, plots_dir: Path) -> dict:
        stack, meta = read_hsrs(path, self.assumed_wavenumber_range, self.nan_policy, self.axis_check)
        if "wavenumbers" not in meta:  # read_hsrs returns 2-D files (label maps, single frames) as (1, H, W)
            raise PhasorInputError(f"{path}: a 2-D image of shape {stack.shape[1:]}, not a spectral stack (K, H, W).")
        result = segmenter.segment(stack, meta["wavenumbers"], source=str(path))
        written = write_label_map(labels_dir / stem, result.labels, self.label_formats, meta.get("pixel_size_um"))
        if self.plots:
            plot_phasor_result(result, plots_dir / f"{stem}_phasor.png", title=stem)
        if self.post_step is not None:
            self.post_step(
                stem=stem,
                stack=stack,
                wavenumbers=meta["wavenumbers"],
                labels=result.labels,
                pixel_size_um=meta.get("pixel_size_um"),
            )
        nifti = [w for w in written if w.name.endswith((".nii.gz", ".nii"))]
        label = (nifti or written)[0]
        return {
            "stem": stem,
            "image": str(path.resolve()),
            "label": str(label.resolve()),
            "error": "",
            **result.statistics(),
            "axis_check": meta.get("axis_check", ""),
        }

    def _write_tables(self, rows: list[dict[str, Any]]) -> None:
        """Merge the rows of this run into the CSV and write the datalist of all its rows, under the CSV's lock."""
        with locked_table(self.output_dir / CSV_NAME, CSV_COLUMNS) as table:
            merged = table.update(rows)
            datalist = pseudo_label_datalist(merged, self.validation_fraction)
            with atomic_path(self.output_dir / DATALIST_NAME) as tmp:
                tmp.write_text(json.dumps(datalist, indent=2) + "\n")


def pseudo_label_datalist(rows: Sequence[dict[str, Any]], validation_fraction: float = 0.2) -> dict[str, list]:
    """MONAI datalist of the successful rows: every ``round(1 / validation_fraction)``-th to ``validation``.

    Examples
    --------
    >>> rows = [{"image": f"/d/{i}.nii.gz", "label": f"/o/{i}.nii.gz", "error": ""} for i in range(5)]
    >>> d = pseudo_label_datalist(rows)
    >>> len(d["training"]), d["validation"]
    (4, [{'image': '/d/4.nii.gz', 'label': '/o/4.nii.gz'}])
    """
    items = [{"image": r["image"], "label": r["label"]} for r in rows if not r.get("error")]
    if validation_fraction <= 0 or len(items) < 2:
        return {"training": items, "validation": []}
    every = max(2, round(1 / validation_fraction))
    validation = [it for i, it in enumerate(items, start=1) if i % every == 0] or [items[-1]]
    return {"training": [it for it in items if it not in validation], "validation": validation}
