"""Screen (validation only): does a *fixed* canonical frame help a linear code of the states? (2026-12-08)

PCA-64 of train-split states, scored on the validation materials' states by R² up to shifts/permutations
(``aligned_r2``), with the states (a) in their export's own frame, (b) each moved to the lexicographically largest
of its 6·g³ shifted/permuted copies, (c) all states of a material moved by the frame that the same rule picks for
the material's density. Printed; quoted in ``reports/wavefunction/README.md``. Needs the wf-pbe-v1 exports in the
cache (``optiladder wavefunction export``). Run: ``python reports/wavefunction/screens/canonical_frames.py``.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from optiladder.wavefunction.data import load_states, split_materials
from optiladder.wavefunction.study import _sample
from optiladder.wavefunction.vae import PERMS, aligned_r2


def lexmax_frame(field: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(shift, permutation) that makes ``field`` lexicographically largest (first key: its maximum at the origin)."""
    best = None
    for p in np.argwhere(field >= field.max()):
        rolled = np.roll(field, tuple(-p), axis=(0, 1, 2))
        for perm in PERMS:
            key = tuple(rolled.transpose(perm).ravel())
            if best is None or key > best[0]:
                best = (key, tuple(int(q) for q in p), perm)
    return best[1], best[2]


def move(x: np.ndarray, frame) -> np.ndarray:
    shift, perm = frame
    return np.roll(x, tuple(-q for q in shift), axis=(-3, -2, -1)).transpose(
        *range(x.ndim - 3), *(x.ndim - 3 + q for q in perm)
    )


def pca64(xtr: np.ndarray, xva: np.ndarray, k: int = 64) -> float:
    flat = xtr.reshape(len(xtr), -1).astype(np.float64)
    mean = flat.mean(0)
    v = np.linalg.svd(flat - mean, full_matrices=False)[2][:k]
    f = xva.reshape(len(xva), -1)
    return aligned_r2(xva, (mean + (f - mean) @ v.T @ v).reshape(xva.shape).astype(np.float32))


def main() -> None:
    cache = os.environ.get("OPTILADDER_CACHE", os.path.expanduser("~/.cache/optiladder"))
    states = load_states(sorted(glob.glob(f"{cache}/wavefunctions/wf-pbe-v1/*.npz")), grid=8)
    parts = split_materials(states.mat_ids)
    by_density = [lexmax_frame(d) for d in states.density]
    x_density = np.concatenate([move(states.x[states.material == i], f) for i, f in enumerate(by_density)])
    order = np.concatenate([np.flatnonzero(states.material == i) for i in range(len(states.mat_ids))])
    x_density_all = np.empty_like(states.x)
    x_density_all[order] = x_density
    tr, va = states.subset(parts["train"]), states.subset(parts["validation"])
    itr, iva = _sample(tr, 64, 0), _sample(va, 64, 1)
    sel_tr = np.flatnonzero(np.isin(states.material, [states.mat_ids.index(m) for m in tr.mat_ids]))[itr]
    sel_va = np.flatnonzero(np.isin(states.material, [states.mat_ids.index(m) for m in va.mat_ids]))[iva]
    xtr, xva = states.x[sel_tr], states.x[sel_va]
    lex = lambda xs: np.stack([move(f, lexmax_frame(f)) for f in xs])  # noqa: E731
    print(f"{len(xtr)} training states ({len(tr.mat_ids)} materials), {len(xva)} validation states")
    print(f"PCA-64, export frame:               {pca64(xtr, xva):.3f}")
    print(f"PCA-64, lexicographic frame per state: {pca64(lex(xtr), lex(xva)):.3f}")
    print(f"PCA-64, frame of the density:        {pca64(x_density_all[sel_tr], x_density_all[sel_va]):.3f}")


if __name__ == "__main__":
    main()
