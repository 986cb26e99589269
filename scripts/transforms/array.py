"""Spectral transforms for HSRS stacks (K, H, W), MONAI style: an array transform and a ``…d`` dictionary version.

Preprocessing (deterministic):

- :class:`SpectralResample` — onto the canonical wavenumber grid (or any grid), from
  ``meta["wavenumbers"]``; stacks without wavenumbers are handled by a logged assumption.
- :class:`SubtractSpectralBackground` — remove the detector offset, or the whole spatially
  uniform background spectrum (offset + water + non-Raman background) estimated from the dimmest pixels.
- :class:`NormalizeSpectralIntensity` — robust per-image scaling by intensity percentiles.
- :class:`DivideSpectralEnvelope` — divide out the pulse-overlap envelope the axis check fitted (raw
  spectral-focusing stacks).

Training augmentations that mimic real instrument variation (random; apply after normalisation):

- :class:`RandSpectralGainDrift` — per-frame laser power drift (multiplicative, smooth over frames).
- :class:`RandSpectralOffset` — additive offset with a linear trend over frames.
- :class:`RandSpectralShift` — small spectral calibration error (shift along the wavenumber axis).
- :class:`RandSpectralNoise` — shot/read noise (additive) and laser intensity noise (proportional).
- :class:`RandSpectralEnvelope` — the pulse-overlap envelope of raw spectral-focusing stacks
  (multiplicative, a bell or a ramp over the Raman-shift axis).

All transforms keep ``MetaTensor`` metadata; the array versions accept NumPy arrays and tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import RandomizableTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor
from scripts.io.errors import HSRSInputError
from scripts.simulation.envelope import EnvelopeRanges, draw_envelope, envelope_gain
from scripts.spectra.axis import (
    CANONICAL_RANGE,
    CANONICAL_WAVENUMBERS,
    MIN_FRAMES,
    REQUIRED_RANGE,
    VALIDATED_RANGE,
    assumed_wavenumbers,
    missing_bands,
    validate_wavenumbers,
)
from scripts.spectra.reference import CONSTITUENTS, spectra_matrix

logger = logging.getLogger(__name__)

#: Reference spectra whose mixture (plus an offset) fills the ends of partial windows (``fill="reference"``).
FILL_CONSTITUENTS: tuple[str, ...] = ("lipid", "protein", "water")


def source_name(img: Any, fallback: str = "image") -> str:
    """The file an image came from (``meta["filename_or_obj"]``), for messages; ``fallback`` without one."""
    if isinstance(img, MetaTensor):
        return str(img.meta.get("filename_or_obj", fallback))
    return fallback


def _check_stack(img: torch.Tensor, source: str, min_frames: int = MIN_FRAMES) -> None:
    if img.ndim != 3:
        raise HSRSInputError(f"{source}: expected a spectral stack (K, H, W), got shape {tuple(img.shape)}.")
    if img.shape[0] < min_frames:
        raise HSRSInputError(
            f"{source}: the stack has {img.shape[0]} frames; at least {min_frames} Raman shifts are needed "
            f"(the canonical grid has {CANONICAL_WAVENUMBERS.size}). Is this a single image or a label map, "
            "or was the spectral range recorded too coarsely?"
        )


def stack_wavenumbers(img: Any, assumed_range: Sequence[float] = CANONICAL_RANGE) -> np.ndarray:
    """The (K,) wavenumbers of ``img`` from its metadata, or an assumed grid with a logged warning."""
    meta = img.meta if isinstance(img, MetaTensor) else {}
    wn = meta.get("wavenumbers")
    if wn is None:
        wn = assumed_wavenumbers(img.shape[0], assumed_range)
        logger.warning(
            "%s: no wavenumbers in the image metadata; ASSUMING its %d frames span %g–%g cm⁻¹ evenly.",
            source_name(img),
            img.shape[0],
            wn[0],
            wn[-1],
        )
        return wn
    wn = wn.detach().cpu().numpy() if isinstance(wn, torch.Tensor) else np.asarray(wn)
    return validate_wavenumbers(wn.reshape(-1)[: img.shape[0]] if wn.ndim > 1 else wn, img.shape[0], source_name(img))


def _robust_percentiles(img: torch.Tensor, q: Sequence[float], max_samples: int = 2_000_000) -> list[float]:
    """Percentiles of all values of ``img`` (a fixed, evenly strided subsample for large stacks)."""
    flat = img.reshape(-1)
    step = max(1, flat.numel() // max_samples)
    values = flat[::step].detach().cpu().numpy().astype(np.float64)
    return [float(v) for v in np.percentile(values, q)]


def _smooth_frames(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing along the frame axis (sd ``sigma`` frames), edge frames repeated."""
    radius = int(np.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    frames = np.arange(img.shape[0])
    return sum(
        float(wt) * img[torch.as_tensor(np.clip(frames + o, 0, img.shape[0] - 1))]
        for o, wt in zip(offsets, weights, strict=True)
    )


class SpectralResample(Transform):
    """Resample a stack (K, H, W) onto a target wavenumber grid by linear interpolation along K.

    Descending input is handled (the stack's wavenumbers decide), and when the input is sampled
    much more finely than the target, it is first smoothed along K (Gaussian) to avoid aliasing.

    **Partial windows.** Instruments record windows such as 2814–2993 or 2830–3000 cm⁻¹. A stack is
    accepted when it covers ``required_range`` (default :data:`~scripts.spectra.axis.REQUIRED_RANGE`,
    2845–2985 cm⁻¹: the lipid CH₂ band at 2850 through the protein CH₃ and DNA bands at 2930–2960, with
    their flanks);
    the target frames beyond the measured range are filled by ``fill`` (logged):

    - ``"reference"`` (default): per pixel, the least-squares mixture of the reference lipid,
      protein and water spectra (:mod:`scripts.spectra.reference`) plus an offset, fitted to the
      measured part of the target grid, gives the missing ends (one linear map applied to every
      pixel: a continuation of the pixel's own chemistry, :func:`reference_fill_operator`);
    - ``"edge"``: the nearest measured frame is repeated.

    A stack that does not cover ``required_range`` is refused with the bands it misses.

    Args:
        target_wavenumbers: the output grid, ascending, cm⁻¹ (default: the canonical 64 frames
            over 2800–3050 cm⁻¹).
        assumed_wavenumber_range: (first frame, last frame) assumed, with a logged warning, for an
            image without ``meta["wavenumbers"]``.
        max_extrapolation: optional stricter limit: how far (cm⁻¹) the target grid may reach beyond the
            measured range at either end (None: only ``required_range`` decides).
        min_frames: fewest input frames accepted (default 8); the workflows ask for more, since a
            model trained on 64 frames does not see the same bands in a stack of a few frames.
        required_range: (low, high) cm⁻¹ every stack must cover; None accepts any overlap with the target.
        fill: ``"reference"`` or ``"edge"``, how target frames beyond the data are filled.

    Returns a tensor (K_target, H, W) with ``meta["wavenumbers"]`` set to the target grid.
    """

    backend = [TransformBackends.TORCH]
    fills = ("reference", "edge")

    def __init__(
        self,
        target_wavenumbers: Sequence[float] | np.ndarray | None = None,
        assumed_wavenumber_range: Sequence[float] = CANONICAL_RANGE,
        max_extrapolation: float | None = None,
        min_frames: int = MIN_FRAMES,
        required_range: Sequence[float] | None = REQUIRED_RANGE,
        fill: str = "reference",
    ):
        self.min_frames = int(min_frames)
        target = CANONICAL_WAVENUMBERS if target_wavenumbers is None else np.asarray(target_wavenumbers, float)
        self.target = validate_wavenumbers(target, target.size, "target_wavenumbers")
        if self.target.size > 1 and self.target[1] < self.target[0]:
            raise ValueError("target_wavenumbers must be ascending.")
        self.assumed_wavenumber_range = assumed_wavenumber_range
        self.max_extrapolation = None if max_extrapolation is None else float(max_extrapolation)
        if required_range is not None and (len(required_range) != 2 or required_range[0] >= required_range[1]):
            raise ValueError(f"required_range must be (low, high) in cm⁻¹, got {required_range!r}.")
        self.required_range = None if required_range is None else (float(required_range[0]), float(required_range[1]))
        if fill not in self.fills:
            raise ValueError(f"fill must be one of {self.fills}, got {fill!r}.")
        self.fill = fill

    def _check_coverage(self, wn: np.ndarray, source: str) -> tuple[float, float]:
        lo_gap, hi_gap = wn[0] - self.target[0], self.target[-1] - wn[-1]
        if self.required_range is not None and (wn[0] > self.required_range[0] or wn[-1] < self.required_range[1]):
            missing = missing_bands(wn)
            raise HSRSInputError(
                f"{source}: the stack covers {wn[0]:g}–{wn[-1]:g} cm⁻¹ but segmentation needs at least "
                f"{self.required_range[0]:g}–{self.required_range[1]:g} cm⁻¹; uncovered: "
                f"{'; '.join(missing)}. Record a wider window; if the stack "
                "stores no wavenumbers or wrong ones, give them in a sidecar <stem>.json."
            )
        if wn[0] >= self.target[-1] or wn[-1] <= self.target[0]:
            raise HSRSInputError(
                f"{source}: the stack covers {wn[0]:g}–{wn[-1]:g} cm⁻¹, outside the target grid "
                f"{self.target[0]:g}–{self.target[-1]:g} cm⁻¹."
            )
        if self.max_extrapolation is not None and max(lo_gap, hi_gap) > self.max_extrapolation:
            raise HSRSInputError(
                f"{source}: the stack covers {wn[0]:g}–{wn[-1]:g} cm⁻¹ but the target grid needs "
                f"{self.target[0]:g}–{self.target[-1]:g} cm⁻¹ (more than {self.max_extrapolation:g} cm⁻¹ missing at an "
                "end). Record the full C–H window, or pass target_wavenumbers covering your range."
            )
        return lo_gap, hi_gap

    def __call__(self, img: Any, wavenumbers: Sequence[float] | None = None) -> torch.Tensor:
        source = source_name(img)
        img = convert_to_tensor(img, track_meta=get_track_meta(), dtype=torch.float32)
        _check_stack(img, source, self.min_frames)
        wn = (
            validate_wavenumbers(wavenumbers, img.shape[0], source)
            if wavenumbers is not None
            else stack_wavenumbers(img, self.assumed_wavenumber_range)
        )
        if wn[0] > wn[-1]:
            img, wn = img.flip(0), wn[::-1].copy()
        lo_gap, hi_gap = self._check_coverage(wn, source)
        if max(lo_gap, hi_gap) > 0:
            narrow = wn[0] > VALIDATED_RANGE[0] or wn[-1] < VALIDATED_RANGE[1]
            logger.log(
                logging.WARNING if narrow else logging.INFO,
                "%s: the stack covers %g–%g cm⁻¹; the target grid's %.1f/%.1f cm⁻¹ beyond it are filled (%s)%s",
                source,
                wn[0],
                wn[-1],
                max(lo_gap, 0.0),
                max(hi_gap, 0.0),
                self.fill,
                (
                    f"; windows narrower than {VALIDATED_RANGE[0]:g}–{VALIDATED_RANGE[1]:g} cm⁻¹ are segmented less "
                    "accurately (docs/results.md, spectral axis section)."
                    if narrow
                    else "."
                ),
            )
        step_in, step_out = (
            float(np.median(np.diff(wn))),
            float(np.median(np.diff(self.target))) if self.target.size > 1 else 0.0,
        )
        if step_out > 1.5 * step_in:  # anti-aliasing: smooth along K to the target's sampling first
            img = _smooth_frames(img, np.sqrt(step_out**2 - step_in**2) / 2.3548 / step_in)
        out = _interpolate_frames(img, wn, self.target)
        outside = (self.target < wn[0]) | (self.target > wn[-1])
        if self.fill == "reference" and outside.any():
            out = _fill_by_reference(out, self.target, outside)
        if isinstance(out, MetaTensor):
            out.meta["wavenumbers"] = self.target.copy()
        return out


def _interpolate_frames(img: torch.Tensor, wn: np.ndarray, target: np.ndarray) -> torch.Tensor:
    """``img`` (K, H, W) linearly interpolated from ``wn`` onto ``target`` along K (edge hold outside).

    Frame by frame into one output tensor, so a large field needs one extra stack of memory, not three;
    a stack already on the target grid is returned as it is (no copy).
    """
    if wn.size == target.size and np.allclose(wn, target, rtol=0.0, atol=1e-6):
        return img
    pos = np.interp(target, wn, np.arange(wn.size, dtype=float))  # clamps outside: edge hold
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, wn.size - 1)
    i1 = np.clip(i0 + 1, 0, wn.size - 1)
    frac = pos - i0
    src = img.as_tensor() if isinstance(img, MetaTensor) else img
    out = src.new_empty((target.size, *src.shape[1:]))
    for k, (a, b, f) in enumerate(zip(i0.tolist(), i1.tolist(), frac.tolist(), strict=True)):
        if f == 0.0 or a == b:
            out[k] = src[a]
        else:
            torch.lerp(src[a], src[b], f, out=out[k])
    return convert_to_dst_type(out, img)[0]  # a MetaTensor keeps its metadata


