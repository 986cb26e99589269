"""One spatial convention: MONAI's (C, X, Y) in pipelines, files that overlay their input without a transpose.

Every check uses a non-square field (H ≠ W), where a transpose changes the shape and cannot pass unnoticed.
"""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage, SaveImage
from scripts.engine.segmentation_writer import SegmentationWriter
from scripts.io.orientation import to_monai_xy, to_row_major
from scripts.io.reader import HSRSReader, read_hsrs
from scripts.io.writer import write_label_map, write_stack
from scripts.simulation.phantom import simulate_phantom

from tests.conftest import REPO

H, W, PIXEL = 24, 40, 0.25


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A non-square 24×40 stack with a label map marking a corner that tells rows from columns."""
    tmp = tmp_path_factory.mktemp("orient")
    rng = np.random.default_rng(0)
    stack = rng.uniform(1, 2, (16, H, W)).astype(np.float32)
    labels = np.zeros((H, W), np.uint8)
    labels[2:6, 30:38] = 1  # a nucleus near the top-right corner
    labels[18:20, 3:5] = 2  # a droplet near the bottom-left corner
    wn = np.linspace(2800, 3050, 16)
    paths = {}
    for fmt in ("nii.gz", "tif", "npy"):
        paths[fmt] = write_stack(tmp / f"s_{fmt.replace('.', '_')}.{fmt}", stack, wn, pixel_size_um=PIXEL)
    label_files = write_label_map(tmp / "label", labels, pixel_size_um=PIXEL)
    return {"tmp": tmp, "stack": stack, "labels": labels, "paths": paths, "label_files": label_files}


@pytest.mark.parametrize("fmt", ["nii.gz", "tif", "npy"])
def test_reader_gives_monai_axis_order_and_pixel_size_affine(field, fmt):
    image = LoadImage(reader=HSRSReader(), image_only=True)(str(field["paths"][fmt]))
    assert tuple(image.shape) == (16, W, H)  # (K, X, Y): x runs along the columns
    np.testing.assert_allclose(image.numpy(), to_monai_xy(field["stack"]))
    np.testing.assert_allclose(np.diag(np.asarray(image.affine))[:2], [PIXEL, PIXEL])
    # the NumPy API stays row-major, like tifffile
    assert read_hsrs(field["paths"][fmt])[0].shape == (16, H, W)


def test_monai_nibabel_reader_agrees_with_hsrs_reader_on_label_maps(field):
    nifti = next(p for p in field["label_files"] if p.name.endswith(".nii.gz"))
    ours = LoadImage(reader=HSRSReader(), image_only=True)(str(nifti))  # channel-first already
    monai_own = LoadImage(reader="NibabelReader", image_only=True, ensure_channel_first=True)(str(nifti))
    assert tuple(ours.shape) == tuple(monai_own.shape) == (1, W, H)
    np.testing.assert_array_equal(ours.numpy(), monai_own.numpy())
    np.testing.assert_array_equal(to_row_major(ours[0].numpy()), field["labels"])


def test_monai_save_image_of_a_pipeline_prediction_overlays_the_input_nifti(field, tmp_path):
    """A (1, X, Y) prediction saved by MONAI's own SaveImage lands on disk like the input: X = columns."""
    image = LoadImage(reader=HSRSReader(), image_only=True)(str(field["paths"]["nii.gz"]))
    pred = MetaTensor(torch.as_tensor(to_monai_xy(field["labels"])[None]), meta=dict(image.meta))
    SaveImage(output_dir=tmp_path, output_postfix="seg", separate_folder=False, output_dtype=np.uint8)(pred)
    saved = nib.load(next(tmp_path.glob("*_seg.nii.gz")))
    stack_on_disk = nib.load(field["paths"]["nii.gz"])
    assert saved.shape[:2] == stack_on_disk.shape[:2] == (W, H)
    np.testing.assert_array_equal(np.asarray(saved.dataobj).reshape(W, H), field["labels"].T)
    np.testing.assert_allclose(saved.header.get_zooms()[:2], [PIXEL, PIXEL])


def test_segmentation_writer_writes_tiff_row_major_and_nifti_like_its_input(field, tmp_path):
    image = LoadImage(reader=HSRSReader(), image_only=True)(str(field["paths"]["tif"]))
    pred = MetaTensor(torch.as_tensor(to_monai_xy(field["labels"])[None]), meta=dict(image.meta))
    SegmentationWriter(tmp_path).write_item({"pred": pred, "image": image})
    stem = field["paths"]["tif"].name[: -len(".tif")]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / f"{stem}.tif"), field["labels"])  # Fiji / napari
    nii = nib.load(tmp_path / f"{stem}.nii.gz")
    np.testing.assert_array_equal(np.asarray(nii.dataobj), field["labels"].T)  # Slicer / ITK-SNAP: X = columns
    np.testing.assert_allclose(nii.header.get_zooms()[:2], [PIXEL, PIXEL])


def test_inference_workflow_label_map_overlays_a_non_square_input(tmp_path):
    """The shipped network on a non-square phantom: the written label map matches the truth as written."""
    ph = simulate_phantom(4, 96, 160)
    images = tmp_path / "images"
    images.mkdir()
    write_stack(images / "wide.nii.gz", ph.stack, ph.wavenumbers, pixel_size_um=PIXEL)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "configs/inference.yaml",
        "--dataset_dir",
        str(images),
        "--output_dir",
        str(out),
    ]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    for written in (tifffile.imread(out / "wide.tif"), np.asarray(nib.load(out / "wide.nii.gz").dataobj).T):
        assert written.shape == (96, 160)
        for c in (1, 2):
            dice = 2 * np.sum((written == c) & (ph.labels == c)) / (np.sum(written == c) + np.sum(ph.labels == c))
            assert dice > 0.8, (c, dice)


def test_monailabel_output_is_an_x_y_1_volume_with_the_pixel_size_in_mm(field):
    """What MONAI Label's Restored + ITK writer need to overlay the input (checked for real by make test-monailabel)."""
    from scripts.transforms.monailabel_output import MONAILabelOutputd

    image = LoadImage(reader=HSRSReader(), image_only=True)(str(field["paths"]["nii.gz"]))
    pred = MetaTensor(torch.as_tensor(to_monai_xy(field["labels"])[None]), meta=dict(image.meta))
    out = MONAILabelOutputd(keys="pred", image_key="image")({"pred": pred, "image": image})
    assert tuple(out["pred"].shape) == (1, W, H, 1)
    assert out["pred"].dtype == torch.uint8
    np.testing.assert_array_equal(out["pred"][0, ..., 0].numpy(), field["labels"].T)
    assert tuple(out["image"].meta["spatial_shape"]) == (W, H, 1)
    np.testing.assert_allclose(np.diag(out["image"].meta["original_affine"]), [PIXEL / 1000, PIXEL / 1000, 1, 1])
