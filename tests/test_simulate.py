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


CELL_PRESETS = ("easy", "default", "hard")


@pytest.mark.parametrize("preset", CELL_PRESETS)
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


@pytest.mark.parametrize("preset", CELL_PRESETS)
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


def test_tissue_scene_covers_the_field_with_packed_vesicles_and_faint_nuclei():
    ph = simulate_phantom(3, 256, 256, preset="tissue")
    labels, stack, wn, cells = ph.labels, ph.stack, ph.wavenumbers, ph.cells
    assert ph.params["scene"] == "tissue"
    # the whole field is tissue except lumen: no sparse cells on an empty slide
    assert (cells > 0).mean() > 0.6
    assert np.array_equal(ph.nuclei > 0, labels == 1)
    assert np.array_equal(ph.droplets > 0, labels == 2)
    assert np.array_equal(cells[ph.nuclei > 0], ph.nuclei[ph.nuclei > 0])
    # densely packed round vesicles 2–10 px across (a few sub-pixel ones mark one pixel)
    ids = np.arange(1, int(ph.droplets.max()) + 1)
    sizes = ndimage.sum(np.ones_like(ph.droplets), ph.droplets, index=ids)
    diam = np.sqrt(sizes * 4 / np.pi)
    assert ids.size > 100
    assert np.median(diam) >= 2
    assert diam.max() <= 11
    assert (labels == 2).mean() > 0.05
    # chemistry: vesicles peak at CH2 ~2850; nuclei are lipid-poor (darker at 2850 than the cytoplasm)
    # but nearly as bright at 2930–2960 (weak contrast, as in sections)
    assert 2835 <= wn[np.argmax(stack[:, labels == 2].mean(1))] <= 2870
    ring = ndimage.binary_dilation(labels == 1, iterations=4) & (labels == 0) & (cells > 0)
    nuc = ndimage.binary_erosion(labels == 1, iterations=2)
    at = lambda lo, hi, m: float(stack[(wn >= lo) & (wn <= hi)][:, m].mean())  # noqa: E731
    assert at(2840, 2860, nuc) < at(2840, 2860, ring)
    assert 0.8 < at(2930, 2960, nuc) / at(2930, 2960, ring) < 1.25


def test_randomized_preset_varies_the_instrument_and_stays_readable(tmp_path):
    from scripts.spectra.axis import REQUIRED_RANGE as MINIMUM_COVERAGE

    seen = {"descending": 0, "ascending": 0, "bits": set(), "scenes": set(), "frames": set(), "saturated": 0}
    for seed in range(12):
        ph = simulate_phantom(seed, 96, 96, preset="randomized")
        wn, stack = ph.wavenumbers, ph.stack
        assert stack.shape == (wn.size, 96, 96)
        assert 30 <= wn.size <= 200
        assert wn.min() <= MINIMUM_COVERAGE[0]
        assert wn.max() >= MINIMUM_COVERAGE[1]
        seen["descending" if wn[0] > wn[-1] else "ascending"] += 1
        seen["frames"].add(wn.size)
        seen["scenes"].add(ph.params["scene"])
        bits = ph.params["bit_depth"]
        seen["bits"].add(bits)
        if bits:  # digitised: at most 2**bits distinct levels, the top one is saturation
            assert np.unique(stack).size <= 2**bits
            seen["saturated"] += ph.params["saturated_fraction"] > 0
        assert 0 <= ph.params["illumination"] <= 0.5
        assert 0 <= ph.params["stripes"] <= 0.08
    assert seen["descending"]
    assert seen["ascending"]
    assert len(seen["frames"]) >= 6
    assert seen["scenes"] == {"cells", "tissue", "organism"}
    assert len(seen["bits"] - {0}) >= 2
    assert seen["saturated"] >= 1
    # on disk each stack carries its own window; the reader's axis check agrees with it
    main(["--out", str(tmp_path), "--num", "3", "--seed", "5", "--size", "64", "--preset", "randomized"])
    settings = json.loads((tmp_path / "simulation.json").read_text())["settings"]
    assert settings["frames"] is None
    assert settings["wavenumber_range"] is None
    for f in sorted((tmp_path / "images").iterdir()):
        stack, meta = read_hsrs(f, axis_check="refuse")
        assert stack.shape[0] == len(meta["wavenumbers"])
        assert meta["axis_check"] in ("ok", "unchecked")  # never "reversed" or "miscalibrated"


def test_cell_presets_draw_nothing_new():
    """The scene and instrument options draw no random numbers unless a preset enables them."""
    from dataclasses import replace

    base = simulate_phantom(9, 64, 64, preset="default")
    same = simulate_phantom(9, 64, 64, preset=replace(PRESETS["default"], tissue_probability=0.0))
    assert np.array_equal(base.stack, same.stack)
    assert np.array_equal(base.labels, same.labels)
    assert base.params["scene"] == "cells"
    assert base.params["frames"] == 64
