"""A smooth background surface per frame, fitted to the cell-free pixels of an HSRS stack and subtracted.

:class:`~scripts.transforms.array.SubtractSpectralBackground` removes one background *spectrum* for the
whole field. The non-Raman background (cross-phase modulation, two-photon absorption) also varies
*across* the field — strongest towards the corners, where the focus degrades — and a residual that
grows towards the corners pulls the phasors of the cells there towards the background's phase (the
low-wavenumber end, i.e. towards lipid). :func:`subtract_background_surface` fits, for every
frame, a low-order polynomial in (y, x) to the pixels that hold no cell and subtracts it
everywhere: the usual flat-field-style correction of a smooth background, with cells masked out.

The cell-free pixels (:func:`cell_free_mask`) are those whose mean intensity is at or below the
Otsu threshold of the image flattened by a first surface fit, eroded by :data:`MASK_EROSION_PX`
pixels.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage
from threadpoolctl import threadpool_limits

#: Pixels this close to a cell are left out of the fit.
MASK_EROSION_PX = 3
#: At most this many cell-free pixels (evenly strided) enter the least-squares fit.
MAX_FIT_PIXELS = 20_000
#: Fewest cell-free pixels per polynomial term needed to fit a surface; with fewer nothing is subtracted.
MIN_PIXELS_PER_TERM = 50


def cell_free_mask(mean: np.ndarray, degree: int = 2, erosion: int = MASK_EROSION_PX) -> np.ndarray:
    """The cell-free pixels of a mean-intensity image, found on the image flattened by a first surface fit.

    Otsu's threshold of a field with a strong background gradient and few cells can split the
    background itself, so the mask is found twice: pixels at or below the Otsu threshold of
    ``mean`` (clipped to its 0.5–99.5th percentiles), a ``degree`` surface fitted to them and
    subtracted, and the Otsu threshold again on the flattened image. The result is eroded by
    ``erosion`` pixels (cell edges carry edge-enhanced background and partial-volume signal).

    Examples
    --------
    >>> m = np.zeros((20, 20)); m[5:15, 5:15] = 1.0
    >>> mask = cell_free_mask(m, erosion=1)
    >>> bool(mask[0, 0]), bool(mask[10, 10]), bool(mask[4, 10])
    (True, False, False)
    """
    values = np.asarray(mean, dtype=np.float64)
    finite = np.isfinite(values)
    free = _below_otsu(values, finite)
    flattened = subtract_background_surface(np.where(finite, values, 0.0)[None].astype(np.float32), free, degree)[0]
    free = _below_otsu(flattened.astype(np.float64), finite)
    return ndimage.binary_erosion(free, iterations=erosion, border_value=1) if erosion > 0 else free


def _below_otsu(values: np.ndarray, finite: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu

    lo, hi = np.percentile(values[finite], [0.5, 99.5])
    if not hi > lo:
        return finite.copy()
    return finite & (values <= threshold_otsu(np.clip(values[finite], lo, hi)))


@functools.lru_cache(maxsize=8)
def polynomial_terms(height: int, width: int, degree: int) -> np.ndarray:
    """(H·W, T) float32 design matrix of the monomials y^i x^j, i + j ≤ ``degree``, on [-1, 1]² coordinates.

    Cached per (height, width, degree) and returned read-only: every image of a folder shares it.
    """
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    terms = [(y**i * x ** (d - i)).reshape(-1) for d in range(degree + 1) for i in range(d + 1)]
    design = np.stack(terms, axis=1)
    design.flags.writeable = False
    return design


def subtract_background_surface(stack: np.ndarray, mask: np.ndarray, degree: int = 2) -> np.ndarray:
    """``stack`` minus, per frame, the polynomial surface of ``degree`` fitted to the pixels in ``mask``.

    Parameters
    ----------
    stack : ndarray
        (K, H, W) float stack (after a uniform background subtraction), or any K images that are
        linear in it (e.g. the phasor moments).
    mask : ndarray
        (H, W) bool, the cell-free pixels the surfaces are fitted to (:func:`cell_free_mask`).
    degree : int
        Polynomial degree (0: a constant per frame; 2: a quadratic surface).

    Returns
    -------
    ndarray
        A new (K, H, W) array of the same dtype; ``stack`` itself when ``mask`` holds too few pixels
        (fewer than ``MIN_PIXELS_PER_TERM`` per polynomial term), e.g. a field filled with cells.

    Examples
    --------
    >>> yy, xx = np.mgrid[0:32, 0:32] / 31.0
    >>> stack = np.stack([1.0 + k * (yy**2 + xx) for k in range(3)]).astype(np.float32)
    >>> flat = subtract_background_surface(stack, np.ones((32, 32), bool), degree=2)
    >>> float(np.abs(flat).max()) < 1e-4
    True
    """
    if stack.ndim != 3 or mask.shape != stack.shape[1:]:
        raise ValueError(f"stack (K, H, W) {stack.shape} and mask (H, W) {mask.shape} do not match.")
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}.")
    k, h, w = stack.shape
    design = polynomial_terms(h, w, degree).astype(stack.dtype, copy=False)  # (H·W, T)
    idx = np.flatnonzero(mask.reshape(-1))
    if idx.size < MIN_PIXELS_PER_TERM * design.shape[1]:
        return stack
    idx = idx[:: max(1, idx.size // MAX_FIT_PIXELS)]
    frames = stack.reshape(k, -1)
    with threadpool_limits(limits=1, user_api="blas"):  # small problems: BLAS threads only add latency
        coefficients, *_ = np.linalg.lstsq(design[idx].astype(np.float64), frames[:, idx].T.astype(np.float64))
        out = coefficients.T.astype(stack.dtype) @ np.ascontiguousarray(design.T)  # (K, H·W) surfaces
    np.subtract(frames, out, out=out)
    return out.reshape(k, h, w)
