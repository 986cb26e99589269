"""Per-cell readout (scripts.cells): instances, per-cell table, files, instance metrics.

Scenes are drawn here: disks of cells with nuclei and lipid droplets, spectra with Gaussian bands
at 2850 cm⁻¹ (CH₂, lipid) and 2930 cm⁻¹ (CH₃, protein) on a non-Raman background.
"""

from __future__ import annotations

import csv
import logging
import math

import numpy as np
import pytest
from scipy import ndimage
from scripts.cells import (
    CELL_COLUMNS,
    IMAGE_COLUMNS,
    CellInstances,
    InstanceParameters,
    cell_droplet_errors,
    columns_markdown,
    instance_f1,
    match_instances,
    measure_cells,
    panoptic_quality,
)
from scripts.cells.bands import RAMAN_BANDS, band_weights
from scripts.cells.writers import write_cell_outputs, write_instance_nifti, write_instance_tiff, write_table

PX = 0.25  # µm per pixel
WN = np.linspace(2800, 3050, 32)


def _band(centre: float, width: float = 12.0) -> np.ndarray:
    return np.exp(-0.5 * ((WN - centre) / width) ** 2)


PROTEIN = 0.15 * _band(2850) + _band(2930)
LIPID = _band(2850) + 0.45 * _band(2930)
BACKGROUND = 0.3 + 0.3 * np.exp(-(WN - WN[0]) / 80)  # non-Raman background, strongest at the first frame


def disk(shape, cy, cx, r) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def make_stack(protein: np.ndarray, lipid: np.ndarray, noise: float = 0.003, seed: int = 0) -> np.ndarray:
    """(K, H, W) stack: background + protein and lipid concentration maps times their spectra + noise."""
    stack = BACKGROUND[:, None, None] + PROTEIN[:, None, None] * protein + LIPID[:, None, None] * lipid
    return (stack + noise * np.random.default_rng(seed).standard_normal(stack.shape)).astype(np.float32)


def scene(shape, cells=(), droplets=(), blobs=()):
    """Labels and stack: ``cells`` (cy, cx, r, nucleus_r or 0), square ``droplets`` (y, x, side),
    protein-only ``blobs`` (cy, cx, r) without label."""
    labels = np.zeros(shape, np.uint8)
    protein = np.zeros(shape)
    lipid = np.zeros(shape)
    for cy, cx, r, nr in cells:
        protein[disk(shape, cy, cx, r)] = 1.0
        if nr:
            labels[disk(shape, cy, cx, nr)] = 1
    for cy, cx, r in blobs:
        protein[disk(shape, cy, cx, r)] = 1.0
    for y, x, side in droplets:
        labels[y : y + side, x : x + side] = 2
        lipid[y : y + side, x : x + side] = 3.0
    return labels, make_stack(protein, lipid)


def test_two_touching_nuclei_become_two_cells():
    shape = (64, 64)
    labels, stack = scene(shape, [(32, 23, 14, 9), (32, 41, 14, 9)])
    assert ndimage.label(labels == 1)[1] == 1  # the two nuclei touch: one connected component
    m = measure_cells(stack, WN, labels, PX, "touching")
    assert len(m.rows) == 2
    assert all(r["has_nucleus"] for r in m.rows)
    assert set(np.unique(m.instances.nuclei)) == {0, 1, 2}
    areas = sorted(r["nucleus_area_px"] for r in m.rows)
    assert abs(areas[0] - areas[1]) <= 0.1 * areas[1]  # split near the middle
    assert np.array_equal(m.instances.nuclei > 0, labels == 1)  # every nucleus pixel kept
    for r in m.rows:  # a cell holds its own nucleus: nucleus id = cell id
        assert (m.instances.cells[m.instances.nuclei == r["cell_id"]] == r["cell_id"]).all()


def test_touching_droplets_are_split():
    shape = (48, 48)
    labels, stack = scene(shape, [(24, 24, 20, 5)])
    labels[disk(shape, 12, 16, 4) | disk(shape, 12, 23, 4)] = 2
    m = measure_cells(stack, WN, labels, PX, "pair")
    assert m.instances.n_droplets == 2
    assert m.rows[0]["droplet_count"] == 2


