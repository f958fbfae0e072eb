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
