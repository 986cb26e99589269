"""One stack segmented as the command line segments it: the inference workflow's own objects, or the phasor.

:class:`NetworkSegmenter` builds ``preprocessing``, ``network`` (with ``backend``: PyTorch or ONNX Runtime),
``inferer`` and ``postprocessing`` from ``configs/inference.yaml`` with MONAI's ``ConfigParser``, loads the
weights with the config's own loader (``handlers#0``), and applies them to one stack: the label map is the one
``python -m monai.bundle run --config_file configs/inference.yaml`` writes for that stack. After the forward pass
come the quality check (:class:`scripts.qc.handler.QualityCheck`: ``ood_score``, ``qc_flag``, ``qc_reason``) and
the per-cell readout (:func:`scripts.cells.measure.measure_cells`: instances and the ``cells.csv`` rows), on the
same inputs as the workflow's handlers give them. Fields larger than :data:`MOSAIC_PX` pixels read from a file
go through the mosaic path (:class:`scripts.engine.mosaic.MosaicSegmenter`, region by region, as
``configs/mosaic.yaml``; no per-cell readout and no QC there, as on the command line).

:class:`PhasorStackSegmenter` is ``configs/phasor.yaml``'s step for one stack
(:class:`scripts.phasor.segmenter.PhasorSegmenter` with the parameters file, then the per-cell readout).

Both report progress (``progress(fraction, message)``) and stop at the next step or sliding window once
``cancelled()`` is true (:class:`CancelledError`); neither needs Qt, so the widgets run them on a worker thread.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scripts.io.formats import stack_stem

logger = logging.getLogger(__name__)

BUNDLE_ROOT = Path(__file__).resolve().parents[2]
INFERENCE_CONFIG = BUNDLE_ROOT / "configs" / "inference.yaml"
METADATA = BUNDLE_ROOT / "configs" / "metadata.json"
#: Fields of more pixels than this (read from a file) are segmented region by region (the mosaic path).
MOSAIC_PX = 4096 * 4096
#: Memory budget (GiB) of the mosaic path when the config sets none (``memory_gib`` of ``configs/inference.yaml``).
MOSAIC_MEMORY_GIB = 4.0

Progress = Callable[[float, str], None]


class CancelledError(Exception):
    """The user cancelled the segmentation (raised at the next step or sliding window)."""


@dataclass
class StackInput:
    """A stack as the viewer holds it: (K, H, W) in ascending Raman shift, with what the reader recorded.

    Attributes:
        stack: (K, H, W) float32, row-major, as :func:`scripts.io.reader.read_hsrs` returns it.
        wavenumbers: (K,) cm⁻¹, ascending.
        name: the stack's stem (file names, table rows).
        path: the file it was read from, when known (the mosaic path reads it region by region).
        pixel_size_um: recorded pixel size (µm) or None.
        reader_meta: the rest of the reader's metadata (axis check, wavenumber source, format).
    """

    stack: np.ndarray
    wavenumbers: np.ndarray
    name: str = "stack"
    path: str | None = None
    pixel_size_um: float | None = None
    reader_meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_layer(cls, data: Any, metadata: Mapping[str, Any], name: str = "stack") -> StackInput:
        """The input of an image layer opened by the plugin's reader (wavenumbers in its metadata)."""
        if "wavenumbers" not in metadata:
            raise ValueError(
                f"layer {name!r} has no wavenumbers in its metadata: open the stack with the HSRS reader "
                "(File > Open, plugin hsrs-segmentation)."
            )
        keep = ("axis_check", "axis_message", "wavenumbers_source", "format")
        return cls(
            stack=np.asarray(data, dtype=np.float32),
            wavenumbers=np.asarray(metadata["wavenumbers"], dtype=np.float64),
            name=name,
            path=metadata.get("hsrs_path"),
            pixel_size_um=metadata.get("pixel_size_um"),
            reader_meta={k: metadata[k] for k in keep if k in metadata},
        )

    @classmethod
    def read(cls, path: str | Path, axis_check: str = "warn") -> StackInput:
        """Read a stack file with the bundle's reader."""
        from scripts.io.reader import read_hsrs

        stack, meta = read_hsrs(path, axis_check=axis_check)
        return cls(
            stack,
            np.asarray(meta["wavenumbers"]),
            stack_stem(path),
            str(path),
            meta.get("pixel_size_um"),
            {k: v for k, v in meta.items() if k not in ("wavenumbers", "pixel_size_um")},
        )

    @property
    def source(self) -> str:
        return self.path or self.name


