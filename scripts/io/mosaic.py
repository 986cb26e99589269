"""Stacks far larger than memory: read a region at a time, write a label map tile by tile.

:func:`open_lazily` opens a stack (K, H, W) without reading its pixels; :meth:`LazyStack.region`
then reads one spatial region (all frames) as float32:

===========================================  ===========================================================
file                                         read in parts with
===========================================  ===========================================================
uncompressed TIFF (what ``tifffile.imwrite`` ``tifffile.memmap``: the region's rows are mapped, copied and
and :func:`scripts.io.writer.write_stack`    unmapped, so only the region stays in memory
write; one page per frame)
uncompressed NIfTI ``.nii``                  nibabel's array proxy (``img.dataobj[x0:x1, y0:y1, :]``
                                             reads just those bytes)
``.npy``                                     ``numpy.load(mmap_mode="r")``, copied and unmapped as TIFF
===========================================  ===========================================================

Compressed files (``.nii.gz``, compressed or tiled TIFF) and folders of frames cannot be read in
parts: they are read whole, which is allowed only when the whole stack fits in the memory setting;
a larger one is refused in one line naming the file, its size, the setting and what to do
(:class:`MosaicTooLargeError`).

:func:`write_label_tiles` writes a (H, W) uint8 label map from an iterator of tiles into a tiled,
compressed TIFF (tifffile writes each tile as it comes), atomically: only the tile being written
is in memory. :func:`scripts.io.reader.read_hsrs` reads the result like any label map.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scripts.io.atomic import atomic_path
from scripts.io.errors import HSRSInputError
from scripts.io.formats import stack_format
from scripts.io.headers import read_header
from scripts.io.writer import LABELS

GIB = 1024**3


class MosaicTooLargeError(HSRSInputError):
    """A stack that would have to be read whole does not fit in the memory setting."""


@dataclass
class LazyStack:
    """A stack on disk, (K, H, W), read a region at a time (see the module docstring).

    Attributes:
        path: the file.
        shape: (K, H, W).
        dtype: stored pixel type.
        wavenumbers: stored wavenumbers in frame order (file or sidecar); None when there are none.
        pixel_size_um: lateral pixel size when the file records one.
        partial: True when a region can be read without reading the whole stack.
    """

    path: Path
    shape: tuple[int, int, int]
    dtype: np.dtype
    wavenumbers: np.ndarray | None
    pixel_size_um: float | None
    partial: bool
    _whole: np.ndarray | None = field(default=None, repr=False)

    @property
    def nbytes_float32(self) -> int:
        """Bytes of the whole stack as float32 (what reading it whole costs)."""
        return int(np.prod(self.shape)) * 4

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Frames × rows ``y0:y1`` × columns ``x0:x1`` as a new float32 array (K, y1 - y0, x1 - x0)."""
        fmt = stack_format(self.path)
        if not self.partial:
            if self._whole is None:
                self._whole = self._read_whole()
            return np.array(self._whole[:, y0:y1, x0:x1], dtype=np.float32)
        if fmt == "nifti":
            import nibabel as nib

            img = nib.load(str(self.path), mmap=False)
            part = np.asarray(img.dataobj[x0:x1, y0:y1, ...], dtype=np.float32)
            part = part[:, :, 0, :] if part.ndim == 4 else part
            return np.ascontiguousarray(np.transpose(part, (2, 1, 0)))
        mapped = self._map()
        try:
            return np.array(mapped[:, y0:y1, x0:x1], dtype=np.float32)
        finally:
            del mapped  # unmapped: the pages read stay in the page cache, not in this process

    def points(self, ys: np.ndarray, xs: np.ndarray, rows_per_read: int = 16) -> np.ndarray:
        """All frames at the grid of rows ``ys`` × columns ``xs``, as float32 (K, len(ys), len(xs)), reading
        ``rows_per_read`` rows at a time."""
        ys, xs = np.asarray(ys, dtype=np.intp), np.asarray(xs, dtype=np.intp)
        if not self.partial or stack_format(self.path) == "nifti":
            rows = [self.region(int(y), int(y) + 1, 0, self.shape[2])[:, 0, xs] for y in ys]
            return np.stack(rows, axis=1)
        out = np.empty((self.shape[0], ys.size, xs.size), np.float32)
        for i in range(0, ys.size, rows_per_read):
            mapped = self._map()
            out[:, i : i + rows_per_read] = mapped[:, ys[i : i + rows_per_read, None], xs[None, :]]
            del mapped
        return out

    def _map(self) -> np.ndarray:
        fmt = stack_format(self.path)
        if fmt == "numpy":
            return np.load(str(self.path), mmap_mode="r")
        import tifffile

        arr = tifffile.memmap(str(self.path), mode="r")
        return arr.reshape(self.shape)

    def _read_whole(self) -> np.ndarray:
        from scripts.io.reader import _load_raw

        arr, _, _ = _load_raw(self.path, stack_format(self.path))
        return arr if arr.ndim == 3 else arr.reshape(self.shape)


