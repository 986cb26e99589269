"""Networks of the bundle: the hybrid-UNet, its blocks, and the baselines it is compared with.

- :class:`HybridUNet` -- 3D spectral–spatial encoder, spectral pooling on the skips, 2D decoder.
- :class:`NNUNetStyle2D` -- MONAI ``DynUNet`` configured by :func:`plan_nnunet_2d`, frames as channels.
- :class:`UNet3DSpectral` -- MONAI ``BasicUNet`` in 3D on ``(B, 1, K, H, W)`` and a spectral projection head.

All take a ``(B, K, H, W)`` spectral stack and return ``(B, 3, H, W)`` logits.
"""

from scripts.networks.baselines import NNUNetStyle2D, UNet3DSpectral, plan_nnunet_2d
from scripts.networks.hybrid_unet import FAST_ENCODER, WIDE_HYBRID, HybridUNet

__all__ = ["FAST_ENCODER", "WIDE_HYBRID", "HybridUNet", "NNUNetStyle2D", "UNet3DSpectral", "plan_nnunet_2d"]
