"""The issue's "what must hold", on the frozen fixture (43 train + 4 none, 12 validation, 16 test real GPAW
records; RbF2 is excluded), with the full-size OptiMate network. Training is deterministic on CPU for a seed,
so each assertion is a real measurement that can fail; the numbers in the comments were measured with seed 0
(metrics through the one pipeline, post-processing as the target records it).

* TL from the IPA model beats DL at the smallest training size (12 spectra): median test SC TL 0.699 vs DL
  0.431. (At 24 spectra the two are level on this fixture: TL 0.705, DL 0.706.)
* Every RPA model trained on ≥ 24 spectra beats the IPA baseline (median SC 0.688): TL-24 0.705, DL-47 0.783,
  TL-47 0.739. DL from scratch on 12 spectra does not (0.43), as in the paper, where DL needs ~100 spectra
  to pass the baseline.
* The SC[RPA; IPA] predictor beats predicting the training mean by more than 20 % in MAE.
* The study records its training ids; none is a validation or test id.

These runs use layer norm: with 12–47 spectra in batches of 16 the batch-norm statistics (the published
layout, the default of the study and the shipped models) are noisy — measured with batch norm, TL on 24
spectra reaches median SC 0.673, below the IPA baseline.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from optiladder.data.splits import split_ids
from optiladder.evaluation import evaluate_model, ipa_baseline
from optiladder.training import TrainSettings, train_model

pytestmark = pytest.mark.slow

MODEL = {"norm": "layer_norm"}
SCRATCH = TrainSettings(lr=1e-3, weight_decay=1e-5, batch_size=16, max_epochs=150, patience=30, seed=0)
TRANSFER = TrainSettings(lr=2e-4, weight_decay=1e-4, batch_size=16, max_epochs=150, patience=30, seed=0)


@pytest.fixture(scope="module")
def trained(arrays):
    pool = arrays.split("train", "none")
    perm = np.random.default_rng(0).permutation(len(pool))
    tiny = [pool.ids[i] for i in perm[:12]]
    small = [pool.ids[i] for i in perm[:24]]
    ipa = train_model(arrays, target="ipa", settings=SCRATCH, model_kwargs=MODEL, name="ipa")
    models = {
        "dl-12": train_model(arrays, target="rpa", ids=tiny, settings=SCRATCH, model_kwargs=MODEL),
        "tl-12": train_model(arrays, target="rpa", ids=tiny, parent=ipa.model, settings=TRANSFER),
        "tl-24": train_model(arrays, target="rpa", ids=small, parent=ipa.model, settings=TRANSFER),
        "dl-47": train_model(arrays, target="rpa", settings=SCRATCH, model_kwargs=MODEL),
        "tl-47": train_model(arrays, target="rpa", parent=ipa.model, settings=TRANSFER),
    }
    test = arrays.split("test")
    sc = {k: evaluate_model(m.model, test).metrics["median_sc"] for k, m in models.items()}
    return {"ipa": ipa, "models": models, "median_sc": sc, "test": test, "pool": pool}


def test_tl_beats_dl_at_smallest_size(trained):
    sc = trained["median_sc"]
    assert sc["tl-12"] > sc["dl-12"] + 0.1, sc


def test_rpa_models_beat_ipa_baseline(trained):
    base = float(np.median(ipa_baseline(trained["test"]).sc))
    sc = trained["median_sc"]
    for name in ("tl-24", "dl-47", "tl-47"):
        assert sc[name] > base, (name, sc[name], base)
    assert trained["models"]["tl-24"].card["training"]["parent"]["name"] == "ipa"


def test_sc_predictor_beats_training_mean(arrays, trained):
    res = train_model(arrays, target="sc_rpa_ipa", settings=SCRATCH, model_kwargs=MODEL)
    mean = float(np.mean(res.model.target.values(trained["pool"])))
    s = evaluate_model(res.model, trained["test"], train_mean=mean).metrics
    assert s["mae"] < 0.8 * s["mean_baseline_mae"], s
    assert res.card["kind"] == "scalar" and res.model.net.config["out_dim"] == 1


def test_study_runs_and_never_trains_on_held_out_ids(tmp_path):
    """The whole study on the fixture (small network, few epochs): files written, no leakage."""
    from pathlib import Path

    from optiladder.data.store import Store
    from optiladder.study.paper import StudyOptions, run_paper_study

    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "learn"
    opts = StudyOptions(
        sizes=(16, 100), max_atoms=(2, 3), budget_minutes=2.0, max_epochs=6, patience=3, threads=1, seeds=2,
        model_kwargs={"node_hidden": [16, 16], "gat_channels": [8, 8], "gat_heads": [2, 2], "head_hidden": [64]},
    )  # fmt: skip
    res = run_paper_study(tmp_path, opts, Store(fixtures))
    status = {r["name"]: r["status"] for r in res["runs"]}
    assert status["dl-100"] == status["tl-100"] == "skipped"  # beyond the 47-material pool
    assert status["dl-16"] == status["tl-16"] == status["dl-all"] == status["ipa"] == status["sc"] == "ok"
    assert status["tl-le3"] == "same"  # every fixture cell has ≤ 3 atoms
    ids = json.loads((tmp_path / "training_ids.json").read_text())
    held_out = split_ids()["validation"] | split_ids()["test"]
    assert set(ids) >= {"ipa", "dl-16", "tl-16", "dl-all", "tl-all", "tl-le2", "sc"}
    for name, trained_on in ids.items():
        assert trained_on and not set(trained_on) & held_out, name
    assert len(ids["dl-16"]) == 16 and len(ids["ipa"]) == 47
    tl16 = next(r for r in res["runs"] if r["name"] == "tl-16")
    assert len(tl16["test_seeds"]) == 2 and tl16["test_spread"]["median_sc"][0] <= tl16["test"]["median_sc"]
    for f in ("README.md", "results.json", "test_scores.csv", "learning_curves.png", "example_spectra.png",
              "sc_pairs.png", "cell_size_boxplot.png", "sc_parity.png"):  # fmt: skip
        assert (tmp_path / f).stat().st_size > 0, f
    readme = (tmp_path / "README.md").read_text()
    assert "GPAW" in readme and "QE" not in readme.split("not the paper")[0]
    assert "skipped (only 47 training materials exist)" in readme
    # a model of the study is a model folder in the one format: its card names its parent and data
    from optiladder.pretrained import load_model

    card = load_model(tmp_path / "models" / "tl-16").card
    assert card["training"]["parent"]["name"] == "optimate-ipa" and card["training"]["n_train"] == 16
    card1 = load_model(tmp_path / "models" / "tl-16-seed1").card
    assert (
        card1["training"]["parent"]["name"] == "optimate-ipa-seed1"
        and card1["training"]["settings"]["seed"] == 1
    )
