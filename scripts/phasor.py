"""Optimized spectral-phasor segmentation of HSRS stacks: nucleus and lipid droplets, no training.

This is the paper's baseline and gold-standard maker: every pixel's C–H spectrum becomes a point
(G, S) on the phasor plot, clusters are picked with cursors and mapped back to the image. Here
the cursors are placed **automatically per image** and every tunable is a field of
:class:`PhasorParameters`, fitted on labelled data by ``python -m scripts.phasor fit``
(:mod:`scripts.phasor_fit`). The shipped defaults, ``configs/phasor_parameters.yaml``, were fitted
on the training split (22 stacks) of the simulator's default preset, in about 5 minutes on 2 cores::

    python -m scripts.simulate --out /tmp/phasor_fit --num 32 --size 256 --seed 0 --preset default
    python -m scripts.phasor fit --datalist /tmp/phasor_fit/datalist.json --split training \\
        --out configs/phasor_parameters.yaml --seed 0

:meth:`PhasorSegmenter.segment` runs, per stack (K, H, W):

1. **Canonical grid.** :class:`~scripts.transforms.SpectralResample` onto the 64-frame
   2800–3050 cm⁻¹ grid (skipped when the stack is already on it: interpolating at the samples
   is the identity). The first harmonic's period is then the same window for every image, so
   cluster positions are comparable between images. Descending stacks are handled there
   (a descending axis would mirror S).
2. **Background.** :class:`~scripts.transforms.SubtractSpectralBackground` subtracts the median
   spectrum of the dimmest 10 % of pixels (detector offset + water + uniform non-Raman
   background). A constant offset ``b`` has no first-harmonic content, so it scales a pixel's
   phasor by ``I / (I + b)``: without this step clusters drift radially with the offset. Then a
   quadratic surface per frame, fitted to the cell-free pixels, removes the part of the non-Raman
   background that grows towards the field corners (:mod:`scripts.phasor_background`); left in,
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
   initialised at the phasors of reference spectra (:mod:`scripts.raman_spectra`: cytoplasm =
   protein + a little lipid, nucleus = protein + DNA, lipid droplet = lipid). The clusters are
   named by their order along the reference cytoplasm→nucleus axis, so they follow each image
   (residual background, calibration shift, cell type). The lipid cursor is the reference lipid
   phasor rotated by the phase shift measured on those clusters (a calibration error rotates
   every phasor). Explicit cursors can be given instead (``auto_cursors=False``).
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

The result is a label map (H, W) uint8 (0 background, 1 nucleus, 2 lipid droplet) like the
network's, with everything needed to draw the phasor plot (:mod:`scripts.phasor_plot`).

Command line::

    python -m scripts.phasor fit --datalist D/datalist.json --split training --out P.yaml --seed 0
    python -m scripts.phasor segment STACK [STACK ...] --out O [--parameters P.yaml]

Folders of stacks: ``configs/phasor.yaml`` (:class:`scripts.phasor_job.PhasorJob`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from phasorpy.cluster import phasor_cluster_gmm
from phasorpy.component import phasor_component_fraction
from phasorpy.cursor import mask_from_circular_cursor, mask_from_elliptic_cursor
from phasorpy.phasor import phasor_from_signal, phasor_transform
from scipy import ndimage
from threadpoolctl import threadpool_limits

from scripts.phasor_background import cell_free_mask, subtract_background_surface
from scripts.phasor_compat import phasor_filter_median, phasor_threshold
from scripts.raman_spectra import raman_spectrum
from scripts.spectral_axis import CANONICAL_WAVENUMBERS, MIN_FRAMES, validate_wavenumbers
from scripts.transforms import SpectralResample, SubtractSpectralBackground

logger = logging.getLogger(__name__)

#: Default parameters file read by ``configs/phasor.yaml`` (relative to the bundle root).
DEFAULT_PARAMETERS_FILE = Path(__file__).resolve().parent.parent / "configs" / "phasor_parameters.yaml"
THRESHOLD_METHODS = ("otsu", "li", "triangle", "yen", "noise")
BACKGROUND_METHODS = ("dimmest_pixels", "frame_percentile", "offset", "none")
NUCLEUS_RULES = ("line", "ellipse")
LIPID_DROPLET_RULES = ("line", "circle")
LIPID_CALIBRATIONS = ("phase", "none")
CURSOR_NAMES = ("cytoplasm", "nucleus", "lipid")
#: Fewest foreground pixels per Gaussian component to fit clusters; below it the references are used.
MIN_PIXELS_PER_CLUSTER = 25
#: Standard deviation (G, S units) of the mixture components before the first EM step.
INITIAL_CLUSTER_SD = 0.05
#: A fitted component counts when its ellipse holds at least this share of the fitted pixels.
MIN_CLUSTER_SHARE = 0.02
#: ``threshold_method="noise"``: the threshold is this many robust standard deviations above the background.
NOISE_SIGMAS = 5.0
#: Width (px) of the ring around a droplet candidate that its edge contrast is measured against.
DROPLET_RING_PX = 2


class PhasorInputError(ValueError):
    """A stack the phasor segmenter cannot use; the message names the stack and the problem."""


# ----------------------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class PhasorParameters:
    """Every tunable of :class:`PhasorSegmenter`; YAML/JSON round-trip with :meth:`save` / :meth:`load`.

    Parameters
    ----------
    harmonic : int
        Phasor harmonic (1: one period over the 2800–3050 cm⁻¹ window).
    background_method : str
        ``"dimmest_pixels"``, ``"frame_percentile"``, ``"offset"`` (see
        :class:`~scripts.transforms.SubtractSpectralBackground`) or ``"none"``.
    background_percentile : float
        Percentile used by the background method (dimmest-pixel fraction, %).
    background_surface_degree : int
        Degree of the polynomial surface per frame fitted to the cell-free pixels and subtracted
        (:mod:`scripts.phasor_background`; field-dependent non-Raman background); -1 disables.
    threshold_method : str
        Automatic intensity threshold: ``"otsu"``, ``"li"``, ``"triangle"`` or ``"yen"``
        (``skimage.filters.threshold_*`` on the mean intensity), or ``"noise"`` (the median of the
        pixels below Otsu's threshold + ``NOISE_SIGMAS`` robust standard deviations of them).
    threshold_scale : float
        Multiplies the automatic threshold (> 1 stricter).
    min_intensity_fraction : float
        Pixels with mean intensity below this fraction of the 99.5th percentile are background
        whatever the threshold (tiny or negative sums).
    median_size, median_repeat : int
        Size and number of passes of the median filter of G and S used for cursors and nucleus.
    auto_cursors : bool
        Place cursors per image by Gaussian mixture (True) or use ``cursors`` / the references.
    clusters : int
        Gaussian components fitted to the foreground phasors (2 or 3).
    cluster_lipid_cut : float
        Pixels whose lipid fraction on the reference cytoplasm–lipid line exceeds this are left
        out of the cluster fit (droplets, out-of-focus lipid); 1 keeps every foreground pixel.
    gmm_samples : int
        At most this many foreground pixels (a seeded random subset) are used for the fit.
    cursor_sigma : float
        Size of the cluster ellipses in standard deviations (drawn; used by ``nucleus_rule="ellipse"``).
    seed : int
        Seed of the pixel subset and of the mixture fit (results are deterministic).
    cursors : dict or None
        Explicit cursor positions ``{"cytoplasm": [G, S], "nucleus": [G, S], "lipid": [G, S]}``
        (any subset); with ``auto_cursors`` they only initialise the mixture.
    reference_nuclear_dna : float
        DNA per protein of the reference nuclear spectrum (cursor initialisation).
    reference_cytoplasm_lipid : float
        Lipid per protein of the reference cytoplasm spectrum (cursor initialisation).
    lipid_calibration : str
        ``"phase"``: rotate the lipid cursor by the phase shift of the fitted clusters relative
        to their references; ``"none"``: keep the reference lipid phasor.
    nucleus_rule : str
        ``"line"`` (nucleus fraction between cytoplasm and nucleus cursors) or ``"ellipse"``
        (inside the nucleus cluster's ellipse).
    nucleus_threshold : float
        Threshold on the smoothed nucleus score (0–1).
    nucleus_smoothing : float
        Standard deviation (px) of the Gaussian neighbourhood averaging the nucleus score.
    nucleus_min_size : int
        Nuclei with fewer pixels are removed.
    nucleus_opening : int
        Radius (px) of the morphological opening of the nucleus mask (0: none).
    nucleus_fill_holes : bool
        Fill holes in nuclei.
    ld_rule : str
        ``"line"`` (lipid fraction between cytoplasm and lipid cursors) or ``"circle"``
        (circular cursor of radius ``ld_cursor_radius`` on the lipid cursor).
    ld_median_repeat : int
        Median-filter passes of G and S for the droplet rule (0 keeps 1-px droplets).
    ld_threshold : float
        Lipid fraction above which a pixel is lipid-like (``ld_rule="line"``).
    ld_cursor_radius : float
        Radius of the circular lipid cursor (``ld_rule="circle"``).
    ld_intensity_ratio : float
        A droplet pixel is at least this many times brighter than the median foreground pixel.
    ld_min_size : int
        Droplets with fewer pixels are removed.
    ld_edge_contrast : float
        A droplet's mean intensity is at least this many times that of a 2-px ring around it
        (rejects the broad blur of droplets outside the focal plane; 0 disables).

    Examples
    --------
    >>> p = PhasorParameters(median_repeat=3)
    >>> PhasorParameters.from_dict(p.to_dict()) == p
    True
    """

    harmonic: int = 1
    background_method: str = "dimmest_pixels"
    background_percentile: float = 10.0
    background_surface_degree: int = 2
    threshold_method: str = "otsu"
    threshold_scale: float = 1.0
    min_intensity_fraction: float = 0.02
    median_size: int = 3
    median_repeat: int = 2
    auto_cursors: bool = True
    clusters: int = 3
    cluster_lipid_cut: float = 0.3
    gmm_samples: int = 5000
    cursor_sigma: float = 2.0
    seed: int = 0
    cursors: dict[str, tuple[float, float]] | None = None
    reference_nuclear_dna: float = 0.35
    reference_cytoplasm_lipid: float = 0.14
    lipid_calibration: str = "phase"
    nucleus_rule: str = "line"
    nucleus_threshold: float = 0.5
    nucleus_smoothing: float = 2.0
    nucleus_min_size: int = 200
    nucleus_opening: int = 0
    nucleus_fill_holes: bool = True
    ld_rule: str = "line"
    ld_median_repeat: int = 0
    ld_threshold: float = 0.5
    ld_cursor_radius: float = 0.2
    ld_intensity_ratio: float = 1.5
    ld_min_size: int = 1
    ld_edge_contrast: float = 1.5

    def __post_init__(self) -> None:
        choices = {
            "background_method": BACKGROUND_METHODS,
            "threshold_method": THRESHOLD_METHODS,
            "nucleus_rule": NUCLEUS_RULES,
            "ld_rule": LIPID_DROPLET_RULES,
            "lipid_calibration": LIPID_CALIBRATIONS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"PhasorParameters.{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        integers = {
            "harmonic": (1, 8),
            "background_surface_degree": (-1, 4),
            "median_size": (1, 15),
            "median_repeat": (0, 20),
            "clusters": (2, 3),
            "gmm_samples": (100, 10**7),
            "nucleus_min_size": (0, 10**8),
            "nucleus_opening": (0, 50),
            "ld_median_repeat": (0, 20),
            "ld_min_size": (0, 10**6),
        }
        for name, (lo, hi) in integers.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or not lo <= value <= hi:
                raise ValueError(f"PhasorParameters.{name} must be an integer in [{lo}, {hi}], got {value!r}.")
            object.__setattr__(self, name, int(value))
        if self.median_size % 2 == 0:
            raise ValueError(f"PhasorParameters.median_size must be odd (3 for 3×3), got {self.median_size}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer) or self.seed < 0:
            raise ValueError(f"PhasorParameters.seed must be a non-negative integer, got {self.seed!r}.")
        ranges = {
            "background_percentile": (0.0, 100.0, False),
            "threshold_scale": (0.0, 100.0, False),
            "min_intensity_fraction": (0.0, 1.0, True),
            "cursor_sigma": (0.0, 10.0, False),
            "reference_nuclear_dna": (0.0, 10.0, True),
            "reference_cytoplasm_lipid": (0.0, 10.0, True),
            "nucleus_threshold": (0.0, 1.0, True),
            "nucleus_smoothing": (0.0, 100.0, True),
            "ld_threshold": (0.0, 1.0, True),
            "ld_cursor_radius": (0.0, 2.0, False),
            "ld_intensity_ratio": (0.0, 100.0, True),
            "ld_edge_contrast": (0.0, 100.0, True),
            "cluster_lipid_cut": (0.0, 1.0, True),
        }
        for name, (lo, hi, closed) in ranges.items():
            value = getattr(self, name)
            ok = isinstance(value, int | float | np.number) and not isinstance(value, bool) and math.isfinite(value)
            ok = ok and (lo <= value <= hi if closed else lo < value < hi)
            if not ok:
                interval = f"[{lo:g}, {hi:g}]" if closed else f"({lo:g}, {hi:g})"
                raise ValueError(f"PhasorParameters.{name} must be a number in {interval}, got {value!r}.")
            object.__setattr__(self, name, float(value))
        for name in ("auto_cursors", "nucleus_fill_holes"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PhasorParameters.{name} must be true or false, got {getattr(self, name)!r}.")
        object.__setattr__(self, "cursors", _check_cursors(self.cursors))

    def to_dict(self) -> dict[str, Any]:
        """The parameters as plain Python values (lists for cursor positions), ready for YAML/JSON."""
        d = dataclasses.asdict(self)
        if d["cursors"] is not None:
            d["cursors"] = {k: [float(v[0]), float(v[1])] for k, v in d["cursors"].items()}
        return d

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PhasorParameters:
        """Build from a mapping; unknown keys raise ValueError listing the valid ones."""
        if not isinstance(values, Mapping):
            raise ValueError(f"phasor parameters must be a mapping of name: value, got {type(values).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown phasor parameter(s) {unknown}; valid names: {sorted(known)}.")
        return cls(**dict(values))

    def replace(self, **changes: Any) -> PhasorParameters:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def save(self, path: str | Path, header: str = "", extra: Mapping[str, Any] | None = None) -> Path:
        """Write ``{"parameters": ..., **extra}`` as YAML (``.yaml``/``.yml``) or JSON (``.json``).

        Parameters
        ----------
        path : str or Path
            Output file; the format follows the suffix.
        header : str
            Comment lines written at the top of a YAML file (``# `` is prepended to each line).
        extra : mapping, optional
            More top-level entries (e.g. how the parameters were fitted).
        """
        from scripts.writer import atomic_path

        path = Path(path)
        content = {"parameters": self.to_dict(), **(dict(extra) if extra else {})}
        suffix = path.suffix.lower()
        if suffix in (".yaml", ".yml"):
            import yaml

            comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
            text = comment + yaml.safe_dump(content, sort_keys=False, default_flow_style=False)
        elif suffix == ".json":
            text = json.dumps(content, indent=2) + "\n"
        else:
            raise ValueError(
                f"{path}: phasor parameters are saved as .yaml, .yml or .json, not {suffix or 'no suffix'}."
            )
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PhasorParameters:
        """Read parameters saved by :meth:`save` (or a bare mapping of parameters), YAML or JSON."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such phasor parameters file.")
        try:
            if path.suffix.lower() == ".json":
                content = json.loads(path.read_text())
            else:
                import yaml

                content = yaml.safe_load(path.read_text())
        except Exception as e:
            raise ValueError(f"{path}: cannot parse the phasor parameters ({type(e).__name__}: {e}).") from e
        if isinstance(content, Mapping) and "parameters" in content:
            content = content["parameters"]
        try:
            return cls.from_dict(content or {})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e


def _check_cursors(cursors: Mapping[str, Sequence[float]] | None) -> dict[str, tuple[float, float]] | None:
    if cursors is None:
        return None
    if not isinstance(cursors, Mapping):
        raise ValueError(f"PhasorParameters.cursors must map names {CURSOR_NAMES} to [G, S], got {cursors!r}.")
    out = {}
    for name, pos in cursors.items():
        if name not in CURSOR_NAMES:
            raise ValueError(f"PhasorParameters.cursors: unknown cursor {name!r}; use {CURSOR_NAMES}.")
        try:
            g, s = (float(v) for v in pos)
        except (TypeError, ValueError) as e:
            raise ValueError(f"PhasorParameters.cursors[{name!r}] must be [G, S], got {pos!r}.") from e
        if not (math.isfinite(g) and math.isfinite(s) and math.hypot(g, s) <= 1.0):
            raise ValueError(f"PhasorParameters.cursors[{name!r}] = {pos!r} lies outside the unit circle.")
        out[name] = (g, s)
    return out


def load_parameters(path: str | Path | None = None) -> PhasorParameters:
    """The tuned parameters from ``path`` (default: ``configs/phasor_parameters.yaml``), else the class defaults.

    A missing *default* file falls back to :class:`PhasorParameters` defaults with a logged warning;
    a missing file that was asked for raises FileNotFoundError.
    """
    if path is None:
        if DEFAULT_PARAMETERS_FILE.is_file():
            return PhasorParameters.load(DEFAULT_PARAMETERS_FILE)
        logger.warning("%s not found; using untuned PhasorParameters defaults.", DEFAULT_PARAMETERS_FILE)
        return PhasorParameters()
    return PhasorParameters.load(path)


# -------------------------------------------------------------------------------------- references
def reference_phasors(
    harmonic: int = 1,
    nuclear_dna: float = 0.35,
    cytoplasm_lipid: float = 0.14,
    wavenumbers: Sequence[float] | np.ndarray = CANONICAL_WAVENUMBERS,
) -> dict[str, tuple[float, float]]:
    """Phasor positions (G, S) of the reference spectra of cytoplasm, nucleus and lipid droplet.

    Spectra from :func:`scripts.raman_spectra.raman_spectrum` (peak-normalised, at the default
    spectral resolution), mixed by amount: cytoplasm = protein + ``cytoplasm_lipid`` × lipid;
    nucleus = protein + ``nuclear_dna`` × DNA + 0.03 × lipid; lipid droplet = lipid.

    Parameters
    ----------
    harmonic : int
        Phasor harmonic.
    nuclear_dna, cytoplasm_lipid : float
        Mixing amounts (per unit protein).
    wavenumbers : array_like
        The grid the spectra are sampled on (default: the canonical grid).

    Returns
    -------
    dict
        ``{"cytoplasm": (G, S), "nucleus": (G, S), "lipid": (G, S)}``.

    Examples
    --------
    >>> ref = reference_phasors()
    >>> ref["lipid"][1] > ref["cytoplasm"][1] > ref["nucleus"][1]  # lipid peaks earliest in the window
    True
    """
    wn = np.asarray(wavenumbers, dtype=np.float64)
    lipid, protein, dna = (raman_spectrum(c, wn) for c in ("lipid", "protein", "dna"))
    spectra = {
        "cytoplasm": protein + cytoplasm_lipid * lipid,
        "nucleus": protein + nuclear_dna * dna + 0.03 * lipid,
        "lipid": lipid,
    }
    out = {}
    for name, spectrum in spectra.items():
        _, g, s = phasor_from_signal(spectrum, harmonic=harmonic)
        out[name] = (float(g), float(s))
    return out


# ------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class PhasorCursor:
    """One cursor on the phasor plot: a centre, an ellipse around it, and where it came from.

    Attributes
    ----------
    name : str
        ``"cytoplasm"``, ``"nucleus"`` or ``"lipid"``.
    real, imag : float
        Centre (G, S).
    radius, radius_minor : float
        Semi-axes of the ellipse (the cluster's ``cursor_sigma`` ellipse; for the lipid cursor the
        circular cursor radius).
    angle : float
        Direction of the major axis, radians.
    source : str
        ``"gmm"`` (fitted to this image), ``"calibrated"`` (reference rotated by the fitted phase
        shift), ``"reference"`` or ``"explicit"``.
    """

    name: str
    real: float
    imag: float
    radius: float
    radius_minor: float
    angle: float
    source: str


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

    def statistics(self) -> dict[str, Any]:
        """Per-image numbers for the CSV: threshold, areas (px), droplet count, cursor centres."""
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
    >>> from scripts.simulate import simulate_phantom
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
        cursors = place_cursors(real_f, imag_f, foreground, p, coords.source)
        nucleus_score = _nucleus_score(real_f, imag_f, foreground, cursors, p)
        nucleus = _clean_nucleus(nucleus_score >= p.nucleus_threshold, p)
        lipid_fraction, lipid_like = _lipid_droplet_pixels(real_l, imag_l, foreground, cursors, p)
        typical = float(np.median(coords.mean[foreground])) if foreground.any() else math.inf
        bright = coords.mean >= p.ld_intensity_ratio * typical
        droplets = _remove_small(lipid_like & bright & foreground, p.ld_min_size)
        droplets = _sharp_objects(droplets, coords.mean, foreground, p.ld_edge_contrast)
        labels = np.zeros(coords.mean.shape, np.uint8)
        labels[nucleus & foreground] = 1
        labels[droplets] = 2
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
        )


def _repair_non_finite(arr: np.ndarray, finite: np.ndarray, source: str) -> np.ndarray:
    """``arr`` with NaN/Inf (where ``finite`` is False) replaced in place by their frame's median (logged)."""
    for k in np.flatnonzero(~finite.reshape(arr.shape[0], -1).all(axis=1)):
        good = arr[k][finite[k]]
        if good.size == 0:
            raise PhasorInputError(f"{source}: frame {k} has no finite value (all NaN/Inf); the stack is unusable.")
        arr[k][~finite[k]] = np.median(good)
    logger.warning(
        "%s: %d pixels contain NaN/Inf; filled with their frame's median and left unlabelled (background).",
        source, int((~finite.all(axis=0)).sum()),
    )  # fmt: skip
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


# ------------------------------------------------------------------------------------------ cursors
def place_cursors(
    real: np.ndarray,
    imag: np.ndarray,
    foreground: np.ndarray,
    parameters: PhasorParameters,
    source: str = "stack",
) -> dict[str, PhasorCursor]:
    """Cytoplasm, nucleus and lipid cursors for one image (step 6).

    With ``auto_cursors``, a Gaussian mixture of ``clusters`` components is fitted to the
    foreground phasors (``phasorpy.cluster.phasor_cluster_gmm``, initialised at the reference or
    explicit positions, seeded) that are not lipid-rich (lipid fraction on the reference
    cytoplasm–lipid line at most ``cluster_lipid_cut``: droplets and out-of-focus lipid would
    otherwise take a component and leave nucleus and cytoplasm merged in one). The component
    furthest along the reference cytoplasm→nucleus direction is the nucleus; with 3 components
    the one furthest along cytoplasm→lipid is set aside (lipid-rich cytoplasm); the remaining
    one is the cytoplasm. The
    lipid cursor is the reference (or explicit) lipid phasor, rotated by the mean phase shift of
    the fitted cytoplasm and nucleus clusters relative to their references
    (``lipid_calibration="phase"``). Too few foreground pixels, or clusters that coincide, fall
    back to the reference positions (logged).

    Returns
    -------
    dict of PhasorCursor
    """
    p = parameters
    ref = reference_phasors(p.harmonic, p.reference_nuclear_dna, p.reference_cytoplasm_lipid)
    given = p.cursors or {}
    start = {name: given.get(name, ref[name]) for name in CURSOR_NAMES}
    start_source = {name: "explicit" if name in given else "reference" for name in CURSOR_NAMES}
    lipid_radius = p.ld_cursor_radius

    def fixed(name: str, radius: float = 0.05) -> PhasorCursor:
        g, s = start[name]
        return PhasorCursor(name, g, s, radius, radius, 0.0, start_source[name])

    fallback = {name: fixed(name, lipid_radius if name == "lipid" else 0.05) for name in CURSOR_NAMES}
    if not p.auto_cursors:
        return fallback
    ref_c, ref_n, ref_l = (np.asarray(start[n], dtype=np.float64) for n in CURSOR_NAMES)
    usable = foreground & np.isfinite(real) & np.isfinite(imag)
    if p.cluster_lipid_cut < 1.0:  # droplets and out-of-focus lipid would pull a component away from the cell
        lipid = phasor_component_fraction(real, imag, [ref_l[0], ref_c[0]], [ref_l[1], ref_c[1]])
        usable &= np.nan_to_num(lipid, nan=1.0) <= p.cluster_lipid_cut
    idx = np.flatnonzero(usable.reshape(-1))
    if idx.size < MIN_PIXELS_PER_CLUSTER * p.clusters:
        logger.info("%s: %d foreground pixels, too few to fit cursors; using reference cursors.", source, idx.size)
        return fallback
    rng = np.random.default_rng(p.seed)
    if idx.size > p.gmm_samples:
        idx = np.sort(rng.choice(idx, p.gmm_samples, replace=False))
    g, s = real.reshape(-1)[idx].astype(np.float64), imag.reshape(-1)[idx].astype(np.float64)
    # components start at the cytoplasm and nucleus cursors (and lipid-rich cytoplasm, a fifth of the way to lipid)
    init = np.asarray([ref_c, ref_n, ref_c + 0.2 * (ref_l - ref_c)][: p.clusters], dtype=np.float64)
    with threadpool_limits(limits=1, user_api="blas"):  # tiny 2×2 solves: BLAS threads only add latency
        cg, cs, ra, rb, ang = phasor_cluster_gmm(
            g,
            s,
            clusters=p.clusters,
            sigma=p.cursor_sigma,
            covariance_type="full",
            weights_init=np.full(p.clusters, 1.0 / p.clusters),
            means_init=init,
            precisions_init=np.repeat(np.eye(2)[None] / INITIAL_CLUSTER_SD**2, p.clusters, axis=0),
            init_params="random_from_data",  # unused: weights, means and precisions are all given
            random_state=p.seed,
            reg_covar=1e-6,
        )
    centres = np.stack([cg, cs], axis=1)
    # a component that lost its pixels collapses (centre at the origin, tiny ellipse): keep the
    # components whose cursor_sigma ellipse holds at least MIN_CLUSTER_SHARE of the pixels
    inside = mask_from_elliptic_cursor(g, s, cg, cs, radius=ra, radius_minor=rb, angle=ang).mean(axis=1)
    live = [i for i in range(p.clusters) if inside[i] >= MIN_CLUSTER_SHARE]
    if len(live) < 2:
        logger.info("%s: fewer than two phasor clusters hold pixels; using reference cursors.", source)
        return fallback
    nucleus = max(live, key=lambda i: float(np.dot(centres[i] - ref_c, _unit(ref_n - ref_c))))
    rest = [i for i in live if i != nucleus]
    cytoplasm = min(rest, key=lambda i: float(np.dot(centres[i] - ref_c, _unit(ref_l - ref_c))))
    if np.hypot(*(centres[nucleus] - centres[cytoplasm])) < 1e-4:
        logger.info("%s: the fitted nucleus and cytoplasm clusters coincide; using reference cursors.", source)
        return fallback
    out = {
        name: PhasorCursor(name, float(cg[i]), float(cs[i]), float(ra[i]), float(rb[i]), float(ang[i]), "gmm")
        for name, i in (("cytoplasm", cytoplasm), ("nucleus", nucleus))
    }
    lipid_g, lipid_s = start["lipid"]
    lipid_source = start_source["lipid"]
    if p.lipid_calibration == "phase":
        shifts = [
            _wrap(math.atan2(out[n].imag, out[n].real) - math.atan2(start[n][1], start[n][0]))
            for n in ("cytoplasm", "nucleus")
        ]
        lipid_g, lipid_s = (float(v) for v in phasor_transform(lipid_g, lipid_s, float(np.mean(shifts))))
        lipid_source = "calibrated"
    out["lipid"] = PhasorCursor("lipid", lipid_g, lipid_s, lipid_radius, lipid_radius, 0.0, lipid_source)
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(*v))
    return v / n if n > 0 else v


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


