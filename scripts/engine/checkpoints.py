"""Checkpoints that survive ``kill -9``: resumable training checkpoints and the best model, saved atomically.

- :class:`AtomicDiskSaver` -- ignite ``DiskSaver`` that writes a checkpoint to a temporary file in
  the same folder, flushes it to disk and renames it over the target
  (:func:`scripts.io.atomic.atomic_path`), and deletes the files it replaces only after that. (ignite's
  ``Checkpoint`` asks its saver to remove the previous file *before* saving the new one, and MONAI's
  ``CheckpointSaver`` writes in place: a kill during the save left no usable file.)
- :class:`TrainingCheckpoint` -- trainer handler: save ``checkpoint_epoch=N.pt`` (model, optimizer,
  scheduler, trainer with its time-limit account, validator with its best metric and epoch) after
  every epoch, after every other end-of-epoch handler; resume an interrupted training from it.
- :class:`BestModelCheckpoint` -- validator handler: save the model to ``ckpt_dir/model.pt`` when the
  key metric beats the best so far; the validator's best metric and epoch are part of the training
  checkpoint, so a resumed training never replaces a better model with a worse one.

At any moment of a kill, the newest complete training checkpoint and the newest complete best
model are on disk, and what the checkpoint says about the best model matches the model file.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader
from scripts.io.atomic import atomic_path, is_temporary, remove_stale_temporaries
from scripts.io.errors import HSRSInputError, HSRSOptionError, as_bool

logger = logging.getLogger(__name__)

_EPOCH = re.compile(r"checkpoint_epoch=(\d+)\.pt$")


def _rank() -> int:
    import ignite.distributed as idist

    return idist.get_rank()


class AtomicDiskSaver(DiskSaver):
    """ignite ``DiskSaver`` that saves atomically and durably and never deletes a file before its successor exists.

    ``__call__`` serialises the checkpoint (``torch.save``), writes it to a temporary file in
    ``dirname``, flushes it to disk and renames it onto the target; only then are the files that
    ignite's ``Checkpoint`` asked to ``remove`` deleted. A disk-full or vanished folder raises
    :class:`~scripts.io.errors.HSRSOutputError` naming the file, and leaves the previous file in place.

    Args:
        dirname: folder of the checkpoints (created if missing).
        filename: a fixed file name for every save (e.g. ``model.pt``); None keeps ignite's names.
        save_on_rank: the process that writes in a distributed run.
        kwargs: passed to ``torch.save``.
    """

    def __init__(self, dirname: str | Path, filename: str | None = None, save_on_rank: int = 0, **kwargs: Any):
        super().__init__(
            dirname, atomic=True, create_dir=True, require_empty=False, save_on_rank=save_on_rank, **kwargs
        )
        self.filename = filename
        self._to_remove: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if _rank() != self.save_on_rank:
            return
        name = self.filename or filename
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer, **self.kwargs)  # in memory first: write errors then surface as OSError
        with atomic_path(self.dirname / name) as tmp:
            tmp.write_bytes(buffer.getbuffer())
        for old in self._to_remove:
            if old != name:
                (self.dirname / old).unlink(missing_ok=True)
        self._to_remove = []

    def remove(self, filename: str) -> None:
        """Called by ignite before it saves the file's successor: deleted after that save succeeds."""
        self._to_remove.append(self.filename or filename)


def _state_dicts(save_dict: Mapping[str, Any]) -> Any:
    """``{name: state_dict}`` of the objects (DataParallel unwrapped); a single object's state_dict bare, as MONAI saves it."""
    out = {}
    for name, obj in save_dict.items():
        if isinstance(obj, torch.nn.DataParallel | torch.nn.parallel.DistributedDataParallel):
            obj = obj.module
        out[name] = obj.state_dict()
    return next(iter(out.values())) if len(out) == 1 else out