def reference_fill_operator(target: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """(n_outside, n_inside) linear map from a spectrum's measured grid points to its missing ones.

    The least-squares fit of the reference lipid, protein and water spectra plus an offset to the
    measured points, evaluated at the missing ones. DNA is left out: within a partial window its
    spectrum is nearly a copy of the protein's, and the pair would extrapolate noise (measured: the
    Dice of droplets fell by up to 0.4 with DNA or a linear trend in the fit, see ``docs/results.md``).

    Examples:
        >>> wn = np.linspace(2800, 3050, 64)
        >>> outside = wn > 3000
        >>> from scripts.spectra.reference import CONSTITUENTS, spectra_matrix
        >>> spectrum = spectra_matrix(wn)[:, [0, 1, 3]] @ [1.0, 2.0, 0.2] + 0.5
        >>> filled = reference_fill_operator(wn, outside) @ spectrum[~outside]
        >>> bool(np.allclose(filled, spectrum[outside]))
        True
    """
    references = spectra_matrix(target)[:, [CONSTITUENTS.index(c) for c in FILL_CONSTITUENTS]]
    design = np.concatenate([references, np.ones((target.size, 1))], axis=1)
    return design[outside] @ np.linalg.pinv(design[~outside])


def _fill_by_reference(out: torch.Tensor, target: np.ndarray, outside: np.ndarray) -> torch.Tensor:
    """``out`` (K, H, W) with the frames at ``outside`` replaced by the reference continuation of the others."""
    operator = torch.as_tensor(reference_fill_operator(target, outside), dtype=out.dtype, device=out.device)
    inside_idx = torch.as_tensor(np.flatnonzero(~outside))
    h, w = out.shape[1:]
    filled = (operator @ out[inside_idx].reshape(inside_idx.numel(), h * w)).reshape(-1, h, w)
    out = out.clone()
    out[torch.as_tensor(np.flatnonzero(outside))] = filled
    return out


class SubtractSpectralBackground(Transform):
    """Remove the detector offset or the uniform background spectrum from a stack (K, H, W).

    Args:
        method: ``"dimmest_pixels"`` (default) subtracts, from every pixel, the median spectrum of
            the ``percentile``% of pixels with the lowest total intensity (cell-free areas: offset
            + water + non-Raman background, per frame); ``"frame_percentile"`` subtracts each
            frame's ``percentile``-th intensity percentile; ``"offset"`` subtracts one constant,
            the ``percentile``-th percentile of the whole stack.
        percentile: see ``method`` (default 10).

    Spatially varying background (field edges, object edges) is not removed: that is left to the
    networks, which see it in training.
    """

    backend = [TransformBackends.TORCH]
    methods = ("dimmest_pixels", "frame_percentile", "offset")

    def __init__(self, method: str = "dimmest_pixels", percentile: float = 10.0):
        if method not in self.methods:
            raise ValueError(f"method must be one of {self.methods}, got {method!r}.")
        if not 0 < percentile < 100:
            raise ValueError(f"percentile must be in (0, 100), got {percentile}.")
        self.method, self.percentile = method, float(percentile)

    def background(self, img: torch.Tensor) -> torch.Tensor:
        """The background to subtract, broadcastable to ``img``: (K, 1, 1) or a scalar."""
        k = img.shape[0]
        flat = img.reshape(k, -1)
        if self.method == "offset":
            return torch.tensor(_robust_percentiles(img, [self.percentile])[0], dtype=img.dtype, device=img.device)
        if self.method == "frame_percentile":
            step = max(1, flat.shape[1] // 200_000)
            return torch.quantile(flat[:, ::step].float(), self.percentile / 100.0, dim=1).to(img.dtype).view(k, 1, 1)
        total = flat.sum(0)
        cutoff = _robust_percentiles(total, [self.percentile])[0]
        dim = flat[:, total <= cutoff]
        return dim.median(dim=1).values.view(k, 1, 1)

    def __call__(self, img: Any) -> torch.Tensor:
        source = source_name(img)
        img = convert_to_tensor(img, track_meta=get_track_meta(), dtype=torch.float32)
        _check_stack(img, source)
        return img - self.background(img)


class DivideSpectralEnvelope(Transform):
    """Divide out the pulse-overlap envelope that the reader's axis check fitted (raw spectral-focusing stacks).

    The reader (:mod:`scripts.io.reader`, :func:`scripts.spectra.calibration.check_axis`) fits a smooth
    multiplicative gain over the frames jointly with the axis and records it as ``axis_envelope_slope`` and
    ``axis_envelope_curvature`` in the image's metadata; each frame is divided by that gain (at least
    ``floor``, so that frames the pulses hardly overlap in are not blown up into noise). Apply before
    :class:`SpectralResample` (the gain is over the stored frames). Stacks without the keys (axis check off) or
    whose spectrum fits no C–H chemistry are returned unchanged.

    Args:
        floor: least gain divided by (default 0.1).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, floor: float = 0.1):
        if not 0 < floor <= 1:
            raise ValueError(f"floor must be in (0, 1], got {floor}.")
        self.floor = float(floor)

    def __call__(self, img: Any) -> torch.Tensor:
        from scripts.spectra.calibration import fitted_envelope

        meta = img.meta if isinstance(img, MetaTensor) else {}
        img = convert_to_tensor(img, track_meta=get_track_meta(), dtype=torch.float32)
        if "axis_envelope_slope" not in meta or meta.get("axis_status") == "no_chemistry":
            return img
        slope, curvature = float(meta["axis_envelope_slope"]), float(meta["axis_envelope_curvature"])
        gain = np.maximum(fitted_envelope(img.shape[0], slope, curvature), self.floor)
        return img / torch.as_tensor(gain, dtype=img.dtype, device=img.device).view(-1, 1, 1)


class NormalizeSpectralIntensity(Transform):
    """Robust per-image intensity scaling: ``(x - p_lower) / (p_upper - p_lower)`` over the whole stack.

    One scale for all frames keeps the spectral shape (the chemistry) intact.

    Args:
        lower, upper: percentiles of all stack values (defaults 1 and 99.5: robust to hot pixels
            and to the few very bright lipid droplets).
        subtract_lower: subtract ``p_lower`` (default True); if False only divide by ``p_upper - p_lower``.
        clip: clip the result to ``[clip_range]`` (default off).
        clip_range: (min, max) used when ``clip`` is True.

    Raises ValueError naming the file for a constant stack (no contrast to normalise).
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        lower: float = 1.0,
        upper: float = 99.5,
        subtract_lower: bool = True,
        clip: bool = False,
        clip_range: Sequence[float] = (-1.0, 10.0),
    ):
        if not 0 <= lower < upper <= 100:
            raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}.")
        self.lower, self.upper = float(lower), float(upper)
        self.subtract_lower, self.clip, self.clip_range = subtract_lower, clip, tuple(clip_range)

    def __call__(self, img: Any) -> torch.Tensor:
        source = source_name(img)
        img = convert_to_tensor(img, track_meta=get_track_meta(), dtype=torch.float32)
        _check_stack(img, source)
        lo, hi = _robust_percentiles(img, [self.lower, self.upper])
        if not hi - lo > 1e-8 * max(abs(hi), abs(lo), 1.0):
            raise HSRSInputError(
                f"{source}: intensities are constant ({lo:g}) between the {self.lower:g}th and {self.upper:g}th "
                "percentiles; the stack holds no image to segment."
            )
        out = (img - lo) / (hi - lo) if self.subtract_lower else img / (hi - lo)
        return out.clamp(*self.clip_range) if self.clip else out


