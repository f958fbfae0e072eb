"""Trust of a calibrated ensemble: expected SC inside its interval, warnings exactly at the card's thresholds."""

from __future__ import annotations

import numpy as np


def _ensemble(uncertainty: dict, train_ids: list[str]):
    import torch

    from optiladder.graphs import DEFAULT_FEATURIZER
    from optiladder.nn import OptiMate
    from optiladder.targets import get_target
    from optiladder.training import Model, make_card

    nets = []
    for k in range(3):
        torch.manual_seed(k)
        nets.append(OptiMate(head_hidden=(32,)).eval())
    card = make_card(
        name="t", target=get_target("rpa"), train_ids=train_ids, extra={"uncertainty": uncertainty}
    )
    return Model(nets, DEFAULT_FEATURIZER, get_target("rpa"), card)


def test_trust_expected_interval_and_thresholds():
    from pymatgen.core import Structure

    from optiladder.domain import static_warnings
    from optiladder.predict import Predictor
    from optiladder.structures import alexandria
    from optiladder.trust import Trust

    # training crystals that raise no static domain warning (no metal, even electron count): only trust speaks
    train = [
        e for e in alexandria("train")
        if e["nsites"] <= 3 and not static_warnings(Structure.from_dict(e["structure"]), None)
    ][:12]  # fmt: skip
    cal = {"a": 0.1, "b": 0.8, "c": -0.02, "q_lo": -0.1, "q_hi": 0.08, "n": 50}
    quiet = _ensemble({"calibration": cal, "rule": {"min_expected": -1.0, "max_distance": 1e9}, "latent_scale": 1.0},
                      [e["mat_id"] for e in train])  # fmt: skip
    loud = _ensemble({"calibration": cal, "rule": {"min_expected": 2.0, "max_distance": -1.0}, "latent_scale": 1.0},
                     [e["mat_id"] for e in train])  # fmt: skip
    assert Trust.of(quiet) is not None and Trust.of(_ensemble({}, [])) is None
    s = Structure.from_dict(train[0]["structure"])
    (q,) = Predictor({"rpa": quiet}).predict([s])
    (w,) = Predictor({"rpa": loud}).predict([s])
    t = q.trust["rpa"]
    assert t["sc_interval80"][0] <= t["expected_sc"] <= t["sc_interval80"][1]
    assert np.isclose(t["latent_distance"], 0.0, atol=1e-3)  # a training crystal is its own nearest neighbour
    assert q.warnings == [] and len(w.warnings) == 2
    assert any("expected SC" in x for x in w.warnings) and any("latent space" in x for x in w.warnings)


def test_novel_bond_warning_needs_an_unseen_pair_and_a_low_expected_sc():
    """The novel-bond warning fires exactly when the crystal has a pair no training crystal has and its expected
    SC is below the card's ``rule.novel_bond_max_expected``; a card without the key never fires it, and every
    result lists its unseen pairs either way."""
    from pymatgen.core import Lattice, Structure

    from optiladder.domain import static_warnings
    from optiladder.predict import Predictor
    from optiladder.structures import alexandria

    train = [
        e for e in alexandria("train")
        if e["nsites"] <= 3 and not {"B", "N"} & set(e["elements"])
        and not static_warnings(Structure.from_dict(e["structure"]), None)
    ][:10]  # fmt: skip
    ids = [e["mat_id"] for e in train]
    a = 3.615
    cbn = Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["B", "N"],
                    [[0, 0, 0], [0.25, 0.25, 0.25]])  # fmt: skip
    known = Structure.from_dict(train[0]["structure"])
    cal = {"a": 0.7, "b": 0.0, "c": 0.0, "q_lo": -0.1, "q_hi": 0.1, "n": 50}  # expected SC 0.70 everywhere
    quiet = {"min_expected": -1.0, "max_distance": 1e9}

    def run(rule):
        model = _ensemble({"calibration": cal, "rule": rule, "latent_scale": 1.0}, ids)
        return Predictor({"rpa": model}).predict([cbn, known], ["cBN", "known"])

    def bond_warnings(res):
        return [w for w in res.warnings if w.startswith("bond(s)")]

    bn, ok = run({**quiet, "novel_bond_max_expected": 0.8})
    assert bond_warnings(bn) == ["bond(s) B-N in no training crystal, expected SC 0.70 below 0.80"]
    assert bond_warnings(ok) == [] and ok.novel_bonds == []
    assert bn.novel_bonds == ["B-N"] and bn.to_dict(optics=False)["novel_bonds"] == ["B-N"]
    assert bn.to_dict(optics=False)["in_domain"] is False
    bn, _ = run({**quiet, "novel_bond_max_expected": 0.6})  # expected SC above the limit
    assert bond_warnings(bn) == [] and bn.novel_bonds == ["B-N"]
    bn, _ = run(quiet)  # a card from before the rule: pairs listed, no warning
    assert bond_warnings(bn) == [] and bn.to_dict(optics=False)["novel_bonds"] == ["B-N"]


def test_docs_state_the_shipped_models_thresholds_and_domain():
    """docs/predict.md quotes the calibration, warning thresholds and training domain of the shipped rpa card."""
    from pathlib import Path

    from optiladder.pretrained import read_card

    doc = (Path(__file__).resolve().parents[2] / "docs" / "predict.md").read_text().replace("−", "-")
    card = read_card("rpa")
    unc, data = card["uncertainty"], card["data"]
    cal, rule = unc["calibration"], unc["rule"]
    assert f"**{rule['min_expected']:.3f}**" in doc and f"**{rule['max_distance']:.2f}**" in doc
    assert f"a = {cal['a']:.4f}, b = {cal['b']:.4f}, c = {cal['c']:.4f}" in doc
    assert (
        f"[e - {-cal['q_lo']:.4f}, e + {cal['q_hi']:.4f}]" in doc and f"**{unc['latent_scale']:.4f}**" in doc
    )
    sizes = ", ".join(f"{k} atom{'s' if k != '1' else ''}: {v}" for k, v in data["train_nsites"].items())
    assert sizes in doc and " ".join(data["elements"]) in doc and card["version"] in doc
    fitted = ", ".join(f"{k} atoms: {v}" for k, v in unc["fitted_nsites"].items())
    assert f"{cal['n']} validation crystals: {fitted}" in doc
