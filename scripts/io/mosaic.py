"""Stacks far larger than memory: read a region at a time, write a label map tile by tile.

:func:`open_lazily` opens a stack (K, H, W) without reading its pixels; :meth:`LazyStack.region`
then reads one spatial region (all frames) as float32:

=============================================  =========================================================
file                                           read in parts with
=============================================  =========================================================
uncompressed TIFF (what ``tifffile.imwrite``   ``tifffile.memmap``: the region's rows are mapped, copied
and :func:`scripts.io.writer.write_stack`      and unmapped, so only the region stays in memory
write; one page per frame)
tiled and/or compressed TIFF, BigTIFF          tifffile's zarr interface (:mod:`scripts.io.ome_zarr`):
(one page per frame, or one 3-D series)        only the tiles (or strips) the region touches are decoded
OME-Zarr folder (``.ome.zarr`` / ``.zarr``)    zarr: only the chunks the region touches are decoded
uncompressed NIfTI ``.nii``                    nibabel's array proxy (``img.dataobj[x0:x1, y0:y1, :]``
                                               reads just those bytes)
``.npy``                                       ``numpy.load(mmap_mode="r")``, copied and unmapped as TIFF
=============================================  =========================================================

A chunked file is read a chunk at a time: every region read decodes whole chunks, so a chunk (all
its frames) must fit in the memory setting along with a region; :attr:`LazyStack.chunk_bytes` is
what :mod:`scripts.engine.mosaic` counts for it, and it cuts tiles along chunk boundaries where it can.
A TIFF page stored as one compressed strip is one chunk of a whole frame.

Compressed NIfTI (``.nii.gz``: gzip cannot be entered in the middle) and folders of frames cannot be read
in parts: they are read whole, which is allowed only when the whole stack fits in the memory setting;
a larger one is refused in one line naming the file, its size, the setting and what to do
(:class:`MosaicTooLargeError`). To make a file readable in parts: ``gunzip -k f.nii.gz`` (an uncompressed
``.nii``), or convert it to an OME-Zarr with ``python -m scripts.io.ome_zarr SRC DST.ome.zarr``, or write a tiled
TIFF with ``tifffile.imwrite(path, stack, tile=(256, 256), compression="zlib")``.

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
from scripts.io.formats import stack_format, stack_stem
from scripts.io.headers import read_header
from scripts.io.ome_zarr import ZARR_HINT, ChunkedStack, open_ome_zarr, open_tiff_chunks, write_label_tiles_ome_zarr
from scripts.io.writer import LABELS

GIB = 1024**3


class MosaicTooLargeError(HSRSInputError):
    """A stack that would have to be read whole, or one of its chunks, does not fit in the memory setting."""


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
        chunked: the zarr view of a chunked file (tiled or compressed TIFF, OME-Zarr), else None.
    """

    path: Path
    shape: tuple[int, int, int]
    dtype: np.dtype
    wavenumbers: np.ndarray | None
    pixel_size_um: float | None
    partial: bool
    chunked: ChunkedStack | None = None
    _whole: np.ndarray | None = field(default=None, repr=False)

    @property
    def chunks(self) -> tuple[int, int, int] | None:
        """(frames, rows, columns) of a chunk when the file is chunked, else None."""
        return self.chunked.chunks if self.chunked is not None else None

    def chunk_bytes(self, concurrency: int | None = None) -> int:
        """Memory decoding chunks takes during a region read: ``concurrency`` chunks at once (default: the
        stack's), each its decoded bytes and, while it is decoded, its compressed bytes (counted as many); 0
        when not chunked."""
        if self.chunked is None:
            return 0
        n = self.chunked.concurrency if concurrency is None else int(concurrency)
        return 2 * n * self.chunked.chunk_bytes

    def close(self) -> None:
        """Release the file (a chunked TIFF is kept open while its regions are read) and a stack read whole."""
        if self.chunked is not None:
            self.chunked.close()
        self._whole = None

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
        if self.chunked is not None:
            return self.chunked.region(y0, y1, x0, x1).astype(np.float32)
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
        if self.partial and self.chunked is not None:
            return self.chunked.points(ys, xs).astype(np.float32)
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


def _memmappable(path: Path, shape: tuple[int, ...]) -> bool:
    import tifffile

    try:
        arr = tifffile.memmap(str(path), mode="r")
    except ValueError:  # compressed, tiled or not contiguous
        return False
    ok = int(np.prod(arr.shape)) == int(np.prod(shape))
    del arr
    return ok


def _zarr_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("zarr") is not None


def _open_parts(path: Path, fmt: str, shape: tuple[int, ...]) -> tuple[bool, ChunkedStack | None]:
    """(readable in parts, the zarr view of a chunked file or None)."""
    if fmt == "numpy":
        return True, None
    if fmt == "nifti":
        return not path.name.lower().endswith(".gz"), None
    if fmt == "zarr":
        return True, open_ome_zarr(path)
    if fmt == "tiff":
        if _memmappable(path, shape):
            return True, None
        if not _zarr_installed():
            return False, None
        chunked = open_tiff_chunks(path)
        if chunked.shape != tuple(shape):
            chunked.close()
            return False, None
        return True, chunked
    return False, None  # a folder of frames


