"""Model cost: parameters, weights size, multiply–accumulates, CPU latency and peak memory per network.

Every (model, input size) pair is measured in a fresh ``spawn`` subprocess, so that the peak
resident memory of one forward pass is not hidden by an earlier, larger one. In the subprocess:

1. the model is built under ``torch.manual_seed(0)`` in eval mode and a ``(1, K, H, W)`` input is drawn;
2. the first forward pass (``torch.inference_mode``) counts multiply–accumulates with forward hooks on
   every convolution, transposed convolution and linear layer, and the growth of peak RSS over the
   RSS just before it is its memory cost (``VmHWM`` of /proc/self/status, else ``ru_maxrss``);
3. ``repeats`` further forward passes are timed, and the median is reported;
4. the ``state_dict`` (float32) is saved with ``torch.save`` to a temporary file to size the weights.

The subprocess's address space is capped at ~18 GiB above its size before the model is built, so a
model that would need more fails with an allocation error (reported in the table) instead of
bringing the machine down.
"""

from __future__ import annotations

import gc
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

from scripts.benchmarks import SectionResult, markdown_table

TITLE = "Model cost: parameters, weights, MACs, CPU latency and peak memory"
#: networks built under a fixed seed, never trained: cost does not depend on weights (see :data:`scripts.benchmark.WEIGHTS_USED`)
WEIGHTS_USED = "untrained"

