"""Model integrity: every load failure of a model folder is a one-line ``PretrainedError`` naming the file.

Regression tests of the hardening issue: a tampered config (``target_scale``), a malicious pickle whose
checksum was updated in the card, a missing file, bad JSON, an unexpected file, a target that does not fit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from optiladder.pretrained import PretrainedError, load_model, model_dir
from optiladder.training.model import model_id, sha256_file


@pytest.fixture
def sc_copy(tmp_path) -> Path:
    """A copy of the shipped sc model folder (the smallest, 1 MB)."""
    dest = tmp_path / "sc" / model_dir("sc").name
    shutil.copytree(model_dir("sc"), dest)
    return dest


def _resign(folder: Path) -> None:
    """Update the card's checksums and id to the folder's current files (what an attacker would do)."""
    card = json.loads((folder / "card.json").read_text())
    card["files"] = {f: sha256_file(folder / f) for f in card["files"]}
    card["id"] = model_id(card["files"])
    (folder / "card.json").write_text(json.dumps(card))


def _error(folder: Path) -> str:
    with pytest.raises(PretrainedError) as err:
        load_model(folder)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_shipped_copy_loads(sc_copy):
    assert load_model(sc_copy).target.name == "sc_rpa_ipa"


def test_tampered_config_is_refused(sc_copy):
    cfg = json.loads((sc_copy / "config.json").read_text())
    cfg["kwargs"]["target_scale"] = 10 * cfg["kwargs"]["target_scale"]
    (sc_copy / "config.json").write_text(json.dumps(cfg))
    msg = _error(sc_copy)
    assert msg.startswith(str(sc_copy / "config.json")) and "does not match its card" in msg


def test_tampered_weights_are_refused(sc_copy):
    w = sc_copy / "weights.pt"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    msg = _error(sc_copy)
    assert msg.startswith(str(w)) and "checksum" in msg


def test_malicious_pickle_with_updated_checksum_is_not_executed(sc_copy, tmp_path):
    import torch

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"0.head.mlp.layers.0.weight": Evil()}, sc_copy / "weights.pt")
    _resign(sc_copy)
    msg = _error(sc_copy)
    assert msg.startswith(str(sc_copy / "weights.pt")) and "not a plain tensor file" in msg
    assert not marker.exists()


@pytest.mark.parametrize("name", ["config.json", "weights.pt", "featurizer.json", "target.json"])
def test_missing_file(sc_copy, name):
    (sc_copy / name).unlink()
    msg = _error(sc_copy)
    assert msg.startswith(str(sc_copy / name)) and "missing" in msg


@pytest.mark.parametrize("name", ["config.json", "featurizer.json", "target.json"])
def test_bad_json_with_updated_checksum(sc_copy, name):
    (sc_copy / name).write_text('{"truncated": ')
    _resign(sc_copy)
    msg = _error(sc_copy)
    assert msg.startswith(str(sc_copy / name)) and "unreadable JSON" in msg


def test_bad_card_json(sc_copy):
    (sc_copy / "card.json").write_text("{")
    assert _error(sc_copy).startswith(str(sc_copy / "card.json"))


def test_unexpected_file_is_refused(sc_copy):
    (sc_copy / "extra.pkl").write_bytes(b"\x80\x04K\x01.")
    msg = _error(sc_copy)
    assert msg.startswith(str(sc_copy / "extra.pkl")) and "not covered" in msg


def test_card_id_must_match_files(sc_copy):
    card = json.loads((sc_copy / "card.json").read_text())
    card["id"] = "0" * 16
    (sc_copy / "card.json").write_text(json.dumps(card))
    assert "model id" in _error(sc_copy)


def test_target_that_does_not_fit_the_network(sc_copy):
    t = json.loads((sc_copy / "target.json").read_text())
    t.update(kind="spectrum", quantity="im_eps", levels=["rpa"], name="rpa")
    (sc_copy / "target.json").write_text(json.dumps(t))
    _resign(sc_copy)
    msg = _error(sc_copy)
    assert msg.startswith(str(sc_copy / "target.json")) and "outputs 1 values" in msg


def test_weights_that_do_not_fit_the_config(sc_copy):
    cfg = json.loads((sc_copy / "config.json").read_text())
    cfg["kwargs"]["head_hidden"] = [64]
    (sc_copy / "config.json").write_text(json.dumps(cfg))
    _resign(sc_copy)
    msg = _error(sc_copy)
    assert msg.startswith(str(sc_copy / "weights.pt")) and "does not fit config.json" in msg
