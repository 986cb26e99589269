"""HSRSReader / read_hsrs and the writers: formats, wavenumber round-trips, bad input."""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import pytest
import tifffile
from monai.data import MetaTensor
from monai.transforms import LoadImaged
from scripts.io.formats import HSRSInputError
from scripts.io.reader import HSRSReader, read_hsrs
from scripts.io.writer import write_label_map, write_stack


@pytest.mark.parametrize("suffix", ["nii.gz", "nii", "tif", "npy"])
@pytest.mark.parametrize("descending", [False, True])
def test_stack_round_trip(tmp_path, stack_and_wavenumbers, suffix, descending):
    stack, wn = stack_and_wavenumbers
    if descending:
        stack, wn = stack[::-1].copy(), wn[::-1].copy()
    path = write_stack(tmp_path / f"s.{suffix}", stack, wn, pixel_size_um=0.25)
    array, meta = read_hsrs(path)
    assert array.shape == stack.shape
    assert array.dtype == np.float32
    np.testing.assert_allclose(meta["wavenumbers"], np.sort(wn), atol=1e-5)
    expected = stack[::-1] if descending else stack  # descending stacks are flipped on load
    np.testing.assert_array_equal(array, expected)
    assert meta["stored_order"] == ("descending" if descending else "ascending")
    assert meta["pixel_size_um"] == pytest.approx(0.25)
    assert meta["wavenumbers_source"] == ("sidecar" if suffix == "npy" else "file")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
def test_integer_and_float_inputs_become_float32(tmp_path, stack_and_wavenumbers, dtype):
    stack, wn = stack_and_wavenumbers
    raw = stack.astype(dtype)
    path = write_stack(tmp_path / "s.tif", raw, wn)
    array, _ = read_hsrs(path)
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, raw.astype(np.float32))


def test_load_image_d_with_reader_gives_metatensor(sim_dir):
    loader = LoadImaged(keys=["image", "label"], reader="scripts.io.reader.HSRSReader", image_only=True)
    datalist = json.loads((sim_dir / "datalist.json").read_text())
    item = datalist["training"][0]
    data = loader({k: str(sim_dir / v) for k, v in item.items()})
    image, label = data["image"], data["label"]
    assert isinstance(image, MetaTensor)
    assert tuple(image.shape) == (64, 64, 64)
    np.testing.assert_allclose(np.asarray(image.meta["wavenumbers"]), np.linspace(2800, 3050, 64))
    assert tuple(label.shape) == (1, 64, 64)
    assert set(np.unique(label.numpy())) <= {0, 1, 2}


def test_folder_of_uint8_frames_without_metadata_logs_assumption(tmp_path, caplog):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(1)
    frames = rng.integers(1, 255, (10, 8, 6), dtype=np.uint8)
    for k in range(10):  # natural order: frame_2 before frame_10
        tifffile.imwrite(folder / f"frame_{k + 1}.tif", frames[k])
    with caplog.at_level(logging.WARNING):
        image = LoadImaged(keys="image", reader=HSRSReader(), image_only=True)({"image": str(folder)})["image"]
    assert tuple(image.shape) == (10, 6, 8)  # MONAI's (K, X, Y): x = columns
    np.testing.assert_array_equal(image.numpy(), frames.transpose(0, 2, 1).astype(np.float32))
    np.testing.assert_allclose(np.asarray(image.meta["wavenumbers"]), np.linspace(2800, 3050, 10))
    assert any("ASSUMING" in r.message and "frames" in r.message for r in caplog.records)


