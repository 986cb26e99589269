"""Sliding-window inference that suits whole HSRS fields of any size."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from contextlib import contextmanager

import torch
from monai.inferers import SlidingWindowInferer
from scripts.engine import progress as progress_lines
from scripts.io.errors import HSRSInputError, HSRSOptionError

logger = logging.getLogger(__name__)
#: the ``precision`` values of :class:`FieldSlidingWindowInferer` and the autocast dtype of each
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class FieldSlidingWindowInferer(SlidingWindowInferer):
    """MONAI ``SlidingWindowInferer`` whose window never exceeds the field (rounded up to ``divisor``).

    MONAI pads an image smaller than the window up to the window. The networks normalise their
    features over the whole window (instance normalisation), so a small field padded with a large
    empty margin is segmented badly. Here the window shrinks to the field's size rounded up to the
    network's total stride, but not below twice the stride (so the deepest features are at least
    2×2: instance normalisation needs more than one value), and the little padding that remains is
    a reflection, not zeros. Fields larger than ``roi_size`` are processed window by window, so
    memory stays bounded. A field smaller than the stride (16 px) is refused, naming its file.

    **Fitted windows** (``fit_windows``, default on). Along an axis longer than the largest window, MONAI
    would place windows of exactly ``roi_size`` at its overlap, and the last one moved back to the border
    overlaps its neighbour far more than needed: 1024 px in windows of 512 at 128 px overlap take 3
    windows of 512 (1,536 px of network input per row). Here the axis gets the fewest windows of at most
    ``roi_size`` that overlap by at least ``overlap × roi_size`` px, each shrunk to the smallest
    multiple of ``divisor`` that covers the field with that count: 3 windows of 432 (1,296 px). The
    overlap between neighbours never falls below the configured one, so seams are as before; the
    network sees fewer redundant pixels (:meth:`window_plan`). :meth:`fixed_plan` holds one field's
    plan while parts of it are segmented (``scripts.engine.mosaic``), so each part gets the whole
    field's windows.

    Args:
        roi_size: largest window (H, W); each must be divisible by ``divisor``.
        divisor: the network's total spatial stride (16 for the default HybridUNet).
        fit_windows: fit the window count and size to the field (above); False places MONAI's windows
            of ``roi_size`` at ``overlap``.
        precision: ``"float32"`` (default) or ``"bfloat16"``: the network runs under ``torch.autocast`` in
            bfloat16 on the window's device and its logits are stitched in float32. On CPUs with native
            bfloat16 (AMX, AVX512-BF16; :func:`native_bfloat16`) the network ran 1.3–1.4× faster here, and the
            labels differ from float32's at about 0.01 % of pixels (measured: ``docs/results.md``,
            throughput section); elsewhere bfloat16 is emulated and slower, so it is refused there with a
            WARNING and float32 is used. MONAI's ``amp`` option autocasts on CUDA only; this is the CPU one.
        progress: MONAI's progress bar (tqdm) over the windows: ``"auto"`` (default) shows it for fields
            of at least ``progress_min_windows`` windows when a person watches a terminal
            (:func:`scripts.engine.progress.interactive`: not in CI or a log file); True / False force it.
        kwargs: passed to ``SlidingWindowInferer`` (``sw_batch_size``, ``overlap``, ``mode``,
            ``sw_device``, ``device`` …); ``padding_mode`` defaults to ``"reflect"``.
    """

    def __init__(
        self,
        roi_size: Sequence[int],
        divisor: int = 16,
        fit_windows: bool = True,
        precision: str = "float32",
        progress: bool | str = "auto",
        progress_min_windows: int = 16,
        **kwargs,
    ):
        kwargs.setdefault("padding_mode", "reflect")
        if any(int(r) % divisor or int(r) <= 0 for r in roi_size):
            raise HSRSOptionError(
                f"roi_size {list(roi_size)} must be divisible by {divisor} (the network's total stride)."
            )
        super().__init__(roi_size=roi_size, **kwargs)
        self.max_roi_size = tuple(int(r) for r in roi_size)
        self.max_overlap = self.overlap
        self.fit_windows = bool(fit_windows)
        if precision not in PRECISIONS:
            raise HSRSOptionError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}.")
        self.precision = precision
        self._warned_emulated = False
        self._fixed: tuple[tuple[int, ...], tuple[float, ...]] | None = None
        self.field_padding_mode = self.padding_mode
        self.divisor = int(divisor)
        if progress not in ("auto", True, False):
            raise HSRSOptionError(f"progress must be 'auto', true or false, got {progress!r}.")
        self.show_progress, self.progress_min_windows = progress, int(progress_min_windows)

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        field = tuple(int(s) for s in inputs.shape[-len(self.max_roi_size) :])
        if any(s < self.divisor for s in field):
            source = getattr(inputs, "meta", {}).get("filename_or_obj", "the image")
            source = source[0] if isinstance(source, list | tuple) and len(source) == 1 else source
            raise HSRSInputError(
                f"{source}: the field of view is {'×'.join(map(str, field))} px, smaller than the networks' minimum "
                f"{self.divisor}×{self.divisor} px."
            )
        self.roi_size, self.overlap = self._fixed if self._fixed is not None else self.window_plan(field)
        # a reflection needs more field than padding on each side; a field of a few pixels is replicated instead
        tiny = any(2 * s <= r for r, s in zip(self.roi_size, field, strict=True))
        self.padding_mode = "replicate" if tiny else self.field_padding_mode
        if self.show_progress == "auto":
            self.progress = progress_lines.interactive() and self.num_windows(field) >= self.progress_min_windows
        else:
            self.progress = bool(self.show_progress)
        return super().__call__(inputs, self._precision_wrapped(network, inputs), *args, **kwargs)

    def _precision_wrapped(self, network, inputs: torch.Tensor):
        if self.precision == "float32":
            return network
        device = torch.device(self.sw_device) if self.sw_device is not None else inputs.device
        if device.type == "cpu" and not native_bfloat16():
            if not self._warned_emulated:
                logger.warning("precision bfloat16: this CPU has no native bfloat16 (AMX, AVX512-BF16); using float32.")
                self._warned_emulated = True
            return network
        dtype = PRECISIONS[self.precision]

        def autocast_network(x, *args, **kwargs):
            with torch.autocast(device.type, dtype=dtype):
                out = network(x, *args, **kwargs)
            return out.float() if isinstance(out, torch.Tensor) else out

        return autocast_network

    def window_plan(self, field: Sequence[int]) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """(window, MONAI overlap fraction) per axis for a field of ``field`` px (see the class docstring)."""
        overlaps = _per_axis(self.max_overlap, len(field))
        rois, fractions = [], []
        for size, roi_max, o in zip(field, self.max_roi_size, overlaps, strict=True):
            roi = min(roi_max, max(2 * self.divisor, math.ceil(size / self.divisor) * self.divisor))
            if not self.fit_windows or size <= roi_max:
                rois.append(roi)
                fractions.append(float(o))
                continue
            min_overlap = round(o * roi_max)
            count = math.ceil((size - min_overlap) / (roi_max - min_overlap))
            roi = min(roi_max, math.ceil((size + (count - 1) * min_overlap) / count / self.divisor) * self.divisor)
            interval = math.ceil((size - roi) / (count - 1))
            rois.append(roi)
            fractions.append(1.0 - (interval + 0.5) / roi)  # MONAI's interval: int(roi × (1 − overlap))
        return tuple(rois), tuple(fractions)

    def with_max_roi(self, roi_size: Sequence[int]) -> FieldSlidingWindowInferer:
        """A copy whose largest window is ``roi_size``, overlapping by as many pixels as this one's windows."""
        overlaps = _per_axis(self.max_overlap, len(self.max_roi_size))
        new = copy.copy(self)
        new.max_roi_size = tuple(int(r) for r in roi_size)
        new.max_overlap = tuple(
            min(o * old / r, 0.5) for o, old, r in zip(overlaps, self.max_roi_size, new.max_roi_size, strict=True)
        )
        new.roi_size, new.overlap, new._fixed = new.max_roi_size, new.max_overlap, None
        return new

    @contextmanager
    def fixed_plan(self, field: Sequence[int]):
        """Within the block, every input gets the windows of a field of ``field`` px (parts of one mosaic)."""
        self._fixed = self.window_plan(field)
        try:
            yield self._fixed
        finally:
            self._fixed = None

    def num_windows_for(self, field: Sequence[int]) -> int:
        """How many windows :meth:`window_plan` places on a field of ``field`` px."""
        return _window_count(field, *self.window_plan(field))

    def num_windows(self, field: Sequence[int]) -> int:
        """How many windows cover a field of ``field`` px with the current window and overlap."""
        return _window_count(field, self.roi_size, self.overlap)


def _window_count(field: Sequence[int], roi: Sequence[int], overlap: float | Sequence[float]) -> int:
    overlaps = _per_axis(overlap, len(field))
    return math.prod(len(window_starts(s, r, o)) for s, r, o in zip(field, roi, overlaps, strict=True))


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX tiles or AVX512-BF16), as oneDNN uses it."""
    cpu = torch.cpu
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def _per_axis(overlap: float | Sequence[float], n: int) -> tuple[float, ...]:
    return tuple(float(o) for o in overlap) if isinstance(overlap, Sequence) else (float(overlap),) * n


def window_starts(size: int, roi: int, overlap: float | Sequence[float]) -> list[int]:
    """Start of each window along one axis of length ``size``, as MONAI's sliding window places them
    (``dense_patch_slices`` with the scan interval ``int(roi * (1 - overlap))``; the last window is
    moved back to end at the border; one window when ``size <= roi``)."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    o = overlap[0] if isinstance(overlap, Sequence) else overlap
    roi = min(int(roi), int(size))
    interval = _get_scan_interval((int(size),), (roi,), 1, (float(o),))
    return [sl[0].start for sl in dense_patch_slices((int(size),), (roi,), interval)]
