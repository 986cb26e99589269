"""The wavenumber (Raman shift) axis of an HSRS stack: the canonical grid and checks.

An HSRS stack holds one image per Raman shift. The bundle works on a fixed **canonical grid**
(:data:`CANONICAL_WAVENUMBERS`, 64 frames over the C–H stretch window 2800–3050 cm⁻¹, about
4 cm⁻¹ per frame, which oversamples the ~25 cm⁻¹ spectral resolution of spectral-focusing HSRS);
:class:`scripts.transforms.SpectralResample` maps any stack onto it.

Wavenumbers travel with the file (see :mod:`scripts.reader`): in a NIfTI header extension, in
the TIFF description, or in a sidecar JSON file ``<stem>.json`` next to the stack with the key
``"wavenumbers"`` (a list of K numbers in cm⁻¹, in frame order).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

#: The C–H stretch window of the canonical grid, in cm⁻¹.
CANONICAL_RANGE: tuple[float, float] = (2800.0, 3050.0)
#: Number of frames of the canonical grid.
CANONICAL_NUM_FRAMES: int = 64
#: The canonical wavenumber grid (ascending, cm⁻¹) that the networks are trained on.
CANONICAL_WAVENUMBERS: np.ndarray = np.linspace(*CANONICAL_RANGE, CANONICAL_NUM_FRAMES)
#: Fewest frames accepted as a spectral stack (a spectrum needs a few samples per band).
MIN_FRAMES: int = 8
#: Plausible Raman shifts for stimulated Raman microscopy, in cm⁻¹ (sanity bound on metadata).
PLAUSIBLE_RANGE: tuple[float, float] = (100.0, 4500.0)

SIDECAR_KEY = "wavenumbers"


def validate_wavenumbers(wavenumbers: Sequence[float] | np.ndarray, num_frames: int, source: str) -> np.ndarray:
    """Check a wavenumber axis against its stack and return it as float64.

    Args:
        wavenumbers: K Raman shifts in cm⁻¹, in frame order (ascending or descending).
        num_frames: the number of frames K of the stack they describe.
        source: where the values came from (file name), quoted in error messages.

    Returns:
        The wavenumbers as a 1-D float64 array, in the given order.

    Raises:
        ValueError: if the length differs from ``num_frames``, values are not finite, not strictly
            monotonic, or outside :data:`PLAUSIBLE_RANGE`.

    Examples:
        >>> validate_wavenumbers([2800, 2850, 2900], 3, "x.tif")
        array([2800., 2850., 2900.])
    """
    try:
        wn = np.asarray(wavenumbers, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: wavenumbers must be a list of numbers (cm⁻¹), got {wavenumbers!r}.") from e
    if wn.size != num_frames:
        raise ValueError(
            f"{source}: {wn.size} wavenumbers were given but the stack has {num_frames} frames; "
            "the wavenumber list must have exactly one value per frame."
        )
    if not np.all(np.isfinite(wn)):
        raise ValueError(f"{source}: wavenumbers contain NaN or Inf: {wn.tolist()}.")
    if wn.size > 1:
        d = np.diff(wn)
        if not (np.all(d > 0) or np.all(d < 0)):
            raise ValueError(
                f"{source}: wavenumbers must be strictly ascending or strictly descending (one Raman shift per "
                f"frame, no repeats); got {wn.tolist()}."
            )
    lo, hi = PLAUSIBLE_RANGE
    if wn.min() < lo or wn.max() > hi:
        raise ValueError(
            f"{source}: wavenumbers {wn.min():g}–{wn.max():g} lie outside the plausible Raman-shift range "
            f"{lo:g}–{hi:g} cm⁻¹; are they pump–Stokes delays or wavelengths rather than cm⁻¹?"
        )
    return wn


def assumed_wavenumbers(num_frames: int, wavenumber_range: Sequence[float] = CANONICAL_RANGE) -> np.ndarray:
    """Evenly spaced wavenumbers from ``wavenumber_range[0]`` to ``wavenumber_range[1]`` (frame order).

    Used, with a logged warning, for stacks that carry no wavenumber information. A range given
    high-to-low describes a stack recorded in descending order.
    """
    if len(wavenumber_range) != 2:
        raise ValueError(f"wavenumber_range must be (first, last) in cm⁻¹, got {wavenumber_range!r}.")
    return np.linspace(float(wavenumber_range[0]), float(wavenumber_range[1]), num_frames)


#: File endings of stacks and label maps, double endings first.
STACK_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".npy")


def stack_stem(path: str | Path) -> str:
    """File name without its stack ending (``a/cell.nii.gz`` → ``cell``); a folder's name for a folder of frames.

    Examples:
        >>> stack_stem("a/cell_01.nii.gz"), stack_stem("a/cell_02.tif"), stack_stem("a/cell_03")
        ('cell_01', 'cell_02', 'cell_03')
    """
    name = Path(path).name
    for suffix in STACK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def sidecar_path(stack_path: str | Path) -> Path:
    """The sidecar JSON of a stack: ``name.nii.gz`` → ``name.json``; for a folder, ``folder/wavenumbers.json``."""
    p = Path(stack_path)
    if p.is_dir():
        return p / "wavenumbers.json"
    stem = stack_stem(p)
    return p.with_name(stem + ".json") if stem != p.name else p.with_suffix(".json")


def read_sidecar(stack_path: str | Path) -> tuple[np.ndarray | None, dict]:
    """Wavenumbers and other metadata from the stack's sidecar (JSON; for folders also ``.txt``/``.csv``).

    Returns ``(wavenumbers, extra)``, ``(None, {})`` when there is no sidecar; ``extra`` holds the
    JSON's other keys with a known meaning (``pixel_size_um``). Raises ValueError naming the file
    when a sidecar exists but cannot be parsed.
    """
    path = sidecar_path(stack_path)
    candidates = [path]
    if Path(stack_path).is_dir():
        candidates += [path.with_suffix(".txt"), path.with_suffix(".csv")]
    for cand in candidates:
        if not cand.is_file():
            continue
        try:
            extra = {}
            if cand.suffix == ".json":
                content = json.loads(cand.read_text())
                values = content.get(SIDECAR_KEY) if isinstance(content, dict) else content
                if values is None:
                    raise ValueError(f"no key {SIDECAR_KEY!r}")
                if isinstance(content, dict) and "pixel_size_um" in content:
                    extra["pixel_size_um"] = float(content["pixel_size_um"])
            else:
                values = [float(v) for v in cand.read_text().replace(",", " ").split()]
            return np.asarray(values, dtype=np.float64), extra
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"{cand}: cannot read the wavenumber sidecar ({e}); expected JSON "
                f'{{"{SIDECAR_KEY}": [2800.0, ...]}} or one number per line.'
            ) from e
    return None, {}


def write_sidecar(stack_path: str | Path, wavenumbers: np.ndarray, extra: dict | None = None) -> Path:
    """Write ``{"wavenumbers": [...], **extra}`` next to the stack and return the sidecar path."""
    path = sidecar_path(stack_path)
    content = {SIDECAR_KEY: [round(float(v), 6) for v in wavenumbers], "unit": "cm-1", **(extra or {})}
    path.write_text(json.dumps(content, indent=1) + "\n")
    return path
