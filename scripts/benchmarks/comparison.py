"""Benchmark section: hybrid-UNet vs its ablations vs nnU-Net-style vs 3D-UNet vs the optimized phasor.

What it does, all through the bundle's own configs (``python -m monai.bundle run`` in fresh processes):

1. **Data.** Per difficulty preset a fixed, seeded simulated set (``scripts.simulate``, seed
   :data:`DATA_SEED`; fields of ``Plan.size``² × 64 frames) split by index into training,
   validation and test stacks; the training and validation stacks of all presets are pooled for
   training, the test stacks are scored per preset. A robustness sweep adds default-preset stacks
   whose SNR, or non-Raman background level, is pinned to one value each.
2. **Phasor.** ``configs/phasor.yaml`` labels every stack twice: with the tuned parameters
   (``configs/phasor_parameters.yaml``) and with the untuned class defaults. The tuned labels are
   both a baseline and the pseudo-labels for weak supervision and for the "vs phasor labels" protocol.
3. **Networks.** Every network is trained by ``configs/train.yaml`` (+ its override in
   ``configs/baselines/``) with the same budget: ``Plan.epochs`` epochs of the same patches, capped
   at ``Plan.time_limit_s`` of wall time (``time_limit_s``: the run stops after the last epoch that
   fits, validated), once on ground truth and once on the tuned-phasor pseudo-labels (validated on
   pseudo-labels too: a user without annotations has no other). The best checkpoint by validation
   Dice is scored by ``configs/evaluate.yaml`` on the test stacks (and the sweep).
4. **Scoring.** Every method's label maps are scored with :func:`scripts.engine.metrics.segmentation_scores`
   (the MONAI definitions ``evaluate.yaml`` uses; the two are compared and the largest difference
   reported) against the ground truth and against the tuned-phasor labels.

Runs are kept under ``outputs/benchmark[_quick]/`` and skipped when already done with the same plan,
so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scripts.benchmarks import SectionResult, markdown_table, mean_sd
from scripts.benchmarks.bundle_runs import REPO, bundle_run, config_files
from scripts.io.atomic import atomic_path

TITLE = "Segmentation accuracy: hybrid-UNet vs ablations vs nnU-Net-style vs 3D-UNet vs optimized phasor"
#: every network is trained here, on the section's own data (see :data:`scripts.benchmark.WEIGHTS_USED`)
WEIGHTS_USED = "own"

PRESETS = ("easy", "default", "hard")
CLASSES = ("nucleus", "lipid_droplet")
CLASS_NAMES = {"nucleus": "nucleus", "lipid_droplet": "lipid droplet"}
#: seed of the benchmark data (the shipped weights were trained on seed 2025, the phasor fitted on seed 0)
DATA_SEED = 2026
SWEEP_SEED = 2027


@dataclass(frozen=True)
class Model:
    key: str
    label: str
    override: str | tuple[str, ...] | None  #: config(s) merged after configs/train.yaml, in order
    cost_kind: str  #: model_cost section's network kind and keyword arguments (for parameters, latency, memory)
    cost_kwargs: dict = field(default_factory=dict)
    patch: int | None = None  #: training patch side for this network, if not the plan's (a network too slow for it)


MODELS = (
    # the full 3D encoder and its ablations (configs/baselines/hybrid_*.yaml); the fast encoder: the recipes section
    Model("hybrid", "HybridUNet (full 3D encoder)", "configs/baselines/hybrid_full_encoder.yaml", "hybrid"),
    Model(
        "hybrid_no_multiscale",
        "HybridUNet − multi-scale residual (plain 3D blocks)",
        "configs/baselines/hybrid_no_multiscale.yaml",
        "hybrid",
        {"multiscale_residual": False},
    ),
    Model(
        "hybrid_mean_pooling",
        "HybridUNet − attention pooling (mean)",
        "configs/baselines/hybrid_mean_pooling.yaml",
        "hybrid",
        {"attention_pooling": False},
    ),
    Model(
        "hybrid_plain_compression",
        "HybridUNet − spectral compression (mean)",
        "configs/baselines/hybrid_plain_compression.yaml",
        "hybrid",
        {"spectral_compression": False},
    ),
    Model(
        "nnunet_2d",
        "nnU-Net-style 2D (DynUNet)",
        "configs/baselines/nnunet_2d.yaml",
        "nnunet2d",
        {"patch_size": (128, 128)},  # as configs/baselines/nnunet_2d.yaml plans it
    ),
    Model("unet3d", "3D-UNet (BasicUNet 3D)", "configs/baselines/unet3d.yaml", "unet3d"),
)
MODEL_BY_KEY = {m.key: m for m in MODELS}
PHASOR_METHODS = {"phasor_tuned": "optimized phasor, tuned", "phasor_untuned": "phasor, untuned (class defaults)"}
SUPERVISION = {"gt": "ground truth", "phasor": "phasor pseudo-labels"}


@dataclass(frozen=True)
class Plan:
    """The size of a benchmark run; :data:`FULL` and :data:`QUICK` are the two the CLI offers."""

    size: int  #: field height = width (pixels)
    per_preset: tuple[int, int, int]  #: training, validation, test stacks per preset
    epochs: int
    val_interval: int
    patch: int  #: training patch side (pixels)
    time_limit_s: int  #: wall-time cap per training run
    seeds: dict  #: model key -> training seeds on ground truth (other models and pseudo-labels: seed 0)
    snr_levels: tuple[float, ...]
    background_levels: tuple[float, ...]
    sweep_repeats: int  #: stacks per sweep level
    models: tuple[str, ...] = tuple(m.key for m in MODELS)
    weak_supervision: bool = True


FULL = Plan(
    size=256,
    per_preset=(8, 2, 6),
    epochs=32,
    val_interval=4,
    patch=64,
    time_limit_s=480,
    seeds={"hybrid": (0, 1, 2), "nnunet_2d": (0, 1, 2)},
    snr_levels=(3.0, 5.0, 8.0, 13.0, 20.0, 35.0),
    background_levels=(0.05, 0.2, 0.4, 0.8, 1.2),
    sweep_repeats=2,
)
QUICK = Plan(
    size=128,
    per_preset=(2, 1, 1),
    epochs=1,
    val_interval=1,
    patch=64,
    time_limit_s=120,
    seeds={},
    snr_levels=(5.0, 25.0),
    background_levels=(0.1, 0.8),
    sweep_repeats=1,
    weak_supervision=False,  # a smoke run within 10 min; tests/test_benchmark.py runs the pseudo-label path
    # one ablation stands for the three in the smoke run (the same code path with another switch)
    models=("hybrid", "hybrid_no_multiscale", "nnunet_2d", "unet3d"),
)


# ---------------------------------------------------------------------------------------------- data


#: Link from the model card to the comparison section of results.md.
RESULTS_ANCHOR = (
    "results.md#segmentation-accuracy-hybrid-unet-vs-ablations-vs-nnu-net-style-vs-3d-unet-vs-optimized-phasor"
)


def _write_json(path: Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")


def _done(path: Path, plan_key: dict):
    """The record in ``path`` if it was written for the same plan, else None."""
    if path.is_file():
        record = json.loads(path.read_text())
        if record.get("plan") == json.loads(json.dumps(plan_key)):  # as stored: tuples become lists
            return record
    return None


def sweep_phantoms(plan: Plan) -> list[tuple[str, str, float, object]]:
    """(stem, varied parameter, level, Phantom) of the robustness sweep: default preset, one parameter pinned."""
    from scripts.simulation.phantom import PRESETS as SIM_PRESETS
    from scripts.simulation.phantom import simulate_phantom

    base = SIM_PRESETS["default"]
    out = []
    for name, levels in (("snr", plan.snr_levels), ("background", plan.background_levels)):
        for j, level in enumerate(levels):
            preset = replace(base, **{name: (level, level)})
            for i in range(plan.sweep_repeats):
                rng = np.random.default_rng([SWEEP_SEED, 0 if name == "snr" else 1, j, i])
                stem = f"sweep_{name}{level:g}_{i}"
                out.append((stem, name, level, simulate_phantom(rng, plan.size, plan.size, preset=preset)))
    return out


def build_data(root: Path, plan: Plan) -> dict:
    """Simulate the benchmark data under ``root`` (once per plan); returns the data record."""
    from scripts.io.writer import write_label_map, write_stack
    from scripts.simulation.dataset import simulate_dataset

    key = {
        "size": plan.size,
        "per_preset": list(plan.per_preset),
        "seed": DATA_SEED,
        "snr": list(plan.snr_levels),
        "background": list(plan.background_levels),
        "repeats": plan.sweep_repeats,
    }
    if record := _done(root / "data.json", key):
        return record
    shutil.rmtree(root, ignore_errors=True)
    n_train, n_val, n_test = plan.per_preset
    split: dict[str, list] = {"training": [], "validation": [], "test": [], "sweep": []}
    stems: dict[str, dict] = {}
    for preset in PRESETS:
        simulate_dataset(root / preset, n_train + n_val + n_test, DATA_SEED, plan.size, plan.size, preset=preset)
        params = json.loads((root / preset / "simulation.json").read_text())["phantoms"]
        for i, stem in enumerate(sorted(params)):
            part = "training" if i < n_train else "validation" if i < n_train + n_val else "test"
            split[part].append(stem)
            stems[stem] = {"preset": preset, "folder": preset, "part": part, **params[stem]}
    images, labels = root / "sweep" / "images", root / "sweep" / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for stem, name, level, ph in sweep_phantoms(plan):
        write_stack(images / f"{stem}.nii.gz", ph.stack, ph.wavenumbers, 0.25)
        write_label_map(labels / stem, ph.labels, formats=("nii.gz",), pixel_size_um=0.25)
        split["sweep"].append(stem)
        stems[stem] = {
            "preset": "default",
            "folder": "sweep",
            "part": "sweep",
            "varied": name,
            "level": level,
            **ph.params,
        }
    record = {"plan": key, "split": split, "stems": stems}
    _write_json(root / "data.json", record)
    return record


def image_path(root: Path, data: dict, stem: str) -> Path:
    return root / data["stems"][stem]["folder"] / "images" / f"{stem}.nii.gz"


def truth_path(root: Path, data: dict, stem: str) -> Path:
    return root / data["stems"][stem]["folder"] / "labels" / f"{stem}.nii.gz"


def write_datalist(path: Path, lists: dict[str, list[str]], image, label) -> Path:
    """A MONAI datalist with absolute paths: ``{list name: [{image, label}]}``."""
    _write_json(path, {k: [{"image": str(image(s)), "label": str(label(s))} for s in v] for k, v in lists.items()})
    return path


# ---------------------------------------------------------------------------------------------- runs


def run_phasor(work: Path, data: dict, name: str, parameters_file: Path) -> dict[str, Path]:
    """Label every stack with configs/phasor.yaml; returns {stem: label map}."""
    out = {}
    for folder in (*PRESETS, "sweep"):
        target = work / "phasor" / name / folder
        if not _done(target / "done.json", data["plan"]):
            shutil.rmtree(target, ignore_errors=True)
            bundle_run(
                [
                    "--config_file",
                    "configs/phasor.yaml",
                    "--dataset_dir",
                    str(work / "data" / folder / "images"),
                    "--output_dir",
                    str(target),
                    "--parameters_file",
                    str(parameters_file),
                    "--plots",
                    "false",
                    "--label_formats",
                    "['nii.gz']",
                ],
                log_file=target.parent / f"{folder}.log",
            )
            _write_json(target / "done.json", {"plan": data["plan"]})
        out.update(label_maps(target / "labels"))
    return out


def label_maps(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of the NIfTI label maps in ``folder``."""
    return {p.name[: -len(".nii.gz")]: p for p in folder.glob("*.nii.gz")}


