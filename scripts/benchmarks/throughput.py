"""Throughput on a folder of stacks: where the time per stack goes, stage by stage (issue 16, item 1).

``python -m scripts.benchmarks.throughput [--stacks 10] [--size 512] [--out outputs/throughput]`` simulates a
folder of stacks (default preset, uint16 ``.nii.gz`` as an instrument would write them), then segments it with
``configs/inference.yaml`` twice, each time in a fresh process as a user would:

- **plain**: end-to-end wall time and per-stack time (first stack to last), nothing traced;
- **profiled**: the same run under MONAI's :class:`monai.utils.profiling.WorkflowProfiler`, which times every
  call of the selected pipeline stages (reader, resampling, normalisation, sliding window, network forward,
  quality check, each writer, the per-cell readout). Tracing slows Python a little, so the profiled stage
  times are shares of the profiled run; the plain run gives the absolute per-stack time.

Start-up is the process's wall time up to the engine's first iteration (interpreter, imports, config,
header pre-flight, network construction, weights). Stages nested in another (the network forward inside
the sliding window, the per-cell readout's own writes) are listed indented under it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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


def _child(folder: str, out: str, profile: bool, overrides: list[str]) -> None:
    """Run inference.yaml in this process; print a JSON line with the stage times."""
    t_enter = time.perf_counter()
    import torch
    from monai.bundle import ConfigWorkflow
    from monai.utils.profiling import WorkflowProfiler

    repo = Path(__file__).resolve().parents[2]
    os.chdir(repo)
    kwargs = dict(zip(overrides[::2], overrides[1::2]))
    workflow = ConfigWorkflow(
        config_file="configs/inference.yaml",
        meta_file="configs/metadata.json",
        logging_file="configs/logging.conf",
        workflow_type="infer",
        dataset_dir=folder,
        output_dir=out,
        **kwargs,
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


def run_folder(folder: Path, out: Path, profile: bool, overrides: list[str] = ()) -> dict:
    """Segment ``folder`` with inference.yaml in a fresh process; returns its timings (see :func:`_child`)."""
    cmd = [sys.executable, "-m", "scripts.benchmarks.throughput", "--child", str(folder), str(out)]
    cmd += ["--profile"] if profile else []
    cmd += ["--overrides", *overrides] if overrides else []
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
    from scripts.benchmarks import markdown_table

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
    rows.append(["other (data loader, engine, handlers not listed)", f"{busy / n - accounted:.3f}", ""])
    rows.append(["**per stack, profiled run** (first iteration to last)", f"{busy / n:.2f}", "100 %"])
    rows.append(["**per stack, plain run** (median, nothing traced)", f"{plain['per_stack_s']:.2f}", ""])
    table = markdown_table(["stage", "s per stack", "share"], rows)
    return table, {"plain": plain, "profiled": profiled}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", nargs="*", default=[], help="bundle overrides, e.g. roi_size '[512,512]'")
    parser.add_argument("--stacks", type=int, default=10)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--data", type=Path, default=None, help="reuse a simulated folder (its images/)")
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child, profile=args.profile, overrides=args.overrides)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = args.data if args.data is not None else simulate_folder(tmp / "data", args.stacks, args.size)
        load = os.getloadavg()
        plain = run_folder(folder, tmp / "plain", profile=False, overrides=args.overrides)
        profiled = run_folder(folder, tmp / "profiled", profile=True, overrides=args.overrides)
        table, _ = profile_table(plain, profiled)
        print(table)
        print(f"load average before / after: {load[0]:.1f} / {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