class _RandSpectral(RandomizableTransform):
    """Base of the random spectral augmentations: draws its parameters from ``self.R``."""

    backend = [TransformBackends.TORCH]

    def apply(self, img: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, img: Any, randomize: bool = True) -> torch.Tensor:
        source = source_name(img)
        img = convert_to_tensor(img, track_meta=get_track_meta(), dtype=torch.float32)
        if randomize:
            self.randomize(img)
        if not self._do_transform:
            return img
        _check_stack(img, source)
        return self.apply(img)


class RandSpectralGainDrift(_RandSpectral):
    """Multiply each frame by a gain that drifts smoothly over frames (laser power drift).

    The gains are ``1 + s * w_k`` with ``w`` a standardised random walk over the K frames and
    ``s ~ U(0, max_drift)``.

    Args:
        prob: probability of applying the drift.
        max_drift: largest standard deviation of the gains (default 0.05 = 5 %).
    """

    def __init__(self, prob: float = 0.5, max_drift: float = 0.05):
        super().__init__(prob)
        self.max_drift = float(max_drift)
        self.gains: np.ndarray | None = None

    def randomize(self, img: torch.Tensor) -> None:
        super().randomize(None)
        if self._do_transform:
            walk = np.cumsum(self.R.normal(0, 1, img.shape[0]))
            walk = (walk - walk.mean()) / (walk.std() + 1e-8)
            self.gains = 1.0 + self.R.uniform(0, self.max_drift) * walk

    def apply(self, img: torch.Tensor) -> torch.Tensor:
        return img * torch.as_tensor(self.gains, dtype=img.dtype, device=img.device).view(-1, 1, 1)


