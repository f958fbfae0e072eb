"""The absorption-onset rule against the broadening tail of real reference spectra."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "learn"


@pytest.fixture(scope="module")
def fixture_arrays():
    from optiladder.data.store import Store

    return Store(FIXTURES).table()


def test_onset_rule_leaves_only_the_reference_tail(fixture_arrays):
    """A spectrum predicted absorbing from 0 eV, after the rule with the true gap, has no more Im ε more than
    δ + 2w below the gap than the reference spectra themselves have there."""
    from optiladder.data.store import Store
    from optiladder.onset import ONSET_DELTA, ONSET_WIDTH, apply_onset, reference_tail

    arrays = fixture_arrays
    gaps = {r["mat_id"]: r["gap_direct"] for r in Store(FIXTURES).index()}
    gap = np.array([gaps[i] for i in arrays.ids])
    grid, ref = arrays.grid, arrays.rpa
    below = ONSET_DELTA + 2 * ONSET_WIDTH
    ref_tail = reference_tail(ref, grid, gap, below=below)
    flat = np.ones_like(ref) * ref.max(axis=1, keepdims=True)  # worst case: absorption everywhere
    pred_tail = reference_tail(apply_onset(flat, grid, gap), grid, gap, below=below)
    assert pred_tail.max() <= max(ref_tail.max(), 0.02)
    assert np.median(reference_tail(flat, grid, gap, below=below)) == pytest.approx(1.0)
    # above the gap nothing changes
    above = grid[None, :] >= gap[:, None]
    np.testing.assert_array_equal(apply_onset(ref, grid, gap)[above], ref[above])