def override_files(model: Model) -> tuple[str, ...]:
    """The configs merged after configs/train.yaml for ``model`` (none, one or several)."""
    if model.override is None:
        return ()
    return (model.override,) if isinstance(model.override, str) else tuple(model.override)


def run_dir(work: Path, model: Model, supervision: str, seed: int) -> Path:
    """Folder of one training run (train/, models/, eval/, logs, done.json)."""
    return work / "runs" / f"{model.key}_{supervision}_s{seed}"


def _epochs_done(log: str) -> int:
    found = re.findall(r"Epoch\[(\d+)\] Complete", log)
    return max(map(int, found)) if found else 0


def train_and_evaluate(
    work: Path, plan: Plan, model: Model, supervision: str, seed: int, datalist: Path, eval_split: str
) -> dict:
    """Train one network with configs/train.yaml and score it with configs/evaluate.yaml (once per plan)."""
    folder = run_dir(work, model, supervision, seed)
    key = _run_key(plan, model, supervision, seed, eval_split)
    if record := _done(folder / "done.json", key):
        return record
    attempts = _attempts(folder, key)
    train_args = [
        "--config_file",
        config_files("configs/train.yaml", *override_files(model)),
        "--output_dir",
        str(folder / "train"),
        "--max_epochs",
        str(plan.epochs),
        "--val_interval",
        str(plan.val_interval),
        "--patch_size",
        f"[{model.patch or plan.patch},{model.patch or plan.patch}]",
        "--time_limit_s",
        str(plan.time_limit_s),
        "--datalist_file",
        str(datalist),
        "--ckpt_dir",
        str(folder / "models"),
        "--seed",
        str(seed),
        "--val_roi_size",
        f"[{plan.size},{plan.size}]",
    ]
    print(f"[comparison] training {folder.name}{' (resumed)' if len(attempts) > 1 else ''} ...", flush=True)
    wall, peak, log = bundle_run(train_args, log_file=folder / "train.log")
    wall += sum(a["end"] - a["start"] for a in attempts[:-1])  # the interrupted attempts' work
    best = re.findall(r"Key metric: val_mean_dice best value: ([\d.]+) at epoch: (\d+)", log)
    eval_args = evaluate_args(model, folder / "eval", folder / "models", datalist, plan.size, eval_split, seed)
    eval_wall, _, _ = bundle_run(eval_args, log_file=folder / "evaluate.log")
    record = {
        "parameters": checkpoint_parameters(folder / "models"),
        "plan": key,
        "train_wall_s": wall,
        "attempts": len(attempts),
        "train_peak_rss_mib": peak,
        "epochs_done": _epochs_done(log),
        "stopped_by_time_limit": "time limit: stopping" in log,
        "best_val_mean_dice": float(best[-1][0]) if best else None,
        "best_epoch": int(best[-1][1]) if best else None,
        "eval_wall_s": eval_wall,
    }
    _write_json(folder / "done.json", record)
    return record


