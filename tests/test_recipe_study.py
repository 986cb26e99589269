"""Tests of the recipe and encoder study (scripts.benchmarks.recipes): its arms, budget and verdicts."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from scripts.benchmarks import comparison as cmp
from scripts.benchmarks import recipes
from scripts.benchmarks.bundle_runs import REPO
from scripts.networks import FAST_ENCODER, WIDE_HYBRID, HybridUNet, NNUNetStyle2D, UNet3DSpectral


def _parser(arm: cmp.Model) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(REPO / "configs" / "train.yaml"), *(str(REPO / f) for f in cmp.override_files(arm))])
    parser.update({"bundle_root": str(REPO), "device": "$torch.device('cpu')"})
    return parser


@pytest.mark.parametrize("arm", recipes.ARMS, ids=lambda a: a.key)
def test_every_arm_builds_its_network_and_optimizer_from_its_configs(arm):
    parser = _parser(arm)
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, {"hybrid": HybridUNet, "nnunet2d": NNUNetStyle2D, "unet3d": UNet3DSpectral}[arm.cost_kind])
    optimizer = parser.get_parsed_content("train#optimizer")
    expected = torch.optim.SGD if any(part in arm.key.split("_") for part in ("sgd", "recipe")) else torch.optim.AdamW
    assert isinstance(optimizer, expected)
    augmentation = parser.get_parsed_content("train#augmentation")
    shifts = [t.transform.max_shift for t in augmentation if type(t).__name__ == "RandSpectralShiftd"]
    assert shifts == [20.0 if arm.key.endswith("_shift20") else 4.0]  # calibration-shift augmentation, cm⁻¹


@pytest.mark.parametrize(
    "key",
    [
        "hybrid_fast",
        "hybrid_fast_instance",
        "hybrid_fast_instance_nnunet_recipe",
        "hybrid_fast_instance_wide",
        "nnunet_2d_recipe",
    ],
)
def test_the_latency_column_is_the_model_cost_row_of_the_arms_own_network(key):
    arm = recipes.ARM_BY_KEY[key]
    row = cmp.cost_of(recipes._resolved(arm), cmp.model_costs())
    if not row:
        pytest.skip("no model_cost section in docs/results.json")
    net = _parser(arm).get_parsed_content("network_def")
    inference = [p for name, p in net.named_parameters() if "deep_supervision_heads" not in name]  # training only
    assert row["parameters"] == sum(p.numel() for p in inference)


def test_train_and_inference_build_the_shipped_network_that_the_latency_table_and_the_study_describe():
    """train.yaml and inference.yaml build the network of the model-cost section's shipped row (``MODELS[0]``, a
    constant of scripts.networks), and the study's arms for that constant build it too: the latency table and the
    study measure what is shipped."""
    import scripts.networks
    from scripts.benchmarks import model_cost

    def arguments(net_def):
        kept = {k: v for k, v in net_def.items() if k not in ("_target_", "out_channels")}
        return json.loads(json.dumps(kept))  # YAML lists and the constant's tuples compared alike

    label, _, name = model_cost.MODELS[0]
    assert label == model_cost.DEFAULT_MODEL
    assert "shipped" in label
    expected = json.loads(json.dumps(getattr(scripts.networks, name)))
    arms = [arm for arm in recipes.ARMS if arm.cost_kwargs == {"__constant__": name}]
    assert arms, f"no study arm trains the shipped network {name}"
    for arm in arms:
        assert arguments(_parser(arm).get("network_def")) == expected, arm.key
    for config in ("configs/train.yaml", "configs/inference.yaml"):
        parser = ConfigParser()
        parser.read_config(REPO / config)
        assert arguments(parser.get("network_def")) == expected, config


def test_the_wide_hybrid_config_is_its_constant_and_reads_every_frame():
    net_def = _parser(recipes.ARM_BY_KEY["hybrid_wide"]).get("network_def")
    kept = {k: v for k, v in net_def.items() if k not in ("_target_", "out_channels")}
    assert json.loads(json.dumps(kept)) == json.loads(json.dumps(WIDE_HYBRID))
    assert HybridUNet(**WIDE_HYBRID).stem_unseen_frames(64) == []


def test_the_fast_encoder_config_is_the_fast_encoder_constant():
    net_def = _parser(recipes.ARM_BY_KEY["hybrid_fast"]).get("network_def")
    assert {k: v for k, v in net_def.items() if k not in ("_target_", "out_channels")} == FAST_ENCODER
    instance = _parser(recipes.ARM_BY_KEY["hybrid_fast_instance"]).get("network_def")
    layout = ("_target_", "out_channels", "norm", "channels_last")
    assert {k: v for k, v in instance.items() if k not in layout} == {
        k: v for k, v in FAST_ENCODER.items() if k not in layout
    }
    assert instance["norm"][0] == "instance"


def test_the_run_order_covers_every_arm_and_three_seeds_of_the_main_arms():
    assert {key for key, _ in recipes.ORDER} == set(recipes.ARM_BY_KEY)
    assert len(set(recipes.ORDER)) == len(recipes.ORDER)
    for key in ("hybrid_wide", "hybrid_fast", "hybrid_fast_instance", "nnunet_2d_recipe", "nnunet_2d"):
        assert sorted(s for k, s in recipes.ORDER if k == key) == [0, 1, 2]
    assert recipes.STUDY.patch == 128


def test_budget_scales_epochs_and_wall_time():
    plan = recipes.scaled(recipes.STUDY, 10)
    assert (plan.epochs, plan.time_limit_s) == (10 * recipes.STUDY.epochs, 10 * recipes.STUDY.time_limit_s)
    assert recipes.scaled(recipes.STUDY, 0.01).epochs == 1
    with pytest.raises(ValueError, match="--budget must be positive"):
        recipes.scaled(recipes.STUDY, 0)


def _entry(per_seed_dice: list[tuple[float, float]]) -> dict:
    """An arm scored on two stacks, each stack scoring the given (nucleus, droplet) Dice for that seed."""
    return {
        "seeds": {
            seed: {stem: {"gt": {"nucleus": {"dice": nuc}, "lipid_droplet": {"dice": ld}}} for stem in ("a", "b")}
            for seed, (nuc, ld) in enumerate(per_seed_dice)
        }
    }


def test_a_difference_within_the_seed_sd_is_a_tie():
    hybrid = _entry([(0.90, 0.80), (0.92, 0.84), (0.94, 0.88)])  # sd 0.016 / 0.033
    nnunet = _entry([(0.93, 0.70), (0.93, 0.70), (0.93, 0.70)])
    verdict = recipes.compare(hybrid, nnunet, ["a", "b"])
    assert verdict["nucleus"].startswith("tie (-0.010")
    assert verdict["lipid_droplet"].startswith("ahead (+0.140")
    assert recipes.compare(nnunet, hybrid, ["a", "b"])["lipid_droplet"].startswith("behind (-0.140")
    single = recipes.compare(_entry([(0.95, 0.90)]), _entry([(0.94, 0.91)]), ["a", "b"])
    assert single["nucleus"] == "ahead (one seed: no sd to call a tie) (+0.010)"  # no "seed sd nan"
    single = recipes.compare(_entry([(0.9, 0.9)]), _entry([(0.8, 0.8)]), ["a", "b"])
    assert "one seed" in single["nucleus"]
    assert single["nucleus"].startswith("ahead")
    assert not math.isnan(float(verdict["nucleus"].split("seed sd ")[1].rstrip(")")))


def test_ablation_switches_apply_on_top_of_the_instance_norm_fast_encoder():
    from scripts.networks.blocks import FactorizedMultiScaleBlock3D, MeanSpectralCompression, MeanSpectralPooling

    built = {
        name: _parser(recipes.ARM_BY_KEY[f"hybrid_fast_{name}"]).get_parsed_content("network_def")
        for name in recipes.ABLATIONS
    }
    for name, net in built.items():
        types = {type(m) for m in net.modules()}
        assert net.encoder_conv == "factorized"  # still the fast encoder, with instance normalisation
        assert any(isinstance(m, torch.nn.InstanceNorm3d) for m in net.modules())
        assert (FactorizedMultiScaleBlock3D not in types) == (name == "no_multiscale")
        assert (MeanSpectralPooling in types) == (name == "mean_pooling")
        assert (MeanSpectralCompression in types) == (name == "plain_compression")


def test_an_interrupted_run_resumes_and_counts_the_work_of_every_attempt(tmp_path):
    import os

    folder = tmp_path / "run"
    key = {"plan": {"epochs": 2}, "model": "hybrid_fast", "seed": 0}
    first = cmp._attempts(folder, key)
    assert len(first) == 1
    checkpoint = folder / "train" / "checkpoints" / "checkpoint_epoch=1.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"x")
    os.utime(checkpoint, (first[0]["start"] + 60, first[0]["start"] + 60))  # the last epoch saved a minute in
    resumed = cmp._attempts(folder, key)
    assert len(resumed) == 2
    assert resumed[0]["end"] - resumed[0]["start"] == pytest.approx(60)
    assert checkpoint.is_file()  # resumed from, not cleared
    # killed again before the next checkpoint: that attempt kept no work (not a negative duration)
    os.utime(checkpoint, (resumed[1]["start"] - 30, resumed[1]["start"] - 30))  # saved before it started
    again = cmp._attempts(folder, key)
    assert len(again) == 3
    assert again[1]["end"] == again[1]["start"]
    other = cmp._attempts(folder, {**key, "seed": 1})  # another plan: start afresh
    assert len(other) == 1
    assert not checkpoint.exists()


def test_max_hours_zero_reports_the_finished_runs_and_starts_none(tmp_path, monkeypatch):
    """`--sections recipes --max_hours 0`: the interim table of a study still running elsewhere."""
    plan = recipes.QUICK
    split = {"training": ["a"], "validation": ["b"], "test": ["c"]}
    monkeypatch.setattr(cmp, "build_data", lambda root, plan: {"split": split, "stems": {key: {} for key in "abc"}})
    monkeypatch.setattr(cmp, "truth_path", lambda root, data, stem: tmp_path / f"{stem}.nii.gz")
    monkeypatch.setattr(cmp, "run_phasor", lambda *a: {"c": tmp_path / "c_phasor.nii.gz"})
    monkeypatch.setattr(cmp, "write_datalist", lambda path, *a: path)
    monkeypatch.setattr(cmp, "read_labels", lambda path: None)
    monkeypatch.setattr(cmp, "score_method", lambda maps, stems, refs: {"scored": True})
    trained = []
    monkeypatch.setattr(cmp, "train_and_evaluate", lambda work, plan, arm, *a: trained.append(arm.key) or {"r": 1})
    done_arm = recipes.ARM_BY_KEY["hybrid_fast"]
    folder = cmp.run_dir(tmp_path / "runs", done_arm, "gt", 0)
    folder.mkdir(parents=True)
    (folder / "done.json").write_text(
        json.dumps({"plan": cmp._run_key(plan, done_arm, "gt", 0, "test"), "epochs_done": plan.epochs})
    )
    monkeypatch.setattr(recipes, "patch_windows", lambda *a: {})  # scoring, not training: its own test
    order = (("hybrid_fast", 0), ("nnunet_2d_recipe", 0))
    result = recipes.measure(plan, order, tmp_path / "data", tmp_path / "runs", max_hours=0)
    assert trained == ["hybrid_fast"]  # the finished run's cached record; no new training started
    assert set(result["arms"]) == {"hybrid_fast"}
    assert result["skipped"] == [["nnunet_2d_recipe", 0]]


def test_finished_runs_are_scored_once_more_with_windows_of_their_training_patch(tmp_path, monkeypatch):
    """The normalisation-statistics table: the seed-0 run of a window arm re-scored with patch-sized windows, once."""
    plan = recipes.QUICK  # 128² fields, 64² patches
    calls = []

    def evaluate(args, log_file):
        calls.append(args)
        out = Path(args[args.index("--output_dir") + 1])
        (out / "overlays").mkdir(parents=True)
        (out / "metrics.csv").write_text("val_mean_dice,0.5\n")
        return 1.0, 1.0, ""

    def scores(dice):
        return {c: {"dice": dice} for c in cmp.CLASSES}

    monkeypatch.setattr(cmp, "bundle_run", evaluate)
    monkeypatch.setattr(cmp, "score_method", lambda maps, stems, refs: {s: {"gt": scores(0.8)} for s in stems})
    arms = {
        "hybrid_fast": {"label": "hybrid", "seeds": {0: {"t": {"gt": scores(0.9)}}}},
        "nnunet_2d": {"label": "not a window arm", "seeds": {0: {"t": {"gt": scores(0.9)}}}},
    }
    (cmp.run_dir(tmp_path, recipes.ARM_BY_KEY["hybrid_fast"], "gt", 0) / "models").mkdir(parents=True)  # its weights
    windows = recipes.patch_windows(plan, tmp_path, tmp_path / "datalist.json", arms, ["t"], {})
    assert set(windows) == {"hybrid_fast"}
    (args,) = calls
    assert args[args.index("--val_roi_size") + 1] == "[64,64]"
    assert args[args.index("--output_dir") + 1].endswith("eval_roi64")
    assert args[args.index("--ckpt_dir") + 1] == str(
        cmp.run_dir(tmp_path, recipes.ARM_BY_KEY["hybrid_fast"], "gt", 0) / "models"
    )
    assert windows["hybrid_fast"]["windows"]["nucleus"]["mean"] == pytest.approx(0.8)
    assert windows["hybrid_fast"]["field"]["nucleus"]["mean"] == pytest.approx(0.9)
    assert recipes.patch_windows(plan, tmp_path, tmp_path / "datalist.json", arms, ["t"], {}) == windows
    assert len(calls) == 1  # the second call reads the scored label maps
    # a run taken from the committed report (no weights here) keeps the report's entry, if it has one
    assert recipes.patch_windows(plan, tmp_path / "fresh", tmp_path / "d.json", arms, ["t"], {}, windows) == windows
    assert recipes.patch_windows(plan, tmp_path / "fresh", tmp_path / "d.json", arms, ["t"], {}, {}) == {}
    assert len(calls) == 1
    text = recipes._windows_text(windows, arms, plan)
    assert "| hybrid | 0.900 | 0.900 | 64² | 0.800 | 0.800 | -0.100 / -0.100 |" in text
    assert "raise the Dice by more than 0.005 on a class for no arm, and lower it for hybrid" in text


def test_cross_instrument_stacks_change_one_instrument_property_each(tmp_path):
    import json

    from scripts.benchmarks import instruments
    from scripts.io.reader import read_hsrs

    stems = instruments.build_stacks(tmp_path, size=32, per_instrument=1)
    assert set(stems) == {i.key for i in instruments.INSTRUMENTS}
    params = json.loads((tmp_path / "data.json").read_text())["params"]
    shifts = {k: abs(params[f"{k}_0"]["calibration_shift_cm1"]) for k in ("shift5", "shift10", "shift20")}
    assert shifts == {"shift5": 5.0, "shift10": 10.0, "shift20": 20.0}
    assert params["res40_0"]["spectral_resolution_cm1"] == 40.0
    _, meta = read_hsrs(tmp_path / "images" / "frames32_0.nii.gz")
    assert len(meta["wavenumbers"]) == 32
    _, meta = read_hsrs(tmp_path / "images" / "window_0.nii.gz")
    assert round(float(min(meta["wavenumbers"]))) == 2830
    assert instruments.build_stacks(tmp_path, size=32, per_instrument=1) == stems  # done once, then reused


def test_a_run_is_redone_when_its_configs_content_changes_but_not_for_a_comment(tmp_path):
    """The study's runs are cached for hours: an edited network or recipe must not reuse a run of the old one."""
    override = tmp_path / "arm.yaml"
    arm = cmp.Model("arm", "an arm", str(override), "hybrid")

    def key(text):
        override.write_text(text)
        return cmp._run_key(recipes.STUDY, arm, "gt", 0, "test")

    base = key("network_def:\n  _target_: scripts.networks.HybridUNet\n  stem_spectral_kernel: 7\n")
    assert (
        key("# a comment\nnetwork_def:\n  _target_: scripts.networks.HybridUNet\n  stem_spectral_kernel: 7\n") == base
    )
    assert key("network_def:\n  _target_: scripts.networks.HybridUNet\n  stem_spectral_kernel: 9\n") != base


