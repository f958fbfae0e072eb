"""GW corrections from the latent space: [ε_DFT, state latent, density latent] → ε_QP − ε_DFT (eV).

A table of states joins a wavefunction export (states on the full k-grid) with a G0W0 record (labels on the
irreducible points, mapped with :func:`optiladder.engine.gw.state_corrections`). A small dense network (three
layers, as in Hou, Wu & Qiu 2024) is cross-validated **by material** (every state of a material in one fold) and
compared with two baselines fitted on the same training folds: the mean correction, and a linear scissor from
the PBE gap (correction = a + b·gap_PBE, separately for valence and conduction states).

``residual=True`` fits the network to what the linear scissor (fitted on the same training rows) leaves over,
and predicts scissor + network: the latents then only have to carry the state- and material-specific part of the
correction beyond the material-level gap law (with no information in them, the network's weight decay returns
the baseline).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.splits import check_trainable
from ..engine.gw import state_corrections
from .data import StateSet
from .vae import StateVAE, encode_states

log = logging.getLogger(__name__)


@dataclass
class StateTable:
    """One row per labelled state: ``features`` ``[n, 1 + 2·latent + 1]`` = [ε_DFT − VBM (eV), state μ,
    density μ, valence flag]; ``target`` ε_QP − ε_DFT (eV); ``material`` index into ``mat_ids``; ``gap_pbe``
    (eV, per row, the material's G0W0-grid PBE gap); ``valence`` (bool); ``kpt`` (scaled)."""

    mat_ids: list[str]
    features: np.ndarray
    target: np.ndarray
    material: np.ndarray
    gap_pbe: np.ndarray
    valence: np.ndarray
    kpt: np.ndarray


def build_table(states: StateSet, records: dict[str, dict], vae: StateVAE) -> StateTable:
    """Rows for every state of ``states`` whose material has a G0W0 record and whose band is labelled."""
    z_state = encode_states(vae, states.x)
    z_dens = encode_states(vae, states.density)
    feats, tgt, mat, gap, val, kp, ids = [], [], [], [], [], [], []
    for i, mid in enumerate(states.mat_ids):
        rec = records.get(mid)
        if rec is None:
            continue
        sel = np.flatnonzero((states.material == i) & np.isin(states.band, rec["bands"]))
        if len(sel) == 0:
            continue
        eps = np.asarray(rec["eps_dft"])
        vbm = eps[:, list(rec["bands"]).index(rec["nocc"] - 1)].max()
        e_dft, corr = [], []
        for s in sel:
            e, c = state_corrections(rec, states.kpt[s : s + 1], states.band[s : s + 1])
            e_dft.append(e[0, 0] - vbm)
            corr.append(c[0, 0])
        n = len(sel)
        j = len(ids)
        ids.append(mid)
        valence = states.band[sel] < rec["nocc"]
        feats.append(
            np.column_stack(
                [
                    np.array(e_dft),
                    z_state[sel],
                    np.repeat(z_dens[i : i + 1], n, axis=0),
                    valence.astype(float),
                ]
            )
        )
        tgt.append(np.array(corr))
        mat.append(np.full(n, j))
        gap.append(np.full(n, rec["gap_pbe"]))
        val.append(valence)
        kp.append(states.kpt[sel])
    if not ids:
        raise ValueError("no state has a G0W0 label (no common materials or bands)")
    return StateTable(
        mat_ids=ids,
        features=np.concatenate(feats).astype(np.float32),
        target=np.concatenate(tgt).astype(np.float32),
        material=np.concatenate(mat),
        gap_pbe=np.concatenate(gap),
        valence=np.concatenate(val),
        kpt=np.concatenate(kp),
    )


class CorrectionMLP(nn.Module):
    """Three dense layers (SiLU) from the state features to the GW correction (eV)."""

    def __init__(self, n_in: int, hidden: int = 64):
        super().__init__()
        self.config = {"n_in": n_in, "hidden": hidden}
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def fit_mlp(
    x: np.ndarray, y: np.ndarray, *, hidden: int = 64, epochs: int = 300, lr: float = 3e-3, seed: int = 0
) -> tuple[CorrectionMLP, np.ndarray, np.ndarray]:
    """Fit on standardized features (full-batch Adam, L1 loss); returns (model, feature mean, feature std)."""
    torch.manual_seed(seed)
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(
        sd > 1e-3, sd, 1.0
    )  # a feature constant in training (e.g. one material's density) stays unscaled
    xt = torch.from_numpy(((x - mu) / sd).astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32))
    model = CorrectionMLP(x.shape[1], hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(epochs):
        loss = torch.nn.functional.l1_loss(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, mu, sd


@torch.no_grad()
def predict_mlp(model: CorrectionMLP, mu: np.ndarray, sd: np.ndarray, x: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(((x - mu) / sd).astype(np.float32))).numpy()


def scissor_fit(gap: np.ndarray, valence: np.ndarray, y: np.ndarray) -> dict[bool, np.ndarray]:
    """Least-squares (a, b) of correction = a + b·gap_PBE, for valence (True) and conduction (False) states."""
    out = {}
    for v in (True, False):
        m = valence == v
        a = np.column_stack([np.ones(m.sum()), gap[m]])
        out[v] = np.linalg.lstsq(a, y[m], rcond=None)[0]
    return out


def scissor_predict(coef: dict[bool, np.ndarray], gap: np.ndarray, valence: np.ndarray) -> np.ndarray:
    return np.where(valence, coef[True][0] + coef[True][1] * gap, coef[False][0] + coef[False][1] * gap)


def material_folds(n_materials: int, n_folds: int, seed: int = 0) -> list[np.ndarray]:
    """Material indices split into ``min(n_folds, n_materials)`` folds (shuffled, sizes differ by ≤ 1)."""
    order = np.random.default_rng(seed).permutation(n_materials)
    return [f for f in np.array_split(order, min(n_folds, n_materials)) if len(f)]


def _fit_predict(
    x: np.ndarray,
    table: StateTable,
    train: np.ndarray,
    test: np.ndarray,
    *,
    residual: bool,
    seed: int,
    **fit_kw,
) -> dict[str, np.ndarray]:
    """Predictions on ``test`` rows of the MLP (direct, or scissor + residual network), the mean and the scissor,
    all fitted on the ``train`` rows only."""
    coef = scissor_fit(table.gap_pbe[train], table.valence[train], table.target[train])
    base_tr = scissor_predict(coef, table.gap_pbe[train], table.valence[train]) if residual else 0.0
    base_te = scissor_predict(coef, table.gap_pbe[test], table.valence[test])
    model, mu, sd = fit_mlp(x[train], table.target[train] - base_tr, seed=seed, **fit_kw)
    return {
        "model": predict_mlp(model, mu, sd, x[test]) + (base_te if residual else 0.0),
        "mean": np.full(int(test.sum()), table.target[train].mean()),
        "scissor": base_te,
    }


def cross_validate(
    table: StateTable,
    *,
    n_folds: int = 10,
    seed: int = 0,
    columns: Sequence[int] | None = None,
    residual: bool = False,
    **fit_kw,
) -> dict:
    """10-fold CV by material of the MLP (on ``columns`` of the features, default all; ``residual``: scissor +
    network, see the module docstring) and of both baselines.

    Returns per-fold MAEs (eV, over the fold's states) and their mean ± std, the pooled out-of-fold MAE and the
    out-of-fold MAE of each material, for ``model``, ``mean`` and ``scissor``; plus the out-of-fold predictions.
    """
    check_trainable(table.mat_ids, context="GW-correction cross-validation")
    cols = list(columns) if columns is not None else list(range(table.features.shape[1]))
    x = table.features[:, cols]
    pred = {k: np.full(len(table.target), np.nan) for k in ("model", "mean", "scissor")}
    folds = material_folds(len(table.mat_ids), n_folds, seed)
    if len(folds) < n_folds:
        log.warning(
            "%d-fold CV by material needs >= %d labelled materials; %d given: %d folds (leave one material out)",
            n_folds,
            n_folds,
            len(table.mat_ids),
            len(folds),
        )
    per_fold: dict[str, list[float]] = {k: [] for k in pred}
    for f in folds:
        test = np.isin(table.material, f)
        out = _fit_predict(x, table, ~test, test, residual=residual, seed=seed, **fit_kw)
        for k in pred:
            pred[k][test] = out[k]
            per_fold[k].append(float(np.abs(pred[k][test] - table.target[test]).mean()))
    out = {
        "n_folds": len(folds),
        "n_materials": len(table.mat_ids),
        "n_states": len(table.target),
        "residual": residual,
    }
    for k in pred:
        err = np.abs(pred[k] - table.target)
        out[k] = {
            "mae_pooled": float(err.mean()),
            "mae_fold_mean": float(np.mean(per_fold[k])),
            "mae_fold_std": float(np.std(per_fold[k])),
            "per_fold": per_fold[k],
            "per_material": {m: float(err[table.material == j].mean()) for j, m in enumerate(table.mat_ids)},
        }
    out["predictions"] = {k: v.tolist() for k, v in pred.items()}
    return out


def at_kpoint(kpt: np.ndarray, k0: Sequence[float]) -> np.ndarray:
    """Rows whose scaled k-point equals ``k0`` modulo reciprocal lattice vectors."""
    d = (np.asarray(kpt, float) - np.asarray(k0, float) + 0.5) % 1.0 - 0.5
    return np.all(np.abs(d) < 1e-6, axis=1)


def k_interpolation(
    table: StateTable,
    *,
    k0: Sequence[float] = (0.0, 0.0, 0.0),
    seed: int = 0,
    columns: Sequence[int] | None = None,
    residual: bool = False,
    **fit_kw,
) -> dict:
    """k-interpolation as in Hou, Wu & Qiu (2024): fit on the states at one k-point ``k0`` (default Γ) of every
    material, predict the states at all other k-points of the same materials.

    The MLP (direct, or scissor + residual network) and both baselines (mean correction, linear scissor from the
    PBE gap) are fitted on the ``k0`` rows only; returns MAEs (eV) over the other rows, pooled and per material,
    with the row counts.
    """
    check_trainable(table.mat_ids, context="GW-correction k-interpolation")
    train = at_kpoint(table.kpt, k0)
    test = ~train
    if not train.any() or not test.any():
        raise ValueError(f"k-interpolation needs states at k0 = {list(k0)} and at other k-points")
    cols = list(columns) if columns is not None else list(range(table.features.shape[1]))
    pred = _fit_predict(table.features[:, cols], table, train, test, residual=residual, seed=seed, **fit_kw)
    y, mat = table.target[test], table.material[test]
    out: dict = {
        "k0": [float(v) for v in k0],
        "n_train_states": int(train.sum()),
        "n_test_states": int(test.sum()),
        "residual": residual,
    }
    for k, p in pred.items():
        err = np.abs(p - y)
        out[k] = {
            "mae": float(err.mean()),
            "per_material": {table.mat_ids[j]: float(err[mat == j].mean()) for j in np.unique(mat)},
        }
    return out