def test_folder_sidecar_txt_gives_wavenumbers(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(9):
        tifffile.imwrite(folder / f"f{k:02d}.tif", np.full((4, 4), k + 1, np.uint16))
    (folder / "wavenumbers.txt").write_text("\n".join(str(3040 - 30 * k) for k in range(9)))
    array, meta = read_hsrs(folder)
    assert meta["wavenumbers_source"] == "sidecar"
    np.testing.assert_allclose(meta["wavenumbers"], np.sort([3040 - 30 * k for k in range(9)]))
    assert array[0, 0, 0] == 9  # descending on disk: the last frame (lowest shift) comes first


def test_label_maps_round_trip_as_nifti_and_tiff(tmp_path):
    labels = np.zeros((5, 7), np.uint8)
    labels[1:3, 2:4] = 1
    labels[4, 6] = 2
    paths = write_label_map(tmp_path / "case", labels)
    assert [p.name for p in paths] == ["case.nii.gz", "case.tif"]
    for p in paths:
        array, _ = read_hsrs(p)
        assert array.shape == (1, 5, 7)
        np.testing.assert_array_equal(array[0], labels)


def test_label_map_with_unknown_value_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown label values \[3\]"):
        write_label_map(tmp_path / "bad", np.array([[0, 1], [2, 3]]))
    assert not list(tmp_path.iterdir())


def test_failed_write_keeps_existing_file(tmp_path, stack_and_wavenumbers, monkeypatch):
    stack, wn = stack_and_wavenumbers
    path = write_stack(tmp_path / "s.tif", stack, wn)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", broken)
    with pytest.raises(OSError, match="disk full"):
        write_stack(path, stack * 2, wn)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.tif"]  # no temporary leftovers


# ------------------------------------------------------------------------------------------ bad input
def test_sidecar_length_mismatch_names_file(tmp_path, stack_and_wavenumbers):
    stack, wn = stack_and_wavenumbers
    np.save(tmp_path / "s.npy", stack)
    (tmp_path / "s.json").write_text(json.dumps({"wavenumbers": wn[:-2].tolist()}))
    with pytest.raises(HSRSInputError, match=r"s\.npy: 10 wavenumbers were given but the stack has 12 frames"):
        read_hsrs(tmp_path / "s.npy")


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5)])
def test_wrong_dimensionality(tmp_path, shape):
    np.save(tmp_path / "x.npy", np.ones(shape, np.float32))
    with pytest.raises(HSRSInputError, match=r"x\.npy: expected a 2-D label map or a 3-D spectral stack"):
        read_hsrs(tmp_path / "x.npy")


def test_nan_is_repaired_by_frame_median_or_refused(tmp_path, stack_and_wavenumbers, caplog):
    stack, wn = stack_and_wavenumbers
    stack = stack.copy()
    stack[3, 2, 2] = np.nan
    stack[5, 0, 1] = np.inf
    path = write_stack(tmp_path / "n.tif", stack, wn)
    array, _ = read_hsrs(path)
    assert np.isfinite(array).all()
    assert array[3, 2, 2] == pytest.approx(np.nanmedian(stack[3]))
    assert any("replaced 2 NaN/Inf" in r.message for r in caplog.records)
    with pytest.raises(HSRSInputError, match="2 pixel values are NaN or Inf"):
        read_hsrs(path, nan_policy="raise")


def test_all_zero_stack_is_refused(tmp_path, stack_and_wavenumbers):
    _, wn = stack_and_wavenumbers
    path = write_stack(tmp_path / "z.nii.gz", np.zeros((12, 4, 4), np.uint16), wn)
    with pytest.raises(HSRSInputError, match=r"z\.nii\.gz: every pixel of every frame is 0"):
        read_hsrs(path)


@pytest.mark.parametrize("suffix", ["nii.gz", "tif", "npy"])
def test_truncated_file_names_file(tmp_path, stack_and_wavenumbers, suffix):
    stack, wn = stack_and_wavenumbers
    path = write_stack(tmp_path / f"t.{suffix}", stack, wn)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        HSRSInputError, match=rf"t\.{suffix.replace('.', '[.]')}: cannot read this .* truncated or corrupt"
    ):
        read_hsrs(path)


def test_garbage_gzip_is_reported_not_silently_read_by_another_reader(tmp_path):
    path = tmp_path / "g.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti file at all" * 20))
    loader = LoadImaged(keys="image", reader="scripts.io.reader.HSRSReader", image_only=True)
    with pytest.raises(Exception, match=r"g\.nii\.gz: cannot read this nifti file"):
        loader({"image": str(path)})


