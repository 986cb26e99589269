"""Pre-flight: check every input of a workflow before the first stack is processed, and report all problems at once.

The inference and training workflows call these checks from their datalist ids, so a folder or
datalist with a bad file fails in seconds, before a model is loaded or a cache is filled, with
one line per bad file, instead of after hours at the first bad stack. Stacks are checked from
their headers (:func:`scripts.io.headers.read_header`: readable, complete, a (K, H, W) stack, pixel
type, enough frames, stored wavenumbers valid and covering the minimum window 2845–2985 cm⁻¹
(:data:`scripts.spectra.axis.REQUIRED_RANGE`, as :class:`~scripts.transforms.array.SpectralResample`), a field of view
the network can segment); label maps are read (they are small) for their values and size.

What cannot be seen without reading all pixels (an all-zero stack, NaN with
``nan_policy="raise"``) is still refused when the stack is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scripts.io.datalist import load_datalist
from scripts.io.errors import HSRSInputError, HSRSOptionError, InputNotFoundError, as_bool
from scripts.io.headers import StackHeader, read_header
from scripts.spectra.axis import CANONICAL_WAVENUMBERS, REQUIRED_RANGE, missing_bands, validate_wavenumbers

logger = logging.getLogger(__name__)

#: Smallest field of view (px) the networks segment: their total stride. Smaller windows are padded
#: up to a multiple of it (see scripts.engine.inferers.FieldSlidingWindowInferer); smaller fields are refused.
MIN_FIELD_PX = 16
#: Label values: 0 background, 1 nucleus, 2 lipid droplet.
LABEL_VALUES = (0, 1, 2)


class PreflightError(HSRSInputError):
    """Inputs that failed the pre-flight check: one line per file (a summary line first when several)."""


def check_stack_header(
    header: StackHeader,
    min_frames: int = 16,
    min_field: Sequence[int] | None = None,
    max_extrapolation: float | None = None,
    field_what: str = "",
    field_hint: str = "",
) -> StackHeader:
    """Raise :class:`~scripts.io.errors.HSRSInputError` naming the file when this stack cannot be segmented.

    Args:
        header: from :func:`~scripts.io.headers.read_header`.
        min_frames: fewest Raman shifts accepted (the workflows' ``min_frames``).
        min_field: smallest (H, W) accepted; default the networks' minimum (16, 16).
        max_extrapolation: optional stricter limit: cm⁻¹ the stack may fall short of the canonical range at
            either end (None: only the minimum coverage :data:`~scripts.spectra.axis.REQUIRED_RANGE` decides).
        field_what: what ``min_field`` is, for the message (default: the networks' minimum field).
        field_hint: what to do about a field that is too small (appended to the message).
    """
    path = header.path
    if not header.is_stack:
        raise HSRSInputError(
            f"{path}: a {len(header.shape)}-D image of shape {header.shape}, not a spectral stack (K frames of H×W)."
        )
    if header.dtype.kind not in "uif":
        raise HSRSInputError(f"{path}: unsupported pixel type {header.dtype}; expected uint8, uint16 or float.")
    if header.frames < min_frames:
        raise HSRSInputError(
            f"{path}: the stack has {header.frames} frames; at least {min_frames} Raman shifts are needed "
            f"(the canonical grid has {CANONICAL_WAVENUMBERS.size}; --min_frames)."
        )
    if header.wavenumbers is not None:
        try:
            wn = validate_wavenumbers(header.wavenumbers, header.frames, str(path))
        except ValueError as e:
            raise HSRSInputError(str(e)) from e
        lo, hi = float(wn.min()), float(wn.max())
        target = CANONICAL_WAVENUMBERS
        if lo > REQUIRED_RANGE[0] or hi < REQUIRED_RANGE[1]:
            raise HSRSInputError(
                f"{path}: the stack covers {lo:g}–{hi:g} cm⁻¹ but segmentation needs at least {REQUIRED_RANGE[0]:g}–"
                f"{REQUIRED_RANGE[1]:g} cm⁻¹; uncovered: {'; '.join(missing_bands(wn)) or 'the window'}. Record a wider "
                "window, or correct the stored wavenumbers."
            )
        if max_extrapolation is not None and max(lo - target[0], target[-1] - hi) > max_extrapolation:
            raise HSRSInputError(
                f"{path}: the stack covers {lo:g}–{hi:g} cm⁻¹ but the networks need {target[0]:g}–{target[-1]:g} cm⁻¹ "
                f"(more than {max_extrapolation:g} cm⁻¹ missing at an end); record the full C–H window."
            )
    need = tuple(int(v) for v in (min_field if min_field is not None else (MIN_FIELD_PX, MIN_FIELD_PX)))
    h, w = header.field
    if h < need[0] or w < need[1]:
        what = field_what or "the networks' minimum field"
        raise HSRSInputError(
            f"{path}: the field of view is {h}×{w} px, smaller than {what} of {need[0]}×{need[1]} px"
            + (f"; {field_hint}." if field_hint else ".")
        )
    return header


def check_label_map(label_path: str | Path, image: StackHeader) -> None:
    """Raise :class:`~scripts.io.errors.HSRSInputError` naming the label file when it is not a label map of ``image``."""
    from scripts.io.reader import read_hsrs

    header = read_header(label_path)
    shape = header.shape[1:] if header.is_stack and header.shape[0] == 1 else header.shape
    if len(shape) != 2:
        raise HSRSInputError(
            f"{label_path}: a label map must be a 2-D image (H, W), got shape {header.shape}; is this a stack?"
        )
    if tuple(shape) != image.field:
        raise HSRSInputError(
            f"{label_path}: label map size {tuple(shape)} differs from its image {image.path} size {image.field} (H, W)."
        )
    labels, _ = read_hsrs(label_path)
    values = [int(v) if float(v).is_integer() else float(v) for v in np.unique(labels).tolist()]
    unknown = [v for v in values if v not in LABEL_VALUES]
    if unknown:
        raise HSRSInputError(
            f"{label_path}: unknown label values {unknown[:10]}; label maps must hold 0 background, 1 nucleus, "
            "2 lipid droplet."
        )


def _check_item(item: Mapping, min_frames: int, min_field, field_what: str = "", field_hint: str = "") -> None:
    header = check_stack_header(
        read_header(item["image"]), min_frames, min_field, field_what=field_what, field_hint=field_hint
    )
    if item.get("label") is not None:
        check_label_map(item["label"], header)


def report_problems(problems: list[str], total: int, what: str, skip_hint: str = "") -> PreflightError:
    if len(problems) == 1:
        return PreflightError(problems[0])
    head = f"pre-flight: {len(problems)} of {total} {what} cannot be used; nothing was processed{skip_hint}:"
    return PreflightError("\n".join([head, *problems]))


def check_stacks(
    items: Sequence[dict], min_frames: int = 16, min_field: Sequence[int] | None = None, skip_errors: bool = False
) -> list[dict]:
    """Check the stacks of a folder datalist (``[{"image": path}, ...]``) before inference.

    Returns:
        The items; with ``skip_errors``, a bad item gets ``"error": reason`` (the dataset skips it and
        the summary records it) instead of stopping the run.

    Raises:
        PreflightError: (without ``skip_errors``) one line per bad file, all of them at once.
    """
    skip = as_bool(skip_errors, "skip_errors")
    problems: dict[int, str] = {}
    for i, item in enumerate(items):
        try:
            _check_item(item, min_frames, min_field)
        except HSRSInputError as e:
            problems[i] = str(e)
    if problems and not skip:
        raise report_problems(
            list(problems.values()), len(items), "stacks", " (--skip_errors true segments the others)"
        )
    if problems:
        logger.warning(
            "pre-flight: %d of %d stacks cannot be used; they are skipped and recorded in the summary.",
            len(problems),
            len(items),
        )
    return [dict(item, error=problems[i]) if i in problems else item for i, item in enumerate(items)]


def check_datalist(
    datalist_file: str | Path,
    keys: Sequence[str] = ("training", "validation"),
    min_frames: int = 16,
    patch_size: Sequence[int] | None = None,
) -> dict[str, list[dict]]:
    """Check every image and label map listed under ``keys`` of a datalist before training or evaluation.

    Images listed under ``training`` must be at least ``patch_size`` (the random crops) and
    ``patch_size`` a multiple of 16; the others at least the networks' minimum field.

    Returns:
        ``{key: items}`` with absolute paths, as :func:`scripts.io.datalist.load_datalist` gives them.

    Raises:
        PreflightError: one line per bad or missing file, all of them at once.
    """
    if patch_size is not None:
        patch = [int(p) for p in patch_size]
        if any(p < MIN_FIELD_PX or p % MIN_FIELD_PX for p in patch):
            raise HSRSOptionError(
                f"patch_size {patch}: each side must be a multiple of {MIN_FIELD_PX} (the networks' total stride)."
            )
    lists: dict[str, list[dict]] = {}
    problems: list[str] = []
    for key in keys:
        try:
            lists[key] = load_datalist(datalist_file, key, check=False)
        except InputNotFoundError:
            raise  # no datalist at all: nothing else to check
        except HSRSInputError as e:  # a missing or empty list
            problems.append(str(e))
    total = 0
    for key, items in lists.items():
        min_field = patch_size if key == "training" else None
        patches = key == "training" and patch_size is not None
        what = "the training patches" if patches else ""
        hint = f"pass a smaller --patch_size (a multiple of {MIN_FIELD_PX})" if patches else ""
        for i, item in enumerate(items):
            total += 1
            missing = [k for k in ("image", "label") if item.get(k) is not None and not Path(item[k]).exists()]
            if missing:
                problems += [
                    f"{item[k]}: does not exist (listed in {datalist_file}, {key!r} entry {i}, {k})" for k in missing
                ]
                continue
            try:
                _check_item(item, min_frames, min_field, what, hint)
            except HSRSInputError as e:
                problems.append(f"{e} (listed in {datalist_file}, {key!r} entry {i})")
    if problems:
        raise report_problems(problems, total, "listed files")
    return lists


def model_file(ckpt_dir: str | Path, model_name: str) -> str:
    """``ckpt_dir/model_name`` after checking it exists, for a ``CheckpointLoader``; names the option otherwise."""
    path = Path(ckpt_dir) / model_name
    if not path.is_file() or path.stat().st_size == 0:
        raise HSRSOptionError(
            f"{path}: no model file there (--ckpt_dir {ckpt_dir}, --model_name {model_name}); the shipped weights are "
            "models/model.pt, a training run writes its best model to <output_dir>/models/model.pt."
        )
    return str(path)
