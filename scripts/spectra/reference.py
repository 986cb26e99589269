"""Reference C–H stretch Raman spectra of the cell's main constituents.

Each constituent is a sum of Lorentzian Raman bands (centre, relative height, full width at half
maximum, all in cm⁻¹) from the HSRS literature summarised in ``docs/simulation.md``: lipids peak
at the CH₂ symmetric stretch ~2850 cm⁻¹ with CH₂ asymmetric ~2885, CH₃ ~2930 and =C–H ~3010
(unsaturation); proteins peak at the CH₃ stretch ~2935 with shoulders at ~2875 and ~2970; DNA adds
intensity near ~2960 relative to 2930; water contributes the rising low-wavenumber tail of its
O–H band above ~3050. The instrument's spectral resolution (~25 cm⁻¹ FWHM for spectral focusing)
is applied analytically as a Gaussian, so a band becomes a Voigt profile.

These spectra feed the phantom simulator (:mod:`scripts.simulation`) and give the phasor method
(:mod:`scripts.phasor`) reference positions for its cursors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import voigt_profile

#: Raman bands per constituent: (centre cm⁻¹, relative height, FWHM cm⁻¹).
BANDS: dict[str, tuple[tuple[float, float, float], ...]] = {
    # triglyceride / cholesteryl-ester rich lipid droplet
    "lipid": (
        (2852.0, 1.00, 18.0),
        (2885.0, 0.55, 22.0),
        (2930.0, 0.32, 30.0),
        (2960.0, 0.10, 25.0),
        (3009.0, 0.10, 18.0),
    ),
    # cytoplasmic / nuclear protein
    "protein": (
        (2855.0, 0.10, 22.0),
        (2875.0, 0.32, 30.0),
        (2935.0, 1.00, 34.0),
        (2972.0, 0.45, 30.0),
        (3062.0, 0.06, 20.0),
    ),
    # DNA / chromatin (phosphate-sugar backbone CH, bases)
    "dna": ((2895.0, 0.30, 40.0), (2960.0, 1.00, 40.0), (3070.0, 0.15, 30.0)),
}
#: Water: the low-wavenumber flank of the broad O–H stretch band (centre, height, FWHM), a Gaussian.
WATER_OH_BAND: tuple[float, float, float] = (3250.0, 1.0, 380.0)
#: Default spectral resolution of spectral-focusing HSRS, cm⁻¹ FWHM.
SPECTRAL_RESOLUTION: float = 25.0
CONSTITUENTS: tuple[str, ...] = ("lipid", "protein", "dna", "water")

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def raman_spectrum(
    constituent: str,
    wavenumbers: Sequence[float] | np.ndarray,
    resolution: float = SPECTRAL_RESOLUTION,
    shift: float = 0.0,
    unsaturation: float = 1.0,
) -> np.ndarray:
    """The spectrum of one constituent sampled at ``wavenumbers``, peak-normalised to 1 in 2700–3150 cm⁻¹.

    Args:
        constituent: one of :data:`CONSTITUENTS`.
        wavenumbers: K Raman shifts in cm⁻¹.
        resolution: instrument spectral resolution, FWHM in cm⁻¹ (0 for the intrinsic spectrum).
        shift: calibration error in cm⁻¹ added to every band centre.
        unsaturation: scale of the lipid =C–H band at ~3010 cm⁻¹ (1 = reference lipid).

    Returns:
        float64 array of shape (K,).

    Examples:
        >>> wn = np.linspace(2800, 3050, 64)
        >>> int(np.argmax(raman_spectrum("lipid", wn)))  # strongest near 2850 cm⁻¹
        14
    """
    if constituent not in CONSTITUENTS:
        raise ValueError(f"unknown constituent {constituent!r}; choose one of {CONSTITUENTS}.")
    wn = np.asarray(wavenumbers, dtype=np.float64)
    ref = np.linspace(2700.0, 3150.0, 451)
    return (
        _spectrum(constituent, wn, resolution, shift, unsaturation)
        / _spectrum(constituent, ref, resolution, 0.0, unsaturation).max()
    )


def _spectrum(constituent: str, wn: np.ndarray, resolution: float, shift: float, unsaturation: float) -> np.ndarray:
    sigma = max(resolution, 1e-3) * _FWHM_TO_SIGMA
    if constituent == "water":
        centre, height, fwhm = WATER_OH_BAND
        s = np.hypot(fwhm * _FWHM_TO_SIGMA, sigma)
        return height * np.exp(-0.5 * ((wn - centre - shift) / s) ** 2)
    out = np.zeros_like(wn)
    for centre, height, fwhm in BANDS[constituent]:
        if constituent == "lipid" and centre > 3000:
            height = height * unsaturation
        gamma = fwhm / 2.0
        # voigt_profile is area-normalised; scale so the intrinsic Lorentzian has height `height`
        out += height * np.pi * gamma * voigt_profile(wn - centre - shift, sigma, gamma)
    return out


def spectra_matrix(
    wavenumbers: Sequence[float] | np.ndarray,
    resolution: float = SPECTRAL_RESOLUTION,
    shift: float = 0.0,
    unsaturation: float = 1.0,
) -> np.ndarray:
    """All :data:`CONSTITUENTS` as columns of a (K, 4) float64 matrix (lipid, protein, dna, water)."""
    return np.stack([raman_spectrum(c, wavenumbers, resolution, shift, unsaturation) for c in CONSTITUENTS], axis=1)
