"""The plugin's dock widgets: segment a stack, look at its phasor and move the cursors, hand corrections to training.

- :class:`SegmentWidget` -- the network (PyTorch or ONNX Runtime, :class:`~scripts.napari.segmentation.NetworkSegmenter`)
  or the phasor on the selected stack, on a worker thread (progress bar, cancel button; the viewer stays
  responsive); adds the class labels layer (nucleus, lipid droplets: names and overlay colours) and the cell
  instances layer with the per-cell table as its features (shown in a table, exported to ``cells.csv``); shows
  the axis check's verdict and the QC flag with its reason.
- :class:`PhasorWidget` -- the phasor histogram of the stack with the fitted cursors; drag a cursor and the label
  map follows (:class:`~scripts.napari.phasor.PhasorSession`); saves ``phasor_parameters.yaml`` for
  ``configs/phasor.yaml``.
- :class:`CorrectionsWidget` -- saves the stack and its painted label layer into a corrections folder
  (:func:`~scripts.napari.corrections.save_correction`, split kept) and fine-tunes on it in the background
  (:class:`~scripts.napari.corrections.FineTuneRun`) with its progress.

This is the only module of the plugin that needs Qt and napari at import time.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from scripts.napari.layers import CLASS_COLOURS, axis_verdict, axis_warns, cell_labels_layer, class_labels_layer
from scripts.napari.segmentation import (
    BUNDLE_ROOT,
    CancelledError,
    NetworkSegmenter,
    PhasorStackSegmenter,
    SegmentationResult,
    StackInput,
)

logger = logging.getLogger(__name__)

METHODS = {
    "network (auto: ONNX Runtime when exported)": "auto",
    "network (PyTorch)": "torch",
    "network (ONNX Runtime)": "onnxruntime",
    "phasor": "phasor",
}
#: Default folder of what the widgets write.
OUTPUT_DIR = BUNDLE_ROOT / "outputs" / "napari"


def _stack_layers(viewer) -> list:
    return [layer for layer in viewer.layers if "wavenumbers" in (layer.metadata or {}) and layer.data.ndim == 3]


def _class_layers(viewer) -> list:
    """Labels layers of classes (0, 1, 2): not the cell instances."""
    from napari.layers import Labels

    return [
        layer
        for layer in viewer.layers
        if isinstance(layer, Labels) and (layer.metadata or {}).get("hsrs_kind", "classes") == "classes"
    ]


class _LayerChoice(QComboBox):
    """A drop-down of the viewer's layers of one kind, kept in step with the layer list."""

    def __init__(self, viewer, kinds):
        super().__init__()
        self.viewer, self.kinds = viewer, kinds
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        self.refresh()

    def refresh(self, *args) -> None:
        current = self.currentText()
        self.blockSignals(True)
        self.clear()
        names = [layer.name for layer in self.kinds(self.viewer)]
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)
        self.blockSignals(False)
        self.currentTextChanged.emit(self.currentText())

    def layer(self):
        name = self.currentText()
        return next((layer for layer in self.viewer.layers if layer.name == name), None)


class _Progress(QObject):
    """Progress from the worker thread, delivered on the viewer's thread (queued signal)."""

    changed = Signal(float, str)


def _set_labels_layer(viewer, layer_data: tuple) -> Any:
    """Add the labels layer of ``layer_data``, or update the layer of that name (data, features, metadata)."""
    data, kwargs, _ = layer_data
    name = kwargs["name"]
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = data
        layer.features = kwargs.get("features", {})
        layer.metadata.update(kwargs.get("metadata", {}))
        layer.scale = kwargs.get("scale", layer.scale)
        return layer
    return viewer.add_labels(data, **kwargs)


