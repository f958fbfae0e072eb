"""Training: the one model format (:class:`Model`), plain loop functions and guarded entry points.

Public API (imported lazily: ``import optiladder.training.model`` does not import torch)::

    Model, save_model, load_model_dir, verify_dir, make_card, model_id, ids_sha256, PretrainedError   (model)
    TrainSettings, FitResult, fit, train_one_epoch, evaluate, predict, embed, batches                  (loop)
    train_model, predict_arrays, TrainResult                                                           (entry points)
    target_values, dataset_graphs, make_data, with_targets                                             (data)
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "model": (
        "CheckpointError",
        "Model",
        "PretrainedError",
        "ids_sha256",
        "load_model_dir",
        "make_card",
        "model_id",
        "parent_ref",
        "read_card",
        "save_model",
        "sha256_file",
        "verify_dir",
        "write_card",
    ),
    "data": ("dataset_graphs", "make_data", "target_values", "with_targets"),
    "loop": (
        "FitResult",
        "TrainSettings",
        "batches",
        "embed",
        "evaluate",
        "fit",
        "probe_then_fit",
        "model_loss",
        "predict",
        "seed_everything",
        "train_one_epoch",
    ),
    "train": ("TrainResult", "predict_arrays", "train_model"),
}
_INDEX = {name: mod for mod, names in _WHERE.items() for name in names}
__all__ = sorted(_INDEX)


def __getattr__(name: str) -> Any:
    mod = _INDEX.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
