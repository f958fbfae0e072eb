"""Choose between two shipped model versions on the validation split, side by side in one run.

Loads ``Predictor.from_pretrained(versions=...)`` twice (the old and the new ``ipa``/``rpa``/``sc`` versions, the
same code path a user gets) and predicts every validation-split record of the dataset with both: median
SC[RPA_ML; RPA_DFT] overall and by cell size, the number of crystals each version predicts better, the
SC[RPA; IPA] predictor MAE and the flagged fraction. Validation only: a ship is chosen here, never on test.
Writes ``bench/predict/versions.md`` and ``versions.json``.

Run from the repository root: ``python bench/predict/versions.py OLD NEW`` (e.g. ``v2026.11.30 v2026.12.06``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def score(version: str, val) -> dict:
    """Predictions of one version on the validation table: per-material SC, SC-head error, warnings."""
    from optiladder.predict import Predictor
    from optiladder.spectra import similarity_coefficient

    p = Predictor.from_pretrained(versions={"ipa": version, "rpa": version, "sc": version})
    t0 = time.process_time()
    res = p.predict(val.structures, val.ids)
    cpu = time.process_time() - t0
    bad = [r.error for r in res if not r.ok]
    if bad:
        raise SystemExit(f"{version}: {len(bad)} predictions failed, e.g. {bad[0]}")
    pred = np.stack([r.spectra["rpa"].trace_im() for r in res])
    sc = similarity_coefficient(pred, val.rpa, val.grid)
    sc_true = similarity_coefficient(val.rpa, val.ipa, val.grid)
    return {
        "sc": sc,
        "sc_head_abs_err": np.abs(np.array([r.sc for r in res]) - sc_true),
        "warned": np.array([bool(r.warnings) for r in res]),
        "cpu_s": cpu,
    }


def main(old: str, new: str) -> None:
    import torch

    from optiladder.data.store import Store
    from optiladder.study.sc import paired_bootstrap

    torch.set_num_threads(1)
    val = Store().table().split("validation")
    # warm-up: the foundation embeddings of the validation structures are cached before timing
    score(old, val)
    runs = {v: score(v, val) for v in (old, new)}
    sizes = [int(k) for k in np.unique(val.nsites)]
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "split": "validation",
        "n": len(val),
        "versions": {
            v: {
                "median_sc": float(np.median(r["sc"])),
                "mean_sc": float(np.mean(r["sc"])),
                "median_sc_by_nsites": {
                    k: [int((val.nsites == k).sum()), float(np.median(r["sc"][val.nsites == k]))]
                    for k in sizes
                },
                "p10_sc": float(np.quantile(r["sc"], 0.1)),
                "sc_head_mae": float(r["sc_head_abs_err"].mean()),
                "flagged_fraction": float(r["warned"].mean()),
                "cpu_s": r["cpu_s"],
            }
            for v, r in runs.items()
        },
        "new_better_on": int((runs[new]["sc"] > runs[old]["sc"]).sum()),
        # paired by material: is the new version's gain more than the luck of these materials? (p_better: share of
        # bootstrap resamples in which the new version is better; the shipping rule in docs/predict.md)
        "paired": {
            "sc_mean": paired_bootstrap(1.0 - runs[new]["sc"], 1.0 - runs[old]["sc"]),
            "sc_head_abs_err": paired_bootstrap(runs[new]["sc_head_abs_err"], runs[old]["sc_head_abs_err"]),
        },
    }
    here = Path(__file__).resolve().parent
    (here / "versions.json").write_text(json.dumps(out, indent=1) + "\n")
    a, b = out["versions"][old], out["versions"][new]
    lines = [
        f"# Validation: shipped {old} against {new}, one run",
        "",
        f"Measured {out['date']} by `python bench/predict/versions.py {old} {new}`: both versions through "
        f"`Predictor.from_pretrained(versions=...)` on the {out['n']} validation-split records of the dataset "
        "(choosing split; test is not looked at here).",
        "",
        f"| validation | {old} | {new} |",
        "|---|---|---|",
        f"| median SC[RPA_ML; RPA_DFT] | {a['median_sc']:.3f} | {b['median_sc']:.3f} |",
        f"| mean SC[RPA_ML; RPA_DFT] | {a['mean_sc']:.3f} | {b['mean_sc']:.3f} |",
    ]
    for k in sizes:
        n, x = a["median_sc_by_nsites"][k]
        lines.append(f"| {k}-atom cells (n = {n}) | {x:.3f} | {b['median_sc_by_nsites'][k][1]:.3f} |")
    lines += [
        f"| 10th percentile SC | {a['p10_sc']:.3f} | {b['p10_sc']:.3f} |",
        f"| SC[RPA; IPA] head MAE | {a['sc_head_mae']:.4f} | {b['sc_head_mae']:.4f} |",
        f"| flagged (any warning) | {a['flagged_fraction']:.1%} | {b['flagged_fraction']:.1%} |",
        f"| CPU s for all {out['n']} (features included) | {a['cpu_s']:.1f} | {b['cpu_s']:.1f} |",
        "",
        f"{new} predicts {out['new_better_on']} of the {out['n']} crystals better than {old}.",
        "",
        "Paired by material, 10,000 bootstrap resamples of the validation crystals (share of resamples in which "
        f"{new} is better; the shipping rule of docs/predict.md asks for 95 % from a new recipe, and ≥ 50 % (no worse) "
        "from the same recipe retrained on a superset of the training materials):",
        "",
    ]
    for key, what in (("sc_mean", "mean SC[RPA_ML; RPA_DFT]"), ("sc_head_abs_err", "SC[RPA; IPA] head MAE")):
        pb = out["paired"][key]
        lines.append(
            f"- {what}: {new} better by {pb['mae_difference']:+.4f} ± {pb['se']:.4f} (standard error), "
            f"in {pb['p_better']:.1%} of resamples"
        )
    (here / "versions.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python bench/predict/versions.py OLD_VERSION NEW_VERSION")
    main(sys.argv[1], sys.argv[2])
