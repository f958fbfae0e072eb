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
from optiladder.wavefunction.study import _sample, pca_r2
from optiladder.wavefunction.vae import PERMS


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


def main() -> None:
    cache = os.environ.get("OPTILADDER_CACHE", os.path.expanduser("~/.cache/optiladder"))
    states = load_states(sorted(glob.glob(f"{cache}/wavefunctions/wf-pbe-v1/*.npz")), grid=8)
    by_density = states.x.copy()  # every state of a material moved by the frame of its density
    for i, d in enumerate(states.density):
        sel = states.material == i
        by_density[sel] = move(states.x[sel], lexmax_frame(d))
    parts = split_materials(states.mat_ids)
    tr, va = states.subset(parts["train"]), states.subset(parts["validation"])
    rows_tr = np.flatnonzero(np.isin(np.array(states.mat_ids)[states.material], tr.mat_ids))[
        _sample(tr, 64, 0)
    ]
    rows_va = np.flatnonzero(np.isin(np.array(states.mat_ids)[states.material], va.mat_ids))[
        _sample(va, 64, 1)
    ]

    def pca64(x: np.ndarray) -> float:  # PCA fitted on the training rows, scored on the validation rows
        return pca_r2(x[rows_tr], {"validation": x[rows_va]}, (64,))[64]["validation"]["r2_aligned"]

    lex = np.stack([move(f, lexmax_frame(f)) for f in states.x[np.concatenate([rows_tr, rows_va])]])
    by_state = np.empty_like(states.x)
    by_state[np.concatenate([rows_tr, rows_va])] = lex
    print(f"{len(rows_tr)} training states ({len(tr.mat_ids)} materials), {len(rows_va)} validation states")
    print(f"PCA-64, export frame:                  {pca64(states.x):.3f}")
    print(f"PCA-64, lexicographic frame per state: {pca64(by_state):.3f}")
    print(f"PCA-64, frame of the density:          {pca64(by_density):.3f}")


if __name__ == "__main__":
    main()
