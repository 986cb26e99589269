"""A picture of the plugin at work, made by the test: the viewer with a segmented stack, its cells and the three
widgets (Segment with the cell table, Phasor with its cursors, Corrections). ``HSRS_NAPARI_SCREENSHOT`` names the
file (``docs/napari_screenshot.png`` for the documentation); default ``outputs/napari/napari_screenshot.png``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scripts.io.writer import write_stack
from scripts.napari.widgets import CorrectionsWidget, PhasorWidget, SegmentWidget
from scripts.simulation.phantom import simulate_phantom
from skimage.io import imread

from .conftest import PIXEL, REPO
from .test_segment import segment

PLUGIN = "hsrs-segmentation"


def test_screenshot_of_the_viewer_with_the_widgets(make_napari_viewer, qtbot, tmp_path):
    ph = simulate_phantom(8, 256, 256, pixel_size_um=PIXEL)
    path = write_stack(tmp_path / "cells_256.tif", ph.stack.astype(np.float32), ph.wavenumbers, PIXEL)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open(str(path), plugin=PLUGIN)
    viewer.dims.set_point(0, 34)  # the CH₃ band (~2935 cm⁻¹): nuclei and cytoplasm
    segment_widget = SegmentWidget(viewer)
    phasor_widget = PhasorWidget(viewer)
    corrections = CorrectionsWidget(viewer)
    viewer.window.add_dock_widget(segment_widget, name="Segment", area="right")
    viewer.window.add_dock_widget(phasor_widget, name="Phasor", area="right")
    viewer.window.add_dock_widget(corrections, name="Corrections", area="left")
    segment(qtbot, segment_widget)
    phasor_widget.compute_button.click()
    qtbot.waitUntil(lambda: phasor_widget.session is not None, timeout=120_000)
    viewer.layers["cells_256 phasor"].visible = False
    viewer.layers.selection.active = viewer.layers["cells_256 classes"]
    viewer.reset_view()
    qtbot.wait(300)
    path = Path(os.environ.get("HSRS_NAPARI_SCREENSHOT") or REPO / "outputs" / "napari" / "napari_screenshot.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False)
    picture = imread(path)
    assert picture.shape[0] >= 600
    assert picture.shape[1] >= 1000
    assert np.std(picture[..., :3]) > 10  # not a blank window
