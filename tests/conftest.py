"""Shared fixtures and helpers: small simulated phantoms and data sets, bundle workflows on them, one tiny training run."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigWorkflow
from scripts.simulation.dataset import simulate_dataset
from scripts.simulation.phantom import simulate_phantom

REPO = Path(__file__).resolve().parent.parent

CONFIGS = REPO / "configs"
META = str(CONFIGS / "metadata.json")
TRAIN, EVALUATE = str(CONFIGS / "train.yaml"), str(CONFIGS / "evaluate.yaml")
TINY = {"patch_size": [32, 32], "val_roi_size": [64, 64], "num_samples": 2, "batch_size": 2, "val_interval": 1}
NET = {"network_def#features": [4, 8, 16, 32, 32]}  # a small HybridUNet: same code paths, seconds on a CPU
#: state-dict entries that training updates even with learning rate 0 (batch-norm running statistics)
BN_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def learned_weights(state: dict) -> list[str]:
    """The state-dict keys an optimiser updates: everything but the batch-norm running statistics."""
    return [k for k in state if not k.endswith(BN_STATISTICS)]


def raises_with(excinfo, pattern: str) -> None:
    """Assert that the exception or one it was raised from (bundle configs wrap errors) matches ``pattern``."""
    import re

    exc, messages = excinfo.value, []
    while exc is not None:
        messages.append(f"{type(exc).__name__}: {exc}")
        if re.search(pattern, str(exc)):
            return
        exc = exc.__cause__ or exc.__context__
    raise AssertionError(f"no exception in the chain matches {pattern!r}:\n" + "\n".join(messages))


TORCHRUN_ENV = {"OMP_NUM_THREADS": "1"}


def torchrun_command(configs: list[str], *args: str, nproc: int = 2, launcher: tuple[str, ...] = ("--standalone",)):
    """``python -m torch.distributed.run LAUNCHER --nproc_per_node=N -m monai.bundle run`` with the bundle's metadata
    and root (``launcher``: ``--standalone``, or a multi-node rendezvous)."""
    import sys

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *launcher,
        f"--nproc_per_node={nproc}",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "['" + "','".join(configs) + "']",
        "--meta_file",
        META,
        "--bundle_root",
        str(REPO),
        *args,
    ]


def torchrun_bundle(configs: list[str], *args: str, nproc: int = 2):
    """:func:`torchrun_command` ``--standalone`` on CPU (gloo, one thread per process); asserts success."""
    import os
    import subprocess

    cmd = torchrun_command(configs, *args, nproc=nproc)
    env = {**os.environ, **TORCHRUN_ENV}
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def workflow(config, workflow_type, **override) -> ConfigWorkflow:
    wf = ConfigWorkflow(
        config_file=config, meta_file=META, workflow_type=workflow_type, bundle_root=str(REPO), **override
    )
    wf.initialize()
    return wf


@pytest.fixture(scope="session")
def trained(sim_dir, tmp_path_factory):
    """One tiny training run (one epoch): its output (``run``) and model (``models``) folders."""
    out = tmp_path_factory.mktemp("train")
    wf = workflow(
        TRAIN,
        "train",
        dataset_dir=str(sim_dir),
        output_dir=str(out / "run"),
        ckpt_dir=str(out / "models"),
        max_epochs=1,
        **TINY,
        **NET,
    )
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
    return out


@pytest.fixture(scope="session")
def phantom():
    """One 96×96×64 phantom of the default preset."""
    return simulate_phantom(1, 96, 96)


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory) -> Path:
    """A simulated data set of 6 stacks (64×64×64, NIfTI), as ``python -m scripts.simulate`` writes it."""
    out = tmp_path_factory.mktemp("sim")
    simulate_dataset(out, num=6, seed=3, height=64, width=64)
    return out


@pytest.fixture
def stack_and_wavenumbers():
    rng = np.random.default_rng(0)
    stack = rng.uniform(10, 1000, (12, 9, 7)).astype(np.float32)
    return stack, np.linspace(2800, 3050, 12)


@pytest.fixture(autouse=True)
def _propagate_logs(caplog):
    caplog.set_level(logging.INFO)
