"""Progress a person can see on long runs, quiet in CI logs.

- :class:`ProgressLogger`: an ignite handler that logs one line now and then with what is done,
  the rate and the time left, e.g. ``inference: 30/120 stacks (25 %), 2.6 s per stack, elapsed
  0:01:18, left ~0:03:54``; for training, the same per epoch plus the time left for the run. It
  logs at most every ``interval_s`` seconds (10 s when a person watches a terminal, 60 s in a log
  file or CI), and always at the first and the last item.
- :func:`interactive`: whether a person watches (standard error is a terminal and the ``CI``
  variable is not set); the sliding window's own progress bar
  (:class:`scripts.engine.inferers.FieldSlidingWindowInferer`, MONAI's ``progress``, tqdm) is
  shown only then.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import time

from scripts.engine.batch import rank_and_world_size

logger = logging.getLogger(__name__)


def interactive() -> bool:
    """True when standard error is a terminal and the ``CI`` environment variable is unset (or false)."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    try:
        return sys.stderr.isatty() and not ci
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


class ProgressLogger:
    """Ignite handler logging done / total, rate and time left at most every ``interval_s`` seconds.

    Args:
        total: number of iterations of a run (e.g. ``len(stacks)`` for folder inference, whose
            dataset has no length); default: the engine's ``epoch_length``.
        unit: what one iteration is (``"stack"``, ``"iteration"``).
        name: prefix of the line (``"inference"``, ``"training"``).
        interval_s: seconds between lines; default 10 when :func:`interactive`, else 60.
        clock: time source (tests).
    """

    def __init__(
        self, total: int | None = None, unit: str = "stack", name: str = "inference", interval_s=None, clock=None
    ):
        self.total = None if total is None else int(total)
        self.unit, self.name = unit, name
        self.interval_s = float(interval_s) if interval_s is not None else (10.0 if interactive() else 60.0)
        self.clock = clock or time.perf_counter
        self.lines: list[str] = []

    def attach(self, engine) -> None:
        """Log on ``engine``'s events; without an engine, call ``started()``, ``epoch_started(None)`` and
        ``iteration_completed(None)`` by hand (a loop over tiles)."""
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.EPOCH_STARTED, self.epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)

    def started(self, engine=None) -> None:
        self.run_done = 0  # iterations done in this run (a resumed training starts mid-way)
        self.busy = 0.0  # seconds from each epoch's start to its last iteration, summed over finished epochs
        self.epoch_start = self.last_iteration = None
        prefix = ""
        try:
            rank, world = rank_and_world_size()
            prefix = f"process {rank + 1} of {world}: " if world > 1 else ""
        except Exception:  # pragma: no cover - progress must never stop a run
            pass
        self.prefix = prefix

    def epoch_started(self, engine) -> None:
        if self.epoch_start is not None and self.last_iteration is not None:
            self.busy += self.last_iteration - self.epoch_start
        self.epoch_start, self.epoch_done, self.last = self.clock(), 0, None

    def iteration_completed(self, engine) -> None:
        self.epoch_done += 1
        self.run_done += 1
        now = self.last_iteration = self.clock()
        total = self.total or getattr(getattr(engine, "state", None), "epoch_length", None)
        last_item = total is not None and self.epoch_done >= total
        if self.last is not None and now - self.last < self.interval_s and not last_item:
            return
        self.last = now
        self.log(engine, now, total)

    def log(self, engine, now: float, total: int | None) -> str:
        elapsed = now - self.epoch_start
        rate = elapsed / self.epoch_done
        done = f"{self.epoch_done}/{total} {self.unit}s ({100 * self.epoch_done / total:.0f} %)" if total else ""
        done = done or f"{self.epoch_done} {self.unit}s"
        line = f"{self.prefix}{self.name}: {done}, {rate:.2f} s per {self.unit}, elapsed {_clock(elapsed)}"
        if total:
            line += f", left ~{_clock(rate * (total - self.epoch_done))}"
        max_epochs = getattr(getattr(engine, "state", None), "max_epochs", None) or 1
        if max_epochs > 1 and total:
            epoch = engine.state.epoch
            left = (total - self.epoch_done) + (max_epochs - epoch) * total
            run_rate = (self.busy + elapsed) / self.run_done
            line = f"{self.prefix}{self.name} epoch {epoch}/{max_epochs}: {line[len(self.prefix + self.name) + 2:]}"
            line += f"; run left ~{_clock(run_rate * left)} (without validation)"
        logger.info("%s", line)
        self.lines.append(line)
        return line
