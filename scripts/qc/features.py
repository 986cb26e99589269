"""The features the quality check compares with the training stacks: spectral (raw stack) and model (logits).

Spectral features (:func:`spectral_features`) come from the raw stack as read (intensities not
rescaled, frames ascending, the axis the reader decided on), using the foreground spectrum of
:func:`scripts.spectra.calibration.foreground_spectrum` (mean of the brightest 20 % of the pixels
minus the median of the dimmest 10 %, from at most 16,384 pixels):

=====================  ==============================================================================
``chemistry_misfit``   log10(1 − R²) of a non-negative lipid / protein / DNA / water fit (plus offset
                       and slope) of the foreground spectrum **on the axis in use** (not the best axis:
                       a reversed or shifted stored axis fits badly here)
``lipid_share``        lipid / (lipid + protein + DNA) of that fit (water and the shares of protein and
                       DNA alone swap with the baseline and with each other from stack to stack)
``contrast_to_noise``  log10 of the baseline-free foreground spectrum's rms over its noise
``saturation``         share of voxels at the stack's maximum value (a clipped detector)
``background_ratio``   log10(spectral range of the dim pixels' median spectrum / range of the foreground
                       spectrum): non-Raman background (which varies over the frames) relative to the
                       Raman bands; constant offsets do not count. NaN (not scored) for a stack
                       without spectral contrast (contrast to noise below 1)
=====================  ==============================================================================

Model features (:func:`model_features`) come from the network's logits on the preprocessed image:
``entropy`` (mean softmax entropy, in units of log 3), ``nucleus_area`` and ``droplet_area`` (shares
of the field predicted nucleus / lipid droplet) and, with test-time augmentation, ``flip_disagreement``
(share of the pixels labelled non-background in the image or its mirror image whose labels differ).

Each feature has a direction (``side``: +1 only high values are suspicious, −1 only low values, 0 both)
and a least spread (``min_spread``, in its own units) so that a feature that is constant in the
training data (saturation) does not turn the smallest change into an outlier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import nnls
from scripts.spectra.calibration import foreground_spectrum
from scripts.spectra.reference import CONSTITUENTS, spectra_matrix


@dataclass(frozen=True)
class Feature:
    """One quality-check feature: its name, which values are suspicious, its least spread and what it means."""

    name: str
    side: int
    min_spread: float
    meaning: str
    kind: str = "spectral"


FEATURES: tuple[Feature, ...] = (
    Feature(
        "chemistry_misfit",
        +1,
        0.1,
        "the foreground spectrum does not fit lipid/protein/DNA/water on the axis in use (wrong axis, not C–H)",
    ),
    Feature("lipid_share", 0, 0.05, "unusual chemistry: lipid share of the fitted lipid + protein + DNA"),
    Feature(
        "contrast_to_noise", -1, 0.05, "little spectral contrast above noise (noise, repeated frames, very low signal)"
    ),
    Feature("saturation", +1, 0.002, "many voxels at the maximum value (clipped / saturated detector)"),
    Feature("background_ratio", +1, 0.05, "strong non-Raman background relative to the Raman signal"),
    Feature("entropy", +1, 0.01, "the network is unsure of its labels (softmax entropy)", "model"),
    Feature("nucleus_area", 0, 0.02, "unusual predicted nucleus area", "model"),
    Feature("droplet_area", 0, 0.01, "unusual predicted lipid-droplet area", "model"),
    Feature(
        "flip_disagreement", +1, 0.02, "the labels change when the image is mirrored (test-time augmentation)", "model"
    ),
)
FEATURE_BY_NAME = {f.name: f for f in FEATURES}
SPECTRAL_FEATURES = tuple(f.name for f in FEATURES if f.kind == "spectral")
MODEL_FEATURES = tuple(f.name for f in FEATURES if f.kind == "model")
#: 1 − R² below this counts as a perfect fit (keeps the logarithm finite).
MISFIT_FLOOR = 1e-4


def _baseline_free(k: int) -> np.ndarray:
    """(K, K) projector removing an offset and a slope over the frames (the fit's baseline)."""
    x = np.linspace(-1.0, 1.0, k)
    q, _ = np.linalg.qr(np.stack([np.ones(k), x], axis=1))
    return np.eye(k) - q @ q.T


def spectral_features(stack: np.ndarray, wavenumbers: np.ndarray) -> dict[str, float]:
    """The spectral features (module docstring) of a raw (K, ...) stack whose frames sit at ``wavenumbers``.

    Examples
    --------
    >>> wn = np.linspace(2800, 3050, 64)
    >>> maps = np.zeros((2, 32, 32)); maps[0, :16] = 1.0; maps[1, :, :16] = 2.0
    >>> stack = np.tensordot(spectra_matrix(wn)[:, :2], maps, axes=1) + 0.3
    >>> f = spectral_features(stack, wn)
    >>> f["chemistry_misfit"] < -3, f["saturation"] < 0.01
    (True, True)
    >>> spectral_features(stack, wn[::-1].copy())["chemistry_misfit"] > -1  # the axis the wrong way round
    True
    """
    arr = np.asarray(stack, dtype=np.float32)
    wn = np.asarray(wavenumbers, dtype=np.float64)
    k = arr.shape[0]
    if wn.shape != (k,):
        raise ValueError(f"{wn.size} wavenumbers for a stack of {k} frames.")
    fg = foreground_spectrum(arr)
    projector = _baseline_free(k)
    target = projector @ fg.spectrum
    design = projector @ spectra_matrix(wn)
    total = float(target @ target)
    if fg.pixels == 0 or total <= 0 or not np.isfinite(total):
        coef, r2 = np.zeros(len(CONSTITUENTS)), 0.0
    else:
        coef, rnorm = nnls(design, target)
        r2 = 1.0 - rnorm**2 / total
    organic = coef[[CONSTITUENTS.index(c) for c in ("lipid", "protein", "dna")]]
    lipid_share = organic[0] / organic.sum() if organic.sum() > 0 else 0.0
    noise = float(np.sqrt(np.mean(fg.noise**2))) if fg.pixels else math.inf
    rms = math.sqrt(total / k) if total > 0 else 0.0
    if rms <= 1e-6 * float(np.mean(np.abs(fg.spectrum))):  # identical frames: only rounding errors are left
        rms = 0.0
    contrast = rms / noise if noise > 0 and math.isfinite(noise) else (math.inf if rms else 0.0)
    top = float(arr.max())
    saturation = float(np.count_nonzero(arr >= top - 1e-6 * max(abs(top), 1e-30))) / arr.size
    step = max(1, arr[0].size // 16_384)
    pixels = arr.reshape(k, -1)[:, ::step]
    totals = pixels.sum(axis=0)
    dim = np.median(pixels[:, totals <= np.percentile(totals, 10.0)], axis=1)
    signal_range = float(np.ptp(fg.spectrum)) if fg.pixels else 0.0
    # without spectral contrast there is no Raman signal to compare the background with: undefined, not scored
    ratio = float(np.ptp(dim)) / signal_range if contrast >= 1.0 and signal_range > 0 else math.nan
    out = {
        "chemistry_misfit": math.log10(max(1.0 - r2, MISFIT_FLOOR)),
        "lipid_share": float(lipid_share),
        "contrast_to_noise": math.log10(min(max(contrast, 1e-3), 1e6)),
        "saturation": saturation,
        "background_ratio": math.log10(min(max(ratio, 1e-3), 1e6)) if math.isfinite(ratio) else math.nan,
    }
    return {name: round(float(v), 6) for name, v in out.items()}


def model_features(logits: torch.Tensor, flipped_logits: torch.Tensor | None = None) -> dict[str, float]:
    """The model features (module docstring) of one image's (C, H, W) logits.

    ``flipped_logits``: the logits of the image mirrored along its last axis, already mirrored back;
    gives ``flip_disagreement``.

    Examples
    --------
    >>> logits = torch.zeros(3, 8, 8); logits[1, :4] = 10.0
    >>> f = model_features(logits)
    >>> round(f["nucleus_area"], 3), f["entropy"] > 0.4  # half the field sure nucleus, half undecided
    (0.5, True)
    """
    with torch.no_grad():
        logits = logits.detach().float()
        c = logits.shape[0]
        logp = torch.log_softmax(logits, dim=0)
        entropy = -(logp.exp() * logp).sum(0) / math.log(c)
        labels = logits.argmax(0)
        out = {
            "entropy": float(entropy.mean()),
            "nucleus_area": float((labels == 1).float().mean()),
            "droplet_area": float((labels == 2).float().mean()) if c > 2 else 0.0,
        }
        if flipped_logits is not None:
            other = flipped_logits.detach().float().argmax(0)
            either = (labels > 0) | (other > 0)
            n = int(either.sum())
            out["flip_disagreement"] = float(((labels != other) & either).sum()) / n if n else 0.0
    return {name: round(float(v), 6) for name, v in out.items()}
