"""Figures of the paper study (matplotlib, Agg backend, PNG at ~100 dpi).

* ``learning_curves.png``: median SC and median MSE on the test set vs number of RPA training spectra, DL and
  TL, ours (solid) and published (dashed), with the IPA baseline;
* ``example_spectra.png``: test materials at SC quantiles of the best TL model: RPA (DFT), IPA (DFT), TL, DL;
* ``sc_pairs.png``: 2-D histograms of per-material SC pairs: SC[TL; RPA] vs SC[IPA; RPA] and SC[TL] vs SC[DL];
* ``cell_size_boxplot.png``: SC per number of atoms in the test cell, for TL on all cells and on small cells;
* ``sc_parity.png``: predicted vs DFT SC[RPA; IPA] on the test set.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from . import published

log = logging.getLogger(__name__)
DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ok_runs(results: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in results["runs"] if r["kind"] == kind and r["status"] == "ok"]


def learning_curves(path: Path, results: dict[str, Any]) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colors = {"dl": "tab:blue", "tl": "tab:orange"}
    for ax, key, pub in (
        (axes[0], "median_sc", published.MEDIAN_SC),
        (axes[1], "median_mse", published.MEDIAN_MSE),
    ):
        for kind in ("dl", "tl"):
            runs = sorted(_ok_runs(results, kind), key=lambda r: r["n_train"])
            if runs:
                ax.plot(
                    [r["n_train"] for r in runs],
                    [r["test"][key] for r in runs],
                    "o-",
                    color=colors[kind],
                    label=f"{kind.upper()} (ours, GPAW)",
                )
            ax.plot(
                list(pub[kind]), list(pub[kind].values()), "s--", color=colors[kind], alpha=0.45,
                label=f"{kind.upper()} (published, QE+Yambo)",
            )  # fmt: skip
        ax.axhline(results["baseline"][key], color="gray", ls=":", label="IPA as RPA (ours)")
        ax.axhline(
            published.IPA_BASELINE[key], color="gray", ls="-.", alpha=0.5, label="IPA as RPA (published)"
        )
        ax.set_xscale("log")
        ax.set_xlabel("RPA training spectra")
        ax.set_ylabel("median SC[RPA_ML; RPA_DFT]" if key == "median_sc" else "median MSE")
        if key == "median_mse":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Learning curves on the test set ({results['test']} materials)")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _best(results: dict[str, Any], kind: str) -> str | None:
    runs = sorted(_ok_runs(results, kind), key=lambda r: r["n_train"])
    return runs[-1]["name"] if runs else None


def example_spectra(path: Path, results, scores, test, preds) -> None:
    plt = _plt()
    tl, dl = _best(results, "tl"), _best(results, "dl")
    if tl is None or tl not in preds:
        return
    sc = scores[scores.model == tl].set_index("mat_id")["sc"]
    qs = (0.1, 0.3, 0.5, 0.7, 0.9)
    order = np.argsort(sc.to_numpy())
    picks = [order[min(len(order) - 1, int(round(q * (len(order) - 1))))] for q in qs]
    fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks), 3.2), sharey=False)
    idx = {m: k for k, m in enumerate(test.ids)}
    for ax, q, p in zip(np.atleast_1d(axes), qs, picks, strict=True):
        mat = sc.index[p]
        k = idx[mat]
        ax.plot(test.grid, test.rpa[k], "k-", lw=1.5, label="RPA (DFT)")
        ax.plot(test.grid, test.ipa[k], color="gray", lw=1, ls=":", label="IPA (DFT)")
        ax.plot(test.grid, preds[tl][k], color="tab:orange", lw=1.2, label=f"TL ({tl})")
        if dl in preds:
            ax.plot(test.grid, preds[dl][k], color="tab:blue", lw=1, alpha=0.8, label=f"DL ({dl})")
        ax.set_title(
            f"{test.formulas[k]} ({test.nsites[k]} at.)\nq{int(q * 100)}: SC = {sc.iloc[p]:.3f}", fontsize=9
        )
        ax.set_xlim(0, 20)
        ax.set_xlabel("ħω (eV)")
    np.atleast_1d(axes)[0].set_ylabel("Im ε")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def sc_pairs(path: Path, results, scores) -> None:
    plt = _plt()
    tl, dl = _best(results, "tl"), _best(results, "dl")
    if tl is None:
        return
    piv = scores.pivot_table(index="mat_id", columns="model", values="sc")
    pairs = [("ipa_baseline", tl, "SC[IPA_DFT; RPA_DFT]", f"SC[{tl}; RPA_DFT]")]
    if dl is not None:
        pairs.append((dl, tl, f"SC[{dl}; RPA_DFT]", f"SC[{tl}; RPA_DFT]"))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.6 * len(pairs), 4.2))
    bins = np.linspace(0.0, 1.0, 21)
    for ax, (a, b, la, lb) in zip(np.atleast_1d(axes), pairs, strict=True):
        x, y = piv[a].clip(0, 1), piv[b].clip(0, 1)
        h = ax.hist2d(x, y, bins=[bins, bins], cmap="Blues", cmin=1)
        fig.colorbar(h[3], ax=ax, label="materials")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlabel(la)
        ax.set_ylabel(lb)
        ax.set_title(f"above diagonal: {np.mean(y > x):.0%} of {len(x)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def cell_size_boxplot(path: Path, results, scores) -> None:
    plt = _plt()
    names = [n for n in [_best(results, "tl")] + [r["name"] for r in _ok_runs(results, "tl_small")] if n]
    names = ["ipa_baseline", *names]
    sizes = sorted(scores.nsites.unique())
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(sizes) * len(names) / 2), 4))
    width = 0.8 / len(names)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, name in enumerate(names):
        sub = scores[scores.model == name]
        data = [sub[sub.nsites == s]["sc"].to_numpy() for s in sizes]
        pos = np.arange(len(sizes)) + (k - (len(names) - 1) / 2) * width
        bp = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, showfliers=False)
        for patch in bp["boxes"]:
            patch.set_facecolor(colors[k % len(colors)])
            patch.set_alpha(0.6)
        ax.plot([], [], "s", color=colors[k % len(colors)], label=name)
    counts = scores[scores.model == "ipa_baseline"].groupby("nsites").size()
    ax.set_xticks(np.arange(len(sizes)), [f"{s} ({counts.get(s, 0)})" for s in sizes])
    ax.set_xlabel("atoms in the test cell (number of test materials)")
    ax.set_ylabel("SC[prediction; RPA_DFT]")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def sc_parity(path: Path, sc_pred) -> None:
    if sc_pred is None or len(sc_pred) == 0:
        return
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    x, y = sc_pred["sc_dft"], sc_pred["sc_ml"]
    ax.scatter(x, y, s=14, alpha=0.8)
    lo, hi = float(min(x.min(), y.min())) - 0.02, float(max(x.max(), y.max())) + 0.02
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("SC[RPA_DFT; IPA_DFT]")
    ax.set_ylabel("predicted")
    mae = float(np.mean(np.abs(x - y)))
    ax.set_title(f"SC predictor, test set: MAE {mae:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def make_figures(out: Path, results, scores, test, preds, sc_pred) -> list[Path]:
    """Write every figure into ``out``; returns the paths written."""
    out = Path(out)
    jobs = [
        ("learning_curves.png", lambda p: learning_curves(p, results)),
        ("example_spectra.png", lambda p: example_spectra(p, results, scores, test, preds)),
        ("sc_pairs.png", lambda p: sc_pairs(p, results, scores)),
        ("cell_size_boxplot.png", lambda p: cell_size_boxplot(p, results, scores)),
        ("sc_parity.png", lambda p: sc_parity(p, sc_pred)),
    ]
    written = []
    for name, fn in jobs:
        fn(out / name)
        if (out / name).exists():
            written.append(out / name)
    return written
