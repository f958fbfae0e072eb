"""The training loop as plain functions: :func:`train_one_epoch`, :func:`evaluate`, :func:`predict`, :func:`fit`.

Loss: the model's own (``model.loss(pred, y)``; OptiMate records it in its config and the target spec, L1 by
default: the mean absolute error over all grid points and materials, the paper's MAE up to the grid factor).
Optimiser: Adam with weight decay. Early stopping on the validation loss; the best weights are kept and
restored. Deterministic on CPU for a given seed (batches are drawn from a NumPy generator seeded with
``seed``; weights from ``torch.manual_seed(seed)``).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser and stopping settings of one training run.

    ``lr``: Adam learning rate; ``weight_decay``: Adam's L2 term; ``batch_size``: graphs per step;
    ``max_epochs``; ``patience``: epochs without a validation improvement larger than ``min_delta`` before
    stopping; ``max_seconds``: wall-clock budget (None: none); ``seed``: weights and batch order.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 32
    max_epochs: int = 300
    patience: int = 40
    min_delta: float = 0.0
    max_seconds: float | None = None
    seed: int = 0

    @classmethod
    def paper_transfer(cls, **overrides: Any) -> TrainSettings:
        """The paper's fine-tuning: all weights, lr 1e-5, weight decay 1e-4, batch 128, up to 500 epochs."""
        return cls(**{"lr": 1e-5, "weight_decay": 1e-4, "batch_size": 128, "max_epochs": 500, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    """What :func:`fit` did: ``history`` rows (epoch, train_loss, val_loss, seconds), best epoch and loss."""

    best_epoch: int
    best_val_loss: float
    epochs_run: int
    seconds: float
    stopped: str
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed torch (weights, dropout) and make CPU kernels deterministic where torch can."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def batches(data: Sequence, batch_size: int, rng: np.random.Generator | None = None) -> list:
    """Collated ``Batch`` objects of near-equal size (sizes differ by ≤ 1, so no batch of 1 graph when
    ``len(data) ≥ 2``: batch norm needs two); shuffled when ``rng`` is given."""
    from torch_geometric.data import Batch

    n = len(data)
    if n == 0:
        return []
    order = rng.permutation(n) if rng is not None else np.arange(n)
    n_batches = max(1, math.ceil(n / batch_size))
    return [Batch.from_data_list([data[i] for i in chunk]) for chunk in np.array_split(order, n_batches)]


def model_loss(model: nn.Module):
    """The loss ``model`` declares (``model.loss(pred, y)``); a model without one cannot be trained here."""
    loss = getattr(model, "loss", None)
    if not callable(loss):
        raise TypeError(f"{type(model).__name__} declares no loss (a method loss(pred, y) -> scalar tensor)")
    return loss


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer) -> float:
    """One pass over ``loader`` (iterable of batches with ``y``); returns the graph-weighted mean of the
    model's loss."""
    loss_fn = model_loss(model)
    model.train()
    total, count = 0.0, 0
    for batch in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(batch), batch.y)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * batch.num_graphs
        count += batch.num_graphs
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model: nn.Module, loader) -> float:
    """Graph-weighted mean of the model's loss over ``loader`` in eval mode."""
    loss_fn = model_loss(model)
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        total += float(loss_fn(model(batch), batch.y)) * batch.num_graphs
        count += batch.num_graphs
    return total / max(count, 1)


@torch.no_grad()
def predict(model: nn.Module, data: Sequence, batch_size: int = 256) -> np.ndarray:
    """Model outputs for ``data`` (``Data`` objects) in order, ``[n, out_dim]`` float64."""
    model.eval()
    outs = [model(b).double().numpy() for b in batches(data, batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, 0))


