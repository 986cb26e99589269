"""The spectral axis checked against chemistry: scan direction and calibration from a stack's own spectrum.

A C–H stack's foreground spectrum (cells minus the cell-free background) is a non-negative mixture
of the reference spectra of :mod:`scripts.spectra.reference`: lipid (CH₂ ~2850 cm⁻¹ strongest),
protein (CH₃ ~2935), DNA (~2960) and water (rising towards 3050+). Where its bands sit on the
frame axis tells which way the frames run and how the axis is calibrated.
:func:`estimate_axis` fits that mixture (plus an offset and a slope: residual non-Raman background)
for every candidate axis

    wavenumber_k = centre + shift ± scale · (nominal_k − centre)

(``+``: frames run as the nominal axis says; ``−``: reversed), on a grid of shifts × scales ×
both directions, refined around the best of each direction, and reports the best axis with

- ``r2``: the share of the foreground spectrum's (baseline-free) variance the chemistry explains;
- ``direction_confidence``: residual of the best *reversed* axis / residual of the best axis
  (1 = the spectrum cannot tell the direction; ≥ :data:`MIN_DIRECTION_CONFIDENCE` = trusted);
- ``calibration_confidence``: residual of the best axis of the same direction that differs by more
  than :data:`DEFAULT_TOLERANCE` cm⁻¹ in the band region / residual of the best;
- ``status``: ``"confident"``, ``"ambiguous"`` (direction or calibration not determined) or
  ``"no_chemistry"`` (the spectrum fits no C–H chemistry: no spectral contrast above noise — e.g.
  one frame repeated — or a poor fit: noise, another spectral region) with a ``message`` that says so.

The *nominal* axis is the stored wavenumbers, or the documented assumption (2800–3050 cm⁻¹ evenly,
frame order) when a file stores none. :func:`check_axis` turns an estimate into what the reader
does: use it instead of the assumption, or compare it with stored wavenumbers (reversed, or off by
more than ``tolerance`` cm⁻¹ in the band region 2840–2980 cm⁻¹).

Pure NumPy/SciPy, no file I/O. Pixels are subsampled (at most :data:`MAX_PIXELS`), so a
512×512×64 stack takes a few tens of milliseconds.

Sign convention: ``shift`` is the correction added to the nominal axis. The simulator's
``calibration_shift`` δ moves every band by +δ on the stored axis, so the estimate is ``shift ≈ −δ``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scripts.spectra.axis import CANONICAL_RANGE, assumed_wavenumbers
from scripts.spectra.reference import CONSTITUENTS, raman_spectrum
from threadpoolctl import threadpool_limits

#: At most this many pixels (evenly strided) are read to form the foreground spectrum.
MAX_PIXELS = 16_384
#: Background: the median spectrum of the pixels whose total intensity is in the lowest this %.
BACKGROUND_PERCENTILE = 10.0
#: Foreground: the mean spectrum of the pixels whose total intensity is above this percentile.
FOREGROUND_PERCENTILE = 80.0
#: The axis fit's spectra: bands of total intensity between these percentiles (:func:`foreground_spectrum`).
GROUP_PERCENTILES: tuple[float, ...] = (40.0, 80.0, 97.0, 100.0)
#: Candidate shifts (cm⁻¹, correction of the nominal axis' centre) and scales (estimated / nominal span).
SHIFT_RANGE: tuple[float, float] = (-50.0, 50.0)
SCALE_RANGE: tuple[float, float] = (0.6, 1.7)
#: Degree of the polynomial baseline over the frames (offset and slope: residual non-Raman background). Measured on
#: 100 hard-preset stacks: degree 1 finds the direction in 98, degree 2 in 96, 0 in 91, 3 (or exponential decays
#: from either end) in 77–94 — a more flexible baseline also fits the bands.
BASELINE_DEGREE = 1
#: Stored or estimated axes that differ by more than this (cm⁻¹, in the band region) disagree.
DEFAULT_TOLERANCE = 15.0
#: The band region where axes are compared: the C–H bands that constrain the fit.
BAND_REGION: tuple[float, float] = (2840.0, 2980.0)
#: A fit explaining less than this share of the foreground spectrum's variance fits no C–H chemistry.
MIN_R2 = 0.85
#: Least ratio of the best reversed residual to the best residual for a trusted direction (below it: ``"unknown"``).
#: Calibrated on simulated stacks with and without envelopes (docs/results.md, axis section).
MIN_DIRECTION_CONFIDENCE = 3.0
#: Least direction confidence for telling a user that *stored* wavenumbers run the wrong way (a stored axis is
#: evidence of its own, so contradicting it takes more).
MIN_CONTRADICTION_CONFIDENCE = 4.0
#: Least ratio of the best distinct same-direction residual to the best residual for a trusted calibration.
MIN_CALIBRATION_CONFIDENCE = 1.2
#: Least spectral contrast: baseline-free foreground spectrum rms / its noise (sd of the mean), over the frames.
MIN_CONTRAST_TO_NOISE = 5.0
#: Fewest frames for an estimate (a handful of samples per band).
MIN_ESTIMATE_FRAMES = 12
#: Raw spectral-focusing stacks carry a pulse-overlap envelope (a smooth gain over the frames,
#: :mod:`scripts.simulation.envelope`), fitted jointly with the axis as ``exp(a·x + b·x²)`` (x from −1 at the first
#: frame to 1 at the last, maximum 1): these slopes ``a`` and curvatures ``b`` on the coarse grid, refined around the
#: best. ``a = b = 0`` is a power-normalised stack.
ENVELOPE_SLOPES: tuple[float, ...] = tuple(np.linspace(-16.0, 16.0, 17))
ENVELOPE_CURVATURES: tuple[float, ...] = (0.0, -1.5, -3.5, -6.5, -11.0)
#: An envelope must earn its place: a fit's residual counts ``1 + ENVELOPE_PENALTY · (1 − least gain)`` times, so a
#: power-normalised stack is not read through an envelope that fits its noise or its non-Raman background.
ENVELOPE_PENALTY = 0.2
#: At most this many frames enter the fit (neighbouring frames averaged).
MAX_FIT_FRAMES = 64
_TABLE_STEP = 0.5
_TABLE_RANGE = (2300.0, 3700.0)


@functools.lru_cache(maxsize=1)
def _reference_table() -> tuple[np.ndarray, np.ndarray]:
    """(wavenumbers, (N, 4) spectra) of :data:`CONSTITUENTS` on a fine grid, interpolated by :func:`_references`."""
    grid = np.arange(_TABLE_RANGE[0], _TABLE_RANGE[1] + _TABLE_STEP / 2, _TABLE_STEP)
    table = np.stack([raman_spectrum(c, grid) for c in CONSTITUENTS], axis=1)
    grid.flags.writeable = table.flags.writeable = False
    return grid, table


def _references(wavenumbers: np.ndarray) -> np.ndarray:
    """Reference spectra at ``wavenumbers`` (any shape S) as an array (*S, 4), by linear interpolation."""
    grid, table = _reference_table()
    pos = np.clip((wavenumbers - grid[0]) / _TABLE_STEP, 0, grid.size - 1.000001)
    i0 = pos.astype(np.int64)
    frac = (pos - i0)[..., None]
    return table[i0] * (1.0 - frac) + table[i0 + 1] * frac


@dataclass(frozen=True)
class ForegroundSpectrum:
    """The spectrum the axis is fitted to.

    Attributes
    ----------
    spectrum : ndarray
        (K,) mean spectrum of the brighter pixels minus the background spectrum, frame order; (G, K) for
        G bands of brightness (``foreground_spectrum(grouped=True)``).
    noise : ndarray
        Standard error of ``spectrum`` (pixel scatter / √n), same shape.
    pixels : int
        Number of foreground pixels averaged.
    """

    spectrum: np.ndarray
    noise: np.ndarray
    pixels: int


def foreground_spectrum(
    stack: np.ndarray,
    max_pixels: int = MAX_PIXELS,
    foreground_percentile: float = FOREGROUND_PERCENTILE,
    background_percentile: float = BACKGROUND_PERCENTILE,
    grouped: bool = False,
) -> ForegroundSpectrum:
    """Mean spectrum of the brighter pixels minus the median spectrum of the dimmest ones.

    With ``grouped`` the pixels are split into bands of total intensity (:data:`GROUP_PERCENTILES`:
    the brightest 3 %, mostly lipid droplets; the rest of the brightest 20 %; the 40th–80th
    percentiles, mostly cytoplasm), one spectrum each, brightest first: a pulse-overlap envelope
    multiplies them alike, their chemistry differs, which is what tells the two apart
    (:func:`estimate_axis`).

    Parameters
    ----------
    stack : ndarray
        (K, ...) intensities, frames first (any spatial layout).
    max_pixels : int
        Pixels are subsampled with an even stride to at most this many.
    foreground_percentile, background_percentile : float
        Pixels whose total intensity is above / at or below these percentiles form the
        foreground / background.

    Examples
    --------
    >>> stack = np.ones((3, 10, 10)); stack[:, :5] += np.array([0.0, 2.0, 1.0])[:, None, None]
    >>> foreground_spectrum(stack).spectrum.round(3).tolist()
    [0.0, 2.0, 1.0]
    """
    arr = np.asarray(stack)
    k = arr.shape[0]
    if arr.ndim == 3:  # whole rows: contiguous reads of a fraction of the stack
        step = max(1, math.ceil(arr.shape[1] * arr.shape[2] / max_pixels))
        rows = arr[:, :: min(step, arr.shape[1]), :]
        flat = rows.reshape(k, -1)
        flat = flat[:, :: max(1, math.ceil(flat.shape[1] / max_pixels))]
    else:
        flat = arr.reshape(k, -1)
        flat = flat[:, :: max(1, flat.shape[1] // max_pixels)]
    pixels = np.ascontiguousarray(flat.T, dtype=np.float64)  # (N, K): one spectrum per row
    pixels = pixels[np.isfinite(pixels).all(axis=1)]
    if pixels.shape[0] < 4:
        return ForegroundSpectrum(np.zeros(k), np.full(k, np.inf), 0)
    total = pixels.sum(axis=1)
    lo, hi = np.percentile(total, [background_percentile, foreground_percentile])
    background = np.median(pixels[total <= lo], axis=0)
    bright = pixels[total > hi] if np.any(total > hi) else pixels[total >= hi]
    projector = _baseline_projector(k, min(BASELINE_DEGREE, max(k - 2, 0)))
    members = [bright]
    if grouped:  # bands of brightness: the brightest pixels (lipid droplets), the rest of the bright ones, the middle
        edges = np.percentile(total, GROUP_PERCENTILES)
        members = [pixels[(total > lo) & (total <= hi)] for lo, hi in itertools.pairwise(edges)][::-1]
        members = [g for g in members if g.shape[0] >= 2] or [bright]

    def mean_and_noise(group):
        # noise of the mean: the scatter of the pixels about their own smooth trend over the frames (offsets and
        # brightness differences between pixels are not noise), divided by √n
        noise = ((group - group.mean(axis=0)) @ projector).std(axis=0) / math.sqrt(group.shape[0])
        return group.mean(axis=0) - background, noise

    if len(members) == 1:
        spectrum, noise = mean_and_noise(bright)
        return ForegroundSpectrum(spectrum, noise, int(bright.shape[0]))
    parts = [mean_and_noise(g) for g in members]
    return ForegroundSpectrum(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]), int(bright.shape[0]))


@dataclass(frozen=True)
class AxisEstimate:
    """The spectral axis a stack's chemistry suggests, relative to a nominal axis (:func:`estimate_axis`).

    Attributes
    ----------
    nominal : ndarray
        (K,) the axis the estimate is relative to (stored wavenumbers or the assumption), frame order.
    wavenumbers : ndarray
        (K,) the estimated Raman shift of every frame, frame order.
    reversed : bool
        The frames run opposite to ``nominal``.
    shift : float
        Estimated minus nominal centre of the window, cm⁻¹ (the calibration correction).
    scale : float
        Estimated / nominal span of the window.
    r2 : float
        Share of the baseline-free foreground spectrum explained by the best chemistry fit.
    direction_confidence, calibration_confidence : float
        Residual ratios (see the module docstring); ``inf`` when the best fit is exact.
    contrast_to_noise : float
        Baseline-free foreground spectrum rms over its noise.
    composition : dict
        Fitted amounts of lipid, protein, DNA and water (relative to their sum).
    status : str
        ``"confident"``, ``"unknown"`` (the two directions fit about equally), ``"ambiguous"`` (direction
        determined, calibration not) or ``"no_chemistry"``.
    message : str
        What was found, in words, for logs.
    envelope : ndarray or None
        (K,) the fitted pulse-overlap envelope over the frames, frame order, maximum 1 (all ones for a
        power-normalised stack).
    envelope_params : (float, float)
        Its slope and curvature (:func:`fitted_envelope`).
    misfit : float
        Residual of the best fit / the noise it would leave if the model were exact (a reduced χ²).
    """

    nominal: np.ndarray
    wavenumbers: np.ndarray
    reversed: bool
    shift: float
    scale: float
    r2: float
    direction_confidence: float
    calibration_confidence: float
    contrast_to_noise: float
    composition: dict[str, float] = field(default_factory=dict)
    status: str = "confident"
    message: str = ""
    envelope: np.ndarray | None = None
    envelope_params: tuple[float, float] = (0.0, 0.0)
    misfit: float = math.nan

    @property
    def confident(self) -> bool:
        """Direction and calibration are both determined by the spectrum."""
        return self.status == "confident"

    @property
    def direction_known(self) -> bool:
        """The spectrum fits C–H chemistry and tells which way the frames run."""
        return self.status in ("confident", "ambiguous")

    def summary(self) -> dict[str, object]:
        """Plain values for tables and metadata (no arrays)."""
        return {
            "axis_status": self.status,
            "axis_reversed": bool(self.reversed),
            "axis_shift_cm1": round(float(self.shift), 2),
            "axis_scale": round(float(self.scale), 4),
            "axis_first_cm1": round(float(self.wavenumbers[0]), 1),
            "axis_last_cm1": round(float(self.wavenumbers[-1]), 1),
            "axis_r2": round(float(self.r2), 4),
            "axis_direction_confidence": _rounded(self.direction_confidence),
            "axis_calibration_confidence": _rounded(self.calibration_confidence),
            "axis_envelope_slope": round(self.envelope_params[0], 4),
            "axis_envelope_curvature": round(self.envelope_params[1], 4),
        }


def _rounded(value: float) -> float:
    return float(value) if not math.isfinite(value) else round(float(value), 3)


def _baseline_projector(k: int, degree: int) -> np.ndarray:
    """(K, K) projector onto the complement of the polynomials of ``degree`` over the frames."""
    x = np.linspace(-1.0, 1.0, k)
    basis = np.stack([x**d for d in range(degree + 1)], axis=1)
    q, _ = np.linalg.qr(basis)
    return np.eye(k) - q @ q.T


_SUBSETS = [s for r in range(1, len(CONSTITUENTS) + 1) for s in itertools.combinations(range(len(CONSTITUENTS)), r)]


def _nnls_batch(design: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative least squares for many small designs at once.

    ``design`` (N, K, M) with M ≤ 4, ``target`` (K,). The NNLS optimum is the least-squares
    solution on its support with positive coefficients, so it is the best of the feasible
    least-squares solutions over all supports (2^M − 1 of them, solved in batch).

    Returns (residual sum of squares (N,), coefficients (N, M)).
    """
    n, _, m = design.shape
    gram = np.matmul(design.transpose(0, 2, 1), design)
    rhs = design.transpose(0, 2, 1) @ target
    tt = float(target @ target)
    best = np.full(n, tt)
    coef = np.zeros((n, m))
    for subset in _SUBSETS:
        idx = np.asarray(subset)
        x = _solve_small(gram[:, idx[:, None], idx[None, :]], rhs[:, idx])
        ssr = tt - np.einsum("ni,ni->n", x, rhs[:, idx])  # at the least-squares solution: |t|² − xᵀ Aᵀt
        ok = np.all(x > 0, axis=1) & (ssr < best)
        best = np.where(ok, ssr, best)
        full = np.zeros((n, m))
        full[:, idx] = x
        coef = np.where(ok[:, None], full, coef)
    return np.maximum(best, 0.0), coef


