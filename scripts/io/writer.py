"""Writing HSRS stacks and label maps so that :mod:`scripts.io.reader` reads them back exactly.

- Stacks (K, H, W) go to NIfTI (array (X=W, Y=H, Z=K), wavenumbers in a JSON header extension,
  pixel size in ``pixdim``), multi-page TIFF (wavenumbers in the JSON image description) or
  ``.npy`` (wavenumbers in the sidecar ``<stem>.json``).
- Label maps (H, W) with 0 background, 1 nucleus, 2 lipid droplet go to NIfTI and/or TIFF as uint8.

Every file is written to a temporary name in the target folder, flushed to disk and renamed when
complete (:func:`scripts.io.atomic.atomic_path`, re-exported here), so an interrupted or failed
write never leaves a half-written file and never destroys an existing one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scripts.io.atomic import atomic_path
from scripts.io.errors import OutputNotAFolderError, OutputNotWritableError
from scripts.io.formats import NIFTI_EXTENSION_CODE, stack_format, stack_stem
from scripts.io.sidecar import write_sidecar
from scripts.spectra.axis import validate_wavenumbers

#: Class values of a label map.
LABELS: dict[str, int] = {"background": 0, "nucleus": 1, "lipid_droplet": 2}
LABEL_FORMATS = ("nii.gz", "tif")


def _nifti_image(array_xy: np.ndarray, pixel_size_um: float | None, extension: dict | None, z_step: float = 1.0):
    import nibabel as nib

    px = float(pixel_size_um) if pixel_size_um else 1.0
    affine = np.diag([px, px, z_step, 1.0])
    img = nib.Nifti1Image(array_xy, affine)
    img.header.set_xyzt_units("micron" if pixel_size_um else "unknown")
    if extension:
        img.header.extensions.append(
            nib.nifti1.Nifti1Extension(NIFTI_EXTENSION_CODE, json.dumps(extension).encode("utf-8"))
        )
    return img


def write_stack(
    path: str | Path,
    stack: np.ndarray,
    wavenumbers: Sequence[float] | np.ndarray | None,
    pixel_size_um: float | None = None,
) -> Path:
    """Write an HSRS stack with its wavenumber axis; the format follows the suffix of ``path``.

    Args:
        path: ``*.nii.gz``/``*.nii`` (NIfTI), ``*.tif``/``*.tiff`` (multi-page TIFF) or ``*.npy``.
        stack: (K, H, W) array, any real dtype (float32, uint16 and uint8 are typical); written as is.
        wavenumbers: K Raman shifts in cm⁻¹, in frame order; None writes frames only, as raw
            acquisition software does (the reader then infers the axis, :mod:`scripts.spectra.calibration`).
        pixel_size_um: lateral pixel size, recorded when given.

    Returns:
        ``path``.
    """
    path = Path(path)
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"{path}: a stack must be (K, H, W), got shape {stack.shape}.")
    wn = None if wavenumbers is None else validate_wavenumbers(wavenumbers, stack.shape[0], str(path))
    meta: dict = {} if wn is None else {"wavenumbers": [round(float(v), 6) for v in wn], "unit": "cm-1"}
    if pixel_size_um:
        meta["pixel_size_um"] = float(pixel_size_um)
    fmt = stack_format(path)
    with atomic_path(path) as tmp:
        if fmt == "nifti":
            step = float(abs(np.mean(np.diff(wn)))) if wn is not None and wn.size > 1 else 1.0
            _nifti_image(np.transpose(stack, (2, 1, 0)), pixel_size_um, meta, step).to_filename(str(tmp))
        elif fmt == "tiff":
            import tifffile

            tifffile.imwrite(tmp, stack, metadata=meta, photometric="minisblack")
        elif fmt == "numpy":
            np.save(tmp, stack)
        else:
            raise ValueError(f"{path}: stacks are written to .nii.gz, .tif or .npy files, not folders.")
    if fmt == "numpy" and wn is not None:
        write_sidecar(path, wn, {k: v for k, v in meta.items() if k not in ("wavenumbers", "unit")})
    return path


def check_label_map(labels: np.ndarray, source: str = "label map") -> np.ndarray:
    """Return ``labels`` as a (H, W) uint8 array after checking it holds only 0, 1 and 2."""
    arr = np.asarray(labels)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"{source}: a label map must be (H, W) or (1, H, W), got shape {arr.shape}.")
    values = np.unique(arr)
    unknown = [v for v in values.tolist() if v not in LABELS.values()]
    if unknown:
        raise ValueError(
            f"{source}: unknown label values {unknown[:10]}; expected 0 background, 1 nucleus, 2 lipid droplet."
        )
    return arr.astype(np.uint8)


def write_label_map(
    stem: str | Path, labels: np.ndarray, formats: Sequence[str] = LABEL_FORMATS, pixel_size_um: float | None = None
) -> list[Path]:
    """Write a label map (0 background, 1 nucleus, 2 lipid droplet) as ``stem.nii.gz`` and/or ``stem.tif``.

    Args:
        stem: output path without suffix (a suffix such as ``.nii.gz`` is replaced).
        labels: (H, W) or (1, H, W) integer array.
        formats: any of ``"nii.gz"``, ``"nii"``, ``"tif"``.
        pixel_size_um: lateral pixel size, recorded when given.

    Returns:
        The written paths.
    """
    stem = Path(stem)
    stem = stem.with_name(stack_stem(stem))
    arr = check_label_map(labels, str(stem))
    written = []
    for fmt in formats:
        if fmt not in ("nii.gz", "nii", "tif"):
            raise ValueError(f"unknown label-map format {fmt!r}; choose from 'nii.gz', 'nii', 'tif'.")
        out = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(out) as tmp:
            if fmt == "tif":
                import tifffile

                extra = {"pixel_size_um": float(pixel_size_um)} if pixel_size_um else {}
                tifffile.imwrite(tmp, arr, metadata={"labels": LABELS, **extra}, photometric="minisblack")
            else:
                _nifti_image(np.ascontiguousarray(arr.T), pixel_size_um, {"labels": LABELS}).to_filename(str(tmp))
        written.append(out)
    return written


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check files can be written there, before any work.

    Raises :class:`~scripts.io.errors.OutputNotAFolderError` (a NotADirectoryError) when the path is
    a file and :class:`~scripts.io.errors.OutputNotWritableError` (a PermissionError) when the folder
    cannot be created or written, both naming the folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputNotAFolderError(
            f"output_dir {folder}: the output path exists and is not a folder; choose another --output_dir."
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test_", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputNotWritableError(
            f"output_dir {folder} is not writable: cannot create or write to the output folder ({e.strerror or e}); "
            "choose another --output_dir."
        ) from e
    return folder
