"""The ``--scissor gw`` gap model, measured: the chosen model (features and ridge α chosen by leave-one-out on the
trainable G0W0 labels, :data:`~optiladder.wavefunction.gapmodel.CANDIDATES`) beside the first, gap-only model
(:data:`~optiladder.wavefunction.gapmodel.BASELINE_CANDIDATES`, the baseline) and the mean correction, in one run:
nested leave-one-out on the trainable labels (every choice redone without the left-out label), then the test-split
labels (never trained on, never used for a choice) scored per crystal; and the onset estimate of the direct gap
(ONSET_* constants of optiladder.wavefunction.gapmodel) on the train/none spectra records.

    PYTHONPATH=src python reports/wavefunction/gap_model.py      # -> reports/wavefunction/gap_model.json
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from optiladder.data.splits import held_out
from optiladder.data.store import Store
from optiladder.engine.records import record_spectra
from optiladder.wavefunction.gapmodel import (
    BASELINE_CANDIDATES,
    ONSET_FRACTION,
    ONSET_OFFSET,
    RIDGE_ALPHA,
    GapModel,
    direct_correction,
    label_eps_inf,
    load_labels,
    record_elements,
    trainable,
)

HERE = Path(__file__).resolve().parent


def onset_calibration(fractions=(0.05, 0.1, 0.2)) -> dict:
    """(onset at each fraction of the maximum) − gap_direct on the train/none gpaw-pbe-v1 RPA traces."""
    errs: dict[float, list[float]] = {f: [] for f in fractions}
    n = 0
    for rec in Store().iter_records():
        if held_out(rec["mat_id"], rec.get("split")) or "rpa" not in record_spectra(rec):
            continue
        sp = record_spectra(rec)["rpa"]
        w, e = sp.omega, sp.trace_im()
        for f in fractions:
            errs[f].append(float(w[np.argmax(e >= f * e.max())] - rec["gap_direct"]))
        n += 1
    out = {"n_records": n, "fraction": ONSET_FRACTION, "offset_eV": ONSET_OFFSET}
    for f, v in errs.items():
        v = np.array(v)
        out[str(f)] = {
            "median_eV": round(float(np.median(v)), 3),
            "mean_abs_after_median_shift_eV": round(float(np.mean(np.abs(v - np.median(v)))), 3),
        }
    return out


def _models(train: dict, eps: dict) -> dict[str, GapModel]:
    """The chosen model and the baseline, fitted on ``train``."""
    return {
        "model": GapModel.fit(train, eps_inf=eps),
        "baseline": GapModel.fit(train, candidates=BASELINE_CANDIDATES, alphas=(RIDGE_ALPHA,), eps_inf=eps),
    }


def _predict(model: GapModel, rec: dict, eps: dict):
    return model.predict(rec["gap_pbe_direct"], record_elements(rec), eps_inf=eps.get(rec["mat_id"]))


def main() -> dict:
    labels = load_labels()
    train = trainable(labels)
    eps = label_eps_inf(
        labels
    )  # RPA ε∞ of the dataset's spectra records (the test-split ones only to be scored)
    eps_train = {m: v for m, v in eps.items() if m in train}
    y = {m: direct_correction(r) for m, r in labels.items()}
    full = _models(train, eps_train)
    # nested leave-one-out: for each trainable label, both models (with their choices) fitted without it
    loo = {}
    for m in sorted(train):
        rest = {k: v for k, v in train.items() if k != m}
        sub = _models(rest, {k: v for k, v in eps_train.items() if k != m})
        row = {
            "formula": train[m]["formula"],
            "eps_inf": round(eps[m], 3) if m in eps else None,
            "computed": round(y[m], 3),
            "mean": round(float(np.mean([y[k] for k in rest])), 3),
        }
        for name, mod in sub.items():
            try:
                row[name] = round(_predict(mod, train[m], eps).delta, 3)
                row[f"{name}_choice"] = f"{'+'.join(mod.features)} a={mod.alpha:g}"
            except ValueError:  # no ε∞ for this label: the ε∞ model cannot score it
                row[name] = None
        loo[m] = row
    held = {}
    mean_all = float(np.mean([y[m] for m in train]))
    for m in sorted(set(labels) - set(train)):
        r = labels[m]
        row = {
            "formula": r["formula"],
            "split": r["split"],
            "gap_pbe_direct": r["gap_pbe_direct"],
            "eps_inf": round(eps[m], 3) if m in eps else None,
            "computed": round(y[m], 3),
            "mean": round(mean_all, 3),
        }
        for name, mod in full.items():
            c = _predict(mod, r, eps)
            row[name] = round(c.delta, 3)
            row[f"{name}_sigma"] = round(c.sigma, 3)
            row[f"{name}_warnings"] = c.warnings
        held[m] = row

    def mae(rows, k, ids=None):
        vals = [
            abs(v[k] - v["computed"])
            for m, v in rows.items()
            if (ids is None or m in ids) and v[k] is not None
        ]
        return round(float(np.mean(vals)), 3) if vals else None

    both = sorted(m for m, v in loo.items() if v["model"] is not None)  # labels every predictor can score
    rare = {m for m, v in loo.items() if v["formula"] in ("He", "Ne")}
    res = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": {m: labels[m]["protocol"]["name"] for m in sorted(labels)},
        "model": {
            "features": list(full["model"].features),
            "alpha": full["model"].alpha,
            "n_train": len(full["model"].mat_ids),
            "loo_rmse": round(full["model"].loo_rmse, 3),
        },
        "baseline": {
            "features": list(full["baseline"].features),
            "alpha": full["baseline"].alpha,
            "n_train": len(full["baseline"].mat_ids),
            "loo_rmse": round(full["baseline"].loo_rmse, 3),
        },
        "n_trainable": len(train),
        "no_eps_inf": sorted(set(train) - set(eps_train)),
        "loo": loo,
        "nested_loo_mae": {
            "common": {k: mae(loo, k, both) for k in ("model", "baseline", "mean")},
            "common_without_rare_gases": {
                k: mae(loo, k, set(both) - rare) for k in ("model", "baseline", "mean")
            },
            "all_trainable": {k: mae(loo, k) for k in ("baseline", "mean")},
            "n_common": len(both),
        },
        "held_out": held,
        "held_out_mae": {k: mae(held, k) for k in ("model", "baseline", "mean")},
        "onset": onset_calibration(),
    }
    (HERE / "gap_model.json").write_text(json.dumps(res, indent=1) + "\n")
    for name in ("model", "baseline"):
        print(f"{name}: {res[name]}")
    print(f"nested LOO MAE {res['nested_loo_mae']}")
    print("| material | direct PBE gap | ε∞ | Δ computed | Δ model ± σ | Δ baseline ± σ | Δ mean |")
    print("|---|---|---|---|---|---|---|")
    for m, v in held.items():
        print(
            f"| {v['formula']} ({m}) | {v['gap_pbe_direct']:.2f} | {v['eps_inf']} | {v['computed']:.2f} | "
            f"{v['model']:.2f} ± {v['model_sigma']:.2f} | {v['baseline']:.2f} ± {v['baseline_sigma']:.2f} | "
            f"{v['mean']:.2f} |"
        )
    print(f"held-out MAE {res['held_out_mae']}")
    print(json.dumps(res["onset"]))
    return res


if __name__ == "__main__":
    main()
