"""Spatial refinement of a phasor label map in the spirit of Phasor-MRF: per-class spectra + neighbourhood smoothness.

The cursors label each pixel from its own spectrum (its phasor) alone. :func:`refine_labels` revisits
the foreground pixels as a Markov random field: each class (cytoplasm, nucleus, lipid droplet) gets a
Gaussian model of per-pixel spectral features (the segmenter passes each pixel's place between the
fitted cursors and its brightness) estimated from the current labels — the "per-class spectra" — and
its share of the foreground as a prior; a Potts prior charges ``beta`` for every 4-neighbour in the
foreground with another class. A few iterations of iterated conditional modes (ICM) minimise

    E(labels) = Σ_pixels [−log N(features | class) − log share(class)] + beta · #(unlike 4-neighbours),

re-estimating the class models before each iteration and updating the two colours of a checkerboard
in turn (every update sees the current labels of all its neighbours). Background pixels are fixed.

Used by :class:`~scripts.phasor.segmenter.PhasorSegmenter` when ``PhasorParameters.mrf_iterations``
is above 0 (step 9), fitted with the other parameters by :mod:`scripts.phasor.fit`.
"""

from __future__ import annotations

import numpy as np

#: Class indices within the foreground: cytoplasm (label 0 inside the foreground), nucleus, lipid droplet.
CLASSES = (0, 1, 2)
#: Variance floor of each feature (relative to its variance over the foreground): keeps tiny classes usable.
VARIANCE_FLOOR = 1e-3


def class_energies(features: np.ndarray, labels: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of every pixel under each class's Gaussian feature model.

    Parameters
    ----------
    features : ndarray
        (F, H, W) float features, finite on the foreground.
    labels : ndarray
        (H, W) current labels (0 cytoplasm/background, 1 nucleus, 2 lipid droplet).
    foreground : ndarray
        (H, W) bool.

    Returns
    -------
    ndarray
        (3, H, W) float64; ``inf`` for a class with fewer pixels than needed for its model (F + 2).
    """
    f, h, w = features.shape
    x = features[:, foreground].T.astype(np.float64)  # (N, F)
    y = labels[foreground]
    floor = VARIANCE_FLOOR * np.maximum(x.var(axis=0), 1e-12)
    out = np.full((len(CLASSES), h, w), np.inf)
    all_x = features.reshape(f, -1).T.astype(np.float64)
    for c in CLASSES:
        xc = x[y == c]
        if xc.shape[0] < f + 2:
            continue
        mean = xc.mean(axis=0)
        cov = np.cov(xc, rowvar=False) + np.diag(floor)
        inv = np.linalg.inv(cov)
        _, logdet = np.linalg.slogdet(cov)
        d = np.nan_to_num(all_x - mean)
        prior = xc.shape[0] / x.shape[0]
        out[c] = (0.5 * np.einsum("ni,ij,nj->n", d, inv, d) + 0.5 * logdet - np.log(prior)).reshape(h, w)
    return out


def _neighbour_counts(labels: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """(3, H, W): per class, how many of each pixel's 4-neighbours in the foreground carry it."""
    counts = np.zeros((len(CLASSES), *labels.shape), np.int16)
    for c in CLASSES:
        m = ((labels == c) & foreground).astype(np.int16)
        counts[c, 1:, :] += m[:-1, :]
        counts[c, :-1, :] += m[1:, :]
        counts[c, :, 1:] += m[:, :-1]
        counts[c, :, :-1] += m[:, 1:]
    return counts


def refine_labels(
    labels: np.ndarray,
    foreground: np.ndarray,
    features: np.ndarray,
    iterations: int = 2,
    beta: float = 1.0,
    classes: tuple[int, ...] = CLASSES,
) -> np.ndarray:
    """ICM on a Potts MRF with per-class Gaussian feature models (see the module docstring).

    Parameters
    ----------
    labels : ndarray
        (H, W) initial labels: 0 background/cytoplasm, 1 nucleus, 2 lipid droplet.
    foreground : ndarray
        (H, W) bool; only these pixels change, and only they count as neighbours.
    features : ndarray
        (F, H, W) per-pixel spectral features (finite on the foreground).
    iterations : int
        ICM sweeps (each: re-estimate the class models, update both checkerboard colours).
    beta : float
        Potts weight per unlike 4-neighbour (0: the class models alone).
    classes : tuple of int
        The labels foreground pixels may take; pixels carrying another label keep it (and count as
        neighbours). Default: all three.

    Returns
    -------
    ndarray
        (H, W) uint8 refined labels; 0 outside the foreground.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = np.zeros((40, 40), np.uint8); truth[10:30, 10:30] = 1
    >>> feature = truth + rng.normal(0, 0.6, truth.shape)
    >>> noisy = (feature > 0.5).astype(np.uint8)
    >>> refined = refine_labels(noisy, np.ones_like(truth, bool), feature[None], iterations=3, beta=1.5)
    >>> int((refined != truth).sum()) < int((noisy != truth).sum()) // 3
    True
    """
    labels = np.where(foreground, labels, 0).astype(np.uint8)
    if iterations <= 0 or not foreground.any():
        return labels
    free = foreground & np.isin(labels, classes)  # pixels of other classes keep their label (and count as neighbours)
    yy, xx = np.indices(labels.shape)
    colours = [((yy + xx) % 2 == k) & free for k in (0, 1)]
    others = [c for c in CLASSES if c not in classes]
    for _ in range(iterations):
        unary = class_energies(features, labels, foreground)
        unary[others] = np.inf
        for colour in colours:
            counts = _neighbour_counts(labels, foreground)
            energy = unary + beta * (counts.sum(axis=0, keepdims=True) - counts)
            best = np.argmin(energy, axis=0).astype(np.uint8)
            labels = np.where(colour, best, labels)
    return labels
