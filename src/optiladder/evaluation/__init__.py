"""Evaluation of predicted spectra and scalars against DFT (the paper's SC, MSE, MAE; medians; cell sizes).

Needs pandas; no torch.
"""

from __future__ import annotations

from .metrics import by_cell_size, ipa_baseline, scalar_scores, scores_for, spectrum_scores, summary

__all__ = ["by_cell_size", "ipa_baseline", "scalar_scores", "scores_for", "spectrum_scores", "summary"]
