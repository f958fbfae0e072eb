"""Ensembles, calibration, warnings, the onset rule and free labels on small real subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "learn"


@pytest.fixture(scope="module")
def fixture_arrays():
    """Model-grid arrays of the learning fixture's records (1–3 atoms; a few are excluded by the store)."""
    from optiladder.data.store import Store

    data = Store(FIXTURES).table()
    assert len(data) >= 70
    return data


def test_calibration_interval_and_warning_rule():
    from optiladder.evaluation.uncertainty import Calibration, coverage, spearman, warning_thresholds

    rng = np.random.default_rng(0)
    u = rng.uniform(0.6, 1.0, 400)
    d = rng.uniform(0.0, 3.0, 400)
    actual = np.clip(0.2 + 0.7 * u - 0.05 * d + rng.normal(0, 0.05, 400), 0, 1)
    cal = Calibration.fit(u[:200], d[:200], actual[:200])
    assert cal.b == pytest.approx(0.7, abs=0.1) and cal.c == pytest.approx(-0.05, abs=0.02)
    e = cal.expected(u[200:], d[200:])
    lo, hi = cal.interval(e)
    assert 0.7 <= coverage(lo, hi, actual[200:]) <= 0.9
    assert spearman(e, actual[200:]) > 0.8
    rule = warning_thresholds(cal.expected(u[:200], d[:200]), d[:200], actual[:200])
    assert rule.max_distance == pytest.approx(1.5 * d[:200].max())
    # no validation miss here: the rule flags about the lowest tenth
    assert 0.05 <= rule.flags(e, d[200:]).mean() <= 0.2
    assert rule.flags([0.9], [10.0])[0]  # far outside the latent domain
    # the novel-bond limit is the validation first quartile of the expected SC
    assert rule.novel_bond_max_expected == pytest.approx(np.quantile(cal.expected(u[:200], d[:200]), 0.25))


def test_novel_bond_rule_fires_exactly_on_an_unseen_pair_below_its_limit():
    from optiladder.evaluation.uncertainty import WarningRule, warning_report

    rule = WarningRule(min_expected=0.5, max_distance=4.0, novel_bond_max_expected=0.8)
    e = np.array([0.70, 0.70, 0.85, 0.85, 0.45])
    d = np.zeros(5)
    novel = np.array([True, False, True, False, False])
    assert rule.novel_bond_flags(e, novel).tolist() == [True, False, False, False, False]
    assert rule.flags(e, d, novel).tolist() == [True, False, False, False, True]
    assert rule.flags(e, d).tolist() == [False, False, False, False, True]  # pairs unknown: left out
    actual = np.array([0.2, 0.9, 0.9, 0.9, 0.3])
    rep = warning_report(rule, e, d, actual, novel)
    assert (rep["flagged"], rep["misses"], rep["misses_caught"], rep["novel_bonds"]) == (2, 2, 2, 2)
    assert rep["without_novel_bond_rule"] == {"flagged": 1, "flagged_fraction": 0.2, "misses_caught": 1}
    assert "novel_bonds" not in warning_report(rule, e, d, actual)
    # a rule written before the novel-bond part (no key) loads and never fires it
    old = WarningRule(**{"min_expected": 0.5, "max_distance": 4.0})
    assert old.novel_bond_max_expected is None and not old.novel_bond_flags(e, novel).any()
    assert old.to_dict() == {"min_expected": 0.5, "max_distance": 4.0}
    assert WarningRule(**rule.to_dict()) == rule


def test_free_label_set_is_trainable_only():
    from optiladder.data.splits import split_ids
    from optiladder.training.freelabels import FREE_LABELS, free_label_set

    fl = free_label_set()
    held = split_ids()["validation"] | split_ids()["test"]
    assert len(fl) > 2500 and not set(fl.ids) & held
    assert fl.y.shape == (len(fl), len(FREE_LABELS))
    # gaps in eV, direct ≥ indirect (up to rounding), formation energies in eV/atom
    assert np.all(fl.y[:, 0] >= fl.y[:, 1] - 1e-3) and np.all(np.abs(fl.y[:, 2]) < 6)


def test_ensemble_less_certain_far_from_training(fixture_arrays):
    """K = 4 small models trained on the fixture's ≤ 3-atom train crystals disagree more, and sit farther in
    latent space, on crystals whose elements none of them saw than on validation crystals of the same chemistry."""
    from optiladder.evaluation.uncertainty import LatentDomain, ensemble_stats
    from optiladder.graphs import structure_graph
    from optiladder.nn import OptiMate
    from optiladder.structures import alexandria
    from optiladder.training import TrainSettings, embed, fit, make_data, predict

    arrays = fixture_arrays
    train = arrays.split("train", "none")
    seen = {el for s in train.structures for site in s["sites"] for el in [site["species"][0]["element"]]}
    far = [e for e in alexandria("train") if not set(e["elements"]) & seen and e["nsites"] <= 4][:8]
    assert len(far) >= 4
    tr = make_data([structure_graph(s) for s in train.structures], train.rpa, train.ids)
    far_data = make_data([structure_graph(e["structure"]) for e in far], None, [e["mat_id"] for e in far])
    members = []
    for k in range(4):
        torch_model = OptiMate(head_hidden=(128,), norm="batch_norm")
        fit(torch_model, tr, tr[:8], TrainSettings(lr=1e-3, max_epochs=20, patience=20, seed=k))
        members.append(torch_model)
    val = arrays.split("validation")
    va = make_data([structure_graph(s) for s in val.structures], None, val.ids)
    inside = ensemble_stats(np.stack([predict(m, va) for m in members]), arrays.grid)
    outside = ensemble_stats(np.stack([predict(m, far_data) for m in members]), arrays.grid)
    assert np.median(outside["agreement"]) < np.median(inside["agreement"])
    dom = LatentDomain.fit(np.mean([embed(m, tr) for m in members], axis=0))
    d_in = dom.distance(np.mean([embed(m, va) for m in members], axis=0))
    d_far = dom.distance(np.mean([embed(m, far_data) for m in members], axis=0))
    assert np.median(d_far) > 1.5 * np.median(d_in)
