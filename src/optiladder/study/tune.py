"""Hyperparameter search with Optuna and k-fold cross-validation on the training pool.

The folds split the training pool (train + none, optionally a seeded subset of ``size`` materials) into k
parts; a trial trains k models (each on k − 1 parts, early stopping on the remaining part) and scores the mean
validation L1 loss. Validation and test splits are never touched. Modes:

* ``dl`` / ``ipa`` / ``sc`` (from scratch): learning rate, weight decay, batch size, the head's width and
  depth and the MLP normalisation are searched;
* ``tl`` (transfer from ``parent``): only the optimiser settings (learning rate, weight decay, batch size) —
  the architecture is the parent's. The parent saw the IPA spectra of the whole pool, validation folds
  included (not their RPA spectra), so TL fold scores are slightly optimistic.

``timeout`` (seconds) bounds the whole search; a trial that is still clearly worse than the median of the
trials before it after its first fold is pruned.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from ..targets import LEVELS

log = logging.getLogger(__name__)

Mode = Literal["dl", "tl", "ipa", "sc"]
MODES: tuple[str, ...] = get_args(Mode)
#: mode → target: the lowest rung (from scratch), the next rung (directly or by transfer), SC of the two
_TARGET = {"dl": LEVELS[1], "tl": LEVELS[1], "ipa": LEVELS[0], "sc": f"sc_{LEVELS[1]}_{LEVELS[0]}"}


@dataclass(frozen=True)
class TuneOptions:
    """``trials`` and ``timeout`` (s) bound the search; ``folds``: k; ``size``: pool subset (0 = all);
    ``max_epochs``/``patience`` per fold model."""

    mode: str = "dl"
    trials: int = 20
    timeout: float = 600.0
    folds: int = 3
    size: int = 0
    max_epochs: int = 150
    patience: int = 20
    seed: int = 0


def kfold(ids: list[str], k: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """``k`` (train ids, validation ids) pairs of a seeded shuffled partition of ``ids``."""
    if k < 2 or len(ids) < 2 * k:
        raise ValueError(f"{k}-fold CV needs k ≥ 2 and ≥ {2 * k} materials, got {len(ids)}")
    perm = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    parts = [list(p) for p in np.array_split(np.array(perm, dtype=object), k)]
    return [(sorted(sum(parts[:j] + parts[j + 1 :], [])), sorted(parts[j])) for j in range(k)]


def run_tune(data, options: TuneOptions, parent=None) -> dict[str, Any]:
    """Search hyperparameters on ``data`` (``DatasetArrays``); returns best params, value and all trials."""
    import optuna

    from ..training import TrainSettings, load_model_dir, train_model

    if options.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if options.mode == "tl":
        if parent is None:
            raise ValueError("mode 'tl' needs a parent model folder (e.g. the study's models/ipa)")
        if isinstance(parent, str | Path):
            parent = load_model_dir(parent)
    pool = data.split("train", "none")
    ids = list(pool.ids)
    if options.size and options.size < len(ids):
        rng = np.random.default_rng(options.seed)
        ids = [ids[i] for i in rng.permutation(len(ids))[: options.size]]
    folds = kfold(ids, options.folds, options.seed)
    t0 = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-5, 3e-3, log=True)
        wd = trial.suggest_float("weight_decay", 1e-7, 1e-3, log=True)
        bs = trial.suggest_categorical("batch_size", [16, 32, 64, 128])
        model_kwargs: dict[str, Any] = {}
        if options.mode != "tl":
            width = trial.suggest_categorical("head_width", [256, 512, 1024])
            depth = trial.suggest_int("head_depth", 1, 3)
            model_kwargs["head_hidden"] = [width] * depth
            model_kwargs["norm"] = trial.suggest_categorical("norm", ["layer_norm", "batch_norm"])
        remaining = options.timeout - (time.perf_counter() - t0)
        settings = TrainSettings(
            lr=lr, weight_decay=wd, batch_size=bs, max_epochs=options.max_epochs,
            patience=options.patience, seed=options.seed,
            max_seconds=max(5.0, remaining / options.folds),
        )  # fmt: skip
        losses = []
        for j, (tr, va) in enumerate(folds):
            res = train_model(
                data,
                target=_TARGET[options.mode],
                train_splits=("train", "none"),
                ids=tr,
                val_ids=va,
                parent=parent if options.mode == "tl" else None,
                settings=settings,
                model_kwargs=model_kwargs,
                name=f"tune-{trial.number}-{j}",
            )
            losses.append(res.fit.best_val_loss)
            trial.report(float(np.mean(losses)), j)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(losses))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=options.seed)
    study = optuna.create_study(
        direction="minimize", sampler=sampler, pruner=optuna.pruners.MedianPruner(n_startup_trials=3)
    )
    study.optimize(objective, n_trials=options.trials, timeout=options.timeout)
    trials = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
        for t in study.trials
    ]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {
        "options": asdict(options),
        "n_pool": len(ids),
        "best_params": study.best_params if done else None,
        "best_value": study.best_value if done else None,
        "trials": trials,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def write_tune(path: str | Path, result: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path
