"""Segmenting mosaics of any size in bounded memory: region by region, written tile by tile.

:class:`MosaicSegmenter` segments a stack (K, H, W) far larger than memory (``configs/mosaic.yaml``):

1. opens it lazily (:func:`scripts.io.mosaic.open_lazily`; a stack that cannot be read in parts
   and does not fit in ``memory_gib`` is refused in one line naming the file, and so is a chunked
   file (tiled TIFF, OME-Zarr) whose chunks do not fit in it);
2. checks the spectral axis and finds the intensity scale from a subsample of pixels (a grid of
   up to ``sample_px``² pixels, all frames): the same checks and the same robust percentiles as
   the whole-stack preprocessing (``SpectralResample``, ``NormalizeSpectralIntensity``);
3. cuts the field into square tiles of ``tile_px`` (when not given: as few as a ``memory_gib``
   budget allows, after the chunks being decoded for a chunked file, as even as possible, and on
   chunk boundaries when that costs no extra tile); for each tile it reads the region covered by
   **every sliding window that touches the tile** — the windows MONAI's sliding window places on the whole field
   (:func:`scripts.engine.inferers.window_starts`) — and runs the same sliding window on that
   region. MONAI places the same windows on the region as on the whole field there, with the same
   Gaussian weights, so the tile's logits are those of the whole field: no seam, and no margin to
   tune (the margin is whatever the windows need: up to one window on each side);
   the network gets each region in MONAI's (K, X, Y) order, as the whole-stack path's reader gives a field
   (:mod:`scripts.io.orientation`), so a tiled stack's labels are those of the same stack segmented whole;
4. writes each tile of the label map as it is done into a tiled TIFF, or with ``label_format="ome.zarr"``
   into an OME-Zarr label image, one chunk per tile (:func:`write_label_tiles`,
   atomic), then a row of ``summary.csv`` (as :class:`~scripts.engine.segmentation_writer.SegmentationWriter`).

Peak memory ≈ the process and the network's activations for one batch of windows + one region
(at most ``4 × (K + 2 × 64 + 8)`` bytes per region pixel during preprocessing and inference, plus the
region in its stored type for a chunked file) + the chunks being decoded (``2 ×`` a chunk's bytes × the
chunks decoded at once, 1 to 4 as the budget allows) + 6 bytes per field pixel for the summary's
object counts at the end.

With ``overlays`` it also writes ``<stem>_overlay.png`` (:class:`MosaicOverlay`): a downsampled view of the field, at
most ``overlay_px`` (1024) on the long side, built tile by tile from the regions and label tiles of the pass above
(no second read): per block of ``n × n`` field pixels the mean of the CH₂ frames and of all frames, and the label of
its centre pixel; then the bundle's overlay figure (:mod:`scripts.io.overlay`), its scale bar for the block size.

A chunked file's chunks are decoded whole by every region that touches them, so chunks much larger
than the tiles make every tile decode far more than it uses: the run logs this read amplification
(a WARNING above 4×, with the command that rewrites the file in smaller chunks).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scripts.engine.inferers import FieldSlidingWindowInferer, window_starts
from scripts.engine.progress import ProgressLogger
from scripts.engine.segmentation_writer import SUMMARY_FIELDS, label_statistics, overlay_flag
from scripts.io.errors import HSRSInputError, HSRSOptionError, as_bool
from scripts.io.formats import stack_stem
from scripts.io.mosaic import (
    GIB,
    LazyStack,
    MosaicTooLargeError,
    chunk_advice,
    describe_chunks,
    open_lazily,
    write_label_tiles,
)
from scripts.io.ome_zarr import DEFAULT_CONCURRENCY, read_label_image
from scripts.io.overlay import OverlayFigure, ch2_frames, overlay_rgb, save_png, stretch
from scripts.io.tables import update_table
from scripts.io.writer import check_writable
from scripts.spectra.calibration import check_axis
from scripts.transforms.array import NormalizeSpectralIntensity, SpectralResample

logger = logging.getLogger(__name__)

#: network activations per window pixel of one batch (HybridUNet, float32, CPU: measured ~340 MiB for 2 × 256²)
ACTIVATION_BYTES_PER_WINDOW_PX = 2800
#: read amplification (pixels decoded / pixels used) above which the chunk layout is worth a WARNING
AMPLIFICATION_WARNING = 4.0
#: label-map formats a mosaic can be written in tile by tile: a tiled TIFF, or an OME-Zarr label image
LABEL_FORMATS = ("tif", "ome.zarr")


def process_rss_bytes() -> int:
    """This process's resident memory now (Linux ``/proc/self/status``; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


