"""Nucleus fragments (scripts.cells.nucleus_fragments) and the simulator's heterogeneous nuclei that provoke them.

Scenes are drawn here: round cells (protein disks of the mean image) with nucleus labels; 0.25 µm pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scripts.cells import InstanceParameters, segment_instances
from scripts.cells.nucleus_fragments import fragment_parents
from scripts.simulation.phantom import PRESETS, simulate_phantom

PX = 0.25
SHAPE = (128, 176)


def disk(cy, cx, r) -> np.ndarray:
    yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def field(cells, nuclei) -> tuple[np.ndarray, np.ndarray]:
    """Label map (nucleus disks) and mean image (cell disks of protein on a dim background, little noise)."""
    labels = np.zeros(SHAPE, np.uint8)
    mean = np.full(SHAPE, 0.2)
    for c in cells:
        mean[disk(*c)] = 1.0
    for n in nuclei:
        labels[disk(*n)] = 1
    return labels, mean + 0.01 * np.random.default_rng(0).standard_normal(SHAPE)


# a large cell whose 13 µm nucleus broke: a piece 3.25 µm beyond the closing, a speck under 3 µm²;
# touching it, a small cell with a small nucleus of its own
BIG_CELL, SMALL_CELL = (64, 64, 44), (64, 124, 20)
NUCLEUS, PIECE, SPECK, SMALL_NUCLEUS = (64, 56, 26), (64, 101, 5), (100, 60, 2), (64, 126, 7)


def test_fragments_in_the_cell_of_a_nucleus_join_it_and_a_small_neighbour_stays_a_cell():
    labels, mean = field([BIG_CELL, SMALL_CELL], [NUCLEUS, PIECE, SPECK, SMALL_NUCLEUS])
    assert ndimage.label(labels == 1)[1] == 4
    inst = segment_instances(labels, mean, PX)
    assert inst.n_cells == 2
    assert inst.has_nucleus[1:].all()
    big, small = inst.nuclei[NUCLEUS[:2]], inst.nuclei[SMALL_NUCLEUS[:2]]
    assert big != small
    assert big > 0
    assert small > 0
    assert inst.nuclei[PIECE[:2]] == big  # the piece is part of the big nucleus ...
    assert (inst.cells[disk(*PIECE)] == big).all()  # ... and of its cell
    assert inst.nuclei[SPECK[:2]] == 0
    assert inst.cells[SPECK[:2]] == big
    assert (inst.cells[disk(*SMALL_NUCLEUS)] == small).all()
    # without the joining, the piece seeds a third cell that cuts the big one
    assert segment_instances(labels, mean, PX, InstanceParameters(fragment_max_gap=0)).n_cells == 3


def test_a_nucleus_split_in_two_inside_one_round_cell_is_one_cell():
    # two overlapping disks: the split of touching nuclei parts them (a 5 px dip), but no neck of the cell does
    labels, mean = field([BIG_CELL], [(64, 54, 12), (64, 74, 12)])
    off = segment_instances(labels, mean, PX, InstanceParameters(fragment_max_gap=0))
    assert off.n_cells == 2
    inst = segment_instances(labels, mean, PX)
    assert inst.n_cells == 1
    assert int(inst.nuclei.max()) == 1
    assert (inst.nuclei > 0).sum() == (labels == 1).sum()  # both halves kept as nucleus


def test_two_touching_cells_with_touching_nuclei_stay_two():
    # the cells meet at a neck: their nuclei are neighbours, not fragments, however close
    labels, mean = field([(64, 60, 22), (64, 96, 22)], [(64, 68, 10), (64, 88, 10)])
    assert ndimage.label(labels == 1)[1] == 1
    inst = segment_instances(labels, mean, PX)
    assert inst.n_cells == 2
    assert inst.has_nucleus[1:].all()


def test_a_small_nucleus_far_from_a_large_one_in_a_shared_blob_is_kept():
    # one elongated foreground blob (no neck), a large nucleus at one end and a small one 6 µm away at the other
    cells = [(64, x, 24) for x in range(40, 137, 8)]
    labels, mean = field(cells, [(64, 52, 16), (64, 128, 5)])
    inst = segment_instances(labels, mean, PX)
    assert inst.n_cells == 2
    assert inst.has_nucleus[1:].all()
    parent, measured = fragment_parents(*_nuclei_and_foreground(labels), 0.6, 0.9)
    assert (parent == np.arange(parent.size)).all()
    assert measured["gap"][0] * PX > 0.6 * 4.0  # the gap, µm, beyond 0.6 radii of the large nucleus (4 µm)


def _nuclei_and_foreground(labels):
    nuclei, _ = ndimage.label(labels == 1)
    return nuclei, ndimage.binary_dilation(labels == 1, iterations=40)


@pytest.mark.parametrize("change", [{"fragment_max_gap": -0.1}, {"fragment_min_contact": float("nan")}])
def test_fragment_thresholds_refuse_bad_values(change):
    with pytest.raises(ValueError, match=next(iter(change))):
        InstanceParameters(**change)


def _nuclear_spread(ph) -> float:
    """Coefficient of variation of the 2960 cm⁻¹ frame (DNA) inside the nuclei, away from their edges."""
    frame = ph.stack[int(np.argmin(np.abs(ph.wavenumbers - 2960)))]
    inner = ndimage.binary_erosion(ph.labels == 1, iterations=3)
    return float(frame[inner].std() / frame[inner].mean())


def test_heterogeneous_nuclei_are_patchy_reproducible_and_absent_from_the_other_presets():
    one = simulate_phantom(np.random.default_rng([5, 0]), 128, 128, preset="heterogeneous_nuclei")
    again = simulate_phantom(np.random.default_rng([5, 0]), 128, 128, preset="heterogeneous_nuclei")
    other = simulate_phantom(np.random.default_rng([5, 1]), 128, 128, preset="heterogeneous_nuclei")
    assert np.array_equal(one.stack, again.stack)
    assert np.array_equal(one.labels, again.labels)
    assert not np.array_equal(one.stack, other.stack)
    assert ((one.nuclei > 0) == (one.labels == 1)).all()  # dim patches stay labelled nucleus
    uniform = simulate_phantom(np.random.default_rng([5, 0]), 128, 128, preset="default")
    assert _nuclear_spread(one) > 1.5 * _nuclear_spread(uniform)
    assert [n for n, p in PRESETS.items() if p.nucleus_heterogeneity != (0.0, 0.0)] == ["heterogeneous_nuclei"]
