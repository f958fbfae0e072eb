"""Checkpoints: one file per model holding everything needed to rebuild and judge it.

Layout (a plain dict, saved with ``torch.save`` and loadable with ``torch.load(path, weights_only=True)``)::

    {
      "format": "optiladder.checkpoint", "format_version": 1,
      "model_class": "OptiMate",
      "config": {...},          # the model's constructor kwargs (model.config), JSON types only
      "state_dict": {...},      # tensors
      "featurizer": {...},      # Featurizer.to_dict(): graphs at inference are built exactly as in training
      "card": {...},            # model card, JSON types only (see below)
    }

The model card (:func:`make_card`) records: ``name``, ``task`` (``spectrum``/``scalar``), ``target``
(``ipa``/``rpa``/``sc_rpa_ipa``), ``level``, ``dataset_size`` (training materials), ``train_ids`` (sorted) and
``train_ids_sha256``, ``n_validation``, ``train_splits``, ``metrics`` (dict of floats), ``parent``
(``{"name", "state_sha256"}`` or None), ``trainable``, ``settings``, ``fit`` (epochs, seconds, stop reason),
``date`` (UTC ISO 8601), ``versions`` (python, optiladder, torch, torch_geometric, numpy), ``state_sha256``
(hash of the weights), ``data`` (free text about the spectra, e.g. "GPAW gpaw-pbe-v1").

Stable API (used by the predictor and ``pretrained/``)::

    save_checkpoint(path, model, featurizer, card) -> Path
    load_checkpoint(path) -> Checkpoint(model, featurizer, card)   # a NamedTuple: model, featurizer, card = ...
    read_card(path) -> dict
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ..graphs import Featurizer

FORMAT = "optiladder.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable optiladder checkpoint."""


class Checkpoint(NamedTuple):
    """A loaded model (eval mode, CPU), its featurizer and its model card."""

    model: nn.Module
    featurizer: Featurizer
    card: dict[str, Any]


def _plain(obj: Any) -> Any:
    """JSON round trip: numpy scalars → float/int, tuples → lists (what ``weights_only`` loading accepts)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def ids_sha256(ids) -> str:
    """sha256 (hex) of the sorted ids joined by newlines."""
    return hashlib.sha256("\n".join(sorted(set(ids))).encode()).hexdigest()


def state_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 (hex) of a state dict: names, dtypes, shapes and bytes of every tensor in name order."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Library versions recorded in every card."""
    import numpy
    import torch_geometric

    from .. import __version__ as ol_version

    return {
        "python": platform.python_version(),
        "optiladder": str(ol_version),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "numpy": numpy.__version__,
    }


def make_card(
    *,
    name: str,
    task: str,
    target: str,
    level: str,
    train_ids,
    n_validation: int = 0,
    train_splits=(),
    metrics: dict[str, float] | None = None,
    parent: dict[str, Any] | None = None,
    trainable: str = "all",
    settings: dict[str, Any] | None = None,
    fit: dict[str, Any] | None = None,
    data: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A model card (plain JSON types). ``state_sha256`` is filled in by :func:`save_checkpoint`."""
    ids = sorted(set(train_ids))
    card = {
        "name": name,
        "task": task,
        "target": target,
        "level": level,
        "dataset_size": len(ids),
        "train_ids": ids,
        "train_ids_sha256": ids_sha256(ids),
        "n_validation": int(n_validation),
        "train_splits": list(train_splits),
        "metrics": dict(metrics or {}),
        "parent": parent,
        "trainable": trainable,
        "settings": dict(settings or {}),
        "fit": dict(fit or {}),
        "data": data,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    card.update(extra or {})
    return _plain(card)


def save_checkpoint(path: str | Path, model: nn.Module, featurizer: Featurizer, card: dict[str, Any]) -> Path:
    """Write ``model`` (needs ``model.config``), its featurizer and card to ``path`` (atomic rename)."""
    path = Path(path)
    config = getattr(model, "config", None)
    if config is None:
        raise CheckpointError(f"{type(model).__name__} has no recorded config")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    card = _plain({**card, "state_sha256": state_sha256(state)})
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "config": _plain(config),
        "state_dict": state,
        "featurizer": _plain(featurizer.to_dict()),
        "card": card,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def _read(path: str | Path) -> dict[str, Any]:
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an optiladder checkpoint")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {payload['format_version']} is newer than this code")
    return payload


def build_model(model_class: str, config: dict[str, Any]) -> nn.Module:
    """A fresh (untrained) model of a registered class from its recorded config."""
    from ..nn import MODEL_CLASSES

    if model_class not in MODEL_CLASSES:
        raise CheckpointError(f"unknown model class {model_class!r}; known: {sorted(MODEL_CLASSES)}")
    return MODEL_CLASSES[model_class](**config)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Rebuild the model (``strict`` state-dict loading, eval mode, CPU), its featurizer and card."""
    payload = _read(path)
    model = build_model(payload["model_class"], payload["config"])
    model.load_state_dict(payload["state_dict"], strict=True)
    model.eval()
    return Checkpoint(model, Featurizer.from_dict(payload["featurizer"]), payload["card"])


def read_card(path: str | Path) -> dict[str, Any]:
    """The model card of a checkpoint, without building the model."""
    return _read(path)["card"]
