"""The scaling study in quick mode on the fixture records: report files and tables, no held-out material in
training at any level, the cheap-IPA source guard, and `optiladder plan` on the fitted law."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "learn"


@pytest.fixture(scope="module")
def scaling_run(tmp_path_factory):
    from optiladder.data.store import Store
    from optiladder.study.scaling import ScalingOptions, run_scaling

    out = tmp_path_factory.mktemp("scaling")
    opts = ScalingOptions.quick_mode(
        pool_limit=40, pre_sizes=(15,), rpa_sizes=(10, 20), rpa_ref=20, max_epochs=3, patience=2, tl_epochs=2,
        tl_patience=2, free_limit=60, free_epochs=1, threads=1, ipa_source="v1",
    )  # fmt: skip
    return out, run_scaling(out, opts, Store(FIXTURES))


def test_quick_scaling_report(scaling_run):
    out, res = scaling_run
    assert res["pre_sizes"] == [15, 40] and res["rpa_sizes"] == [10, 20, 40] and res["seeds_done"] == 1
    assert res["progress"] == "complete"
    kinds = {(c["model"], c["method"], c["free"]) for c in res["cells"]}
    assert kinds == {("optimate", "dl", False), ("optimate", "tl", False), ("optimate", "tl-head", False),
                     ("optimate", "tl", True), ("cgat", "dl", False), ("cgat", "tl", False)}  # fmt: skip
    # the heat map is complete for OptiMate TL full; head-only only at N_pre = all
    heat = {
        (c["n_pre"], c["n_rpa"])
        for c in res["cells"]
        if c["method"] == "tl" and c["model"] == "optimate" and not c["free"]
    }
    assert heat == {(p, r) for p in (15, 40) for r in (10, 20, 40)}
    assert {c["n_pre"] for c in res["cells"] if c["method"] == "tl-head"} == {40}
    for c in res["cells"]:
        assert c["test"]["n"] == 16 and 0.0 < c["test"]["median_sc"] < 1.0
        assert set(c["test"]["by_cell_size"]) == {"2", "3"} or set(c["test"]["by_cell_size"]) == {2, 3}
    a = res["analysis"]
    assert set(a["rpa_curves"]) == {"OptiMate DL", "OptiMate TL full", "OptiMate TL head-only",
                                    "OptiMate TL full + free labels", "CGAT DL", "CGAT TL full"}  # fmt: skip
    fit = a["rpa_curves"]["OptiMate TL full"]["fit_1msc"]
    assert fit["slope_ci"][0] <= fit["slope"] <= fit["slope_ci"][1] and fit["n_points"] == 3
    assert "coef" in a["plane"] and a["plane"]["n_points"] == 6
    claims = {c["claim"] for c in a["claims"]}
    assert any("head-only" in c for c in claims) and any("CGAT" in c for c in claims)
    for f in ("README.md", "results.json", "cells.csv", "training_ids.json", "rpa_curves.png", "heatmap.png"):
        assert (out / f).stat().st_size > 0, f
    text = (out / "README.md").read_text()
    for heading in ("Learning curves against N_RPA", "Learning curves against N_pre", "by cell size", "Heat map",
                    "Backtest", "claims", "quick mode"):  # fmt: skip
        assert heading in text, heading
    table = pd.read_csv(out / "cells.csv")
    assert len(table) == len(res["cells"]) and {
        "n_pre",
        "n_rpa",
        "test_median_sc",
        "validation_median_sc",
    } <= set(table)


def test_no_validation_or_test_material_in_training(scaling_run):
    from optiladder.data.splits import split_ids

    out, res = scaling_run
    held = split_ids()["validation"] | split_ids()["test"]
    ids = json.loads((out / "training_ids.json").read_text())
    assert "free-labels" in ids and len(ids) == len(res["cells"]) + 1
    for key, trained in ids.items():
        assert trained and not set(trained) & held, key
    # TL models were trained on their RPA subset and their IPA pretraining subset (both from the pool only)
    key = next(k for k in ids if k.startswith("optimate|tl|free=False|pre=15|rpa=10"))
    assert 10 <= len(ids[key]) <= 25


def test_cheap_ipa_source_refuses_held_out_materials(monkeypatch, tmp_path):
    import optiladder.data.store as store_mod
    from optiladder.data.splits import split_of
    from optiladder.data.store import Store
    from optiladder.study.levers import load_sets
    from optiladder.study.scaling import cheap_ipa_set, pretrain_set

    sets = load_sets(Store(FIXTURES))
    # without the data layer's function (or its folder) the cheap source is unavailable: v1 is used, lite refused
    monkeypatch.delattr(store_mod, "cheap_ipa_records", raising=False)
    assert cheap_ipa_set(tmp_path, sets["pool"].arrays.grid) is None
    assert pretrain_set("auto", sets["pool"], tmp_path / "records").source == "v1"
    with pytest.raises(ValueError, match="no cheap IPA records"):
        pretrain_set("lite", sets["pool"], tmp_path / "records")
    # with it: records of every split come back, the validation/test ones are dropped before training
    recs = list(Store(FIXTURES).iter_records())
    monkeypatch.setattr(store_mod, "cheap_ipa_records", lambda root: recs, raising=False)
    (tmp_path / "ipa-lite").mkdir()
    got = pretrain_set("lite", sets["pool"], tmp_path / "records")
    held = [r["mat_id"] for r in recs if split_of(r["mat_id"]) in ("validation", "test")]
    assert held and got.refused == len(held) and not set(got.ids) & set(held)
    assert len(got) == len(recs) - len(held) and got.y.shape == (len(got), len(sets["pool"].arrays.grid))
    assert pretrain_set("auto", sets["pool"], tmp_path / "records").source == "lite"  # more than the pool


def test_plan_command_answers_from_the_fitted_law(scaling_run, tmp_path):
    from optiladder.cli import app

    out, _ = scaling_run
    r = CliRunner().invoke(app, ["plan", "--budget", "50", "--report", str(out), "--dataset", str(FIXTURES)])
    assert r.exit_code == 0, r.output
    assert (
        "expected median test SC" in r.output and "core-hours" in r.output and "cost (gpaw-pbe-v1" in r.output
    )
    r = CliRunner().invoke(
        app, ["plan", "--budget", "50", "--report", str(out), "--dataset", str(FIXTURES), "--json"]
    )
    p = json.loads(r.output)
    assert p["interval"][0] <= p["sc"] <= p["interval"][1] and sum(p["core_hours"].values()) <= 50.0 + 1e-6
    r = CliRunner().invoke(app, ["plan", "--budget", "0", "--report", str(out), "--dataset", str(FIXTURES)])
    assert r.exit_code == 0 and "buys no calculation" in r.output
    r = CliRunner().invoke(app, ["plan", "--budget", "5", "--report", str(tmp_path)])
    assert r.exit_code != 0 and "results.json" in r.output


def test_merge_runs_adds_seeds_of_the_same_study_only(scaling_run, tmp_path):
    import shutil

    from optiladder.study.scaling import merge_runs

    out, res = scaling_run
    main, other = tmp_path / "main", tmp_path / "other"
    shutil.copytree(out, main)
    shutil.copytree(out, other)
    # the same run again: every cell a duplicate with identical scores, nothing added
    got = merge_runs(main, [other])
    assert got["merged_runs"][-1]["added"] == 0 and got["merged_runs"][-1]["identical"] is True
    assert len(got["cells"]) == len(res["cells"])
    # a "further seed" (relabelled cells) is added; the per-material SC come along
    r = json.loads((other / "results.json").read_text())
    for c in r["cells"]:
        c["seed"] = 7
    (other / "results.json").write_text(json.dumps(r))
    pm = json.loads((other / "per_material.json").read_text())
    pm["sc"] = {k.replace("seed=0", "seed=7"): v for k, v in pm["sc"].items()}
    (other / "per_material.json").write_text(json.dumps(pm))
    got = merge_runs(main, [other])
    assert got["merged_runs"][-1]["added"] == len(res["cells"]) and {c["seed"] for c in got["cells"]} == {
        0,
        7,
    }
    assert any(k.endswith("seed=7") for k in json.loads((main / "per_material.json").read_text())["sc"])
    # the report counts the seeds of every curve, merged runs included
    readme = (main / "README.md").read_text()
    assert "Seeds per curve, runs merged into this report included" in readme
    assert "OptiMate TL full 2," in readme and "OptiMate DL 2," in readme
    # another grid is another study: refused
    r["pre_sizes"] = [10, 40]
    (other / "results.json").write_text(json.dumps(r))
    with pytest.raises(ValueError, match="not the same study"):
        merge_runs(main, [other])
