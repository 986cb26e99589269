"""Throughput on a folder of stacks: where the time per stack goes, stage by stage (issue 16, item 1);
sliding-window plans on large fields (:func:`window_plans`).

``python -m scripts.benchmark --sections throughput`` simulates a folder of 10 stacks (default preset,
512×512×64, uint16 ``.nii.gz`` as an instrument would write them) and segments it with
``configs/inference.yaml`` once per setting in :data:`VARIANTS` (the shipped defaults first, then
without prefetching / background writing / the larger window), each in a fresh process as a user would,
recording the time per stack (steady state: the median interval between stacks) and the Dice of the
written label maps. One more run of the shipped settings goes under MONAI's
:class:`monai.utils.profiling.WorkflowProfiler`, which times every call of the selected pipeline stages
(reader, resampling, normalisation, sliding window, network forward, quality check, each writer, the
per-cell readout); tracing slows Python a little, so those are shares, and the plain runs give the
absolute times.

Start-up is the process's wall time up to the engine's first iteration (interpreter, imports, config,
header pre-flight, network construction, weights). Stages nested in another (the network forward inside
the sliding window, the per-cell readout's own writes) are listed indented under it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from scripts.benchmarks import SectionResult, markdown_table
from scripts.io.headers import read_header

# (class name or "" for a module-level function, function name) -> (stage, depth); depth 1 = inside the row above
STAGES: dict[tuple[str, str], tuple[str, int]] = {
    ("LoadImaged", "__call__"): ("read (incl. spectral-axis check)", 0),
    ("QCSpectralFeaturesd", "__call__"): ("QC spectral features", 0),
    ("SpectralResampled", "__call__"): ("spectral resampling", 0),
    ("NormalizeSpectralIntensityd", "__call__"): ("intensity normalisation", 0),
    ("FieldSlidingWindowInferer", "__call__"): ("sliding window (network + stitching)", 0),
    ("", "network_forward"): ("network forward passes", 1),
    ("Compose", "postprocessing"): ("post-processing (softmax, argmax)", 0),
    ("QualityCheck", "_on_forward"): ("QC model features + score", 0),
    ("", "write_label_map"): ("label maps (NIfTI + TIFF)", 0),
    ("", "save_png"): ("overlay PNGs", 0),
    ("SegmentationWriter", "_write_summary"): ("summary.csv", 0),
    ("CellReadout", "__call__"): ("per-cell readout (measure + write)", 0),
}


# the child process: one run of inference.yaml (a fresh interpreter, as a user's run)
_CHILD = (
    "import json, sys; from scripts.benchmarks.throughput import child; "
    "child(sys.argv[1], sys.argv[2], sys.argv[3] == '1', json.loads(sys.argv[4]))"
)


def child(folder: str, out: str, profile: bool, overrides: dict) -> None:
    """Run inference.yaml in this process; print a JSON line with the stage times."""
    t_enter = time.perf_counter()
    import torch
    from monai.bundle import ConfigWorkflow
    from monai.utils.profiling import WorkflowProfiler

    repo = Path(__file__).resolve().parents[2]
    os.chdir(repo)
    workflow = ConfigWorkflow(
        config_file="configs/inference.yaml",
        meta_file="configs/metadata.json",
        logging_file="configs/logging.conf",
        workflow_type="infer",
        dataset_dir=folder,
        output_dir=out,
        **overrides,
    )
    workflow.initialize()
    evaluator = workflow.parser.get_parsed_content("evaluator")
    network = workflow.parser.get_parsed_content("network")
    postprocessing = workflow.parser.get_parsed_content("postprocessing")
    marks: dict[str, float] = {}
    from ignite.engine import Events

    evaluator.add_event_handler(
        Events.GET_BATCH_STARTED, lambda e: marks.setdefault("first_iteration", time.perf_counter())
    )
    done: list[float] = []
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: done.append(time.perf_counter()))

    def selector(frame) -> bool:
        code = frame.f_code.co_name
        self_obj = frame.f_locals.get("self")
        if self_obj is not None:
            # the class's own method only, not a base class's that it calls with the same name (super().__call__)
            if getattr(getattr(type(self_obj), code, None), "__code__", None) is not frame.f_code:
                return False
            if self_obj is network or self_obj is postprocessing:
                return code in ("forward", "__call__")
            return (type(self_obj).__name__, code) in STAGES
        return ("", code) in STAGES

    t_run = time.perf_counter()
    if profile:
        with WorkflowProfiler(call_selector=selector) as profiler:
            workflow.run()
        results = profiler.get_results()
    else:
        workflow.run()
        results = {}
    t_end = time.perf_counter()
    workflow.finalize()
    stages: dict[str, dict] = {}
    for name, calls in results.items():
        owner, _, func = name.rpartition(".")
        key = (owner, func) if (owner, func) in STAGES else ("", func)
        if name == f"{type(network).__name__}.forward":
            key = ("", "network_forward")
        elif name == "Compose.__call__":
            key = ("Compose", "postprocessing")
        if key not in STAGES:
            continue
        stage, depth = STAGES[key]
        stages[stage] = {"depth": depth, "calls": len(calls), "total_s": sum(c.time for c in calls) / 1e9}
    print(
        json.dumps(
            {
                "module_to_run_s": t_run - t_enter,
                "run_s": t_end - t_run,
                "first_iteration_at_s": marks.get("first_iteration", t_end) - t_run,
                "iteration_done_s": [t - t_run for t in done],
                "stages": stages,
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


def run_folder(folder: Path, out: Path, profile: bool, overrides: dict | None = None) -> dict:
    """Segment ``folder`` with inference.yaml in a fresh process; returns its timings (see :func:`child`)."""
    cmd = [sys.executable, "-c", _CHILD, str(folder), str(out), "1" if profile else "0", json.dumps(overrides or {})]
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[2])
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    result["startup_s"] = wall - result["run_s"] + result["first_iteration_at_s"]
    done = result["iteration_done_s"]
    result["per_stack_s"] = float(np.median(np.diff([result["first_iteration_at_s"], *done]))) if done else float("nan")
    result["stacks"] = len(done)
    return result


def simulate_folder(folder: Path, stacks: int, size: int, seed: int = 20261128) -> Path:
    """``stacks`` default-preset phantoms of ``size``² × 64 frames, uint16 ``.nii.gz`` with their wavenumbers."""
    from scripts.simulation.dataset import simulate_dataset

    simulate_dataset(folder, num=stacks, seed=seed, height=size, width=size, dtype="uint16")
    return folder / "images"


def profile_table(plain: dict, profiled: dict) -> tuple[str, dict]:
    """Markdown profile table: per-stack seconds by stage (profiled run), with the plain run's totals."""
    n = max(profiled["stacks"], 1)
    rows = [["start-up (once: interpreter, imports, config, pre-flight, weights)", f"{profiled['startup_s']:.2f}", ""]]
    busy = profiled["run_s"] - profiled["first_iteration_at_s"]
    order = [stage for stage, _ in STAGES.values()]
    accounted = 0.0
    for stage in order:
        if stage not in profiled["stages"]:
            continue
        s = profiled["stages"][stage]
        per = s["total_s"] / n
        if s["depth"] == 0:
            accounted += per
        label = ("  ↳ " if s["depth"] else "") + stage
        rows.append([label, f"{per:.3f}", f"{100 * per / (busy / n):.0f} %"])
    other = busy / n - accounted
    # with prefetching and background writing the stages overlap in time: the remainder is then meaningless
    rows.append(
        ["other (data loader, engine, handlers not listed)", f"{other:.3f}" if other >= 0 else "– (overlap)", ""]
    )
    rows.append(["**per stack, profiled run** (first iteration to last)", f"{busy / n:.2f}", "100 %"])
    rows.append(["**per stack, plain run** (median, nothing traced)", f"{plain['per_stack_s']:.2f}", ""])
    table = markdown_table(["stage", "s per stack", "share"], rows)
    return table, {"plain": plain, "profiled": profiled}


