"""Tests of scripts.networks: the hybrid-UNet, its blocks and the baselines (CPU, small sizes)."""

from __future__ import annotations

import io

import pytest
import torch
from monai.networks.blocks import UnetBasicBlock
from scripts.networks import FAST_ENCODER, HybridUNet, NNUNetStyle2D, UNet3DSpectral, plan_nnunet_2d
from scripts.networks.blocks import (
    AttentionSpectralPooling,
    FactorizedMultiScaleBlock3D,
    MeanSpectralCompression,
    MeanSpectralPooling,
    MultiScaleResidualBlock3D,
    PointwiseConv3d,
    SpectralCompression,
    split_channels,
)

ABLATIONS = {
    "default": {},
    "plain_blocks": {"multiscale_residual": False},
    "mean_pooling": {"attention_pooling": False},
    "mean_compression": {"spectral_compression": False},
}
SMALL = {"features": (4, 8, 16, 32), "decoder_features": (8, 16, 32, 64)}  # depth 4: H, W divisible by 8


def _types(net: torch.nn.Module) -> set[type]:
    return {type(m) for m in net.modules()}


def _n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------------------------------- HybridUNet


@pytest.mark.parametrize(("k", "h", "w"), [(20, 32, 32), (50, 32, 48), (64, 64, 32)])
def test_hybrid_output_shape(k, h, w):
    net = HybridUNet()
    assert net(torch.randn(2, k, h, w)).shape == (2, 3, h, w)


@pytest.mark.parametrize(("k", "h", "w"), [(16, 16, 16), (33, 24, 40)])
def test_hybrid_output_shape_small_config(k, h, w):
    net = HybridUNet(out_channels=4, **SMALL)
    assert net.spatial_divisor == 8
    assert net(torch.randn(1, k, h, w)).shape == (1, 4, h, w)


def test_hybrid_same_weights_run_on_50_and_64_frames():
    torch.manual_seed(0)
    net = HybridUNet().eval()
    image = torch.rand(1, 64, 32, 32)
    with torch.no_grad():
        out64 = net(image)
        out50 = net(torch.nn.functional.interpolate(image[:, None], size=(50, 32, 32), mode="trilinear")[:, 0])
    assert out64.shape == out50.shape == (1, 3, 32, 32)
    assert torch.isfinite(out64).all()
    assert torch.isfinite(out50).all()


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_hybrid_gradient_reaches_every_parameter(name):
    torch.manual_seed(0)
    net = HybridUNet(**ABLATIONS[name])
    out = net(torch.randn(2, 20, 32, 32))
    (out * torch.randn_like(out)).sum().backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_hybrid_multiscale_switch():
    default, plain = HybridUNet(), HybridUNet(multiscale_residual=False)
    assert sum(isinstance(m, MultiScaleResidualBlock3D) for m in default.modules()) == 5
    assert MultiScaleResidualBlock3D not in _types(plain)
    assert all(isinstance(b, UnetBasicBlock) for b in [*plain.encoder, plain.deepest])
    mixed = HybridUNet(multiscale_residual=(True, False, True, False, False))
    assert [isinstance(b, MultiScaleResidualBlock3D) for b in [*mixed.encoder, mixed.deepest]] == [
        True,
        False,
        True,
        False,
        False,
    ]


def test_hybrid_attention_switch():
    default, plain = HybridUNet(), HybridUNet(attention_pooling=False)
    assert all(isinstance(p, AttentionSpectralPooling) for p in default.skip_pools)
    assert all(isinstance(p, MeanSpectralPooling) for p in plain.skip_pools)
    assert AttentionSpectralPooling not in _types(plain)
    assert not any("scorer" in name for name, _ in plain.named_modules())
    assert _n_params(plain) < _n_params(default)