def _solve_small(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``gram x = rhs`` for a batch (N, m, m) of symmetric systems; closed forms for m ≤ 2 (fast), NaN if singular."""
    m = gram.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        if m == 1:
            return rhs / gram[:, 0]
        if m == 2:
            a, b, d = gram[:, 0, 0], gram[:, 0, 1], gram[:, 1, 1]
            det = a * d - b * b
            return np.stack([d * rhs[:, 0] - b * rhs[:, 1], a * rhs[:, 1] - b * rhs[:, 0]], axis=1) / det[:, None]
    ridge = 1e-12 * np.trace(gram, axis1=1, axis2=2)[:, None, None] * np.eye(m)
    return np.linalg.solve(gram + ridge, rhs[..., None])[..., 0]


def _candidate_axes(nominal: np.ndarray, shifts: np.ndarray, scales: np.ndarray, sign: float) -> np.ndarray:
    """(S·C, K) candidate axes ``centre + shift + sign · scale · (nominal − centre)``."""
    centre = 0.5 * (nominal[0] + nominal[-1])
    u = nominal - centre
    sh, sc = np.meshgrid(shifts, scales, indexing="ij")
    return centre + sh.reshape(-1, 1) + sign * sc.reshape(-1, 1) * u[None, :]


def _band_mask(axis: np.ndarray) -> np.ndarray:
    inside = (axis >= BAND_REGION[0]) & (axis <= BAND_REGION[1])
    return inside if inside.sum() >= 2 else np.ones_like(inside)


def axis_disagreement(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference (cm⁻¹) between two axes of the same frames over the band region of ``a``.

    Examples
    --------
    >>> wn = np.linspace(2800, 3050, 64)
    >>> axis_disagreement(wn, wn + 7.0)
    7.0
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    mask = _band_mask(a)
    return float(np.max(np.abs(a[mask] - b[mask])))


def estimate_axis(
    stack: np.ndarray | ForegroundSpectrum,
    nominal: Sequence[float] | np.ndarray | None = None,
    shift_range: Sequence[float] = SHIFT_RANGE,
    scale_range: Sequence[float] | None = SCALE_RANGE,
    baseline_degree: int = BASELINE_DEGREE,
    tolerance: float = DEFAULT_TOLERANCE,
) -> AxisEstimate:
    """Estimate scan direction and calibration of a stack from its foreground spectrum.

    Parameters
    ----------
    stack : ndarray or ForegroundSpectrum
        (K, ...) stack in frame order, or its :func:`foreground_spectrum`.
    nominal : array_like, optional
        (K,) the axis to check, frame order (stored wavenumbers); default the documented
        assumption, 2800–3050 cm⁻¹ evenly spaced in frame order.
    shift_range : (float, float)
        Searched corrections of the window centre, cm⁻¹.
    scale_range : (float, float) or None
        Searched span ratios; None fits the shift only (scale 1).
    baseline_degree : int
        Degree of the polynomial baseline over frames.
    tolerance : float
        Axes closer than this in the band region count as the same calibration.

    Returns
    -------
    AxisEstimate

    Examples
    --------
    >>> from scripts.spectra.reference import spectra_matrix
    >>> wn = np.linspace(2800, 3050, 64)
    >>> spectrum = spectra_matrix(wn[::-1], shift=-6.0) @ [1.0, 2.0, 0.3, 0.2]  # reversed frames, bands 6 cm⁻¹ low
    >>> est = estimate_axis(ForegroundSpectrum(spectrum, np.full(64, 1e-3), 1000))
    >>> est.status, est.reversed, round(est.shift)
    ('confident', True, 6)
    """
    with threadpool_limits(limits=1, user_api="blas"):  # many tiny products: BLAS threads only add latency
        return _estimate_axis(stack, nominal, shift_range, scale_range, baseline_degree, tolerance)


def _estimate_axis(stack, nominal, shift_range, scale_range, baseline_degree, tolerance) -> AxisEstimate:
    fg = stack if isinstance(stack, ForegroundSpectrum) else foreground_spectrum(stack, grouped=True)
    spectra = np.atleast_2d(fg.spectrum)
    noise_k = np.atleast_2d(fg.noise)
    k = spectra.shape[1]
    nominal = assumed_wavenumbers(k, CANONICAL_RANGE) if nominal is None else np.asarray(nominal, np.float64)
    if nominal.shape != (k,):
        raise ValueError(f"nominal axis has {nominal.size} values for a spectrum of {k} frames.")
    # long stacks: neighbouring frames averaged (the bands are 15–40 cm⁻¹ wide, far wider than a frame)
    bins = np.array_split(np.arange(k), min(k, MAX_FIT_FRAMES))
    binned_axis = np.array([nominal[b].mean() for b in bins])
    targets = np.stack([spectra[:, b].mean(axis=1) for b in bins], axis=1)  # (T, Kb)
    noise_b = np.stack([np.sqrt((noise_k[:, b] ** 2).mean(axis=1) / b.size) for b in bins], axis=1)
    kb = binned_axis.size
    degree = min(baseline_degree, max(kb - 2, 0))
    shapes = _envelope_shapes(kb, ENVELOPE_SLOPES, ENVELOPE_CURVATURES)
    flat = _baseline_projector(kb, degree)
    flat_target = targets @ flat
    level = float(np.mean(np.abs(targets)))
    noise = float(np.sqrt(np.mean(noise_b**2)))
    scale_range = (1.0, 1.0) if scale_range is None else tuple(scale_range)
    # coarse grid (shifts every 8 cm⁻¹, scales every ~15 %, every envelope shape), then a fine grid (shifts every
    # 1 cm⁻¹, scales every ~4 %, neighbouring envelope shapes) around the best of each direction
    coarse_shifts = np.arange(shift_range[0], shift_range[1] + 1e-9, 8.0)
    coarse_shifts = np.unique(np.append(coarse_shifts, np.clip(0.0, *shift_range)))
    n_scales = max(1, round(math.log(scale_range[1] / scale_range[0]) / math.log(1.15)) + 1)
    coarse_scales = np.geomspace(scale_range[0], scale_range[1], n_scales)
    results = {}
    for sign in (1.0, -1.0):
        axes = _candidate_axes(binned_axis, coarse_shifts, coarse_scales, sign)
        ssr, shape_of = _fit_with_envelopes(axes, shapes, targets, degree)
        i = int(np.argmin(ssr))
        s0, c0 = coarse_shifts[i // coarse_scales.size], coarse_scales[i % coarse_scales.size]
        a0, b0 = shapes.params[shape_of[i]]
        # two refinements: shifts ±8 every 1 cm⁻¹, scales ±16 % and the neighbouring envelopes; then ±1.5 every
        # 0.5 cm⁻¹, scales ±4 %, finer envelope steps
        for half, step, ratio, da, db in ((8.0, 1.0, 1.16, 0.75, 1.0), (1.5, 0.5, 1.04, 0.25, 0.3)):
            fine_shifts = np.unique(np.clip(np.arange(s0 - half, s0 + half + 1e-9, step), *shift_range))
            fine_scales = np.unique(np.clip(c0 * np.geomspace(1 / ratio, ratio, 9), *scale_range))
            fine_shapes = _envelope_shapes(
                kb, a0 + np.array([-da, 0.0, da]), np.unique(np.minimum(b0 + np.array([-db, 0.0, db]), 0.0))
            )
            fine_axes = _candidate_axes(binned_axis, fine_shifts, fine_scales, sign)
            fine_ssr, fine_shape_of, fine_coef = _fit_with_envelopes(fine_axes, fine_shapes, targets, degree, coef=True)
            j = int(np.argmin(fine_ssr))
            s0, c0 = fine_shifts[j // fine_scales.size], fine_scales[j % fine_scales.size]
            a0, b0 = fine_shapes.params[fine_shape_of[j]]
        results[sign] = (axes, ssr, fine_axes[j], float(fine_ssr[j]), fine_coef[j], fine_shapes, fine_shape_of[j])
    sign = 1.0 if results[1.0][3] <= results[-1.0][3] else -1.0
    axes, ssr, best_binned, best_ssr, coef, best_shapes, best_shape = results[sign]
    other_ssr = results[-sign][3]
    mask = _band_mask(best_binned)
    distinct = np.max(np.abs(axes[:, mask] - best_binned[mask]), axis=1) > tolerance
    alt_ssr = float(ssr[distinct].min()) if distinct.any() else math.inf
    # the chemistry's share of what the envelope alone leaves unexplained, and the contrast that is left
    free = _free_projector(kb, degree, best_shapes.gains[best_shape])
    free_target = targets @ free
    total = float(np.sum(free_target**2))
    r2 = 1.0 - best_ssr / total if total > 0 else 0.0
    rms = float(np.sqrt(np.mean(free_target**2)))
    flat_rms = float(np.sqrt(np.mean(flat_target**2)))
    contrast = 0.0 if flat_rms <= 1e-6 * level or rms == 0 else rms / noise if noise > 0 else math.inf
    flat_contrast = 0.0 if flat_rms <= 1e-6 * level else flat_rms / noise if noise > 0 else math.inf
    floor = max(best_ssr, 1e-12 * total, 1e-300)
    direction_confidence = other_ssr / floor
    calibration_confidence = alt_ssr / floor
    centre_b = 0.5 * (binned_axis[0] + binned_axis[-1])
    span_b = binned_axis[-1] - binned_axis[0]
    shift = 0.5 * (best_binned[0] + best_binned[-1]) - centre_b
    scale = abs(best_binned[-1] - best_binned[0]) / abs(span_b) if span_b else 1.0
    centre = 0.5 * (nominal[0] + nominal[-1])
    best_axis = centre + shift + sign * scale * (nominal - centre)
    a, b = (float(v) for v in best_shapes.params[best_shape])
    envelope = fitted_envelope(k, a, b)
    composition = {c: float(v) for c, v in zip(CONSTITUENTS, coef / max(coef.sum(), 1e-30), strict=True)}
    status, message = _verdict(
        k,
        r2,
        (flat_contrast, contrast),
        direction_confidence,
        calibration_confidence,
        best_axis,
        sign < 0,
        composition,
        envelope,
    )
    return AxisEstimate(
        nominal=nominal.copy(),
        wavenumbers=best_axis,
        reversed=sign < 0,
        shift=float(shift),
        scale=float(scale),
        r2=float(r2),
        direction_confidence=float(direction_confidence),
        calibration_confidence=float(calibration_confidence),
        contrast_to_noise=contrast,
        composition=composition,
        status=status,
        message=message,
        envelope=envelope,
        envelope_params=(a, b),
        misfit=float(best_ssr / max(float(np.sum(noise_b**2)), 1e-300)),
    )


def fitted_envelope(num_frames: int, slope: float, curvature: float) -> np.ndarray:
    """The envelope ``exp(slope·x + curvature·x²)`` over ``num_frames`` frames (x from −1 at the first frame to 1 at
    the last), scaled to a maximum of 1: the form the axis fit gives a pulse-overlap envelope in.

    Examples
    --------
    >>> fitted_envelope(5, 0.0, -2.0).round(3).tolist()
    [0.135, 0.607, 1.0, 0.607, 0.135]
    """
    x = np.linspace(-1.0, 1.0, num_frames)
    log_gain = slope * x + curvature * x**2
    return np.exp(log_gain - log_gain.max())


@dataclass(frozen=True)
class _Shapes:
    params: np.ndarray  # (S, 2) slope and curvature of the log-gain
    gains: np.ndarray  # (S, Kb) gains, maximum 1


def _envelope_shapes(k: int, slopes: Sequence[float], curvatures: Sequence[float]) -> _Shapes:
    """Envelopes ``exp(a·x + b·x²)`` (x from −1 at the first frame to 1 at the last), each scaled to a maximum of 1."""
    params = np.array([(a, b) for a in slopes for b in curvatures], np.float64).reshape(-1, 2)
    x = np.linspace(-1.0, 1.0, k)
    log_gain = params[:, :1] * x + params[:, 1:] * x**2
    return _Shapes(params, np.exp(log_gain - log_gain.max(axis=1, keepdims=True)))


def _free_projector(k: int, degree: int, envelope: np.ndarray) -> np.ndarray:
    """(K, K) projector onto the complement of the polynomials of ``degree`` and the envelope itself (the free,
    chemistry-less part of the model: offsets, a slope and non-Raman background shaped like the pulse overlap)."""
    x = np.linspace(-1.0, 1.0, k)
    basis = np.stack([x**d for d in range(degree + 1)] + [envelope], axis=1)
    u, sv, _ = np.linalg.svd(basis, full_matrices=False)
    q = u[:, sv > 1e-8 * sv[0]]
    return np.eye(k) - q @ q.T


def _fit_with_envelopes(axes: np.ndarray, shapes: _Shapes, targets: np.ndarray, degree: int, coef: bool = False):
    """Best residual over the envelope shapes for every candidate axis, the spectra ``targets`` (T, K) fitted jointly
    (one envelope for all of them, chemistry and free part each their own); residuals weighted by
    :data:`ENVELOPE_PENALTY`.

    Returns (SSR (N,), index of the best shape (N,)[, summed coefficients of the best (N, M)]).
    """
    refs = _references(axes)  # (N, K, M)
    n, k, m = refs.shape
    best = np.full(n, np.inf)
    best_shape = np.zeros(n, np.int64)
    best_coef = np.zeros((n, m))
    for s, gain in enumerate(shapes.gains):
        projector = _free_projector(k, degree, gain)
        weighted = (gain[:, None, None] * refs.transpose(1, 0, 2)).reshape(k, n * m)
        design = (projector @ weighted).reshape(k, n, m).transpose(1, 0, 2)
        total = np.zeros(n)
        summed = np.zeros((n, m))
        for target in targets:
            ssr, c = _nnls_batch(design, projector @ target)
            total += ssr
            summed += c
        total *= 1.0 + ENVELOPE_PENALTY * (1.0 - float(gain.min()))
        better = total < best
        best = np.where(better, total, best)
        best_shape = np.where(better, s, best_shape)
        if coef:
            best_coef = np.where(better[:, None], summed, best_coef)
    return (best, best_shape, best_coef) if coef else (best, best_shape)


def _verdict(
    k: int,
    r2: float,
    contrasts: tuple[float, float],
    direction_confidence: float,
    calibration_confidence: float,
    axis: np.ndarray,
    reversed_: bool,
    composition: dict[str, float],
    envelope: np.ndarray,
) -> tuple[str, str]:
    peak = int(np.argmax(envelope))
    shape = (
        "no envelope"
        if float(envelope.min()) > 0.9
        else f"an envelope over the frames peaking at frame {peak} ({float(envelope.min()):.2f}–1)"
    )
    found = (
        f"frames {'reversed' if reversed_ else 'in the nominal order'}, {axis[0]:.0f}–{axis[-1]:.0f} cm⁻¹; fit "
        f"R²={r2:.3f}, direction confidence {direction_confidence:.2f} (residual ratio of the best reversed axis), "
        f"calibration confidence {calibration_confidence:.2f}; lipid {composition['lipid']:.2f}, protein "
        f"{composition['protein']:.2f}, DNA {composition['dna']:.2f}, water {composition['water']:.2f}; {shape}"
    )
    if k < MIN_ESTIMATE_FRAMES:
        return "unknown", f"{k} frames are too few to recognise C–H bands (need {MIN_ESTIMATE_FRAMES})"
    flat_contrast, contrast = contrasts
    if flat_contrast < MIN_CONTRAST_TO_NOISE:
        return "no_chemistry", (
            f"it looks like noise or one image repeated: the foreground spectrum has no spectral contrast above "
            f"noise (contrast/noise {flat_contrast:.1f} < {MIN_CONTRAST_TO_NOISE:g})"
        )
    if contrast < MIN_CONTRAST_TO_NOISE:
        return "no_chemistry", (
            f"it looks like a smooth, featureless spectrum: one broad hump or ramp over the frames and no Raman "
            f"bands above noise (contrast/noise {contrast:.1f} < {MIN_CONTRAST_TO_NOISE:g} once the envelope is "
            "fitted): the silent region (1800–2700 cm⁻¹), a fluorescence or transmission stack rather than C–H?"
        )
    if r2 < MIN_R2:
        return "no_chemistry", (
            f"it looks like Raman bands of another spectral region: the spectrum fits no C–H chemistry (the best "
            f"lipid/protein/DNA/water fit on any axis, envelope included, explains R²={r2:.2f} < {MIN_R2:g}); the "
            "fingerprint region (1500–1800 cm⁻¹) rather than C–H (2800–3050 cm⁻¹)?"
        )
    if direction_confidence < MIN_DIRECTION_CONFIDENCE:
        return "unknown", f"the two directions fit about equally: {found}"
    if calibration_confidence < MIN_CALIBRATION_CONFIDENCE:
        return "ambiguous", f"the direction is determined but the calibration is not: {found}"
    return "confident", found


#: What :func:`check_axis` does with a stack: ``"warn"`` (log disagreements and stacks without C–H chemistry
#: as WARNINGs), ``"refuse"`` (raise :class:`AxisCheckError` for them) or ``"off"`` (trust the stored axis or
#: the assumption blindly, as before the check existed).
AXIS_CHECK_MODES: tuple[str, ...] = ("warn", "refuse", "off")


class AxisCheckError(ValueError):
    """The spectral axis of a stack is refused (``axis_check="refuse"``); the message says why and what to do."""


@dataclass(frozen=True)
class AxisCheck:
    """The outcome of :func:`check_axis` for one stack.

    Attributes
    ----------
    wavenumbers : ndarray
        (K,) the axis to use, frame order.
    flag : str
        One word for tables: ``"ok"`` (stored axis confirmed), ``"inferred"`` (no stored axis; the
        spectrum's axis is used), ``"inferred_direction"`` (direction from the spectrum, span assumed),
        ``"assumed"`` (no stored axis and the spectrum cannot tell: the documented assumption),
        ``"unchecked"`` (stored axis, the spectrum cannot confirm it), ``"reversed"`` /
        ``"miscalibrated"`` (stored axis disagrees with the spectrum), ``"no_chemistry"``, ``"off"``.
    level : int
        The logging level the message deserves (``logging.WARNING`` for anything a user must look at).
    message : str
        What was found and what was done, naming the stack.
    estimate : AxisEstimate or None
        The fit behind it (None with ``mode="off"``).
    """

    wavenumbers: np.ndarray
    flag: str
    level: int
    message: str
    estimate: AxisEstimate | None = None

    def metadata(self) -> dict[str, object]:
        """Entries for an image's metadata: ``axis_check`` (the flag), ``axis_message`` and the estimate's summary."""
        out: dict[str, object] = {"axis_check": self.flag, "axis_message": self.message}
        if self.estimate is not None:
            out.update(self.estimate.summary())
        return out


def check_axis(
    stack: np.ndarray,
    stored: Sequence[float] | np.ndarray | None,
    mode: str = "warn",
    tolerance: float = DEFAULT_TOLERANCE,
    assumed_range: Sequence[float] = CANONICAL_RANGE,
    source: str = "stack",
) -> AxisCheck:
    """Decide the spectral axis of a stack (K, ...) from its stored wavenumbers and its chemistry.

    Without ``stored`` wavenumbers the estimate of :func:`estimate_axis` (relative to the documented
    assumption ``assumed_range``, evenly spaced in frame order) replaces the blind assumption when it
    is confident; when only the direction is determined, the assumption is used in that direction;
    otherwise the assumption is used and the message says so. With ``stored`` wavenumbers they are
    kept, and the message says loudly when the spectrum contradicts them: frames reversed, or bands
    off by more than ``tolerance`` cm⁻¹ in the band region 2840–2980 cm⁻¹.

    A spectrum without C–H chemistry (no spectral contrast, or no fit) is flagged ``"no_chemistry"``.

    Parameters
    ----------
    stack : ndarray
        (K, ...) intensities in frame order.
    stored : array_like or None
        (K,) wavenumbers stored with the stack, frame order; None if the file has none.
    mode : str
        ``"warn"``, ``"refuse"`` (raise :class:`AxisCheckError` where ``"warn"`` would log a WARNING
        other than the inferred axis itself) or ``"off"``.
    tolerance : float
        Largest accepted disagreement (cm⁻¹) between the stored axis and the spectrum's.
    assumed_range : (float, float)
        First and last wavenumber assumed for a stack without stored ones.
    source : str
        The stack's name, quoted in messages.

    Returns
    -------
    AxisCheck
    """
    if mode not in AXIS_CHECK_MODES:
        raise ValueError(f"axis_check must be one of {AXIS_CHECK_MODES}, got {mode!r}.")
    if not tolerance > 0:
        raise ValueError(f"the axis tolerance must be a positive number of cm⁻¹, got {tolerance!r}.")
    k = np.asarray(stack).shape[0]
    assumed = assumed_wavenumbers(k, assumed_range)
    if mode == "off":
        if stored is not None:
            return AxisCheck(np.asarray(stored, np.float64), "off", logging.DEBUG, f"{source}: axis check off.")
        return AxisCheck(
            assumed,
            "off",
            logging.WARNING,
            f"{source}: no wavenumbers stored with this {k}-frame stack; ASSUMING evenly spaced "
            f"{assumed[0]:g}–{assumed[-1]:g} cm⁻¹ in frame order (axis check off).",
        )
    if stored is None:
        result = _check_without_axis(stack, assumed, tolerance, source)
    else:
        result = _check_stored_axis(stack, np.asarray(stored, np.float64), tolerance, source)
    if mode == "refuse" and result.flag in (
        "assumed",
        "inferred_direction",
        "reversed",
        "miscalibrated",
        "no_chemistry",
    ):
        raise AxisCheckError(
            result.message + " Refused (axis_check='refuse'); fix the wavenumbers or read with axis_check='warn'."
        )
    return result


def _check_without_axis(stack: np.ndarray, assumed: np.ndarray, tolerance: float, source: str) -> AxisCheck:
    est = estimate_axis(stack, assumed, tolerance=tolerance)
    lead = f"{source}: no wavenumbers stored with this {assumed.size}-frame stack;"
    if est.status == "no_chemistry":
        return AxisCheck(
            assumed,
            "no_chemistry",
            logging.WARNING,
            f"{lead} its spectrum cannot be checked: {est.message}. ASSUMING evenly spaced {assumed[0]:g}–"
            f"{assumed[-1]:g} cm⁻¹ in frame order; the segmentation of this stack is not to be trusted.",
            est,
        )
    if est.confident:
        return AxisCheck(
            est.wavenumbers.copy(),
            "inferred",
            logging.WARNING,
            f"{lead} INFERRED from its C–H spectrum: {est.message}. Using {est.wavenumbers[0]:.0f}–"
            f"{est.wavenumbers[-1]:.0f} cm⁻¹ instead of the assumption {assumed[0]:g}–{assumed[-1]:g}; store the "
            "wavenumbers (sidecar <stem>.json) if you know them.",
            est,
        )
    if est.direction_known:
        wn = assumed[::-1].copy() if est.reversed else assumed
        return AxisCheck(
            wn,
            "inferred_direction",
            logging.WARNING,
            f"{lead} its C–H spectrum gives the scan direction but not the calibration ({est.message}). Using "
            f"evenly spaced {wn[0]:g}–{wn[-1]:g} cm⁻¹ in frame order; store the wavenumbers if you know them.",
            est,
        )
    if assumed.size < MIN_ESTIMATE_FRAMES:
        return AxisCheck(
            assumed,
            "assumed",
            logging.WARNING,
            f"{lead} its spectrum cannot tell the axis ({est.message}). ASSUMING the documented default, evenly "
            f"spaced {assumed[0]:g}–{assumed[-1]:g} cm⁻¹ in frame order; store the wavenumbers (sidecar <stem>.json) "
            "or set assumed_wavenumber_range if this is wrong.",
            est,
        )
    return AxisCheck(  # the two directions fit about equally: nothing points at the default being wrong
        assumed,
        "assumed",
        logging.INFO,
        f"{lead} the direction is unknown, its spectrum does not determine the axis ({est.message}). Using the "
        f"documented default, evenly spaced {assumed[0]:g}–{assumed[-1]:g} cm⁻¹ in frame order; store the "
        "wavenumbers (sidecar <stem>.json) or set assumed_wavenumber_range if this is wrong.",
        est,
    )


def _check_stored_axis(stack: np.ndarray, stored: np.ndarray, tolerance: float, source: str) -> AxisCheck:
    est = estimate_axis(stack, stored, tolerance=tolerance)
    stored_text = f"{stored[0]:g}–{stored[-1]:g} cm⁻¹"
    if est.status == "no_chemistry":
        return AxisCheck(
            stored,
            "no_chemistry",
            logging.WARNING,
            f"{source}: the stored wavenumbers {stored_text} cannot be checked: {est.message}. The segmentation of "
            "this stack is not to be trusted.",
            est,
        )
    if est.direction_known and est.reversed and est.direction_confidence >= MIN_CONTRADICTION_CONFIDENCE:
        return AxisCheck(
            stored,
            "reversed",
            logging.WARNING,
            f"{source}: the STORED WAVENUMBERS RUN THE WRONG WAY: stored {stored_text}, but the C–H bands say the "
            f"frames run {est.wavenumbers[0]:.0f}–{est.wavenumbers[-1]:.0f} cm⁻¹ ({est.message}). The stored axis is "
            "used; the segmentation is likely wrong. Fix the wavenumbers (their order) in the file or sidecar.",
            est,
        )
    off = axis_disagreement(est.wavenumbers, stored)
    if est.confident and not est.reversed and off > tolerance:
        return AxisCheck(
            stored,
            "miscalibrated",
            logging.WARNING,
            f"{source}: the STORED WAVENUMBERS DISAGREE with the C–H bands by up to {off:.0f} cm⁻¹ (tolerance "
            f"{tolerance:g}): stored {stored_text}, the spectrum suggests {est.wavenumbers[0]:.0f}–"
            f"{est.wavenumbers[-1]:.0f} cm⁻¹ ({est.message}). The stored axis is used; check the calibration.",
            est,
        )
    if not est.direction_known or not est.confident or est.reversed:
        return AxisCheck(
            stored,
            "unchecked",
            logging.INFO,
            f"{source}: the stored wavenumbers {stored_text} could not be confirmed by the spectrum ({est.message}).",
            est,
        )
    return AxisCheck(
        stored,
        "ok",
        logging.DEBUG,
        f"{source}: the stored wavenumbers {stored_text} agree with the C–H bands within {off:.1f} cm⁻¹.",
        est,
    )