#: settings compared in one run: (name, bundle overrides). The first is what inference.yaml ships.
VARIANTS: list[tuple[str, dict]] = [
    (
        "shipped defaults (prefetch 1, background writing, one window of 512², backend auto: ONNX Runtime, "
        "tiling auto: each stack's need estimated against memory_gib 4)",
        {},
    ),
    (
        "every stack whole, no estimate against memory_gib (`--tiling never`, the path before auto-tiling)",
        {"tiling": "never"},
    ),
    ("no prefetch, outputs written on the engine thread", {"prefetch": 0, "background_writing": False}),
    ("PyTorch backend (`--backend torch`)", {"backend": "torch"}),
    (
        "previous window (2 × 256² per batch, MONAI's placement, overlap 0.25)",
        {"roi_size": [256, 256], "sw_batch_size": 2, "window_overlap": 0.25, "inferer#fit_windows": False},
    ),
    (
        "previous defaults (all four)",
        {
            "backend": "torch",
            "prefetch": 0,
            "background_writing": False,
            "roi_size": [256, 256],
            "sw_batch_size": 2,
            "window_overlap": 0.25,
            "inferer#fit_windows": False,
        },
    ),
]


def folder_dice(out: Path, labels: Path) -> dict[str, float]:
    """Mean Dice per class of the label maps in ``out`` against the simulator's in ``labels``."""
    from scripts.io.reader import read_hsrs
    from scripts.phasor.fit import dice_per_class

    scores = []
    for truth in sorted(labels.glob("*.nii.gz")):
        stem = truth.name[: -len(".nii.gz")]
        pred = out / f"{stem}.tif"
        if pred.exists():
            scores.append(dice_per_class(np.asarray(read_hsrs(pred)[0]), np.asarray(read_hsrs(truth)[0])))
    return {c: float(np.mean([d[c] for d in scores if c in d])) for c in ("nucleus", "lipid_droplet")}


