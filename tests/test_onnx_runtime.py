"""The ONNX Runtime backend (scripts.networks.onnx_runtime, scripts.networks.onnx_export): the export agrees with
PyTorch at any batch and field size, follows the weights loaded, and ``--backend onnxruntime`` segments like torch.

A small HybridUNet in its shipped form (fast encoder; two levels: stem, multi-scale residual blocks, attention
pooling, spectral compression) keeps each export to seconds; one export is shared by the module's tests, one more
shows the re-export.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import torch
from scripts.io.errors import HSRSOptionError
from scripts.networks import HybridUNet

from tests.conftest import CONFIGS, REPO, workflow

ort = pytest.importorskip("onnxruntime", reason="the ONNX Runtime backend is optional (requirements-dev.txt)")
pytest.importorskip("onnxscript", reason="the ONNX export needs onnxscript (requirements-dev.txt)")

from scripts.networks.onnx_export import FINGERPRINT_KEY, weights_fingerprint  # noqa: E402
from scripts.networks.onnx_runtime import OnnxRuntimeNetwork, network_backend  # noqa: E402

# torch.export's own deprecation notice, raised inside torch during the export
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")

SMALL = {"features": [4, 8]}  # network_def override of the config runs: the same small network


def small_network(seed: int = 0) -> HybridUNet:
    """The shipped form (``FAST_ENCODER``, as ``configs/inference.yaml`` builds it), two levels."""
    from scripts.networks import FAST_ENCODER

    torch.manual_seed(seed)
    return HybridUNet(**FAST_ENCODER, **SMALL).eval()


def recorded_fingerprint(path) -> str:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.get_modelmeta().custom_metadata_map[FINGERPRINT_KEY]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(network, its ONNX Runtime wrapper after one forward pass, the cached ONNX file)."""
    cache = tmp_path_factory.mktemp("onnx") / "model.onnx"
    network = small_network()
    runtime = OnnxRuntimeNetwork(network, cache_path=cache)
    with torch.no_grad():
        runtime(torch.rand(1, 64, 32, 32))
    assert runtime.exported == 1
    assert cache.is_file()
    return network, runtime, cache


def test_exported_model_agrees_with_torch_at_any_batch_and_field_size(exported):
    network, runtime, _ = exported
    generator = torch.Generator().manual_seed(0)
    for shape in [(1, 64, 32, 32), (2, 64, 48, 80), (1, 64, 37, 50)]:  # the last needs the network's padding
        stack = torch.rand(*shape, generator=generator)
        with torch.no_grad():
            expected, got = network(stack), runtime(stack)
        assert got.shape == expected.shape == (shape[0], 3, *shape[2:])
        assert float((got - expected).abs().max()) < 1e-4 * max(1.0, float(expected.abs().max()))
        assert torch.equal(got.argmax(1), expected.argmax(1))
    assert runtime.exported == 1  # one export serves every size


def test_the_attention_softmax_over_the_spectral_axis_is_exported_as_reductions(exported):
    import onnx

    # ONNX Runtime's Softmax over a middle axis transposes twice: 7× slower than ReduceMax/ReduceSum, same values
    ops = {node.op_type for node in onnx.load(str(exported[2])).graph.node}
    assert "Softmax" not in ops
    assert {"ReduceMax", "Exp", "ReduceSum"} <= ops


def test_onnx_model_has_dynamic_batch_and_field_axes_and_64_frames(exported):
    session = ort.InferenceSession(str(exported[2]), providers=["CPUExecutionProvider"])
    (stack,), (logits,) = session.get_inputs(), session.get_outputs()
    assert stack.shape[1] == 64
    assert logits.shape[1] == 3
    assert all(isinstance(stack.shape[i], str) for i in (0, 2, 3))  # symbolic: batch, height, width


def test_cached_export_is_reused_while_it_matches_the_weights(exported):
    network, _, cache = exported
    again = OnnxRuntimeNetwork(network, cache_path=cache)
    with torch.no_grad():
        again(torch.rand(1, 64, 32, 32))
    assert again.exported == 0
    assert recorded_fingerprint(cache) == weights_fingerprint(network)


def test_changed_weights_make_the_stale_cache_exported_again(exported, tmp_path):
    network, _, cache = exported
    stale = tmp_path / "model.onnx"
    shutil.copy(cache, stale)
    retrained = small_network(seed=1)  # other weights, e.g. a new models/model.pt
    runtime = OnnxRuntimeNetwork(small_network(), cache_path=stale)
    runtime.load_state_dict(retrained.state_dict())  # what the weights loader does
    stack = torch.rand(1, 64, 32, 32)
    with torch.no_grad():
        got, expected = runtime(stack), retrained(stack)
    assert runtime.exported == 1
    assert recorded_fingerprint(stale) == weights_fingerprint(retrained) != weights_fingerprint(network)
    assert float((got - expected).abs().max()) < 1e-4 * max(1.0, float(expected.abs().max()))


