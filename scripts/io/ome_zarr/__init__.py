"""Chunked stacks through zarr: OME-Zarr folders and tiled or compressed TIFF, read a region at a time.

A chunked array is stored as independently compressed blocks (chunks); reading a region decodes
only the chunks it touches. Two kinds of files are read so, both through the zarr library
(``zarr>=3``):

- **OME-Zarr** (``name.ome.zarr`` or ``name.zarr``, a folder; OME-NGFF 0.4 on zarr v2 or 0.5 on
  zarr v3): the group's ``multiscales`` metadata names the level-0 array (``datasets[0].path``) and
  its axes. The **spectral axis** is the one axis besides ``y`` and ``x`` that holds more than one
  element, whatever its name (``c`` in ``czyx`` / ``tczyx``, or ``z``, or a custom ``wavenumber`` axis);
  axes of length 1 are dropped, and two such axes (e.g. ``t`` = 3 and ``c`` = 64) are refused. A bare
  zarr array (K, H, W), without OME metadata, is read too.
  **Wavenumbers** (cm⁻¹, one per frame in stored order) come from the group attribute
  ``wavenumbers`` (the key of the TIFF description and of the sidecar JSON), else from the sidecar
  ``<stem>.json`` beside the folder (:mod:`scripts.io.sidecar`). The pixel size comes from the
  attribute ``pixel_size_um``, else from level 0's ``scale`` of ``x`` when its unit is ``micrometer``.
- **TIFF** whose pages are tiled or compressed (a plain ``tifffile.memmap`` cannot map them):
  tifffile's zarr interface (``TiffPageSeries.aszarr``) presents the first series as a zarr array
  whose chunks are the TIFF tiles or strips, of one page (one frame) each, or the volumetric tiles.
  A region that is the whole field is read by tifffile itself (``TiffPageSeries.asarray``, its tiles
  decoded in threads), which is about twice as fast as the same decoding through zarr.

:class:`ChunkedStack` is such an array seen as (K, H, W): :meth:`~ChunkedStack.region` and
:meth:`~ChunkedStack.points` read parts of it, and :attr:`~ChunkedStack.chunk_bytes` says what one
chunk costs to decode, which :mod:`scripts.engine.mosaic` counts in its memory budget. zarr decodes
up to :attr:`~ChunkedStack.concurrency` chunks at a time (the ``async.concurrency`` setting).

:func:`write_ome_zarr` writes an OME-Zarr stack (OME-NGFF 0.4, or 0.5) region by region, into a
temporary folder renamed into place when complete (:func:`atomic_folder`): a reader never sees a
half-written one. ``python -m scripts.io.ome_zarr SRC DST.ome.zarr [--chunk 512]`` converts any
stack the bundle reads in parts (uncompressed TIFF or ``.nii``, ``.npy``, tiled TIFF, OME-Zarr) into
an OME-Zarr chunked for mosaics, in bounded memory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scripts.io.errors import HSRSInputError, HSRSOutputError

#: What to tell a user without the zarr package.
ZARR_HINT = "pip install 'zarr>=3'"
#: Axis names read as the lateral axes of an OME-Zarr.
SPATIAL = ("y", "x")
#: Chunks zarr decodes at a time by default (lowered by the mosaic's memory budget for large chunks).
DEFAULT_CONCURRENCY = 4


def import_zarr(path: str | Path):
    """The zarr module, or :class:`HSRSInputError` naming ``path`` and how to install it."""
    try:
        import zarr
    except ImportError as e:
        raise HSRSInputError(f"{path}: reading chunked stacks (OME-Zarr, tiled TIFF) needs zarr 3: {ZARR_HINT}.") from e
    if int(zarr.__version__.split(".")[0]) < 3:
        raise HSRSInputError(f"{path}: zarr {zarr.__version__} is installed, zarr 3 is needed: {ZARR_HINT}.")
    return zarr


class ChunkedStack:
    """A chunked zarr array read as a stack (K, H, W); see the module docstring.

    Args:
        path: the file or folder (for messages).
        array: the zarr array.
        spectral, y, x: the array's axes that are the frames, the rows and the columns; every other
            axis has length 1.
        wavenumbers, pixel_size_um: as stored (None when not).
        keep: objects that must stay open while the array is read (a TIFF file); closed by :meth:`close`.
        read_whole: reads the whole array at once, faster than through zarr (tifffile decoding a TIFF's tiles in
            ``maxworkers`` threads: 3.7 s against 7.2 s through zarr for a 2048²×64 zlib-tiled TIFF, 2 cores);
            :meth:`region` uses it for a region that is the whole field. Called with the number of threads.
    """

    def __init__(
        self,
        path: Path,
        array,
        spectral: int,
        y: int,
        x: int,
        wavenumbers: np.ndarray | None = None,
        pixel_size_um: float | None = None,
        keep: Sequence[Any] = (),
        read_whole: Callable[[int], np.ndarray] | None = None,
    ):
        self.path, self.array = Path(path), array
        self._read_whole = read_whole
        self.axes = (spectral, y, x)
        self.wavenumbers, self.pixel_size_um = wavenumbers, pixel_size_um
        self.concurrency = DEFAULT_CONCURRENCY
        self._keep = list(keep)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(K, H, W)."""
        return tuple(int(self.array.shape[a]) for a in self.axes)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(str(self.array.dtype)) if not isinstance(self.array.dtype, np.dtype) else self.array.dtype

    @property
    def chunks(self) -> tuple[int, int, int]:
        """A chunk's extent (frames, rows, columns): what every read decodes at least."""
        return tuple(min(int(self.array.chunks[a]), s) for a, s in zip(self.axes, self.shape, strict=True))  # type: ignore

    @property
    def chunk_bytes(self) -> int:
        """Bytes of one decoded chunk."""
        return int(np.prod(self.chunks)) * self.dtype.itemsize

    def _selection(self, frames, rows, cols) -> tuple:
        sel: list[Any] = [0] * len(self.array.shape)
        for axis, part in zip(self.axes, (frames, rows, cols), strict=True):
            sel[axis] = part
        return tuple(sel)

    def _ordered(self, part: np.ndarray) -> np.ndarray:
        kept = sorted(self.axes)  # the integer-indexed axes are gone; the others keep their order
        return np.transpose(part, [kept.index(a) for a in self.axes])

    def _unreadable(self, e: Exception) -> HSRSInputError:
        """A corrupt or truncated chunk (a codec or store error) as one line naming the file."""
        return HSRSInputError(
            f"{self.path}: cannot read a chunk of this stack; is it truncated or corrupt? ({type(e).__name__}: {e})"
        )

    def _read(self, method: str, selection: tuple) -> np.ndarray:
        zarr = import_zarr(self.path)
        try:
            with zarr.config.set({"async.concurrency": int(self.concurrency)}):
                return np.asarray(getattr(self.array, method)(selection))
        except HSRSInputError:
            raise
        except Exception as e:
            raise self._unreadable(e) from e

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Frames × rows ``y0:y1`` × columns ``x0:x1`` in the stored dtype (K, y1 - y0, x1 - x0)."""
        _, h, w = self.shape
        if self._read_whole is not None and (y0, y1, x0, x1) == (0, h, 0, w):
            try:
                whole = self._read_whole(max(1, min(int(self.concurrency), os.cpu_count() or 1)))
            except Exception as e:
                raise self._unreadable(e) from e
            return self._ordered(whole[self._selection(slice(None), slice(None), slice(None))])
        part = self._read("get_basic_selection", self._selection(slice(None), slice(y0, y1), slice(x0, x1)))
        return self._ordered(part)

    def points(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """All frames at rows ``ys`` × columns ``xs`` (K, len(ys), len(xs)); each chunk is decoded once."""
        frames = np.arange(self.shape[0])
        part = self._read("get_orthogonal_selection", self._selection(frames, np.asarray(ys), np.asarray(xs)))
        return self._ordered(part)

    def close(self) -> None:
        for obj in self._keep:
            with contextlib.suppress(Exception):
                obj.close()
        self._keep = []


# ------------------------------------------------------------------------------------------ opening
def _one_spectral_axis(path: Path, shape: Sequence[int], names: Sequence[str], y: int, x: int) -> int:
    others = [i for i in range(len(shape)) if i not in (y, x) and int(shape[i]) > 1]
    if len(others) > 1:
        axes = ", ".join(f"{names[i]}={shape[i]}" for i in others)
        raise HSRSInputError(
            f"{path}: {len(others)} axes besides y and x hold more than one element ({axes}); an HSRS stack has one "
            "spectral axis (one frame per Raman shift). Save one stack per field and time point."
        )
    if others:
        return others[0]
    singles = [i for i in range(len(shape)) if i not in (y, x)]
    if not singles:
        raise HSRSInputError(f"{path}: a 2-D image of shape {tuple(shape)}, not a spectral stack (K, H, W).")
    return singles[-1]


def _ngff_metadata(attrs: dict) -> tuple[dict | None, str]:
    if isinstance(attrs.get("ome"), dict) and attrs["ome"].get("multiscales"):  # NGFF 0.5
        return attrs["ome"]["multiscales"][0], str(attrs["ome"].get("version", "0.5"))
    if attrs.get("multiscales"):  # NGFF 0.4 and earlier
        ms = attrs["multiscales"][0]
        return ms, str(ms.get("version", "0.4"))
    return None, ""


def _axis_names(path: Path, axes: Sequence, ndim: int) -> list[str]:
    names = [str(a.get("name", "")).lower() if isinstance(a, dict) else str(a).lower() for a in axes]
    if len(names) != ndim:
        raise HSRSInputError(f"{path}: the OME-Zarr metadata names {len(names)} axes for a {ndim}-D array.")
    return names


def _pixel_size_from_scale(ms: dict, names: list[str]) -> float | None:
    try:
        axes = ms.get("axes", [])
        unit = axes[names.index("x")].get("unit", "") if isinstance(axes[names.index("x")], dict) else ""
        if unit not in ("micrometer", "µm", "um", "micron"):
            return None
        for t in ms["datasets"][0].get("coordinateTransformations", []):
            if t.get("type") == "scale":
                return float(t["scale"][names.index("x")])
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return None
    return None


def open_ome_zarr(path: str | Path) -> ChunkedStack:
    """Open an OME-Zarr stack (or a bare zarr array (K, H, W)) without reading its pixels; see the module docstring.

    Raises:
        HSRSInputError: not a zarr store, no (K, H, W) stack in it, or zarr missing; the message names the folder.
    """
    path = Path(path)
    zarr = import_zarr(path)
    if not path.is_dir():
        raise HSRSInputError(f"{path}: no such OME-Zarr folder.")
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:
        raise HSRSInputError(
            f"{path}: not a readable zarr store ({type(e).__name__}: {e}); an OME-Zarr folder holds zarr.json "
            "(zarr v3) or .zgroup/.zattrs (zarr v2)."
        ) from e
    attrs = dict(node.attrs)
    if isinstance(node, zarr.Group):
        ms, _ = _ngff_metadata(attrs)
        if ms is None:
            raise HSRSInputError(
                f"{path}: a zarr group without OME-NGFF 'multiscales' metadata; expected an OME-Zarr image (or a "
                "bare zarr array (K, H, W))."
            )
        try:
            array = node[str(ms["datasets"][0]["path"])]
        except (KeyError, IndexError) as e:
            raise HSRSInputError(
                f"{path}: the OME-NGFF metadata names level 0 {e}, which is not in the store; is it incomplete?"
            ) from e
        names = _axis_names(path, ms.get("axes") or ["c", "y", "x"][-array.ndim :], array.ndim)
        pixel = _pixel_size_from_scale(ms, names)
    else:
        array, ms = node, None
        names = ["k", "y", "x"] if node.ndim == 3 else [f"axis{i}" for i in range(node.ndim)]
        pixel = None
    if "y" not in names or "x" not in names:
        if array.ndim < 2:
            raise HSRSInputError(f"{path}: a {array.ndim}-D array, not a spectral stack (K, H, W).")
        names = [*names[:-2], "y", "x"]  # unnamed axes: the last two are the field, as in NumPy and TIFF
    y, x = names.index("y"), names.index("x")
    spectral = _one_spectral_axis(path, array.shape, names, y, x)
    wavenumbers = attrs.get("wavenumbers") or dict(array.attrs).get("wavenumbers")
    if wavenumbers is None:
        from scripts.io.sidecar import read_sidecar

        wavenumbers, extra = read_sidecar(path)
        pixel = pixel or extra.get("pixel_size_um")
    pixel = float(attrs["pixel_size_um"]) if attrs.get("pixel_size_um") else pixel
    wn = None if wavenumbers is None else np.asarray(wavenumbers, dtype=np.float64)
    return ChunkedStack(path, array, spectral, y, x, wn, pixel)


def open_tiff_chunks(path: str | Path) -> ChunkedStack:
    """The first series of a tiled or compressed TIFF as a :class:`ChunkedStack` (tifffile's zarr interface).

    The frames are the series' one axis besides the last two (rows, columns) with more than one element.
    """
    import tifffile

    path = Path(path)
    zarr = import_zarr(path)
    tif = tifffile.TiffFile(str(path))
    try:
        series = tif.series[0]
        meta = tif.shaped_metadata[0] if tif.shaped_metadata else {}
        store = series.aszarr()
        array = zarr.open(store, mode="r")
        if isinstance(array, zarr.Group):  # a pyramid: level 0
            array = array["0"]
        names = list(series.axes.lower()) if len(series.axes) == array.ndim else [str(i) for i in range(array.ndim)]
        ndim = array.ndim
        if ndim >= 3 and names[-1] in ("s",) and array.shape[-1] in (3, 4):
            raise HSRSInputError(
                f"{path}: an RGB(A) image of shape {tuple(array.shape)}; an HSRS stack has one grey-level page per "
                "Raman shift (K, H, W)."
            )
        y, x = ndim - 2, ndim - 1
        spectral = _one_spectral_axis(path, array.shape, names, y, x)
    except BaseException:
        tif.close()
        raise
    meta = meta if isinstance(meta, dict) else {}
    wn = meta.get("wavenumbers")
    pixel = float(meta["pixel_size_um"]) if meta.get("pixel_size_um") else None
    wn = None if wn is None else np.asarray(wn, float)

    def read_whole(threads: int) -> np.ndarray:
        return np.asarray(series.asarray(maxworkers=threads)).reshape(array.shape)

    return ChunkedStack(path, array, spectral, y, x, wn, pixel, keep=[store, tif], read_whole=read_whole)


def tiff_is_chunked(path: str | Path) -> bool:
    """True when the TIFF's first series is tiled or compressed (read through zarr), False when it is contiguous
    and uncompressed (``tifffile.memmap``)."""
    import tifffile

    with tifffile.TiffFile(str(path)) as tif:
        page = tif.series[0].keyframe
        return bool(page.is_tiled or page.compression != 1 or getattr(tif.series[0], "dataoffset", None) is None)


# ------------------------------------------------------------------------------------------ writing
def _tmp_name(path: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; when the body succeeds, rename it to ``path``.

    The body writes the complete folder (a zarr store). An existing ``path`` is moved aside first
    and removed after the rename, so ``path`` is always either the old or the new complete folder (or,
    for the instant between the two renames, absent; never partial). On any error the temporary
    folder is removed and ``path`` is untouched. A killed writer leaves ``.NAME.*.part`` behind, which no
    reader takes for an output (:func:`scripts.io.atomic.is_temporary`).
    """
    from scripts.io.atomic import fsync_folder, write_error

    path = Path(path)
    if not path.parent.is_dir():
        raise HSRSOutputError(f"{path}: cannot write this folder: its parent {path.parent} does not exist.")
    try:
        tmp = _tmp_name(path)
    except OSError as e:
        raise write_error(path, e) from e
    old = None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = _tmp_name(path)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except OSError as e:
        raise write_error(path, e) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _multiscales(names: Sequence[str], pixel_size_um: float | None, version: str) -> dict:
    types = {"c": "channel", "y": "space", "x": "space"}
    axes = []
    for n in names:
        axis: dict[str, str] = {"name": n, "type": types.get(n, "space")}
        if n in ("y", "x") and pixel_size_um:
            axis["unit"] = "micrometer"
        axes.append(axis)
    scale = [1.0 if n not in ("y", "x") else float(pixel_size_um or 1.0) for n in names]
    ms: dict[str, Any] = {
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
        "name": "",
    }
    if version == "0.4":
        ms["version"] = "0.4"
    return ms


def write_ome_zarr(
    path: str | Path,
    data: np.ndarray | Any,
    wavenumbers: Sequence[float] | None = None,
    pixel_size_um: float | None = None,
    chunk: int = 512,
    version: str = "0.4",
    dtype: Any = None,
) -> Path:
    """Write a stack (K, H, W) as an OME-Zarr image ``path`` (axes ``c, y, x``), region by region, atomically.

    Args:
        path: the ``.ome.zarr`` folder to create (replaced when it exists).
        data: an array (K, H, W), or anything with ``shape`` and ``region(y0, y1, x0, x1)`` (a
            :class:`scripts.io.mosaic.LazyStack` or :class:`ChunkedStack`): read one band of chunks at a time.
        wavenumbers: cm⁻¹ per frame, stored as the attribute ``wavenumbers``.
        pixel_size_um: stored as the attribute and as level 0's scale of ``y`` and ``x``.
        chunk: chunk side (rows and columns); a chunk holds all frames.
        version: OME-NGFF ``"0.4"`` (zarr v2, the most widely read) or ``"0.5"`` (zarr v3).
        dtype: stored pixel type (default: the data's).
    """
    if version not in ("0.4", "0.5"):
        raise ValueError(f"version must be '0.4' or '0.5', got {version!r}.")
    path = Path(path)
    zarr = import_zarr(path)
    k, h, w = (int(s) for s in data.shape)
    dtype = np.dtype(dtype or getattr(data, "dtype", np.float32))
    attrs: dict[str, Any] = {}
    if wavenumbers is not None:
        attrs["wavenumbers"] = [round(float(v), 6) for v in wavenumbers]
        attrs["unit"] = "cm-1"
    if pixel_size_um:
        attrs["pixel_size_um"] = float(pixel_size_um)
    ms = _multiscales(["c", "y", "x"], pixel_size_um, version)
    chunk = max(1, min(int(chunk), max(h, w)))
    with atomic_folder(path) as tmp:
        fmt = 2 if version == "0.4" else 3
        group = zarr.open_group(str(tmp), mode="w", zarr_format=fmt)
        meta = {"multiscales": [ms]} if version == "0.4" else {"ome": {"version": "0.5", "multiscales": [ms]}}
        group.attrs.update({**meta, **attrs})
        names = {"dimension_names": ["c", "y", "x"]} if fmt == 3 else {}
        array = group.create_array("0", shape=(k, h, w), chunks=(k, chunk, chunk), dtype=dtype, **names)
        for y0 in range(0, h, chunk):
            y1 = min(y0 + chunk, h)
            for x0 in range(0, w, chunk):
                x1 = min(x0 + chunk, w)
                part = data.region(y0, y1, x0, x1) if hasattr(data, "region") else data[:, y0:y1, x0:x1]
                array[:, y0:y1, x0:x1] = np.asarray(part).astype(dtype, copy=False)
    return path


#: display colours (RGBA) of the label values in an OME-Zarr label image: nucleus blue, lipid droplet yellow
LABEL_COLOURS = {0: [0, 0, 0, 0], 1: [40, 90, 255, 255], 2: [255, 210, 0, 255]}


def write_label_tiles_ome_zarr(
    path: str | Path,
    shape: tuple[int, int],
    tile: int,
    tiles: Iterator[np.ndarray],
    labels: dict[str, int],
    pixel_size_um: float | None = None,
    version: str = "0.4",
) -> Path:
    """Write a (H, W) uint8 label map from ``tiles`` as an OME-Zarr label image, one chunk per tile, atomically.

    ``tiles`` come row-major, each ``tile`` × ``tile`` (padded at the right and bottom borders; the
    padding is cut off). The group carries OME-NGFF ``multiscales`` (axes ``y``, ``x``, level ``0``)
    and ``image-label`` metadata: each label value's name (``properties``) and display colour, so
    napari and other OME-Zarr viewers show the classes by name. Only the tile being written is in
    memory; the folder appears complete or not at all (:func:`atomic_folder`).

    Args:
        path: the ``.ome.zarr`` folder to create (replaced when it exists).
        shape: (H, W) of the label map.
        tile: tile side in pixels (the chunk side).
        tiles: the tiles, (tile, tile) uint8 each.
        labels: ``{class name: label value}``.
        pixel_size_um: stored as the attribute and as the scale of ``y`` and ``x``.
        version: OME-NGFF ``"0.4"`` (zarr v2) or ``"0.5"`` (zarr v3).
    """
    if version not in ("0.4", "0.5"):
        raise ValueError(f"version must be '0.4' or '0.5', got {version!r}.")
    path = Path(path)
    zarr = import_zarr(path)
    h, w = (int(s) for s in shape)
    ms = _multiscales(list(SPATIAL), pixel_size_um, version)
    image_label = {
        "colors": [{"label-value": v, "rgba": LABEL_COLOURS.get(v, [128, 128, 128, 255])} for v in labels.values()],
        "properties": [{"label-value": v, "class": name} for name, v in labels.items()],
        "source": {"image": "../"},
    }
    fmt = 2 if version == "0.4" else 3
    if fmt == 2:
        image_label["version"] = "0.4"
        meta: dict[str, Any] = {"multiscales": [ms], "image-label": image_label}
    else:
        meta = {"ome": {"version": "0.5", "multiscales": [ms], "image-label": image_label}}
    extra = {"pixel_size_um": float(pixel_size_um)} if pixel_size_um else {}
    with atomic_folder(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=fmt)
        group.attrs.update({**meta, "labels": dict(labels), **extra})
        names = {"dimension_names": list(SPATIAL)} if fmt == 3 else {}
        array = group.create_array("0", shape=(h, w), chunks=(tile, tile), dtype=np.uint8, fill_value=0, **names)
        n_cols = -(-w // tile)
        count = 0
        for count, part in enumerate(tiles, start=1):
            if part.shape != (tile, tile) or part.dtype != np.uint8:
                raise ValueError(f"a tile must be ({tile}, {tile}) uint8, got {part.shape} {part.dtype}.")
            y0, x0 = (count - 1) // n_cols * tile, (count - 1) % n_cols * tile
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            array[y0:y1, x0:x1] = part[: y1 - y0, : x1 - x0]
        expected = -(-h // tile) * n_cols
        if count != expected:
            raise ValueError(f"{path}: {count} tiles given for a {h}×{w} map in {tile}-px tiles; {expected} needed.")
    return path


def read_label_image(path: str | Path) -> np.ndarray:
    """The level-0 label map (H, W) of an OME-Zarr label image written by :func:`write_label_tiles_ome_zarr`."""
    zarr = import_zarr(path)
    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    meta = attrs.get("ome", attrs)
    level0 = meta.get("multiscales", [{}])[0].get("datasets", [{"path": "0"}])[0]["path"]
    return np.asarray(group[level0][:])
