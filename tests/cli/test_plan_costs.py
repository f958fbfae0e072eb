"""`optiladder plan` prices every uncomputed structure with the per-structure cost model."""

from __future__ import annotations

import numpy as np
import pytest

from optiladder.cli.plan import priced_candidates
from optiladder.data.costs import CostModel, GroupCost, SizeCosts, bundled_features


def _model(numerics="gpaw-direct-v2"):
    g = GroupCost("gpaw-pbe-v1", numerics, "fit", 40, "CPU", SizeCosts({3: (100.0, 20)}, 1.0, 3.0),
                  coef=(-10.8, 1.5, 1.4, 1.0), rms=0.4, loo_rms=0.45)  # fmt: skip
    return CostModel({("gpaw-pbe-v1", numerics): g}), g


def test_candidates_are_priced_per_structure_cheapest_first():
    model, g = _model()
    done = {"ipa+rpa": {"agm003157609"}}
    cands, info = priced_candidates(model, done, 4)
    assert set(cands) == {"ipa+rpa"}  # no gpaw-pbe-ipa-lite records: cheap IPA is not priced
    c = cands["ipa+rpa"]
    assert "agm003157609" not in {i for i, _, _ in c} and all(n <= 4 for _, n, _ in c)
    assert [t for _, _, t in c] == sorted(t for _, _, t in c)
    feats = bundled_features()
    for mid, n, t in c[:: max(1, len(c) // 25)]:
        assert t == pytest.approx(g.seconds(feats[mid], n))
    # within one cell size the prices differ by an order of magnitude, the median would price them all alike
    three = [t for _, n, t in c if n == 3]
    assert np.percentile(three, 90) / np.percentile(three, 10) > 3
    assert info["ipa+rpa"]["group"] is g and info["ipa+rpa"]["note"] == ""


def test_other_numerics_price_with_a_note():
    model, g = _model("gpaw-dense-v1")
    _, info = priced_candidates(model, {}, 2)
    assert info["ipa+rpa"]["group"] is g and "priced with gpaw-dense-v1" in info["ipa+rpa"]["note"]
