"""scripts.engine.background_outputs: outputs written on a worker thread, in order, errors not lost, memory bounded."""

from __future__ import annotations

import threading
import time

import pytest
from ignite.engine import Engine
from scripts.engine.background_outputs import BackgroundOutputs


def _engine(stacks: int, segment_s: float = 0.0, started: list | None = None) -> Engine:
    def segment(engine, batch):
        if started is not None:
            started.append((batch, time.perf_counter()))
        time.sleep(segment_s)
        return [{"stem": f"s{batch}"}]

    return Engine(segment)


def test_every_item_goes_through_every_step_in_order_before_the_run_returns():
    log = []
    handler = BackgroundOutputs(
        [lambda item: log.append(("labels", item["stem"])), None, lambda item: log.append(("cells", item["stem"]))],
        on_completed=[lambda engine: log.append(("report", engine.state.iteration))],
    )
    engine = _engine(4)
    handler.attach(engine)
    engine.run(range(4), max_epochs=1)
    expected = [(step, f"s{i}") for i in range(4) for step in ("labels", "cells")] + [("report", 4)]
    assert log == expected


def test_the_next_stack_is_segmented_while_the_previous_one_is_written():
    started, written = [], {}

    def slow_write(item):
        time.sleep(0.3)
        written[item["stem"]] = (time.perf_counter(), threading.current_thread().name)

    engine = _engine(3, started=started)
    BackgroundOutputs([slow_write]).attach(engine)
    engine.run(range(3), max_epochs=1)
    assert set(written) == {"s0", "s1", "s2"}
    # stack 1 started before stack 0 was written, on another thread
    assert started[1][1] < written["s0"][0]
    assert written["s0"][1] != threading.current_thread().name


def test_without_background_the_steps_run_on_the_engine_thread():
    threads = []
    engine = _engine(2)
    BackgroundOutputs([lambda item: threads.append(threading.current_thread().name)], background=False).attach(engine)
    engine.run(range(2), max_epochs=1)
    assert threads == [threading.current_thread().name] * 2


def test_a_failing_step_stops_the_run_with_its_own_error():
    def disk_full(item):
        if item["stem"] == "s1":
            raise OSError(f"{item['stem']}.nii.gz: No space left on device")

    engine = _engine(6)
    BackgroundOutputs([disk_full]).attach(engine)
    with pytest.raises(OSError, match=r"s1\.nii\.gz: No space left on device"):
        engine.run(range(6), max_epochs=1)
    assert engine.state.iteration < 6  # stopped early, not only at the end


@pytest.mark.parametrize("max_pending", [1, 2])
def test_the_engine_waits_instead_of_queuing_more_than_max_pending(max_pending):
    written, unwritten = [], []

    def slow_write(item):
        time.sleep(0.05)
        written.append(item["stem"])

    def segment(engine, batch):
        unwritten.append(batch - len(written))  # stacks segmented before this one whose outputs are not written yet
        return [{"stem": batch}]

    engine = Engine(segment)
    BackgroundOutputs([slow_write], max_pending=max_pending).attach(engine)
    engine.run(range(8), max_epochs=1)
    assert written == list(range(8))
    assert max(unwritten) == max_pending  # the queue fills up to the bound, never beyond
