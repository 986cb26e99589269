"""Real processes: SIGKILL during a training (mid-save included), two inference runs into one folder, and the
one-line answer a user error gets on the command line.

The long kill loop is marked ``reliability`` (``make test-reliability``); the normal suite kills once, mid-save.
"""

from __future__ import annotations

import csv
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scripts.engine.checkpoints import checkpoint_files, trainer_epoch_of
from scripts.io.writer import write_stack
from scripts.simulation.phantom import simulate_phantom
from scripts.spectra.axis import CANONICAL_WAVENUMBERS

from tests.conftest import CONFIGS, META, NET, REPO, TRAIN, workflow

INFERENCE = str(CONFIGS / "inference.yaml")
TINY_ARGS = ["--patch_size", "[32, 32]", "--val_roi_size", "[64, 64]", "--num_samples", "2", "--val_interval", "1"]
NET_ARGS = ["--network_def#features", "[4, 8, 16, 32, 32]"]


def bundle_command(config: str) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", "run", "--config_file", config, "--meta_file", META]


def _env(pause_s: float | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HSRS_TEST_SAVE_PAUSE_S", None)
    if pause_s:
        env["HSRS_TEST_SAVE_PAUSE_S"] = str(pause_s)
    return env


def run_bundle(config: str, *args: str, env=None, preexec_fn=None, timeout=300) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` as a user types it (from the bundle root); stdout and stderr together."""
    cmd = [*bundle_command(config), *args]
    return subprocess.run(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or _env(),
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def tiny_model(trained: Path) -> list[str]:
    """Arguments for inference with the tiny network trained by the ``trained`` fixture (seconds per run)."""
    return ["--ckpt_dir", str(trained / "models"), "--roi_size", "[64, 64]", *NET_ARGS]


def tiny_model_overrides(trained: Path) -> dict:
    """The same, as ConfigWorkflow overrides."""
    return {"ckpt_dir": str(trained / "models"), "roi_size": [64, 64], **NET}


def _last_line(output: str) -> str:
    return [line for line in output.splitlines() if line.strip()][-1]


# ---------------------------------------------------------------------------------------- one-line user errors
def _field(folder: Path, size: int) -> Path:
    folder.mkdir()
    ph = simulate_phantom(0, 32, 32)
    return write_stack(folder / f"field{size}.nii.gz", ph.stack[:, :size, :size], ph.wavenumbers)


def test_a_1x1_field_ends_with_one_line_naming_the_file_and_a_16x16_field_is_segmented(tmp_path):
    one = _field(tmp_path / "one", 1)
    result = run_bundle(INFERENCE, "--dataset_dir", str(one.parent), "--output_dir", str(tmp_path / "o1"))
    assert result.returncode == 2, result.stdout[-3000:]
    assert _last_line(result.stdout) == (
        f"error: {one}: the field of view is 1×1 px, smaller than the networks' minimum field of 16×16 px."
    )
    assert "Traceback" not in result.stdout
    assert result.stdout.count("field of view") == 1

    sixteen = _field(tmp_path / "sixteen", 16)
    result = run_bundle(INFERENCE, "--dataset_dir", str(sixteen.parent), "--output_dir", str(tmp_path / "o16"))
    assert result.returncode == 0, result.stdout[-3000:]
    rows = list(csv.DictReader((tmp_path / "o16" / "summary.csv").open()))
    assert [(r["stem"], r["height"], r["width"], r["error"]) for r in rows] == [("field16", "16", "16", "")]


def _limit_file_size(max_bytes: int):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


def test_disk_full_during_inference_ends_with_one_line_and_keeps_what_was_written(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.csv").write_text("stem,image,error\nearlier,/data/earlier.nii.gz,\n")
    result = run_bundle(INFERENCE, "--output_dir", str(out), preexec_fn=_limit_file_size(15_000))  # TIFF maps: 16.7 kB
    assert result.returncode == 2, result.stdout[-3000:]
    last = _last_line(result.stdout)
    assert last.startswith(f"error: {out}/hsrs_default_s7_0000.tif: cannot write this file"), last
    assert "Traceback" not in result.stdout
    assert (out / "summary.csv").read_text() == "stem,image,error\nearlier,/data/earlier.nii.gz,\n"
    assert not [p for p in out.iterdir() if ".part" in p.name]


# ------------------------------------------------------------------------------------- skip_errors, pre-flight
def test_good_bad_good_with_skip_errors_writes_both_good_stacks_and_records_the_bad_one(
    sim_dir, trained, tmp_path, capfd
):
    folder = tmp_path / "in"
    folder.mkdir()
    images = sorted((sim_dir / "images").glob("*.nii.gz"))
    shutil.copy(images[0], folder / "a_good.nii.gz")
    (folder / "b_bad.nii.gz").write_bytes(images[1].read_bytes()[:20000])  # an interrupted copy: seen in its header
    shutil.copy(images[2], folder / "c_good.nii.gz")
    write_stack(folder / "d_blank.nii.gz", np.zeros((64, 32, 32), np.float32), CANONICAL_WAVENUMBERS)  # seen on loading

    result = run_bundle(INFERENCE, "--dataset_dir", str(folder), "--output_dir", str(tmp_path / "stop"))
    assert result.returncode == 2
    assert _last_line(result.stdout) == (
        f"error: {folder}/b_bad.nii.gz: the file is shorter than its header says (truncated: an interrupted copy or "
        "download?); copy it again."
    )
    assert not (tmp_path / "stop").exists()  # refused before any work

    out = tmp_path / "skip"
    wf = workflow(
        INFERENCE,
        "infer",
        dataset_dir=str(folder),
        output_dir=str(out),
        skip_errors=True,
        **tiny_model_overrides(trained),
    )
    wf.run()
    # d_blank is skipped in the DataLoader's worker process; the end-of-run line (logging.conf: stderr) still counts it
    assert "2 stack(s) written, 2 skipped (reasons in the 'error' column" in "".join(capfd.readouterr())
    rows = {r["stem"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert sorted(rows) == ["a_good", "b_bad", "c_good", "d_blank"]
    assert rows["a_good"]["error"] == rows["c_good"]["error"] == ""
    assert rows["a_good"]["nucleus_area_px"]
    assert "b_bad.nii.gz: the file is shorter than its header says" in rows["b_bad"]["error"]
    assert "d_blank.nii.gz: every pixel of every frame is 0" in rows["d_blank"]["error"]
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["a_good.nii.gz", "c_good.nii.gz"]


def test_two_inference_runs_into_one_folder_at_once_keep_every_stack(sim_dir, trained, tmp_path):
    images = sorted((sim_dir / "images").glob("*.nii.gz"))
    halves = [tmp_path / "first", tmp_path / "second"]
    for half, chunk in zip(halves, (images[:3], images[3:]), strict=True):
        half.mkdir()
        for image in chunk:
            shutil.copy(image, half / image.name)
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            [*bundle_command(INFERENCE), "--dataset_dir", str(half), "--output_dir", str(out), *tiny_model(trained)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(pause_s=0.05),  # widens every write, so the two runs' table updates overlap
        )
        for half in halves
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["stem"] for r in rows] == sorted(p.name[: -len(".nii.gz")] for p in images)
    assert all(r["nucleus_area_px"] != "" for r in rows)
    assert not [p for p in out.iterdir() if ".part" in p.name]


# --------------------------------------------------------------------------------------------- SIGKILL
def _train_popen(data: Path, run: Path, max_epochs: int, pause_s: float | None) -> subprocess.Popen:
    args = [
        "--dataset_dir",
        str(data),
        "--output_dir",
        str(run),
        "--max_epochs",
        str(max_epochs),
        *TINY_ARGS,
        *NET_ARGS,
    ]
    return subprocess.Popen(
        [*bundle_command(TRAIN), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(pause_s),
    )


def _wait(predicate, proc: subprocess.Popen, timeout: float = 240.0) -> bool:
    """Poll ``predicate`` until it holds (True) or the process ends or time runs out (False)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def _temporaries(folder: Path, name_glob: str) -> list[Path]:
    return list(folder.glob(f".{name_glob}.*.part*")) if folder.is_dir() else []


def _kill(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGKILL)
    return proc.communicate(timeout=60)[0]


def _check_after_kill(run: Path) -> tuple[int, float]:
    """The resume point and the best model load; returns (resumable epoch, best metric) (0, -1 when none yet)."""
    found = checkpoint_files(run / "checkpoints")
    epoch, best = 0, -1.0
    if found:
        state = torch.load(found[0][1], weights_only=True)  # the newest one: what the next run resumes
        epoch, best = trainer_epoch_of(state), float(state["validator"]["best_metric"])
    model = run / "models" / "model.pt"
    if model.exists():
        assert torch.load(model, weights_only=True)  # a whole state_dict
    return epoch, best


def test_sigkill_while_a_checkpoint_is_saved_keeps_the_previous_one_and_the_next_run_resumes(sim_dir, tmp_path):
    run = tmp_path / "run"
    proc = _train_popen(sim_dir, run, max_epochs=3, pause_s=0.3)
    first = run / "checkpoints" / "checkpoint_epoch=1.pt"
    reached = _wait(lambda: first.exists() and _temporaries(run / "checkpoints", "checkpoint_epoch=2.pt"), proc)
    if not reached:
        pytest.fail("training ended before its second checkpoint was saved:\n" + proc.communicate()[0][-3000:])
    time.sleep(0.45)  # within the save: the new file complete in its temporary name, not yet renamed
    _kill(proc)
    assert [p.name for _, p in checkpoint_files(run / "checkpoints")] == ["checkpoint_epoch=1.pt"]
    assert trainer_epoch_of(torch.load(first, weights_only=True)) == 1
    assert torch.load(run / "models" / "model.pt", weights_only=True)  # the best model of epoch 1, whole

    proc = _train_popen(sim_dir, run, max_epochs=3, pause_s=None)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output[-3000:]
    assert f"Resuming an interrupted training from {first}" in output
    assert "Epoch[1] Complete" not in output
    assert "Epoch[2] Complete" in output
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["checkpoint_epoch=3.pt"]  # no temporary left
    torch.load(run / "models" / "model.pt", weights_only=True)


@pytest.mark.reliability
def test_kill_loop_at_random_moments_and_mid_save_never_loses_the_resume_point_or_the_best_model(sim_dir, tmp_path):
    """SIGKILL a real training again and again (at a checkpoint save, at a best-model save, at random moments);
    after every kill the newest checkpoint and the best model load, and neither the epoch to resume nor the
    best metric goes back; a last run without a kill finishes the training from where the kills left it.

    ``HSRS_KILL_LOOP_ITERATIONS`` (default 12) and ``HSRS_KILL_LOOP_SEED`` (default 0) set the loop."""
    iterations = int(os.environ.get("HSRS_KILL_LOOP_ITERATIONS", "12"))
    rng = random.Random(int(os.environ.get("HSRS_KILL_LOOP_SEED", "0")))
    max_epochs, run = 25, tmp_path / "run"
    last_epoch, last_best, model_seen, kills, finished = 0, -1.0, False, [], False
    for i in range(iterations):
        proc = _train_popen(sim_dir, run, max_epochs, pause_s=0.2)
        mode = ("checkpoint save", "best-model save", "random moment")[i % 3]
        if mode == "checkpoint save":  # the next save, or the one after
            target = last_epoch + 1 + rng.choice([0, 1])
            hit = _wait(lambda t=target: _temporaries(run / "checkpoints", f"checkpoint_epoch={t}.pt"), proc)
        elif mode == "best-model save":
            hit = _wait(lambda: _temporaries(run / "models", "model.pt"), proc)
        else:
            hit = not _wait(lambda: False, proc, timeout=rng.uniform(5.0, 20.0))
        if proc.poll() is not None:  # the training ended before the kill
            output = proc.communicate()[0]
            assert proc.returncode == 0, output[-3000:]
            finished = True
            break
        if hit and mode != "random moment":
            time.sleep(rng.uniform(0.0, 0.5))  # anywhere in the save: empty, written, not yet renamed, renamed
        _kill(proc)
        kills.append(mode)
        epoch, best = _check_after_kill(run)
        print(f"kill {i + 1} at a {mode}: resumable epoch {epoch}, best metric {best:.4f}", flush=True)
        assert epoch >= last_epoch, f"kill {i} ({mode}): the resume point went back from {last_epoch} to {epoch}"
        assert best >= last_best, f"kill {i} ({mode}): the best metric went back from {last_best} to {best}"
        if model_seen:
            assert (run / "models" / "model.pt").is_file(), f"kill {i} ({mode}): the best model was lost"
        model_seen = model_seen or (run / "models" / "model.pt").is_file()
        last_epoch, last_best = epoch, best
    if not finished:
        proc = _train_popen(sim_dir, run, max_epochs, pause_s=None)
        output = proc.communicate(timeout=900)[0]
        assert proc.returncode == 0, output[-3000:]
        if last_epoch:
            assert "Resuming an interrupted training" in output
    final = torch.load(run / "checkpoints" / f"checkpoint_epoch={max_epochs}.pt", weights_only=True)
    assert trainer_epoch_of(final) == max_epochs
    assert final["validator"]["best_metric"] >= last_best
    torch.load(run / "models" / "model.pt", weights_only=True)
    assert [p.name for p in (run / "checkpoints").iterdir()] == [f"checkpoint_epoch={max_epochs}.pt"]
    assert len(kills) >= min(iterations, 3), kills
    print(f"{len(kills)} kills ({', '.join(kills)}); the last resumed from epoch {last_epoch}")
