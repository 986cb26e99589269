"""ONNX export of a segmentation network: dynamic batch and field size, a fingerprint of the weights, checked.

:func:`export_onnx` turns a network with its current weights into an ONNX model (bytes) that ONNX
Runtime runs on fields of any size the network's strides allow:

- input ``stack`` ``(B, K, H, W)`` float32 and output ``logits`` ``(B, C, H, W)``; ``B`` and ``H, W``
  are dynamic, ``K`` is fixed (64: inference resamples every stack onto the canonical grid);
- ``H`` and ``W`` must be multiples of the network's total stride (``spatial_divisor``, 16 for the
  default HybridUNet) and at least twice it: the network pads other sizes itself (``pad_field``),
  and that padding is done outside the graph by the runtime wrapper
  (:class:`scripts.networks.onnx_runtime.OnnxRuntimeNetwork`), which crops the logits back.

The exporter is PyTorch's ``torch.export``-based one (``torch.onnx.export(dynamo=True)``, which needs
the ``onnxscript`` package). Neither it nor the TorchScript-based one translates an adaptive average
pooling whose output size depends on the input (the spectral compression pools ``(B, C, K, H, W)``
into ``(bins, H, W)``); here it is translated as what it is when ``K`` is a multiple of ``bins`` (K = 4,
bins = 4 at the deepest level of the default network, whatever ``H, W``): a reshape to
``(B, C, bins, K / bins, H, W)`` and a mean over ``K / bins``. Every export is checked: the ONNX model
and the PyTorch network segment a random stack of another size than the one traced, and a difference
larger than ``tolerance`` raises. This is also why ``python -m monai.bundle onnx_export`` is not
used: its converter (``monai.networks.utils.convert_to_onnx``) passes no translation table.

The model records in its metadata (``metadata_props``) the :func:`weights_fingerprint` of the network it
came from -- an MD5 over the network's structure (``repr``) and every tensor of its ``state_dict`` --
so that a cached export can be matched against the weights actually loaded.

Ahead of time, for the shipped weights (the runtime backend exports on first use by itself)::

    python -m scripts.networks.onnx_export      # models/model.pt -> models/model.onnx (make onnx)
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
from pathlib import Path

import torch
import torch.nn as nn
from scripts.io.errors import HSRSOptionError

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]

#: Frames of the exported input: the canonical spectral grid every stack is resampled onto.
FRAMES = 64
#: Version of the export recipe (input names, dynamic axes, translation); part of the fingerprint.
#: 2: softmax over a middle axis as reductions (``_softmax_by_reductions``).
EXPORT_FORMAT = 2
INPUT_NAME, OUTPUT_NAME = "stack", "logits"
#: Metadata key of the weights fingerprint in the ONNX model.
FINGERPRINT_KEY = "weights_fingerprint"


def weights_fingerprint(network: nn.Module, frames: int = FRAMES) -> str:
    """MD5 of what an export depends on: the network's structure and weights, the frame count, the recipe.

    Two networks with the same fingerprint give the same ONNX model; any changed weight, layer or
    option (an activation, say, that changes no weight) changes it.
    """
    digest = hashlib.md5()  # a fingerprint, not security
    digest.update(f"format={EXPORT_FORMAT};frames={frames};{network!r}".encode())
    for name, tensor in network.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _adaptive_avg_pool3d_by_blocks(x, output_size):
    """ONNX translation of ``aten._adaptive_avg_pool3d`` for ``output_size = (bins, H, W)`` of a ``(B, C, K, H, W)``
    input with static ``K``: mean over equal spectral blocks (reshape + ReduceMean) when ``K`` is divisible by
    ``bins``; each position repeated ``bins / K`` times (what adaptive pooling does) when ``bins`` is divisible by
    ``K`` (the fast encoder's deepest level: 2 positions into 4 bins)."""
    from onnxscript import opset18 as op

    bins = output_size[0]
    k = x.shape[2] if x.shape is not None else None
    if isinstance(bins, int) and isinstance(k, int) and k < bins and bins % k == 0:
        repeated = op.Expand(
            op.Unsqueeze(x, op.Constant(value_ints=[3])),
            op.Concat(op.Shape(x, start=0, end=3), op.Constant(value_ints=[bins // k]), op.Shape(x, start=3), axis=0),
        )
        shape = op.Concat(op.Shape(x, start=0, end=2), op.Constant(value_ints=[bins]), op.Shape(x, start=3), axis=0)
        return op.Reshape(repeated, shape)
    if not isinstance(bins, int) or not isinstance(k, int) or k % bins:
        raise NotImplementedError(
            f"ONNX export: adaptive average pooling of {k} spectral positions into {bins} bins is only translated "
            "when the positions divide evenly into the bins or the bins into the positions; run the network with "
            "--backend torch."
        )
    shape = op.Concat(
        op.Shape(x, start=0, end=2), op.Constant(value_ints=[bins, k // bins]), op.Shape(x, start=3), axis=0
    )
    return op.ReduceMean(op.Reshape(x, shape), op.Constant(value_ints=[3]), keepdims=0)


def _softmax_by_reductions(x, dim, half_to_float_or_dtype=None):
    """ONNX translation of ``aten._softmax`` over any axis as ``exp(x - max) / sum(exp(x - max))`` with ReduceMax and
    ReduceSum along that axis: the same function (a ``dtype`` argument is not applied: the graphs are float32). ONNX
    Runtime's own Softmax transposes the axis to the end and back when it is not the last one: the attention pooling's
    softmax over ``K`` of ``(B, heads, K, H, W)`` took 14 % of the shipped network's time on a 512² window (ONNX
    Runtime's node profiler), about 7× what the reductions take; with them, ONNX Runtime's speed-up over PyTorch
    went from 1.33× to 1.84× (``python -m scripts.benchmark --sections onnx_runtime``)."""
    from onnxscript import opset18 as op

    axes = op.Constant(value_ints=[int(dim)])
    shifted = op.Exp(op.Sub(x, op.ReduceMax(x, axes, keepdims=1)))
    return op.Div(shifted, op.ReduceSum(shifted, axes, keepdims=1))


def _require_exporter() -> None:
    for package in ("onnxscript", "onnx"):
        try:
            __import__(package)
        except ImportError as e:
            raise HSRSOptionError(
                f"exporting the network to ONNX needs the {package} package, which is not installed: "
                "pip install onnxscript onnx (or run with --backend torch)."
            ) from e


def export_onnx(
    network: nn.Module, frames: int = FRAMES, verify: bool = True, tolerance: float = 1e-3, log: bool = True
) -> bytes:
    """The network with its current weights as a serialised ONNX model (dynamic batch and field size).

    Args:
        network: a segmentation network taking ``(B, K, H, W)`` and giving ``(B, C, H, W)`` logits; it is
            copied to the CPU in eval mode for the export, the original is left as it is.
        frames: the fixed ``K`` of the exported input.
        verify: run the ONNX model (ONNX Runtime, CPU) and the network on a random stack of another size
            than the traced one and raise ``RuntimeError`` when the logits differ by more than
            ``tolerance`` × max(1, largest |logit|).
        tolerance: relative tolerance of that check.
        log: log one line before and after (the export takes about a minute on a CPU).

    Returns:
        the ONNX model, with the :func:`weights_fingerprint` in its metadata under ``weights_fingerprint``.
    """
    _require_exporter()
    net = copy.deepcopy(network).cpu().eval()
    divisor = int(getattr(net, "spatial_divisor", 16))
    fingerprint = weights_fingerprint(network, frames)
    generator = torch.Generator().manual_seed(0)
    # batch 2 and 2 × the stride: torch.export specialises sizes 0 and 1, and the field must need no padding
    example = torch.rand(2, frames, 2 * divisor, 2 * divisor, generator=generator)
    dims = {
        0: torch.export.Dim("batch", min=1, max=4096),
        2: divisor * torch.export.Dim("height_strides", min=2, max=1 << 16),
        3: divisor * torch.export.Dim("width_strides", min=2, max=1 << 16),
    }
    if log:
        logger.info(
            "exporting %s to ONNX (%d frames, any batch and field size; about a minute)", type(net).__name__, frames
        )
    output = io.StringIO()  # torch.onnx prints its progress; kept for the error message
    try:
        with torch.no_grad(), contextlib.redirect_stdout(output), _quiet_exporter_logs():
            program = torch.onnx.export(
                net,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=(dims,),
                custom_translation_table={
                    torch.ops.aten._adaptive_avg_pool3d.default: _adaptive_avg_pool3d_by_blocks,
                    torch.ops.aten._softmax.default: _softmax_by_reductions,
                    torch.ops.aten.softmax.int: _softmax_by_reductions,
                },
                dynamo=True,
                verbose=False,
            )
    except Exception as e:
        raise RuntimeError(f"ONNX export of {type(net).__name__} failed: {e}\n{output.getvalue()[-2000:]}") from e
    program.model.metadata_props.update(
        {
            FINGERPRINT_KEY: fingerprint,
            "frames": str(frames),
            "spatial_divisor": str(divisor),
            "torch": torch.__version__,
        }
    )
    model = program.model_proto.SerializeToString()
    if verify:
        _check_against_torch(net, model, frames, divisor, tolerance)
    if log:
        logger.info("ONNX export done (%.1f MB, weights fingerprint %s)", len(model) / 1e6, fingerprint)
    return model


@contextlib.contextmanager
def _quiet_exporter_logs():
    """The exporter's own log lines (one per graph rewrite, a warning per missing optional package) left out."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _check_against_torch(net: nn.Module, model: bytes, frames: int, divisor: int, tolerance: float) -> None:
    import onnxruntime as ort

    generator = torch.Generator().manual_seed(1)
    stack = torch.rand(1, frames, 3 * divisor, 2 * divisor, generator=generator)  # not the traced size
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: stack.numpy()})[0])
    with torch.no_grad():
        expected = net(stack)
    if got.shape != expected.shape:
        raise RuntimeError(
            f"ONNX export: the model gives logits of shape {list(got.shape)}, torch {list(expected.shape)}."
        )
    difference = float((got - expected).abs().max())
    if difference > tolerance * max(1.0, float(expected.abs().max())):
        raise RuntimeError(
            f"ONNX export: the ONNX model's logits differ from torch's by up to {difference:.3g} on a random "
            f"{list(stack.shape)} stack; the export is not used (run with --backend torch)."
        )


def export_bundle_weights(
    config_file: str | Path = REPO / "configs" / "inference.yaml",
    weights: str | Path = REPO / "models" / "model.pt",
    out: str | Path | None = None,
) -> Path:
    """Export ``weights`` in the config's ``network_def`` to ``out`` (default: beside the weights, ``.onnx``), atomically.

    What ``python -m scripts.networks.onnx_export`` (``make onnx``) does for the shipped weights; the ONNX
    Runtime backend does the same on first use for whatever weights it loads.
    """
    from monai.bundle import ConfigParser
    from scripts.io.atomic import atomic_path

    config = ConfigParser()
    config.read_config(str(config_file))
    network = config.get_parsed_content("network_def")
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    out = Path(out) if out else Path(weights).with_suffix(".onnx")
    model = export_onnx(network)
    with atomic_path(out) as tmp:
        tmp.write_bytes(model)
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = export_bundle_weights()
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, from models/model.pt", flush=True)
