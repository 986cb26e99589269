"""Spectral transforms: resampling, background removal, normalisation, augmentations."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scripts.spectra.axis import CANONICAL_WAVENUMBERS
from scripts.spectra.reference import spectra_matrix
from scripts.transforms.array import (
    NormalizeSpectralIntensity,
    RandSpectralGainDrift,
    RandSpectralNoise,
    RandSpectralOffset,
    RandSpectralShift,
    SpectralResample,
    SubtractSpectralBackground,
)
from scripts.transforms.dictionary import (
    NormalizeSpectralIntensityd,
    RandSpectralGainDriftd,
    RandSpectralNoised,
    RandSpectralOffsetd,
    RandSpectralShiftd,
    SpectralResampled,
    SubtractSpectralBackgroundd,
)


def linear_stack(wn: np.ndarray, h: int = 4, w: int = 5) -> MetaTensor:
    """Each pixel's spectrum is a known linear function of the wavenumber."""
    scale = np.arange(1, h * w + 1, dtype=np.float32).reshape(h, w)
    data = (wn[:, None, None] - 2700.0) / 100.0 * scale[None]
    return MetaTensor(
        torch.as_tensor(data, dtype=torch.float32), meta={"wavenumbers": wn, "filename_or_obj": "lin.nii.gz"}
    )


def test_resample_is_exact_for_linear_spectra_and_sets_grid():
    wn = np.linspace(2780, 3070, 50)
    out = SpectralResample()(linear_stack(wn))
    assert tuple(out.shape) == (64, 4, 5)
    np.testing.assert_allclose(out.meta["wavenumbers"], CANONICAL_WAVENUMBERS)
    expected = linear_stack(CANONICAL_WAVENUMBERS)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_resample_flips_descending_input():
    wn = np.linspace(3070, 2780, 50)
    ascending = SpectralResample()(linear_stack(wn[::-1].copy()))
    stack = linear_stack(wn[::-1].copy())
    descending = MetaTensor(stack.flip(0).as_tensor(), meta={"wavenumbers": wn})
    np.testing.assert_allclose(SpectralResample()(descending).numpy(), ascending.numpy(), atol=1e-5)


def test_resample_matches_per_pixel_linear_interpolation_on_an_irregular_grid():
    rng = np.random.default_rng(3)
    wn = np.sort(rng.uniform(2790, 3060, 70))
    wn[0], wn[-1] = 2790.0, 3060.0
    data = rng.normal(size=(70, 3, 4)).astype(np.float32)
    img = MetaTensor(torch.from_numpy(data), meta={"wavenumbers": wn, "filename_or_obj": "a.nii.gz"})
    out = SpectralResample(required_range=None)(img)
    assert out.meta["filename_or_obj"] == "a.nii.gz"  # the writers name the outputs after it
    expected = np.stack([np.interp(CANONICAL_WAVENUMBERS, wn, data[:, i, j]) for i in range(3) for j in range(4)], -1)
    np.testing.assert_allclose(out.numpy().reshape(64, 12), expected, atol=1e-5)


def test_resample_identity_on_canonical_grid(phantom):
    img = MetaTensor(torch.from_numpy(phantom.stack), meta={"wavenumbers": phantom.wavenumbers})
    np.testing.assert_allclose(SpectralResample()(img).numpy(), phantom.stack, atol=1e-5)


def test_resample_anti_aliases_finely_sampled_input():
    wn = np.linspace(2800, 3050, 400)
    rng = np.random.default_rng(0)
    noisy = MetaTensor(torch.as_tensor(rng.normal(0, 1, (400, 8, 8)), dtype=torch.float32), meta={"wavenumbers": wn})
    out = SpectralResample()(noisy)
    # averaging ~6 input frames per output frame lowers white noise well below sd 1
    assert float(out.std()) < 0.6


def test_resample_without_wavenumbers_logs_assumption(caplog):
    plain = torch.rand(20, 4, 4)
    with caplog.at_level(logging.WARNING):
        out = SpectralResample()(plain)
    assert tuple(out.shape) == (64, 4, 4)
    assert any("ASSUMING" in r.message for r in caplog.records)


