"""Which stacks of a folder the adaptation learns from and which it holds out for model selection.

The split is a property of each stack's name and the seed alone (a SHA-1 of ``"<seed>:<stem>"``
ranks the stacks), so a rerun gives the same split, and adding stacks to the folder moves at most
the stacks at the margin of the held-out share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from scripts.io.errors import HSRSInputError, HSRSOptionError


def _rank_key(seed: int, stem: str) -> str:
    return hashlib.sha1(f"{seed}:{stem}".encode()).hexdigest()


def split_stacks(stems: Sequence[str], held_out_fraction: float = 0.25, seed: int = 0) -> tuple[list[str], list[str]]:
    """(adaptation stems, held-out stems), each in name order; at least one of each.

    Parameters
    ----------
    stems : sequence of str
        The stacks' stems (unique).
    held_out_fraction : float
        Share of the stacks held out, in (0, 1); rounded, then at least 1 and at most all but one.
    seed : int
        Changes which stacks are held out.

    Raises
    ------
    HSRSInputError
        Fewer than 2 stacks (one to adapt on, one held out).
    HSRSOptionError
        ``held_out_fraction`` outside (0, 1).

    Examples
    --------
    >>> split_stacks(["a", "b", "c", "d"], 0.25, seed=0)
    (['b', 'c', 'd'], ['a'])
    >>> split_stacks(["a", "b"], 0.9, seed=0)  # never all: one stack is left to adapt on
    (['b'], ['a'])
    """
    stems = sorted(stems)
    if len(set(stems)) != len(stems):
        raise HSRSInputError(f"stack names must be unique, got {stems}.")
    if not 0 < held_out_fraction < 1:
        raise HSRSOptionError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}.")
    if len(stems) < 2:
        raise HSRSInputError(
            f"adaptation needs at least 2 stacks (one to adapt on, one held out to select the model), got {len(stems)}: "
            f"{stems}; add stacks to the folder."
        )
    n_held = min(len(stems) - 1, max(1, round(held_out_fraction * len(stems))))
    ranked = sorted(stems, key=lambda s: _rank_key(seed, s))
    held = set(ranked[:n_held])
    return [s for s in stems if s not in held], [s for s in stems if s in held]
