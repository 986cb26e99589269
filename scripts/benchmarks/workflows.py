"""Benchmark section: end-to-end inference workflow throughput and memory, and training speed.

Each measurement runs ``python -m monai.bundle run`` in a fresh process (as a user would) and
reads that process's wall time and peak resident memory.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
from scripts.benchmarks import SectionResult, markdown_table
from scripts.benchmarks.bundle_runs import REPO, bundle_run
from scripts.io.writer import write_stack
from scripts.simulation.dataset import simulate_dataset
from scripts.simulation.phantom import simulate_phantom

TITLE = "Workflow speed: inference throughput, memory, training time"


def _inference(folder: Path, out: Path) -> tuple[float, float]:
    wall, peak, _ = bundle_run(
        ["--config_file", "configs/inference.yaml", "--dataset_dir", str(folder), "--output_dir", str(out)]
    )
    return wall, peak


def run(quick: bool) -> SectionResult:
    rows, data = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [("bundled demo data (3 stacks, 128×128×64)", REPO / "docs" / "demo_data" / "images", 3)]
        sizes = [512] if quick else [512, 2048]
        for size in sizes:
            folder = tmp / f"in_{size}"
            folder.mkdir()
            ph = simulate_phantom(0, size, size)
            write_stack(folder / f"stack_{size}.nii.gz", ph.stack, ph.wavenumbers, 0.25)
            cases.append((f"one {size}×{size}×64 stack (float32 .nii.gz)", folder, 1))
        for name, folder, n in cases:
            wall, peak = _inference(folder, tmp / f"out_{len(rows)}")
            rows.append([name, f"{wall:.1f}", f"{wall / n:.1f}", f"{peak:.0f}"])
            data[name] = {"wall_s": wall, "per_stack_s": wall / n, "peak_rss_mib": peak, "stacks": n}
        # training speed: a short run of train.yaml on simulated 512×512 stacks
        n_train = 4 if quick else 8
        simulate_dataset(tmp / "train_data", num=n_train + 2, seed=11, height=512, width=512)
        epochs = 2
        wall, peak, log = bundle_run(
            [
                "--config_file",
                "configs/train.yaml",
                "--dataset_dir",
                str(tmp / "train_data"),
                "--output_dir",
                str(tmp / "train_out"),
                "--ckpt_dir",
                str(tmp / "models"),
                "--max_epochs",
                str(epochs),
                "--val_interval",
                str(epochs),
            ]
        )
        times = [
            _seconds(m)
            for m in re.findall(
                r"SupervisedTrainer - INFO - Epoch\[\d+\] Complete\. Time taken: (\d+:\d\d:\d\d\.\d+)", log
            )
        ]
        per_epoch = float(np.median(times)) if times else float("nan")
        n_train_items = len(json.loads((tmp / "train_data" / "datalist.json").read_text())["training"])
        iterations = int(np.ceil(n_train_items / 2))
        data["training"] = {
            "train_stacks": n_train_items,
            "seconds_per_epoch": per_epoch,
            "iterations_per_epoch": iterations,
            "peak_rss_mib": peak,
        }
    table = markdown_table(
        [
            "inference run (`configs/inference.yaml`, end to end incl. start-up and I/O)",
            "wall (s)",
            "s per stack",
            "peak memory (MiB)",
        ],
        rows,
    )
    train = data["training"]
    note = (
        f"Training (`configs/train.yaml`, batch 2 stacks × 4 patches of 128×128×64, CPU): "
        f"**{train['seconds_per_epoch']:.0f} s per epoch** over {train['train_stacks']} training stacks of 512×512×64 "
        f"({train['iterations_per_epoch']} iterations, "
        f"{train['seconds_per_epoch'] / max(train['iterations_per_epoch'], 1):.1f} s each; "
        f"validation excluded), peak memory {train['peak_rss_mib']:.0f} MiB. Inference wall times include Python start-up, "
        "model loading, reading, resampling, the sliding window (256×256, overlap 0.25) and writing NIfTI + TIFF label maps, "
        "overlay PNG and summary CSV."
    )
    return SectionResult(table + "\n\n" + note, data)


def _seconds(hhmmss: str) -> float:
    hours, minutes, seconds = hhmmss.split(":")
    return 3600 * int(hours) + 60 * int(minutes) + float(seconds)
