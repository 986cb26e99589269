"""Nucleus fragments: pieces of one nucleus that a noisy label map broke apart, joined before they seed cells.

A network that sees a nucleus with nucleoli and patchy chromatin (dim, low-density patches) may
label it as several pieces. The closing of :func:`~scripts.cells.instances.nucleus_instances`
joins pieces separated by a narrow gap; pieces farther apart, or one piece that the split of
touching nuclei cut in two, would each seed a cell and cut one cell into several. Whether two
nucleus instances are two nuclei or one is decided by where they sit in the cell they would
seed:

- **territories**: every nucleus takes the foreground pixels nearer to it than to any other
  nucleus (a watershed of the distance to the nuclei over the foreground: the cells that
  :func:`~scripts.cells.instances.grow_cells` would make);
- **gap**: the unlabelled distance between two nuclei whose territories touch, across their
  common border;
- **contact**: how deep inside the foreground that border runs (the largest distance to the
  background along it), against the **depth** of the smaller nucleus's territory (the largest
  distance to the background in it).

Two genuine neighbours sit in two cells that meet at a neck: their border runs through the
narrowest place of the foreground, shallower than either cell. Two pieces of one nucleus sit
in one cell: the border between their territories cuts through the middle of that cell, as deep
as the smaller piece's territory goes, and they are close compared with the nucleus's size. A
nucleus whose gap to a larger one is at most ``max_gap`` times the larger one's equivalent radius
and whose contact is at least ``min_contact`` times its territory's depth is a fragment: it takes
the id of that larger nucleus (its pixels stay nucleus; the cell it would have seeded goes to
that nucleus's cell). Every step works on whole images (:mod:`scipy.ndimage`, one watershed),
not cell by cell.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed


def _border_pairs(territory: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (p, q) of 4-neighbour pixel pairs in two different territories (both > 0)."""
    index = np.arange(territory.size).reshape(territory.shape)
    ps, qs = [], []
    for a, b, ia, ib in (
        (territory[:, :-1], territory[:, 1:], index[:, :-1], index[:, 1:]),
        (territory[:-1], territory[1:], index[:-1], index[1:]),
    ):
        border = (a != b) & (a > 0) & (b > 0)
        ps.append(ia[border])
        qs.append(ib[border])
    return np.concatenate(ps), np.concatenate(qs)


