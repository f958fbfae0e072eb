"""``optiladder study sc``: SC[RPA; IPA] recipes for the shipped ensemble, side by side (quick mode, real models
and records), and the paired bootstrap that says how sure a validation gain is."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_paired_bootstrap_says_how_sure_a_gain_is():
    from optiladder.study.sc import paired_bootstrap

    rng = np.random.default_rng(1)
    b = rng.uniform(0.0, 0.1, 200)
    clear = paired_bootstrap(b - 0.02, b)  # better on every material
    assert clear["p_better"] == 1.0 and clear["mae_difference"] == pytest.approx(0.02)
    noise = paired_bootstrap(b + rng.normal(0, 0.02, 200), b)  # no systematic gain
    assert 0.0 < noise["p_better"] < 0.95 and noise["se"] > 0.0
    worse = paired_bootstrap(b + 0.01, b)
    assert worse["p_better"] == 0.0 and worse["mae_difference"] == pytest.approx(-0.01)


def test_quick_sc_study_of_the_shipped_ensemble(tmp_path):
    from typer.testing import CliRunner

    from optiladder.cli import app
    from optiladder.pretrained import read_card
    from optiladder.training import load_model_dir

    out = tmp_path / "sc"
    res = CliRunner().invoke(app, ["study", "sc", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "chosen on validation" in res.output
    r = json.loads((out / "results.json").read_text())
    rpa = read_card("rpa")
    assert r["rpa"]["id"] == rpa["id"] and r["n"]["pool"] == 60
    assert (
        r["recipes"]["member-heads"]["networks"] == rpa["members"]
        and r["recipes"]["ipa-heads"]["networks"] == 3
    )
    saved = load_model_dir(out / "models" / "sc")
    assert set(saved.card["training"]["train_ids"]) <= set(rpa["training"]["train_ids"])
    assert saved.members == r["recipes"][r["winner"]]["networks"]
    assert "| ipa-heads |" in (out / "README.md").read_text()