class RandSpectralOffset(_RandSpectral):
    """Add an offset ``c + t * (k / (K - 1) - 0.5)`` to frame k (detector offset, background level).

    Args:
        prob: probability of applying the offset.
        max_offset: ``c ~ U(-max_offset, max_offset)`` in image units (default 0.05).
        max_trend: ``t ~ U(-max_trend, max_trend)``, change of the offset across the frames (default 0.05).
    """

    def __init__(self, prob: float = 0.5, max_offset: float = 0.05, max_trend: float = 0.05):
        super().__init__(prob)
        self.max_offset, self.max_trend = float(max_offset), float(max_trend)
        self.offsets: np.ndarray | None = None

    def randomize(self, img: torch.Tensor) -> None:
        super().randomize(None)
        if self._do_transform:
            ramp = np.linspace(-0.5, 0.5, img.shape[0])
            self.offsets = (
                self.R.uniform(-self.max_offset, self.max_offset)
                + self.R.uniform(-self.max_trend, self.max_trend) * ramp
            )

    def apply(self, img: torch.Tensor) -> torch.Tensor:
        return img + torch.as_tensor(self.offsets, dtype=img.dtype, device=img.device).view(-1, 1, 1)


class RandSpectralShift(_RandSpectral):
    """Shift the spectra along the wavenumber axis by ``d ~ U(-max_shift, max_shift)`` cm⁻¹ (calibration error).

    Interpolates linearly along K; the frame spacing comes from ``meta["wavenumbers"]`` (else the
    canonical grid's). Edge frames are repeated where the shift reaches beyond the stack.

    Args:
        prob: probability of applying the shift.
        max_shift: largest shift in cm⁻¹ (default 6, about 1.5 canonical frames).
    """

    def __init__(self, prob: float = 0.5, max_shift: float = 6.0):
        super().__init__(prob)
        self.max_shift = float(max_shift)
        self.shift = 0.0

    def randomize(self, img: torch.Tensor) -> None:
        super().randomize(None)
        if self._do_transform:
            self.shift = float(self.R.uniform(-self.max_shift, self.max_shift))

    def apply(self, img: torch.Tensor) -> torch.Tensor:
        wn = img.meta.get("wavenumbers") if isinstance(img, MetaTensor) else None
        step = (
            float(np.median(np.abs(np.diff(np.asarray(wn, float).reshape(-1)))))
            if wn is not None
            else float(np.diff(CANONICAL_WAVENUMBERS)[0])
        )
        k = img.shape[0]
        pos = np.clip(np.arange(k) - self.shift / step, 0, k - 1)  # frame k shows what was at k - shift
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, k - 1)
        frac = torch.as_tensor(pos - i0, dtype=img.dtype, device=img.device).view(-1, 1, 1)
        return img[torch.as_tensor(i0)] * (1 - frac) + img[torch.as_tensor(i1)] * frac


