"""The shipped models: cards, checksums, refusal of tampered weights, no leakage, size budget."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from optiladder.data.splits import check_trainable
from optiladder.pretrained import (
    MODEL_NAMES,
    PretrainedError,
    available,
    load_model,
    model_dir,
    read_card,
    save_model,
    sha256_file,
    verify,
)


def test_all_models_shipped_and_verified():
    assert available() == sorted(MODEL_NAMES)
    for name in MODEL_NAMES:
        card = verify(name)
        assert card["weights"]["sha256"] == sha256_file(model_dir(name) / "weights.pt")
        assert card["name"] == name
        assert card["data"]["train"] >= 10 and card["data"]["test"] >= 2
        assert card["metrics"]["split"] == "test"


def test_cards_say_how_models_were_made():
    ipa, rpa, sc = (read_card(n) for n in ("ipa", "rpa", "sc"))
    assert rpa["parent"] == "ipa" and ipa["parent"] is None
    # the rpa model started from the shipped ipa model's weights (same training data)
    assert rpa["parent_detail"]["train_ids_sha256"] == ipa["training"]["train_ids_sha256"]
    assert ipa["data"]["splits"]["train"] == ["train", "none"]
    assert 0.0 < rpa["metrics"]["spectrum"]["median_sc"] <= 1.0
    assert 0.0 <= sc["metrics"]["sc"]["mae"] < 1.0
    for c in (ipa, rpa, sc):
        assert c["created"] and c["full_name"].startswith("OptiMate-gpaw-pbe-v1-")


def test_no_model_was_trained_on_validation_or_test_materials():
    for name in MODEL_NAMES:
        ids = read_card(name)["training"]["train_ids"]
        assert len(ids) == read_card(name)["data"]["train"]
        check_trainable(ids, context=name)  # raises LeakageError otherwise


def test_shipped_weights_fit_in_git():
    total = sum((model_dir(n) / "weights.pt").stat().st_size for n in MODEL_NAMES)
    assert total < 25 * 2**20


def test_tampered_weights_are_refused(tmp_path):
    shutil.copytree(model_dir("rpa"), tmp_path / "rpa")
    w = tmp_path / "rpa" / "weights.pt"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(PretrainedError) as err:
        load_model("rpa", root=tmp_path)
    msg = str(err.value)
    assert msg.startswith("rpa: weights.pt checksum") and "does not match its card" in msg
    assert "\n" not in msg


def test_missing_and_unknown_models(tmp_path):
    with pytest.raises(PretrainedError, match="unknown pretrained model"):
        load_model("gw")
    with pytest.raises(PretrainedError, match="not installed"):
        load_model("ipa", root=tmp_path)
    shutil.copytree(model_dir("sc"), tmp_path / "sc")
    (tmp_path / "sc" / "featurizer.json").write_text(
        json.dumps({**json.loads((tmp_path / "sc" / "featurizer.json").read_text()), "cutoff": 6.0})
    )
    with pytest.raises(PretrainedError, match="featurizer.json hash"):
        load_model("sc", root=tmp_path)


def test_save_and_load_round_trip(tmp_path, examples):
    """A fresh small model saved in float16 and loaded back predicts what it did (to float16 precision)."""
    import torch

    from optiladder.graphs import DEFAULT_FEATURIZER, collate, structure_graph
    from optiladder.nn import spectrum_model
    from optiladder.structures import load

    torch.manual_seed(0)
    model = spectrum_model(head_hidden=[64, 64]).eval()
    save_model(tmp_path / "ipa", model, DEFAULT_FEATURIZER, {"name": "ipa"})
    loaded = load_model("ipa", root=tmp_path)
    assert loaded.card["weights"]["dtype"] == "float16"
    g = collate([structure_graph(load(examples / "SiC.cif"), DEFAULT_FEATURIZER)])
    with torch.no_grad():
        a, b = model(g).numpy(), loaded.model(g).numpy()
    assert np.allclose(a, b, rtol=2e-2, atol=2e-3 * np.abs(a).max())


@pytest.mark.slow
def test_rebuild_recipe_end_to_end(tmp_path):
    """The rebuild recipe on the real dataset with a tiny budget: three model folders, cards, checksums, parent."""
    from optiladder.pretrained.rebuild import RebuildSettings, rebuild

    shipped = {n: sha256_file(model_dir(n) / "weights.pt") for n in MODEL_NAMES}
    settings = RebuildSettings(
        max_epochs=2, tl_max_epochs=2, head_hidden=(32,), sc_head_hidden=(16,), max_seconds=60, n_seeds=2
    )
    cards = rebuild(out=tmp_path, settings=settings)
    assert sorted(cards) == sorted(MODEL_NAMES)
    assert available(tmp_path) == sorted(MODEL_NAMES)
    for name in MODEL_NAMES:
        lm = load_model(name, root=tmp_path)
        assert (
            lm.card["metrics"]["split"] == "test" and lm.card["metrics"]["n"] == cards[name]["data"]["test"]
        )
        check_trainable(lm.card["training"]["train_ids"], context=name)
        assert lm.card["training"]["fit"]["epochs_run"] <= 2
    assert cards["rpa"]["parent"] == "ipa"
    assert cards["rpa"]["parent_detail"]["train_ids_sha256"] == cards["ipa"]["training"]["train_ids_sha256"]
    assert "baseline_ipa_dft_as_rpa" in cards["rpa"]["metrics"]
    # seed selection on the validation split: the ipa and rpa models shipped come from the same chain
    sel = cards["rpa"]["training"]["selection"]
    assert sel["seeds"] == [0, 1] and sel["chosen_seed"] in (0, 1)
    assert sel["val_l1"][sel["seeds"].index(sel["chosen_seed"])] == min(sel["val_l1"])
    assert cards["ipa"]["training"]["selection"]["chosen_seed"] == sel["chosen_seed"]
    assert cards["rpa"]["training"]["settings"]["seed"] == sel["chosen_seed"]
    # the shipped models were not touched
    assert {n: sha256_file(model_dir(n) / "weights.pt") for n in MODEL_NAMES} == shipped


def test_refresh_metrics_rewrites_cards_not_weights(tmp_path):
    from optiladder.pretrained.rebuild import refresh_metrics

    for n in MODEL_NAMES:
        shutil.copytree(model_dir(n), tmp_path / n)
        card = json.loads((tmp_path / n / "card.json").read_text())
        card["metrics"] = {}
        (tmp_path / n / "card.json").write_text(json.dumps(card))
    cards = refresh_metrics(root=tmp_path)
    for n in MODEL_NAMES:
        assert verify(n, tmp_path)["metrics"] == cards[n]["metrics"]  # checksum still matches the card
        assert cards[n]["metrics"]["n"] >= 20
    shipped = read_card("rpa")["metrics"]["spectrum"]["median_sc"]
    # same weights, same test records (or a few more added by the campaign since): about the same number
    assert abs(cards["rpa"]["metrics"]["spectrum"]["median_sc"] - shipped) < 0.05
