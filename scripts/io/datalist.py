"""Datalists for the workflows: a MONAI datalist JSON (training with labels) or a folder of stacks (inference).

Both check the files exist **before** any long work starts and name the offending entry.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from monai.data import load_decathlon_datalist
from scripts.io.errors import HSRSInputError, InputNotFoundError
from scripts.io.formats import stack_format

logger = logging.getLogger(__name__)


def load_datalist(
    datalist_file: str | Path, key: str = "training", base_dir: str | Path | None = None, check: bool = True
) -> list[dict]:
    """Items of ``key`` in a MONAI datalist JSON, paths made absolute, every file checked to exist.

    Args:
        datalist_file: JSON with lists of ``{"image": ..., "label": ...}`` under ``training``,
            ``validation`` … (e.g. ``DIR/datalist.json`` of ``python -m scripts.simulate``, or the
            pseudo-label datalist of ``configs/phasor.yaml``).
        key: which list.
        base_dir: folder relative paths refer to (default: the datalist's folder).
        check: check that the listed files exist (the pre-flight, :mod:`scripts.io.preflight`, does
            it itself to report every problem at once).

    Raises:
        InputNotFoundError: the datalist or a file it lists does not exist (names both).
        HSRSInputError: the datalist is not valid JSON, or the key is missing or empty.
    """
    datalist_file = Path(datalist_file)
    if not datalist_file.is_file():
        raise InputNotFoundError(
            f"datalist {datalist_file} does not exist; create one with `python -m scripts.simulate` or configs/phasor.yaml."
        )
    base = Path(base_dir) if base_dir is not None else datalist_file.parent
    try:
        items = load_decathlon_datalist(str(datalist_file), is_segmentation=True, data_list_key=key, base_dir=str(base))
    except json.JSONDecodeError as e:
        raise HSRSInputError(f"{datalist_file}: not a valid JSON datalist ({e}); was it edited by hand?") from e
    except (ValueError, KeyError, TypeError) as e:
        raise HSRSInputError(f"{datalist_file}: {e}") from e
    if not items:
        raise HSRSInputError(f"{datalist_file}: the list {key!r} is empty.")
    if check:
        check_items(items, str(datalist_file))
    return items


def check_items(items: list[dict], source: str = "datalist") -> list[dict]:
    """Raise InputNotFoundError naming ``source`` and the entry when an image or label path does not exist."""
    missing = [
        (i, k, v)
        for i, item in enumerate(items)
        for k, v in item.items()
        if k in ("image", "label") and not Path(v).exists()
    ]
    if missing:
        lines = "\n".join(f"  entry {i} {k}: {v}" for i, k, v in missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise InputNotFoundError(f"{source}: {len(missing)} listed file(s) do not exist:\n{lines}{more}")
    return items


def folder_datalist(dataset_dir: str | Path) -> list[dict]:
    """``[{"image": path}, ...]`` for every HSRS stack in ``dataset_dir`` (files and TIFF-frame folders), sorted.

    Sidecar JSON files and anything that is not a stack are skipped. Raises if the folder does not
    exist or holds no stack.
    """
    folder = Path(dataset_dir)
    if not folder.is_dir():
        raise InputNotFoundError(
            f"dataset_dir {folder} is not a folder; pass --dataset_dir with a folder of HSRS stacks."
        )
    items = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        try:
            fmt = stack_format(p)
        except HSRSInputError:
            continue
        if fmt == "tiff_folder" and not any(f.suffix.lower() in (".tif", ".tiff") for f in p.iterdir()):
            continue
        items.append({"image": str(p.resolve())})
    if not items:
        raise InputNotFoundError(
            f"dataset_dir {folder}: no HSRS stacks found (.nii/.nii.gz/.tif/.tiff/.npy files, OME-Zarr folders or "
            "folders of TIFF frames). For a folder made by scripts.simulate, pass its images/ sub-folder."
        )
    return items
