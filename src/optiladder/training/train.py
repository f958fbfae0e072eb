"""Training entry points with the leakage guard: direct learning, IPA pretraining and transfer learning.

Every entry point takes the names of the splits it may train on (``train_splits``, checked by
:func:`~optiladder.data.splits.check_split_names`: only ``train`` and ``none``) and checks the ids it
actually trains on, and those its parent model was trained on, with
:func:`~optiladder.data.splits.check_trainable`: a validation or test material raises
:class:`~optiladder.data.splits.LeakageError` at every level (IPA pretraining included). The validation
split is used only for early stopping, never for gradient steps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.splits import LeakageError, check_split_names, check_trainable
from ..graphs import DEFAULT_FEATURIZER, Featurizer, GraphCache
from .checkpoint import Checkpoint, load_checkpoint, make_card, state_sha256
from .data import TARGET_LEVEL, TARGETS, Target, dataset_graphs, make_data, target_values
from .loop import FitResult, TrainSettings, fit, predict, seed_everything

if TYPE_CHECKING:
    from torch import nn

    from ..data.store import DatasetArrays

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """A trained model (eval mode, best validation weights), its featurizer, card and fit log."""

    model: nn.Module
    featurizer: Featurizer
    card: dict[str, Any]
    fit: FitResult

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.model, self.featurizer, self.card)


def _select_training(
    data: DatasetArrays, train_splits: Sequence[str], ids: Sequence[str] | None
) -> DatasetArrays:
    """The training subset: rows of ``train_splits`` (checked), restricted to ``ids`` if given."""
    names = check_split_names(train_splits)
    pool = data.split(*names)
    if ids is not None:
        ids = list(ids)
        check_trainable(ids, context="training ids")
        pool_ids = set(pool.ids)
        missing = [i for i in ids if i not in pool_ids]
        if missing:
            raise LeakageError(
                f"{len(missing)} requested training id(s) are not in splits {list(names)} "
                f"(e.g. {', '.join(missing[:3])})"
            )
        wanted = set(ids)
        pool = pool.subset([i in wanted for i in pool.ids])
    check_trainable(pool.ids)
    return pool


def train_model(
    data: DatasetArrays,
    *,
    target: Target,
    train_splits: Sequence[str] = ("train", "none"),
    ids: Sequence[str] | None = None,
    val_split: str = "validation",
    val_ids: Sequence[str] | None = None,
    parent: Checkpoint | str | Path | None = None,
    trainable: str = "all",
    settings: TrainSettings | None = None,
    model_kwargs: dict[str, Any] | None = None,
    featurizer: Featurizer | None = None,
    cache: GraphCache | bool | None = True,
    name: str = "",
    data_note: str = "",
) -> TrainResult:
    """Train one model on ``data`` and return it with its model card.

    ``target``: ``ipa``, ``rpa`` (Im ε spectra) or ``sc_rpa_ipa`` (scalar). ``train_splits``: split names to
    train on; ``ids``: optional subset of them (e.g. a learning-curve size). Early stopping uses the rows of
    ``val_split`` (or ``val_ids``, e.g. a cross-validation fold of the training split; they are never trained
    on and must not overlap the training ids). ``parent``: checkpoint (object or path) to transfer from — its
    architecture, weights and featurizer are reused and ``trainable`` (``all``/``head``) says what is
    retrained; without a parent a new model is built from ``model_kwargs`` (a scalar target gets a 1-value
    head standardised to the training mean and std).
    """
    import torch

    from ..nn import OptiMate, scalar_model

    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    settings = settings or TrainSettings()
    train = _select_training(data, train_splits, ids)
    if val_ids is not None:
        wanted = set(val_ids)
        if wanted & set(train.ids):
            raise LeakageError("validation ids overlap the training ids")
        val = data.subset([i in wanted for i in data.ids])
    else:
        if val_split == "test":
            raise LeakageError("the test split is for reporting only; it may not steer early stopping")
        if val_split in train_splits:
            raise LeakageError(f"validation split {val_split!r} is also a training split")
        val = data.split(val_split)

    parent_info = None
    if parent is not None:
        if isinstance(parent, str | Path):
            parent = load_checkpoint(parent)
        check_trainable(parent.card.get("train_ids", []), context=f"parent model {parent.card.get('name')}")
        model = parent.model
        if featurizer is not None and featurizer != parent.featurizer:
            raise ValueError("a transferred model must keep its parent's featurizer")
        featurizer = parent.featurizer
        parent_info = {
            "name": parent.card.get("name", ""),
            "state_sha256": parent.card.get("state_sha256") or state_sha256(model.state_dict()),
            "target": parent.card.get("target"),
            "dataset_size": parent.card.get("dataset_size"),
            "train_ids_sha256": parent.card.get("train_ids_sha256"),
        }
        # a transferred model starts from the parent's weights: copy them, never train the parent in place
        import copy

        model = copy.deepcopy(model)
    else:
        featurizer = featurizer or DEFAULT_FEATURIZER
    y_train = target_values(train, target)
    seed_everything(settings.seed)
    if parent is None:
        kw = dict(model_kwargs or {})
        kw.setdefault("node_dim", featurizer.node_dim)
        kw.setdefault("edge_dim", featurizer.edge_dim)
        if target == "sc_rpa_ipa":
            kw.setdefault("target_shift", float(np.mean(y_train)))
            kw.setdefault("target_scale", float(np.std(y_train) or 1.0))
            model = scalar_model(**kw)
        else:
            model = OptiMate(**kw)
    out_dim = model.config["out_dim"]
    if out_dim != y_train.shape[1]:
        raise ValueError(f"model predicts {out_dim} values, target {target!r} has {y_train.shape[1]}")
    model.set_trainable(trainable)

    train_data = make_data(dataset_graphs(train, featurizer, cache), y_train, train.ids)
    val_data = make_data(dataset_graphs(val, featurizer, cache), target_values(val, target), val.ids)
    with torch.random.fork_rng():
        result = fit(model, train_data, val_data, settings)
    card = make_card(
        name=name or f"optimate-{target}-{len(train)}",
        task="scalar" if out_dim == 1 else "spectrum",
        target=target,
        level=TARGET_LEVEL[target],
        train_ids=train.ids,
        n_validation=len(val),
        train_splits=train_splits,
        metrics={"val_l1": result.best_val_loss},
        parent=parent_info,
        trainable=trainable,
        settings=settings.to_dict(),
        fit={
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "seconds": round(result.seconds, 2),
            "stopped": result.stopped,
        },
        data=data_note,
    )
    return TrainResult(model, featurizer, card, result)


def predict_arrays(
    model: nn.Module,
    featurizer: Featurizer,
    data: DatasetArrays,
    *,
    cache: GraphCache | bool | None = True,
    batch_size: int = 256,
) -> np.ndarray:
    """Model outputs for every record of ``data``, ``[n, out_dim]`` (float64)."""
    graphs = dataset_graphs(data, featurizer, cache)
    return predict(model, make_data(graphs, None, data.ids), batch_size)
