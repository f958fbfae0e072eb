"""Checkpoints: round trip with ``weights_only=True``, the model card, bad files."""

from __future__ import annotations

import pytest
import torch

from optiladder.graphs import DEFAULT_FEATURIZER, Featurizer, collate, structure_graph
from optiladder.nn import OptiMate
from optiladder.training import (
    CheckpointError,
    ids_sha256,
    load_checkpoint,
    make_card,
    read_card,
    save_checkpoint,
    state_sha256,
)


def test_round_trip_weights_only(tmp_path, arrays):
    model = OptiMate(head_hidden=(64,), target_shift=0.1).eval()
    feat = Featurizer(cutoff=4.5)
    card = make_card(name="m", task="spectrum", target="rpa", level="rpa", train_ids=["b", "a"],
                     metrics={"val_l1": torch.tensor(0.5).item()})  # fmt: skip
    path = save_checkpoint(tmp_path / "m.pt", model, feat, card)
    raw = torch.load(path, weights_only=True)  # plain types and tensors only
    assert raw["model_class"] == "OptiMate" and raw["config"]["head_hidden"] == [64]
    ck = load_checkpoint(path)
    m2, f2, c2 = ck  # unpacks like a tuple
    assert f2 == feat and not m2.training
    batch = collate([structure_graph(s, feat) for s in arrays.structures[:4]])
    torch.testing.assert_close(m2(batch), model(batch))
    assert c2["train_ids"] == ["a", "b"] and c2["train_ids_sha256"] == ids_sha256(["a", "b"])
    assert c2["state_sha256"] == state_sha256(model.state_dict())
    assert c2["dataset_size"] == 2 and c2["level"] == "rpa"
    assert set(c2["versions"]) >= {"torch", "torch_geometric", "optiladder", "python"}
    assert c2["date"].endswith("+00:00")
    assert read_card(path) == c2


def test_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an optiladder checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_default_featurizer_saved(tmp_path):
    model = OptiMate(head_hidden=(8,))
    card = make_card(name="x", task="spectrum", target="ipa", level="ipa", train_ids=[])
    _, feat, _ = load_checkpoint(save_checkpoint(tmp_path / "x.pt", model, DEFAULT_FEATURIZER, card))
    assert feat == DEFAULT_FEATURIZER and feat.hash() == DEFAULT_FEATURIZER.hash()
