"""Merge the models of ``optiladder wavefunction train`` runs made on the same states into one ``vae.json``.

Run from the repository root: ``python reports/wavefunction/merge_vae_runs.py RUN1.json RUN2.json [...] OUT.json``.
The runs must share exports, seed and sampling (checked: same materials, state counts, settings and identical PCA
scores); ``selected`` is redone over all models, on validation R² only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from optiladder.wavefunction.study import select_on_validation

SAME = (
    "grid",
    "train_materials",
    "validation_materials",
    "test_materials",
    "n_train_states",
    "n_eval_states",
    "pca",
    "epochs",
    "batch_size",
    "lr",
)


def merge(runs: list[dict]) -> dict:
    first = runs[0]
    for r in runs[1:]:
        for k in SAME:
            if r[k] != first[k]:
                raise ValueError(f"runs differ in {k!r}: not the same states or settings")
    out = dict(first)
    out["models"] = [m for r in runs for m in r["models"]]
    out["latent"] = sorted({m["latent"] for m in out["models"]})
    out["runs"] = [{"date": r["date"], "models": [m["name"] for m in r["models"]]} for r in runs]
    out["selected"] = select_on_validation(out["models"]) if first["validation_materials"] else None
    return out


if __name__ == "__main__":
    *inputs, target = sys.argv[1:]
    res = merge([json.loads(Path(p).read_text()) for p in inputs])
    Path(target).write_text(json.dumps(res, indent=1) + "\n")
    print(res["selected"], [(m["name"], round(m["validation"]["r2_aligned"], 3)) for m in res["models"]])
