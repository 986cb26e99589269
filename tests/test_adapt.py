"""configs/adapt.yaml (scripts.adapt): the split, pseudo-labels, the loss with ignored pixels, and the workflow end to end
on tiny data (64×80 phantoms, the tiny training run's weights, one epoch on the CPU)."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scripts.adapt.job import SUMMARY_COLUMNS, AdaptationJob, qc_exclusion
from scripts.adapt.loss import DiceCEIgnoreLoss
from scripts.adapt.pseudo_labels import IGNORE_INDEX, agreement, mean_agreement, pseudo_labels
from scripts.adapt.split import split_stacks
from scripts.adapt.transforms import IgnoreUnmaskedd
from scripts.io.errors import HSRSInputError, HSRSOptionError

from tests.conftest import CONFIGS, NET, REPO, TINY, raises_with, workflow

ADAPT = str(CONFIGS / "adapt.yaml")
TINY_TRAIN = {**TINY, **NET}
TINY_INFER = {"roi_size": [64, 64], **NET}


def _md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ units
def test_split_is_deterministic_holds_out_at_least_one_and_keeps_one_to_adapt_on():
    stems = [f"s{i}" for i in range(10)]
    adapt, held = split_stacks(stems, 0.25, seed=3)
    assert (adapt, held) == split_stacks(list(reversed(stems)), 0.25, seed=3)
    assert len(held) == 2
    assert not set(adapt) & set(held)
    assert sorted(adapt + held) == stems
    assert split_stacks(stems, 0.25, seed=4) != (adapt, held)
    assert len(split_stacks(stems[:2], 0.01)[1]) == 1
    assert len(split_stacks(stems[:2], 0.99)[0]) == 1
    with pytest.raises(HSRSInputError, match="at least 2 stacks"):
        split_stacks(["only"], 0.25)
    with pytest.raises(HSRSOptionError, match="held_out_fraction"):
        split_stacks(stems, 1.0)


def test_pseudo_labels_of_each_source():
    net = np.array([[0, 1, 2, 1]], np.uint8)
    conf = np.array([[0.99, 0.95, 0.5, 0.97]])
    phasor = np.array([[0, 1, 2, 0]], np.uint8)
    labels, mask = pseudo_labels("network", net, conf, threshold=0.9)
    assert labels.tolist() == net.tolist()
    assert mask.tolist() == [[1, 1, 0, 1]]
    labels, mask = pseudo_labels("consensus", net, conf, phasor, threshold=0.9)
    assert mask.tolist() == [[1, 1, 0, 0]]
    labels, mask = pseudo_labels("phasor", phasor_labels=phasor)
    assert labels.tolist() == phasor.tolist()
    assert mask.all()
    with pytest.raises(HSRSOptionError, match="pseudo_labels must be one of"):
        pseudo_labels("truth", net, conf)
    with pytest.raises(HSRSOptionError, match="confidence threshold"):
        pseudo_labels("network", net, conf, threshold=0.0)


def test_agreement_is_dice_per_class_and_nan_without_the_class():
    scores = agreement(np.array([[1, 1, 2, 0]]), np.array([[1, 0, 2, 0]]))
    assert scores == {"nucleus": pytest.approx(2 / 3), "lipid_droplet": 1.0}
    assert np.isnan(agreement(np.array([[1]]), np.array([[0]]))["nucleus"])
    assert mean_agreement([scores, {"nucleus": float("nan"), "lipid_droplet": 0.0}]) == pytest.approx((5 / 6 + 0) / 2)


def test_ignored_pixels_leave_the_loss_as_if_they_were_not_there():
    from monai.losses import DiceCELoss

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    labels = torch.randint(0, 3, (2, 1, 8, 8))
    reference = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    loss = DiceCEIgnoreLoss(batch=True)
    assert torch.isclose(loss(logits, labels), reference(logits, labels))  # nothing ignored: train.yaml's loss
    ignored = labels.clone()
    ignored[..., 4:] = IGNORE_INDEX
    value = loss(logits, ignored)
    assert torch.isclose(value, loss(logits[..., :4], labels[..., :4]))
    value.backward()
    assert logits.grad[..., 4:].abs().max() == 0  # no gradient from ignored pixels
    assert loss(logits, torch.full_like(labels, IGNORE_INDEX)).item() == 0.0


def test_ignore_transform_marks_unmasked_pixels_and_drops_the_mask():
    item = {"label": torch.tensor([[[1, 2], [0, 1]]]), "mask": torch.tensor([[[1, 0], [1, 0]]]), "image": 0}
    out = IgnoreUnmaskedd(keys="label")(item)
    assert out["label"].tolist() == [[[1, IGNORE_INDEX], [0, IGNORE_INDEX]]]
    assert "mask" not in out
    assert IgnoreUnmaskedd(keys="label")({"label": torch.tensor([[[1]]])})["label"].tolist() == [[[1]]]


def test_qc_gate():
    flagged = {"ood_score": "9", "qc_flag": "flagged", "qc_reason": "entropy", "axis_check": "ok", "error": ""}
    axis = {"ood_score": "1", "qc_flag": "flagged", "qc_reason": "axis", "axis_check": "reversed", "error": ""}
    assert qc_exclusion(flagged, "score", 5.0) == "QC ood_score 9 > 5"
    assert qc_exclusion(axis, "score", 5.0) == ""
    assert qc_exclusion(axis, "flag", 5.0).startswith("QC flagged")
    assert qc_exclusion({**axis, "axis_check": "no_chemistry"}, "score", 5.0).startswith("QC: the axis check")
    assert qc_exclusion(flagged, "off", 5.0) == ""
    assert qc_exclusion({"error": "unreadable"}, "off").startswith("not segmented")
    with pytest.raises(HSRSOptionError, match="qc_gate"):
        qc_exclusion(flagged, "strict")


# ------------------------------------------------------------------------------------------ end to end
def _noise_name(stems: list[str]) -> str:
    """A name for the noise stack that the split puts among the adaptation stacks."""
    for i in range(100):
        name = f"noise_{i}"
        if name in split_stacks([*stems, name], 0.25, seed=0)[0]:
            return name
    raise AssertionError("no name found")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Five 64×80 phantoms (not square: a transposed confidence map would not fit) and one stack of noise."""
    from scripts.io.writer import write_stack
    from scripts.simulation.dataset import simulate_dataset

    root = tmp_path_factory.mktemp("adapt_data")
    simulate_dataset(root, num=5, seed=11, height=64, width=80)
    images = root / "images"
    stems = sorted(p.name[: -len(".nii.gz")] for p in images.glob("*.nii.gz"))
    rng = np.random.default_rng(0)
    write_stack(
        images / f"{_noise_name(stems)}.nii.gz",
        rng.uniform(10, 1000, (64, 64, 80)).astype(np.float32),
        np.linspace(2800, 3050, 64),
    )
    return images


