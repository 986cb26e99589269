"""The spectral half of the quality check as a MONAI transform, placed right after the reader.

:class:`QCSpectralFeaturesd` computes :func:`scripts.qc.features.spectral_features` on the stack as
read (raw intensities, before resampling and normalisation change them) and stores them in the
image's metadata as a JSON string under :data:`META_KEY` (a string survives the DataLoader's collation
and decollation unchanged); :class:`scripts.qc.handler.QualityCheck` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from scripts.qc.features import spectral_features

#: Metadata key of the spectral QC features (a JSON string).
META_KEY = "qc_spectral"


class QCSpectralFeaturesd(MapTransform):
    """Store the spectral QC features of each ``keys`` image (K, X, Y) in ``meta["qc_spectral"]``.

    Args:
        keys: image keys (MetaTensors with ``meta["wavenumbers"]``, as :class:`scripts.io.reader.HSRSReader`
            gives them).
        enabled: False makes this a no-op (the ``qc`` switch of ``configs/inference.yaml``).
    """

    def __init__(self, keys: KeysCollection, enabled: bool = True, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.enabled = bool(enabled)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if not self.enabled:
            return d
        for key in self.key_iterator(d):
            img = d[key]
            if not isinstance(img, MetaTensor) or img.meta.get("wavenumbers") is None:
                continue  # no axis known: the handler scores the model features only
            arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
            wn = np.asarray(img.meta["wavenumbers"], dtype=np.float64).reshape(-1)
            img.meta[META_KEY] = json.dumps(spectral_features(arr, wn))
        return d
