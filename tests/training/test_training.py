"""Training loop: reproducibility with a seed, early stopping, and the leakage guard at every level."""

from __future__ import annotations

import pytest
import torch

from optiladder.data.splits import LeakageError, split_of
from optiladder.graphs import DEFAULT_FEATURIZER
from optiladder.targets import get_target
from optiladder.training import Model, TrainSettings, make_card, save_model, train_model

SMALL = {"node_hidden": (16, 16), "gat_channels": (8, 8), "gat_heads": (2, 2), "head_hidden": (64,)}
QUICK = TrainSettings(lr=1e-3, batch_size=8, max_epochs=4, patience=10, seed=3)


def _state(model):
    return {k: v.clone() for k, v in model.net.state_dict().items()}


def test_reproducible_with_seed(arrays):
    a = train_model(arrays, target="rpa", settings=QUICK, model_kwargs=SMALL, cache=False)
    b = train_model(arrays, target="rpa", settings=QUICK, model_kwargs=SMALL, cache=False)
    sa, sb = _state(a.model), _state(b.model)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [h["train_loss"] for h in a.fit.history] == [h["train_loss"] for h in b.fit.history]
    c = train_model(arrays, target="rpa", settings=TrainSettings(**{**QUICK.to_dict(), "seed": 4}),
                    model_kwargs=SMALL, cache=False)  # fmt: skip
    assert any(not torch.equal(sa[k], c.model.net.state_dict()[k]) for k in sa)


def test_loss_decreases_and_best_checkpoint_kept(arrays):
    s = TrainSettings(lr=1e-3, batch_size=8, max_epochs=12, patience=3, seed=0)
    r = train_model(arrays, target="ipa", settings=s, model_kwargs=SMALL)
    hist = r.fit.history
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert r.fit.best_val_loss == min(h["val_loss"] for h in hist)
    assert r.fit.stopped in ("early stopping", "max_epochs")
    card = r.card
    tr = card["training"]
    assert tr["n_train"] == 47 and tr["n_validation"] == 12 and card["levels"] == ["ipa"]
    assert all(split_of(i) in ("train", "none") for i in tr["train_ids"])
    assert "agm001850264" not in tr["train_ids"]  # excluded material (RbF2), present in the fixture folder
    assert tr["val_loss"] == r.fit.best_val_loss and r.model.target == get_target("ipa")


def test_training_on_held_out_ids_raises(arrays):
    test_id = arrays.split("test").ids[0]
    val_id = arrays.split("validation").ids[0]
    train_id = arrays.split("train").ids[0]
    for target in ("ipa", "rpa", "sc_rpa_ipa"):
        with pytest.raises(LeakageError):
            train_model(arrays, target=target, ids=[train_id, test_id], settings=QUICK, model_kwargs=SMALL)
    with pytest.raises(LeakageError):
        train_model(arrays, target="ipa", ids=[train_id, val_id], settings=QUICK, model_kwargs=SMALL)
    for splits in (("test",), ("train", "validation"), ("validation",)):
        with pytest.raises(LeakageError):
            train_model(arrays, target="ipa", train_splits=splits, settings=QUICK, model_kwargs=SMALL)
    with pytest.raises(LeakageError):  # the test split may not steer early stopping either
        train_model(arrays, target="rpa", val_split="test", settings=QUICK, model_kwargs=SMALL)
    with pytest.raises(ValueError):
        train_model(arrays, target="rpa", train_splits=("bogus",), settings=QUICK, model_kwargs=SMALL)


def test_fit_itself_refuses_held_out_graphs(arrays):
    from optiladder.graphs import structure_graph
    from optiladder.nn import OptiMate
    from optiladder.training import fit, make_data, target_values

    test = arrays.split("test")
    data = make_data([structure_graph(s) for s in test.structures[:4]], target_values(test, "rpa")[:4],
                     test.ids[:4])  # fmt: skip
    with pytest.raises(LeakageError):
        fit(OptiMate(**SMALL), data, data, QUICK)


