"""Evaluation of models and predictions against DFT: the one metric pipeline (:func:`evaluate_model`, used by
the model cards, the study and the benchmarks) and its parts (the paper's SC, MSE, MAE; medians; cell sizes).

Needs pandas; torch only when a model is evaluated.
"""

from __future__ import annotations

from .metrics import (
    ModelEvaluation,
    by_cell_size,
    card_metrics,
    evaluate_model,
    ipa_baseline,
    scalar_scores,
    scores_for,
    spectrum_scores,
    summary,
)

__all__ = [
    "ModelEvaluation",
    "by_cell_size",
    "card_metrics",
    "evaluate_model",
    "ipa_baseline",
    "scalar_scores",
    "scores_for",
    "spectrum_scores",
    "summary",
]