def test_cell_with_three_droplets_and_one_outside():
    shape = (64, 64)
    droplets = [(20, 26, 3), (40, 20, 2), (40, 40, 4), (3, 3, 3)]  # the last one lies in the background
    labels, stack = scene(shape, [(32, 32, 20, 6)], droplets)
    m = measure_cells(stack, WN, labels, PX, "three")
    assert len(m.rows) == 1
    row = m.rows[0]
    areas = np.array([9, 4, 16])
    assert row["droplet_count"] == 3
    assert row["droplet_total_area_px"] == 29
    assert row["droplet_total_area_um2"] == pytest.approx(29 * PX**2)
    assert row["droplet_mean_area_px"] == pytest.approx(29 / 3)
    assert row["droplet_mean_diameter_um"] == pytest.approx(np.mean(2 * np.sqrt(areas / np.pi)) * PX)
    assert row["nucleus_area_px"] == disk(shape, 32, 32, 6).sum()
    assert row["cytoplasm_area_px"] == row["cell_area_px"] - row["nucleus_area_px"]
    assert row["droplet_area_fraction"] == pytest.approx(29 / row["cytoplasm_area_px"])
    assert row["n_c_ratio"] == pytest.approx(row["nucleus_area_px"] / row["cytoplasm_area_px"])
    assert m.instances.n_droplets == 4
    outside = m.instances.droplets[3, 3]
    assert m.instances.droplet_cell[outside] == 0
    assert m.summary["droplets"] == 4
    assert m.summary["droplets_outside_cells"] == 1


def test_blob_without_nucleus_is_a_flagged_cell_and_debris_is_not():
    shape = (64, 96)
    labels, stack = scene(shape, [(32, 24, 16, 6)], blobs=[(32, 70, 13), (6, 90, 3)])
    m = measure_cells(stack, WN, labels, PX, "blob")
    assert len(m.rows) == 2  # the 3 px debris is no cell
    nucleated, blob = sorted(m.rows, key=lambda r: not r["has_nucleus"])
    assert nucleated["has_nucleus"]
    assert not blob["has_nucleus"]
    assert blob["nucleus_area_px"] == 0
    assert math.isnan(blob["n_c_ratio"])
    assert abs(blob["centroid_x"] - 70) < 1
    assert abs(blob["centroid_y"] - 32) < 1
    assert m.summary["cells_without_nucleus"] == 1
    assert m.summary["cells_with_nucleus"] == 1


def test_no_nucleus_in_the_label_map_logs_and_flags(caplog):
    shape = (64, 64)
    labels, stack = scene(shape, blobs=[(32, 32, 15)])
    m = measure_cells(stack, WN, labels, PX, "no_nuclei")
    assert [r["has_nucleus"] for r in m.rows] == [False]
    assert "no_nuclei: no nucleus in the label map" in caplog.text


def test_border_flag_and_complete_cells():
    shape = (64, 96)
    labels, stack = scene(shape, [(32, 4, 14, 5), (32, 60, 16, 6)])
    m = measure_cells(stack, WN, labels, PX, "border")
    flags = {round(r["centroid_x"]) < 20: r["touches_border"] for r in m.rows}
    assert flags == {True: True, False: False}
    assert m.summary["complete_cells"] == 1
    assert m.summary["cells_touching_border"] == 1
    inner = next(r for r in m.rows if not r["touches_border"])
    assert m.summary["mean_cell_area_um2"] == pytest.approx(inner["cell_area_um2"])  # cut cells left out


def _band_integral(spectrum: np.ndarray, name: str) -> float:
    return float(band_weights(WN, *RAMAN_BANDS[name]) @ spectrum)


def test_lipid_to_protein_is_higher_where_lipid_is_and_background_corrected():
    shape = (64, 112)
    labels = np.zeros(shape, np.uint8)
    protein = np.zeros(shape)
    lipid = np.zeros(shape)
    for cx in (28, 84):
        protein[disk(shape, 32, cx, 20)] = 1.0
        labels[disk(shape, 32, cx, 6)] = 1
    lipid[disk(shape, 32, 84, 20) & ~disk(shape, 32, 84, 6)] = 0.6  # diffuse lipid in the right cell's cytoplasm
    labels[40:44, 80:84] = 2  # and a droplet
    lipid[40:44, 80:84] = 3.0
    m = measure_cells(make_stack(protein, lipid), WN, labels, PX, "lipid")
    left, right = sorted(m.rows, key=lambda r: r["centroid_x"])
    assert right["lipid_to_protein_cytoplasm"] > 2 * left["lipid_to_protein_cytoplasm"]
    assert right["lipid_to_protein_cell"] > left["lipid_to_protein_cell"]
    assert right["lipid_to_protein_droplets"] > right["lipid_to_protein_cytoplasm"]
    assert math.isnan(left["lipid_to_protein_droplets"])  # no droplet: no value
    # the background spectrum is subtracted: the protein-only cell gives the protein spectrum's own ratio
    expected = _band_integral(PROTEIN, "CH2") / _band_integral(PROTEIN, "CH3")
    uncorrected = _band_integral(PROTEIN + BACKGROUND, "CH2") / _band_integral(PROTEIN + BACKGROUND, "CH3")
    assert abs(uncorrected - expected) > 0.3 * expected
    assert left["lipid_to_protein_cytoplasm"] == pytest.approx(expected, rel=0.03)
    assert left["lipid_to_protein_cell"] == pytest.approx(expected, rel=0.03)


