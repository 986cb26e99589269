"""The bundle's benchmark: ``python -m scripts.benchmark [--sections ...] [--quick]``.

Every table in ``docs/results.md`` is written by this script; rerun it to regenerate them. Each
section lives in :mod:`scripts.benchmarks` and is written between ``<!-- begin:NAME -->`` and
``<!-- end:NAME -->`` markers, so running a subset of sections leaves the others untouched.
The machine, versions, date and exact command are recorded with every section.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import inspect
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from scripts.benchmarks import SECTIONS
from scripts.io.atomic import atomic_path

REPO = Path(__file__).resolve().parent.parent
RESULTS_MD = REPO / "docs" / "results.md"
WEIGHTS_FILE = REPO / "models" / "model.pt"
METADATA = REPO / "configs" / "metadata.json"
#: paths whose uncommitted changes mark a measurement as not of the recorded commit
CODE_PATHS = ("scripts", "configs", "models")
#: what a section's networks are (its module's ``WEIGHTS_USED``; ``shipped`` when it sets none), in words
WEIGHTS_USED = {
    "shipped": None,  # the shipped weights: their version and md5
    "own": "trains its own networks (not `models/model.pt`)",
    "untrained": "untrained networks (architecture cost; no trained weights)",
    "none": "no network",
}
MODEL_CARD = RESULTS_MD.parent / "README.md"
QUICK_MD = RESULTS_MD.parent.parent / "outputs" / "benchmark_quick" / "results.md"
HEADER = """# Benchmark results

Every number below was measured by `python -m scripts.benchmark` on the committed code; each
section states the command that produced it, the machine, the library versions, the weights it used
and the commit it was measured on. Regenerate a section with `python -m scripts.benchmark --sections NAME`.
A section measured with older weights than the shipped ones says so under its header, and is listed under
the summary table.
"""


def environment() -> dict:
    """Machine and library versions, recorded next to every measurement."""
    import numpy
    import torch

    try:
        import monai

        monai_version = monai.__version__
    except ImportError:  # pragma: no cover - monai is a hard requirement of the bundle
        monai_version = "not installed"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai_version,
        "numpy": numpy.__version__,
    }


def shipped_weights(weights: Path = WEIGHTS_FILE, metadata: Path = METADATA) -> dict:
    """The shipped weights: the bundle version of ``configs/metadata.json`` and the md5 of ``models/model.pt``."""
    version = json.loads(metadata.read_text()).get("version", "unknown") if metadata.exists() else "unknown"
    md5 = hashlib.md5(weights.read_bytes()).hexdigest() if weights.exists() else "missing"
    return {"version": version, "md5": md5}


def code_version(repo: Path = REPO) -> dict:
    """``{"commit", "uncommitted"}``: the short HEAD commit, and whether tracked files under :data:`CODE_PATHS`
    differ from it (untracked files are not counted); ``commit`` is ``"unknown"`` outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "uncommitted": False}
    return {"commit": commit, "uncommitted": any(line.strip() for line in status.splitlines())}


def section_weights(module, shipped: dict) -> dict:
    """What the section's networks were: ``{"used": ..., "version", "md5"}`` (the shipped weights at the time)."""
    used = getattr(module, "WEIGHTS_USED", "shipped")
    if used not in WEIGHTS_USED:
        raise ValueError(f"{module.__name__}.WEIGHTS_USED = {used!r}: not one of {sorted(WEIGHTS_USED)}")
    return {"used": used, **shipped}


def weights_words(weights: dict | None) -> str:
    """The weights of a section in words: version and md5 of the shipped weights, or what it used instead."""
    if not weights:
        return "not recorded"
    if weights.get("used", "shipped") == "shipped":
        return f"{weights['version']} (`models/model.pt` md5 `{weights['md5']}`)"
    return WEIGHTS_USED[weights["used"]]


def commit_words(env: dict) -> str:
    """The commit a section was measured on; for rows recorded before the harness noted it (``commit_is:
    "results"``), the commit that recorded them (found afterwards in the history of docs/results.md)."""
    commit = env.get("commit")
    if not commit:
        return "not recorded"
    if env.get("commit_is") == "results":
        return f"not recorded (results committed in `{commit}`)"
    return f"`{commit}`" + (" + uncommitted changes" if env.get("uncommitted") else "")


