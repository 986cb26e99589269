"""Deep-supervision loss for networks that stack their heads in one tensor (MONAI ``DynUNet``)."""

from __future__ import annotations

import torch
from monai.losses import DeepSupervisionLoss


class StackedDeepSupervisionLoss(DeepSupervisionLoss):
    """MONAI ``DeepSupervisionLoss`` for a ``(B, 1 + N, C, H, W)`` training output, nnU-Net's weights by default.

    ``DynUNet`` with ``deep_supervision=True`` returns its full-resolution logits and ``N`` coarser
    heads (upsampled to full size) stacked along dim 1 in training mode, and plain ``(B, C, H, W)``
    logits in eval mode. This loss unbinds the stack and weights the terms; a plain output is passed
    to the wrapped loss unchanged. ``weight_mode="nnunet"`` gives nnU-Net's weights (Isensee et al.
    2021; nnU-Net v2 ``nnUNetTrainer._build_loss``): ``1 / 2**i`` for head ``i`` (0 = full
    resolution), normalised to sum 1. Other modes are MONAI's (``"same"``, ``"exp"``, ``"two"``).

    Args:
        loss: the loss of each head, e.g. ``DiceCELoss``.
        weight_mode: ``"nnunet"`` (default) or a MONAI ``DeepSupervisionLoss`` mode.
        weights: explicit weights (override the mode).
    """

    def __init__(self, loss, weight_mode: str = "nnunet", weights: list[float] | None = None) -> None:
        self.nnunet = weight_mode == "nnunet" and weights is None
        super().__init__(loss, weight_mode="exp" if weight_mode == "nnunet" else weight_mode, weights=weights)

    def get_weights(self, levels: int = 1) -> list[float]:
        if not self.nnunet:
            return super().get_weights(levels)
        raw = [0.5**i for i in range(max(1, levels))]
        return [w / sum(raw) for w in raw]

    def forward(self, input, target: torch.Tensor) -> torch.Tensor:  # MONAI's signature
        if isinstance(input, torch.Tensor) and input.dim() == target.dim() + 1:
            input = list(torch.unbind(input, dim=1))
        return super().forward(input, target)