def checkpoint_files(checkpoint_dir: str | Path) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of the training checkpoints in a folder, newest epoch first (temporary files left out)."""
    folder = Path(checkpoint_dir)
    found = [
        (int(m.group(1)), p)
        for p in folder.glob("*checkpoint_epoch=*.pt")
        if not is_temporary(p) and (m := _EPOCH.search(p.name))
    ]
    return sorted(found, reverse=True)


def trainer_epoch_of(checkpoint: Mapping, default: int = 0) -> int:
    """The epoch a training checkpoint was saved at (ignite stores the iteration and the epoch length)."""
    trainer = checkpoint.get("trainer", {})
    if "epoch" in trainer:
        return int(trainer["epoch"])
    if trainer.get("epoch_length"):
        return int(trainer.get("iteration", 0)) // int(trainer["epoch_length"])
    return default


def run_digest(training_data: Any) -> str:
    """A short fingerprint of what a training learns from (its datalist items, as JSON), to tell runs apart."""
    blob = json.dumps(training_data, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


class _RunIdentity:
    """The fingerprint of the training data, saved in every training checkpoint (ignite saves ``state_dict()``)."""

    def __init__(self, digest: str):
        self.digest = digest

    def state_dict(self) -> dict[str, str]:
        return {"data_sha1": self.digest}

    def load_state_dict(self, state: Mapping[str, str]) -> None:  # identity is checked before loading, not restored
        pass


def resumable_checkpoint(checkpoint_dir: str | Path, max_epochs: int, digest: str | None = None) -> str | None:
    """The newest readable ``checkpoint_epoch=N.pt`` in ``checkpoint_dir`` of a training that has not finished.

    The train workflow saves the model, optimizer, learning-rate scheduler, trainer, best-model
    and time-limit state there after every epoch; loading it continues at the next epoch. A
    checkpoint of a training that already reached ``max_epochs`` is not resumed (a new run starts,
    logged), nor one of a training on other data (``digest``, see :func:`run_digest`: e.g. an earlier
    MONAI Label request, or a changed datalist; logged). A checkpoint that cannot be read is passed
    over for an older one (logged); when none can be read, :class:`~scripts.io.errors.HSRSInputError`
    names the file.

    Returns:
        The path, or None when there is nothing to resume.
    """
    unreadable: list[tuple[Path, Exception]] = []
    for epoch, path in checkpoint_files(checkpoint_dir):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            logger.warning("%s: cannot read this training checkpoint (%s); trying an older one.", path, e)
            unreadable.append((path, e))
            continue
        trainer_epoch = trainer_epoch_of(state, default=epoch)
        saved_digest = state.get("run", {}).get("data_sha1")
        if digest is not None and saved_digest is not None and saved_digest != digest:
            logger.warning(
                "%s: a checkpoint of a training on other data (another datalist or another request); starting a new "
                "training in this output folder: its checkpoint and best model are replaced as the new one progresses.",
                path,
            )
            return None
        if trainer_epoch >= max_epochs:
            logger.warning(
                "%s: this training already finished (%d of %d epochs); starting a new training in this output folder: "
                "its checkpoint and best model are replaced as the new one progresses (raise --max_epochs to continue "
                "the finished one instead).",
                path,
                trainer_epoch,
                max_epochs,
            )
            return None
        logger.warning("Resuming an interrupted training from %s (epoch %d of %d).", path, trainer_epoch, max_epochs)
        return str(path)
    if unreadable:
        path, e = unreadable[0]
        raise HSRSInputError(
            f"{path}: cannot read this training checkpoint ({type(e).__name__}: {e}); delete it, or pass --resume false "
            "to start afresh."
        )
    return None


class BestModelCheckpoint:
    """Validator handler: save ``save_dict`` to ``save_dir/filename`` whenever the key metric beats the best so far.

    The rule is the validator's own (MONAI's ``metric_cmp_fn``: the first validation saves, later
    ones when the metric is greater), and so is the record: the validator's ``best_metric`` and
    ``best_metric_epoch``, which this handler adds to the validator's ``state_dict``
    (``state_dict_user_keys``, ignite's facility for this). With the validator in a
    :class:`TrainingCheckpoint`'s ``save_dict``, the record is checkpointed and restored on resume,
    so a resumed training never replaces a better model with a worse one. The file holds the bare
    ``state_dict`` of a single object (``{model: network}`` gives what ``CheckpointLoader`` and
    MONAI Label load), written by :class:`AtomicDiskSaver`.

    When a :class:`TrainingCheckpoint` checkpoints the validator, it also decides *when* the model
    is written: right after the training checkpoint of the same epoch, so that a kill between the
    two is repaired on resume (the resumed weights are that epoch's: the model is written again).
    Otherwise the model is written right after the validation.

    Args:
        save_dir: folder of the best model (the workflows' ``ckpt_dir``).
        save_dict: ``{"model": network}``.
        filename: file name (the workflows' ``model_name``).
        save: write the file (False on non-zero ranks of a distributed run).
    """

    _of_engine: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(
        self, save_dir: str | Path, save_dict: Mapping[str, Any], filename: str = "model.pt", save: bool = True
    ):
        self.save_dir, self.filename = Path(save_dir), str(filename)
        self.save_dict = dict(save_dict)
        self.save = as_bool(save, "save")
        self.deferred = False  # set by TrainingCheckpoint: write after the training checkpoint of the epoch
        self._engine = None
        self._best_before: tuple[Any, int] = (-1, -1)
        self._pending = False
        self._saver = AtomicDiskSaver(self.save_dir, filename=self.filename) if self.save else None

    @classmethod
    def of(cls, engine) -> BestModelCheckpoint | None:
        """The handler attached to ``engine``, if any."""
        try:
            return cls._of_engine.get(engine)
        except TypeError:
            return None

    @property
    def path(self) -> Path:
        return self.save_dir / self.filename

    def attach(self, engine) -> None:
        from ignite.engine import Events

        if not getattr(engine.state, "key_metric_name", None):
            raise ValueError("BestModelCheckpoint needs a validator with a key metric (key_val_metric).")
        self._engine = engine
        BestModelCheckpoint._of_engine[engine] = self
        for key in ("best_metric", "best_metric_epoch"):
            if key not in engine.state_dict_user_keys:
                engine.state_dict_user_keys.append(key)
        if self.save:
            remove_stale_temporaries(self.save_dir, self.filename)
        engine.add_event_handler(Events.EPOCH_STARTED, self._remember_best)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._validated)

    @property
    def best(self) -> tuple[Any, int]:
        """(best metric, its epoch) of the validator; epoch -1 before the first validation."""
        return self._engine.state.best_metric, int(self._engine.state.best_metric_epoch)

    def _remember_best(self, engine) -> None:
        self._best_before = (engine.state.best_metric, int(engine.state.best_metric_epoch))

    def _validated(self, engine) -> None:
        value = engine.state.metrics[engine.state.key_metric_name]
        value = float(value) if isinstance(value, int | float) or getattr(value, "ndim", 1) == 0 else value
        best, best_epoch = self._best_before
        if best_epoch >= 0 and not engine.metric_cmp_fn(value, best):
            return
        engine.state.best_metric, engine.state.best_metric_epoch = value, int(engine.state.epoch)
        self._pending = True
        if not self.deferred:
            self.write_pending()

    def write_pending(self) -> None:
        """Write the model if a validation found a new best since the last write."""
        if not self._pending:
            return
        self._pending = False
        if self._saver is None:
            return
        self._saver(_state_dicts(self.save_dict), self.filename)
        best, epoch = self.best
        logger.info("best model so far (%s %.4f at epoch %d) saved to %s", self._key(), float(best), epoch, self.path)

    def _key(self) -> str:
        return str(self._engine.state.key_metric_name)

    def resumed(self, epoch: int) -> None:
        """After the training checkpoint of ``epoch`` was loaded: repair a best model a kill kept from being written."""
        best, best_epoch = self.best
        if best_epoch < 0 or not self.save:
            return
        if best_epoch == epoch:  # the weights just loaded are the best model's: write it (again)
            self._pending = True
            self.write_pending()
        elif not self.path.is_file():
            logger.warning(
                "%s is missing although the resumed training found its best model at epoch %d (%s %.4f); the next "
                "validation saves a new best model.",
                self.path,
                best_epoch,
                self._key(),
                float(best),
            )
            self._engine.state.best_metric, self._engine.state.best_metric_epoch = -1, -1


class TrainingCheckpoint:
    """Trainer handler: save a resumable checkpoint every epoch and resume an interrupted training.

    The checkpoint holds ``save_dict`` (model, optimizer, scheduler, the validator) plus the
    trainer's own state (epoch, iteration and the ``state_dict_user_keys`` of handlers such as
    :class:`~scripts.engine.time_limit.TrainingTimeLimit`), which a bundle config cannot reference
    without a cycle; this handler adds the trainer when it is attached. Entries that are None are
    left out. The validator's state carries its best metric and epoch (:class:`BestModelCheckpoint`).

    It is saved with ignite's ``Checkpoint`` and :class:`AtomicDiskSaver` at the end of the epoch,
    *after every other end-of-epoch handler* (validation, time limit, learning-rate step), so it
    records what they decided; then the validator's :class:`BestModelCheckpoint` writes a new best
    model. The previous checkpoint is deleted only once the new one is complete.

    Args:
        checkpoint_dir: where ``checkpoint_epoch=N.pt`` is kept (only the newest).
        save_dict: objects with ``state_dict()``, e.g. ``{model: ..., optimizer: ..., lr_scheduler: ..., validator: ...}``.
        resume: continue from the newest checkpoint of an unfinished training (see
            :func:`resumable_checkpoint`).
        save: write checkpoints (False on non-zero ranks of a distributed run).
        save_interval: epochs between checkpoints.
        map_location: device for loading.
        run_data: what the training learns from (``@train#dataset#data``): its fingerprint is saved, and a
            checkpoint of a training on other data is not resumed.
    """

    def __init__(
        self,
        checkpoint_dir: str | Path,
        save_dict: Mapping[str, Any],
        resume: bool = True,
        save: bool = True,
        save_interval: int = 1,
        map_location=None,
        run_data: Any = None,
    ):
        self.checkpoint_dir = Path(checkpoint_dir)
        self.save_dict = {k: v for k, v in dict(save_dict).items() if v is not None}
        self.digest = run_digest(run_data) if run_data is not None else None
        if self.digest is not None:
            self.save_dict["run"] = _RunIdentity(self.digest)
        self.resume, self.save = as_bool(resume, "resume"), as_bool(save, "save")
        self.save_interval, self.map_location = int(save_interval), map_location
        self.resumed_from: str | None = None
        self._checkpoint: Checkpoint | None = None
        self._objects: dict[str, Any] = {}
        self._registered = False

    def _best_model_savers(self) -> list[BestModelCheckpoint]:
        found = (BestModelCheckpoint.of(obj) for obj in self.save_dict.values())
        return [b for b in found if b is not None]

    def attach(self, engine) -> None:
        from ignite.engine import Events

        self._objects = {**self.save_dict, "trainer": engine}
        for best in self._best_model_savers():
            best.deferred = True
        if self.resume:
            self.resumed_from = resumable_checkpoint(self.checkpoint_dir, engine.state.max_epochs, self.digest)
            if self.resumed_from:
                engine.add_event_handler(Events.STARTED, self._load)
        if self.save:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.checkpoint_dir.glob(".*checkpoint_epoch=*.part*"):  # left by a killed run
                if is_temporary(stale):
                    stale.unlink(missing_ok=True)
            self._checkpoint = Checkpoint(
                self._objects,
                AtomicDiskSaver(self.checkpoint_dir),
                score_function=lambda e: e.state.epoch,
                score_name="epoch",
                n_saved=1,
            )
        # registered when the run starts, i.e. after every other handler: it runs last at the end of each epoch
        engine.add_event_handler(Events.STARTED, self._register_epoch_end)

    def _load(self, engine) -> None:
        """Restore every object from the resumed checkpoint (as MONAI's ``CheckpointLoader``, tolerant of older files)."""
        from ignite.engine import Engine

        checkpoint = dict(torch.load(self.resumed_from, map_location=self.map_location, weights_only=True))
        missing = [k for k in self._objects if k not in checkpoint]
        if missing:
            logger.warning("%s holds no %s (an older checkpoint); they start afresh.", self.resumed_from, missing)
        to_load = {k: v for k, v in self._objects.items() if k in checkpoint}
        for name, obj in to_load.items():  # state added by newer handlers: keep the current (initial) value
            if isinstance(obj, Engine):
                checkpoint[name] = {**{k: getattr(obj.state, k) for k in obj.state_dict_user_keys}, **checkpoint[name]}
        max_epochs = engine.state.max_epochs  # the configured max_epochs wins over the checkpoint's
        Checkpoint.load_objects(to_load=to_load, checkpoint=checkpoint)
        engine.state.max_epochs = max_epochs
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise HSRSOptionError(
                f"{self.resumed_from}: the training to resume is at epoch {engine.state.epoch}, beyond --max_epochs "
                f"{max_epochs}; raise --max_epochs, or pass --resume false to start afresh."
            )
        logger.info("Restored all variables from %s", self.resumed_from)
        for best in self._best_model_savers():
            best.resumed(engine.state.epoch)

    def _register_epoch_end(self, engine) -> None:
        from ignite.engine import Events

        if not self._registered:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_end)
            self._registered = True

    def _epoch_end(self, engine) -> None:
        if self._checkpoint is not None and engine.state.epoch % self.save_interval == 0:
            self._checkpoint(engine)
            self._remove_others(engine.state.epoch)
            logger.info("Saved checkpoint at epoch: %d", engine.state.epoch)
        for best in self._best_model_savers():
            best.write_pending()

    def _remove_others(self, epoch: int) -> None:
        """Keep only the checkpoint just written (also those of an earlier run the saver does not know)."""
        for other_epoch, path in checkpoint_files(self.checkpoint_dir):
            if other_epoch != epoch:
                path.unlink(missing_ok=True)


class ModelWeightsLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` for one weights file, whose absence is a one-line user error.

    The file is checked when the handler is built (:func:`scripts.io.preflight.model_file`), before any
    stack is read; a disabled handler (the model zoo's tests disable ``handlers#0`` to run without
    weights) checks nothing. In ``train#handlers`` it loads ``--pretrained`` weights: there it must not
    be spelled ``CheckpointLoader``, because MONAI Label adds its own loader of the served weights only
    when no handler of that name is listed.

    Args:
        load_path: the weights file (``ckpt_dir/model_name``, or ``--pretrained``).
        kwargs: passed to ``CheckpointLoader`` (``load_dict``, ``map_location``, ``strict`` ...).
    """

    def __init__(self, load_path: str | Path, **kwargs: Any):
        from scripts.io.preflight import model_file

        path = Path(load_path)
        super().__init__(load_path=model_file(path.parent, path.name), **kwargs)
