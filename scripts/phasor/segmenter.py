"""Optimized spectral-phasor segmentation of HSRS stacks: nucleus and lipid droplets, no training.

This is the paper's baseline and gold-standard maker: every pixel's C–H spectrum becomes a point
(G, S) on the phasor plot, clusters are picked with cursors and mapped back to the image. Here
the cursors are placed **automatically per image** and every tunable is a field of
:class:`PhasorParameters`, fitted on labelled data by ``python -m scripts.phasor fit``
(:mod:`scripts.phasor.fit`). The shipped defaults, ``configs/phasor_parameters.yaml``, were fitted
on the training split (22 stacks) of the simulator's default preset, in about 5 minutes on 2 cores::

    python -m scripts.simulate --out /tmp/phasor_fit --num 32 --size 256 --seed 0 --preset default
    python -m scripts.phasor fit --datalist /tmp/phasor_fit/datalist.json --split training \\
        --out configs/phasor_parameters.yaml --seed 0

:meth:`PhasorSegmenter.segment` runs, per stack (K, H, W):

1. **Canonical grid.** :class:`~scripts.transforms.array.SpectralResample` onto the 64-frame
   2800–3050 cm⁻¹ grid (skipped when the stack is already on it: interpolating at the samples
   is the identity). The first harmonic's period is then the same window for every image, so
   cluster positions are comparable between images. Descending stacks are handled there
   (a descending axis would mirror S), and so are partial windows (at least 2845–2985 cm⁻¹; the
   missing ends are continued by each pixel's reference mixture).
2. **Background.** :class:`~scripts.transforms.array.SubtractSpectralBackground` subtracts the median
   spectrum of the dimmest 10 % of pixels (detector offset + water + uniform non-Raman
   background). A constant offset ``b`` has no first-harmonic content, so it scales a pixel's
   phasor by ``I / (I + b)``: without this step clusters drift radially with the offset. Then a
   quadratic surface per frame, fitted to the cell-free pixels, removes the part of the non-Raman
   background that grows towards the field corners (:mod:`scripts.phasor.background`); left in,
   it pulls cells near the corners towards the background's (lipid-like) phase.
3. **Phasor transform.** ``phasorpy.phasor.phasor_from_signal`` along the spectral axis.
4. **Intensity threshold.** Otsu (or Li, triangle, Yen) on the mean intensity, times
   ``threshold_scale``, and never below ``min_intensity_fraction`` of the bright end: pixels
   with tiny or negative sums (whose G, S are meaningless) and background become NaN
   (``phasor_threshold``).
5. **Median filter.** 3×3 NaN-aware median of G and S, ``median_repeat`` times
   (``phasor_filter_median``).
6. **Cursors.** A Gaussian mixture (``phasorpy.cluster.phasor_cluster_gmm``) on the filtered
   foreground phasors that are not lipid-rich (droplets would take a component of their own),
   initialised at the phasors of reference spectra (:mod:`scripts.spectra.reference`: cytoplasm =
   protein + a little lipid, nucleus = protein + DNA, lipid droplet = lipid). The clusters are
   named by their order along the reference cytoplasm→nucleus axis, so they follow each image
   (residual background, calibration shift, cell type). The lipid cursor is the reference lipid
   phasor rotated by the phase shift measured on those clusters (a calibration error rotates
   every phasor). Explicit cursors can be given instead (``auto_cursors=False``). A cloud far from the
   references, or a reference fit that fails, makes the cursors follow the cloud (clusters fitted
   without reference initialisation, named by phase); too few pixels fall back to the reference
   cursors. Both are WARNINGs and QC columns (:class:`~scripts.phasor.cursors.CursorFit`).
7. **Nucleus.** Per pixel, the nucleus fraction on the line between the cytoplasm and nucleus
   cursors (``phasor_component_fraction``; or membership of the nucleus cluster's ellipse,
   ``mask_from_elliptic_cursor``), optionally averaged over a Gaussian neighbourhood of
   foreground pixels (``nucleus_smoothing``), thresholded, holes filled, opened, small objects
   removed. Nucleus and cytoplasm differ by only tens of percent around 2930–2960 cm⁻¹, so the
   spatial steps carry much of the work: the 3×3 median of G and S and the hole filling (the
   fit on simulated data preferred them to extra Gaussian smoothing).
8. **Lipid droplets.** Per pixel, the lipid fraction on the line between the cytoplasm and
   lipid cursors (or a circular cursor on the lipid phasor, ``mask_from_circular_cursor``) on
   the lightly filtered phasors (a 3×3 median erases 1–2 px droplets) and, optionally,
   brightness; then objects that are not clearly brighter than the cytoplasm ring around them
   (droplets outside the focal plane: broad blurs) and small objects are removed. Droplets win
   over nucleus.
9. **Spatial refinement** (optional, ``mrf_iterations`` > 0; off in the shipped parameters, whose
   fit gained nothing from it): a few ICM sweeps of a Potts MRF between cytoplasm and nucleus with
   per-class models of each pixel's nucleus score and brightness (:mod:`scripts.phasor.refine`).

Label fractions no sample of cells has (nucleus > 60 %, droplets > 40 % of the foreground) are
logged as a WARNING; with the cursor fallbacks they make the ``qc`` entry of
:meth:`PhasorResult.statistics`.

The result is a label map (H, W) uint8 (0 background, 1 nucleus, 2 lipid droplet) like the
network's, with everything needed to draw the phasor plot (:mod:`scripts.phasor.plot`).

Command line::

    python -m scripts.phasor fit --datalist D/datalist.json --split training --out P.yaml --seed 0
    python -m scripts.phasor segment STACK [STACK ...] --out O [--parameters P.yaml]

Folders of stacks: ``configs/phasor.yaml`` (:class:`scripts.phasor.job.PhasorJob`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from phasorpy.component import phasor_component_fraction
from phasorpy.cursor import mask_from_circular_cursor, mask_from_elliptic_cursor
from phasorpy.phasor import phasor_from_signal
from scipy import ndimage
from scripts.phasor.background import cell_free_mask, subtract_background_surface
from scripts.phasor.compat import phasor_filter_median, phasor_threshold
from scripts.phasor.cursors import CursorFit, PhasorCursor, fit_cursors
from scripts.phasor.parameters import PhasorInputError, PhasorParameters
from scripts.phasor.refine import refine_labels
from scripts.spectra.axis import CANONICAL_WAVENUMBERS, MIN_FRAMES, validate_wavenumbers
from scripts.transforms.array import SpectralResample, SubtractSpectralBackground

logger = logging.getLogger(__name__)


NOISE_SIGMAS = 5.0
#: Label fractions of the foreground above which a result is implausible for cells (logged, QC column): measured
#: on 12 phantoms per preset at most 0.45 (nucleus) and 0.29 (droplets, easy preset); the tester's lost phasor
#: called 47 % of a tissue "droplet" and, with the frames reversed, 99 % "nucleus".
MAX_CLASS_FRACTION: dict[str, float] = {"nucleus": 0.6, "lipid_droplet": 0.4}
#: Share of the foreground a capped nucleus map keeps (:func:`_cap_nucleus`): nuclei are 20–40 % of a cell's area.
NUCLEUS_CAP = 0.35
#: Cursors not from the reference-initialised fit: foreground pixels whose lipid fraction reaches this percentile
#: of the foreground's are lipid-like too (bright, compact and sharp ones become droplets).
RELATIVE_LIPID_PERCENTILE = 90.0
#: Width (px) of the ring around a droplet candidate that its edge contrast is measured against.
DROPLET_RING_PX = 2


@dataclass(frozen=True)
class PhasorCoordinates:
    """The phasor transform of one stack on the canonical grid, before thresholding.

    Attributes
    ----------
    mean : ndarray
        (H, W) float32 mean intensity per pixel after background subtraction.
    real, imag : ndarray
        (H, W) float32 unfiltered G and S (meaningless where ``mean`` is tiny or negative).
    valid : ndarray
        (H, W) bool, False where the input had NaN/Inf (those pixels are never foreground).
    source : str
        The stack's name, for messages.
    """

    mean: np.ndarray
    real: np.ndarray
    imag: np.ndarray
    valid: np.ndarray
    source: str = "stack"


@dataclass
class PhasorResult:
    """Output of :meth:`PhasorSegmenter.segment`.

    Attributes
    ----------
    labels : ndarray
        (H, W) uint8: 0 background, 1 nucleus, 2 lipid droplet.
    mean : ndarray
        (H, W) float32 mean intensity after background subtraction.
    real, imag : ndarray
        (H, W) float32 median-filtered G and S; NaN outside the foreground.
    foreground : ndarray
        (H, W) bool, pixels above the intensity threshold.
    threshold : float
        The mean-intensity threshold applied.
    cursors : dict of PhasorCursor
        ``"cytoplasm"``, ``"nucleus"``, ``"lipid"``.
    nucleus_score : ndarray
        (H, W) float32 smoothed nucleus score in [0, 1] (NaN outside the foreground).
    lipid_fraction : ndarray
        (H, W) float32 lipid fraction on the cytoplasm–lipid line (NaN outside the foreground).
    parameters : PhasorParameters
        The parameters used.
    cursor_fit : CursorFit or None
        How the cursors were placed (method, pixel counts, distance of the cloud from the references).
    qc : list of str
        What a user must look at (fallback cursors, a cloud far from the references, implausible
        label fractions); empty when nothing was noticed. Each was logged as a WARNING.
    """

    labels: np.ndarray
    mean: np.ndarray
    real: np.ndarray
    imag: np.ndarray
    foreground: np.ndarray
    threshold: float
    cursors: dict[str, PhasorCursor]
    nucleus_score: np.ndarray
    lipid_fraction: np.ndarray
    parameters: PhasorParameters = field(repr=False)
    cursor_fit: CursorFit | None = field(default=None, repr=False)
    qc: list[str] = field(default_factory=list)

    def statistics(self) -> dict[str, Any]:
        """Per-image numbers for the CSV: threshold, areas (px), droplet count, cursor centres, QC."""
        _, n_lds = ndimage.label(self.labels == 2)
        stats: dict[str, Any] = {
            "threshold": float(self.threshold),
            "foreground_px": int(self.foreground.sum()),
            "nucleus_px": int((self.labels == 1).sum()),
            "lipid_droplet_px": int((self.labels == 2).sum()),
            "lipid_droplet_count": int(n_lds),
        }
        for name, c in self.cursors.items():
            stats[f"{name}_g"] = round(c.real, 5)
            stats[f"{name}_s"] = round(c.imag, 5)
            stats[f"{name}_cursor"] = c.source
        fit = self.cursor_fit
        stats["cursor_fit"] = fit.method if fit else ""
        stats["cluster_px"] = fit.fitted_px if fit else ""
        stats["cloud_distance"] = round(fit.cloud_distance, 4) if fit and math.isfinite(fit.cloud_distance) else ""
        stats["qc"] = "; ".join(self.qc)
        return stats


# ---------------------------------------------------------------------------------------- segmenter
class PhasorSegmenter:
    """Spectral-phasor segmentation of nucleus and lipid droplets (see the module docstring).

    Parameters
    ----------
    parameters : PhasorParameters, optional
        Default: the class defaults (untuned). Use :func:`load_parameters` for the tuned ones.

    Examples
    --------
    >>> from scripts.phasor.parameters import load_parameters
    >>> from scripts.simulation.phantom import simulate_phantom
    >>> ph = simulate_phantom(0, 128, 128)
    >>> result = PhasorSegmenter(load_parameters()).segment(ph.stack, ph.wavenumbers)
    >>> result.labels.shape, result.labels.dtype, set(np.unique(result.labels)) <= {0, 1, 2}
    ((128, 128), dtype('uint8'), True)
    """

    def __init__(self, parameters: PhasorParameters | None = None):
        if parameters is None:
            parameters = PhasorParameters()
        if not isinstance(parameters, PhasorParameters):
            raise TypeError(f"parameters must be a PhasorParameters, got {type(parameters).__name__}.")
        self.parameters = parameters

    def segment(
        self, stack: np.ndarray | torch.Tensor, wavenumbers: Sequence[float], source: str = "stack"
    ) -> PhasorResult:
        """Segment one stack.

        Parameters
        ----------
        stack : array_like
            (K, H, W) intensities, frames in the order of ``wavenumbers``. Negative values
            (offset-subtracted SRS) are fine; NaN/Inf pixels are filled with their frame's median
            and never labelled (logged).
        wavenumbers : sequence of float
            K Raman shifts in cm⁻¹ (ascending or descending); must cover 2800–3050 cm⁻¹.
        source : str
            Name of the stack (file), used in messages.

        Returns
        -------
        PhasorResult

        Raises
        ------
        PhasorInputError
            Wrong shape, fewer than ``MIN_FRAMES`` frames, wavenumbers not matching or not
            covering the window, no finite value in a frame, or a constant stack.
        """
        return self.segment_phasor(self.phasor(stack, wavenumbers, source))

    def phasor(
        self, stack: np.ndarray | torch.Tensor, wavenumbers: Sequence[float], source: str = "stack"
    ) -> PhasorCoordinates:
        """Steps 1–3: canonical grid, background subtraction, phasor transform."""
        p = self.parameters
        arr = stack.detach().cpu().numpy() if isinstance(stack, torch.Tensor) else np.asarray(stack)
        if arr.ndim != 3:
            raise PhasorInputError(f"{source}: expected a spectral stack (K, H, W), got an array of shape {arr.shape}.")
        if arr.dtype.kind not in "uif":
            raise PhasorInputError(f"{source}: unsupported pixel type {arr.dtype}; expected integers or floats.")
        k = arr.shape[0]
        if k < max(MIN_FRAMES, 2 * p.harmonic + 1):
            raise PhasorInputError(
                f"{source}: the stack has {k} frames; the phasor segmenter needs at least "
                f"{max(MIN_FRAMES, 2 * p.harmonic + 1)} Raman shifts (harmonic {p.harmonic} needs {2 * p.harmonic + 1}; "
                f"the bundle's minimum is {MIN_FRAMES}). Is this a single image or a label map?"
            )
        if min(arr.shape[1:]) < 1:
            raise PhasorInputError(f"{source}: the stack has no pixels (shape {arr.shape}).")
        try:
            wn = validate_wavenumbers(wavenumbers, k, source)
        except ValueError as e:
            raise PhasorInputError(str(e)) from e
        arr = np.ascontiguousarray(arr, dtype=np.float32)  # never modified in place: the caller's array stays
        pixel_sums = arr.sum(axis=0)
        valid = np.isfinite(pixel_sums)  # a NaN or Inf anywhere in a spectrum makes its sum non-finite
        if not valid.all():
            finite = np.isfinite(arr)
            valid = finite.all(axis=0)
            arr = _repair_non_finite(arr.copy(), finite, source)
            pixel_sums = arr.sum(axis=0)
        if pixel_sums.min() == pixel_sums.max() and not np.any(arr != arr.flat[0]):
            raise PhasorInputError(
                f"{source}: every value of the stack is {float(arr.flat[0]):g}; a constant (or all-zero) stack holds "
                "no spectra to segment. Is it an empty acquisition or the wrong file?"
            )
        on_grid = wn.shape == CANONICAL_WAVENUMBERS.shape and np.allclose(wn, CANONICAL_WAVENUMBERS, atol=1e-6)
        if not on_grid:  # on the grid, linear interpolation at the samples is the identity: skip the copy
            try:
                resampled = SpectralResample()(MetaTensor(torch.from_numpy(arr), meta={"filename_or_obj": source}), wn)
            except ValueError as e:
                raise PhasorInputError(str(e)) from e
            arr = np.ascontiguousarray(resampled.as_tensor().numpy())
        # The phasor's moments (sum, and the sums weighted by cos and sin) are linear in the signal, so the
        # backgrounds are subtracted from the three moment images instead of from all K frames: the same
        # result as subtracting them from the stack first, at a fraction of the memory traffic.
        moments = np.stack(phasor_from_signal(arr, axis=0, harmonic=p.harmonic, normalize=False, dtype=np.float64))
        if p.background_method != "none":
            spectrum = SubtractSpectralBackground(p.background_method, p.background_percentile).background(
                torch.from_numpy(arr)
            )
            spectrum = np.broadcast_to(spectrum.numpy().astype(np.float64).reshape(-1), (arr.shape[0],))
            moments -= np.asarray(
                phasor_from_signal(np.ascontiguousarray(spectrum), harmonic=p.harmonic, normalize=False)
            )[:, None, None]
        if p.background_surface_degree >= 0:
            free = cell_free_mask(moments[0], p.background_surface_degree) & valid
            moments = subtract_background_surface(moments, free, p.background_surface_degree)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = (moments[0] / arr.shape[0]).astype(np.float32)
            real = (moments[1] / moments[0]).astype(np.float32)
            imag = (moments[2] / moments[0]).astype(np.float32)
        return PhasorCoordinates(mean, real, imag, valid, source)

    def segment_phasor(self, coords: PhasorCoordinates) -> PhasorResult:
        """Steps 4–8 on precomputed phasor coordinates (:meth:`phasor`)."""
        p = self.parameters
        threshold = intensity_threshold(coords.mean[coords.valid], p)
        foreground = coords.valid & (coords.mean > threshold) & np.isfinite(coords.real) & np.isfinite(coords.imag)
        mean_t, real_t, imag_t = phasor_threshold(
            np.where(foreground, coords.mean, np.nan).astype(np.float32), coords.real, coords.imag
        )
        _, real_f, imag_f = phasor_filter_median(mean_t, real_t, imag_t, size=p.median_size, repeat=p.median_repeat)
        if p.ld_median_repeat == p.median_repeat:
            real_l, imag_l = real_f, imag_f
        else:
            _, real_l, imag_l = phasor_filter_median(
                mean_t, real_t, imag_t, size=p.median_size, repeat=p.ld_median_repeat
            )
        cursor_fit = fit_cursors(real_f, imag_f, foreground, p, coords.source)
        cursors = cursor_fit.cursors
        nucleus_score = _nucleus_score(real_f, imag_f, foreground, cursors, p)
        nucleus = _clean_nucleus(nucleus_score >= p.nucleus_threshold, p)
        nucleus = _cap_nucleus(nucleus, nucleus_score, foreground, p, coords.source)
        lipid_fraction, lipid_like = _lipid_droplet_pixels(real_l, imag_l, foreground, cursors, p)
        typical = float(np.median(coords.mean[foreground])) if foreground.any() else math.inf
        bright = coords.mean >= p.ld_intensity_ratio * typical
        if cursor_fit.method != "gmm" and foreground.any():
            # the cloud lies far from the reference cursors (another instrument, an envelope): the reference-based
            # lipid cursor says little, so droplets are the foreground's most lipid-like bright pixels instead
            lipid_like = lipid_like | (
                np.nan_to_num(lipid_fraction, nan=-np.inf)
                >= np.nanpercentile(lipid_fraction[foreground], RELATIVE_LIPID_PERCENTILE)
            )
        droplets = _remove_small(lipid_like & bright & foreground, p.ld_min_size)
        droplets = _sharp_objects(droplets, coords.mean, foreground, p.ld_edge_contrast)
        labels = np.zeros(coords.mean.shape, np.uint8)
        labels[nucleus & foreground] = 1
        labels[droplets] = 2
        if p.mrf_iterations > 0:  # step 9: per-class spectra + neighbourhood smoothness (Phasor-MRF style)
            labels = _refine(labels, foreground, coords.mean, nucleus_score, p)
        qc = [cursor_fit.warning] if cursor_fit.warning else []
        qc += _implausible_fractions(labels, foreground, coords.source)
        return PhasorResult(
            labels=labels,
            mean=coords.mean,
            real=real_f.astype(np.float32, copy=False),
            imag=imag_f.astype(np.float32, copy=False),
            foreground=foreground,
            threshold=threshold,
            cursors=cursors,
            nucleus_score=nucleus_score,
            lipid_fraction=lipid_fraction,
            parameters=p,
            cursor_fit=cursor_fit,
            qc=qc,
        )


def _refine(
    labels: np.ndarray, foreground: np.ndarray, mean: np.ndarray, nucleus_score: np.ndarray, p: PhasorParameters
) -> np.ndarray:
    """Step 9: :func:`scripts.phasor.refine.refine_labels` between cytoplasm and nucleus, then the nucleus clean-up.

    The per-class spectral features are each pixel's place between the fitted cytoplasm and nucleus
    cursors (its nucleus score) and its brightness (log of the mean intensity relative to the median
    foreground pixel). Lipid droplets keep their labels: refining them too (with their lipid fraction
    as a feature) lost 0.02–0.2 droplet Dice on the fitting data, and Gaussian models of the raw
    phasors (G, S) lost 0.005–0.01 nucleus Dice.
    """
    level = float(np.median(mean[foreground])) if foreground.any() else 1.0
    log_mean = np.log(np.maximum(mean, 1e-3 * abs(level)) / max(abs(level), 1e-12))
    features = np.stack([np.nan_to_num(nucleus_score), log_mean]).astype(np.float32)
    refined = refine_labels(labels, foreground, features, p.mrf_iterations, p.mrf_beta, classes=(0, 1))
    out = np.where(labels == 2, 2, 0).astype(np.uint8)
    out[_clean_nucleus(refined == 1, p) & foreground & (labels != 2)] = 1
    return out


def _implausible_fractions(labels: np.ndarray, foreground: np.ndarray, source: str) -> list[str]:
    """QC flags (each logged as a WARNING) for label fractions of the foreground above :data:`MAX_CLASS_FRACTION`."""
    n = int(foreground.sum())
    flags = []
    for (name, limit), value in zip(MAX_CLASS_FRACTION.items(), (1, 2), strict=True):
        share = float((labels == value).sum()) / n if n else 0.0
        if share > limit:
            words = name.replace("_", " ")
            flag = f"implausible: {words} {100 * share:.0f} % of the foreground (> {100 * limit:.0f} %)"
            logger.warning(
                "%s: %s; is the spectral axis right (wavenumbers, order), and is this a sample of cells?", source, flag
            )
            flags.append(flag)
    return flags


def _repair_non_finite(arr: np.ndarray, finite: np.ndarray, source: str) -> np.ndarray:
    """``arr`` with NaN/Inf (where ``finite`` is False) replaced in place by their frame's median (logged)."""
    for k in np.flatnonzero(~finite.reshape(arr.shape[0], -1).all(axis=1)):
        good = arr[k][finite[k]]
        if good.size == 0:
            raise PhasorInputError(f"{source}: frame {k} has no finite value (all NaN/Inf); the stack is unusable.")
        arr[k][~finite[k]] = np.median(good)
    logger.warning(
        "%s: %d pixels contain NaN/Inf; filled with their frame's median and left unlabelled (background).",
        source,
        int((~finite.all(axis=0)).sum()),
    )
    return arr


