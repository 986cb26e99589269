"""Benchmark section: how long the phantom simulator takes for one stack."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from scripts.benchmarks import SectionResult, markdown_table
from scripts.io.writer import write_label_map, write_stack
from scripts.simulation.phantom import PRESETS, simulate_phantom, to_uint16

TITLE = "Phantom simulator speed"
#: no network: the simulator alone (see :data:`scripts.benchmark.WEIGHTS_USED`)
WEIGHTS_USED = "none"
TARGET_SECONDS = 2.0


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run(quick: bool) -> SectionResult:
    size, repeats = (256, 1) if quick else (512, 3)
    simulate_phantom(0, 64, 64)  # warm-up (imports, caches)
    rows, data = [], {"size": size, "frames": 64, "repeats": repeats, "target_seconds": TARGET_SECONDS, "presets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in sorted(PRESETS):
            seeds = iter(range(100))
            t_sim = _median_time(lambda p=preset, s=seeds: simulate_phantom(next(s), size, size, preset=p), repeats)
            ph = simulate_phantom(0, size, size, preset=preset)

            def write(ph=ph, dtype="float32"):
                stack = to_uint16(ph.stack) if dtype == "uint16" else ph.stack
                write_stack(Path(tmp) / "s.nii.gz", stack, ph.wavenumbers, 0.25)
                write_label_map(Path(tmp) / "l", ph.labels, formats=("nii.gz",))

            t_f32 = _median_time(write, repeats)
            t_u16 = _median_time(lambda ph=ph: write(ph, "uint16"), repeats)
            data["presets"][preset] = {
                "simulate_s": t_sim,
                "write_float32_niigz_s": t_f32,
                "write_uint16_niigz_s": t_u16,
            }
            rows.append([preset, f"{t_sim:.2f}", f"{t_f32:.2f}", f"{t_sim + t_f32:.2f}", f"{t_u16:.2f}"])
    table = markdown_table(
        [
            "preset",
            "simulate (s)",
            "write float32 .nii.gz (s)",
            "simulate + write float32 (s)",
            "write uint16 .nii.gz (s)",
        ],
        rows,
    )
    worst = max(v["simulate_s"] for v in data["presets"].values())
    verdict = "met" if worst < TARGET_SECONDS else "NOT met"
    note = (
        f"One {size}×{size}×64 stack, median of {repeats} run(s) (`simulate_phantom`, then `write_stack` + `write_label_map`). "
        f"Target: simulation under {TARGET_SECONDS:g} s per 512×512×64 stack — "
        + (
            f"**{verdict}** (slowest preset {worst:.2f} s)."
            if not quick
            else "not judged in `--quick` mode (smaller stack)."
        )
        + " Writing compressed float32 NIfTI is gzip-bound; `--dtype uint16` files are half the size."
    )
    return SectionResult(table + "\n\n" + note, data)