def _per_pair(territory: np.ndarray, value, n: int, reduce) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys ``min_id * (n + 1) + max_id`` of the pairs of touching territories and ``reduce``
    (``np.minimum`` or ``np.maximum``) of ``value(p, q)`` over their border (flat pixel indices p, q)."""
    p, q = _border_pairs(territory)
    flat = territory.ravel()
    a, b = flat[p].astype(np.int64), flat[q].astype(np.int64)
    key = np.minimum(a, b) * (n + 1) + np.maximum(a, b)
    keys, pair_of = np.unique(key, return_inverse=True)
    out = np.full(keys.size, np.inf if reduce is np.minimum else -np.inf)
    reduce.at(out, pair_of, value(p, q))
    return keys, out


def fragment_parents(
    nuclei: np.ndarray, foreground: np.ndarray, max_gap: float, min_contact: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """For every nucleus, the larger nucleus it is a fragment of (see the module docstring), or itself.

    Args:
        nuclei: (H, W) int nucleus instances 1..n.
        foreground: (H, W) bool, the cells' extent (nucleus pixels are taken as foreground).
        max_gap: greatest gap to the larger nucleus, in its equivalent radii (sqrt(area / π)).
        min_contact: least contact of the two territories, as a fraction of the depth of the
            smaller nucleus's territory.

    Returns:
        ``parent`` (n + 1,) int64: the id each nucleus joins (its own id when it is no fragment;
        index 0 is 0), and the measurements of the pairs whose territories touch: ``pairs`` (m, 2)
        ids (smaller, larger), ``gap`` (m,) and ``contact`` (m,) in pixels (contact 0 where only
        the territories by distance touch), ``depth`` (n + 1,) pixels.
    """
    nuclei = np.asarray(nuclei)
    n = int(nuclei.max(initial=0))
    parent = np.arange(n + 1, dtype=np.int64)
    measured = {"pairs": np.zeros((0, 2), np.int64), "gap": np.zeros(0), "contact": np.zeros(0)}
    measured["depth"] = np.zeros(n + 1)
    if n < 2 or max_gap <= 0:
        return parent, measured
    foreground = np.asarray(foreground, bool) | (nuclei > 0)
    # gap: across the border of the territories by distance to the nuclei (the cells grown by default)
    to_nucleus = ndimage.distance_transform_edt(nuclei == 0).ravel()
    keys, gap = _per_pair(
        watershed(to_nucleus.reshape(nuclei.shape), nuclei, mask=foreground),
        lambda p, q: to_nucleus[p] + to_nucleus[q],
        n,
        np.minimum,
    )
    if not keys.size:
        return parent, measured
    # contact and depth: territories flooded from the nuclei down the distance to the background, which part at
    # the foreground's necks; the field edge is no background (a cell cut by it goes on beyond)
    depth_map = ndimage.distance_transform_edt(np.pad(foreground, 1, mode="edge"))[1:-1, 1:-1]
    necks = watershed(-depth_map, nuclei, mask=foreground)
    depth = np.zeros(n + 1)
    np.maximum.at(depth, necks[necks > 0], depth_map[necks > 0])
    flat_depth = depth_map.ravel()
    neck_keys, neck_contact = _per_pair(necks, lambda p, q: np.minimum(flat_depth[p], flat_depth[q]), n, np.maximum)
    at = np.minimum(np.searchsorted(neck_keys, keys), max(neck_keys.size - 1, 0))
    contact = np.where(neck_keys[at] == keys, neck_contact[at], 0.0) if neck_keys.size else np.zeros(keys.size)
    lo, hi = np.divmod(keys, n + 1)
    area = np.bincount(nuclei.ravel(), minlength=n + 1).astype(float)
    larger_first = (area[hi] > area[lo]) | ((area[hi] == area[lo]) & (hi > lo))
    small, large = np.where(larger_first, lo, hi), np.where(larger_first, hi, lo)
    fragment = (gap <= max_gap * np.sqrt(area[large] / np.pi)) & (contact >= min_contact * depth[small])
    if fragment.any():
        # each fragment joins the candidate it meets deepest, then the nearest
        cand = np.flatnonzero(fragment)
        cand = cand[np.lexsort((gap[cand], -contact[cand], small[cand]))]
        first = np.ones(cand.size, bool)
        first[1:] = small[cand][1:] != small[cand][:-1]
        parent[small[cand][first]] = large[cand][first]
        for _ in range(n):  # follow chains to their root (a fragment of a fragment); each step goes to a larger one
            root = parent[parent]
            if np.array_equal(root, parent):
                break
            parent = root
    return parent, {"pairs": np.stack([small, large], axis=1), "gap": gap, "contact": contact, "depth": depth}


def join_nucleus_fragments(
    nuclei: np.ndarray, foreground: np.ndarray, max_gap: float = 0.6, min_contact: float = 0.9
) -> np.ndarray:
    """Nucleus instances with every fragment given the id of the nucleus it belongs to, ids made consecutive.

    Args:
        nuclei: (H, W) int nucleus instances 1..n.
        foreground: (H, W) bool, the cells' extent.
        max_gap, min_contact: see :func:`fragment_parents` (``max_gap`` 0: nothing joined).

    Returns:
        (H, W) int32 nucleus instances 1..m, m ≤ n, in the order of their first (largest-piece) id.

    Examples:
        >>> yy, xx = np.mgrid[:80, :140]
        >>> cells = ((yy - 40) ** 2 + (xx - 40) ** 2 < 30**2) | ((yy - 40) ** 2 + (xx - 110) ** 2 < 25**2)
        >>> nuclei = np.zeros((80, 140), np.int32)
        >>> nuclei[(yy - 40) ** 2 + (xx - 36) ** 2 < 12**2] = 1  # a nucleus,
        >>> nuclei[(yy - 40) ** 2 + (xx - 55) ** 2 < 4**2] = 2  # a piece of it 3 px away,
        >>> nuclei[(yy - 40) ** 2 + (xx - 110) ** 2 < 8**2] = 3  # the nucleus of the next cell
        >>> joined = join_nucleus_fragments(nuclei, cells)
        >>> int(joined.max()), int(joined[40, 55]) == int(joined[40, 36]), int(joined[40, 110])
        (2, True, 2)
    """
    parent, _ = fragment_parents(nuclei, foreground, max_gap, min_contact)
    if np.array_equal(parent, np.arange(parent.size)):
        return np.asarray(nuclei, np.int32)
    roots = np.unique(parent[1:])
    lut = np.zeros(parent.size, np.int32)
    lut[roots] = np.arange(1, roots.size + 1, dtype=np.int32)
    return lut[parent][nuclei]
