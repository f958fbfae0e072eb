"""Ensemble uncertainty, a calibrated expected SC per material, and the model-based domain of applicability.

From K member predictions ``[K, n, n_grid]`` of Im ε (eV grid):

* the mean spectrum and the per-energy spread (standard deviation over members, same units as Im ε);
* the *agreement* ``u = 1 − ∫σ dω / ∫|p̄| dω`` (1 when all members agree; computable from one ensemble
  forward's mean and spread) and the latent distance ``d`` of a material to its nearest training material
  (pooled embeddings of the first member, in units of the training set's own median nearest-neighbour
  distance);
* :class:`Calibration`: a least-squares map ``SC_expected = a + b·u + c·min(d, 5)`` fitted on the validation
  split (actual SC[mean; DFT] known there, never the test split), plus the 10th and 90th percentiles of its
  residuals: the stated 80 % interval is ``[SC_expected + q10, SC_expected + q90]`` (split-conformal);
* :func:`warning_thresholds`: the expected-SC and distance thresholds below/above which a prediction carries a
  "do not trust" warning, chosen on validation to catch every material the model gets below SC 0.4 while
  flagging as few as possible, and the expected-SC limit under which a crystal with a bond no training crystal
  has (:func:`optiladder.domain.novel_bonds`) is flagged: the first quartile of the validation crystals'
  expected SC (:data:`NOVEL_BOND_QUANTILE`).

NumPy and SciPy only (no torch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..spectra import MODEL_GRID

#: below this SC[RPA_ML; RPA_DFT] a prediction is a miss that a warning must catch (issue 14)
MISS_SC = 0.4
#: latent distances are clipped here (in training-NN units) before entering the calibration
DIST_CLIP = 5.0
#: a crystal with a first-shell element pair no training crystal has is flagged when its expected SC is below
#: this quantile of the validation crystals' expected SC (``WarningRule.novel_bond_max_expected``)
NOVEL_BOND_QUANTILE = 0.25


def relative_spread(mean: np.ndarray, spread: np.ndarray, grid: np.ndarray = MODEL_GRID) -> np.ndarray:
    """``∫ σ(ω) dω / ∫ |p̄(ω)| dω`` per material ``[n]`` from the ensemble mean and spread ``[n, G]``: the
    members' typical deviation relative to the spectrum (0 when all members agree). What a
    :class:`~optiladder.training.Model` ensemble's one forward gives (mean, spread) is enough to compute it."""
    num = np.trapezoid(np.asarray(spread, float), grid, axis=-1)
    den = np.trapezoid(np.abs(np.asarray(mean, float)), grid, axis=-1)
    return num / np.maximum(den, 1e-12)


def ensemble_stats(preds: np.ndarray, grid: np.ndarray = MODEL_GRID) -> dict[str, np.ndarray]:
    """``mean`` ``[n, G]``, ``spread`` ``[n, G]`` (std over members) and ``agreement`` ``[n]`` of ``[K, n, G]``;
    ``agreement = 1 − relative_spread`` (1 when all members agree)."""
    preds = np.asarray(preds, float)
    if preds.ndim != 3 or preds.shape[0] < 2:
        raise ValueError(f"need member predictions [K ≥ 2, n, G], got shape {preds.shape}")
    mean, spread = preds.mean(axis=0), preds.std(axis=0)
    return {"mean": mean, "spread": spread, "agreement": 1.0 - relative_spread(mean, spread, grid)}


def nearest_distance(
    query: np.ndarray, train: np.ndarray, *, exclude_self: bool = False, train_sq: np.ndarray | None = None
) -> np.ndarray:
    """Euclidean distance ``[n_query]`` from each row of ``query`` ``[n, D]`` to its nearest row of ``train``.

    ``exclude_self``: ``query`` is ``train`` and the zero distance of each row to itself is skipped.
    ``train_sq``: ``(train * train).sum(1)``, when the caller keeps it (a fixed training set).
    """
    q, t = np.asarray(query, float), np.asarray(train, float)
    t_sq = (t * t).sum(1) if train_sq is None else train_sq
    d2 = (q * q).sum(1)[:, None] + t_sq[None, :] - 2.0 * q @ t.T
    d2 = np.maximum(d2, 0.0)
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    return np.sqrt(d2.min(axis=1))


@dataclass
class LatentDomain:
    """Training materials' pooled embeddings ``[n_train, D]`` and their median nearest-neighbour distance."""

    train: np.ndarray
    scale: float

    @classmethod
    def fit(cls, train_embeddings: np.ndarray) -> LatentDomain:
        z = np.asarray(train_embeddings, float)
        nn = nearest_distance(z, z, exclude_self=True) if len(z) > 1 else np.ones(1)
        return cls(z, float(np.median(nn)) or 1.0)

    def distance(self, embeddings: np.ndarray) -> np.ndarray:
        """Distance to the nearest training material in units of :attr:`scale` ``[n]`` (1 = typical)."""
        return nearest_distance(embeddings, self.train) / self.scale


