"""Write reports/wavefunction/README.md's tables from the committed G0W0 records and the study JSON files.

Run from the repository root: ``python reports/wavefunction/make_report.py`` (fills README.template.md into
README.md). Inputs: ``dataset/gw/*/*.json.gz``, ``reports/wavefunction/vae.json``,
``reports/wavefunction/downstream.json`` (written by ``optiladder wavefunction train|downstream --report``).
"""

from __future__ import annotations

import json
from pathlib import Path

from optiladder.engine.gw import plane_waves, read_gw_record

ROOT = Path(__file__).resolve().parents[2]

#: G0W0@PBE gaps (eV), Shishkin & Kresse, Phys. Rev. B 75, 235102 (2007), Table I (experimental lattice constants)
#: with their PBE gaps; keyed by formula (zinc-blende GaN, SiC, BN, AlP; rock-salt MgO, LiF; diamond Si, C).
SHISHKIN_KRESSE = {
    "Si": {"pbe": 0.62, "g0w0": 1.12},
    "C": {"pbe": 4.12, "g0w0": 5.50},
    "SiC": {"pbe": 1.35, "g0w0": 2.27},
    "BN": {"pbe": 4.45, "g0w0": 6.10},
    "AlP": {"pbe": 1.63, "g0w0": 2.44},
    "GaN": {"pbe": 1.62, "g0w0": 2.80},
    "MgO": {"pbe": 4.76, "g0w0": 7.25},
    "LiF": {"pbe": 8.94, "g0w0": 13.27},
}


def gw_table() -> str:
    rows = [
        "| protocol | material | id | response bands | PBE gap (ours / S&K) | G0W0 gap (ours / S&K) | diff |"
        " correction ours / S&K | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted((ROOT / "dataset/gw").glob("*/*.json.gz")):
        r = read_gw_record(path)
        ref = SHISHKIN_KRESSE.get(r["formula"])
        secs = sum(r["seconds"].values())
        from pymatgen.core import Structure

        nb = r.get("nbands_response") or plane_waves(Structure.from_dict(r["structure"]).volume, 60.0)
        head = (
            f"| {r['protocol']['name'].removeprefix('gpaw-g0w0-')} | {r['formula']} | {r['mat_id']} | {nb} "
        )
        if ref:
            rows.append(
                head + f"| {r['gap_pbe']:.2f} / {ref['pbe']:.2f} | "
                f"{r['gap_g0w0']:.2f} / {ref['g0w0']:.2f} | {r['gap_g0w0'] - ref['g0w0']:+.2f} | "
                f"{r['gap_g0w0'] - r['gap_pbe']:.2f} / {ref['g0w0'] - ref['pbe']:.2f} | {secs:.0f} |"
            )
        else:
            rows.append(
                head + f"| {r['gap_pbe']:.2f} / – | {r['gap_g0w0']:.2f} / – | – | "
                f"{r['gap_g0w0'] - r['gap_pbe']:.2f} / – | {secs:.0f} |"
            )
    return "\n".join(rows)


def vae_table() -> str:
    path = ROOT / "reports/wavefunction/vae.json"
    if not path.exists():
        return "(no vae.json)"
    res = json.loads(path.read_text())
    rows = [
        f"grid {res['grid']}³, latent {res['latent']}, {res['n_train_states']} training states of "
        f"{len(res['train_materials'])} materials, {res['n_held_out_states']} held-out states of "
        f"{len(res['held_out_materials'])} materials, {res['epochs']} epochs",
        "",
        "| channels | parameters | R² train | R² held-out | R² held-out (best axis permutation) | train s |",
        "|---|---|---|---|---|---|",
    ]
    for m in res["models"]:
        rows.append(
            f"| {m['channels']} | {m['n_parameters']} | {m['r2_train']:.3f} | {m['r2_held_out']:.3f} | "
            f"{m['r2_held_out_aligned']:.3f} | {m['train_seconds']:.0f} |"
        )
    return "\n".join(rows)


def downstream_table() -> str:
    path = ROOT / "reports/wavefunction/downstream.json"
    if not path.exists():
        return "(no downstream.json)"
    res = json.loads(path.read_text())
    cv = res["cv"]
    rows = [
        f"{cv['n_materials']} materials ({cv['n_states']} states), {cv['n_folds']} folds by material; "
        "Hou, Wu & Qiu: 0.11 eV (10-fold CV, 22,002 states of 2-D materials)",
        "",
        "| predictor | MAE pooled (eV) | MAE per fold, mean ± std (eV) |",
        "|---|---|---|",
    ]
    for k, label in (
        ("model", "MLP [ε_DFT, state latent, density latent]"),
        ("mean", "mean correction"),
        ("scissor", "linear scissor from the PBE gap (valence/conduction)"),
    ):
        rows.append(
            f"| {label} | {cv[k]['mae_pooled']:.3f} | {cv[k]['mae_fold_mean']:.3f} ± {cv[k]['mae_fold_std']:.3f} |"
        )
    ab = res["cv_ablation_eps_only"]
    rows.append(
        f"| MLP [ε_DFT, valence flag] only (ablation) | {ab['mae_pooled']:.3f} | "
        f"{ab['mae_fold_mean']:.3f} ± {ab['mae_fold_std']:.3f} |"
    )
    if "test" in res:
        t = res["test"]
        rows += [
            "",
            f"Test-split materials {', '.join(res['test_materials'])} ({res['n_test_states']} states), model "
            f"trained on all CV materials: MLP {t['model_mae']:.3f} eV, mean {t['mean_mae']:.3f} eV, scissor "
            f"{t['scissor_mae']:.3f} eV.",
            "",
            "| material | gap correction computed (eV) | predicted MLP | predicted scissor |",
            "|---|---|---|---|",
        ]
        for m, g in t["gap_corrections"].items():
            rows.append(
                f"| {g['formula']} ({m}) | {g['computed']:.2f} | {g['predicted']:.2f} | {g['scissor']:.2f} |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    here = Path(__file__).parent
    text = (here / "README.template.md").read_text()
    text = text.replace("GW_TABLE", gw_table()).replace("DOWNSTREAM_TABLE", downstream_table())
    (here / "README.md").write_text(text)
    print(f"wrote {here / 'README.md'}")
