"""Write reports/wavefunction/README.md's tables from the committed G0W0 records and the study JSON files.

Run from the repository root: ``python reports/wavefunction/make_report.py [--exports DIR --vae MODEL]`` (fills
README.template.md into README.md; with ``--exports`` it also draws ``tsne.png``, the t-SNE of the state latents
coloured by G0W0 correction). Inputs: ``dataset/gw/*/*.json.gz``, ``reports/wavefunction/vae.json``,
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


#: VAE study results (``optiladder wavefunction train --report``), one table each; the verdict takes the best
#: validation R² over all of them
VAE_RESULTS = ("vae.json", "vae_states256.json", "vae_pooling.json", "vae_aligned.json")


def vae_table(name: str = "vae.json") -> str:
    path = ROOT / "reports/wavefunction" / name
    if not path.exists():
        return f"(no {name})"
    res = json.loads(path.read_text())
    sets = [k for k in ("train", "validation", "test") if k in res["n_eval_states"]]
    names = {"train": "train sample", "validation": "validation", "test": "test"}
    rows = [
        f"grid {res['grid']}³, {_latents(res)}, {res['n_train_states']} training states of "
        f"{len(res['train_materials'])} train-split materials, {res['epochs']} epochs (batch {res['batch_size']}, "
        f"lr {res['lr']:g}); scored on "
        + ", ".join(f"{res['n_eval_states'][k]} {names[k]} states" for k in sets)
        + f" (validation: {', '.join(res['validation_materials'])}; test: {', '.join(res['test_materials'])}). "
        "Each cell: R² up to grid shifts and axis permutations (plain R² in brackets).",
        "",
        "| code | parameters | "
        + " | ".join(f"R² {names[k]}" for k in sets)
        + " | train s (wall, shared CPU) |",
        "|---|---|" + "---|" * len(sets) + "---|",
    ]
    for m in res["models"]:
        sel = " (selected on validation)" if _model_key(m) == res.get("selected") else ""
        rows.append(
            f"| VAE, {_model_label(m, res)}{sel} | {m['n_parameters']:,} | "
            + " | ".join(f"**{m[k]['r2_aligned']:.3f}** ({m[k]['r2']:.3f})" for k in sets)
            + f" | {m['train_seconds']:.0f}"
            + (f" ({m['epochs_run']} epochs)" if m.get("epochs_run", res["epochs"]) != res["epochs"] else "")
            + " |"
        )
        if "untrained" in m:  # the aligned VAE before training: its aligned (Procrustes) PCA start
            rows.append(
                f"| the same, untrained (its start: aligned PCA, {m.get('latent', res['latent'])} components) | – | "
                + " | ".join(
                    f"{m['untrained'][k]['r2_aligned']:.3f} ({m['untrained'][k]['r2']:.3f})" for k in sets
                )
                + " | – |"
            )
    for k, v in res["pca"].items():
        rows.append(
            f"| PCA, {k} components (linear, frame-keeping) | – | "
            + " | ".join(f"{v[s]['r2_aligned']:.3f} ({v[s]['r2']:.3f})" for s in sets)
            + " | – |"
        )
    per = [
        f"{_model_label(m, res)}: "
        + ", ".join(f"{mid} {r2:.2f}" for part in m["per_material"].values() for mid, r2 in part.items())
        for m in res["models"]
    ]
    rows += ["", "Per held-out material (R² up to shifts/permutations): " + "; ".join(per) + "."]
    return "\n".join(rows)


def vae_verdict() -> str:
    runs = [
        json.loads(p.read_text())
        for p in (ROOT / "reports/wavefunction" / n for n in VAE_RESULTS)
        if p.exists()
    ]
    if not runs:
        return "not measured"
    res, best = max(
        ((r, m) for r in runs for m in r["models"]), key=lambda rm: rm[1]["validation"]["r2_aligned"]
    )
    r2 = best["validation"]["r2_aligned"]
    test = f", test {best['test']['r2_aligned']:.2f}" if "test" in best else ""
    return (
        f"**{'reached' if r2 >= 0.9 else 'not reached'}**: {r2:.2f} on the validation materials{test} "
        f"({_model_label(best, res)})"
    )


def _latents(res: dict) -> str:
    z = res["latent"]
    return f"latent {z}" if isinstance(z, int) else "latents " + ", ".join(map(str, z))


def _model_key(m: dict):
    """What ``selected`` holds: the model's folder name (older results: its width)."""
    return m.get("name", m["channels"])