def test_hybrid_compression_switch():
    default, plain = HybridUNet(), HybridUNet(spectral_compression=False)
    assert isinstance(default.compression, SpectralCompression)
    assert isinstance(plain.compression, MeanSpectralCompression)
    assert SpectralCompression not in _types(plain)
    assert _n_params(plain) != _n_params(default)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"multiscale_residual": False, "attention_pooling": False}, FAST_ENCODER],
    ids=["full", "plain_blocks_mean_pooling", "fast_encoder"],
)
def test_hybrid_scripted_matches_eager_on_any_number_of_frames(kwargs):
    torch.manual_seed(0)
    net = HybridUNet(**kwargs).eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)  # what `monai.bundle ckpt_export` does
    buffer.seek(0)
    scripted = torch.jit.load(buffer)
    for k in (HybridUNet.min_spectral_frames, 50, 64, 128):
        x = torch.randn(1, k, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), net(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{}, FAST_ENCODER])
def test_channels_last_changes_the_layout_not_the_result(kwargs):
    torch.manual_seed(0)
    kwargs = {**kwargs, "channels_last": False}
    contiguous = HybridUNet(**kwargs).eval()
    channels_last = HybridUNet(**{**kwargs, "channels_last": True}).eval()
    channels_last.load_state_dict(contiguous.state_dict())  # a layout option: the same weights load
    x = torch.randn(2, 40, 48, 32)
    with torch.no_grad():
        torch.testing.assert_close(channels_last(x), contiguous(x), rtol=1e-4, atol=1e-4)


def test_fast_encoder_keeps_the_modules_and_their_switches():
    fast = HybridUNet(**FAST_ENCODER)
    blocks = [*fast.encoder, fast.deepest]
    assert all(isinstance(b, FactorizedMultiScaleBlock3D) for b in blocks)
    assert not any(isinstance(m, torch.nn.InstanceNorm3d) for m in fast.modules())  # batch norm: fixed at inference
    assert isinstance(fast.skip_pools[0], AttentionSpectralPooling)
    assert isinstance(fast.compression, SpectralCompression)
    plain = HybridUNet(**FAST_ENCODER, multiscale_residual=False, attention_pooling=False, spectral_compression=False)
    assert FactorizedMultiScaleBlock3D not in _types(plain)
    assert isinstance(plain.skip_pools[0], MeanSpectralPooling)
    assert isinstance(plain.compression, MeanSpectralCompression)
    with pytest.raises(ValueError, match="encoder_conv must be one of"):
        HybridUNet(encoder_conv="separable")


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((64, 32, 32), r"\(B, K, H, W\).*3-D"),
        ((1, 1, 64, 32, 32), r"\(B, K, H, W\).*5-D"),
        ((1, 8, 32, 32), r"at least 16 spectral frames, got K=8"),
    ],
)
def test_hybrid_rejects_bad_input(shape, match):
    with pytest.raises(ValueError, match=match):
        HybridUNet()(torch.randn(*shape))


@pytest.mark.parametrize("size", [(1, 1), (16, 16), (40, 32), (32, 20), (17, 63)])
@pytest.mark.parametrize("training", [True, False])
def test_hybrid_segments_fields_of_any_size_in_train_and_eval_mode(size, training):
    """Any field, even 1×1 or the zoo's 16×16 in training mode (instance norm needs > 1 position per level)."""
    torch.manual_seed(0)
    net = HybridUNet(**SMALL).train(training)
    x = torch.randn(2, 32, *size)
    out = net(x)
    assert out.shape == (2, 3, *size)
    if not training:  # the padding is edge replication up to the levels' size, cropped back afterwards
        padded = net.pad_field(x)
        assert padded.shape[2] % net.spatial_divisor == 0
        assert padded.shape[2] >= 2 * net.spatial_divisor
        torch.testing.assert_close(net(padded)[:, :, : size[0], : size[1]], out)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"features": (8,)}, "at least 2 positive channel counts"),
        ({"decoder_features": (16, 32)}, "one entry per level"),
        ({"spectral_strides": (1, 2)}, "one positive stride per level"),
        ({"multiscale_residual": (True, False)}, "one bool per level"),
        ({"stem_spectral_kernel": 6}, "must be odd"),
        ({"attention_heads": 3}, "multiple of heads=3"),
    ],
)
def test_hybrid_rejects_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HybridUNet(**kwargs)


def test_hybrid_init_is_deterministic():
    torch.manual_seed(7)
    a = HybridUNet().state_dict()
    torch.manual_seed(7)
    b = HybridUNet().state_dict()
    torch.manual_seed(8)
    c = HybridUNet().state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not all(torch.equal(a[key], c[key]) for key in a)


