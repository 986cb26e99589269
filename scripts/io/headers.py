"""What a stack or label map is, from its header only: shape, pixel type, wavenumbers, whether it is complete.

:func:`read_header` is the cheap half of :func:`scripts.io.reader.read_hsrs`: NIfTI headers and
extensions (nibabel, without the voxels), TIFF page tables and descriptions (tifffile), the
``.npy`` header, the frame files of a TIFF folder, an OME-Zarr's metadata (zarr, :mod:`scripts.io.ome_zarr`),
and the sidecar. A file cut short is detected
from its size (for ``.nii.gz``, the gzip trailer, confirmed by decompressing only when it
disagrees). The workflows' pre-flight check (:mod:`scripts.io.preflight`) reads every input's
header before the first stack is processed.

Shapes follow the in-memory convention of the reader's documentation: a stack is (K, H, W) and
a 2-D file (H, W), whatever the axis order on disk.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scripts.io.errors import HSRSInputError
from scripts.io.formats import TIFF_SUFFIXES, stack_format
from scripts.io.sidecar import read_nifti_extension, read_sidecar


@dataclass(frozen=True)
class StackHeader:
    """Header of a stack (``shape`` (K, H, W)) or of a 2-D file (``shape`` (H, W)), e.g. a label map."""

    path: Path
    format: str
    shape: tuple[int, ...]
    dtype: np.dtype
    #: wavenumbers stored in the file or its sidecar, in frame order; None when there are none
    wavenumbers: np.ndarray | None

    @property
    def is_stack(self) -> bool:
        return len(self.shape) == 3

    @property
    def field(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return (int(self.shape[-2]), int(self.shape[-1])) if len(self.shape) >= 2 else (0, 0)

    @property
    def frames(self) -> int:
        return int(self.shape[0]) if self.is_stack else 1


def _corrupt(path: Path, fmt: str, error: Exception) -> HSRSInputError:
    return HSRSInputError(
        f"{path}: cannot read this {fmt} file; is it truncated or corrupt? ({type(error).__name__}: {error})"
    )


def _gzip_size_matches(path: Path, expected: int) -> bool:
    """Whether a .gz file decompresses to ``expected`` bytes: the trailer first, a full pass only if it disagrees."""
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        (isize,) = struct.unpack("<I", f.read(4))
    if isize == expected % 2**32:
        return True
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                total += len(chunk)
    except (OSError, EOFError):
        return False
    return total >= expected


def _nifti_header(path: Path) -> tuple[tuple[int, ...], np.dtype, np.ndarray | None]:
    import nibabel as nib

    img = nib.load(str(path))
    shape = tuple(int(s) for s in img.shape)
    dtype = np.dtype(img.get_data_dtype())
    # the data offset as read from the file (the loaded header's vox_offset can read 0 when the file has extensions)
    offset = getattr(img.dataobj, "offset", None)
    offset = int(img.header.get_data_offset()) if offset is None else int(offset)
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    complete = (
        _gzip_size_matches(path, expected) if path.name.lower().endswith(".gz") else path.stat().st_size >= expected
    )
    if not complete:
        raise HSRSInputError(
            f"{path}: the file is shorter than its header says (truncated: an interrupted copy or download?); "
            "copy it again."
        )
    if len(shape) == 4 and shape[2] == 1:  # (X, Y, 1, K): 2-D image with frames along the 4th axis
        shape = (shape[0], shape[1], shape[3])
    wavenumbers, _ = read_nifti_extension(img.header)
    # NIfTI's first axis is x (columns): (X, Y[, Z]) -> (H, W) / (K, H, W)
    if len(shape) == 2:
        shape = (shape[1], shape[0])
    elif len(shape) == 3:
        shape = (shape[2], shape[1], shape[0])
    return shape, dtype, wavenumbers


def _tiff_pages_complete(tif, path: Path) -> bool:
    """Whether the pixel data of the first series (contiguous: its extent; else the last page's strips) is in the file."""
    size = path.stat().st_size
    series = tif.series[0]
    offset = getattr(series, "dataoffset", None)
    if offset is not None:
        return offset + int(np.prod(series.shape)) * np.dtype(series.dtype).itemsize <= size
    last = tif.pages[-1]
    ends = [o + c for o, c in zip(last.dataoffsets, last.databytecounts, strict=False) if c]
    return not ends or max(ends) <= size


def _tiff_header(path: Path) -> tuple[tuple[int, ...], np.dtype, np.ndarray | None]:
    import tifffile

    with tifffile.TiffFile(str(path)) as tif:
        series = tif.series[0]
        shape = tuple(int(s) for s in series.shape)
        dtype = np.dtype(series.dtype)
        meta = tif.shaped_metadata[0] if tif.shaped_metadata else {}
        complete = _tiff_pages_complete(tif, path)
    if not complete:
        raise HSRSInputError(
            f"{path}: the file is shorter than its page table says (truncated: an interrupted copy or download?); "
            "copy it again."
        )
    if len(shape) > 3:
        shape = tuple(s for s in shape if s != 1) or (1,)
    if len(shape) == 3 and shape[-1] in (3, 4) and shape[0] > 4:
        raise HSRSInputError(
            f"{path}: looks like an RGB(A) image of shape {shape}; an HSRS stack has one grey-level page per "
            "Raman shift (K, H, W)."
        )
    wavenumbers = meta.get("wavenumbers") if isinstance(meta, dict) else None
    return shape, dtype, None if wavenumbers is None else np.asarray(wavenumbers, dtype=np.float64)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _tiff_folder_header(path: Path) -> tuple[tuple[int, ...], np.dtype, None]:
    import tifffile

    files = sorted((f for f in path.iterdir() if f.suffix.lower() in TIFF_SUFFIXES), key=_natural_key)
    if not files:
        raise HSRSInputError(f"{path}: the folder contains no .tif/.tiff frames.")
    first_shape, dtype = None, None
    for f in files:
        try:
            with tifffile.TiffFile(str(f)) as tif:
                shape = tuple(s for s in tif.series[0].shape if s != 1)
                frame_dtype = np.dtype(tif.series[0].dtype)
                complete = _tiff_pages_complete(tif, f)
        except Exception as e:
            raise HSRSInputError(f"{f}: cannot read this TIFF frame ({type(e).__name__}: {e}).") from e
        if not complete:
            raise HSRSInputError(f"{f}: this TIFF frame is truncated; copy it again.")
        if len(shape) != 2:
            raise HSRSInputError(
                f"{f}: a frame of a TIFF folder must be a single 2-D page, got shape {shape}; use a multi-page TIFF "
                "file for whole stacks."
            )
        if first_shape is None:
            first_shape, dtype = shape, frame_dtype
        elif shape != first_shape:
            raise HSRSInputError(f"{f}: frame shape {shape} differs from {files[0].name}'s {first_shape}.")
    return (len(files), *first_shape), dtype, None


def _numpy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, None]:
    arr = np.load(str(path), mmap_mode="r", allow_pickle=False)  # the header only; raises if the data is cut short
    return tuple(int(s) for s in arr.shape), np.dtype(arr.dtype), None