def _run_key(plan: Plan, model: Model, supervision: str, seed: int, eval_split: str) -> dict:
    return {
        "plan": asdict(plan),
        "model": model.key,
        "config": training_config_digest(model),
        "supervision": supervision,
        "seed": seed,
        "split": eval_split,
    }


def training_config_digest(model: Model) -> str:
    """First 12 hex digits of the SHA-1 of the training config ``model`` runs with: ``configs/train.yaml`` with its
    overrides' top-level keys laid over it in order, comments and layout aside. (``monai.bundle`` would also resolve
    an override's ``a#b`` ids into ``a``; here they stay keys of their own, which changes with the same content, and
    keeps torch out of the benchmark's parent process.)

    Part of every run's key, so a run is redone when its network, recipe or train.yaml's content changed, and kept
    when only a comment did. (Code changes are not covered: rerun by deleting the run's folder.)
    """
    import yaml

    merged: dict = {}
    for name in ("configs/train.yaml", *override_files(model)):
        merged.update(yaml.safe_load((REPO / name).read_text()) or {})
    return hashlib.sha1(json.dumps(merged, sort_keys=True, default=str).encode()).hexdigest()[:12]


def evaluate_args(
    model: Model,
    out: Path,
    checkpoint_dir: Path,
    datalist: Path,
    roi: int,
    eval_split: str = "test",
    seed: int | None = None,
) -> list[str]:
    """``monai.bundle run`` arguments that label the ``eval_split`` stacks of ``datalist`` with the weights in
    ``checkpoint_dir`` through configs/evaluate.yaml (sliding windows of ``roi``²): NIfTI label maps in
    ``out/overlays``, the metrics in ``out``."""
    return [
        "--config_file",
        config_files("configs/train.yaml", *override_files(model), "configs/evaluate.yaml"),
        "--output_dir",
        str(out),
        "--eval_split",
        eval_split,
        "--label_formats",
        "['nii.gz']",
        "--overlays",
        "false",
        "--datalist_file",
        str(datalist),
        "--ckpt_dir",
        str(checkpoint_dir),
        "--val_roi_size",
        f"[{roi},{roi}]",
        *(["--seed", str(seed)] if seed is not None else []),
    ]