def test_resample_refuses_a_window_below_the_minimum_naming_the_missing_bands():
    with pytest.raises(ValueError, match=r"lin\.nii\.gz: the stack covers 2870–3000 cm⁻¹ .* uncovered: CH₂ symmetric"):
        SpectralResample()(linear_stack(np.linspace(2870, 3000, 30)))
    with pytest.raises(ValueError, match=r"covers 2800–2940 cm⁻¹ .* uncovered: CH₃ asymmetric / DNA ~2960"):
        SpectralResample()(linear_stack(np.linspace(2800, 2940, 30)))
    with pytest.raises(ValueError, match=r"more than 10 cm⁻¹ missing at an end"):  # the old, stricter rule on request
        SpectralResample(max_extrapolation=10)(linear_stack(np.linspace(2814, 2993, 100)))


@pytest.mark.parametrize("window", [(2814, 2993, 100), (2830, 3000, 40), (2845, 2985, 40), (2700, 3100, 200)])
def test_resample_fills_partial_windows_with_the_pixels_own_chemistry(window):
    """Instruments record 2814–2993, 2830–3000 …: the missing ends continue each pixel's lipid/protein/water mixture."""
    wn = np.linspace(*window)
    rng = np.random.default_rng(0)
    amounts = rng.uniform(0, 1, (3, 4, 5))
    refs = spectra_matrix(wn)[:, [0, 1, 3]]
    stack = MetaTensor(torch.as_tensor(np.einsum("kc,chw->khw", refs, amounts) + 0.3, dtype=torch.float32))
    stack.meta.update({"wavenumbers": wn, "filename_or_obj": "partial.tif"})
    out = SpectralResample()(stack).numpy()
    expected = np.einsum("kc,chw->khw", spectra_matrix(CANONICAL_WAVENUMBERS)[:, [0, 1, 3]], amounts) + 0.3
    np.testing.assert_allclose(out, expected, atol=0.03)  # smoothing of 200 fine frames and interpolation only
    if wn[-1] < CANONICAL_WAVENUMBERS[-1]:  # fill="edge" repeats the last measured frame instead
        np.testing.assert_allclose(SpectralResample(fill="edge")(stack).numpy()[-1], stack.numpy()[-1], atol=0.01)


def test_too_few_frames_and_wrong_ndim():
    with pytest.raises(ValueError, match="has 1 frames; at least 8"):
        SpectralResample()(torch.rand(1, 4, 4))
    with pytest.raises(ValueError, match=r"expected a spectral stack \(K, H, W\)"):
        NormalizeSpectralIntensity()(torch.rand(2, 10, 4, 4))


def test_background_subtraction_removes_uniform_background_spectrum():
    rng = np.random.default_rng(0)
    k, h, w = 16, 40, 40
    background = np.linspace(0.5, 0.2, k).astype(np.float32)  # offset + decaying non-Raman background
    cells = np.zeros((h, w), np.float32)
    cells[5:20, 5:20] = 1.0
    signal = np.sin(np.linspace(0, 3, k)).astype(np.float32)[:, None, None] * cells
    img = torch.as_tensor(signal + background[:, None, None] + rng.normal(0, 0.01, (k, h, w)).astype(np.float32))
    out = SubtractSpectralBackground()(img)
    assert abs(float(out[:, 30:, 30:].mean())) < 0.01  # cell-free area goes to zero in every frame
    np.testing.assert_allclose(out[:, 10, 10].numpy(), signal[:, 10, 10], atol=0.05)
    offset_only = SubtractSpectralBackground(method="offset", percentile=1)(img)
    assert float(offset_only.min()) < 0.05 < float(offset_only[0, 30:, 30:].mean())  # keeps the spectral shape