def test_instance_tiff_opens_with_pixel_size_and_ids_of_the_table(phantom, tmp_path):
    import tifffile

    m = measure_cells(phantom.stack, phantom.wavenumbers, phantom.labels, PX, "phantom")
    assert m.rows, "the default phantom holds cells"
    path = write_instance_tiff(tmp_path / "phantom_instances.tif", m.instances, PX)
    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
        assert tif.is_imagej
        assert tif.imagej_metadata["unit"] == "um"
        assert tif.imagej_metadata["Labels"] == ["cells", "nuclei", "lipid_droplets"]
        num, den = tif.pages[0].tags["XResolution"].value
    assert den / num == pytest.approx(PX)
    assert data.shape == (3, *phantom.labels.shape)
    assert data.dtype == np.uint16
    cells, nuclei, droplets = data
    assert sorted(set(np.unique(cells)) - {0}) == [r["cell_id"] for r in m.rows]
    assert sorted(set(np.unique(nuclei)) - {0}) == [r["cell_id"] for r in m.rows if r["has_nucleus"]]
    assert int(droplets.max()) == m.summary["droplets"]
    for r in m.rows:
        assert (cells == r["cell_id"]).sum() == r["cell_area_px"]
        assert (nuclei == r["cell_id"]).sum() == r["nucleus_area_px"]


def test_more_than_65535_ids_are_kept_exactly(tmp_path):
    import nibabel as nib
    import tifffile

    cells = np.zeros((8, 10), np.int32)
    cells[2, 3], cells[5, 7] = 1, 70000
    inst = CellInstances(cells=cells, nuclei=np.zeros_like(cells), droplets=cells.copy())
    tif = tifffile.imread(write_instance_tiff(tmp_path / "big.tif", inst, PX))
    assert tif.dtype == np.float32
    assert tif[0, 5, 7] == 70000
    assert tif[2, 2, 3] == 1
    paths = write_instance_nifti(tmp_path / "big", inst, PX)
    assert [p.name for p in paths] == [f"big_instances_{k}.nii.gz" for k in ("cells", "nuclei", "lipid_droplets")]
    image = nib.load(paths[0])
    assert np.array_equal(np.asarray(image.dataobj).T, cells)
    assert image.header.get_data_dtype() == np.uint32
    assert np.allclose(np.diag(image.affine)[:2], PX)
    assert image.header.get_xyzt_units()[0] == "micron"


@pytest.mark.parametrize("kind", ["constant", "noise", "debris only"])
def test_field_without_cells_gives_a_header_only_csv(kind, tmp_path, caplog):
    shape = (48, 48)
    if kind == "constant":
        stack = np.ones((WN.size, *shape), np.float32)
        labels = np.zeros(shape, np.uint8)
    elif kind == "noise":
        labels, stack = scene(shape)
    else:
        labels, stack = scene(shape, blobs=[(10, 10, 3), (30, 35, 4)])
    m = measure_cells(stack, WN, labels, PX, "empty")
    assert m.rows == []
    assert m.summary["cells"] == 0
    assert math.isnan(m.summary["mean_cell_area_um2"])
    assert "empty: no cells found" in caplog.text
    written = write_cell_outputs(tmp_path, m)
    table = tmp_path / "empty_cells.csv"
    assert table in written
    assert table.read_text().splitlines() == [",".join(CELL_COLUMNS)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)  # no temporary files left