def finished_run(work: Path, plan: Plan, model: Model, supervision: str, seed: int, eval_split: str) -> dict | None:
    """The record of a run :func:`train_and_evaluate` finished for this plan, or None (not run, unfinished, other plan)."""
    return _done(
        run_dir(work, model, supervision, seed) / "done.json", _run_key(plan, model, supervision, seed, eval_split)
    )


def _attempts(folder: Path, key: dict) -> list[dict]:
    """Start (or resume) the run in ``folder``: its training attempts so far, the new one last.

    A run interrupted by a kill resumes from its last epoch checkpoint (``configs/train.yaml`` resumes
    from ``output_dir/checkpoints``) if it was started for the same plan; otherwise the folder is cleared.
    An interrupted attempt's work ends at its newest checkpoint, which is what the wall time counts.
    """
    started = folder / "started.json"
    previous = _done(started, key)
    if previous is None:
        shutil.rmtree(folder, ignore_errors=True)
        attempts = []
    else:
        attempts = previous["attempts"]
        checkpoints = list((folder / "train" / "checkpoints").glob("*"))
        # an attempt killed before its first checkpoint kept no work (its newest checkpoint is an older attempt's)
        attempts[-1]["end"] = max([attempts[-1]["start"], *(p.stat().st_mtime for p in checkpoints)])
    attempts.append({"start": time.time()})
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(started, {"plan": key, "attempts": attempts})
    return attempts


def checkpoint_parameters(folder: Path) -> int:
    """Number of trainable values in the best-model checkpoint (``state_dict``) saved in ``folder``."""
    import torch

    (path,) = sorted(folder.glob("*.pt"))
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    return int(sum(v.numel() for k, v in state.items() if v.is_floating_point() and "running_" not in k))


def evaluate_csv(work: Path, model: Model, supervision: str, seed: int) -> dict[str, dict[str, float]]:
    """Per-image Dice written by configs/evaluate.yaml (MetricsSaver): {stem: {class: dice}}."""
    from scripts.io.formats import stack_stem

    path = run_dir(work, model, supervision, seed) / "eval" / "val_mean_dice_raw.csv"
    out = {}
    with open(path) as f:
        for row in csv.DictReader(f):  # MetricsSaver's default delimiter
            out[stack_stem(Path(row["filename"]).name)] = {
                "nucleus": float(row["class0"]),
                "lipid_droplet": float(row["class1"]),
            }
    return out


# ---------------------------------------------------------------------------------------------- scoring


def read_labels(path: Path) -> np.ndarray:
    from scripts.io.reader import read_hsrs

    return read_hsrs(path)[0][0]


def score_method(maps: dict[str, Path], stems: list[str], references: dict[str, dict[str, np.ndarray]]) -> dict:
    """{stem: {"gt": {class: {dice, hd95}}, "phasor": {class: {dice, hd95}}}} for the given stems.

    ``references``: ``{"gt": {stem: truth}, "phasor": {stem: tuned-phasor labels}}``, read once by the caller.
    """
    from scripts.engine.metrics import segmentation_scores

    out = {}
    for stem in stems:
        if stem not in maps:
            raise FileNotFoundError(f"no label map for {stem} among the method's outputs ({len(maps)} maps).")
        pred = read_labels(maps[stem])
        out[stem] = {
            "gt": segmentation_scores(pred, references["gt"][stem]),
            "phasor": segmentation_scores(pred, references["phasor"][stem], hd95=False),
        }
    return out


def seed_average(per_seed: list[dict]) -> dict:
    """Per image: the mean over the seeds that scored it (the first seed may also cover the sweep), NaN-aware."""
    out: dict = {}
    for stem in per_seed[0]:
        scored = [s for s in per_seed if stem in s]
        out[stem] = {}
        for ref in per_seed[0][stem]:
            out[stem][ref] = {}
            for cls in CLASSES:
                out[stem][ref][cls] = {}
                for metric in per_seed[0][stem][ref][cls]:
                    vals = [s[stem][ref][cls][metric] for s in scored]
                    vals = [v for v in vals if not math.isnan(v)]
                    out[stem][ref][cls][metric] = float(np.mean(vals)) if vals else math.nan
    return out


def summarise(scores: dict, stems: list[str]) -> dict:
    """mean ± sd over ``stems`` for every reference, class and metric."""
    ref_metrics = {"gt": ("dice", "hd95"), "phasor": ("dice",)}
    return {
        ref: {cls: {m: mean_sd(scores[s][ref][cls][m] for s in stems) for m in metrics} for cls in CLASSES}
        for ref, metrics in ref_metrics.items()
    }


