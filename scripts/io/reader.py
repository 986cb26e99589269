"""Reading HSRS stacks and label maps: :class:`HSRSReader`, a MONAI ``ImageReader``.

Supported inputs (chosen by the path):

=======================  ==========================================================  =========================
input                    on-disk layout                                              wavenumbers from
=======================  ==========================================================  =========================
``*.nii`` / ``*.nii.gz`` array (X=W, Y=H, Z=K) (nibabel; the default format);        header extension (JSON
                         label maps (X=W, Y=H)                                        comment), else sidecar
``*.tif`` / ``*.tiff``   multi-page TIFF, one page per frame (K, H, W)                TIFF description (JSON
                                                                                      written by tifffile), else
                                                                                      sidecar
folder                   one single-page TIFF per frame, in natural name order        ``wavenumbers.json`` /
                                                                                      ``.txt`` / ``.csv`` inside
``*.npy``                array (K, H, W)                                              sidecar ``<stem>.json``
``*.ome.zarr`` /         OME-Zarr folder (OME-NGFF multiscales, level 0; the axis     attribute ``wavenumbers``,
``*.zarr``               besides y, x with more than one element is the spectrum;    else sidecar
                         :mod:`scripts.io.ome_zarr`)                                  ``<stem>.json``
=======================  ==========================================================  =========================

Tiled or compressed TIFF and OME-Zarr are read whole here (a field that fits in memory); a mosaic larger than
memory is segmented region by region by ``configs/mosaic.yaml`` (:mod:`scripts.engine.mosaic`), and an OME-Zarr
whose pixels would not fit in the memory available is refused here with that advice.

The result is channel-first: a stack is (K, H, W) float32 with ``meta["wavenumbers"]`` in
ascending order (stacks stored in descending order are flipped); a 2-D file (a label map) is
(1, H, W) in its stored dtype. uint8, uint16 and float inputs are accepted; intensities are not
rescaled (see :mod:`scripts.transforms.array` for normalisation).

The spectral axis is checked against the stack's own chemistry (:mod:`scripts.spectra.calibration`,
``axis_check="warn"|"refuse"|"off"``): a stack without any wavenumber information gets the axis its
C–H bands give (scan direction, calibration; logged as a WARNING with the confidence), or, when the
spectrum cannot tell, evenly spaced wavenumbers over ``assumed_wavenumber_range`` (WARNING); stored
wavenumbers that the bands contradict (reversed, or off by more than ``axis_tolerance`` cm⁻¹), and
stacks whose spectrum fits no C–H chemistry, get a WARNING (``"warn"``) or are refused (``"refuse"``).
Never silently.

Errors a user can cause (unreadable or truncated file, wrong dimensionality, a sidecar whose
length disagrees with the frames, an empty folder, an all-zero stack, NaN/Inf with
``nan_policy="raise"``) raise :class:`HSRSInputError` naming the file and the problem.
:meth:`HSRSReader.read` only records the paths and :meth:`HSRSReader.get_data` does the reading,
so MONAI's ``LoadImage`` reports these errors as they are instead of silently falling back to
another reader.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.utils import ensure_tuple
from scripts.io.formats import TIFF_SUFFIXES, HSRSInputError, stack_format
from scripts.io.orientation import monai_affine, to_monai_xy
from scripts.io.sidecar import read_nifti_extension, read_sidecar
from scripts.spectra.axis import CANONICAL_RANGE, validate_wavenumbers
from scripts.spectra.calibration import AXIS_CHECK_MODES, DEFAULT_TOLERANCE, check_axis

logger = logging.getLogger(__name__)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    import nibabel as nib

    img = nib.load(str(path))
    arr = np.asarray(img.dataobj)
    if arr.ndim == 4 and arr.shape[2] == 1:  # (X, Y, 1, K): 2-D image with frames along the 4th axis
        arr = arr[:, :, 0, :]
    wavenumbers, extra = read_nifti_extension(img.header)
    zooms = img.header.get_zooms()
    if "pixel_size_um" not in extra and len(zooms) >= 2 and zooms[0] > 0 and img.header.get_xyzt_units()[0] == "micron":
        extra["pixel_size_um"] = float(zooms[0])
    # NIfTI's first axis is x (columns): (X, Y[, Z]) -> (H, W) / (K, H, W)
    arr = arr.T if arr.ndim == 2 else np.transpose(arr, (2, 1, 0)) if arr.ndim == 3 else arr
    return arr, wavenumbers, extra


def _read_tiff(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    import tifffile

    with tifffile.TiffFile(str(path)) as tif:
        arr = tif.asarray()
        meta = tif.shaped_metadata[0] if tif.shaped_metadata else {}
    wavenumbers = meta.get("wavenumbers") if isinstance(meta, dict) else None
    extra = (
        {"pixel_size_um": float(meta["pixel_size_um"])} if isinstance(meta, dict) and "pixel_size_um" in meta else {}
    )
    if arr.ndim > 3:
        arr = np.squeeze(arr)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
        raise HSRSInputError(
            f"{path}: looks like an RGB(A) image of shape {arr.shape}; an HSRS stack has one grey-level page per "
            "Raman shift (K, H, W)."
        )
    return arr, None if wavenumbers is None else np.asarray(wavenumbers, dtype=np.float64), extra


def _read_tiff_folder(path: Path) -> tuple[np.ndarray, None, dict]:
    import tifffile

    files = sorted((f for f in path.iterdir() if f.suffix.lower() in TIFF_SUFFIXES), key=_natural_key)
    if not files:
        raise HSRSInputError(f"{path}: the folder contains no .tif/.tiff frames.")
    frames = []
    for f in files:
        try:
            frame = np.squeeze(tifffile.imread(str(f)))
        except Exception as e:
            raise HSRSInputError(f"{f}: cannot read this TIFF frame ({type(e).__name__}: {e}).") from e
        if frame.ndim != 2:
            raise HSRSInputError(
                f"{f}: a frame of a TIFF folder must be a single 2-D page, got shape {frame.shape}; use a multi-page "
                "TIFF file for whole stacks."
            )
        if frames and frame.shape != frames[0].shape:
            raise HSRSInputError(f"{f}: frame shape {frame.shape} differs from {files[0].name}'s {frames[0].shape}.")
        frames.append(frame)
    return np.stack(frames), None, {"frame_files": [f.name for f in files]}


def _memory_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def _read_zarr(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    from scripts.io.ome_zarr import open_ome_zarr

    stack = open_ome_zarr(path)
    k, h, w = stack.shape
    need, available = k * h * w * 4, _memory_available()
    if available is not None and need > available:
        raise HSRSInputError(
            f"{path}: {k}×{h}×{w} px need {need / 1024**3:.3g} GiB as float32, more than the {available / 1024**3:.3g} "
            "GiB of memory available; segment it region by region with configs/mosaic.yaml (python -m monai.bundle run "
            "--config_file \"['configs/inference.yaml','configs/mosaic.yaml']\" --memory_gib N)."
        )
    try:
        arr = stack.region(0, h, 0, w)
    finally:
        stack.close()
    extra = {"pixel_size_um": stack.pixel_size_um} if stack.pixel_size_um else {}
    return arr, stack.wavenumbers, extra


_LOADERS = {
    "nifti": _read_nifti,
    "tiff": _read_tiff,
    "tiff_folder": _read_tiff_folder,
    "numpy": None,
    "zarr": _read_zarr,
}


def _load_raw(path: Path, fmt: str) -> tuple[np.ndarray, np.ndarray | None, dict]:
    if fmt == "tiff_folder":
        return _read_tiff_folder(path)
    if fmt == "zarr":
        if not path.is_dir():
            raise HSRSInputError(f"{path}: no such OME-Zarr folder.")
        return _read_zarr(path)
    if not path.is_file():
        raise HSRSInputError(f"{path}: no such file.")
    try:
        if fmt == "numpy":
            return np.load(str(path), allow_pickle=False), None, {}
        return _LOADERS[fmt](path)
    except HSRSInputError:
        raise
    except Exception as e:  # truncated / corrupt files surface as many different library errors
        raise HSRSInputError(
            f"{path}: cannot read this {fmt} file; is it truncated or corrupt? ({type(e).__name__}: {e})"
        ) from e


def _repair_non_finite(stack: np.ndarray, path: Path, nan_policy: str) -> np.ndarray:
    bad = ~np.isfinite(stack)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return stack
    if nan_policy == "raise":
        raise HSRSInputError(
            f"{path}: {n_bad} pixel values are NaN or Inf; repair them or read with nan_policy='repair' "
            "(replaces them by their frame's median)."
        )
    for k in np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1)):
        finite = stack[k][~bad[k]]
        if finite.size == 0:
            raise HSRSInputError(f"{path}: frame {k} contains no finite value (all NaN/Inf); the stack is unusable.")
        stack[k][bad[k]] = np.median(finite)
    logger.warning("%s: replaced %d NaN/Inf values by their frame's median (nan_policy='repair').", path, n_bad)
    return stack


def read_hsrs(
    path: str | Path,
    assumed_wavenumber_range: Sequence[float] = CANONICAL_RANGE,
    nan_policy: str = "repair",
    axis_check: str = "warn",
    axis_tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Read one HSRS stack or label map without MONAI; see the module docstring for formats.

    Args:
        path: stack file, label map file or folder of single-page TIFF frames.
        assumed_wavenumber_range: (first frame, last frame) in cm⁻¹, used with a logged warning for
            a stack that stores no wavenumbers.
        nan_policy: ``"repair"`` (replace NaN/Inf by the frame median, logged) or ``"raise"``.
        axis_check: ``"warn"`` (default), ``"refuse"`` or ``"off"``: how the spectral axis is checked
            against the stack's chemistry (:func:`scripts.spectra.calibration.check_axis`).
        axis_tolerance: largest accepted disagreement (cm⁻¹) between stored wavenumbers and the spectrum.

    Returns:
        ``(array, meta)``: a stack as (K, H, W) float32 with ``meta["wavenumbers"]`` ascending, or a
        2-D file as (1, H, W) in its stored dtype. ``meta`` also holds ``wavenumbers_source``
        (``"file"``, ``"sidecar"`` or ``"assumed"``: none stored), ``stored_order``, the axis check
        (``axis_check``: its flag, ``axis_message`` and the fitted axis, ``axis_*``) and, when known,
        ``pixel_size_um``.
    """
    if nan_policy not in ("repair", "raise"):
        raise ValueError(f"nan_policy must be 'repair' or 'raise', got {nan_policy!r}.")
    path = Path(path)
    fmt = stack_format(path)
    arr, wavenumbers, extra = _load_raw(path, fmt)
    meta: dict[str, Any] = {"format": fmt, **extra}
    if arr.ndim == 2:  # a label map or a single frame
        if not np.issubdtype(arr.dtype, np.integer):
            arr = _repair_non_finite(arr.astype(np.float32)[None], path, nan_policy)[0]
        return np.ascontiguousarray(arr[None]), meta
    if arr.ndim != 3:
        raise HSRSInputError(
            f"{path}: expected a 2-D label map or a 3-D spectral stack (K frames of H×W), got an array of shape "
            f"{arr.shape}."
        )
    if arr.dtype.kind not in "uif" or arr.dtype.kind == "c":
        raise HSRSInputError(f"{path}: unsupported pixel type {arr.dtype}; expected uint8, uint16 or float.")
    stack = arr.astype(np.float32, copy=True)
    num_frames = stack.shape[0]
    if wavenumbers is not None:
        meta["wavenumbers_source"] = "file"
    else:
        wavenumbers, sidecar_meta = read_sidecar(path)
        meta = {**sidecar_meta, **meta}
        meta["wavenumbers_source"] = "sidecar" if wavenumbers is not None else "assumed"
    try:
        if wavenumbers is not None:
            wavenumbers = validate_wavenumbers(wavenumbers, num_frames, str(path))
        stack = _repair_non_finite(stack, path, nan_policy)
        if not np.any(stack):
            raise HSRSInputError(
                f"{path}: every pixel of every frame is 0; the acquisition is empty or the wrong file was given."
            )
        # the spectral axis checked against the stack's chemistry (scripts/spectra/calibration.py)
        check = check_axis(stack, wavenumbers, axis_check, axis_tolerance, assumed_wavenumber_range, str(path))
        wavenumbers = validate_wavenumbers(check.wavenumbers, num_frames, str(path))
    except HSRSInputError:
        raise
    except ValueError as e:  # AxisCheckError and wavenumber errors included
        raise HSRSInputError(str(e)) from e
    logger.log(check.level, "%s", check.message)
    meta.update(check.metadata())
    meta["stored_order"] = "descending" if num_frames > 1 and wavenumbers[1] < wavenumbers[0] else "ascending"
    if meta["stored_order"] == "descending":
        stack, wavenumbers = stack[::-1].copy(), wavenumbers[::-1].copy()
    meta["wavenumbers"] = wavenumbers
    return stack, meta