def test_outputs_of_a_phantom_and_their_tables(phantom, tmp_path):
    import matplotlib.image

    m = measure_cells(phantom.stack, phantom.wavenumbers, phantom.labels, PX, "ph")
    written = write_cell_outputs(tmp_path, m)
    assert {p.name for p in written} == {
        "ph_instances.tif",
        "ph_instances_cells.nii.gz",
        "ph_instances_nuclei.nii.gz",
        "ph_instances_lipid_droplets.nii.gz",
        "ph_cells_overlay.png",
        "ph_cells.csv",
    }
    png = matplotlib.image.imread(tmp_path / "ph_cells_overlay.png")
    assert png.shape[0] >= 600
    assert png.shape[1] >= 600
    with open(tmp_path / "ph_cells.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(m.rows)
    assert list(rows[0]) == list(CELL_COLUMNS)
    assert {r["touches_border"] for r in rows} <= {"true", "false"}
    write_table(tmp_path / "summary.csv", [m.summary], IMAGE_COLUMNS)
    with open(tmp_path / "summary.csv", newline="") as f:
        (summary,) = csv.DictReader(f)
    assert int(summary["cells"]) == len(m.rows)


def test_rows_follow_the_documented_columns():
    labels, stack = scene((48, 48), [(24, 24, 14, 5)], [(14, 14, 2)])
    m = measure_cells(stack, WN, labels, PX, "cols")
    assert list(m.rows[0]) == list(CELL_COLUMNS)
    assert list(m.summary) == list(IMAGE_COLUMNS)
    doc = columns_markdown(CELL_COLUMNS)
    assert all(f"`{name}`" in doc for name in CELL_COLUMNS)
    assert all(unit == "µm²" for name, (unit, _) in CELL_COLUMNS.items() if name.endswith("_um2"))
    with pytest.raises(ValueError, match="row 0 does not match the columns"):
        write_table("unused.csv", [{"stack": "x"}], CELL_COLUMNS)


def test_parquet_beside_the_csv_when_pyarrow_is_there(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    labels, stack = scene((48, 48), [(24, 24, 14, 5)])
    m = measure_cells(stack, WN, labels, PX, "pq")
    written = write_table(tmp_path / "cells.csv", m.rows, CELL_COLUMNS)
    assert pq.read_table(written[1]).num_rows == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": np.zeros((10, 10), np.uint8)}, "does not match the stack's image size"),
        ({"labels": np.full((48, 48), 3, np.uint8)}, "unknown label values"),
        ({"wavenumbers": np.linspace(2950, 3100, WN.size)}, "no frame within 2835–2865"),
        ({"wavenumbers": WN[:-1]}, "wavenumbers for 32 frames"),
        ({"pixel_size_um": 0.0}, "pixel_size_um must be a positive number"),
        ({"stack": np.zeros((48, 48))}, "must be \\(K, H, W\\)"),
    ],
)
def test_bad_input_is_refused_with_the_reason(change, message):
    labels, stack = scene((48, 48), [(24, 24, 14, 5)])
    args = {"stack": stack, "wavenumbers": WN, "labels": labels, "pixel_size_um": PX, **change}
    with pytest.raises(ValueError, match=message):
        measure_cells(stem="bad", **args)


def _squares(shape, boxes):
    out = np.zeros(shape, np.int32)
    for i, (y, x, h, w) in enumerate(boxes, start=1):
        out[y : y + h, x : x + w] = i
    return out


def test_f1_and_panoptic_quality():
    ref = _squares((40, 60), [(0, 0, 10, 10), (15, 15, 10, 10), (28, 40, 10, 10)])
    assert instance_f1(ref, ref)["f1"] == 1.0
    assert panoptic_quality(ref, ref)["pq"] == 1.0
    # A exact, B shifted by 2 columns (IoU 80/120), C missed, D spurious
    pred = _squares((40, 60), [(0, 0, 10, 10), (15, 17, 10, 10), (0, 45, 5, 5)])
    f1 = instance_f1(pred, ref)
    assert (f1["tp"], f1["fp"], f1["fn"]) == (2, 1, 1)
    assert f1["f1"] == pytest.approx(2 / 3)
    pq = panoptic_quality(pred, ref)
    assert pq["sq"] == pytest.approx((1 + 2 / 3) / 2)
    assert pq["rq"] == pytest.approx(2 / 3)
    assert pq["pq"] == pytest.approx(5 / 9)
    assert instance_f1(pred, ref, iou_threshold=0.7)["tp"] == 1
    matched = match_instances(pred, ref)
    assert sorted(zip(matched.pred_ids.tolist(), matched.ref_ids.tolist(), strict=True)) == [(1, 1), (2, 2)]
    empty = np.zeros((4, 4), np.int32)
    assert math.isnan(instance_f1(empty, empty)["f1"])
    with pytest.raises(ValueError, match="same shape"):
        instance_f1(empty, ref)