def test_hybrid_default_size_budget():
    """The default model's float32 weights stay under 20 MB (the bundle's size target)."""
    assert 1_000_000 < _n_params(HybridUNet()) < 20e6 / 4


# ---------------------------------------------------------------------------------------------- blocks


def test_split_channels():
    assert split_channels(8, 3) == [3, 3, 2]
    with pytest.raises(ValueError, match="cannot split 2 channels into 3"):
        split_channels(2, 3)


@pytest.mark.parametrize("stride", [1, (2, 2, 2), (1, 2, 2)])
def test_pointwise_conv_matches_conv3d(stride):
    torch.manual_seed(0)
    pointwise = PointwiseConv3d(5, 3, stride=stride)
    reference = torch.nn.Conv3d(5, 3, kernel_size=1, stride=stride)
    reference.load_state_dict(pointwise.state_dict())
    x = torch.randn(2, 5, 7, 6, 6)
    torch.testing.assert_close(pointwise(x), reference(x))
    x_cl = x.contiguous(memory_format=torch.channels_last_3d)
    out = pointwise(x_cl)  # the channels-last path: a linear map over the innermost axis
    torch.testing.assert_close(out, reference(x))
    assert out.is_contiguous(memory_format=torch.channels_last_3d) or stride != 1


@pytest.mark.parametrize(("k", "expected_k"), [(7, 4), (8, 4), (1, 1)])
def test_multiscale_block_rounds_odd_spectral_sizes_up(k, expected_k):
    block = MultiScaleResidualBlock3D(4, 6, stride=2, spectral_dilations=(1, 2, 3))
    assert block(torch.randn(2, 4, k, 8, 8)).shape == (2, 6, expected_k, 4, 4)


def test_multiscale_block_branches_have_the_requested_dilations():
    block = MultiScaleResidualBlock3D(8, 8, spectral_dilations=(1, 2, 4))
    assert [b.conv.dilation for b in block.branches] == [(1, 1, 1), (2, 1, 1), (4, 1, 1)]
    assert [b.conv.out_channels for b in block.branches] == [3, 3, 2]
    assert isinstance(block.residual, torch.nn.Identity)  # same shape: the input itself is the residual
    assert not isinstance(MultiScaleResidualBlock3D(8, 8, stride=(1, 2, 2)).residual, torch.nn.Identity)


@pytest.mark.parametrize("dilations", [(1, 2, 3), (1, 4)])
def test_factorized_block_spectral_taps_are_those_of_its_branches(dilations):
    """A spectral impulse reaches the taps k +- d of every branch, and 3x3 pixels around it (batch norm, eval mode)."""
    torch.manual_seed(0)
    block = FactorizedMultiScaleBlock3D(4, 4, spectral_dilations=dilations, norm="batch").eval()
    x = torch.zeros(1, 4, 16, 9, 9)
    x[0, :, 8, 4, 4] = 1.0
    with torch.no_grad():
        reached = block(x).abs().sum(dim=(0, 1)) > 0  # (K, H, W)
    spectral = reached.any(dim=(1, 2)).nonzero().flatten().tolist()
    assert spectral == sorted({8 + j * d for d in dilations for j in (-1, 0, 1)})
    assert reached.any(dim=0).sum() == 9  # the spatial 3x3 kernel, applied once


def test_factorized_block_strides_and_shapes():
    block = FactorizedMultiScaleBlock3D(4, 6, stride=(2, 2, 2), spectral_dilations=(1, 2, 3))
    assert block(torch.randn(2, 4, 9, 16, 12)).shape == (2, 6, 5, 8, 6)
    assert not isinstance(block.residual, torch.nn.Identity)
    assert isinstance(FactorizedMultiScaleBlock3D(6, 6).residual, torch.nn.Identity)


def test_attention_weights_sum_to_one_over_the_spectral_axis():
    pool = AttentionSpectralPooling(6, 8, heads=2)
    weights = pool.spectral_weights(torch.randn(2, 6, 9, 4, 4))
    assert weights.shape == (2, 2, 9, 4, 4)
    torch.testing.assert_close(weights.sum(dim=2), torch.ones(2, 2, 4, 4))


