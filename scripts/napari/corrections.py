"""Corrections back to training: corrected label maps into a datalist folder, and the fine-tuning run on it.

A *corrections folder* is the layout ``configs/train.yaml`` reads with ``--dataset_dir`` (and that
``python -m scripts.simulate`` writes)::

    D/images/<stem>.nii.gz    the stack, wavenumbers and pixel size in the header (scripts.io.writer.write_stack)
    D/labels/<stem>.nii.gz    its corrected label map (0 background, 1 nucleus, 2 lipid droplet)
    D/datalist.json           {"training": [{image, label}, ...], "validation": [...]}, paths relative to D

:func:`save_correction` adds one stack (or replaces it, in the list it is already in: the split is kept), each
file written atomically. :func:`finetune_command` is the command line that fine-tunes the shipped weights on the
folder (``configs/train.yaml --pretrained models/model.pt``, the adaptation workflow's learning rate), and
:class:`FineTuneRun` runs it as a separate process, reading its progress from the training's log lines.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scripts.io.atomic import atomic_path
from scripts.io.writer import check_label_map, write_label_map, write_stack
from scripts.napari.segmentation import BUNDLE_ROOT, StackInput

DATALIST_NAME = "datalist.json"
SPLITS = ("training", "validation")
#: Share of the stacks that ``split="auto"`` puts under ``validation`` (as the phasor's pseudo-label datalist).
VALIDATION_FRACTION = 0.2
#: The fine-tuning's learning rate: the adaptation workflow's (``configs/adapt.yaml``), a quarter of training's.
FINETUNE_LEARNING_RATE = 0.0005


def read_datalist(folder: str | Path) -> dict[str, list[dict]]:
    """The folder's ``datalist.json`` as stored (relative paths), with both splits present (empty when new)."""
    path = Path(folder) / DATALIST_NAME
    content = json.loads(path.read_text()) if path.is_file() else {}
    if not isinstance(content, dict):
        raise ValueError(f"{path}: not a datalist (a JSON object of lists).")
    for split in SPLITS:
        content.setdefault(split, [])
    return content


def _split_of(datalist: Mapping[str, list[dict]], image: str) -> str | None:
    for split, items in datalist.items():
        if isinstance(items, list) and any(isinstance(i, dict) and i.get("image") == image for i in items):
            return split
    return None


def auto_split(datalist: Mapping[str, list[dict]]) -> str:
    """``validation`` for the first stack after one training stack and then for every ``1 / VALIDATION_FRACTION``
    -th stack, ``training`` otherwise (training needs one of each)."""
    n_train, n_val = len(datalist.get("training", [])), len(datalist.get("validation", []))
    if n_train >= 1 and n_val < max(1, round(VALIDATION_FRACTION * (n_train + n_val + 1))):
        return "validation"
    return "training"


def save_correction(
    folder: str | Path, item: StackInput, labels: np.ndarray, split: str = "auto"
) -> tuple[str, dict[str, str]]:
    """Write ``item``'s stack and its corrected ``labels`` into ``folder`` and list them in its datalist.

    Args:
        folder: the corrections folder (created when missing).
        item: the stack as the viewer holds it.
        labels: (H, W) label map painted in the viewer (values 0, 1, 2).
        split: ``"training"``, ``"validation"`` or ``"auto"`` (:func:`auto_split`). A stack already listed stays in
            its list whatever ``split`` says (the split is kept; its files are replaced).

    Returns:
        ``(split, entry)``: the list it is in and its entry (relative paths).
    """
    if split not in (*SPLITS, "auto"):
        raise ValueError(f"split must be one of {(*SPLITS, 'auto')}, got {split!r}.")
    folder = Path(folder)
    labels = check_label_map(np.asarray(labels), f"corrected label map of {item.name}")
    if labels.shape != item.stack.shape[1:]:
        raise ValueError(f"the label map is {labels.shape}, the stack {item.name} is {item.stack.shape[1:]}.")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    entry = {"image": f"images/{item.name}.nii.gz", "label": f"labels/{item.name}.nii.gz"}
    write_stack(folder / entry["image"], item.stack, item.wavenumbers, item.pixel_size_um)
    write_label_map(folder / "labels" / item.name, labels, ("nii.gz",), item.pixel_size_um)
    datalist = read_datalist(folder)
    kept = _split_of(datalist, entry["image"])
    if kept is not None:
        datalist[kept] = [entry if i.get("image") == entry["image"] else i for i in datalist[kept]]
        split = kept
    else:
        split = auto_split(datalist) if split == "auto" else split
        datalist[split].append(entry)
    with atomic_path(folder / DATALIST_NAME) as tmp:
        tmp.write_text(json.dumps(datalist, indent=2) + "\n")
    return split, entry


