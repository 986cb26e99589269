"""Pseudo-labels for adaptation: which label each pixel of an unlabelled stack is trained towards, and which are ignored.

Three sources (``source``):

- ``"network"`` -- self-training: the shipped network's label where its softmax probability is at
  least ``threshold``; the other pixels are ignored in the loss;
- ``"phasor"`` -- the optimized phasor's label map (:mod:`scripts.phasor`), every pixel;
- ``"consensus"`` -- the network's confident label where the phasor gives the same label; pixels
  where the two disagree, or the network is unsure, are ignored.

A pseudo-label is a label map (0 background, 1 nucleus, 2 lipid droplet) and a mask (1: used in
the loss, 0: ignored); the training turns ignored pixels into :data:`IGNORE_INDEX`
(:class:`scripts.adapt.transforms.IgnoreUnmaskedd`), which MONAI's ``DiceLoss`` and torch's
``CrossEntropyLoss`` leave out (:class:`scripts.adapt.loss.DiceCEIgnoreLoss`).
"""

from __future__ import annotations

import math

import numpy as np
from scripts.io.errors import HSRSOptionError

#: Where pseudo-labels come from (see the module docstring).
SOURCES = ("network", "phasor", "consensus")
#: Label value of ignored pixels during training (beyond the three classes).
IGNORE_INDEX = 3
#: Classes scored by :func:`agreement`.
CLASSES = {"nucleus": 1, "lipid_droplet": 2}


def check_source(source: str) -> str:
    """``source`` if it is one of :data:`SOURCES`, else an :class:`~scripts.io.errors.HSRSOptionError`."""
    if source not in SOURCES:
        raise HSRSOptionError(f"pseudo_labels must be one of {SOURCES}, got {source!r}.")
    return source


def needs_phasor(source: str) -> bool:
    """True when the pseudo-labels of ``source`` use the phasor's label maps."""
    return check_source(source) in ("phasor", "consensus")


def pseudo_labels(
    source: str,
    network_labels: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    phasor_labels: np.ndarray | None = None,
    threshold: float = 0.9,
) -> tuple[np.ndarray, np.ndarray]:
    """(label map, mask) of one stack, both (H, W) uint8; mask 1 where the label is used in the loss.

    Parameters
    ----------
    source : str
        ``"network"``, ``"phasor"`` or ``"consensus"``.
    network_labels, confidence : ndarray (H, W), optional
        The shipped network's label map and its largest softmax probability per pixel (``network``
        and ``consensus``).
    phasor_labels : ndarray (H, W), optional
        The phasor's label map (``phasor`` and ``consensus``).
    threshold : float
        Smallest probability of a confident pixel, in (0, 1].

    Examples
    --------
    >>> net = np.array([[0, 1], [2, 1]]); conf = np.array([[0.99, 0.95], [0.6, 0.97]]); ph = np.array([[0, 1], [2, 0]])
    >>> labels, mask = pseudo_labels("consensus", net, conf, ph, threshold=0.9)
    >>> labels.tolist(), mask.tolist()
    ([[0, 1], [2, 1]], [[1, 1], [0, 0]])
    """
    check_source(source)
    if not 0 < threshold <= 1:
        raise HSRSOptionError(f"confidence threshold must be in (0, 1], got {threshold}.")
    if source == "phasor":
        if phasor_labels is None:
            raise ValueError("source 'phasor' needs phasor_labels.")
        labels = np.asarray(phasor_labels, np.uint8)
        return labels, np.ones_like(labels)
    if network_labels is None or confidence is None:
        raise ValueError(f"source {source!r} needs network_labels and confidence.")
    labels = np.asarray(network_labels, np.uint8)
    mask = np.asarray(confidence) >= threshold
    if np.shape(confidence) != labels.shape:
        raise ValueError(f"confidence {np.shape(confidence)} and labels {labels.shape} differ in shape.")
    if source == "consensus":
        if phasor_labels is None:
            raise ValueError("source 'consensus' needs phasor_labels.")
        if np.shape(phasor_labels) != labels.shape:
            raise ValueError(
                f"phasor labels {np.shape(phasor_labels)} and network labels {labels.shape} differ in shape."
            )
        mask &= np.asarray(phasor_labels) == labels
    return labels, mask.astype(np.uint8)


def dice(prediction: np.ndarray, reference: np.ndarray, value: int) -> float:
    """Dice of class ``value`` between two label maps; NaN when the reference has none of it (as MONAI's ``MeanDice``)."""
    p, r = np.asarray(prediction) == value, np.asarray(reference) == value
    if not r.any():
        return math.nan
    return float(2 * np.logical_and(p, r).sum() / (p.sum() + r.sum()))


def agreement(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """``{"nucleus": dice, "lipid_droplet": dice}`` of a label map against a reference label map.

    Examples
    --------
    >>> agreement(np.array([[1, 1, 0, 2]]), np.array([[1, 0, 0, 0]]))
    {'nucleus': 0.6666666666666666, 'lipid_droplet': nan}
    """
    return {name: dice(prediction, reference, value) for name, value in CLASSES.items()}


def mean_agreement(scores: list[dict[str, float]]) -> float:
    """Mean over stacks of each stack's mean over its defined classes, as MONAI's ``MeanDice`` averages (NaN if none).

    Examples
    --------
    >>> mean_agreement([{"nucleus": 0.0, "lipid_droplet": math.nan}, {"nucleus": 0.2, "lipid_droplet": 0.6}])
    0.2
    """
    per_stack = [np.mean(v) for v in ([x for x in s.values() if not math.isnan(x)] for s in scores) if v]
    return round(float(np.mean(per_stack)), 12) if per_stack else math.nan
