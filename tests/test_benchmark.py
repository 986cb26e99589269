"""The comparison benchmark's building blocks: scores, the training time budget, the robustness sweep,
the target verdicts, and one miniature end-to-end run through the bundle's configs."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scripts.benchmarks import comparison
from scripts.engine.metrics import segmentation_scores
from scripts.engine.time_limit import TrainingTimeLimit

# ----------------------------------------------------------------------------------- scores


def test_scores_of_identical_and_shifted_maps():
    truth = np.zeros((40, 40), np.uint8)
    truth[5:15, 5:15] = 1
    truth[30:33, 30:33] = 2
    same = segmentation_scores(truth, truth)
    assert same["nucleus"] == {"dice": 1.0, "hd95": 0.0}
    assert same["lipid_droplet"] == {"dice": 1.0, "hd95": 0.0}

    shifted = np.zeros_like(truth)
    shifted[5:15, 7:17] = 1  # 10×10 square moved by 2 pixels: overlap 80 of 100
    shifted[30:33, 30:33] = 2
    scores = segmentation_scores(shifted, truth)
    assert scores["nucleus"]["dice"] == pytest.approx(2 * 80 / 200)
    assert scores["nucleus"]["hd95"] == pytest.approx(2.0)


def test_scores_of_missing_classes():
    truth = np.zeros((20, 20), np.uint8)
    truth[2:6, 2:6] = 1
    truth[10:12, 10:12] = 2
    no_droplets = truth.copy()
    no_droplets[no_droplets == 2] = 0
    missed = segmentation_scores(no_droplets, truth)["lipid_droplet"]
    assert missed["dice"] == 0.0
    assert math.isnan(missed["hd95"])
    absent = segmentation_scores(truth, no_droplets)["lipid_droplet"]
    assert math.isnan(absent["dice"])  # not in the reference: left out of means, as in evaluate.yaml
    with pytest.raises(ValueError, match="same size"):
        segmentation_scores(truth, truth[:10])


def test_mean_sd_ignores_nan():
    assert comparison.mean_sd([1.0, math.nan, 0.0]) == {"mean": 0.5, "sd": 0.5, "n": 2}
    assert comparison.mean_sd([math.nan])["n"] == 0


# ----------------------------------------------------------------------------------- time budget


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _train(monkeypatch, limit_s, max_epochs=10, epoch_s=10.0, val_interval=3):
    from ignite.engine import Engine

    clock = _Clock()
    monkeypatch.setattr("scripts.engine.time_limit.time.monotonic", clock)
    validated = []

    def step(engine, batch):
        clock.now += epoch_s  # one iteration per epoch

    trainer = Engine(step)
    validator = type("Validator", (), {"run": lambda self, epoch: validated.append(epoch)})()
    handler = TrainingTimeLimit(limit_s, validator=validator, val_interval=val_interval)
    handler.attach(trainer)
    trainer.run([0], max_epochs=max_epochs)
    return trainer.state.epoch, handler.stopped_at, validated


def test_time_limit_stops_after_the_last_epoch_that_fits(monkeypatch):
    epoch, stopped, validated = _train(monkeypatch, limit_s=45)
    assert (epoch, stopped) == (4, 4)  # a 5th epoch would end at 50 s > 45 s
    assert validated == [4]  # epoch 4 is off the validation interval (3): validated before stopping


def test_time_limit_does_not_revalidate_or_stop_early(monkeypatch):
    epoch, stopped, validated = _train(monkeypatch, limit_s=35)
    assert (epoch, stopped, validated) == (3, 3, [])  # epoch 3 was validated by the regular interval
    epoch, stopped, _ = _train(monkeypatch, limit_s=1000)
    assert (epoch, stopped) == (10, None)


def test_time_limit_rejects_a_useless_budget():
    with pytest.raises(ValueError, match="time_limit_s"):
        TrainingTimeLimit(0)


# ----------------------------------------------------------------------------------- sweep


def test_sweep_pins_one_parameter_per_phantom():
    plan = replace(comparison.QUICK, size=48, snr_levels=(4.0, 30.0), background_levels=(0.1, 1.0), sweep_repeats=1)
    sweep = comparison.sweep_phantoms(plan)
    assert [(name, level) for _, name, level, _ in sweep] == [
        ("snr", 4.0),
        ("snr", 30.0),
        ("background", 0.1),
        ("background", 1.0),
    ]
    snr = {level: ph.params["snr"] for _, name, level, ph in sweep if name == "snr"}
    assert snr == {4.0: 4.0, 30.0: 30.0}
    background = {level: ph.params["background"] for _, name, level, ph in sweep if name == "background"}
    assert 0.1 <= background[0.1] < background[1.0]  # field mean: the pinned centre level times the vignetting
    assert len({stem for stem, *_ in sweep}) == len(sweep)
    again = comparison.sweep_phantoms(plan)
    assert all(np.array_equal(a[3].stack, b[3].stack) for a, b in zip(sweep, again, strict=True))


# ----------------------------------------------------------------------------------- verdicts


def _summary(nucleus, droplet):
    cell = {"dice": {"mean": 0.0}, "hd95": {"mean": 0.0}}
    out = {"nucleus": json.loads(json.dumps(cell)), "lipid_droplet": json.loads(json.dumps(cell))}
    out["nucleus"]["dice"]["mean"], out["lipid_droplet"]["dice"]["mean"] = nucleus, droplet
    return {"all": {"gt": out}}


def _one_seed(value):
    return {"s": {"gt": {c: {"dice": value, "hd95": 1.0} for c in comparison.CLASSES}}}


def test_targets_report_an_ablation_that_earns_nothing():
    summary = {
        "hybrid_gt": _summary(0.95, 0.90),
        "nnunet_2d_gt": _summary(0.96, 0.80),
        "hybrid_mean_pooling_gt": _summary(0.95, 0.90),  # same score, same cost
        "hybrid_no_multiscale_gt": _summary(0.95, 0.85),  # lower LD Dice
    }
    methods = {k: {"label": k, "seeds": {0: _one_seed(0.9)}} for k in summary}
    costs = {
        ("hybrid", "{}"): {"parameters": 100, "gmacs": 10.0, "latency_s": 1.0},
        ("hybrid", '{"attention_pooling": false}'): {"parameters": 100, "gmacs": 10.0, "latency_s": 1.0},
        ("hybrid", '{"multiscale_residual": false}'): {"parameters": 120, "gmacs": 15.0, "latency_s": 1.0},
    }
    text = comparison.targets(summary, methods, costs, ["s"])
    lines = {line.split(":")[0]: line for line in text.splitlines()}
    assert "**not met**: nnunet_2d_gt" in text  # the nnU-Net-style network is ahead on nuclei
    assert "lipid droplet (Dice 0.900): **met**" in text
    pooling = lines["- HybridUNet − attention pooling (mean)"]
    assert "**neither**" in pooling
    multiscale = lines["- HybridUNet − multi-scale residual (plain 3D blocks)"]
    assert "lowers the Dice on lipid droplet" in multiscale
    assert "raises the parameters and GMACs" in multiscale


# ----------------------------------------------------------------------------------- end to end


def test_miniature_benchmark_through_the_bundle_configs(tmp_path):
    """Data, phasor labels, training on truth and on pseudo-labels, evaluation, scores, tables and plot."""
    plan = replace(
        comparison.QUICK,
        size=64,
        per_preset=(1, 1, 1),
        models=("hybrid",),
        snr_levels=(10.0,),
        background_levels=(0.2,),
        time_limit_s=300,
        weak_supervision=True,
    )
    result = comparison.run(plan=plan, work=tmp_path / "work", plot_path=tmp_path / "robustness.png")
    summary = result.data["summary"]
    assert set(summary) == {"hybrid_gt", "hybrid_phasor", "phasor_tuned", "phasor_untuned"}
    # every method is scored on the same test stacks (those whose truth has the class), within [0, 1]
    for cls in ("nucleus", "lipid_droplet"):
        counts = {name: m["all"]["gt"][cls]["dice"]["n"] for name, m in summary.items()}
        assert len(set(counts.values())) == 1, counts
        for m in summary.values():
            assert m["all"]["gt"][cls]["dice"]["n"] == 0 or 0.0 <= m["all"]["gt"][cls]["dice"]["mean"] <= 1.0
    assert summary["phasor_tuned"]["all"]["phasor"]["nucleus"]["dice"]["mean"] == 1.0  # the reference itself
    run = result.data["runs"]["hybrid_gt"][0]
    assert run["epochs_done"] == 1
    assert run["parameters"] == 2324623
    assert (tmp_path / "robustness.png").stat().st_size > 10_000
    assert "| HybridUNet (full 3D encoder) |" in result.markdown
    assert "agree within" in result.markdown
    assert "HybridUNet (full 3D encoder) (trained on phasor pseudo-labels)" in result.model_card
    # a second run reuses every finished run instead of training again
    again = comparison.run(plan=plan, work=tmp_path / "work", plot_path=tmp_path / "robustness.png")
    walls = {k: [r["train_wall_s"] for r in v.values()] for k, v in result.data["runs"].items()}
    assert {k: [r["train_wall_s"] for r in v.values()] for k, v in again.data["runs"].items()} == walls


def test_seed_average_over_the_seeds_that_scored_an_image():
    def scores(value):
        return {"gt": {c: {"dice": value, "hd95": 2 * value} for c in comparison.CLASSES}}

    seed0 = {"test_a": scores(0.8), "sweep_b": scores(0.4)}  # the first seed is also run on the sweep
    seed1 = {"test_a": scores(0.6)}
    seed2 = {"test_a": scores(math.nan)}  # a class not in the reference: NaN, left out
    mean = comparison.seed_average([seed0, seed1, seed2])
    assert mean["test_a"]["gt"]["nucleus"]["dice"] == pytest.approx(0.7)
    assert mean["test_a"]["gt"]["lipid_droplet"]["hd95"] == pytest.approx(1.4)
    assert mean["sweep_b"]["gt"]["nucleus"]["dice"] == pytest.approx(0.4)


def test_cells_section_pools_matches_and_droplet_errors_over_stacks():
    from scripts.benchmarks.cells import _Pool

    cells = np.zeros((40, 60), np.int32)
    cells[5:25, 5:25], cells[5:25, 30:50] = 1, 2  # two cells inside the field
    nuclei = np.where((cells > 0) & (np.arange(60) % 25 < 12), cells, 0)
    droplets = np.zeros_like(cells)
    droplets[20:22, 20:22], droplets[20:22, 45:47], droplets[8:10, 45:47] = 1, 2, 3  # cell 1: one, cell 2: two
    ref = {"cells": cells, "nuclei": nuclei, "lipid_droplets": droplets}
    pool = _Pool()
    pool.add(ref, ref, 0.5)
    pool.add(dict(ref, lipid_droplets=np.where(droplets == 3, 0, droplets)), ref, 0.5)  # a droplet of cell 2 missed
    s = pool.scores()
    assert (s["cells"]["f1"], s["cells"]["pq"], s["nuclei"]["f1"]) == (1.0, 1.0, 1.0)
    assert (s["lipid_droplets"]["tp"], s["lipid_droplets"]["fn"]) == (5, 1)
    d = s["droplets_per_cell"]
    assert d["cells"] == 4  # two cells in each of two stacks
    assert d["count_mae"] == pytest.approx(1 / 4)
    assert d["count_bias"] == pytest.approx(-1 / 4)
    assert d["area_bias_um2"] == pytest.approx(-4 * 0.25 / 4)  # 4 px of 0.25 µm² missed, over 4 cells


def test_shipped_section_scores_the_committed_weights_on_every_preset():
    import hashlib
    import math

    from scripts.benchmarks import shipped

    result = shipped.run(quick=True)
    summary = result.data["summary"]
    assert set(shipped.PRESET_ORDER) <= set(summary)
    assert result.data["weights_md5"] == hashlib.md5(Path(shipped.WEIGHTS).read_bytes()).hexdigest()
    assert result.data["weights_md5"] in result.markdown
    for name, s in summary.items():
        for method in ("network", "phasor"):
            for cls in ("nucleus", "lipid_droplet"):
                m = s[method][cls]["mean"]
                assert math.isnan(m) or 0.0 <= m <= 1.0, (name, method, cls)
    # a verdict for every preset with a target, and the table says it
    assert set(result.data["verdicts"]) == set(shipped.TARGETS)
    assert result.markdown.count("met**") + result.markdown.count("missed**") == len(shipped.TARGETS)


def test_model_cost_targets_judge_latency_against_nnunet_and_the_flop_bound():
    from scripts.benchmarks import model_cost as mc

    size = (512, 512, 64)

    def row(model, latency, ratio_nnunet, ratio_bound):
        return {
            "model": model,
            "size": size,
            "latency_s": latency,
            "weights_mb": 9.0,
            "peak_memory_mib": 500.0,
            "nnunet_ratio": ratio_nnunet,
            "flop_bound_ratio": ratio_bound,
            "gflops": 50.0,
        }

    rows = [
        row(mc.FULL_MODEL, 2.0, 1.6, 10.0),
        row(mc.WIDE_HYBRID_MODEL, 2.0, 3.0, 3.9),
        row(mc.DEFAULT_MODEL, 1.0, 0.8, 1.9),
        row(mc.NNUNET_MODEL, 1.25, 1.0, 2.5),
        row(mc.REFERENCE_MODEL, 30.0, 24.0, 4.0),
    ]
    rows[2].update(onnx_latency_s=0.6, onnx_nnunet_ratio=0.7, onnx_flop_bound_ratio=2.5)  # the CPU default backend
    text, checks = mc._targets_paragraph(rows)
    assert checks["shipped_onnx_vs_nnunet"] is True
    assert checks["shipped_onnx_vs_flop_bound"] is False
    assert "in ONNX Runtime (the CPU default backend) the shipped HybridUNet takes 0.60 s = 0.70×" in text
    assert checks["full 3D encoder_vs_nnunet"] is False
    assert checks["full 3D encoder_vs_flop_bound"] is False
    assert checks["shipped_vs_nnunet"] is True
    assert checks["shipped_vs_flop_bound"] is True
    assert (checks["wide hybrid_vs_nnunet"], checks["wide hybrid_vs_flop_bound"]) == (False, False)
    assert "shipped HybridUNet latency 1.00 s = 0.80× the nnU-Net-style network's 1.25 s" in text
    assert f"the most FLOP-efficient network here, {mc.DEFAULT_MODEL}, runs at 1.9×" in text
    assert checks["all_met"] is False


def test_model_cost_quick_run_measures_the_compared_models_and_full_runs_every_arm_in_onnx_runtime(monkeypatch):
    """--quick must stay a short smoke run (the models its targets paragraph needs); a full run times every
    recipe-study arm in ONNX Runtime, since the study's latency column reads those rows."""
    from scripts.benchmarks import model_cost as mc

    measured, onnx = [], []
    monkeypatch.setattr(mc, "_in_subprocess", lambda function, *args: 100.0 if not args else onnx.append(args[0]) or {})
    monkeypatch.setattr(
        mc, "measure_least_contended", lambda kind, kwargs, size, repeats, attempts: measured.append(kwargs) or {}
    )
    monkeypatch.setattr(mc, "report", lambda rows, peak, repeats: [r["model"] for r in rows])
    assert mc.run(quick=True) == list(mc.QUICK_MODELS)
    labels = mc.run(quick=False)
    assert set(mc.RECIPE_STUDY_MODELS) < set(labels)
    study_kwargs = [kwargs for label, _, kwargs in mc.MODELS if label in mc.RECIPE_STUDY_MODELS]
    assert mc.INSTANCE_DEEP_WIDE_S16 in study_kwargs
    assert mc.INSTANCE_WIDE in study_kwargs
    assert onnx.count("hybrid") >= len(mc.RECIPE_STUDY_MODELS) + 2


