"""Benchmark section: cross-instrument test -- networks trained on one instrument, tested on others.

A spectral–spatial network should generalise across instruments where a 2D network that stacks the
frames as input channels cannot: a calibration error shifts every band along the spectral axis, and
only convolutions along that axis are (approximately) equivariant to such a shift. This section
measures it. Every network of the recipe study (:mod:`scripts.benchmarks.recipes`; trained on the
easy, default and hard presets, i.e. calibration errors up to 8 cm⁻¹, resolution 20–30 cm⁻¹,
64 frames over 2800–3050 cm⁻¹) is scored, with every seed the study trained, by
``configs/evaluate.yaml`` on default-preset stacks simulated with one instrument property changed:

- spectral calibration error of 5, 10 and 20 cm⁻¹ (the sign drawn per stack; the stack still
  declares the nominal axis, as a miscalibrated instrument does);
- spectral resolution (FWHM) of 15 and 40 cm⁻¹;
- 32 and 128 frames over the canonical window (resampled onto the 64-frame grid by the reader);
- a sub-window, 2830–3000 cm⁻¹ in 64 frames (the reader fills the missing ends);
- low SNR (3) and strong non-Raman background (1.2 at its maximum).

The tuned optimized phasor labels the same stacks. Stacks live in ``outputs/instruments/``; every
evaluation is kept and skipped when done, so the section resumes.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scripts.benchmarks import SectionResult
from scripts.benchmarks import comparison as cmp
from scripts.benchmarks import markdown_table, mean_sd, recipes
from scripts.benchmarks.bundle_runs import REPO, bundle_run

TITLE = "Cross-instrument test: trained on one instrument, tested on shifted, blurred, resampled spectra"
#: the recipe study's networks (see :data:`scripts.benchmark.WEIGHTS_USED`)
WEIGHTS_USED = "own"

DATA_SEED = 2031


@dataclass(frozen=True)
class Instrument:
    key: str
    label: str
    preset: dict  #: fields of the default PhantomPreset to pin
    frames: int = 64
    window: tuple[float, float] = (2800.0, 3050.0)


INSTRUMENTS = (
    Instrument("canonical", "as trained (default preset)", {}),
    Instrument("shift5", "calibration ±5 cm⁻¹", {"calibration_shift": (5.0, 5.0)}),
    Instrument("shift10", "calibration ±10 cm⁻¹", {"calibration_shift": (10.0, 10.0)}),
    Instrument("shift20", "calibration ±20 cm⁻¹", {"calibration_shift": (20.0, 20.0)}),
    Instrument("res15", "resolution 15 cm⁻¹", {"spectral_resolution": (15.0, 15.0)}),
    Instrument("res40", "resolution 40 cm⁻¹", {"spectral_resolution": (40.0, 40.0)}),
    Instrument("frames32", "32 frames", {}, frames=32),
    Instrument("frames128", "128 frames", {}, frames=128),
    Instrument("window", "window 2830–3000 cm⁻¹", {}, window=(2830.0, 3000.0)),
    Instrument("snr3", "SNR 3", {"snr": (3.0, 3.0)}),
    Instrument("background", "background 1.2", {"background": (1.2, 1.2)}),
)
#: the study's arms scored here: the wide hybrid (WIDE_HYBRID), the fast encoder with instance norm (the study's main
#: hybrid arm) and with batch norm (shipped in 0.4.0), trained with nnU-Net's recipe, its capacity variants (wide,
#: deep-wide, deep-wide with stem stride 16, the same with a slimmer bottleneck), the full encoder, nnU-Net-style
#: with both recipes, and both families trained with calibration shifts up to ±20 cm⁻¹
ARMS = (
    "hybrid_wide",
    "hybrid_fast_instance",
    "hybrid_fast_instance_all_frames",
    "hybrid_fast",
    "hybrid_fast_instance_nnunet_recipe",
    "hybrid_fast_instance_wide",
    "hybrid_fast_instance_deep_wide",
    "hybrid_fast_instance_deep_wide_s16",
    "hybrid_fast_instance_deep_wide_s16_slim",
    "hybrid",
    "hybrid_fast_instance_shift20",
    "nnunet_2d_recipe",
    "nnunet_2d",
    "nnunet_2d_recipe_shift20",
)


def build_stacks(root: Path, size: int, per_instrument: int) -> dict[str, list[str]]:
    """Simulate ``per_instrument`` stacks of every instrument under ``root`` (once); ``{instrument: [stems]}``."""
    from scripts.io.writer import write_label_map, write_stack
    from scripts.simulation.phantom import PRESETS, simulate_phantom

    key = {
        "size": size,
        "per_instrument": per_instrument,
        "seed": DATA_SEED,
        "instruments": [i.key for i in INSTRUMENTS],
    }
    record = cmp._done(root / "data.json", key)
    if record:
        return record["stems"]
    shutil.rmtree(root, ignore_errors=True)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    stems: dict[str, list[str]] = {}
    params: dict[str, dict] = {}
    for j, inst in enumerate(INSTRUMENTS):
        preset = replace(PRESETS["default"], **inst.preset)
        wavenumbers = np.linspace(*inst.window, inst.frames)
        for i in range(per_instrument):
            rng = np.random.default_rng([DATA_SEED, j, i])
            ph = simulate_phantom(rng, size, size, wavenumbers=wavenumbers, preset=preset)
            stem = f"{inst.key}_{i}"
            write_stack(root / "images" / f"{stem}.nii.gz", ph.stack, ph.wavenumbers, 0.25)
            write_label_map(root / "labels" / stem, ph.labels, formats=("nii.gz",), pixel_size_um=0.25)
            stems.setdefault(inst.key, []).append(stem)
            params[stem] = ph.params
    cmp._write_json(root / "data.json", {"plan": key, "stems": stems, "params": params})
    return stems


def evaluate_run(run: Path, arm: cmp.Model, datalist: Path, out: Path, size: int) -> dict[str, Path]:
    """Label every stack of ``datalist`` with the checkpoint of one study run (configs/evaluate.yaml), once."""
    done = out / "done.json"
    marker = {"checkpoint": str(run / "models"), "datalist": str(datalist)}
    if not cmp._done(done, marker):
        shutil.rmtree(out, ignore_errors=True)
        bundle_run(cmp.evaluate_args(arm, out, run / "models", datalist, size), log_file=out.parent / f"{out.name}.log")
        cmp._write_json(done, {"plan": marker})
    return cmp.label_maps(out / "overlays")


def phasor_maps(root: Path, work: Path) -> dict[str, Path]:
    target = work / "phasor"
    if not cmp._done(target / "done.json", {"images": str(root / "images")}):
        shutil.rmtree(target, ignore_errors=True)
        bundle_run(
            [
                "--config_file",
                "configs/phasor.yaml",
                "--dataset_dir",
                str(root / "images"),
                "--output_dir",
                str(target),
                "--parameters_file",
                str(REPO / "configs" / "phasor_parameters.yaml"),
                "--plots",
                "false",
                "--label_formats",
                "['nii.gz']",
            ],
            log_file=work / "phasor.log",
        )
        cmp._write_json(target / "done.json", {"plan": {"images": str(root / "images")}})
    return cmp.label_maps(target / "labels")


def measure(work: Path, runs_work: Path, plan: cmp.Plan, size: int, per_instrument: int) -> dict:
    work, runs_work = Path(work).resolve(), Path(runs_work).resolve()
    root = work / "data"
    stems = build_stacks(root, size, per_instrument)
    all_stems = [s for v in stems.values() for s in v]
    datalist = cmp.write_datalist(
        work / "datalist.json",
        {"test": all_stems},
        lambda s: root / "images" / f"{s}.nii.gz",
        lambda s: root / "labels" / f"{s}.nii.gz",
    )
    truth = {s: cmp.read_labels(root / "labels" / f"{s}.nii.gz") for s in all_stems}
    references = {"gt": truth, "phasor": truth}  # scored against the truth only; the phasor key is unused here
    methods: dict = {}
    for key in ARMS:
        arm = recipes.ARM_BY_KEY[key]
        seeds = sorted(s for k, s in recipes.ORDER if k == key)
        done = [s for s in seeds if cmp.finished_run(runs_work, plan, arm, "gt", s, "test") is not None]
        if not done:
            continue
        entry = {"label": arm.label, "seeds": {}}
        for seed in done:
            run = cmp.run_dir(runs_work, arm, "gt", seed)
            maps = evaluate_run(run, arm, datalist, work / "eval" / f"{key}_s{seed}", size)
            entry["seeds"][seed] = cmp.score_method(maps, all_stems, references)
        methods[key] = entry
    methods["phasor_tuned"] = {
        "label": cmp.PHASOR_METHODS["phasor_tuned"],
        "seeds": {0: cmp.score_method(phasor_maps(root, work), all_stems, references)},
    }
    return {"stems": stems, "methods": methods}


def report(result: dict) -> SectionResult:
    stems, methods = result["stems"], result["methods"]
    header = ["method (seeds)"] + [f"{i.label}: nucleus / LD" for i in INSTRUMENTS]
    rows, data = [], {}
    for key, entry in methods.items():
        averaged = cmp.seed_average(list(entry["seeds"].values()))
        cells, data[key] = [], {"label": entry["label"], "seeds": sorted(entry["seeds"]), "instruments": {}}
        for inst in INSTRUMENTS:
            scores = {c: mean_sd(averaged[s]["gt"][c]["dice"] for s in stems[inst.key]) for c in cmp.CLASSES}
            data[key]["instruments"][inst.key] = scores
            cells.append(
                " / ".join("–" if math.isnan(scores[c]["mean"]) else f"{scores[c]['mean']:.3f}" for c in cmp.CLASSES)
            )
        seeds = ", ".join(str(s) for s in sorted(entry["seeds"])) if key != "phasor_tuned" else "–"
        rows.append([f"{entry['label']} ({seeds})", *cells])
    # where does the best hybrid beat the best nnU-Net-style network?
    wins = []
    hybrids = [k for k in methods if k.startswith("hybrid")]
    nnunets = [k for k in methods if k.startswith("nnunet")]
    if hybrids and nnunets:

        def mean_over(k, inst):
            return float(np.mean([data[k]["instruments"][inst][c]["mean"] for c in cmp.CLASSES]))

        columns = [i.key for i in INSTRUMENTS if i.key != "canonical"]
        best_h = max(hybrids, key=lambda k: np.mean([mean_over(k, c) for c in columns]))
        best_n = max(nnunets, key=lambda k: np.mean([mean_over(k, c) for c in columns]))
        ahead = [
            i.label for i in INSTRUMENTS if i.key != "canonical" and mean_over(best_h, i.key) > mean_over(best_n, i.key)
        ]
        wins.append(
            f"**{methods[best_h]['label']}** is ahead of **{methods[best_n]['label']}** (mean of the two classes) on "
            f"{len(ahead)} of {len(columns)} changed-instrument columns"
            + (f": {', '.join(ahead)}." if ahead else ".")
            + " Target: ahead on most columns."
        )
    n = len(next(iter(stems.values())))
    notes = (
        f"Dice vs ground truth, mean over {n} stacks of 256² per column (seed-averaged per stack for networks with "
        "several training seeds); the networks are those the recipe study trained (its table gives their budget). "
        f"Stacks: default preset, `numpy.random.default_rng([{DATA_SEED}, column, i])`."
    )
    markdown = "\n\n".join([markdown_table(header, rows), notes, *wins])
    return SectionResult(markdown=markdown, data={"methods": data, "stems": stems})


def run(quick: bool = False, budget: float = 1.0) -> SectionResult:
    """Score the recipe study's networks on every instrument (the study must have run; see the docstring)."""
    plan = recipes.scaled(recipes.QUICK if quick else recipes.STUDY, budget)
    work = REPO / "outputs" / ("instruments_quick" if quick else "instruments")
    runs_work = REPO / "outputs" / ("recipes_quick" if quick else "recipes")
    result = measure(work, runs_work, plan, size=128 if quick else 256, per_instrument=1 if quick else 4)
    if len(result["methods"]) == 1:
        raise RuntimeError(
            f"no finished recipe-study run under {runs_work}/runs: run `python -m scripts.benchmark --sections "
            f"recipes{' --quick' if quick else ''}` first."
        )
    return report(result)
