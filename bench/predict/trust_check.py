"""Warnings of the shipped models on the test split: how many they flag, and whether they catch the misses.

Runs ``Predictor.from_pretrained()`` (the default path: static domain warnings and the ensemble's calibrated
trust) on every test-split record of the dataset and compares with the GPAW spectra: median SC by cell size,
the flagged fraction (issue 14: at most a third), the materials below SC 0.4 and whether each is warned,
Spearman(expected, actual SC), the coverage of the stated 80 % interval, and the crystals with a first-shell
element pair no training crystal has (``novel_bonds``: how many, and their median SC against the rest). The
thresholds were fitted on validation (the card); this only reports. Writes ``bench/predict/trust.md`` and
``trust.json``; ``--split validation`` reports on the validation records instead (``trust_validation.md`` and
``.json``).

Run from the repository root: ``python bench/predict/trust_check.py [--split validation]`` (a minute or two;
CHGNet embeds every structure).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

#: SC below which a prediction counts as a miss (issue 14)
MISS_SC = 0.4


def main(split: str = "test") -> None:
    import torch

    from optiladder.data.store import Store
    from optiladder.evaluation.uncertainty import spearman
    from optiladder.predict import Predictor
    from optiladder.spectra import similarity_coefficient

    torch.set_num_threads(1)
    p = Predictor.from_pretrained()
    test = Store().table().split(split)
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
    novel = np.array([bool(r.novel_bonds) for r in res])
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
        "novel_bonds": {
            "n": int(novel.sum()),
            "median_sc": float(np.median(sc[novel])) if novel.any() else None,
            "median_sc_rest": float(np.median(sc[~novel])) if (~novel).any() else None,
            "pairs": dict(Counter(p for r in res for p in r.novel_bonds).most_common()),
            "crystals": [
                {
                    "id": test.ids[i],
                    "formula": test.formulas[i],
                    "pairs": res[i].novel_bonds,
                    "sc": float(sc[i]),
                    "expected_sc": float(expected[i]),
                    "warned": bool(warned[i]),
                }
                for i in np.flatnonzero(novel)
            ],
        },
    }
    here = Path(__file__).resolve().parent
    stem = "trust" if split == "test" else f"trust_{split}"
    (here / f"{stem}.json").write_text(json.dumps(out, indent=1) + "\n")
    nb = out["novel_bonds"]
    sizes = ", ".join(f"{k} atoms: {v[1]:.3f} (n = {v[0]})" for k, v in out["median_sc_by_nsites"].items())
    lines = [
        f"# Warnings of the shipped models on the {split} split",
        "",
        f"Measured {out['date']} by `python bench/predict/trust_check.py` with the shipped models "
        f"{out['models']} on the {out['n']} {split}-split records of the dataset (thresholds fitted on validation; "
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
        f"| with a bond no training crystal has | {nb['n']} of {out['n']}: median SC {_f(nb['median_sc'])} "
        f"(the rest {_f(nb['median_sc_rest'])}); pairs {nb['pairs']} |",
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
    lines += [
        "",
        "Crystals with a bond no training crystal has:",
        "",
        "| id | formula | pairs | SC | expected SC | warned |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {c['id']} | {c['formula']} | {' '.join(c['pairs'])} | {c['sc']:.3f} | {c['expected_sc']:.3f} | "
        f"{'yes' if c['warned'] else 'no'} |"
        for c in nb["crystals"]
    ]
    (here / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test", choices=("test", "validation"))
    main(ap.parse_args().split)