# ------------------------------------------------------------------------------- nucleus and droplets
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


# ----------------------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> None:
    """``python -m scripts.phasor {fit,segment} ...``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m scripts.phasor", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="tune PhasorParameters on a labelled datalist (maximise mean Dice)")
    fit.add_argument("--datalist", type=Path, required=True, help="MONAI datalist JSON with image and label paths")
    fit.add_argument("--split", default="training", help="datalist section to fit on (default: training)")
    fit.add_argument("--out", type=Path, required=True, help="parameters file to write (.yaml or .json)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the search (default 0)")
    fit.add_argument("--budget", type=int, default=None, help="number of parameter sets to try")
    fit.add_argument("--start", type=Path, default=None, help="parameters file to start from (default: class defaults)")
    seg = sub.add_parser("segment", help="segment stacks and write label maps")
    seg.add_argument("stacks", type=Path, nargs="+", help="HSRS stacks (any format scripts.reader reads)")
    seg.add_argument("--out", type=Path, required=True, help="output folder")
    seg.add_argument("--parameters", type=Path, default=None, help="parameters file (default: the tuned defaults)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "fit":
            from scripts.phasor_fit import DEFAULT_BUDGET, fit_command

            fit_command(
                args.datalist, args.split, args.out, args.seed, args.budget or DEFAULT_BUDGET, args.start, argv=argv
            )
        else:
            from scripts.phasor_job import PhasorJob

            PhasorJob(args.stacks, args.out, parameters_file=args.parameters).run()
    except (OSError, ValueError, RuntimeError) as e:  # user errors: the message says what to do
        parser.exit(2, f"{parser.prog} {args.command}: error: {e}\n")


if __name__ == "__main__":
    main()
