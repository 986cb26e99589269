"""scripts.engine.checkpoints / time_limit: atomic checkpoints, and a resume that restores what decides the next save."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from scripts.engine.checkpoints import AtomicDiskSaver, resumable_checkpoint
from scripts.io.errors import HSRSInputError, HSRSOutputError, find_user_error

from tests.conftest import EVALUATE, NET, TINY, TRAIN, learned_weights, workflow


def _engine(epoch: int) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.state.epoch = epoch
    return engine


def test_atomic_disk_saver_removes_the_old_checkpoint_only_after_the_new_one_is_complete(tmp_path, monkeypatch):
    net = torch.nn.Linear(2, 2)
    checkpoint = Checkpoint(
        {"model": net}, AtomicDiskSaver(tmp_path), score_function=lambda e: e.state.epoch, score_name="epoch", n_saved=1
    )
    checkpoint(_engine(1))
    assert [p.name for p in tmp_path.iterdir()] == ["model_epoch=1.pt"]

    def disk_full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(Path, "write_bytes", disk_full)
        with pytest.raises(HSRSOutputError, match=r"model_epoch=2\.pt: cannot write this file \(No space left"):
            checkpoint(_engine(2))
    assert [p.name for p in tmp_path.iterdir()] == ["model_epoch=1.pt"]  # ignite asked to remove it: it stays
    torch.load(tmp_path / "model_epoch=1.pt", weights_only=True)
    checkpoint(_engine(3))
    assert [p.name for p in tmp_path.iterdir()] == ["model_epoch=3.pt"]


def test_an_unreadable_newest_checkpoint_is_passed_over_for_an_older_one(trained, tmp_path):
    src = next((trained / "run" / "checkpoints").glob("*.pt"))
    shutil.copy(src, tmp_path / "checkpoint_epoch=1.pt")
    (tmp_path / "checkpoint_epoch=2.pt").write_bytes(b"")  # as a non-atomic saver left it
    assert resumable_checkpoint(tmp_path, max_epochs=5) == str(tmp_path / "checkpoint_epoch=1.pt")
    (tmp_path / "checkpoint_epoch=1.pt").unlink()
    with pytest.raises(
        HSRSInputError, match=r"checkpoint_epoch=2\.pt: cannot read this training checkpoint .*--resume false"
    ):
        resumable_checkpoint(tmp_path, max_epochs=5)


def _resume_setup(trained, tmp_path, edit=None) -> Path:
    """A run folder holding the tiny training's epoch-1 checkpoint (edited by ``edit``), as if interrupted after it."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    state = torch.load(next((trained / "run" / "checkpoints").glob("*.pt")), weights_only=True)
    if edit:
        edit(state)
    torch.save(state, run / "checkpoints" / "checkpoint_epoch=1.pt")
    return run


def _train(sim_dir, run: Path, max_epochs: int = 2, **override):
    wf = workflow(
        TRAIN,
        "train",
        dataset_dir=str(sim_dir),
        output_dir=str(run),
        max_epochs=max_epochs,
        **{**TINY, **NET, **override},
    )
    epochs = []
    wf.parser.get_parsed_content("train#trainer").add_event_handler(
        Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch)
    )
    wf.run()
    return wf, epochs


def test_the_checkpoint_holds_the_best_metric_and_the_model_goes_to_the_output_folder(trained):
    state = torch.load(next((trained / "run" / "checkpoints").glob("*.pt")), weights_only=True)
    assert state["validator"]["best_metric_epoch"] == 1
    assert 0.0 <= state["validator"]["best_metric"] <= 1.0
    assert (trained / "models" / "model.pt").is_file()


def test_a_resumed_run_does_not_overwrite_a_better_model(sim_dir, trained, tmp_path):
    def better_before(state):
        state["validator"]["best_metric"] = 0.99  # the interrupted run had found a model this good at epoch 1

    run = _resume_setup(trained, tmp_path, better_before)
    (run / "models").mkdir()
    shutil.copy(trained / "models" / "model.pt", run / "models" / "model.pt")
    before = (run / "models" / "model.pt").read_bytes()
    wf, epochs = _train(sim_dir, run)
    assert epochs == [2]
    assert (run / "models" / "model.pt").read_bytes() == before  # the first validation after the resume is worse
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    assert (evaluator.state.best_metric, evaluator.state.best_metric_epoch) == (0.99, 1)
    assert (
        torch.load(run / "checkpoints" / "checkpoint_epoch=2.pt", weights_only=True)["validator"]["best_metric"] == 0.99
    )


def test_resume_writes_the_best_model_a_kill_kept_from_being_written(sim_dir, trained, tmp_path):
    run = _resume_setup(trained, tmp_path)  # checkpoint of epoch 1, whose validation was the best; no model.pt yet
    _, epochs = _train(sim_dir, run, learning_rate=0.0)  # epoch 2 validates the same weights: not better
    assert epochs == [2]
    written = torch.load(run / "models" / "model.pt", weights_only=True)
    expected = torch.load(run / "checkpoints" / "checkpoint_epoch=2.pt", weights_only=True)["model"]
    # the same weights (lr 0); batch-norm running statistics moved on in epoch 2's training
    assert all(torch.equal(written[k], expected[k]) for k in learned_weights(expected))


