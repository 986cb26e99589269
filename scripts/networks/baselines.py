"""Baselines the hybrid-UNet is compared with, built from MONAI networks.

- :func:`plan_nnunet_2d` and :class:`NNUNetStyle2D` -- an nnU-Net-style 2D U-Net (MONAI ``DynUNet``)
  whose stages come from an nnU-Net-like plan; the ``K`` spectral frames are its input channels.
- :class:`UNet3DSpectral` -- a standard 3D U-Net (MONAI ``BasicUNet``) on the spectral volume
  ``(B, 1, K, H, W)`` followed by a spectral projection head.

Both map a ``(B, K, H, W)`` stack to ``(B, 3, H, W)`` logits, like :class:`~scripts.networks.HybridUNet`,
and both script with ``torch.jit.script``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.utils import get_act_layer
from monai.networks.nets import BasicUNet, DynUNet

__all__ = ["NNUNetStyle2D", "UNet3DSpectral", "plan_nnunet_2d"]


def plan_nnunet_2d(
    patch_size: Sequence[int],
    spacing: Sequence[float] = (1.0, 1.0),
    min_feature_map_size: int = 4,
    max_pool_per_axis: int = 999,
    base_features: int = 32,
    max_features: int = 480,
    anisotropy_ratio: float = 2.0,
) -> dict:
    """Plan the stages of an nnU-Net-style U-Net from the training patch size and the pixel spacing.

    The rules follow nnU-Net's planner (Isensee et al., Nat Methods 2021), written here from the
    paper's description:

    1. Starting from the patch size and spacing, each downsampling step halves every axis that
       (a) is at least ``2 * min_feature_map_size`` pixels long, so no feature map gets smaller than
       ``min_feature_map_size`` (4 px in nnU-Net), (b) has a current spacing at most
       ``anisotropy_ratio`` (2) times the finest current spacing, so a coarse axis waits until the
       fine axes have caught up, and (c) has been halved fewer than ``max_pool_per_axis`` times.
       Halving an axis doubles its spacing. Planning stops when no axis can be halved.
    2. Every stage has two convolutions with kernel 3 along each axis, or 1 along an axis whose
       spacing is still more than ``anisotropy_ratio`` times the finest (no context is gathered
       across a much coarser axis). The first stage has stride 1; stage ``i > 0`` has stride 2 along
       the axes halved at step ``i`` and 1 elsewhere.
    3. Features start at ``base_features`` (32) and double every stage, capped at ``max_features``
       (480 for 2D networks).
    4. The patch size is rounded up to a multiple of the total stride along each axis, since the
       network only accepts sizes divisible by it.

    Args:
        patch_size: training patch size, e.g. ``(256, 256)``; the rules work for any number of axes.
        spacing: physical pixel spacing of each axis (any unit); only ratios matter.
        min_feature_map_size: smallest edge length of the coarsest feature map.
        max_pool_per_axis: most halvings of any one axis.
        base_features: features of the first stage.
        max_features: cap on the features of any stage.
        anisotropy_ratio: spacing ratio above which an axis is neither halved nor convolved with 3 taps.

    Returns:
        dict with
            - ``"patch_size"``: the patch size rounded up to a multiple of ``"divisor"``;
            - ``"spacing"``: the input spacing;
            - ``"kernel_sizes"``: list of per-axis kernel sizes, one per stage;
            - ``"strides"``: list of per-axis strides, one per stage (the first is all ones);
            - ``"features"``: features of each stage;
            - ``"num_pool_per_axis"``: halvings of each axis;
            - ``"divisor"``: total stride of each axis (input sizes must be multiples of it).

    Example:
        >>> plan = plan_nnunet_2d((256, 256), (1.0, 1.0))
        >>> len(plan["strides"]), plan["features"]
        (7, [32, 64, 128, 256, 480, 480, 480])
    """
    patch = [int(p) for p in patch_size]
    dims = len(patch)
    if dims < 1 or min(patch) < 1:
        raise ValueError(f"patch_size must list positive pixel counts, got {tuple(patch_size)}.")
    if len(spacing) != dims or min(spacing) <= 0:
        raise ValueError(
            f"spacing {tuple(spacing)} must give one positive value per axis of patch_size {tuple(patch)}."
        )
    size = [float(p) for p in patch]
    current_spacing = [float(s) for s in spacing]
    num_pool = [0] * dims

    def kernel_for(spacing_now: list[float]) -> list[int]:
        finest = min(spacing_now)
        return [3 if s <= anisotropy_ratio * finest else 1 for s in spacing_now]

    kernel_sizes = [kernel_for(current_spacing)]
    strides = [[1] * dims]
    while True:
        finest = min(current_spacing)
        pool = [
            size[a] >= 2 * min_feature_map_size
            and current_spacing[a] <= anisotropy_ratio * finest
            and num_pool[a] < max_pool_per_axis
            for a in range(dims)
        ]
        if not any(pool):
            break
        for a in range(dims):
            if pool[a]:
                size[a] /= 2
                current_spacing[a] *= 2
                num_pool[a] += 1
        strides.append([2 if p else 1 for p in pool])
        kernel_sizes.append(kernel_for(current_spacing))
    divisor = [2**n for n in num_pool]
    return {
        "patch_size": [math.ceil(p / d) * d for p, d in zip(patch, divisor, strict=True)],
        "spacing": [float(s) for s in spacing],
        "kernel_sizes": kernel_sizes,
        "strides": strides,
        "features": [min(base_features * 2**i, max_features) for i in range(len(strides))],
        "num_pool_per_axis": num_pool,
        "divisor": divisor,
    }


class NNUNetStyle2D(nn.Module):
    """nnU-Net-style 2D U-Net: MONAI ``DynUNet`` planned by :func:`plan_nnunet_2d`, frames as channels.

    The ``K`` spectral frames are the input channels, as nnU-Net treats a multi-channel image, so
    ``K`` is fixed at construction (resample stacks onto the canonical spectral grid first). Blocks
    are nnU-Net's: two 3x3 convolutions with instance norm and leaky ReLU, strided convolutions for
    downsampling, transposed convolutions for upsampling.

    Deep supervision (optional, off by default) follows ``DynUNet``: in training mode the output is
    ``(B, 1 + deep_supr_num, out_channels, H, W)`` -- the full-resolution logits first, then the
    coarser heads upsampled to full size -- so the loss has to ``torch.unbind(output, dim=1)`` and
    weight the terms. In eval mode the output is always ``(B, out_channels, H, W)``.

    Args:
        in_channels: number of spectral frames ``K``.
        out_channels: number of classes.
        patch_size: training patch size the network is planned for.
        spacing: pixel spacing ``(row, column)``; only the ratio matters.
        deep_supervision: add deep-supervision heads (training-mode output as described above).
        deep_supr_num: number of extra heads; defaults to all decoder levels but the two coarsest
            (nnU-Net gives those weight 0), at least 1.
        dropout: dropout probability in the blocks, ``None`` for none.
        plan_kwargs: further keyword arguments of :func:`plan_nnunet_2d`.

    Shape:
        - input: ``(B, K, H, W)``, ``K = in_channels``, ``H, W`` divisible by ``plan["divisor"]``
        - output: ``(B, out_channels, H, W)`` (eval mode or no deep supervision)
    """

    __constants__ = ["in_channels", "divisor_h", "divisor_w"]

    def __init__(
        self,
        in_channels: int = 64,
        out_channels: int = 3,
        patch_size: Sequence[int] = (256, 256),
        spacing: Sequence[float] = (1.0, 1.0),
        deep_supervision: bool = False,
        deep_supr_num: int | None = None,
        dropout: float | None = None,
        plan_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if len(patch_size) != 2:
            raise ValueError(f"NNUNetStyle2D is a 2D network: patch_size must be (H, W), got {tuple(patch_size)}.")
        plan = plan_nnunet_2d(patch_size, spacing, **(plan_kwargs or {}))
        if len(plan["strides"]) < 3:
            raise ValueError(
                f"patch_size {tuple(patch_size)} allows only {len(plan['strides']) - 1} downsampling step(s); "
                "DynUNet needs at least 2 -- use a patch of at least 16x16 pixels."
            )
        num_up = len(plan["strides"]) - 1
        if deep_supr_num is None:
            deep_supr_num = max(num_up - 2, 1)
        self.plan = plan
        self.in_channels = in_channels
        self.divisor_h, self.divisor_w = plan["divisor"]
        #: the total stride: H and W must be multiples of it (what the ONNX export traces the field size in)
        self.spatial_divisor = math.lcm(int(self.divisor_h), int(self.divisor_w))
        self.net = DynUNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=plan["kernel_sizes"],
            strides=plan["strides"],
            upsample_kernel_size=plan["strides"][1:],
            filters=plan["features"],
            dropout=dropout,
            norm_name=("instance", {"affine": True}),
            act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
            deep_supervision=deep_supervision,
            deep_supr_num=deep_supr_num,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: ``(B, K, H, W)`` spectral stacks.

        Returns:
            ``(B, out_channels, H, W)`` logits; ``(B, 1 + deep_supr_num, out_channels, H, W)`` in
            training mode with deep supervision.
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"NNUNetStyle2D expects (B, K={self.in_channels}, H, W) spectral stacks, got shape {list(x.shape)}; "
                f"resample the stack onto the {self.in_channels}-frame spectral grid it was built for."
            )
        h, w = x.shape[2], x.shape[3]
        if h % self.divisor_h != 0 or w % self.divisor_w != 0:
            raise ValueError(
                f"NNUNetStyle2D needs H divisible by {self.divisor_h} and W by {self.divisor_w}, got (H, W) = "
                f"({h}, {w}); pad the image (monai.transforms.DivisiblePad) or use "
                "monai.inferers.SlidingWindowInferer with the planned patch size."
            )
        return self.net(x)


class UNet3DSpectral(nn.Module):
    """3D U-Net baseline: MONAI ``BasicUNet`` on the spectral volume, then a spectral projection head.

    The stack ``(B, K, H, W)`` is treated as a one-channel volume ``(B, 1, K, H, W)``; ``BasicUNet``
    (four 2x max-poolings along every axis) gives ``features[5]`` channels per voxel, which pass a
    leaky ReLU, are averaged over the spectral axis and mapped to class logits by a 1x1 convolution.

    ``BasicUNet`` needs every axis divisible by 16. ``K`` is therefore padded internally up to the
    next multiple of 16 by repeating the last frame (``K = 50 -> 64``); the padded positions are
    dropped again before the spectral average, so any ``K >= 16`` works with the same weights.
    ``H`` and ``W`` must be multiples of 16.

    Args:
        out_channels: number of classes.
        features: ``BasicUNet`` features: five encoder levels and the last decoder level. The
            default ``(16, 32, 64, 128, 256, 16)`` is the classic 3D U-Net progression starting at 16
            (``BasicUNet``'s own default starts at 32, which needs twice the memory at full size).
        norm: normalisation type and arguments.
        act: activation type and arguments.
        dropout: dropout probability.

    Shape:
        - input: ``(B, K, H, W)``, ``K >= 16``, ``H, W`` divisible by 16
        - output: ``(B, out_channels, H, W)``
    """

    __constants__ = ["divisor"]
    divisor: int = 16

    def __init__(
        self,
        out_channels: int = 3,
        features: Sequence[int] = (16, 32, 64, 128, 256, 16),
        norm: str | tuple = ("instance", {"affine": True}),
        act: str | tuple = ("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(features) != 6:
            raise ValueError(
                f"features must have 6 entries (BasicUNet's five levels and its last decoder), got {features}."
            )
        self.unet = BasicUNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=features[5],
            features=features,
            act=act,
            norm=norm,
            dropout=dropout,
        )
        self.act = get_act_layer(name=act)
        self.head = nn.Conv2d(features[5], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: ``(B, K, H, W)`` spectral stacks.

        Returns:
            ``(B, out_channels, H, W)`` logits.
        """
        d = self.divisor
        if x.dim() != 4 or x.shape[1] < d or x.shape[2] % d != 0 or x.shape[3] % d != 0:
            raise ValueError(
                f"UNet3DSpectral expects (B, K, H, W) stacks with K >= {d} and H, W divisible by {d}, got shape "
                f"{list(x.shape)}; pad H and W (monai.transforms.DivisiblePad(k={d})) or use "
                f"monai.inferers.SlidingWindowInferer with an roi_size divisible by {d}."
            )
        k = x.shape[1]
        volume = x.unsqueeze(1)
        pad = (d - k % d) % d
        if pad > 0:
            volume = F.pad(volume, [0, 0, 0, 0, 0, pad], mode="replicate")
        features = self.act(self.unet(volume))[:, :, :k]
        return self.head(features.mean(dim=2))
