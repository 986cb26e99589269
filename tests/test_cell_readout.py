"""The per-cell readout in the workflows: inference.yaml's handler, phasor.yaml's post-step, the tables."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from scripts.cells import CELL_COLUMNS, IMAGE_COLUMNS, measure_cells
from scripts.cells.handler import CellReadoutHandler, stack_wavenumbers
from scripts.cells.readout import CellReadout
from scripts.cells.tables import update_stack_rows
from scripts.io.instance_maps import read_instance_tiff
from scripts.simulation.dataset import simulate_dataset
from scripts.simulation.phantom import simulate_phantom
from scripts.spectra.axis import CANONICAL_WAVENUMBERS
from scripts.transforms.array import NormalizeSpectralIntensity

from tests.conftest import REPO

CONFIGS = REPO / "configs"


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def two_stacks(tmp_path_factory):
    """Two simulated 128×128×64 stacks holding cells (the first two of the demo data's seed, float32)."""
    out = tmp_path_factory.mktemp("two")
    simulate_dataset(out, num=2, seed=7, height=128, width=128)
    return out


def check_instance_files(out, stems, rows):
    """Each stem's instance TIFF opens with its pixel size and holds exactly the cell ids of its rows."""
    for stem in stems:
        maps, pixel, info = read_instance_tiff(out / "cells" / f"{stem}_instances.tif")
        assert pixel == pytest.approx(0.25)
        mine = [r for r in rows if r["stack"] == stem]
        ids = sorted(int(r["cell_id"]) for r in mine)
        assert ids == sorted(set(np.unique(maps["cells"]).tolist()) - {0})
        for r in mine:
            assert (maps["cells"] == int(r["cell_id"])).sum() == int(r["cell_area_px"])
            assert (maps["nuclei"] == int(r["cell_id"])).sum() == int(r["nucleus_area_px"])
            assert info["has_nucleus"][int(r["cell_id"])] == (r["has_nucleus"] == "true")
        assert (out / "cells" / f"{stem}_cells_overlay.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / "cells" / f"{stem}_instances_cells.nii.gz").is_file()


def test_inference_yaml_writes_cells_csv_and_instance_maps_for_every_stack(two_stacks, tmp_path):
    wf = ConfigWorkflow(
        config_file=str(CONFIGS / "inference.yaml"),
        meta_file=str(CONFIGS / "metadata.json"),
        workflow_type="infer",
        bundle_root=str(REPO),
        dataset_dir=str(two_stacks / "images"),
        output_dir=str(tmp_path),
    )
    wf.initialize()
    wf.run()
    stems = sorted(p.name[: -len(".nii.gz")] for p in (two_stacks / "images").iterdir())
    rows = read_csv(tmp_path / "cells.csv")
    assert list(rows[0]) == list(CELL_COLUMNS)
    assert sorted({r["stack"] for r in rows}) == stems  # rows for both stacks
    check_instance_files(tmp_path, stems, rows)
    summary = read_csv(tmp_path / "cells_summary.csv")
    assert list(summary[0]) == list(IMAGE_COLUMNS)
    assert [r["stack"] for r in summary] == stems
    for s in summary:
        assert int(s["cells"]) == sum(r["stack"] == s["stack"] for r in rows)
        assert float(s["pixel_size_um"]) == pytest.approx(0.25)
    # the predicted nuclei are those of the label map the segmentation writer wrote
    from scripts.io.reader import read_hsrs

    labels, _ = read_hsrs(tmp_path / f"{stems[0]}.tif")
    maps, _, _ = read_instance_tiff(tmp_path / "cells" / f"{stems[0]}_instances.tif")
    assert np.array_equal(maps["lipid_droplets"] > 0, labels[0] == 2)
    assert ((maps["nuclei"] > 0) <= (labels[0] == 1)).all()


def test_phasor_yaml_post_step_writes_the_readout_of_its_label_maps(two_stacks, tmp_path):
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "phasor.yaml"))
    parser.update(
        {
            "bundle_root": str(REPO),
            "dataset_dir": str(two_stacks / "images"),
            "output_dir": str(tmp_path),
            "plots": False,
        }
    )
    parser.get_parsed_content("phasor_job").run()
    stems = sorted(p.name[: -len(".nii.gz")] for p in (two_stacks / "images").iterdir())
    rows = read_csv(tmp_path / "cells.csv")
    assert sorted({r["stack"] for r in rows}) == stems
    check_instance_files(tmp_path, stems, rows)
    labels = read_instance_tiff(tmp_path / "cells" / f"{stems[1]}_instances.tif")[0]["lipid_droplets"] > 0
    from scripts.io.reader import read_hsrs

    assert np.array_equal(labels, read_hsrs(tmp_path / "labels" / f"{stems[1]}.tif")[0][0] == 2)


def test_cells_false_writes_nothing(tmp_path):
    readout = CellReadout(tmp_path / "out", enabled="false")
    ph = simulate_phantom(1, 64, 64)
    assert readout("x", ph.stack, ph.wavenumbers, ph.labels, 0.25) is None
    assert not (tmp_path / "out").exists()

    class Engine:
        def add_event_handler(self, *args):
            raise AssertionError("a disabled readout attaches no handler")

    CellReadoutHandler(readout).attach(Engine())
    with pytest.raises(ValueError, match="cells must be true or false"):
        CellReadout(tmp_path, enabled="maybe")