@dataclass
class SegmentationResult:
    """What one segmentation gives the viewer.

    Attributes:
        labels: (H, W) uint8, 0 background, 1 nucleus, 2 lipid droplet.
        method: ``"network (torch)"``, ``"network (onnxruntime)"``, ``"network (mosaic)"`` or ``"phasor"``.
        qc: ``ood_score``, ``qc_flag``, ``qc_reason`` (the columns of ``summary.csv``).
        axis_check: the reader's verdict on the spectral axis.
        cells: the per-cell readout (:class:`scripts.cells.measure.CellMeasurement`) or None.
        phasor: the :class:`scripts.phasor.segmenter.PhasorResult` of the phasor method, else None.
        timings: seconds per step (``preprocess``, ``network``, ``postprocess``, ``qc``, ``cells``, ``total``).
    """

    labels: np.ndarray
    method: str
    qc: dict[str, Any]
    axis_check: str = ""
    cells: Any = None
    phasor: Any = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return str(self.qc.get("qc_flag", "")) not in ("", "ok", "off")

    def qc_line(self) -> str:
        """One line for a person: the QC flag, score and reason."""
        flag, score, reason = (self.qc.get(k, "") for k in ("qc_flag", "ood_score", "qc_reason"))
        parts = [f"QC: {flag or 'not computed'}"]
        if score not in ("", None):
            parts.append(f"ood_score {score}")
        if reason:
            parts.append(str(reason))
        return " — ".join(parts)


def _nothing(fraction: float, message: str) -> None:
    return None


class _Watched(torch.nn.Module):
    """The network as the sliding window calls it, counting windows (progress), timing them and stopping
    at the next one once cancelled."""

    def __init__(self, network: torch.nn.Module, on_window: Callable[[], None]):
        super().__init__()
        self.network, self.on_window, self.seconds, self.windows = network, on_window, 0.0, 0

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.on_window()
        t0 = time.perf_counter()
        out = self.network(x, *args, **kwargs)
        self.seconds += time.perf_counter() - t0
        self.windows += 1
        return out


