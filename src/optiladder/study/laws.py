"""Scaling laws of the learning error and the planner that spends core-hours by them (NumPy/SciPy only).

After Hoffmann, Schmidt, Botti & Marques, Digital Discovery 2, 1368 (2023): the error of a transfer-learned model
falls as a straight line on log–log axes in the number of training (costly, here RPA) and pre-training (cheap, here
IPA) materials. Here the error is ``1 − median SC`` (or the median MAE) on the test split:

* :func:`fit_power_law`: ``log y = c + s · log N`` by least squares, the slope ``s`` with its 95 % interval
  (Student t), R², and a curvature check (a quadratic term in ``log N`` and its 95 % interval: a straight line
  is consistent with the data when that interval holds 0);
* :func:`fit_plane`: ``log(1 − SC) = c + a · log N_RPA + b · log N_pre`` over a heat map of transfer-learned
  models, with the parameter covariance, so that :meth:`Plane.predict` gives the expected median SC at any
  (N_RPA, N_pre) with a 95 % interval for the law's mean;
* :func:`plan`: which mix of further calculations (cheap IPA only, or IPA + RPA; by cell size, cheapest first
  within the structures still uncomputed) maximises the predicted median SC for a budget in core-hours;
* :func:`backtest`: refit the plane on the cells below the full data and compare its prediction at the full
  data with the measured value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: the two kinds of calculation the planner can buy: cheap IPA only, and one v1 calculation (IPA and RPA)
KINDS: tuple[str, ...] = ("cheap-ipa", "ipa+rpa")
#: half-width of the 95 % interval (median SC) above which the planner says the laws are too uncertain
MAX_HALF_WIDTH = 0.05
#: planned sizes beyond this factor times the largest fitted size are flagged as extrapolation
MAX_EXTRAPOLATION = 4.0


def _t95(dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, max(dof, 1)))


@dataclass
class PowerLaw:
    """``log y = intercept + slope · log N`` fitted to ``n_points`` points (natural logs).

    ``slope_ci``: 95 % interval of the slope; ``curvature``: coefficient of ``(log N)²`` in a quadratic fit and
    its 95 % interval (None with fewer than 4 distinct sizes); ``straight``: the curvature interval holds 0.
    """

    slope: float
    slope_ci: tuple[float, float]
    intercept: float
    r2: float
    n_points: int
    n_sizes: int
    curvature: float | None = None
    curvature_ci: tuple[float, float] | None = None

    @property
    def straight(self) -> bool | None:
        if self.curvature_ci is None:
            return None
        return bool(self.curvature_ci[0] <= 0.0 <= self.curvature_ci[1])

    def predict(self, n: float | np.ndarray) -> np.ndarray:
        return np.exp(self.intercept + self.slope * np.log(n))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "straight": self.straight}


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Least squares ``y ≈ x @ beta``: (beta, covariance, degrees of freedom, residual variance)."""
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    dof = len(y) - x.shape[1]
    resid = y - x @ beta
    s2 = float(resid @ resid / dof) if dof > 0 else float("nan")
    cov = s2 * np.linalg.pinv(x.T @ x)
    return beta, cov, dof, s2


