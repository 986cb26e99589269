"""Files of the per-cell readout, each written atomically (temporary file, then rename).

- ``<stem>_instances.tif``: one ImageJ hyperstack with three channels — cells, nuclei, lipid
  droplets (channel names in the ImageJ ``Labels``), pixel size in the resolution tags with unit
  ``um``. Fiji opens it with the scale set; ``tifffile.imread`` gives a (3, H, W) array. 16-bit;
  float32 (exact for ids up to 2²⁴) when an id exceeds 65535, because ImageJ has no 32-bit integer
  images. Format: :mod:`scripts.io.instance_maps` (the simulator's ground truth uses it too).
- ``<stem>_instances_{cells,nuclei,lipid_droplets}.nii.gz``: one 2-D NIfTI label map per kind
  (array X = W, Y = H like the bundle's other label maps; pixel size in the affine and ``pixdim``,
  unit micron), as label-map viewers (ITK-SNAP, 3D Slicer, MONAI) expect one map per file.
  uint16, or uint32 above 65535 ids.
- ``<stem>_cells_overlay.png``: :func:`scripts.cells.overlay.overlay_png`.
- tables (CSV, plus Parquet when ``pyarrow`` is importable): :func:`write_table`, header always
  written, so an empty table is a header-only file, never an empty one.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from scripts.cells.instances import CellInstances
from scripts.cells.measure import CellMeasurement
from scripts.cells.overlay import overlay_png
from scripts.io.instance_maps import INSTANCE_KINDS, checked_pixel_size
from scripts.io.instance_maps import write_instance_tiff as write_instance_maps
from scripts.io.writer import atomic_path

logger = logging.getLogger(__name__)


def _instance_arrays(instances: CellInstances) -> list[np.ndarray]:
    maps = instances.maps()
    arrays = [np.asarray(maps[kind]) for kind in INSTANCE_KINDS]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 2:
        raise ValueError(f"instance maps must be three (H, W) arrays of one shape, got {[a.shape for a in arrays]}.")
    return arrays


def write_instance_tiff(path: str | Path, instances: CellInstances, pixel_size_um: float | None) -> Path:
    """Write the cells, nuclei and lipid-droplet maps as one 3-channel ImageJ TIFF
    (:func:`scripts.io.instance_maps.write_instance_tiff`; the droplets' cells and the cells'
    nucleus flags go to its ``Info`` property).

    Args:
        path: output file (``.tif``).
        instances: the instance maps.
        pixel_size_um: lateral pixel size, µm (None: no calibration).

    Returns:
        ``path``.
    """
    _instance_arrays(instances)
    return write_instance_maps(
        path,
        instances.maps(),
        checked_pixel_size(pixel_size_um),
        droplet_cell=instances.droplet_cell,
        has_nucleus=instances.has_nucleus,
    )


def write_instance_nifti(stem: str | Path, instances: CellInstances, pixel_size_um: float | None) -> list[Path]:
    """Write ``<stem>_instances_{cells,nuclei,lipid_droplets}.nii.gz``, one 2-D NIfTI label map each.

    Args:
        stem: output path without suffix.
        instances: the instance maps.
        pixel_size_um: lateral pixel size, µm, written to the affine and ``pixdim`` (None: 1, unit unknown).

    Returns:
        The three paths.
    """
    import nibabel as nib

    px = checked_pixel_size(pixel_size_um)
    stem = Path(stem)
    written = []
    for kind, array in zip(INSTANCE_KINDS, _instance_arrays(instances), strict=True):
        dtype = np.uint16 if int(array.max(initial=0)) <= 65535 else np.uint32
        image = nib.Nifti1Image(np.ascontiguousarray(array.T.astype(dtype)), np.diag([px or 1.0, px or 1.0, 1.0, 1.0]))
        image.header.set_xyzt_units("micron" if px else "unknown")
        image.header.set_intent("label")
        out = stem.with_name(f"{stem.name}_instances_{kind}.nii.gz")
        with atomic_path(out) as tmp:
            image.to_filename(str(tmp))
        written.append(out)
    return written


def write_overlay_png(
    path: str | Path,
    mean_image: np.ndarray,
    instances: CellInstances,
    pixel_size_um: float | None = None,
    title: str | None = None,
    ch2: tuple[np.ndarray, str] | None = None,
    flag: str = "",
    pixel_size_assumed: bool = False,
) -> Path:
    """Write the overlay PNG (:func:`scripts.cells.overlay.overlay_png`; ``ch2``, ``flag``, ``pixel_size_assumed``
    as there)."""
    content = overlay_png(
        mean_image,
        instances,
        checked_pixel_size(pixel_size_um),
        title,
        ch2=ch2,
        flag=flag,
        pixel_size_assumed=pixel_size_assumed,
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)
    return path


def csv_value(value) -> str:
    """The CSV text of a table value: ``true``/``false``, 6 significant digits, empty for NaN."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return "" if not math.isfinite(value) else f"{float(value):.6g}"
    return str(value)


