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
        and r["recipes"]["member-heads-frozen"]["networks"] == rpa["members"]
        and r["recipes"]["ipa-heads"]["networks"] == 3
    )
    assert r["recipes"]["member-heads-frozen"]["trainable"] == "head"
    saved = load_model_dir(out / "models" / "sc")
    assert set(saved.card["training"]["train_ids"]) <= set(rpa["training"]["train_ids"])
    assert saved.members == r["recipes"][r["winner"]]["networks"]
    assert "| ipa-heads |" in (out / "README.md").read_text()


def test_frozen_member_heads_keep_the_members_body_bit_for_bit():
    """``member-heads-frozen`` trains the small head only: the network's body (weights and batch-norm buffers)
    stays the parent member's, so the fast path shares it; ``member-heads`` moves the body."""
    import torch

    from optiladder.data.store import Store
    from optiladder.graphs import GraphCache
    from optiladder.nn.stacked import StackedOptiMate, body_fingerprint
    from optiladder.pretrained import load_model
    from optiladder.study.sc import ScOptions, sc_labels, train_scalar_heads
    from optiladder.training import make_data

    rpa = load_model("rpa")
    table = Store().table()
    train, validation = table.split("train"), table.split("validation")
    pool = train.subset(np.arange(len(train)) < 24)
    val = validation.subset(np.arange(len(validation)) < 8)
    cache = GraphCache(rpa.featurizer)
    tr, va = (
        make_data(cache.graphs(list(t.ids), list(t.structures)), None, list(t.ids)) for t in (pool, val)
    )
    opts = ScOptions.quick_mode()
    parents = rpa.nets[:2]
    kw = dict(hidden=(16,), settings_of=lambda s: opts.settings(s))
    frozen = train_scalar_heads(parents, tr, sc_labels(pool), va, sc_labels(val), trainable="head", **kw)
    moved = train_scalar_heads(parents[:1], tr, sc_labels(pool), va, sc_labels(val), **kw)
    assert [body_fingerprint(n) for n in frozen] == [body_fingerprint(n) for n in parents]
    assert body_fingerprint(moved[0]) != body_fingerprint(parents[0])
    assert StackedOptiMate({"rpa": rpa.nets, "sc": frozen}).bodies == len(rpa.nets)
    # a partial freeze ("pool+head": the member-heads-pool recipe) keeps the node MLP and GATv2 layers, moves the pool
    (pooled,) = train_scalar_heads(
        parents[:1], tr, sc_labels(pool), va, sc_labels(val), trainable="pool+head", **kw
    )
    for part, same in (("node_mlp", True), ("convs", True), ("pool", False)):
        mine = {k: v for k, v in pooled.state_dict().items() if k.startswith(part + ".")}
        theirs = {k: v for k, v in parents[0].state_dict().items() if k.startswith(part + ".")}
        assert mine and all(torch.equal(mine[k], theirs[k]) for k in mine) == same, part


def test_the_cheapest_recipe_ships_unless_validation_says_it_is_worse():
    """``member-heads-frozen`` (no body of its own) is chosen when its validation MAE is higher by noise only, the
    more accurate recipe when that one is the better in ≥ 95 % of paired resamples."""
    from optiladder.study.sc import choose_recipe

    rng = np.random.default_rng(1)
    base = np.abs(rng.normal(0.0, 0.03, 79))
    noisy = np.abs(base + rng.normal(0.0, 0.01, 79))  # a little worse on average, by luck
    worse = base + 0.01  # worse on every material
    mae = lambda e: float(e.mean())  # noqa: E731
    for frozen, want in ((noisy, "member-heads-frozen"), (worse, "member-heads")):
        errors = {"member-heads": base, "member-heads-frozen": frozen, "ipa-heads": base + 0.02}
        winner, vs = choose_recipe({k: mae(v) for k, v in errors.items()}, errors)
        assert winner == want and vs["best"] == "member-heads"
        assert (vs["p_better"] >= 0.95) == (want == "member-heads")
    # the cheapest is also the most accurate: no comparison needed
    errors = {"member-heads": base + 0.01, "member-heads-frozen": base}
    assert choose_recipe({k: mae(v) for k, v in errors.items()}, errors) == ("member-heads-frozen", None)