class NetworkSegmenter:
    """One stack through ``configs/inference.yaml``'s preprocessing, network, inferer and post-processing.

    Args:
        backend: ``"auto"`` (the config's default: ONNX Runtime on the CPU when the export of the weights is in
            place), ``"torch"`` or ``"onnxruntime"``.
        overrides: more config ids (``{"ckpt_dir": ..., "qc": False, "cells": False, "roi_size": [...]}``).
        bundle_root: the bundle (the folder holding ``configs/``).
    """

    def __init__(
        self, backend: str = "auto", overrides: Mapping[str, Any] | None = None, bundle_root: str | Path = BUNDLE_ROOT
    ):
        from monai.bundle import ConfigParser

        self.bundle_root = Path(bundle_root)
        parser = ConfigParser()
        parser.read_config(str(self.bundle_root / "configs" / "inference.yaml"))
        parser.read_meta(str(self.bundle_root / "configs" / "metadata.json"))
        parser["bundle_root"] = str(self.bundle_root)
        parser["backend"] = backend
        for key, value in (overrides or {}).items():
            parser[key] = value
        self.parser, self.backend = parser, backend
        #: fields of more pixels than this, read from a file, take the mosaic path
        self.mosaic_px = MOSAIC_PX
        self._built = False

    def _build(self) -> None:
        if self._built:
            return
        from ignite.engine import Engine
        from scripts.cells.readout import CellReadout
        from scripts.qc.handler import QualityCheck

        p = self.parser
        if p.get("imports"):  # the config's own imports: the scripts.* modules its expressions name
            p.get_parsed_content("imports")
        self.preprocessing = p.get_parsed_content("preprocessing")
        self.network = p.get_parsed_content("network")
        self.inferer = p.get_parsed_content("inferer")
        self.postprocessing = p.get_parsed_content("postprocessing")
        self.device = p.get_parsed_content("device")
        loader = p.get_parsed_content("handlers#0")  # ModelWeightsLoader: the weights the command line loads
        loader(Engine(lambda engine, batch: None))
        self.weights = Path(p.get_parsed_content("ckpt_dir")) / p.get_parsed_content("model_name")
        self.qc_enabled = bool(p.get_parsed_content("qc"))
        self.qc = QualityCheck(
            reference_path=p.get_parsed_content("qc_reference"),
            enabled=self.qc_enabled,
            tta=bool(p.get_parsed_content("qc_tta")),
            weights_path=self.weights,
        )
        self.readout = CellReadout(
            self.bundle_root / "outputs",
            enabled=False,  # measured here, written only when the user exports the table
            default_pixel_size_um=p.get_parsed_content("cells_pixel_size_um"),
        )
        self.cells_enabled = bool(p.get_parsed_content("cells"))
        self.axis_check = p.get_parsed_content("axis_check")
        self.roi_size = p.get_parsed_content("roi_size")
        self._built = True

    @property
    def method(self) -> str:
        from scripts.networks.onnx_runtime import OnnxRuntimeNetwork

        self._build()
        net = self.network
        return (
            "network (onnxruntime)" if isinstance(net, OnnxRuntimeNetwork) and not net._use_torch else "network (torch)"
        )

    # ------------------------------------------------------------------------------------------- inputs
    def image(self, item: StackInput):
        """The stack as ``LoadImaged(reader=HSRSReader)`` gives it to the preprocessing: MONAI's (K, X, Y)
        MetaTensor with the reader's metadata (:meth:`scripts.io.reader.HSRSReader.get_data`)."""
        from monai.data import MetaTensor
        from scripts.io.orientation import monai_affine, to_monai_xy

        array = np.ascontiguousarray(to_monai_xy(np.asarray(item.stack, dtype=np.float32)))
        affine = monai_affine(item.pixel_size_um)
        meta: dict[str, Any] = {**item.reader_meta, "wavenumbers": np.asarray(item.wavenumbers, dtype=np.float64)}
        if item.pixel_size_um is not None:
            meta["pixel_size_um"] = item.pixel_size_um
        meta.update(
            {
                "affine": affine,
                "original_affine": affine.copy(),
                "spatial_shape": np.asarray(array.shape[1:]),
                "original_channel_dim": float("nan"),
                "filename_or_obj": item.source,
            }
        )
        return MetaTensor.ensure_torch_and_prune_meta(array, meta)

    # ------------------------------------------------------------------------------------------ segment
    def segment(
        self, item: StackInput, progress: Progress | None = None, cancelled: Callable[[], bool] | None = None
    ) -> SegmentationResult:
        """Segment ``item``; large fields read from a file take the mosaic path."""
        progress, cancelled = progress or _nothing, cancelled or (lambda: False)
        _, h, w = item.stack.shape
        if h * w > self.mosaic_px and item.path:
            return self.segment_mosaic(item, progress, cancelled)
        return self.segment_whole(item, progress, cancelled)

    def _setting(self, key: str, default: Any) -> Any:
        """A config id's value, or ``default`` for a config without it."""
        return self.parser.get_parsed_content(key) if key in self.parser else default

    def _check(self, cancelled: Callable[[], bool]) -> None:
        if cancelled():
            raise CancelledError("segmentation cancelled")

    def segment_whole(
        self, item: StackInput, progress: Progress | None = None, cancelled: Callable[[], bool] | None = None
    ) -> SegmentationResult:
        """The whole field at once, as the inference workflow's evaluator does it, then QC and per-cell readout."""
        from scripts.cells.handler import stack_wavenumbers
        from scripts.cells.measure import measure_cells
        from scripts.engine.segmentation_writer import as_label_map
        from scripts.io.orientation import to_row_major
        from scripts.qc.handler import predict, stack_features
        from scripts.qc.transforms import META_KEY

        progress, cancelled = progress or _nothing, cancelled or (lambda: False)
        t0 = time.perf_counter()
        progress(0.02, "loading the network")
        self._build()
        self._check(cancelled)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        progress(0.05, "preprocessing")
        # the preprocessing after LoadImaged (the stack is in memory already, read by the same reader)
        data = {"image": self.image(item)}
        for transform in list(self.preprocessing.transforms)[1:]:
            data = transform(data)
        image = data["image"]
        timings["preprocess"] = time.perf_counter() - t
        self._check(cancelled)
        inputs = image[None].to(self.device)
        windows = max(1, self.inferer.num_windows(tuple(inputs.shape[-2:])))
        passes = 2 if self.qc.tta else 1

        def on_window() -> None:
            self._check(cancelled)
            progress(0.1 + 0.6 * watched.windows / (windows * passes), f"network: window {watched.windows + 1}")

        watched = _Watched(self.network, on_window)
        t = time.perf_counter()
        logits, flipped = predict(self.inferer, watched, inputs, tta=self.qc.tta)
        timings["network"] = watched.seconds
        timings["inferer"] = time.perf_counter() - t
        self._check(cancelled)
        progress(0.72, "post-processing")
        t = time.perf_counter()
        item_out = self.postprocessing({"image": inputs[0], "pred": logits[0]})
        labels = as_label_map(item_out["pred"])
        timings["postprocess"] = time.perf_counter() - t
        t = time.perf_counter()
        meta = image.meta if hasattr(image, "meta") else {}
        axis = str(meta.get("axis_check") or item.reader_meta.get("axis_check") or "")
        if self.qc_enabled:
            features = stack_features(meta.get(META_KEY), logits[0], None if flipped is None else flipped[0])
            qc = self.qc.check(item.source, features, axis).columns()
        else:
            qc = {"ood_score": "", "qc_flag": "off", "qc_reason": ""}
        timings["qc"] = time.perf_counter() - t
        self._check(cancelled)
        cells = None
        if self.cells_enabled:
            progress(0.8, "per-cell readout")
            t = time.perf_counter()
            stack = np.ascontiguousarray(to_row_major(image.detach().cpu().numpy()))
            wavenumbers = stack_wavenumbers(meta, stack.shape[0], item.source)
            px = self.readout.pixel_size(item.pixel_size_um, item.name)
            cells = measure_cells(stack, wavenumbers, labels, px, item.name, self.readout.parameters)
            timings["cells"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        progress(1.0, "done")
        return SegmentationResult(labels, self.method, qc, axis, cells, None, timings)

    def segment_mosaic(
        self, item: StackInput, progress: Progress | None = None, cancelled: Callable[[], bool] | None = None
    ) -> SegmentationResult:
        """A large field read from its file region by region and segmented tile by tile (``configs/mosaic.yaml``)."""
        import tifffile
        from scripts.engine.mosaic import MosaicSegmenter

        progress, cancelled = progress or _nothing, cancelled or (lambda: False)
        t0 = time.perf_counter()
        self._build()
        progress(0.02, "mosaic: planning the tiles")

        def on_window() -> None:
            self._check(cancelled)
            progress(min(0.95, 0.05 + 0.01 * watched.windows), f"mosaic: window {watched.windows + 1}")

        watched = _Watched(self.network, on_window)
        with tempfile.TemporaryDirectory(prefix="hsrs_napari_mosaic_") as out:
            mosaic = MosaicSegmenter(
                watched,
                self.inferer,
                out,
                memory_gib=self._setting("memory_gib", MOSAIC_MEMORY_GIB),
                tile_px=self._setting("tile_px", None),
                min_frames=self.parser.get_parsed_content("min_frames"),
                axis_check=self.axis_check,
                summary_csv="summary.csv",
            )
            mosaic.segment(item.path)
            labels = tifffile.imread(str(Path(out) / f"{stack_stem(item.path)}.tif"))
        timings = {"network": watched.seconds, "total": time.perf_counter() - t0}
        qc = {"ood_score": "", "qc_flag": "off", "qc_reason": "not computed on the mosaic path"}
        progress(1.0, "done")
        axis = str(item.reader_meta.get("axis_check", ""))
        return SegmentationResult(np.asarray(labels, np.uint8), "network (mosaic)", qc, axis, None, None, timings)


class PhasorStackSegmenter:
    """``configs/phasor.yaml``'s step for one stack: the phasor with the parameters file, then the per-cell readout.

    Args:
        parameters_file: the phasor parameters (default ``configs/phasor_parameters.yaml``).
        cells: run the per-cell readout (the config's ``cells``).
        default_pixel_size_um: the config's ``cells_pixel_size_um``.
    """

    def __init__(
        self, parameters_file: str | Path | None = None, cells: bool = True, default_pixel_size_um: float = 0.25
    ):
        from scripts.cells.readout import CellReadout
        from scripts.phasor.parameters import load_parameters

        self.parameters = load_parameters(parameters_file)
        self.cells = bool(cells)
        self.readout = CellReadout(BUNDLE_ROOT / "outputs", enabled=False, default_pixel_size_um=default_pixel_size_um)

    def segment(
        self, item: StackInput, progress: Progress | None = None, cancelled: Callable[[], bool] | None = None
    ) -> SegmentationResult:
        from scripts.cells.measure import measure_cells
        from scripts.phasor.segmenter import PhasorSegmenter

        progress, cancelled = progress or _nothing, cancelled or (lambda: False)
        t0 = time.perf_counter()
        progress(0.05, "phasor transform")
        segmenter = PhasorSegmenter(self.parameters)
        coords = segmenter.phasor(item.stack, item.wavenumbers, source=item.source)
        if cancelled():
            raise CancelledError("segmentation cancelled")
        progress(0.4, "phasor cursors and label map")
        result = segmenter.segment_phasor(coords)
        if cancelled():
            raise CancelledError("segmentation cancelled")
        timings = {"phasor": time.perf_counter() - t0}
        cells = None
        if self.cells:
            progress(0.7, "per-cell readout")
            t = time.perf_counter()
            px = self.readout.pixel_size(item.pixel_size_um, item.name)
            cells = measure_cells(item.stack, item.wavenumbers, result.labels, px, item.name, self.readout.parameters)
            timings["cells"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        qc = {"ood_score": "", "qc_flag": "flagged" if result.qc else "ok", "qc_reason": "; ".join(result.qc)}
        progress(1.0, "done")
        axis = str(item.reader_meta.get("axis_check", ""))
        return SegmentationResult(result.labels, "phasor", qc, axis, cells, result, timings)
