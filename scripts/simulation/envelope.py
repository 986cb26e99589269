"""The pulse-overlap envelope of raw spectral-focusing HSRS: a smooth multiplicative gain over the frames.

In spectral focusing, the Raman shift of a frame is set by the delay between two chirped pulses.
The Raman signal at each delay is scaled by how much the pump and Stokes pulses still overlap in
time (their intensity cross-correlation), so a raw stack's every pixel carries the same smooth
gain over the frames: bell-shaped (often skewed) with its maximum at zero delay, which may lie
anywhere in the window or beyond it, and a width from a third of the window to several windows
(chirp and window chosen by the lab). Power-normalised stacks have it divided out; raw stacks do
not. Some set-ups show a monotone ramp instead (the overlap maximum far outside the window, or a
power ramp of a tunable laser). The non-Raman background (cross-phase modulation, two-photon
absorption) is strongest at zero delay too.

:func:`draw_envelope` samples one from :class:`EnvelopeRanges` (ranges and their sources:
``docs/simulation.md``); :func:`envelope_gain` evaluates a given shape. Both work on the frame's
position along the *Raman-shift* axis ``u = (ν − ν_min) / (ν_max − ν_min)`` (0: lowest shift), so
the envelope follows the chemistry, whatever order the frames are stored in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Range = tuple[float, float]

#: Envelope kinds: a (skewed) bell, or a monotone ramp.
KINDS: tuple[str, ...] = ("bell", "ramp")


@dataclass(frozen=True)
class EnvelopeRanges:
    """Ranges of the pulse-overlap envelope; one shape is drawn per stack (:func:`draw_envelope`).

    Positions and widths are in units of the window (its Raman-shift span).
    """

    probability: float = 0.0  #: chance that a stack carries an envelope (raw, not power-normalised)
    ramp_probability: float = 0.2  #: chance that an envelope is a monotone ramp rather than a bell
    centre: Range = (-0.5, 1.5)  #: position of the overlap maximum (0: lowest shift of the window, 1: highest)
    fwhm: Range = (0.33, 4.0)  #: full width at half maximum, log-uniform
    skew: Range = (-0.5, 0.5)  #: asymmetry: the two half-widths are fwhm·(1 ± skew)/2
    ramp_ratio: Range = (1.5, 20.0)  #: ramp: gain at its high end / at its low end, log-uniform; either direction
    background_power: Range = (1.0, 2.0)  #: non-Raman background ∝ envelope ** this (XPM/TPA are higher-order)


@dataclass(frozen=True)
class Envelope:
    """One envelope shape (see :func:`envelope_gain`)."""

    kind: str
    centre: float = 0.5
    fwhm: float = 1.0
    skew: float = 0.0
    ramp_ratio: float = 1.0  #: ramp only: gain at u = 1 / gain at u = 0 (< 1: falling)

    def params(self) -> dict:
        """Plain values for ``simulation.json``."""
        return {
            "envelope": self.kind,
            "envelope_centre": round(self.centre, 4),
            "envelope_fwhm": round(self.fwhm, 4),
            "envelope_skew": round(self.skew, 4),
            "envelope_ramp_ratio": round(self.ramp_ratio, 4),
        }


def envelope_gain(envelope: Envelope, wavenumbers: Sequence[float] | np.ndarray) -> np.ndarray:
    """The gain (K,) of ``envelope`` at each frame, frame order, normalised to a maximum of 1 over the frames.

    A bell is a split Gaussian in ``u`` with half-widths ``fwhm·(1 − skew)/2`` below its centre and
    ``fwhm·(1 + skew)/2`` above it; a ramp is exponential in ``u`` from 1 to ``ramp_ratio``.

    Examples:
        >>> wn = np.linspace(2800, 3050, 5)
        >>> envelope_gain(Envelope("bell", centre=0.5, fwhm=0.5), wn).round(3).tolist()
        [0.062, 0.5, 1.0, 0.5, 0.062]
        >>> envelope_gain(Envelope("ramp", ramp_ratio=4.0), wn[::-1]).round(3).tolist()
        [1.0, 0.707, 0.5, 0.354, 0.25]
    """
    wn = np.asarray(wavenumbers, np.float64)
    span = float(wn.max() - wn.min())
    u = (wn - wn.min()) / span if span > 0 else np.zeros_like(wn)
    if envelope.kind == "ramp":
        log_gain = np.log(envelope.ramp_ratio) * u
    elif envelope.kind == "bell":
        half = 0.5 * envelope.fwhm * np.where(u < envelope.centre, 1.0 - envelope.skew, 1.0 + envelope.skew)
        log_gain = -np.log(2.0) * ((u - envelope.centre) / half) ** 2
    else:
        raise ValueError(f"unknown envelope kind {envelope.kind!r}; choose one of {KINDS}.")
    return np.exp(log_gain - log_gain.max())


def draw_envelope(rng: np.random.Generator, ranges: EnvelopeRanges) -> Envelope | None:
    """One envelope from ``ranges``, or None (a power-normalised stack) with chance ``1 − probability``.

    Draws nothing from ``rng`` when ``ranges.probability`` is 0.
    """
    if ranges.probability <= 0 or rng.random() >= ranges.probability:
        return None
    if rng.random() < ranges.ramp_probability:
        ratio = float(np.exp(rng.uniform(*np.log(ranges.ramp_ratio))))
        return Envelope("ramp", ramp_ratio=ratio if rng.random() < 0.5 else 1.0 / ratio)
    return Envelope(
        "bell",
        centre=float(rng.uniform(*ranges.centre)),
        fwhm=float(np.exp(rng.uniform(*np.log(ranges.fwhm)))),
        skew=float(rng.uniform(*ranges.skew)),
    )
