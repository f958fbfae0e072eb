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
from ..targets import TargetSpec, get_target
from .data import dataset_graphs, make_data
from .loop import FitResult, TrainSettings, fit, seed_everything
from .model import Model, load_model_dir, make_card, parent_ref

if TYPE_CHECKING:
    from torch import nn

    from ..data.store import DatasetArrays

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """A trained :class:`~.model.Model` (eval mode, best validation weights, card filled in) and its fit log."""

    model: Model
    fit: FitResult

    @property
    def featurizer(self) -> Featurizer:
        return self.model.featurizer

    @property
    def card(self) -> dict[str, Any]:
        return self.model.card

    @property
    def net(self) -> nn.Module:
        return self.model.net


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


def build_net(
    target: TargetSpec,
    featurizer: Featurizer,
    y_train: np.ndarray,
    model_kwargs: dict[str, Any] | None = None,
):
    """A fresh OptiMate for ``target``: ``out_dim`` and loss from the target; a scalar target gets a linear
    1-value head standardised to the training mean and std of ``y_train``."""
    from ..nn import OptiMate

    kw = dict(model_kwargs or {})
    kw.setdefault("node_dim", featurizer.node_dim)
    kw.setdefault("edge_dim", featurizer.edge_dim)
    kw["out_dim"] = target.out_dim
    kw["loss"] = target.loss
    if not target.is_spectrum:
        kw.setdefault("output_activation", "none")
        kw.setdefault("target_shift", float(np.mean(y_train)))
        kw.setdefault("target_scale", float(np.std(y_train) or 1.0))
    return OptiMate(**kw)


def train_model(
    data: DatasetArrays,
    *,
    target: str | TargetSpec,
    train_splits: Sequence[str] = ("train", "none"),
    ids: Sequence[str] | None = None,
    val_split: str = "validation",
    val_ids: Sequence[str] | None = None,
    parent: Model | str | Path | None = None,
    trainable: str | Sequence[str] = "all",
    settings: TrainSettings | None = None,
    model_kwargs: dict[str, Any] | None = None,
    featurizer: Featurizer | None = None,
    cache: GraphCache | bool | None = True,
    name: str = "",
    data_info: dict[str, Any] | None = None,
) -> TrainResult:
    """Train one model on ``data`` and return it with its model card.

    ``target``: a :class:`~optiladder.targets.TargetSpec` or its name (``ipa``, ``rpa``, ``sc_rpa_ipa``); its
    grid must be the grid of ``data``. ``train_splits``: split names to train on; ``ids``: optional subset of
    them (e.g. a learning-curve size). Early stopping uses the rows of ``val_split`` (or ``val_ids``, e.g. a
    cross-validation fold of the training split; they are never trained on and must not overlap the training
    ids). ``parent``: a :class:`~.model.Model` (or its folder) to transfer from — its architecture, weights and
    featurizer are reused and ``trainable`` (parameter groups: ``all``, ``head``, ``body`` or submodule names,
    see ``OptiMate.set_trainable``) says what is retrained; without a parent a new network is built for the
    target (:func:`build_net`) from ``model_kwargs``. ``data_info``: the card's ``data`` block.
    """
    import copy

    import torch

    target = get_target(target)
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
    y_train = target.values(train)
    seed_everything(settings.seed)
    if parent is not None:
        if isinstance(parent, str | Path):
            parent = load_model_dir(parent)
        check_trainable(
            parent.card.get("training", {}).get("train_ids", []), context=f"parent model {parent.name}"
        )
        if parent.members != 1:
            raise ValueError("transfer learning starts from one network, not an ensemble")
        if featurizer is not None and featurizer != parent.featurizer:
            raise ValueError("a transferred model must keep its parent's featurizer")
        if parent.target.out_dim != target.out_dim:
            raise ValueError(
                f"parent {parent.name} outputs {parent.target.out_dim} values, target {target.name} {target.out_dim}"
            )
        featurizer = parent.featurizer
        parent_info = parent_ref(parent)
        # a transferred model starts from the parent's weights: copy them, never train the parent in place
        net = copy.deepcopy(parent.net)
        net.config["loss"] = target.loss
    else:
        featurizer = featurizer or DEFAULT_FEATURIZER
        net = build_net(target, featurizer, y_train, model_kwargs)
    net.set_trainable(trainable)

    train_data = make_data(dataset_graphs(train, featurizer, cache), y_train, train.ids)
    val_data = make_data(dataset_graphs(val, featurizer, cache), target.values(val), val.ids)
    with torch.random.fork_rng():
        result = fit(net, train_data, val_data, settings)
    card = make_card(
        name=name or f"optimate-{target.name}-{len(train)}",
        target=target,
        train_ids=train.ids,
        data=data_info,
        n_validation=len(val),
        train_splits=train_splits,
        trainable=list(net.trainable),
        settings=settings.to_dict(),
        fit={
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "seconds": round(result.seconds, 2),
            "stopped": result.stopped,
        },
        val_loss=result.best_val_loss,
        parent=parent_info,
    )
    net.set_trainable("all")
    return TrainResult(Model([net.eval()], featurizer, target, card), result)


def predict_arrays(
    model: Model,
    data: DatasetArrays,
    *,
    cache: GraphCache | bool | None = True,
    batch_size: int = 256,
    raw: bool = False,
    postprocess: Any = None,
) -> np.ndarray:
    """Predictions for every record of ``data``, ``[n, out_dim]`` (float64): post-processed as the target
    says (or by ``postprocess``), or the raw network output (``raw=True``); an ensemble gives its mean."""
    graphs = dataset_graphs(data, model.featurizer, cache)
    return model.predict_graphs(graphs, batch_size=batch_size, postprocess=postprocess, raw=raw)
