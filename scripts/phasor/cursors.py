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


def place_cursors(
    real: np.ndarray, imag: np.ndarray, foreground: np.ndarray, parameters: PhasorParameters, source: str = "stack"
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