def test_droplet_errors_over_complete_matched_cells():
    shape = (40, 80)
    cells = _squares(shape, [(5, 5, 20, 20), (5, 40, 20, 20), (20, 65, 20, 15)])  # the third touches the border
    ref_droplets = _squares(shape, [(8, 8, 2, 2), (12, 12, 3, 3), (8, 45, 2, 2), (30, 70, 2, 2)])
    pred_droplets = _squares(shape, [(8, 8, 2, 2), (8, 45, 4, 4)])  # one missed in cell 1, one bigger in cell 2
    e = cell_droplet_errors(cells, pred_droplets, cells, ref_droplets)
    assert e["cells"] == 2
    assert e["count_mae"] == pytest.approx(0.5)
    assert e["count_bias"] == pytest.approx(-0.5)
    assert e["area_mae_px"] == pytest.approx((9 + 12) / 2)
    assert e["area_bias_px"] == pytest.approx((-9 + 12) / 2)


def test_background_brighter_towards_the_corners_keeps_the_intensity_foreground():
    shape = (96, 96)
    labels, stack = scene(shape, [(48, 48, 18, 7)], blobs=[(20, 72, 12)])
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    vignette = ((yy - 48) ** 2 + (xx - 48) ** 2) / (2 * 48**2)  # 0 at the centre, 1 in the corners
    stack = stack + (1.5 * BACKGROUND[:, None, None] * vignette).astype(np.float32)  # corners brighter than cells
    m = measure_cells(stack, WN, labels, PX, "vignette")
    assert m.summary["foreground_source"] == "intensity"
    assert len(m.rows) == 2  # the nucleated cell and the blob; no corner became a cell
    cell = next(r for r in m.rows if r["has_nucleus"])
    assert abs(cell["cell_area_px"] - disk(shape, 48, 48, 18).sum()) < 0.1 * disk(shape, 48, 48, 18).sum()


def _two_touching_cells(right_protein: float = 1.0):
    """Two cells drawn as overlapping disks (the foreground narrows at x = 34), nuclei left of their centres."""
    shape = (64, 72)
    left, right = disk(shape, 32, 24, 14), disk(shape, 32, 44, 14)
    protein = np.where(left, 1.0, 0.0)
    protein[right & ~left] = right_protein
    protein[right & (np.arange(shape[1]) >= 34)] = right_protein
    labels = np.zeros(shape, np.uint8)
    labels[disk(shape, 32, 18, 5)] = 1
    labels[disk(shape, 32, 40, 5)] = 1
    return labels, protein


@pytest.mark.parametrize(("boundary", "owner"), [("nuclei", 2), ("neck", 1)])
def test_a_droplet_between_touching_cells_goes_to_the_cell_the_boundary_option_gives(boundary, owner):
    labels, protein = _two_touching_cells()
    labels[31:33, 31:33] = 2  # nearer to the right nucleus (edge at x = 35) than to the left one (x = 23)
    lipid = np.where(labels == 2, 3.0, 0.0)
    m = measure_cells(make_stack(protein, lipid), WN, labels, PX, "pair", InstanceParameters(cell_boundary=boundary))
    assert len(m.rows) == 2
    left_id = m.instances.nuclei[32, 18]
    right_id = m.instances.nuclei[32, 40]
    expected = {1: left_id, 2: right_id}[owner]
    assert m.instances.droplet_cell[m.instances.droplets[32, 32]] == expected
    counts = {r["cell_id"]: r["droplet_count"] for r in m.rows}
    assert counts[expected] == 1
    assert sum(counts.values()) == 1
    row = m.instances.cells[32]  # the cells part half-way between the nuclei (x ≈ 29) or at the neck (x = 34)
    first_right = int(np.argmax(row == right_id))
    assert abs(first_right - (29 if boundary == "nuclei" else 34)) <= 1


def test_intensity_boundary_follows_a_step_between_touching_cells():
    shape = (64, 72)
    left, right = disk(shape, 32, 24, 14), disk(shape, 32, 46, 16)  # the foreground narrows at x ≈ 34
    protein = np.where(left | right, 1.0, 0.0)
    protein[right & (np.arange(shape[1]) >= 38)] = 0.5  # the right cell, half as bright, starts at x = 38
    labels = np.zeros(shape, np.uint8)
    labels[disk(shape, 32, 18, 5)] = 1
    labels[disk(shape, 32, 52, 5)] = 1  # half-way between the nuclei: x = 35
    found = {}
    for boundary in ("intensity", "nuclei"):
        m = measure_cells(
            make_stack(protein, 0 * protein), WN, labels, PX, "step", InstanceParameters(cell_boundary=boundary)
        )
        right_id = m.instances.nuclei[32, 52]
        found[boundary] = [int(np.argmax(m.instances.cells[y] == right_id)) for y in (28, 32, 36)]
    assert all(abs(x - 38) <= 1 for x in found["intensity"])
    assert all(abs(x - 35) <= 1 for x in found["nuclei"])


