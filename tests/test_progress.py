"""Progress on long runs: periodic lines with rate and time left, quiet in CI; the sliding window's bar only for people."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Engine
from scripts.engine.inferers import FieldSlidingWindowInferer, window_starts
from scripts.engine.progress import ProgressLogger, interactive


class FakeClock:
    def __init__(self, step: float):
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_folder_progress_logs_rate_and_time_left_at_most_every_interval(caplog):
    progress = ProgressLogger(total=10, unit="stack", name="inference", interval_s=5, clock=FakeClock(2.0))
    engine = Engine(lambda e, b: None)
    progress.attach(engine)
    with caplog.at_level(logging.INFO, logger="scripts.engine.progress"):
        engine.run(range(10), max_epochs=1)
    # 2 s per stack: the first stack, then every third (>= 5 s apart), and always the last
    assert [line.split(",")[0] for line in progress.lines] == [
        "inference: 1/10 stacks (10 %)",
        "inference: 4/10 stacks (40 %)",
        "inference: 7/10 stacks (70 %)",
        "inference: 10/10 stacks (100 %)",
    ]
    assert "2.00 s per stack" in progress.lines[1]
    assert "left ~0:00:12" in progress.lines[1]  # 6 stacks left at 2 s each
    assert progress.lines == [r.getMessage() for r in caplog.records if r.name == "scripts.engine.progress"]


def test_training_progress_gives_the_time_left_for_the_whole_run():
    progress = ProgressLogger(unit="iteration", name="training", interval_s=1000, clock=FakeClock(1.0))
    engine = Engine(lambda e, b: None)
    progress.attach(engine)
    engine.run(range(4), max_epochs=3)
    assert progress.lines[0].startswith("training epoch 1/3: 1/4 iterations (25 %)")
    assert progress.lines[-1].startswith("training epoch 3/3: 4/4 iterations (100 %)")
    assert "run left ~0:00:11" in progress.lines[0]  # 3 + 2 × 4 iterations at ~1 s


@pytest.mark.parametrize(("ci", "expected"), [("true", False), ("", True)])
def test_progress_bars_only_for_a_terminal_outside_ci(monkeypatch, ci, expected):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert interactive() is expected
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert interactive() is False


def test_sliding_window_bar_only_for_many_windows_when_a_person_watches(monkeypatch):
    monkeypatch.setattr("scripts.engine.progress.interactive", lambda: True)
    inferer = FieldSlidingWindowInferer(roi_size=[32, 32], overlap=0.25, progress_min_windows=16)
    net = torch.nn.Conv2d(2, 3, 1)
    inferer(torch.rand(1, 2, 48, 48), net)
    assert inferer.progress is False  # 2 × 2 windows
    inferer(torch.rand(1, 2, 128, 128), net)
    assert inferer.progress is True  # 5 × 5 windows
    monkeypatch.setattr("scripts.engine.progress.interactive", lambda: False)
    inferer(torch.rand(1, 2, 128, 128), net)
    assert inferer.progress is False


def test_window_starts_are_monai_s():
    assert window_starts(128, 32, 0.25) == [0, 24, 48, 72, 96]
    assert window_starts(100, 32, 0.25) == [0, 24, 48, 68]  # the last window moved back to the border
    assert window_starts(20, 32, 0.25) == [0]
