"""ONNX Runtime as the inference backend: the network's forward pass run by an ``onnxruntime`` session on the CPU.

``backend: onnxruntime`` in ``configs/inference.yaml`` (``--backend onnxruntime``) makes ``network`` an
:class:`OnnxRuntimeNetwork` around ``network_def``; ``backend: torch`` leaves it the PyTorch network;
``backend: auto`` (the default) takes ONNX Runtime on the CPU when the export of the weights loaded is in place
and PyTorch otherwise (:func:`network_backend`). Everything else stays as it is: the weights still come from
``models/model.pt`` through the weights loader (``handlers#0``), which loads them into the wrapped PyTorch
network, and the sliding window,
the quality check and the mosaic workflow call the wrapper as they call a network. MONAI Label builds its
own network from ``network_def`` and so always runs PyTorch.

The ONNX model is derived from exactly the weights loaded: on the first forward pass after weights are
loaded, the wrapper computes their fingerprint (:func:`scripts.networks.onnx_export.weights_fingerprint`)
and uses the cached export (``cache_path``, by default ``models/model.onnx`` beside the weights) only if it
records the same fingerprint; otherwise it exports the network again (about a minute, once;
:func:`scripts.networks.onnx_export.export_onnx`) and replaces the cache atomically. A cache that cannot
be written (read-only folder) is only logged: the export is then kept in memory for the run. Nothing is
ever downloaded.

ONNX Runtime runs on the CPU (``CPUExecutionProvider``) with ``threads`` intra-op threads (default
``torch.get_num_threads()``, so ``OMP_NUM_THREADS`` and torchrun's one thread per process apply to both
backends); its threads wait for work as PyTorch's do: with ``OMP_WAIT_POLICY=PASSIVE`` (a CPU shared with
other jobs) they sleep instead of spinning (``session.intra_op.allow_spinning``): on such a CPU spinning
threads slow both backends down (measured: ``python -m scripts.benchmark --sections onnx_runtime``). Fields whose
size is not a multiple of the network's stride are padded here as the network pads them (``pad_field``),
and the logits are cropped back.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch
import torch.nn as nn
from scripts.io.atomic import atomic_path
from scripts.io.errors import HSRSInputError, HSRSOptionError, HSRSOutputError
from scripts.networks.onnx_export import (
    FINGERPRINT_KEY,
    FRAMES,
    INPUT_NAME,
    OUTPUT_NAME,
    export_onnx,
    weights_fingerprint,
)

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime")


def require_onnxruntime():
    """The ``onnxruntime`` module, or a one-line user error saying what to install."""
    try:
        import onnxruntime
    except ImportError as e:
        raise HSRSOptionError(
            "--backend onnxruntime needs the onnxruntime package, which is not installed: "
            "pip install onnxruntime onnx onnxscript (versions in requirements-dev.txt), or run with --backend torch."
        ) from e
    return onnxruntime


def network_backend(
    network: nn.Module, backend: str = "auto", cache_path: str | Path | None = None, threads: int | None = None
) -> nn.Module:
    """``network`` itself for ``backend="torch"``, an :class:`OnnxRuntimeNetwork` around it for ``"onnxruntime"``.

    ``"auto"`` (the default of ``configs/inference.yaml``): ONNX Runtime where it was measured faster with equal
    outputs (``docs/results.md``, ONNX Runtime section) and costs nothing to set up -- a network on the CPU,
    ``onnxruntime`` installed, and an export of exactly the weights loaded already in ``cache_path`` (the
    bundle ships ``models/model.onnx`` for ``models/model.pt``) -- and PyTorch otherwise (a GPU, other weights, no
    onnxruntime), with one INFO line saying why. ``"auto"`` never exports: ``--backend onnxruntime`` does.
    """
    name = str(backend).strip().lower()
    if name == "torch":
        return network
    if name == "onnxruntime":
        return OnnxRuntimeNetwork(network, cache_path=cache_path, threads=threads)
    if name == "auto":
        why = None
        if not all(p.device.type == "cpu" for p in network.parameters()):
            why = "the network is not on the CPU"
        elif importlib.util.find_spec("onnxruntime") is None:
            why = "onnxruntime is not installed"
        elif not cache_path:
            why = "no ONNX file given"
        if why:
            logger.info("backend auto: PyTorch (%s).", why)
            return network
        return OnnxRuntimeNetwork(network, cache_path=cache_path, threads=threads, export=False)
    raise HSRSOptionError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")


class OnnxRuntimeNetwork(nn.Module):
    """A PyTorch segmentation network whose forward pass ONNX Runtime runs, from an export of its current weights.

    The wrapped network keeps the weights: ``load_state_dict`` and ``state_dict`` are the network's own
    (same keys as ``models/model.pt``), and loading weights makes the next forward pass check the
    export against them (see the module docstring).

    Args:
        network: the PyTorch network (``(B, K, H, W)`` -> ``(B, C, H, W)`` logits), e.g. a ``HybridUNet``.
        cache_path: ONNX file reused across runs while it matches the weights; None keeps the export in memory.
        threads: intra-op threads of the session; None takes ``torch.get_num_threads()``.
        spinning: let idle threads spin; None: not with ``OMP_WAIT_POLICY=PASSIVE``, else ONNX Runtime's default.
        frames: ``K`` of the exported input (the canonical 64).
        export: False (``backend: auto``): never export; without an export of the weights loaded in
            ``cache_path``, or for a stack of other than ``frames`` frames, the PyTorch network runs instead
            (one INFO line).

    Shape:
        - input: ``(B, frames, H, W)`` on any device (the output comes back on the input's device)
        - output: ``(B, C, H, W)`` logits
    """

    def __init__(
        self,
        network: nn.Module,
        cache_path: str | Path | None = None,
        threads: int | None = None,
        spinning: bool | None = None,
        frames: int = FRAMES,
        export: bool = True,
    ) -> None:
        super().__init__()
        require_onnxruntime()
        self.network = network
        self.export = bool(export)
        self._use_torch = False  # export=False and no export of these weights: PyTorch runs
        self._torch_logged = False
        self.cache_path = Path(cache_path) if cache_path else None
        self.threads = int(threads) if threads else None
        self.frames = int(frames)
        if spinning is None and os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE":
            spinning = False
        self.spinning = spinning
        self._session = None
        self.exported = 0  # exports done by this wrapper (the cache was missing or stale), for tests and logs

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = self.network.load_state_dict(state_dict, strict=strict, assign=assign)
        self._session = None  # the next forward pass checks the export against these weights
        self._use_torch = self._torch_logged = False
        return result

    def state_dict(self, *args, **kwargs):
        return self.network.state_dict(*args, **kwargs)

    @property
    def session(self):
        """The ONNX Runtime session of the current weights (from the cache, or exported now)."""
        if self._session is None:
            self._session = self._load_or_export()
        return self._session

    def _new_session(self, model: str | bytes):
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        if self.spinning is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])

    def _load_or_export(self):
        fingerprint = weights_fingerprint(self.network, self.frames)
        path = self.cache_path
        if path is not None and path.is_file():
            try:
                session = self._new_session(str(path))
                recorded = session.get_modelmeta().custom_metadata_map.get(FINGERPRINT_KEY)
            except Exception as e:  # a damaged file: export again
                again = "exporting the network again" if self.export else "not used"
                logger.warning("%s cannot be read by ONNX Runtime (%s); %s.", path, e, again)
                session, recorded = None, None
            if recorded == fingerprint:
                logger.info("ONNX Runtime backend: %s (matches the weights loaded)", path)
                return session
            if session is not None and self.export:
                logger.info("%s was exported from other weights: exporting the network again.", path)
        if not self.export:
            return None
        model = export_onnx(self.network, self.frames)
        self.exported += 1
        if path is not None:
            try:
                with atomic_path(path) as tmp:
                    tmp.write_bytes(model)
                logger.info("ONNX Runtime backend: exported to %s", path)
            except HSRSOutputError as e:
                logger.warning("%s The ONNX model is kept in memory for this run.", e)
        return self._new_session(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of spectral stacks, computed by ONNX Runtime (or PyTorch, see ``export``)."""
        if not self.export:
            if x.shape[1] == self.frames and not self._use_torch:
                self._use_torch = self.session is None  # no export of these weights: never looked for again
            if self._use_torch or x.shape[1] != self.frames:
                if not self._torch_logged:
                    logger.info(
                        "backend auto: PyTorch (%s); --backend onnxruntime exports the weights once for ONNX Runtime.",
                        (
                            f"{x.shape[1]} frames, the ONNX model takes {self.frames}"
                            if x.shape[1] != self.frames
                            else f"no ONNX export of these weights in {self.cache_path}"
                        ),
                    )
                    self._torch_logged = True
                return self.network(x)
        if hasattr(self.network, "check_input"):
            self.network.check_input(x)
        if x.shape[1] != self.frames:
            raise HSRSInputError(
                f"the ONNX Runtime backend runs stacks of {self.frames} frames, got {x.shape[1]} (input shape "
                f"{list(x.shape)}); resample the stacks onto the canonical grid or run with --backend torch."
            )
        height, width = int(x.shape[-2]), int(x.shape[-1])
        padded = self.network.pad_field(x) if hasattr(self.network, "pad_field") else x
        stack = torch.as_tensor(padded).detach().to("cpu", torch.float32).contiguous().numpy()
        logits = self.session.run([OUTPUT_NAME], {INPUT_NAME: stack})[0]
        return torch.from_numpy(logits)[..., :height, :width].to(x.device)
