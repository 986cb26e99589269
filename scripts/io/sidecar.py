"""Wavenumber sidecar files: ``<stem>.json`` next to a stack or an OME-Zarr folder (``folder/wavenumbers.json|.txt|.csv``
for frame folders)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scripts.io.atomic import atomic_path
from scripts.io.errors import HSRSInputError
from scripts.io.formats import NIFTI_EXTENSION_CODE, stack_format, stack_stem

SIDECAR_KEY = "wavenumbers"


def sidecar_path(stack_path: str | Path) -> Path:
    """The sidecar JSON of a stack: ``name.nii.gz`` → ``name.json``, ``name.ome.zarr`` → ``name.json``; for a folder of
    frames, ``folder/wavenumbers.json``."""
    p = Path(stack_path)
    if _frame_folder(p):
        return p / "wavenumbers.json"
    stem = stack_stem(p)
    return p.with_name(stem + ".json") if stem != p.name else p.with_suffix(".json")


def _frame_folder(path: Path) -> bool:
    try:
        return stack_format(path) == "tiff_folder"
    except HSRSInputError:
        return path.is_dir()


def read_sidecar(stack_path: str | Path) -> tuple[np.ndarray | None, dict]:
    """Wavenumbers and other metadata from the stack's sidecar (JSON; for folders also ``.txt``/``.csv``).

    Returns ``(wavenumbers, extra)``, ``(None, {})`` when there is no sidecar; ``extra`` holds the
    JSON's other keys with a known meaning (``pixel_size_um``). Raises HSRSInputError (a ValueError)
    naming the file when a sidecar exists but cannot be parsed.
    """
    path = sidecar_path(stack_path)
    candidates = [path]
    if _frame_folder(Path(stack_path)):
        candidates += [path.with_suffix(".txt"), path.with_suffix(".csv")]
    for cand in candidates:
        if not cand.is_file():
            continue
        try:
            extra = {}
            if cand.suffix == ".json":
                content = json.loads(cand.read_text())
                values = content.get(SIDECAR_KEY) if isinstance(content, dict) else content
                if values is None:
                    raise ValueError(f"no key {SIDECAR_KEY!r}")
                if isinstance(content, dict) and "pixel_size_um" in content:
                    extra["pixel_size_um"] = float(content["pixel_size_um"])
            else:
                values = [float(v) for v in cand.read_text().replace(",", " ").split()]
            return np.asarray(values, dtype=np.float64), extra
        except (ValueError, TypeError) as e:
            raise HSRSInputError(
                f"{cand}: cannot read the wavenumber sidecar ({e}); expected JSON "
                '{"' + SIDECAR_KEY + '": [2800.0, ...]} or one number per line.'
            ) from e
    return None, {}


def write_sidecar(stack_path: str | Path, wavenumbers: np.ndarray, extra: dict | None = None) -> Path:
    """Write ``{"wavenumbers": [...], **extra}`` next to the stack (atomically) and return the sidecar path."""
    path = sidecar_path(stack_path)
    content = {SIDECAR_KEY: [round(float(v), 6) for v in wavenumbers], "unit": "cm-1", **(extra or {})}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=1) + "\n")
    return path


def read_nifti_extension(header) -> tuple[np.ndarray | None, dict]:
    """Wavenumbers and further metadata from the bundle's JSON extension of a NIfTI header.

    Returns ``(wavenumbers or None, other keys)``; foreign extensions (other codes, or a comment
    that is not our JSON) are skipped.
    """
    for ext in header.extensions:
        if ext.get_code() != NIFTI_EXTENSION_CODE:
            continue
        try:
            content = json.loads(ext.get_content().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # a foreign comment extension, not ours
        if isinstance(content, dict) and "wavenumbers" in content:
            extra = {k: v for k, v in content.items() if k != "wavenumbers"}
            return np.asarray(content["wavenumbers"], dtype=np.float64), extra
    return None, {}
