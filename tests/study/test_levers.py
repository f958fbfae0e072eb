"""The levers study in quick mode on the fixture records, and the acquisition order from its ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "learn"


@pytest.fixture(scope="module")
def levers_run(tmp_path_factory):
    from optiladder.data.store import Store
    from optiladder.study.levers import LeverOptions, run_levers

    out = tmp_path_factory.mktemp("levers")
    opts = LeverOptions.quick_mode(
        variants=("faithful-tuned", "faithful-lpft", "free-labels"), sizes=(20,), save_models=True, free_limit=120,
        seeds=2, ipa_seconds=4.0, tl_seconds=2.0, free_seconds=3.0, aux_seconds=2.0, max_epochs=5, patience=3, threads=1,
    )  # fmt: skip
    return out, run_levers(out, opts, Store(FIXTURES))


def test_quick_study_report(levers_run):
    from optiladder.data.splits import split_ids

    out, res = levers_run
    variants = ("faithful-tuned", "faithful-lpft", "free-labels")
    # the baseline is the better faithful fine-tuning on validation (LP-FT shares the tuned variant's IPA parent)
    t = res["table"]
    assert res["baseline"] == max(
        ("faithful-tuned", "faithful-lpft"), key=lambda v: t[f"{v}|all"]["validation"]["median_sc"]
    )
    assert res["winner"] in variants
    assert set(t) == {f"{v}|{s}" for v in variants for s in ("20", "all")}
    assert t["faithful-lpft|all"]["test"]["median_sc"] != t["faithful-tuned|all"]["test"]["median_sc"]
    for row in res["table"].values():
        assert 0.0 < row["test"]["median_sc"] < 1.0 and row["test"]["n"] == 16
    ens = res["ensemble"][0]
    assert ens["members"] == 3 and 0.0 <= ens["coverage80_test"] <= 1.0
    assert ens["warnings_test"]["n"] == 16
    # the novel-bond limit is the validation first quartile; the report counts the rule with and without it
    rule, wv = ens["warning_rule"], ens["warnings_validation"]
    assert 0.0 <= rule["novel_bond_max_expected"] <= 1.0
    assert 0 <= wv["without_novel_bond_rule"]["flagged"] <= wv["flagged"]
    assert 0 <= ens["warnings_test"]["novel_bonds"] <= 16
    # the saved ensemble: one model of 3 members, trained on no validation or test material
    from optiladder.training import load_model_dir

    held = split_ids()["validation"] | split_ids()["test"]
    model = load_model_dir(out / "models" / "rpa-ensemble")
    assert model.members == 3 and model.target.name == "rpa"
    ids = model.card["training"]["train_ids"]
    assert len(ids) == res["n"]["pool"] >= 40 and not set(ids) & held
    # the SC[RPA; IPA] networks for the saved ensemble: 2 on the IPA body (sc_members) against one per member (3),
    # fine-tuned or on the member's frozen body; the saved recipe follows study.sc.choose_recipe (the frozen one
    # unless the lowest mean validation MAE beats it in >= 95 % of paired resamples), fine-tuned from the model
    # it names as its parent
    sc = res["sc"]
    assert {n: r["networks"] for n, r in sc["recipes"].items()} == {
        "ipa-heads": 2,
        "member-heads": 3,
        "member-heads-frozen": 3,
    }
    maes = {n: r["validation"]["mae_mean_over_seeds"] for n, r in sc["recipes"].items()}
    best = min(maes, key=maes.get)
    vs = sc.get("best_vs_cheapest_validation")
    assert (vs is None) == (best == "member-heads-frozen") and all(0 < m < 0.5 for m in maes.values())
    assert sc["winner"] == (best if vs is None or vs["p_better"] >= 0.95 else "member-heads-frozen")
    saved = load_model_dir(out / "models" / "sc")
    assert saved.members == sc["recipes"][sc["winner"]]["networks"] and saved.target.name == "sc_rpa_ipa"
    parent = {"ipa-heads": "levers-ipa", "member-heads": "levers-rpa", "member-heads-frozen": "levers-rpa"}
    assert saved.card["training"]["parent"]["name"] == parent[sc["winner"]] + f"-{res['winner']}"
    assert saved.card["training"]["train_ids"] == sorted(ids)
    # two seeds: the ensemble across both IPA parents is scored, and the saved one is the better on validation
    cross, choice = res["ensemble_cross_parents"], res["ensemble_choice"]
    assert cross["members"] == [[0, 0], [1, 0], [0, 1]] and cross["warnings_test"]["n"] == 16
    won = cross["ensemble_validation"]["median_sc"] > ens["ensemble_validation"]["median_sc"]
    assert choice["shipped"] == ("cross-parents" if won else "one-parent") == model.card["levers"]["ensemble"]
    assert model.card["uncertainty"]["calibration"] == (cross if won else ens)["calibration"]
    text = (out / "README.md").read_text()
    assert "faithful-tuned" in text and "Spearman" in text and "quick mode" in text
    assert "Ensemble across IPA parents" in text
    assert "ipa-heads: mean of 2 heads on the IPA body" in text and "one head on each ensemble member" in text
    assert "without the novel-bond rule: flagged fraction" in text
    assert json.loads((out / "results.json").read_text())["winner"] == res["winner"]


def test_acquisition_order(levers_run, tmp_path):
    from optiladder.data.splits import TRAINABLE, split_of
    from optiladder.data.store import Store
    from optiladder.study.acquire import acquire, greedy_rank, write_order

    out, _ = levers_run
    ranked = acquire(out / "models", Store(FIXTURES), max_atoms=4, limit=40)
    assert len(ranked) == 40 and len({r["mat_id"] for r in ranked}) == 40
    computed = set(Store(FIXTURES).ids())
    assert all(split_of(r["mat_id"]) in TRAINABLE and r["mat_id"] not in computed for r in ranked)
    assert all(r["nsites"] <= 4 for r in ranked)
    path = write_order(tmp_path / "order.txt", ranked)
    lines = [ln.split()[0] for ln in path.read_text().splitlines() if not ln.startswith("#")]
    assert lines == [r["mat_id"] for r in ranked]
    # diversity: of two identical uncertain candidates the second waits behind a distinct, less uncertain one
    z = np.array([[5.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    order = greedy_rank(np.array([0.5, 0.5, 0.4]), z, np.zeros((1, 2)), 1.0)
    assert order.tolist() == [0, 2, 1]


def test_predictor_trust_from_the_calibrated_ensemble(levers_run):
    """The saved ensemble's card carries the calibration; the Predictor gives every prediction an expected SC
    inside its interval, and a crystal of elements no training crystal has lies farther in latent space (and
    is warned about when beyond the card's limit)."""
    from pymatgen.core import Structure

    from optiladder.predict import Predictor
    from optiladder.structures import alexandria
    from optiladder.training import load_model_dir

    out, res = levers_run
    model = load_model_dir(out / "models" / "rpa-ensemble")
    block = model.card["uncertainty"]
    assert set(block) >= {"calibration", "rule", "latent_scale"}
    shipped = (
        res["ensemble_cross_parents"]
        if model.card["levers"]["ensemble"] == "cross-parents"
        else res["ensemble"][0]
    )
    assert block["rule"]["novel_bond_max_expected"] == shipped["warning_rule"]["novel_bond_max_expected"]
    p = Predictor({"rpa": model})
    assert "rpa" in p.trust
    train_ids = set(model.card["training"]["train_ids"])
    seen = {el for e in alexandria() if e["mat_id"] in train_ids for el in e["elements"]}
    inside = next(e for e in alexandria("train") if e["mat_id"] in train_ids)
    far = next(e for e in alexandria("train") if not set(e["elements"]) & seen and e["nsites"] <= 4)
    r_in, r_far = p.predict([Structure.from_dict(inside["structure"]), Structure.from_dict(far["structure"])])
    for r in (r_in, r_far):
        t = r.trust["rpa"]
        assert t["sc_interval80"][0] <= t["expected_sc"] <= t["sc_interval80"][1]
        assert r.to_dict()["trust"]["rpa"] == t
    assert r_far.trust["rpa"]["latent_distance"] > r_in.trust["rpa"]["latent_distance"]
    limit = block["rule"]["max_distance"]
    assert any("latent space" in w for w in r_far.warnings) == (r_far.trust["rpa"]["latent_distance"] > limit)


def test_ship_winner_into_a_registry(levers_run, tmp_path):
    """The winner becomes ipa/rpa/sc of a registry: parents linked, test metrics in the cards, and the
    Predictor loads them (the rpa ensemble with its trust)."""
    from optiladder.data.store import Store
    from optiladder.predict import Predictor
    from optiladder.pretrained import load_model
    from optiladder.pretrained.ship import ship

    out, _ = levers_run
    from optiladder.study.levers import training_settings

    paths = ship(
        out / "models", "v2099.01.01", store=Store(FIXTURES), root=tmp_path, settings_of=training_settings
    )
    assert set(paths) == {"ipa", "rpa", "sc"}
    ipa, rpa = load_model("ipa", root=tmp_path), load_model("rpa", root=tmp_path)
    # the cards state the training domain and the calibration cells, and the study's settings and medians
    data, lever = rpa.card["data"], rpa.card["levers"]
    assert sum(data["train_nsites"].values()) == data["train"] == rpa.card["training"]["n_train"]
    assert max(map(int, data["train_nsites"])) == data["max_nsites"] and "Si" in data["elements"]
    assert (
        sum(rpa.card["uncertainty"]["fitted_nsites"].values()) == rpa.card["uncertainty"]["calibration"]["n"]
    )
    assert (
        lever["study"]["ensemble_median_sc"]["validation"] > 0
        and lever["study"]["ensemble"] == lever["ensemble"]
        and len(lever["member_parents"]) == rpa.members == 3
        and lever["study"]["winner"] == lever["variant"]
    )
    assert ipa.card["training"]["settings"]["lr"] == 1e-3 and rpa.card["training"]["settings"]["seed"] == 0
    assert rpa.members == 3 and rpa.card["training"]["parent"]["id"] == ipa.card["id"]
    assert rpa.card["metrics"]["values"]["median_sc"] > 0 and "snapshot" in rpa.card["retrained"]
    assert not set(rpa.card["training"]["train_ids"]) & set(Store(FIXTURES).table().split("test").ids)
    # the sc networks name the installed model they were fine-tuned from (the study's recipe says which)
    sc = load_model("sc", root=tmp_path)
    recipe = sc.card["sc_study"]["recipe"]
    assert sc.card["training"]["parent"]["id"] == (ipa if recipe == "ipa-heads" else rpa).card["id"]
    assert sc.card["levers"]["variant"] == rpa.card["levers"]["variant"]
    p = Predictor.from_pretrained(root=tmp_path)
    (r,) = p.predict([Path(__file__).resolve().parents[2] / "examples" / "SiC.cif"])
    assert r.ok and "rpa" in r.trust and r.sc is not None


def test_sc_study_for_a_shipped_ensemble_and_ship_only_sc(levers_run, tmp_path):
    """``optiladder study sc`` on an installed ensemble: both recipes side by side on the ensemble's own training
    materials, the one better on validation saved; ``ship(only=("sc",))`` installs it beside the installed ipa and
    rpa (which stay as they were), its parent named by id, and the Predictor averages its networks."""
    from optiladder.data.store import Store
    from optiladder.predict import Predictor
    from optiladder.pretrained import load_model, versions
    from optiladder.pretrained.ship import ship
    from optiladder.study.sc import ScOptions, run_sc_study, sc_labels

    out, _ = levers_run
    root = tmp_path / "registry"
    ship(out / "models", "v2099.01.01", store=Store(FIXTURES), root=root, only=("ipa", "rpa"))
    with pytest.raises(Exception, match="not installed"):
        load_model("sc", root=root)
    rpa = load_model("rpa", root=root)
    res = run_sc_study(
        tmp_path / "sc",
        ScOptions.quick_mode(pool_limit=30),
        rpa=rpa.path,
        ipa=load_model("ipa", root=root).path,
        store=Store(FIXTURES),
    )
    assert res["n"]["pool"] == 30 and res["rpa"]["id"] == rpa.card["id"]
    assert res["recipes"]["member-heads"]["networks"] == rpa.members == 3
    assert (
        res["recipes"]["ipa-heads"]["networks"] == 3
        and res["recipes"]["ipa-heads"]["head_hidden"] == [1024] * 3
    )
    # the numbers are the networks' mean against the SC of the GPAW spectra, by cell size as well
    val = Store(FIXTURES).table().split("validation")
    for r in res["recipes"].values():
        by = r["validation"]["mae_by_nsites"]
        assert sum(n for n, _ in by.values()) == len(val) == res["n"]["validation"]
        assert r["validation"]["mae"] == pytest.approx(sum(n * m for n, m in by.values()) / len(val))
        assert (
            r["validation"]["mae"] < 5 * float(np.mean(np.abs(sc_labels(val) - sc_labels(val).mean()))) + 0.05
        )
    sc_dir = tmp_path / "sc" / "models" / "sc"
    assert "chosen" in (tmp_path / "sc" / "README.md").read_text()
    paths = ship(sc_dir.parent, "v2099.01.02", store=Store(FIXTURES), root=root, only=("sc",))
    assert set(paths) == {"sc"} and versions("rpa", root) == ["v2099.01.01"] == versions("ipa", root)
    sc = load_model("sc", root=root)
    parent = {"ipa-heads": "ipa", "member-heads": "rpa"}[res["winner"]]
    assert sc.card["training"]["parent"]["name"] == parent
    assert sc.card["training"]["parent"]["id"] == load_model(parent, root=root).card["id"]
    assert sc.members == res["recipes"][res["winner"]]["networks"] and sc.card["metrics"]["split"] == "test"
    p = Predictor.from_pretrained(root=root)
    (r,) = p.predict([Path(__file__).resolve().parents[2] / "examples" / "SiC.cif"])
    assert r.ok and r.sc is not None and 0.0 < r.sc < 1.5
