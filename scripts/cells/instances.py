"""Instances from a semantic label map: nuclei, cells grown from them, lipid droplets and their cells.

Works on any label map of the bundle's contract (0 background, 1 nucleus, 2 lipid droplet), the
network's or the phasor's, plus the stack's mean image for the extent of the cells:

1. **foreground**: the mean image over all frames, smoothed, thresholded by Otsu's method —
   as it is, or flattened (a quadratic surface fitted to the pixels below the threshold
   subtracted: the non-Raman background brightens the field's corners), whichever separates
   the two classes better — joined with every labelled pixel, small holes filled. When the two
   Otsu classes are not separated by ``min_contrast`` background standard deviations (an empty
   or pure-noise field), the intensity is not trusted and the foreground is the labelled pixels
   only.
2. **nuclei**: connected components of label 1, touching nuclei split by a watershed of the
   distance transform from its h-maxima (depth ``nucleus_split_depth_um``); pieces that a closing
   with a disk of radius ``nucleus_closing_um`` joins (fragments of one nucleus that a noisy label
   map broke apart) are one nucleus; nuclei smaller than ``min_nucleus_area_um2`` are dropped;
   pieces farther apart that sit in the cell of a larger nucleus — close to it for its size
   (``fragment_max_gap``) and with no neck of the foreground between them
   (``fragment_min_contact``) — join that nucleus (:mod:`scripts.cells.nucleus_fragments`), so a
   fragment never seeds a cell of its own.
3. **cells**: a watershed seeded by the nuclei and limited to the foreground (``cell_boundary``):
   ``"nuclei"`` floods the distance to the nearest nucleus, so touching cells part half-way between
   their nuclei; ``"neck"`` floods the negated distance transform of the foreground, so they part
   at the narrowest place between them; ``"intensity"`` floods the gradient magnitude of the
   smoothed mean image (edges of labelled objects left out), so they part where the intensity
   changes. Cell ``k`` holds nucleus ``k`` (nucleus ids equal cell ids). Foreground components
   that no nucleus reaches and that are at least ``min_cell_area_um2`` become cells without
   nucleus (numbered after the nucleated cells, ``has_nucleus`` false); smaller ones are debris
   and belong to no cell.
4. **lipid droplets**: connected components of label 2 (4-connected), touching droplets split like
   nuclei (depth ``droplet_split_depth_um``); each droplet belongs to the cell holding most of its
   pixels, or to none (0) when most of it lies outside every cell.

Every step works on whole images with :mod:`scipy.ndimage` and :mod:`skimage` (no loop over cells).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scripts.cells.nucleus_fragments import join_nucleus_fragments
from skimage.filters import sobel, threshold_otsu
from skimage.morphology import local_maxima, reconstruction
from skimage.segmentation import watershed

logger = logging.getLogger(__name__)

#: Class values of the semantic label map.
NUCLEUS, LIPID_DROPLET = 1, 2
#: Where touching cells part (``InstanceParameters.cell_boundary``).
CELL_BOUNDARIES = ("nuclei", "neck", "intensity")


@dataclass(frozen=True)
class InstanceParameters:
    """Sizes and thresholds of the instance step, in µm so that they hold at any pixel size.

    Attributes:
        smoothing_um: sd of the Gaussian applied to the mean image before thresholding.
        min_contrast: least separation of the Otsu classes (difference of their medians, in robust
            sd of the background class) for the intensity foreground to be used.
        min_nucleus_area_um2: smaller nucleus fragments are ignored (their pixels stay foreground).
        nucleus_split_depth_um: a dip of the nuclear distance transform this deep separates two nuclei.
        min_cell_area_um2: least area of a foreground component without a nucleus to count as a cell.
        droplet_split_depth_um: as ``nucleus_split_depth_um``, for lipid droplets.
        nucleus_closing_um: pieces of nucleus label that a closing with a disk of this radius joins
            are one nucleus (0: no joining); see :func:`nucleus_instances`.
        cell_boundary: where touching cells part: ``"nuclei"`` (half-way between their nuclei),
            ``"neck"`` (the narrowest place of the foreground) or ``"intensity"`` (the strongest
            change of the mean image); see the module docstring.
        fragment_max_gap: a nucleus is a fragment of a larger one when the unlabelled gap between them
            is at most this many equivalent radii (sqrt(area / π)) of the larger one (0: no joining) ...
        fragment_min_contact: ... and the territories they would grow meet at least this deep in the
            foreground, as a fraction of the depth of the smaller one's territory (no neck between
            them); see :mod:`scripts.cells.nucleus_fragments`.

    The defaults were set by hand on simulated development fields (512×512, every preset, seeds
    ``numpy.random.default_rng([777, i])`` and ``simulate_dataset`` seeds 777 / 778, exact label
    maps and the shipped network's): ``nucleus_split_depth_um`` 1.0 instead of 0.5 µm stops
    irregular nuclei, notched by lipid droplets, from being split in two, while touching nuclei of
    ~4 µm radius still part; ``cell_boundary`` ``"nuclei"`` puts fewer droplets into the wrong one of
    two touching cells than ``"neck"`` and ``"intensity"`` (the simulated cells show no membrane
    between them); ``nucleus_closing_um`` 1.5 µm joins most fragments of nuclei that the network
    breaks apart on the hard preset and changes nothing on exact label maps. The fragment
    thresholds were measured on 64 development fields of the ``heterogeneous_nuclei`` preset
    (256×256, ``simulate_dataset`` seeds 7791 and 7792, the shipped network's label maps) and on the
    default and hard fields above: ``fragment_max_gap`` 0.6 and ``fragment_min_contact`` 0.9 join the
    pieces of one nucleus (gaps up to 2.5 µm, territories meeting at 0.9–1.0 of their depth) and none
    of the neighbours (gaps from 3 µm, 0.54 nucleus radii apart at least for nuclei up to 0.65 of their
    cell's diameter, most meeting at a neck of 0.6–0.9), leaving every default-preset field and the
    exact label maps unchanged; 0.75 merges two genuine neighbours on a default field. The
    benchmark's test seeds were not used.
    """

    smoothing_um: float = 0.5
    min_contrast: float = 5.0
    min_nucleus_area_um2: float = 3.0
    nucleus_split_depth_um: float = 1.0
    min_cell_area_um2: float = 20.0
    droplet_split_depth_um: float = 0.25
    nucleus_closing_um: float = 1.5
    cell_boundary: str = "nuclei"
    fragment_max_gap: float = 0.6
    fragment_min_contact: float = 0.9

    def __post_init__(self):
        for name, value in vars(self).items():
            if name == "cell_boundary":
                if value not in CELL_BOUNDARIES:
                    raise ValueError(
                        f"InstanceParameters.cell_boundary must be one of {', '.join(CELL_BOUNDARIES)}, got {value!r}."
                    )
            elif isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value < 0:
                raise ValueError(f"InstanceParameters.{name} must be a finite number ≥ 0, got {value!r}.")


@dataclass
class CellInstances:
    """Instance maps of one field of view; all maps are (H, W) int32, 0 where there is no object.

    Attributes:
        cells: cell ids 1..n_cells; nucleated cells first (cell ``k`` holds nucleus ``k``).
        nuclei: nucleus ids, equal to the id of the cell that holds the nucleus.
        droplets: lipid-droplet ids 1..n_droplets.
        droplet_cell: (n_droplets + 1,) id of the cell holding each droplet (0: none); index 0 unused.
        has_nucleus: (n_cells + 1,) bool, whether each cell holds a nucleus; index 0 unused.
        foreground: (H, W) bool, cells, debris and labelled pixels (the complement is background).
        foreground_source: ``"intensity"`` (Otsu on the mean image, joined with the labels) or
            ``"labels"`` (intensity contrast too low: labelled pixels only).
    """

    cells: np.ndarray
    nuclei: np.ndarray
    droplets: np.ndarray
    droplet_cell: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int32))
    has_nucleus: np.ndarray = field(default_factory=lambda: np.zeros(1, bool))
    foreground: np.ndarray | None = None
    foreground_source: str = "labels"

    @property
    def n_cells(self) -> int:
        return len(self.has_nucleus) - 1

    @property
    def n_droplets(self) -> int:
        return len(self.droplet_cell) - 1

    def maps(self) -> dict[str, np.ndarray]:
        """The three instance maps by name, in file channel order: cells, nuclei, lipid_droplets."""
        return {"cells": self.cells, "nuclei": self.nuclei, "lipid_droplets": self.droplets}


#: Fewest pixels below the first threshold per polynomial term to fit the background surface.
MIN_PIXELS_PER_TERM = 50
#: At most this many pixels (evenly strided) enter the fit of the background surface.
MAX_FIT_PIXELS = 20_000


def flatten_background(image: np.ndarray, degree: int = 2, iterations: int = 3) -> np.ndarray:
    """``image`` minus a polynomial surface of ``degree`` in (y, x) fitted to its pixels below Otsu's threshold.

    A smooth background that grows towards the field's edges (vignetting of the non-Raman
    background) widens the background's intensity distribution and can pull Otsu's threshold into
    it; subtracting the surface fitted to the dim pixels removes that trend and keeps the cells.
    When the corners are brighter than the cells, the first threshold takes them for cells, so
    the fit is repeated ``iterations`` times, each on the pixels below the threshold of the image
    flattened by the previous one. With too few dim pixels the image is returned unchanged.

    Args:
        image: (H, W) float image (smoothed mean intensity); NaN pixels are left out of the fit.
        degree: polynomial degree (2: quadratic).
        iterations: fits, each on the background found after the previous one.

    Returns:
        (H, W) float32 flattened image (its background near 0).

    Examples:
        >>> yy, xx = np.mgrid[0:64, 0:64] / 63.0
        >>> image = 1 + (yy - 0.5) ** 2 + (xx - 0.5) ** 2  # brighter corners
        >>> image[20:40, 20:40] += 1.0  # a cell
        >>> flat = flatten_background(image)
        >>> bool(abs(flat[0, 0]) < 0.05), bool(abs(flat[30, 30] - 1.0) < 0.05)
        (True, True)
    """
    image = np.asarray(image, np.float32)
    h, w = image.shape
    finite = np.isfinite(image)
    n_terms = (degree + 1) * (degree + 2) // 2
    if finite.sum() < n_terms * MIN_PIXELS_PER_TERM or np.ptp(image[finite]) <= 0:
        return image
    y = np.linspace(-1.0, 1.0, h)
    x = np.linspace(-1.0, 1.0, w)
    powers = [(i, d - i) for d in range(degree + 1) for i in range(d + 1)]
    flat = image
    for _ in range(iterations):
        values = flat[finite]
        ys, xs = np.nonzero(finite & (flat <= threshold_otsu(values[:: max(values.size // MAX_FIT_PIXELS, 1)])))
        if ys.size < n_terms * MIN_PIXELS_PER_TERM:
            break
        step = max(ys.size // MAX_FIT_PIXELS, 1)
        ys, xs = ys[::step], xs[::step]
        design = np.stack([y[ys] ** i * x[xs] ** j for i, j in powers], axis=1)
        coef, *_ = np.linalg.lstsq(design, image[ys, xs].astype(np.float64), rcond=None)
        surface = sum(c * np.outer(y**i, x**j) for c, (i, j) in zip(coef, powers, strict=True))
        flat = (image - surface).astype(np.float32)
    return flat


def _otsu_contrast(image: np.ndarray, finite: np.ndarray) -> tuple[float, float]:
    """Otsu's threshold of a smoothed image and its contrast: (median above − median below) / robust sd below."""
    sample = image[::2, ::2][finite[::2, ::2]]  # smoothed: every 4th pixel gives the same statistics
    threshold = float(threshold_otsu(sample))
    below = sample[sample <= threshold]
    lo = float(np.median(below))
    spread = 1.4826 * float(np.median(np.abs(below - lo)))
    contrast = (float(np.median(sample[sample > threshold])) - lo) / max(spread, 1e-12 * max(abs(lo), 1.0))
    return contrast, threshold


def foreground_mask(
    mean_image: np.ndarray, labels: np.ndarray, sigma_px: float = 2.0, min_contrast: float = 5.0
) -> tuple[np.ndarray, str]:
    """Cells and debris: Otsu threshold of the smoothed mean image, joined with the labelled pixels.

    The image is thresholded as it is or flattened (:func:`flatten_background`), whichever gives
    the higher contrast: flattening removes a background brighter towards the field's corners,
    but in a field crowded with cells the surface fitted to the dim pixels also takes away some of
    the cells, and then the image as it is separates them better.

    Args:
        mean_image: (H, W) mean intensity over the frames.
        labels: (H, W) semantic label map; every labelled pixel is foreground.
        sigma_px: sd of the Gaussian smoothing, pixels.
        min_contrast: least (median above − median below the threshold) / robust sd below it; a
            field with less contrast (empty, pure noise) gets the labelled pixels only.

    Returns:
        (H, W) bool mask and its source, ``"intensity"`` or ``"labels"``.
    """
    labelled = labels > 0
    smooth = ndimage.gaussian_filter(np.asarray(mean_image, np.float32), sigma_px) if sigma_px > 0 else mean_image
    finite = np.isfinite(smooth)
    if not finite.any() or np.ptp(smooth[finite]) <= 1e-12 * max(float(np.abs(smooth[finite]).max()), 1.0):
        return labelled.copy(), "labels"
    candidates = []
    for image in (smooth, flatten_background(smooth)):
        contrast, threshold = _otsu_contrast(image, finite)
        candidates.append((contrast, threshold, image))
    contrast, threshold, image = max(candidates, key=lambda c: c[0])
    if contrast < min_contrast:
        logger.info(
            "foreground: intensity contrast %.1f < %.1f background sd; using the labelled pixels only",
            contrast,
            min_contrast,
        )
        return labelled.copy(), "labels"
    return (image > threshold) | labelled, "intensity"


def _component_sizes(components: np.ndarray) -> np.ndarray:
    return np.bincount(components.ravel())


def split_touching(mask: np.ndarray, depth_px: float, min_area_px: float = 0.0) -> np.ndarray:
    """Instances of a binary mask with touching round objects split apart.

    Each connected component is one object unless its Euclidean distance transform has several
    domes: the markers are the regional maxima of the h-maxima transform (morphological
    reconstruction of the distance minus ``depth_px`` under the distance), and a watershed of the
    negated distance grows them over the component. Only components that are not round (area
    above that of the disk of their largest taxicab distance) and deep enough are searched, each
    in its own bounding box, so the cost follows the number of such objects, not the image size.

    Args:
        mask: (H, W) bool.
        depth_px: how far the distance transform must dip between two domes to split them, pixels
            (0: no splitting, connected components only).
        min_area_px: components smaller than this are dropped, pixels.

    Returns:
        (H, W) int32 instance map, ids 1..n: components in raster order, then the extra pieces of
        split components.
    """
    components, n = ndimage.label(mask)
    components = components.astype(np.int32, copy=False)
    if n and min_area_px > 0:
        keep = _component_sizes(components) >= min_area_px
        keep[0] = False
        if not keep[1:].all():
            components = _relabel(np.where(keep[components], components, 0))
            n = int(components.max(initial=0))
    if n == 0 or depth_px <= 0:
        return components
    # taxicab distance d₁ ≥ Euclidean, 10× cheaper: digital disks have area < π d₁², two disks
    # joined by a neck (at least one pixel deep) have more
    deepest = _max_per_label(ndimage.distance_transform_cdt(components > 0, "taxicab"), components, n)
    area = _component_sizes(components)[1:]
    candidates = np.flatnonzero((deepest >= depth_px + 1) & (area > np.pi * deepest.astype(float) ** 2)) + 1
    next_id = n + 1
    slices = ndimage.find_objects(components)
    for i in candidates:
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in slices[i - 1])
        inside = components[box] == i
        distance = ndimage.distance_transform_edt(inside)
        domes = local_maxima(reconstruction(distance - depth_px, distance), allow_borders=True) & inside
        peaks, k = ndimage.label(domes)
        if k < 2:
            continue
        pieces = watershed(-distance, peaks, mask=inside)
        pieces = np.where(pieces > 1, pieces + (next_id - 2), i)
        components[box][inside] = pieces[inside]
        next_id += k - 1
    return components


def _max_per_label(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """(n,) maximum of ``values`` over each label 1..n (0 for an absent label)."""
    inside = labels > 0
    out = np.zeros(n + 1, values.dtype)
    np.maximum.at(out, labels[inside], values[inside])
    return out[1:]


def _relabel(instances: np.ndarray) -> np.ndarray:
    """Ids made consecutive 1..n, keeping their order."""
    present = np.flatnonzero(np.bincount(instances.ravel()))
    present = present[present > 0]
    if present.size and present[-1] == present.size:
        return instances
    lut = np.zeros(int(instances.max()) + 1, np.int32)
    lut[present] = np.arange(1, present.size + 1, dtype=np.int32)
    return lut[instances]


def cell_landscape(
    boundary: str,
    nuclei: np.ndarray,
    foreground: np.ndarray,
    mean_image: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    sigma_px: float = 2.0,
) -> np.ndarray:
    """The surface that the cell watershed floods from the nuclei; touching cells part on its ridges.

    Args:
        boundary: ``"nuclei"``: Euclidean distance to the nearest nucleus (cells part half-way
            between their nuclei); ``"neck"``: negated distance to the background (cells part at
            the narrowest place of the foreground); ``"intensity"``: gradient magnitude (Sobel) of
            the mean image smoothed by ``sigma_px``, zero within ``2 sigma_px + 1`` pixels of a
            labelled pixel (the edges of nuclei and droplets are no cell boundary).
        nuclei: (H, W) nucleus instances.
        foreground: (H, W) bool.
        mean_image, labels: (H, W) mean image and semantic label map (``"intensity"`` only).
        sigma_px: smoothing of the mean image, pixels (``"intensity"`` only).

    Returns:
        (H, W) float surface.
    """
    if boundary == "nuclei":
        return ndimage.distance_transform_edt(nuclei == 0)
    if boundary == "neck":
        return -ndimage.distance_transform_edt(foreground)
    if boundary == "intensity":
        if mean_image is None or labels is None:
            raise ValueError('cell_boundary "intensity" needs the mean image and the label map.')
        image = np.nan_to_num(np.asarray(mean_image, np.float32))
        gradient = sobel(ndimage.gaussian_filter(image, sigma_px) if sigma_px > 0 else image)
        gradient[ndimage.binary_dilation(labels > 0, iterations=int(2 * sigma_px) + 1)] = 0
        return gradient
    raise ValueError(f"cell_boundary must be one of {', '.join(CELL_BOUNDARIES)}, got {boundary!r}.")


def grow_cells(
    nuclei: np.ndarray, foreground: np.ndarray, min_cell_area_px: float, landscape: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cells seeded by nuclei, grown over the foreground; foreground blobs without a nucleus become cells.

    Args:
        nuclei: (H, W) int32 nucleus instances 1..n, inside ``foreground``.
        foreground: (H, W) bool.
        min_cell_area_px: least area of a nucleus-free foreground component to count as a cell.
        landscape: (H, W) surface flooded from the nuclei (:func:`cell_landscape`); default the
            distance to the nearest nucleus.

    Returns:
        ``cells`` (H, W) int32 (cell ``k`` holds nucleus ``k``; nucleus-free cells numbered after)
        and ``has_nucleus`` (n_cells + 1,) bool.
    """
    n_nuclei = int(nuclei.max(initial=0))
    foreground = foreground | (nuclei > 0)
    if n_nuclei:
        if landscape is None:
            landscape = cell_landscape("nuclei", nuclei, foreground)
        cells = watershed(landscape, nuclei, mask=foreground).astype(np.int32)
    else:
        cells = np.zeros(foreground.shape, np.int32)
    orphans, n_orphans = ndimage.label(foreground & (cells == 0))
    n_new = 0
    if n_orphans:
        big = _component_sizes(orphans) >= max(min_cell_area_px, 1)
        big[0] = False
        lut = np.zeros(n_orphans + 1, np.int32)
        n_new = int(big.sum())
        lut[big] = np.arange(n_nuclei + 1, n_nuclei + n_new + 1, dtype=np.int32)
        cells = np.where(orphans > 0, lut[orphans], cells)
    has_nucleus = np.zeros(n_nuclei + n_new + 1, bool)
    has_nucleus[1 : n_nuclei + 1] = True
    return cells, has_nucleus


def assign_droplets(droplets: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The cell holding most of each droplet's pixels (0 when most of it lies outside every cell).

    Args:
        droplets: (H, W) int droplet instances 1..n.
        cells: (H, W) int cell instances.

    Returns:
        (n + 1,) int32 cell id per droplet id; index 0 is 0. Ties go to the lower cell id.
    """
    n = int(droplets.max(initial=0))
    owner = np.zeros(n + 1, np.int32)
    inside = droplets > 0
    if not n or not inside.any():
        return owner
    base = int(cells.max(initial=0)) + 1
    d, c = droplets[inside].astype(np.int64), cells[inside].astype(np.int64)
    pairs, counts = np.unique(d * base + c, return_counts=True)
    pd, pc = np.divmod(pairs, base)
    order = np.lexsort((pc, -counts, pd))  # per droplet: most pixels first, then lower cell id
    first = np.ones(order.size, bool)
    first[1:] = pd[order][1:] != pd[order][:-1]
    owner[pd[order][first]] = pc[order][first]
    return owner


def segment_instances(
    labels: np.ndarray, mean_image: np.ndarray, pixel_size_um: float, parameters: InstanceParameters | None = None
) -> CellInstances:
    """Nuclei, cells and lipid droplets as instances, from a semantic label map and the mean image.

    Args:
        labels: (H, W) semantic label map, 0 background, 1 nucleus, 2 lipid droplet.
        mean_image: (H, W) mean intensity of the stack over its frames.
        pixel_size_um: lateral pixel size, µm.
        parameters: sizes and thresholds; defaults suit HSRS at ~0.25 µm/px.

    Returns:
        :class:`CellInstances`.
    """
    labels, mean_image = np.asarray(labels), np.asarray(mean_image)
    if labels.ndim != 2 or labels.shape != mean_image.shape:
        raise ValueError(f"labels {labels.shape} and mean image {mean_image.shape} must be (H, W) arrays of one shape.")
    if not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise ValueError(
            f"pixel_size_um must be a positive number of µm per pixel (HSRS: ~0.25), got {pixel_size_um!r}."
        )
    p = parameters or InstanceParameters()
    px2 = pixel_size_um**2
    foreground, source = foreground_mask(mean_image, labels, p.smoothing_um / pixel_size_um, p.min_contrast)
    foreground = _fill_small_holes(foreground, p.min_cell_area_um2 / px2)
    nuclei = nucleus_instances(
        labels,
        p.nucleus_closing_um / pixel_size_um,
        p.nucleus_split_depth_um / pixel_size_um,
        p.min_nucleus_area_um2 / px2,
    )
    foreground |= nuclei > 0
    nuclei = join_nucleus_fragments(nuclei, foreground, p.fragment_max_gap, p.fragment_min_contact)
    landscape = cell_landscape(p.cell_boundary, nuclei, foreground, mean_image, labels, p.smoothing_um / pixel_size_um)
    cells, has_nucleus = grow_cells(nuclei, foreground, p.min_cell_area_um2 / px2, landscape)
    droplets = split_touching(labels == LIPID_DROPLET, p.droplet_split_depth_um / pixel_size_um)
    return CellInstances(
        cells=cells,
        nuclei=nuclei,
        droplets=droplets,
        droplet_cell=assign_droplets(droplets, cells),
        has_nucleus=has_nucleus,
        foreground=foreground,
        foreground_source=source,
    )


def disk_closing(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary closing of ``mask`` with a Euclidean disk of ``radius`` px, from two distance transforms.

    Equal to ``skimage.morphology.closing(mask, disk(radius))`` (a pixel is within ``radius`` of the mask,
    then at more than ``radius`` from what that left out), in a time that does not grow with the radius.

    Examples:
        >>> from skimage.morphology import closing, disk
        >>> mask = np.random.default_rng(0).random((60, 50)) > 0.7
        >>> bool((disk_closing(mask, 4)[4:-4, 4:-4] == closing(mask, disk(4))[4:-4, 4:-4].astype(bool)).all())
        True
    """
    dilated = ndimage.distance_transform_edt(~mask) <= radius
    return ndimage.distance_transform_edt(dilated) > radius


def nucleus_instances(labels: np.ndarray, closing_px: float, depth_px: float, min_area_px: float) -> np.ndarray:
    """Nucleus instances: touching nuclei split apart, fragments of one nucleus joined.

    Touching nuclei are split where the distance transform dips (:func:`split_touching`). A noisy
    label map also breaks one nucleus into pieces separated by a few unlabelled pixels; pieces that
    a closing with a disk of radius ``closing_px`` joins into one blob are one nucleus: the largest
    piece of the blob (all its parts, if the split parted it) takes the others, each to the part
    nearest to it, and the closed gaps between them become nucleus. The closing only decides which
    separate pieces belong together: a nucleus that is one piece keeps its pixels, and touching
    nuclei (one piece, split by the watershed) stay apart however far the closing fills their neck.

    Args:
        labels: (H, W) semantic label map.
        closing_px: radius of the closing disk, pixels (below 1: no joining).
        depth_px: split depth of :func:`split_touching`, pixels.
        min_area_px: nuclei smaller than this (after joining) are dropped.

    Returns:
        (H, W) int32 nucleus instances 1..n.

    Examples:
        >>> labels = np.zeros((32, 40), np.uint8); labels[8:24, 8:15] = 1; labels[8:24, 17:22] = 1  # a broken nucleus
        >>> int(nucleus_instances(labels, 2, 4, 10).max()), int(nucleus_instances(labels, 0, 4, 10).max())
        (1, 2)
    """
    mask = labels == NUCLEUS
    r = round(closing_px)
    if r < 1 or not mask.any():
        return split_touching(mask, depth_px, min_area_px)
    pieces = split_touching(mask, depth_px)
    components, n = ndimage.label(mask)
    # pad so that nuclei cut by the field edge are not eroded from it
    closed = disk_closing(np.pad(mask, r, mode="edge"), r)[r:-r, r:-r]
    closed &= labels != LIPID_DROPLET
    closed |= mask
    groups, n_groups = ndimage.label(closed)
    area = np.bincount(components.ravel(), minlength=n + 1)
    group_of = np.zeros(n + 1, np.int64)
    group_of[components.ravel()] = groups.ravel()  # a component lies in one closed blob
    group_of[0] = 0
    largest = np.zeros(n_groups + 1, np.int64)
    np.maximum.at(largest, group_of[1:], area[1:])
    anchor = area == largest[group_of]
    anchor[0] = False
    per_group = np.bincount(group_of[1:], minlength=n_groups + 1)
    if (per_group[1:] <= 1).all():  # nothing to join
        return split_touching(mask, depth_px, min_area_px)
    seeds = np.where(anchor[components], pieces, 0)
    joined = per_group[groups] > 1  # blobs of several pieces: their gaps become nucleus
    region = mask | (closed & joined)
    nuclei = watershed(ndimage.distance_transform_edt(seeds == 0), seeds, mask=region).astype(np.int32)
    if min_area_px > 0:
        small = np.bincount(nuclei.ravel()) < min_area_px
        small[0] = False
        nuclei[small[nuclei]] = 0
    return _relabel(nuclei)


def _fill_small_holes(mask: np.ndarray, max_hole_px: float) -> np.ndarray:
    holes, n = ndimage.label(~mask)
    if n == 0:
        return mask
    small = _component_sizes(holes) < max_hole_px
    small[0] = False
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    small[border] = False  # background reaching the field edge is not a hole
    return mask | small[holes]