def test_fit_needs_a_model_that_declares_its_loss(arrays):
    from optiladder.graphs import structure_graph
    from optiladder.nn import OptiMate
    from optiladder.training import fit, make_data, target_values

    pool = arrays.split("train")
    data = make_data([structure_graph(s) for s in pool.structures[:4]], target_values(pool, "rpa")[:4],
                     pool.ids[:4])  # fmt: skip

    class NoLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = OptiMate(**SMALL)

        def forward(self, batch):
            return self.inner(batch)

    with pytest.raises(TypeError, match="declares no loss"):
        fit(NoLoss(), data, data, QUICK)
    mse = OptiMate(**SMALL, loss="mse")
    res = fit(mse, data, data, TrainSettings(max_epochs=1, batch_size=2))
    # the loop used the model's own loss: the recorded validation loss is its MSE, not an L1
    from optiladder.training import batches, evaluate

    assert res.best_val_loss == pytest.approx(evaluate(mse, batches(data, 256)), rel=1e-6)


def test_transfer_refuses_a_parent_trained_on_held_out_ids(tmp_path, arrays):
    """A parent whose card lists a test id (e.g. an IPA model trained elsewhere) cannot be fine-tuned."""
    from optiladder.nn import OptiMate

    test_id = arrays.split("test").ids[0]
    target = get_target("ipa")
    card = make_card(name="leaky", target=target, train_ids=["x", test_id])
    path = save_model(tmp_path / "leaky", Model([OptiMate(**SMALL)], DEFAULT_FEATURIZER, target, card))
    with pytest.raises(LeakageError, match="parent"):
        train_model(arrays, target="rpa", parent=path, settings=QUICK)


def test_transfer_head_only_keeps_body(arrays):
    parent = train_model(arrays, target="ipa", settings=QUICK, model_kwargs=SMALL, name="ipa")
    before = _state(parent.model)
    child = train_model(arrays, target="rpa", parent=parent.model, trainable="head", settings=QUICK)
    after = child.model.net.state_dict()
    for k, v in before.items():
        if k.startswith(("node_mlp", "convs", "pool")):
            assert torch.equal(v, after[k]), k  # frozen, batch-norm statistics included
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head"))
    assert all(torch.equal(before[k], parent.model.net.state_dict()[k]) for k in before)  # parent untouched
    tr = child.card["training"]
    assert tr["parent"]["name"] == "ipa" and tr["trainable"] == ["head"]
    assert tr["parent"]["id"] == parent.model.state_id() and tr["parent"]["target"] == "ipa"


def test_probe_then_fit_trains_the_head_first_and_keeps_the_better_stage(arrays):
    """LP-FT: the probe stage moves the head alone (body and its batch-norm statistics bit for bit unchanged);
    when the all-weights stage never beats the probe on validation (here: a step so large that it diverges),
    the probed weights are what the model ends with, and every weight is trainable again."""
    import copy

    from optiladder.graphs import structure_graph
    from optiladder.nn import OptiMate
    from optiladder.training import fit, make_data, probe_then_fit, target_values

    pool, val = arrays.split("train"), arrays.split("validation")
    tr = make_data([structure_graph(s) for s in pool.structures[:12]], target_values(pool, "rpa")[:12],
                   pool.ids[:12])  # fmt: skip
    va = make_data(
        [structure_graph(s) for s in val.structures[:6]], target_values(val, "rpa")[:6], val.ids[:6]
    )
    torch.manual_seed(0)
    parent = OptiMate(**SMALL)
    fit(parent, tr, va, TrainSettings(max_epochs=3, batch_size=4))
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    model = copy.deepcopy(parent)
    probe = TrainSettings(lr=1e-3, max_epochs=4, patience=4, batch_size=4)
    wild = TrainSettings(lr=1e3, max_epochs=2, patience=2, batch_size=4)
    res = probe_then_fit(model, tr, va, wild, probe)
    after = model.state_dict()
    body = [k for k in before if not k.startswith("head")]
    assert body and all(torch.equal(before[k], after[k]) for k in body)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head"))
    assert all(p.requires_grad for p in model.parameters())
    assert [h["stage"] for h in res.history] == [0] * 4 + [1] * 2 and res.epochs_run == 6
    assert res.best_epoch <= 4
    # with a sane second stage the all-weights fine-tuning moves the body too and is kept when it is better
    model2 = copy.deepcopy(parent)
    res2 = probe_then_fit(model2, tr, va, TrainSettings(lr=2e-4, max_epochs=3, batch_size=4), probe)
    if res2.best_epoch > 4:
        assert any(not torch.equal(before[k], model2.state_dict()[k]) for k in body)
    assert res2.best_val_loss <= res.best_val_loss + 1e-9
