"""Training transforms of the adaptation: pixels outside a pseudo-label's mask become the ignore value."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from scripts.adapt.pseudo_labels import IGNORE_INDEX


class IgnoreUnmasked(Transform):
    """Set the label to ``ignore_index`` wherever ``mask`` is 0 (label and mask of the same shape, e.g. (1, X, Y)).

    Examples
    --------
    >>> IgnoreUnmasked()(torch.tensor([[1, 2, 0]]), torch.tensor([[1, 0, 1]])).tolist()
    [[1, 3, 0]]
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX):
        self.ignore_index = int(ignore_index)

    def __call__(self, label: Any, mask: Any) -> Any:
        label_t, mask_t = torch.as_tensor(label), torch.as_tensor(mask)
        if tuple(label_t.shape[-2:]) != tuple(mask_t.shape[-2:]):
            raise ValueError(f"mask size {tuple(mask_t.shape)} differs from label size {tuple(label_t.shape)}.")
        out = torch.where(mask_t.reshape(label_t.shape) > 0, label_t, torch.full_like(label_t, self.ignore_index))
        if hasattr(label, "meta") and not hasattr(out, "meta"):
            from monai.data import MetaTensor

            out = MetaTensor(out, meta=label.meta)
        return out


class IgnoreUnmaskedd(MapTransform):
    """Dictionary version of :class:`IgnoreUnmasked`: ``d[key]`` ignored where ``d[mask_key]`` is 0; the mask is dropped.

    Items without a mask (validation stacks) pass unchanged.
    """

    def __init__(self, keys: KeysCollection, mask_key: str = "mask", ignore_index: int = IGNORE_INDEX):
        super().__init__(keys, allow_missing_keys=False)
        self.mask_key = mask_key
        self.transform = IgnoreUnmasked(ignore_index)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        mask = d.pop(self.mask_key, None)
        if mask is None:
            return d
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], mask)
        return d
