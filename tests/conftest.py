"""Shared fixtures: real structures and real gpaw-pbe-v1 records (see tests/fixtures/README.md)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

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
