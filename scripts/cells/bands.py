"""Raman band integrals per pixel and the background they are corrected by.

The lipid-to-protein ratio of a region is the integral of its background-corrected spectrum over
the CH₂ symmetric stretch band (~2850 cm⁻¹, lipids) divided by the integral over the CH₃ band
(~2930 cm⁻¹, proteins). Integrals are linear in the spectrum, so they are computed once per pixel
(one weighted sum over the frames, a matrix product done in chunks of pixels), summed per region
with :func:`numpy.bincount`, and corrected by subtracting the region's area times the band
integral of the background spectrum — the same as subtracting the background spectrum from every
pixel before integrating.
"""

from __future__ import annotations

import numpy as np

#: Bands of the lipid-to-protein ratio: name -> (centre, half width), cm⁻¹. The half width is
#: about half the ~25 cm⁻¹ spectral resolution of spectral-focusing HSRS, plus a margin.
RAMAN_BANDS: dict[str, tuple[float, float]] = {"CH2": (2850.0, 15.0), "CH3": (2930.0, 15.0)}

#: Pixels per chunk of the frame projection (bounds the memory of a float copy of huge stacks).
CHUNK_PIXELS = 1 << 18


def band_weights(wavenumbers: np.ndarray, centre: float, half_width: float, source: str = "stack") -> np.ndarray:
    """Trapezoid-rule weights that integrate a spectrum over ``centre ± half_width``.

    Args:
        wavenumbers: (K,) Raman shift of each frame, cm⁻¹, in frame order (ascending or descending).
        centre, half_width: the band, cm⁻¹.
        source: name used in error messages.

    Returns:
        (K,) float64 weights ``w`` such that ``w @ spectrum`` is the band integral (intensity × cm⁻¹),
        in the frame order of ``wavenumbers``.

    Raises:
        ValueError: no frame lies in the band.
    """
    wn = np.asarray(wavenumbers, np.float64)
    inside = np.flatnonzero(np.abs(wn - centre) <= half_width)
    if inside.size == 0:
        raise ValueError(
            f"{source}: no frame within {centre - half_width:g}–{centre + half_width:g} cm⁻¹ "
            f"(frames span {wn.min():g}–{wn.max():g} cm⁻¹); the lipid-to-protein ratio needs the C–H window 2800–3050 cm⁻¹."
        )
    weights = np.zeros(wn.size)
    order = inside[np.argsort(wn[inside])]
    x = wn[order]
    if x.size == 1:
        steps = np.abs(np.diff(np.sort(wn)))
        weights[order] = float(np.median(steps)) if steps.size else 1.0
        return weights
    gaps = np.diff(x)
    weights[order[:-1]] += gaps / 2
    weights[order[1:]] += gaps / 2
    return weights


def project_frames(stack: np.ndarray, weights: np.ndarray, chunk_pixels: int = CHUNK_PIXELS) -> np.ndarray:
    """Weighted sums over the frames of every pixel: ``weights @ stack``.

    Args:
        stack: (K, H, W) array of any real dtype.
        weights: (M, K) weights, one row per output image.
        chunk_pixels: pixels converted to float32 at a time.

    Returns:
        (M, H, W) float32.
    """
    k, h, w = stack.shape
    flat = stack.reshape(k, h * w)
    weights = np.asarray(weights, np.float32)
    out = np.empty((weights.shape[0], h * w), np.float32)
    for start in range(0, h * w, chunk_pixels):
        block = flat[:, start : start + chunk_pixels]
        np.matmul(weights, block.astype(np.float32, copy=False), out=out[:, start : start + chunk_pixels])
    return out.reshape(-1, h, w)


def background_pixels(
    mean_image: np.ndarray, foreground: np.ndarray, min_fraction: float = 0.02, dimmest_fraction: float = 0.05
) -> tuple[np.ndarray, str]:
    """Pixels whose mean spectrum is the background: outside the foreground, or else the dimmest.

    Args:
        mean_image: (H, W) mean intensity over the frames.
        foreground: (H, W) bool, cells, debris and labelled pixels.
        min_fraction: least fraction of the field outside the foreground to use it.
        dimmest_fraction: otherwise, this fraction of the dimmest pixels (by mean intensity).

    Returns:
        (H, W) bool mask and its source, ``"outside foreground"`` or ``"dimmest pixels"``.
    """
    outside = ~foreground
    if outside.sum() >= max(min_fraction * outside.size, 1):
        return outside, "outside foreground"
    n = max(int(dimmest_fraction * mean_image.size), 1)
    cut = np.partition(mean_image.ravel(), n - 1)[n - 1]
    return mean_image <= cut, "dimmest pixels"


def background_level(band_images: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(M,) band integrals of the background spectrum: the mean of each band image over ``background``."""
    if not background.any():
        return np.zeros(len(band_images))
    return np.array([float(img[background].mean(dtype=np.float64)) for img in band_images])


def corrected_band_sums(
    band_images: np.ndarray, regions: np.ndarray, n_regions: int, level: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Background-corrected band integrals summed over every region of an integer map.

    Args:
        band_images: (M, H, W) per-pixel band integrals.
        regions: (H, W) int region ids 0..n_regions (0 is not a region).
        n_regions: largest id.
        level: (M,) band integrals of the background spectrum (:func:`background_level`).

    Returns:
        ``sums`` (M, n_regions + 1) corrected integrals and ``areas`` (n_regions + 1,) pixel counts.
    """
    inside = regions > 0
    ids = regions[inside]
    areas = np.bincount(ids, minlength=n_regions + 1)[: n_regions + 1]
    sums = np.stack(
        [np.bincount(ids, weights=img[inside], minlength=n_regions + 1)[: n_regions + 1] for img in band_images]
    )
    return sums - np.asarray(level, float)[:, None] * areas[None, :], areas


def band_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, NaN where the denominator is not positive (empty or background-level region)."""
    num, den = np.asarray(numerator, float), np.asarray(denominator, float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    ok = den > 0
    np.divide(num, den, out=out, where=ok)
    return out