def test_normalize_maps_percentiles_to_0_and_1():
    img = torch.arange(1000, dtype=torch.float32).reshape(10, 10, 10) * 3 + 7
    out = NormalizeSpectralIntensity(lower=0, upper=100)(img)
    assert float(out.min()) == pytest.approx(0.0)
    assert float(out.max()) == pytest.approx(1.0)


def test_normalize_refuses_constant_stack():
    img = MetaTensor(torch.full((10, 5, 5), 3.0), meta={"filename_or_obj": "flat.tif"})
    with pytest.raises(ValueError, match=r"flat\.tif: intensities are constant"):
        NormalizeSpectralIntensity()(img)


def test_dictionary_versions_match_array_versions(phantom):
    img = MetaTensor(torch.from_numpy(phantom.stack), meta={"wavenumbers": phantom.wavenumbers})
    for array_t, dict_t in [
        (SpectralResample(), SpectralResampled(keys="image")),
        (SubtractSpectralBackground(), SubtractSpectralBackgroundd(keys="image")),
        (NormalizeSpectralIntensity(), NormalizeSpectralIntensityd(keys="image")),
    ]:
        torch.testing.assert_close(dict_t({"image": img})["image"], array_t(img))


@pytest.mark.parametrize(
    ("dict_cls", "kwargs"),
    [
        (RandSpectralGainDriftd, {"max_drift": 0.1}),
        (RandSpectralOffsetd, {"max_offset": 0.2}),
        (RandSpectralShiftd, {"max_shift": 8.0}),
        (RandSpectralNoised, {"max_std": 0.1}),
    ],
)
def test_augmentations_are_seeded_keep_meta_and_respect_prob(phantom, dict_cls, kwargs):
    img = MetaTensor(torch.from_numpy(phantom.stack), meta={"wavenumbers": phantom.wavenumbers})
    aug = dict_cls(keys="image", prob=1.0, **kwargs)
    a = aug.set_random_state(5)({"image": img})["image"]
    b = aug.set_random_state(5)({"image": img})["image"]
    c = aug.set_random_state(6)({"image": img})["image"]
    assert isinstance(a, MetaTensor)
    assert "wavenumbers" in a.meta
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, img)
    assert not torch.equal(a, c)
    never = dict_cls(keys="image", prob=0.0, **kwargs)
    torch.testing.assert_close(never({"image": img})["image"], img)


def test_gain_drift_scales_whole_frames():
    img = torch.rand(30, 6, 6) + 1
    out = RandSpectralGainDrift(prob=1.0, max_drift=0.2).set_random_state(0)(img)
    ratio = (out / img).reshape(30, -1)
    torch.testing.assert_close(ratio.min(1).values, ratio.max(1).values)  # one gain per frame
    assert float(ratio[:, 0].std()) > 0.001


def test_offset_is_additive_per_frame():
    img = torch.rand(30, 6, 6)
    out = RandSpectralOffset(prob=1.0, max_offset=0.3, max_trend=0.3).set_random_state(1)(img)
    diff = (out - img).reshape(30, -1)
    torch.testing.assert_close(diff.min(1).values, diff.max(1).values)


def test_shift_by_one_frame_moves_spectrum_one_frame():
    wn = CANONICAL_WAVENUMBERS
    img = MetaTensor(torch.zeros(64, 2, 2), meta={"wavenumbers": wn})
    img[20] = 1.0
    shifter = RandSpectralShift(prob=1.0, max_shift=10.0)
    shifter.randomize(img)
    shifter.shift = float(wn[1] - wn[0])  # exactly one frame towards higher wavenumbers
    out = shifter(img, randomize=False)
    assert int(out[:, 0, 0].argmax()) == 21
    assert float(out[21, 0, 0]) == pytest.approx(1.0)


def test_noise_has_requested_sd():
    img = torch.zeros(64, 64, 64)
    noise = RandSpectralNoise(prob=1.0, max_std=0.2, max_relative_std=0.0).set_random_state(3)
    out = noise(img)
    assert float(out.std()) == pytest.approx(noise.std, rel=0.02)
