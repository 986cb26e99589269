"""Reference statistics of the training stacks, and the out-of-distribution score of one stack against them.

The reference (``models/qc_reference.json``, next to the weights) holds, per feature of
:mod:`scripts.qc.features`, the median and a robust spread (1.4826 × median absolute deviation, at
least the feature's ``min_spread``) over the training stacks, plus the threshold and what it was
computed from (datalist, weights and their MD5, the command). ``python -m scripts.qc`` writes it.

:func:`score` gives every feature of a stack a one-sided or two-sided robust z-score in its
suspicious direction; the **OOD score** is the largest of them, its feature the first **reason**.
A stack is flagged when the score exceeds the threshold (:data:`DEFAULT_THRESHOLD` unless the
reference says otherwise), or when the reader's axis check found the stored axis reversed or
miscalibrated, or no C–H chemistry at all (``axis_check``), whatever the score.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scripts.io.atomic import atomic_path
from scripts.qc.features import FEATURE_BY_NAME, FEATURES

logger = logging.getLogger(__name__)

#: A stack whose largest robust z-score exceeds this is flagged (chosen in the ``qc`` benchmark section:
#: docs/results.md, "Quality check").
DEFAULT_THRESHOLD = 5.0
#: Verdicts of the reader's axis check (:mod:`scripts.spectra.calibration`) that flag a stack whatever its score.
AXIS_FLAGS = ("reversed", "miscalibrated", "no_chemistry")
#: Version of the reference file's layout.
REFERENCE_VERSION = 1
#: ``qc_flag`` values: ``ok``, ``flagged``, ``no_reference`` (no reference file: only the axis check), ``off``.
FLAGS = ("ok", "flagged", "no_reference", "off")
#: Reasons named in ``qc_reason`` at most.
MAX_REASONS = 3


@dataclass(frozen=True)
class FeatureStats:
    """Median and robust spread of one feature over the training stacks."""

    median: float
    spread: float


@dataclass(frozen=True)
class QCReference:
    """Feature statistics of the training stacks (see the module docstring)."""

    stats: dict[str, FeatureStats]
    threshold: float = DEFAULT_THRESHOLD
    info: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "version": REFERENCE_VERSION,
            "threshold": self.threshold,
            "features": {k: {"median": v.median, "spread": v.spread} for k, v in self.stats.items()},
            **self.info,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> QCReference:
        if data.get("version") != REFERENCE_VERSION or not isinstance(data.get("features"), Mapping):
            raise ValueError(f"not a QC reference of version {REFERENCE_VERSION}")
        stats = {
            k: FeatureStats(float(v["median"]), float(v["spread"]))
            for k, v in data["features"].items()
            if k in FEATURE_BY_NAME
        }
        info = {k: v for k, v in data.items() if k not in ("version", "threshold", "features")}
        return cls(stats, float(data.get("threshold", DEFAULT_THRESHOLD)), info)


def build_reference(
    rows: Iterable[Mapping[str, float]], threshold: float = DEFAULT_THRESHOLD, info: Mapping | None = None
) -> QCReference:
    """Feature statistics from the features of the training stacks (one mapping per stack).

    Examples
    --------
    >>> ref = build_reference([{"entropy": 0.10}, {"entropy": 0.12}, {"entropy": 0.14}])
    >>> ref.stats["entropy"].median, ref.stats["entropy"].spread
    (0.12, 0.029652)
    """
    rows = list(rows)
    stats = {}
    for feature in FEATURES:
        values = np.array([r[feature.name] for r in rows if feature.name in r], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        median = float(np.median(values))
        mad = 1.4826 * float(np.median(np.abs(values - median)))
        stats[feature.name] = FeatureStats(round(median, 6), round(max(mad, feature.min_spread), 6))
    return QCReference(stats, float(threshold), {"stacks": len(rows), **dict(info or {})})


def save_reference(reference: QCReference, path: str | Path) -> Path:
    """Write ``reference`` as JSON to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(reference.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_reference(path: str | Path | None) -> QCReference | None:
    """The reference at ``path``, or None with one WARNING line when there is none or it cannot be read."""
    if not path:
        return None
    path = Path(path)
    hint = "regenerate it with `python -m scripts.qc` (docs/README.md, Quality check)"
    if not path.is_file():
        logger.warning(
            "QC reference %s not found: ood_score is left empty and qc_flag comes from the axis check only; %s.",
            path,
            hint,
        )
        return None
    try:
        return QCReference.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.warning("QC reference %s cannot be read (%s): ood_score is left empty; %s.", path, e, hint)
        return None


def file_md5(path: str | Path) -> str:
    """MD5 of a file (the weights a reference belongs to), as in ``large_files.yml``."""
    digest = hashlib.md5()  # a fingerprint of the weights, not security
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class QCResult:
    """The quality check of one stack."""

    score: float | None
    flag: str
    reason: str
    z: dict[str, float] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return self.flag == "flagged"

    def columns(self) -> dict[str, object]:
        """The ``summary.csv`` columns ``ood_score``, ``qc_flag``, ``qc_reason``."""
        score = "" if self.score is None else round(self.score, 2)
        return {"ood_score": score, "qc_flag": self.flag, "qc_reason": self.reason}


def z_scores(features: Mapping[str, float], reference: QCReference) -> dict[str, float]:
    """Robust z-score of every feature the reference knows, in its suspicious direction (0 = typical)."""
    out = {}
    for name, value in features.items():
        stats, feature = reference.stats.get(name), FEATURE_BY_NAME.get(name)
        if stats is None or feature is None or value is None or not math.isfinite(float(value)):
            continue
        z = (float(value) - stats.median) / stats.spread
        out[name] = max(z, 0.0) if feature.side > 0 else max(-z, 0.0) if feature.side < 0 else abs(z)
    return out


def _describe(name: str, value: float, stats: FeatureStats, z: float) -> str:
    return f"{name} {value:.3g} vs training {stats.median:.3g} (z {z:.1f}): {FEATURE_BY_NAME[name].meaning}"


def score(
    features: Mapping[str, float],
    reference: QCReference | None,
    axis_check: str = "",
    threshold: float | None = None,
    exclude: Sequence[str] = (),
) -> QCResult:
    """The OOD score, flag and reason of one stack (module docstring).

    ``features``: its features (:mod:`scripts.qc.features`); ``axis_check``: the reader's verdict;
    ``threshold``: overrides the reference's; ``exclude``: features left out of the score.

    Examples
    --------
    >>> ref = build_reference([{"saturation": 0.0}] * 5)
    >>> score({"saturation": 0.3}, ref).flag, score({"saturation": 0.0}, ref).flag
    ('flagged', 'ok')
    >>> score({"saturation": 0.0}, None, axis_check="reversed").reason.startswith("axis_check reversed")
    True
    """
    reasons = []
    if axis_check in AXIS_FLAGS:
        reasons.append(f"axis_check {axis_check}: the reader's check of the spectral axis against the chemistry")
    if reference is None:
        flag = "flagged" if reasons else "no_reference"
        return QCResult(None, flag, "; ".join(reasons) or "no QC reference file: only the axis check was made")
    limit = reference.threshold if threshold is None else float(threshold)
    z = {k: v for k, v in z_scores(features, reference).items() if k not in exclude}
    value = max(z.values(), default=0.0)
    ranked = sorted(((v, k) for k, v in z.items() if v > limit), reverse=True)[:MAX_REASONS]
    reasons += [_describe(k, float(features[k]), reference.stats[k], v) for v, k in ranked]
    flag = "flagged" if reasons else "ok"
    return QCResult(float(value), flag, "; ".join(reasons), {k: round(v, 3) for k, v in z.items()})
