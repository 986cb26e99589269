"""The Segment widget in a real viewer: the network and the phasor give the command line's labels, QC and cells;
segmentation runs on a worker thread (the event loop keeps running), can be cancelled, and exports cells.csv."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tifffile
from qtpy.QtCore import QTimer
from scripts.napari.widgets import METHODS, SegmentWidget

from .conftest import read_table

PLUGIN = "hsrs-segmentation"
METHOD_NAMES = {value: name for name, value in METHODS.items()}


def open_widget(make_napari_viewer, path) -> tuple:
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment")
    return viewer, widget


def segment(qtbot, widget, method: str = "auto", timeout: int = 120_000):
    widget.method.setCurrentText(METHOD_NAMES[method])
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    assert widget.error is None, widget.error
    return widget.result


class EventLoopWatch:
    """The ticks of a 20 ms QTimer on the viewer's thread: how many, and the longest gap between two before ``until``."""

    def __init__(self, interval_ms: int = 20):
        self.times = [time.perf_counter()]
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def ticks(self, until: float) -> int:
        return sum(t <= until for t in self.times[1:])

    def longest_gap(self, until: float) -> float:
        times = [t for t in self.times if t <= until]
        return max(np.diff(times), default=0.0)


def test_network_labels_qc_and_cells_equal_the_command_line(make_napari_viewer, qtbot, stacks, cli_inference):
    viewer, widget = open_widget(make_napari_viewer, stacks["nii.gz"])
    assert "spectral axis" in widget.axis_label.text()
    watch = EventLoopWatch()
    started = time.perf_counter()
    result = segment(qtbot, widget)
    watch.stop()
    # while the worker segmented (until its result came back to make the layers), the event loop kept running:
    # ticks at the timer's pace, no gap of the segmentation's length
    working = widget.show_started - started
    assert watch.ticks(widget.show_started) >= 0.3 * working / 0.02
    assert (
        watch.longest_gap(widget.show_started) < 0.5
    ), f"the viewer froze for {watch.longest_gap(widget.show_started):.2f} s"
    # labels equal to the command line's on the same stack
    cli = tifffile.imread(cli_inference / "cell.tif")
    np.testing.assert_array_equal(result.labels, cli)
    classes = viewer.layers["cell classes"]
    np.testing.assert_array_equal(classes.data, cli)
    assert list(classes.features["class"]) == ["background", "nucleus", "lipid_droplet"]
    # the QC as summary.csv has it, shown in the widget
    (row,) = read_table(cli_inference / "summary.csv")
    assert result.qc["qc_flag"] == row["qc_flag"]
    assert f"{result.qc['ood_score']}" == row["ood_score"]
    assert row["qc_flag"] in widget.qc_label.text()
    # the cells: the layer's features are cells.csv's rows, shown in the table
    cli_cells = read_table(cli_inference / "cells.csv")
    cells = viewer.layers["cell cells"]
    assert len(cells.features) == len(cli_cells) == widget.table.rowCount() > 0
    assert [str(v) for v in cells.features["cell_id"]] == [r["cell_id"] for r in cli_cells]
    cli_instances = tifffile.imread(cli_inference / "cells" / "cell_instances.tif")[0]
    np.testing.assert_array_equal(cells.data, cli_instances)
    # cells.csv exported from the viewer is the command line's
    exported = widget.export_cells(cli_inference.parent / "exported" / "cells.csv")
    assert read_table(exported) == cli_cells


def test_phasor_method_equals_the_phasor_command_line(make_napari_viewer, qtbot, stacks, cli_phasor):
    _, widget = open_widget(make_napari_viewer, stacks["nii.gz"])
    result = segment(qtbot, widget, "phasor")
    np.testing.assert_array_equal(result.labels, tifffile.imread(cli_phasor / "labels" / "cell.tif"))
    assert result.method == "phasor"
    assert result.qc["qc_flag"] in ("ok", "flagged")


def test_cancel_stops_the_segmentation_without_layers(make_napari_viewer, qtbot, stacks):
    viewer, widget = open_widget(make_napari_viewer, stacks["tif"])
    widget.method.setCurrentText(METHOD_NAMES["torch"])
    widget.run_button.click()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert type(widget.error).__name__ == "CancelledError"
    assert widget.status.text() == "cancelled"
    assert "cell classes" not in viewer.layers
    assert widget.run_button.isEnabled()


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_both_backends_give_the_same_labels(make_napari_viewer, qtbot, stacks, cli_inference, backend):
    _, widget = open_widget(make_napari_viewer, stacks["tif"])
    result = segment(qtbot, widget, backend)
    assert result.method == f"network ({backend})"
    cli = tifffile.imread(cli_inference / "cell.tif")
    # ONNX Runtime and PyTorch agree up to float rounding at a handful of boundary pixels (docs/results.md)
    assert np.mean(result.labels != cli) < 1e-3


def test_large_fields_take_the_mosaic_path_with_the_same_labels(make_napari_viewer, qtbot, stacks, cli_inference):
    _, widget = open_widget(make_napari_viewer, stacks["ome.zarr"])
    widget.segmenter("auto").mosaic_px = 64 * 64  # the 128² phantom counts as large here
    result = segment(qtbot, widget)
    assert result.method == "network (mosaic)"
    np.testing.assert_array_equal(result.labels, tifffile.imread(cli_inference / "cell.tif"))
    assert result.cells is None  # as configs/mosaic.yaml: labels only
    assert "not computed" in widget.qc_label.text()


def test_a_doubtful_axis_is_shown_in_orange(make_napari_viewer, stacks, phantom, tmp_path):
    from scripts.io.writer import write_stack

    reversed_axis = write_stack(tmp_path / "reversed.tif", phantom.stack[::-1].astype(np.float32), phantom.wavenumbers)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(reversed_axis), plugin=PLUGIN)
    assert layer.metadata["axis_check"] == "reversed"
    widget = SegmentWidget(viewer)
    assert "reversed" in widget.axis_label.text()
    assert "orange" in widget.axis_label.styleSheet()
