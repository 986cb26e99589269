"""The training loss of ``configs/train.yaml`` (Dice + cross-entropy) with pixels of one label value left out.

MONAI's ``DiceCELoss`` has no ``ignore_index``; its two halves do: MONAI's ``DiceLoss(ignore_index=)``
and torch's ``CrossEntropyLoss(ignore_index=)``. :class:`DiceCEIgnoreLoss` sums them as
``DiceCELoss`` does (weights 1 and 1), so a label map without ignored pixels gives the loss the
bundle trains with.
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from scripts.adapt.pseudo_labels import IGNORE_INDEX


class DiceCEIgnoreLoss(torch.nn.Module):
    """Dice (softmax, one-hot target) + cross-entropy over the pixels whose label is not ``ignore_index``.

    Args:
        ignore_index: label value of ignored pixels (beyond the classes: :data:`~scripts.adapt.pseudo_labels.IGNORE_INDEX`).
        batch: Dice over the whole batch (as ``configs/train.yaml``).
        lambda_dice, lambda_ce: weights of the two terms.

    Shapes: ``input`` (B, C, H, W) logits, ``target`` (B, 1, H, W) integer labels.

    Examples
    --------
    >>> loss = DiceCEIgnoreLoss()
    >>> logits = torch.tensor([[[[4.0, -4.0]], [[-4.0, 4.0]], [[-4.0, -4.0]]]])  # (1, 3, 1, 2)
    >>> with_ignored = loss(logits, torch.tensor([[[[0, 3]]]]))  # the second pixel is ignored ...
    >>> bool(torch.isclose(with_ignored, loss(logits[..., :1], torch.tensor([[[[0]]]]))))  # ... as if it were not there
    True
    """

    def __init__(
        self, ignore_index: int = IGNORE_INDEX, batch: bool = True, lambda_dice: float = 1.0, lambda_ce: float = 1.0
    ):
        super().__init__()
        self.ignore_index = int(ignore_index)
        self.dice = DiceLoss(to_onehot_y=True, softmax=True, batch=batch, ignore_index=self.ignore_index)
        self.cross_entropy = torch.nn.CrossEntropyLoss(ignore_index=self.ignore_index)
        self.lambda_dice, self.lambda_ce = float(lambda_dice), float(lambda_ce)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = torch.as_tensor(target)
        ce_target = target[:, 0].long() if target.ndim == input.ndim else target.long()
        if bool((ce_target == self.ignore_index).all()):  # a batch with nothing to learn from: no gradient, no NaN
            return input.sum() * 0.0
        return self.lambda_dice * self.dice(input, target) + self.lambda_ce * self.cross_entropy(input, ce_target)