def _zarr_header(path: Path) -> tuple[tuple[int, ...], np.dtype, np.ndarray | None]:
    from scripts.io.ome_zarr import open_ome_zarr

    stack = open_ome_zarr(path)
    return stack.shape, stack.dtype, stack.wavenumbers


_HEADERS = {
    "nifti": _nifti_header,
    "tiff": _tiff_header,
    "tiff_folder": _tiff_folder_header,
    "numpy": _numpy_header,
    "zarr": _zarr_header,
}


def read_header(path: str | Path) -> StackHeader:
    """The :class:`StackHeader` of a stack or a 2-D file without reading its pixels.

    Wavenumbers come from the file (NIfTI extension, TIFF description) or else from the sidecar
    (:func:`scripts.io.sidecar.read_sidecar`), as the reader takes them.

    Raises:
        HSRSInputError: the path does not exist, is not a supported format, is cut short or cannot be
            parsed; the message names the file.
    """
    path = Path(path)
    fmt = stack_format(path)
    if fmt == "zarr" and not path.is_dir():
        raise HSRSInputError(f"{path}: no such OME-Zarr folder.")
    if fmt not in ("tiff_folder", "zarr") and not path.is_file():
        raise HSRSInputError(f"{path}: no such file.")
    try:
        shape, dtype, wavenumbers = _HEADERS[fmt](path)
    except HSRSInputError:
        raise
    except Exception as e:  # truncated / corrupt files surface as many different library errors
        raise _corrupt(path, fmt, e) from e
    if wavenumbers is None and len(shape) == 3:
        wavenumbers, _ = read_sidecar(path)
    return StackHeader(path, fmt, shape, dtype, wavenumbers)
