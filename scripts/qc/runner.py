"""The QC features of stacks on disk outside the inference workflow (reference statistics, benchmark).

:class:`FeatureRunner` takes the preprocessing, network and inferer from an inference config
(``configs/inference.yaml`` by default), so the features are computed exactly as the workflow's
:class:`scripts.qc.handler.QualityCheck` computes them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from monai.bundle import ConfigParser
from scripts.qc.handler import predict, stack_features
from scripts.qc.transforms import META_KEY

BUNDLE_ROOT = Path(__file__).resolve().parent.parent.parent


class FeatureRunner:
    """The QC features of stacks on disk, through the preprocessing, network and inferer of an inference config."""

    def __init__(
        self,
        config_file: str | Path = BUNDLE_ROOT / "configs" / "inference.yaml",
        weights: str | Path = BUNDLE_ROOT / "models" / "model.pt",
        tta: bool = False,
        overrides: dict | None = None,
    ):
        parser = ConfigParser()
        parser.read_config(str(config_file))
        parser.update(
            {"bundle_root": str(BUNDLE_ROOT), "qc": True, "device": "$torch.device('cpu')", **(overrides or {})}
        )
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.inferer = parser.get_parsed_content("inferer")
        self.network = parser.get_parsed_content("network")
        self.network.load_state_dict(torch.load(weights, map_location="cpu"))
        self.tta = tta

    def __call__(self, image: str | Path) -> dict:
        """``{"features": ..., "axis_check": ...}`` of one stack."""
        img = self.preprocessing({"image": str(image)})["image"]
        with torch.inference_mode():
            logits, flipped = predict(self.inferer, self.network, img[None], self.tta)
        features = stack_features(img.meta.get(META_KEY), logits[0], None if flipped is None else flipped[0])
        return {"features": features, "axis_check": str(img.meta.get("axis_check", ""))}
