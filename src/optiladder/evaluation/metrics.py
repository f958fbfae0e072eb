"""Per-material scores of predicted spectra against DFT, medians, and a breakdown by cell size.

All metrics are the paper's equations 6–8 on the 2001-point model grid (0–20 eV), from
:mod:`optiladder.spectra`: SC[X; Y] (dimensionless, 1 = perfect), MSE[X; Y] and MAE[X; Y] (ε², ε, averaged over
ω ∈ [0, 20] eV). X is the prediction, Y the DFT reference. Tables are pandas DataFrames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..spectra import MODEL_GRID, mae, mse, similarity_coefficient

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


def scores_for(pred: np.ndarray, data: DatasetArrays, level: str = "rpa") -> pd.DataFrame:
    """:func:`spectrum_scores` of ``pred`` against the ``level`` spectra of ``data`` (same row order)."""
    return spectrum_scores(
        pred, getattr(data, level), ids=data.ids, nsites=data.nsites, formulas=data.formulas, grid=data.grid
    )


def ipa_baseline(data: DatasetArrays) -> pd.DataFrame:
    """The baseline "IPA spectrum as the RPA prediction": scores of SC[IPA_DFT; RPA_DFT] etc. per material."""
    return scores_for(data.ipa, data, "rpa")


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
