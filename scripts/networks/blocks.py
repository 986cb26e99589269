"""Building blocks of the hybrid-UNet: spectral–spatial 3D encoder blocks and spectral reductions.

Tensor layout: the 3D encoder works on ``(B, C, K, H, W)`` -- batch, feature channels, spectral
positions (one per Raman shift, ``K`` shrinks as the encoder goes deeper), image rows and columns.
Every spectral reduction returns a 2D feature map ``(B, C_out, H, W)`` for the 2D decoder.

Each module of the paper has a plain alternative with the same input and output shapes, so that an
ablation only swaps a class:

- :class:`MultiScaleResidualBlock3D` -- plain: ``monai.networks.blocks.UnetBasicBlock`` (two 3x3x3 convolutions);
- :class:`AttentionSpectralPooling` -- plain: :class:`MeanSpectralPooling` (uniform weights over ``K``);
- :class:`SpectralCompression` -- plain: :class:`MeanSpectralCompression` (mean over ``K``).

No layer has a size that depends on ``K``: the same weights run on any number of spectral frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.utils import get_act_layer, get_dropout_layer, get_norm_layer

__all__ = [
    "AttentionSpectralPooling",
    "FactorizedMultiScaleBlock3D",
    "MeanSpectralCompression",
    "MeanSpectralPooling",
    "MultiScaleResidualBlock3D",
    "PointwiseConv3d",
    "SpectralCompression",
    "split_channels",
]

DEFAULT_ACT: tuple = ("leakyrelu", {"negative_slope": 0.01, "inplace": True})
DEFAULT_NORM: tuple = ("instance", {"affine": True})


def split_channels(channels: int, parts: int) -> list[int]:
    """Split ``channels`` into ``parts`` near-equal positive integers (the first ones get the remainder).

    Example:
        >>> split_channels(8, 3)
        [3, 3, 2]
    """
    if parts < 1 or channels < parts:
        raise ValueError(
            f"cannot split {channels} channels into {parts} branches with at least one channel each; "
            f"use at least {parts} channels or fewer branches."
        )
    return [channels // parts + (1 if i < channels % parts else 0) for i in range(parts)]


def _dropout_layer(dropout: float | tuple | str | None) -> nn.Module:
    if dropout is None or (isinstance(dropout, (int, float)) and dropout == 0):
        return nn.Identity()
    return get_dropout_layer(name=dropout, dropout_dim=1)


class PointwiseConv3d(nn.Conv3d):
    """A 1x1x1 ``nn.Conv3d`` computed as a matrix product over the channel axis.

    PyTorch's CPU convolution is slow for 1x1x1 kernels on large volumes -- slower than a 3x3x3
    convolution with the same channels (340 ms against 35 ms for this class on a
    ``(1, 8, 16, 512, 512)`` input, torch 2.13, 2 cores); a channel matmul gives the same result at
    memory speed. Parameters, ``state_dict`` keys and ``isinstance(m, nn.Conv3d)`` are those of
    ``nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=stride, bias=bias)``; a stride
    keeps every ``s``-th voxel, as a strided 1x1x1 convolution does.

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        stride: stride ``(s_K, s_H, s_W)`` or one int for all axes.
        bias: whether to add a learned bias.

    Shape:
        - input: ``(B, C_in, K, H, W)``
        - output: ``(B, C_out, ceil(K / s_K), ceil(H / s_H), ceil(W / s_W))``
    """

    def __init__(self, in_channels: int, out_channels: int, stride: Sequence[int] | int = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        if s[0] != 1 or s[1] != 1 or s[2] != 1:
            x = x[:, :, :: s[0], :: s[1], :: s[2]]
        if x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
            # channels-last: the channels are the innermost axis, so the convolution is one linear map over
            # it; the result stays channels-last
            return F.linear(x.permute(0, 2, 3, 4, 1), self.weight.flatten(1), self.bias).permute(0, 4, 1, 2, 3)
        b, k, h, w = x.shape[0], x.shape[2], x.shape[3], x.shape[4]
        # bmm with an expanded weight: torch.matmul(2-D, 3-D) takes a much slower path for parameters
        weight = self.weight.flatten(1).expand(b, -1, -1)
        y = torch.bmm(weight, x.reshape(b, x.shape[1], k * h * w))
        bias = self.bias
        if bias is not None:
            y = y + bias.view(1, -1, 1)
        return y.view(b, y.shape[1], k, h, w)


class _MultiScaleFusion(nn.Module):
    """What the two forms of the multi-scale residual module share: fusion of the branches and the residual path.

    ``concat(branches) ─ norm ─ act ─ [dropout] ─ conv 1x1x1 ─ norm ─ (+ residual(x)) ─ act``; the residual is the
    identity, or a strided 1x1x1 projection with norm when the stride or the channel count changes.
    """

    @staticmethod
    def _checked_stride(stride: Sequence[int] | int, spectral_dilations: Sequence[int]) -> tuple:
        """The stride as ``(s_K, s_H, s_W)``, after checking the branches' dilations."""
        if len(spectral_dilations) == 0 or min(spectral_dilations) < 1:
            raise ValueError(f"spectral_dilations must be one or more positive ints, got {tuple(spectral_dilations)}.")
        return (stride,) * 3 if isinstance(stride, int) else tuple(stride)

    def _build_fusion(
        self,
        in_channels: int,
        out_channels: int,
        stride3: tuple,
        norm: str | tuple,
        act: str | tuple,
        dropout: float | tuple | str | None,
    ) -> None:
        self.branch_norm = get_norm_layer(name=norm, spatial_dims=3, channels=out_channels)
        self.act = get_act_layer(name=act)
        self.dropout = _dropout_layer(dropout)
        self.fuse = PointwiseConv3d(out_channels, out_channels, bias=False)
        self.fuse_norm = get_norm_layer(name=norm, spatial_dims=3, channels=out_channels)
        self.residual: nn.Module = nn.Identity()
        if in_channels != out_channels or any(s != 1 for s in stride3):
            self.residual = nn.Sequential(
                PointwiseConv3d(in_channels, out_channels, stride=stride3, bias=False),
                get_norm_layer(name=norm, spatial_dims=3, channels=out_channels),
            )

    def _fuse(self, x: torch.Tensor, branch_outputs: list[torch.Tensor]) -> torch.Tensor:
        y = self.dropout(self.act(self.branch_norm(torch.cat(branch_outputs, dim=1))))
        y = self.fuse_norm(self.fuse(y))
        y = y + self.residual(x)
        return self.act(y)


