"""Helpers that wire MONAI's metrics to the bundle's classes (0 background, 1 nucleus, 2 lipid droplet)."""

from __future__ import annotations

from collections.abc import Callable

#: Class index of each foreground class in the one-hot prediction.
CLASS_INDEX: dict[str, int] = {"nucleus": 1, "lipid_droplet": 2}


def select_class(class_index: int, pred_key: str = "pred", label_key: str = "label") -> Callable:
    """An ignite ``output_transform`` giving one class channel of one-hot predictions and labels.

    Use it to log a per-class Dice with MONAI's ``MeanDice`` handler (``include_background=True``
    on the selected channel)::

        val_dice_nucleus:
          _target_: MeanDice
          include_background: true
          output_transform: $scripts.metrics.select_class(1)

    Args:
        class_index: channel to keep (1 nucleus, 2 lipid droplet).
        pred_key, label_key: keys of the decollated engine output.
    """

    def _transform(output: list[dict]) -> tuple[list, list]:
        preds = [item[pred_key][class_index : class_index + 1] for item in output]
        labels = [item[label_key][class_index : class_index + 1] for item in output]
        return preds, labels

    return _transform