def test_a_nucleus_broken_by_the_label_map_is_one_nucleus_and_neighbours_stay_apart():
    shape = (64, 112)
    labels, stack = scene(shape, [(32, 24, 20, 9), (32, 60, 16, 7), (32, 84, 9, 5)])
    labels[:, 23:25] = np.where(labels[:, 23:25] == 1, 0, labels[:, 23:25])  # a 2 px gap through the first
    labels[30:34, 60:62] = 0  # and a hole in the second
    assert ndimage.label(labels == 1)[1] == 4
    m = measure_cells(stack, WN, labels, PX, "broken")
    assert len(m.rows) == 3  # the third nucleus, 3 µm from the second, stays its own
    assert all(r["has_nucleus"] for r in m.rows)
    first = m.instances.nuclei[32, 18]
    assert m.instances.nuclei[32, 30] == first  # both halves of the first nucleus: one instance
    assert (m.instances.nuclei[disk(shape, 32, 24, 7)] == first).all()  # the gap closed
    neither = InstanceParameters(nucleus_closing_um=0, fragment_max_gap=0)
    assert len(measure_cells(stack, WN, labels, PX, "broken", neither).rows) == 4  # else the halves are two cells
    no_closing = measure_cells(stack, WN, labels, PX, "broken", InstanceParameters(nucleus_closing_um=0))
    assert len(no_closing.rows) == 3  # the smaller half is a fragment of the larger: joined all the same


@pytest.mark.parametrize("change", [{"cell_boundary": "membrane"}, {"nucleus_closing_um": -1}, {"min_contrast": "5"}])
def test_instance_parameters_refuse_bad_values(change):
    with pytest.raises(ValueError, match=next(iter(change))):
        InstanceParameters(**change)


def test_huge_field_with_thousands_of_cells(caplog):
    shape, step = (2048, 2048), 32
    labels = np.zeros(shape, np.uint8)
    protein = np.zeros(shape, np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]] % step - step // 2 + 0.5
    protein[yy**2 + xx**2 <= 12**2] = 1.0  # 64 × 64 cells, 24 px across, none touching
    labels[yy**2 + xx**2 <= 5**2] = 1
    labels[(yy - 7) ** 2 + xx**2 <= 2**2] = 2  # one droplet per cell
    wn = np.array([2840.0, 2850.0, 2860.0, 2920.0, 2930.0, 2940.0])  # the two bands only: 6 frames
    band = {c: np.exp(-0.5 * ((wn - c) / 12.0) ** 2) for c in (2850, 2930)}
    protein_spectrum, lipid_spectrum = 0.15 * band[2850] + band[2930], band[2850] + 0.45 * band[2930]
    stack = 0.3 + protein_spectrum[:, None, None] * protein + lipid_spectrum[:, None, None] * (labels == 2)
    stack = stack.astype(np.float32)
    caplog.set_level(logging.INFO, logger="scripts.cells.measure")
    m = measure_cells(stack, wn, labels, PX, "huge")
    assert len(m.rows) == 64 * 64
    assert m.summary["complete_cells"] == 64 * 64
    assert {r["droplet_count"] for r in m.rows} == {1}
    assert m.instances.cells.max() == 64 * 64
    assert "huge: 4096 cells" in caplog.text


@pytest.mark.parametrize("radius", [1, 3, 6, 11])
def test_disk_closing_equals_scikit_image_s_closing_with_a_disk(radius):
    from scripts.cells.instances import disk_closing
    from skimage.morphology import closing, disk

    rng = np.random.default_rng(radius)
    mask = ndimage.binary_dilation(rng.random((120, 90)) > 0.97, iterations=2)
    inner = (slice(radius, -radius), slice(radius, -radius))  # away from the border, where the two pad differently
    expected = closing(mask, disk(radius)).astype(bool)
    assert np.array_equal(disk_closing(mask, radius)[inner], expected[inner])
    assert disk_closing(mask, radius).sum() > mask.sum()  # gaps were closed