def test_a_run_recorded_in_results_json_is_taken_from_it_in_a_fresh_clone_unless_its_key_changed(tmp_path, monkeypatch):
    """Sessions start from a fresh clone: the study's finished runs must come back from the committed report (its
    per-image scores) instead of hours of retraining -- but only for the same plan, arm config and seed."""
    split = {"training": ["a"], "validation": ["b"], "test": ["c"]}
    stems = {key: {"preset": "easy"} for key in "abc"}
    monkeypatch.setattr(cmp, "build_data", lambda root, plan: {"split": split, "stems": stems})
    monkeypatch.setattr(cmp, "truth_path", lambda root, data, stem: tmp_path / f"{stem}.nii.gz")
    monkeypatch.setattr(cmp, "run_phasor", lambda *a: {"c": tmp_path / "c_phasor.nii.gz"})
    monkeypatch.setattr(cmp, "write_datalist", lambda path, *a: path)
    monkeypatch.setattr(cmp, "read_labels", lambda path: None)
    monkeypatch.setattr(cmp, "label_maps", lambda folder: {})
    dice = {"hybrid_fast": 0.8, "nnunet_2d_recipe": 0.9}
    trained = []

    def train(work, plan, arm, supervision, seed, *a):
        trained.append((arm.key, seed))
        monkeypatch.setattr(
            cmp,
            "score_method",
            lambda maps, test, refs: {
                "c": {r: {c: {"dice": dice[arm.key]} for c in cmp.CLASSES} for r in ("gt", "phasor")}
            },
        )
        return {
            "plan": cmp._run_key(plan, arm, supervision, seed, "test"),
            "epochs_done": plan.epochs,
            "stopped_by_time_limit": False,
            "best_val_mean_dice": 0.5,
            "best_epoch": 1,
            "train_wall_s": 60.0,
        }

    monkeypatch.setattr(cmp, "train_and_evaluate", train)
    order = (("hybrid_fast", 0), ("nnunet_2d_recipe", 0))
    first = recipes.measure(recipes.QUICK, order, tmp_path / "d1", tmp_path / "r1", windows=False)
    recorded = json.loads(json.dumps(recipes.report(first, recipes.QUICK, 1.0).data, default=float))
    assert trained == list(order)

    trained.clear()
    again = recipes.measure(recipes.QUICK, order, tmp_path / "d2", tmp_path / "r2", windows=False, recorded=recorded)
    assert trained == []  # nothing retrained: both runs come from the report
    for key in dice:
        assert again["arms"][key]["seeds"][0]["c"]["gt"]["nucleus"]["dice"] == dice[key]
    assert recipes.report(again, recipes.QUICK, 1.0).markdown == recipes.report(first, recipes.QUICK, 1.0).markdown

    longer = replace(recipes.QUICK, epochs=recipes.QUICK.epochs + 1)  # another plan: the record does not apply
    recipes.measure(longer, order[:1], tmp_path / "d3", tmp_path / "r3", windows=False, recorded=recorded)
    assert trained == [("hybrid_fast", 0)]