def test_model_cost_peak_memory_is_the_measuring_process_s_own_not_its_parent_s():
    """Linux carries ru_maxrss over fork and exec: a spawned child of a large parent would report the parent's peak
    (every network showed 4.7 GiB once the benchmark's parent had held a 2048² field)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from scripts.benchmarks.model_cost import _maxrss_bytes

    parent = np.ones(400 * 2**20 // 8)  # 400 MiB held by this process
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        child_peak = pool.submit(_maxrss_bytes).result()
    assert parent.sum() > 0
    assert child_peak < 300 * 2**20


def test_model_cost_times_a_network_in_onnx_runtime_and_reports_one_that_cannot_be_exported(monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from scripts.benchmarks import model_cost as mc

    timed = mc.measure_onnx("hybrid", {"features": (4, 8)}, (32, 32, 64), 2)
    assert timed["onnx_latency_s"] > 0

    def refuse(*args, **kwargs):
        raise RuntimeError("ONNX export of HybridUNet failed: a translation is missing\nlong exporter log")

    monkeypatch.setattr("scripts.networks.onnx_runtime.export_onnx", refuse)
    failed = mc.measure_onnx("hybrid", {"features": (4, 8)}, (32, 32, 64), 2)
    assert failed == {"onnx_error": "RuntimeError: ONNX export of HybridUNet failed: a translation is missing"}


def test_the_onnx_profile_splits_time_and_macs_at_full_resolution():
    """model_cost's evidence for the × FLOP-bound column: which share of the time and of the MACs is at full H×W."""
    pytest.importorskip("onnxruntime")
    from scripts.benchmarks import model_cost

    kwargs = {"features": [4, 8, 8], "encoder_conv": "factorized", "stem_spectral_stride": 8}
    profile = model_cost.profile_onnx("hybrid", kwargs, (32, 48, 16))
    assert set(profile) == {"onnx_full_res_time_share", "full_res_mac_share"}, profile
    assert 0 < profile["onnx_full_res_time_share"] < 1
    assert 0 < profile["full_res_mac_share"] < 1
    # every convolution of a network that never downsamples is at full resolution
    import torch

    _, macs, full = model_cost._count_macs(torch.nn.Conv2d(16, 3, 3, padding=1), torch.zeros(1, 16, 8, 8))
    assert macs == full == 8 * 8 * 3 * 9 * 16