def finetune_command(
    folder: str | Path,
    output_dir: str | Path,
    pretrained: str | Path | None = None,
    max_epochs: int = 20,
    overrides: Mapping[str, Any] | None = None,
    bundle_root: str | Path = BUNDLE_ROOT,
) -> list[str]:
    """``python -m monai.bundle run`` of ``configs/train.yaml`` on the corrections folder, from ``pretrained``
    (default: the shipped ``models/model.pt``); the best model goes to ``output_dir/models/model.pt``."""
    root = Path(bundle_root)
    pretrained = Path(pretrained) if pretrained else root / "models" / "model.pt"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(root / "configs" / "train.yaml"),
        "--meta_file",
        str(root / "configs" / "metadata.json"),
        "--logging_file",
        str(root / "configs" / "logging.conf"),
        "--bundle_root",
        str(root),
        "--dataset_dir",
        str(Path(folder).resolve()),
        "--output_dir",
        str(Path(output_dir).resolve()),
        "--pretrained",
        str(pretrained.resolve()),
        "--max_epochs",
        str(int(max_epochs)),
        "--val_interval",
        "1",
        "--learning_rate",
        str(FINETUNE_LEARNING_RATE),
    ]
    for key, value in (overrides or {}).items():
        cmd += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    return cmd


_EPOCH_DONE = re.compile(r"Epoch\[(\d+)\] Complete")
_EPOCH_PART = re.compile(r"epoch (\d+)/(\d+): (\d+)/(\d+) iterations")


def training_progress(line: str, max_epochs: int) -> float | None:
    """The share of the training done that a log line of ``configs/train.yaml`` tells, or None."""
    if m := _EPOCH_PART.search(line):
        epoch, epochs, done, total = (int(g) for g in m.groups())
        return min(1.0, (epoch - 1 + done / max(total, 1)) / max(epochs, 1))
    if m := _EPOCH_DONE.search(line):
        return min(1.0, int(m.group(1)) / max(int(max_epochs), 1))
    return None


class FineTuneRun:
    """The fine-tuning as a child process: its log lines, its progress (0–1), cancel, and where the model goes.

    Args:
        command: from :func:`finetune_command`.
        max_epochs: the ``--max_epochs`` of the command (for the progress).
        output_dir: its ``--output_dir``.
        log_file: where the log lines are copied (default ``output_dir/finetune.log``).
    """

    def __init__(
        self,
        command: Sequence[str],
        max_epochs: int,
        output_dir: str | Path,
        log_file: str | Path | None = None,
        env: Mapping[str, str] | None = None,
    ):
        self.command, self.max_epochs = list(command), int(max_epochs)
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = Path(log_file) if log_file else self.output_dir / "finetune.log"
        self.progress, self.lines = 0.0, []
        self.process: subprocess.Popen | None = None
        self.env = {**os.environ, **(dict(env) if env else {})}

    @property
    def model_path(self) -> Path:
        """The best fine-tuned model (``configs/train.yaml``'s ``ckpt_dir``)."""
        return self.output_dir / "models" / "model.pt"

    def start(self) -> FineTuneRun:
        self.process = subprocess.Popen(
            self.command,
            cwd=str(BUNDLE_ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=self.env,
        )
        return self

    def lines_until_done(self):
        """Yield ``(progress, line)`` for every log line until the process ends; then its exit code is in
        :attr:`returncode`."""
        if self.process is None or self.process.stdout is None:
            raise RuntimeError("start() the run first.")
        with open(self.log_file, "a", encoding="utf-8") as log:
            for line in self.process.stdout:
                line = line.rstrip("\n")
                log.write(line + "\n")
                self.lines.append(line)
                fraction = training_progress(line, self.max_epochs)
                if fraction is not None:
                    self.progress = max(self.progress, fraction)
                yield self.progress, line
        self.process.wait()

    def run(self) -> int:
        """Start, read every line, wait; the exit code."""
        self.start()
        for _ in self.lines_until_done():
            pass
        return self.returncode

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def cancel(self) -> None:
        """Stop the training (its last checkpoint stays: the same command resumes it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            threading.Timer(10.0, lambda: self.process.poll() is None and self.process.kill()).start()
