"""Helpers that wire MONAI's metrics to the bundle's classes (0 background, 1 nucleus, 2 lipid droplet), and their report."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from monai.handlers import MetricsSaver
from scripts.io.atomic import commit_file, write_error
from scripts.io.errors import HSRSError

#: Class index of each foreground class in the one-hot prediction.
CLASS_INDEX: dict[str, int] = {"nucleus": 1, "lipid_droplet": 2}


def select_class(class_index: int, pred_key: str = "pred", label_key: str = "label") -> Callable:
    """An ignite ``output_transform`` giving one class channel of one-hot predictions and labels.

    Use it to log a per-class Dice with MONAI's ``MeanDice`` handler (``include_background=True``
    on the selected channel)::

        val_dice_nucleus:
          _target_: MeanDice
          include_background: true
          output_transform: $scripts.engine.metrics.select_class(1)

    Args:
        class_index: channel to keep (1 nucleus, 2 lipid droplet).
        pred_key, label_key: keys of the decollated engine output.
    """

    def _transform(output: list[dict]) -> tuple[list, list]:
        preds = [item[pred_key][class_index : class_index + 1] for item in output]
        labels = [item[label_key][class_index : class_index + 1] for item in output]
        return preds, labels

    return _transform


def segmentation_scores(prediction, reference, hd95: bool = True) -> dict[str, dict[str, float]]:
    """Dice and 95th-percentile Hausdorff distance (pixels) per foreground class of two label maps.

    The same definitions as the evaluation workflow (MONAI ``compute_dice`` and
    ``compute_hausdorff_distance`` with their defaults): a class absent from ``reference`` gets NaN
    (left out of means), a class present in ``reference`` but not predicted gets Dice 0 and HD95 NaN
    (MONAI has no distance to an empty set; count such images separately).

    Args:
        prediction, reference: (H, W) or (1, H, W) integer label maps (0 background, 1 nucleus,
            2 lipid droplet).
        hd95: also compute HD95 (the slower part).

    Returns:
        ``{"nucleus": {"dice": ..., "hd95": ...}, "lipid_droplet": {...}}``.
    """
    import numpy as np
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance
    from monai.networks.utils import one_hot

    pred, ref = (np.asarray(a).squeeze() for a in (prediction, reference))
    if pred.shape != ref.shape or pred.ndim != 2:
        raise ValueError(f"label maps must be 2-D and of the same size, got {pred.shape} and {ref.shape}.")
    num_classes = 1 + max(CLASS_INDEX.values())
    p, r = (one_hot(torch.as_tensor(a.astype(np.int64))[None, None], num_classes) for a in (pred, ref))
    with warnings.catch_warnings():  # MONAI warns about every empty class; the docstring says what happens
        warnings.simplefilter("ignore")
        dice = compute_dice(p, r, include_background=True)[0]
        dist = compute_hausdorff_distance(p, r, include_background=True, percentile=95)[0] if hd95 else None
    out = {}
    for name, c in CLASS_INDEX.items():
        hd = float(dist[c]) if dist is not None else float("nan")
        out[name] = {"dice": float(dice[c]), "hd95": hd if np.isfinite(hd) else float("nan")}
    return out


class AtomicMetricsSaver(MetricsSaver):
    """MONAI ``MetricsSaver`` whose files (``metrics.csv``, ``<metric>_raw.csv``, summaries) are replaced atomically.

    MONAI writes the reports into a fresh temporary folder inside ``save_dir``; each finished file
    is then flushed to disk and renamed over its target (:func:`scripts.io.atomic.commit_file`), so
    an interrupted evaluation leaves the previous reports complete, and a full disk raises
    :class:`~scripts.io.errors.HSRSOutputError` naming the file. Arguments as ``MetricsSaver``.
    """

    def __call__(self, engine) -> None:
        target = Path(self.save_dir)
        current = target / "metrics.csv"
        try:
            target.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".metrics.", suffix=".part", dir=target))
        except OSError as e:
            raise write_error(current, e) from e
        try:
            self.save_dir = str(staging)
            super().__call__(engine)
            for produced in sorted(staging.iterdir()):
                current = target / produced.name
                commit_file(produced, current)
        except HSRSError:
            raise
        except OSError as e:
            raise write_error(current, e) from e
        finally:
            self.save_dir = str(target)
            shutil.rmtree(staging, ignore_errors=True)