def fit_power_law(n: Sequence[float], y: Sequence[float]) -> PowerLaw:
    """Fit ``y = A · N^slope`` on log–log axes to points ``(n_i, y_i)`` (repeated sizes = seeds); y > 0.

    Raises ``ValueError`` with fewer than 3 points or 2 distinct sizes (no interval can be given).
    """
    n, y = np.asarray(n, float), np.asarray(y, float)
    ok = (n > 0) & (y > 0) & np.isfinite(y)
    n, y = n[ok], y[ok]
    sizes = np.unique(n)
    if len(y) < 3 or len(sizes) < 2:
        raise ValueError(f"a power law needs ≥ 3 points at ≥ 2 sizes, got {len(y)} at {len(sizes)}")
    lx, ly = np.log(n), np.log(y)
    x = np.column_stack([np.ones_like(lx), lx])
    beta, cov, dof, _ = _ols(x, ly)
    se = math.sqrt(max(cov[1, 1], 0.0))
    t = _t95(dof)
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float(((ly - x @ beta) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    law = PowerLaw(float(beta[1]), (float(beta[1] - t * se), float(beta[1] + t * se)), float(beta[0]), r2,
                   len(y), len(sizes))  # fmt: skip
    if len(sizes) >= 4 and len(y) >= 5:
        xq = np.column_stack([x, (lx - lx.mean()) ** 2])
        bq, cq, dq, _ = _ols(xq, ly)
        sq = math.sqrt(max(cq[2, 2], 0.0))
        tq = _t95(dq)
        law.curvature = float(bq[2])
        law.curvature_ci = (float(bq[2] - tq * sq), float(bq[2] + tq * sq))
    return law


def slopes_differ(a: PowerLaw, b: PowerLaw) -> dict[str, float | bool]:
    """Difference of two slopes with a 95 % interval (independent fits, Welch-like normal approximation)."""
    za, zb = _t95(a.n_points - 2), _t95(b.n_points - 2)
    sa = (a.slope_ci[1] - a.slope_ci[0]) / (2 * za)
    sb = (b.slope_ci[1] - b.slope_ci[0]) / (2 * zb)
    d, s = a.slope - b.slope, math.hypot(sa, sb)
    return {"difference": d, "lo": d - 1.96 * s, "hi": d + 1.96 * s, "differ": bool(abs(d) > 1.96 * s)}


# --------------------------------------------------------------------------------------------------
# the two-size law
# --------------------------------------------------------------------------------------------------
@dataclass
class Plane:
    """``log(1 − SC) = c + a · log N_RPA + b · log N_pre`` (``coef`` = [c, a, b]) with covariance ``cov``.

    ``n_rpa_max``/``n_pre_max``: largest sizes the fit saw (for the extrapolation flag).
    """

    coef: list[float]
    cov: list[list[float]]
    dof: int
    r2: float
    n_points: int
    n_rpa_max: float
    n_pre_max: float

    def _x(self, n_rpa, n_pre) -> np.ndarray:
        return np.array([1.0, math.log(max(n_rpa, 1.0)), math.log(max(n_pre, 1.0))])

    def predict(self, n_rpa: float, n_pre: float) -> tuple[float, float, float]:
        """Expected median SC at (N_RPA, N_pre) and its 95 % interval (of the law's mean): ``(sc, lo, hi)``."""
        x = self._x(n_rpa, n_pre)
        m = float(x @ np.asarray(self.coef))
        s = math.sqrt(max(float(x @ np.asarray(self.cov) @ x), 0.0))
        t = _t95(self.dof)
        return 1.0 - math.exp(m), 1.0 - math.exp(m + t * s), 1.0 - math.exp(m - t * s)

    def slope_ci(self, k: int) -> tuple[float, float]:
        s = math.sqrt(max(self.cov[k][k], 0.0))
        t = _t95(self.dof)
        return self.coef[k] - t * s, self.coef[k] + t * s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "a_ci": self.slope_ci(1), "b_ci": self.slope_ci(2)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plane:
        return cls(**{k: d[k] for k in ("coef", "cov", "dof", "r2", "n_points", "n_rpa_max", "n_pre_max")})


def fit_plane(n_rpa: Sequence[float], n_pre: Sequence[float], sc: Sequence[float]) -> Plane:
    """Fit :class:`Plane` to median SC values at (N_RPA, N_pre) (repeated cells = seeds).

    Raises ``ValueError`` with fewer than 4 points or fewer than 2 distinct sizes on either axis.
    """
    a, b, y = (np.asarray(v, float) for v in (n_rpa, n_pre, sc))
    ok = (a > 0) & (b > 0) & (y < 1) & np.isfinite(y)
    a, b, y = a[ok], b[ok], y[ok]
    if len(y) < 4 or len(np.unique(a)) < 2 or len(np.unique(b)) < 2:
        raise ValueError("the two-size law needs ≥ 4 points with ≥ 2 distinct sizes on both axes")
    ly = np.log(1.0 - y)
    x = np.column_stack([np.ones_like(ly), np.log(a), np.log(b)])
    beta, cov, dof, _ = _ols(x, ly)
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float(((ly - x @ beta) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    if dof <= 0:
        raise ValueError("the two-size law needs more points than parameters")
    return Plane([float(v) for v in beta], cov.tolist(), dof, r2, len(y), float(a.max()), float(b.max()))


# --------------------------------------------------------------------------------------------------
# backtest
# --------------------------------------------------------------------------------------------------
def backtest(cells: Sequence[dict[str, Any]], full: tuple[int, int]) -> dict[str, Any]:
    """Refit the plane on the cells strictly below the full data and predict the full data.

    ``cells``: rows ``{"n_rpa", "n_pre", "sc"}`` (one per seed); ``full``: (N_RPA, N_pre) of the full data.
    Returns the prediction with its interval, the measured mean over seeds at the full cell with a 95 %
    interval (t over seeds; one seed: none), and whether each lies in the other's interval.
    """
    below = [c for c in cells if c["n_rpa"] < full[0] and c["n_pre"] < full[1]]
    rule = "N_RPA < all and N_pre < all"
    try:
        plane = fit_plane([c["n_rpa"] for c in below], [c["n_pre"] for c in below], [c["sc"] for c in below])
        sub = below
    except (
        ValueError
    ):  # too few cells strictly below (e.g. only the grid's edges): every cell but the full one
        sub = [c for c in cells if c["n_rpa"] < full[0] or c["n_pre"] < full[1]]
        rule = "every cell but the full data (N_RPA = all and N_pre = all)"
        plane = fit_plane([c["n_rpa"] for c in sub], [c["n_pre"] for c in sub], [c["sc"] for c in sub])
    meas = np.array([c["sc"] for c in cells if (c["n_rpa"], c["n_pre"]) == tuple(full)], float)
    sc, lo, hi = plane.predict(*full)
    out: dict[str, Any] = {
        "fitted_on": len(sub),
        "rule": rule,
        "fitted_cells": sorted({(int(c["n_rpa"]), int(c["n_pre"])) for c in sub}),
        "predicted": sc,
        "predicted_interval": [lo, hi],
        "predicted_half_width": (hi - lo) / 2,
        "plane": plane.to_dict(),
    }
    if len(meas):
        m = float(meas.mean())
        hw = _t95(len(meas) - 1) * float(meas.std(ddof=1)) / math.sqrt(len(meas)) if len(meas) > 1 else None
        out.update(
            measured=m,
            measured_seeds=meas.tolist(),
            measured_interval=None if hw is None else [m - hw, m + hw],
            measured_in_predicted=bool(lo <= m <= hi),
            predicted_in_measured=None if hw is None else bool(m - hw <= sc <= m + hw),
            error=sc - m,
        )
        out["passes"] = bool(out["measured_in_predicted"] and out["predicted_half_width"] <= 0.03)
    return out


# --------------------------------------------------------------------------------------------------
# the planner
# --------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """The best mix for a budget: counts per kind and cell size, predicted median SC with its interval."""

    budget_core_hours: float
    counts: dict[str, dict[int, int]]
    core_hours: dict[str, float]
    n_rpa: int
    n_pre: int
    sc: float
    interval: tuple[float, float]
    now: tuple[float, float, float]
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    decisive: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fill(
    seconds_budget: float, cost: dict[int, float], available: dict[int, int]
) -> tuple[dict[int, int], float]:
    """Buy materials cheapest cell size first (each size up to what is available); (counts, seconds spent)."""
    counts: dict[int, int] = {}
    spent = 0.0
    for n in sorted(cost, key=lambda k: cost[k]):
        c = cost[n]
        if c <= 0:
            continue
        k = int(min(available.get(n, 0), (seconds_budget - spent) // c))
        if k > 0:
            counts[n] = k
            spent += k * c
    return counts, spent


def plan(
    budget_core_hours: float,
    plane: Plane,
    *,
    n_rpa: int,
    n_pre: int,
    costs: dict[str, dict[int, float]],
    available: dict[str, dict[int, int]],
    steps: int = 20,
) -> Plan:
    """Split ``budget_core_hours`` between the kinds of :data:`KINDS` that have a cost to maximise the
    predicted median SC of the plane.

    ``n_rpa``/``n_pre``: today's training RPA and pre-training IPA counts; ``costs[kind][nsites]``: core-seconds
    per material; ``available[kind][nsites]``: structures still uncomputed. An IPA+RPA calculation adds one RPA
    and one IPA spectrum; a cheap IPA one adds one IPA spectrum. Fractions of the budget spent on IPA+RPA are
    tried in ``steps`` steps; within a kind the cheapest cell sizes are bought first.
    """
    if budget_core_hours < 0:
        raise ValueError("the budget must be ≥ 0 core-hours")
    kinds = [k for k in KINDS if costs.get(k)]
    if not kinds:
        raise ValueError("no measured cost for any kind of calculation")
    now = plane.predict(n_rpa, n_pre)
    seconds = budget_core_hours * 3600.0
    fractions = sorted({1.0} | ({i / steps for i in range(steps + 1)} if len(kinds) == 2 else set()))
    if kinds == ["cheap-ipa"]:
        fractions = [0.0]
    options = []
    for f in fractions:
        rpa_counts, spent = _fill(f * seconds, costs.get("ipa+rpa", {}), available.get("ipa+rpa", {}))
        cheap_counts, spent_c = ({}, 0.0)
        if "cheap-ipa" in kinds:
            cheap_counts, spent_c = _fill(seconds - spent, costs["cheap-ipa"], available.get("cheap-ipa", {}))
        y, x = sum(rpa_counts.values()), sum(cheap_counts.values())
        sc, lo, hi = plane.predict(n_rpa + y, n_pre + y + x)
        options.append({
            "fraction_ipa_rpa": f, "counts": {"ipa+rpa": rpa_counts, "cheap-ipa": cheap_counts},
            "core_hours": {"ipa+rpa": spent / 3600, "cheap-ipa": spent_c / 3600},
            "n_rpa": n_rpa + y, "n_pre": n_pre + y + x, "sc": sc, "interval": (lo, hi),
        })  # fmt: skip
    best = max(options, key=lambda o: (o["sc"], -o["fraction_ipa_rpa"]))
    warnings = []
    decisive = True
    a_lo, a_hi = plane.slope_ci(1)
    b_lo, b_hi = plane.slope_ci(2)
    if a_hi >= 0:
        warnings.append(
            f"the RPA-size slope's 95 % interval [{a_lo:.2f}, {a_hi:.2f}] holds 0: more RPA spectra are not shown to help"
        )
        decisive = False
    if "cheap-ipa" in kinds and b_hi >= 0:
        warnings.append(
            f"the pre-training-size slope's 95 % interval [{b_lo:.2f}, {b_hi:.2f}] holds 0: the value of cheap IPA is not established"
        )
        decisive = False
    half = (best["interval"][1] - best["interval"][0]) / 2
    if half > MAX_HALF_WIDTH:
        warnings.append(
            f"the predicted median SC is uncertain by ±{half:.3f} (> ±{MAX_HALF_WIDTH}): the laws are too uncertain to rank the options"
        )
        decisive = False
    if (
        best["n_rpa"] > MAX_EXTRAPOLATION * plane.n_rpa_max
        or best["n_pre"] > MAX_EXTRAPOLATION * plane.n_pre_max
    ):
        warnings.append(
            f"extrapolating beyond {MAX_EXTRAPOLATION:g}× the largest fitted sizes (N_RPA {plane.n_rpa_max:.0f}, N_pre {plane.n_pre_max:.0f})"
        )
        decisive = False
    if not any(best["counts"][k] for k in best["counts"]):
        cheapest = min(c for k in kinds for c in costs[k].values()) / 3600
        warnings.append(f"the budget buys no calculation (the cheapest costs {cheapest:.3f} core-hours)")
    for k in KINDS:
        if k not in kinds:
            warnings.append(f"no measured cost for {k} (no records of its protocol yet): not planned")
    alts = sorted(options, key=lambda o: -o["sc"])[:5]
    return Plan(budget_core_hours, best["counts"], best["core_hours"], best["n_rpa"], best["n_pre"], best["sc"],
                best["interval"], now, alts, warnings, decisive)  # fmt: skip


def format_plan(p: Plan) -> str:
    """The planner's answer as plain text."""
    lines = [
        f"budget {p.budget_core_hours:g} core-hours; today: predicted median test SC {p.now[0]:.3f} "
        f"[{p.now[1]:.3f}, {p.now[2]:.3f}]",
    ]
    for kind, counts in p.counts.items():
        if counts:
            per = ", ".join(f"{k} × {n} atoms" for n, k in sorted(counts.items()))
            lines.append(f"  {kind:<9}: {per}  ({p.core_hours[kind]:.2f} core-hours)")
    lines.append(
        f"→ N_RPA {p.n_rpa}, N_pre {p.n_pre}: expected median test SC {p.sc:.3f} "
        f"(95 % interval {p.interval[0]:.3f}–{p.interval[1]:.3f}; gain {p.sc - p.now[0]:+.3f})"
    )
    for w in p.warnings:
        lines.append(f"warning: {w}")
    if not p.decisive:
        lines.append("the laws are too uncertain for a firm answer: treat this plan as a best guess")
    return "\n".join(lines)


__all__ = [
    "KINDS",
    "Plan",
    "Plane",
    "PowerLaw",
    "backtest",
    "fit_plane",
    "fit_power_law",
    "format_plan",
    "plan",
    "slopes_differ",
]
