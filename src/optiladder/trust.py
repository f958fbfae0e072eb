"""Model-based trust of a prediction: expected SC, its 80 % interval and "do not trust" warnings.

An ensemble spectrum model (a :class:`~optiladder.training.Model` with K ≥ 2 members) whose card carries an
``uncertainty`` block (written by ``optiladder study levers``, fitted on the validation split) knows, from one
forward of all members:

* the *agreement* ``u = 1 − ∫σ dω / ∫|p̄| dω`` of its members (raw outputs: mean p̄ and spread σ);
* the latent distance ``d`` of the crystal to the nearest training crystal (pooled embedding of the first
  member, in units of the training set's median nearest-neighbour distance; the training embeddings are
  computed once, lazily, from the bundled structures of the card's ``train_ids``);

and turns them into the expected SC[RPA_ML; RPA_DFT] ``a + b·u + c·min(d, 5)`` with the interval
``[e + q10, e + q90]`` (:class:`optiladder.evaluation.uncertainty.Calibration`). A warning is raised when the
expected SC is below ``rule.min_expected`` or ``d`` above ``rule.max_distance``, or when the crystal has a
first-shell element pair no training crystal has (:func:`optiladder.domain.novel_bonds`) and its expected SC is
below ``rule.novel_bond_max_expected`` (cards without that key never raise this one)
(:class:`optiladder.evaluation.uncertainty.WarningRule`; thresholds in the card and in docs/predict.md). These
warnings join the static domain warnings of a prediction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Assessment:
    """Trust of one prediction: expected SC, 80 % interval, agreement, latent distance, warnings (lines)."""

    expected_sc: float
    interval: tuple[float, float]
    agreement: float
    distance: float
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "expected_sc": round(self.expected_sc, 4),
            "sc_interval80": [round(self.interval[0], 4), round(self.interval[1], 4)],
            "agreement": round(self.agreement, 4),
            "latent_distance": round(self.distance, 3),
        }


class Trust:
    """The calibrated uncertainty of one ensemble spectrum model (see module docstring)."""

    def __init__(self, model: Any):
        from .evaluation.uncertainty import Calibration, WarningRule

        block = model.card["uncertainty"]
        self.model = model
        self.calibration = Calibration(**block["calibration"])
        self.rule = WarningRule(**block["rule"])
        self.scale = float(block["latent_scale"])
        self._train_z: np.ndarray | None = None
        self._train_sq: np.ndarray | None = None

    @classmethod
    def of(cls, model: Any) -> Trust | None:
        """The trust of ``model``, or None when it is no calibrated ensemble."""
        if getattr(model, "members", 1) < 2 or not (model.card or {}).get("uncertainty"):
            return None
        return cls(model)

    def train_embeddings(self) -> np.ndarray:
        """Pooled first-member embeddings ``[n_train, D]`` float64 of the training crystals (computed once)."""
        if self._train_z is None:
            from .graphs import GraphCache
            from .structures import alexandria
            from .training import embed, make_data

            ids = set(self.model.card.get("training", {}).get("train_ids", []))
            entries = [e for e in alexandria() if e["mat_id"] in ids]
            if not entries:
                raise ValueError("the model card names no bundled training crystal")
            graphs = GraphCache(self.model.featurizer).graphs(
                [e["mat_id"] for e in entries], [e["structure"] for e in entries]
            )
            z = embed(self.model.nets[0], make_data(graphs, None, [e["mat_id"] for e in entries]))
            self._train_z = np.asarray(z, dtype=np.float64)
            self._train_sq = (self._train_z * self._train_z).sum(1)
        return self._train_z

    def assess(
        self,
        mean: np.ndarray,
        spread: np.ndarray,
        embedding: np.ndarray,
        novel_bonds: Sequence[Sequence[str]] | None = None,
    ) -> list[Assessment]:
        """Assessments of ``n`` predictions from raw ensemble ``mean``/``spread`` ``[n, G]``, first-member
        embeddings ``[n, D]`` and, per prediction, the element pairs no training crystal has (``novel_bonds``,
        :func:`optiladder.domain.novel_bonds`; None: not known, no novel-bond warning)."""
        from .evaluation.uncertainty import nearest_distance, relative_spread

        u = 1.0 - relative_spread(mean, spread, self.model.target.omega())
        d = nearest_distance(embedding, self.train_embeddings(), train_sq=self._train_sq) / self.scale
        e = self.calibration.expected(u, d)
        lo, hi = self.calibration.interval(e)
        novel = None if novel_bonds is None else [list(b) for b in novel_bonds]
        bond_flags = self.rule.novel_bond_flags(e, None if novel is None else [bool(b) for b in novel])
        out = []
        for k in range(len(u)):
            w = []
            if e[k] < self.rule.min_expected:
                w.append(
                    f"uncertain spectrum: expected SC {e[k]:.3f} (80 % interval {lo[k]:.2f}–{hi[k]:.2f}) "
                    f"below {self.rule.min_expected:.3f}"
                )
            if d[k] > self.rule.max_distance:
                w.append(
                    f"unlike every training crystal in the model's latent space (distance {d[k]:.1f}, "
                    f"limit {self.rule.max_distance:.1f})"
                )
            if bond_flags[k]:
                w.append(
                    f"bond(s) {', '.join(novel[k])} in no training crystal, expected SC {e[k]:.2f} "
                    f"below {self.rule.novel_bond_max_expected:.2f}"
                )
            out.append(Assessment(float(e[k]), (float(lo[k]), float(hi[k])), float(u[k]), float(d[k]), w))
        return out
