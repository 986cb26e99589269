"""Benchmark: the ONNX Runtime backend against PyTorch on the CPU, with the shipped weights, in one process.

Both backends run in this one process, on the same machine state: for every input size the two are
timed alternately (PyTorch, ONNX Runtime, PyTorch, ...) after one warm-up pass each, so background
load hits both alike; the table gives each backend's median and the median of the paired ratios, and
the load average (``os.getloadavg``) before and after. Then both segment real stacks -- the bundled demo
data and a simulated 512×512 phantom -- through the inference config's own preprocessing and sliding
window, and the table gives the largest |Δ logit| and the share of pixels with the same label.

:func:`measure` returns the rows and a Markdown table; :func:`run` gives them as a benchmark section of
their own and is also what the ``workflows`` section appends. Run only this (prints the table and writes
its block of ``docs/results.md``)::

    OMP_WAIT_POLICY=PASSIVE python -m scripts.benchmark --sections onnx_runtime

The decision rule of issue 16 is applied to the numbers (:func:`decide`): ONNX Runtime is recommended as
the CPU default only if it is faster at every size and its labels equal PyTorch's on >= 99.99 % of the
pixels with max |Δ logit| < 1e-3.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from scripts.benchmarks import SectionResult, markdown_table

TITLE = "ONNX Runtime vs PyTorch on the CPU"
REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "inference.yaml"
#: (batch, field size) of the latency rows: one sliding-window batch of the config and the windows alone.
CASES = ((1, 256), (2, 256), (1, 512))
MIN_AGREEMENT, MAX_LOGIT_DIFFERENCE = 0.9999, 1e-3


def _load_networks(weights: Path, onnx_file: Path):
    from monai.bundle import ConfigParser
    from scripts.networks.onnx_runtime import OnnxRuntimeNetwork

    parser = ConfigParser()
    parser.read_config(str(CONFIG))
    parser["bundle_root"] = str(REPO)
    network = parser.get_parsed_content("network_def").eval()
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    runtime = OnnxRuntimeNetwork(network, cache_path=onnx_file).eval()
    return parser, network, runtime


def _time(fn, x) -> float:
    t0 = time.perf_counter()
    with torch.inference_mode():
        fn(x)
    return time.perf_counter() - t0


def _latency(network, runtime, batch: int, size: int, repeats: int) -> dict:
    x = torch.rand(batch, 64, size, size, generator=torch.Generator().manual_seed(size + batch))
    load_before = os.getloadavg()[0]
    for warm_up in (network, runtime):  # the allocator, ONNX Runtime's first run
        _time(warm_up, x)
    pairs = []
    for i in range(repeats):  # alternate the order, so that neither backend always runs second
        if i % 2:
            ort_s, torch_s = _time(runtime, x), _time(network, x)
        else:
            torch_s, ort_s = _time(network, x), _time(runtime, x)
        pairs.append((torch_s, ort_s))
    torch_times, ort_times = [p[0] for p in pairs], [p[1] for p in pairs]
    return {
        "case": f"forward pass, batch {batch}, {size}×{size}×64",
        "batch": batch,
        "size": size,
        "torch_s": statistics.median(torch_times),
        "onnxruntime_s": statistics.median(ort_times),
        "speedup": statistics.median(t / o for t, o in pairs),
        "torch_all_s": torch_times,
        "onnxruntime_all_s": ort_times,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def _agreement(parser, network, runtime, files: list[Path], name: str) -> dict:
    preprocessing, inferer = parser.get_parsed_content("preprocessing"), parser.get_parsed_content("inferer")
    largest, same, pixels = 0.0, 0, 0
    for f in files:
        stack = preprocessing({"image": str(f)})["image"][None]
        with torch.inference_mode():
            a, b = inferer(stack, network), inferer(stack, runtime)
        largest = max(largest, float((a - b).abs().max()))
        same += int((a.argmax(1) == b.argmax(1)).sum())
        pixels += a[:, 0].numel()
    return {
        "data": name,
        "stacks": len(files),
        "pixels": pixels,
        "max_abs_logit_difference": largest,
        "label_agreement": same / pixels,
    }


def decide(latency: list[dict], agreement: list[dict]) -> tuple[bool, str]:
    """(ONNX Runtime recommended as the CPU default?, why) by the rule of issue 16."""
    faster = all(r["speedup"] > 1 for r in latency)
    agree = min(r["label_agreement"] for r in agreement)
    diff = max(r["max_abs_logit_difference"] for r in agreement)
    equal = agree >= MIN_AGREEMENT and diff < MAX_LOGIT_DIFFERENCE
    speed = ", ".join(f"{r['speedup']:.2f}×" for r in latency)
    why = (
        f"speed-up of ONNX Runtime over PyTorch {speed} ({'faster' if faster else 'not faster'} at every size); "
        f"labels equal on {100 * agree:.4f} % of pixels, max |Δ logit| {diff:.2g} "
        f"({'equal' if equal else 'not equal'} by the rule: >= {100 * MIN_AGREEMENT:.2f} % and < {MAX_LOGIT_DIFFERENCE:g})"
    )
    return faster and equal, why


def measure(
    repeats: int = 3, cases=CASES, phantom_size: int = 512, weights: Path | None = None
) -> tuple[list[dict], str]:
    """Latency of both backends and their agreement on real stacks; returns (rows, Markdown)."""
    import onnxruntime
    from scripts.io.writer import write_stack
    from scripts.simulation.phantom import simulate_phantom

    weights = Path(weights or REPO / "models" / "model.pt")
    onnx_file = weights.with_suffix(".onnx")
    parser, network, runtime = _load_networks(weights, onnx_file)
    t0 = time.perf_counter()
    _ = runtime.session  # the cached export when it matches the weights, else an export now (timed)
    start_s = time.perf_counter() - t0
    latency = [_latency(network, runtime, b, s, repeats) for b, s in cases]
    demo = sorted((REPO / "docs" / "demo_data" / "images").iterdir())
    agreement = [_agreement(parser, network, runtime, demo, f"bundled demo data ({len(demo)} stacks, 128×128)")]
    with tempfile.TemporaryDirectory() as tmp:
        phantom = simulate_phantom(7, phantom_size, phantom_size)
        path = Path(tmp) / "phantom.nii.gz"
        write_stack(path, phantom.stack, phantom.wavenumbers, 0.25)
        agreement.append(
            _agreement(parser, network, runtime, [path], f"simulated phantom {phantom_size}×{phantom_size}")
        )
    recommended, why = decide(latency, agreement)
    threads = runtime.threads or torch.get_num_threads()
    rows_md = [
        [
            r["case"],
            f"{r['torch_s']:.3f}",
            f"{r['onnxruntime_s']:.3f}",
            f"**{r['speedup']:.2f}×**",
            f"{r['load_before']:.1f} → {r['load_after']:.1f}",
        ]
        for r in latency
    ]
    table = markdown_table(
        [
            "forward pass (shipped weights)",
            "PyTorch median (s)",
            "ONNX Runtime median (s)",
            "speed-up (median of paired ratios)",
            "load average",
        ],
        rows_md,
    )
    agree_md = markdown_table(
        [
            "segmented through inference.yaml's preprocessing and sliding window",
            "pixels",
            "max \\|Δ logit\\|",
            "same label",
        ],
        [
            [
                r["data"],
                f"{r['pixels']:,}",
                f"{r['max_abs_logit_difference']:.2g}",
                f"{100 * r['label_agreement']:.4f} %",
            ]
            for r in agreement
        ],
    )
    verdict = "ONNX Runtime qualifies as the CPU default" if recommended else "PyTorch stays the CPU default"
    note = (
        f"Both backends in one process, timed alternately, median of {repeats} after one warm-up each; torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}), "
        f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider, {threads} intra-op threads, spinning "
        f"{'off' if runtime.spinning is False else 'on' if runtime.spinning else 'default'}), "
        f"{os.cpu_count()} cores shared with other jobs (load average in the table): compare the ratios, not the "
        f"times. Start-up of the ONNX Runtime backend (cached export checked against the weights, or exported): "
        f"{start_s:.1f} s ({runtime.exported} export). **{verdict}**: {why}."
    )
    markdown = table + "\n\n" + agree_md + "\n\n" + note
    rows = (
        latency
        + agreement
        + [
            {
                "recommended_default": "onnxruntime" if recommended else "torch",
                "why": why,
                "onnxruntime": onnxruntime.__version__,
                "torch": torch.__version__,
                "startup_s": start_s,
                "exports": runtime.exported,
            }
        ]
    )
    return rows, markdown


def run(quick: bool) -> SectionResult:
    """The section: both backends measured (or a note saying what to install to measure them)."""
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        return SectionResult(
            f"ONNX Runtime vs PyTorch: not measured ({e}; pip install onnxruntime onnx onnxscript).", {}
        )
    rows, markdown = measure(repeats=3 if quick else 5)
    return SectionResult(markdown, {"rows": rows})


def subsection(quick: bool) -> SectionResult:
    """:func:`run` under a sub-heading, for the ``workflows`` section."""
    result = run(quick)
    return SectionResult(f"### {TITLE} (`--backend onnxruntime`)\n\n{result.markdown}", result.data)
