"""README.md of the levers study (:mod:`optiladder.study.levers`) from its ``results.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pm(d: dict[str, Any], key: str, digits: int = 3) -> str:
    return f"{d[key]:.{digits}f} ± {d.get(key + '_std', 0.0):.{digits}f}"


def _ms(values: list[float], digits: int = 3) -> str:
    v = np.asarray(values, float)
    return f"{np.nanmean(v):.{digits}f} ± {np.nanstd(v):.{digits}f}"


def _novel_bond_rows(ens: list[dict[str, Any]], col) -> list[str]:
    """Warning-table rows of the novel-bond part of the rule (results.json written before it have none)."""
    if not all("without_novel_bond_rule" in e["warnings_validation"] for e in ens):
        return []
    w = ["without_novel_bond_rule"]
    return [
        f"| crystals with a bond no pool crystal has | {ens[0]['warnings_validation']['novel_bonds']} | "
        f"{ens[0]['warnings_test']['novel_bonds']} |",
        f"| without the novel-bond rule: flagged fraction | {_ms(col(['warnings_validation', *w, 'flagged_fraction']))} | "
        f"{_ms(col(['warnings_test', *w, 'flagged_fraction']))} |",
        f"| without the novel-bond rule: misses caught / all | {sum(col(['warnings_validation', *w, 'misses_caught']))} / "
        f"{sum(col(['warnings_validation', 'misses']))} | {sum(col(['warnings_test', *w, 'misses_caught']))} / "
        f"{sum(col(['warnings_test', 'misses']))} |",
    ]  # fmt: skip


def _cross_rows(r: dict[str, Any]) -> list[str]:
    """The ensemble across the seeds' IPA parents beside seed 0's one-parent ensemble (runs of ≥ 2 seeds)."""
    c, one = r.get("ensemble_cross_parents"), (r.get("ensemble") or [{}])[0]
    if not c or not one:
        return []

    def cells(e):
        return ", ".join(f"{k} at. {v:.3f}" for k, v in e["by_cell_size"].items())

    w1, wc = one["warnings_test"], c["warnings_test"]
    return [
        f"### Ensemble across IPA parents (members (seed, member): {c['members']}) against seed {one['seed']}'s one-parent ensemble",
        "",
        f"| | one parent (seed {one['seed']}) | across parents |",
        "|---|---|---|",
        f"| validation median SC | {one['ensemble_validation']['median_sc']:.3f} | {c['ensemble_validation']['median_sc']:.3f} |",
        f"| test median SC | {one['ensemble_test']['median_sc']:.3f} | {c['ensemble_test']['median_sc']:.3f} |",
        f"| test by cell size | {cells(one['ensemble_test'])} | {cells(c['ensemble_test'])} |",
        f"| Spearman test | {one['spearman_test']:.3f} | {c['spearman_test']:.3f} |",
        f"| coverage 80 % test | {one['coverage80_test']:.3f} | {c['coverage80_test']:.3f} |",
        f"| flagged test / misses caught | {w1['flagged_fraction']:.3f} / {w1['misses_caught']} of {w1['misses']} | "
        f"{wc['flagged_fraction']:.3f} / {wc['misses_caught']} of {wc['misses']} |",
        "",
        f"Shipped (chosen on validation): **{r['ensemble_choice']['shipped']}** ({r['ensemble_choice']['reason']}).",
        "",
    ]  # fmt: skip


def _variant_legend(name: str) -> str:
    """One variant's levers in words, e.g. ``free+foundation+cgat = free labels, chgnet-0.3.0, tuned, CGAT``."""
    from .levers import VARIANTS

    v = VARIANTS.get(name)
    if v is None:  # a variant of an older run, no longer defined
        return f"{name} = (not defined in this version)"
    found = " ‖ ".join(v.found) or "one-hot only"
    tl = {"lpft": "lpft (head alone first, then all weights tuned)"}.get(v.tl, v.tl)
    return f"{name} = {'free labels' if v.free else 'no free labels'}, {found}, {tl}, " + (
        "CGAT" if v.arch == "cgat" else "OptiMate"
    )


