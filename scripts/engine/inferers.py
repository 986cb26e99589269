"""Sliding-window inference that suits whole HSRS fields of any size."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.inferers import SlidingWindowInferer
from scripts.engine import progress as progress_lines
from scripts.io.errors import HSRSInputError, HSRSOptionError


class FieldSlidingWindowInferer(SlidingWindowInferer):
    """MONAI ``SlidingWindowInferer`` whose window never exceeds the field (rounded up to ``divisor``).

    MONAI pads an image smaller than the window up to the window. The networks normalise their
    features over the whole window (instance normalisation), so a small field padded with a large
    empty margin is segmented badly. Here the window shrinks to the field's size rounded up to the
    network's total stride, but not below twice the stride (so the deepest features are at least
    2×2: instance normalisation needs more than one value), and the little padding that remains is
    a reflection, not zeros. Fields larger than ``roi_size`` are processed window by window, so
    memory stays bounded. A field smaller than the stride (16 px) is refused, naming its file.

    Args:
        roi_size: largest window (H, W); each must be divisible by ``divisor``.
        divisor: the network's total spatial stride (16 for the default HybridUNet).
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
        smallest = 2 * self.divisor
        self.roi_size = tuple(
            min(r, max(smallest, math.ceil(s / self.divisor) * self.divisor))
            for r, s in zip(self.max_roi_size, field, strict=True)
        )
        # a reflection needs more field than padding on each side; a field of a few pixels is replicated instead
        tiny = any(2 * s <= r for r, s in zip(self.roi_size, field, strict=True))
        self.padding_mode = "replicate" if tiny else self.field_padding_mode
        if self.show_progress == "auto":
            self.progress = progress_lines.interactive() and self.num_windows(field) >= self.progress_min_windows
        else:
            self.progress = bool(self.show_progress)
        return super().__call__(inputs, network, *args, **kwargs)

    def num_windows(self, field: Sequence[int]) -> int:
        """How many windows cover a field of ``field`` px with the current window and overlap."""
        return math.prod(len(window_starts(s, r, self.overlap)) for s, r in zip(field, self.roi_size, strict=True))


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
