"""Cross-validation by material of the GW-correction model and its baselines (on tables with known answers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from optiladder.data.splits import LeakageError  # noqa: E402
from optiladder.wavefunction.downstream import (  # noqa: E402
    StateTable,
    at_kpoint,
    cross_validate,
    k_interpolation,
    material_folds,
    scissor_fit,
    scissor_predict,
)

TRAIN_IDS = [
    "agm003157600",
    "agm003157770",
    "agm003273604",
    "agm003157746",
    "agm003157626",
    "agm003283740",
    "agm003273599",
    "agm003157736",
    "agm003157693",
    "agm003157673",
    "agm003157567",
    "agm002176626",
]


def _table(rng, target_fn) -> StateTable:
    n_mat, per = len(TRAIN_IDS), 40
    material = np.repeat(np.arange(n_mat), per)
    gap = np.repeat(rng.uniform(0.5, 9.0, n_mat), per)
    valence = np.tile(np.arange(per) % 2 == 0, n_mat)
    latent = rng.normal(size=(n_mat * per, 4))
    eps = np.where(valence, -rng.uniform(0, 3, n_mat * per), gap + rng.uniform(0, 3, n_mat * per))
    feats = np.column_stack([eps, latent, valence.astype(float)]).astype(np.float32)
    return StateTable(
        mat_ids=list(TRAIN_IDS),
        features=feats,
        target=target_fn(gap, valence, latent).astype(np.float32),
        material=material,
        gap_pbe=gap,
        valence=valence,
        kpt=np.zeros((n_mat * per, 3)),
    )


def test_folds_partition_materials():
    folds = material_folds(13, 10, seed=1)
    assert len(folds) == 10 and sorted(np.concatenate(folds).tolist()) == list(range(13))
    assert {len(f) for f in folds} == {1, 2}


def test_scissor_baseline_recovers_a_linear_gap_law():
    rng = np.random.default_rng(0)
    gap = rng.uniform(1, 8, 50)
    val = rng.random(50) < 0.5
    y = np.where(val, -0.1 - 0.05 * gap, 0.2 + 0.3 * gap)
    coef = scissor_fit(gap, val, y)
    np.testing.assert_allclose(coef[True], [-0.1, -0.05], atol=1e-10)
    np.testing.assert_allclose(scissor_predict(coef, gap, val), y, atol=1e-10)


def test_cv_scores_model_and_baselines_out_of_fold():
    rng = np.random.default_rng(0)
    # a correction that depends on a latent feature (not on the gap): the model must beat both baselines
    t = _table(rng, lambda gap, val, z: 0.4 * np.tanh(2 * z[:, 0]) + np.where(val, -0.3, 0.5))
    res = cross_validate(t, n_folds=6, epochs=300)
    assert res["n_folds"] == 6 and res["n_states"] == len(t.target)
    assert res["model"]["mae_pooled"] < 0.5 * res["scissor"]["mae_pooled"]
    assert res["scissor"]["mae_pooled"] < res["mean"]["mae_pooled"]  # the valence/conduction split helps
    # a pure linear scissor law: the scissor baseline is exact out of fold
    t2 = _table(rng, lambda gap, val, z: np.where(val, -0.05 * gap, 0.1 + 0.2 * gap))
    res2 = cross_validate(t2, n_folds=4, epochs=50)
    assert res2["scissor"]["mae_pooled"] < 1e-4 < res2["mean"]["mae_pooled"]


def test_residual_model_adds_the_latent_part_to_the_scissor():
    rng = np.random.default_rng(2)
    # a material-level gap law plus a latent-dependent part: scissor + residual network beats the scissor
    t = _table(rng, lambda gap, val, z: np.where(val, -0.1 * gap, 0.3 * gap) + 0.3 * np.tanh(2 * z[:, 0]))
    res = cross_validate(t, n_folds=4, epochs=300, residual=True)
    assert res["residual"] and res["model"]["mae_pooled"] < 0.6 * res["scissor"]["mae_pooled"]
    assert set(res["model"]["per_material"]) == set(t.mat_ids)
    # the pure gap law: the residual network stays close to the (exact) scissor out of fold
    t2 = _table(rng, lambda gap, val, z: np.where(val, -0.05 * gap, 0.1 + 0.2 * gap))
    res2 = cross_validate(t2, n_folds=4, epochs=100, residual=True)
    assert res2["model"]["mae_pooled"] < 0.1


def test_cv_refuses_held_out_materials():
    t = _table(np.random.default_rng(0), lambda gap, val, z: gap * 0)
    t.mat_ids[0] = "agm003157621"  # SiC, a test-split material
    with pytest.raises(LeakageError):
        cross_validate(t, n_folds=3, epochs=1)


@pytest.mark.slow
@pytest.mark.gpaw
def test_table_joins_real_states_with_the_committed_si_labels(tmp_path):
    """Si states on the full 4×4×4 grid (cheap ground state) get the committed G0W0 labels via the IBZ map."""
    import torch

    from optiladder.engine.gw import read_gw_record
    from optiladder.engine.wavefunctions import (
        WavefunctionProtocol,
        export_wavefunctions,
        write_wavefunctions,
    )
    from optiladder.wavefunction.data import load_states
    from optiladder.wavefunction.downstream import build_table
    from optiladder.wavefunction.vae import StateVAE

    labels = Path(__file__).resolve().parents[2] / "dataset/gw/gpaw-g0w0-v1/agm003157600.json.gz"
    rec = read_gw_record(labels)
    wp = WavefunctionProtocol(name="t-444", ground_state="test", kgrid=(4, 4, 4), nside=1, production=False)
    d = export_wavefunctions("agm003157600", wp, workdir=tmp_path)
    states = load_states([write_wavefunctions(d, tmp_path / "si.npz")], grid=8)
    torch.manual_seed(0)
    table = build_table(states, {rec["mat_id"]: rec}, StateVAE(channels=4, latent=8).eval())
    assert table.features.shape == (64 * 2, 1 + 8 + 8 + 1) and table.mat_ids == ["agm003157600"]
    v = table.valence
    assert v.sum() == 64 and table.features[v, 0].max() == pytest.approx(
        0.0, abs=1e-6
    )  # ε relative to the VBM
    assert table.features[~v, 0].min() == pytest.approx(rec["gap_pbe"], abs=1e-3)
    corr = np.asarray(rec["eps_qp"]) - np.asarray(rec["eps_dft"])
    for rows, col in ((v, 0), (~v, 1)):  # every state gets an IBZ label, and every IBZ label is used
        dist = np.abs(table.target[rows][:, None] - corr[None, :, col])
        assert dist.min(1).max() < 1e-4 and dist.min(0).max() < 1e-4


def test_k_interpolation_fits_on_gamma_and_scores_the_other_kpoints():
    rng = np.random.default_rng(1)
    t = _table(rng, lambda gap, val, z: 0.4 * np.tanh(2 * z[:, 0]) + np.where(val, -0.3, 0.5))
    # 40 states per material: 8 at Γ, the others at k-points of a 4×4×4 grid (and one periodic image of Γ)
    grid = np.array([[i, j, k] for i in range(4) for j in range(4) for k in range(4)], float)[1:] / 4
    per = 40
    kpt = np.concatenate(
        [np.vstack([np.zeros((7, 3)), [[1.0, 0.0, -1.0]], grid[: per - 8]]) for _ in t.mat_ids]
    )
    t.kpt = kpt
    assert at_kpoint(kpt, (0, 0, 0)).sum() == 8 * len(t.mat_ids)
    res = k_interpolation(t, epochs=300)
    assert res["n_train_states"] == 8 * len(t.mat_ids) and res["n_test_states"] == 32 * len(t.mat_ids)
    assert set(res["model"]["per_material"]) == set(t.mat_ids)
    assert res["model"]["mae"] < 0.6 * res["scissor"]["mae"] and res["scissor"]["mae"] < res["mean"]["mae"]
    with pytest.raises(ValueError, match="needs states at k0"):
        k_interpolation(t, k0=(0.125, 0, 0), epochs=1)
    t.mat_ids[0] = "agm003157621"  # a test-split material: refused
    with pytest.raises(LeakageError):
        k_interpolation(t, epochs=1)
