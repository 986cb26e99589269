"""Benchmark section: recipe and encoder study -- the hybrid-UNet against nnU-Net trained nnU-Net's way.

Each *arm* is a network and a training recipe: configs merged after ``configs/train.yaml`` (a network
override from ``configs/baselines/``, a recipe from ``configs/recipes/``). Every arm trains on the
comparison section's data -- the same seeded 256² stacks of the easy, default and hard presets, the
training stacks pooled, the best epoch chosen on the pooled validation stacks -- with one budget
(:data:`STUDY`: 128² patches, ``epochs`` epochs of 12 iterations of 2 stacks x 4 patches, capped at
``time_limit_s`` of wall time), and is scored by ``configs/evaluate.yaml`` on the 18 test stacks.
The tuned optimized phasor labels the same test stacks.

The arms compare:

- **baselines**: the nnU-Net-style network with the bundle's recipe and with nnU-Net's own recipe
  (``configs/recipes/nnunet.yaml``: SGD with Nesterov momentum 0.99, poly decay, deep supervision,
  foreground oversampling, nnU-Net's augmentation, mirror test-time augmentation);
- **encoders**: the hybrid-UNet with the full 3D encoder (3x3x3 modules, instance normalisation; the
  shipped network up to 0.3.0) and with the fast encoder (``scripts.networks.FAST_ENCODER``: (2+1)D
  modules, batch normalisation, channels-last, stem spectral stride 8; shipped from 0.4.0), at the same budget;
- **recipe and normalisation of the fast encoder**: SGD with poly decay (``configs/recipes/sgd_poly.yaml``),
  instance or group instead of batch normalisation, and the instance-norm fast encoder trained with nnU-Net's whole recipe
  (``configs/recipes/nnunet.yaml``, with the hybrid's own deep-supervision heads), the same recipe as the baseline;
- **capacity**: the instance-norm fast encoder with twice the channels at every level, and at every level but the
  full-resolution one (where the time goes); the wide hybrid (``scripts.networks.WIDE_HYBRID``) is the wide arm with a
  stem that reads every frame;
- **calibration-shift augmentation**: the instance-norm hybrid and nnU-Net-style (nnU-Net's recipe) trained with
  spectral shifts up to ±20 cm⁻¹ (``configs/recipes/spectral_shift_20.yaml``), for the cross-instrument test
  (:mod:`scripts.benchmarks.instruments`);
- **ablations on the fast encoder with instance normalisation**: each of the paper's three modules switched off
  in turn (``configs/ablations/``), three seeds each;
- **the 3D-UNet at equal epochs**: on 48² patches (its own ``patch``), since at 128² its 32 epochs would take many
  hours on a CPU; the comparison section gives it equal wall time instead.

Runs live in ``outputs/recipes/runs/<arm>_gt_s<seed>/`` (the data and phasor labels in
``outputs/benchmark/``, shared with the comparison section) and are skipped when done with the same
plan, so an interrupted study resumes where it stopped: it is run in :data:`ORDER`, most informative
first. The report keeps every run's per-image scores in docs/results.json, and a later full run takes a run from
there when its folder is gone (a fresh clone) and its key -- plan, arm, seed and the digest of its training
configs -- is unchanged, so the study also accumulates across machines through the committed report.
``--budget B`` multiplies epochs and the time limit (e.g. on a GPU); ``--quick`` runs a tiny plan.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from scripts.benchmarks import SectionResult
from scripts.benchmarks import comparison as cmp
from scripts.benchmarks import markdown_table, mean_sd
from scripts.benchmarks.bundle_runs import REPO
from scripts.benchmarks.model_cost import (
    GROUP_FAST,
    INSTANCE_DEEP_WIDE,
    INSTANCE_DEEP_WIDE_S16,
    INSTANCE_DEEP_WIDE_S16_SLIM,
    INSTANCE_FAST,
    INSTANCE_FAST_ALL_FRAMES,
    INSTANCE_WIDE,
)

RESULTS_JSON = REPO / "docs" / "results.json"
TITLE = "Recipe and encoder study: hybrid-UNet vs nnU-Net-style trained with nnU-Net's recipe"
#: every arm is trained here (see :data:`scripts.benchmark.WEIGHTS_USED`)
WEIGHTS_USED = "own"

#: the study's plan: the comparison's data (same sizes and seeds, so its data are reused) at 128² patches
#: every arm gets the same epochs (the wall-time cap is a safety net, not a budget: on a shared machine a binding
#: cap would make the comparison depend on what else ran); the wall time each arm used is reported
STUDY = replace(cmp.FULL, patch=128, epochs=32, val_interval=4, time_limit_s=5400, seeds={}, models=())
QUICK = replace(cmp.QUICK, seeds={}, models=(), weak_supervision=False)

FAST = "configs/baselines/hybrid_fast_encoder.yaml"
FAST_INSTANCE = "configs/baselines/hybrid_fast_instance_norm.yaml"
#: the paper's three modules, each switched off in turn on the fast encoder (configs/ablations/)
ABLATIONS = ("no_multiscale", "mean_pooling", "plain_compression")
NNUNET = "configs/baselines/nnunet_2d.yaml"
NNUNET_RECIPE = "configs/recipes/nnunet.yaml"
#: model-cost rows (:mod:`scripts.benchmarks.model_cost`) of the arms' networks: latency in the table
NNUNET_COST = {"patch_size": (128, 128)}
#: calibration-shift augmentation up to ±20 cm⁻¹ (the cross-instrument test's largest shift) for both network families
SHIFT20 = "configs/recipes/spectral_shift_20.yaml"
ARMS = (
    cmp.Model("nnunet_2d", "nnU-Net-style 2D, bundle recipe (AdamW, cosine)", NNUNET, "nnunet2d", NNUNET_COST),
    cmp.Model(
        "nnunet_2d_recipe", "nnU-Net-style 2D, nnU-Net's recipe", (NNUNET, NNUNET_RECIPE), "nnunet2d", NNUNET_COST
    ),
    cmp.Model(
        "hybrid",
        "HybridUNet, full 3D encoder (instance norm), bundle recipe",
        "configs/baselines/hybrid_full_encoder.yaml",
        "hybrid",
    ),
    cmp.Model(
        "hybrid_fast", "HybridUNet, fast encoder, bundle recipe", FAST, "hybrid", {"__constant__": "FAST_ENCODER"}
    ),
    cmp.Model(
        "hybrid_fast_sgd",
        "HybridUNet, fast encoder, SGD + poly (nnU-Net's optimiser)",
        (FAST, "configs/recipes/sgd_poly.yaml"),
        "hybrid",
        {"__constant__": "FAST_ENCODER"},
    ),
    *(
        cmp.Model(
            f"hybrid_fast_{name}",
            f"HybridUNet, fast encoder (instance norm) − {what}, bundle recipe",
            (FAST_INSTANCE, f"configs/ablations/{name}.yaml"),
            "hybrid",
        )
        for name, what in zip(
            ABLATIONS,
            ("multi-scale residual (plain 3D blocks)", "attention pooling (mean)", "spectral compression (mean)"),
            strict=True,
        )
    ),
    cmp.Model(
        "hybrid_fast_instance",
        "HybridUNet, fast encoder with instance norm, bundle recipe",
        FAST_INSTANCE,
        "hybrid",
        INSTANCE_FAST,
    ),
    cmp.Model(
        "hybrid_fast_group_norm",
        "HybridUNet, fast encoder with group norm (4 groups), bundle recipe",
        "configs/baselines/hybrid_fast_group_norm.yaml",
        "hybrid",
        GROUP_FAST,
    ),
    cmp.Model(
        "hybrid_fast_instance_all_frames",
        "HybridUNet, fast encoder with instance norm, stem reading every frame (kernel 9, padding 1), bundle recipe",
        "configs/baselines/hybrid_fast_instance_all_frames.yaml",
        "hybrid",
        INSTANCE_FAST_ALL_FRAMES,
    ),
    cmp.Model(
        "hybrid_fast_instance_nnunet_recipe",
        "HybridUNet, fast encoder with instance norm, nnU-Net's recipe (deep supervision, SGD + poly, its augmentation,"
        " foreground oversampling, mirror TTA)",
        (FAST_INSTANCE, NNUNET_RECIPE),
        "hybrid",
        INSTANCE_FAST,
    ),
    cmp.Model(
        "hybrid_fast_instance_wide",
        "HybridUNet, fast encoder with instance norm, twice the channels, bundle recipe",
        "configs/baselines/hybrid_fast_instance_wide.yaml",
        "hybrid",
        INSTANCE_WIDE,
    ),
    cmp.Model(
        "hybrid_wide",
        "HybridUNet, the wide hybrid (instance norm, twice the channels, stem reading every frame), bundle recipe",
        "configs/baselines/hybrid_wide.yaml",
        "hybrid",
        {"__constant__": "WIDE_HYBRID"},
    ),
    cmp.Model(
        "hybrid_fast_instance_deep_wide",
        "HybridUNet, fast encoder with instance norm, twice the channels below full resolution, bundle recipe",
        "configs/baselines/hybrid_fast_instance_deep_wide.yaml",
        "hybrid",
        INSTANCE_DEEP_WIDE,
    ),
    cmp.Model(
        "hybrid_fast_instance_deep_wide_s16",
        "HybridUNet, fast encoder with instance norm, twice the channels below full resolution, stem spectral stride 16,"
        " bundle recipe",
        "configs/baselines/hybrid_fast_instance_deep_wide_s16.yaml",
        "hybrid",
        INSTANCE_DEEP_WIDE_S16,
    ),
    cmp.Model(
        "hybrid_fast_instance_deep_wide_s16_slim",
        "HybridUNet, fast encoder with instance norm, twice the channels below full resolution, stem spectral stride 16,"
        " 256-channel bottleneck, bundle recipe",
        "configs/baselines/hybrid_fast_instance_deep_wide_s16_slim.yaml",
        "hybrid",
        INSTANCE_DEEP_WIDE_S16_SLIM,
    ),
    cmp.Model(
        "hybrid_fast_instance_shift20",
        "HybridUNet, fast encoder with instance norm, bundle recipe, spectral shifts ±20 cm⁻¹",
        (FAST_INSTANCE, SHIFT20),
        "hybrid",
        INSTANCE_FAST,
    ),
    cmp.Model(
        "nnunet_2d_recipe_shift20",
        "nnU-Net-style 2D, nnU-Net's recipe, spectral shifts ±20 cm⁻¹",
        (NNUNET, NNUNET_RECIPE, SHIFT20),
        "nnunet2d",
        NNUNET_COST,
    ),
    cmp.Model(
        "unet3d_48",
        "3D-UNet (BasicUNet 3D), bundle recipe, 48² patches (the same epochs on smaller patches: 25× the hybrid's "
        "latency at 512², model-cost section)",
        "configs/baselines/unet3d.yaml",
        "unet3d",
        patch=48,
    ),
)
ARM_BY_KEY = {a.key: a for a in ARMS}
#: (arm, seed) in the order they are run: one seed of every arm first, then the seeds of the main arms
#: (the first seeds showed batch normalisation losing the hard preset's nuclei, 0.757 vs 0.889 with instance
#: normalisation: the instance-norm fast encoder became the main hybrid arm and the base of the ablations; the wide
#: variant's first seed then tied nnU-Net-style, 0.958 / 0.914, so its seeds and a cheaper capacity arm came next; the
#: wide variant with a stem that reads every frame was the candidate to ship, hence its three seeds next)
ORDER: tuple[tuple[str, int], ...] = (
    ("hybrid_fast", 0),
    ("nnunet_2d_recipe", 0),
    ("nnunet_2d", 0),
    ("hybrid_fast_instance", 0),
    ("hybrid_fast_instance_nnunet_recipe", 0),
    ("hybrid_fast_instance_wide", 0),
    ("hybrid_fast_instance", 1),
    ("nnunet_2d_recipe", 1),
    ("hybrid_fast_instance", 2),
    ("nnunet_2d_recipe", 2),
    ("hybrid_fast_instance_deep_wide", 0),
    ("hybrid_fast_instance_wide", 1),
    ("hybrid_wide", 0),
    ("hybrid_wide", 1),
    ("hybrid_wide", 2),
    ("hybrid_fast_instance_all_frames", 0),
    ("hybrid_fast_group_norm", 0),
    ("hybrid_fast_instance_all_frames", 1),
    ("hybrid_fast_instance_all_frames", 2),
    ("hybrid_fast_instance_wide", 2),
    ("hybrid_fast_instance_deep_wide_s16", 0),
    ("hybrid_fast_instance_deep_wide_s16_slim", 0),
    ("hybrid_fast_instance_deep_wide_s16", 1),
    ("hybrid_fast_instance_deep_wide_s16", 2),
    ("hybrid_fast_instance_deep_wide_s16_slim", 1),
    ("hybrid_fast_instance_deep_wide_s16_slim", 2),
    ("hybrid_fast_instance_shift20", 0),
    ("nnunet_2d_recipe_shift20", 0),
    ("hybrid", 0),
    ("hybrid_fast_sgd", 0),
    ("nnunet_2d", 1),
    ("nnunet_2d", 2),
    ("hybrid_fast", 1),
    ("hybrid_fast", 2),
    *((f"hybrid_fast_{name}", seed) for seed in (0, 1, 2) for name in ABLATIONS),
    ("hybrid", 1),
    ("hybrid", 2),
    ("unet3d_48", 0),
)
QUICK_ORDER: tuple[tuple[str, int], ...] = (("hybrid_fast", 0), ("nnunet_2d_recipe", 0))
#: arms whose seed-0 run is also scored with windows of its training patch instead of one window over the whole field:
#: instance norm takes each window's own statistics, so a network trained on patches could depend on the window size
WINDOW_ARMS = ("hybrid_fast", "hybrid_fast_instance", "hybrid_fast_instance_wide", "nnunet_2d_recipe")


def _resolved(arm: cmp.Model) -> cmp.Model:
    """``arm`` with a ``{"__constant__": NAME}`` cost entry replaced by that constant of :mod:`scripts.networks`.

    (Resolved late: importing the networks imports torch, which the benchmark's parent process avoids.)
    """
    name = arm.cost_kwargs.get("__constant__")
    if name is None:
        return arm
    import scripts.networks

    return replace(arm, cost_kwargs=dict(getattr(scripts.networks, name)))


def scaled(plan: cmp.Plan, budget: float) -> cmp.Plan:
    """``plan`` with its epochs and wall-time cap multiplied by ``budget`` (at least one epoch)."""
    if budget <= 0:
        raise ValueError(f"--budget must be positive, got {budget}.")
    return replace(plan, epochs=max(1, round(plan.epochs * budget)), time_limit_s=round(plan.time_limit_s * budget))


def measure(
    plan: cmp.Plan,
    order,
    data_work: Path,
    runs_work: Path,
    max_hours: float | None = None,
    windows: bool = True,
    recorded: dict | None = None,
) -> dict:
    """Train and score every (arm, seed) of ``order`` not done yet; returns records and per-image scores.

    With ``max_hours``, no new run starts after that much wall time (``0``: none starts); the report then covers the
    runs finished so far and lists the others. ``recorded``: the section's data from an earlier report (the
    ``recipes`` entry of docs/results.json); a run whose folder is gone (a fresh clone) but which that report holds
    for the same run key -- plan, arm, training config digest, seed -- is taken from it instead of being retrained.
    """
    t0 = time.perf_counter()
    data_work, runs_work = Path(data_work).resolve(), Path(runs_work).resolve()
    data = cmp.build_data(data_work / "data", plan)
    root, split = data_work / "data", data["split"]
    truth = {s: cmp.truth_path(root, data, s) for s in data["stems"]}
    tuned = cmp.run_phasor(data_work, data, "tuned", REPO / "configs" / "phasor_parameters.yaml")
    lists = {"training": split["training"], "validation": split["validation"], "test": split["test"]}
    datalist = cmp.write_datalist(
        runs_work / "datalist_gt.json", lists, lambda s: cmp.image_path(root, data, s), truth.get
    )
    test = split["test"]
    references = {
        "gt": {s: cmp.read_labels(truth[s]) for s in test},
        "phasor": {s: cmp.read_labels(tuned[s]) for s in test},
    }
    arms: dict = {}
    skipped = []
    for key, seed in order:
        arm = ARM_BY_KEY[key]
        entry = arms.setdefault(key, {"label": arm.label, "configs": cmp.override_files(arm), "seeds": {}, "runs": {}})
        finished = cmp.finished_run(runs_work, plan, arm, "gt", seed, "test")
        if finished is None and (earlier := recorded_run(recorded, plan, arm, seed, test)) is not None:
            print(f"[recipes] {key} seed {seed}: taken from docs/results.json (its run folder is gone)", flush=True)
            entry["runs"][seed], entry["seeds"][seed] = earlier
            continue
        over = max_hours is not None and (time.perf_counter() - t0) / 3600 >= max_hours
        if over and finished is None:
            skipped.append([key, seed])  # finished runs are still reported: --max_hours 0 renders the runs done
            continue
        record = cmp.train_and_evaluate(runs_work, plan, arm, "gt", seed, datalist, "test")
        maps = cmp.label_maps(cmp.run_dir(runs_work, arm, "gt", seed) / "eval" / "overlays")
        entry["seeds"][seed] = cmp.score_method(maps, test, references)
        entry["runs"][seed] = record
    phasor = {"label": cmp.PHASOR_METHODS["phasor_tuned"], "seeds": {0: cmp.score_method(tuned, test, references)}}
    return {
        "data": data,
        "arms": {k: v for k, v in arms.items() if v["seeds"]},
        "phasor": phasor,
        "skipped": skipped,
        "windows": (
            patch_windows(plan, runs_work, datalist, arms, test, references, (recorded or {}).get("windows", {}))
            if windows
            else {}
        ),
        "wall_s": time.perf_counter() - t0,
    }


def patch_windows(
    plan: cmp.Plan,
    runs_work: Path,
    datalist: Path,
    arms: dict,
    test: list[str],
    references,
    recorded: dict | None = None,
) -> dict:
    """Test Dice of the finished seed-0 runs of :data:`WINDOW_ARMS` scored with sliding windows of their training
    patch (``eval_roi<patch>/`` of the run, once), next to the study's score (one window over the whole field).
    A run taken from an earlier report (no checkpoint here) keeps that report's entry in ``recorded``, if any."""
    out = {}
    for key in WINDOW_ARMS:
        if 0 not in arms.get(key, {}).get("seeds", {}):
            continue
        arm = ARM_BY_KEY[key]
        folder, roi = cmp.run_dir(runs_work, arm, "gt", 0), arm.patch or plan.patch
        if roi >= plan.size:
            continue
        if not (folder / "models").is_dir():
            if key in (recorded or {}):
                out[key] = recorded[key]
            continue
        eval_dir = folder / f"eval_roi{roi}"
        if not (eval_dir / "metrics.csv").is_file():  # written last by evaluate.yaml
            print(f"[recipes] scoring {folder.name} with {roi}² windows ...", flush=True)
            args = cmp.evaluate_args(arm, eval_dir, folder / "models", datalist, roi, "test", seed=0)
            cmp.bundle_run(args, log_file=folder / f"evaluate_roi{roi}.log")
        scores = cmp.score_method(cmp.label_maps(eval_dir / "overlays"), test, references)
        out[key] = {
            "roi": roi,
            "windows": {c: mean_sd(scores[s]["gt"][c]["dice"] for s in test) for c in cmp.CLASSES},
            "field": {c: mean_sd(arms[key]["seeds"][0][s]["gt"][c]["dice"] for s in test) for c in cmp.CLASSES},
        }
    return out