@dataclass
class Calibration:
    """``SC_expected = a + b·u + c·min(d, DIST_CLIP)`` and the residual percentiles of the 80 % interval."""

    a: float
    b: float
    c: float
    q_lo: float
    q_hi: float
    n: int

    @classmethod
    def fit(cls, agreement: np.ndarray, distance: np.ndarray, actual: np.ndarray) -> Calibration:
        """Least squares on validation materials (``actual``: SC[mean prediction; DFT])."""
        u, d, y = (np.asarray(v, float) for v in (agreement, distance, actual))
        x = np.stack([np.ones_like(u), u, np.minimum(d, DIST_CLIP)], axis=1)
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        res = y - x @ coef
        return cls(
            *(float(c) for c in coef), float(np.quantile(res, 0.1)), float(np.quantile(res, 0.9)), len(y)
        )

    def expected(self, agreement: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Expected SC ``[n]`` (clipped to [0, 1])."""
        u, d = np.asarray(agreement, float), np.minimum(np.asarray(distance, float), DIST_CLIP)
        return np.clip(self.a + self.b * u + self.c * d, 0.0, 1.0)

    def interval(self, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stated 80 % interval ``(lo, hi)`` of the actual SC, each ``[n]``."""
        e = np.asarray(expected, float)
        return np.clip(e + self.q_lo, 0.0, 1.0), np.clip(e + self.q_hi, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of two ``[n]`` arrays: Pearson correlation of their average ranks (ties share
    the mean rank); nan for fewer than 3 values or a constant array."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return float("nan")
    rx, ry = _average_ranks(x), _average_ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1…n of ``v`` ``[n]`` with tied values given their mean rank."""
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v), float)
    ranks[order] = np.arange(1, len(v) + 1)
    _, inv = np.unique(v, return_inverse=True)
    sums = np.bincount(inv, weights=ranks)
    return (sums / np.bincount(inv))[inv]


def coverage(lo: np.ndarray, hi: np.ndarray, actual: np.ndarray) -> float:
    """Fraction of materials whose actual value lies in ``[lo, hi]``."""
    a = np.asarray(actual, float)
    return float(np.mean((a >= lo) & (a <= hi))) if len(a) else float("nan")


@dataclass
class WarningRule:
    """Warn when the expected SC is below ``min_expected`` or the latent distance above ``max_distance``, or
    when the crystal has a first-shell element pair no training crystal has (``novel``) and its expected SC is
    below ``novel_bond_max_expected``. Rules written before that third part (no key, None) never fire it."""

    min_expected: float
    max_distance: float
    novel_bond_max_expected: float | None = None

    def flags(
        self, expected: np.ndarray, distance: np.ndarray, novel: np.ndarray | None = None
    ) -> np.ndarray:
        """Flag per material ``[n]``; ``novel``: ``[n]`` booleans, the material has an unseen pair (None: not
        known, the novel-bond part is left out)."""
        base = (np.asarray(expected) < self.min_expected) | (np.asarray(distance) > self.max_distance)
        return base | self.novel_bond_flags(expected, novel)

    def novel_bond_flags(self, expected: np.ndarray, novel: np.ndarray | None) -> np.ndarray:
        """The novel-bond part alone ``[n]``: an unseen pair and expected SC below ``novel_bond_max_expected``
        (all False without the limit or without ``novel``)."""
        e = np.asarray(expected, float)
        if self.novel_bond_max_expected is None or novel is None:
            return np.zeros(e.shape, bool)
        return np.asarray(novel, bool) & (e < self.novel_bond_max_expected)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["novel_bond_max_expected"] is None:  # as rules before the novel-bond part were written
            del out["novel_bond_max_expected"]
        return out


def warning_thresholds(
    expected: np.ndarray, distance: np.ndarray, actual: np.ndarray, *, max_flag_fraction: float = 0.25
) -> WarningRule:
    """Thresholds chosen on validation: the distance limit is the largest validation distance times 1.5
    (only crystals farther from the training data than any validation crystal are flagged for it); the
    expected-SC limit is the smallest value that flags every validation miss (actual SC < :data:`MISS_SC`)
    with a margin of 0.02 (without a validation miss: its 10th percentile), but never more than
    ``max_flag_fraction`` of validation. The novel-bond limit is the :data:`NOVEL_BOND_QUANTILE` quantile of
    the validation expected SC.
    """
    e, d, a = (np.asarray(v, float) for v in (expected, distance, actual))
    max_distance = float(1.5 * d.max()) if len(d) else float("inf")
    misses = e[a < MISS_SC]
    cap = float(np.quantile(e, max_flag_fraction)) if len(e) else 0.0
    need = float(misses.max() + 0.02) if len(misses) else float(np.quantile(e, 0.1)) if len(e) else 0.0
    novel_limit = float(np.quantile(e, NOVEL_BOND_QUANTILE)) if len(e) else None
    return WarningRule(max(min(need, cap), 0.0), max_distance, novel_limit)


def warning_report(rule: WarningRule, expected, distance, actual, novel=None) -> dict[str, Any]:
    """How a rule does on a set: flagged fraction, misses caught (SC < :data:`MISS_SC`), misses missed.

    ``novel``: ``[n]`` booleans, the material has a first-shell pair no training crystal has; with it the
    report counts them (``novel_bonds``) and adds the rule without its novel-bond part
    (``without_novel_bond_rule``: flagged, flagged fraction, misses caught)."""
    a = np.asarray(actual, float)
    miss = a < MISS_SC

    def counts(f: np.ndarray) -> dict[str, Any]:
        return {
            "flagged": int(f.sum()),
            "flagged_fraction": float(f.mean()) if len(a) else float("nan"),
            "misses_caught": int((f & miss).sum()),
        }

    out = {"n": int(len(a)), **counts(rule.flags(expected, distance, novel)), "misses": int(miss.sum())}
    if novel is not None:
        out["novel_bonds"] = int(np.asarray(novel, bool).sum())
        out["without_novel_bond_rule"] = counts(rule.flags(expected, distance))
    return out
