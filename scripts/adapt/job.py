"""Adapt the shipped weights to a folder of unlabelled stacks: :class:`AdaptationJob`, run by ``configs/adapt.yaml``.

::

    python -m monai.bundle run --config_file configs/adapt.yaml --dataset_dir D --output_dir O

The job composes the bundle's own workflows; each step is one of them with a few overrides:

1. **Split** (:func:`scripts.adapt.split.split_stacks`): the stacks of ``D`` are split into
   adaptation stacks and held-out stacks (``held_out_fraction``, at least one; by name and ``seed``).
2. **Before**: ``configs/inference.yaml`` with the shipped weights on every stack (``O/before``: label
   maps, overlays, ``summary.csv`` with the QC columns). A handler on its forward pass keeps each
   stack's largest softmax probability per pixel (``O/before/confidence/<stem>.npy``).
3. **Phasor**: the optimized phasor (:class:`scripts.phasor.job.PhasorJob`) on the held-out stacks,
   and on the adaptation stacks when the pseudo-labels use it (``O/phasor``).
4. **Pseudo-labels** of the adaptation stacks (:mod:`scripts.adapt.pseudo_labels`; ``O/pseudo_labels``:
   ``<stem>.nii.gz`` and ``<stem>_mask.nii.gz``, 1 where the label is used in the loss). Stacks the
   QC gate leaves out (``qc_gate``, :func:`qc_exclusion`) get none; the log names them and why.
5. **Fine-tuning**: ``configs/train.yaml`` from the shipped weights (``pretrained``) on
   ``O/datalist.json``: ``training`` = the adaptation stacks with their pseudo-labels (ignored pixels
   left out of the loss: :class:`scripts.adapt.loss.DiceCEIgnoreLoss`), ``validation`` = the held-out
   stacks with the phasor's labels, so its best epoch is the one agreeing best with the phasor on
   stacks it never trained on. ``max_epochs`` and ``time_limit_s`` bound it (``O/train``).
6. **After**: ``configs/inference.yaml`` with the fine-tuned weights on every stack (``O/after``).
7. **Selection**: the criterion is the mean Dice of the network's labels against the phasor's on
   the held-out stacks (stacks whose phasor passed its own QC; per stack the mean over the classes the
   phasor found, then the mean over stacks: the fine-tuning's validation metric). It is agreement with
   an independent method, **not accuracy**: there is no truth in an unlabelled folder. The
   fine-tuned weights are kept only when they raise it by at least ``min_improvement``; otherwise
   ``O/models/model.pt`` is a copy of the shipped weights.

Outputs besides the step folders: ``O/models/model.pt`` (the selected weights; never ``models/``),
``O/summary.csv`` (one row per stack, before and after: areas, counts, QC, agreement with the
phasor, pseudo-label use), ``O/adaptation.json`` (split, criterion before and after, decision,
settings, seconds per step) and one log line with the decision.

Resumable: every step keeps what it finished. A rerun into the same ``O`` skips stacks already
segmented with the same weights (the inference workflow's ``resume``), the phasor of stacks that
have labels, and a fine-tuning that finished with the same data and settings (``O/train/done.json``);
an interrupted fine-tuning continues from its checkpoint (``configs/train.yaml``'s ``resume``). All
files are written atomically (:mod:`scripts.io.atomic`).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scripts.adapt.pseudo_labels import (
    IGNORE_INDEX,
    agreement,
    check_source,
    mean_agreement,
    needs_phasor,
    pseudo_labels,
)
from scripts.adapt.split import split_stacks
from scripts.io.atomic import atomic_path
from scripts.io.datalist import folder_datalist
from scripts.io.errors import HSRSInputError, HSRSOptionError, as_bool
from scripts.io.formats import stack_stem
from scripts.io.tables import read_table, write_table
from scripts.io.writer import check_writable, write_label_map

logger = logging.getLogger(__name__)

BUNDLE_ROOT = Path(__file__).resolve().parent.parent.parent
#: ``qc_gate`` values: ``score`` leaves out stacks whose ood_score exceeds the QC threshold or whose spectra hold no
#: C–H chemistry; ``flag`` every stack the QC flags (also for the stored axis' direction or calibration); ``off`` none.
QC_GATES = ("score", "flag", "off")
#: Per-stack columns of the inference summary copied into ``O/summary.csv`` for each of before / after.
STAGE_COLUMNS = (
    "nucleus_area_px",
    "nucleus_count",
    "lipid_droplet_area_px",
    "lipid_droplet_count",
    "ood_score",
    "qc_flag",
)
SUMMARY_COLUMNS = [
    "stem",
    "image",
    "split",
    "pseudo_labels",
    "confident_fraction",
    "pseudo_label_fraction",
    "phasor_qc",
    *(f"{c}_{stage}" for stage in ("before", "after") for c in STAGE_COLUMNS),
    *(f"phasor_agreement_{c}_{stage}" for stage in ("before", "after") for c in ("nucleus", "lipid_droplet")),
    "qc_reason_before",
    "error",
]


def _md5(path: Path) -> str:
    from scripts.qc.reference import file_md5

    return file_md5(path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _read_labels(path: Path) -> np.ndarray:
    from scripts.io.reader import read_hsrs

    labels, _ = read_hsrs(path)
    return np.asarray(labels).reshape(labels.shape[-2:]).astype(np.uint8)


def qc_exclusion(row: Mapping[str, str], gate: str = "score", threshold: float | None = None) -> str:
    """Why the QC leaves a stack out of the pseudo-labels ("" when it does not), from its inference summary row.

    Parameters
    ----------
    row : mapping
        The stack's row of the inference ``summary.csv`` (``ood_score``, ``qc_flag``, ``qc_reason``,
        ``axis_check``, ``error``).
    gate : str
        ``"score"``: out when the ood_score exceeds ``threshold`` or the axis check found no C–H
        chemistry; ``"flag"``: out whenever ``qc_flag`` is ``flagged``; ``"off"``: never (errors aside).
    threshold : float, optional
        The QC threshold on ``ood_score`` (the reference's).

    Examples
    --------
    >>> qc_exclusion({"ood_score": "7.5", "qc_flag": "flagged", "axis_check": "ok"}, "score", 5.0)
    'QC ood_score 7.5 > 5'
    >>> qc_exclusion({"ood_score": "1.2", "qc_flag": "flagged", "axis_check": "reversed"}, "score", 5.0)
    ''
    >>> qc_exclusion({"ood_score": "1.2", "qc_flag": "flagged", "axis_check": "reversed", "qc_reason": "axis"}, "flag")
    'QC flagged: axis'
    """
    if gate not in QC_GATES:
        raise HSRSOptionError(f"qc_gate must be one of {QC_GATES}, got {gate!r}.")
    if row.get("error"):
        return f"not segmented: {row['error']}"
    if gate == "off":
        return ""
    if gate == "flag":
        return f"QC flagged: {row.get('qc_reason', '')}".strip() if row.get("qc_flag") == "flagged" else ""
    if row.get("axis_check") == "no_chemistry":
        return "QC: the axis check found no C–H chemistry"
    score = row.get("ood_score")
    if threshold is not None and score not in (None, "") and float(score) > threshold:
        return f"QC ood_score {float(score):g} > {threshold:g}"
    return ""


class AdaptationJob:
    """Fine-tune the shipped weights on a folder of unlabelled stacks (see the module docstring).

    Parameters
    ----------
    dataset_dir : str or Path
        A folder of stacks (as ``configs/inference.yaml`` reads it); at least 2.
    output_dir : str or Path
        Where everything goes; its ``models/`` must not be the folder of ``pretrained``.
    pretrained : str or Path
        The weights to adapt (default ``models/model.pt``).
    qc_reference : str or Path, optional
        QC reference statistics (default: ``qc_reference.json`` beside ``pretrained``).
    pseudo_labels : str
        ``"network"``, ``"phasor"`` or ``"consensus"`` (:mod:`scripts.adapt.pseudo_labels`).
    confidence : float
        Softmax probability from which a pixel of the shipped network counts as confident.
    held_out_fraction, seed : float, int
        The split (:func:`scripts.adapt.split.split_stacks`).
    max_epochs, time_limit_s, learning_rate : int, float or None, float
        The fine-tuning's budget and learning rate (``configs/train.yaml`` ids).
    min_improvement : float
        Gain of the criterion the fine-tuned weights need to be selected.
    qc_gate : str
        Which QC verdicts leave a stack out of the pseudo-labels (:func:`qc_exclusion`).
    skip_errors : bool
        Segment the readable stacks and record the others (``configs/inference.yaml``'s ``skip_errors``).
    resume : bool
        Keep the finished work of an earlier run into ``output_dir``.
    train_overrides, inference_overrides : mapping, optional
        More ids of ``configs/train.yaml`` / ``configs/inference.yaml`` (e.g. ``patch_size``, ``roi_size``).
    bundle_root : str or Path
        The bundle (its ``configs/``).
    """

    def __init__(
        self,
        dataset_dir: str | Path,
        output_dir: str | Path,
        pretrained: str | Path = BUNDLE_ROOT / "models" / "model.pt",
        qc_reference: str | Path | None = None,
        pseudo_labels: str = "consensus",
        confidence: float = 0.9,
        held_out_fraction: float = 0.25,
        seed: int = 0,
        max_epochs: int = 20,
        time_limit_s: float | None = None,
        learning_rate: float = 5e-4,
        min_improvement: float = 0.005,
        qc_gate: str = "score",
        skip_errors: bool = False,
        resume: bool = True,
        train_overrides: Mapping[str, Any] | None = None,
        inference_overrides: Mapping[str, Any] | None = None,
        bundle_root: str | Path = BUNDLE_ROOT,
    ):
        self.bundle_root = Path(bundle_root).resolve()
        self.dataset_dir = Path(dataset_dir)
        self.stacks = {stack_stem(item["image"]): item["image"] for item in folder_datalist(self.dataset_dir)}
        self.pretrained = Path(pretrained).resolve()
        if not self.pretrained.is_file():
            raise HSRSOptionError(f"pretrained {self.pretrained}: no weights file there; pass --pretrained.")
        self.output_dir = check_writable(output_dir).resolve()
        if (self.output_dir / "models").resolve() == self.pretrained.parent:
            raise HSRSOptionError(
                f"output_dir {self.output_dir}: its models/ folder holds the weights being adapted ({self.pretrained}); "
                "the adapted weights never replace them: choose another --output_dir."
            )
        self.qc_reference = Path(qc_reference) if qc_reference else self.pretrained.parent / "qc_reference.json"
        self.source = check_source(pseudo_labels)
        if not 0 < float(confidence) <= 1:
            raise HSRSOptionError(f"confidence must be in (0, 1], got {confidence}.")
        self.confidence = float(confidence)
        self.held_out_fraction, self.seed = float(held_out_fraction), int(seed)
        if int(max_epochs) < 1:
            raise HSRSOptionError(f"max_epochs must be at least 1, got {max_epochs}.")
        self.max_epochs = int(max_epochs)
        self.time_limit_s = None if time_limit_s is None else float(time_limit_s)
        self.learning_rate, self.min_improvement = float(learning_rate), float(min_improvement)
        if qc_gate not in QC_GATES:
            raise HSRSOptionError(f"qc_gate must be one of {QC_GATES}, got {qc_gate!r}.")
        self.qc_gate = qc_gate
        self.skip_errors, self.resume = as_bool(skip_errors, "skip_errors"), as_bool(resume, "resume")
        self.train_overrides = dict(train_overrides or {})
        self.inference_overrides = dict(inference_overrides or {})
        self.seconds: dict[str, float] = {}

    # ------------------------------------------------------------------ workflows
    def _workflow(self, config: str, workflow_type: str | None, overrides: Mapping[str, Any]):
        from monai.bundle import ConfigWorkflow

        wf = ConfigWorkflow(
            config_file=str(self.bundle_root / "configs" / config),
            meta_file=str(self.bundle_root / "configs" / "metadata.json"),
            workflow_type=workflow_type,
            bundle_root=str(self.bundle_root),
            **overrides,
        )
        wf.initialize()
        return wf

    def _infer(self, stage: str, weights: Path, capture: bool = False) -> dict[str, dict[str, str]]:
        """Run ``configs/inference.yaml`` with ``weights`` on the folder into ``O/<stage>``; its summary rows by stem."""
        out = self.output_dir / stage
        out.mkdir(exist_ok=True)
        marker = {"weights_md5": _md5(weights), "dataset_dir": str(self.dataset_dir.resolve())}
        done = _read_json(out / "weights.json")
        resume = self.resume and done == marker
        if done is not None and done != marker:
            logger.info("%s: other weights or data than the earlier run's: every stack is segmented again.", out)
        _write_json(out / "weights.json", marker)
        for _attempt in range(2):
            overrides = {
                "dataset_dir": str(self.dataset_dir),
                "output_dir": str(out),
                "ckpt_dir": str(weights.parent),
                "model_name": weights.name,
                "qc_reference": str(self.qc_reference),
                "backend": "torch",  # before and after through the same forward pass
                "cells": False,
                "tiling": "never",  # every stack whole: its confidence map comes from the evaluator's forward pass
                "resume": resume,
                "skip_errors": self.skip_errors,
                **self.inference_overrides,
            }
            wf = self._workflow("inference.yaml", "infer", overrides)
            pending = wf.parser.get_parsed_content("stacks")
            if pending:
                if capture:
                    from monai.engines.utils import IterationEvents

                    wf.parser.get_parsed_content("evaluator").add_event_handler(
                        IterationEvents.FORWARD_COMPLETED, self._keep_confidence
                    )
                logger.info("adaptation, %s: segmenting %d stack(s) with %s", stage, len(pending), weights)
                wf.run()
            wf.finalize()
            rows = {r["stem"]: r for r in read_table(out / "summary.csv")[0] if r["stem"] in self.stacks}
            missing = [
                s for s, r in rows.items() if capture and not r.get("error") and not self._confidence_path(s).is_file()
            ]
            if not missing:
                return rows
            logger.warning("%s: no confidence map for %s; segmenting every stack again.", out, missing[:5])
            resume = False
        raise RuntimeError(f"{out}: the confidence maps of {missing[:5]} were not written.")

    def _confidence_path(self, stem: str) -> Path:
        return self.output_dir / "before" / "confidence" / f"{stem}.npy"

    def _keep_confidence(self, engine) -> None:
        """Forward-pass handler: save each stack's largest softmax probability per pixel, row-major (H, W)."""
        import torch
        from monai.data import MetaTensor
        from monai.utils import CommonKeys
        from scripts.io.orientation import to_row_major

        output = engine.state.output
        inputs, logits = output[CommonKeys.IMAGE], output[CommonKeys.PRED]
        meta = inputs.meta if isinstance(inputs, MetaTensor) else {}
        names = meta.get("filename_or_obj")
        names = names if isinstance(names, list | tuple) else [names]
        folder = self.output_dir / "before" / "confidence"
        folder.mkdir(exist_ok=True)
        with torch.no_grad():
            confidence = torch.softmax(torch.as_tensor(logits).float(), dim=1).amax(dim=1).cpu().numpy()
        for name, conf in zip(names, confidence, strict=True):
            with atomic_path(self._confidence_path(stack_stem(str(name)))) as tmp, open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(to_row_major(conf)).astype(np.float16))

    def _phasor(self, stems: list[str]) -> dict[str, dict[str, str]]:
        """The phasor's labels of ``stems`` (``O/phasor``; stacks done before are kept); its rows by stem."""
        from scripts.phasor.job import CSV_NAME, PhasorJob

        out = self.output_dir / "phasor"
        out.mkdir(exist_ok=True)
        done = {r["stem"]: r for r in read_table(out / CSV_NAME)[0]} if self.resume else {}
        pending = [
            s
            for s in stems
            if s not in done
            or (not done[s].get("error") and not Path(done[s].get("label", "")).is_file())
            or Path(done[s].get("image", "")).resolve() != Path(self.stacks[s]).resolve()
        ]
        if pending:
            logger.info("adaptation, phasor: labelling %d stack(s)", len(pending))
            PhasorJob(
                [self.stacks[s] for s in pending],
                out,
                skip_errors=True,
                plots=False,
                label_formats=("nii.gz",),
                validation_fraction=0.0,
            ).run()
        return {r["stem"]: r for r in read_table(out / CSV_NAME)[0] if r["stem"] in stems}

    # ------------------------------------------------------------------ steps
    def _pseudo_labels(
        self, adapt: list[str], before: dict, phasor: dict, threshold: float | None
    ) -> tuple[list[dict], dict[str, str], dict[str, dict]]:
        """Datalist items of the usable adaptation stacks, the reason each other one is left out, pixel shares."""
        out = self.output_dir / "pseudo_labels"
        out.mkdir(exist_ok=True)
        items, excluded, shares = [], {}, {}
        tag = f"{self.source}:{self.confidence:g}:{_md5(self.pretrained)[:12]}"
        for stem in adapt:
            row = before.get(stem, {"error": "no row in the inference summary"})
            reason = qc_exclusion(row, self.qc_gate, threshold)
            ph = phasor.get(stem, {})
            if not reason and needs_phasor(self.source):
                if ph.get("error") or not ph:
                    reason = f"phasor failed: {ph.get('error', 'not run')}"
                elif ph.get("qc") and self.source == "phasor":  # consensus: the network's agreement is the gate
                    reason = f"phasor QC: {ph['qc']}"
            shares[stem] = {}
            if not row.get("error"):
                conf = np.load(self._confidence_path(stem)).astype(np.float32)
                shares[stem]["confident_fraction"] = round(float((conf >= self.confidence).mean()), 4)
            if reason:
                excluded[stem] = reason
                continue
            net = _read_labels(self.output_dir / "before" / f"{stem}.nii.gz")
            ph_labels = _read_labels(Path(ph["label"])) if needs_phasor(self.source) else None
            labels, mask = pseudo_labels(self.source, net, conf, ph_labels, self.confidence)
            shares[stem]["pseudo_label_fraction"] = round(float(mask.mean()), 4)
            if not mask.any():
                excluded[stem] = "no pixel passed the confidence threshold"
                continue
            pixel = row.get("pixel_size_um")
            pixel = float(pixel) if pixel not in (None, "") else None
            label_path = write_label_map(out / stem, labels, ("nii.gz",), pixel)[0]
            mask_path = write_label_map(out / f"{stem}_mask", mask, ("nii.gz",), pixel)[0]
            items.append(
                {"image": self.stacks[stem], "label": str(label_path), "mask": str(mask_path), "pseudo_labels": tag}
            )
        for stem, reason in excluded.items():
            logger.warning("adaptation: %s left out of the pseudo-labels: %s", self.stacks[stem], reason)
        if not items:
            raise HSRSInputError(
                f"none of the {len(adapt)} adaptation stacks of {self.dataset_dir} gave pseudo-labels: "
                + "; ".join(f"{s}: {r}" for s, r in excluded.items())
                + " (see --qc_gate, --confidence, --pseudo_labels)."
            )
        return items, excluded, shares

    def _references(self, held: list[str], phasor: dict) -> list[str]:
        """Held-out stacks whose phasor labels serve the criterion: those that passed the phasor's QC, else any."""
        labelled = [s for s in held if phasor.get(s) and not phasor[s].get("error") and phasor[s].get("label")]
        clean = [s for s in labelled if not phasor[s].get("qc")]
        if not labelled:
            raise HSRSInputError(
                f"no held-out stack of {self.dataset_dir} has phasor labels ("
                + "; ".join(f"{s}: {phasor.get(s, {}).get('error') or 'not run'}" for s in held)
                + "); model selection needs at least one: add stacks, or change --held_out_fraction or --seed."
            )
        if not clean:
            logger.warning(
                "adaptation: the phasor's QC warned on every held-out stack (%s); the criterion uses them anyway.",
                "; ".join(f"{s}: {phasor[s]['qc']}" for s in labelled),
            )
            return labelled
        return clean

    def _fine_tune(self, datalist: dict) -> Path:
        """Run ``configs/train.yaml`` from ``pretrained`` on the datalist, unless done with the same data; the best model."""
        from scripts.engine.checkpoints import run_digest

        out = self.output_dir / "train"
        best = out / "models" / "model.pt"
        settings = {
            "datalist": datalist,
            "pretrained_md5": _md5(self.pretrained),
            "max_epochs": self.max_epochs,
            "time_limit_s": self.time_limit_s,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
            "overrides": self.train_overrides,
        }
        marker = {"digest": run_digest(settings)}
        if self.resume and _read_json(out / "done.json") == marker and best.is_file():
            logger.info("adaptation: the fine-tuning in %s is done (same data and settings); not repeated.", out)
            return best
        overrides = {
            "dataset_dir": str(self.output_dir),
            "datalist_file": str(self.output_dir / "datalist.json"),
            "output_dir": str(out),
            "ckpt_dir": str(out / "models"),
            "pretrained": str(self.pretrained),
            "max_epochs": self.max_epochs,
            "time_limit_s": self.time_limit_s,
            "learning_rate": self.learning_rate,
            "val_interval": 1,
            "seed": self.seed,
            "resume": self.resume,
            # pixels outside each pseudo-label's mask: IGNORE_INDEX, left out of the loss
            "adapt_mask_transforms": [
                {
                    "_target_": "LoadImaged",
                    "keys": "mask",
                    "reader": "scripts.io.reader.HSRSReader",
                    "image_only": True,
                    "allow_missing_keys": True,
                },
                {"_target_": "scripts.adapt.transforms.IgnoreUnmaskedd", "keys": "label", "mask_key": "mask"},
            ],
            "train#preprocessing#transforms": "$@preprocessing_transforms + @adapt_mask_transforms + @train#augmentation",
            "train#loss": {
                "_target_": "scripts.adapt.loss.DiceCEIgnoreLoss",
                "ignore_index": IGNORE_INDEX,
                "batch": True,
            },
            **self.train_overrides,
        }
        logger.info(
            "adaptation: fine-tuning %s on %d stack(s), selecting on %d held-out stack(s) (at most %d epochs%s)",
            self.pretrained,
            len(datalist["training"]),
            len(datalist["validation"]),
            self.max_epochs,
            f", {self.time_limit_s:g} s" if self.time_limit_s else "",
        )
        wf = self._workflow("train.yaml", "train", overrides)
        wf.run()
        wf.finalize()
        if not best.is_file():
            raise RuntimeError(f"{best}: the fine-tuning wrote no best model (no validation ran?); see the log above.")
        _write_json(out / "done.json", marker)
        return best

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        """Run every step (see the module docstring); returns the record written to ``O/adaptation.json``."""
        t0 = time.perf_counter()
        adapt, held = split_stacks(list(self.stacks), self.held_out_fraction, self.seed)
        _write_json(
            self.output_dir / "split.json",
            {"seed": self.seed, "held_out_fraction": self.held_out_fraction, "adaptation": adapt, "held_out": held},
        )
        logger.info("adaptation: %d stack(s) to adapt on, %d held out: %s", len(adapt), len(held), ", ".join(held))

        step = time.perf_counter()
        before = self._infer("before", self.pretrained, capture=True)
        self.seconds["before"] = time.perf_counter() - step

        step = time.perf_counter()
        usable = [s for s in self.stacks if not before.get(s, {}).get("error")]
        phasor_stems = [s for s in (adapt if needs_phasor(self.source) else []) + held if s in usable]
        phasor = self._phasor(phasor_stems)
        self.seconds["phasor"] = time.perf_counter() - step

        step = time.perf_counter()
        from scripts.qc.reference import load_reference

        reference = load_reference(self.qc_reference)
        threshold = reference.threshold if reference is not None else None
        items, excluded, shares = self._pseudo_labels(adapt, before, phasor, threshold)
        references = self._references(held, phasor)
        datalist = {
            "training": items,
            "validation": [{"image": self.stacks[s], "label": phasor[s]["label"]} for s in references],
        }
        _write_json(self.output_dir / "datalist.json", datalist)
        self.seconds["pseudo_labels"] = time.perf_counter() - step

        step = time.perf_counter()
        adapted = self._fine_tune(datalist)
        self.seconds["fine_tuning"] = time.perf_counter() - step

        step = time.perf_counter()
        after = self._infer("after", adapted)
        self.seconds["after"] = time.perf_counter() - step

        scores = self._scores(before, after, phasor)
        criterion = {
            stage: mean_agreement([scores[s][stage] for s in references if stage in scores[s]])
            for stage in ("before", "after")
        }
        gain = criterion["after"] - criterion["before"]
        selected = "adapted" if not math.isnan(gain) and gain >= self.min_improvement else "pretrained"
        models = self.output_dir / "models"
        models.mkdir(exist_ok=True)
        with atomic_path(models / "model.pt") as tmp:
            shutil.copyfile(adapted if selected == "adapted" else self.pretrained, tmp)
        self._write_summary(adapt, before, after, phasor, scores, excluded, shares)
        self.seconds["total"] = time.perf_counter() - t0
        record = {
            "dataset_dir": str(self.dataset_dir.resolve()),
            "pretrained": str(self.pretrained),
            "selected": selected,
            "weights": str(models / "model.pt"),
            "criterion": "mean Dice against the phasor's labels on the held-out stacks (agreement, not accuracy)",
            "criterion_before": criterion["before"],
            "criterion_after": criterion["after"],
            "min_improvement": self.min_improvement,
            "held_out": held,
            "criterion_stacks": references,
            "adaptation": adapt,
            "pseudo_label_stacks": [stack_stem(i["image"]) for i in items],
            "excluded": excluded,
            "settings": {
                "pseudo_labels": self.source,
                "confidence": self.confidence,
                "qc_gate": self.qc_gate,
                "max_epochs": self.max_epochs,
                "time_limit_s": self.time_limit_s,
                "learning_rate": self.learning_rate,
                "seed": self.seed,
            },
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
        }
        _write_json(self.output_dir / "adaptation.json", record)
        verdict = (
            f"the adapted weights are in {models / 'model.pt'}"
            if selected == "adapted"
            else f"no gain of at least {self.min_improvement:g}: {models / 'model.pt'} is a copy of {self.pretrained}"
        )
        logger.info(
            "adaptation: agreement with the phasor on %d held-out stack(s) %.3f before, %.3f after (%+.3f); %s. "
            "Per stack: %s",
            len(references),
            criterion["before"],
            criterion["after"],
            gain,
            verdict,
            self.output_dir / "summary.csv",
        )
        return record

    def _scores(self, before: dict, after: dict, phasor: dict) -> dict[str, dict[str, dict[str, float]]]:
        """Agreement of the before / after label maps with the phasor's, per stack that has both."""
        scores: dict[str, dict[str, dict[str, float]]] = {}
        for stem in self.stacks:
            scores[stem] = {}
            ph = phasor.get(stem, {})
            if not ph.get("label") or ph.get("error"):
                continue
            reference = _read_labels(Path(ph["label"]))
            for stage, rows in (("before", before), ("after", after)):
                path = self.output_dir / stage / f"{stem}.nii.gz"
                if stem in rows and not rows[stem].get("error") and path.is_file():
                    scores[stem][stage] = agreement(_read_labels(path), reference)
        return scores

    def _write_summary(self, adapt, before, after, phasor, scores, excluded, shares) -> None:
        rows = []
        for stem, image in self.stacks.items():
            b, a, ph = before.get(stem, {}), after.get(stem, {}), phasor.get(stem, {})
            held = stem not in adapt
            row: dict[str, Any] = {
                "stem": stem,
                "image": image,
                "split": "held_out" if held else "adaptation",
                "pseudo_labels": (
                    "held out" if held else (f"left out: {excluded[stem]}" if stem in excluded else "used")
                ),
                **shares.get(stem, {}),
                "phasor_qc": ph.get("error") or ph.get("qc") or ("ok" if ph else ""),
                "qc_reason_before": b.get("qc_reason", ""),
                "error": b.get("error") or a.get("error") or "",
            }
            for stage, source in (("before", b), ("after", a)):
                row.update({f"{c}_{stage}": source.get(c, "") for c in STAGE_COLUMNS})
                for c, v in scores.get(stem, {}).get(stage, {}).items():
                    row[f"phasor_agreement_{c}_{stage}"] = "" if math.isnan(v) else round(v, 4)
            rows.append(row)
        write_table(self.output_dir / "summary.csv", rows, SUMMARY_COLUMNS)