def recorded_run(recorded: dict | None, plan: cmp.Plan, arm: cmp.Model, seed: int, test: list[str]):
    """``(record, per-image scores)`` of run ``(arm, seed)`` in an earlier report of this section, if it was made for
    the same run key and scored every stem of ``test``; else None."""
    entry = (recorded or {}).get("arms", {}).get(arm.key, {})
    record, scores = entry.get("runs", {}).get(str(seed)), entry.get("scores", {}).get(str(seed))
    if not record or not scores or set(test) - set(scores):
        return None
    if record.get("plan") != json.loads(json.dumps(cmp._run_key(plan, arm, "gt", seed, "test"))):
        return None
    return record, {stem: scores[stem] for stem in test}


def _windows_text(windows: dict, arms: dict, plan: cmp.Plan) -> str:
    """The window-size table and what it says."""
    rows = []
    for key, w in windows.items():
        rows.append(
            [
                arms[key]["label"],
                *(f"{w['field'][c]['mean']:.3f}" for c in cmp.CLASSES),
                f"{w['roi']}²",
                *(f"{w['windows'][c]['mean']:.3f}" for c in cmp.CLASSES),
                " / ".join(f"{w['windows'][c]['mean'] - w['field'][c]['mean']:+.3f}" for c in cmp.CLASSES),
            ]
        )
    header = [
        "arm (seed 0)",
        f"one {plan.size}² window: Dice nucleus",
        "lipid droplet",
        "windows of the training patch",
        "Dice nucleus",
        "lipid droplet",
        "change (nucleus / LD)",
    ]
    return (
        "**Normalisation statistics: training patches vs inference windows.** Instance norm normalises each window "
        "by its own statistics, so a network trained on patches might want windows of the patch size at inference. "
        "The same trained runs scored both ways (`configs/evaluate.yaml` with `--val_roi_size`, Gaussian-weighted "
        "sliding windows with overlap 0.25):\n\n"
        + markdown_table(header, rows)
        + "\n\n"
        + _windows_verdict(windows, arms)
    )