def test_the_cross_instrument_test_scores_exactly_the_runs_the_study_finished_under_the_same_key(tmp_path, monkeypatch):
    """instruments finds the study's runs by the study's own run key: a run of another plan (or of an edited config)
    is not scored as if it were this one, and a finished run is not missed."""
    from scripts.benchmarks import instruments

    plan = recipes.QUICK
    monkeypatch.setattr(instruments, "build_stacks", lambda root, size, per: {"canonical": ["s"]})
    monkeypatch.setattr(cmp, "write_datalist", lambda path, *a: path)
    monkeypatch.setattr(cmp, "read_labels", lambda path: None)
    monkeypatch.setattr(instruments, "phasor_maps", lambda root, work: {})
    scored = []
    monkeypatch.setattr(instruments, "evaluate_run", lambda run, arm, *a: scored.append(run.name) or {})
    monkeypatch.setattr(cmp, "score_method", lambda maps, stems, refs: {})
    for key, run_plan in (("hybrid_fast", plan), ("nnunet_2d_recipe", replace(plan, epochs=plan.epochs + 1))):
        folder = cmp.run_dir(tmp_path / "runs", recipes.ARM_BY_KEY[key], "gt", 0)
        folder.mkdir(parents=True)
        key_record = cmp._run_key(run_plan, recipes.ARM_BY_KEY[key], "gt", 0, "test")
        (folder / "done.json").write_text(json.dumps({"plan": key_record}))
    result = instruments.measure(tmp_path / "work", tmp_path / "runs", plan, size=32, per_instrument=1)
    assert scored == ["hybrid_fast_gt_s0"]  # the other run was trained for another plan
    assert set(result["methods"]) == {"hybrid_fast", "phasor_tuned"}
