"""Benchmark section: adapting the shipped weights to an instrument they were not trained on (``configs/adapt.yaml``).

One simulated lab instrument the shipped weights never saw (trained before the simulator had it):
**raw spectral focusing** (:data:`scripts.simulation.phantom.PRESETS` ``["raw_spectral_focusing"]``:
a pulse-overlap envelope over the frames, a dark offset, 8-bit counts, no wavenumbers in the file)
at **40 cm⁻¹ spectral resolution**, pinned to one set-up as a lab's microscope is: one window,
frame count and frame order, a strong bell envelope of about the same shape on every stack, and
cell-culture fields (the phasor, which the selection criterion uses, does not segment tissue).

A folder of such stacks goes through ``python -m monai.bundle run --config_file configs/adapt.yaml``
(a fresh process, as a user runs it) for each pseudo-label source; every stack is then scored
against the simulator's truth, before (shipped weights) and after (fine-tuned weights), on the
held-out stacks the adaptation never trained on and on the adaptation stacks. Reported: Dice per
class, the criterion the workflow selected with (agreement with the phasor on the held-out stacks),
its decision, and the wall time of the whole adaptation per stack. Work lives in
``outputs/benchmark_adaptation`` (quick: ``outputs/benchmark_adaptation_quick``) and is kept: a
rerun with the same plan reuses finished adaptations.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scripts.benchmarks import SectionResult, markdown_table, mean_sd
from scripts.benchmarks.bundle_runs import REPO, bundle_run

TITLE = "Adaptation to an unseen instrument: shipped weights fine-tuned on unlabelled stacks (configs/adapt.yaml)"
SEED = 20261204
CLASSES = {"nucleus": 1, "lipid_droplet": 2}


@dataclass(frozen=True)
class Plan:
    stacks: int  #: stacks in the folder
    size: int  #: field (px)
    max_epochs: int
    time_limit_s: float
    sources: tuple[str, ...]  #: pseudo-label sources, one adaptation each
    held_out_fraction: float = 0.25


FULL = Plan(stacks=8, size=256, max_epochs=12, time_limit_s=240.0, sources=("consensus", "network"))
QUICK = Plan(stacks=4, size=128, max_epochs=2, time_limit_s=40.0, sources=("consensus",), held_out_fraction=0.5)


def instrument_preset():
    """The unseen instrument: raw spectral focusing at 40 cm⁻¹, one set-up, cell-culture fields."""
    from scripts.simulation.envelope import EnvelopeRanges
    from scripts.simulation.phantom import PRESETS

    base = PRESETS["raw_spectral_focusing"]
    instrument = replace(
        base.instrument,
        window_start=(2810.0, 2810.0),
        window_end=(3040.0, 3040.0),
        frames=(80.0, 80.0),
        descending_probability=0.0,
        envelope=replace(
            EnvelopeRanges(probability=1.0), ramp_probability=0.0, centre=(0.3, 0.4), fwhm=(0.6, 0.8), skew=(-0.1, 0.1)
        ),
    )
    return replace(
        base, spectral_resolution=(40.0, 40.0), tissue_probability=0.0, organism_probability=0.0, instrument=instrument
    )


def build_folder(root: Path, plan: Plan) -> dict[str, dict]:
    """Simulate the folder (``root/images``, native 8-bit counts, no wavenumbers) and its truth (``root/truth``), once."""
    from scripts.io.writer import write_label_map, write_stack
    from scripts.simulation.phantom import simulate_phantom

    key = {"stacks": plan.stacks, "size": plan.size, "seed": SEED, "preset": repr(instrument_preset())}
    record = root / "data.json"
    if record.is_file() and json.loads(record.read_text()).get("plan") == key:
        return json.loads(record.read_text())["params"]
    shutil.rmtree(root, ignore_errors=True)
    (root / "images").mkdir(parents=True)
    (root / "truth").mkdir()
    params = {}
    preset = instrument_preset()
    for i in range(plan.stacks):
        ph = simulate_phantom(np.random.default_rng([SEED, i]), plan.size, plan.size, preset=preset)
        stem = f"raw_sf_{i:02d}"
        data = ph.counts if ph.counts is not None else ph.stack
        write_stack(root / "images" / f"{stem}.tif", data, None, 0.25)
        write_label_map(root / "truth" / stem, ph.labels, formats=("nii.gz",), pixel_size_um=0.25)
        params[stem] = {k: v for k, v in ph.params.items() if isinstance(v, int | float | str | bool)}
    record.write_text(json.dumps({"plan": key, "params": params}, indent=1, default=str) + "\n")
    return params


def _dice(pred: np.ndarray, truth: np.ndarray, value: int) -> float:
    p, t = pred == value, truth == value
    total = p.sum() + t.sum()
    return float(2 * (p & t).sum() / total) if t.any() else math.nan


def _labels(path: Path) -> np.ndarray:
    from scripts.io.reader import read_hsrs

    labels, _ = read_hsrs(path)
    return np.asarray(labels).reshape(labels.shape[-2:])


def adapt(root: Path, out: Path, plan: Plan, source: str) -> dict:
    """Run ``configs/adapt.yaml`` on the folder with one pseudo-label source (once per plan); its record and wall time."""
    key = {"plan": repr(plan), "source": source, "data": json.loads((root / "data.json").read_text())["plan"]}
    done = out / "benchmark.json"
    if done.is_file() and json.loads(done.read_text()).get("key") == key:
        return json.loads(done.read_text())
    shutil.rmtree(out, ignore_errors=True)
    args = [
        "--config_file",
        "configs/adapt.yaml",
        "--dataset_dir",
        str(root / "images"),
        "--output_dir",
        str(out),
        "--pseudo_labels",
        source,
        "--max_epochs",
        str(plan.max_epochs),
        "--time_limit_s",
        str(plan.time_limit_s),
        "--held_out_fraction",
        str(plan.held_out_fraction),
    ]
    if plan.size < 256:
        args += ["--train_overrides", "{'patch_size': [64, 64], 'val_roi_size': [128, 128]}"]
    wall, peak, _ = bundle_run(args, log_file=out.parent / f"{out.name}.log")
    result = {
        "key": key,
        "wall_s": wall,
        "peak_rss_mib": peak,
        "record": json.loads((out / "adaptation.json").read_text()),
    }
    done.write_text(json.dumps(result, indent=1) + "\n")
    return result


def score(root: Path, out: Path, record: dict) -> dict:
    """Dice vs truth of every stack before and after, by split."""
    rows = {}
    for stem in record["adaptation"] + record["held_out"]:
        truth = _labels(root / "truth" / f"{stem}.nii.gz")
        rows[stem] = {
            "split": "held_out" if stem in record["held_out"] else "adaptation",
            **{
                f"{c}_{stage}": _dice(_labels(out / stage / f"{stem}.nii.gz"), truth, v)
                for stage in ("before", "after")
                for c, v in CLASSES.items()
            },
        }
    return rows


def measure(plan: Plan, work: Path) -> dict:
    work = Path(work).resolve()
    root = work / "data"
    params = build_folder(root, plan)
    runs = {}
    for source in plan.sources:
        out = work / f"adapt_{source}"
        result = adapt(root, out, plan, source)
        runs[source] = {**result, "scores": score(root, out, result["record"])}
    return {"plan": repr(plan), "params": params, "runs": runs}


def _cell(values) -> str:
    s = mean_sd(values)
    return "–" if math.isnan(s["mean"]) else f"{s['mean']:.3f} ± {s['sd']:.3f}"


def report(result: dict, plan: Plan) -> SectionResult:
    header = [
        "pseudo-labels",
        "stacks (split)",
        "nucleus before",
        "nucleus after",
        "lipid droplet before",
        "lipid droplet after",
    ]
    rows, summary = [], {}
    for source, run in result["runs"].items():
        scores = run["scores"]
        for split in ("held_out", "adaptation"):
            members = [s for s in scores.values() if s["split"] == split]
            rows.append(
                [
                    source,
                    f"{len(members)} ({split.replace('_', '-')})",
                    *(_cell([m[f"{c}_{stage}"] for m in members]) for c in CLASSES for stage in ("before", "after")),
                ]
            )
        rec = run["record"]
        n = len(scores)
        summary[source] = {
            "selected": rec["selected"],
            "criterion_before": rec["criterion_before"],
            "criterion_after": rec["criterion_after"],
            "wall_s": run["wall_s"],
            "seconds_per_stack": run["wall_s"] / n,
            "fine_tuning_s": rec["seconds"].get("fine_tuning"),
            "excluded": rec["excluded"],
            "peak_rss_mib": run["peak_rss_mib"],
        }
    decisions = markdown_table(
        [
            "pseudo-labels",
            "criterion before → after (agreement with the phasor, held-out)",
            "selected",
            "stacks left out",
            "adaptation wall time (s; per stack)",
            "of it fine-tuning (s)",
            "peak memory (MiB)",
        ],
        [
            [
                source,
                f"{s['criterion_before']:.3f} → {s['criterion_after']:.3f}",
                "fine-tuned" if s["selected"] == "adapted" else "shipped (kept)",
                len(s["excluded"]),
                f"{s['wall_s']:.0f} ({s['seconds_per_stack']:.0f})",
                f"{s['fine_tuning_s']:.0f}",
                f"{s['peak_rss_mib']:.0f}",
            ]
            for source, s in summary.items()
        ],
    )
    markdown = (
        f"{plan.stacks} stacks of {plan.size}² px from one simulated raw spectral-focusing set-up the shipped weights were "
        "not trained on (`scripts.benchmarks.adaptation.instrument_preset`: envelope over the frames, dark offset, 8-bit "
        "counts, no wavenumbers in the files, 40 cm⁻¹ resolution, 80 frames; cell-culture fields; seeds "
        f"`[{SEED}, i]`), adapted with `python -m monai.bundle run --config_file configs/adapt.yaml --dataset_dir D "
        f"--output_dir O --pseudo_labels P --max_epochs {plan.max_epochs} --time_limit_s {plan.time_limit_s:g} "
        f"--held_out_fraction {plan.held_out_fraction:g}` (shipped weights, CPU). Dice against the simulator's truth "
        "(mean ± sd over stacks), before = shipped weights, after = fine-tuned weights (whether or not the workflow "
        "selected them):\n\n"
        + markdown_table(header, rows)
        + "\n\n"
        + decisions
        + "\n\nThe criterion is the workflow's own, computed without truth: mean Dice of the network's labels "
        "against the phasor's on the held-out stacks. Wall time: the whole `configs/adapt.yaml` run in a fresh "
        "process (both inference passes, the phasor, the fine-tuning), divided by the stacks in the folder.\n"
    )
    return SectionResult(markdown=markdown, data={"plan": result["plan"], "runs": result["runs"], "summary": summary})


def run(quick: bool = False) -> SectionResult:
    plan = QUICK if quick else FULL
    work = REPO / "outputs" / ("benchmark_adaptation_quick" if quick else "benchmark_adaptation")
    return report(measure(plan, work), plan)
