"""A wall-time budget for training: stop at the end of the last epoch that fits, validated."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)


class TrainingTimeLimit:
    """Ignite handler ending training at an epoch boundary before ``limit_s`` seconds have passed.

    Unlike ``ignite.handlers.TimeLimit`` (which stops mid-epoch, possibly after the last validation),
    this handler checks at the end of every epoch whether one more epoch of the mean length so far
    would exceed the limit; if so it runs the validator for the epoch just finished (when the
    regular validation interval skipped it, so the best-model checkpoint sees the final weights)
    and terminates. The training checkpoint of that epoch is kept, so a later run with a larger
    budget resumes from it. Used by the benchmark to give every network the same compute budget;
    set ``time_limit_s`` in configs/train.yaml for cluster jobs with a time limit.

    Args:
        limit_s: wall-time budget in seconds, counted from the start of training.
        validator: the validation engine (``@validate#evaluator``), or None.
        val_interval: the epoch interval of the regular validation.
    """

    def __init__(self, limit_s: float, validator=None, val_interval: int = 1):
        if not limit_s or limit_s <= 0:
            raise ValueError(f"time_limit_s must be a positive number of seconds, got {limit_s!r}.")
        self.limit_s, self.validator, self.val_interval = float(limit_s), validator, int(val_interval)
        self.start: float | None = None
        self.first_epoch = 0
        self.stopped_at: int | None = None

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _started(self, engine) -> None:
        self.start, self.first_epoch = time.monotonic(), engine.state.epoch

    def __call__(self, engine) -> None:
        epoch = engine.state.epoch
        elapsed = time.monotonic() - (self.start if self.start is not None else time.monotonic())
        per_epoch = elapsed / max(1, epoch - self.first_epoch)
        if epoch >= engine.state.max_epochs or elapsed + per_epoch <= self.limit_s:
            return
        if self.validator is not None and epoch % self.val_interval:
            self.validator.run(epoch)
        self.stopped_at = epoch
        logger.info(
            "time limit: stopping after epoch %d of %d (%.0f s used, %.0f s per epoch, limit %.0f s)",
            epoch,
            engine.state.max_epochs,
            elapsed,
            per_epoch,
            self.limit_s,
        )
        engine.terminate()
