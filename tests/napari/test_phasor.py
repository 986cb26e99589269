"""The Phasor widget in a real viewer: the fitted cursors give the phasor command line's labels; dragging a cursor
on the histogram changes the label map; the saved parameters give the command line the map the viewer shows."""

from __future__ import annotations

import numpy as np
import tifffile
import yaml
from matplotlib.backend_bases import MouseButton, MouseEvent
from scripts.napari.widgets import PhasorWidget
from scripts.phasor.parameters import PhasorParameters

from .conftest import run_bundle

PLUGIN = "hsrs-segmentation"


def mouse(widget, name: str, g: float, s: float, button=MouseButton.LEFT) -> None:
    """A matplotlib mouse event at phasor (G, S) on the widget's canvas, through the canvas's own callbacks."""
    x, y = widget.axes.transData.transform((g, s))
    MouseEvent(name, widget.canvas, x, y, button=button)._process()


def phasor_widget(make_napari_viewer, qtbot, path):
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    widget = PhasorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Phasor")
    widget.compute_button.click()
    qtbot.waitUntil(lambda: widget.session is not None or widget.error is not None, timeout=120_000)
    assert widget.error is None, widget.error
    return viewer, widget


def test_fitted_cursors_give_the_command_lines_labels(make_napari_viewer, qtbot, stacks, cli_phasor):
    viewer, widget = phasor_widget(make_napari_viewer, qtbot, stacks["nii.gz"])
    layer = viewer.layers["cell phasor"]
    np.testing.assert_array_equal(layer.data, tifffile.imread(cli_phasor / "labels" / "cell.tif"))
    # the histogram holds the foreground pixels, the three cursors are drawn on it
    counts = widget.axes.images[0].get_array()
    assert np.expm1(counts).sum() > 0.5 * widget.session.result.foreground.sum()
    assert set(widget._markers) == {"cytoplasm", "nucleus", "lipid"}


def test_dragging_a_cursor_changes_the_map_and_saves_for_the_command_line(make_napari_viewer, qtbot, stacks, tmp_path):
    viewer, widget = phasor_widget(make_napari_viewer, qtbot, stacks["nii.gz"])
    layer = viewer.layers["cell phasor"]
    before = np.array(layer.data)
    g0, s0 = widget.session.cursors["nucleus"]
    gc, sc = widget.session.cursors["cytoplasm"]
    # drag the nucleus cursor half-way towards the cytoplasm cursor: more pixels pass the nucleus rule
    target = (g0 + 0.5 * (gc - g0), s0 + 0.5 * (sc - s0))
    mouse(widget, "button_press_event", g0, s0)
    mouse(widget, "motion_notify_event", *target)
    qtbot.wait(2 * widget.LIVE_INTERVAL_MS)  # the live update while the button is still down
    live = np.array(layer.data)
    mouse(widget, "button_release_event", *target)
    after = np.array(layer.data)
    assert not np.array_equal(before, after)
    assert (after == 1).sum() > (before == 1).sum()
    assert not np.array_equal(before, live)
    g1, s1 = widget.session.cursors["nucleus"]
    np.testing.assert_allclose((g1, s1), target, atol=0.01)
    assert widget.session.parameters.auto_cursors is False
    # saved as phasor_parameters.yaml: configs/phasor.yaml reads it and writes the map the viewer shows
    path = widget.save(tmp_path / "phasor_parameters.yaml")
    saved = PhasorParameters.load(path)
    assert saved == widget.session.parameters
    assert yaml.safe_load(path.read_text())["parameters"]["cursors"]["nucleus"] == [g1, s1]
    out = tmp_path / "cli"
    run_bundle(
        "phasor.yaml",
        "--dataset_dir",
        str(stacks["nii.gz"].parent),
        "--output_dir",
        str(out),
        "--parameters_file",
        str(path),
        "--plots",
        "false",
        "--cells",
        "false",
    )
    np.testing.assert_array_equal(tifffile.imread(out / "labels" / "cell.tif"), after)
    # refit: back to the cursors fitted to the image, and the first map
    widget.refit_button.click()
    np.testing.assert_array_equal(layer.data, before)