def intensity_threshold(mean: np.ndarray, parameters: PhasorParameters) -> float:
    """The mean-intensity threshold of one image (step 4).

    ``threshold_scale`` × the automatic threshold (``threshold_method``) of the mean intensities
    clipped to their 0.5–99.5th percentiles (a few very bright droplets or hot pixels do not
    move it), but at least ``min_intensity_fraction`` × the 99.5th percentile and above zero.

    Parameters
    ----------
    mean : ndarray
        Mean intensities (any shape; non-finite values ignored).
    parameters : PhasorParameters

    Returns
    -------
    float
        Pixels with a mean strictly above it are foreground. ``inf`` when nothing is positive.

    Examples
    --------
    >>> x = np.r_[np.zeros(100), np.ones(100)]
    >>> 0 < intensity_threshold(x, PhasorParameters()) < 1
    True
    """
    from skimage import filters

    values = np.asarray(mean, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0 or not values.max() > 0:
        return math.inf
    step = max(1, values.size // 500_000)
    lo, hi = np.percentile(values[::step], [0.5, 99.5])
    floor = max(parameters.min_intensity_fraction * hi, np.finfo(np.float32).tiny)
    if not hi > lo:
        return float(floor)
    clipped = np.clip(values[::step], lo, hi)
    if parameters.threshold_method == "noise":  # background level + NOISE_SIGMAS robust sd, below Otsu
        below = clipped[clipped <= filters.threshold_otsu(clipped)]
        centre = float(np.median(below))
        auto = centre + NOISE_SIGMAS * 1.4826 * float(np.median(np.abs(below - centre)))
    else:
        auto = float(getattr(filters, f"threshold_{parameters.threshold_method}")(clipped))
    return float(max(parameters.threshold_scale * auto, floor))


def _nucleus_score(
    real: np.ndarray, imag: np.ndarray, foreground: np.ndarray, cursors: dict[str, PhasorCursor], p: PhasorParameters
) -> np.ndarray:
    """Nucleus score per pixel (line fraction or ellipse membership), averaged over foreground neighbours."""
    n, c = cursors["nucleus"], cursors["cytoplasm"]
    if p.nucleus_rule == "line":
        if (n.real, n.imag) == (c.real, c.imag):
            raw = np.zeros(real.shape, np.float32)
        else:
            raw = phasor_component_fraction(real, imag, [n.real, c.real], [n.imag, c.imag])
    else:
        raw = mask_from_elliptic_cursor(
            real, imag, n.real, n.imag, radius=n.radius, radius_minor=n.radius_minor, angle=n.angle
        )
    raw = np.where(foreground, np.nan_to_num(np.asarray(raw, np.float32)), 0.0).astype(np.float32)
    if p.nucleus_smoothing > 0:
        weight = ndimage.gaussian_filter(foreground.astype(np.float32), p.nucleus_smoothing, mode="constant")
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = ndimage.gaussian_filter(raw, p.nucleus_smoothing, mode="constant") / weight
    return np.where(foreground, raw, np.nan).astype(np.float32)


def _cap_nucleus(
    mask: np.ndarray, score: np.ndarray, foreground: np.ndarray, p: PhasorParameters, source: str
) -> np.ndarray:
    """A nucleus map that would cover more than :data:`MAX_CLASS_FRACTION` of the foreground is re-thresholded to
    the :data:`NUCLEUS_CAP` most nucleus-like foreground pixels (a WARNING says so): no sample of cells is mostly
    nucleus, and such maps come from a cloud the cursors do not describe (a wrong axis, an envelope)."""
    n = int(foreground.sum())
    share = float((mask & foreground).sum()) / n if n else 0.0
    if share <= MAX_CLASS_FRACTION["nucleus"]:
        return mask
    values = score[foreground & np.isfinite(score)]
    if values.size == 0:
        return np.zeros_like(mask)
    threshold = float(np.quantile(values, 1.0 - NUCLEUS_CAP))
    logger.warning(
        "%s: the nucleus would cover %.0f %% of the foreground; keeping the %.0f %% most nucleus-like pixels "
        "(nucleus score >= %.2f instead of %.2f)",
        source,
        100 * share,
        100 * NUCLEUS_CAP,
        threshold,
        p.nucleus_threshold,
    )
    return _clean_nucleus(np.nan_to_num(score, nan=-np.inf) >= max(threshold, p.nucleus_threshold), p)


def _clean_nucleus(mask: np.ndarray, p: PhasorParameters) -> np.ndarray:
    """Fill holes, open, drop small objects."""
    mask = np.asarray(mask, bool)
    if p.nucleus_fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    if p.nucleus_opening > 0:
        from skimage.morphology import disk

        mask = ndimage.binary_opening(mask, structure=disk(p.nucleus_opening))
    return _remove_small(mask, p.nucleus_min_size)


def _lipid_droplet_pixels(
    real: np.ndarray, imag: np.ndarray, foreground: np.ndarray, cursors: dict[str, PhasorCursor], p: PhasorParameters
) -> tuple[np.ndarray, np.ndarray]:
    """(lipid fraction on the cytoplasm–lipid line, lipid-like mask by ``ld_rule``)."""
    lip, cyt = cursors["lipid"], cursors["cytoplasm"]
    if (lip.real, lip.imag) == (cyt.real, cyt.imag):
        fraction = np.zeros(real.shape, np.float32)
    else:
        fraction = np.asarray(phasor_component_fraction(real, imag, [lip.real, cyt.real], [lip.imag, cyt.imag]))
    fraction = np.where(foreground, fraction, np.nan).astype(np.float32)
    if p.ld_rule == "line":
        like = np.nan_to_num(fraction, nan=-1.0) >= p.ld_threshold
    else:
        like = mask_from_circular_cursor(
            np.nan_to_num(real, nan=9.0), np.nan_to_num(imag, nan=9.0), lip.real, lip.imag, radius=lip.radius
        )
    return fraction, np.asarray(like, bool) & foreground


def _sharp_objects(mask: np.ndarray, intensity: np.ndarray, foreground: np.ndarray, contrast: float) -> np.ndarray:
    """Keep objects whose mean intensity is at least ``contrast`` × the mean of a ring around them.

    In-focus droplets end within the optical resolution; droplets above or below the focal plane
    (not labelled) are broad blurs whose surroundings are nearly as bright. The ring is the
    foreground within ``DROPLET_RING_PX`` pixels (a droplet is compared with the cytoplasm around
    it, not with the empty background beside a cell); objects without such a ring are kept.
    """
    if contrast <= 0 or not mask.any():
        return mask
    labelled, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    grown = ndimage.grey_dilation(labelled, size=2 * DROPLET_RING_PX + 1)
    ring = (labelled == 0) & (grown > 0) & foreground
    inner_sum = np.bincount(labelled.reshape(-1), weights=intensity.reshape(-1), minlength=n + 1)
    inner_n = np.bincount(labelled.reshape(-1), minlength=n + 1)
    ring_sum = np.bincount(grown[ring], weights=intensity[ring], minlength=n + 1)
    ring_n = np.bincount(grown[ring], minlength=n + 1)
    inner = inner_sum / np.maximum(inner_n, 1)
    outer = ring_sum / np.maximum(ring_n, 1)
    keep = (inner >= contrast * outer) | (ring_n == 0)
    keep[0] = False
    return keep[labelled]


def _remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """``mask`` without 8-connected objects of fewer than ``min_size`` pixels."""
    mask = np.asarray(mask, bool)
    if min_size <= 1 or not mask.any():
        return mask
    labelled, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labelled.reshape(-1), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    return keep[labelled]