def _model_label(m: dict, res: dict) -> str:
    pool = m.get("pooling", "mean-max")
    extra = {
        "mean-max": "",
        "mean-max-cov": ", second-moment pooling (mean-max-cov)",
        "aligned": ", aligned to a learnt basis (pooling aligned)",
    }[pool]
    return f"{m['channels']} channels, latent {m.get('latent', res['latent'])}{extra}"


def tsne_figure(exports: Path, vae_dir: Path, out: Path, *, grid: int = 8, seed: int = 0) -> dict:
    """t-SNE (scikit-learn) of the state latents μ of every G0W0-labelled state, coloured by ε_QP − ε_DFT (eV),
    after Hou, Wu & Qiu's Fig. 3d; one marker per material. Writes ``out`` (PNG); returns a small summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.manifold import TSNE

    from optiladder.wavefunction.data import load_states
    from optiladder.wavefunction.downstream import build_table
    from optiladder.wavefunction.vae import load_vae

    recs = {}
    for path in sorted((ROOT / "dataset/gw").glob("gpaw-g0w0-v*/*.json.gz")):  # v2 sorts last: it wins
        r = read_gw_record(path)
        recs[r["mat_id"]] = r
    states = load_states(
        [exports / f"{m}.npz" for m in sorted(recs) if (exports / f"{m}.npz").exists()], grid=grid
    )
    vae, _ = load_vae(vae_dir)
    table = build_table(states, recs, vae)
    z = table.features[:, 1 : 1 + vae.latent]
    emb = TSNE(n_components=2, perplexity=30, init="pca", random_state=seed).fit_transform(z)
    fig, ax = plt.subplots(figsize=(10, 6.5))
    markers = "os^vDP*Xh<>"
    vmin, vmax = np.percentile(table.target, [1, 99])
    for j, mid in enumerate(table.mat_ids):
        sel = table.material == j
        sc = ax.scatter(
            emb[sel, 0],
            emb[sel, 1],
            c=table.target[sel],
            cmap="coolwarm",
            vmin=vmin,
            vmax=vmax,
            s=12,
            marker=markers[j % len(markers)],
            label=f"{recs[mid]['formula']} ({mid})",
            linewidths=0,
        )
    fig.colorbar(sc, ax=ax, label="G0W0 correction ε_QP − ε_DFT (eV)")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(f"State latents ({vae_dir.name}), {len(table.target)} labelled states")
    # one entry per material, below the axes (42 materials would cover the points inside them)
    ax.legend(
        fontsize=6.5, markerscale=1.5, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=5, frameon=False
    )
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return {"n_states": int(len(table.target)), "materials": table.mat_ids, "vae": vae_dir.name}


def scissor_table() -> str:
    """The gap model's numbers from gap_model.json (written by gap_model.py): chosen model vs the gap-only baseline."""
    path = Path(__file__).parent / "gap_model.json"
    if not path.exists():
        return "(not measured: run `python reports/wavefunction/gap_model.py`)"
    r = json.loads(path.read_text())
    md, bl, nl = r["model"], r["baseline"], r["nested_loo_mae"]
    names = {"inv_eps": "1/ε∞", "gap_inv_eps": "gap/ε∞", "gap": "gap", "chi_spread": "Δχ"}

    def feats(d):
        return "[" + ", ".join(names.get(f, f) for f in d["features"]) + f"] (ridge α {d['alpha']:g})"

    c, cr, a = nl["common"], nl["common_without_rare_gases"], nl["all_trainable"]
    held = r["held_out"]
    lines = [
        f"Chosen by leave-one-out on the {r['n_trainable']} trainable G0W0 labels: **{feats(md)}**, fitted on the "
        f"{md['n_train']} labels whose material has an RPA spectra record (ε∞; none for "
        f"{', '.join(r['no_eps_inf'])}). Baseline (the first gap model, kept callable): {feats(bl)} on "
        f"{bl['n_train']} labels. Δ = direct-gap correction. Nested leave-one-out (every choice of features and α "
        "redone without the left-out label), MAE in eV:",
        "",
        "| labels scored | n | chosen model | baseline [gap] | mean correction |",
        "|---|---|---|---|---|",
        f"| trainable labels with ε∞ | {nl['n_common']} | **{c['model']:.2f}** | {c['baseline']:.2f} | "
        f"{c['mean']:.2f} |",
        f"| the same without He, Ne | {nl['n_common'] - sum(v['formula'] in ('He', 'Ne') for v in r['loo'].values())}"
        f" | **{cr['model']:.2f}** | {cr['baseline']:.2f} | {cr['mean']:.2f} |",
        f"| all trainable labels | {r['n_trainable']} | – | {a['baseline']:.2f} | {a['mean']:.2f} |",
        "",
        "The test-split labels (never trained on, never used for a choice), scored by the models fitted on all "
        "trainable labels:",
        "",
        "| material | direct PBE gap (eV) | ε∞ (PBE RPA) | Δ computed (G0W0) | Δ chosen model ± σ | Δ baseline ± σ |"
        " Δ mean | chosen model within its MAE? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, v in held.items():
        err = abs(v["model"] - v["computed"])
        lines.append(
            f"| {v['formula']} ({m}) | {v['gap_pbe_direct']:.2f} | {v['eps_inf']:.2f} | {v['computed']:.2f} | "
            f"{v['model']:.2f} ± {v['model_sigma']:.2f} | {v['baseline']:.2f} ± {v['baseline_sigma']:.2f} | "
            f"{v['mean']:.2f} | {'yes' if err <= c['model'] else 'no'} (error {err:.2f} eV) |"
        )
    h = r["held_out_mae"]
    within = sum(abs(v["model"] - v["computed"]) <= c["model"] for v in held.values())
    within_s = sum(abs(v["model"] - v["computed"]) <= v["model_sigma"] for v in held.values())
    within_b = sum(abs(v["baseline"] - v["computed"]) <= a["baseline"] for v in held.values())
    o = r["onset"]
    lines += [
        "",
        f"MAE on these {len(held)}: chosen model **{h['model']:.2f} eV**, baseline {h['baseline']:.2f} eV, mean "
        f"{h['mean']:.2f} eV. {within} of {len(held)} corrections predicted by the chosen model lie within its "
        f"nested-LOO MAE ({c['model']:.2f} eV), {within_s} of {len(held)} within its ± σ; the baseline: {within_b} "
        f"of {len(held)} within its MAE ({a['baseline']:.2f} eV). Domain warnings: "
        f"{sum(bool(v['model_warnings']) for v in held.values())} of {len(held)} (refit: "
        "`python reports/wavefunction/gap_model.py`).",
        "",
        f"Onset estimate of the direct gap for predicted spectra (first ω with Im ε ≥ {o['fraction']:.0%} of its "
        f"maximum + {o['offset_eV']} eV), on {o['n_records']} train/none gpaw-pbe-v1 RPA records: median offset "
        f"{o['0.1']['median_eV']:+.2f} eV, mean |error| after it {o['0.1']['mean_abs_after_median_shift_eV']:.2f} eV "
        f"(5 %: {o['0.05']['median_eV']:+.2f} / {o['0.05']['mean_abs_after_median_shift_eV']:.2f} eV; 20 %: "
        f"{o['0.2']['median_eV']:+.2f} / {o['0.2']['mean_abs_after_median_shift_eV']:.2f} eV).",
    ]
    return "\n".join(lines)


def experiment_table() -> str:
    """PBE RPA vs scissor-corrected RPA vs experiment, from experiment.json (written by experiment.py)."""
    path = Path(__file__).parent / "experiment.json"
    if not path.exists():
        return "(not measured: run `python reports/wavefunction/experiment.py`)"
    r = json.loads(path.read_text())

    def cell(d, name):
        if d["experiment"] is None or d[name] is None:
            return "–"
        return f"{d[name]:.2f} ({d[name] - d['experiment']:+.2f})"

    def exp(v):
        return "–" if v is None else f"{v:.2f}"

    rows = [
        "| crystal | data (refractiveindex.info) | Δ scissor (eV, source) | onset expt / PBE / scissor (eV) |"
        " ε₂ peak expt / PBE / scissor (eV) | ε₁(1.5 eV) expt / PBE / scissor |",
        "|---|---|---|---|---|---|",
    ]
    for f, c in r["crystals"].items():
        src = "G0W0 record" if c["scissor_source"].startswith("G0W0 record") else "gap model"
        rows.append(
            f"| {f} ({c['mat_id']}) | {c['page']} | {c['scissor_eV']:.2f} ± {c['scissor_sigma_eV']:.2f} ({src}) | "
            + " | ".join(
                f"{exp(c[k]['experiment'])} / {cell(c[k], 'PBE RPA')} / {cell(c[k], 'scissor')}"
                for k in ("onset_eV", "peak_eV", "eps1_low")
            )
            + " |"
        )
    m = r["mean_abs_error"]
    rows += [
        "",
        "Mean |error| against experiment (n crystals): "
        + "; ".join(
            f"{label} PBE {m[k]['PBE RPA'][0]:.2f} → scissor {m[k]['scissor'][0]:.2f} (n = {m[k]['scissor'][1]})"
            for k, label in (
                ("onset_eV", "onset (eV)"),
                ("peak_eV", "ε₂ peak (eV)"),
                ("eps1_low", "ε₁(1.5 eV)"),
            )
        )
        + ".",
    ]
    return "\n".join(rows)


def downstream_vae() -> str:
    path = ROOT / "reports/wavefunction/downstream.json"
    if not path.exists():
        return "no run"
    res = json.loads(path.read_text())
    r2 = res["vae_card"].get("validation_r2_aligned")
    return f"`{res['vae']}`" + (f", validation R² {r2:.2f}" if r2 is not None else "")


def downstream_table() -> str:
    path = ROOT / "reports/wavefunction/downstream.json"
    if not path.exists():
        return "(no downstream.json)"
    res = json.loads(path.read_text())
    cv = res["cv"]
    rows = [
        f"{cv['n_materials']} trainable materials ({cv['n_states']} labelled states), {cv['n_folds']} folds by "
        "material (every state of a material in one fold); Hou, Wu & Qiu: 0.11 eV (10-fold CV, 22,002 states of "
        "302 2-D materials). MAE in eV over the out-of-fold states.",
        "",
        "| predictor | MAE pooled | MAE per fold, mean ± std |",
        "|---|---|---|",
    ]

    def row(label, d, bold=False):
        b = "**" if bold else ""
        return (
            f"| {label} | {b}{d['mae_pooled']:.3f}{b} | {d['mae_fold_mean']:.3f} ± {d['mae_fold_std']:.3f} |"
        )

    res_cv = res.get("cv_residual")
    rows += [
        row("MLP [ε_DFT, state latent, density latent, valence flag] (the paper's inputs)", cv["model"]),
        row("MLP [ε_DFT, valence flag] only (ablation: no latents)", res["cv_ablation_eps_only"]),
    ]
    if res_cv:
        rows += [
            row("linear scissor + MLP residual [ε_DFT, latents, valence flag]", res_cv["model"]),
            row(
                "linear scissor + MLP residual [ε_DFT, valence flag] only (ablation)",
                res["cv_residual_ablation_eps_only"],
            ),
        ]
    rows += [
        row("baseline: mean correction", cv["mean"]),
        row("baseline: linear scissor from the PBE gap (a + b·gap, valence/conduction)", cv["scissor"]),
    ]
    if res_cv:
        formulas = {
            read_gw_record(f)["mat_id"]: read_gw_record(f)["formula"]
            for f in sorted((ROOT / "dataset/gw").glob("*/*.json.gz"))
        }
        names = {m: f"{formulas.get(m, '?')} ({m})" for m in cv["model"]["per_material"]}
        rows += [
            "",
            "Out-of-fold MAE per material (eV), MLP direct / scissor + residual / linear scissor: "
            + ", ".join(
                f"{names[m]} {cv['model']['per_material'][m]:.2f} / {res_cv['model']['per_material'][m]:.2f} / "
                f"{cv['scissor']['per_material'][m]:.2f}"
                for m in names
            )
            + ".",
        ]
    for tag, label in (("", "MLP direct"), ("_residual", "scissor + residual MLP")):
        ki = res.get(f"k_interpolation{tag}")
        if ki:
            rows += [
                "",
                f"k-interpolation, {label} (as in the paper: fit on the {ki['n_train_states']} states at Γ of the CV "
                f"materials, score their {ki['n_test_states']} states at the other 63 k-points): model "
                f"{ki['model']['mae']:.3f} eV, mean {ki['mean']['mae']:.3f} eV, scissor {ki['scissor']['mae']:.3f} eV.",
            ]
    if "test" in res:
        t = res["test"]
        resid = f", scissor + residual MLP {t['residual_mae']:.3f} eV" if "residual_mae" in t else ""
        rows += [
            "",
            f"Test-split materials {', '.join(res['test_materials'])} ({res['n_test_states']} states), models "
            f"trained on all CV materials (scored once): MLP direct {t['model_mae']:.3f} eV{resid}, mean "
            f"{t['mean_mae']:.3f} eV, scissor {t['scissor_mae']:.3f} eV.",
            "",
            "| material | gap correction computed (eV) | predicted MLP direct | scissor + residual MLP | linear scissor |",
            "|---|---|---|---|---|",
        ]
        for m, g in t["gap_corrections"].items():
            r = f"{g['predicted_residual']:.2f}" if "predicted_residual" in g else "–"
            rows.append(
                f"| {g['formula']} ({m}) | {g['computed']:.2f} | {g['predicted']:.2f} | {r} | {g['scissor']:.2f} |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--exports", type=Path, help="wf-pbe-v1 export folder: also draw tsne.png (needs the cache)"
    )
    ap.add_argument("--vae", type=Path, default=ROOT / "reports/wavefunction/models/vae-c8-z64-aligned")
    args = ap.parse_args()
    here = Path(__file__).parent
    if args.exports:
        print(tsne_figure(args.exports, args.vae, here / "tsne.png"))
    text = (here / "README.template.md").read_text()
    text = (
        text.replace("GW_TABLE", gw_table())
        .replace("VAE_VERDICT", vae_verdict())
        .replace("VAE_TABLE_STATES256", vae_table("vae_states256.json"))
        .replace("VAE_TABLE_POOLING", vae_table("vae_pooling.json"))
        .replace("VAE_TABLE_ALIGNED", vae_table("vae_aligned.json"))
        .replace("VAE_TABLE", vae_table())
        .replace("DOWNSTREAM_TABLE", downstream_table())
        .replace("DOWNSTREAM_VAE", downstream_vae())
        .replace("SCISSOR_TABLE", scissor_table())
        .replace("EXPERIMENT_TABLE", experiment_table())
    )
    (here / "README.md").write_text(text)
    print(f"wrote {here / 'README.md'}")
