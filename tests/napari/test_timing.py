"""The target of the napari plugin on a 512²×64 stack: opened, segmented and shown within 5 s beyond the network's
own time on this CPU, the viewer responsive throughout, labels equal to the command line's. Writes the measured
seconds to ``outputs/napari/timing.json`` (quoted in docs/napari.md)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import tifffile
from scripts.io.writer import write_stack
from scripts.napari.widgets import SegmentWidget
from scripts.simulation.phantom import simulate_phantom

from .conftest import PIXEL, REPO, run_bundle
from .test_segment import EventLoopWatch, segment

PLUGIN = "hsrs-segmentation"
#: the target: seconds beyond the network's own time to open, segment and show a 512²×64 stack
TARGET_S = 5.0


@pytest.fixture(scope="module")
def large_stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("large")
    ph = simulate_phantom(5, 512, 512, pixel_size_um=PIXEL)
    return write_stack(folder / "field.tif", ph.stack.astype(np.float32), ph.wavenumbers, PIXEL)


def open_and_segment(viewer, widget, qtbot, path) -> dict[str, float]:
    viewer.layers.clear()
    qtbot.wait(1)
    t0 = time.perf_counter()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    qtbot.wait(1)  # the image drawn
    opened = time.perf_counter() - t0
    widget.layer_choice.setCurrentText(layer.name)
    watch = EventLoopWatch()
    started = time.perf_counter()
    segment(qtbot, widget)
    qtbot.wait(1)  # the layers drawn
    watch.stop()
    total = time.perf_counter() - t0
    network = widget.result.timings["network"]
    return {
        "open_s": round(opened, 3),
        "segment_s": round(widget.show_started - started, 3),
        "show_s": round(widget.timings["show"], 3),
        "total_s": round(total, 3),
        "network_s": round(network, 3),
        "beyond_network_s": round(total - network, 3),
        "longest_event_loop_gap_s": round(watch.longest_gap(widget.show_started), 3),
        "event_loop_ticks": watch.ticks(widget.show_started),
    }


def test_512_stack_open_segment_show_within_target(make_napari_viewer, qtbot, large_stack, tmp_path):
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment")
    cold = open_and_segment(viewer, widget, qtbot, large_stack)  # builds the network from the config first
    warm = open_and_segment(viewer, widget, qtbot, large_stack)  # the network kept loaded, as in a session
    labels = np.array(widget.result.labels)
    method = widget.result.method
    report = {"stack": "512x512x64 float32 TIFF", "method": method, "target_s": TARGET_S, "cold": cold, "warm": warm}
    out = REPO / "outputs" / "napari"
    out.mkdir(parents=True, exist_ok=True)
    (out / "timing.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    # the viewer kept processing events while the worker segmented
    for run in (cold, warm):
        assert run["longest_event_loop_gap_s"] < 0.5
        assert run["event_loop_ticks"] >= 0.3 * run["segment_s"] / 0.02
    assert warm["beyond_network_s"] <= TARGET_S, report
    # labels equal to the command line's on the same stack
    cli = tmp_path / "cli"
    run_bundle("inference.yaml", "--dataset_dir", str(large_stack.parent), "--output_dir", str(cli), "--cells", "false")
    np.testing.assert_array_equal(labels, tifffile.imread(cli / "field.tif"))
