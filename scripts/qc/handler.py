"""The quality check in the inference workflow: an ignite handler scoring every stack as it is segmented.

:class:`QualityCheck` reads the network's logits right after the forward pass (ignite event
``FORWARD_COMPLETED``, before the post-processing turns them into labels), adds the model features
(:func:`scripts.qc.features.model_features`; with ``tta`` a second pass on the mirrored image) to the
spectral features the preprocessing stored (:class:`scripts.qc.transforms.QCSpectralFeaturesd`), scores
them against the reference (:func:`scripts.qc.reference.score`), logs one WARNING line naming the file
for a flagged stack, and hands ``ood_score``, ``qc_flag``, ``qc_reason`` to the writer of ``summary.csv``
(``item["qc"]`` of each decollated output; attach it before the writer). :func:`predict` and
:func:`stack_features` are the same steps for one image outside ignite (``python -m scripts.qc``, the
benchmark).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.data import MetaTensor
from monai.networks import eval_mode
from monai.utils import CommonKeys
from scripts.qc.features import model_features
from scripts.qc.reference import QCResult, file_md5, load_reference, score
from scripts.qc.transforms import META_KEY

logger = logging.getLogger(__name__)

#: Key of the QC columns in each decollated output item (read by the writer of ``summary.csv``).
OUTPUT_KEY = "qc"


def predict(inferer, network, inputs: torch.Tensor, tta: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (B, C, H, W) of a batch and, with ``tta``, those of its mirror image mirrored back."""
    with eval_mode(network):
        logits = inferer(inputs, network)
        flipped = torch.flip(inferer(torch.flip(inputs, dims=(-1,)), network), dims=(-1,)) if tta else None
    return logits, flipped


def stack_features(spectral: str | Mapping | None, logits: torch.Tensor, flipped: torch.Tensor | None = None) -> dict:
    """All QC features of one image: its spectral features (JSON string or mapping) and those of its logits."""
    out = dict(json.loads(spectral) if isinstance(spectral, str) else spectral or {})
    out.update(model_features(logits, flipped))
    return out


def _item_value(meta: Mapping, key: str, index: int) -> Any:
    """Item ``index`` of a collated metadata entry (list, tuple or tensor), or the entry itself."""
    value = meta.get(key)
    if isinstance(value, list | tuple):
        return value[index] if index < len(value) else None
    if isinstance(value, torch.Tensor) and value.ndim > 0:
        return value[index].item() if index < value.shape[0] else None
    return value


class QualityCheck:
    """Ignite handler: the out-of-distribution score, flag and reason of every segmented stack.

    Args:
        reference_path: the reference statistics (``models/qc_reference.json``); missing or unreadable:
            one WARNING line, ``ood_score`` left empty and ``qc_flag`` from the axis check only
            (``flagged`` or ``no_reference``).
        enabled: False writes ``qc_flag`` ``off`` and computes nothing (the ``qc`` switch).
        tta: also segment the mirrored image (a second forward pass) for ``flip_disagreement``.
        threshold: overrides the reference's threshold on ``ood_score``.
        weights_path: the weights in use; a WARNING when the reference was computed for other weights.
        image_key: key of the input batch in the engine's output.
    """

    def __init__(
        self,
        reference_path: str | Path | None,
        enabled: bool = True,
        tta: bool = False,
        threshold: float | None = None,
        weights_path: str | Path | None = None,
        image_key: str = CommonKeys.IMAGE,
    ):
        self.enabled, self.tta, self.threshold, self.image_key = bool(enabled), bool(tta), threshold, image_key
        self.reference = load_reference(reference_path) if self.enabled else None
        self.results: dict[str, QCResult] = {}
        self._pending: list[QCResult] = []
        expected = (self.reference.info.get("weights_md5") if self.reference else None) or None
        if expected and weights_path and Path(weights_path).is_file() and file_md5(weights_path) != expected:
            logger.warning(
                "QC reference %s was computed for other weights than %s: the model features (entropy, areas) may be "
                "off; regenerate it with `python -m scripts.qc` (docs/README.md, Quality check).",
                reference_path,
                weights_path,
            )

    def attach(self, engine) -> None:
        from ignite.engine import Events
        from monai.engines.utils import IterationEvents

        if self.enabled:
            engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._on_forward)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._on_iteration)

    def check(self, source: str, features: Mapping[str, float], axis_check: str = "") -> QCResult:
        """Score one stack, log a WARNING naming ``source`` when it is flagged, remember the result."""
        result = score(features, self.reference, axis_check, self.threshold)
        if result.flagged:
            limit = self.threshold if self.threshold is not None else getattr(self.reference, "threshold", None)
            value = "" if result.score is None else f"ood_score {result.score:.1f} (threshold {limit:g}); "
            logger.warning("%s: QC FLAGGED, not like the training data: %s%s", source, value, result.reason)
        else:
            logger.info("%s: QC %s, ood_score %s", source, result.flag, result.columns()["ood_score"])
        self.results[source] = result
        return result

    def _on_forward(self, engine) -> None:
        output = engine.state.output
        inputs, logits = output[self.image_key], output[CommonKeys.PRED]
        flipped = predict(engine.inferer, engine.network, inputs, tta=True)[1] if self.tta else None
        meta = inputs.meta if isinstance(inputs, MetaTensor) else {}
        self._pending = []
        for i in range(logits.shape[0]):
            features = stack_features(
                _item_value(meta, META_KEY, i), logits[i], None if flipped is None else flipped[i]
            )
            source = str(_item_value(meta, "filename_or_obj", i) or f"image {len(self.results)}")
            axis = str(_item_value(meta, "axis_check", i) or "")
            self._pending.append(self.check(source, features, axis))

    def _on_iteration(self, engine) -> None:
        output = engine.state.output
        items = output if isinstance(output, list) else [output]
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            if not self.enabled:
                item[OUTPUT_KEY] = {"ood_score": "", "qc_flag": "off", "qc_reason": ""}
            elif i < len(self._pending):
                item[OUTPUT_KEY] = self._pending[i].columns()
        self._pending = []