def test_a_stack_processed_again_replaces_its_rows_and_keeps_the_others(tmp_path, phantom):
    readout = CellReadout(tmp_path, overlays=False, nifti=False)
    readout("a", phantom.stack, phantom.wavenumbers, phantom.labels, 0.25)
    readout("b", phantom.stack, phantom.wavenumbers, phantom.labels, 0.25)
    n = sum(r["stack"] == "a" for r in read_csv(tmp_path / "cells.csv"))
    assert n > 0
    # "a" again, now with a label map without nuclei and droplets: its rows change, b's stay
    readout("a", phantom.stack, phantom.wavenumbers, np.zeros_like(phantom.labels), 0.25)
    rows = read_csv(tmp_path / "cells.csv")
    assert sum(r["stack"] == "b" for r in rows) == n
    assert all(r["has_nucleus"] == "false" for r in rows if r["stack"] == "a")
    summary = {r["stack"]: r for r in read_csv(tmp_path / "cells_summary.csv")}
    assert sorted(summary) == ["a", "b"]
    assert summary["a"]["cells_with_nucleus"] == "0"
    # a new run into the same folder keeps the earlier rows
    CellReadout(tmp_path, overlays=False, nifti=False)("c", phantom.stack, phantom.wavenumbers, phantom.labels, 0.25)
    assert {r["stack"] for r in read_csv(tmp_path / "cells.csv")} == {"a", "b", "c"}
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]  # no temporary files left


def test_tables_refuse_to_overwrite_a_foreign_file(tmp_path):
    from scripts.io.errors import HSRSOutputError

    (tmp_path / "cells.csv").write_text("name,value\nx,1\n")
    with pytest.raises(HSRSOutputError, match="not a table written by this bundle"):
        update_stack_rows(tmp_path / "cells.csv", "a", [], ["stack", "cell_id"])
    assert (tmp_path / "cells.csv").read_text() == "name,value\nx,1\n"


@pytest.mark.parametrize("case", ["no nuclei", "only debris", "empty field"])
def test_fields_without_cells_give_a_summary_row_a_header_and_a_log_line(case, tmp_path, caplog):
    ph = simulate_phantom(1, 96, 96)
    stack, labels = ph.stack, ph.labels.copy()
    if case == "no nuclei":
        labels[labels == 1] = 0
    elif case == "only debris":
        stack = np.broadcast_to(stack[:, :1, :1], stack.shape).copy()  # a flat field ...
        stack[:, 40:44, 50:53] *= 1.5  # ... with one speck
        labels[:] = 0
    else:
        stack = np.ones_like(stack)
        labels[:] = 0
    m = CellReadout(tmp_path)(case.replace(" ", "_"), stack, ph.wavenumbers, labels, None)
    summary = read_csv(tmp_path / "cells_summary.csv")
    assert len(summary) == 1
    assert int(summary[0]["cells"]) == len(m.rows)
    assert float(summary[0]["pixel_size_um"]) == 0.25  # the default, logged
    assert "records no pixel size" in caplog.text
    rows = read_csv(tmp_path / "cells.csv")
    assert (tmp_path / "cells.csv").read_text().startswith(",".join(CELL_COLUMNS))
    if case == "no nuclei":
        assert rows
        assert all(r["has_nucleus"] == "false" for r in rows)
        assert "no nucleus in the label map" in caplog.text
    else:
        assert rows == []
        assert "no cells found" in caplog.text
    assert (tmp_path / "cells" / f"{case.replace(' ', '_')}_instances.tif").is_file()


def test_lipid_to_protein_is_the_same_on_the_normalised_stack(phantom):
    raw = measure_cells(phantom.stack, phantom.wavenumbers, phantom.labels, 0.25, "raw")
    normalised = NormalizeSpectralIntensity()(torch.as_tensor(phantom.stack)).numpy()
    norm = measure_cells(normalised, phantom.wavenumbers, phantom.labels, 0.25, "norm")
    assert [r["cell_area_px"] for r in raw.rows] == [r["cell_area_px"] for r in norm.rows]
    for a, b in zip(raw.rows, norm.rows, strict=True):
        for key in ("lipid_to_protein_cell", "lipid_to_protein_cytoplasm"):
            assert b[key] == pytest.approx(a[key], rel=1e-3)


def test_wavenumbers_of_a_pipeline_image(caplog):
    assert np.array_equal(stack_wavenumbers({"wavenumbers": torch.arange(3.0)}, 3, "x"), [0, 1, 2])
    assert np.array_equal(stack_wavenumbers({}, 64, "x"), CANONICAL_WAVENUMBERS)
    with pytest.raises(ValueError, match="x: the image has 10 frames and no matching"):
        stack_wavenumbers({"wavenumbers": np.arange(3.0)}, 10, "x")


def test_recorded_pixel_size_wins_and_bad_defaults_are_refused(tmp_path, caplog):
    readout = CellReadout(tmp_path, default_pixel_size_um=0.3)
    with caplog.at_level(logging.WARNING):
        assert readout.pixel_size(0.2, "a") == 0.2
        assert readout.pixel_size(torch.tensor(0.2), "a") == pytest.approx(0.2)
        assert not caplog.text
        assert readout.pixel_size(float("nan"), "a") == 0.3
    assert "a: the file records no pixel size" in caplog.text
    with pytest.raises(ValueError, match="default_pixel_size_um must be a positive number"):
        CellReadout(tmp_path, default_pixel_size_um=0)