def _pixel_size(path: Path, fmt: str) -> float | None:
    try:
        if fmt == "tiff":
            import tifffile

            with tifffile.TiffFile(str(path)) as tif:
                meta = tif.shaped_metadata[0] if tif.shaped_metadata else {}
            value = meta.get("pixel_size_um") if isinstance(meta, dict) else None
            return float(value) if value else None
        if fmt == "nifti":
            import nibabel as nib

            img = nib.load(str(path))
            if img.header.get_xyzt_units()[0] == "micron":
                return float(img.header.get_zooms()[0])
    except Exception:  # the pixel size is optional; the header check already passed
        return None
    return None


def _can_read_in_parts(path: Path, fmt: str, shape: tuple[int, ...]) -> bool:
    if fmt == "numpy":
        return True
    if fmt == "nifti":
        return not path.name.lower().endswith(".gz")
    if fmt == "tiff":
        import tifffile

        try:
            arr = tifffile.memmap(str(path), mode="r")
        except ValueError:  # compressed, tiled or not contiguous
            return False
        ok = int(np.prod(arr.shape)) == int(np.prod(shape))
        del arr
        return ok
    return False  # a folder of frames


def open_lazily(path: str | Path, memory_bytes: float | None = None) -> LazyStack:
    """Open a stack for reading region by region, from its header only.

    Args:
        path: a stack file (see the module docstring).
        memory_bytes: the memory setting; a stack that cannot be read in parts must fit in it as
            float32, or :class:`MosaicTooLargeError` names the file.

    Raises:
        HSRSInputError: not a 3-D stack, or the header check fails (as in the pre-flight).
        MosaicTooLargeError: compressed or a folder of frames, and larger than ``memory_bytes``.
    """
    path = Path(path)
    header = read_header(path)
    if not header.is_stack:
        raise HSRSInputError(f"{path}: expected a spectral stack (K, H, W), got shape {header.shape}.")
    shape = tuple(int(s) for s in header.shape)
    fmt = header.format
    lazy = LazyStack(path, shape, header.dtype, header.wavenumbers, _pixel_size(path, fmt), False)
    lazy.partial = _can_read_in_parts(path, fmt, shape)
    if not lazy.partial and memory_bytes is not None and lazy.nbytes_float32 > memory_bytes:
        kind = {
            "nifti": "a compressed NIfTI",
            "tiff": "a compressed or tiled TIFF",
            "tiff_folder": "a folder of frames",
        }
        raise MosaicTooLargeError(
            f"{path}: {kind.get(fmt, 'this file')} of {'×'.join(map(str, shape))} px cannot be read in parts, and read "
            f"whole it needs {lazy.nbytes_float32 / GIB:.3g} GiB, more than the memory setting memory_gib="
            f"{memory_bytes / GIB:g}; save it uncompressed (.nii, or a TIFF written by tifffile.imwrite without "
            "compression) or raise --memory_gib."
        )
    return lazy


def write_label_tiles(
    path: str | Path, shape: tuple[int, int], tile: int, tiles: Iterator[np.ndarray], pixel_size_um: float | None = None
) -> Path:
    """Write a (H, W) uint8 label map from ``tiles`` (row-major, each ``tile`` × ``tile``, padded at the
    right and bottom borders) as a tiled, zlib-compressed TIFF, atomically (:func:`atomic_path`).

    ``tile`` must be a multiple of 16 (TIFF). Only the tile being written is held in memory.
    """
    import tifffile

    if tile % 16:
        raise ValueError(f"TIFF tiles must be a multiple of 16 px, got {tile}.")
    extra: dict[str, Any] = {"pixel_size_um": float(pixel_size_um)} if pixel_size_um else {}

    def checked() -> Iterator[np.ndarray]:
        for t in tiles:
            if t.shape != (tile, tile) or t.dtype != np.uint8:
                raise ValueError(f"a tile must be ({tile}, {tile}) uint8, got {t.shape} {t.dtype}.")
            yield t

    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            data=checked(),
            shape=tuple(int(s) for s in shape),
            dtype=np.uint8,
            tile=(tile, tile),
            compression="zlib",
            photometric="minisblack",
            metadata={"labels": LABELS, **extra},
        )
    return Path(path)