@torch.no_grad()
def embed(model: nn.Module, data: Sequence, batch_size: int = 256) -> np.ndarray:
    """Pooled crystal embeddings ``[n, embedding_dim]`` of ``data`` (needs ``model.embed``)."""
    model.eval()
    outs = [model.embed(b).double().numpy() for b in batches(data, batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, 0))


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """Adam over the trainable parameters only (the fused kernel: ~6× faster than the loop on CPU)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    try:
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - older torch without CPU fused Adam
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)


def fit(model: nn.Module, train: Sequence, val: Sequence, settings: TrainSettings) -> FitResult:
    """Train ``model`` in place on ``train`` with early stopping on ``val``; restores the best weights.

    ``model``: any ``torch.nn.Module`` that declares its loss (``model.loss(pred, y)``) and whose
    ``requires_grad`` flags say what trains (``OptiMate.set_trainable``).

    ``train``/``val``: lists of ``Data`` with ``y``; a training ``Data`` whose ``mat_id`` is a validation or
    test material raises :class:`~optiladder.data.splits.LeakageError`. Validation batches are collated once; training batches are
    reshuffled every epoch from ``np.random.default_rng(settings.seed)``.
    """
    if len(train) < 2:
        raise ValueError(f"need at least 2 training graphs, got {len(train)}")
    model_loss(model)
    from ..data.splits import check_trainable

    check_trainable([d.mat_id for d in train if getattr(d, "mat_id", None)], context="fit")
    seed_everything(settings.seed)
    rng = np.random.default_rng(settings.seed)
    optimizer = make_optimizer(model, settings)
    val_batches = batches(val, 256)
    best_state = copy.deepcopy(model.state_dict())
    best_loss, best_epoch = math.inf, 0
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    stopped = "max_epochs"
    epoch = 0
    for epoch in range(1, settings.max_epochs + 1):
        tl = train_one_epoch(model, batches(train, settings.batch_size, rng), optimizer)
        vl = evaluate(model, val_batches) if val_batches else tl
        history.append(
            {"epoch": epoch, "train_loss": tl, "val_loss": vl, "seconds": time.perf_counter() - t0}
        )
        if vl < best_loss - settings.min_delta:
            best_loss, best_epoch = vl, epoch
            best_state = copy.deepcopy(model.state_dict())
        if not math.isfinite(tl):
            stopped = "non-finite loss"
            break
        if epoch - best_epoch >= settings.patience:
            stopped = "early stopping"
            break
        if settings.max_seconds is not None and time.perf_counter() - t0 > settings.max_seconds:
            stopped = "time budget"
            break
    model.load_state_dict(best_state)
    model.eval()
    res = FitResult(best_epoch, best_loss, epoch, time.perf_counter() - t0, stopped, history)
    log.info(
        "fit: %d train / %d val, best epoch %d of %d (val L1 %.4g), %s, %.1f s",
        len(train), len(val), best_epoch, epoch, best_loss, stopped, res.seconds,
    )  # fmt: skip
    return res


def probe_then_fit(
    model: nn.Module, train: Sequence, val: Sequence, settings: TrainSettings, probe: TrainSettings
) -> FitResult:
    """Fine-tuning in two stages (LP-FT: Kumar et al., ICLR 2022, "Fine-tuning can distort pretrained features"):
    first the head alone (``probe``; the body frozen, its batch-norm statistics fixed), then all weights
    (``settings``), each with early stopping on ``val``. On few costly spectra the head first fits the new rung on
    top of the pretrained body instead of pushing large, random-direction gradients through it.

    ``model`` must have ``set_trainable`` (the project's networks); it ends with every weight trainable. Returns
    the better stage's weights and result (``best_epoch`` counts the probe's epochs first), with the epochs,
    seconds and history of both stages (``history`` rows carry ``"stage"``: 0 probe, 1 all weights)."""
    if not callable(getattr(model, "set_trainable", None)):
        raise TypeError(f"{type(model).__name__} has no set_trainable: it cannot be fine-tuned head first")
    model.set_trainable("head")
    first = fit(model, train, val, probe)
    probed = copy.deepcopy(model.state_dict())
    model.set_trainable("all")
    second = fit(model, train, val, settings)
    history = [{**h, "stage": 0} for h in first.history] + [{**h, "stage": 1} for h in second.history]
    if second.best_val_loss <= first.best_val_loss:
        best_epoch, best_loss = first.epochs_run + second.best_epoch, second.best_val_loss
    else:  # the full fine-tuning never beat the probe on validation: keep the probed weights
        model.load_state_dict(probed)
        model.eval()
        best_epoch, best_loss = first.best_epoch, first.best_val_loss
    return FitResult(
        best_epoch, best_loss, first.epochs_run + second.epochs_run, first.seconds + second.seconds,
        second.stopped, history,
    )  # fmt: skip