def write_table(
    path: str | Path, rows: Iterable[dict], columns: Sequence[str] | dict, parquet: bool | None = None
) -> list[Path]:
    """Write rows as CSV (header always, missing values empty), and as Parquet beside it when possible.

    Args:
        path: the ``.csv`` file.
        rows: dicts with every key of ``columns`` (other keys are an error).
        columns: column names in order (e.g. :data:`~scripts.cells.columns.CELL_COLUMNS`).
        parquet: also write ``<path>.parquet``: True requires ``pyarrow``, None writes it when
            ``pyarrow`` is importable, False never.

    Returns:
        The written paths.
    """
    names = list(columns)
    rows = list(rows)
    for i, row in enumerate(rows):
        if list(row) != names:
            missing, unknown = sorted(set(names) - set(row)), sorted(set(row) - set(names))
            raise ValueError(f"{path}: row {i} does not match the columns (missing {missing}, unknown {unknown}).")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([csv_value(v) for v in row.values()] for row in rows)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    written = [path]
    if parquet is not False:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            if parquet:
                raise ImportError(
                    f"{path}: Parquet output needs pyarrow; pip install pyarrow, or pass parquet=False."
                ) from None
        else:
            table = pa.table({name: [row[name] for row in rows] for name in names})
            out = path.with_suffix(".parquet")
            with atomic_path(out) as tmp:
                pq.write_table(table, tmp)
            written.append(out)
    return written


def write_cell_outputs(
    folder: str | Path,
    measurement: CellMeasurement,
    nifti: bool = True,
    overlay: bool = True,
    table: bool = True,
    overlay_options: dict | None = None,
) -> list[Path]:
    """Write every per-stack file of a :class:`~scripts.cells.measure.CellMeasurement` into ``folder``.

    ``<stem>_instances.tif``, ``<stem>_instances_*.nii.gz`` (``nifti``), ``<stem>_cells_overlay.png``
    (``overlay``; ``overlay_options``: ``ch2``, ``flag``, ``pixel_size_assumed`` of :func:`write_overlay_png`)
    and ``<stem>_cells.csv`` (``table``: its rows; header only when the field has no
    cell). The tables over all stacks (rows and summaries) are for the caller to collect and pass to
    :func:`write_table`, or to update stack by stack (:mod:`scripts.cells.tables`).

    Returns:
        The written paths.
    """
    from scripts.cells.columns import CELL_COLUMNS

    folder = Path(folder)
    m = measurement
    written = [write_instance_tiff(folder / f"{m.stem}_instances.tif", m.instances, m.pixel_size_um)]
    if nifti:
        written += write_instance_nifti(folder / m.stem, m.instances, m.pixel_size_um)
    if overlay:
        written.append(
            write_overlay_png(
                folder / f"{m.stem}_cells_overlay.png",
                m.mean_image,
                m.instances,
                m.pixel_size_um,
                m.stem,
                **(overlay_options or {}),
            )
        )
    if table:
        written += write_table(folder / f"{m.stem}_cells.csv", m.rows, CELL_COLUMNS)
    logger.info("%s: %d cells -> %s", m.stem, len(m.rows), folder)
    return written
