"""Mirror test-time augmentation: the average of a network's class probabilities over image flips."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from monai.inferers import Inferer


class MirrorTTAInferer(Inferer):
    """Wrap an inferer so that every window is segmented in all mirrored versions and averaged.

    nnU-Net predicts with mirroring along all spatial axes by default (Isensee et al., *Nat Methods*
    2021): each window passes the network once per subset of the mirror axes (4 passes in 2-D),
    the softmax probabilities are flipped back and averaged. The wrapped network returns the
    **logarithm of the mean probabilities**, so a softmax afterwards (the workflows'
    post-processing) gives the mean probabilities themselves and an argmax the mirrored vote.

    Args:
        inferer: the inferer to wrap (e.g. the sliding window); it calls the mirrored network.
        spatial_axes: tensor axes to mirror (default the last two, (H, W) of ``(B, C, H, W)``).
        enabled: ``False`` passes straight through (one config switch, ``mirror_tta``).
    """

    def __init__(self, inferer: Inferer, spatial_axes: Sequence[int] = (-2, -1), enabled: bool = True) -> None:
        super().__init__()
        self.inferer = inferer
        self.enabled = bool(enabled)
        axes = tuple(int(a) for a in spatial_axes)
        self.flips = [c for n in range(len(axes) + 1) for c in itertools.combinations(axes, n)]

    def mirrored(self, network):
        """``network`` as a function that averages its softmax over the mirror flips (log-probabilities out)."""

        def predict(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            total = None
            for dims in self.flips:
                y = network(torch.flip(x, dims) if dims else x, *args, **kwargs)
                p = torch.softmax(y.float(), dim=1)
                p = torch.flip(p, dims) if dims else p
                total = p if total is None else total + p
            return torch.log(total / len(self.flips) + 1e-8)

        return predict

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        return self.inferer(inputs, self.mirrored(network) if self.enabled else network, *args, **kwargs)