def _windows_verdict(windows: dict, arms: dict, tolerance: float = 0.005) -> str:
    """Which arms gain or lose more than ``tolerance`` Dice on a class with patch-sized windows."""

    def moved(sign: int) -> list[str]:
        return [
            arms[key]["label"]
            for key, w in windows.items()
            if any(sign * (w["windows"][c]["mean"] - w["field"][c]["mean"]) > tolerance for c in cmp.CLASSES)
        ]

    gain, loss = moved(+1), moved(-1)
    return (
        f"Windows of the training patch raise the Dice by more than {tolerance} on a class for "
        f"{', '.join(gain) or 'no arm'}, and lower it for {', '.join(loss) or 'no arm'}: "
        + (
            "no arm needs patch-sized windows at inference; larger windows are as good or better."
            if not gain
            else "those arms should be run with windows of their training patch."
        )
    )


def _pooled(entry: dict, stems: list[str]) -> dict:
    """Mean ± sd over ``stems`` of the seed-averaged Dice vs ground truth, per class."""
    averaged = cmp.seed_average(list(entry["seeds"].values()))
    return {c: mean_sd(averaged[s]["gt"][c]["dice"] for s in stems) for c in cmp.CLASSES}


def _seed_means(entry: dict, stems: list[str]) -> dict[str, list[float]]:
    """Per class, the mean test Dice of each training seed."""
    return {
        c: [mean_sd(sc[s]["gt"][c]["dice"] for s in stems)["mean"] for sc in entry["seeds"].values()]
        for c in cmp.CLASSES
    }


