"""Input checks that run in the workflows' preprocessing, so bad data fail early with a clear message."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from scripts.io.errors import HSRSInputError
from scripts.io.writer import LABELS
from scripts.transforms.array import source_name


class CheckLabelMapd(MapTransform):
    """Check a label map holds only 0 background / 1 nucleus / 2 lipid droplet and matches its image's size.

    Args:
        keys: the label key(s).
        image_key: the image whose spatial size (H, W) the labels must match (None: skip).

    Raises HSRSInputError (a ValueError) naming the label file, the unknown values or both sizes.
    """

    def __init__(self, keys: KeysCollection, image_key: str | None = "image", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            name = source_name(label, str(key))
            values = [int(v) if float(v).is_integer() else v for v in torch.unique(torch.as_tensor(label)).tolist()]
            unknown = [v for v in values if v not in LABELS.values()]
            if unknown:
                raise HSRSInputError(
                    f"{name}: unknown label values {unknown[:10]}; label maps must hold 0 background, 1 nucleus, "
                    "2 lipid droplet."
                )
            if self.image_key is not None and self.image_key in d:
                image = d[self.image_key]
                if tuple(np.shape(label)[-2:]) != tuple(np.shape(image)[-2:]):
                    label_hw, image_hw = (tuple(np.shape(a)[-2:])[::-1] for a in (label, image))  # (X, Y) -> (H, W)
                    raise HSRSInputError(
                        f"{name}: label map size {label_hw} differs from its image "
                        f"{source_name(image, self.image_key)} size {image_hw} (H, W)."
                    )
        return d
