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
* :func:`plan`: which mix of further calculations (cheap IPA only, or IPA + RPA; cheapest first within the
  structures still uncomputed, priced per structure or per cell size) maximises the predicted median SC for a
  budget in core-hours;
* :func:`fit_law`: the same two sizes with an irreducible error (forms :data:`FORMS`: ``floor``,
  ``floor-sum`` = E∞ + A·N_RPA^a + B·N_pre^b), optionally one law per test cell size combined through the
  per-material SC of a reference model (the test split's composition differs from the pool's), with 95 %
  intervals by bootstrap over seeds (parameter uncertainty) plus the seed-to-seed noise of the predicted mean;
* :func:`backtest` / :func:`backtest_fold`: refit a law on the cells below the full data and compare its
  prediction at the full data with the measured mean over seeds; :func:`choose_law` picks the law's design on
  the **validation** split by the same backtests, so that the test backtest is not tuned on test.
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
# laws with an irreducible error, by test cell size, with bootstrap intervals
# --------------------------------------------------------------------------------------------------
#: forms of the two-size law for the error E = 1 − median SC (x = ln N_RPA, y = ln N_pre):
#: ``plane``: ln E = c + a·x + b·y (:class:`Plane`); ``floor``: E = E∞ + exp(c + a·x + b·y);
#: ``floor-sum``: E = E∞ + exp(c₁ + a·x) + exp(c₂ + b·y) (the paper's two power laws, each size's share of
#: the error falling on its own, above an irreducible error E∞)
FORMS: tuple[str, ...] = ("plane", "floor", "floor-sum")
N_PARAMS = {"plane": 3, "floor": 4, "floor-sum": 5}
#: bootstrap replicates of a law (refits)
N_BOOT = 200
#: the backtest's target: the measured value inside the predicted interval, no wider than this (median SC)
BACKTEST_HALF_WIDTH = 0.03


