"""Fixtures of the napari plugin's tests: one small phantom in every stack format, and the command line's results on it.

These tests run in the napari venv (``make test-napari``: napari, PyQt5, pytest-qt, on a virtual screen); the
main suite ignores this folder (``--ignore=tests/napari`` in pyproject.toml), so it never imports napari.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scripts.io.sidecar import write_sidecar
from scripts.io.writer import write_stack
from scripts.simulation.phantom import simulate_phantom

REPO = Path(__file__).resolve().parents[2]
META = str(REPO / "configs" / "metadata.json")
#: The phantom: 128² px, 64 frames, pixel size 0.25 µm, seed 11 (cells with nuclei and droplets).
SIZE, SEED, PIXEL = 128, 11, 0.25
FORMATS = ("nii.gz", "tif", "frames", "npy", "ome.zarr")


def run_bundle(config: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run --config_file configs/<config>`` from the bundle root; asserts success."""
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(REPO / "configs" / config)]
    cmd += ["--meta_file", META, "--bundle_root", str(REPO), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


@pytest.fixture(scope="session")
def phantom():
    return simulate_phantom(SEED, SIZE, SIZE, pixel_size_um=PIXEL)


@pytest.fixture(scope="session")
def stacks(phantom, tmp_path_factory) -> dict[str, Path]:
    """The phantom in every format the bundle reads: ``{format: path}`` (the NIfTI alone in its folder ``nifti/``)."""
    import tifffile
    from scripts.io.ome_zarr import write_ome_zarr

    root = tmp_path_factory.mktemp("stacks")
    stack, wn = phantom.stack.astype(np.float32), phantom.wavenumbers
    out = {}
    (root / "nifti").mkdir()
    out["nii.gz"] = write_stack(root / "nifti" / "cell.nii.gz", stack, wn, PIXEL)
    out["tif"] = write_stack(root / "cell.tif", stack, wn, PIXEL)
    out["npy"] = write_stack(root / "cell.npy", stack, wn, PIXEL)
    frames = root / "cell_frames"
    frames.mkdir()
    for k, frame in enumerate(stack):
        tifffile.imwrite(frames / f"frame_{k:03d}.tif", frame)
    write_sidecar(frames, wn, {"pixel_size_um": PIXEL})  # frames/wavenumbers.json
    out["frames"] = frames
    out["ome.zarr"] = write_ome_zarr(root / "cell.ome.zarr", stack, wn, PIXEL, chunk=64)
    return out


@pytest.fixture(scope="session")
def cli_inference(stacks, tmp_path_factory) -> Path:
    """``configs/inference.yaml`` on the NIfTI phantom (the command line's label map, summary and cells tables)."""
    out = tmp_path_factory.mktemp("cli_inference")
    run_bundle("inference.yaml", "--dataset_dir", str(stacks["nii.gz"].parent), "--output_dir", str(out))
    return out


@pytest.fixture(scope="session")
def cli_phasor(stacks, tmp_path_factory) -> Path:
    """``configs/phasor.yaml`` on the NIfTI phantom (the command line's phasor label map)."""
    out = tmp_path_factory.mktemp("cli_phasor")
    run_bundle(
        "phasor.yaml", "--dataset_dir", str(stacks["nii.gz"].parent), "--output_dir", str(out), "--plots", "false"
    )
    return out


def read_table(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(autouse=True, scope="session")
def use_leak_safe_log_records():
    """Overrides napari's fixture of that name, which makes every log record turn its arguments other than int and
    float into strings: the bundle's ``%d`` of a NumPy integer (the mosaic's log lines) would then fail to format."""
    return
