"""The one metric pipeline: per-material scores, summaries, and a card's test metrics equal the study's."""

from __future__ import annotations

import numpy as np
import pytest

from optiladder.evaluation import (
    by_cell_size,
    evaluate_model,
    ipa_baseline,
    scalar_scores,
    spectrum_scores,
    summary,
)
from optiladder.spectra import MODEL_GRID


def test_spectrum_scores_and_summary(arrays):
    test = arrays.split("test")
    perfect = spectrum_scores(test.rpa, test.rpa, ids=test.ids, nsites=test.nsites)
    assert np.allclose(perfect.sc, 1.0) and np.allclose(perfect.mse, 0.0)
    zero = spectrum_scores(np.zeros_like(test.rpa), test.rpa, ids=test.ids)
    assert np.allclose(zero.sc, 0.0)  # SC[0; Y] = 1 − ∫|Y|/∫|Y|
    # MAE of a constant offset c is c (the integral form averages over ω ∈ [0, 20] eV)
    off = spectrum_scores(test.rpa + 0.25, test.rpa, ids=test.ids)
    assert np.allclose(off.mae, 0.25) and np.allclose(off.mse, 0.0625)
    base = ipa_baseline(test)
    s = summary(base)
    assert s["n"] == 16 and s["p10_sc"] <= s["median_sc"] <= s["p90_sc"] < 1.0
    assert 0.5 < s["median_sc"] < 0.85  # IPA as RPA on the fixture: ~0.69
    cells = by_cell_size(base)
    assert cells["n"].sum() == 16 and set(cells["nsites"]) <= {1, 2, 3}
    with pytest.raises(ValueError, match="shape"):
        spectrum_scores(test.rpa[:, :10], test.rpa, ids=test.ids)
    assert summary(base.iloc[:0]) == {"n": 0}
    assert MODEL_GRID.size == test.rpa.shape[1]


def test_scalar_scores():
    ref = np.array([0.6, 0.7, 0.8, 0.9])
    s = scalar_scores(ref + 0.05, ref, train_mean=0.75)
    assert s["mae"] == pytest.approx(0.05) and s["median_abs_error"] == pytest.approx(0.05)
    assert s["mean_baseline_mae"] == pytest.approx(0.1) and s["r2"] == pytest.approx(1 - 0.01 / 0.05)


def test_card_metrics_equal_the_study_on_the_same_model_and_split(tmp_path, arrays, learn_fixtures):
    """The study reports and the model cards use one pipeline: the card of a model the study saved, and the
    card metrics recomputed from its folder (the path of `pretrained rebuild/metrics`), equal the study's."""
    from optiladder.data.store import Store
    from optiladder.evaluation import card_metrics
    from optiladder.pretrained import load_model
    from optiladder.pretrained.rebuild import _write_test_metrics
    from optiladder.study.paper import StudyOptions, run_paper_study

    opts = StudyOptions(
        sizes=(16,), max_atoms=(2,), budget_minutes=1.0, max_epochs=2, patience=2, threads=1, seeds=1,
        model_kwargs={"node_hidden": [8, 8], "gat_channels": [8, 8], "gat_heads": [1, 1], "head_hidden": [16]},
    )  # fmt: skip
    res = run_paper_study(tmp_path, opts, Store(learn_fixtures))
    assert res["options"]["norm"] == "batch_norm"
    runs = {r["name"]: r for r in res["runs"] if r["status"] == "ok"}
    assert {"ipa", "tl-16", "sc"} <= set(runs)
    for name in ("ipa", "tl-16", "sc"):
        folder = tmp_path / "models" / name
        model = load_model(folder)
        assert model.net.config["norm"] == "batch_norm"
        study = runs[name]["test"]
        assert model.card["metrics"]["values"] == study  # the card written by the study
        fresh = _write_test_metrics(folder, arrays)["metrics"]  # the card path of `pretrained metrics`
        assert fresh["split"] == "test" and fresh["n"] == study["n"] == 16
        for key, value in study.items():
            if isinstance(value, float):
                assert fresh["values"][key] == pytest.approx(value, abs=1e-9), (name, key)
        assert fresh["values"]["postprocess"] == study["postprocess"] == model.target.postprocess.to_dict()
    # post-processing is a recorded option: raw output gives other numbers, and says so
    tl = load_model(tmp_path / "models" / "tl-16")
    raw = evaluate_model(tl, arrays.split("test"), raw=True).metrics
    assert raw["postprocess"]["smooth_ev"] == 0.0 and raw["median_sc"] != runs["tl-16"]["test"]["median_sc"]
    assert card_metrics(tl, arrays)["values"]["median_sc"] == pytest.approx(
        runs["tl-16"]["test"]["median_sc"]
    )