@dataclass(frozen=True)
class Tile:
    """A core tile ``[y0, y1) × [x0, x1)`` of the label map and the region ``[ry0, ry1) × [rx0, rx1)`` it is inferred on."""

    y0: int
    y1: int
    x0: int
    x1: int
    ry0: int
    ry1: int
    rx0: int
    rx1: int

    @property
    def region_px(self) -> int:
        return (self.ry1 - self.ry0) * (self.rx1 - self.rx0)


def _axis_plan(size: int, tile: int, starts: Sequence[int], roi: int) -> list[tuple[int, int, int, int, int]]:
    """Along one axis: for each tile ``[a, b)``, the region ``[r0, r1)`` of the windows touching it and how many
    windows that is: ``(a, b, r0, r1, windows)``."""
    plan = []
    for a in range(0, size, tile):
        b = min(a + tile, size)
        touching = [s for s in starts if s < b and s + roi > a]
        plan.append((a, b, min(touching), min(max(touching) + roi, size), len(touching)))
    return plan


def _axis_plans(field: tuple[int, int], tile: int, roi: Sequence[int], overlap: float | Sequence[float]):
    (h, w), (rh, rw) = field, (min(int(roi[0]), field[0]), min(int(roi[1]), field[1]))
    oy, ox = overlap if isinstance(overlap, Sequence) else (overlap, overlap)
    return _axis_plan(h, tile, window_starts(h, rh, oy), rh), _axis_plan(w, tile, window_starts(w, rw, ox), rw), rh * rw


