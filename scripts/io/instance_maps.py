"""Instance label maps on disk: one ImageJ TIFF with a channel each for cells, nuclei and lipid droplets.

``<stem>.tif`` holds a (3, H, W) hyperstack — channels ``cells``, ``nuclei``, ``lipid_droplets``
(ImageJ ``Labels``), 0 background and one id per object, a nucleus with the id of its cell — with
the pixel size in the resolution tags (unit ``um``), so Fiji opens it calibrated and
``tifffile.imread`` gives the (3, H, W) array. 16-bit, or float32 (exact up to 2²⁴ ids) when an id
exceeds 65535, because ImageJ has no 32-bit integer images; deflate-compressed (a few kB per
field; Fiji, ImageJ, napari and tifffile read it). The ImageJ ``Info`` property holds
JSON with the lists that are not pixels: ``droplet_cell`` (the cell of each droplet id, index 0
unused, 0 for none) and ``has_nucleus`` (per cell id, index 0 unused).

The simulator writes its ground truth in this format (``DIR/instances/``) and the per-cell readout
(:mod:`scripts.cells`) its predictions, so both read back with :func:`read_instance_tiff`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scripts.io.atomic import atomic_path

#: Channel order of the instance TIFF.
INSTANCE_KINDS = ("cells", "nuclei", "lipid_droplets")


def checked_pixel_size(pixel_size_um) -> float | None:
    """``pixel_size_um`` as a positive float (µm per pixel), None kept; anything else is a ValueError."""
    if pixel_size_um is None:
        return None
    px = float(pixel_size_um)
    if not math.isfinite(px) or px <= 0:
        raise ValueError(f"pixel_size_um must be a positive number of µm per pixel or None, got {pixel_size_um!r}.")
    return px


def write_instance_tiff(
    path: str | Path,
    maps: Mapping[str, np.ndarray],
    pixel_size_um: float | None,
    droplet_cell: Sequence[int] | np.ndarray | None = None,
    has_nucleus: Sequence[bool] | np.ndarray | None = None,
) -> Path:
    """Write cell, nucleus and lipid-droplet instance maps as one 3-channel ImageJ TIFF, atomically.

    Args:
        path: output file (``.tif``).
        maps: (H, W) integer maps under the keys of :data:`INSTANCE_KINDS`.
        pixel_size_um: lateral pixel size, µm (None: no calibration).
        droplet_cell: optional (m + 1,) cell id of each droplet id, stored in the ``Info`` property.
        has_nucleus: optional (n + 1,) flag per cell id, stored in the ``Info`` property.

    Returns:
        ``path``.
    """
    import tifffile

    px = checked_pixel_size(pixel_size_um)
    missing = [k for k in INSTANCE_KINDS if k not in maps]
    if missing:
        raise ValueError(f"{path}: instance maps {missing} are missing; give all of {list(INSTANCE_KINDS)}.")
    arrays = [np.asarray(maps[k]) for k in INSTANCE_KINDS]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 2:
        raise ValueError(f"instance maps must be three (H, W) arrays of one shape, got {[a.shape for a in arrays]}.")
    top = max(int(a.max(initial=0)) for a in arrays)
    if top >= 2**24:
        raise ValueError(
            f"{path}: {top} instances exceed what a float32 ImageJ TIFF holds exactly (2^24); split the field."
        )
    data = np.stack(arrays).astype(np.uint16 if top <= 65535 else np.float32)
    metadata: dict = {"axes": "CYX", "Labels": list(INSTANCE_KINDS), "mode": "grayscale"}
    info = {}
    if droplet_cell is not None:
        info["droplet_cell"] = np.asarray(droplet_cell, np.int64).tolist()
    if has_nucleus is not None:
        info["has_nucleus"] = np.asarray(has_nucleus, bool).tolist()
    if info:
        metadata["Info"] = json.dumps(info, separators=(",", ":"))
    extra = {}
    if px:
        metadata["unit"] = "um"
        extra["resolution"] = (1.0 / px, 1.0 / px)
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, metadata=metadata, compression="zlib", **extra)
    return path


def read_instance_tiff(path: str | Path) -> tuple[dict[str, np.ndarray], float | None, dict]:
    """Read an instance TIFF written by :func:`write_instance_tiff`.

    Returns:
        ``(maps, pixel_size_um, info)``: the (H, W) int32 maps by name (:data:`INSTANCE_KINDS`), the
        pixel size in µm (None when not calibrated) and the ``Info`` lists (``droplet_cell``,
        ``has_nucleus`` as arrays; empty when not stored).
    """
    import tifffile

    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
        meta = tif.imagej_metadata or {}
        num, den = tif.pages[0].tags["XResolution"].value if "XResolution" in tif.pages[0].tags else (1, 1)
    if data.ndim != 3 or data.shape[0] != len(INSTANCE_KINDS):
        raise ValueError(
            f"{path}: not an instance TIFF: expected (3, H, W) channels {INSTANCE_KINDS}, got {data.shape}."
        )
    pixel = den / num if meta.get("unit") == "um" and num else None
    info = {k: np.asarray(v) for k, v in json.loads(meta.get("Info") or "{}").items()}
    if "droplet_cell" in info:
        info["droplet_cell"] = info["droplet_cell"].astype(np.int32)
    if "has_nucleus" in info:
        info["has_nucleus"] = info["has_nucleus"].astype(bool)
    maps = {k: np.rint(a).astype(np.int32) for k, a in zip(INSTANCE_KINDS, data, strict=True)}
    return maps, pixel, info
