"""Analysis, figures and README of the scaling study (:mod:`optiladder.study.scaling`) from its cells.

:func:`analyse` turns the trained cells (one row per model × seed with validation and test summaries) into
learning curves (mean ± std over seeds), power-law fits with 95 % intervals (:mod:`.laws`), the two-size law over
the heat map, its backtest, the choice on validation and the paper's claims tested one by one;
:func:`write_scaling_report` writes ``results.json``, ``cells.csv``, the figures (in the style of Hoffmann et al.'s
Figs 3–5: log–log curves with fits; a heat map over N_pre × N_RPA) and ``README.md``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .laws import (
    backtest,
    backtest_fold,
    backtest_folds,
    choose_law,
    fit_law,
    fit_plane,
    fit_power_law,
    slopes_differ,
)

log = logging.getLogger(__name__)
DPI = 100

#: the learning curves against N_RPA: label → (model, method, free labels); N_pre = all
RPA_CURVES: dict[str, tuple[str, str, bool]] = {
    "OptiMate DL": ("optimate", "dl", False),
    "OptiMate TL full": ("optimate", "tl", False),
    "OptiMate TL head-only": ("optimate", "tl-head", False),
    "OptiMate TL full + free labels": ("optimate", "tl", True),
    "CGAT DL": ("cgat", "dl", False),
    "CGAT TL full": ("cgat", "tl", False),
}
#: the analysis keys of the laws (refitted with their bootstraps only when a seed completes: :func:`analyse`)
LAW_KEYS = ("law_choice", "backtest", "backtest_folds", "backtest_plane", "law")
#: the learning curves against N_pre at N_RPA = rpa_ref: label → free labels
PRE_CURVES: dict[str, bool] = {"OptiMate TL full": False, "OptiMate TL full + free labels": True}


def _seeds_per_curve(cells, n_pre_all: int) -> dict[str, int]:
    """Label → number of seeds with at least one cell of that learning curve (N_pre = ``n_pre_all``, the grid's
    "all", for the N_RPA curves; the heat map: OptiMate TL full below it)."""
    out = {}
    for label, (model, method, free) in RPA_CURVES.items():
        pts = [c for c in _points(cells, model=model, method=method, free=free)
               if method == "dl" or c["n_pre"] == n_pre_all]  # fmt: skip
        out[label] = len({c["seed"] for c in pts})
    heat = [c for c in _points(cells, model="optimate", method="tl", free=False) if c["n_pre"] < n_pre_all]
    out["OptiMate TL full heat map (N_pre < all)"] = len({c["seed"] for c in heat})
    return out


def _points(cells, **match) -> list[dict[str, Any]]:
    return [c for c in cells if all(c[k] == v for k, v in match.items())]


def _curve(rows: list[dict[str, Any]], x: str) -> dict[str, Any]:
    """Per size: mean ± std over seeds of the test median SC and MAE, validation median SC, cells by size;
    fits of log(1 − SC) and log(MAE) on the per-seed points."""
    sizes = sorted({r[x] for r in rows})
    table = []
    for s in sizes:
        rs = [r for r in rows if r[x] == s]
        sc = [r["test"]["median_sc"] for r in rs]
        cells = sorted({c for r in rs for c in r["test"]["by_cell_size"]}, key=int)
        table.append({
            "n": s, "seeds": len(rs), "test_median_sc": float(np.mean(sc)), "test_median_sc_std": float(np.std(sc)),
            "test_median_mae": float(np.mean([r["test"]["median_mae"] for r in rs])),
            "validation_median_sc": float(np.mean([r["validation"]["median_sc"] for r in rs])),
            "test_by_cell_size": {int(c): float(np.mean([r["test"]["by_cell_size"][c] for r in rs if c in r["test"]["by_cell_size"]]))
                                  for c in cells},
        })  # fmt: skip
    out: dict[str, Any] = {"table": table}
    for key, f in (
        ("fit_1msc", lambda r: 1.0 - r["test"]["median_sc"]),
        ("fit_mae", lambda r: r["test"]["median_mae"]),
    ):
        try:
            out[key] = fit_power_law([r[x] for r in rows], [f(r) for r in rows]).to_dict()
        except ValueError as exc:
            out[key] = {"error": str(exc)}
    return out


def _paired(cells, a: dict[str, Any], b: dict[str, Any], keys=("n_rpa", "n_pre", "seed")) -> dict[str, Any]:
    """Test median SC of configuration ``a`` minus ``b`` over the cells both have (same sizes and seed)."""
    idx = {tuple(c[k] for k in keys): c for c in _points(cells, **b)}
    d, dv = [], []
    for c in _points(cells, **a):
        o = idx.get(tuple(c[k] for k in keys))
        if o is not None:
            d.append(c["test"]["median_sc"] - o["test"]["median_sc"])
            dv.append(c["validation"]["median_sc"] - o["validation"]["median_sc"])
    if not d:
        return {"pairs": 0}
    d = np.asarray(d)
    hw = 1.96 * float(d.std(ddof=1)) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {"pairs": len(d), "mean_test_diff": float(d.mean()), "ci95": [float(d.mean() - hw), float(d.mean() + hw)],
            "wins": int((d > 0).sum()), "mean_validation_diff": float(np.mean(dv))}  # fmt: skip


def _law_cells(heat: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    return [{"n_rpa": c["n_rpa"], "n_pre": c["n_pre"], "seed": c["seed"], "sc": c[split]["median_sc"],
             "by_size": {str(k): v for k, v in c[split]["by_cell_size"].items()}} for c in heat]  # fmt: skip


def _per_material(per: dict[str, Any] | None, split: str) -> tuple[dict | None, list[int] | None]:
    """``{(seed, n_rpa, n_pre): per-material SC}`` of the OptiMate TL full models on ``split`` (None without)."""
    if not per or not per.get("sc"):
        return None, None
    out = {}
    for key, v in per["sc"].items():
        f = key.split("|")
        if f[:3] != ["optimate", "tl", "free=False"] or split not in v:
            continue
        kv = dict(x.split("=") for x in f[3:])
        out[(int(kv["seed"]), int(kv["rpa"]), int(kv["pre"]))] = v[split]
    return (out or None), per["nsites"][split]


def _laws(heat: list[dict[str, Any]], per: dict[str, Any] | None, full: tuple[int, int]) -> dict[str, Any]:
    """The law's design chosen on validation by backtests (:func:`choose_law`), its backtests on test (the
    issue's, then one axis at a time; the plane of the first report beside it), and the chosen law fitted on
    every heat-map cell (what ``optiladder plan`` spends by)."""
    out: dict[str, Any] = {}
    val, test = _law_cells(heat, "validation"), _law_cells(heat, "test")
    pm_val, ns_val = _per_material(per, "validation")
    pm_test, ns_test = _per_material(per, "test")
    try:
        choice = choose_law(val, full, per_material=pm_val, nsites=ns_val)
    except ValueError as exc:
        out["law_choice"] = {"error": str(exc)}
        try:
            out["backtest"] = backtest(test, full)
        except ValueError as exc2:
            out["backtest"] = {"error": str(exc2)}
        return out
    out["law_choice"] = choice
    form, by_size = choice["chosen"]["form"], choice["chosen"]["by_size"]
    kw = {"per_material": pm_test, "nsites": ns_test} if by_size else {}
    try:
        out["backtest"] = {**backtest(test, full, form, **kw), "chosen_on": "validation"}
    except ValueError as exc:
        out["backtest"] = {"error": str(exc)}
    folds = {}
    for name, rule in list(backtest_folds(full).items())[1:]:
        try:
            folds[name] = backtest_fold(test, rule, form, **kw)
        except ValueError as exc:
            folds[name] = {"error": str(exc)}
    out["backtest_folds"] = folds
    if (form, by_size) != ("plane", False):
        try:
            out["backtest_plane"] = backtest(test, full)
        except ValueError as exc:
            out["backtest_plane"] = {"error": str(exc)}
    try:
        out["law"] = fit_law(test, form, **kw).to_dict()
    except ValueError as exc:
        out["law"] = {"error": str(exc)}
    return out


def _verdict(ok: bool | None) -> str:
    return {True: "supported", False: "not supported", None: "undecided"}[ok]


def analyse(
    results: dict[str, Any], per_material: dict[str, Any] | None = None, laws: bool = True
) -> dict[str, Any]:
    """Curves, fits, the two-size law, backtest, validation choice and claims from ``results["cells"]``
    (``per_material``: the run's ``per_material.json``, for the law by test cell size; ``laws=False`` keeps the
    previous analysis' law choice, backtests and law instead of refitting them with their bootstraps)."""
    cells = results["cells"]
    n_pre_all, n_rpa_all, ref = results["pre_sizes"][-1], results["rpa_sizes"][-1], results["rpa_ref"]
    a: dict[str, Any] = {"rpa_curves": {}, "pre_curves": {}}
    for label, (model, method, free) in RPA_CURVES.items():
        match = {"model": model, "method": method, "free": free}
        if method != "dl":
            match["n_pre"] = n_pre_all
        rows = _points(cells, **match)
        if rows:
            a["rpa_curves"][label] = _curve(rows, "n_rpa")
    for label, free in PRE_CURVES.items():
        rows = _points(cells, model="optimate", method="tl", free=free, n_rpa=ref)
        if rows:
            a["pre_curves"][label] = _curve(rows, "n_pre")
    heat = _points(cells, model="optimate", method="tl", free=False)
    grid: dict[str, dict[str, float]] = {}
    for c in heat:
        grid.setdefault(str(c["n_pre"]), {}).setdefault(str(c["n_rpa"]), []).append(c["test"]["median_sc"])  # type: ignore[arg-type]
    a["heatmap"] = {p: {r: float(np.mean(v)) for r, v in row.items()} for p, row in grid.items()}
    pts = [{"n_rpa": c["n_rpa"], "n_pre": c["n_pre"], "sc": c["test"]["median_sc"]} for c in heat]
    try:
        a["plane"] = fit_plane(
            [p["n_rpa"] for p in pts], [p["n_pre"] for p in pts], [p["sc"] for p in pts]
        ).to_dict()
    except ValueError as exc:
        a["plane"] = {"error": str(exc)}
    if laws:
        a.update(_laws(heat, per_material, (n_rpa_all, n_pre_all)))
    else:
        prev = results.get("analysis") or {}
        a.update({k: prev[k] for k in LAW_KEYS if k in prev})
    # the choice on validation among the configurations at the full data
    full = [c for c in cells if c["n_rpa"] == n_rpa_all and c["n_pre"] in (0, n_pre_all)]
    confs: dict[str, list] = {}
    for c in full:
        confs.setdefault(f"{c['model']} {c['method']}{' + free labels' if c['free'] else ''}", []).append(c)
    if confs:
        best = max(confs, key=lambda k: np.mean([c["validation"]["median_sc"] for c in confs[k]]))
        a["chosen_on_validation"] = {
            "configuration": best,
            "validation_median_sc": float(np.mean([c["validation"]["median_sc"] for c in confs[best]])),
            "test_median_sc": float(np.mean([c["test"]["median_sc"] for c in confs[best]])),
            "candidates": {
                k: float(np.mean([c["validation"]["median_sc"] for c in v])) for k, v in confs.items()
            },
        }
    a["claims"] = _claims(a, cells, n_pre_all)
    return a


def _claims(a: dict[str, Any], cells, n_pre_all: int) -> list[dict[str, Any]]:
    out = []
    rc, pc = a["rpa_curves"], a["pre_curves"]

    def fit(c, key="fit_1msc"):
        f = c.get(key, {})
        return None if "error" in f else f

    # 1. straight lines on log-log axes
    lines = []
    for label, c in list(rc.items()) + [(f"{k} vs N_pre", v) for k, v in pc.items()]:
        f = fit(c)
        if f:
            lines.append((label, f))
    if lines:
        falls = [f["slope_ci"][1] < 0 for _, f in lines]
        bent = [f["straight"] is False for _, f in lines]
        testable = [f["straight"] is not None for _, f in lines]
        verdict = f"{sum(falls)}/{len(lines)} curves fall significantly; {sum(bent)} significantly curved"
        verdict += (
            ""
            if all(testable)
            else f" (curvature testable on {sum(testable)}: needs ≥ 5 points at ≥ 4 sizes)"
        )
        out.append({
            "claim": "the error falls as a straight line on log–log axes (in N_RPA and in N_pre)",
            "test": "per curve: slope's 95 % interval below 0; quadratic term in log N with a 95 % interval holding 0",
            "evidence": "; ".join(f"{lab}: slope {f['slope']:.2f} [{f['slope_ci'][0]:.2f}, {f['slope_ci'][1]:.2f}], "
                                  f"R² {f['r2']:.2f}" for lab, f in lines),
            "verdict": verdict,
        })  # fmt: skip
    # 2. similar slopes in N_RPA and N_pre, pre-training slightly flatter
    f_rpa, f_pre = fit(rc.get("OptiMate TL full", {})), fit(pc.get("OptiMate TL full", {}))
    if f_rpa and f_pre:
        from .laws import PowerLaw

        def law(f):
            return PowerLaw(
                f["slope"], tuple(f["slope_ci"]), f["intercept"], f["r2"], f["n_points"], f["n_sizes"]
            )

        d = slopes_differ(law(f_pre), law(f_rpa))
        out.append({
            "claim": "similar slopes for training (N_RPA) and pre-training (N_pre) size, pre-training slightly flatter",
            "test": "difference of the two slopes of log(1 − SC) (TL full) with a 95 % interval",
            "evidence": f"N_pre slope {f_pre['slope']:.2f} [{f_pre['slope_ci'][0]:.2f}, {f_pre['slope_ci'][1]:.2f}] vs N_RPA slope "
                        f"{f_rpa['slope']:.2f} [{f_rpa['slope_ci'][0]:.2f}, {f_rpa['slope_ci'][1]:.2f}]; difference {d['difference']:+.2f} "
                        f"[{d['lo']:+.2f}, {d['hi']:+.2f}]",
            "verdict": ("similar: supported (difference not significant); pre-training "
                        + ("flatter" if f_pre["slope"] > f_rpa["slope"] else "steeper, not flatter"))
                       if not d["differ"] else "not supported: the slopes differ",
        })  # fmt: skip
    # 3. full transfer beats head-only
    p = _paired(cells, {"model": "optimate", "method": "tl", "free": False, "n_pre": n_pre_all},
                {"model": "optimate", "method": "tl-head", "free": False, "n_pre": n_pre_all})  # fmt: skip
    if p["pairs"]:
        out.append({
            "claim": "full transfer (all weights retrained) beats regression-head-only transfer",
            "test": "test median SC, full − head-only, paired over N_RPA and seeds (N_pre = all)",
            "evidence": f"{p['mean_test_diff']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}], full better in {p['wins']}/{p['pairs']}; "
                        f"validation {p['mean_validation_diff']:+.3f}",
            "verdict": _verdict(p["mean_test_diff"] > 0 and (p["pairs"] < 2 or p["ci95"][0] > 0)) if p["mean_test_diff"] > 0 else "not supported",
            **p,
        })  # fmt: skip
    # 4. inter-property pretraining (free labels: PBE gaps, formation energies) helps or paralyses
    p = _paired(
        cells,
        {"model": "optimate", "method": "tl", "free": True},
        {"model": "optimate", "method": "tl", "free": False},
    )
    if p["pairs"]:
        dl = _paired(cells, {"model": "optimate", "method": "tl", "free": True, "n_pre": n_pre_all},
                     {"model": "optimate", "method": "dl", "free": False}, keys=("n_rpa", "seed"))  # fmt: skip
        out.append({
            "claim": "pre-training on a dissimilar property (free labels) helps only if related; it can paralyse the network",
            "test": "TL with − without the free-label stage (same N_pre, N_RPA, seed); paralysis = worse than direct learning",
            "evidence": f"with − without: {p['mean_test_diff']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}] ({p['wins']}/{p['pairs']} better); "
                        + (f"with free labels − DL: {dl['mean_test_diff']:+.3f} ({dl['wins']}/{dl['pairs']} better)" if dl["pairs"] else ""),
            "verdict": ("helps" if p["pairs"] > 1 and p["ci95"][0] > 0 else "hurts" if p["pairs"] > 1 and p["ci95"][1] < 0 else "no clear effect")
                       + ("; paralysis (worse than DL)" if dl.get("pairs") and dl["mean_test_diff"] < 0 else ""),
            **p,
        })  # fmt: skip
    # 5. transfer beats direct learning (most at small N)
    p = _paired(cells, {"model": "optimate", "method": "tl", "free": False, "n_pre": n_pre_all},
                {"model": "optimate", "method": "dl", "free": False}, keys=("n_rpa", "seed"))  # fmt: skip
    if p["pairs"]:
        out.append({
            "claim": "transfer from IPA beats direct learning on RPA (the ladder premise)",
            "test": "test median SC, TL full − DL, paired over N_RPA and seeds",
            "evidence": f"{p['mean_test_diff']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}], TL better in {p['wins']}/{p['pairs']}",
            "verdict": _verdict(p["mean_test_diff"] > 0 and (p["pairs"] < 2 or p["ci95"][0] > 0)) if p["mean_test_diff"] > 0 else "not supported",
            **p,
        })  # fmt: skip
    # 6. CGAT vs OptiMate at equal data
    for method in ("dl", "tl"):
        m = {"method": method, "free": False}
        if method == "tl":
            m["n_pre"] = n_pre_all
        p = _paired(cells, {"model": "cgat", **m}, {"model": "optimate", **m})
        if p["pairs"]:
            out.append({
                "claim": f"CGAT vs OptiMate at equal data ({method.upper()})",
                "test": "test median SC, CGAT − OptiMate, paired over N_RPA and seeds",
                "evidence": f"{p['mean_test_diff']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}], CGAT better in {p['wins']}/{p['pairs']}",
                "verdict": "CGAT better" if p["pairs"] > 1 and p["ci95"][0] > 0 else "OptiMate better" if p["pairs"] > 1 and p["ci95"][1] < 0 else "no clear difference",
                **p,
            })  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curve_axes(ax, curves: dict[str, Any], key: str, fit_key: str, xlabel: str, ylabel: str) -> None:
    for k, (label, c) in enumerate(curves.items()):
        color = f"C{k}"
        xs = np.array([r["n"] for r in c["table"]], float)
        ys = np.array(
            [(1 - r["test_median_sc"]) if key == "1msc" else r["test_median_mae"] for r in c["table"]]
        )
        ax.plot(xs, ys, "o", color=color, label=label)
        f = c.get(fit_key, {})
        if "slope" in f:
            xx = np.geomspace(xs.min(), xs.max(), 20)
            ax.plot(xx, np.exp(f["intercept"]) * xx ** f["slope"], "-", color=color, alpha=0.7,
                    label=f"  slope {f['slope']:.2f} [{f['slope_ci'][0]:.2f}, {f['slope_ci'][1]:.2f}]")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6)