def read_amplification(tiles: Sequence[Tile], chunks: Sequence[int]) -> float:
    """Pixels of the chunks the tiles' regions touch (decoded) over the regions' pixels (used); 1 is ideal."""
    _, cy, cx = (int(c) for c in chunks)
    decoded = used = 0
    for t in tiles:
        rows = (math.ceil(t.ry1 / cy) - t.ry0 // cy) * cy
        cols = (math.ceil(t.rx1 / cx) - t.rx0 // cx) * cx
        decoded, used = decoded + rows * cols, used + t.region_px
    return decoded / max(used, 1)


def plan_tiles(field: tuple[int, int], tile: int, roi: Sequence[int], overlap: float | Sequence[float]) -> list[Tile]:
    """Row-major tiles of ``tile`` px over ``field`` (H, W), each with the region of the windows touching it.

    ``roi`` and ``overlap`` (one or per axis) are the windows MONAI places on the whole field
    (:meth:`FieldSlidingWindowInferer.window_plan`)."""
    ys, xs, _ = _axis_plans(field, tile, roi, overlap)
    return [Tile(y0, y1, x0, x1, ry0, ry1, rx0, rx1) for y0, y1, ry0, ry1, _ in ys for x0, x1, rx0, rx1, _ in xs]


@dataclass(frozen=True)
class PlanCost:
    """What a tile plan costs: its largest region and, summed over the regions, the pixels read and the window
    pixels the network computes (a window is computed once for every region that holds it)."""

    largest_region_px: int
    region_px: int
    window_px: int


def plan_cost(field: tuple[int, int], tile: int, roi: Sequence[int], overlap: float | Sequence[float]) -> PlanCost:
    """:class:`PlanCost` of :func:`plan_tiles` ``(field, tile, roi, overlap)``, computed along each axis (fast for
    any field: the regions are the products of the rows' and the columns' extents)."""
    ys, xs, window = _axis_plans(field, tile, roi, overlap)
    extent_y, extent_x = [p[3] - p[2] for p in ys], [p[3] - p[2] for p in xs]
    return PlanCost(
        largest_region_px=max(extent_y) * max(extent_x),
        region_px=sum(extent_y) * sum(extent_x),
        window_px=sum(p[4] for p in ys) * sum(p[4] for p in xs) * window,
    )


class MosaicOverlay:
    """The downsampled view of a mosaic for its overlay, filled tile by tile (bounded memory: ~10 bytes per view pixel).

    The field (H, W) is cut into blocks of ``stride`` × ``stride`` pixels, ``stride`` the smallest that gives at
    most ``max_px`` blocks on the long side. Per block: the mean of the CH₂ frames (``frames``; None: all frames),
    the mean of all frames, and the label of its centre pixel (nearest-neighbour: pure class colours).
    """

    def __init__(
        self, field: tuple[int, int], frames: np.ndarray | None, max_px: int = 1024, ch2_title: str = "mean image"
    ):
        h, w = (int(v) for v in field)
        self.field, self.frames, self.ch2_title = (h, w), frames, ch2_title
        self.stride = max(1, math.ceil(max(h, w) / max(int(max_px), 1)))
        vh, vw = math.ceil(h / self.stride), math.ceil(w / self.stride)
        self.ch2 = np.zeros((vh, vw), np.float32)
        self.mean = np.zeros((vh, vw), np.float32)
        self.labels = np.zeros((vh, vw), np.uint8)

    @staticmethod
    def bytes_per_view_px() -> int:
        """The view (three arrays) and, while it is drawn, its float RGB and grey copies."""
        return 4 + 4 + 1 + 4 * 3 + 4 * 2

    def _blocks(self, a: int, b: int, size: int) -> tuple[int, np.ndarray, np.ndarray]:
        """Along one axis, for the core ``[a, b)``: the first block, the block starts within it (relative to ``a``,
        the first clipped to 0) and the centre pixels of the blocks whose centre lies in it (relative to ``a``)."""
        s = self.stride
        first, last = a // s, (b - 1) // s
        starts = np.maximum(np.arange(first, last + 1) * s, a) - a
        centres = np.minimum(np.arange(first, last + 1) * s + s // 2, size - 1)
        return first, starts, centres

    def images(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mean and the CH₂ image (H, W) of a core tile's ``frames`` (K, H, W) as read."""
        mean = frames.mean(0, dtype=np.float32)
        return mean, mean if self.frames is None else frames[self.frames].mean(0, dtype=np.float32)

    def add(self, y0: int, y1: int, x0: int, x1: int, mean: np.ndarray, ch2: np.ndarray, labels: np.ndarray) -> None:
        """Add a core tile ``[y0, y1) × [x0, x1)``: its mean and CH₂ images (:meth:`images`) and its label map."""
        h, w = self.field
        by, ys, cy = self._blocks(y0, y1, h)
        bx, xs, cx = self._blocks(x0, x1, w)
        for target, image in ((self.mean, mean), (self.ch2, ch2)):
            sums = np.add.reduceat(np.add.reduceat(image, ys, axis=0), xs, axis=1)
            target[by : by + ys.size, bx : bx + xs.size] += (
                sums / self._area(by, ys.size, h)[:, None] / self._area(bx, xs.size, w)
            )
        iy, ix = (cy >= y0) & (cy < y1), (cx >= x0) & (cx < x1)
        self.labels[np.ix_(by + np.flatnonzero(iy), bx + np.flatnonzero(ix))] = labels[np.ix_(cy[iy] - y0, cx[ix] - x0)]

    def _area(self, first: int, n: int, size: int) -> np.ndarray:
        """Pixels of blocks ``first … first + n - 1`` along an axis of ``size`` (the last may be cut by the field)."""
        starts = np.arange(first, first + n) * self.stride
        return (np.minimum(starts + self.stride, size) - starts).astype(np.float32)

    def figure(
        self, title: str, pixel_size_um: float | None, pixel_size_assumed: bool = False, flag: str = ""
    ) -> OverlayFigure:
        """The overlay figure of the view (:class:`scripts.io.overlay.OverlayFigure`)."""
        h, w = self.field
        notes = []
        if self.stride > 1:
            notes.append(
                f"downsampled view of the {h} × {w} px field: 1 pixel = {self.stride} × {self.stride} field pixels "
                "(images: their mean; labels: the centre pixel's)"
            )
        return OverlayFigure(
            panels=[
                (stretch(self.ch2), self.ch2_title),
                (overlay_rgb(None, self.labels, background=self.mean), "segmentation on the mean image"),
            ],
            title=title,
            pixel_size_um=None if not pixel_size_um else pixel_size_um * self.stride,
            pixel_size_assumed=pixel_size_assumed,
            flag=flag,
            notes=notes,
        )


class MosaicSegmenter:
    """Segment stacks of any size within ``memory_gib`` (see the module docstring); ``run`` over a datalist.

    Args:
        network: the segmentation network (weights loaded by ``weights_loader`` when given).
        inferer: the inference sliding window (``inferer`` of ``inference.yaml``).
        output_dir: where ``<stem>.tif`` label maps and ``summary.csv`` go.
        memory_gib: the memory setting: peak resident memory of the process stays below it.
        tile_px: tile side (multiple of 16); default: the largest that ``memory_gib`` allows.
        min_frames, axis_check: as in ``inference.yaml``.
        sample_px: the subsample grid for the axis check and the intensity scale (``sample_px``² pixels).
        weights_loader: ``handlers#0`` of ``inference.yaml`` (MONAI ``CheckpointLoader``), or None.
        summary_csv: the summary table (rows of other stacks are kept).
        overlays: also write ``<stem>_overlay.png`` from a downsampled view (:class:`MosaicOverlay`; its memory is
            counted in :meth:`fixed_bytes`).
        default_pixel_size_um: the overlay's scale bar for stacks whose file records no pixel size (marked as
            assumed; config id ``cells_pixel_size_um``); None: no scale bar for them.
        overlay_px: the view's long side at most, pixels (the figure's is about twice that: two panels).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        inferer: FieldSlidingWindowInferer,
        output_dir: str | Path,
        memory_gib: float = 4.0,
        tile_px: int | None = None,
        min_frames: int = 16,
        axis_check: str = "warn",
        sample_px: int = 256,
        weights_loader=None,
        summary_csv: str = "summary.csv",
        label_format: str = "tif",
        overlays: bool = False,
        default_pixel_size_um: float | None = 0.25,
        overlay_px: int = 1024,
    ):
        self.network, self.inferer = network, inferer
        self._configured_inferer = inferer  # choose_tile may use a smaller window for one stack
        self.output_dir = check_writable(output_dir)
        if not float(memory_gib) > 0:
            raise HSRSOptionError(f"memory_gib must be a positive number of GiB, got {memory_gib!r}.")
        self.memory_bytes = float(memory_gib) * GIB
        if tile_px is not None and (int(tile_px) <= 0 or int(tile_px) % 16):
            raise HSRSOptionError(f"tile_px must be a positive multiple of 16, got {tile_px!r}.")
        self.tile_px = None if tile_px is None else int(tile_px)
        self.min_frames, self.axis_check, self.sample_px = int(min_frames), axis_check, int(sample_px)
        self.weights_loader, self.summary_csv = weights_loader, summary_csv
        if label_format not in LABEL_FORMATS:
            raise HSRSOptionError(f"label_format must be one of {LABEL_FORMATS} for a mosaic, got {label_format!r}.")
        self.label_format = label_format
        self.overlays, self.overlay_px = as_bool(overlays, "overlays"), int(overlay_px)
        self.default_pixel_size_um = None if default_pixel_size_um is None else float(default_pixel_size_um)
        self._overlay: MosaicOverlay | None = None
        if self.overlays:  # imported now, so that the process's size measured for the budget includes them
            import matplotlib.backends.backend_agg
            import matplotlib.figure  # noqa: F401
        self.resample = SpectralResample(min_frames=self.min_frames)
        self.normalize = NormalizeSpectralIntensity()
        self._weights_loaded = False
        #: seconds spent on the last stack: reading regions, preprocessing, the network (sliding window), the rest
        self.timings: dict[str, float] = {}

    @property
    def formats(self) -> tuple[str]:
        """The label-map format written per stack (with ``overlays`` and ``summary_csv``: what
        :func:`scripts.engine.batch.pending_stacks` checks for a complete stack)."""
        return (self.label_format,)

    # ------------------------------------------------------------------------------------------ planning
    def bytes_per_region_px(self, frames: int, stored_itemsize: int = 0) -> int:
        """Working memory per pixel of a region, a bound over the steps: the region in its stored type
        (``stored_itemsize`` bytes a value, a chunked file) while it becomes float32 (``frames``); the float32 frames
        while they are resampled frame by frame into the 64 canonical ones (``target``; normalising is in place);
        those while the sliding window fills its logits, weights and count map (8 values). Their sum, with one more
        ``target`` for the NaN mask and the network's input windows: 928 bytes for 64 uint16 frames, 3.6 GiB for a
        2048² field whole, where the process was measured to grow by 2.1 GiB including the network's activations
        (ONNX Runtime, 768² windows)."""
        target = int(self.resample.target.size)
        return 4 * (frames + 2 * target + 8) + stored_itemsize * frames

    def fixed_bytes(self, inferer: FieldSlidingWindowInferer | None = None) -> int:
        """Memory that does not depend on the tile: this process now + one batch of windows through the network
        (the windows of ``inferer``, default the current one)."""
        inferer = self.inferer if inferer is None else inferer
        window_px = int(np.prod(inferer.max_roi_size)) * int(inferer.sw_batch_size)
        return process_rss_bytes() + ACTIVATION_BYTES_PER_WINDOW_PX * window_px + self.overlay_bytes()

    def overlay_bytes(self) -> int:
        """Memory of the overlay (0 without ``overlays``): its view (:meth:`MosaicOverlay.bytes_per_view_px`) and,
        while it is drawn, the figure (two panels of at most 2048 × ``overlay_px`` screen pixels: ~24 bytes each
        for the canvas, matplotlib's RGBA buffer and the PNG encoder)."""
        if not getattr(self, "overlays", False):
            return 0
        view = self.overlay_px**2
        return MosaicOverlay.bytes_per_view_px() * view + 24 * 2 * max(2048, self.overlay_px) * self.overlay_px

    def _window_candidates(self) -> list[FieldSlidingWindowInferer]:
        """The configured inferer, then copies with smaller windows (steps of 64 px down to 256 px, multiples of the
        network's divisor, the overlap in pixels kept): what :meth:`choose_tile` may fall back to."""
        configured = self._configured_inferer
        roi = configured.max_roi_size
        smaller = [r for r in range(min(roi) - 64, 255, -64) if r % configured.divisor == 0]
        return [configured, *(configured.with_max_roi((r, r)) for r in smaller)]

    def data_headroom(self, path: Path) -> float:
        """Bytes ``memory_gib`` leaves for data with the smallest windows :meth:`choose_tile` may use; a setting that
        leaves none is refused in one line naming the file, the process's size and the windows' need."""
        smallest = self._window_candidates()[-1]
        headroom = self.memory_bytes - self.fixed_bytes(smallest)
        if headroom <= 0:
            rss, windows = process_rss_bytes(), self.fixed_bytes(smallest) - process_rss_bytes()
            raise HSRSOptionError(
                f"{path}: memory_gib={self.memory_bytes / GIB:g} leaves no room for data: this process holds "
                f"{rss / GIB:.2f} GiB and the network needs {windows / GIB:.2f} GiB for even its smallest windows "
                f"({smallest.max_roi_size[0]}×{smallest.max_roi_size[1]} px); give --memory_gib "
                f"{math.ceil((rss + windows) / GIB * 2 + 1) / 2:g} or more."
            )
        return headroom

    def plan_decoding(self, lazy: LazyStack) -> None:
        """How many chunks of a chunked file zarr decodes at once: up to 4, within a quarter of the budget
        (at least 1; :func:`open_lazily` has refused a chunk larger than the whole budget)."""
        if lazy.chunked is None:
            return
        budget = self.memory_bytes - self.fixed_bytes()
        lazy.chunked.concurrency = max(1, min(DEFAULT_CONCURRENCY, int(0.25 * budget // max(lazy.chunk_bytes(1), 1))))

    def choose_tile(self, lazy: LazyStack) -> int:
        """The largest tile (multiple of 16) whose region fits in ``memory_gib`` with the chunks being decoded; for a
        chunked file the largest multiple of the chunk side that fits, when one does.

        A region holds every window touching its tile, so large windows need large regions: when not even the
        smallest tile fits with the inferer's largest window, smaller windows are tried (steps of 64 px, down to
        256 px, the overlap in pixels kept) and the one with the least work is taken, logged: the window pixels the
        network computes plus the region pixels read, summed over the tiles (:func:`plan_cost`; smaller windows
        overlap more, smaller tiles recompute more windows around them). The setting is refused when none fits."""
        configured, *candidates = self._window_candidates()
        roi = configured.max_roi_size
        _, h, w = lazy.shape
        self.inferer = configured
        try:
            return self._choose_tile(lazy)
        except (HSRSOptionError, MosaicTooLargeError):
            if not candidates:
                raise
        best: tuple[int, int, FieldSlidingWindowInferer] | None = None  # (work, tile, inferer)
        for candidate in candidates:
            self.inferer = candidate
            try:
                tile = self._choose_tile(lazy)
            except (HSRSOptionError, MosaicTooLargeError):
                continue
            cost = plan_cost((h, w), tile, *self._row_major_windows((h, w)))
            work = cost.window_px + cost.region_px
            if best is None or work < best[0]:
                best = (work, tile, self.inferer)
        if best is None:
            self.inferer = configured
            return self._choose_tile(lazy)  # none fits: raises, naming the configured window
        work, tile, self.inferer = best
        logger.info(
            "%s: windows of at most %d×%d px (roi_size %d×%d needs more than memory_gib=%g; of the smaller windows "
            "that fit, these take the least work: network and reading %.2f× the field's pixels)",
            lazy.path.name,
            *self.inferer.max_roi_size,
            *roi,
            self.memory_bytes / GIB,
            work / (h * w),
        )
        return tile

    def _row_major_windows(self, field: tuple[int, int]) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """(window, overlap) per row-major axis (H, W) of the windows the network gets on the field in MONAI's
        (X, Y) = (W, H) order, as the whole-stack path places them."""
        roi, overlap = self.inferer.window_plan(field[::-1])
        return roi[::-1], overlap[::-1]

    def _choose_tile(self, lazy: LazyStack) -> int:
        k, h, w = lazy.shape
        roi, overlap = self._row_major_windows((h, w))
        stored = lazy.dtype.itemsize if lazy.chunked is not None else 0
        per_px, budget = self.bytes_per_region_px(k, stored), self.memory_bytes - self.fixed_bytes()
        if not lazy.partial:
            budget -= lazy.nbytes_float32  # read whole once and kept while its tiles are segmented
        budget -= lazy.chunk_bytes()
        if self.tile_px is not None:
            return self.tile_px
        best = None
        for tile in range(16, max(h, w) + 16, 16):
            if plan_cost((h, w), tile, roi, overlap).largest_region_px * per_px > budget:
                break
            best = tile
            if tile >= max(h, w):
                break
        if best is None:
            need = (self.fixed_bytes() + lazy.chunk_bytes() + per_px * (2 * roi[0]) * (2 * roi[1])) / GIB
            smallest = plan_cost((h, w), 16, roi, overlap).largest_region_px * per_px
            if lazy.chunked is not None and smallest <= budget + lazy.chunk_bytes():  # the chunks take the room
                raise MosaicTooLargeError(
                    f"{lazy.path}: stored in {describe_chunks(lazy)}; with the chunks decoded at once "
                    f"({lazy.chunked.concurrency}) memory_gib={self.memory_bytes / GIB:g} leaves no room for a tile "
                    f"of even {roi[0]}×{roi[1]} px; {chunk_advice(lazy)} (to {math.ceil(need * 2) / 2:g} or more)."
                )
            raise HSRSOptionError(
                f"{lazy.path}: memory_gib={self.memory_bytes / GIB:g} is too small for windows of "
                f"{roi[0]}×{roi[1]} px of a {k}-frame stack (this process already holds "
                f"{process_rss_bytes() / GIB:.2f} GiB); give --memory_gib {math.ceil(need * 2) / 2:g} or more, or a "
                "smaller --roi_size."
            )
        return self._even_tile(best, (h, w), lazy.chunks)

    @staticmethod
    def _even_tile(best: int, field: tuple[int, int], chunks: Sequence[int] | None) -> int:
        """The smallest tile (multiple of 16) that cuts ``field`` into as many tiles as ``best`` does (even tiles,
        smaller regions), rounded up to a multiple of the chunk side when that still gives as many tiles (tiles
        start on chunk boundaries)."""
        h, w = field

        def count(t: int) -> int:
            return math.ceil(h / t) * math.ceil(w / t)

        n = math.ceil(max(h, w) / best)
        tile = min(best, 16 * math.ceil(max(h, w) / n / 16))
        tile = tile if count(tile) == count(best) else best
        if chunks is not None:
            side = int(np.lcm(int(chunks[1]), int(chunks[2])))
            aligned = side * math.ceil(tile / side)
            if side % 16 == 0 and aligned <= best and count(aligned) == count(best):
                tile = aligned
        return tile

    # ------------------------------------------------------------------------------------------ one stack
    def _sample(self, lazy: LazyStack, whole: np.ndarray | None = None) -> np.ndarray:
        """The subsample grid's pixels, all frames (K, ny, nx): from ``whole`` (the field already read) when
        given, else read from the file."""
        _, h, w = lazy.shape
        ys = np.unique(np.linspace(0, h - 1, min(h, self.sample_px)).round().astype(int))
        xs = np.unique(np.linspace(0, w - 1, min(w, self.sample_px)).round().astype(int))
        if whole is not None:
            return whole[:, ys[:, None], xs[None, :]]
        return lazy.points(ys, xs)

    def _preprocess(self, raw: np.ndarray, wavenumbers: np.ndarray, lo: float, hi: float) -> torch.Tensor:
        img = self.resample(torch.from_numpy(raw), wavenumbers)
        img = torch.as_tensor(img)
        img.sub_(lo).div_(hi - lo)
        return img

    def _scale(self, lazy: LazyStack, sample: np.ndarray, wavenumbers: np.ndarray) -> tuple[float, float]:
        resampled = torch.as_tensor(self.resample(torch.from_numpy(sample), wavenumbers))
        lo, hi = (float(v) for v in np.percentile(resampled.numpy(), [self.normalize.lower, self.normalize.upper]))
        if not hi - lo > 1e-8 * max(abs(hi), abs(lo), 1.0):
            raise HSRSInputError(
                f"{lazy.path}: intensities are constant ({lo:g}) between the {self.normalize.lower:g}th and "
                f"{self.normalize.upper:g}th percentiles; the stack holds no image to segment."
            )
        return lo, hi

    def _load_weights(self) -> None:
        if self.weights_loader is not None and not self._weights_loaded:
            from ignite.engine import Engine

            self.weights_loader(Engine(lambda engine, batch: None))
        self._weights_loaded = True
        self.network.eval()

    def segment(self, path: str | Path) -> dict:
        """Segment one stack into ``<stem>.tif`` and its ``summary.csv`` row; returns the row."""
        self._load_weights()
        path = Path(path)
        started = time.perf_counter()
        memory_gib = self.memory_bytes / GIB
        lazy = open_lazily(path, self.data_headroom(path), setting_gib=memory_gib)
        try:
            return self._segment(lazy, started)
        finally:
            lazy.close()

    def _segment(self, lazy: LazyStack, started: float) -> dict:
        path = lazy.path
        self.plan_decoding(lazy)
        self.timings = {"read": 0.0, "preprocess": 0.0, "network": 0.0}
        k, h, w = lazy.shape
        if k < self.min_frames:
            raise HSRSInputError(f"{path}: the stack has {k} frames; at least {self.min_frames} are needed.")
        tile = self.choose_tile(lazy)
        whole = self._read_if_one_tile(lazy, tile)
        sample = self._sample(lazy, whole)
        if not np.any(sample):
            raise HSRSInputError(f"{path}: every sampled pixel is 0; the acquisition is empty or the wrong file.")
        check = check_axis(sample, lazy.wavenumbers, self.axis_check, source=str(path))
        logger.log(check.level, "%s", check.message)
        wavenumbers = np.asarray(check.wavenumbers, dtype=float)
        lo, hi = self._scale(lazy, sample, wavenumbers)
        finite = np.where(np.isfinite(sample), sample, np.nan).reshape(k, -1)
        self._frame_medians = np.nan_to_num(np.nanmedian(finite, axis=1)).astype(np.float32)  # NaN/Inf repair
        del sample, finite
        # the network sees each region as the whole-stack path presents a field, in MONAI's (K, X, Y) = (K, W, H)
        # order (scripts/io/orientation.py), with the whole field's windows there; the tiles are row-major (H, W)
        roi, overlap = self._row_major_windows((h, w))
        tiles = plan_tiles((h, w), tile, roi, overlap)
        logger.info(
            "%s: %d×%d px × %d frames in %d tile(s) of %d px (regions up to %d×%d px) within memory_gib=%g",
            path.name,
            h,
            w,
            k,
            len(tiles),
            tile,
            max(t.ry1 - t.ry0 for t in tiles),
            max(t.rx1 - t.rx0 for t in tiles),
            self.memory_bytes / GIB,
        )
        if lazy.chunked is not None:
            amplification = read_amplification(tiles, lazy.chunked.chunks)
            level = logging.WARNING if amplification > AMPLIFICATION_WARNING else logging.INFO
            logger.log(
                level,
                "%s: stored in %s, %d decoded at a time; the tiles decode %.2f× the pixels they use%s",
                path.name,
                describe_chunks(lazy),
                lazy.chunked.concurrency,
                amplification,
                f" (slow: {chunk_advice(lazy)})" if level == logging.WARNING else "",
            )
        self._overlay = None
        if self.overlays:
            frames, ch2_title = ch2_frames(wavenumbers if check.flag != "assumed" else None, check.flag)
            self._overlay = MosaicOverlay((h, w), frames, self.overlay_px, ch2_title)
        progress = ProgressLogger(total=len(tiles), unit="tile", name=f"{path.name}")
        progress.started()
        progress.epoch_started(None)

        # one tile: its region is the field read above, handed over (not kept here) so it is freed once preprocessed
        read = [] if whole is None else [whole]
        del whole

        def label_tiles() -> Iterator[np.ndarray]:
            with self.inferer.fixed_plan((w, h)):
                for t in tiles:
                    yield self._segment_tile(lazy, t, tile, wavenumbers, lo, hi, read)
                    progress.iteration_completed(None)

        stem = stack_stem(path)
        out = write_label_tiles(
            self.output_dir / f"{stem}.{self.label_format}", (h, w), tile, label_tiles(), lazy.pixel_size_um
        )
        lazy.close()
        if self._overlay is not None:
            t0 = time.perf_counter()
            pixel = lazy.pixel_size_um or self.default_pixel_size_um
            figure = self._overlay.figure(
                f"{stem} ({h} × {w} px)",
                pixel,
                pixel_size_assumed=not lazy.pixel_size_um and pixel is not None,
                flag=overlay_flag(None, check.flag),
            )
            self._overlay = None
            save_png(self.output_dir / f"{stem}_overlay.png", figure)
            del figure
            self.timings["overlay"] = time.perf_counter() - t0
        row = self._summary(out, path, stem, (h, w), lazy.pixel_size_um, check.flag)
        total = time.perf_counter() - started
        self.timings["total"] = total
        self.timings["other"] = total - sum(self.timings[k] for k in ("read", "preprocess", "network"))
        logger.info(
            "%s: segmented in %.1f s (reading regions %.1f s, preprocessing %.1f s, network %.1f s, sampling, writing "
            "and summary %.1f s) -> %s",
            path.name,
            total,
            *(self.timings[k] for k in ("read", "preprocess", "network", "other")),
            out,
        )
        return row

    def _read_if_one_tile(self, lazy: LazyStack, tile: int) -> np.ndarray | None:
        """The whole field (float32), read once, when a chunked file is segmented as one tile: the subsample then
        comes from it instead of decoding every chunk a second time. None (nothing read) otherwise."""
        _, h, w = lazy.shape
        if lazy.chunked is None or tile < max(h, w):
            return None
        t0 = time.perf_counter()
        whole = lazy.region(0, h, 0, w)
        self.timings["read"] += time.perf_counter() - t0
        return whole

    @torch.inference_mode()
    def _segment_tile(
        self,
        lazy: LazyStack,
        t: Tile,
        tile: int,
        wavenumbers: np.ndarray,
        lo: float,
        hi: float,
        read: list[np.ndarray] | None = None,
    ) -> np.ndarray:
        """The label tile of ``t``; ``read`` holds its region when already read (taken out of it here, so the
        region is freed after preprocessing as one read here is)."""
        t0 = time.perf_counter()
        raw = read.pop() if read else lazy.region(t.ry0, t.ry1, t.rx0, t.rx1)
        t1 = time.perf_counter()
        bad = ~np.isfinite(raw)
        if bad.any():  # as the reader's nan_policy="repair": the frame's median (of the subsample)
            raw[bad] = np.broadcast_to(self._frame_medians[:, None, None], raw.shape)[bad]
        del bad
        images = None
        if self._overlay is not None:  # the core's mean and CH₂ images as read, for the overlay's view
            images = self._overlay.images(raw[:, t.y0 - t.ry0 : t.y1 - t.ry0, t.x0 - t.rx0 : t.x1 - t.rx0])
        img = self._preprocess(raw, wavenumbers, lo, hi)
        del raw
        img = img.transpose(1, 2).contiguous()  # (K, W, H): MONAI's axis order, as the whole-stack path's reader
        t2 = time.perf_counter()
        logits = self.inferer(img[None], self.network)
        del img
        core = logits[0, :, t.x0 - t.rx0 : t.x1 - t.rx0, t.y0 - t.ry0 : t.y1 - t.ry0].argmax(0).T
        del logits
        out = np.zeros((tile, tile), np.uint8)
        out[: t.y1 - t.y0, : t.x1 - t.x0] = core.to(torch.uint8).cpu().numpy()
        if images is not None:
            self._overlay.add(t.y0, t.y1, t.x0, t.x1, *images, out[: t.y1 - t.y0, : t.x1 - t.x0])
        t3 = time.perf_counter()
        self.timings["read"] += t1 - t0
        self.timings["preprocess"] += t2 - t1
        self.timings["network"] += t3 - t2
        return out

    def _summary(
        self, label_file: Path, source: Path, stem: str, field: tuple[int, int], pixel: float | None, axis_flag: str
    ) -> dict:
        import tifffile

        zarr_labels = label_file.name.endswith(".zarr")
        labels = read_label_image(label_file) if zarr_labels else tifffile.imread(str(label_file))
        stats = label_statistics(labels)
        del labels
        row = {"stem": stem, "image": str(source), "height": field[0], "width": field[1], "pixel_size_um": pixel or ""}
        row.update(stats)
        row["nucleus_area_um2"] = round(stats["nucleus_area_px"] * pixel**2, 3) if pixel else ""
        row["lipid_droplet_area_um2"] = round(stats["lipid_droplet_area_px"] * pixel**2, 3) if pixel else ""
        row["axis_check"], row["error"] = axis_flag, ""
        if self.summary_csv:
            update_table(self.output_dir / self.summary_csv, [row], SUMMARY_FIELDS)
        return row

    def run(self, datalist: Sequence[dict]) -> list[dict]:
        """Segment every stack of ``datalist`` (``[{"image": path}, ...]``); returns their summary rows."""
        return [self.segment(item["image"]) for item in datalist]
