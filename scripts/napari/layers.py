"""HSRS stacks and label maps as napari layers: the plugin's reader and writer, and the layers of a result.

The reader is the bundle's own (:func:`scripts.io.reader.read_hsrs`), so napari sees a stack exactly as the
workflows do: NIfTI, TIFF, folders of TIFF frames, ``.npy`` and OME-Zarr, frames in ascending Raman shift, the
spectral axis checked against the stack's chemistry (:func:`scripts.spectra.calibration.check_axis`). A stack
becomes an image layer ``(K, H, W)`` whose first axis (the Raman shift) is a slider; the layer's metadata hold
the wavenumbers (cm⁻¹), their source, the pixel size (µm, also the layer's scale) and the axis check's verdict
(``axis_check``, ``axis_message``). A 2-D file (a label map written by the bundle) opens as a labels layer with
the class names and colours.

The writer writes a labels layer in the bundle's label formats: a TIFF label map
(:func:`scripts.io.writer.write_label_map`) or an OME-Zarr label image (:func:`scripts.io.mosaic.write_label_tiles`,
class names and colours in its metadata), each read back by the bundle's reader.

Layer data here are plain ``(data, kwargs, layer_type)`` tuples (napari's "layer data tuples"), so this module
needs neither Qt nor napari.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scripts.io.formats import HSRSInputError, stack_format, stack_stem
from scripts.io.overlay import LIPID_DROPLET_RGB, NUCLEUS_RGB
from scripts.io.writer import LABELS, check_label_map, write_label_map

logger = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]

#: Class names of the label values, as in the label maps' metadata (:data:`scripts.io.writer.LABELS`).
CLASS_NAMES: dict[int, str] = {value: name for name, value in LABELS.items()}
#: Display colours (RGBA 0–1) of the label values: those of the bundle's overlays (:mod:`scripts.io.overlay`).
CLASS_COLOURS: dict[int | None, tuple[float, float, float, float]] = {
    None: (0.0, 0.0, 0.0, 0.0),
    0: (0.0, 0.0, 0.0, 0.0),
    1: (*NUCLEUS_RGB, 1.0),
    2: (*LIPID_DROPLET_RGB, 1.0),
}
#: The axes of a stack layer.
STACK_AXES = ("wavenumber (frame)", "y", "x")
#: Verdicts of the axis check that a person must look at (those ``axis_check="refuse"`` refuses).
AXIS_WARNINGS = ("assumed", "inferred_direction", "reversed", "miscalibrated", "no_chemistry")
#: Tile side of an OME-Zarr label image written here (its chunks).
ZARR_TILE = 512


# ------------------------------------------------------------------------------------------------ reader
def get_reader(path: str | Sequence[str]) -> Callable[[str], list[LayerData]] | None:
    """The reader for ``path`` when it is a stack or label map the bundle reads (npe2 ``reader`` contribution)."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        stack_format(path)
    except HSRSInputError:
        return None
    folder = Path(path).is_dir() and stack_format(path) == "tiff_folder"
    if folder and not any(p.suffix.lower() in (".tif", ".tiff") for p in Path(path).iterdir()):
        return None
    return read_layers


def _is_label_image(path: Path) -> bool:
    """An OME-Zarr label image (``image-label`` metadata, as the mosaic writes it), not a stack."""
    if stack_format(path) != "zarr":
        return False
    from scripts.io.ome_zarr import import_zarr

    attrs = dict(import_zarr(path).open_group(str(path), mode="r").attrs)
    return "image-label" in attrs.get("ome", attrs)


def read_layers(path: str | Sequence[str], axis_check: str = "warn") -> list[LayerData]:
    """Read one stack (image layer) or label map (labels layer) with the bundle's reader."""
    from scripts.io.reader import read_hsrs

    if isinstance(path, list | tuple):
        path = path[0]
    path = Path(path)
    if _is_label_image(path):
        from scripts.io.ome_zarr import import_zarr, read_label_image

        attrs = dict(import_zarr(path).open_group(str(path), mode="r").attrs)
        return [class_labels_layer(read_label_image(path), stack_stem(path), attrs.get("pixel_size_um"), path)]
    array, meta = read_hsrs(path, axis_check=axis_check)
    if "wavenumbers" not in meta:  # a 2-D file: a label map (or a single frame)
        data = array[0]
        if np.issubdtype(data.dtype, np.integer) and set(np.unique(data).tolist()) <= set(CLASS_NAMES):
            return [class_labels_layer(data, stack_stem(path), meta.get("pixel_size_um"), path)]
        return [(data, {"name": stack_stem(path), "metadata": {"hsrs_path": str(path)}}, "image")]
    layer = stack_layer(array, meta, path)
    if layer[1]["metadata"]["axis_check"] in AXIS_WARNINGS:  # said in the viewer too, not only in the log
        _notify(axis_verdict(layer[1]["metadata"]))
    return [layer]


def _notify(message: str) -> None:
    """A warning in napari's notification area (only when napari is there: the reader runs without it too)."""
    try:
        from napari.utils.notifications import show_warning
    except ImportError:
        return
    show_warning(message)


#: The bundled demo stack (``docs/demo_data``, 128²×64 phantom), napari's *File > Open Sample > HSRS segmentation*.
DEMO_STACK = Path(__file__).resolve().parents[2] / "docs" / "demo_data" / "images" / "hsrs_default_s7_0000.nii.gz"


def demo_sample() -> list[LayerData]:
    """The bundled demo stack as the reader opens it (npe2 ``sample_data`` contribution)."""
    return read_layers(DEMO_STACK)


