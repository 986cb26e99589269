"""Phantom simulator: files, determinism, ground truth and the physics users rely on."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from scipy import ndimage
from scripts.io.reader import read_hsrs
from scripts.simulate import main
from scripts.simulation.phantom import PRESETS, simulate_phantom
from scripts.spectra.reference import raman_spectrum

WN = np.linspace(2800, 3050, 64)


def band(stack: np.ndarray, mask: np.ndarray, lo: float, hi: float) -> float:
    sel = (lo <= WN) & (hi >= WN)
    return float(stack[sel][:, mask].mean())


def digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_cli_writes_stacks_labels_and_datalist(tmp_path):
    main(["--out", str(tmp_path / "d"), "--num", "6", "--seed", "3", "--size", "64"])
    out = tmp_path / "d"
    images, labels = sorted((out / "images").iterdir()), sorted((out / "labels").iterdir())
    assert len(images) == len(labels) == 6
    assert [p.name for p in images] == [p.name for p in labels]  # same file stems
    datalist = json.loads((out / "datalist.json").read_text())
    assert {k: len(v) for k, v in datalist.items()} == {"training": 4, "validation": 1, "test": 1}
    listed = [e["image"] for v in datalist.values() for e in v]
    assert sorted(listed) == sorted(f"images/{p.name}" for p in images)
    params = json.loads((out / "simulation.json").read_text())
    assert len(params["phantoms"]) == 6
    assert params["settings"]["seed"] == 3


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    args = ["--num", "2", "--size", "48", "--dtype", "uint16"]
    main(["--out", str(tmp_path / "a"), "--seed", "9", *args])
    main(["--out", str(tmp_path / "b"), "--seed", "9", *args])
    main(["--out", str(tmp_path / "c"), "--seed", "10", *args])
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert (
        digest(tmp_path / "a")["images/hsrs_default_s9_0000.nii.gz"]
        != digest(tmp_path / "c")["images/hsrs_default_s10_0000.nii.gz"]
    )


def test_refuses_to_overwrite_without_flag(tmp_path):
    main(["--out", str(tmp_path), "--num", "1", "--size", "32"])
    with pytest.raises(FileExistsError, match="--overwrite"):
        main(["--out", str(tmp_path), "--num", "1", "--size", "32"])
    main(["--out", str(tmp_path), "--num", "1", "--size", "32", "--overwrite"])


def test_tiff_and_descending_options(tmp_path):
    main(
        [
            "--out",
            str(tmp_path),
            "--num",
            "1",
            "--size",
            "40",
            "--format",
            "tif",
            "--frames",
            "50",
            "--wavenumber-range",
            "3060",
            "2790",
        ]
    )
    stack, meta = read_hsrs(next((tmp_path / "images").glob("*.tif")))
    assert stack.shape == (50, 40, 40)
    assert meta["stored_order"] == "descending"
    assert meta["wavenumbers"][0] == pytest.approx(2790)
    assert next((tmp_path / "labels").glob("*.tif")).exists()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_ground_truth_and_physics(preset):
    ph = simulate_phantom(11, 256, 256, preset=preset)
    labels, stack = ph.labels, ph.stack
    assert set(np.unique(labels)) == {0, 1, 2}
    # lipid droplets: 1–12 px across
    ld, n = ndimage.label(labels == 2)
    sizes = ndimage.sum(np.ones_like(ld), ld, index=np.arange(1, n + 1))
    assert n > 3
    assert sizes.min() >= 1
    assert np.sqrt(sizes.max() * 4 / np.pi) <= 13  # equivalent diameter
    # lipid droplets are brightest at ~2850 cm⁻¹; nuclei are not
    ld_spec = stack[:, labels == 2].mean(1)
    assert 2835 <= WN[np.argmax(ld_spec)] <= 2870
    # nucleus vs cytoplasm contrast: tens of percent in 2930–2960, not an order of magnitude
    cells = ndimage.binary_erosion(ndimage.binary_dilation(labels == 1, iterations=6) & (labels == 0), iterations=1)
    nuc = ndimage.binary_erosion(labels == 1, iterations=2)
    ratio = band(stack, nuc, 2930, 2960) / band(stack, cells, 2930, 2960)
    assert 1.02 < ratio < 1.8


def test_snr_preset_ordering_and_subtle_contrast():
    def noise_sd(preset):
        ph = simulate_phantom(4, 128, 128, preset=preset)
        return float(np.std(np.diff(ph.stack[:, ph.labels == 0][:, :2000], axis=0)) / np.sqrt(2))

    assert noise_sd("easy") < noise_sd("default") < noise_sd("hard")


def test_reference_spectra_peaks():
    assert 2845 <= WN[np.argmax(raman_spectrum("lipid", WN))] <= 2860
    assert 2925 <= WN[np.argmax(raman_spectrum("protein", WN))] <= 2945
    assert 2950 <= WN[np.argmax(raman_spectrum("dna", WN))] <= 2970
    water = raman_spectrum("water", WN)
    assert np.all(np.diff(water) > 0)  # the O–H tail rises towards 3050
    # coarser spectral resolution broadens bands: lower peak after normalisation to the sharp one's maximum
    assert raman_spectrum("lipid", WN, resolution=40).max() == pytest.approx(1.0, abs=0.02)
    sharp, blurred = raman_spectrum("lipid", WN, resolution=5), raman_spectrum("lipid", WN, resolution=40)
    assert np.sum(blurred > 0.5) > np.sum(sharp > 0.5)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_instance_maps_agree_with_the_label_map(preset):
    ph = simulate_phantom(14, 384, 320, preset=preset)
    cells, nuclei, droplets = ph.cells, ph.nuclei, ph.droplets
    assert cells.dtype == nuclei.dtype == droplets.dtype == np.int32
    # the semantic classes are exactly the union of their instances
    assert np.array_equal(nuclei > 0, ph.labels == 1)
    assert np.array_equal(droplets > 0, ph.labels == 2)
    # ids 1..n without gaps
    n, m = int(cells.max()), int(droplets.max())
    assert n >= 3
    assert m >= 5
    assert np.array_equal(np.unique(cells), np.arange(n + 1))
    assert np.array_equal(np.unique(droplets), np.arange(m + 1))
    # a nucleus lies in its own cell and has that cell's id; the flags say which cells have one
    assert np.array_equal(cells[nuclei > 0], nuclei[nuclei > 0])
    assert ph.has_nucleus.shape == (n + 1,)
    assert set(np.unique(nuclei[nuclei > 0])) == set(np.flatnonzero(ph.has_nucleus))
    edge = np.unique(np.concatenate([cells[0], cells[-1], cells[:, 0], cells[:, -1]]))
    assert set(np.flatnonzero(~ph.has_nucleus[1:]) + 1) <= set(edge)  # only cells cut by the field edge lose it
    # every droplet belongs to the cell that drew it: that cell holds most of its pixels
    assert ph.droplet_cell.shape == (m + 1,)
    assert (ph.droplet_cell[1:] >= 1).all()
    assert (ph.droplet_cell <= n).all()
    majority = [np.bincount(cells[droplets == d]).argmax() for d in range(1, m + 1)]
    assert np.mean(np.array(majority) == ph.droplet_cell[1:]) >= 0.95
    # touching or nearby droplets keep their own ids: instances are never fewer than components
    assert m >= ndimage.label(ph.labels == 2)[1]


def test_instance_maps_on_disk_open_in_imagej_format_and_match_the_phantom(tmp_path):
    import tifffile
    from scripts.io.instance_maps import read_instance_tiff

    main(["--out", str(tmp_path), "--num", "2", "--seed", "5", "--size", "96", "80", "--pixel-size", "0.3"])
    stems = sorted(p.name.split(".")[0] for p in (tmp_path / "images").iterdir())
    assert sorted(p.stem for p in (tmp_path / "instances").iterdir()) == stems
    datalist = json.loads((tmp_path / "datalist.json").read_text())
    for entry in (e for v in datalist.values() for e in v):
        assert entry["instances"] == entry["image"].replace("images/", "instances/").replace(".nii.gz", ".tif")
    path = tmp_path / "instances" / f"{stems[0]}.tif"
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata["Labels"] == ["cells", "nuclei", "lipid_droplets"]
        assert tif.imagej_metadata["unit"] == "um"
        num, den = tif.pages[0].tags["XResolution"].value
        assert tif.asarray().shape == (3, 96, 80)
    assert den / num == pytest.approx(0.3)
    maps, pixel, info = read_instance_tiff(path)
    assert pixel == pytest.approx(0.3)
    ph = simulate_phantom(np.random.default_rng(np.random.SeedSequence(5).spawn(3)[1]), 96, 80, pixel_size_um=0.3)
    assert np.array_equal(maps["cells"], ph.cells)
    assert np.array_equal(maps["nuclei"], ph.nuclei)
    assert np.array_equal(maps["lipid_droplets"], ph.droplets)
    assert np.array_equal(info["droplet_cell"], ph.droplet_cell)
    assert np.array_equal(info["has_nucleus"], ph.has_nucleus)
    labels, _ = read_hsrs(tmp_path / "labels" / f"{stems[0]}.nii.gz")
    assert np.array_equal(labels[0] == 1, maps["nuclei"] > 0)
