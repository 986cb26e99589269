"""A DataLoader that reads and preprocesses the next stack on a thread while this one is segmented.

Reading a stack (decompressing a ``.nii.gz``, the spectral-axis check) and preprocessing it
(resampling, normalising) is a sizeable share of the time per stack on a CPU
(``python -m scripts.benchmark --sections throughput``); most of it releases the GIL for most of its time
(zlib, NumPy, torch), so a thread can do it while the network runs on the engine's thread.

Why not the existing tools:

- DataLoader worker *processes* (``num_workers > 0``) hand each stack over through shared memory
  (``/dev/shm``): a 2048×2048×64 float32 stack is 1 GiB, and a container's default ``/dev/shm`` is
  64 MiB, which ends the run with "unable to write to file </torch_…>". They remain available
  (``num_workers``) where shared memory is ample.
- MONAI's ``ThreadDataLoader`` prefetches on a thread, but an exception raised while loading (a
  corrupt file) ends its thread and the iteration silently: the run "completes" without the
  remaining stacks (MONAI 1.6.1). Here a loading error is re-raised on the engine's thread, where the
  workflow reports it (or, with ``skip_errors``, the dataset records it and goes on).

At most ``prefetch`` stacks are read ahead of the one being segmented (memory stays bounded);
``prefetch: 0`` is a plain DataLoader. Everything else is MONAI's / torch's ``DataLoader``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from monai.data import DataLoader

_END = object()


class PrefetchDataLoader(DataLoader):
    """MONAI ``DataLoader`` whose batches are produced ``prefetch`` ahead on a thread (see the module docstring).

    Args:
        dataset: the dataset.
        prefetch: batches read ahead of the one in use (0: none, a plain DataLoader).
        kwargs: passed to ``monai.data.DataLoader`` (``batch_size``, ``num_workers`` …).
    """

    def __init__(self, dataset, prefetch: int = 1, **kwargs):
        super().__init__(dataset, **kwargs)
        self.prefetch = max(int(prefetch), 0)

    def __iter__(self) -> Iterator[Any]:
        if self.prefetch == 0:
            yield from super().__iter__()
            return
        source = super().__iter__()
        ready: queue.Queue = queue.Queue()
        slots = threading.Semaphore(self.prefetch)  # batches produced and not yet taken
        stop = threading.Event()

        def produce() -> None:
            try:
                while not stop.is_set():
                    while not slots.acquire(timeout=0.1):
                        if stop.is_set():
                            return
                    try:
                        batch = next(source)
                    except StopIteration:
                        ready.put((False, _END))
                        return
                    ready.put((True, batch))
            except Exception as e:  # handed to the consuming thread and raised there
                ready.put((False, e))

        thread = threading.Thread(target=produce, name="hsrs-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                ok, value = ready.get()
                if ok:
                    slots.release()
                    yield value
                elif value is _END:
                    return
                else:
                    raise value
        finally:
            stop.set()  # an abandoned iteration: the thread ends after the read in progress, if any
