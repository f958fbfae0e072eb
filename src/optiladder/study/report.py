"""``README.md`` of the paper study: our numbers next to the published ones, with the caveats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..targets import DEFAULT_GRID
from . import published


def _f(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _v(run: dict[str, Any] | None, key: str, digits: int = 3) -> str:
    """A run's test metric, with its [min–max] over seeds when there are several."""
    if not run:
        return "–"
    val = _f(run["test"].get(key), digits)
    spread = run.get("test_spread", {}).get(key)
    return f"{val} ({spread[0]:.{digits}f}–{spread[1]:.{digits}f})" if spread else val


def _run(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((r for r in results["runs"] if r["name"] == name), None)


def _resolve(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    r = _run(results, name)
    while r is not None and r["status"] == "same" and r.get("same_as"):
        r = _run(results, r["same_as"])
    return r if r is not None and r["status"] == "ok" else None


def write_readme(out: str | Path, results: dict[str, Any]) -> Path:
    """Write ``out/README.md`` from the study results."""
    out = Path(out)
    ds = results["dataset"]
    opt = results["options"]
    L: list[str] = []
    a = L.append
    a("# The OptiMate study on the optiladder dataset")
    a("")
    a(
        f"Run {results['date']} on {ds['n_records']} records "
        f"({', '.join(f'{k} {v}' for k, v in ds['splits'].items())}; cells of "
        f"{', '.join(f'{k} atoms: {v}' for k, v in ds['nsites'].items())}). Training pool = train + none "
        f"({results['pool']} materials); early stopping on the validation split ({results['validation']}); "
        f"every number below is a median over the **test split ({results['test']} materials)**."
    )
    a("")
    a(
        "**Our spectra are GPAW ("
        + ", ".join(ds["protocols"])
        + "), not the paper's Quantum ESPRESSO + Yambo**, "
        "and our dataset is far smaller than the paper's 4,610 / 603 / 639 materials, so the published numbers "
        f"(from {published.CITATION}; SC read off their Fig. 3, ±0.005) are a reference, not a target. "
        f"Same split ids, same metrics (eqs. 6–8 on {DEFAULT_GRID.start:g}–{DEFAULT_GRID.stop:g} eV, {DEFAULT_GRID.n} points), same network."
    )
    a("")
    seeds = opt.get("seeds", 1)
    a(
        "Regenerate: `optiladder study paper --out reports/paper"
        + (f" --seeds {seeds}" if seeds > 1 else "")
        + "` (options: `optiladder study paper --help`)."
    )
    a("")
    # ---- learning curves
    a("## Direct (DL) vs transfer learning (TL) from the IPA model")
    a("")
    a(
        "| RPA training spectra | DL SC (ours) | DL SC (paper) | TL SC (ours) | TL SC (paper) | DL MSE (ours) | DL MSE (paper) | TL MSE (ours) | TL MSE (paper) |"
    )
    a("|---|---|---|---|---|---|---|---|---|")
    sizes = [s for s in opt["sizes"]] + ["all"]
    for s in sizes:
        dl, tl = _resolve(results, f"dl-{s}"), _resolve(results, f"tl-{s}")
        raw = _run(results, f"dl-{s}")
        pub_size = 4610 if s == "all" else s
        if raw is not None and raw["status"] == "skipped":
            label = f"{s} — skipped ({raw['note']})"
        elif s == "all":
            label = f"all ({dl['n_train'] if dl else '?'}; paper 4,610)"
        else:
            label = str(s)
        a(
            f"| {label} | {_v(dl, 'median_sc')} | {_f(published.MEDIAN_SC['dl'].get(pub_size))} "
            f"| {_v(tl, 'median_sc')} | {_f(published.MEDIAN_SC['tl'].get(pub_size))} "
            f"| {_v(dl, 'median_mse')} | {_f(published.MEDIAN_MSE['dl'].get(pub_size))} "
            f"| {_v(tl, 'median_mse')} | {_f(published.MEDIAN_MSE['tl'].get(pub_size))} |"
        )
    b = results["baseline"]
    a(
        f"| IPA spectrum as RPA prediction (baseline) | {_f(b['median_sc'])} | {_f(published.IPA_BASELINE['median_sc'])} "
        f"| | | {_f(b['median_mse'])} | {_f(published.IPA_BASELINE['median_mse'])} | | |"
    )
    a("")
    ipa = _run(results, "ipa")
    if ipa and ipa["status"] == "ok":
        a(
            f"IPA model (pretraining, {ipa['n_train']} IPA spectra): median SC[IPA_ML; IPA_DFT] = "
            f"{_v(ipa, 'median_sc')}, median MSE {_v(ipa, 'median_mse')}."
        )
        a("")
    a("![learning curves](learning_curves.png)")
    a("")
    a("![example spectra](example_spectra.png)")
    a("")
    a("![SC pairs](sc_pairs.png)")
    a("")
    # ---- small cells
    a("## TL on small cells only")
    a("")
    a(
        "| cells used for training | materials (ours) | median SC (ours) | materials (paper) | median SC (paper) |"
    )
    a("|---|---|---|---|---|")
    for k in opt["max_atoms"]:
        r = _run(results, f"tl-le{k}")
        rr = _resolve(results, f"tl-le{k}")
        pub = published.SMALL_CELLS.get(k, (None, None))
        note = ""
        if r is not None and r["status"] == "skipped":
            note = f" — skipped ({r['note']})"
        elif r is not None and r["status"] == "same":
            note = f" ({r['note']})"
        n = len(r.get("ids", [])) if r else 0
        n = rr["n_train"] if rr else n
        a(
            f"| ≤ {k} atoms{note} | {n} | {_v(rr, 'median_sc')} "
            f"| ~{pub[0] if pub[0] else '–'} | {_f(pub[1])} |"
        )
    a("")
    a(
        "Median SC per test cell size (paper: the ≤ 4-atom model predicts every cell size equally well, ≈ 0.86–0.89):"
    )
    a("")
    names = ["ipa_baseline"] + [
        r["name"] for r in results["runs"] if r["kind"] in ("tl", "tl_small") and r["status"] == "ok"
    ]
    by = {"ipa_baseline": results["baseline_by_cell_size"]}
    by.update({r["name"]: r.get("by_cell_size", []) for r in results["runs"] if r["status"] == "ok"})
    sizes_seen = sorted({row["nsites"] for rows in by.values() for row in rows})
    a("| model | " + " | ".join(f"{s} atoms" for s in sizes_seen) + " |")
    a("|---|" + "---|" * len(sizes_seen))
    for name in names:
        rows = {row["nsites"]: row for row in by.get(name, [])}
        cells = [f"{_f(rows[s]['median_sc'])} (n={rows[s]['n']})" if s in rows else "–" for s in sizes_seen]
        a(f"| {name} | " + " | ".join(cells) + " |")
    a("")
    a("![SC per cell size](cell_size_boxplot.png)")
    a("")
    # ---- SC predictor
    a("## SC[RPA; IPA] predictor (same body, 1-value head)")
    a("")
    sc = _run(results, "sc")
    if sc and sc["status"] == "ok":
        t = sc["test"]
        a("| | MAE | median absolute error |")
        a("|---|---|---|")
        a(f"| ours | {_v(sc, 'mae')} | {_v(sc, 'median_abs_error')} |")
        a(
            f"| predicting the training mean (ours) | {_f(t.get('mean_baseline_mae'))} | {_f(t.get('mean_baseline_median_abs_error'))} |"
        )
        a(
            f"| paper | {_f(published.SC_PREDICTOR['mae'])} | {_f(published.SC_PREDICTOR['median_abs_error'])} |"
        )
        a("")
        a("![SC parity](sc_parity.png)")
    a("")
    # ---- settings
    a("## Runs and settings")
    a("")
    a("| run | status | training materials | best epoch / run | stop | seconds |")
    a("|---|---|---|---|---|---|")
    for r in results["runs"]:
        fit = r.get("fit", {})
        a(
            f"| {r['name']} | {r['status']}{' — ' + r['note'] if r['note'] else ''} | {r.get('n_train', '–')} "
            f"| {fit.get('best_epoch', '–')} / {fit.get('epochs_run', '–')} | {fit.get('stopped', '–')} "
            f"| {fit.get('seconds', '–')} |"
        )
    a("")
    a(
        f"Adam + L1 loss; from scratch (IPA, DL, SC): lr {opt['lr']:g}, weight decay {opt['weight_decay']:g}; "
        f"TL ({opt['tl_trainable']} weights from the IPA model): lr {opt['tl_lr']:g}, weight decay "
        f"{opt['tl_weight_decay']:g}; batch {opt['batch_size']}, ≤ {opt['max_epochs']} epochs, patience "
        f"{opt['patience']}, best validation checkpoint; seed {opt['seed']}"
        + (
            f" + {opt.get('seeds', 1) - 1} more (mean over {opt.get('seeds', 1)} seeds, [min–max] in brackets; per-material files and figures: first seed)"
            if opt.get("seeds", 1) > 1
            else ""
        )
        + f"; study budget "
        f"{opt['budget_minutes']:g} min on {results['threads']} CPU thread(s); total {results['seconds_total']:.0f} s. "
        f"The paper fine-tunes with lr {published.TRANSFER_SETTINGS['lr']:g}, batch "
        f"{published.TRANSFER_SETTINGS['batch_size']:g}, ≤ {published.TRANSFER_SETTINGS['max_epochs']:g} epochs on a GPU; "
        "with a few hundred spectra that is < 5 optimiser steps per epoch, so we use a larger learning rate and "
        "smaller batches (`optiladder tune` searches them)."
    )
    a("")
    a(
        "Files: `results.json` (everything above), `test_scores.csv` (per-material SC/MSE/MAE of every model), "
        "`sc_predictor_test.csv`, `training_ids.json` (the ids each model was trained on: none is in the "
        "validation or test list — checked at training time and by `tests/study`). Models (model folders) go to `models/` "
        "(not in git)."
    )
    path = out / "README.md"
    path.write_text("\n".join(L) + "\n")
    return path