class MultiScaleResidualBlock3D(_MultiScaleFusion):
    """Multi-scale residual 3D module: parallel branches with different spectral receptive fields.

    Each branch is a 3x3x3 convolution whose spectral taps are dilated by ``d`` (spectral
    receptive field ``2d + 1`` positions, spatial field 3x3); the branches share the input, their
    outputs are concatenated, normalised, activated and fused by a 1x1x1 convolution. A residual
    path (identity, or a strided 1x1x1 projection when the stride or channel count changes) is
    added before the final activation, so spatial detail passes the block unblurred::

        x ─┬─ conv 3x3x3, spectral dilation d_1 ─┐
           ├─ conv 3x3x3, spectral dilation d_2 ─┼─ concat ─ norm ─ act ─ [dropout] ─ conv 1x1x1 ─ norm ─ (+) ─ act ─ y
           ├─ ...                               ─┘                                                      │
           └─ residual: identity, or strided conv 1x1x1 ─ norm ─────────────────────────────────────────┘

    The branch convolutions carry the block's stride, so a block can downsample the spectral
    and spatial axes (odd spectral sizes are rounded up, ``ceil(K / s)``).

    Args:
        in_channels: input feature channels ``C_in``.
        out_channels: output feature channels ``C_out``; split as evenly as possible between branches.
        stride: stride ``(s_K, s_H, s_W)`` or one int for all axes.
        spectral_dilations: one branch per value; the spectral dilation of its 3x3x3 kernel.
        norm: normalisation type and arguments (MONAI ``Norm`` factory name).
        act: activation type and arguments (MONAI ``Act`` factory name).
        dropout: dropout probability after the branches, ``None`` for none.

    Shape:
        - input: ``(B, C_in, K, H, W)``
        - output: ``(B, C_out, ceil(K / s_K), H / s_H, W / s_W)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: Sequence[int] | int = 1,
        spectral_dilations: Sequence[int] = (1, 2, 3),
        norm: str | tuple = DEFAULT_NORM,
        act: str | tuple = DEFAULT_ACT,
        dropout: float | tuple | str | None = None,
    ) -> None:
        super().__init__()
        stride3 = self._checked_stride(stride, spectral_dilations)
        self.branches = nn.ModuleList(
            Convolution(
                spatial_dims=3,
                in_channels=in_channels,
                out_channels=branch_channels,
                strides=stride3,
                kernel_size=3,
                dilation=(d, 1, 1),
                bias=False,
                conv_only=True,
            )
            for d, branch_channels in zip(
                spectral_dilations, split_channels(out_channels, len(spectral_dilations)), strict=True
            )
        )
        self._build_fusion(in_channels, out_channels, stride3, norm, act, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch_outputs: list[torch.Tensor] = []
        for branch in self.branches:
            branch_outputs.append(branch(x))
        return self._fuse(x, branch_outputs)


class FactorizedMultiScaleBlock3D(_MultiScaleFusion):
    """Multi-scale residual module with (2+1)D convolutions: a spatial 3x3 convolution, then spectral branches.

    The fast form of :class:`MultiScaleResidualBlock3D`. Its 3x3x3 branch kernels are factorised
    (R(2+1)D, Tran et al., CVPR 2018): one ``1x3x3`` convolution, shared by all branches, mixes
    space within each spectral slice; then each branch is a ``3x1x1`` spectral convolution with
    spectral dilation ``d`` (receptive field ``2d + 1`` positions, as in the full module) on the
    shared result. Fusion, residual path and activations are those of the full module::

        x ─┬─ conv 1x3x3 ─ norm ─ act ─┬─ conv 3x1x1, dilation d_1 ─┐
           │                           ├─ ...                      ─┼─ concat ─ norm ─ act ─ [dropout] ─ ...
           │                           └─ conv 3x1x1, dilation d_n ─┘
           │   ... ─ conv 1x1x1 ─ norm ─ (+) ─ act ─ y
           └─ residual: identity, or strided conv 1x1x1 ─ norm ─┘

    Per output voxel it costs ``9 C_in C_out + 3 C_out^2 / n_branches x n_branches`` multiply–accumulates
    against ``27 C_in C_out`` for the full module, and its convolutions are the shapes CPU libraries are
    fastest at (2D kernels, short 1D kernels, channels-last).

    Args:
        in_channels: input feature channels ``C_in``.
        out_channels: output feature channels ``C_out``; split as evenly as possible between branches.
        stride: stride ``(s_K, s_H, s_W)`` or one int for all axes; the spatial stride is taken by the
            spatial convolution, the spectral stride by the branches.
        spectral_dilations: one branch per value; the spectral dilation of its 3-tap kernel.
        norm: normalisation type and arguments (MONAI ``Norm`` factory name).
        act: activation type and arguments (MONAI ``Act`` factory name).
        dropout: dropout probability after the branches, ``None`` for none.

    Shape:
        - input: ``(B, C_in, K, H, W)``
        - output: ``(B, C_out, ceil(K / s_K), H / s_H, W / s_W)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: Sequence[int] | int = 1,
        spectral_dilations: Sequence[int] = (1, 2, 3),
        norm: str | tuple = DEFAULT_NORM,
        act: str | tuple = DEFAULT_ACT,
        dropout: float | tuple | str | None = None,
    ) -> None:
        super().__init__()
        stride3 = self._checked_stride(stride, spectral_dilations)
        self.spatial = Convolution(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            strides=(1, stride3[1], stride3[2]),
            kernel_size=(1, 3, 3),
            bias=False,
            norm=norm,
            act=act,
        )
        self.branches = nn.ModuleList(
            Convolution(
                spatial_dims=3,
                in_channels=out_channels,
                out_channels=branch_channels,
                strides=(stride3[0], 1, 1),
                kernel_size=(3, 1, 1),
                dilation=(d, 1, 1),
                bias=False,
                conv_only=True,
            )
            for d, branch_channels in zip(
                spectral_dilations, split_channels(out_channels, len(spectral_dilations)), strict=True
            )
        )
        self._build_fusion(in_channels, out_channels, stride3, norm, act, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.spatial(x)
        branch_outputs: list[torch.Tensor] = []
        for branch in self.branches:
            branch_outputs.append(branch(h))
        return self._fuse(x, branch_outputs)


class AttentionSpectralPooling(nn.Module):
    """Attention-weighted pooling over the spectral axis: a learned, per-pixel weighting of ``K``.

    A small scorer -- a two-layer perceptron on the feature vector of every spectral position of
    every pixel (1x1x1 convolution, activation, 1x1x1 convolution; the features already carry
    spectral context from the encoder's 3D kernels) -- gives each position one score per head. A
    softmax over ``K`` turns the scores into weights, and the spectral vectors are summed with these
    weights. Each head's pooled ``C``-vector is then embedded by a learned linear map into
    ``out_channels / heads`` channels. The embedding is linear,
    so it is applied after pooling (mathematically the same as embedding every spectral position
    and pooling the embeddings, at a fraction of the cost)::

        weights[b, n, k, h, w] = softmax_k(scorer(x))[b, n, k, h, w]
        pooled[b, n, c, h, w]  = Σ_k weights[b, n, k, h, w] · x[b, c, k, h, w]
        out = embed_n(pooled[:, n])   concatenated over heads n

    The scorer's last convolution has no bias (a constant added to all scores cancels in the
    softmax). With uniform weights this module reduces to :class:`MeanSpectralPooling`.

    Args:
        in_channels: feature channels ``C`` of the 3D input.
        out_channels: channels ``C_out`` of the 2D output; divisible by ``heads``.
        heads: number of independent spectral weightings.
        hidden_channels: channels of the scorer's hidden layer; defaults to ``max(in_channels // 2, 4)``.
        act: activation of the scorer.

    Shape:
        - input: ``(B, C, K, H, W)``, any ``K >= 1``
        - output: ``(B, C_out, H, W)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 2,
        hidden_channels: int | None = None,
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        super().__init__()
        if heads < 1 or out_channels % heads != 0:
            raise ValueError(
                f"out_channels={out_channels} must be a positive multiple of heads={heads}; "
                "change the decoder features or attention_heads."
            )
        hidden = hidden_channels if hidden_channels is not None else max(in_channels // 2, 4)
        self.heads = heads
        self.scorer = nn.Sequential(
            PointwiseConv3d(in_channels, hidden), get_act_layer(name=act), PointwiseConv3d(hidden, heads, bias=False)
        )
        self.embed = nn.Conv2d(heads * in_channels, out_channels, kernel_size=1, groups=heads, bias=False)

    def spectral_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights ``(B, heads, K, H, W)``; they sum to one over ``K``."""
        return torch.softmax(self.scorer(x), dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.spectral_weights(x)
        pooled: list[torch.Tensor] = []
        for n in range(self.heads):
            # accumulate over K in place: no (B, C, K, H, W) temporary, several times faster on CPU
            acc = x[:, :, 0] * weights[:, n : n + 1, 0]
            for k in range(1, x.shape[2]):
                acc.addcmul_(x[:, :, k], weights[:, n : n + 1, k])
            pooled.append(acc)
        return self.embed(torch.cat(pooled, dim=1))


class MeanSpectralPooling(nn.Module):
    """Plain alternative to :class:`AttentionSpectralPooling`: mean over ``K``, then a linear embedding.

    Args:
        in_channels: feature channels ``C`` of the 3D input.
        out_channels: channels ``C_out`` of the 2D output.

    Shape:
        - input: ``(B, C, K, H, W)``
        - output: ``(B, C_out, H, W)``
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x.mean(dim=2))


class SpectralCompression(nn.Module):
    """Spectral compression at the deepest level: a learned projection of the spectral axis into channels.

    The features are first thinned by a 1x1x1 convolution (``C -> C / reduction``), the spectral
    axis is average-pooled into a fixed number of ``bins`` (adaptive, so any ``K`` maps to the
    same number of bins -- upsampled by repetition when ``K < bins``), the ``(channels, bins)`` pairs
    are flattened into channels, and a 1x1 convolution with normalisation and activation learns
    which spectral positions of which features matter. It runs where the spatial size is smallest,
    so it costs little.

    Args:
        in_channels: feature channels ``C`` of the 3D input.
        out_channels: channels ``C_out`` of the 2D output.
        bins: number of spectral bins kept before flattening.
        reduction: channel reduction before flattening.
        norm: normalisation type and arguments.
        act: activation type and arguments.

    Shape:
        - input: ``(B, C, K, H, W)``, any ``K >= 1``
        - output: ``(B, C_out, H, W)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bins: int = 4,
        reduction: int = 4,
        norm: str | tuple = DEFAULT_NORM,
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        super().__init__()
        if bins < 1 or reduction < 1:
            raise ValueError(f"bins={bins} and reduction={reduction} must both be positive.")
        reduced = max(in_channels // reduction, 1)
        self.bins = bins
        self.reduce = PointwiseConv3d(in_channels, reduced, bias=False)
        self.project = Convolution(
            spatial_dims=2,
            in_channels=reduced * bins,
            out_channels=out_channels,
            kernel_size=1,
            norm=norm,
            act=act,
            bias=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        y = F.adaptive_avg_pool3d(y, [self.bins, y.shape[3], y.shape[4]])
        return self.project(y.flatten(1, 2))


class MeanSpectralCompression(nn.Module):
    """Plain alternative to :class:`SpectralCompression`: mean over ``K``, then 1x1 conv, norm, act.

    Args:
        in_channels: feature channels ``C`` of the 3D input.
        out_channels: channels ``C_out`` of the 2D output.
        norm: normalisation type and arguments.
        act: activation type and arguments.

    Shape:
        - input: ``(B, C, K, H, W)``
        - output: ``(B, C_out, H, W)``
    """

    def __init__(
        self, in_channels: int, out_channels: int, norm: str | tuple = DEFAULT_NORM, act: str | tuple = DEFAULT_ACT
    ) -> None:
        super().__init__()
        self.project = Convolution(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=1,
            norm=norm,
            act=act,
            bias=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x.mean(dim=2))
