"""Shared fixtures: small simulated phantoms and data sets (CPU, fractions of a second each)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from scripts.simulation.dataset import simulate_dataset
from scripts.simulation.phantom import simulate_phantom

REPO = Path(__file__).resolve().parent.parent


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
