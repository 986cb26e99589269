"""The spectral axis checked against chemistry (scripts/spectra/calibration.py): direction, calibration, bad spectra."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
from scripts.simulation.phantom import PRESETS, simulate_phantom
from scripts.spectra.axis import missing_bands
from scripts.spectra.calibration import AxisCheckError, check_axis, estimate_axis, foreground_spectrum

WIDE_SHIFTS = replace(PRESETS["default"], calibration_shift=(5.0, 20.0))


def fingerprint_stack(rng: np.random.Generator, phantom) -> np.ndarray:
    """A fingerprint-region (1000–1800 cm⁻¹) stack: lipid and protein fingerprint bands on the phantom's cells."""
    wn = np.linspace(1000, 1800, 100)

    def bands(*lines):
        return sum(h / (1 + ((wn - c) / (w / 2)) ** 2) for c, w, h in lines)

    lipid = bands((1065, 20, 0.3), (1300, 25, 0.8), (1440, 30, 1.0), (1655, 25, 0.5), (1745, 20, 0.4))
    protein = bands((1003, 10, 0.6), (1250, 40, 0.5), (1340, 30, 0.4), (1450, 30, 0.7), (1655, 40, 1.0))
    lipid_map, protein_map = np.clip(phantom.stack[12], 0, None), np.clip(phantom.stack[34], 0, None)
    stack = lipid[:, None, None] * lipid_map + protein[:, None, None] * protein_map
    return (stack + rng.normal(0, 0.05, stack.shape)).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_direction_and_calibration_of_stacks_without_wavenumbers(seed):
    """Frames in either order, bands shifted by 5–20 cm⁻¹: the fit finds the direction and the true axis."""
    reverse = seed % 2 == 1
    wn = np.linspace(2800, 3050, 64)
    ph = simulate_phantom(seed, 96, 96, wavenumbers=wn[::-1] if reverse else wn, preset=WIDE_SHIFTS)
    true_axis = ph.wavenumbers - ph.params["calibration_shift_cm1"]  # where the bands really are
    est = estimate_axis(ph.stack)  # nominal: the assumption 2800–3050 in frame order
    assert est.status == "confident", est.message
    assert est.reversed == reverse
    assert np.abs(est.wavenumbers - true_axis).mean() < 3.0
    assert est.r2 > 0.95
    assert est.direction_confidence > 2


def test_a_partial_window_is_recognised_without_wavenumbers():
    ph = simulate_phantom(5, 96, 96, wavenumbers=np.linspace(2814, 2993, 100), preset="easy")
    est = estimate_axis(ph.stack[::-1])
    assert est.confident
    assert est.reversed
    assert est.wavenumbers[-1] == pytest.approx(2814, abs=5)
    assert est.wavenumbers[0] == pytest.approx(2993, abs=5)


def test_stacks_without_c_h_chemistry_are_named(phantom):
    rng = np.random.default_rng(0)
    noise = rng.uniform(10, 1000, (64, 64, 64)).astype(np.float32)
    repeated = np.repeat(phantom.stack[30:31], 64, axis=0)
    for stack, words in (
        (noise, "noise"),
        (repeated, "no spectral contrast"),
        (fingerprint_stack(rng, phantom), "fits no C–H chemistry"),
    ):
        est = estimate_axis(stack)
        assert est.status == "no_chemistry"
        assert words in est.message


def test_foreground_spectrum_is_bright_minus_dim_pixels():
    stack = np.ones((4, 20, 20))
    stack[:, :10] += np.array([1.0, 3.0, 2.0, 0.5])[:, None, None]
    np.testing.assert_allclose(foreground_spectrum(stack).spectrum, [1.0, 3.0, 2.0, 0.5])


def test_check_without_wavenumbers_uses_the_inferred_axis(phantom):
    check = check_axis(phantom.stack[::-1], None, source="cells.tif")
    assert check.flag == "inferred"
    assert check.wavenumbers[0] > check.wavenumbers[-1]  # descending: the frames were reversed
    assert check.level == logging.WARNING
    assert "INFERRED" in check.message
    assert "cells.tif" in check.message
    assert check.metadata()["axis_reversed"] is True


def test_stored_wavenumbers_off_by_30_warn_or_refuse(phantom):
    assert check_axis(phantom.stack, phantom.wavenumbers).flag == "ok"
    check = check_axis(phantom.stack, phantom.wavenumbers + 30, source="cells.tif")
    assert check.flag == "miscalibrated"
    assert check.level == logging.WARNING
    assert "DISAGREE" in check.message
    assert "cells.tif" in check.message
    np.testing.assert_array_equal(check.wavenumbers, phantom.wavenumbers + 30)  # warn: the stored axis is kept
    with pytest.raises(AxisCheckError, match=r"DISAGREE .* Refused"):
        check_axis(phantom.stack, phantom.wavenumbers + 30, mode="refuse")
    reversed_ = check_axis(phantom.stack, phantom.wavenumbers[::-1])
    assert reversed_.flag == "reversed"
    assert "WRONG WAY" in reversed_.message
    assert check_axis(phantom.stack, phantom.wavenumbers + 30, mode="off").flag == "off"


def test_missing_bands_names_what_a_window_lacks():
    assert missing_bands(np.linspace(2814, 2993, 100)) == []
    assert missing_bands(np.linspace(2870, 3050, 40)) == ["CH₂ symmetric (lipid) ~2850 cm⁻¹"]
    assert missing_bands(np.linspace(2800, 2920, 40)) == ["CH₃ (protein) ~2930 cm⁻¹", "CH₃ asymmetric / DNA ~2960 cm⁻¹"]