def compare(a: dict, b: dict, stems: list[str]) -> dict[str, str]:
    """Per class, whether arm ``a`` is ahead of, tied with or behind arm ``b`` (a tie: within the larger seed sd)."""
    ma, mb = _seed_means(a, stems), _seed_means(b, stems)
    out = {}
    for c in cmp.CLASSES:
        diff = float(np.mean(ma[c]) - np.mean(mb[c]))
        sds = [float(np.std(v)) for v in (ma[c], mb[c]) if len(v) > 1]
        tol = max(sds) if sds else math.nan
        if math.isnan(tol):
            verdict = "ahead" if diff > 0 else "behind"
            verdict += " (one seed: no sd to call a tie)"
        else:
            verdict = "tie" if abs(diff) <= tol else "ahead" if diff > 0 else "behind"
        out[c] = f"{verdict} ({diff:+.3f})" if math.isnan(tol) else f"{verdict} ({diff:+.3f}, seed sd {tol:.3f})"
    return out


def _latency_verdict(hybrid: dict, nnunet: dict) -> str:
    """The best hybrid arm's forward-pass latency as a multiple of the nnU-Net-style network's (target ≤ 1.0×)."""
    ratios = [
        f"{hybrid[k] / nnunet[k]:.2f}× in {name}"
        for k, name in (("latency_s", "PyTorch"), ("onnx_latency_s", "ONNX Runtime"))
        if hybrid.get(k) and nnunet.get(k)
    ]
    if not ratios:
        return ""
    return (
        f" Its forward pass, as a multiple of the nnU-Net-style network's: {', '.join(ratios)} (target ≤ 1.0×; "
        "model-cost section)."
    )


