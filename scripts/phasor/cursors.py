"""Phasor cursors: reference phasors of cytoplasm, nucleus and lipid, and their per-image placement by a Gaussian mixture."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from phasorpy.cluster import phasor_cluster_gmm
from phasorpy.component import phasor_component_fraction
from phasorpy.cursor import mask_from_elliptic_cursor
from phasorpy.phasor import phasor_from_signal, phasor_transform
from scripts.phasor.parameters import CURSOR_NAMES, PhasorParameters
from scripts.spectra.axis import CANONICAL_WAVENUMBERS
from scripts.spectra.reference import raman_spectrum
from threadpoolctl import threadpool_limits

logger = logging.getLogger(__name__)


MIN_PIXELS_PER_CLUSTER = 25
#: Standard deviation (G, S units) of the mixture components before the first EM step.
INITIAL_CLUSTER_SD = 0.05
#: A fitted component counts when its ellipse holds at least this share of the fitted pixels.
MIN_CLUSTER_SHARE = 0.02
#: ``threshold_method="noise"``: the threshold is this many robust standard deviations above the background.


def reference_phasors(
    harmonic: int = 1,
    nuclear_dna: float = 0.35,
    cytoplasm_lipid: float = 0.14,
    wavenumbers: Sequence[float] | np.ndarray = CANONICAL_WAVENUMBERS,
) -> dict[str, tuple[float, float]]:
    """Phasor positions (G, S) of the reference spectra of cytoplasm, nucleus and lipid droplet.

    Spectra from :func:`scripts.spectra.reference.raman_spectrum` (peak-normalised, at the default
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
class CursorFit:
    """How the cursors of one image were placed (:func:`fit_cursors`), for the log and the QC columns.

    Attributes
    ----------
    cursors : dict of PhasorCursor
        ``"cytoplasm"``, ``"nucleus"``, ``"lipid"``.
    method : str
        ``"gmm"`` (mixture initialised at the reference cursors), ``"cloud"`` (mixture fitted to the
        pixel cloud without reference initialisation, clusters named by phase: the cloud was far
        from the references or the reference fit failed), ``"reference"`` (fallback: nothing could be
        fitted), ``"explicit"`` / ``"fixed"`` (``auto_cursors`` off).
    foreground_px : int
        Foreground pixels with finite phasors: the same count as ``foreground_px`` in the statistics.
    fitted_px : int
        Of those, the pixels the mixture was fitted to (before subsampling to ``gmm_samples``).
    cloud_distance : float
        Median distance (G, S units) of the foreground phasors from the nearer of the reference
        cytoplasm and nucleus cursors; NaN without foreground.
    warning : str
        Why the cursors did not come from the reference-initialised fit, in a few words for the QC column
        ("" when they did); the full message was logged as a WARNING.
    """

    cursors: dict[str, PhasorCursor]
    method: str
    foreground_px: int
    fitted_px: int
    cloud_distance: float
    warning: str = ""


#: Median distance (G, S) of the foreground cloud from the reference cytoplasm/nucleus cursors above which
#: the cloud is "far" and the cursors are fitted to it without reference initialisation. Measured on 16
#: benchmark stacks per preset: at most 0.03 (easy), 0.07 (default), 0.22 (hard: strong background and
#: calibration errors up to 8 cm⁻¹); an axis 40 cm⁻¹ off puts it at ~0.6.
CLOUD_DISTANCE_LIMIT = 0.3


def place_cursors(
    real: np.ndarray, imag: np.ndarray, foreground: np.ndarray, parameters: PhasorParameters, source: str = "stack"
) -> dict[str, PhasorCursor]:
    """Cytoplasm, nucleus and lipid cursors for one image (step 6); see :func:`fit_cursors`."""
    return fit_cursors(real, imag, foreground, parameters, source).cursors


def fit_cursors(
    real: np.ndarray, imag: np.ndarray, foreground: np.ndarray, parameters: PhasorParameters, source: str = "stack"
) -> CursorFit:
    """Cytoplasm, nucleus and lipid cursors for one image (step 6), and how they were found.

    With ``auto_cursors``, a Gaussian mixture of ``clusters`` components is fitted to the
    foreground phasors (``phasorpy.cluster.phasor_cluster_gmm``, initialised at the reference or
    explicit positions, seeded) that are not lipid-rich (lipid fraction on the reference
    cytoplasm–lipid line at most ``cluster_lipid_cut``: droplets and out-of-focus lipid would
    otherwise take a component and leave nucleus and cytoplasm merged in one). The component
    furthest along the reference cytoplasm→nucleus direction is the nucleus; with 3 components
    the one furthest along cytoplasm→lipid is set aside (lipid-rich cytoplasm); the remaining
    one is the cytoplasm. The lipid cursor is the reference (or explicit) lipid phasor, rotated by
    the mean phase shift of the fitted cytoplasm and nucleus clusters relative to their references
    (``lipid_calibration="phase"``).

    **When the cloud is far from the references** (median distance above
    :data:`CLOUD_DISTANCE_LIMIT`), when the lipid cut leaves too few pixels, or when the
    reference-initialised fit fails, the cursors follow the cloud (``method="cloud"``, logged as a
    WARNING): the mixture is fitted to all foreground phasors without reference initialisation
    (k-means start) and its clusters are named by chemistry: the cluster whose phase is nearest the
    lipid reference's is lipid-rich and set aside, of the others the one further in phase from it is
    the nucleus. (Moving the references onto the cloud — rotated to its phase, scaled to its
    modulation — and fitting from there was tried too: lower mean Dice on stacks with an axis 25–40
    cm⁻¹ off.) Too few foreground pixels, or a cloud fit that fails, fall back to the reference
    positions (``method="reference"``, WARNING).

    Returns
    -------
    CursorFit
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
    finite = foreground & np.isfinite(real) & np.isfinite(imag)
    n_foreground = int(finite.sum())
    distance = _cloud_distance(
        real[finite], imag[finite], [np.asarray(start[n], dtype=np.float64) for n in ("cytoplasm", "nucleus")]
    )
    if not p.auto_cursors:
        return CursorFit(fallback, "explicit" if given else "fixed", n_foreground, 0, distance)
    needed = MIN_PIXELS_PER_CLUSTER * p.clusters
    if n_foreground < needed:
        message = (
            f"{source}: {n_foreground} foreground pixels, fewer than the {needed} needed to fit {p.clusters} phasor "
            "clusters; using the REFERENCE cursors (the segmentation follows the reference spectra, not this image)."
        )
        logger.warning("%s", message)
        flag = f"reference cursors: {n_foreground} foreground pixels, fewer than {needed}"
        return CursorFit(fallback, "reference", n_foreground, 0, distance, flag)
    reason = ""
    if distance > CLOUD_DISTANCE_LIMIT:
        reason = (
            f"the phasor cloud lies far from the reference cursors (median distance {distance:.2f} > "
            f"{CLOUD_DISTANCE_LIMIT:g})"
        )
    else:
        found, n_usable, reason = _reference_initialised(real, imag, finite, start, p)
        if found is not None:
            clusters, named = found
            cursors = _with_lipid(clusters, named, start, start_source, "gmm", p)
            return CursorFit(cursors, "gmm", n_foreground, n_usable, distance)
    # follow the cloud: clusters fitted without reference initialisation, named by chemistry (phase)
    rng = np.random.default_rng(p.seed)
    g, s = _sample(real, imag, finite, p.gmm_samples, rng)
    clusters = _gmm(g, s, p, means_init=None)
    named = _name_by_phase(clusters, start) if clusters is not None else None
    if named is None:
        message = (
            f"{source}: {reason}, and no clusters could be fitted to the cloud either ({n_foreground} foreground "
            "pixels); using the REFERENCE cursors: check the spectral axis (wavenumbers, order) of this stack."
        )
        logger.warning("%s", message)
        return CursorFit(fallback, "reference", n_foreground, n_foreground, distance, f"reference cursors: {reason}")
    message = (
        f"{source}: {reason}; cursors fitted to the cloud of all {n_foreground} foreground pixels without reference "
        "initialisation and named by phase (lipid-rich nearest the lipid reference, nucleus furthest from it). "
        "Check the spectral axis (wavenumbers, order) and the phasor plot of this stack."
    )
    logger.warning("%s", message)
    cursors = _with_lipid(clusters, named, start, start_source, "cloud", p)
    return CursorFit(cursors, "cloud", n_foreground, n_foreground, distance, f"cursors fitted to the cloud: {reason}")


def _reference_initialised(
    real: np.ndarray, imag: np.ndarray, finite: np.ndarray, start: dict[str, tuple[float, float]], p: PhasorParameters
) -> tuple[tuple[_Clusters, dict[str, int]] | None, int, str]:
    """The mixture initialised at ``start`` on the pixels that are not lipid-rich, named along the start's axes.

    Returns ((clusters, names) or None, the number of pixels fitted, why it failed).
    """
    ref_c, ref_n, ref_l = (np.asarray(start[n], dtype=np.float64) for n in CURSOR_NAMES)
    usable = finite
    if p.cluster_lipid_cut < 1.0:  # droplets and out-of-focus lipid would pull a component away from the cell
        lipid = phasor_component_fraction(real, imag, [ref_l[0], ref_c[0]], [ref_l[1], ref_c[1]])
        usable = finite & (np.nan_to_num(lipid, nan=1.0) <= p.cluster_lipid_cut)
    n_usable, needed = int(usable.sum()), MIN_PIXELS_PER_CLUSTER * p.clusters
    if n_usable < needed:
        return (
            None,
            n_usable,
            f"only {n_usable} of the {int(finite.sum())} foreground pixels are not lipid-rich (lipid fraction ≤ "
            f"{p.cluster_lipid_cut:g} on the reference line), fewer than the {needed} needed",
        )
    rng = np.random.default_rng(p.seed)
    g, s = _sample(real, imag, usable, p.gmm_samples, rng)
    # components start at the cytoplasm and nucleus cursors (and lipid-rich cytoplasm, a fifth of the way to lipid)
    init = np.asarray([ref_c, ref_n, ref_c + 0.2 * (ref_l - ref_c)][: p.clusters], dtype=np.float64)
    clusters = _gmm(g, s, p, means_init=init)
    named = _name_by_reference_axes(clusters, ref_c, ref_n, ref_l) if clusters is not None else None
    if named is None:
        return None, n_usable, "the reference-initialised phasor clusters collapsed or coincide"
    return (clusters, named), n_usable, ""


def _cloud_distance(g: np.ndarray, s: np.ndarray, centres: Sequence[np.ndarray]) -> float:
    if g.size == 0:
        return math.nan
    d = np.min([np.hypot(g - c[0], s - c[1]) for c in centres], axis=0)
    return float(np.median(d))


def _sample(
    real: np.ndarray, imag: np.ndarray, mask: np.ndarray, samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    idx = np.flatnonzero(mask.reshape(-1))
    if idx.size > samples:
        idx = np.sort(rng.choice(idx, samples, replace=False))
    return real.reshape(-1)[idx].astype(np.float64), imag.reshape(-1)[idx].astype(np.float64)


@dataclass(frozen=True)
class _Clusters:
    centres: np.ndarray  # (C, 2)
    radius: np.ndarray
    radius_minor: np.ndarray
    angle: np.ndarray
    live: list[int]


def _gmm(g: np.ndarray, s: np.ndarray, p: PhasorParameters, means_init: np.ndarray | None) -> _Clusters | None:
    """Fit ``p.clusters`` Gaussian components (seeded); None when fewer than two hold pixels."""
    if means_init is not None:
        init = {
            "weights_init": np.full(p.clusters, 1.0 / p.clusters),
            "means_init": means_init,
            "precisions_init": np.repeat(np.eye(2)[None] / INITIAL_CLUSTER_SD**2, p.clusters, axis=0),
            "init_params": "random_from_data",  # unused: weights, means and precisions are all given
        }
    else:
        init = {"init_params": "kmeans", "n_init": 1}
    with threadpool_limits(limits=1, user_api="blas"):  # tiny 2×2 solves: BLAS threads only add latency
        cg, cs, ra, rb, ang = phasor_cluster_gmm(
            g,
            s,
            clusters=p.clusters,
            sigma=p.cursor_sigma,
            covariance_type="full",
            random_state=p.seed,
            reg_covar=1e-6,
            **init,
        )
    # a component that lost its pixels collapses (centre at the origin, tiny ellipse): keep the
    # components whose cursor_sigma ellipse holds at least MIN_CLUSTER_SHARE of the pixels
    inside = mask_from_elliptic_cursor(g, s, cg, cs, radius=ra, radius_minor=rb, angle=ang).mean(axis=1)
    live = [i for i in range(p.clusters) if inside[i] >= MIN_CLUSTER_SHARE]
    if len(live) < 2:
        return None
    return _Clusters(np.stack([cg, cs], axis=1), np.asarray(ra), np.asarray(rb), np.asarray(ang), live)


def _name_by_reference_axes(
    c: _Clusters, ref_c: np.ndarray, ref_n: np.ndarray, ref_l: np.ndarray
) -> dict[str, int] | None:
    """Nucleus: furthest along cytoplasm→nucleus; cytoplasm: of the rest, least along cytoplasm→lipid."""
    nucleus = max(c.live, key=lambda i: float(np.dot(c.centres[i] - ref_c, _unit(ref_n - ref_c))))
    rest = [i for i in c.live if i != nucleus]
    cytoplasm = min(rest, key=lambda i: float(np.dot(c.centres[i] - ref_c, _unit(ref_l - ref_c))))
    if np.hypot(*(c.centres[nucleus] - c.centres[cytoplasm])) < 1e-4:
        return None
    return {"cytoplasm": cytoplasm, "nucleus": nucleus}


def _name_by_phase(c: _Clusters, start: dict[str, tuple[float, float]]) -> dict[str, int] | None:
    """Chemistry by phase: the cluster nearest the lipid reference's phase is lipid-rich (set aside when there
    are three); of the others the one further in phase from the lipid reference is the nucleus."""
    lipid_phase = math.atan2(start["lipid"][1], start["lipid"][0])
    gap = {i: abs(_wrap(math.atan2(c.centres[i][1], c.centres[i][0]) - lipid_phase)) for i in c.live}
    order = sorted(c.live, key=lambda i: gap[i])  # nearest the lipid phase first
    if len(order) > 2:
        order = order[1:]
    cytoplasm, nucleus = order[0], order[-1]
    if np.hypot(*(c.centres[nucleus] - c.centres[cytoplasm])) < 1e-4:
        return None
    return {"cytoplasm": cytoplasm, "nucleus": nucleus}


def _with_lipid(
    c: _Clusters,
    named: dict[str, int],
    start: dict[str, tuple[float, float]],
    start_source: dict[str, str],
    source: str,
    p: PhasorParameters,
) -> dict[str, PhasorCursor]:
    out = {
        name: PhasorCursor(
            name,
            float(c.centres[i][0]),
            float(c.centres[i][1]),
            float(c.radius[i]),
            float(c.radius_minor[i]),
            float(c.angle[i]),
            source,
        )
        for name, i in named.items()
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
    out["lipid"] = PhasorCursor("lipid", lipid_g, lipid_s, p.ld_cursor_radius, p.ld_cursor_radius, 0.0, lipid_source)
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(*v))
    return v / n if n > 0 else v


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi
