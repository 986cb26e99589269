"""Finding the checkpoint to resume an interrupted training from."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_EPOCH = re.compile(r"checkpoint_epoch=(\d+)\.pt$")


def resumable_checkpoint(checkpoint_dir: str | Path, max_epochs: int) -> str | None:
    """The newest ``checkpoint_epoch=N.pt`` in ``checkpoint_dir`` of a training that has not finished.

    The train workflow saves the model, optimizer, learning-rate scheduler and trainer state there
    after every epoch; loading it continues at the next epoch. A checkpoint of a training that
    already reached ``max_epochs`` is not resumed (a new run starts), and a checkpoint that cannot
    be read raises, naming the file.

    Returns:
        The path, or None when there is nothing to resume.
    """
    folder = Path(checkpoint_dir)
    found = sorted(
        ((int(m.group(1)), p) for p in folder.glob("*checkpoint_epoch=*.pt") if (m := _EPOCH.search(p.name))),
        reverse=True,
    )
    if not found:
        return None
    epoch, path = found[0]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RuntimeError(f"{path}: cannot read this training checkpoint ({e}); delete it to start afresh.") from e
    trainer_epoch = int(state.get("trainer", {}).get("epoch", epoch))
    if trainer_epoch >= max_epochs:
        logger.info(
            "%s: training already finished (%d/%d epochs); starting a new run.", path, trainer_epoch, max_epochs
        )
        return None
    logger.warning("Resuming an interrupted training from %s (epoch %d of %d).", path, trainer_epoch, max_epochs)
    return str(path)


class TrainingCheckpoint:
    """Ignite handler: save a resumable checkpoint every epoch and resume an interrupted training.

    The checkpoint holds ``save_dict`` (model, optimizer, scheduler …) plus the trainer's own state
    (epoch, iteration), which a bundle config cannot reference without a cycle; this handler adds
    the trainer when it is attached. Built on MONAI's ``CheckpointSaver`` and ``CheckpointLoader``.

    Args:
        checkpoint_dir: where ``checkpoint_epoch=N.pt`` is kept (only the newest).
        save_dict: objects with ``state_dict()``, e.g. ``{model: ..., optimizer: ..., lr_scheduler: ...}``.
        resume: continue from the newest checkpoint of an unfinished training (see
            :func:`resumable_checkpoint`).
        save: write checkpoints (False on non-zero ranks of a distributed run).
        save_interval: epochs between checkpoints.
        map_location: device for loading.
    """

    def __init__(
        self,
        checkpoint_dir: str | Path,
        save_dict: dict,
        resume: bool = True,
        save: bool = True,
        save_interval: int = 1,
        map_location=None,
    ):
        self.checkpoint_dir = Path(checkpoint_dir)
        self.save_dict = dict(save_dict)
        self.resume, self.save, self.save_interval, self.map_location = resume, save, save_interval, map_location
        self.resumed_from: str | None = None

    def attach(self, engine) -> None:
        from monai.handlers import CheckpointLoader, CheckpointSaver

        objects = {**self.save_dict, "trainer": engine}
        if self.resume:
            self.resumed_from = resumable_checkpoint(self.checkpoint_dir, engine.state.max_epochs)
            if self.resumed_from:
                CheckpointLoader(self.resumed_from, objects, map_location=self.map_location).attach(engine)
        if self.save:
            from ignite.engine import Events

            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            CheckpointSaver(
                str(self.checkpoint_dir), objects, save_interval=self.save_interval, n_saved=1, epoch_level=True
            ).attach(engine)
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self._remove_older)

    def _remove_older(self, engine) -> None:
        """After a resume the saver does not know the checkpoint resumed from: remove it once a newer one exists."""
        for p in self.checkpoint_dir.glob("*checkpoint_epoch=*.pt"):
            m = _EPOCH.search(p.name)
            if m and int(m.group(1)) < engine.state.epoch:
                p.unlink(missing_ok=True)
