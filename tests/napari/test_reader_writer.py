"""The plugin's reader and writer in a real viewer: every stack format opens as the bundle reads it; label layers
are written in the bundle's label formats and read back."""

from __future__ import annotations

import numpy as np
import pytest
from scripts.io.reader import read_hsrs
from scripts.napari.layers import CLASS_COLOURS, get_reader

from .conftest import FORMATS, PIXEL, REPO

PLUGIN = "hsrs-segmentation"


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_opens_as_an_image_layer_with_its_axis(make_napari_viewer, stacks, fmt):
    viewer = make_napari_viewer()
    layers = viewer.open(str(stacks[fmt]), plugin=PLUGIN)
    assert len(layers) == 1
    layer = layers[0]
    expected, meta = read_hsrs(stacks[fmt])
    assert layer.data.shape == expected.shape == (64, 128, 128)
    np.testing.assert_array_equal(layer.data, expected)
    # the spectral axis is the slider (first axis), wavenumbers ascending in the metadata, pixel size in the scale
    assert viewer.dims.nsteps[0] == 64
    assert viewer.dims.axis_labels[0].startswith("wavenumber")
    np.testing.assert_allclose(layer.metadata["wavenumbers"], meta["wavenumbers"])
    assert np.all(np.diff(layer.metadata["wavenumbers"]) > 0)
    assert tuple(layer.scale) == pytest.approx((1.0, PIXEL, PIXEL))
    assert layer.metadata["pixel_size_um"] == pytest.approx(PIXEL)
    # the axis check's verdict travels with the layer
    assert layer.metadata["axis_check"] == meta["axis_check"]
    assert layer.metadata["axis_message"]


def test_reader_declines_what_the_bundle_does_not_read(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "empty")) is None


@pytest.mark.parametrize("suffix", [".tif", ".ome.zarr", ".nii.gz"])
def test_label_layers_are_written_in_the_bundles_formats_and_read_back(make_napari_viewer, phantom, tmp_path, suffix):
    viewer = make_napari_viewer()
    labels = phantom.labels.astype(np.uint8)
    layer = viewer.add_labels(labels, name="cell classes", metadata={"pixel_size_um": PIXEL})
    path = tmp_path / f"cell_labels{suffix}"
    viewer.layers.selection = {layer}
    written = viewer.layers.save(str(path), selected=True, plugin=PLUGIN)
    assert written
    assert path.exists()
    back = viewer.open(str(path), plugin=PLUGIN)[0]
    np.testing.assert_array_equal(np.asarray(back.data), labels)
    # opened as a labels layer with the class names and the overlays' colours
    assert back._type_string == "labels"
    assert list(back.features["class"]) == ["background", "nucleus", "lipid_droplet"]
    np.testing.assert_allclose(back.colormap.map(np.array([1]))[0], CLASS_COLOURS[1], atol=1e-6)
    assert tuple(back.scale) == pytest.approx((PIXEL, PIXEL))


def test_the_demo_stack_is_a_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "demo")
    (layer,) = viewer.layers
    assert layer.data.shape == (64, 128, 128)
    assert len(layer.metadata["wavenumbers"]) == 64


def test_the_plugin_but_its_widgets_imports_without_qt_or_napari():
    """Everything but scripts.napari.widgets works where neither Qt nor napari can be imported."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('qtpy', 'PyQt5', 'PyQt6', 'PySide6', 'napari', 'magicgui', 'superqt', 'vispy'):\n"
        "    sys.modules[name] = None\n"
        "import scripts.napari, scripts.napari.layers, scripts.napari.segmentation, scripts.napari.phasor\n"
        "import scripts.napari.corrections\n"
        "from scripts.napari.layers import read_layers\n"
        f"print(read_layers({str(REPO / 'docs/demo_data/images/hsrs_default_s7_0000.nii.gz')!r})[0][0].shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(64, 128, 128)" in out.stdout
