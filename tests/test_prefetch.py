"""scripts.engine.prefetch: the next stack is read on a thread, in order, errors re-raised, memory bounded."""

from __future__ import annotations

import threading
import time

import pytest
from monai.data import IterableDataset
from scripts.engine.prefetch import PrefetchDataLoader


class Stacks(IterableDataset):
    """Yields 0..n-1, each after ``read_s``; records when each read started; fails at ``bad``."""

    def __init__(self, n: int, read_s: float = 0.0, bad: int | None = None):
        super().__init__(data=list(range(n)))
        self.read_s, self.bad, self.reads = read_s, bad, []

    def __iter__(self):
        for i in self.data:
            self.reads.append((i, time.perf_counter(), threading.current_thread().name))
            time.sleep(self.read_s)
            if i == self.bad:
                raise OSError(f"stack_{i}.nii.gz: cannot read this NIfTI file; is it truncated or corrupt?")
            yield i


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_every_stack_arrives_once_in_order(prefetch):
    assert [int(b) for b in PrefetchDataLoader(Stacks(7), prefetch=prefetch, batch_size=1)] == list(range(7))


def test_a_stack_that_cannot_be_read_ends_the_iteration_with_its_error_not_silently():
    got = []

    def consume():
        for b in PrefetchDataLoader(Stacks(5, bad=2), prefetch=1, batch_size=1):
            got.append(int(b))

    with pytest.raises(OSError, match=r"stack_2\.nii\.gz: cannot read this NIfTI file"):
        consume()
    assert got == [0, 1]


def test_the_next_stack_is_read_on_a_thread_while_this_one_is_processed():
    stacks = Stacks(3, read_s=0.2)
    taken = []
    for b in PrefetchDataLoader(stacks, prefetch=1, batch_size=1):
        taken.append((int(b), time.perf_counter()))
        time.sleep(0.3)  # the network
    started = {i: t for i, t, _ in stacks.reads}
    assert started[1] < taken[0][1] + 0.3  # stack 1's read began while stack 0 was processed
    assert {name for _, _, name in stacks.reads} == {"hsrs-prefetch"}


@pytest.mark.parametrize("prefetch", [1, 2])
def test_no_more_than_prefetch_stacks_are_read_ahead(prefetch):
    stacks = Stacks(8)
    ahead = []
    for b in PrefetchDataLoader(stacks, prefetch=prefetch, batch_size=1):
        time.sleep(0.05)  # time for the thread to read as far as it is allowed
        ahead.append(len(stacks.reads) - 1 - int(b))
    assert max(ahead) == prefetch


def test_an_abandoned_iteration_stops_reading():
    stacks = Stacks(50, read_s=0.01)
    for b in PrefetchDataLoader(stacks, prefetch=1, batch_size=1):
        if int(b) == 2:
            break
    time.sleep(0.3)
    assert len(stacks.reads) <= 5