def make_figures(out: Path, results: dict[str, Any]) -> list[str]:
    plt = _plt()
    a = results["analysis"]
    files = []
    for name, curves, xlabel in (("rpa_curves.png", a["rpa_curves"], "N_RPA (training RPA spectra)"),
                                 ("pre_curves.png", a["pre_curves"], f"N_pre (pre-training IPA spectra), N_RPA = {results['rpa_ref']}")):  # fmt: skip
        if not curves:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        _curve_axes(axes[0], curves, "1msc", "fit_1msc", xlabel, "1 − median SC (test)")
        _curve_axes(axes[1], curves, "mae", "fit_mae", xlabel, "median MAE (test)")
        fig.tight_layout()
        fig.savefig(out / name, dpi=DPI)
        plt.close(fig)
        files.append(name)
    heat = a.get("heatmap") or {}
    if heat:
        pres = sorted(heat, key=int)
        rpas = sorted({r for row in heat.values() for r in row}, key=int)
        m = np.array([[heat[p].get(r, np.nan) for r in rpas] for p in pres])
        fig, ax = plt.subplots(figsize=(1.2 * len(rpas) + 2.5, 0.8 * len(pres) + 1.8))
        im = ax.imshow(m, origin="lower", cmap="viridis", aspect="auto")
        for i in range(len(pres)):
            for k in range(len(rpas)):
                if np.isfinite(m[i, k]):
                    ax.text(k, i, f"{m[i, k]:.3f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(len(rpas)), rpas)
        ax.set_yticks(range(len(pres)), pres)
        ax.set_xlabel("N_RPA")
        ax.set_ylabel("N_pre")
        ax.set_title("median test SC, OptiMate TL full (mean over seeds)")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(out / "heatmap.png", dpi=DPI)
        plt.close(fig)
        files.append("heatmap.png")
    return files


# --------------------------------------------------------------------------------------------------
# the README
# --------------------------------------------------------------------------------------------------
def _fit_cell(f: dict[str, Any]) -> str:
    if not f or "error" in f:
        return "–"
    return f"{f['slope']:.2f} [{f['slope_ci'][0]:.2f}, {f['slope_ci'][1]:.2f}] (R² {f['r2']:.2f})"


def _curve_table(curves: dict[str, Any], sizes: list[int], prefix: str) -> list[str]:
    """Markdown rows: test median SC (mean ± std over seeds) per size and the two slopes of each curve."""
    lines = [
        "| curve | " + " | ".join(f"{prefix}{s}" for s in sizes) + " | slope of log(1 − SC) [95 %] | slope of log(MAE) [95 %] |",
        "|---|" + "---|" * len(sizes) + "---|---|",
    ]  # fmt: skip
    for label, c in curves.items():
        by = {r["n"]: r for r in c["table"]}
        vals = [
            f"{by[s]['test_median_sc']:.3f} ± {by[s]['test_median_sc_std']:.3f}" if s in by else ""
            for s in sizes
        ]
        lines.append(
            f"| {label} | "
            + " | ".join(vals)
            + f" | {_fit_cell(c.get('fit_1msc'))} | {_fit_cell(c.get('fit_mae'))} |"
        )
    return lines


def _command(o: dict[str, Any], out: str = "reports/scaling") -> str:
    """The command line that regenerates a report with options ``o`` in the folder ``out``."""
    if o["quick"]:
        return "optiladder study scaling --quick"
    join = ",".join
    cmd = (f"optiladder study scaling --out {out} --seeds {o['seeds']} --pre-sizes {join(map(str, o['pre_sizes']))} "
           f"--rpa-sizes {join(map(str, o['rpa_sizes']))} --rpa-ref {o['rpa_ref']} --max-epochs {o['max_epochs']} "
           f"--patience {o['patience']} --tl-epochs {o['tl_epochs']} --tl-patience {o['tl_patience']} "
           f"--free-limit {o['free_limit']} --free-epochs {o['free_epochs']} --ipa-source {o['ipa_source']}")  # fmt: skip
    flags = [f for f, on in (("--no-heatmap", not o["heatmap"]), ("--no-free", not o["free_labels"]),
                             ("--no-cgat", not o["cgat"])) if on]  # fmt: skip
    return " ".join([cmd, *flags, "--threads 1"])


def _shown(out: Path) -> str:
    """``out`` as a command run from the repository root would name it (a folder outside: its name)."""
    path = Path(out).resolve()
    for root in (Path(__file__).resolve().parents[3], Path.cwd().resolve()):
        try:
            return str(path.relative_to(root))
        except ValueError:
            continue
    return path.name


def _bt_text(bt: dict[str, Any]) -> str:
    mi = bt.get("measured_interval")
    return (
        f"refit on the {bt['fitted_on']} cell×seed points with {bt['rule']} (cells {', '.join(f'({r}, {p})' for r, p in bt['fitted_cells'])}; seeds {bt.get('seeds')}), "
        f"predicted {tuple(bt['target'])}: **{bt['predicted']:.3f}** (95 % interval {bt['predicted_interval'][0]:.3f}–"
        f"{bt['predicted_interval'][1]:.3f}, ±{bt['predicted_half_width']:.3f}); measured **{bt.get('measured', float('nan')):.3f}**"
        + (f" (seeds {', '.join(f'{v:.3f}' for v in bt['measured_seeds'])}; 95 % interval over seeds {mi[0]:.3f}–{mi[1]:.3f})"
           if mi else " (one seed: no interval)")
        + f". Measured inside the predicted interval: {bt.get('measured_in_predicted')}; predicted inside the measured "
        f"interval: {bt.get('predicted_in_measured')}; target (measured inside, no wider than ±0.03): "
        f"**{'met' if bt.get('passes') else 'not met'}**"
    )  # fmt: skip


def _backtest_lines(a: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """The backtest section: the law's design chosen on validation, then its backtests on test."""
    lines: list[str] = []
    ch = a.get("law_choice", {})
    names = {
        "below": "N_RPA, N_pre < all → full",
        "rpa-below": "N_RPA < all → full",
        "pre-below": "N_pre < all → full",
    }
    if "designs" in ch:
        lines += [
            "The law's design is chosen on the **validation** split (never on test): every form (`plane`: ln E = c + a·ln N_RPA "
            "+ b·ln N_pre; `floor`: E = E∞ + exp(c + a·ln N_RPA + b·ln N_pre); `floor-sum`: E = E∞ + A·N_RPA^a + B·N_pre^b; "
            "E = 1 − median SC), fitted on the overall median or per test cell size (combined through the per-material SC "
            "of the fitted cell with the most data, so that the test split's composition by cell size enters the "
            "law, whatever the pool's), is refitted on three subsets of the validation heat map and predicts the "
            "full data (predicted vs measured mean over seeds below); the design with the smallest largest |error| wins. "
            "Every fit weights each (N_RPA, N_pre) cell by the inverse seed-to-seed variance of its ln E (the seeds of a "
            "model trained on 25 materials scatter ~10× more than at the full data). On test, intervals: 200 refits on "
            "bootstrap resamples over seeds (all cells of a seed together; over cells with < 3 seeds) plus the seed-to-seed "
            "sd at the fitted cell with the most data, for the mean of as many seeds as were measured. Which data were "
            "refit, and the history of this backtest: `backtest.md`.",
            "",
            "| design (validation) | " + " | ".join(names.values()) + " | max abs error |",
            "|---|---|---|---|---|",
        ]
        for d in ch["designs"]:
            cells = []
            for k in names:
                f = d["folds"].get(k, {})
                cells.append(
                    f"{f['predicted']:.3f} vs {f['measured']:.3f}" if f.get("error") is not None else "–"
                )
            mae = d["max_abs_error"]
            lines.append(f"| {d['form']}{' by cell size' if d['by_size'] else ''} | " + " | ".join(cells)
                         + f" | {'–' if mae is None else f'{mae:.3f}'} |")  # fmt: skip
        c = ch["chosen"]
        lines += ["", f"Chosen on validation: **{c['form']}{' by cell size' if c['by_size'] else ''}**.", ""]
    elif ch:
        lines += [
            f"No design could be chosen on validation ({ch.get('error')}); the plane is backtested.",
            "",
        ]
    bt = a.get("backtest", {})
    if "predicted" in bt:
        lines.append(f"**Test, the issue's backtest** ({bt['description']}): " + _bt_text(bt) + ".")
    else:
        lines.append(f"Not possible on this grid: {bt.get('error', 'no heat map')}.")
    for name, f in a.get("backtest_folds", {}).items():
        if "predicted" in f:
            lines += ["", f"Test, {names.get(name, name)}: " + _bt_text(f) + "."]
    bp = a.get("backtest_plane", {})
    if "predicted" in bp:
        lines += ["", "For comparison, the first report's law (the plane on the overall median), same refit on test: "
                  + _bt_text(bp) + "."]  # fmt: skip
    law = a.get("law", {})
    if law.get("kind") == "law":
        lines += ["", f"`optiladder plan` spends by the chosen design fitted on all {law['n_points']} heat-map cell×seed points "
                  f"(test; seeds {law['seeds']}): {law['description']}; parameters {law['params'] if not law['reference'] else 'per cell size in results.json'}, "
                  f"seed-to-seed sd {law['noise_sd']:.3f}, {len(law['draws'])} bootstrap refits."]  # fmt: skip
    merged = results.get("merged_runs")
    if merged:
        lines += ["", "Heat-map seeds merged from separate runs (same pool, grid and settings; `scaling.merge_runs`): "
                  + "; ".join(f"{m['source']}: seeds {m['seeds']}, {m['added']} cells added, {m['duplicates']} duplicate cells "
                              f"(identical: {m['identical']})" for m in merged) + "."]  # fmt: skip
    return lines


def write_scaling_report(out: Path, results: dict[str, Any], laws: bool = True) -> Path:
    """Analyse ``results`` and write ``results.json``, ``cells.csv``, figures and ``README.md`` to ``out``
    (``laws=False``: a checkpoint within a seed, without refitting the laws: :func:`analyse`)."""
    import pandas as pd

    out = Path(out)
    pm = out / "per_material.json"
    results["analysis"] = analyse(results, json.loads(pm.read_text()) if pm.is_file() else None, laws)
    tmp = out / ".results.json.tmp"  # atomic: a run stopped mid-write keeps the last complete checkpoint
    tmp.write_text(json.dumps(results, indent=1, default=float) + "\n")
    tmp.replace(out / "results.json")
    rows = [{k: c[k] for k in ("model", "method", "free", "n_pre", "n_rpa", "seed", "seconds", "epochs")}
            | {"validation_median_sc": c["validation"]["median_sc"], "test_median_sc": c["test"]["median_sc"],
               "test_median_mae": c["test"]["median_mae"], "test_p10_sc": c["test"]["p10_sc"]}
            for c in results["cells"]]  # fmt: skip
    pd.DataFrame(rows).to_csv(out / "cells.csv", index=False, float_format="%.5f")
    figs = make_figures(out, results) if results["cells"] else []
    o, a, n = results["options"], results["analysis"], results["n"]
    seeds = results["seeds_done"]
    partial = results.get("progress") != "complete"
    lines = [
        "# Scaling study: how the RPA error falls with cheap (IPA) and costly (RPA) spectra",
        "",
        *(
            [
                ("**Main run partial**" if results.get("merged_runs") else "**Partial run**")
                + ": stopped (time limit) after the stage named below; every table, fit and claim uses only "
                "the models that finished, and a missing row or seed is missing, not zero"
                + (
                    " (the seeds of the runs merged into this report complete the curves: see the seeds per curve)."
                    if results.get("merged_runs")
                    else "."
                ),
                "",
            ]
            if partial
            else []
        ),
        f"{'Main run' if results.get('merged_runs') else 'Run'} {results.get('date', '?')}: **{'quick mode (CI smoke run, numbers meaningless); ' if o['quick'] else ''}"
        f"{seeds} of {o['seeds']} seed(s) completed** (progress: {results.get('progress', '?')}), {len(results['cells'])} trained models, {results.get('seconds', 0):.0f} s wall on one CPU thread. "
        f"Pool (train + none) {n['pool']}, IPA pretraining set {n['pretrain']} ({results['ipa_source']['source']} IPA), "
        f"validation {n['validation']}, test {n['test']}; cells per set {results['cells_by_set']}.",
        *(
            [
                "",
                "Seeds per curve, runs merged into this report included (`merged_runs` below): "
                + ", ".join(
                    f"{label} {k}"
                    for label, k in _seeds_per_curve(results["cells"], results["pre_sizes"][-1]).items()
                )
                + ".",
            ]
            if results.get("merged_runs")
            else []
        ),
        "",
        f"Grid: N_pre {results['pre_sizes']} × N_RPA {results['rpa_sizes']} (the last = all); "
        f"{'full heat map for OptiMate TL full; ' if o['heatmap'] else ''}head-only, free labels and CGAT along N_pre = all "
        f"(every N_RPA) and N_RPA = {results['rpa_ref']} (every N_pre); DL at every N_RPA. Epochs: from scratch ≤ {o['max_epochs']} "
        f"(patience {o['patience']}), fine-tuning ≤ {o['tl_epochs']} (patience {o['tl_patience']}); free labels {o['free_limit']} structures × "
        f"{o['free_epochs']} epochs. Early stopping on validation; every number below is on the **test** split "
        f"(median SC[RPA_ML; RPA_DFT], median MAE), mean ± std over seeds. Regenerate: `{_command(o, _shown(out))}`"
        + (
            " (the main run only, on the records present when it runs; the merged seeds came from the runs in "
            "`merged_runs`, on the materials of `training_ids.json`)."
            if results.get("merged_runs")
            else "."
        ),
        "",
        "## Learning curves against N_RPA (N_pre = all)",
        "",
        *_curve_table(a["rpa_curves"], results["rpa_sizes"], "N="),
        "",
        f"## Learning curves against N_pre (N_RPA = {results['rpa_ref']})",
        "",
        *_curve_table(a["pre_curves"], results["pre_sizes"], "N_pre="),
    ]
    lines += ["", "## Test median SC by cell size (N_RPA = all, N_pre = all)", "", "| curve | " + " | ".join(
        f"{k} atoms (n={v})" for k, v in results["cells_by_set"]["test"].items()) + " |",
        "|---|" + "---|" * len(results["cells_by_set"]["test"]) + ""]  # fmt: skip
    for label, c in a["rpa_curves"].items():
        last = c["table"][-1]
        lines.append(f"| {label} | " + " | ".join(
            f"{last['test_by_cell_size'].get(int(k), float('nan')):.3f}" for k in results["cells_by_set"]["test"]) + " |")  # fmt: skip
    if a.get("heatmap"):
        lines += ["", "## Heat map: OptiMate TL full, test median SC (mean over seeds)", "",
                  "| N_pre \\ N_RPA | " + " | ".join(str(s) for s in results["rpa_sizes"]) + " |",
                  "|---|" + "---|" * len(results["rpa_sizes"])]  # fmt: skip
        for p in sorted(a["heatmap"], key=int):
            row = a["heatmap"][p]
            lines.append(
                f"| {p} | "
                + " | ".join(f"{row[str(s)]:.3f}" if str(s) in row else "" for s in results["rpa_sizes"])
                + " |"
            )
    pl = a.get("plane", {})
    if "coef" in pl:
        lines += ["", f"Two-size law (all heat-map cells and seeds, {pl['n_points']} points): log(1 − SC) = {pl['coef'][0]:.2f} "
                  f"{pl['coef'][1]:+.3f}·log N_RPA [{pl['a_ci'][0]:.3f}, {pl['a_ci'][1]:.3f}] {pl['coef'][2]:+.3f}·log N_pre "
                  f"[{pl['b_ci'][0]:.3f}, {pl['b_ci'][1]:.3f}], R² {pl['r2']:.2f}. `optiladder plan --budget H` spends core-hours by it."]  # fmt: skip
    else:
        lines += ["", f"Two-size law: not fitted ({pl.get('error', 'no heat map')})."]
    lines += ["", "## Backtest of the law", ""]
    lines += _backtest_lines(a, results)
    ch = a.get("chosen_on_validation")
    if ch:
        lines += ["", f"Chosen on validation at the full data: **{ch['configuration']}** (validation {ch['validation_median_sc']:.3f}, "
                  f"test {ch['test_median_sc']:.3f}); candidates (validation): " + ", ".join(f"{k} {v:.3f}" for k, v in ch["candidates"].items()) + "."]  # fmt: skip
    lines += [
        "",
        "## The paper's claims on our data (Hoffmann et al. 2023)",
        "",
        "| claim | test | evidence | verdict |",
        "|---|---|---|---|",
    ]
    for c in a["claims"]:
        lines.append(f"| {c['claim']} | {c['test']} | {c['evidence']} | **{c['verdict']}** |")
    if "free_labels" in results:
        lines += ["", f"Free-label stage: {results['free_labels']}."]
    lines += ["", "Figures: " + ", ".join(f"`{f}`" for f in figs) + " (log–log curves with fits as in the paper's Figs 3–4; "
              "heat map over N_pre × N_RPA as its Fig. 5). Files: `results.json` (every cell with validation and test summaries "
              "by cell size, the analysis), `cells.csv`, `training_ids.json` (the ids each model was trained on, pretraining included)."]  # fmt: skip
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


__all__ = ["PRE_CURVES", "RPA_CURVES", "analyse", "make_figures", "write_scaling_report"]