def measure(stacks: int = 10, size: int = 512, data: Path | None = None, variants=None) -> tuple[str, dict]:
    """Profile of the shipped settings and per-stack time + Dice of each variant; (markdown, data)."""
    variants = VARIANTS if variants is None else variants
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = data if data is not None else simulate_folder(tmp / "data", stacks, size)
        labels = folder.parent / "labels"
        shape = read_header(next(iter(sorted(folder.glob("*.nii.gz"))))).shape
        load = [os.getloadavg()[0]]
        runs = {}
        for i, (name, overrides) in enumerate(variants):
            out = tmp / f"out_{i}"
            runs[name] = run_folder(folder, out, profile=False, overrides=overrides)
            runs[name]["dice"] = folder_dice(out, labels) if labels.is_dir() else {}
            load.append(os.getloadavg()[0])
        default = variants[0][0]
        profiled = run_folder(folder, tmp / "profiled", profile=True, overrides=variants[0][1])
        load.append(os.getloadavg()[0])
    profile_md, _ = profile_table(runs[default], profiled)
    base = runs[default]["per_stack_s"]
    rows = []
    for name, r in runs.items():
        dice = r.get("dice") or {}
        rows.append(
            [
                name,
                f"{r['per_stack_s']:.2f}",
                f"{r['per_stack_s'] / base:.2f}×",
                f"{r['wall_s']:.1f}",
                f"{r['startup_s']:.1f}",
                f"{dice.get('nucleus', float('nan')):.3f}",
                f"{dice.get('lipid_droplet', float('nan')):.3f}",
            ]
        )
    variants_md = markdown_table(
        [
            "settings (`configs/inference.yaml`)",
            "s per stack (median, steady state)",
            "vs shipped",
            "wall, whole folder (s)",
            "start-up (s)",
            "Dice nucleus",
            "Dice lipid droplet",
        ],
        rows,
    )
    n = runs[default]["stacks"]
    k, h, w = shape
    note = (
        f"A folder of {n} simulated stacks of {h}×{w}×{k} (default preset, uint16 `.nii.gz`), each setting in a "
        "fresh process, one after the other in one run; load average during the run "
        f"{min(load):.1f}–{max(load):.1f} on {os.cpu_count()} cores. Dice: the written label maps against the "
        "simulator's. Stage times (second table) come from a run of the shipped settings under MONAI's "
        "`WorkflowProfiler`; prefetching and background writing overlap stages, so the stages add up to more than "
        "the time per stack."
    )
    return variants_md + "\n\n" + note + "\n\n" + profile_md, {"runs": runs, "profiled": profiled, "load": load}


#: sliding-window plans compared on one large field: (name, inferer settings); the first is the reference
WINDOW_PLANS = (
    (
        "MONAI's placement: windows of 512², overlap 0.25 (0.4.0)",
        {"roi_size": (512, 512), "overlap": 0.25, "fit_windows": False},
    ),
    ("fitted windows, largest 512², overlap ≥ 128 px", {"roi_size": (512, 512), "overlap": 0.25}),
    ("fitted windows, largest 768², overlap ≥ 128 px (shipped)", {"roi_size": (768, 768), "overlap": 1 / 6}),
    (
        "fitted windows, largest 768², overlap ≥ 128 px, bfloat16",
        {"roi_size": (768, 768), "overlap": 1 / 6, "precision": "bfloat16"},
    ),
)


