"""Shared fixtures: real structures and real gpaw-pbe-v1 records (see tests/fixtures/README.md)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: the frozen set of 76 real GPAW records of the learning tests (tests/fixtures/learn/README.md)
LEARN_FIXTURES = FIXTURES / "learn"

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _seed_everything(tmp_path_factory, monkeypatch):
    """Seed Python and NumPy (and torch, one thread, if a test imported it); keep the graph cache in a
    temporary folder."""
    import sys

    random.seed(0)
    np.random.seed(0)
    monkeypatch.setenv("OPTILADDER_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(0)
        torch.set_num_threads(1)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def gpaw_available() -> bool:
    try:
        import gpaw  # noqa: F401
    except ImportError:
        return False
    return True


needs_gpaw = pytest.mark.skipif(
    not gpaw_available(), reason="GPAW is not installed (pip install '.[compute]')"
)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpaw`` (``pytestmark = pytest.mark.gpaw``) skip cleanly where GPAW is not installed;
    CI installs it, so there they run."""
    if gpaw_available():
        return
    for item in items:
        if "gpaw" in item.keywords:
            item.add_marker(needs_gpaw)


@pytest.fixture(scope="session")
def learn_fixtures() -> Path:
    return LEARN_FIXTURES


@pytest.fixture(scope="session")
def arrays():
    """``DatasetArrays`` of the learning fixture records: 75 of the 76 (43 train, 4 none, 12 validation, 16
    test; 1–3 atoms): RbF2 (agm001850264) is an excluded material (data/exclusions.json)."""
    from optiladder.data.store import Store

    data = Store(LEARN_FIXTURES).table()
    assert len(data) == 75
    return data


@pytest.fixture(scope="session")
def predictor():
    """The shipped ipa, rpa and sc models (checksum-verified), loaded once, one torch thread."""
    import torch

    from optiladder.predict import Predictor

    torch.set_num_threads(1)
    return Predictor.from_pretrained(("ipa", "rpa"), sc=True)


@pytest.fixture(scope="session")
def examples() -> Path:
    """The bundled example crystals (examples/)."""
    return EXAMPLES