def model_costs() -> dict[tuple, dict]:
    """Parameters, latency and peak memory per 512×512×64 stack from the model_cost section's results."""
    path = REPO / "docs" / "results.json"
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text()).get("model_cost", {}).get("rows", [])
    out = {}
    import scripts.networks

    for r in rows:
        if list(r.get("size", [])) == [512, 512, 64]:
            kwargs = r["kwargs"]
            if isinstance(kwargs, str):  # the name of a constant of scripts.networks (FAST_ENCODER)
                kwargs = getattr(scripts.networks, kwargs)
            kwargs = {k: v for k, v in kwargs.items() if k != "in_channels"}  # the patch size is the plan: kept
            out[(r["kind"], json.dumps(kwargs, sort_keys=True))] = r
    return out


def cost_of(model: Model, costs: dict) -> dict:
    return costs.get((model.cost_kind, json.dumps(model.cost_kwargs, sort_keys=True)), {})


# ---------------------------------------------------------------------------------------------- main


def measure(plan: Plan, work: Path) -> dict:
    """Run everything (skipping what is done) and return per-method per-image scores and run records."""
    from scripts.phasor.parameters import PhasorParameters

    t0 = time.perf_counter()
    work = Path(work).resolve()  # the datalists hold absolute paths
    data = build_data(work / "data", plan)
    root = work / "data"
    split = data["split"]
    truth = {s: truth_path(root, data, s) for s in data["stems"]}
    untuned_file = work / "phasor_untuned.yaml"
    PhasorParameters().save(
        untuned_file, header="untuned: the class defaults of scripts.phasor.parameters.PhasorParameters"
    )
    phasor_maps = {
        "phasor_tuned": run_phasor(work, data, "tuned", REPO / "configs" / "phasor_parameters.yaml"),
        "phasor_untuned": run_phasor(work, data, "untuned", untuned_file),
    }
    tuned = phasor_maps["phasor_tuned"]
    lists = {
        "training": split["training"],
        "validation": split["validation"],
        "test": split["test"],
        "test_and_sweep": split["test"] + split["sweep"],
    }
    datalists = {
        "gt": write_datalist(work / "datalist_gt.json", lists, lambda s: image_path(root, data, s), truth.get),
        "phasor": write_datalist(work / "datalist_phasor.json", lists, lambda s: image_path(root, data, s), tuned.get),
    }
    eval_stems = split["test"] + split["sweep"]
    references = {
        "gt": {s: read_labels(truth[s]) for s in eval_stems},
        "phasor": {s: read_labels(tuned[s]) for s in eval_stems},
    }
    methods: dict = {}
    for name, maps in phasor_maps.items():
        methods[name] = {
            "label": PHASOR_METHODS[name],
            "kind": "phasor",
            "supervision": None,
            "seeds": {0: score_method(maps, eval_stems, references)},
            "runs": {},
        }
    for supervision in ("gt", "phasor") if plan.weak_supervision else ("gt",):
        for key in plan.models:
            model = MODEL_BY_KEY[key]
            seeds = plan.seeds.get(key, (0,)) if supervision == "gt" else (0,)
            entry = {
                "label": model.label,
                "kind": "network",
                "model": key,
                "supervision": supervision,
                "seeds": {},
                "runs": {},
                "evaluate_csv_max_diff": 0.0,
            }
            for seed in seeds:
                with_sweep = supervision == "gt" and seed == seeds[0]
                record = train_and_evaluate(
                    work,
                    plan,
                    model,
                    supervision,
                    seed,
                    datalists[supervision],
                    "test_and_sweep" if with_sweep else "test",
                )
                stems = eval_stems if with_sweep else split["test"]
                predicted = label_maps(run_dir(work, model, supervision, seed) / "eval" / "overlays")
                scores = score_method(predicted, stems, references)
                # evaluate.yaml scored against the training datalist's kind of labels (truth or pseudo-labels)
                for stem, by_class in evaluate_csv(work, model, supervision, seed).items():
                    for cls, value in by_class.items():
                        ours = scores[stem][supervision][cls]["dice"]
                        if not (math.isnan(ours) and math.isnan(value)):
                            diff = abs(ours - value) if not (math.isnan(ours) or math.isnan(value)) else math.inf
                            entry["evaluate_csv_max_diff"] = max(entry["evaluate_csv_max_diff"], diff)
                entry["seeds"][seed] = scores
                entry["runs"][seed] = record
            methods[f"{key}_{supervision}"] = entry
    return {"data": data, "methods": methods, "wall_s": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------- report


def _cell(s: dict, digits: int = 3) -> str:
    return "–" if s["n"] == 0 else f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"


def _method_scores(entry: dict) -> dict:
    return seed_average(list(entry["seeds"].values()))


def _seed_sd(entry: dict, stems: list[str]) -> dict[str, float]:
    """sd over training seeds of the mean Dice vs ground truth (NaN with one seed)."""
    if len(entry["seeds"]) < 2:
        return {cls: math.nan for cls in CLASSES}
    return {
        cls: float(np.std([mean_sd(sc[s]["gt"][cls]["dice"] for s in stems)["mean"] for sc in entry["seeds"].values()]))
        for cls in CLASSES
    }


def robustness_plot(levels: dict, path: Path) -> Path:
    """Dice vs SNR and vs background level, one line per method, one panel per class and parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharey=True)
    for col, (param, xlabel) in enumerate(
        (("snr", "SNR (cytoplasm protein peak / noise sd)"), ("background", "non-Raman background at field centre"))
    ):
        for row, cls in enumerate(CLASSES):
            ax = axes[row, col]
            for label, by_level in levels[param].items():
                xs = sorted(by_level, key=float)
                ax.plot(
                    [float(x) for x in xs],
                    [by_level[x][cls]["mean"] for x in xs],
                    marker="o",
                    label=label,
                    linestyle="--" if "phasor" in label else "-",
                )
            ax.set_xscale("log")
            ax.set_xticks([float(x) for x in xs], labels=xs)
            ax.minorticks_off()
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"Dice, {CLASS_NAMES[cls]}")
            ax.grid(True, alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Robustness on the default preset with one parameter pinned (networks trained on ground truth)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def report(result: dict, plan: Plan, plot_path: Path) -> SectionResult:
    data, methods = result["data"], result["methods"]
    split, stems_info = data["split"], data["stems"]
    test = split["test"]
    by_preset = {p: [s for s in test if stems_info[s]["preset"] == p] for p in PRESETS}
    costs = model_costs()
    gt_rows = [k for k in methods if k.endswith("_gt")] + list(PHASOR_METHODS)
    weak_rows = [k for k in methods if k.endswith("_phasor")]
    averaged = {k: _method_scores(v) for k, v in methods.items()}
    summary = {
        k: {"all": summarise(averaged[k], test), **{p: summarise(averaged[k], by_preset[p]) for p in PRESETS}}
        for k in methods
    }

    # 1. per preset, vs ground truth
    rows = []
    for k in gt_rows:
        cells = [_cell(summary[k][p]["gt"][c]["dice"]) for p in PRESETS for c in CLASSES]
        rows.append([methods[k]["label"], *cells])
    header = ["method (trained on ground truth)"] + [f"{p}: {CLASS_NAMES[c]}" for p in PRESETS for c in CLASSES]
    table_presets = markdown_table(header, rows)

    # 2. pooled: Dice vs GT, HD95, Dice vs phasor labels, cost, training
    rows = []
    for k in gt_rows:
        m, s = methods[k], summary[k]["all"]
        sd = _seed_sd(m, test) if m["kind"] == "network" else {c: math.nan for c in CLASSES}
        seeds = len(m["seeds"])
        seed_txt = (
            f"{seeds} (sd {sd['nucleus']:.3f} / {sd['lipid_droplet']:.3f})"
            if seeds > 1
            else str(seeds) if m["kind"] == "network" else "–"
        )
        vs_phasor = ["–", "–"] if k == "phasor_tuned" else [_cell(s["phasor"][c]["dice"]) for c in CLASSES]
        if m["kind"] == "network":
            runs = list(m["runs"].values())
            epochs = (
                f"{min(r['epochs_done'] for r in runs)}{'*' if any(r['stopped_by_time_limit'] for r in runs) else ''}"
            )
            train_min = f"{np.mean([r['train_wall_s'] for r in runs]) / 60:.1f}"
            best_val = ", ".join(
                f"{r['best_val_mean_dice']:.3f} ({r['best_epoch']})" for r in runs if r["best_val_mean_dice"]
            )
            c = cost_of(MODEL_BY_KEY[m["model"]], costs)
            cost = [
                f"{runs[0]['parameters'] / 1e6:.2f} M",
                f"{c['latency_s']:.2f}" if c.get("latency_s") else "–",
                f"{c['peak_memory_mib']:.0f}" if c.get("peak_memory_mib") else "–",
            ]
        else:
            epochs, train_min, seed_txt, best_val = "–", "–", "–", "–"
            cost = ["–", "see phasor section", "–"]
        rows.append(
            [
                m["label"],
                *(_cell(s["gt"][c]["dice"]) for c in CLASSES),
                *(_cell(s["gt"][c]["hd95"], 2) for c in CLASSES),
                *vs_phasor,
                seed_txt,
                epochs,
                best_val,
                train_min,
                *cost,
            ]
        )
    table_pooled = markdown_table(
        [
            "method",
            "Dice nucleus",
            "Dice lipid droplet",
            "HD95 nucleus (px)",
            "HD95 lipid droplet (px)",
            "Dice nucleus vs phasor labels",
            "Dice LD vs phasor labels",
            "training seeds (sd of mean)",
            f"epochs (of {plan.epochs})",
            "best validation mean Dice (epoch), per seed",
            "training wall (min)",
            "parameters",
            "latency 512²×64 (s)",
            "peak memory 512²×64 (MiB)",
        ],
        rows,
    )

    # 3. weak supervision
    teacher = summary["phasor_tuned"]["all"]["gt"]
    rows = [
        [
            methods["phasor_tuned"]["label"] + " (the teacher)",
            *(_cell(teacher[c]["dice"]) for c in CLASSES),
            "–",
            "–",
            "–",
        ]
    ]
    for k in weak_rows:
        m, s = methods[k], summary[k]["all"]
        gt_key = f"{m['model']}_gt"
        delta = (
            [s["gt"][c]["dice"]["mean"] - summary[gt_key]["all"]["gt"][c]["dice"]["mean"] for c in CLASSES]
            if gt_key in summary
            else [math.nan] * 2
        )
        rows.append(
            [
                m["label"],
                *(_cell(s["gt"][c]["dice"]) for c in CLASSES),
                " / ".join(f"{d:+.3f}" for d in delta),
                *(_cell(s["phasor"][c]["dice"]) for c in CLASSES),
            ]
        )
    weak_note = (
        "The pseudo-labels are the tuned phasor's label maps of the training and validation stacks "
        "(`configs/phasor.yaml`);\nmodel selection also uses them, as a user without annotations would."
    )
    table_weak = markdown_table(
        [
            "trained on tuned-phasor pseudo-labels",
            "Dice nucleus vs GT",
            "Dice lipid droplet vs GT",
            "Δ vs same network trained on GT (nucleus / LD)",
            "Dice nucleus vs phasor labels",
            "Dice LD vs phasor labels",
        ],
        rows,
    )
    table_weak += "\n\n" + weak_note
    if not plan.weak_supervision:
        table_weak = (
            "Not run in this plan (`weak_supervision=False`, as in `--quick`); the full benchmark trains every "
            "network on the tuned phasor's pseudo-labels too."
        )

    # 4. robustness
    sweep_methods = [k for k in gt_rows if all(s in averaged[k] for s in split["sweep"])]
    levels: dict = {"snr": {}, "background": {}}
    for param, values in (("snr", plan.snr_levels), ("background", plan.background_levels)):
        for k in sweep_methods:
            levels[param][methods[k]["label"]] = {
                f"{v:g}": {
                    c: mean_sd(
                        averaged[k][s]["gt"][c]["dice"]
                        for s in split["sweep"]
                        if stems_info[s].get("varied") == param and stems_info[s]["level"] == v
                    )
                    for c in CLASSES
                }
                for v in values
            }
    robustness_tables = []
    for param, values, name in (("snr", plan.snr_levels, "SNR"), ("background", plan.background_levels, "background")):
        rows = [
            [label]
            + [
                " / ".join("–" if d[f"{v:g}"][c]["n"] == 0 else f"{d[f'{v:g}'][c]['mean']:.3f}" for c in CLASSES)
                for v in values
            ]
            for label, d in levels[param].items()
        ]
        robustness_tables.append(markdown_table([f"Dice nucleus / LD at {name} ="] + [f"{v:g}" for v in values], rows))
    if sweep_methods:
        robustness_plot(levels, plot_path)

    # verdicts
    verdicts = targets(summary, methods, costs, test)
    budget = (
        f"{plan.epochs} epochs of {-(-len(split['training']) // 2)} iterations (2 stacks × 4 patches of "
        f"{plan.patch}×{plan.patch}×64) or {plan.time_limit_s / 60:.0f} min of wall time, whichever ends first"
    )
    n_train, n_val, n_test = plan.per_preset
    all_runs = [r for m in methods.values() for r in m["runs"].values()]
    train_min = sum(r["train_wall_s"] for r in all_runs) / 60
    eval_min = sum(r["eval_wall_s"] for r in all_runs) / 60
    max_diff = max(methods[k].get("evaluate_csv_max_diff", 0.0) for k in methods)
    markdown = f"""**Data.** Per preset (easy, default, hard) {n_train + n_val + n_test} simulated stacks of
{plan.size}×{plan.size}×64 (`python -m scripts.simulate --preset P --seed {DATA_SEED} --size {plan.size}`), by index
{n_train} training, {n_val} validation, {n_test} test; the networks train on the pooled training stacks of all three
presets ({len(split["training"])}) and select their best epoch on the pooled validation stacks ({len(split["validation"])}).
Scores are mean ± sd over the {len(test)} test stacks ({n_test} per preset; for networks trained with several seeds,
each stack's score is first averaged over the seeds). **Budget:** every network {budget}; `*` marks a run the time
limit stopped. Learning rate, schedule, loss (DiceCE), augmentation and sliding window are those of
`configs/train.yaml` for all networks. The phasor has no training; its tuned parameters were fitted on a different
seed stream of the default preset.

### Against ground truth, per preset

{table_presets}

### All presets pooled: accuracy, agreement with the phasor labels, cost

{table_pooled}

HD95 in pixels (0.25 µm), images where a class was not predicted at all are left out of its HD95. "vs phasor labels"
scores each method against the tuned phasor's label maps, the protocol of the paper (which had no ground truth);
on simulated data the ground truth shows how much that protocol rewards agreeing with the phasor's errors.
Parameters are counted in the trained checkpoints; latency and peak memory per 512×512×64 stack come from the
model-cost section (batch 1, CPU; the nnU-Net-style row planned for 128×128 patches, as
`configs/baselines/nnunet_2d.yaml` plans the network trained here).
The per-image Dice of `configs/evaluate.yaml` (MetricsSaver) and of this script agree within {max_diff:.1e}.

### Weak supervision: trained on phasor pseudo-labels, scored against ground truth

{table_weak}

### Robustness: default preset with the SNR or the background level pinned

{robustness_tables[0]}

{robustness_tables[1]}

![Dice vs SNR and vs background]({plot_path.name})

{plan.sweep_repeats} stack(s) per level (`scripts.benchmarks.comparison.sweep_phantoms`, seed {SWEEP_SEED}); all other
parameters drawn from the default preset; "–": no lipid droplet in the stacks of that level. Networks trained on
ground truth (seed 0); phasor with fixed (tuned) parameters.

### Targets

{verdicts}

Compute behind these tables: {train_min:.0f} min of training and {eval_min:.0f} min of evaluation (the sum of the
runs' wall times on this machine), plus the data, phasor and scoring steps; this rendering of the section took
{result["wall_s"] / 60:.0f} min (finished runs are reused). Work files, logs and trained weights:
`outputs/benchmark{"_quick" if plan is QUICK else ""}/`.
"""
    card_rows = []
    for k in gt_rows + weak_rows:
        m, s = methods[k], summary[k]["all"]["gt"]
        trained = f" (trained on {SUPERVISION[m['supervision']]})" if m["kind"] == "network" else ""
        card_rows.append(
            [m["label"] + trained, *(_cell(s[c]["dice"]) for c in CLASSES), *(_cell(s[c]["hd95"], 1) for c in CLASSES)]
        )
    card_header = ["method", "Dice nucleus", "Dice lipid droplet", "HD95 nucleus (px)", "HD95 lipid droplet (px)"]
    model_card = f"""{markdown_table(card_header, card_rows)}

Mean ± sd over {len(test)} simulated test stacks of {plan.size}×{plan.size}×64 ({n_test} per preset easy/default/hard),
scored against the simulator's exact ground truth; every network trained by `configs/train.yaml` with the same
budget ({budget}) on {len(split["training"])} simulated stacks. These benchmark networks are **not** the shipped
weights (those were trained longer on 512×512 fields, see Training). Full tables, per preset, robustness to SNR and
background, and the targets: [results.md]({RESULTS_ANCHOR}).

{verdicts}"""
    json_data = {
        "plan": asdict(plan),
        "summary": summary,
        "robustness": levels,
        "runs": {k: v["runs"] for k, v in methods.items()},
        "wall_s": result["wall_s"],
        "per_image": {k: averaged[k] for k in methods},
    }
    return SectionResult(markdown, json_data, model_card)


def targets(summary: dict, methods: dict, costs: dict, test_stems: list[str]) -> str:
    """The issue's targets, checked against the measured numbers, as Markdown bullet points."""
    lines = []
    if "hybrid_gt" not in summary:
        return "HybridUNet not in this run."
    hyb = summary["hybrid_gt"]["all"]["gt"]
    rivals = [k for k in ("nnunet_2d_gt", "unet3d_gt", "phasor_tuned") if k in summary]
    for cls in CLASSES:
        behind = [
            methods[k]["label"]
            for k in rivals
            if summary[k]["all"]["gt"][cls]["dice"]["mean"] >= hyb[cls]["dice"]["mean"]
        ]
        verdict = "**met**" if not behind else "**not met**: " + ", ".join(behind) + " ahead or equal"
        lines.append(
            f"- HybridUNet ahead of the baselines and the phasor on {CLASS_NAMES[cls]} "
            f"(Dice {hyb[cls]['dice']['mean']:.3f}): {verdict}."
        )
    default_cost = cost_of(MODEL_BY_KEY["hybrid"], costs)
    seed_sd = _seed_sd(methods["hybrid_gt"], test_stems)
    noise = {cls: 0.0 if math.isnan(v) else v for cls, v in seed_sd.items()}
    for key in ("hybrid_no_multiscale", "hybrid_mean_pooling", "hybrid_plain_compression"):
        k = f"{key}_gt"
        if k not in summary:
            continue
        d = {c: summary[k]["all"]["gt"][c]["dice"]["mean"] - hyb[c]["dice"]["mean"] for c in CLASSES}
        c = cost_of(MODEL_BY_KEY[key], costs)
        cost_txt = []
        for name, field_ in (("parameters", "parameters"), ("GMACs", "gmacs"), ("latency", "latency_s")):
            if c.get(field_) and default_cost.get(field_):
                rel = c[field_] / default_cost[field_] - 1
                cost_txt.append(f"{name} {rel:+.0%}")
        lowers_score = [CLASS_NAMES[cls] for cls in CLASSES if d[cls] < -noise[cls]]
        raises_cost = [
            name
            for name, f in (("parameters", "parameters"), ("GMACs", "gmacs"))
            if c.get(f) and default_cost.get(f) and c[f] > default_cost[f] * 1.01
        ]
        raises_score = [CLASS_NAMES[cls] for cls in CLASSES if d[cls] > noise[cls]]
        effects = []
        if raises_score:
            effects.append("removing the module **raises** the Dice on " + " and ".join(raises_score))
        if lowers_score:
            effects.append("removing the module lowers the Dice on " + " and ".join(lowers_score))
        if raises_cost:
            effects.append("removing it raises the " + " and ".join(raises_cost) + " (the module saves compute)")
        what = (
            "; ".join(effects)
            if effects
            else (
                "**neither** the score drops beyond the seed-to-seed sd **nor** the cost rises: the module earns "
                "nothing measurable in this benchmark"
            )
        )
        lines.append(
            f"- {MODEL_BY_KEY[key].label}: Dice nucleus {d['nucleus']:+.3f}, lipid droplet "
            f"{d['lipid_droplet']:+.3f} vs the default; {', '.join(cost_txt) or 'cost not measured'} → {what}."
        )
    if not math.isnan(seed_sd["nucleus"]):
        lines.append(
            f"- For scale: the sd over training seeds of the default HybridUNet's mean Dice is "
            f"{seed_sd['nucleus']:.3f} (nucleus) / {seed_sd['lipid_droplet']:.3f} (lipid droplet); "
            "differences smaller than that are not evidence."
        )
    return "\n".join(lines)


def run(
    quick: bool = False, plan: Plan | None = None, work: Path | None = None, plot_path: Path | None = None
) -> SectionResult:
    """Measure (or reuse) every run of ``plan`` and write the tables; see the module docstring."""
    plan = plan or (QUICK if quick else FULL)
    work = work or REPO / "outputs" / ("benchmark_quick" if quick else "benchmark")
    work.mkdir(parents=True, exist_ok=True)
    plot_path = plot_path or (work / "robustness.png" if quick else REPO / "docs" / "robustness.png")
    return report(measure(plan, work), plan, plot_path)
