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
section states the command that produced it, the machine and the library versions. Regenerate a
section with `python -m scripts.benchmark --sections NAME`.
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
    commit = env.get("commit")
    if not commit:
        return "not recorded"
    return f"`{commit}`" + (" + uncommitted changes" if env.get("uncommitted") else "")


def _env_line(env: dict) -> str:
    return (
        f"_Measured {env['date']} on {env['cpu']} ({env['cores']} cores, {env['torch_threads']} torch threads); "
        f"Python {env['python']}, torch {env['torch']}, MONAI {env['monai']}, NumPy {env['numpy']}. "
        f"Weights: {weights_words(env.get('weights'))}. Commit: {commit_words(env)}. "
        f"Command: `{env['command']}`._"
    )


def update_markdown(text: str, name: str, block: str) -> str:
    """Replace (or append) the delimited block of section ``name`` in ``text``."""
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    new = f"{begin}\n{block.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: new, text)
    return text.rstrip() + "\n\n" + new + "\n"


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
    args = parser.parse_args(argv)
    args.out = args.out or (QUICK_MD if args.quick else RESULTS_MD)
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
