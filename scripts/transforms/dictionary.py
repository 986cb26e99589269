"""Dictionary versions (``…d``) of the spectral transforms in :mod:`scripts.transforms.array`, MONAI style."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.data.meta_obj import get_track_meta
from monai.transforms import MapTransform, RandomizableTransform, Transform
from monai.utils import convert_to_tensor
from scripts.transforms.array import (
    DivideSpectralEnvelope,
    NormalizeSpectralIntensity,
    RandSpectralEnvelope,
    RandSpectralGainDrift,
    RandSpectralNoise,
    RandSpectralOffset,
    RandSpectralShift,
    SpectralResample,
    SubtractSpectralBackground,
    _RandSpectral,
)

logger = logging.getLogger(__name__)


class _SpectralDict(MapTransform):
    """Dictionary version of a deterministic spectral transform: applies it to every key."""

    transform_class: type[Transform]

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.transform = self.transform_class(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class _RandSpectralDict(RandomizableTransform, MapTransform):
    """Dictionary version of a random spectral augmentation; each key draws its own parameters."""

    transform_class: type[_RandSpectral]

    def __init__(self, keys: KeysCollection, prob: float = 0.5, allow_missing_keys: bool = False, **kwargs):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.transform = self.transform_class(prob=1.0, **kwargs)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        for key in self.key_iterator(d):
            if self._do_transform:
                d[key] = self.transform(d[key], randomize=True)
            else:
                d[key] = convert_to_tensor(d[key], track_meta=get_track_meta())
        return d


class SpectralResampled(_SpectralDict):
    """Dictionary version of :class:`SpectralResample` (same keyword arguments)."""

    transform_class = SpectralResample


class SubtractSpectralBackgroundd(_SpectralDict):
    """Dictionary version of :class:`SubtractSpectralBackground` (same keyword arguments)."""

    transform_class = SubtractSpectralBackground


class DivideSpectralEnveloped(_SpectralDict):
    """Dictionary version of :class:`DivideSpectralEnvelope` (same keyword arguments)."""

    transform_class = DivideSpectralEnvelope


class NormalizeSpectralIntensityd(_SpectralDict):
    """Dictionary version of :class:`NormalizeSpectralIntensity` (same keyword arguments)."""

    transform_class = NormalizeSpectralIntensity


class RandSpectralGainDriftd(_RandSpectralDict):
    """Dictionary version of :class:`RandSpectralGainDrift` (``prob`` + same keyword arguments)."""

    transform_class = RandSpectralGainDrift


class RandSpectralOffsetd(_RandSpectralDict):
    """Dictionary version of :class:`RandSpectralOffset` (``prob`` + same keyword arguments)."""

    transform_class = RandSpectralOffset


class RandSpectralShiftd(_RandSpectralDict):
    """Dictionary version of :class:`RandSpectralShift` (``prob`` + same keyword arguments)."""

    transform_class = RandSpectralShift


class RandSpectralNoised(_RandSpectralDict):
    """Dictionary version of :class:`RandSpectralNoise` (``prob`` + same keyword arguments)."""

    transform_class = RandSpectralNoise


class RandSpectralEnveloped(_RandSpectralDict):
    """Dictionary version of :class:`RandSpectralEnvelope` (``prob`` + same keyword arguments)."""

    transform_class = RandSpectralEnvelope