# --------------------------------------------------------------------------------------------------- segment
class SegmentWidget(QWidget):
    """Segment the selected stack with the network or the phasor (see the module docstring)."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.result: SegmentationResult | None = None
        self.error: BaseException | None = None
        self.worker = None
        self._cancel = threading.Event()
        self._segmenters: dict[tuple, Any] = {}
        self.timings: dict[str, float] = {}
        #: when the worker's result reached the viewer's thread (the layers are made from then on)
        self.show_started: float | None = None

        self.layer_choice = _LayerChoice(napari_viewer, _stack_layers)
        self.method = QComboBox()
        self.method.addItems(list(METHODS))
        self.weights = QLineEdit(str(BUNDLE_ROOT / "models"))
        self.weights.setToolTip("folder of model.pt (ckpt_dir): the shipped weights, or a fine-tuning's O/models")
        self.axis_label = QLabel()
        self.axis_label.setWordWrap(True)
        self.run_button, self.cancel_button = QPushButton("Segment"), QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.qc_label = QLabel("")
        self.qc_label.setWordWrap(True)
        self.table = QTableWidget()
        self.table.setMinimumHeight(140)
        self.export_button = QPushButton("Export cells.csv")
        self.export_button.setEnabled(False)
        self.export_path = QLineEdit(str(OUTPUT_DIR / "cells.csv"))

        form = QFormLayout()
        form.addRow("stack", self.layer_choice)
        form.addRow("method", self.method)
        form.addRow("weights (ckpt_dir)", self.weights)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        export = QHBoxLayout()
        export.addWidget(self.export_path)
        export.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.axis_label)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.qc_label)
        layout.addWidget(QLabel("cells (features of the cells layer)"))
        layout.addWidget(self.table)
        layout.addLayout(export)

        self._progress = _Progress()
        self._progress.changed.connect(self._on_progress)
        self.run_button.clicked.connect(self.segment)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(lambda: self.export_cells())
        self.layer_choice.currentTextChanged.connect(self._show_axis)
        self._show_axis()

    # ---------------------------------------------------------------------------------------- state
    @property
    def running(self) -> bool:
        return self.worker is not None

    def _show_axis(self, *args) -> None:
        layer = self.layer_choice.layer()
        self.axis_label.setText(axis_verdict(layer.metadata) if layer is not None else "no HSRS stack open")
        self.axis_label.setStyleSheet("color: orange" if layer is not None and axis_warns(layer.metadata) else "")

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(round(100 * fraction))
        self.status.setText(message)

    def segmenter(self, method: str):
        """The segmenter of ``method`` (built once per method and weights folder: the network stays loaded)."""
        ckpt_dir = self.weights.text().strip() or str(BUNDLE_ROOT / "models")
        key = (method, ckpt_dir)
        if key not in self._segmenters:
            if method == "phasor":
                self._segmenters[key] = PhasorStackSegmenter()
            else:
                self._segmenters[key] = NetworkSegmenter(backend=method, overrides={"ckpt_dir": ckpt_dir})
        return self._segmenters[key]

    # -------------------------------------------------------------------------------------- segment
    def segment(self) -> None:
        """Start segmenting the selected stack on a worker thread (returns at once)."""
        from napari.qt.threading import create_worker

        layer = self.layer_choice.layer()
        if layer is None or self.running:
            self.status.setText("open an HSRS stack first" if layer is None else "already segmenting")
            return
        item = StackInput.from_layer(layer.data, layer.metadata, layer.name)
        method = METHODS[self.method.currentText()]
        self.result, self.error, self.show_started = None, None, None
        self._cancel.clear()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText(f"segmenting {item.name} ({self.method.currentText()}) …")
        self._started = time.perf_counter()

        def work():
            return self.segmenter(method).segment(item, self._progress.changed.emit, self._cancel.is_set)

        self.worker = create_worker(work, _ignore_errors=True)
        self.worker.returned.connect(lambda result: self._show(item, layer, result))
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(self._finished)
        self.worker.start()

    def cancel(self) -> None:
        """Stop the running segmentation at its next step or window."""
        self._cancel.set()
        self.status.setText("cancelling …")

    def _failed(self, error: BaseException) -> None:
        self.error = error
        if isinstance(error, CancelledError):
            self.status.setText("cancelled")
        else:
            logger.error("segmentation failed: %s", error, exc_info=error)
            self.status.setText(f"failed: {error}")

    def _finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _show(self, item: StackInput, image_layer, result: SegmentationResult) -> None:
        """Add (or update) the result's layers, the QC line and the cell table."""
        t0 = self.show_started = time.perf_counter()
        px = item.pixel_size_um
        meta = {"method": result.method, "source_layer": image_layer.name, **result.qc}
        cells_layer = None
        if result.cells is not None:  # under the classes, which are the layer to paint corrections on
            cells_layer = _set_labels_layer(
                self.viewer,
                cell_labels_layer(result.cells.instances.cells, result.cells.rows, f"{item.name} cells", px, **meta),
            )
            self._fill_table(result.cells.rows)
        classes = _set_labels_layer(self.viewer, class_labels_layer(result.labels, f"{item.name} classes", px, **meta))
        self.export_button.setEnabled(result.cells is not None)
        self.viewer.layers.selection.active = classes
        self.result, self.classes_layer, self.cells_layer = result, classes, cells_layer
        self.qc_label.setText(result.qc_line())
        self.qc_label.setStyleSheet("color: orange" if result.flagged else "")
        if result.flagged:
            from napari.utils.notifications import show_warning

            show_warning(f"{item.name}: {result.qc_line()}")
        self.timings = {**result.timings, "show": time.perf_counter() - t0}
        self.timings["wall"] = time.perf_counter() - self._started
        n_cells = 0 if result.cells is None else len(result.cells.rows)
        self.status.setText(
            f"{item.name}: {result.method}, {n_cells} cells, {self.timings['wall']:.1f} s "
            f"(network {result.timings.get('network', 0.0):.1f} s)"
        )

    def _fill_table(self, rows: list[dict]) -> None:
        columns = list(rows[0]) if rows else []
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(columns)
        for r, row in enumerate(rows):
            for c, key in enumerate(columns):
                value = row[key]
                text = f"{value:.4g}" if isinstance(value, float) else str(value)
                self.table.setItem(r, c, QTableWidgetItem(text))

    def export_cells(self, path: str | Path | None = None) -> Path:
        """Write the per-cell table as ``cells.csv`` (the command line's columns; rows of other stacks kept)."""
        from scripts.cells.columns import CELL_COLUMNS
        from scripts.cells.tables import update_stack_rows
        from scripts.cells.writers import csv_value

        if self.result is None or self.result.cells is None:
            raise RuntimeError("segment a stack first: there is no per-cell table to export.")
        path = Path(path or self.export_path.text())
        path.parent.mkdir(parents=True, exist_ok=True)
        m = self.result.cells
        update_stack_rows(path, m.stem, m.rows, CELL_COLUMNS, csv_value)
        self.status.setText(f"{len(m.rows)} cells written to {path}")
        return path