def test_empty_folder_and_missing_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HSRSInputError, match=r"contains no \.tif/\.tiff frames"):
        read_hsrs(tmp_path / "empty")
    with pytest.raises(HSRSInputError, match=r"missing\.nii\.gz: no such file"):
        read_hsrs(tmp_path / "missing.nii.gz")


def test_folder_with_mismatched_frame_shapes(tmp_path):
    (tmp_path / "f").mkdir()
    tifffile.imwrite(tmp_path / "f" / "a1.tif", np.ones((4, 4), np.uint8))
    tifffile.imwrite(tmp_path / "f" / "a2.tif", np.ones((4, 5), np.uint8))
    with pytest.raises(HSRSInputError, match=r"a2\.tif: frame shape \(4, 5\) differs"):
        read_hsrs(tmp_path / "f")


def test_rgb_tiff_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    with pytest.raises(HSRSInputError, match="looks like an RGB"):
        read_hsrs(tmp_path / "rgb.tif")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(HSRSInputError, match="unsupported file type"):
        read_hsrs(tmp_path / "x.png")
    assert not HSRSReader().verify_suffix(str(tmp_path / "x.png"))


# ------------------------------------------------------------------------ spectral axis vs chemistry
def _write_frames(folder, stack):
    folder.mkdir()
    for k, frame in enumerate(stack):
        tifffile.imwrite(folder / f"frame_{k + 1}.tif", frame)
    return folder


def test_frames_without_wavenumbers_in_either_order_load_the_same(tmp_path, phantom, caplog):
    """The scan direction comes from the C–H bands, not from a blind assumption, and the log says so."""
    forward = _write_frames(tmp_path / "forward", phantom.stack)
    backward = _write_frames(tmp_path / "backward", phantom.stack[::-1])
    with caplog.at_level(logging.WARNING):
        a, meta_a = read_hsrs(forward)
        b, meta_b = read_hsrs(backward)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(meta_a["wavenumbers"], meta_b["wavenumbers"])
    assert meta_a["axis_check"] == meta_b["axis_check"] == "inferred"
    assert (meta_a["stored_order"], meta_b["stored_order"]) == ("ascending", "descending")
    inferred = [r.message for r in caplog.records if "INFERRED" in r.message]
    assert len(inferred) == 2
    assert "frames reversed" in inferred[1]
    assert "direction confidence" in inferred[1]


def test_stored_wavenumbers_off_by_30_warn_or_are_refused(tmp_path, phantom, caplog):
    path = write_stack(tmp_path / "off.tif", phantom.stack, phantom.wavenumbers + 30)
    with caplog.at_level(logging.WARNING):
        _, meta = read_hsrs(path)
    assert meta["axis_check"] == "miscalibrated"
    assert any("DISAGREE" in r.message and "off.tif" in r.message for r in caplog.records)
    with pytest.raises(HSRSInputError, match=r"off\.tif: the STORED WAVENUMBERS DISAGREE .* Refused"):
        read_hsrs(path, axis_check="refuse")
    loader = LoadImaged(keys="image", reader=HSRSReader, axis_check="refuse", image_only=True)  # the config id
    with pytest.raises(Exception, match="DISAGREE"):
        loader({"image": str(path)})


@pytest.mark.parametrize("kind", ["noise", "repeated frame"])
def test_stack_without_c_h_chemistry_is_flagged_or_refused(tmp_path, phantom, kind, caplog):
    rng = np.random.default_rng(0)
    stack = rng.uniform(10, 1000, (64, 48, 48)) if kind == "noise" else np.repeat(phantom.stack[30:31], 64, axis=0)
    path = tmp_path / "x.npy"
    np.save(path, stack.astype(np.float32))  # no sidecar: no wavenumbers
    with caplog.at_level(logging.WARNING):
        _, meta = read_hsrs(path)
    assert meta["axis_check"] == "no_chemistry"
    assert any("not to be trusted" in r.message and r.levelno == logging.WARNING for r in caplog.records)
    with pytest.raises(HSRSInputError, match=r"x\.npy: .*(no spectral contrast|fits no C–H chemistry)"):
        read_hsrs(path, axis_check="refuse")