def window_plans(size: int = 2048, seed: int = 0, plans=WINDOW_PLANS) -> tuple[str, dict]:
    """One simulated field of ``size``² × 64 through the shipped network under each sliding-window plan.

    The stack is preprocessed once as ``configs/inference.yaml`` does (resampling, normalisation); each plan
    then runs the shipped weights with ``inference.yaml``'s inferer (Gaussian blending, reflection padding)
    with its settings changed. Reported: windows, network input pixels (relative to the field), the
    sliding window's time (best of 2), Dice against the simulator's labels, and the share of pixels whose
    label equals the first plan's. Returns (markdown, data).
    """
    import torch
    from scripts.benchmarks.bundle_runs import REPO, inference_inferer, inference_network
    from scripts.engine.inferers import FieldSlidingWindowInferer, native_bfloat16
    from scripts.phasor.fit import dice_per_class
    from scripts.simulation.phantom import simulate_phantom
    from scripts.transforms.array import NormalizeSpectralIntensity, SpectralResample

    phantom = simulate_phantom(seed, size, size)
    img = NormalizeSpectralIntensity()(SpectralResample()(torch.from_numpy(phantom.stack), phantom.wavenumbers))
    del phantom.stack
    network = inference_network()
    network.load_state_dict(torch.load(REPO / "models" / "model.pt", map_location="cpu", weights_only=True))
    network.eval()
    shipped = inference_inferer()
    base = {
        "roi_size": shipped.max_roi_size,
        "sw_batch_size": shipped.sw_batch_size,
        "overlap": shipped.max_overlap,
        "mode": shipped.mode,
        "sigma_scale": shipped.sigma_scale,
        "device": "cpu",
        "progress": False,
    }
    rows, data, reference = [], {}, None
    for name, settings in plans:
        inferer = FieldSlidingWindowInferer(**{**base, **settings})
        roi, _ = inferer.window_plan((size, size))
        windows = inferer.num_windows_for((size, size))
        times = []
        with torch.inference_mode():
            for _ in range(2):
                t0 = time.perf_counter()
                labels = inferer(img[None], network)[0].argmax(0).to(torch.uint8).numpy()
                times.append(time.perf_counter() - t0)
        reference = labels if reference is None else reference
        dice = dice_per_class(labels, phantom.labels)
        agree = float(np.mean(labels == reference))
        pixels = windows * roi[0] * roi[1] / size**2
        rows.append(
            [
                name,
                f"{windows} of {roi[0]}×{roi[1]}",
                f"{pixels:.2f}×",
                f"{min(times):.1f}",
                f"{dice['nucleus']:.4f}",
                f"{dice['lipid_droplet']:.4f}",
                f"{100 * agree:.3f} %",
            ]
        )
        data[name] = {
            "settings": dict(settings),
            "windows": windows,
            "roi": list(roi),
            "network_px_per_field_px": pixels,
            "seconds": times,
            "dice": dice,
            "agreement": agree,
        }
    table = markdown_table(
        [
            f"sliding-window plan, one {size}×{size}×64 field",
            "windows",
            "network input / field",
            "time (s, best of 2)",
            "Dice nucleus",
            "Dice lipid droplet",
            "labels as the first plan",
        ],
        rows,
    )
    note = (
        f"One simulated field (default preset, seed {seed}), preprocessed once as `configs/inference.yaml` does, "
        "segmented by the shipped weights with `inference.yaml`'s inferer (Gaussian blending) under each plan, in "
        f"one process ({torch.get_num_threads()} torch threads; native bfloat16 on this CPU: "
        f"{'yes' if native_bfloat16() else 'no'}). Settings: `roi_size` (the largest window), `window_overlap`, "
        "`precision` in `configs/inference.yaml`."
    )
    return table + "\n\n" + note, data


TITLE = "Throughput on a folder and on large fields: time per stack by setting, where it goes, window plans"


def run(quick: bool) -> SectionResult:
    """The benchmark section (``python -m scripts.benchmark --sections throughput``)."""
    # --quick (a smoke run): the shipped settings against the previous defaults only
    markdown, data = measure(stacks=4, variants=(VARIANTS[0], VARIANTS[-1])) if quick else measure(stacks=10)
    plans = {}
    for size in (640,) if quick else (1024, 2048):
        # in a fresh process: a 2048² field takes GiBs, which later sections' forked workers would inherit
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            plans_md, plans[size] = pool.submit(window_plans, size).result()
        markdown += "\n\n" + plans_md
    data["window_plans"] = plans
    command = "Regenerate: `python -m scripts.benchmark --sections throughput`."
    return SectionResult(markdown + "\n\n" + command, data)