#: the fast encoder with instance normalisation on contiguous tensors (configs/baselines/hybrid_fast_instance_norm.yaml)
INSTANCE_FAST = {
    "encoder_conv": "factorized",
    "channels_last": False,
    "norm": ("instance", {"affine": True}),
    "stem_spectral_stride": 8,
}
#: the recipe study's capacity arms (configs/baselines/hybrid_fast_instance_wide.yaml, ..._deep_wide.yaml)
INSTANCE_WIDE = {**INSTANCE_FAST, "features": (16, 32, 64, 128, 256)}
INSTANCE_DEEP_WIDE = {**INSTANCE_FAST, "features": (8, 32, 64, 128, 256)}
INSTANCE_DEEP_WIDE_S16 = {
    **INSTANCE_DEEP_WIDE,
    "stem_spectral_kernel": 17,
    "stem_spectral_stride": 16,
    "stem_spectral_padding": 1,
}
#: the recipe study's group-norm arm (configs/baselines/hybrid_fast_group_norm.yaml)
GROUP_FAST = {**INSTANCE_FAST, "norm": ("group", {"num_groups": 4})}
#: the instance-norm fast encoder with a stem that reads every frame (kernel 9, padding 1 at stride 8)
INSTANCE_FAST_ALL_FRAMES = {**INSTANCE_FAST, "stem_spectral_kernel": 9, "stem_spectral_padding": 1}
INSTANCE_DEEP_WIDE_S16_SLIM = {**INSTANCE_DEEP_WIDE_S16, "decoder_features": (16, 64, 128, 256, 256)}
#: (label, network kind, constructor arguments). All models take (B, K, H, W) and give (B, 3, H, W).
MODELS: tuple[tuple[str, str, dict], ...] = (
    ("HybridUNet, shipped: fast encoder ((2+1)D, batch norm, channels-last, stem stride 8)", "hybrid", "FAST_ENCODER"),
    (
        "HybridUNet, wide hybrid ((2+1)D, instance norm, features 16-256, stem reading every frame; not shipped)",
        "hybrid",
        "WIDE_HYBRID",
    ),
    ("HybridUNet, full 3D encoder (class defaults; shipped up to 0.3.0)", "hybrid", {}),
    ("HybridUNet, fast encoder with instance norm (recipe study)", "hybrid", dict(INSTANCE_FAST)),
    ("HybridUNet, fast encoder with group norm (recipe study)", "hybrid", dict(GROUP_FAST)),
    (
        "HybridUNet, fast encoder with instance norm, stem reading every frame (recipe study)",
        "hybrid",
        dict(INSTANCE_FAST_ALL_FRAMES),
    ),
    ("HybridUNet, fast encoder with instance norm, twice the channels (recipe study)", "hybrid", dict(INSTANCE_WIDE)),
    (
        "HybridUNet, fast encoder with instance norm, twice the channels below full resolution (recipe study)",
        "hybrid",
        dict(INSTANCE_DEEP_WIDE),
    ),
    (
        "HybridUNet, fast encoder with instance norm, twice the channels below full resolution, stem stride 16"
        " (recipe study)",
        "hybrid",
        dict(INSTANCE_DEEP_WIDE_S16),
    ),
    (
        "HybridUNet, fast encoder with instance norm, deep-wide, stem stride 16, 256-channel bottleneck (recipe study)",
        "hybrid",
        dict(INSTANCE_DEEP_WIDE_S16_SLIM),
    ),
    ("HybridUNet, plain 3D blocks (no multi-scale residual)", "hybrid", {"multiscale_residual": False}),
    ("HybridUNet, mean instead of attention pooling", "hybrid", {"attention_pooling": False}),
    ("HybridUNet, mean instead of spectral compression", "hybrid", {"spectral_compression": False}),
    (
        "nnU-Net-style 2D (DynUNet, planned for 128x128, as trained)",
        "nnunet2d",
        {"in_channels": 64, "patch_size": (128, 128)},
    ),
    ("nnU-Net-style 2D (DynUNet, planned for 256x256)", "nnunet2d", {"in_channels": 64, "patch_size": (256, 256)}),
    ("3D-UNet (BasicUNet 16-256) + spectral head", "unet3d", {}),
)
DEFAULT_MODEL, WIDE_HYBRID_MODEL, FULL_MODEL, REFERENCE_MODEL = MODELS[0][0], MODELS[1][0], MODELS[2][0], MODELS[-1][0]
#: the nnU-Net-style network the latency target compares with: the one the benchmark trains (128x128 plan)
NNUNET_MODEL = next(label for label, kind, kw in MODELS if kind == "nnunet2d" and kw["patch_size"] == (128, 128))
#: the recipe study's networks (their rows give the study table's latency column)
RECIPE_STUDY_MODELS = tuple(label for label, _, _ in MODELS if label.endswith("(recipe study)"))
#: also timed in ONNX Runtime (the CPU default backend, scripts.networks.onnx_runtime) at the largest size, full runs
ONNX_MODELS = (DEFAULT_MODEL, WIDE_HYBRID_MODEL, FULL_MODEL, *RECIPE_STUDY_MODELS, NNUNET_MODEL)
#: profiled in ONNX Runtime (largest size): the share of the time and of the MACs at full resolution
PROFILE_MODELS = (DEFAULT_MODEL, WIDE_HYBRID_MODEL, NNUNET_MODEL)
#: a --quick run (a smoke run of the section) measures only the models the targets paragraph compares
QUICK_MODELS = (DEFAULT_MODEL, FULL_MODEL, NNUNET_MODEL, REFERENCE_MODEL)  # the wide hybrid: full runs only
#: latency targets against the nnU-Net-style network (ratio) and against the model's own FLOP-bound time
TARGET_NNUNET_RATIO, TARGET_FLOP_BOUND_RATIO = 1.0, 2.0
SGEMM_SIZE, SGEMM_REPEATS = 2048, 10
SIZES_FULL = ((256, 256, 64), (512, 512, 64))
SIZES_QUICK = ((256, 256, 64),)
MEMORY_LIMIT_GIB = 18
TARGET_LATENCY_S, TARGET_FRACTION, TARGET_WEIGHTS_MB = 4.0, 1 / 3, 20.0
#: below this CPU share (CPU seconds per wall second per torch thread) a timing is flagged as contended
BUSY_CPU_SHARE = 0.8
RETRY_WAIT_S = 20