def _env_line(env: dict) -> str:
    return (
        f"_Measured {env['date']} on {env['cpu']} ({env['cores']} cores, {env['torch_threads']} torch threads); "
        f"Python {env['python']}, torch {env['torch']}, MONAI {env['monai']}, NumPy {env['numpy']}. "
        f"Weights: {weights_words(env.get('weights'))}. Commit: {commit_words(env)}. "
        f"Command: `{env['command']}`._"
    )


def update_markdown(text: str, name: str, block: str, first: bool = False) -> str:
    """Replace (or append) the delimited block of section ``name`` in ``text``; ``first``: a new block goes
    before the first other block (after the file's header) instead of at the end."""
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    new = f"{begin}\n{block.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: new, text)
    at = text.find("<!-- begin:") if first else -1
    if at >= 0:
        return text[:at] + new + "\n\n" + text[at:]
    return text.rstrip() + "\n\n" + new + "\n"


# ----------------------------------------------------------------------------------- the summary block

SUMMARY = "summary"  #: the marker name of the summary block at the top of the results file


def github_anchor(title: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation and symbols dropped (letters, marks,
    digits, ``_`` and ``-`` kept), spaces turned into hyphens."""
    import unicodedata

    kept = (c for c in title.strip().lower() if c in " -_" or unicodedata.category(c)[0] in "LMN")
    return "".join(kept).replace(" ", "-")


def section_titles(text: str) -> dict[str, str]:
    """``{section: its ## heading}`` of the blocks in a results file."""
    return dict(re.findall(r"<!-- begin:(\w+) -->\s*\n## (.+)", text))


#: how a section's block says that it was not regenerated since its weights or code changed
NOT_REGENERATED = r"not (yet )?regenerated for"


def _block(text: str, name: str) -> str:
    found = re.search(rf"<!-- begin:{name} -->(.*?)<!-- end:{name} -->", text, re.DOTALL)
    return found.group(1) if found else ""


def _d(x: float) -> str:
    return f"{x:.3f}"


def _pair(scores: dict, key=lambda v: v["mean"]) -> str:
    return f"{_d(key(scores['nucleus']))} / {_d(key(scores['lipid_droplet']))}"


def _shipped(sec: dict) -> list[tuple[str, str]]:
    names = {"raw_spectral_focusing": "raw spectral focusing"}
    summary, targets, verdicts = sec["summary"], sec.get("targets", {}), sec.get("verdicts", {})
    with_target, without = [], []
    for preset, methods in summary.items():
        if "(" in preset:  # scene-type rows of the randomized preset
            continue
        text = f"{names.get(preset, preset)} {_pair(methods['network'])}"
        if preset in targets:
            target = " / ".join(f"{t:.2f}" for t in targets[preset])
            with_target.append(f"{text} (target {target}: {'met' if verdicts.get(preset) else '**missed**'})")
        else:
            without.append(text)
    what = f"{sec['num']} fresh {sec['size']}² phantoms per preset"
    return [
        (f"Shipped weights: Dice nucleus / lipid droplet, presets with a target ({what})", "; ".join(with_target)),
        (f"Shipped weights: Dice nucleus / lipid droplet, other presets ({what})", "; ".join(without)),
    ]


def _comparison(sec: dict) -> list[tuple[str, str]]:
    try:
        from scripts.benchmarks.comparison import MODELS

        labels = {m.key: m.label for m in MODELS}
    except ImportError:  # pragma: no cover - the module is part of the package
        labels = {}
    summary, parts = sec["summary"], []
    for key, label in (("hybrid_gt", labels.get("hybrid", "hybrid-UNet")), ("nnunet_2d_gt", "nnU-Net-style 2D")):
        if key in summary:
            parts.append(f"{label} {_pair(summary[key]['all']['gt'], lambda v: v['dice']['mean'])}")
    if "phasor_tuned" in summary:
        parts.append(f"tuned phasor {_pair(summary['phasor_tuned']['all']['gt'], lambda v: v['dice']['mean'])}")
    n = summary[next(iter(summary))]["all"]["gt"]["nucleus"]["dice"]["n"]
    return [
        (
            f"Networks trained from scratch on one budget vs the phasor: Dice nucleus / droplet ({n} test stacks)",
            "; ".join(parts),
        )
    ]


def _recipes(sec: dict) -> list[tuple[str, str]]:
    arms = {k: a for k, a in sec["arms"].items() if "pooled" in a}
    parts = [f"{arms[k]['label']} {_pair(arms[k]['pooled'])}" for k in ("hybrid_fast", "nnunet_2d_recipe") if k in arms]
    best = max(arms.values(), key=lambda a: a["pooled"]["nucleus"]["mean"] + a["pooled"]["lipid_droplet"]["mean"])
    parts.append(f"best arm: {best['label']} {_pair(best['pooled'])}")
    n = best["pooled"]["nucleus"]["n"]
    return [
        (
            f"Recipe study, every arm trained here on one budget: Dice nucleus / droplet ({n} test stacks)",
            "; ".join(parts),
        )
    ]


def _model_cost(sec: dict) -> list[tuple[str, str]]:
    rows = [r for r in sec["rows"] if r.get("size", [0])[0] == max(r.get("size", [0])[0] for r in sec["rows"])]
    shipped = next(r for r in rows if "shipped" in r["model"])
    nnunet = next(r for r in rows if r["model"].startswith("nnU-Net"))
    side = shipped["size"][0]

    def both(r):
        onnx = r.get("onnx_latency_s")
        return f"{r['latency_s']:.2f} s" + (f" / {onnx:.2f} s" if onnx else "")

    return [
        (
            f"Network latency per {side}² × {shipped['size'][2]} window, CPU (PyTorch / ONNX Runtime)",
            f"shipped hybrid-UNet {both(shipped)}; nnU-Net-style 2D {both(nnunet)}",
        )
    ]


def _phasor(sec: dict) -> list[tuple[str, str]]:
    acc = sec["accuracy"]
    parts = [f"{p} {_pair(v['tuned'])}" for p, v in acc.items() if "tuned" in v]
    t = sec["timing"].get("nii.gz", {})
    return [
        (
            "Optimized phasor (tuned): Dice nucleus / droplet; seconds per 512² stack",
            "; ".join(parts)
            + (f"; {t['segment']:.2f} s to segment, {t['end_to_end']:.2f} s end to end (.nii.gz)" if t else ""),
        )
    ]


def _throughput(sec: dict) -> list[tuple[str, str]]:
    name, run = next(iter(sec["runs"].items()))  # the first setting: what inference.yaml ships
    value = f"{run['per_stack_s']:.2f} s per stack ({run['stacks']} stacks; start-up {run['startup_s']:.1f} s)"
    load = [x for x in sec.get("load", []) if x is not None]
    if load:
        cores = sec.get("environment", {}).get("cores", "?")
        value += f"; load average {min(load):.1f}–{max(load):.1f} on {cores} cores"
    return [(f"Folder of 512² × 64 stacks through `configs/inference.yaml` ({name.split(' (')[0]})", value)]


def _onnx(sec: dict) -> list[tuple[str, str]]:
    timed = [r for r in sec["rows"] if "speedup" in r]
    big = max(timed, key=lambda r: (r["size"], -r["batch"]))
    agreement = min((r["label_agreement"] for r in sec["rows"] if "label_agreement" in r), default=None)
    text = f"{big['speedup']:.2f}× faster ({big['onnxruntime_s']:.2f} s vs {big['torch_s']:.2f} s)"
    if agreement is not None:
        text += f"; labels equal on {100 * agreement:.4f} % of pixels"
    return [(f"ONNX Runtime vs PyTorch, {big['case']}", text)]


def _workflows(sec: dict) -> list[tuple[str, str]]:
    out = []
    big = [k for k in sec if k.startswith("one ") and "stack" in k]
    if big:
        key = max(big, key=lambda k: sec[k]["peak_rss_mib"])
        out.append(
            (
                f"Inference on {key}, end to end",
                f"{sec[key]['wall_s']:.1f} s, peak memory {sec[key]['peak_rss_mib'] / 1024:.1f} GiB",
            )
        )
    mosaic = sec.get("scale", {}).get("large_mosaic")
    if mosaic:
        out.append(
            (
                f"Mosaic of {mosaic['size_px']}² × {mosaic['frames']} ({mosaic['file_gib']:.1f} GiB file) "
                f"with a {mosaic['memory_gib']} GiB budget (`configs/mosaic.yaml`)",
                f"peak memory {mosaic['peak_rss_mib'] / 1024:.2f} GiB, {mosaic['wall_s'] / 60:.1f} min",
            )
        )
    return out


def _axis(sec: dict) -> list[tuple[str, str]]:
    s, c = sec["summary"], sec["summary"]["calibration"]
    return [
        (
            "Spectral-axis check",
            f"direction right on {100 * s['direction_right']:.1f} % of stacks; calibration claimed on "
            f"{100 * c['claimed']:.0f} %, right on {100 * c['claimed_right']:.1f} % of the claims; false alarms "
            f"{100 * c['false_alarms']:.1f} %",
        )
    ]


def _cells(sec: dict) -> list[tuple[str, str]]:
    parts = [f"{p} {v['scores']['network']['cells']['f1']:.3f}" for p, v in sec["results"].items()]
    hetero = sec.get("fragments", {}).get("heterogeneous_nuclei", {}).get("network/on")
    if hetero:
        parts.append(f"heterogeneous nuclei {hetero['cells']['f1']:.3f}")
    return [("Per-cell F1 of cell instances from the shipped network's labels", "; ".join(parts))]


def _qc(sec: dict) -> list[tuple[str, str]]:
    held_in = set(sec.get("false_flag_rate", {}))
    bad = [s for s in sec.get("stacks", []) if s["kind"] not in held_in]
    detected = sum(s["qc_flag"] != "ok" for s in bad)
    text = f"AUROC {sec['auroc_decision_overall']:.3f}"
    if bad:
        text += f"; {detected}/{len(bad)} corrupted stacks flagged"
    rates = sec.get("false_flag_rate", {})
    if rates:
        text += f"; false flags on held-in stacks {100 * max(rates.values()):.1f} % at most ({', '.join(rates)})"
    return [("Quality check per image (decision: axis verdict, then `ood_score`)", text)]


def _adaptation(sec: dict) -> list[tuple[str, str]]:
    """The first pseudo-label source (the recommended one) on its held-out stacks."""
    source, run = next(iter(sec["runs"].items()))
    held = [v for v in run["scores"].values() if v["split"] in ("held_out", "held-out")]

    def mean(key: str) -> str:
        return _d(sum(v[key] for v in held) / len(held))

    value = (
        f"{source} pseudo-labels, {len(held)} stacks: nucleus {mean('nucleus_before')} → {mean('nucleus_after')}, "
        f"droplet {mean('lipid_droplet_before')} → {mean('lipid_droplet_after')}; "
        f"{sec['summary'][source]['seconds_per_stack']:.0f} s per stack"
    )
    return [("Adaptation to an unseen instrument (`configs/adapt.yaml`): held-out Dice before → after", value)]


#: section → the headline rows it gives the summary: [(what, value)], from its recorded data
HEADLINES = {
    "shipped": _shipped,
    "comparison": _comparison,
    "recipes": _recipes,
    "model_cost": _model_cost,
    "phasor": _phasor,
    "throughput": _throughput,
    "onnx_runtime": _onnx,
    "workflows": _workflows,
    "axis": _axis,
    "cells": _cells,
    "qc": _qc,
    "adaptation": _adaptation,
}


def _weights_cell(env: dict, shipped: dict) -> str:
    weights = env.get("weights")
    if not weights:
        return "not recorded"
    if weights.get("used", "shipped") != "shipped":
        return WEIGHTS_USED[weights["used"]].split(" (")[0]
    if weights.get("md5") != shipped["md5"]:
        return f"**{weights['version']}** (older: md5 `{weights['md5'][:8]}`)"
    return weights["version"]


def summary_markdown(data: dict, text: str, shipped: dict | None = None) -> str:
    """The summary block: the shipped weights and the headline figures of the recorded sections (``data``:
    the results JSON), each linked to its section in ``text`` and naming the weights it was measured with."""
    shipped = shipped or shipped_weights()
    titles = section_titles(text)
    rows, stale = [], []
    for name, headlines in HEADLINES.items():
        if name not in data:
            continue
        sec, env = data[name], data[name].get("environment", {})
        try:
            found = headlines(sec)
        except (KeyError, TypeError, ValueError, IndexError, StopIteration, ZeroDivisionError) as err:
            found = [(f"{name}: no headline ({type(err).__name__}: {err})", "–")]
        link = f"[{name}](#{github_anchor(titles[name])})" if name in titles else name
        measured = f"{env.get('date', '?')}, {commit_words(env)}"
        weights = _weights_cell(env, shipped)
        rows += [[what, value, link, weights, measured] for what, value in found]
    unrecorded, not_regenerated = [], []
    for name, sec in data.items():
        weights = sec.get("environment", {}).get("weights")
        link = f"[{name}](#{github_anchor(titles[name])})" if name in titles else name
        if not weights:
            unrecorded.append(link)
        elif weights.get("used", "shipped") == "shipped" and weights.get("md5") != shipped["md5"]:
            stale.append(f"{link} ({weights.get('version', '?')})")
        elif re.search(NOT_REGENERATED, _block(text, name)):
            not_regenerated.append(link)
    from scripts.benchmarks import markdown_table

    lines = [
        "## At a glance",
        "",
        f"Shipped weights: **{shipped['version']}** (`configs/metadata.json`), `models/model.pt` md5 "
        f"`{shipped['md5']}`. The headline figures of the sections below, from their recorded rows "
        "(`docs/results.json`); this table is rewritten whenever a section is.",
        "",
        markdown_table(["what", "result", "section", "weights", "measured (commit)"], rows),
    ]
    if stale:
        lines += ["", f"Measured with older weights than the shipped ones, not yet regenerated: {', '.join(stale)}."]
    if not_regenerated:
        lines += ["", f"Older measurements with their own networks, not regenerated: {', '.join(not_regenerated)}."]
    if unrecorded:
        lines += ["", f"Weights not recorded: {', '.join(unrecorded)}."]
    return "\n".join(lines)


def write_summary(out: Path) -> None:
    """Rewrite the summary block of ``out`` from the recorded rows next to it (``out`` with ``.json``)."""
    text = out.read_text() if out.exists() else HEADER
    data = json.loads(out.with_suffix(".json").read_text())
    with atomic_path(out) as tmp:
        tmp.write_text(update_markdown(text, SUMMARY, summary_markdown(data, text), first=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (smoke run)")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"Markdown file to update (default {RESULTS_MD}; --quick: {QUICK_MD})"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=1.0,
        help="training sections (recipes): multiply epochs and wall-time caps, e.g. 10 on a GPU (default 1)",
    )
    parser.add_argument(
        "--max_hours",
        type=float,
        default=None,
        help="training sections (recipes): start no new training run after this many hours (0: only report the runs "
        "finished so far); rerun to continue",
    )
    parser.add_argument(
        "--summary_only",
        action="store_true",
        help="measure nothing: rewrite the summary block from the recorded rows (the .json next to --out)",
    )
    args = parser.parse_args(argv)
    args.out = args.out or (QUICK_MD if args.quick else RESULTS_MD)
    if args.summary_only:
        write_summary(args.out)
        return
    started = time.perf_counter()

    env = environment()
    env["command"] = "python -m scripts.benchmark " + " ".join(argv if argv is not None else sys.argv[1:])
    env.update(code_version())  # at the start: what the run imported
    shipped = shipped_weights()
    json_path = args.out.with_suffix(".json")
    for name in args.sections:
        module = importlib.import_module(f"scripts.benchmarks.{name}")
        section_env = {**env, "weights": section_weights(module, shipped)}
        print(f"[benchmark] {name} ...", flush=True)
        section_started = time.perf_counter()
        options = {"budget": args.budget, "max_hours": args.max_hours}
        accepted = inspect.signature(module.run).parameters
        result = module.run(quick=args.quick, **{k: v for k, v in options.items() if k in accepted})
        section_wall = time.perf_counter() - section_started
        block = f"## {module.TITLE}\n\n{_env_line(section_env)}\n\n{result.markdown.strip()}\n"
        # re-read and write after every section: an interrupted run keeps what it measured, and
        # sections measured by another run meanwhile are kept
        text = update_markdown(args.out.read_text() if args.out.exists() else HEADER, name, block)
        all_data = json.loads(json_path.read_text()) if json_path.exists() else {}
        all_data[name] = {
            "environment": section_env,
            "quick": args.quick,
            "section_wall_s": section_wall,
            **result.data,
        }
        text = update_markdown(text, SUMMARY, summary_markdown(all_data, text, shipped), first=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(all_data, indent=2, default=float) + "\n")
        if result.model_card and not args.quick and args.out.resolve() == RESULTS_MD:
            card = f"{result.model_card.strip()}\n\n{_env_line(section_env)}\n"
            with atomic_path(MODEL_CARD) as tmp:
                tmp.write_text(update_markdown(MODEL_CARD.read_text(), "performance", card))
        print(result.markdown, flush=True)
    print(f"[benchmark] {', '.join(args.sections)}: {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
