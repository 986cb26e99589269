"""The shipped weights on fresh seeds, per preset and scene type: ``python -m scripts.benchmark --sections shipped``.

``models/model.pt`` (whatever is committed) segments phantoms of every simulator preset drawn from
seeds that no training or validation set used (``SEED``), at the size the weights serve (512×512
by default), through the preprocessing of ``configs/inference.yaml``
(:class:`~scripts.transforms.array.SpectralResample` with the reference fill and the minimum
coverage, :class:`~scripts.transforms.array.NormalizeSpectralIntensity`, the same sliding-window
inferer). Each stack keeps the wavenumbers the simulator recorded (the ``randomized`` preset: its
own window, frame count, direction and digitiser). The tuned phasor (``configs/phasor_parameters.yaml``)
segments the same stacks. Scores: Dice per class against the simulator's exact label maps (a class
absent from both maps is left out of its mean), mean ± sd over stacks; the ``randomized`` rows are
also split by scene type (cells / tissue / organism); ``raw_spectral_focusing`` (pulse-overlap envelope, 8-bit) keeps
its true wavenumbers here (the envelope's effect alone; without wavenumbers: the envelope section).

Targets (issue 13, item 6) for the shipped weights: default ≥ 0.95 / 0.95, hard ≥ 0.88 / 0.85,
tissue ≥ 0.85 / 0.85 (nucleus / lipid droplet).
"""

from __future__ import annotations

import hashlib
import math
import os
import time

import numpy as np
from scripts.benchmarks import SectionResult, markdown_table, mean_sd

TITLE = "Shipped weights on fresh seeds: Dice per preset and scene type"
SEED = 20261128
PRESET_ORDER = ("easy", "default", "hard", "tissue", "randomized", "raw_spectral_focusing")
#: (nucleus, lipid droplet) Dice targets of the shipped weights (issue 13, item 6)
TARGETS: dict[str, tuple[float, float]] = {"default": (0.95, 0.95), "hard": (0.88, 0.85), "tissue": (0.85, 0.85)}
CLASSES = ("nucleus", "lipid_droplet")
WEIGHTS = os.path.join(os.path.dirname(__file__), "..", "..", "models", "model.pt")
#: ``configs/inference.yaml`` ids to override for the network (empty: the shipped network, as the config builds it)
NETWORK_OVERRIDES: dict = {}


def _segmenters():
    import torch
    from monai.data import MetaTensor
    from scripts.benchmarks.bundle_runs import inference_inferer, inference_network
    from scripts.phasor.parameters import load_parameters
    from scripts.phasor.segmenter import PhasorSegmenter
    from scripts.transforms.array import NormalizeSpectralIntensity, SpectralResample

    network = inference_network(**NETWORK_OVERRIDES)  # as configs/inference.yaml builds it
    network.load_state_dict(torch.load(WEIGHTS, map_location="cpu"))
    network.eval()
    inferer = inference_inferer()  # configs/inference.yaml's window, overlap and blending
    resample, normalise = SpectralResample(), NormalizeSpectralIntensity()
    phasor = PhasorSegmenter(load_parameters())

    def network_labels(stack: np.ndarray, wn: np.ndarray) -> np.ndarray:
        img = MetaTensor(torch.from_numpy(np.ascontiguousarray(stack)), meta={"filename_or_obj": "benchmark"})
        img = normalise(resample(img, wn))
        with torch.inference_mode():
            return inferer(img[None].as_tensor(), network)[0].argmax(0).numpy()

    def phasor_labels(stack: np.ndarray, wn: np.ndarray) -> np.ndarray:
        return phasor.segment(stack, wn).labels

    return network_labels, phasor_labels


def score(num: int, size: int) -> dict:
    """Dice of the shipped network and the tuned phasor per preset (fresh seeds), and seconds per stack."""
    from scripts.phasor.fit import dice_per_class
    from scripts.simulation.phantom import simulate_phantom

    network_labels, phasor_labels = _segmenters()
    out: dict = {}
    for p_index, preset in enumerate(PRESET_ORDER):
        cases = []
        for i in range(num):
            ph = simulate_phantom(np.random.default_rng([SEED, p_index, i]), size, size, preset=preset)
            started = time.perf_counter()
            net = dice_per_class(network_labels(ph.stack, ph.wavenumbers), ph.labels)
            seconds = time.perf_counter() - started
            pha = dice_per_class(phasor_labels(ph.stack, ph.wavenumbers), ph.labels)
            cases.append({"scene": ph.params["scene"], "network": net, "phasor": pha, "network_s": seconds})
        out[preset] = cases
    return out


def _summary(cases: list[dict]) -> dict:
    return {
        method: {cls: mean_sd(c[method][cls] for c in cases) for cls in CLASSES} for method in ("network", "phasor")
    }


def _cell(d: dict) -> str:
    return "–" if math.isnan(d["mean"]) else f"{d['mean']:.3f} ± {d['sd']:.3f}"


def run(quick: bool = False) -> SectionResult:
    """Score the shipped weights and the tuned phasor on fresh seeds of every preset."""
    num, size = (1, 128) if quick else (8, 512)
    with open(WEIGHTS, "rb") as f:
        digest = hashlib.md5(f.read()).hexdigest()
    results = score(num, size)
    groups: dict[str, list[dict]] = {}
    for preset in PRESET_ORDER:
        groups[preset] = results[preset]
        if preset == "randomized":
            for scene in ("cells", "tissue", "organism"):
                sub = [c for c in results[preset] if c["scene"] == scene]
                if sub:
                    groups[f"randomized ({scene} fields)"] = sub
    summary = {name: _summary(cases) for name, cases in groups.items()}
    rows, verdicts = [], []
    for name, s in summary.items():
        target = TARGETS.get(name)
        met = None
        if target:
            met = all(s["network"][c]["mean"] >= t for c, t in zip(CLASSES, target, strict=True))
            verdicts.append((name, met))
        rows.append(
            [
                name,
                len(groups[name]),
                _cell(s["network"]["nucleus"]),
                _cell(s["network"]["lipid_droplet"]),
                _cell(s["phasor"]["nucleus"]),
                _cell(s["phasor"]["lipid_droplet"]),
                "–" if target is None else f"{target[0]:.2f} / {target[1]:.2f}: **{'met' if met else 'missed'}**",
            ]
        )
    seconds = [c["network_s"] for cases in results.values() for c in cases]
    table = markdown_table(
        [
            "preset",
            "stacks",
            "hybrid-UNet nucleus",
            "hybrid-UNet lipid droplet",
            "tuned phasor nucleus",
            "tuned phasor lipid droplet",
            "target (nucleus / droplet)",
        ],
        rows,
    )
    markdown = f"""Shipped weights `models/model.pt` (md5 `{digest}`) on {num} fresh phantoms per preset
({size}×{size} px, seeds `[{SEED}, preset, i]`, never used for training or validation), through the
inference preprocessing; the tuned phasor on the same stacks. Dice mean ± sd over stacks. Median
network time {np.median(seconds):.1f} s per stack (resample, normalise, sliding window; CPU, shared machine).
Regenerate: `python -m scripts.benchmark --sections shipped`.

{table}
"""
    data = {
        "weights_md5": digest,
        "num": num,
        "size": size,
        "summary": summary,
        "targets": {k: list(v) for k, v in TARGETS.items()},
        "verdicts": dict(verdicts),
        "median_network_s": float(np.median(seconds)),
        "cases": results,  # per stack: scene, Dice of both methods, network seconds
    }
    return SectionResult(markdown=markdown, data=data)
