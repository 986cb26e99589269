"""A wall-time budget for training: stop at the end of the last epoch that fits, validated."""

from __future__ import annotations

import logging
import time

from scripts.io.errors import HSRSOptionError

logger = logging.getLogger(__name__)


class TrainingTimeLimit:
    """Ignite handler ending training at an epoch boundary before ``limit_s`` seconds of training have passed.

    Unlike ``ignite.handlers.TimeLimit`` (which stops mid-epoch, possibly after the last validation),
    this handler checks at the end of every epoch whether one more epoch of the mean length so far
    would exceed the limit; if so it runs the validator for the epoch just finished (when the
    regular validation interval skipped it, so the best-model checkpoint sees the final weights)
    and terminates. The training checkpoint of that epoch is kept. Used by the benchmark to give
    every network the same compute budget; set ``time_limit_s`` in configs/train.yaml for a
    budget of your own.

    The budget counts the whole training, across resumes: the time used and the epochs completed
    are kept in the trainer's state (``time_used_s``, ``time_epochs``, added to its
    ``state_dict_user_keys`` -- ignite's facility for this), so the training checkpoint holds them; a
    resumed run gets only what is left, and a run that stopped at its limit does nothing more when
    started again with the same limit (a larger ``time_limit_s`` continues it).

    Args:
        limit_s: wall-time budget in seconds for the whole training.
        validator: the validation engine (``@validate#evaluator``), or None.
        val_interval: the epoch interval of the regular validation.
    """

    #: trainer state attributes (checkpointed with the trainer)
    USED, EPOCHS = "time_used_s", "time_epochs"

    def __init__(self, limit_s: float, validator=None, val_interval: int = 1):
        if isinstance(limit_s, bool) or not isinstance(limit_s, int | float) or not limit_s > 0:
            raise HSRSOptionError(f"time_limit_s must be a positive number of seconds, got {limit_s!r}.")
        self.limit_s = float(limit_s)
        self.validator, self.val_interval = validator, int(val_interval)
        self.mark: float | None = None
        self.first_epoch_of_run = True
        self.stopped_at: int | None = None

    def attach(self, engine) -> None:
        from ignite.engine import Events

        for key in (self.USED, self.EPOCHS):
            if key not in engine.state_dict_user_keys:
                engine.state_dict_user_keys.append(key)
            if not hasattr(engine.state, key):
                setattr(engine.state, key, 0.0 if key == self.USED else 0)
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._check_budget_left)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _started(self, engine) -> None:
        self.mark, self.first_epoch_of_run = time.monotonic(), True

    def _account(self, engine) -> float:
        """Add the time since the last mark to the trainer's account; returns the seconds used so far."""
        now = time.monotonic()
        used = float(getattr(engine.state, self.USED, 0.0)) + (now - self.mark if self.mark is not None else 0.0)
        setattr(engine.state, self.USED, used)
        self.mark = now
        return used

    def _check_budget_left(self, engine) -> None:
        """At the first epoch of a run: stop at once when the training it resumes has used its budget."""
        epochs = int(getattr(engine.state, self.EPOCHS, 0))
        used = self._account(engine)
        first, self.first_epoch_of_run = self.first_epoch_of_run, False
        if first and epochs and used + used / epochs > self.limit_s:
            self.stopped_at = engine.state.epoch - 1
            logger.warning(
                "time limit: the training used %.0f s of its %.0f s budget in %d epochs; no epoch is left (pass a "
                "larger --time_limit_s to continue it).",
                used,
                self.limit_s,
                epochs,
            )
            engine.terminate()

    def __call__(self, engine) -> None:
        setattr(engine.state, self.EPOCHS, int(getattr(engine.state, self.EPOCHS, 0)) + 1)
        elapsed = self._account(engine)
        epoch, per_epoch = engine.state.epoch, elapsed / getattr(engine.state, self.EPOCHS)
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
