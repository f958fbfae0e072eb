"""The ``--scissor gw`` gap model, measured: leave-one-out on the trainable G0W0 labels, the test-split labels
scored (never trained on), beside the mean-correction baseline; and the onset estimate of the direct gap
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
    ONSET_FRACTION,
    ONSET_OFFSET,
    GapModel,
    direct_correction,
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


def main() -> dict:
    labels = load_labels()
    train = trainable(labels)
    model = GapModel.fit(train)
    y = {m: direct_correction(r) for m, r in labels.items()}
    loo = {}
    for m in sorted(train):
        rest = {k: v for k, v in train.items() if k != m}
        sub = GapModel.fit(rest, candidates=[model.features])
        c = sub.predict(train[m]["gap_pbe_direct"], record_elements(train[m]))
        loo[m] = {
            "formula": train[m]["formula"],
            "computed": round(y[m], 3),
            "model": round(c.delta, 3),
            "mean": round(float(np.mean([y[k] for k in rest])), 3),
        }
    held = {}
    mean_all = float(np.mean([y[m] for m in train]))
    for m in sorted(set(labels) - set(train)):
        r = labels[m]
        c = model.predict(r["gap_pbe_direct"], record_elements(r))
        held[m] = {
            "formula": r["formula"],
            "split": r["split"],
            "gap_pbe_direct": r["gap_pbe_direct"],
            "computed": round(y[m], 3),
            "model": round(c.delta, 3),
            "sigma": round(c.sigma, 3),
            "mean": round(mean_all, 3),
            "warnings": c.warnings,
        }

    def mae(rows, k):
        return round(float(np.mean([abs(v[k] - v["computed"]) for v in rows.values()])), 3) if rows else None

    res = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": {m: labels[m]["protocol"]["name"] for m in sorted(labels)},
        "features": list(model.features),
        "n_train": len(train),
        "loo_rmse": round(model.loo_rmse, 3),
        "loo": loo,
        "loo_mae": {"model": mae(loo, "model"), "mean": mae(loo, "mean")},
        "held_out": held,
        "held_out_mae": {"model": mae(held, "model"), "mean": mae(held, "mean")},
        "onset": onset_calibration(),
    }
    (HERE / "gap_model.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"features {res['features']}, {res['n_train']} trainable labels; LOO MAE {res['loo_mae']}")
    print("| material | split | direct PBE gap | Δ computed | Δ gap model ± σ | Δ mean baseline |")
    print("|---|---|---|---|---|---|")
    for m, v in held.items():
        print(
            f"| {v['formula']} ({m}) | {v['split']} | {v['gap_pbe_direct']:.2f} | {v['computed']:.2f} | "
            f"{v['model']:.2f} ± {v['sigma']:.2f} | {v['mean']:.2f} |"
        )
    print(f"held-out MAE {res['held_out_mae']}")
    print(json.dumps(res["onset"]))
    return res


if __name__ == "__main__":
    main()