def test_inference_config_with_backend_onnxruntime_gives_the_torch_label_maps(exported, tmp_path):
    import tifffile

    network, _, cache = exported
    models = tmp_path / "models"
    models.mkdir()
    torch.save(network.state_dict(), models / "model.pt")
    shutil.copy(cache, models / "model.onnx")  # exported from these weights: the run must find and use it
    common = {"ckpt_dir": str(models), "cells": False, "qc": False, "network_def#features": SMALL["features"]}
    labels = {}
    for backend in ("torch", "onnxruntime"):
        wf = workflow(
            str(CONFIGS / "inference.yaml"), "infer", output_dir=str(tmp_path / backend), backend=backend, **common
        )
        wf.run()
        if backend == "onnxruntime":
            runtime = wf.parser.get_parsed_content("network")
            assert isinstance(runtime, OnnxRuntimeNetwork)
            assert runtime.exported == 0
        labels[backend] = {p.name: tifffile.imread(p) for p in sorted((tmp_path / backend).glob("*.tif"))}
    stems = sorted(p.name.split(".")[0] for p in (REPO / "docs" / "demo_data" / "images").iterdir())
    assert sorted(n[: -len(".tif")] for n in labels["torch"]) == stems
    torch_maps, ort_maps = (np.stack([v for _, v in sorted(labels[b].items())]) for b in ("torch", "onnxruntime"))
    assert (torch_maps == ort_maps).mean() >= 0.9999


def test_missing_onnxruntime_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(HSRSOptionError, match=r"needs the onnxruntime package.*pip install onnxruntime") as excinfo:
        network_backend(small_network(), "onnxruntime")
    assert "\n" not in str(excinfo.value)
    assert network_backend(net := small_network(), "torch") is net  # torch needs none of it
    assert network_backend(net, "auto", "unused.onnx") is net  # nor auto: PyTorch when onnxruntime is missing


def test_missing_onnxscript_is_one_line_saying_what_to_install(monkeypatch):
    from scripts.networks.onnx_export import export_onnx

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(HSRSOptionError, match=r"needs the onnxscript package.*pip install onnxscript"):
        export_onnx(small_network())


def test_auto_uses_an_export_of_the_weights_loaded_and_never_exports(exported, tmp_path, caplog):
    network, _, cache = exported
    stack = torch.rand(1, 64, 32, 48)
    with torch.no_grad():
        expected = network(stack)
        auto = network_backend(network, "auto", cache)  # the export of exactly these weights is in place
        torch.testing.assert_close(auto(stack), expected, atol=1e-3, rtol=1e-3)
        assert auto._session is not None  # ONNX Runtime ran it
        other = small_network(seed=1)  # other weights, the same (stale) file: PyTorch, no export
        fallback = network_backend(other, "auto", cache)
        missing = network_backend(network, "auto", tmp_path / "none.onnx")
        with caplog.at_level("INFO", logger="scripts.networks.onnx_runtime"):
            torch.testing.assert_close(fallback(stack), other(stack))
            fallback(stack)
            torch.testing.assert_close(missing(stack), expected)
            missing(stack)
    assert auto.exported == fallback.exported == missing.exported == 0
    assert not (tmp_path / "none.onnx").exists()
    assert sum("backend auto: PyTorch" in r.message for r in caplog.records) == 2  # one line per run, not per window
    assert recorded_fingerprint(cache) == weights_fingerprint(network)  # the file was left alone


def test_the_shipped_onnx_model_is_the_export_of_the_shipped_weights():
    from scripts.benchmarks.bundle_runs import inference_network

    network = inference_network()
    network.load_state_dict(torch.load(REPO / "models" / "model.pt", map_location="cpu", weights_only=True))
    assert recorded_fingerprint(REPO / "models" / "model.onnx") == weights_fingerprint(network)


def test_unknown_backend_is_refused_with_the_choices():
    with pytest.raises(HSRSOptionError, match=r"torch, onnxruntime.*'tensorrt'"):
        network_backend(small_network(), "tensorrt")


def test_the_fast_encoder_exports_including_its_two_positions_into_four_bins_compression(tmp_path):
    from scripts.networks import FAST_ENCODER

    torch.manual_seed(0)
    # three levels with stem stride 8: the deepest holds 64 / 8 / 2 / 2 = 2 spectral positions, compressed into 4 bins
    network = HybridUNet(features=[4, 8, 8], **FAST_ENCODER).eval()
    runtime = OnnxRuntimeNetwork(network, cache_path=tmp_path / "fast.onnx")
    stack = torch.rand(1, 64, 48, 40)
    with torch.no_grad():
        expected, got = network(stack), runtime(stack)
    assert float((got - expected).abs().max()) < 1e-4 * max(1.0, float(expected.abs().max()))
