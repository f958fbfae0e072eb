"""Shared fixtures of the learning tests: a frozen set of 76 real GPAW records (tests/fixtures/learn)."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "learn"


@pytest.fixture(autouse=True)
def _seed_and_threads(tmp_path_factory, monkeypatch):
    """Seed everything, use one torch thread, keep the graph cache in a temporary folder."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)
    monkeypatch.setenv("OPTILADDER_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def arrays():
    """``DatasetArrays`` of the fixture records (44 train, 4 none, 12 validation, 16 test; 1–3 atoms)."""
    from optiladder.data.store import Store

    data = Store(FIXTURES).table()
    assert len(data) == 76
    return data
