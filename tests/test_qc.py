"""Quality check per image (scripts.qc): corrupted stacks flagged with the right reason, held-in ones not,
summary.csv columns, a missing reference file, the reference command."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
from scripts.qc.features import spectral_features
from scripts.qc.reference import build_reference, load_reference, score
from scripts.simulation.phantom import simulate_phantom

from tests.conftest import CONFIGS, workflow


@pytest.fixture(scope="module")
def spectral_reference():
    """Reference statistics of the spectral features of 12 default-preset phantoms (no network)."""
    rows = [
        spectral_features(ph.stack, ph.wavenumbers) for ph in (simulate_phantom([77, i], 64, 64) for i in range(12))
    ]
    return build_reference(rows)


def _held_in(i: int):
    return simulate_phantom([78, i], 64, 64)


@pytest.mark.parametrize("preset", ["default", "easy"])
def test_held_in_stacks_are_not_flagged(spectral_reference, preset):
    for i in range(3):
        ph = simulate_phantom([79, i], 64, 64, preset=preset)
        result = score(spectral_features(ph.stack, ph.wavenumbers), spectral_reference)
        assert result.flag == "ok", result.reason


def test_a_saturated_stack_is_flagged_for_saturation(spectral_reference):
    ph = _held_in(0)
    clipped = np.minimum(ph.stack, np.percentile(ph.stack, 70))
    result = score(spectral_features(clipped, ph.wavenumbers), spectral_reference)
    assert result.flag == "flagged"
    assert result.reason.startswith("saturation")


def test_a_reversed_axis_is_flagged_for_the_chemistry_misfit_and_the_axis_verdict(spectral_reference):
    ph = _held_in(1)
    features = spectral_features(ph.stack, ph.wavenumbers[::-1].copy())
    assert score(features, spectral_reference).reason.startswith("chemistry_misfit")
    result = score(features, spectral_reference, axis_check="reversed")
    assert result.flagged
    assert result.reason.startswith("axis_check reversed")
    assert "chemistry_misfit" in result.reason


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda ph, rng: rng.uniform(10, 1000, ph.stack.shape).astype(np.float32), "contrast_to_noise|chemistry"),
        (lambda ph, rng: np.repeat(ph.stack[30:31], 64, axis=0), "contrast_to_noise"),
        (lambda ph, rng: ph.stack + 5.0 * np.exp(-(ph.wavenumbers - 2800) / 100)[:, None, None], "background_ratio"),
    ],
    ids=["random noise", "repeated frame", "extreme background"],
)
def test_stacks_unlike_the_training_data_are_flagged_with_their_reason(spectral_reference, make, reason):
    import re

    ph = _held_in(2)
    result = score(spectral_features(make(ph, np.random.default_rng(0)), ph.wavenumbers), spectral_reference)
    assert result.flagged
    assert re.match(reason, result.reason), result.reason


def test_missing_reference_file_warns_once_and_scores_from_the_axis_check_only(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        reference = load_reference(tmp_path / "nope.json")
    assert reference is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "nope.json" in warnings[0].getMessage()
    assert "python -m scripts.qc" in warnings[0].getMessage()
    assert score({"saturation": 0.5}, None).columns() == {
        "ood_score": "",
        "qc_flag": "no_reference",
        "qc_reason": "no QC reference file: only the axis check was made",
    }
    assert score({}, None, axis_check="no_chemistry").flag == "flagged"


def test_unreadable_reference_file_is_a_warning_not_a_crash(tmp_path, caplog):
    path = tmp_path / "qc_reference.json"
    path.write_text("{not json")
    assert load_reference(path) is None
    assert any("cannot be read" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_reference_round_trips_through_its_json_file(tmp_path, spectral_reference):
    from scripts.qc.reference import save_reference

    path = save_reference(spectral_reference, tmp_path / "ref.json")
    assert load_reference(path) == spectral_reference
    assert json.loads(path.read_text())["features"]["saturation"]["spread"] > 0


def test_reference_command_and_inference_write_the_qc_columns_and_warn(tmp_path, capsys):
    """``python -m scripts.qc`` on a training datalist, then the inference workflow: summary.csv has ood_score,
    qc_flag and qc_reason; a saturated stack is flagged (WARNING naming the file), a held-in one is not."""
    from scripts.io.writer import write_stack
    from scripts.qc.__main__ import main
    from scripts.simulation.dataset import simulate_dataset

    simulate_dataset(tmp_path / "sim", num=10, seed=11, height=96, width=96)
    reference = tmp_path / "qc_reference.json"
    main(["--datalist", str(tmp_path / "sim" / "datalist.json"), "--output", str(reference)])
    info = json.loads(reference.read_text())
    assert info["stacks"] >= 6
    assert info["weights"] == "model.pt"
    assert len(info["weights_md5"]) == 32

    (tmp_path / "in").mkdir()
    held, sat = simulate_phantom([80, 0], 96, 96), simulate_phantom([80, 1], 96, 96)
    write_stack(tmp_path / "in" / "held.nii.gz", held.stack, held.wavenumbers)
    write_stack(tmp_path / "in" / "sat.nii.gz", np.minimum(sat.stack, np.percentile(sat.stack, 70)), sat.wavenumbers)
    common = {"dataset_dir": str(tmp_path / "in"), "cells": False}
    workflow(
        str(CONFIGS / "inference.yaml"), "infer", output_dir=str(tmp_path / "o"), qc_reference=str(reference), **common
    ).run()
    log = capsys.readouterr().out
    summary = {r["stem"]: r for r in csv.DictReader((tmp_path / "o" / "summary.csv").open())}
    assert {"ood_score", "qc_flag", "qc_reason"} <= set(summary["held"])
    assert summary["held"]["qc_flag"] == "ok", summary["held"]["qc_reason"]
    assert summary["sat"]["qc_flag"] == "flagged"
    # the clipped bright pixels carry no spectrum, so the axis check may name it too; saturation is always named
    assert "saturation" in summary["sat"]["qc_reason"]
    assert float(summary["sat"]["ood_score"]) > float(summary["held"]["ood_score"])
    flagged_lines = [line for line in log.splitlines() if "QC FLAGGED" in line]
    assert len(flagged_lines) == 1
    assert "WARNING" in flagged_lines[0]
    assert "sat.nii.gz" in flagged_lines[0]

    # no reference file: one warning, empty scores, the run completes; qc off: the columns say so
    workflow(
        str(CONFIGS / "inference.yaml"),
        "infer",
        output_dir=str(tmp_path / "o2"),
        qc_reference=str(tmp_path / "none.json"),
        **common,
    ).run()
    rows = list(csv.DictReader((tmp_path / "o2" / "summary.csv").open()))
    flags = {r["stem"]: (r["ood_score"], r["qc_flag"]) for r in rows}
    assert flags["held"] == ("", "no_reference")
    # without a reference only the axis check flags: the clipped stack's bright pixels carry no spectrum
    assert flags["sat"][0] == ""
    assert flags["sat"][1] in ("no_reference", "flagged")
    assert capsys.readouterr().out.count("QC reference") == 1
    workflow(str(CONFIGS / "inference.yaml"), "infer", output_dir=str(tmp_path / "o3"), qc=False, **common).run()
    assert [r["qc_flag"] for r in csv.DictReader((tmp_path / "o3" / "summary.csv").open())] == ["off", "off"]
