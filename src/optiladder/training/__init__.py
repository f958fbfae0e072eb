"""Training: plain loop functions, checkpoints with model cards, and guarded entry points.

Importing this package imports torch. Public API::

    TrainSettings, FitResult, fit, train_one_epoch, evaluate, predict, embed      (loop)
    train_model, predict_arrays, TrainResult                                       (entry points)
    save_checkpoint, load_checkpoint, read_card, Checkpoint, make_card             (checkpoints)
"""

from __future__ import annotations

from .checkpoint import (
    Checkpoint,
    CheckpointError,
    ids_sha256,
    load_checkpoint,
    make_card,
    read_card,
    save_checkpoint,
    state_sha256,
)
from .data import TARGETS, Target, dataset_graphs, make_data, target_values
from .loop import (
    FitResult,
    TrainSettings,
    batches,
    embed,
    evaluate,
    fit,
    l1_loss,
    predict,
    seed_everything,
    train_one_epoch,
)
from .train import TrainResult, predict_arrays, train_model

__all__ = [
    "TARGETS",
    "Checkpoint",
    "CheckpointError",
    "FitResult",
    "Target",
    "TrainResult",
    "TrainSettings",
    "batches",
    "dataset_graphs",
    "embed",
    "evaluate",
    "fit",
    "ids_sha256",
    "l1_loss",
    "load_checkpoint",
    "make_card",
    "make_data",
    "predict",
    "predict_arrays",
    "read_card",
    "save_checkpoint",
    "seed_everything",
    "state_sha256",
    "target_values",
    "train_model",
    "train_one_epoch",
]
