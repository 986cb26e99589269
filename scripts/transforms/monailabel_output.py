"""The label map as MONAI Label's writer needs it: the last step of ``post_transforms`` in ``inference.yaml``.

MONAI Label (0.8.5) runs the bundle's ``preprocessing``, ``inferer`` and ``postprocessing``, appends its own
``Restored(keys="pred", ref_image="image")`` and writes ``pred`` with ITK
(``monailabel/transform/writer.py``), which treats every array axis as spatial and takes the affine from
``image.meta["original_affine"]`` only for arrays of three or more dimensions. A 2-D field therefore
overlays its input (a NIfTI stack of X × Y × K) only when it reaches the writer as an (X, Y, 1) volume
with the input's 4×4 affine in millimetres, ITK's unit:

- ``pred`` (1, X, Y) → (1, X, Y, 1) uint8 (``Restored`` then drops the leading channel);
- ``image.meta["spatial_shape"]`` = (X, Y, 1), the size ``Restored`` checks ``pred`` against;
- ``image.meta["original_affine"]`` = diag(pixel, pixel, 1, 1) in mm (the reader's pixel size in µm / 1000).

MONAI Label reads ``postprocessing`` and then ``post_transforms`` and keeps the last it finds; the bundle's
own evaluator uses ``postprocessing`` (without this step), so its writers keep the (1, X, Y) map of every
other MONAI pipeline.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

#: Micrometres per millimetre: the reader's pixel size is in µm, ITK writes NIfTI spacing in mm.
UM_PER_MM = 1000.0


class MONAILabelOutputd(MapTransform):
    """Turn the (1, X, Y) label map into the (1, X, Y, 1) volume MONAI Label's writer overlays on the input.

    Args:
        keys: the label-map keys (``"pred"``).
        image_key: the input image, whose metadata ``Restored`` hands to the writer.
        allow_missing_keys: as in MONAI's ``MapTransform``.
    """

    def __init__(self, keys: KeysCollection = "pred", image_key: str = "image", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        if not isinstance(image, MetaTensor):
            raise TypeError(f"{self.image_key}: expected a MetaTensor with the reader's metadata, got {type(image)}.")
        meta = image.meta
        pixel_um = meta.get("pixel_size_um")
        if pixel_um is None:  # the reader's affine carries the pixel size (1 when the file records none)
            pixel_um = float(np.asarray(meta["affine"])[0, 0])
        pixel_mm = float(pixel_um) / UM_PER_MM
        for key in self.key_iterator(d):
            pred = d[key]
            if pred.ndim != 3 or pred.shape[0] != 1:
                raise ValueError(f"{key}: expected a (1, X, Y) label map, got shape {tuple(pred.shape)}.")
            d[key] = torch.as_tensor(pred).unsqueeze(-1).to(torch.uint8)
            meta["spatial_shape"] = np.asarray(d[key].shape[1:])
        meta["original_affine"] = np.diag([pixel_mm, pixel_mm, 1.0, 1.0])
        return d