def _adapt(folder: Path, out: Path, pretrained: Path, **override):
    wf = workflow(
        ADAPT,
        None,
        dataset_dir=str(folder),
        output_dir=str(out),
        pretrained=str(pretrained),
        qc_reference=str(out.parent / "no_reference.json"),  # the tiny weights have none: QC from the axis check
        confidence=0.4,
        max_epochs=1,
        train_overrides=TINY_TRAIN,
        inference_overrides=TINY_INFER,
        **override,
    )
    wf.run()
    return wf


@pytest.fixture(scope="module")
def adapted(folder, trained, tmp_path_factory):
    shipped = REPO / "models" / "model.pt"
    md5 = _md5(shipped)
    out = tmp_path_factory.mktemp("adapt") / "out"
    _adapt(folder, out, trained / "models" / "model.pt")
    assert _md5(shipped) == md5  # the bundle's weights are never written
    return out


def test_adaptation_writes_weights_in_the_output_folder_and_keeps_the_pretrained(adapted, trained):
    pretrained = trained / "models" / "model.pt"
    record = json.loads((adapted / "adaptation.json").read_text())
    weights = adapted / "models" / "model.pt"
    assert record["weights"] == str(weights)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert state.keys() == torch.load(pretrained, map_location="cpu", weights_only=True).keys()
    chosen = adapted / "train" / "models" / "model.pt" if record["selected"] == "adapted" else pretrained
    assert record["selected"] in ("adapted", "pretrained")
    assert _md5(weights) == _md5(chosen)
    assert (adapted / "train" / "models" / "model.pt").is_file()
    assert record["criterion_before"] == record["criterion_before"]  # a number, not NaN


def test_summary_has_before_and_after_for_every_stack(adapted, folder):
    rows = list(csv.DictReader((adapted / "summary.csv").open()))
    stems = sorted(p.name[: -len(".nii.gz")] for p in folder.glob("*.nii.gz"))
    assert [r["stem"] for r in rows] == stems
    assert list(rows[0]) == SUMMARY_COLUMNS
    for row in rows:
        for column in ("nucleus_area_px", "lipid_droplet_count", "qc_flag"):
            assert row[f"{column}_before"] != "", (row["stem"], column)
            assert row[f"{column}_after"] != "", (row["stem"], column)
    held = [r for r in rows if r["split"] == "held_out"]
    assert held
    assert all(r["pseudo_labels"] == "held out" for r in held)
    assert all(r["phasor_agreement_nucleus_before"] != "" for r in held if r["phasor_qc"] and not r["error"])