class RandSpectralNoise(_RandSpectral):
    """Add noise with sd ``sqrt(a² + (r·x)²)`` per value: shot/read noise ``a`` and intensity noise ``r``.

    Args:
        prob: probability of adding noise.
        max_std: ``a ~ U(0, max_std)`` in image units (default 0.05).
        max_relative_std: ``r ~ U(0, max_relative_std)`` (default 0.02).
    """

    def __init__(self, prob: float = 0.5, max_std: float = 0.05, max_relative_std: float = 0.02):
        super().__init__(prob)
        self.max_std, self.max_relative_std = float(max_std), float(max_relative_std)
        self.std = self.relative_std = 0.0
        self.seed = 0

    def randomize(self, img: torch.Tensor) -> None:
        super().randomize(None)
        if self._do_transform:
            self.std = float(self.R.uniform(0, self.max_std))
            self.relative_std = float(self.R.uniform(0, self.max_relative_std))
            self.seed = int(self.R.randint(0, 2**31 - 1))

    def apply(self, img: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(img.shape, generator=gen, dtype=img.dtype).to(img.device)
        return img + noise * torch.sqrt(self.std**2 + (self.relative_std * img) ** 2)


class RandSpectralEnvelope(_RandSpectral):
    """Multiply the stack by a pulse-overlap envelope over the frames (raw, not power-normalised spectral focusing).

    The envelope is drawn from the simulator's :class:`~scripts.simulation.envelope.EnvelopeRanges`
    (a skewed bell with its maximum anywhere in or beyond the window and a FWHM of a third of the
    window to several windows, or a monotone ramp) and evaluated on the stack's Raman-shift axis
    (``meta["wavenumbers"]``, else the canonical grid), normalised to a maximum gain of 1. Applied
    after normalisation, it scales the Raman signal and leaves the (subtracted) offset at zero.

    Args:
        prob: probability of applying an envelope.
        ranges: envelope ranges (its ``probability`` is not used; ``prob`` decides).
    """

    def __init__(self, prob: float = 0.5, ranges: EnvelopeRanges | None = None):
        super().__init__(prob)
        # ``prob`` decides whether a stack gets an envelope; the ranges then always draw one
        self.ranges = replace(EnvelopeRanges() if ranges is None else ranges, probability=1.0)
        self.envelope = None

    def randomize(self, img: torch.Tensor) -> None:
        super().randomize(None)
        if self._do_transform:
            self.envelope = draw_envelope(self.R, self.ranges)

    def apply(self, img: torch.Tensor) -> torch.Tensor:
        wn = img.meta.get("wavenumbers") if isinstance(img, MetaTensor) else None
        wn = CANONICAL_WAVENUMBERS if wn is None or len(wn) != img.shape[0] else np.asarray(wn, float).reshape(-1)
        gain = envelope_gain(self.envelope, wn)
        return img * torch.as_tensor(gain, dtype=img.dtype, device=img.device).view(-1, 1, 1)