def build_model(kind: str, kwargs: dict | str):
    """Construct one of the benchmarked networks (imported here so the parent process stays light).

    ``kwargs`` is a dict of constructor arguments or the name of a constant of :mod:`scripts.networks`
    holding them (``"FAST_ENCODER"``), so the table follows the constant.
    """
    import scripts.networks
    from scripts.networks import HybridUNet, NNUNetStyle2D, UNet3DSpectral

    if isinstance(kwargs, str):
        kwargs = dict(getattr(scripts.networks, kwargs))

    factories = {"hybrid": HybridUNet, "nnunet2d": NNUNetStyle2D, "unet3d": UNet3DSpectral}
    if kind not in factories:
        raise ValueError(f"unknown network kind {kind!r}; choose one of {sorted(factories)}.")
    return factories[kind](**kwargs)


def _maxrss_bytes() -> int:
    """This process's peak RSS: ``VmHWM`` where /proc has it (it starts afresh at exec), else ``ru_maxrss`` --
    which Linux carries over fork and exec, so a spawned child of a large parent would report the parent's peak."""
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _proc_status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _count_macs(model, x):
    """Run ``model(x)`` once and return (output, multiply–accumulates of its conv/linear layers, those of them whose
    output has the input's spatial size (H, W): the full-resolution ones).

    MACs of a convolution = output elements x kernel volume x in_channels / groups; of a transposed
    convolution = input elements x kernel volume x out_channels / groups; of a linear layer =
    output elements x in_features. Normalisation, activations, pooling and the attention weighting
    are not counted.
    """
    import torch

    total, full = [0], [0]

    def hook(module, inputs, output):
        kernel_volume = 1
        for k in getattr(module, "kernel_size", ()):
            kernel_volume *= k
        if isinstance(module, torch.nn.Linear):
            macs = output.numel() * module.in_features
        elif isinstance(module, torch.nn.modules.conv._ConvTransposeNd):
            macs = inputs[0].numel() * kernel_volume * module.out_channels // module.groups
        else:
            macs = output.numel() * kernel_volume * module.in_channels // module.groups
        total[0] += macs
        if tuple(output.shape[-2:]) == tuple(x.shape[-2:]):
            full[0] += macs

    layer_types = (torch.nn.modules.conv._ConvNd, torch.nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layer_types)]
    try:
        out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return out, total[0], full[0]


def sgemm_peak_gflops(size: int = SGEMM_SIZE, repeats: int = SGEMM_REPEATS) -> float:
    """The machine's float32 matrix-multiply rate (GFLOP/s, best of ``repeats``) with torch's threads.

    A square ``size``x``size`` product is the most FLOP-efficient thing the CPU does; a network's
    FLOP-bound time is its floating-point operations (2 per multiply–accumulate) at this rate.
    """
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def measure(kind: str, kwargs: dict | str, size: tuple[int, int, int], repeats: int) -> dict:
    """Measure one model at one input size ``(H, W, K)``; meant to run in a fresh subprocess."""
    import torch

    vm_size = _proc_status_bytes("VmSize")
    if vm_size is not None:
        limit = vm_size + MEMORY_LIMIT_GIB * 2**30
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    h, w, k = size
    torch.manual_seed(0)
    model = build_model(kind, kwargs).eval()
    result: dict = {"parameters": sum(p.numel() for p in model.parameters())}
    x = torch.randn(1, k, h, w)
    gc.collect()
    rss_before = _proc_status_bytes("VmRSS") or _maxrss_bytes()
    try:
        with torch.inference_mode():
            start = time.perf_counter()
            out, macs, _ = _count_macs(model, x)
            result["first_pass_s"] = time.perf_counter() - start
            result["peak_memory_mib"] = max(_maxrss_bytes() - rss_before, 0) / 2**20
            result["gmacs"] = macs / 1e9
            result["output_shape"] = list(out.shape)
            del out
            times = []
            cpu_start = time.process_time()
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
            cpu_time = time.process_time() - cpu_start
        result["latency_s"] = statistics.median(times)
        result["latency_runs_s"] = times
        # CPU time this process got per wall-clock second per torch thread: ~1 on an idle machine,
        # clearly lower when other processes compete for the cores (then the latency is inflated)
        result["cpu_share"] = cpu_time / (sum(times) * torch.get_num_threads())
    except (RuntimeError, MemoryError) as error:  # allocation beyond the address-space cap
        result["error"] = f"does not fit in {MEMORY_LIMIT_GIB} GiB ({type(error).__name__}: {str(error)[:120]})"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.pt")
        torch.save(model.state_dict(), path)
        result["weights_mb"] = os.path.getsize(path) / 1e6
    return result