def layer_scale(pixel_size_um: Any, ndim: int) -> tuple[float, ...]:
    """napari scale of a layer: the pixel size (µm) on y and x when recorded, 1 elsewhere."""
    try:
        px = float(pixel_size_um)
    except (TypeError, ValueError):
        px = float("nan")
    px = px if np.isfinite(px) and px > 0 else 1.0
    return (1.0,) * (ndim - 2) + (px, px)


def stack_layer(stack: np.ndarray, meta: Mapping[str, Any], path: str | Path | None = None) -> LayerData:
    """The image layer of a stack (K, H, W) read by :func:`scripts.io.reader.read_hsrs` and its metadata."""
    wavenumbers = np.asarray(meta["wavenumbers"], dtype=float)
    metadata = {
        "hsrs_path": None if path is None else str(path),
        "wavenumbers": [float(v) for v in wavenumbers],
        "wavenumbers_source": meta.get("wavenumbers_source", ""),
        "pixel_size_um": meta.get("pixel_size_um"),
        "format": meta.get("format", ""),
        "axis_check": str(meta.get("axis_check", "")),
        "axis_message": str(meta.get("axis_message", "")),
    }
    lo, hi = np.percentile(stack[:: max(1, stack.shape[0] // 8)], [0.5, 99.8])
    kwargs = {
        "name": stack_stem(path) if path is not None else "stack",
        "metadata": metadata,
        "scale": layer_scale(meta.get("pixel_size_um"), 3),
        "axis_labels": STACK_AXES,
        "colormap": "gray",
        "contrast_limits": (float(lo), float(hi) if hi > lo else float(lo) + 1.0),
    }
    return stack, kwargs, "image"


def axis_warns(metadata: Mapping[str, Any]) -> bool:
    """The axis check's verdict on a stack layer is one a person must look at (:data:`AXIS_WARNINGS`)."""
    return metadata.get("axis_check", "") in AXIS_WARNINGS


def axis_verdict(metadata: Mapping[str, Any]) -> str:
    """One line for a person: the axis check's flag and message of a stack layer ("" when it has none)."""
    flag, message = metadata.get("axis_check", ""), metadata.get("axis_message", "")
    if not flag and not message:
        return ""
    return f"spectral axis: {flag or 'unchecked'} — {message}".strip(" —")


# ------------------------------------------------------------------------------------------ result layers
def class_labels_layer(
    labels: np.ndarray, name: str, pixel_size_um: Any = None, source: str | Path | None = None, **metadata: Any
) -> LayerData:
    """The labels layer of a label map (0 background, 1 nucleus, 2 lipid droplet): class names as features,
    the overlays' colours."""
    labels = np.asarray(labels)
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=3)[:3] if labels.size else np.zeros(3, int)
    features = {"index": list(CLASS_NAMES), "class": list(CLASS_NAMES.values()), "area_px": [int(c) for c in counts]}
    kwargs = {
        "name": name,
        "features": features,
        "colormap": dict(CLASS_COLOURS),
        "scale": layer_scale(pixel_size_um, labels.ndim),
        "opacity": 0.6,
        "metadata": {
            "hsrs_kind": "classes",
            "hsrs_path": None if source is None else str(source),
            "pixel_size_um": pixel_size_um,
            "class_names": dict(CLASS_NAMES),
            **metadata,
        },
    }
    return labels, kwargs, "labels"


def cell_labels_layer(
    cells: np.ndarray, rows: Sequence[Mapping[str, Any]], name: str, pixel_size_um: Any = None, **metadata: Any
) -> LayerData:
    """The labels layer of the cell instances, the per-cell table (:data:`scripts.cells.columns.CELL_COLUMNS`,
    one row per cell, ``index`` = the cell id) as its features."""
    columns: dict[str, list] = {"index": [int(r["cell_id"]) for r in rows]}
    for key in rows[0] if rows else ():
        columns[key] = [r[key] for r in rows]
    kwargs = {
        "name": name,
        "features": columns,
        "scale": layer_scale(pixel_size_um, 2),
        "opacity": 0.35,
        "metadata": {"hsrs_kind": "cells", "pixel_size_um": pixel_size_um, **metadata},
    }
    return np.asarray(cells), kwargs, "labels"


# ------------------------------------------------------------------------------------------------ writer
def _pixel_size(attributes: Mapping[str, Any]) -> float | None:
    recorded = (attributes.get("metadata") or {}).get("pixel_size_um")
    try:
        px = float(recorded)
    except (TypeError, ValueError):
        return None
    return px if np.isfinite(px) and px > 0 else None


def _tiles(labels: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    h, w = labels.shape
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            out = np.zeros((tile, tile), np.uint8)
            part = labels[y0 : y0 + tile, x0 : x0 + tile]
            out[: part.shape[0], : part.shape[1]] = part
            yield out


def write_labels(path: str, data: Any, attributes: Mapping[str, Any]) -> list[str]:
    """Write a labels layer as a TIFF label map (``.tif``) or an OME-Zarr label image (``.ome.zarr``)
    (npe2 ``writer`` contribution); returns the paths written."""
    from scripts.io.mosaic import write_label_tiles

    labels = check_label_map(np.asarray(data), str(path))
    target, pixel = Path(path), _pixel_size(attributes)
    name = target.name.lower()
    if name.endswith((".ome.zarr", ".zarr")):
        return [str(write_label_tiles(target, labels.shape, ZARR_TILE, _tiles(labels, ZARR_TILE), pixel))]
    if name.endswith((".tif", ".tiff")):
        return [str(p) for p in write_label_map(target, labels, ("tif",), pixel)]
    if name.endswith((".nii.gz", ".nii")):
        return [str(p) for p in write_label_map(target, labels, ("nii.gz" if name.endswith(".gz") else "nii",), pixel)]
    raise ValueError(
        f"{path}: label maps are written as .tif, .ome.zarr or .nii.gz, not {target.suffix or 'no suffix'}."
    )
