"""Warnings of the shipped models on the test split: how many they flag, and whether they catch the misses.

Runs ``Predictor.from_pretrained()`` (the default path: static domain warnings and the ensemble's calibrated
trust) on every test-split record of the dataset and compares with the GPAW spectra: median SC by cell size,
the flagged fraction (issue 14: at most a third), the materials below SC 0.4 and whether each is warned,
Spearman(expected, actual SC) and the coverage of the stated 80 % interval. The thresholds were fitted on
validation (the card); this only reports. Writes ``bench/predict/trust.md`` and ``trust.json``.

Run from the repository root: ``python bench/predict/trust_check.py`` (a minute or two; CHGNet embeds every
structure).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

#: SC below which a prediction counts as a miss (issue 14)
MISS_SC = 0.4


def main() -> None:
    import torch

    from optiladder.data.store import Store
    from optiladder.evaluation.uncertainty import spearman
    from optiladder.predict import Predictor
    from optiladder.spectra import similarity_coefficient

    torch.set_num_threads(1)
    p = Predictor.from_pretrained()
    test = Store().table().split("test")
    res = p.predict(test.structures, test.ids)
    assert all(r.ok for r in res), [r.error for r in res if not r.ok][:3]
    pred = np.stack([r.spectra["rpa"].trace_im() for r in res])
    sc = similarity_coefficient(pred, test.rpa, test.grid)
    sc_true = similarity_coefficient(test.rpa, test.ipa, test.grid)
    sc_pred = np.array([r.sc for r in res])
    warned = np.array([bool(r.warnings) for r in res])
    expected = np.array([r.trust["rpa"]["expected_sc"] for r in res])
    lo, hi = np.array([r.trust["rpa"]["sc_interval80"] for r in res]).T
    miss = sc < MISS_SC
    card = p.models["rpa"].card
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "models": {n: m.card["version"] for n, m in p.models.items()},
        "n": len(res),
        "median_sc": float(np.median(sc)),
        "median_sc_by_nsites": {
            int(k): [int((test.nsites == k).sum()), float(np.median(sc[test.nsites == k]))]
            for k in np.unique(test.nsites)
        },
        "flagged": int(warned.sum()),
        "flagged_fraction": float(warned.mean()),
        "flagged_by_nsites": {int(k): int(warned[test.nsites == k].sum()) for k in np.unique(test.nsites)},
        "misses": [
            {
                "id": test.ids[i],
                "formula": test.formulas[i],
                "nsites": int(test.nsites[i]),
                "sc": float(sc[i]),
                "expected_sc": float(expected[i]),
                "warnings": res[i].warnings,
            }
            for i in np.flatnonzero(miss)
        ],  # fmt: skip
        "misses_caught": int((miss & warned).sum()),
        "spearman_expected_actual": spearman(expected, sc),
        "coverage80": float(np.mean((sc >= lo) & (sc <= hi))),
        "sc_predictor_mae": float(np.mean(np.abs(sc_pred - sc_true))),
        "rule": card["uncertainty"]["rule"],
    }
    here = Path(__file__).resolve().parent
    (here / "trust.json").write_text(json.dumps(out, indent=1) + "\n")
    sizes = ", ".join(f"{k} atoms: {v[1]:.3f} (n = {v[0]})" for k, v in out["median_sc_by_nsites"].items())
    lines = [
        "# Warnings of the shipped models on the test split",
        "",
        f"Measured {out['date']} by `python bench/predict/trust_check.py` with the shipped models "
        f"{out['models']} on the {out['n']} test-split records of the dataset (thresholds fitted on validation; "
        "this only reports).",
        "",
        "| | |",
        "|---|---|",
        f"| median SC[RPA_ML; RPA_DFT] | {out['median_sc']:.3f} ({sizes}) |",
        f"| flagged (any warning) | {out['flagged']} of {out['n']} ({out['flagged_fraction']:.1%}); by cell size "
        f"{out['flagged_by_nsites']} |",
        f"| materials below SC {MISS_SC} warned | {out['misses_caught']} of {len(out['misses'])} |",
        f"| Spearman(expected SC, actual SC) | {out['spearman_expected_actual']:.3f} |",
        f"| coverage of the stated 80 % interval | {out['coverage80']:.3f} |",
        f"| SC[RPA; IPA] predictor MAE | {out['sc_predictor_mae']:.4f} |",
        "",
        "Materials below SC 0.4:",
        "",
        "| id | formula | atoms | SC | expected SC | warnings |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {m['id']} | {m['formula']} | {m['nsites']} | {m['sc']:.3f} | {m['expected_sc']:.3f} | "
        f"{'; '.join(m['warnings']) or '**none**'} |"
        for m in out["misses"]
    ]
    (here / "trust.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
