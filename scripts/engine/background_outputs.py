"""Each stack's outputs written on a worker thread while the next stack is segmented.

Writing a stack's label maps, overlay, summary row and per-cell readout takes a sizeable share of
the time per stack (``python -m scripts.benchmark --sections throughput``), and none of it is needed to
segment the next stack. :class:`BackgroundOutputs` is an ignite handler that hands every decollated
item of ``engine.state.output`` to the output steps (e.g. :meth:`SegmentationWriter.write_item
<scripts.engine.segmentation_writer.SegmentationWriter.write_item>`, then
:meth:`CellReadoutHandler.process_item <scripts.cells.handler.CellReadoutHandler.process_item>`), in
order, on one worker thread, so the network (which releases the GIL) and the writing overlap.

- **Bounded memory**: at most ``max_pending`` iterations wait for the worker; the engine blocks
  before queuing more, so a slow disk cannot make the queue grow.
- **Errors are not lost**: a step that fails stops the run at the next iteration (or at the end),
  with the step's own exception, as if it had run on the engine's thread.
- **Nothing half-written**: the steps write atomically (:mod:`scripts.io.atomic`). The run completes
  only after the queued stacks are written; when it ends by an exception instead, the worker still
  writes what was queued before the interpreter exits (``concurrent.futures`` joins its threads), and
  a kill leaves no partial file, so a rerun with ``resume`` writes exactly the missing stacks.
- ``background: false`` runs the steps on the engine's thread (the order and the outputs are the
  same; the benchmark compares both).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from scripts.io.errors import as_bool

logger = logging.getLogger(__name__)


class BackgroundOutputs:
    """Ignite handler: run ``steps`` on every output item, on a worker thread (see the module docstring).

    Args:
        steps: callables taking one decollated item (a dict), run in this order for each item;
            ``None`` entries (a switched-off step) are left out.
        background: True: a worker thread; False: the engine's thread.
        max_pending: iterations that may wait for the worker before the engine waits.
        on_completed: callables taking the engine, run once every item is written (e.g. the
            writer's end-of-run report).
    """

    def __init__(
        self,
        steps: Sequence[Callable[[dict], Any] | None],
        background: bool = True,
        max_pending: int = 1,
        on_completed: Sequence[Callable[[Any], Any] | None] = (),
    ):
        self.steps = [s for s in steps if s is not None]
        self.on_completed = [c for c in on_completed if c is not None]
        self.background = as_bool(background, "background_writing")
        self.max_pending = max(int(max_pending), 1)
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future] = deque()

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _write(self, items: list) -> None:
        for item in items:
            for step in self.steps:
                step(item)

    def __call__(self, engine) -> None:
        output = engine.state.output
        items = [item for item in (output if isinstance(output, list) else [output]) if isinstance(item, dict)]
        if not self.background:
            self._write(items)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsrs-outputs")
        while len(self._pending) >= self.max_pending:
            self._pending.popleft().result()  # waits; re-raises a step's exception here, on the engine's thread
        self._pending.append(self._pool.submit(self._write, items))

    def wait(self) -> None:
        """Block until every queued item is written; re-raise the first failure."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            if self._pool is not None and not self._pending:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _completed(self, engine) -> None:
        self.wait()
        for callback in self.on_completed:
            callback(engine)
