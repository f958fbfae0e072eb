"""The wavefunction-rung studies behind ``reports/wavefunction``: VAE sizes → held-out R², and GW corrections.

:func:`vae_study` trains one VAE per width on states of train-split materials only (published train list or in
none) and reports reconstruction R² on every held-out (validation/test-split) material's states.
:func:`downstream_study` joins exports with G0W0 records, cross-validates the correction model by material on
the trainable materials, and scores the final model on the held-out (test-split) materials.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from ..engine.gw import read_gw_record
from .data import StateSet, load_states, r2_score, split_materials
from .downstream import build_table, cross_validate, fit_mlp, predict_mlp, scissor_fit, scissor_predict
from .vae import aligned_r2, load_vae, reconstruct, save_vae, train_vae

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


def vae_study(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    channels: Sequence[int] = (4, 8),
    latent: int = 16,
    grid: int = 8,
    per_material: int | None = 48,
    eval_per_material: int | None = 64,
    epochs: int = 8,
    seed: int = 0,
) -> dict:
    """Train one VAE per width in ``channels``; save each to ``out/vae-c<width>``; return the results dict."""
    torch.set_num_threads(1)
    states = load_states(paths, grid=grid)
    parts = split_materials(states.mat_ids)
    if not parts["train"] or not parts["held_out"]:
        raise ValueError(f"need train and held-out materials, got {parts}")
    train = states.subset(parts["train"])
    train.check_trainable("VAE training")
    held = states.subset(parts["held_out"])
    xi = train.x[_sample(train, per_material, seed)]
    xh = held.x[_sample(held, eval_per_material, seed + 1)]
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "grid": grid,
        "latent": latent,
        "train_materials": train.mat_ids,
        "held_out_materials": held.mat_ids,
        "n_train_states": len(xi),
        "n_held_out_states": len(xh),
        "epochs": epochs,
        "models": [],
    }
    for c in channels:
        t0 = time.time()
        model, hist = train_vae(xi, channels=c, latent=latent, epochs=epochs, seed=seed)
        secs = time.time() - t0
        rh = reconstruct(model, xh)
        rt = reconstruct(model, xi[: len(xh)])
        entry = {
            "channels": c,
            "n_parameters": int(sum(p.numel() for p in model.parameters())),
            "train_seconds": round(secs, 1),
            "r2_train": r2_score(xi[: len(xh)], rt),
            "r2_held_out": r2_score(xh, rh),
            "r2_held_out_aligned": aligned_r2(xh, rh),
            "r2_held_out_per_material": {
                m: r2_score(
                    held.x[held.material == j][: eval_per_material or None],
                    reconstruct(model, held.x[held.material == j][: eval_per_material or None]),
                )
                for j, m in enumerate(held.mat_ids)
            },
            "history": hist,
        }
        card = {
            "task": "beta-VAE of |phi_nk(r)| (scaled to max 1) on a cubic model grid",
            "grid": grid,
            "train_materials": train.mat_ids,
            "n_train_states": len(xi),
            "held_out_r2": entry["r2_held_out"],
            "held_out_r2_aligned": entry["r2_held_out_aligned"],
            "date": results["date"],
        }
        save_vae(model, Path(out) / f"vae-c{c}", card)
        log.info(
            "VAE c=%d: held-out R² %.3f (aligned %.3f)", c, entry["r2_held_out"], entry["r2_held_out_aligned"]
        )
        results["models"].append(entry)
    return results


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
    """CV by material on trainable materials (model, its ε-only ablation, mean and scissor baselines), then the
    final model on the held-out materials with their gap corrections predicted vs computed."""
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
    te_idx = [table.mat_ids.index(m) for m in parts["held_out"]]

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
        "vae_card": {k: card.get(k) for k in ("grid", "held_out_r2", "n_train_states")},
        "train_materials": train.mat_ids,
        "test_materials": test.mat_ids,
        "n_train_states": len(train.target),
        "n_test_states": len(test.target),
    }
    cv = cross_validate(train, n_folds=n_folds, seed=seed, epochs=epochs)
    cv.pop("predictions")
    res["cv"] = cv
    cv_eps = cross_validate(
        train, n_folds=n_folds, seed=seed, epochs=epochs, columns=[0, train.features.shape[1] - 1]
    )
    res["cv_ablation_eps_only"] = cv_eps["model"]
    if len(test.target):
        model, mu, sd = fit_mlp(train.features, train.target, seed=seed, epochs=epochs)
        pred = predict_mlp(model, mu, sd, test.features)
        coef = scissor_fit(train.gap_pbe, train.valence, train.target)
        sc = scissor_predict(coef, test.gap_pbe, test.valence)
        res["test"] = {
            "model_mae": float(np.abs(pred - test.target).mean()),
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
                "predicted": float(pred[sel][ic] - pred[sel][iv]),
                "scissor": float(sc[sel][ic] - sc[sel][iv]),
                "record_gap_correction": rec["gap_g0w0"] - rec["gap_pbe"],
            }
    return res
