"""scripts.io.headers / preflight / dataset: every input checked from its header first, all problems in one report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scripts.io.dataset import SkipErrorsDataset
from scripts.io.errors import HSRSInputError, HSRSOptionError
from scripts.io.headers import read_header
from scripts.io.preflight import PreflightError, check_datalist, check_stacks, model_file
from scripts.io.writer import write_label_map, write_stack
from scripts.spectra.axis import CANONICAL_WAVENUMBERS

WN = CANONICAL_WAVENUMBERS


def _stack(k: int = 64, h: int = 20, w: int = 24) -> np.ndarray:
    return np.random.default_rng(0).uniform(1, 100, (k, h, w)).astype(np.float32)


@pytest.mark.parametrize("suffix", ["nii.gz", "nii", "tif", "npy"])
def test_header_gives_shape_and_wavenumbers_without_reading_pixels(tmp_path, suffix):
    path = write_stack(tmp_path / f"s.{suffix}", _stack(), WN)
    header = read_header(path)
    assert header.shape == (64, 20, 24)
    assert header.field == (20, 24)
    assert header.frames == 64
    np.testing.assert_allclose(header.wavenumbers, WN, atol=1e-5)


@pytest.mark.parametrize("suffix", ["nii.gz", "nii", "tif", "npy"])
def test_a_truncated_file_is_found_from_its_header(tmp_path, suffix):
    path = write_stack(tmp_path / f"s.{suffix}", _stack(), WN)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(HSRSInputError, match=rf"s\.{suffix.replace('.', '[.]')}: .*(truncated|shorter)"):
        read_header(path)


def test_a_complete_gzipped_nifti_is_checked_from_its_trailer_without_decompressing(tmp_path, monkeypatch):
    # the bundle's NIfTI files carry a JSON extension: the data start after it, not at the header's vox_offset
    path = write_stack(tmp_path / "s.nii.gz", _stack(), WN)
    import scripts.io.headers as headers

    def no_decompression(*args, **kwargs):
        raise AssertionError("the pre-flight decompressed a complete file")

    monkeypatch.setattr(headers.gzip, "open", no_decompression)
    assert read_header(path).shape == (64, 20, 24)


def test_tiff_folder_header(tmp_path):
    import tifffile

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(20):
        tifffile.imwrite(folder / f"f{i}.tif", np.ones((9, 7), np.uint16))
    assert read_header(folder).shape == (20, 9, 7)


def _folder(tmp_path):
    """good.nii.gz, few.nii.gz (10 frames), tiny.nii.gz (1×1), shifted.tif (3000–3250 cm⁻¹), label.nii.gz (2-D)."""
    d = tmp_path / "in"
    d.mkdir()
    write_stack(d / "good.nii.gz", _stack(), WN)
    write_stack(d / "few.nii.gz", _stack(k=10), np.linspace(2800, 3050, 10))
    write_stack(d / "tiny.nii.gz", _stack(h=1, w=1), WN)
    write_stack(d / "shifted.tif", _stack(), WN + 200)
    write_label_map(d / "label", np.zeros((20, 24), np.uint8), formats=("nii.gz",))
    return d


def test_every_bad_stack_of_a_folder_is_reported_at_once_one_line_each(tmp_path):
    from scripts.io.datalist import folder_datalist

    items = folder_datalist(_folder(tmp_path))
    with pytest.raises(PreflightError) as excinfo:
        check_stacks(items, min_frames=16)
    lines = str(excinfo.value).splitlines()
    assert lines[0] == (
        "pre-flight: 4 of 5 stacks cannot be used; nothing was processed (--skip_errors true segments the others):"
    )
    assert len(lines) == 5
    text = "\n".join(lines[1:])
    assert "few.nii.gz: the stack has 10 frames; at least 16" in text
    assert "tiny.nii.gz: the field of view is 1×1 px, smaller than the networks' minimum field of 16×16 px." in text
    assert "shifted.tif: the stack covers 3000–3250 cm⁻¹" in text
    assert "label.nii.gz: a 2-D image of shape (20, 24), not a spectral stack" in text


def test_with_skip_errors_bad_stacks_are_marked_not_raised(tmp_path):
    from scripts.io.datalist import folder_datalist

    items = check_stacks(folder_datalist(_folder(tmp_path)), min_frames=16, skip_errors="true")
    marked = {item["image"].split("/")[-1]: bool(item.get("error")) for item in items}
    assert marked == {
        "few.nii.gz": True,
        "good.nii.gz": False,
        "label.nii.gz": True,
        "shifted.tif": True,
        "tiny.nii.gz": True,
    }


def test_a_single_bad_stack_is_one_line_naming_it(tmp_path):
    write_stack(tmp_path / "one.nii.gz", _stack(h=8, w=30), WN)
    with pytest.raises(PreflightError) as excinfo:
        check_stacks([{"image": str(tmp_path / "one.nii.gz")}])
    assert str(excinfo.value).count("\n") == 0
    assert "one.nii.gz: the field of view is 8×30 px" in str(excinfo.value)


def test_datalist_problems_of_all_lists_are_reported_together(tmp_path):
    write_stack(tmp_path / "a.nii.gz", _stack(h=64, w=64), WN)
    write_stack(tmp_path / "small.nii.gz", _stack(h=48, w=64), WN)
    write_label_map(tmp_path / "a_label", np.zeros((64, 64), np.uint8), formats=("nii.gz",))
    write_label_map(tmp_path / "wrong_size", np.zeros((64, 60), np.uint8), formats=("nii.gz",))
    np.save(tmp_path / "sevens.npy", np.full((64, 64), 7, np.uint8))
    (tmp_path / "datalist.json").write_text(
        json.dumps(
            {
                "training": [
                    {"image": "a.nii.gz", "label": "a_label.nii.gz"},
                    {"image": "small.nii.gz", "label": "a_label.nii.gz"},
                    {"image": "gone.nii.gz", "label": "a_label.nii.gz"},
                ],
                "validation": [
                    {"image": "a.nii.gz", "label": "wrong_size.nii.gz"},
                    {"image": "a.nii.gz", "label": "sevens.npy"},
                ],
            }
        )
    )
    with pytest.raises(PreflightError) as excinfo:
        check_datalist(tmp_path / "datalist.json", min_frames=16, patch_size=[64, 64])
    text = str(excinfo.value)
    assert text.startswith("pre-flight: 4 of 5 listed files cannot be used")
    assert (
        "small.nii.gz: the field of view is 48×64 px, smaller than the training patches of 64×64 px; pass a smaller --patch_size"
        in text
    )
    assert "gone.nii.gz: does not exist (listed in" in text
    assert "'training' entry 2, image)" in text
    assert "wrong_size.nii.gz: label map size (64, 60) differs from its image" in text
    assert "sevens.npy: unknown label values [7]" in text


def test_bad_options_are_option_errors(tmp_path):
    (tmp_path / "datalist.json").write_text('{"training": []}')
    with pytest.raises(HSRSOptionError, match=r"patch_size \[100, 128\]: each side must be a multiple of 16"):
        check_datalist(tmp_path / "datalist.json", patch_size=[100, 128])
    with pytest.raises(HSRSOptionError, match=r"nowhere/model\.pt: no model file there \(--ckpt_dir"):
        model_file(tmp_path / "nowhere", "model.pt")
    (tmp_path / "datalist.json").write_text('{"training": [')
    with pytest.raises(HSRSInputError, match=r"datalist\.json: not a valid JSON datalist"):
        check_datalist(tmp_path / "datalist.json")


def test_skip_errors_dataset_leaves_out_failing_items_and_reports_them():
    def load(item):
        if item["image"] == "bad":
            raise HSRSInputError("bad: every pixel of every frame is 0")
        return item["image"]

    items = [{"image": "a"}, {"image": "marked", "error": "marked: truncated"}, {"image": "bad"}, {"image": "c"}]
    skipped = []
    ds = SkipErrorsDataset(items, load, skip_errors=True, on_skip=lambda item, reason: skipped.append(reason))
    assert list(ds) == ["a", "c"]
    assert skipped == ["marked: truncated", "bad: every pixel of every frame is 0"]
    with pytest.raises(HSRSInputError, match="marked: truncated"):
        list(SkipErrorsDataset(items, load, skip_errors=False))
