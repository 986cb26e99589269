"""A dataset for folder runs that can skip the stacks it cannot load, recording why, and carry on."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from monai.data import IterableDataset
from monai.transforms import apply_transform
from scripts.io.errors import HSRSInputError, as_bool, short_reason

logger = logging.getLogger(__name__)

#: Key of an item that the pre-flight check (:mod:`scripts.io.preflight`) found unusable; holds the reason.
ERROR_KEY = "error"


class SkipErrorsDataset(IterableDataset):
    """MONAI ``IterableDataset`` over a datalist that, with ``skip_errors``, leaves out items that fail.

    An item fails when the pre-flight check marked it (``item["error"]`` holds the reason) or when
    loading or preprocessing it raises. With ``skip_errors`` the item is logged in one line, passed
    to ``on_skip(item, reason)`` (the inference workflow records it in ``summary.csv``) and left out;
    the other items go on. Without it, a marked item raises
    :class:`~scripts.io.errors.HSRSInputError` and a failing one raises its error, as a plain
    dataset would. With DataLoader workers, each worker takes every ``num_workers``-th item (MONAI's
    ``IterableDataset``) and calls ``on_skip`` in its own process.

    Args:
        data: datalist (``[{"image": path, ...}, ...]``).
        transform: the preprocessing (e.g. ``LoadImaged`` ... ``EnsureTyped``).
        skip_errors: skip failing items (True) or stop at the first (False).
        on_skip: called as ``on_skip(item, reason)`` for each skipped item.
    """

    def __init__(
        self,
        data: Sequence[dict],
        transform: Callable | None = None,
        skip_errors: bool = False,
        on_skip: Callable[[dict, str], Any] | None = None,
    ):
        super().__init__(data=list(data), transform=transform)
        self.skip_errors = as_bool(skip_errors, "skip_errors")
        self.on_skip = on_skip

    def __iter__(self) -> Iterator[Any]:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        num_workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        for i, item in enumerate(self.data):
            if i % num_workers != worker:
                continue
            reason = item.get(ERROR_KEY) if isinstance(item, dict) else None
            if reason:
                if not self.skip_errors:
                    raise HSRSInputError(reason)
                self._skip(item, reason)
                continue
            try:
                loaded = apply_transform(self.transform, item) if self.transform is not None else item
            except Exception as e:
                if not self.skip_errors:
                    raise
                self._skip(item, short_reason(e))
                continue
            yield loaded

    def _skip(self, item: dict, reason: str) -> None:
        source = str(item.get("image", item) if isinstance(item, dict) else item)
        logger.warning("skipped: %s", reason if source in reason else f"{source}: {reason}")
        if self.on_skip is not None:
            self.on_skip(item, reason)
