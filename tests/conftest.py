"""Shared fixtures: real structures and real gpaw-pbe-v1 records (see tests/fixtures/README.md)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)


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
