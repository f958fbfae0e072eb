"""Hyperparameter search: folds from the training pool only, a tiny real search, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optiladder.study.tune import TuneOptions, kfold, run_tune


def test_kfold_partitions_ids():
    ids = [f"m{i}" for i in range(20)]
    folds = kfold(ids, 4, seed=1)
    vals = [set(v) for _, v in folds]
    assert set().union(*vals) == set(ids) and sum(len(v) for v in vals) == 20
    for tr, va in folds:
        assert not set(tr) & set(va) and set(tr) | set(va) == set(ids)
    assert kfold(ids, 4, seed=1) == folds
    with pytest.raises(ValueError):
        kfold(ids[:5], 3)


def test_tiny_search_and_cli(arrays, tmp_path, monkeypatch, learn_fixtures):
    import math

    import optiladder.training.train as train_mod

    calls = []
    real = train_mod.train_model

    def spy(data, **kw):  # the real training, with its arguments recorded
        res = real(data, **kw)
        calls.append((kw, res.fit.best_val_loss))
        return res

    monkeypatch.setattr(train_mod, "train_model", spy)
    res = run_tune(arrays, TuneOptions(mode="dl", trials=2, timeout=60, folds=2, max_epochs=2, patience=2))
    assert {"lr", "weight_decay", "batch_size", "head_width", "norm"} <= set(res["best_params"])
    pool = set(arrays.split("train", "none").ids)
    assert res["n_pool"] == len(pool) == 47  # train + none only (RbF2 excluded)
    # every fold model trains and stops early on pool materials only, never on the same ones
    assert len(calls) == 4
    for kw, _ in calls:
        assert set(kw["ids"]) | set(kw["val_ids"]) == pool and not set(kw["ids"]) & set(kw["val_ids"])
    # a trial's value is the mean validation L1 of its folds; the best value is the smallest trial value
    values = [float(np.mean([v for _, v in calls[2 * t : 2 * t + 2]])) for t in range(2)]
    done = [t["value"] for t in res["trials"] if t["state"] == "COMPLETE"]
    assert np.allclose(sorted(done), sorted(values)) and res["best_value"] == min(done)
    assert all(math.isfinite(v) and 0 < v < 10 for v in done)
    with pytest.raises(ValueError, match="parent"):
        run_tune(arrays, TuneOptions(mode="tl"))

    from typer.testing import CliRunner

    from optiladder.cli import app

    out = tmp_path / "tune.json"
    r = CliRunner().invoke(app, ["tune", "--dataset", str(learn_fixtures), "--mode", "sc", "--trials", "1",
                                 "--folds", "2", "--max-epochs", "2", "--threads", "1", "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    saved = json.loads(out.read_text())
    assert saved["options"]["mode"] == "sc" and len(saved["trials"]) == 1
    assert saved["trials"][0]["state"] == "COMPLETE" and 0 < saved["best_value"] < 0.5  # SC errors are small
    r = CliRunner().invoke(app, ["study", "paper", "--help"])
    assert r.exit_code == 0 and "--budget-minutes" in r.output