def write_levers_readme(out: Path, r: dict[str, Any]) -> Path:
    """Write ``out/README.md``: ablation table, cell sizes, ensemble/uncertainty, onset and SC predictor."""
    o = r["options"]
    lines = [
        "# Levers study: beating faithful OptiMate on few spectra, larger cells, and when not to trust a prediction",
        "",
        f"Run {r['date']}: pool (train + none) {r['n']['pool']}, validation {r['n']['validation']}, test {r['n']['test']} "
        f"materials; cells per set: {r['cells']}. {o['seeds']} seed(s) (mean ± std over seeds of each median); "
        f"{'**quick mode** (CI smoke run, numbers meaningless); ' if o['quick'] else ''}total {r['seconds']:.0f} s on one CPU thread.",
        "",
        "Every number is a median SC[RPA_ML; RPA_DFT] over the named split; the winner is chosen on **validation** only, "
        "test is reported. Regenerate: `optiladder study levers --out reports/levers"
        + "".join(f" --extra {e}" for e in o["extra"])
        + (
            " --quick"
            if o["quick"]
            else f" --seeds {o['seeds']} --sizes {','.join(str(s) for s in o['sizes'])}"
            f" --variants {','.join(o['variants'])} --ensemble {o['ensemble']} --sc-members {o.get('sc_members', 1)}"
            f" --free-epochs {o['free_epochs']}" + (f" --threads {o['threads']}" if o.get("threads") else "")
        )
        + "`.",
        "",
        f"Baseline (faithful OptiMate, the best of its fine-tuning settings on the validation median of the first "
        f"seed, the one seed all of them ran: the paper's, our tuned ones, head first (LP-FT) where run): "
        f"**{r['baseline']}**. Winner on validation: **{r['winner']}**.",
        "",
        "## Ablation (single models; each lever on/off against the faithful baseline)",
        "",
        "| variant | RPA spectra | seeds | validation | test | test Δ vs baseline | test p10 | test by cell size | s / run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    table = r["table"]
    for key, row in table.items():
        v, size = key.split("|")
        base = table.get(f"{r['baseline']}|{size}")
        delta = row["test"]["median_sc"] - base["test"]["median_sc"] if base else float("nan")
        cells = ", ".join(f"{c} at.: {s:.3f}" for c, s in row["test"]["by_cell_size"].items())
        lines.append(
            f"| {v} | {size} | {len(row['test']['median_sc_seeds'])} | {_pm(row['validation'], 'median_sc')} | {_pm(row['test'], 'median_sc')} | "
            f"{delta:+.3f} | {row['test']['p10_sc']:.3f} | {cells} | {np.mean(row['seconds']):.0f} |"
        )
    lines += ["", "Variants (free-label pretraining; foundation node features; RPA fine-tuning settings; network): "
              + "; ".join(_variant_legend(v) for v in o["variants"]) + "."]  # fmt: skip
    if r.get("skipped_sizes"):
        lines += ["", f"Sizes skipped (not fewer than the pool): {r['skipped_sizes']}."]
    if "free_labels" in r:
        lines += ["", f"Free labels: {r['free_labels']}"]
    ens = r.get("ensemble") or []
    if ens:

        def col(path):
            vals = []
            for e in ens:
                x = e
                for p in path:  # a key an older run did not write reads as NaN
                    x = x.get(p, float("nan")) if isinstance(x, dict) else float("nan")
                vals.append(x)
            return vals

        lines += [
            "",
            f"## Ensemble of {ens[0]['members']} and uncertainty ({r['winner']}, all pool spectra)",
            "",
            "| | validation | test |",
            "|---|---|---|",
            f"| ensemble mean: median SC | {_ms(col(['ensemble_validation', 'median_sc']))} | {_ms(col(['ensemble_test', 'median_sc']))} |",
            f"| single member: median SC | | {_ms(col(['single_test_median_sc']))} |",
            f"| Spearman(expected SC, actual SC) | {_ms(col(['spearman_validation']))} | {_ms(col(['spearman_test']))} |",
            f"| Spearman(member agreement only, actual) | | {_ms(col(['spearman_agreement_only_test']))} |",
            f"| coverage of the stated 80 % interval | (fitted here) | {_ms(col(['coverage80_test']))} |",
            f"| warning: flagged fraction | {_ms(col(['warnings_validation', 'flagged_fraction']))} | {_ms(col(['warnings_test', 'flagged_fraction']))} |",
            f"| misses (SC < 0.4) caught / all | {sum(col(['warnings_validation', 'misses_caught']))} / {sum(col(['warnings_validation', 'misses']))} | "
            f"{sum(col(['warnings_test', 'misses_caught']))} / {sum(col(['warnings_test', 'misses']))} |",
            *_novel_bond_rows(ens, col),
            "",
            "Ensemble median SC on test by cell size (seed 0): "
            + ", ".join(f"{c} atoms {s:.3f}" for c, s in ens[0]["ensemble_test"]["by_cell_size"].items()),
            "",
            f"Calibration (seed {ens[0]['seed']}'s one-parent ensemble, fitted on validation; the table above and "
            f"`uncertainty_test.csv` are of the one-parent ensembles): {ens[0]['calibration']}; warning rule: {ens[0]['warning_rule']}.",
            "",
            *_cross_rows(r),
            "## Onset rule (predicted direct gap, our records' `gap_direct`, 0.5 eV allowance)",
            "",
            "| | without | with rule |",
            "|---|---|---|",
            f"| validation median SC | {_ms([e['onset']['validation_median_sc'][0] for e in ens])} | {_ms([e['onset']['validation_median_sc'][1] for e in ens])} |",
            f"| test median SC | {_ms([e['onset']['test_median_sc'][0] for e in ens])} | {_ms([e['onset']['test_median_sc'][1] for e in ens])} |",
            f"| test median SC, rule with the true gap | | {_ms(col(['onset', 'test_median_sc_true_gap']))} |",
            f"| gap model MAE on validation (eV) | {_ms(col(['onset', 'gap_mae_validation']))} | |",
            "",
            "## SC[RPA; IPA] predictor",
            "",
            *_sc_rows(r, ens, col),
        ]
    lines += [
        "",
        "Files: `results.json` (everything above, per seed), `test_scores.csv` (per material, every variant and size, "
        "seed 0), `uncertainty_test.csv` (per test material: actual and expected SC, interval, latent distance, warning, "
        "gaps, SC[RPA; IPA] predictions; seed 0).",
    ]
    path = Path(out) / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _sc_rows(r: dict[str, Any], ens: list[dict[str, Any]], col: Any) -> list[str]:
    """The SC[RPA; IPA] predictors: the recipes of ``optiladder.study.sc`` trained for the ensemble that ships (runs
    since 2026-12-07), or the heads on each seed's IPA body (older runs), beside the SC of the predicted spectra."""
    spectra = (
        f"| SC of the predicted RPA (ensemble) and IPA spectra, per seed | {_ms(col(['sc_predictor', 'spectra_mae_validation']))} "
        f"| {_ms(col(['sc_predictor', 'spectra_mae_test']))} |"
    )
    sc = r.get("sc")
    if sc is None:
        return [
            "| | validation MAE | test MAE |",
            "|---|---|---|",
            f"| 1-value head on the IPA body | {_ms(col(['sc_predictor', 'head_mae_validation']))} | {_ms(col(['sc_predictor', 'head_mae_test']))} |",
            f"| mean of {ens[0]['sc_predictor'].get('members', 1)} heads on the IPA body (shipped when better on validation) | {_ms(col(['sc_predictor', 'heads_mae_validation']))} | {_ms(col(['sc_predictor', 'heads_mae_test']))} |",
            spectra,
            f"| predicting the pool mean | | {_ms(col(['sc_predictor', 'mean_baseline_mae_test']))} |",
        ]  # fmt: skip
    bc = sc.get("best_vs_cheapest_validation")
    rule = (
        f"the cheapest at prediction time ({bc['cheapest']}, no body of its own) unless the one with the lowest mean "
        f"validation MAE ({bc['best']}) is the lower in ≥ 95 % of paired bootstrap resamples (here "
        f"{100 * bc['p_better']:.1f} %)"
        if bc
        else "the recipe with the lower mean validation MAE over its seeds"
    )
    rows = [
        f"1-value networks for the ensemble that ships (`optiladder.study.sc`, report in `sc/README.md`); {rule} is "
        f"saved (its first seed's networks): **{sc['winner']}**. MAE of each seed:",
        "",
        "| | networks | validation MAE | test MAE |",
        "|---|---|---|---|",
    ]
    for name, row in sc["recipes"].items():
        what = {
            "ipa-heads": "heads on the IPA body",
            "member-heads": "one head on each ensemble member",
            "member-heads-frozen": "one head on each ensemble member's frozen body",
        }.get(name, name)
        rows.append(
            f"| {name}: mean of {row['networks']} {what} (head {'×'.join(map(str, row['head_hidden']))}) "
            f"| {row['networks']} | {', '.join(f'{x:.4f}' for x in row['validation'].get('mae_seeds', [row['validation']['mae']]))} "
            f"| {', '.join(f'{x:.4f}' for x in row['test'].get('mae_seeds', [row['test']['mae']]))} |"
        )
    rows += [
        spectra.replace(" |", " | |", 1),
        f"| predicting the pool mean | | {sc['mean_baseline_mae']['validation']:.4f} | {sc['mean_baseline_mae']['test']:.4f} |",
    ]
    return rows


def merge_results(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``results`` dict from levers runs of the same options on different seeds (e.g. run in parallel
    processes): per variant and size the seeds' medians are pooled (mean ± std over seeds), ensemble rows
    concatenated; the baseline and winner are re-chosen on the pooled validation medians (the baseline among
    the faithful variants present in every run)."""
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[0])
    table: dict[str, Any] = {}
    for key in runs[0]["table"]:
        rows = [r["table"][key] for r in runs if key in r["table"]]
        merged: dict[str, Any] = {"seconds": [s for r in rows for s in r["seconds"]]}
        for split in ("validation", "test"):
            parts = [r[split] for r in rows]
            seeds = [v for p in parts for v in p["median_sc_seeds"]]
            m: dict[str, Any] = {"median_sc": float(np.mean(seeds)), "median_sc_std": float(np.std(seeds))}
            for k in ("mean_sc", "p10_sc", "median_mse"):
                vals = [p[k] for p in parts]
                m[k], m[f"{k}_std"] = float(np.mean(vals)), float(np.std(vals))
            cells = sorted({c for p in parts for c in p["by_cell_size"]}, key=int)
            m["by_cell_size"] = {
                c: float(np.mean([p["by_cell_size"][c] for p in parts if c in p["by_cell_size"]]))
                for c in cells
            }
            m["median_sc_seeds"], m["n"] = seeds, parts[0]["n"]
            merged[split] = m
        table[key] = merged
    out["table"] = table
    all_keys = [k for k in table if k.endswith("|all")]
    faithful = [k for k in all_keys if k.startswith("faithful")]
    if faithful:
        out["baseline"] = max(faithful, key=lambda k: table[k]["validation"]["median_sc"]).split("|")[0]
    out["winner"] = max(all_keys, key=lambda k: table[k]["validation"]["median_sc"]).split("|")[0]
    # ensemble rows only from runs whose own winner is the pooled winner (their ensembles are of that variant)
    out["ensemble"] = [e for r in runs if r["winner"] == out["winner"] for e in r.get("ensemble") or []]
    out["merged_seeds"] = [r["options"]["seed"] for r in runs]
    out["options"] = {**runs[0]["options"], "seeds": sum(r["options"]["seeds"] for r in runs)}
    out["seconds"] = sum(r["seconds"] for r in runs)
    return out
