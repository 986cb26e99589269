"""The hybrid-UNet: a 3D spectral–spatial encoder and a 2D decoder for HSRS segmentation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, UnetBasicBlock, UnetOutBlock, UnetUpBlock
from scripts.networks.blocks import (
    DEFAULT_ACT,
    DEFAULT_NORM,
    AttentionSpectralPooling,
    FactorizedMultiScaleBlock3D,
    MeanSpectralCompression,
    MeanSpectralPooling,
    MultiScaleResidualBlock3D,
    SpectralCompression,
)

__all__ = ["ENCODER_CONVS", "FAST_ENCODER", "WIDE_HYBRID", "HybridUNet"]

#: forms of the multi-scale residual 3D module: full 3x3x3 kernels, or (2+1)D (spatial 1x3x3, then spectral 3x1x1)
ENCODER_CONVS = ("full", "factorized")

#: constructor arguments of the fast spectral encoder (``configs/baselines/hybrid_fast_encoder.yaml``):
#: (2+1)D multi-scale modules, batch normalisation (a fixed affine map at inference, no per-window
#: statistics), channels-last 3D tensors and a spectral stride of 8 in the stem (8 spectral positions at
#: full image resolution instead of 16). Measured in the model-cost section of docs/results.md.
FAST_ENCODER: dict = {"encoder_conv": "factorized", "channels_last": True, "norm": "batch", "stem_spectral_stride": 8}

#: constructor arguments of the wide hybrid (``configs/baselines/hybrid_wide.yaml``): the fast encoder's (2+1)D modules
#: with instance normalisation (the batch-norm form lost hard-preset nuclei in the recipe study), twice its channels at
#: every level (3D 16..256, 2D decoder 32..512: the width the study found necessary to tie nnU-Net-style) and a stem
#: that reads every frame (spectral kernel 9, padding 1 at stride 8; the fast encoder's 7-frame stem never reads 11 of
#: 64 frames). 4x the fast encoder's parameters, ~3x its latency. Retrained on the shipped weights' data it did not
#: beat them (docs/baselines.md), so :data:`FAST_ENCODER` stays the shipped network.
WIDE_HYBRID: dict = {
    "features": (16, 32, 64, 128, 256),
    "encoder_conv": "factorized",
    "channels_last": False,
    "norm": ("instance", {"affine": True}),
    "stem_spectral_kernel": 9,
    "stem_spectral_stride": 8,
    "stem_spectral_padding": 1,
}


class HybridUNet(nn.Module):
    """Hybrid UNet: 3D spectral–spatial encoder, spectral pooling on the skips, 2D UNet decoder.

    The spectral stack ``(B, K, H, W)`` becomes a one-channel volume ``(B, 1, K, H, W)``. A spectral
    stem (a ``stem_spectral_kernel``x3x3 convolution with spectral stride ``stem_spectral_stride``)
    turns it into ``features[0]`` channels at ``ceil(K / 4)`` spectral positions and full image
    resolution. Encoder level ``l`` is one 3D block -- the multi-scale residual module
    (:class:`~scripts.networks.blocks.MultiScaleResidualBlock3D`) or a plain double 3x3x3
    convolution (MONAI ``UnetBasicBlock``) -- with stride ``(spectral_strides[l], 2, 2)`` for
    ``l > 0``. Each level but the deepest feeds a skip connection through attention-weighted
    spectral pooling, which gives a 2D map with ``decoder_features[l]`` channels; the deepest level
    goes through the spectral compression module, then a 2D bottleneck block. The decoder is a
    plain 2D UNet decoder (MONAI ``UnetUpBlock``: transposed convolution, concatenation with the
    skip, two 3x3 convolutions) and a 1x1 output convolution.

    With the defaults, for ``K = 64`` and ``H = W = 512`` (``B`` omitted; for ``K = 50`` the spectral
    sizes are 13, 7, 4, 4, 4)::

        stage                      3D tensor (C, K, H, W)        2D tensor (C, H, W)
        input (one channel)        (1, 64, 512, 512)
        stem                       (8, 16, 512, 512)
        level 0 ─ attention pool   (8, 16, 512, 512)      ──>    skip 0 (16, 512, 512)
        level 1 ─ attention pool   (16, 8, 256, 256)      ──>    skip 1 (32, 256, 256)
        level 2 ─ attention pool   (32, 4, 128, 128)      ──>    skip 2 (64, 128, 128)
        level 3 ─ attention pool   (64, 4, 64, 64)        ──>    skip 3 (128, 64, 64)
        level 4 ─ compression      (128, 4, 32, 32)       ──>    (256, 32, 32) ─ 2D bottleneck ─> (256, 32, 32)
        decoder: up + skip 3 ─> (128, 64, 64); up + skip 2 ─> (64, 128, 128); up + skip 1 ─> (32, 256, 256);
                 up + skip 0 ─> (16, 512, 512) ─ 1x1 conv ─> logits (3, 512, 512)

    With :data:`FAST_ENCODER` (stem spectral stride 8) the stem gives ``(8, 8, 512, 512)`` and the spectral
    sizes of the levels are 8, 4, 2, 2, 2: half the full-resolution volume, which is where the time goes.

    Nothing has a size that depends on ``K``: the same weights run on stacks with any number of
    frames ``K >= min_spectral_frames`` (odd spectral sizes are rounded up by the strided
    convolutions). Fields of any size are accepted: ``H`` and ``W`` are padded internally (edge
    replication) up to a multiple of ``2 ** (depth - 1)`` (16 by default), and to at least twice that,
    so the deepest level keeps 2×2 positions for instance normalisation in training mode; the
    logits are cropped back to ``(H, W)``. Sizes that need no padding (multiples of 16 from 32 on)
    are the efficient ones.

    Ablations are configuration only: ``multiscale_residual=False`` uses plain 3D conv blocks,
    ``attention_pooling=False`` mean-pools the skips over ``K`` (same linear embedding),
    ``spectral_compression=False`` averages the deepest level over ``K`` (same 1x1 projection).

    Args:
        out_channels: number of classes (background, nucleus, lipid droplet).
        features: 3D feature channels of each encoder level; its length is the depth (>= 2).
        decoder_features: 2D channels of each level (skip embeddings, decoder blocks; the last is
            the bottleneck). Defaults to twice ``features``.
        spectral_strides: spectral stride of each encoder level (level 0 included, normally 1).
            Defaults to 2 at levels 1 and 2 and 1 elsewhere.
        stem_spectral_kernel: odd spectral kernel size of the stem convolution. The stem is the only
            layer that sees the input frames: a kernel shorter than the stride skips frames (at stride 8
            a 7-frame kernel skips one frame in 8, as in :data:`FAST_ENCODER`); stride + 1 covers them all
            with the matching padding. :meth:`stem_unseen_frames` lists the frames a stem never reads.
        stem_spectral_stride: spectral stride of the stem convolution.
        stem_spectral_padding: zero frames padded at each end of the spectrum before the stem (default
            ``stem_spectral_kernel // 2``). With a large stride the default leaves the last frames unread
            (kernel 17 at stride 16 over 64 frames: frames 57-63); ``(kernel - stride + 1) // 2`` centres
            the windows so that they cover every frame.
        spectral_dilations: spectral dilations of the multi-scale branches (one branch each).
        attention_heads: independent spectral weightings per attention pooling.
        compression_bins: spectral bins kept by the spectral compression.
        multiscale_residual: multi-scale residual 3D module (True) or plain 3D conv block (False),
            for all levels or per level.
        attention_pooling: attention-weighted (True) or mean (False) spectral pooling on the skips.
        spectral_compression: learned spectral compression (True) or mean over ``K`` (False) at the
            deepest level.
        encoder_conv: ``"full"`` 3x3x3 branch kernels in the multi-scale residual module, or
            ``"factorized"`` (2+1)D ones (:class:`~scripts.networks.blocks.FactorizedMultiScaleBlock3D`:
            one spatial 1x3x3 convolution, then 3-tap spectral branches); the fast form.
        channels_last: keep the 3D encoder's tensors channels-last (``torch.channels_last_3d``), the
            layout CPU convolution libraries are fastest at; the same weights, the same results up to
            float rounding.
        norm: normalisation type and arguments (MONAI ``Norm`` factory name), 3D and 2D.
        act: activation type and arguments (MONAI ``Act`` factory name).
        dropout: dropout probability in the encoder and decoder blocks, ``None`` for none.
        deep_supervision: add deep-supervision heads (nnU-Net's training; off by default): a 1x1
            convolution on each of the ``deep_supr_num`` decoder levels just below full resolution. In
            training mode the output is then ``(B, 1 + deep_supr_num, out_channels, H, W)`` -- the
            full-resolution logits first, the coarser heads upsampled (nearest) to ``(H, W)`` -- exactly as
            MONAI ``DynUNet`` stacks them (loss: :class:`~scripts.engine.deep_supervision.StackedDeepSupervisionLoss`).
            In eval mode, and in the ONNX export, the output is always the plain logits.
        deep_supr_num: number of extra heads; defaults to the decoder levels but the two coarsest (the
            rule of :class:`~scripts.networks.baselines.NNUNetStyle2D`), at least 1.

    Shape:
        - input: ``(B, K, H, W)``, ``K >= min_spectral_frames``, any ``H, W >= 1``
        - output: ``(B, out_channels, H, W)`` logits (eval mode or no deep supervision)

    Example:
        >>> net = HybridUNet()
        >>> net(torch.randn(1, 64, 64, 64)).shape
        torch.Size([1, 3, 64, 64])
        >>> net(torch.randn(1, 50, 64, 64)).shape  # same weights, another spectral grid
        torch.Size([1, 3, 64, 64])
    """

    __constants__ = ["min_spectral_frames", "spatial_divisor", "depth"]

    #: Smallest number of spectral frames the network accepts: the stem's spectral stride of 4 then
    #: leaves at least 4 positions for the level-0 attention to choose among (2 with a stride of 8).
    min_spectral_frames: int = 16

    def __init__(
        self,
        out_channels: int = 3,
        features: Sequence[int] = (8, 16, 32, 64, 128),
        decoder_features: Sequence[int] | None = None,
        spectral_strides: Sequence[int] | None = None,
        stem_spectral_kernel: int = 7,
        stem_spectral_stride: int = 4,
        stem_spectral_padding: int | None = None,
        spectral_dilations: Sequence[int] = (1, 2, 3),
        attention_heads: int = 2,
        compression_bins: int = 4,
        multiscale_residual: bool | Sequence[bool] = True,
        attention_pooling: bool = True,
        spectral_compression: bool = True,
        encoder_conv: str = "full",
        channels_last: bool = False,
        norm: str | tuple = DEFAULT_NORM,
        act: str | tuple = DEFAULT_ACT,
        dropout: float | None = None,
        deep_supervision: bool = False,
        deep_supr_num: int | None = None,
    ) -> None:
        super().__init__()
        features = tuple(int(f) for f in features)
        depth = len(features)
        if depth < 2 or min(features) < 1:
            raise ValueError(f"features must list at least 2 positive channel counts (one per level), got {features}.")
        decoder_features = tuple(2 * f for f in features) if decoder_features is None else tuple(decoder_features)
        if len(decoder_features) != depth:
            raise ValueError(
                f"decoder_features {decoder_features} must have one entry per level, like features {features}."
            )
        if spectral_strides is None:
            spectral_strides = tuple(2 if level in (1, 2) else 1 for level in range(depth))
        spectral_strides = tuple(int(s) for s in spectral_strides)
        if len(spectral_strides) != depth or min(spectral_strides) < 1:
            raise ValueError(
                f"spectral_strides {spectral_strides} must give one positive stride per level ({depth} levels)."
            )
        if stem_spectral_kernel < 1 or stem_spectral_kernel % 2 == 0 or stem_spectral_stride < 1:
            raise ValueError(
                f"stem_spectral_kernel={stem_spectral_kernel} must be odd and positive and "
                f"stem_spectral_stride={stem_spectral_stride} positive."
            )
        if stem_spectral_padding is None:
            stem_spectral_padding = stem_spectral_kernel // 2
        if not 0 <= stem_spectral_padding < stem_spectral_kernel:
            raise ValueError(
                f"stem_spectral_padding={stem_spectral_padding} must be at least 0 and below the stem's spectral "
                f"kernel ({stem_spectral_kernel})."
            )
        if encoder_conv not in ENCODER_CONVS:
            raise ValueError(f"encoder_conv must be one of {ENCODER_CONVS}, got {encoder_conv!r}.")
        msr = (multiscale_residual,) * depth if isinstance(multiscale_residual, bool) else tuple(multiscale_residual)
        if len(msr) != depth:
            raise ValueError(f"multiscale_residual {msr} must be one bool or one bool per level ({depth} levels).")

        self.depth = depth
        self.spatial_divisor = 2 ** (depth - 1)
        self.features = features
        self.decoder_features = decoder_features
        self.spectral_strides = spectral_strides
        self.multiscale_residual = msr
        self.attention_pooling = attention_pooling
        self.spectral_compression = spectral_compression
        self.encoder_conv = encoder_conv
        self.channels_last = channels_last
        self.stem_spectral = (stem_spectral_kernel, stem_spectral_stride, stem_spectral_padding)

        self.stem = Convolution(
            spatial_dims=3,
            in_channels=1,
            out_channels=features[0],
            strides=(stem_spectral_stride, 1, 1),
            kernel_size=(stem_spectral_kernel, 3, 3),
            padding=(stem_spectral_padding, 1, 1),
            norm=norm,
            act=act,
            bias=False,
        )
        blocks: list[nn.Module] = []
        for level in range(depth):
            in_ch = features[max(level - 1, 0)]
            stride = (spectral_strides[level], 1, 1) if level == 0 else (spectral_strides[level], 2, 2)
            if msr[level]:
                block_type = FactorizedMultiScaleBlock3D if encoder_conv == "factorized" else MultiScaleResidualBlock3D
                block: nn.Module = block_type(
                    in_ch, features[level], stride, spectral_dilations, norm=norm, act=act, dropout=dropout
                )
            else:
                block = UnetBasicBlock(
                    3, in_ch, features[level], 3, stride, norm_name=norm, act_name=act, dropout=dropout
                )
            blocks.append(block)
        self.encoder = nn.ModuleList(blocks[:-1])
        self.deepest = blocks[-1]

        self.skip_pools = nn.ModuleList(
            (
                AttentionSpectralPooling(features[level], decoder_features[level], heads=attention_heads, act=act)
                if attention_pooling
                else MeanSpectralPooling(features[level], decoder_features[level])
            )
            for level in range(depth - 1)
        )
        self.compression: nn.Module = (
            SpectralCompression(features[-1], decoder_features[-1], bins=compression_bins, norm=norm, act=act)
            if spectral_compression
            else MeanSpectralCompression(features[-1], decoder_features[-1], norm=norm, act=act)
        )
        self.bottleneck = UnetBasicBlock(
            2, decoder_features[-1], decoder_features[-1], 3, 1, norm_name=norm, act_name=act, dropout=dropout
        )
        # deepest first: up-block i brings level depth-1-i up to level depth-2-i
        self.decoder = nn.ModuleList(
            UnetUpBlock(
                2,
                decoder_features[level + 1],
                decoder_features[level],
                kernel_size=3,
                stride=1,
                upsample_kernel_size=2,
                norm_name=norm,
                act_name=act,
                dropout=dropout,
            )
            for level in reversed(range(depth - 1))
        )
        self.head = UnetOutBlock(2, decoder_features[0], out_channels)
        if deep_supr_num is None:
            deep_supr_num = max(depth - 3, 1)
        if deep_supervision and not 1 <= deep_supr_num <= depth - 2:
            raise ValueError(
                f"deep_supr_num must be between 1 and {depth - 2} (the decoder levels below full resolution but "
                f"the deepest) for {depth} levels, got {deep_supr_num}."
            )
        self.deep_supervision = bool(deep_supervision)
        # head i supervises decoder level i + 1 (level 0 is the full-resolution output above)
        self.deep_supervision_heads = nn.ModuleList(
            UnetOutBlock(2, decoder_features[level], out_channels) for level in range(1, deep_supr_num + 1)
        )
        if not self.deep_supervision:
            self.deep_supervision_heads = nn.ModuleList()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """He-normal initialisation for leaky-ReLU networks (as nnU-Net and MONAI ``DynUNet``), zero biases."""
        if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(module.weight, a=0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @torch.jit.unused
    def stem_unseen_frames(self, frames: int = 64) -> list[int]:
        """Indices of the input frames no stem window reads (for ``frames`` input frames): the network never sees
        them. Empty when the stem's kernel, stride and padding cover the spectrum."""
        kernel, stride, padding = self.stem_spectral
        outputs = (frames + 2 * padding - kernel) // stride + 1
        seen = {i * stride - padding + j for i in range(outputs) for j in range(kernel)}
        return [f for f in range(frames) if f not in seen]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, K, H, W)`` with enough frames."""
        if x.dim() != 4:
            raise ValueError(
                f"HybridUNet expects a spectral stack of shape (B, K, H, W), got a {x.dim()}-D tensor of shape "
                f"{list(x.shape)}; add a batch axis (x[None]) to a single (K, H, W) stack."
            )
        k = x.shape[1]
        if k < self.min_spectral_frames:
            raise ValueError(
                f"HybridUNet needs at least {self.min_spectral_frames} spectral frames, got K={k} (input shape "
                f"{list(x.shape)}); resample the stack onto the canonical spectral grid (64 frames) first."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment a batch of spectral stacks.

        Args:
            x: ``(B, K, H, W)`` spectral stacks, frames along ``K`` in ascending wavenumber order.

        Returns:
            ``(B, out_channels, H, W)`` logits.
        """
        self.check_input(x)
        height, width = x.shape[2], x.shape[3]
        x = self.pad_field(x)
        h = self.stem(x.unsqueeze(1))
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last_3d)
        skips: list[torch.Tensor] = []
        for block, pool in zip(self.encoder, self.skip_pools):  # noqa: B905 - TorchScript has no zip(strict=)
            h = block(h)
            skips.append(pool(h))
        y = self.bottleneck(self.compression(self.deepest(h)))
        supervise = self.deep_supervision and self.training
        levels: list[torch.Tensor] = []  # decoder outputs at levels 1, 2, ... (finest first), for the heads
        for i, up in enumerate(self.decoder):
            y = up(y, skips[len(skips) - 1 - i])
            if supervise and i < len(self.decoder) - 1:
                levels.insert(0, y)
        out = self.head(y)
        if not supervise:
            return out[:, :, :height, :width]
        outputs = [out]
        for j, head in enumerate(self.deep_supervision_heads):
            coarse = nn.functional.interpolate(head(levels[j]), size=out.shape[2:])
            outputs.append(coarse)
        return torch.stack(outputs, dim=1)[:, :, :, :height, :width]

    def pad_field(self, x: torch.Tensor) -> torch.Tensor:
        """Pad ``(B, K, H, W)`` at the bottom and right (edge replication) to the size the levels need.

        The padded size is a multiple of :attr:`spatial_divisor` and at least twice it, so that each of the
        ``depth - 1`` halvings is exact and the deepest level has 2×2 positions (instance normalisation in
        training mode needs more than one).
        """
        d = self.spatial_divisor
        pad_h = max(2 * d, (x.shape[2] + d - 1) // d * d) - x.shape[2]
        pad_w = max(2 * d, (x.shape[3] + d - 1) // d * d) - x.shape[3]
        if pad_h == 0 and pad_w == 0:
            return x
        return nn.functional.pad(x, [0, pad_w, 0, pad_h], mode="replicate")
