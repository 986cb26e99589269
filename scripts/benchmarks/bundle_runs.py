"""Running the bundle's own workflows (``python -m monai.bundle run``) from the benchmark, as a user would.

Each call starts a fresh Python process and returns its wall time, its peak resident memory and its
log, so the numbers in ``docs/results.md`` are those of the shipped configs, not of a re-implementation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# runs the bundle in this child and reports the peak resident memory of its own address space
# (VmHWM: unlike ru_maxrss, it is not inherited from the parent across fork + exec)
_CHILD = """
import json, sys
from monai.bundle.scripts import run
import fire
sys.argv = ["monai.bundle", "run", *sys.argv[1:]]
try:
    fire.Fire({"run": run})
finally:
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(json.dumps({"peak_rss_mib": hwm / 1024}))
"""


def bundle_run(args: list[str], log_file: str | Path | None = None) -> tuple[float, float, str]:
    """Run ``python -m monai.bundle run ARGS`` in the repository; returns (wall s, peak RSS MiB, log).

    The log (stderr + stdout) is also written to ``log_file`` when given. A failing run raises
    ``RuntimeError`` with the end of its log.
    """
    cmd = [sys.executable, "-c", _CHILD, *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log = proc.stderr + proc.stdout
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        Path(log_file).write_text(log)
    if proc.returncode != 0:
        where = f" (full log: {log_file})" if log_file is not None else ""
        raise RuntimeError(f"python -m monai.bundle run {' '.join(args)} failed{where}:\n{proc.stderr[-3000:]}")
    peak = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mib"]
    return wall, peak, log


def config_files(*files: str | None) -> str:
    """The ``--config_file`` value for one config or a list of configs merged in order (None entries skipped)."""
    files = [f for f in files if f]
    return files[0] if len(files) == 1 else "['" + "','".join(files) + "']"


def _inference_parser(overrides: dict):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO / "configs" / "inference.yaml"))
    parser.update({"bundle_root": str(REPO), "device": "$torch.device('cpu')", **overrides})
    return parser


def inference_inferer(**overrides):
    """The sliding-window inferer of ``configs/inference.yaml`` (window, overlap, blending as shipped), parsed."""
    return _inference_parser(overrides).get_parsed_content("inferer")


def inference_network(**overrides):
    """The network of ``configs/inference.yaml`` (``network_def``, untrained), parsed; ``overrides`` as ids."""
    return _inference_parser(overrides).get_parsed_content("network_def")
