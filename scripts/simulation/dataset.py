"""Simulated datasets on disk: a folder of phantoms (images/, labels/, instances/), its datalist split and
``simulation.json``."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from scripts import __version__
from scripts.io.atomic import atomic_path
from scripts.io.instance_maps import write_instance_tiff
from scripts.io.writer import write_label_map, write_stack
from scripts.simulation.phantom import PRESETS, UINT16_SCALE, simulate_phantom, to_uint16
from scripts.spectra.axis import CANONICAL_NUM_FRAMES, CANONICAL_RANGE

#: Stored data types: float32 (simulator units), uint16 (× :data:`UINT16_SCALE`), native (a digitised stack's
#: integer levels as the instrument writes them: uint8 for 8-bit, uint16 otherwise; float32 if undigitised).
DTYPES: tuple[str, ...] = ("float32", "uint16", "native")

logger = logging.getLogger(__name__)

Range = tuple[float, float]


def split_datalist(
    stems: list[str], rng: np.random.Generator, fractions: Sequence[float] = (0.7, 0.15, 0.15)
) -> dict[str, list[str]]:
    """Deterministically split stems into training/validation/test (≥ 1 validation and test item when ≥ 3 stems)."""
    n = len(stems)
    n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
    n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
    order = rng.permutation(n)
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return {
        name: sorted(stems[i] for i in idx) for name, idx in (("training", train), ("validation", val), ("test", test))
    }


def simulate_dataset(
    out: str | Path,
    num: int,
    seed: int,
    height: int = 512,
    width: int = 512,
    frames: int = CANONICAL_NUM_FRAMES,
    wavenumber_range: Sequence[float] = CANONICAL_RANGE,
    preset: str = "default",
    file_format: str = "nii.gz",
    dtype: str = "float32",
    pixel_size_um: float = 0.25,
    overwrite: bool = False,
) -> dict:
    """Write ``num`` phantoms, their labels, instance maps, ``datalist.json`` and ``simulation.json`` under ``out``.

    ``out/images/<stem>.<format>`` holds the stack, ``out/labels/<stem>`` the semantic label map and
    ``out/instances/<stem>.tif`` the exact cell, nucleus and lipid-droplet instance maps
    (:mod:`scripts.io.instance_maps`; read them with
    :func:`~scripts.io.instance_maps.read_instance_tiff`). Every datalist entry lists all three
    (``image``, ``label``, ``instances``).

    ``wavenumber_range`` is (first frame, last frame): give it high-to-low for a stack stored in
    descending order. Presets with instrument randomization (``randomized``) draw every stack's
    window, frame count and direction themselves and ignore ``frames`` and ``wavenumber_range``;
    each stack stores its own wavenumbers, unless the instrument draws a file without them
    (``InstrumentRanges.unstored_axis_probability``; the true axis is in ``simulation.json``). Phantom ``i``
    depends only on ``(seed, i)``, so a larger ``num`` extends a data set without changing the phantoms already
    made. Returns the datalist.
    """
    if num < 1:
        raise ValueError(f"--num must be at least 1, got {num}.")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    if file_format not in ("nii.gz", "tif", "npy"):
        raise ValueError(f"unknown format {file_format!r}; choose 'nii.gz', 'tif' or 'npy'.")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {DTYPES}.")
    out = Path(out)
    images, labels_dir, instances_dir = out / "images", out / "labels", out / "instances"
    if not overwrite and any(d.is_dir() and any(d.iterdir()) for d in (images, labels_dir, instances_dir)):
        raise FileExistsError(
            f"{out}: images/, labels/ or instances/ already hold files; pass --overwrite to replace them."
        )
    for folder in (images, labels_dir, instances_dir):
        folder.mkdir(parents=True, exist_ok=True)
    wn = np.linspace(float(wavenumber_range[0]), float(wavenumber_range[1]), frames)
    randomized = PRESETS[preset].instrument is not None
    if randomized:
        logger.info(
            "preset %r draws each stack's window, frame count and direction (InstrumentRanges); "
            "--frames and --wavenumber-range are not used",
            preset,
        )
    label_format = "tif" if file_format == "tif" else "nii.gz"
    children = np.random.SeedSequence(seed).spawn(num + 1)
    records, stems = {}, []
    for i in range(num):
        stem = f"hsrs_{preset}_s{seed}_{i:04d}"
        ph = simulate_phantom(
            np.random.default_rng(children[i + 1]), height, width, None if randomized else wn, preset, pixel_size_um
        )
        if dtype == "native":  # the digitiser's own integer levels (8-bit raw data as uint8), float32 if undigitised
            data = ph.counts if ph.counts is not None else ph.stack
        else:
            data = to_uint16(ph.stack) if dtype == "uint16" else ph.stack
        stored = ph.params.get("wavenumbers_stored", True)
        write_stack(images / f"{stem}.{file_format}", data, ph.wavenumbers if stored else None, pixel_size_um)
        write_label_map(labels_dir / stem, ph.labels, formats=(label_format,), pixel_size_um=pixel_size_um)
        write_instance_tiff(
            instances_dir / f"{stem}.tif",
            ph.instance_maps(),
            pixel_size_um,
            droplet_cell=ph.droplet_cell,
            has_nucleus=ph.has_nucleus,
        )
        records[stem] = ph.params
        stems.append(stem)
        logger.info("%s: %s", stem, ph.params)
    split = split_datalist(stems, np.random.default_rng(children[0]))
    datalist = {
        name: [
            {
                "image": f"images/{s}.{file_format}",
                "label": f"labels/{s}.{label_format}",
                "instances": f"instances/{s}.tif",
            }
            for s in members
        ]
        for name, members in split.items()
    }
    with atomic_path(out / "datalist.json") as tmp:
        tmp.write_text(json.dumps(datalist, indent=2) + "\n")
    settings = {
        "simulator_version": __version__,
        "seed": seed,
        "num": num,
        "height": height,
        "width": width,
        "frames": None if randomized else frames,
        "wavenumber_range": None if randomized else [float(v) for v in wavenumber_range],
        "preset": preset,
        "preset_parameters": asdict(PRESETS[preset]),
        "format": file_format,
        "dtype": dtype,
        "uint16_scale": UINT16_SCALE if dtype == "uint16" else None,
        "pixel_size_um": pixel_size_um,
    }
    with atomic_path(out / "simulation.json") as tmp:
        tmp.write_text(json.dumps({"settings": settings, "phantoms": records}, indent=1) + "\n")
    return datalist