# ----------------------------------------------------------------------------------- section headers


def _env(**extra):
    base = {"date": "2026-12-08", "cpu": "CPU", "cores": 2, "torch_threads": 2, "python": "3.11", "torch": "2"}
    return {**base, "monai": "1.6", "numpy": "2", "command": "python -m scripts.benchmark", **extra}


def test_section_header_names_the_weights_and_the_commit():
    from scripts.benchmark import _env_line

    shipped = {"used": "shipped", "version": "0.5.0", "md5": "1cf75126"}
    line = _env_line(_env(weights=shipped, commit="abc1234", uncommitted=False))
    assert "Weights: 0.5.0 (`models/model.pt` md5 `1cf75126`)." in line
    assert "Commit: `abc1234`. Command:" in line
    dirty = _env_line(_env(weights={**shipped, "used": "own"}, commit="abc1234", uncommitted=True))
    assert "Weights: trains its own networks" in dirty
    assert "0.5.0" not in dirty
    assert "Commit: `abc1234` + uncommitted changes." in dirty
    assert "Weights: not recorded. Commit: not recorded." in _env_line(_env())  # rows measured before both were


def test_every_section_declares_what_weights_it_uses():
    import importlib

    from scripts.benchmark import WEIGHTS_USED, section_weights
    from scripts.benchmarks import SECTIONS

    used = {
        name: section_weights(importlib.import_module(f"scripts.benchmarks.{name}"), {})["used"] for name in SECTIONS
    }
    assert set(used.values()) <= set(WEIGHTS_USED)
    assert used["comparison"] == used["recipes"] == used["instruments"] == "own"
    assert used["shipped"] == used["cells"] == used["qc"] == used["throughput"] == "shipped"