def law_error(form: str, p: Sequence[float], x, y) -> np.ndarray:
    """The error ``E = 1 − SC`` of ``form`` with parameters ``p`` at ``x = ln N_RPA``, ``y = ln N_pre``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if form == "plane":
        return np.exp(p[0] + p[1] * x + p[2] * y)
    if form == "floor":
        return p[0] + np.exp(p[1] + p[2] * x + p[3] * y)
    if form == "floor-sum":
        return p[0] + np.exp(p[1] + p[2] * x) + np.exp(p[3] + p[4] * y)
    raise ValueError(f"unknown law form {form!r}; known: {FORMS}")


def fit_form(
    form: str,
    n_rpa: Sequence[float],
    n_pre: Sequence[float],
    sc: Sequence[float],
    start: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
) -> list[float]:
    """Least squares of ``ln E`` (the residual of every form on log axes, as :func:`fit_plane`), weighted by
    ``weights`` (e.g. the inverse seed-to-seed variance of ln E of each point's cell) when given.

    ``floor`` forms: E∞ in [0, 1], exponents a, b in [−3, 0] (the error does not grow with data), several
    starts (or only ``start``, e.g. the full fit's parameters for a bootstrap refit). Raises ``ValueError`` when there are no more distinct (N_RPA, N_pre) cells than parameters.
    """
    from scipy.optimize import least_squares

    a, b, s = (np.asarray(v, float) for v in (n_rpa, n_pre, sc))
    w = np.ones_like(s) if weights is None else np.asarray(weights, float)
    ok = (a > 0) & (b > 0) & (s < 1) & np.isfinite(s)
    a, b, s, sw = a[ok], b[ok], s[ok], np.sqrt(w[ok])
    k = N_PARAMS.get(form)
    if k is None:
        raise ValueError(f"unknown law form {form!r}; known: {FORMS}")
    if (
        len({(u, v) for u, v in zip(a, b, strict=True)}) <= k
        or len(np.unique(a)) < 2
        or len(np.unique(b)) < 2
    ):
        raise ValueError(f"the {form} law needs more than {k} distinct cells with ≥ 2 sizes on both axes")
    x, y, le = np.log(a), np.log(b), np.log(1.0 - s)
    if form == "plane":
        beta, *_ = np.linalg.lstsq(
            np.column_stack([np.ones_like(x), x, y]) * sw[:, None], le * sw, rcond=None
        )
        return [float(v) for v in beta]
    emin = float(np.exp(le.min()))
    lo, hi = (
        ([0, -20, -3, -3], [1, 10, 0, 0]) if form == "floor" else ([0, -20, -3, -20, -3], [1, 10, 0, 10, 0])
    )
    if start is not None:
        starts = [np.clip(np.asarray(start, float), np.add(lo, 1e-9), np.subtract(hi, 1e-9))]
    elif form == "floor":
        starts = [[f0, 0.0, e0, e0] for f0 in (0.0, 0.5 * emin, 0.9 * emin) for e0 in (-0.3, -1.0)]
    else:
        starts = [[f0, -1.0, e0, -1.0, e0] for f0 in (0.0, 0.5 * emin, 0.9 * emin) for e0 in (-0.3, -1.0)]

    def res(p):
        return (np.log(np.maximum(law_error(form, p, x, y), 1e-12)) - le) * sw

    best = None
    for p0 in starts:
        r = least_squares(res, p0, bounds=(lo, hi))
        if best is None or r.cost < best.cost:
            best = r
    return [float(v) for v in best.x]


@dataclass
class Law:
    """A fitted two-size law with bootstrap intervals (:func:`fit_law`).

    ``params``: the parameters of ``form`` (by test cell size ``{"2": [...], ...}`` when ``reference`` is set);
    ``reference``: by cell size, the per-material test SC of the reference cell (the fitted cell with the most
    data) for each seed: ``{"n_rpa", "n_pre", "nsites": [...], "sc": {seed: [...]}}``; a prediction maps each
    material's error by its cell size's law, ``1 − SC_i → (1 − SC_i)·E_k(target)/E_k(reference)``, and takes
    the median over all materials (the composition of the test split stays as it is). Every fit weights each
    (N_RPA, N_pre) cell by the inverse seed-to-seed variance of its ln E (with ≥ 2 seeds per cell: the small
    cells scatter ~10× more). ``draws``: refits on bootstrap resamples (over seeds, all cells of a seed
    together, with ≥ 3 seeds; over cells otherwise); ``noise_sd``: seed-to-seed standard deviation of one
    model's median SC at the fitted cell with the most data. :meth:`predict` adds that noise to the draws for
    the mean of ``seeds`` models.
    """

    form: str
    params: list[float] | dict[str, list[float]]
    draws: list[dict[str, Any]]
    noise_sd: float
    n_points: int
    n_rpa_max: float
    n_pre_max: float
    seeds: list[int]
    bootstrap: str
    fitted_cells: list[tuple[int, int]]
    reference: dict[str, Any] | None = None

    @property
    def by_size(self) -> bool:
        return self.reference is not None

    def _mean(self, params, seeds: Sequence[int], n_rpa: float, n_pre: float) -> float:
        x, y = math.log(max(n_rpa, 1.0)), math.log(max(n_pre, 1.0))
        if self.reference is None:
            return float(1.0 - law_error(self.form, params, x, y))
        ref = self.reference
        rx, ry = math.log(ref["n_rpa"]), math.log(ref["n_pre"])
        nsites = np.asarray(ref["nsites"])
        factor = np.ones(len(nsites))
        for k, p in params.items():
            factor[nsites == int(k)] = float(law_error(self.form, p, x, y) / law_error(self.form, p, rx, ry))
        use = [str(s) for s in seeds if str(s) in ref["sc"]] or list(ref["sc"])
        return float(np.mean([np.median(1.0 - (1.0 - np.asarray(ref["sc"][s])) * factor) for s in use]))

    def predict(self, n_rpa: float, n_pre: float, seeds: int = 1) -> tuple[float, float, float]:
        """Expected median SC at (N_RPA, N_pre) and the 95 % interval of the mean of ``seeds`` models trained
        there (parameter uncertainty by bootstrap, seed-to-seed noise): ``(sc, lo, hi)``."""
        sc = self._mean(self.params, self.seeds, n_rpa, n_pre)
        vals = np.array([self._mean(d["params"], d["seeds"], n_rpa, n_pre) for d in self.draws])
        if not len(vals):
            return sc, float("nan"), float("nan")
        noise = np.random.default_rng(0).normal(0.0, self.noise_sd / math.sqrt(max(seeds, 1)), len(vals))
        lo, hi = np.percentile(vals + noise, [2.5, 97.5])
        return sc, float(min(lo, sc)), float(max(hi, sc))

    def slope_ci(self, k: int) -> tuple[float, float]:
        """95 % bootstrap interval of the local slope d ln(1 − SC)/d ln N at the largest fitted sizes, of
        N_RPA (``k`` = 1) or N_pre (``k`` = 2), as :meth:`Plane.slope_ci` for the plane."""
        h = 0.05
        n0 = (self.n_rpa_max, self.n_pre_max)
        n1 = (n0[0] * math.exp(h), n0[1]) if k == 1 else (n0[0], n0[1] * math.exp(h))
        s = [
            (math.log(1 - self._mean(d["params"], d["seeds"], *n1)) - math.log(1 - self._mean(d["params"], d["seeds"], *n0))) / h
            for d in self.draws
        ]  # fmt: skip
        if not s:
            return float("nan"), float("nan")
        lo, hi = np.percentile(s, [2.5, 97.5])
        return float(lo), float(hi)

    def describe(self) -> str:
        what = {"plane": "ln E = c + a·ln N_RPA + b·ln N_pre", "floor": "E = E∞ + exp(c + a·ln N_RPA + b·ln N_pre)",
                "floor-sum": "E = E∞ + A·N_RPA^a + B·N_pre^b"}[self.form]  # fmt: skip
        return (
            f"{self.form} ({what}, E = 1 − median SC){', one law per test cell size' if self.by_size else ''}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "law", **asdict(self), "description": self.describe()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Law:
        keys = ("form", "params", "draws", "noise_sd", "n_points", "n_rpa_max", "n_pre_max", "seeds", "bootstrap",
                "fitted_cells", "reference")  # fmt: skip
        return cls(**{k: d.get(k) for k in keys})


#: a cell's weight is at most 1/(this × the median seed-to-seed variance of ln E over the cells)
MIN_VARIANCE_SHARE = 0.1


def _weights(cells: Sequence[dict[str, Any]], value) -> list[float] | None:
    """Inverse seed-to-seed variance of ln(1 − ``value(cell)``) of each point's (N_RPA, N_pre) cell (the seeds
    of a model trained on 25 materials scatter ~10× more than at the full data); None with < 2 seeds per cell."""
    groups: dict[tuple, list[float]] = {}
    for c in cells:
        groups.setdefault((c["n_rpa"], c["n_pre"]), []).append(math.log(max(1.0 - value(c), 1e-12)))
    var = {k: float(np.var(v, ddof=1)) for k, v in groups.items() if len(v) > 1}
    if len(var) < len(groups):
        return None
    floor = MIN_VARIANCE_SHARE * float(np.median(list(var.values())))
    if floor <= 0:
        return None
    return [1.0 / max(var[(c["n_rpa"], c["n_pre"])], floor) for c in cells]


def _noise_sd(cells: Sequence[dict[str, Any]], form: str, params) -> float:
    """Seed-to-seed sd of a model's median SC near the prediction: over the seeds of the fitted cell with the
    most data (the largest N_RPA·N_pre; the scatter falls with N); with one seed there, pooled over the cells
    measured with ≥ 2 seeds; else the residual sd of the fit (in SC)."""
    groups: dict[tuple, list[float]] = {}
    for c in cells:
        groups.setdefault((c["n_rpa"], c["n_pre"]), []).append(c["sc"])
    top = max(groups, key=lambda k: (k[0] * k[1], k[0]))
    if len(groups[top]) > 1:
        return float(np.std(groups[top], ddof=1))
    var = [np.var(v, ddof=1) for v in groups.values() if len(v) > 1]
    if var:
        return float(math.sqrt(np.mean(var)))
    if isinstance(params, dict):
        return 0.0
    r = [c["sc"] - (1 - law_error(form, params, math.log(c["n_rpa"]), math.log(c["n_pre"]))) for c in cells]
    dof = max(len(r) - N_PARAMS[form], 1)
    return float(math.sqrt(float(np.sum(np.square(r))) / dof))


def _fit_params(
    form: str, cells: Sequence[dict[str, Any]], sizes: Sequence[int] | None, start=None, weights=None
):
    """Parameters of ``form`` (by cell size with ``sizes``); ``weights``: {None or size: per-cell weight}."""
    a, b = [c["n_rpa"] for c in cells], [c["n_pre"] for c in cells]

    def w(key):
        return (
            None
            if weights is None or weights.get(key) is None
            else [weights[key][(c["n_rpa"], c["n_pre"])] for c in cells]
        )

    if sizes is None:
        return fit_form(form, a, b, [c["sc"] for c in cells], start, w(None))
    return {str(k): fit_form(form, a, b, [c["by_size"][str(k)] for c in cells], None if start is None else start[str(k)],
                             w(str(k))) for k in sizes}  # fmt: skip


def _cell_weights(cells: Sequence[dict[str, Any]], sizes: Sequence[int] | None) -> dict:
    """{None (overall) or size: {(N_RPA, N_pre): weight}} from :func:`_weights` (a key is None without seeds)."""
    out: dict = {}
    for key in [None] if sizes is None else [str(k) for k in sizes]:
        value = (lambda c: c["sc"]) if key is None else (lambda c, key=key: c["by_size"][key])
        w = _weights(cells, value)
        out[key] = (
            None if w is None else {(c["n_rpa"], c["n_pre"]): wi for c, wi in zip(cells, w, strict=True)}
        )
    return out


def fit_law(
    cells: Sequence[dict[str, Any]],
    form: str = "plane",
    *,
    per_material: dict[tuple[int, int, int], Sequence[float]] | None = None,
    nsites: Sequence[int] | None = None,
    n_boot: int = N_BOOT,
    rng_seed: int = 0,
    weighted: bool = True,
) -> Law:
    """Fit ``form`` to cells ``{"n_rpa", "n_pre", "sc", "seed", "by_size": {"2": sc, ...}}`` (one per seed).

    With ``per_material`` (``{(seed, n_rpa, n_pre): per-material SC}``, materials of sizes ``nsites``) the law
    is fitted per test cell size on ``by_size`` and combined through the per-material SC at the reference cell
    (the fitted cell with the largest N_RPA·N_pre that has them); otherwise on the overall median SC.
    """
    cells = [c for c in cells if c["sc"] < 1]
    seeds = sorted({int(c.get("seed", 0)) for c in cells})
    reference, sizes = None, None
    if per_material is not None:
        have = [
            (s, r, p) for (s, r, p) in per_material if any(c["n_rpa"] == r and c["n_pre"] == p for c in cells)
        ]
        if not have:
            raise ValueError("no per-material SC at any fitted cell: cannot fit by cell size")
        _, r0, p0 = max(have, key=lambda t: (t[1] * t[2], t[1]))
        ns = [int(n) for n in nsites]
        sizes = sorted(set(ns))
        reference = {"n_rpa": r0, "n_pre": p0, "nsites": ns,
                     "sc": {str(s): [float(v) for v in per_material[(s, r, p)]] for (s, r, p) in have if (r, p) == (r0, p0)}}  # fmt: skip
    weights = _cell_weights(cells, sizes) if weighted else None
    params = _fit_params(form, cells, sizes, weights=weights)
    rng = np.random.default_rng(rng_seed)
    by_seed: dict[int, list] = {}
    for c in cells:
        by_seed.setdefault(int(c.get("seed", 0)), []).append(c)
    boot = "seeds" if len(seeds) >= 3 else "cells"
    draws = []
    for _ in range(n_boot):
        if boot == "seeds":
            pick = [int(s) for s in rng.choice(seeds, len(seeds))]
            sample = [c for s in pick for c in by_seed[s]]
        else:
            pick = seeds
            sample = [cells[i] for i in rng.integers(0, len(cells), len(cells))]
        try:
            draws.append({"params": _fit_params(form, sample, sizes, params, weights), "seeds": pick})
        except ValueError:  # a resample with too few distinct cells
            continue
    return Law(form, params, draws, _noise_sd(cells, form, params), len(cells),
               float(max(c["n_rpa"] for c in cells)), float(max(c["n_pre"] for c in cells)), seeds, boot,
               sorted({(int(c["n_rpa"]), int(c["n_pre"])) for c in cells}), reference)  # fmt: skip


def law_from_analysis(analysis: dict[str, Any]) -> Plane | Law:
    """The law the planner spends by: the scaling report's chosen ``law`` when it has one, else its plane."""
    law = analysis.get("law") or {}
    if law.get("kind") == "law":
        return Law.from_dict(law)
    plane = analysis.get("plane") or {}
    if "coef" not in plane:
        raise ValueError(
            f"holds no fitted two-size law ({plane.get('error', law.get('error', 'no heat map'))})"
        )
    return Plane.from_dict(plane)


# --------------------------------------------------------------------------------------------------
# backtest
# --------------------------------------------------------------------------------------------------
def backtest_folds(full: tuple[int, int]) -> dict[str, tuple[str, Any, tuple[int, int]]]:
    """The refits of a backtest: name → (rule in words, cell filter, target cell). The first is the issue's
    backtest (every size below the full data, predicting the full data); the others extrapolate one axis."""
    r_all, p_all = full
    return {
        "below": ("N_RPA < all and N_pre < all", lambda c: c["n_rpa"] < r_all and c["n_pre"] < p_all, full),
        "rpa-below": ("N_RPA < all (every N_pre)", lambda c: c["n_rpa"] < r_all, full),
        "pre-below": ("N_pre < all (every N_RPA)", lambda c: c["n_pre"] < p_all, full),
    }


def backtest_fold(
    cells: Sequence[dict[str, Any]],
    rule: tuple[str, Any, tuple[int, int]],
    form: str = "plane",
    *,
    per_material: dict | None = None,
    nsites: Sequence[int] | None = None,
    n_boot: int = N_BOOT,
) -> dict[str, Any]:
    """Refit ``form`` on the cells the rule keeps (``per_material`` restricted to them) and predict the
    target cell: the prediction with its interval (for the mean of as many seeds as were measured there),
    the measured mean over seeds with a t interval (one seed: none), and whether each holds the other."""
    words, keep, target = rule
    sub = [c for c in cells if keep(c)]
    pm = None
    if per_material is not None:
        pm = {k: v for k, v in per_material.items() if keep({"n_rpa": k[1], "n_pre": k[2]})}
    law = fit_law(sub, form, per_material=pm, nsites=nsites, n_boot=n_boot)
    meas = np.array([c["sc"] for c in cells if (c["n_rpa"], c["n_pre"]) == tuple(target)], float)
    sc, lo, hi = law.predict(*target, seeds=max(len(meas), 1))
    out: dict[str, Any] = {
        "rule": words, "target": list(target), "form": form, "by_size": law.by_size, "description": law.describe(),
        "fitted_on": len(sub), "fitted_cells": law.fitted_cells, "seeds": law.seeds, "bootstrap": law.bootstrap,
        "noise_sd": law.noise_sd, "predicted": sc, "predicted_interval": [lo, hi], "predicted_half_width": (hi - lo) / 2,
        "reference_cell": None if law.reference is None else [law.reference["n_rpa"], law.reference["n_pre"]],
    }  # fmt: skip
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
        out["passes"] = bool(
            out["measured_in_predicted"] and out["predicted_half_width"] <= BACKTEST_HALF_WIDTH
        )
    return out


def backtest(
    cells: Sequence[dict[str, Any]], full: tuple[int, int], form: str = "plane", **kw
) -> dict[str, Any]:
    """The issue's backtest: refit ``form`` on the cells strictly below the full data and predict the full data
    (:func:`backtest_fold`); with too few cells strictly below, on every cell but the full one."""
    fold = backtest_folds(full)["below"]
    try:
        return backtest_fold(cells, fold, form, **kw)
    except ValueError:
        rule = ("every cell but the full data (N_RPA = all and N_pre = all)",
                lambda c: (c["n_rpa"], c["n_pre"]) != tuple(full), full)  # fmt: skip
        return backtest_fold(cells, rule, form, **kw)


def choose_law(
    validation: Sequence[dict[str, Any]],
    full: tuple[int, int],
    *,
    per_material: dict | None = None,
    nsites: Sequence[int] | None = None,
    n_boot: int = 0,
) -> dict[str, Any]:
    """Choose the law's design (form; overall or by cell size) on the **validation** split: the backtest folds
    of :func:`backtest_folds` for every design, scored by the largest |prediction − measurement| over the folds
    (designs that cannot be fitted on a fold are skipped; the score uses the point predictions, so no bootstrap
    unless ``n_boot``). Returns ``{"chosen": {"form", "by_size"},
    "designs": [{"form", "by_size", "folds": {...}, "max_abs_error"}]}``."""
    designs = []
    for form in FORMS:
        for by_size in (False, True) if per_material else (False,):
            row: dict[str, Any] = {"form": form, "by_size": by_size, "folds": {}}
            for name, rule in backtest_folds(full).items():
                try:
                    bt = backtest_fold(validation, rule, form, per_material=per_material if by_size else None,
                                       nsites=nsites, n_boot=n_boot)  # fmt: skip
                except ValueError as exc:
                    row["folds"][name] = {"failed": str(exc)}
                    continue
                row["folds"][name] = {k: bt.get(k) for k in ("predicted", "predicted_interval", "measured", "error",
                                                             "measured_in_predicted", "passes")}  # fmt: skip
            errs = [abs(f["error"]) for f in row["folds"].values() if f.get("error") is not None]
            row["max_abs_error"] = max(errs) if errs else None
            row["folds_fitted"] = len(errs)
            designs.append(row)
    ok = [d for d in designs if d["max_abs_error"] is not None]
    if not ok:
        raise ValueError("no law could be backtested on validation")
    most = max(d["folds_fitted"] for d in ok)
    best = min((d for d in ok if d["folds_fitted"] == most), key=lambda d: d["max_abs_error"])
    return {"chosen": {"form": best["form"], "by_size": best["by_size"]}, "designs": designs}


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
    #: the structures bought, per kind, cheapest first (when the candidates were priced per structure)
    ids: dict[str, list[str]] = field(default_factory=dict)

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


#: a structure the planner can buy: (id, cell size, predicted core-seconds)
Candidate = tuple[str, int, float]


def _fill_candidates(
    seconds_budget: float, cands: Sequence[Candidate], exclude: set[str] | frozenset[str] = frozenset()
) -> tuple[dict[int, int], float, list[str]]:
    """Buy structures cheapest first (``cands`` sorted by cost), none of ``exclude``, while the budget lasts;
    (counts by cell size, seconds spent, ids bought)."""
    pool = (
        [c for c in cands if c[0] not in exclude and c[2] > 0] if exclude else [c for c in cands if c[2] > 0]
    )
    if not pool or seconds_budget <= 0:
        return {}, 0.0, []
    spent = np.cumsum([c[2] for c in pool])
    k = int(np.searchsorted(spent, seconds_budget * (1 + 1e-12), side="right"))
    counts: dict[int, int] = {}
    for c in pool[:k]:
        counts[c[1]] = counts.get(c[1], 0) + 1
    return dict(sorted(counts.items())), float(spent[k - 1]) if k else 0.0, [c[0] for c in pool[:k]]


def plan(
    budget_core_hours: float,
    plane: Plane | Law,
    *,
    n_rpa: int,
    n_pre: int,
    costs: dict[str, dict[int, float]] | None = None,
    available: dict[str, dict[int, int]] | None = None,
    candidates: dict[str, Sequence[Candidate]] | None = None,
    steps: int = 20,
) -> Plan:
    """Split ``budget_core_hours`` between the kinds of :data:`KINDS` that have a cost to maximise the
    predicted median SC of the law (a :class:`Plane` or a :class:`Law`, e.g. :func:`law_from_analysis`).

    ``n_rpa``/``n_pre``: today's training RPA and pre-training IPA counts. Per structure (preferred):
    ``candidates[kind]`` = ``(id, nsites, core-seconds)`` of every structure still uncomputed for that kind,
    bought cheapest first; the cheap IPA part never buys a structure the IPA+RPA part bought (its IPA spectrum
    comes with it). Per cell size (a kind without candidates): ``costs[kind][nsites]`` core-seconds per material
    and ``available[kind][nsites]`` structures still uncomputed, the cheapest sizes first. An IPA+RPA calculation
    adds one RPA and one IPA spectrum; a cheap IPA one adds one IPA spectrum. Fractions of the budget spent on
    IPA+RPA are tried in ``steps`` steps.
    """
    if budget_core_hours < 0:
        raise ValueError("the budget must be ≥ 0 core-hours")
    costs, available = costs or {}, available or {}
    cands = {k: sorted(v, key=lambda c: (c[2], c[0])) for k, v in (candidates or {}).items() if v}
    kinds = [k for k in KINDS if costs.get(k) or cands.get(k)]
    if not kinds:
        raise ValueError("no measured cost for any kind of calculation")
    now = plane.predict(n_rpa, n_pre)
    seconds = budget_core_hours * 3600.0
    fractions = sorted({1.0} | ({i / steps for i in range(steps + 1)} if len(kinds) == 2 else set()))
    if kinds == ["cheap-ipa"]:
        fractions = [0.0]
    options = []
    for f in fractions:
        rpa_ids: list[str] = []
        if "ipa+rpa" in cands:
            rpa_counts, spent, rpa_ids = _fill_candidates(f * seconds, cands["ipa+rpa"])
        else:
            rpa_counts, spent = _fill(f * seconds, costs.get("ipa+rpa", {}), available.get("ipa+rpa", {}))
        cheap_counts, spent_c, cheap_ids = ({}, 0.0, [])
        if "cheap-ipa" in cands:
            cheap_counts, spent_c, cheap_ids = _fill_candidates(
                seconds - spent, cands["cheap-ipa"], set(rpa_ids)
            )
        elif "cheap-ipa" in kinds:
            cheap_counts, spent_c = _fill(seconds - spent, costs["cheap-ipa"], available.get("cheap-ipa", {}))
        y, x = sum(rpa_counts.values()), sum(cheap_counts.values())
        sc, lo, hi = plane.predict(n_rpa + y, n_pre + y + x)
        options.append({
            "fraction_ipa_rpa": f, "counts": {"ipa+rpa": rpa_counts, "cheap-ipa": cheap_counts},
            "core_hours": {"ipa+rpa": spent / 3600, "cheap-ipa": spent_c / 3600},
            "n_rpa": n_rpa + y, "n_pre": n_pre + y + x, "sc": sc, "interval": (lo, hi),
            "ids": {k: v for k, v in (("ipa+rpa", rpa_ids), ("cheap-ipa", cheap_ids)) if k in cands},
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
        prices = [c for k in kinds for c in costs.get(k, {}).values()]
        prices += [c[2] for k in kinds for c in cands.get(k, ())[:1]]
        cheapest = min(prices) / 3600
        warnings.append(f"the budget buys no calculation (the cheapest costs {cheapest:.3f} core-hours)")
    for k in KINDS:
        if k not in kinds:
            warnings.append(f"no measured cost for {k} (no records of its protocol yet): not planned")
    alts = [{k: v for k, v in o.items() if k != "ids"} for o in sorted(options, key=lambda o: -o["sc"])[:5]]
    return Plan(budget_core_hours, best["counts"], best["core_hours"], best["n_rpa"], best["n_pre"], best["sc"],
                best["interval"], now, alts, warnings, decisive, best["ids"])  # fmt: skip


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
    "FORMS",
    "KINDS",
    "Law",
    "Plan",
    "Plane",
    "PowerLaw",
    "backtest",
    "backtest_fold",
    "backtest_folds",
    "choose_law",
    "fit_form",
    "fit_law",
    "law_error",
    "law_from_analysis",
    "fit_plane",
    "fit_power_law",
    "format_plan",
    "plan",
    "slopes_differ",
]