def test_attention_pooling_matches_its_definition():
    torch.manual_seed(0)
    pool = AttentionSpectralPooling(6, 8, heads=2)
    x = torch.randn(2, 6, 9, 4, 4, requires_grad=True)
    weights = pool.spectral_weights(x)
    pooled = torch.einsum("bckhw,bnkhw->bnchw", x, weights).flatten(1, 2)  # (B, heads * C, H, W)
    expected = pool.embed(pooled)
    out = pool(x)
    torch.testing.assert_close(out, expected)
    grad, expected_grad = torch.autograd.grad(out.sum(), x)[0], torch.autograd.grad(expected.sum(), x)[0]
    torch.testing.assert_close(grad, expected_grad)


def test_attention_pooling_with_uniform_scores_is_mean_pooling():
    torch.manual_seed(0)
    attention, mean = AttentionSpectralPooling(6, 8, heads=1), MeanSpectralPooling(6, 8)
    mean.embed.weight.data.copy_(attention.embed.weight.data)
    x = torch.randn(2, 6, 9, 4, 4)
    assert not torch.allclose(attention(x), mean(x), atol=1e-4)  # the scorer does weight the positions
    torch.nn.init.zeros_(attention.scorer[-1].weight)
    torch.testing.assert_close(attention(x), mean(x))


@pytest.mark.parametrize("k", [1, 3, 13])
def test_spectral_compression_output_does_not_depend_on_k(k):
    assert SpectralCompression(16, 12, bins=4)(torch.randn(2, 16, k, 4, 4)).shape == (2, 12, 4, 4)
    assert MeanSpectralCompression(16, 12)(torch.randn(2, 16, k, 4, 4)).shape == (2, 12, 4, 4)


# ---------------------------------------------------------------------------------------------- baselines


def test_plan_nnunet_2d_square_patch():
    plan = plan_nnunet_2d((256, 256), (1.0, 1.0))
    assert plan["strides"] == [[1, 1]] + [[2, 2]] * 6
    assert plan["kernel_sizes"] == [[3, 3]] * 7
    assert plan["features"] == [32, 64, 128, 256, 480, 480, 480]
    assert plan["divisor"] == [64, 64]
    assert plan["patch_size"] == [256, 256]
    assert len(plan_nnunet_2d((512, 512))["strides"]) == 8


def test_plan_nnunet_2d_rectangular_and_odd_patches():
    plan = plan_nnunet_2d((128, 384))
    assert plan["num_pool_per_axis"] == [5, 6]
    assert plan["strides"][-1] == [1, 2]
    odd = plan_nnunet_2d((100, 100))  # 100 -> 50 -> 25 -> 12.5 -> 6.25: four halvings
    assert odd["divisor"] == [16, 16]
    assert odd["patch_size"] == [112, 112]


def test_plan_nnunet_2d_anisotropic_spacing_delays_the_coarse_axis():
    plan = plan_nnunet_2d((256, 256), (0.25, 1.0))
    assert plan["strides"][1] == [2, 1]  # only the fine axis is halved first
    assert plan["kernel_sizes"][0] == [3, 1]  # no 3-tap context across the 4x coarser axis
    assert plan["strides"][2] == [2, 2]


def test_plan_nnunet_2d_rejects_mismatched_spacing():
    with pytest.raises(ValueError, match="one positive value per axis"):
        plan_nnunet_2d((256, 256), (1.0,))


def test_nnunet_style_contract_and_scripting():
    torch.manual_seed(0)
    net = NNUNetStyle2D(in_channels=20, patch_size=(64, 64)).eval()
    assert net.plan["divisor"] == [16, 16]
    x = torch.randn(2, 20, 32, 48)
    with torch.no_grad():
        out = net(x)
        assert out.shape == (2, 3, 32, 48)
        torch.testing.assert_close(torch.jit.script(net)(x), out)
    with pytest.raises(ValueError, match="K=20"):
        net(torch.randn(1, 21, 32, 32))
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.randn(1, 20, 40, 32))