class HSRSReader(ImageReader):
    """MONAI ``ImageReader`` for HSRS stacks and label maps (NIfTI, TIFF, TIFF folders, NumPy, OME-Zarr).

    Use it wherever MONAI loads images, e.g. in a bundle config::

        - _target_: LoadImaged
          keys: [image, label]
          reader: scripts.io.reader.HSRSReader
          image_only: true

    Args:
        assumed_wavenumber_range: (first frame, last frame) in cm⁻¹ assumed, with a logged warning,
            for stacks that store no wavenumbers. Default: the canonical 2800–3050 cm⁻¹.
        nan_policy: ``"repair"`` (default; NaN/Inf replaced by the frame median, logged) or ``"raise"``.
        axis_check: ``"warn"`` (default), ``"refuse"`` or ``"off"``: the spectral axis checked against the
            stack's chemistry (see the module docstring and :func:`scripts.spectra.calibration.check_axis`).
        axis_tolerance: largest accepted disagreement (cm⁻¹, default 15) between stored wavenumbers and
            the C–H bands of the stack.

    The loaded image follows MONAI's axis order (:mod:`scripts.io.orientation`): channel-first
    (K, X, Y) = (K, W, H) float32 for a stack, with ``meta["wavenumbers"]`` ascending; (1, X, Y)
    for a label map. ``meta["affine"]`` maps (x, y) indices to µm (3×3, the pixel size on the
    diagonal when the file records it, else 1), so MONAI's writers and MONAI Label write label
    maps that overlay the input file without a transpose. The arrays are channel-first already: do
    not add ``ensure_channel_first``.
    """

    def __init__(
        self,
        assumed_wavenumber_range: Sequence[float] = CANONICAL_RANGE,
        nan_policy: str = "repair",
        axis_check: str = "warn",
        axis_tolerance: float = DEFAULT_TOLERANCE,
        **kwargs,
    ):
        super().__init__()
        if nan_policy not in ("repair", "raise"):
            raise ValueError(f"nan_policy must be 'repair' or 'raise', got {nan_policy!r}.")
        if axis_check not in AXIS_CHECK_MODES:
            raise ValueError(f"axis_check must be one of {AXIS_CHECK_MODES}, got {axis_check!r}.")
        self.assumed_wavenumber_range = tuple(float(v) for v in assumed_wavenumber_range)
        self.nan_policy = nan_policy
        self.axis_check, self.axis_tolerance = axis_check, float(axis_tolerance)

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        """True for .nii, .nii.gz, .tif, .tiff, .npy files, OME-Zarr (.ome.zarr, .zarr) and for folders."""
        for name in ensure_tuple(filename):
            try:
                stack_format(name)
            except HSRSInputError:
                return False
        return True

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs) -> Path:
        """Record the path to read; the reading and all checks happen in :meth:`get_data`."""
        names = ensure_tuple(data)
        if len(names) != 1:
            raise HSRSInputError(
                f"HSRSReader reads one stack per item, got {len(names)} paths {list(names)[:3]}...; put single-frame "
                "TIFFs of one stack into one folder and pass the folder."
            )
        return Path(names[0])

    def get_data(self, img: Path) -> tuple[np.ndarray, dict]:
        """Read the stack at ``img``; returns the channel-first (C, X, Y) array and its metadata."""
        array, meta = read_hsrs(
            img, self.assumed_wavenumber_range, self.nan_policy, self.axis_check, self.axis_tolerance
        )
        array = np.ascontiguousarray(to_monai_xy(array))
        affine = monai_affine(meta.get("pixel_size_um"))
        meta.update(
            {
                "affine": affine,
                "original_affine": affine.copy(),
                "spatial_shape": np.asarray(array.shape[1:]),
                # What MONAI's writers restore: nothing. The frames are the network's input channels, not an
                # axis of its outputs, which are one 2-D map per field; with a channel recorded here, MONAI's
                # SaveImage and MONAI Label's writer refuse a (1, X, Y) prediction that carries this metadata.
                "original_channel_dim": float("nan"),
            }
        )
        meta.pop("frame_files", None)  # lists of names do not collate; the folder name is enough
        return array, meta
