"""The wavenumber (Raman shift) axis of an HSRS stack: the canonical grid and checks.

An HSRS stack holds one image per Raman shift. The bundle works on a fixed **canonical grid**
(:data:`CANONICAL_WAVENUMBERS`, 64 frames over the C–H stretch window 2800–3050 cm⁻¹, about
4 cm⁻¹ per frame, which oversamples the ~25 cm⁻¹ spectral resolution of spectral-focusing HSRS);
:class:`scripts.transforms.array.SpectralResample` maps any stack onto it.

Wavenumbers travel with the file (see :mod:`scripts.io.reader`): in a NIfTI header extension, in
the TIFF description, or in a sidecar JSON file ``<stem>.json`` next to the stack with the key
``"wavenumbers"`` (a list of K numbers in cm⁻¹, in frame order).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

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

#: The C–H bands the segmentation relies on (name, cm⁻¹); :func:`missing_bands` names those a window misses.
CH_BANDS: tuple[tuple[str, float], ...] = (
    ("CH₂ symmetric (lipid)", 2850.0),
    ("CH₂ asymmetric (lipid)", 2885.0),
    ("CH₃ (protein)", 2930.0),
    ("CH₃ asymmetric / DNA", 2960.0),
    ("=C–H (unsaturated lipid)", 3010.0),
)
#: Least coverage of a stack (cm⁻¹): the lipid CH₂ band at 2850 with its low flank through the protein CH₃ (2930)
#: and DNA (2960) bands with their high flank, less ~5 cm⁻¹ of slack for the calibration error of an inferred axis
#: (the window 2814–2993 cm⁻¹ of a real stack is estimated as ~2809–2989). Stacks covering it are segmented, the
#: canonical grid's missing ends filled (:class:`scripts.transforms.array.SpectralResample`); narrower ones are
#: refused, naming what is missing. Measured with the shipped weights (docs/results.md, spectral axis section):
#: the minimum window itself loses 0.08 Dice (the tuned phasor 0.06); 2850–3050, 2800–2975 and 2800–2960 cm⁻¹
#: lose 0.06–0.16; windows that include 2830–3000 cm⁻¹ less than 0.01.
REQUIRED_RANGE: tuple[float, float] = (2845.0, 2985.0)
#: Windows covering this range lose at most 0.03 Dice with the shipped weights (measured, docs/results.md);
#: narrower accepted windows are segmented with a logged warning.
VALIDATED_RANGE: tuple[float, float] = (2830.0, 3000.0)


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


def missing_bands(wavenumbers: Sequence[float] | np.ndarray, required: Sequence[float] = REQUIRED_RANGE) -> list[str]:
    """What a window lacks of ``required``: the bands of :data:`CH_BANDS` inside it whose centre the window
    does not reach, or else the flank of the outermost band it cuts.

    Examples:
        >>> missing_bands(np.linspace(2870, 3050, 40))
        ['CH₂ symmetric (lipid) ~2850 cm⁻¹']
        >>> missing_bands(np.linspace(2814, 2993, 100))
        []
        >>> missing_bands(np.linspace(2800, 2975, 60))
        ['the high flank of the CH₃ asymmetric / DNA ~2960 cm⁻¹ band (2975–2985 cm⁻¹)']
    """
    wn = np.asarray(wavenumbers, dtype=np.float64)
    lo, hi = float(wn.min()), float(wn.max())
    inside = [(name, centre) for name, centre in CH_BANDS if required[0] <= centre <= required[1]]
    out = [f"{name} ~{centre:.0f} cm⁻¹" for name, centre in inside if not lo <= centre <= hi]
    if inside and lo > required[0] and inside[0][1] >= lo:
        name, centre = inside[0]
        out.append(f"the low flank of the {name} ~{centre:.0f} cm⁻¹ band ({required[0]:g}–{lo:g} cm⁻¹)")
    if inside and hi < required[1] and inside[-1][1] <= hi:
        name, centre = inside[-1]
        out.append(f"the high flank of the {name} ~{centre:.0f} cm⁻¹ band ({hi:g}–{required[1]:g} cm⁻¹)")
    return out