def test_nnunet_style_deep_supervision_shapes():
    net = NNUNetStyle2D(in_channels=20, patch_size=(64, 64), deep_supervision=True)
    x = torch.randn(2, 20, 32, 32)
    assert net(x).shape == (2, 1 + 2, 3, 32, 32)  # 4 decoder levels, the two coarsest unsupervised
    assert net.eval()(x).shape == (2, 3, 32, 32)


def test_hybrid_deep_supervision_adds_heads_only_in_training():
    torch.manual_seed(0)
    kwargs = {"features": (4, 8, 8, 16, 16), "norm": ("instance", {"affine": True}), "encoder_conv": "factorized"}
    net = HybridUNet(deep_supervision=True, **kwargs)
    plain = HybridUNet(**kwargs)
    missing, unexpected = plain.load_state_dict(net.state_dict(), strict=False)
    assert not missing
    assert unexpected
    assert all(k.startswith("deep_supervision_heads.") for k in unexpected)
    x = torch.randn(2, 32, 40, 24)  # padded to 48x32 inside, cropped back
    stacked = net.train()(x)
    assert stacked.shape == (2, 1 + 2, 3, 40, 24)  # 4 decoder levels, the two coarsest unsupervised (as DynUNet)
    torch.testing.assert_close(stacked[:, 0], plain.train()(x))  # the first entry is the network's own output
    assert not torch.allclose(stacked[:, 1], stacked[:, 0])
    stacked.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.deep_supervision_heads.parameters())
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), plain.eval()(x))
        torch.testing.assert_close(torch.jit.script(net)(x), plain(x))
    with pytest.raises(ValueError, match="deep_supr_num"):
        HybridUNet(deep_supervision=True, deep_supr_num=4, **kwargs)


def test_unet3d_spectral_contract_and_scripting():
    torch.manual_seed(0)
    net = UNet3DSpectral(features=(4, 8, 8, 16, 16, 4)).eval()
    scripted = torch.jit.script(net)
    with torch.no_grad():
        for k in (50, 64):
            x = torch.randn(1, k, 32, 16)
            out = net(x)
            assert out.shape == (1, 3, 32, 16)
            torch.testing.assert_close(scripted(x), out)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.randn(1, 64, 24, 16))


def test_unet3d_spectral_default_is_a_standard_3d_unet():
    net = UNet3DSpectral()
    assert net.unet.conv_0.conv_0.conv.in_channels == 1
    assert net.unet.down_4.convs.conv_1.conv.out_channels == 256
    assert net(torch.randn(1, 50, 16, 16)).shape == (1, 3, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "unseen"),
    [
        ({}, []),  # the full encoder: kernel 7, stride 4
        (FAST_ENCODER, [4, 12, 20, 28, 36, 44, 52, 60, 61, 62, 63]),  # the 0.4.0 network: 11 of 64 frames never read
        ({**FAST_ENCODER, "stem_spectral_kernel": 9, "stem_spectral_padding": 1}, []),
        ({**FAST_ENCODER, "stem_spectral_kernel": 17, "stem_spectral_stride": 16}, [57, 58, 59, 60, 61, 62, 63]),
        ({**FAST_ENCODER, "stem_spectral_kernel": 17, "stem_spectral_stride": 16, "stem_spectral_padding": 1}, []),
    ],
)
def test_stem_unseen_frames_are_the_frames_the_output_does_not_depend_on(kwargs, unseen):
    """The stem is the only layer reading the input frames: a frame it skips never reaches the segmentation."""
    torch.manual_seed(0)
    net = HybridUNet(**kwargs, features=[4, 8, 8, 8]).eval()
    assert net.stem_unseen_frames(64) == unseen
    x = torch.randn(1, 64, 16, 16, requires_grad=True)
    net(x).abs().sum().backward()
    assert [f for f in range(64) if float(x.grad[0, f].abs().sum()) == 0.0] == unseen


def test_stem_padding_must_be_below_the_kernel():
    with pytest.raises(ValueError, match="stem_spectral_padding=9 must be at least 0 and below the stem's spectral"):
        HybridUNet(stem_spectral_kernel=9, stem_spectral_padding=9)
