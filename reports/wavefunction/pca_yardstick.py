"""Yardstick for the VAE's R²: a linear code (PCA of the training states) of k components, same states and split.

``python reports/wavefunction/pca_yardstick.py EXPORT_DIR`` (the wf-pbe-v1 exports); prints R² on the training
sample and on the held-out (validation/test-split) materials for k = 4, 8, 16, 32. PCA keeps the frame (it is not
invariant under shifts or lattice permutations), so it bounds what a frame-keeping linear code reaches here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from optiladder.wavefunction.data import load_states, r2_score, split_materials
from optiladder.wavefunction.study import _sample

if __name__ == "__main__":
    states = load_states(sorted(Path(sys.argv[1]).glob("*.npz")), grid=8)
    parts = split_materials(states.mat_ids)
    train, held = states.subset(parts["train"]), states.subset(parts["held_out"])
    train.check_trainable("PCA yardstick")
    xi = train.x[_sample(train, 48, 0)].reshape(-1, 8**3)
    xh = held.x[_sample(held, 64, 1)].reshape(-1, 8**3)
    mu = xi.mean(0)
    vt = np.linalg.svd(xi - mu, full_matrices=False)[2]
    for k in (4, 8, 16, 32):
        p = vt[:k]
        print(
            f"k={k:>2}  R² train {r2_score(xi, mu + (xi - mu) @ p.T @ p):.3f}  held-out {r2_score(xh, mu + (xh - mu) @ p.T @ p):.3f}"
        )