def _latency_cell(cost: dict) -> str:
    """PyTorch / ONNX Runtime latency of a model-cost row ("–" where not measured)."""
    if not cost.get("latency_s"):
        return "–"
    onnx = f"{cost['onnx_latency_s']:.2f}" if cost.get("onnx_latency_s") else "–"
    return f"{cost['latency_s']:.2f} / {onnx}"


def report(result: dict, plan: cmp.Plan, budget: float) -> SectionResult:
    data, arms, phasor = result["data"], result["arms"], result["phasor"]
    test = data["split"]["test"]
    by_preset = {p: [s for s in test if data["stems"][s]["preset"] == p] for p in cmp.PRESETS}
    costs = cmp.model_costs()
    rows, per_preset_rows, json_arms = [], [], {}
    for key, entry in [*arms.items(), ("phasor_tuned", phasor)]:
        pooled = _pooled(entry, test)
        seeds = _seed_means(entry, test)
        runs = entry.get("runs", {})
        presets = [_pooled(entry, by_preset[p]) for p in cmp.PRESETS]
        per_preset_rows.append([entry["label"], *[cmp._cell(pr[c]) for pr in presets for c in cmp.CLASSES]])
        if runs:
            recs = list(runs.values())
            sd = " / ".join(f"{np.std(seeds[c]):.3f}" for c in cmp.CLASSES) if len(recs) > 1 else "–"
            epochs = (
                f"{min(r['epochs_done'] for r in recs)}{'*' if any(r['stopped_by_time_limit'] for r in recs) else ''}"
            )
            best = ", ".join(
                f"{r['best_val_mean_dice']:.3f} ({r['best_epoch']})" for r in recs if r["best_val_mean_dice"]
            )
            cost = cmp.cost_of(_resolved(ARM_BY_KEY[key]), costs)
            configs = ", ".join(f"`{c}`" for c in entry["configs"]) or "`configs/train.yaml` only"
            rows.append(
                [
                    entry["label"],
                    configs,
                    ", ".join(str(s) for s in runs),
                    epochs,
                    f"{np.mean([r['train_wall_s'] for r in recs]) / 60:.1f}",
                    best,
                    cmp._cell(pooled["nucleus"]),
                    cmp._cell(pooled["lipid_droplet"]),
                    sd,
                    _latency_cell(cost),
                ]
            )
        else:
            rows.append(
                [
                    entry["label"],
                    "`configs/phasor.yaml`",
                    "–",
                    "–",
                    "–",
                    "–",
                    cmp._cell(pooled["nucleus"]),
                    cmp._cell(pooled["lipid_droplet"]),
                    "–",
                    "see phasor section",
                ]
            )
        json_arms[key] = {
            "label": entry["label"],
            "configs": entry.get("configs", ["configs/phasor.yaml"]),
            "pooled": pooled,
            "per_preset": dict(zip(cmp.PRESETS, presets, strict=True)),
            "seed_means": seeds,
            "runs": runs,
            # per-image scores of every run: a later report takes the run from here when its folder is gone
            **({"scores": {seed: {s: sc[s] for s in test} for seed, sc in entry["seeds"].items()}} if runs else {}),
        }
    header = [
        "arm",
        "configs after `configs/train.yaml`",
        "seeds",
        f"epochs (of {plan.epochs})",
        "training wall (min, mean)",
        "best validation mean Dice (epoch), per seed",
        "Dice nucleus",
        "Dice lipid droplet",
        "seed sd of the mean (nucleus / LD)",
        "latency 512²×64 (s): PyTorch / ONNX Runtime",
    ]
    preset_header = ["arm"] + [f"{p}: {cmp.CLASS_NAMES[c]}" for p in cmp.PRESETS for c in cmp.CLASSES]

    verdicts = []
    hybrids = [k for k in arms if k.startswith("hybrid")]
    nnunets = [k for k in arms if k.startswith("nnunet")]
    if hybrids and nnunets:

        def pooled_mean(k):
            return float(np.mean([_pooled(arms[k], test)[c]["mean"] for c in cmp.CLASSES]))

        best_h, best_n = max(hybrids, key=pooled_mean), max(nnunets, key=pooled_mean)
        vs_n = compare(arms[best_h], arms[best_n], test)
        vs_p = compare(arms[best_h], phasor, test)
        verdicts.append(
            f"Best hybrid arm (by pooled mean Dice): **{arms[best_h]['label']}**; best nnU-Net-style arm: "
            f"**{arms[best_n]['label']}**. Hybrid vs nnU-Net-style: nucleus {vs_n['nucleus']}, lipid droplet "
            f"{vs_n['lipid_droplet']}. Hybrid vs tuned phasor: nucleus {vs_p['nucleus']}, lipid droplet "
            f"{vs_p['lipid_droplet']}. Target: hybrid ≥ nnU-Net-style on both classes (a difference within the "
            "seed sd is a tie) and ahead of the tuned phasor on both."
            + _latency_verdict(
                cmp.cost_of(_resolved(ARM_BY_KEY[best_h]), costs), cmp.cost_of(_resolved(ARM_BY_KEY[best_n]), costs)
            )
        )
    if result["skipped"]:
        verdicts.append(
            "Not run yet (`--max_hours` reached; the study resumes with `--sections recipes`): "
            + ", ".join(f"{k} seed {s}" for k, s in result["skipped"])
            + "."
        )
    notes = (
        f"**Plan.** Data of the comparison section ({plan.size}² × 64 stacks; per preset {plan.per_preset[0]} "
        f"training, {plan.per_preset[1]} validation, {plan.per_preset[2]} test; presets easy, default, hard pooled "
        f"for training). Budget per run (`--budget {budget:g}`): {plan.epochs} epochs of 12 iterations (2 stacks × 4 "
        f"patches of {plan.patch}²×64), validation every {plan.val_interval} epochs; equal epochs for every arm, "
        f"and the wall time each used (a cap of {plan.time_limit_s / 60:.0f} min is only a safety net; `*` marks "
        "a run it stopped). The machine was shared with other jobs, so wall times are upper bounds; the model-cost "
        "section has clean speed figures. Dice: mean ± sd over "
        f"the {len(test)} test stacks of each stack's score averaged over the seeds; seed sd: sd over seeds of the "
        "mean test Dice. Latency: the model-cost section's row of the arm's network (nnU-Net-style: planned for 128², as trained; "
        "deep-supervision heads are not run at inference; ONNX Runtime is the CPU default backend)."
    )
    markdown = "\n\n".join(
        [
            markdown_table(header, rows),
            "Per preset (Dice vs ground truth):",
            markdown_table(preset_header, per_preset_rows),
            notes,
            *verdicts,
            *([_windows_text(result["windows"], arms, plan)] if result.get("windows") else []),
        ]
    )
    return SectionResult(
        markdown=markdown,
        data={
            "plan": asdict(plan),
            "budget": budget,
            "arms": json_arms,
            "skipped": result["skipped"],
            "windows": result.get("windows", {}),
            "wall_s": result["wall_s"],
        },
    )


def run(quick: bool = False, budget: float = 1.0, max_hours: float | None = None) -> SectionResult:
    """Run (or resume) the study and write its tables; see the module docstring."""
    plan = scaled(QUICK if quick else STUDY, budget)
    data_work = REPO / "outputs" / ("benchmark_quick" if quick else "benchmark")
    runs_work = REPO / "outputs" / ("recipes_quick" if quick else "recipes")
    runs_work.mkdir(parents=True, exist_ok=True)
    # --quick leaves out the window-size re-scoring (a smoke run; tests/test_recipe_study.py covers it); a full run
    # takes the runs docs/results.json records (same run key) when their folders are gone, e.g. in a fresh clone
    recorded = None
    if not quick and RESULTS_JSON.is_file():
        recorded = json.loads(RESULTS_JSON.read_text()).get("recipes")
    result = measure(
        plan, QUICK_ORDER if quick else ORDER, data_work, runs_work, max_hours, windows=not quick, recorded=recorded
    )
    return report(result, plan, budget)