def measure_onnx(kind: str, kwargs: dict | str, size: tuple[int, int, int], repeats: int) -> dict:
    """Forward latency of one model exported to ONNX (``scripts.networks.onnx_export``) in ONNX Runtime on the CPU,
    as ``--backend onnxruntime`` runs it (torch's thread count, spinning off); meant for a fresh subprocess."""
    import numpy as np
    import torch

    try:
        from scripts.networks.onnx_export import INPUT_NAME
        from scripts.networks.onnx_runtime import OnnxRuntimeNetwork

        h, w, k = size
        torch.manual_seed(0)
        # the backend's own session: an in-memory export, torch's thread count, idle threads not spinning
        session = OnnxRuntimeNetwork(build_model(kind, kwargs).eval(), spinning=False).session
    except Exception as error:  # no onnxruntime/onnxscript, or a network the exporter cannot translate
        return {"onnx_error": f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"}
    x = np.random.default_rng(0).standard_normal((1, k, h, w), dtype=np.float32)
    session.run(None, {INPUT_NAME: x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {INPUT_NAME: x})
        times.append(time.perf_counter() - start)
    return {"onnx_latency_s": statistics.median(times)}


def profile_onnx(kind: str, kwargs: dict | str, size: tuple[int, int, int]) -> dict:
    """Where one ONNX Runtime forward pass spends its time: the share of the nodes' summed kernel time (ONNX Runtime's
    own profiler, one pass after a warm-up) spent in nodes whose output has the full field's size (H, W), next to the
    share of the multiply-accumulates done at full resolution (:func:`_count_macs`); meant for a fresh subprocess."""
    import json

    import numpy as np
    import torch

    try:
        import onnxruntime as ort
        from scripts.networks.onnx_export import INPUT_NAME, export_onnx

        h, w, k = size
        torch.manual_seed(0)
        model = build_model(kind, kwargs).eval()
        x = torch.randn(1, k, h, w)
        with torch.inference_mode():
            _, macs, full_macs = _count_macs(model, x)
        onnx_model = export_onnx(model, frames=k, verify=False, log=False)
    except Exception as error:
        return {"profile_error": f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"}
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "profile")
        session = ort.InferenceSession(onnx_model, sess_options=options, providers=["CPUExecutionProvider"])
        feed = {INPUT_NAME: x.numpy().astype(np.float32)}
        session.run(None, feed)
        session.run(None, feed)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    # the second pass: the kernel events after the last "model_run" of the warm-up
    runs = [e for e in events if e.get("name") == "model_run"]
    after = runs[-1]["ts"] if runs else 0
    total = full = 0.0
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < after:
            continue
        shapes = [next(iter(d.values())) for d in e.get("args", {}).get("output_type_shape", [])]
        total += e["dur"]
        if shapes and len(shapes[0]) >= 2 and tuple(shapes[0][-2:]) == (h, w):
            full += e["dur"]
    return {
        "onnx_full_res_time_share": full / total if total else None,
        "full_res_mac_share": full_macs / macs if macs else None,
    }


def _in_subprocess(function, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _measure_in_subprocess(kind: str, kwargs: dict | str, size: tuple[int, int, int], repeats: int) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        try:
            return pool.submit(measure, kind, kwargs, size, repeats).result()
        except BrokenProcessPool:
            return {"error": "the measuring process was killed (most likely out of memory)"}


def measure_least_contended(
    kind: str, kwargs: dict | str, size: tuple[int, int, int], repeats: int, attempts: int
) -> dict:
    """Measure up to ``attempts`` times while other processes compete for the CPU; keep the least contended run."""
    best: dict = {}
    for attempt in range(attempts):
        if attempt > 0:
            print(f"[model_cost]   CPU share {best['cpu_share']:.2f}: the machine is busy, measuring again", flush=True)
            time.sleep(RETRY_WAIT_S)
        result = _measure_in_subprocess(kind, kwargs, size, repeats)
        result["attempts"] = attempt + 1
        if not best or result.get("cpu_share", 0.0) > best.get("cpu_share", 0.0):
            best = result
        if "cpu_share" not in best or best["cpu_share"] >= BUSY_CPU_SHARE:
            break
    return best


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _targets_paragraph(rows: list[dict]) -> tuple[str, dict]:
    """State, from the measured numbers, whether the default model meets the size and speed targets."""
    by_key = {(r["model"], r["size"]): r for r in rows}
    size = max((r["size"] for r in rows), key=lambda s: s[0] * s[1])
    hybrid, reference = by_key.get((DEFAULT_MODEL, size), {}), by_key.get((REFERENCE_MODEL, size), {})
    verdicts = {True: "met", False: "**not met**", None: "undecided"}
    checks: dict[str, bool | None] = {}
    # the original targets concern the shipped model; the latency-ratio targets the shipped network, the wide hybrid
    # (the recipe study's most accurate hybrid, retrained on the shipped data) and the full encoder (shipped up to 0.3.0)
    parts = []

    weights = hybrid.get("weights_mb")
    checks["weights"] = None if weights is None else weights < TARGET_WEIGHTS_MB
    parts.append(
        f"weights {_fmt(weights, '.1f')} MB (target < {TARGET_WEIGHTS_MB:.0f} MB): {verdicts[checks['weights']]}"
    )
    for key, unit, name in (("latency_s", "s", "forward latency"), ("peak_memory_mib", "MiB", "peak memory")):
        mine, theirs = hybrid.get(key), reference.get(key)
        if mine is None:
            checks[key] = None
            parts.append(f"{name} not measured ({hybrid.get('error', 'no run')})")
            continue
        if theirs is not None:
            relative_ok: bool | None = mine <= TARGET_FRACTION * theirs
            relative = f"{mine / theirs:.1%} of the 3D-UNet's {theirs:.2f} {unit}"
        else:  # the 3D-UNet could not run: it did not fit, so any measured hybrid is far below it
            relative_ok = True if "error" in reference else None
            relative = f"3D-UNet: {reference.get('error', 'not measured')}"
        target = "target ≤ 33% of the 3D-UNet"
        if key == "latency_s":
            relative_ok = None if relative_ok is None else relative_ok and mine < TARGET_LATENCY_S
            target += f" and < {TARGET_LATENCY_S:.0f} s"
        checks[key] = relative_ok
        parts.append(f"{name} {mine:.2f} {unit} = {relative} ({target}): {verdicts[relative_ok]}")

    def latency_checks(ratio_nnunet: float | None, ratio_bound: float | None) -> tuple[bool | None, bool | None]:
        """The two latency-ratio targets (None: not measured)."""
        ok_nnunet = None if ratio_nnunet is None else ratio_nnunet <= TARGET_NNUNET_RATIO
        ok_bound = None if ratio_bound is None else ratio_bound <= TARGET_FLOP_BOUND_RATIO
        return ok_nnunet, ok_bound

    nnunet = by_key.get((NNUNET_MODEL, size), {})
    for label, name in (
        (DEFAULT_MODEL, "shipped"),
        (WIDE_HYBRID_MODEL, "wide hybrid"),
        (FULL_MODEL, "full 3D encoder"),
    ):
        row = by_key.get((label, size), {})
        ratio_nnunet, ratio_bound = row.get("nnunet_ratio"), row.get("flop_bound_ratio")
        ok_nnunet, ok_bound = latency_checks(ratio_nnunet, ratio_bound)
        checks[f"{name}_vs_nnunet"], checks[f"{name}_vs_flop_bound"] = ok_nnunet, ok_bound
        parts.append(
            f"{name} HybridUNet latency {_fmt(row.get('latency_s'), '.2f')} s = {_fmt(ratio_nnunet, '.2f')}× the "
            f"nnU-Net-style network's {_fmt(nnunet.get('latency_s'), '.2f')} s (target ≤ {TARGET_NNUNET_RATIO:.1f}×): "
            f"{verdicts[ok_nnunet]}, and {_fmt(ratio_bound, '.1f')}× its FLOP-bound time "
            f"(target ≤ {TARGET_FLOP_BOUND_RATIO:.0f}×): {verdicts[ok_bound]}"
        )

    # the same two targets on the CPU default backend (full runs time the shipped network in ONNX Runtime too)
    row = by_key.get((DEFAULT_MODEL, size), {})
    if row.get("onnx_latency_s") is not None:
        ratio_nnunet, ratio_bound = row.get("onnx_nnunet_ratio"), row.get("onnx_flop_bound_ratio")
        ok_nnunet, ok_bound = latency_checks(ratio_nnunet, ratio_bound)
        checks["shipped_onnx_vs_nnunet"], checks["shipped_onnx_vs_flop_bound"] = ok_nnunet, ok_bound
        parts.append(
            f"in ONNX Runtime (the CPU default backend) the shipped HybridUNet takes {row['onnx_latency_s']:.2f} s = "
            f"{_fmt(ratio_nnunet, '.2f')}× the nnU-Net-style network's {_fmt(nnunet.get('onnx_latency_s'), '.2f')} s: "
            f"{verdicts[ok_nnunet]}, and {_fmt(ratio_bound, '.1f')}× its FLOP-bound time: {verdicts[ok_bound]}"
        )
    measured = [r for r in rows if r["size"] == size and r.get("flop_bound_ratio")]
    if measured:
        best = min(measured, key=lambda r: r["flop_bound_ratio"])
        parts.append(
            f"for scale, the most FLOP-efficient network here, {best['model']}, runs at "
            f"{best['flop_bound_ratio']:.1f}× its FLOP-bound time ({best['gflops']:.0f} GFLOP/s)"
        )
    all_met = all(v is True for v in checks.values())
    text = f"**Targets** (shipped HybridUNet at {size[0]}×{size[1]}×{size[2]}, batch 1, this CPU): " + "; ".join(parts)
    text += ". " + ("All targets are met." if all_met else "Not all targets are met.")
    if tuple(size) != (512, 512, 64):
        text += " (Quick run: the targets are defined at 512×512×64; run without `--quick` to decide them.)"
    return text, {"size": list(size), **checks, "all_met": all_met}


def run(quick: bool) -> SectionResult:
    sizes, repeats, attempts = (SIZES_QUICK, 1, 1) if quick else (SIZES_FULL, 3, 3)
    rows = []
    peak = max(_in_subprocess(sgemm_peak_gflops) for _ in range(2 if quick else 3))
    print(f"[model_cost] sgemm peak {peak:.1f} GFLOP/s", flush=True)
    for size in sizes:
        for label, kind, kwargs in MODELS:
            if quick and label not in QUICK_MODELS:
                continue
            print(f"[model_cost] {label} at {size[0]}x{size[1]}x{size[2]} ...", flush=True)
            result = measure_least_contended(kind, kwargs, size, repeats, attempts)
            if not quick and label in ONNX_MODELS and size == sizes[-1]:
                print("[model_cost]   ... and in ONNX Runtime", flush=True)
                result.update(_in_subprocess(measure_onnx, kind, kwargs, size, repeats))
            if not quick and label in PROFILE_MODELS and size == sizes[-1]:
                print("[model_cost]   ... and where ONNX Runtime's time goes", flush=True)
                result.update(_in_subprocess(profile_onnx, kind, kwargs, size))
            rows.append({"model": label, "kind": kind, "kwargs": kwargs, "size": size, "repeats": repeats, **result})
    return report(rows, peak, repeats)


def report(rows: list[dict], peak: float, repeats: int) -> SectionResult:
    """The section's tables and notes from its measured ``rows`` (also to re-render them from docs/results.json)."""
    for row in rows:
        nnunet = next((r for r in rows if r["model"] == NNUNET_MODEL and r["size"] == row["size"]), {})
        if row.get("latency_s") and row.get("gmacs"):
            row["gflops"] = 2 * row["gmacs"] / row["latency_s"]
            row["flop_bound_s"] = 2 * row["gmacs"] / peak
            row["flop_bound_ratio"] = row["latency_s"] / row["flop_bound_s"]
            if nnunet.get("latency_s"):
                row["nnunet_ratio"] = row["latency_s"] / nnunet["latency_s"]
        if row.get("onnx_latency_s") and nnunet.get("onnx_latency_s"):
            row["onnx_nnunet_ratio"] = row["onnx_latency_s"] / nnunet["onnx_latency_s"]
        if row.get("onnx_latency_s") and row.get("flop_bound_s"):
            row["onnx_flop_bound_ratio"] = row["onnx_latency_s"] / row["flop_bound_s"]
    header = [
        "model",
        "input H×W×K",
        "parameters",
        "weights (MB)",
        "GMACs",
        "latency (s, median)",
        "× nnU-Net-style latency",
        "achieved GFLOP/s",
        "× FLOP-bound time",
        "peak memory (MiB)",
        "ONNX Runtime latency (s; × nnU-Net-style's; × FLOP-bound time)",
    ]

    def onnx_cell(r: dict) -> str:
        if "onnx_error" in r:
            return f"not exported ({r['onnx_error']})"
        if r.get("onnx_latency_s") is None:
            return "–"
        return (
            f"{r['onnx_latency_s']:.2f} ({_fmt(r.get('onnx_nnunet_ratio'), '.2f')}×; "
            f"{_fmt(r.get('onnx_flop_bound_ratio'), '.1f')}×)"
        )

    table_rows = [
        [
            r["model"],
            f"{r['size'][0]}×{r['size'][1]}×{r['size'][2]}",
            _fmt(r.get("parameters"), ","),
            _fmt(r.get("weights_mb"), ".1f"),
            _fmt(r.get("gmacs"), ".1f"),
            _fmt(r.get("latency_s"), ".2f") if "error" not in r else r["error"],
            _fmt(r.get("nnunet_ratio"), ".2f"),
            _fmt(r.get("gflops"), ".1f"),
            _fmt(r.get("flop_bound_ratio"), ".1f"),
            _fmt(r.get("peak_memory_mib"), ".0f"),
            onnx_cell(r),
        ]
        for r in rows
    ]
    busy = [r for r in rows if r.get("cpu_share", 1.0) < BUSY_CPU_SHARE]
    if busy:
        notes_busy = "Other processes competed for the CPU during " + ", ".join(
            f"{r['model']} at {r['size'][0]}×{r['size'][1]} (CPU share {r['cpu_share']:.2f})" for r in busy
        )
        notes_busy += "; their latencies are inflated -- rerun on an idle machine."
    else:
        notes_busy = f"Every timed run had the cores to itself (CPU share ≥ {BUSY_CPU_SHARE})."
    targets_text, targets = _targets_paragraph(rows)
    notes = (
        f"Batch 1, eval mode, `torch.inference_mode`, float32, default torch threads; latency is the median of "
        f"{repeats} timed forward pass(es) after one warm-up pass; peak memory is the growth of peak RSS during "
        "the warm-up pass over the RSS just before it, each model and size in a fresh process; weights are the "
        "float32 `state_dict` saved with `torch.save`; GMACs count convolution, transposed-convolution and "
        "linear layers only (hooks; MACs = output elements × kernel volume × in_channels / groups). "
        "The nnU-Net-style network takes the 64 frames as input channels; the one planned for 128×128 patches is "
        "the one the benchmark trains and the latency ratios refer to. "
        f"The machine's float32 matrix-multiply peak (torch.mm {SGEMM_SIZE}², best of {SGEMM_REPEATS}, best of "
        f"several fresh processes) is **{peak:.1f} GFLOP/s**; achieved GFLOP/s = 2 × MACs / latency, and the "
        "FLOP-bound time is 2 × MACs at that peak. "
        f"The shipped fast encoder is `scripts.networks.FAST_ENCODER` ({_kwargs_text('FAST_ENCODER')}); the wide "
        f"hybrid is `scripts.networks.WIDE_HYBRID` ({_kwargs_text('WIDE_HYBRID')})."
    )
    onnx_rows = [r for r in rows if r.get("onnx_nnunet_ratio") is not None and r["model"] != NNUNET_MODEL]
    if onnx_rows:
        notes += (
            " ONNX Runtime column (full runs, largest size): the same network exported as `--backend onnxruntime` "
            "exports it and run by ONNX Runtime on the CPU (torch's thread count, spinning off), median of the same "
            "number of passes after one warm-up; the ratio is to the nnU-Net-style network's ONNX Runtime latency. "
            "ONNX Runtime is the CPU default backend (`backend: auto`), so this is the latency a CPU user gets: "
            + "; ".join(f"{r['model']} {r['onnx_nnunet_ratio']:.2f}×" for r in onnx_rows)
            + "."
        )
    profiled = [r for r in rows if r.get("onnx_full_res_time_share") is not None]
    if profiled:
        notes += (
            " **Where the time goes** (ONNX Runtime's profiler, one pass at the largest size after a warm-up; share of "
            "the nodes' summed kernel time in nodes whose output has the full field's H×W, and share of the MACs done "
            "at full resolution): "
            + "; ".join(f"{r['model']}: {_profile_text(r)}" for r in profiled)
            + ". GFLOP/s estimated as 2 × MACs of the part / (ONNX Runtime latency × its time share). The hybrid's "
            "full-resolution level holds 8–16 channels per spectral position, nnU-Net-style's 32."
        )
    markdown = "\n\n".join([markdown_table(header, table_rows), notes + " " + notes_busy, targets_text])
    return SectionResult(markdown=markdown, data={"rows": rows, "targets": targets, "sgemm_peak_gflops": peak})


def _profile_text(row: dict) -> str:
    """``62 % of the time for 35 % of the MACs (≈ 28 GFLOP/s at full resolution, 84 elsewhere)``."""
    time_share, mac_share = row["onnx_full_res_time_share"], row["full_res_mac_share"]
    text = f"{100 * time_share:.0f} % of the time for {100 * mac_share:.0f} % of the MACs"
    latency, gmacs = row.get("onnx_latency_s"), row.get("gmacs")
    if latency and gmacs and 0 < time_share < 1:
        full = 2 * gmacs * mac_share / (latency * time_share)
        rest = 2 * gmacs * (1 - mac_share) / (latency * (1 - time_share))
        text += f" (≈ {full:.0f} GFLOP/s at full resolution, {rest:.0f} elsewhere)"
    return text


def _kwargs_text(name: str) -> str:
    """``encoder_conv=factorized, channels_last=True, ...``: the constructor arguments held by a constant of the networks."""
    import scripts.networks

    return ", ".join(f"{k}={v}" for k, v in getattr(scripts.networks, name).items())
