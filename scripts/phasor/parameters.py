"""Parameters of the optimized spectral phasor: every tunable of the segmenter, its range, the tuned file's loader.

:class:`PhasorParameters` holds what :class:`~scripts.phasor.segmenter.PhasorSegmenter` uses; the shipped values
in ``configs/phasor_parameters.yaml`` come from :mod:`scripts.phasor.fit`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scripts.io.errors import HSRSInputError
from scripts.io.writer import atomic_path

logger = logging.getLogger(__name__)


DEFAULT_PARAMETERS_FILE = Path(__file__).resolve().parents[2] / "configs" / "phasor_parameters.yaml"
THRESHOLD_METHODS = ("otsu", "li", "triangle", "yen", "noise")
BACKGROUND_METHODS = ("dimmest_pixels", "frame_percentile", "offset", "none")
NUCLEUS_RULES = ("line", "ellipse")
LIPID_DROPLET_RULES = ("line", "circle")
LIPID_CALIBRATIONS = ("phase", "none")
CURSOR_NAMES = ("cytoplasm", "nucleus", "lipid")


class PhasorInputError(HSRSInputError):
    """A stack the phasor segmenter cannot use; the message names the stack and the problem (a ValueError)."""


@dataclass(frozen=True)
class PhasorParameters:
    """Every tunable of :class:`PhasorSegmenter`; YAML/JSON round-trip with :meth:`save` / :meth:`load`.

    Parameters
    ----------
    harmonic : int
        Phasor harmonic (1: one period over the 2800–3050 cm⁻¹ window).
    background_method : str
        ``"dimmest_pixels"``, ``"frame_percentile"``, ``"offset"`` (see
        :class:`~scripts.transforms.array.SubtractSpectralBackground`) or ``"none"``.
    background_percentile : float
        Percentile used by the background method (dimmest-pixel fraction, %).
    background_surface_degree : int
        Degree of the polynomial surface per frame fitted to the cell-free pixels and subtracted
        (:mod:`scripts.phasor.background`; field-dependent non-Raman background); -1 disables.
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
    mrf_iterations : int
        Spatial refinement in the spirit of Phasor-MRF (:mod:`scripts.phasor.refine`): ICM sweeps
        over the foreground with per-class Gaussian models of the phasor features and a Potts prior;
        0 (default) disables it.
    mrf_beta : float
        Potts weight per unlike 4-neighbour of the refinement.

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
    mrf_iterations: int = 0
    mrf_beta: float = 1.0

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
            "mrf_iterations": (0, 20),
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
            "mrf_beta": (0.0, 20.0, True),
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