def test_shipped_weights_and_code_version_come_from_the_files_and_git(tmp_path):
    import subprocess

    from scripts.benchmark import code_version, shipped_weights

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "metadata.json").write_text('{"version": "9.9.9"}')
    (tmp_path / "model.pt").write_bytes(b"weights")
    info = shipped_weights(tmp_path / "model.pt", tmp_path / "configs" / "metadata.json")
    assert info == {"version": "9.9.9", "md5": hashlib.md5(b"weights").hexdigest()}
    assert shipped_weights(tmp_path / "none.pt", tmp_path / "none.json") == {"version": "unknown", "md5": "missing"}

    assert code_version(tmp_path)["commit"] == "unknown"  # not a git checkout
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "configs"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert code_version(tmp_path) == {"commit": head, "uncommitted": False}
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "new.py").write_text("")  # untracked: not counted
    (tmp_path / "notes.md").write_text("")
    assert code_version(tmp_path)["uncommitted"] is False
    (tmp_path / "configs" / "metadata.json").write_text('{"version": "9.9.10"}')
    assert code_version(tmp_path) == {"commit": head, "uncommitted": True}


def test_a_quick_section_run_records_its_weights_and_commit(tmp_path, monkeypatch):
    from scripts import benchmark

    monkeypatch.setattr(benchmark, "code_version", lambda: {"commit": "abc1234", "uncommitted": True})
    out = tmp_path / "results.md"
    benchmark.main(["--sections", "simulator", "--quick", "--out", str(out)])
    env = json.loads(out.with_suffix(".json").read_text())["simulator"]["environment"]
    assert env["weights"] == {"used": "none", **benchmark.shipped_weights()}
    assert (env["commit"], env["uncommitted"]) == ("abc1234", True)
    text = out.read_text()
    assert "Weights: no network. Commit: `abc1234` + uncommitted changes." in text
    assert text.index("<!-- begin:summary -->") < text.index("<!-- begin:simulator -->")