# ---------------------------------------------------------------------------------------------------- phasor
CURSOR_COLOURS = {"cytoplasm": (0.2, 0.8, 0.2), "nucleus": CLASS_COLOURS[1][:3], "lipid": CLASS_COLOURS[2][:3]}


class PhasorWidget(QWidget):
    """The phasor histogram with draggable cursors; the label map follows them (see the module docstring)."""

    #: seconds between label-map updates while a cursor is dragged
    LIVE_INTERVAL_MS = 150

    def __init__(self, napari_viewer):
        super().__init__()
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = napari_viewer
        self.session = None
        self.labels_layer = None
        self.worker = None
        self.error: BaseException | None = None
        self._dragging: str | None = None
        self._pending: tuple[str, float, float] | None = None

        self.layer_choice = _LayerChoice(napari_viewer, _stack_layers)
        self.parameters_file = QLineEdit(str(BUNDLE_ROOT / "configs" / "phasor_parameters.yaml"))
        self.compute_button = QPushButton("Phasor")
        self.refit_button = QPushButton("Refit cursors")
        self.save_path = QLineEdit(str(OUTPUT_DIR / "phasor_parameters.yaml"))
        self.save_button = QPushButton("Save parameters")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.figure = Figure(figsize=(4, 4), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumSize(300, 300)
        self.axes = self.figure.add_subplot(111)
        self._markers: dict[str, Any] = {}

        form = QFormLayout()
        form.addRow("stack", self.layer_choice)
        form.addRow("parameters", self.parameters_file)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.refit_button)
        save = QHBoxLayout()
        save.addWidget(self.save_path)
        save.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.canvas)
        layout.addWidget(QLabel("drag a cursor: the label map follows"))
        layout.addLayout(save)
        layout.addWidget(self.status)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.LIVE_INTERVAL_MS)
        self._timer.timeout.connect(self._apply_pending)
        self.compute_button.clicked.connect(self.compute)
        self.refit_button.clicked.connect(self.refit)
        self.save_button.clicked.connect(lambda: self.save())
        self.canvas.mpl_connect("button_press_event", self._press)
        self.canvas.mpl_connect("motion_notify_event", self._motion)
        self.canvas.mpl_connect("button_release_event", self._release)

    def compute(self) -> None:
        """The phasor of the selected stack on a worker thread, then its histogram and label map."""
        from napari.qt.threading import create_worker
        from scripts.napari.phasor import PhasorSession

        layer = self.layer_choice.layer()
        if layer is None or self.worker is not None:
            return
        item = StackInput.from_layer(layer.data, layer.metadata, layer.name)
        parameters_file = self.parameters_file.text().strip() or None
        self.session, self.error = None, None
        self.status.setText(f"phasor of {item.name} …")
        self.worker = create_worker(PhasorSession.from_file, item, parameters_file, _ignore_errors=True)
        self.worker.returned.connect(self._computed)
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(lambda: setattr(self, "worker", None))
        self.worker.start()

    def _failed(self, error: BaseException) -> None:
        self.error = error
        self.status.setText(f"failed: {error}")

    def _computed(self, session) -> None:
        self.session = session
        self._draw()
        self._update_labels()

    def _draw(self) -> None:
        s = self.session
        counts, g_lim, s_lim = s.histogram()
        ax = self.axes
        ax.clear()
        ax.imshow(
            np.log1p(counts),
            origin="lower",
            extent=(*g_lim, *s_lim),
            cmap="magma",
            aspect="equal",
            interpolation="none",
        )
        ax.set_xlabel("G")
        ax.set_ylabel("S")
        ax.set_title(f"{s.item.name}: phasor (harmonic {s.parameters.harmonic})", fontsize=9)
        self._markers = {}
        for name, (g, sv) in s.cursors.items():
            (marker,) = ax.plot([g], [sv], "o", ms=11, mfc="none", mew=2.5, color=CURSOR_COLOURS[name], label=name)
            self._markers[name] = marker
        ax.legend(loc="best", fontsize=7, framealpha=0.6)
        self.canvas.draw_idle()

    def _update_labels(self) -> None:
        s = self.session
        meta = {"method": "phasor", "cursors": s.cursors, "auto_cursors": s.parameters.auto_cursors}
        layer_data = class_labels_layer(s.labels, f"{s.item.name} phasor", s.item.pixel_size_um, **meta)
        self.labels_layer = _set_labels_layer(self.viewer, layer_data)
        fit = s.result.cursor_fit.method if s.result.cursor_fit else ""
        qc = "; ".join(s.result.qc) or "ok"
        self.status.setText(f"cursors: {fit}; QC: {qc}")

    # ------------------------------------------------------------------------------------- dragging
    def _nearest(self, event) -> str | None:
        if self.session is None or event.inaxes is not self.axes or event.xdata is None:
            return None
        g_lim = self.axes.get_xlim()
        reach = 0.04 * (g_lim[1] - g_lim[0])
        best, name = reach, None
        for n, (g, s) in self.session.cursors.items():
            d = float(np.hypot(g - event.xdata, s - event.ydata))
            if d <= best:
                best, name = d, n
        return name

    def _press(self, event) -> None:
        self._dragging = self._nearest(event)

    def _motion(self, event) -> None:
        if self._dragging is None or event.inaxes is not self.axes or event.xdata is None:
            return
        self._markers[self._dragging].set_data([event.xdata], [event.ydata])
        self.canvas.draw_idle()
        self._pending = (self._dragging, float(event.xdata), float(event.ydata))
        if not self._timer.isActive():
            self._timer.start()

    def _release(self, event) -> None:
        if self._dragging is not None and event.xdata is not None and event.inaxes is self.axes:
            self._pending = (self._dragging, float(event.xdata), float(event.ydata))
        self._dragging = None
        self._timer.stop()
        self._apply_pending()

    def _apply_pending(self) -> None:
        if self._pending is None or self.session is None:
            return
        name, g, s = self._pending
        self._pending = None
        self.move_cursor(name, g, s)

    def move_cursor(self, name: str, g: float, s: float) -> None:
        """Put cursor ``name`` at (G, S) and segment again (the label layer changes in place)."""
        self.session.move_cursor(name, g, s)
        self._markers[name].set_data([g], [s])
        self.canvas.draw_idle()
        self._update_labels()

    def refit(self) -> None:
        if self.session is not None:
            self.session.refit()
            self._draw()
            self._update_labels()

    def save(self, path: str | Path | None = None) -> Path:
        """Write ``phasor_parameters.yaml`` (``configs/phasor.yaml --parameters_file``)."""
        if self.session is None:
            raise RuntimeError("compute the phasor first.")
        path = Path(path or self.save_path.text())
        path.parent.mkdir(parents=True, exist_ok=True)
        self.session.save(path)
        self.status.setText(f"parameters saved to {path}")
        return path