def test_the_time_budget_counts_across_resumes(sim_dir, trained, tmp_path):
    def used_100_s(state):
        state["trainer"]["time_used_s"], state["trainer"]["time_epochs"] = 100.0, 1

    run = _resume_setup(trained, tmp_path, used_100_s)
    _, epochs = _train(sim_dir, run, max_epochs=3, time_limit_s=50)
    assert epochs == [2]  # ignite counts the epoch it was about to start; the EPOCH_STARTED check ends the run there
    assert [p.name for p in (run / "checkpoints").glob("*.pt")] == ["checkpoint_epoch=1.pt"]  # nothing trained


def test_ckpt_dir_decides_where_the_best_model_goes(tmp_path):
    train = workflow(TRAIN, "train", output_dir=str(tmp_path / "o"), **NET)
    assert train.parser.get_parsed_content("ckpt_dir") == str(tmp_path / "o") + "/models"  # never the shipped models/
    evaluate = workflow([TRAIN, EVALUATE], "eval", **NET)
    assert (
        Path(evaluate.parser.get_parsed_content("ckpt_dir")).resolve()
        == (Path(TRAIN).parent.parent / "models").resolve()
    )


def test_a_datalist_edited_between_runs_is_refused_in_one_line_and_the_run_stays_resumable(sim_dir, trained, tmp_path):
    from scripts.io.preflight import PreflightError

    run = _resume_setup(trained, tmp_path)
    saved = (run / "checkpoints" / "checkpoint_epoch=1.pt").read_bytes()
    datalist = json.loads((sim_dir / "datalist.json").read_text())
    datalist["validation"].append({"image": "images/renamed.nii.gz", "label": "labels/renamed.nii.gz"})
    edited = sim_dir / "edited_datalist.json"  # beside the data: listed paths are relative to the datalist
    edited.write_text(json.dumps(datalist))
    try:
        with pytest.raises(Exception) as excinfo:
            _train(sim_dir, run, datalist_file=str(edited))
    finally:
        edited.unlink()
    error = find_user_error(excinfo.value)
    assert isinstance(error, PreflightError)
    assert str(error).splitlines()[1:] == [
        f"{sim_dir}/images/renamed.nii.gz: does not exist (listed in {edited}, 'validation' entry 1, image)",
        f"{sim_dir}/labels/renamed.nii.gz: does not exist (listed in {edited}, 'validation' entry 1, label)",
    ]
    assert (run / "checkpoints" / "checkpoint_epoch=1.pt").read_bytes() == saved


# ------------------------------------------------------------------------ what MONAI Label (or any short run) needs
def test_a_checkpoint_of_a_training_on_other_data_is_not_resumed(trained, tmp_path, caplog):
    """E.g. an earlier MONAI Label request: its checkpoint, learning-rate schedule and all, must not hijack a new one."""
    from scripts.engine.checkpoints import run_digest

    src = next((trained / "run" / "checkpoints").glob("*.pt"))
    saved = torch.load(src, weights_only=True)["run"]["data_sha1"]
    shutil.copy(src, tmp_path / src.name)
    assert resumable_checkpoint(tmp_path, max_epochs=5, digest=saved) == str(tmp_path / src.name)
    other = run_digest([{"image": "/elsewhere/a.nii.gz", "label": "/elsewhere/a_label.nii.gz"}])
    assert other != saved
    assert resumable_checkpoint(tmp_path, max_epochs=5, digest=other) is None
    assert "a training on other data" in caplog.text


def test_train_handlers_leave_monai_label_its_pretrained_loader():
    """MONAI Label adds a loader of the served weights only when no train handler is spelled CheckpointLoader."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(TRAIN)
    assert not [h for h in parser.get("train#handlers") if h.get("_target_") == "CheckpointLoader"]


def test_pretrained_weights_are_loaded_and_a_short_run_ends_validated(trained, sim_dir, tmp_path):
    """--pretrained loads the weights; a run shorter than val_interval still validates its last epoch and writes
    its best model (with learning rate 0 it must be the pretrained model itself)."""
    pretrained = trained / "models" / "model.pt"
    wf = workflow(
        TRAIN,
        "train",
        dataset_dir=str(sim_dir),
        output_dir=str(tmp_path / "run"),
        max_epochs=1,
        pretrained=str(pretrained),
        learning_rate=0.0,
        **{**TINY, "val_interval": 5},
        **NET,
    )
    wf.run()
    wf.finalize()
    best = torch.load(tmp_path / "run" / "models" / "model.pt", weights_only=True)  # the default ckpt_dir
    start = torch.load(pretrained, weights_only=True)
    assert best.keys() == start.keys()
    for name in learned_weights(start):  # batch-norm running statistics keep updating in training mode
        torch.testing.assert_close(best[name], start[name], msg=name)
