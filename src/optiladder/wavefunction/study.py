"""The wavefunction-rung studies behind ``reports/wavefunction``: VAE sizes → held-out R², and GW corrections.

:func:`vae_study` trains one VAE per width on states of train-split materials only (published train list or in
none) and reports reconstruction R² on every held-out (validation/test-split) material's states.
:func:`downstream_study` joins exports with G0W0 records, cross-validates the correction model by material on
the trainable materials, and scores the final model on the held-out (test-split) materials.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from ..engine.gw import read_gw_record
from ..engine.records import write_bytes_atomic
from .data import StateSet, load_states, r2_score, split_materials
from .downstream import (
    build_table,
    cross_validate,
    fit_mlp,
    k_interpolation,
    predict_mlp,
    scissor_fit,
    scissor_predict,
)
from .vae import POOLING_SUFFIX, aligned_r2, load_vae, reconstruct, save_vae, train_vae

log = logging.getLogger(__name__)


def _sample(states: StateSet, per_material: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``per_material`` random states of each material (all if None)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(len(states.mat_ids)):
        idx = np.flatnonzero(states.material == i)
        if per_material is not None and len(idx) > per_material:
            idx = np.sort(rng.choice(idx, per_material, replace=False))
        out.append(idx)
    return np.concatenate(out)


def pca_r2(x_train: np.ndarray, evals: dict[str, np.ndarray], ks: Sequence[int] = (8, 16, 32)) -> dict:
    """Yardstick: a linear, frame-keeping code (PCA of the training states, k components) scored like the VAE.

    Returns ``{k: {name: {"r2": plain R², "r2_aligned": R² up to shifts/permutations}}}`` for each state set in
    ``evals`` (``[n, g, g, g]`` each); the PCA is fitted on ``x_train`` only.
    """
    xf = x_train.reshape(len(x_train), -1).astype(np.float64)
    mean = xf.mean(0)
    vt = np.linalg.svd(xf - mean, full_matrices=False)[2]
    out: dict = {}
    for k in ks:
        p = vt[:k]
        out[k] = {}
        for name, x in evals.items():
            flat = x.reshape(len(x), -1).astype(np.float64)
            rec = (mean + (flat - mean) @ p.T @ p).reshape(x.shape).astype(np.float32)
            out[k][name] = {"r2": r2_score(x, rec), "r2_aligned": aligned_r2(x, rec)}
    return out


def _scores(model, x: np.ndarray) -> dict:
    rec = reconstruct(model, x)
    return {"r2": r2_score(x, rec), "r2_aligned": aligned_r2(x, rec)}


def vae_study(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    channels: Sequence[int] = (4, 8),
    latent: int | Sequence[int] = 16,
    grid: int = 8,
    per_material: int | None = 64,
    eval_per_material: int | None = 64,
    epochs: int = 40,
    batch_size: int = 8,
    lr: float = 2e-3,
    seed: int = 0,
    pca_ks: Sequence[int] = (8, 16, 32),
    time_budget_s: float | None = None,
    report: str | Path | None = None,
    poolings: Sequence[str] = ("mean-max",),
) -> dict:
    """Train one VAE per (width, latent size, pooling) in ``channels`` × ``latent`` × ``poolings`` (in that order) on
    train-split states, all on the same states and seed; save each to ``out/<name>``, ``name`` = ``vae-c<width>``
    for latent 16 (the first models' name) else ``vae-c<width>-z<latent>``, with ``-cov`` for the
    ``mean-max-cov`` pooling and ``-aligned`` for the ``aligned`` one (:data:`~.vae.POOLINGS`; its entry also
    scores the untrained model, i.e. the aligned PCA it starts from, as ``untrained``).

    Scores (plain R² and R² up to the shifts/permutations the latent forgets, :func:`~.vae.aligned_r2`) on a
    sample of the training states, on the **validation** materials (where widths are compared) and on the
    **test** materials (reported, never used for a choice), beside the PCA yardstick (:func:`pca_r2`) on the
    same states (PCA sizes ``pca_ks`` plus every latent size). Returns the results dict (``selected``: the name
    of the model with the best validation R², None without validation materials). ``time_budget_s``: each model
    ends its cosine schedule within it (:func:`~.vae.train_vae`; ``epochs_run``). ``report``: the results are
    also written there (JSON) after the PCA and after each model, so a stopped run keeps what it measured.
    """
    from .vae import POOLINGS

    bad = [p for p in poolings if p not in POOLINGS]
    if bad or not poolings:
        raise ValueError(f"VAE pooling(s) {bad}: expected one or more of {POOLINGS}")
    latents = [latent] if isinstance(latent, int) else list(latent)
    pca_ks = sorted({*pca_ks, *latents})
    torch.set_num_threads(1)
    states = load_states(paths, grid=grid)
    parts = split_materials(states.mat_ids)
    if not parts["train"] or not parts["held_out"]:
        raise ValueError(f"need train and held-out (validation or test) materials, got {parts}")
    train = states.subset(parts["train"])
    train.check_trainable("VAE training")
    xi = train.x[_sample(train, per_material, seed)]
    evals = {"train": xi[_sample_rows(len(xi), 512, seed)]}
    held: dict[str, StateSet] = {}
    for name in ("validation", "test"):
        if parts[name]:
            held[name] = states.subset(parts[name])
            evals[name] = held[name].x[_sample(held[name], eval_per_material, seed + 1)]
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "grid": grid,
        "latent": latents[0] if len(latents) == 1 else latents,
        "train_materials": train.mat_ids,
        "validation_materials": parts["validation"],
        "test_materials": parts["test"],
        "n_train_states": len(xi),
        "n_eval_states": {k: len(v) for k, v in evals.items()},
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "pca": {str(k): v for k, v in pca_r2(xi, evals, pca_ks).items()},
        "models": [],
        "selected": None,
    }
    _write(report, results)
    for c, z, pool in ((c, z, pool) for c in channels for z in latents for pool in poolings):
        name = (f"vae-c{c}" if z == 16 else f"vae-c{c}-z{z}") + POOLING_SUFFIX[pool]
        t0 = time.time()
        model, hist = train_vae(
            xi,
            channels=c,
            latent=z,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            time_budget_s=time_budget_s,
            pooling=pool,
        )
        secs = time.time() - t0
        entry = {
            "name": name,
            "channels": c,
            "latent": z,
            "pooling": pool,
            "n_parameters": int(sum(p.numel() for p in model.parameters())),
            "train_seconds": round(secs, 1),
            "epochs_run": len(hist),
            **{name: _scores(model, x) for name, x in evals.items()},
            "per_material": {
                name: per_material_r2(model, h, eval_per_material, seed + 1) for name, h in held.items()
            },
            "history": hist,
        }
        if pool == "aligned":  # what training adds to its starting point, the aligned (Procrustes) PCA
            start = model.untrained_copy()
            entry["untrained"] = {name: _scores(start, x) for name, x in evals.items()}
        card = {
            "task": "beta-VAE of |phi_nk(r)| (scaled to max 1) on a cubic model grid; loss and R² up to grid "
            "shifts and axis permutations",
            "grid": grid,
            "latent": z,
            "train_materials": train.mat_ids,
            "n_train_states": len(xi),
            "validation_r2_aligned": entry.get("validation", {}).get("r2_aligned"),
            "date": results["date"],
        }
        save_vae(model, Path(out) / name, card)
        log.info("VAE %s: R² up to shifts/permutations %s", name, {k: entry[k]["r2_aligned"] for k in evals})
        results["models"].append(entry)
        results["selected"] = select_on_validation(results["models"]) if "validation" in evals else None
        _write(report, results)
    return results


def select_on_validation(models: Sequence[dict]) -> str:
    """The name of the model with the best validation R² up to shifts/permutations (never chosen on test)."""
    return max(models, key=lambda m: m["validation"]["r2_aligned"])["name"]


def _write(path: str | Path | None, results: dict) -> None:
    """Write the results JSON atomically (a stopped run keeps the last complete file)."""
    if path is not None:
        write_bytes_atomic((json.dumps(results, indent=1) + "\n").encode(), path, overwrite=True)


def per_material_r2(model, states: StateSet, per_material: int | None, seed: int) -> dict[str, float]:
    """R² up to shifts/permutations of each material's states (at most ``per_material`` random ones)."""
    out = {}
    for m in states.mat_ids:
        sub = states.subset([m])
        out[m] = _scores(model, sub.x[_sample(sub, per_material, seed)])["r2_aligned"]
    return out


def _sample_rows(n: int, k: int, seed: int) -> np.ndarray:
    """At most ``k`` sorted random indices of ``range(n)``."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


def downstream_study(
    paths: Sequence[str | Path],
    gw_records: Sequence[str | Path],
    vae_dir: str | Path,
    *,
    grid: int = 8,
    n_folds: int = 10,
    seed: int = 0,
    epochs: int = 300,
) -> dict:
    """CV by material on trainable materials (the network direct and as scissor + residual, each with its ε-only
    ablation, beside the mean and scissor baselines; k-interpolation of each), the variant ``selected`` on that CV,
    then both variants fitted on all trainable materials and scored on the held-out (test-split) materials, with
    their gap corrections predicted vs computed."""
    torch.set_num_threads(1)
    vae, card = load_vae(vae_dir)
    recs = {}
    for p in gw_records:
        r = read_gw_record(p)
        recs[r["mat_id"]] = r
    states = load_states(paths, grid=grid)
    table = build_table(states, recs, vae)
    parts = split_materials(table.mat_ids)
    tr_idx = [table.mat_ids.index(m) for m in parts["train"]]
    te_idx = [table.mat_ids.index(m) for m in parts["test"]]

    def sub(idx):
        from dataclasses import replace

        sel = np.isin(table.material, idx)
        remap = {old: new for new, old in enumerate(idx)}
        return replace(
            table,
            mat_ids=[table.mat_ids[i] for i in idx],
            features=table.features[sel],
            target=table.target[sel],
            material=np.array([remap[i] for i in table.material[sel]]),
            gap_pbe=table.gap_pbe[sel],
            valence=table.valence[sel],
            kpt=table.kpt[sel],
        )

    train, test = sub(tr_idx), sub(te_idx)
    res: dict = {
        "vae": str(vae_dir),
        "vae_card": {k: card.get(k) for k in ("grid", "validation_r2_aligned", "n_train_states")},
        "train_materials": train.mat_ids,
        "test_materials": test.mat_ids,
        "n_train_states": len(train.target),
        "n_test_states": len(test.target),
    }
    eps_cols = [0, train.features.shape[1] - 1]  # [ε_DFT − VBM, valence flag]: the ablation without latents
    for tag, residual in (("", False), ("_residual", True)):
        cv = cross_validate(train, n_folds=n_folds, seed=seed, epochs=epochs, residual=residual)
        cv.pop("predictions")
        res[f"cv{tag}"] = cv
        cv_eps = cross_validate(
            train, n_folds=n_folds, seed=seed, epochs=epochs, columns=eps_cols, residual=residual
        )
        res[f"cv{tag}_ablation_eps_only"] = cv_eps["model"]
        try:  # the paper's k-interpolation: fit on Γ of every training material, predict its other k-points
            res[f"k_interpolation{tag}"] = k_interpolation(train, seed=seed, epochs=epochs, residual=residual)
        except ValueError as exc:
            log.warning("k-interpolation skipped: %s", exc)
    # the variant of the network, chosen on the cross-validation of the trainable materials only
    res["selected"] = (
        "residual"
        if res["cv_residual"]["model"]["mae_pooled"] < res["cv"]["model"]["mae_pooled"]
        else "direct"
    )
    if len(test.target):
        coef = scissor_fit(train.gap_pbe, train.valence, train.target)
        sc = scissor_predict(coef, test.gap_pbe, test.valence)
        preds = {}
        for name, residual in (("model", False), ("residual", True)):
            base = scissor_predict(coef, train.gap_pbe, train.valence) if residual else 0.0
            model, mu, sd = fit_mlp(train.features, train.target - base, seed=seed, epochs=epochs)
            preds[name] = predict_mlp(model, mu, sd, test.features) + (sc if residual else 0.0)
        res["test"] = {
            "model_mae": float(np.abs(preds["model"] - test.target).mean()),
            "residual_mae": float(np.abs(preds["residual"] - test.target).mean()),
            "mean_mae": float(np.abs(train.target.mean() - test.target).mean()),
            "scissor_mae": float(np.abs(sc - test.target).mean()),
            "gap_corrections": {},
        }
        for j, m in enumerate(test.mat_ids):
            rec = recs[m]
            sel = test.material == j
            # gap correction from the band edges: (CBM correction) − (VBM correction), computed vs predicted
            e = test.features[sel, 0]
            v = test.valence[sel]
            iv = np.flatnonzero(v)[np.argmax(e[v])]
            ic = np.flatnonzero(~v)[np.argmin(e[~v])]
            res["test"]["gap_corrections"][m] = {
                "formula": rec["formula"],
                "computed": float(test.target[sel][ic] - test.target[sel][iv]),
                "predicted": float(preds["model"][sel][ic] - preds["model"][sel][iv]),
                "predicted_residual": float(preds["residual"][sel][ic] - preds["residual"][sel][iv]),
                "scissor": float(sc[sel][ic] - sc[sel][iv]),
                "record_gap_correction": rec["gap_g0w0"] - rec["gap_pbe"],
                "state_mae": {
                    "model": float(np.abs(preds["model"][sel] - test.target[sel]).mean()),
                    "residual": float(np.abs(preds["residual"][sel] - test.target[sel]).mean()),
                    "scissor": float(np.abs(sc[sel] - test.target[sel]).mean()),
                },
            }
    return res