# ----------------------------------------------------------------------------------------------- corrections
class CorrectionsWidget(QWidget):
    """Save a corrected label layer with its stack into a corrections folder; fine-tune on it (module docstring)."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.run = None
        self.worker = None
        self.returncode: int | None = None
        self.last_saved: tuple[str, dict] | None = None

        self.image_choice = _LayerChoice(napari_viewer, _stack_layers)
        self.labels_choice = _LayerChoice(napari_viewer, _class_layers)
        self.folder = QLineEdit(str(OUTPUT_DIR / "corrections"))
        self.split = QComboBox()
        self.split.addItems(["auto", "training", "validation"])
        self.save_button = QPushButton("Save correction")
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(20)
        self.output = QLineEdit(str(OUTPUT_DIR / "finetune"))
        self.finetune_button, self.cancel_button = QPushButton("Fine-tune"), QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("paint fixes on a labels layer (1 nucleus, 2 lipid droplet, 0 erases), then save")
        self.status.setWordWrap(True)
        self.log_line = QLabel("")
        self.log_line.setWordWrap(True)
        self.log_line.setTextInteractionFlags(Qt.TextSelectableByMouse)
        #: overrides of configs/train.yaml for the fine-tuning (tests: a tiny run)
        self.train_overrides: dict[str, Any] = {}

        form = QFormLayout()
        form.addRow("stack", self.image_choice)
        form.addRow("corrected labels", self.labels_choice)
        form.addRow("corrections folder", self.folder)
        form.addRow("split", self.split)
        form.addRow(self.save_button)
        form.addRow("epochs", self.epochs)
        form.addRow("fine-tuning output", self.output)
        buttons = QHBoxLayout()
        buttons.addWidget(self.finetune_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.log_line)
        self.save_button.clicked.connect(lambda: self.save())
        self.finetune_button.clicked.connect(self.finetune)
        self.cancel_button.clicked.connect(self.cancel)

    def save(self) -> tuple[str, dict]:
        """Write the selected stack and labels layer into the corrections folder; returns ``(split, entry)``."""
        from scripts.napari.corrections import read_datalist, save_correction

        image, labels = self.image_choice.layer(), self.labels_choice.layer()
        if image is None or labels is None:
            raise RuntimeError("select a stack and a labels layer first.")
        item = StackInput.from_layer(image.data, image.metadata, image.name)
        split, entry = save_correction(self.folder.text(), item, np.asarray(labels.data), self.split.currentText())
        datalist = read_datalist(self.folder.text())
        self.last_saved = (split, entry)
        self.status.setText(
            f"{item.name} saved under {split} ({len(datalist['training'])} training, "
            f"{len(datalist['validation'])} validation) in {self.folder.text()}"
        )
        return split, entry

    def finetune(self) -> None:
        """Start fine-tuning the shipped weights on the corrections folder in a child process (returns at once)."""
        from napari.qt.threading import create_worker
        from scripts.napari.corrections import FineTuneRun, finetune_command

        if self.worker is not None:
            return
        epochs = int(self.epochs.value())
        command = finetune_command(self.folder.text(), self.output.text(), None, epochs, self.train_overrides)
        self.run = FineTuneRun(command, epochs, self.output.text())
        self.returncode = None
        self.progress.setValue(0)
        self.status.setText(f"fine-tuning on {self.folder.text()} ({epochs} epochs) …")
        self.finetune_button.setEnabled(False)
        self.cancel_button.setEnabled(True)

        def work():
            self.run.start()
            yield from self.run.lines_until_done()

        self.worker = create_worker(work, _ignore_errors=True)
        self.worker.yielded.connect(self._on_line)
        self.worker.finished.connect(self._finished)
        self.worker.start()

    def _on_line(self, value: tuple[float, str]) -> None:
        fraction, line = value
        self.progress.setValue(round(100 * fraction))
        self.log_line.setText(line[-200:])

    def _done(self) -> None:
        returncode = self.returncode = self.run.returncode
        if returncode == 0:
            self.progress.setValue(100)
            self.status.setText(
                f"fine-tuned weights: {self.run.model_path} — segment with them: weights (ckpt_dir) "
                f"{self.run.model_path.parent}"
            )
        else:
            self.status.setText(f"fine-tuning stopped (exit code {returncode}); log: {self.run.log_file}")

    def _finished(self) -> None:
        self.worker = None
        self._done()
        self.finetune_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def cancel(self) -> None:
        if self.run is not None:
            self.run.cancel()
