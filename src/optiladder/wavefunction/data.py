"""Kohn–Sham states of wavefunction exports as VAE inputs: resampling to a model grid, scaling, splits, R².

A state |φ_nk(r)| comes on its material's real-space grid (``[n1, n2, n3]``, different per material); the VAE sees
it resampled (periodic trilinear interpolation, :func:`resample`) to a cubic model grid ``[g, g, g]`` in
fractional coordinates of the cell and divided by its maximum (values in [0, 1], the sigmoid output's range).
No torch here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.splits import check_trainable, split_of
from ..engine.wavefunctions import WavefunctionFileError, read_wavefunctions

log = logging.getLogger(__name__)


def resample(field_: np.ndarray, grid: int) -> np.ndarray:
    """Periodic trilinear resampling of ``[..., n1, n2, n3]`` onto ``[..., grid, grid, grid]`` (same fractional
    coordinates: point i ↦ i/grid of the cell); float32."""
    out = np.asarray(field_, dtype=np.float32)
    for ax in (-3, -2, -1):
        n = out.shape[ax]
        if n == grid:
            continue
        x = np.arange(grid) * (n / grid)
        i0 = np.floor(x).astype(int)
        w = (x - i0).astype(np.float32)
        a = np.take(out, i0 % n, axis=ax)
        b = np.take(out, (i0 + 1) % n, axis=ax)
        shape = [1] * out.ndim
        shape[ax] = grid
        w = w.reshape(shape)
        out = a * (1 - w) + b * w
    return out


def scale_states(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Divide each state ``[..., g, g, g]`` by its maximum; returns (scaled, maxima ``[...]``)."""
    m = x.reshape(*x.shape[:-3], -1).max(axis=-1)
    m = np.where(m > 0, m, 1.0).astype(np.float32)
    return (x / m[..., None, None, None]).astype(np.float32), m


@dataclass
class StateSet:
    """States of several materials on one model grid.

    ``x``: scaled |φ| ``[n_states, g, g, g]``; ``material``: index into ``mat_ids`` per state; ``kpt`` (scaled
    k ``[n_states, 3]``), ``band`` (GPAW index), ``eps`` (eV, relative to the material's VBM), ``valence``
    (bool); ``density``: scaled pseudo-density per material ``[n_materials, g, g, g]``.
    """

    grid: int
    mat_ids: list[str]
    x: np.ndarray
    material: np.ndarray
    kpt: np.ndarray
    band: np.ndarray
    eps: np.ndarray
    valence: np.ndarray
    density: np.ndarray
    meta: list[dict] = field(default_factory=list)

    def subset(self, mat_ids: Iterable[str]) -> StateSet:
        keep_ids = [m for m in self.mat_ids if m in set(mat_ids)]
        idx = [self.mat_ids.index(m) for m in keep_ids]
        remap = {old: new for new, old in enumerate(idx)}
        sel = np.isin(self.material, idx)
        return StateSet(
            grid=self.grid,
            mat_ids=keep_ids,
            x=self.x[sel],
            material=np.array([remap[i] for i in self.material[sel]], dtype=np.int64),
            kpt=self.kpt[sel],
            band=self.band[sel],
            eps=self.eps[sel],
            valence=self.valence[sel],
            density=self.density[idx],
            meta=[self.meta[i] for i in idx],
        )

    def check_trainable(self, context: str) -> None:
        """Raise LeakageError if any material is a validation or test material."""
        check_trainable(self.mat_ids, context=context)


def load_states(paths: Sequence[str | Path], grid: int = 12) -> StateSet:
    """Read wavefunction exports and resample every state and density onto ``grid³``.

    Unreadable files are reported (one line ``FILE: problem``) and skipped; the rest go on.
    """
    xs, mats, kp, bd, ep, va, dens, ids, metas = [], [], [], [], [], [], [], [], []
    for path in paths:
        try:
            d = read_wavefunctions(path)
        except WavefunctionFileError as exc:
            log.warning("%s", exc)
            continue
        meta = d["meta"]
        nk, nb = d["eigenvalues"].shape
        x, _ = scale_states(resample(d["wf"].astype(np.float32), grid))
        xs.append(x.reshape(nk * nb, grid, grid, grid))
        i = len(ids)
        ids.append(meta["mat_id"])
        metas.append(meta)
        mats.append(np.full(nk * nb, i, dtype=np.int64))
        kp.append(np.repeat(d["kpts"], nb, axis=0))
        bd.append(np.tile(d["bands"], nk))
        ep.append((d["eigenvalues"] - meta["vbm"]).reshape(-1))
        va.append(np.tile(d["bands"] < meta["nocc"], nk))
        dens.append(scale_states(resample(d["density"].astype(np.float32), grid))[0])
    if not ids:
        raise ValueError("no readable wavefunction export among the given files")
    return StateSet(
        grid=grid,
        mat_ids=ids,
        x=np.concatenate(xs),
        material=np.concatenate(mats),
        kpt=np.concatenate(kp),
        band=np.concatenate(bd),
        eps=np.concatenate(ep),
        valence=np.concatenate(va),
        density=np.stack(dens),
        meta=metas,
    )


def split_materials(mat_ids: Sequence[str]) -> dict[str, list[str]]:
    """Materials by the project's split: ``train`` (published train list or in none), ``validation``, ``test``,
    and ``held_out`` (validation + test)."""
    out: dict[str, list[str]] = {"train": [], "validation": [], "test": [], "held_out": []}
    for m in mat_ids:
        s = split_of(m)
        if s in ("train", "none"):
            out["train"].append(m)
        else:
            out[s].append(m)
            out["held_out"].append(m)
    return out


def r2_score(target: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination over all values: 1 − Σ(y−ŷ)² / Σ(y−ȳ)² (ȳ the mean over everything)."""
    y = np.asarray(target, dtype=np.float64).ravel()
    p = np.asarray(pred, dtype=np.float64).ravel()
    ss_res = float(((y - p) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    if ss_tot == 0:
        raise ValueError("R² undefined for a constant target")
    return 1.0 - ss_res / ss_tot
