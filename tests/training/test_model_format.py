"""The one model format: round trip with ``weights_only=True``, the card schema and checksums, ensembles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from optiladder.graphs import DEFAULT_FEATURIZER, Featurizer, collate, structure_graph
from optiladder.nn import OptiMate
from optiladder.targets import get_target
from optiladder.training import (
    Model,
    PretrainedError,
    ids_sha256,
    load_model_dir,
    make_card,
    model_id,
    save_model,
    sha256_file,
    verify_dir,
)

SMALL = {"node_hidden": (16, 16), "gat_channels": (8, 8), "gat_heads": (2, 2), "head_hidden": (32,)}


def _model(k: int = 1, featurizer: Featurizer = DEFAULT_FEATURIZER, target: str = "rpa") -> Model:
    nets = []
    for seed in range(k):
        torch.manual_seed(seed)
        nets.append(OptiMate(**SMALL, node_dim=featurizer.node_dim, edge_dim=featurizer.edge_dim).eval())
    spec = get_target(target)
    card = make_card(name="m", target=spec, train_ids=["agm2", "agm1"], data={"protocol": "gpaw-pbe-v1"})
    return Model(nets, featurizer, spec, card)


def test_round_trip_weights_only_and_card(tmp_path, arrays):
    feat = Featurizer(cutoff=4.5)
    m = _model(featurizer=feat)
    folder = save_model(tmp_path / "m", m)
    raw = torch.load(folder / "weights.pt", weights_only=True)  # tensors only
    assert all(isinstance(v, torch.Tensor) for v in raw.values()) and all(k.startswith("0.") for k in raw)
    config = json.loads((folder / "config.json").read_text())
    assert (
        config["class"] == "OptiMate" and config["kwargs"]["head_hidden"] == [32] and config["members"] == 1
    )
    assert json.loads((folder / "target.json").read_text())["grid"] == {"start": 0.0, "stop": 20.0, "n": 2001}
    back = load_model_dir(folder)
    assert back.featurizer == feat and back.target == m.target and not back.net.training
    batch = collate([structure_graph(s, feat) for s in arrays.structures[:4]])
    torch.testing.assert_close(back(batch), m(batch))
    card = back.card
    assert card["schema"] == 1 and card["target"] == "rpa" and card["levels"] == ["rpa"]
    assert set(card["files"]) == {"config.json", "weights.pt", "featurizer.json", "target.json"}
    assert card["files"]["weights.pt"] == sha256_file(folder / "weights.pt")
    assert card["id"] == model_id(card["files"]) == m.id
    tr = card["training"]
    assert tr["train_ids"] == ["agm1", "agm2"] and tr["train_ids_sha256"] == ids_sha256(["agm2", "agm1"])
    assert set(card["versions"]) >= {"torch", "torch_geometric", "optiladder", "python"}
    assert card["created"].endswith("+00:00") and card["version"].startswith("v")
    assert verify_dir(folder) == card


def test_same_files_same_id_float16_storage(tmp_path, arrays):
    m = _model()
    a = save_model(tmp_path / "a", m, dtype="float16")
    b = save_model(tmp_path / "b", _model(), dtype="float16")
    assert json.loads((a / "card.json").read_text())["id"] == json.loads((b / "card.json").read_text())["id"]
    assert (a / "weights.pt").stat().st_size < 0.6 * (
        save_model(tmp_path / "c", m) / "weights.pt"
    ).stat().st_size
    back = load_model_dir(a)
    g = collate([structure_graph(s) for s in arrays.structures[:3]])
    x, y = m(g).detach().numpy(), back(g).detach().numpy()
    assert back.net.head.mlp.layers[0].weight.dtype == torch.float32
    assert np.allclose(x, y, rtol=2e-2, atol=2e-3 * np.abs(x).max())


def test_ensemble_is_one_model(tmp_path, arrays):
    """K members, one card, one forward returning the mean and the per-energy spread."""
    ens = _model(k=3)
    g = collate([structure_graph(s) for s in arrays.structures[:5]])
    with torch.no_grad():
        outs = torch.stack([n(g) for n in ens.nets])
        mean, spread = ens.forward(g)
    torch.testing.assert_close(mean, outs.mean(0))
    torch.testing.assert_close(spread, outs.std(0, unbiased=False))
    assert mean.shape == (5, 2001) and float(spread.max()) > 0
    folder = save_model(tmp_path / "ens", ens)
    back = load_model_dir(folder)
    assert back.members == 3 and back.card["members"] == 3
    with torch.no_grad():
        torch.testing.assert_close(back.forward(g)[0], mean)
    raw = back.predict_graphs([structure_graph(s) for s in arrays.structures[:5]], raw=True)
    assert np.allclose(raw, mean.double().numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="one architecture"):
        Model([ens.nets[0], OptiMate(head_hidden=(8,))], DEFAULT_FEATURIZER, ens.target)


def test_target_must_fit_the_network():
    with pytest.raises(ValueError, match="outputs 2001 values"):
        Model([OptiMate(**SMALL)], DEFAULT_FEATURIZER, get_target("sc_rpa_ipa"))


def test_missing_folder_and_unsaved_card(tmp_path):
    with pytest.raises(PretrainedError, match="no such model folder"):
        load_model_dir(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "card.json").write_text(json.dumps({"schema": 1, "name": "x"}))
    with pytest.raises(PretrainedError, match="no file checksums"):
        load_model_dir(tmp_path / "half")
