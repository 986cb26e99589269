"""Validation during training: every ``interval`` epochs and after the last one, so every run ends validated."""

from __future__ import annotations

from monai.handlers import ValidationHandler


class PeriodicValidation(ValidationHandler):
    """MONAI's epoch-level ``ValidationHandler`` that also validates the last epoch of the run.

    The best model (``ckpt_dir/model_name``) is written only after a validation. With validation
    every ``interval`` epochs alone, a run shorter than ``interval`` — a one-epoch fine-tune requested
    from MONAI Label, say — would never write it, and a longer run would leave its last epochs
    unjudged. (A run stopped early by :class:`~scripts.engine.time_limit.TrainingTimeLimit` is
    validated by that handler.)

    Args:
        interval: epochs between validations.
        validator: the validation engine.
        exec_at_start: also validate before the first epoch (e.g. to judge pretrained weights).
    """

    def __init__(self, interval: int, validator=None, exec_at_start: bool = False):
        super().__init__(interval=int(interval), validator=validator, epoch_level=True, exec_at_start=exec_at_start)

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        if self.exec_at_start:
            engine.add_event_handler(Events.STARTED, self)

    def _epoch_completed(self, engine) -> None:
        epoch = engine.state.epoch
        if epoch % self.interval == 0 or epoch == engine.state.max_epochs:
            self(engine)
