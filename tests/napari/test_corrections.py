"""The Corrections widget in a real viewer: painted fixes are saved with their stacks into a datalist folder that
``configs/train.yaml`` reads (split kept), and the fine-tuning on it runs in the background with its progress."""

from __future__ import annotations

import numpy as np
import pytest
from scripts.io.datalist import load_datalist
from scripts.io.reader import read_hsrs
from scripts.io.writer import write_stack
from scripts.napari.corrections import read_datalist, training_progress
from scripts.napari.layers import class_labels_layer
from scripts.napari.widgets import CorrectionsWidget
from scripts.simulation.phantom import simulate_phantom

from .conftest import PIXEL, SIZE

PLUGIN = "hsrs-segmentation"
#: configs/train.yaml ids for a fine-tuning of seconds (tests/conftest.py's TINY)
TINY = {"patch_size": [32, 32], "val_roi_size": [64, 64], "num_samples": 2, "batch_size": 2, "cache_rate": 0.0}


def corrected(viewer, layer_name: str, labels: np.ndarray):
    """A labels layer of ``labels`` with one fix painted with napari's own brush (a lipid droplet at (20, 20))."""
    data, kwargs, _ = class_labels_layer(labels.astype(np.uint8), layer_name, PIXEL)
    layer = viewer.add_labels(data, **kwargs)
    layer.brush_size = 5
    layer.paint((20, 20), 2, refresh=True)
    return layer


@pytest.fixture
def two_stacks(stacks, tmp_path):
    other = simulate_phantom(12, SIZE, SIZE, pixel_size_um=PIXEL)
    second = write_stack(tmp_path / "second.tif", other.stack.astype(np.float32), other.wavenumbers, PIXEL)
    return stacks["tif"], second, other


def test_corrections_are_saved_as_a_datalist_with_the_split_kept(make_napari_viewer, phantom, two_stacks, tmp_path):
    first, second, other = two_stacks
    viewer = make_napari_viewer()
    viewer.open(str(first), plugin=PLUGIN)
    viewer.open(str(second), plugin=PLUGIN)
    fix_a = corrected(viewer, "cell classes", phantom.labels)
    fix_b = corrected(viewer, "second classes", other.labels)
    assert fix_a.data[20, 20] == 2
    widget = CorrectionsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Corrections")
    folder = tmp_path / "corrections"
    widget.folder.setText(str(folder))

    widget.image_choice.setCurrentText("cell")
    widget.labels_choice.setCurrentText("cell classes")
    split_a, entry_a = widget.save()
    widget.image_choice.setCurrentText("second")
    widget.labels_choice.setCurrentText("second classes")
    split_b, _ = widget.save()
    assert (split_a, split_b) == ("training", "validation")  # auto: training needs one of each
    # the stack and the painted labels are read back from the datalist, as train.yaml's pre-flight reads them
    (train,) = load_datalist(folder / "datalist.json", "training")
    (val,) = load_datalist(folder / "datalist.json", "validation")
    stack, meta = read_hsrs(train["image"])
    np.testing.assert_allclose(stack, viewer.layers["cell"].data, rtol=1e-6)
    np.testing.assert_allclose(meta["wavenumbers"], viewer.layers["cell"].metadata["wavenumbers"])
    np.testing.assert_array_equal(read_hsrs(train["label"])[0][0], fix_a.data)
    np.testing.assert_array_equal(read_hsrs(val["label"])[0][0], fix_b.data)
    # a second fix of a stack already listed replaces its files and keeps its split, whatever the choice says
    fix_a.paint((60, 60), 1, refresh=True)
    widget.image_choice.setCurrentText("cell")
    widget.labels_choice.setCurrentText("cell classes")
    widget.split.setCurrentText("validation")
    assert widget.save() == ("training", entry_a)
    datalist = read_datalist(folder)
    assert [len(datalist["training"]), len(datalist["validation"])] == [1, 1]
    np.testing.assert_array_equal(read_hsrs(load_datalist(folder / "datalist.json")[0]["label"])[0][0], fix_a.data)


def test_training_progress_is_read_from_the_log_lines():
    assert training_progress("training epoch 2/4: 1/2 iterations (50 %), 1.0 s per iteration", 4) == 0.375
    assert training_progress("Epoch[3] Complete. Time taken: 00:00:01.000", 4) == 0.75
    assert training_progress("Restored all variables", 4) is None


def test_finetune_runs_in_the_background_with_progress(make_napari_viewer, qtbot, phantom, two_stacks, tmp_path):
    first, second, other = two_stacks
    viewer = make_napari_viewer()
    viewer.open(str(first), plugin=PLUGIN)
    viewer.open(str(second), plugin=PLUGIN)
    corrected(viewer, "cell classes", phantom.labels)
    corrected(viewer, "second classes", other.labels)
    widget = CorrectionsWidget(viewer)
    widget.folder.setText(str(tmp_path / "corrections"))
    for name in ("cell", "second"):
        widget.image_choice.setCurrentText(name)
        widget.labels_choice.setCurrentText(f"{name} classes")
        widget.save()
    widget.output.setText(str(tmp_path / "finetune"))
    widget.epochs.setValue(2)
    widget.train_overrides = TINY
    widget.finetune_button.click()
    assert not widget.finetune_button.isEnabled()
    seen = []
    widget.progress.valueChanged.connect(seen.append)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=600_000)
    assert widget.returncode == 0, "\n".join(widget.run.lines[-40:])
    assert widget.run.model_path.is_file()
    # the progress moved on the way, not only at the end
    assert min(seen) > 0
    assert seen[-1] == 100
    assert any(v < 100 for v in seen)
    assert str(widget.run.model_path) in widget.status.text()
    assert widget.finetune_button.isEnabled()