def test_held_out_stacks_are_not_trained_on(adapted, folder):
    split = json.loads((adapted / "split.json").read_text())
    datalist = json.loads((adapted / "datalist.json").read_text())
    trained_on = {Path(i["image"]).name for i in datalist["training"]}
    held = {f"{s}.nii.gz" for s in split["held_out"]}
    assert trained_on
    assert not trained_on & held
    assert {Path(i["image"]).name for i in datalist["validation"]} <= held
    assert all(Path(i["mask"]).is_file() for i in datalist["training"])
    assert (split["adaptation"], split["held_out"]) == split_stacks(
        [p.name[: -len(".nii.gz")] for p in folder.glob("*.nii.gz")], 0.25, 0
    )


def test_the_qc_leaves_a_noise_stack_out_of_the_pseudo_labels(adapted):
    rows = {r["stem"]: r for r in csv.DictReader((adapted / "summary.csv").open())}
    noise = next(s for s in rows if s.startswith("noise"))
    assert rows[noise]["split"] == "adaptation"
    assert rows[noise]["pseudo_labels"].startswith("left out: ")
    record = json.loads((adapted / "adaptation.json").read_text())
    assert noise in record["excluded"]
    assert noise not in record["pseudo_label_stacks"]


def test_pseudo_labels_are_the_network_s_labels_on_the_pixels_used(adapted):
    from scripts.io.reader import read_hsrs

    datalist = json.loads((adapted / "datalist.json").read_text())
    for item in datalist["training"]:
        stem = Path(item["image"]).name[: -len(".nii.gz")]
        labels, mask = read_hsrs(item["label"])[0], read_hsrs(item["mask"])[0]
        network = read_hsrs(adapted / "before" / f"{stem}.nii.gz")[0]
        confidence = np.load(adapted / "before" / "confidence" / f"{stem}.npy")
        assert confidence.shape == labels.shape[-2:] == (64, 80)
        used = mask.astype(bool)
        assert used.any()
        assert (labels[used] == network[used]).all()
        assert (confidence[used[0]] >= 0.4).all()


def test_a_rerun_resumes_and_redoes_no_finished_step(adapted, folder, trained, capfd):
    before = {p: p.stat().st_mtime_ns for p in (adapted / "before").glob("*.nii.gz")}
    checkpoints = {p: p.stat().st_mtime_ns for p in (adapted / "train" / "checkpoints").glob("*.pt")}
    assert before
    assert checkpoints
    _adapt(folder, adapted, trained / "models" / "model.pt")
    assert {p: p.stat().st_mtime_ns for p in (adapted / "before").glob("*.nii.gz")} == before
    assert {p: p.stat().st_mtime_ns for p in (adapted / "train" / "checkpoints").glob("*.pt")} == checkpoints
    log = "".join(capfd.readouterr())  # the workflows log through configs/logging.conf (to the console)
    assert "fine-tuning in" in log
    assert "not repeated" in log
    assert "adaptation, before: segmenting" not in log  # neither inference pass ran again
    assert "adaptation, after: segmenting" not in log


def test_output_folder_whose_models_holds_the_pretrained_weights_is_refused(folder, trained):
    with pytest.raises(HSRSOptionError, match="never replace them"):
        AdaptationJob(folder, trained, pretrained=trained / "models" / "model.pt")


def test_a_bad_stack_ends_the_command_with_one_line_naming_it(folder, trained, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(folder.glob("*.nii.gz"))[:3]:
        (data / p.name).write_bytes(p.read_bytes())
    (data / "broken.nii.gz").write_bytes(b"not a NIfTI file")
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        ADAPT,
        "--dataset_dir",
        str(data),
        "--output_dir",
        str(tmp_path / "out"),
        "--pretrained",
        str(trained / "models" / "model.pt"),
        "--inference_overrides",
        json.dumps(TINY_INFER),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert "broken.nii.gz" in proc.stderr.split("error: ", 1)[1]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "models" / "model.pt").exists()


def test_adapt_config_refuses_an_unknown_pseudo_label_source(folder, trained, tmp_path):
    wf = workflow(ADAPT, None, dataset_dir=str(folder), output_dir=str(tmp_path), pseudo_labels="truth")
    with pytest.raises(Exception) as excinfo:
        wf.parser.get_parsed_content("adaptation")
    raises_with(excinfo, r"pseudo_labels must be one of \('network', 'phasor', 'consensus'\), got 'truth'")