# ----------------------------------------------------------------------------------- the summary block


def test_github_anchors_of_the_section_headings():
    from scripts.benchmark import github_anchor

    assert github_anchor("Spectral axis vs chemistry, and partial windows") == (
        "spectral-axis-vs-chemistry-and-partial-windows"
    )
    assert github_anchor("Recipe and encoder study: hybrid-UNet vs nnU-Net's recipe") == (
        "recipe-and-encoder-study-hybrid-unet-vs-nnu-nets-recipe"
    )
    assert github_anchor("Adaptation: fine-tuned (configs/adapt.yaml)") == "adaptation-fine-tuned-configsadaptyaml"
    assert github_anchor("Windows of 512² × 64 – plans") == "windows-of-512²--64--plans"


def test_summary_block_goes_first_and_flags_older_weights():
    from scripts.benchmark import SUMMARY, summary_markdown, update_markdown

    text = "# R\n\nintro\n\n<!-- begin:qc -->\n## Quality check (OOD)\n\nbody\n<!-- end:qc -->\n"
    shipped = {"version": "0.5.0", "md5": "new"}
    qc = {
        "auroc_decision_overall": 0.9,
        "false_flag_rate": {"default": 0.0},
        "stacks": [{"kind": "default", "qc_flag": "ok"}, {"kind": "noise", "qc_flag": "flagged"}],
    }
    old = {"environment": {"date": "2026-11-29", "weights": {"used": "shipped", "version": "0.4.0", "md5": "old"}}}
    block = summary_markdown({"qc": {**old, **qc}}, text, shipped)
    assert "Shipped weights: **0.5.0**" in block
    assert "| AUROC 0.900; 1/1 corrupted stacks flagged;" in block
    assert "[qc](#quality-check-ood) | **0.4.0** (older: md5 `old`) | 2026-11-29, not recorded |" in block
    assert "not yet regenerated: [qc](#quality-check-ood) (0.4.0)." in block
    current = {"environment": {"date": "2026-12-08", "commit": "abc", "weights": {"used": "shipped", **shipped}}}
    block = summary_markdown({"qc": {**current, **qc}}, text, shipped)
    assert "| 0.5.0 | 2026-12-08, `abc` |" in block
    assert "not yet regenerated" not in block
    new = update_markdown(text, SUMMARY, block, first=True)
    assert new.index("<!-- begin:summary -->") < new.index("<!-- begin:qc -->")
    assert new.index("intro") < new.index("<!-- begin:summary -->")
    assert update_markdown(new, SUMMARY, block, first=True) == new


def test_summary_block_of_the_committed_results_is_current():
    """docs/results.md's summary is what the harness makes of docs/results.json, with every headline found and every
    link pointing at a section heading (``python -m scripts.benchmark --summary_only`` rewrites it)."""
    import re

    from scripts.benchmark import RESULTS_MD, SUMMARY, github_anchor, summary_markdown

    text = RESULTS_MD.read_text()
    block = re.search(rf"<!-- begin:{SUMMARY} -->\n(.*?)\n<!-- end:{SUMMARY} -->", text, re.DOTALL).group(1)
    assert block == summary_markdown(
        json.loads(RESULTS_MD.with_suffix(".json").read_text()), text
    ), "docs/results.md's summary is out of date: python -m scripts.benchmark --summary_only"
    assert "no headline" not in block
    anchors = {github_anchor(h) for h in re.findall(r"^## (.+)$", text, re.MULTILINE)}
    links = re.findall(r"\]\(#([^)]+)\)", block)
    assert len(links) >= 10
    assert set(links) <= anchors
