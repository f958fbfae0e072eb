"""Hyperparameter search: folds from the training pool only, a tiny real search, the CLI."""

from __future__ import annotations

import json

import pytest

from optiladder.data.splits import split_of
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


def test_tiny_search_and_cli(arrays, tmp_path):
    res = run_tune(arrays, TuneOptions(mode="dl", trials=2, timeout=60, folds=2, max_epochs=2, patience=2))
    assert res["best_params"] is not None and res["best_value"] > 0
    assert {"lr", "weight_decay", "batch_size", "head_width", "norm"} <= set(res["best_params"])
    assert res["n_pool"] == 48  # train + none only
    with pytest.raises(ValueError, match="parent"):
        run_tune(arrays, TuneOptions(mode="tl"))

    from pathlib import Path

    from typer.testing import CliRunner

    from optiladder.cli import app

    FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "learn"

    out = tmp_path / "tune.json"
    r = CliRunner().invoke(app, ["tune", "--dataset", str(FIXTURES), "--mode", "sc", "--trials", "1",
                                 "--folds", "2", "--max-epochs", "2", "--threads", "1", "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    saved = json.loads(out.read_text())
    assert saved["options"]["mode"] == "sc" and len(saved["trials"]) == 1
    assert all(split_of(i) in ("train", "none") for i in arrays.split("train", "none").ids)
    r = CliRunner().invoke(app, ["study", "paper", "--help"])
    assert r.exit_code == 0 and "--budget-minutes" in r.output
