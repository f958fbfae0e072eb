"""Fixtures for the prediction tests: the shipped models, loaded once; the bundled example crystals."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="session")
def predictor():
    """The shipped ipa, rpa and sc models (checksum-verified), one torch thread."""
    import torch

    from optiladder.predict import Predictor

    torch.set_num_threads(1)
    return Predictor.from_pretrained(("ipa", "rpa"), sc=True)


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES
