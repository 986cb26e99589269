"""Folder inference across processes (torchrun, gloo on CPU) and reruns that finish only the missing stacks."""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import pytest
from scripts.engine.batch import pending_stacks, rank_share
from scripts.engine.segmentation_writer import SegmentationWriter
from scripts.io.tables import update_table

from tests.conftest import CONFIGS, REPO, TORCHRUN_ENV, torchrun_bundle, torchrun_command


@pytest.mark.parametrize(("stacks", "processes"), [(5, 2), (7, 3), (1, 3), (4, 4)])
def test_every_stack_goes_to_exactly_one_process(stacks, processes):
    datalist = [{"image": f"/data/s{i}.nii.gz"} for i in range(stacks)]
    shares = [rank_share(datalist, r, processes) for r in range(processes)]
    taken = [item["image"] for share in shares for item in share]
    assert sorted(taken) == sorted(d["image"] for d in datalist)  # each once: no padding, none left out
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def _complete(out: Path, image: str, stem: str) -> None:
    for name in (f"{stem}.nii.gz", f"{stem}.tif", f"{stem}_overlay.png"):
        (out / name).write_bytes(b"x")
    update_table(out / "summary.csv", [{"stem": stem, "image": image, "error": ""}], ["stem", "image", "error"])


def test_resume_leaves_out_only_stacks_whose_outputs_are_all_there(tmp_path):
    out = tmp_path / "out"
    writer = SegmentationWriter(out)
    datalist = [{"image": str(tmp_path / f"s{i}.nii.gz")} for i in range(5)]
    for i in range(5):
        _complete(out, datalist[i]["image"], f"s{i}")
    (out / "s1_overlay.png").unlink()  # killed while writing s1: files but not all of them
    update_table(out / "summary.csv", [{"stem": "s2", "image": datalist[2]["image"], "error": "unreadable"}], ["stem"])
    update_table(out / "summary.csv", [{"stem": "s3", "image": "/elsewhere/s3.nii.gz", "error": ""}], ["stem"])
    todo = pending_stacks(datalist, writer, resume=True, rank=0, world_size=1)
    assert [d["image"] for d in todo] == [datalist[i]["image"] for i in (1, 2, 3)]  # s0, s4 complete
    assert pending_stacks(datalist, writer, resume=False, rank=0, world_size=1) == datalist
    # the per-cell table is part of "complete" when listed
    todo = pending_stacks(datalist, writer, resume="true", tables={"cells_summary.csv": "stack"}, rank=0, world_size=1)
    assert len(todo) == 5


MULTI_GPU = [str(CONFIGS / "inference.yaml"), str(CONFIGS / "multi_gpu_inference.yaml")]
# untrained weights: these tests are about who writes what, not about the segmentation
SMALL_UNTRAINED = ("--handlers#0#_disabled_", "true", "--network_def#features", "[4, 8, 16, 32, 32]")


def _torchrun(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return torchrun_bundle(MULTI_GPU, "--dataset_dir", str(data), "--output_dir", str(out), *SMALL_UNTRAINED, *extra)


def _written(log: str) -> list[str]:
    return re.findall(r"segmentation_writer - INFO - (\S+): nucleus", log)


def test_two_processes_write_each_stack_once_and_a_rerun_finishes_only_the_missing(tmp_path):
    from scripts.simulation.dataset import simulate_dataset

    simulate_dataset(tmp_path / "sim", num=5, seed=4, height=64, width=64)
    data, out = tmp_path / "sim" / "images", tmp_path / "out"
    stems = sorted(p.name[: -len(".nii.gz")] for p in data.glob("*.nii.gz"))
    result = _torchrun(data, out)
    log = result.stderr + result.stdout
    assert sorted(_written(log)) == stems  # every stack written, none twice
    assert "process 1 of 2: 3 of the 5 stacks" in log
    assert "process 2 of 2: 2 of the 5 stacks" in log
    assert [r["stem"] for r in csv.DictReader((out / "summary.csv").open())] == stems
    assert [r["stack"] for r in csv.DictReader((out / "cells_summary.csv").open())] == stems

    # what a process killed mid-run leaves: one stack never reached (no file, no row), one half-written
    never, half = stems[3], stems[1]
    for p in [*out.glob(f"{never}*"), *(out / "cells").glob(f"{never}*")]:
        p.unlink()
    rows = [r for r in csv.DictReader((out / "summary.csv").open()) if r["stem"] != never]
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "cells" / f"{half}_instances.tif").unlink()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and not p.name.endswith(".csv")}

    result = _torchrun(data, out, "--resume", "true")
    log = result.stderr + result.stdout
    assert sorted(_written(log)) == sorted([never, half])
    rewritten = [p.name for p, t in before.items() if not p.name.startswith(half) and p.stat().st_mtime_ns != t]
    assert rewritten == []  # no file of a complete stack was written again
    assert [r["stem"] for r in csv.DictReader((out / "summary.csv").open())] == stems
    assert (out / f"{never}.tif").is_file()
    assert (out / "cells" / f"{half}_instances.tif").is_file()


def test_two_machines_with_a_c10d_rendezvous_write_each_stack_once(tmp_path):
    """The README's multi-node command, with two "machines" on this one: two launchers, ``--nnodes=2``, node ranks 0
    and 1, one process each, meeting at a c10d rendezvous on localhost; one shared output folder."""
    import os
    import socket

    from scripts.simulation.dataset import simulate_dataset

    simulate_dataset(tmp_path / "sim", num=3, seed=5, height=64, width=64)
    data, out = tmp_path / "sim" / "images", tmp_path / "out"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = []
    for rank in (0, 1):
        launcher = ("--nnodes=2", f"--node_rank={rank}", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}")
        cmd = torchrun_command(
            MULTI_GPU,
            "--dataset_dir",
            str(data),
            "--output_dir",
            str(out),
            *SMALL_UNTRAINED,
            nproc=1,
            launcher=launcher,
        )
        env = {**os.environ, **TORCHRUN_ENV}
        nodes.append(
            subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    logs = []
    for node in nodes:
        log, _ = node.communicate(timeout=300)
        assert node.returncode == 0, log[-3000:]
        logs.append(log)
    stems = sorted(p.name[: -len(".nii.gz")] for p in data.glob("*.nii.gz"))
    assert sorted(_written(logs[0]) + _written(logs[1])) == stems  # every stack once, across both machines
    assert _written(logs[0])  # both took part
    assert _written(logs[1])
    assert "process 1 of 2: 2 of the 3 stacks" in logs[0] + logs[1]
    assert [r["stem"] for r in csv.DictReader((out / "summary.csv").open())] == stems
