"""Per-material scores of predicted spectra against DFT, medians, and a breakdown by cell size.

All metrics are the paper's equations 6–8 on the model grid (:data:`optiladder.targets.DEFAULT_GRID` unless a
target says otherwise), from
:mod:`optiladder.spectra`: SC[X; Y] (dimensionless, 1 = perfect), MSE[X; Y] and MAE[X; Y] (ε², ε, averaged over
ω ∈ [0, 20] eV). X is the prediction, Y the DFT reference. Tables are pandas DataFrames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..spectra import MODEL_GRID, mae, mse, similarity_coefficient
from ..targets import LEVELS, SC_GOOD_ENOUGH

if TYPE_CHECKING:
    from ..data.store import DatasetArrays


def spectrum_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    ids: Sequence[str],
    nsites: Sequence[int] | None = None,
    formulas: Sequence[str] | None = None,
    grid: np.ndarray = MODEL_GRID,
) -> pd.DataFrame:
    """One row per material: ``mat_id``, ``formula``, ``nsites``, ``sc``, ``mse``, ``mae``.

    ``pred``/``ref``: Im ε ``[n, n_grid]`` on ``grid`` (eV).
    """
    pred, ref = np.asarray(pred, float), np.asarray(ref, float)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    n = len(ids)
    return pd.DataFrame(
        {
            "mat_id": list(ids),
            "formula": list(formulas) if formulas is not None else [""] * n,
            "nsites": np.asarray(nsites if nsites is not None else np.zeros(n), int),
            "sc": similarity_coefficient(pred, ref, grid),
            "mse": mse(pred, ref, grid),
            "mae": mae(pred, ref, grid),
        }
    )


def scores_for(pred: np.ndarray, data: DatasetArrays, level: str = LEVELS[-1]) -> pd.DataFrame:
    """:func:`spectrum_scores` of ``pred`` against the ``level`` spectra of ``data`` (same row order)."""
    return spectrum_scores(
        pred, getattr(data, level), ids=data.ids, nsites=data.nsites, formulas=data.formulas, grid=data.grid
    )


def ipa_baseline(data: DatasetArrays) -> pd.DataFrame:
    """The baseline "IPA spectrum as the RPA prediction": scores of SC[IPA_DFT; RPA_DFT] etc. per material."""
    return scores_for(data.spectrum(LEVELS[0]), data, LEVELS[1])


def summary(scores: pd.DataFrame) -> dict[str, float]:
    """``n`` and the median / mean / 10th and 90th percentile of SC, median MSE and MAE."""
    if len(scores) == 0:
        return {"n": 0}
    sc = scores["sc"].to_numpy()
    return {
        "n": int(len(scores)),
        "median_sc": float(np.median(sc)),
        "mean_sc": float(np.mean(sc)),
        "p10_sc": float(np.percentile(sc, 10)),
        "p90_sc": float(np.percentile(sc, 90)),
        "median_mse": float(np.median(scores["mse"])),
        "median_mae": float(np.median(scores["mae"])),
    }


def by_cell_size(scores: pd.DataFrame) -> pd.DataFrame:
    """Median SC / MSE and count per number of atoms in the cell (``nsites``), one row per size."""
    if len(scores) == 0:
        return pd.DataFrame(columns=["nsites", "n", "median_sc", "median_mse"])
    g = scores.groupby("nsites")
    return pd.DataFrame(
        {"n": g.size(), "median_sc": g["sc"].median(), "median_mse": g["mse"].median()}
    ).reset_index()


def scalar_scores(pred: np.ndarray, ref: np.ndarray, train_mean: float | None = None) -> dict[str, Any]:
    """Errors of a scalar predictor (e.g. SC[RPA; IPA]): MAE, median |error|, R², and the same for
    predicting ``train_mean`` for every material (the trivial baseline) when it is given."""
    pred, ref = np.ravel(pred).astype(float), np.ravel(ref).astype(float)
    err = np.abs(pred - ref)
    ss_tot = float(np.sum((ref - ref.mean()) ** 2)) or float("nan")
    out: dict[str, Any] = {
        "n": int(ref.size),
        "mae": float(err.mean()) if ref.size else float("nan"),
        "median_abs_error": float(np.median(err)) if ref.size else float("nan"),
        "r2": float(1.0 - np.sum((pred - ref) ** 2) / ss_tot) if ref.size else float("nan"),
    }
    if train_mean is not None:
        base = np.abs(train_mean - ref)
        out["mean_baseline_mae"] = float(base.mean()) if ref.size else float("nan")
        out["mean_baseline_median_abs_error"] = float(np.median(base)) if ref.size else float("nan")
    return out


# --------------------------------------------------------------------------------------------------
# the one metric pipeline of a model (cards, the study, the benchmarks)
# --------------------------------------------------------------------------------------------------
@dataclass
class ModelEvaluation:
    """What :func:`evaluate_model` computed: ``metrics`` (the numbers cards and reports show), ``scores``
    (per-material table of a spectrum model, else None), ``pred`` ``[n, out_dim]`` and ``ref`` (same shape)."""

    metrics: dict[str, Any]
    scores: pd.DataFrame | None
    pred: np.ndarray
    ref: np.ndarray


def evaluate_model(
    model: Any,
    data: DatasetArrays,
    *,
    postprocess: Any = None,
    raw: bool = False,
    cache: Any = True,
    train_mean: float | None = None,
    threshold: float | None = SC_GOOD_ENOUGH,
) -> ModelEvaluation:
    """Metrics of ``model`` (a :class:`~optiladder.training.model.Model`) on the records of ``data``.

    Predictions are post-processed as the model's target says (``postprocess`` overrides it, ``raw=True``
    uses the network output as is); which one was used is recorded in ``metrics["postprocess"]``. Spectrum
    targets: :func:`summary` of :func:`spectrum_scores` (paper eqs. 6–8 on the target's grid). Scalar targets:
    :func:`scalar_scores` (with ``train_mean``: the trivial baseline), Pearson r and, for SC[X; Y] with a
    ``threshold``, the accuracy of the verdict "SC ≥ threshold".
    """
    from ..targets import RAW
    from ..training.train import predict_arrays

    target = model.target
    post = RAW if raw else (target.postprocess if postprocess is None else postprocess)
    pred = predict_arrays(model, data, cache=cache, postprocess=post)
    ref = target.values(data).astype(float)
    scores = None
    if target.is_spectrum:
        scores = spectrum_scores(
            pred, ref, ids=data.ids, nsites=data.nsites, formulas=data.formulas, grid=target.omega()
        )
        metrics: dict[str, Any] = summary(scores)
    else:
        p, r = pred[:, 0], ref[:, 0]
        metrics = scalar_scores(p, r, train_mean=train_mean)
        metrics["pearson_r"] = float(np.corrcoef(p, r)[0, 1]) if len(r) > 1 else float("nan")
        if target.quantity == "sc" and threshold is not None and len(r):
            metrics["verdict_accuracy"] = float(np.mean((p >= threshold) == (r >= threshold)))
            metrics["true_fraction_good_enough"] = float(np.mean(r >= threshold))
    metrics["postprocess"] = post.to_dict()
    return ModelEvaluation(metrics, scores, pred, ref)


def card_metrics(
    model: Any, data: DatasetArrays, split: str = "test", *, keep: bool = False, **kwargs: Any
) -> dict[str, Any]:
    """The ``metrics`` block of a model card: :func:`evaluate_model` on the ``split`` rows of ``data``, with the
    split, its size and id hash, and the date (``values``: the metrics). The study reports the same block.
    A scalar target's trivial baseline uses the mean over the card's training ids found in ``data``.
    ``keep``: also return the :class:`ModelEvaluation` under ``"_evaluation"`` (not for the card)."""
    import datetime as dt

    from ..training.model import ids_sha256

    part = data.split(split)
    if not model.target.is_spectrum and kwargs.get("train_mean") is None:
        # the trivial baseline of a scalar: the mean over the materials the card says it was trained on
        ids = set(model.card.get("training", {}).get("train_ids", []))
        rows = data.subset([i in ids for i in data.ids])
        if len(rows):
            kwargs["train_mean"] = float(np.mean(model.target.values(rows)))
    ev = evaluate_model(model, part, **kwargs)
    block: dict[str, Any] = {
        "split": split,
        "n": len(part),
        "ids_sha256": ids_sha256(part.ids),
        "computed": dt.date.today().isoformat(),
        "values": ev.metrics,
    }
    if keep:
        block["_evaluation"] = ev
    return block
