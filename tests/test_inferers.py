"""FieldSlidingWindowInferer: windows fit the field; large fields are tiled."""

from __future__ import annotations

import pytest
import torch
from scripts.engine.inferers import FieldSlidingWindowInferer


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
        ((600, 520), (256, 256)),
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