def chunk_advice(lazy: LazyStack) -> str:
    """What to do about a chunk layout that does not suit mosaics: rechunk (the command) or more memory."""
    return (
        f"rewrite it in smaller chunks (python -m scripts.io.ome_zarr {lazy.path} {stack_stem(lazy.path)}.ome.zarr "
        "--chunk 512, on a machine with the memory for one chunk) or raise --memory_gib"
    )


def describe_chunks(lazy: LazyStack) -> str:
    """``chunks of 64×4096×4096 px (frames × rows × columns; 2048 MiB decoded each)``."""
    assert lazy.chunked is not None
    return (
        f"chunks of {'×'.join(map(str, lazy.chunked.chunks))} px (frames × rows × columns; "
        f"{lazy.chunked.chunk_bytes / 2**20:.4g} MiB decoded each)"
    )


def open_lazily(path: str | Path, memory_bytes: float | None = None, setting_gib: float | None = None) -> LazyStack:
    """Open a stack for reading region by region, from its header only.

    Args:
        path: a stack file (see the module docstring).
        memory_bytes: the memory for data; a stack that cannot be read in parts must fit in it as
            float32, and a chunk of a chunked one must fit in it, or :class:`MosaicTooLargeError` names the file.
        setting_gib: the ``memory_gib`` setting ``memory_bytes`` was left by (the process and the network take the
            rest), for the messages; ``None``: ``memory_bytes`` is the setting itself.

    Raises:
        HSRSInputError: not a 3-D stack, or the header check fails (as in the pre-flight).
        MosaicTooLargeError: a compressed NIfTI or a folder of frames larger than ``memory_bytes``, or a chunked
            file whose chunks alone exceed it.
    """
    path = Path(path)
    header = read_header(path)
    if not header.is_stack:
        raise HSRSInputError(f"{path}: expected a spectral stack (K, H, W), got shape {header.shape}.")
    shape = tuple(int(s) for s in header.shape)
    fmt = header.format
    partial, chunked = _open_parts(path, fmt, shape)
    pixel = chunked.pixel_size_um if chunked is not None else _pixel_size(path, fmt)
    lazy = LazyStack(path, shape, header.dtype, header.wavenumbers, pixel, partial, chunked)
    if memory_bytes is None:
        return lazy
    room = (
        f"the memory setting memory_gib={memory_bytes / GIB:g}"
        if setting_gib is None
        else f"the {memory_bytes / GIB:.3g} GiB that memory_gib={setting_gib:g} leaves for data"
    )
    if chunked is not None and lazy.chunk_bytes(1) > memory_bytes:
        lazy.close()
        raise MosaicTooLargeError(
            f"{path}: stored in {describe_chunks(lazy)}; a region read decodes whole chunks, and one chunk alone "
            f"needs more than {room}; {chunk_advice(lazy)}."
        )
    if not partial and lazy.nbytes_float32 > memory_bytes:
        what = {
            "nifti": (
                "a gzip-compressed NIfTI",
                f"decompress it (gunzip -k {path}: an uncompressed .nii is read in parts) or convert it to an OME-Zarr "
                "(python -m scripts.io.ome_zarr) or a tiled TIFF",
            ),
            "tiff": (
                "a compressed or tiled TIFF",
                f"install zarr ({ZARR_HINT}: tiled and compressed TIFF are then read in parts) or save it uncompressed",
            ),
            "tiff_folder": (
                "a folder of frames",
                "convert it to a TIFF (tifffile.imwrite, uncompressed or tiled) or an OME-Zarr",
            ),
        }
        kind, todo = what.get(fmt, ("this file", "save it uncompressed"))
        raise MosaicTooLargeError(
            f"{path}: {kind} of {'×'.join(map(str, shape))} px cannot be read in parts, and read whole it needs "
            f"{lazy.nbytes_float32 / GIB:.3g} GiB, more than {room}; "
            f"{todo}, or raise --memory_gib."
        )
    return lazy


def write_label_tiles(
    path: str | Path, shape: tuple[int, int], tile: int, tiles: Iterator[np.ndarray], pixel_size_um: float | None = None
) -> Path:
    """Write a (H, W) uint8 label map from ``tiles`` (row-major, each ``tile`` × ``tile``, padded at the
    right and bottom borders) as a tiled, zlib-compressed TIFF, atomically (:func:`atomic_path`), or, for a
    ``path`` ending in ``.ome.zarr``, as an OME-Zarr label image
    (:func:`scripts.io.ome_zarr.write_label_tiles_ome_zarr`, one chunk per tile).

    ``tile`` must be a multiple of 16 (TIFF). Only the tile being written is held in memory.
    """
    import tifffile

    if str(path).endswith(".zarr"):
        return write_label_tiles_ome_zarr(path, shape, tile, tiles, LABELS, pixel_size_um)
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
