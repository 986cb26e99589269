"""FieldSlidingWindowInferer: windows fit the field; large fields are tiled."""

from __future__ import annotations

import itertools

import pytest
import torch
from scripts.engine.inferers import FieldSlidingWindowInferer, window_starts


class Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape[-2:]))
        return x[:, :3] * 1.0


@pytest.mark.parametrize(
    ("field", "window"),
    [
        ((40, 40), (48, 48)),
        ((128, 100), (128, 112)),
        ((600, 520), (256, 224)),  # 3 × 3 fitted windows (MONAI's placement: 3 × 3 of 256²)
        ((16, 20), (32, 32)),
        ((17, 40), (32, 48)),
    ],
)
def test_window_is_the_field_rounded_up_to_the_stride_or_the_roi(field, window):
    net = Recorder()
    x = torch.rand(1, 5, *field)
    out = FieldSlidingWindowInferer(roi_size=(256, 256), sw_batch_size=1, overlap=0.25)(x, net)
    assert set(net.shapes) == {window}
    assert tuple(out.shape) == (1, 3, *field)
    torch.testing.assert_close(out, x[:, :3])  # the identity network: reflection padding is cropped away exactly


def test_roi_must_be_divisible_by_the_stride():
    with pytest.raises(ValueError, match=r"roi_size \[250, 256\] must be divisible by 16"):
        FieldSlidingWindowInferer(roi_size=(250, 256))


@pytest.mark.parametrize("size", [257, 600, 1000, 1024, 2048, 3001, 8192])
@pytest.mark.parametrize(("roi", "overlap"), [(256, 0.25), (768, 1 / 6), (512, 0.0)])
def test_fitted_windows_cover_the_field_with_the_overlap_and_fewer_pixels(size, roi, overlap):
    inferer = FieldSlidingWindowInferer(roi_size=(roi, roi), overlap=overlap)
    (fitted,), (fraction,) = (r[:1] for r in inferer.window_plan((size, 64)))
    starts = window_starts(size, fitted, fraction)
    monai = window_starts(size, roi, overlap)
    assert fitted <= roi
    assert fitted % 16 == 0
    if size <= roi:  # one window: the field rounded up to the stride
        assert starts == [0]
        assert size <= fitted < size + 16
        return
    assert starts[0] == 0
    assert starts[-1] + fitted == size  # the whole axis, no padding
    assert min(a + fitted - b for a, b in itertools.pairwise(starts)) >= round(overlap * roi)
    assert len(starts) <= len(monai)
    assert len(starts) * fitted <= len(monai) * roi  # never more network input


def test_fitted_windows_give_the_identity_network_s_output_and_can_be_switched_off():
    x = torch.rand(1, 4, 600, 520)
    fitted, plain = Recorder(), Recorder()
    out = FieldSlidingWindowInferer(roi_size=(256, 256), overlap=0.25, mode="gaussian")(x, fitted)
    torch.testing.assert_close(out, x[:, :3])
    FieldSlidingWindowInferer(roi_size=(256, 256), overlap=0.25, fit_windows=False)(x, plain)
    assert len(fitted.shapes) == 9
    assert set(fitted.shapes) == {(256, 224)}
    assert len(plain.shapes) == 9
    assert set(plain.shapes) == {(256, 256)}  # the same count, 14 % more pixels


def test_fixed_plan_gives_a_part_of_a_field_the_whole_field_s_windows():
    inferer = FieldSlidingWindowInferer(roi_size=(256, 256), overlap=0.25)
    net = Recorder()
    with inferer.fixed_plan((2048, 2048)) as (roi, _):
        inferer(torch.rand(1, 4, 520, 520), net)
    assert set(net.shapes) == {roi}
    net.shapes.clear()
    inferer(torch.rand(1, 4, 520, 520), net)  # the plan is released after the block
    assert set(net.shapes) == {(224, 224)}


class DtypeRecorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 3, 1)
        self.dtypes = []

    def forward(self, x):
        y = self.conv(x)
        self.dtypes.append(y.dtype)
        return y


def test_bfloat16_precision_autocasts_the_network_and_stitches_in_float32(monkeypatch):
    monkeypatch.setattr("scripts.engine.inferers.native_bfloat16", lambda: True)
    net, x = DtypeRecorder(), torch.rand(1, 4, 96, 96)
    out = FieldSlidingWindowInferer(roi_size=(64, 64), overlap=0.25, precision="bfloat16")(x, net)
    assert set(net.dtypes) == {torch.bfloat16}
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, net.conv(x), atol=0.02, rtol=0.02)


def test_bfloat16_falls_back_to_float32_with_a_warning_on_a_cpu_without_it(monkeypatch, caplog):
    monkeypatch.setattr("scripts.engine.inferers.native_bfloat16", lambda: False)
    net = DtypeRecorder()
    inferer = FieldSlidingWindowInferer(roi_size=(64, 64), precision="bfloat16")
    with caplog.at_level("WARNING"):
        inferer(torch.rand(1, 4, 64, 64), net)
        inferer(torch.rand(1, 4, 64, 64), net)
    assert set(net.dtypes) == {torch.float32}
    assert sum("no native bfloat16" in r.message for r in caplog.records) == 1
    with pytest.raises(ValueError, match="precision must be one of"):
        FieldSlidingWindowInferer(roi_size=(64, 64), precision="float16")
