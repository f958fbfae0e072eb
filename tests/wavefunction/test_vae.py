"""The state VAE: invariances on real GPAW states of Si, R², training, save/load."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pymatgen.core import Lattice, Structure  # noqa: E402

from optiladder.engine.wavefunctions import (  # noqa: E402
    WavefunctionProtocol,
    export_wavefunctions,
    write_wavefunctions,
)
from optiladder.wavefunction.data import load_states, r2_score, resample, scale_states  # noqa: E402
from optiladder.wavefunction.vae import (  # noqa: E402
    PERMS,
    POOLINGS,
    StateVAE,
    aligned_r2,
    aligned_sq_err,
    encode_states,
    load_vae,
    reconstruct,
    save_vae,
    train_vae,
)

#: all 8 bands from the bottom (4 valence + 4 conduction): degenerate subspaces are complete except at the top
T4 = WavefunctionProtocol(name="test-8bands", ground_state="test", kgrid=(2, 2, 2), nside=4, production=False)
PERM = (1, 2, 0)  # a'_i = a_PERM[i]


@pytest.fixture(scope="module")
def si_pair(tmp_path_factory):
    """Si in its standard primitive cell, and the same crystal with cyclically permuted lattice vectors."""
    work = tmp_path_factory.mktemp("vae")
    a = export_wavefunctions("agm003157600", T4, workdir=work)
    s = Structure.from_dict(a["meta"]["structure"])
    m = s.lattice.matrix[list(PERM)]
    perm = Structure(Lattice(m), s.species, s.frac_coords[:, list(PERM)])
    b = export_wavefunctions(perm, T4, name="Si-permuted", workdir=work, symmetrize=False)
    return a, b


def _subspaces(eig: np.ndarray, top: int) -> list[list[int]]:
    """Groups of degenerate band positions (1 meV), dropping any group that touches the top exported band."""
    groups, cur = [], [0]
    for i in range(1, len(eig)):
        if abs(eig[i] - eig[cur[-1]]) < 1e-3:
            cur.append(i)
        else:
            groups.append(cur)
            cur = [i]
    groups.append(cur)
    return [g for g in groups if top not in g]


def _subspace_fields(d: dict, perm=None) -> tuple[list[np.ndarray], list[tuple]]:
    """sqrt of the summed |φ|² of each complete degenerate subspace at each k; keys (k in the original frame, bands)."""
    out, keys = [], []
    for k, kp in enumerate(d["kpts"]):
        kk = np.round(kp % 1.0, 6)
        if perm is not None:  # k'_i = k_PERM[i]  ->  k_j = k'_{PERM^-1[j]}
            kk = kk[np.argsort(perm)]
        for g in _subspaces(d["eigenvalues"][k], top=len(d["bands"]) - 1):
            dens = (d["wf"][k, g].astype(np.float64) ** 2).sum(0)
            field = np.sqrt(dens)
            if perm is not None:
                field = field.transpose(np.argsort(perm))
            out.append(field)
            keys.append((tuple(kk), tuple(g)))
    return out, keys


@pytest.mark.slow
@pytest.mark.parametrize("pooling", POOLINGS)
def test_latent_invariant_under_lattice_permutation_and_origin_shift(si_pair, pooling):
    a, b = si_pair
    # the permuted calculation's eigenvalues are those of the original at the permuted k-points
    fa, ka = _subspace_fields(a)
    fb, kb = _subspace_fields(b, PERM)
    common = sorted(set(ka) & set(kb))
    assert len(common) >= 12
    xa = np.stack([fa[ka.index(c)] for c in common])
    xb = np.stack([fb[kb.index(c)] for c in common])
    # physics: the permuted crystal's subspace densities are the original ones on permuted axes
    assert np.abs(xa - xb).max() / xa.max() < 0.02
    torch.manual_seed(0)
    # the model sees each field in its own calculation's frame (the permuted one on permuted axes)
    sa, _ = scale_states(xa.astype(np.float32))
    sb, _ = scale_states(np.stack([x.transpose(PERM) for x in xb]).astype(np.float32))
    if pooling == "aligned":  # its basis is fitted on (here: these) states of the original frame
        model = StateVAE(channels=4, latent=8, pooling=pooling, grid=sa.shape[-1])
        model.fit_basis(sa)
    else:
        model = StateVAE(channels=4, latent=8, pooling=pooling)
    model.eval()
    za, zb = encode_states(model, sa), encode_states(model, sb)
    spread = np.abs(za[:, None] - za[None]).max()
    assert spread > 1e-3  # different states do get different codes
    assert np.abs(za - zb).max() < 0.02 * spread
    # origin shifted by whole grid steps of the native grid: identical codes (to float rounding)
    zs = encode_states(model, np.roll(sa, (1, 5, 3), axis=(1, 2, 3)))
    assert np.abs(zs - za).max() < 1e-5 * max(1.0, np.abs(za).max())


def test_r2_known_cases():
    y = np.array([1.0, -1.0, 1.0, -1.0])
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.zeros(4)) == pytest.approx(0.0)
    assert r2_score(y, y + 0.5) == pytest.approx(0.75)  # Σ res² = 4·0.25, Σ tot² = 4
    assert r2_score(y, -y) == pytest.approx(-3.0)
    with pytest.raises(ValueError, match="constant"):
        r2_score(np.ones(3), np.ones(3))


def test_aligned_error_is_the_minimum_over_shifts_and_permutations():
    rng = np.random.default_rng(0)
    t = rng.random((3, 4, 4, 4)).astype(np.float32)
    # a reconstruction that is the target moved by a permutation and a shift: aligned error 0, plain R² poor
    moved = np.stack([np.roll(x.transpose(2, 0, 1), (1, 3, 2), axis=(0, 1, 2)) for x in t])
    assert aligned_r2(t, moved) == pytest.approx(1.0, abs=1e-6)
    assert r2_score(t, moved) < 0.0
    # against brute force over all 6 × 4³ group elements, for unrelated fields
    r = rng.random((3, 4, 4, 4)).astype(np.float32)
    got = aligned_sq_err(torch.from_numpy(r), torch.from_numpy(t)).numpy()
    for i in range(3):
        brute = min(
            ((np.roll(r[i].transpose(p), s, axis=(0, 1, 2)) - t[i]) ** 2).sum()
            for p in PERMS
            for s in np.ndindex(4, 4, 4)
        )
        assert got[i] == pytest.approx(brute, rel=1e-4)
    # a constant field gains nothing from alignment: R² = plain R² of the mean
    flat = np.full_like(t, t.mean())
    assert aligned_r2(t, flat) == pytest.approx(0.0, abs=1e-6)


def test_resample_is_exact_on_coincident_points():
    x = np.arange(20) / 20
    f = np.cos(2 * np.pi * x)[:, None, None] * np.ones((20, 20, 20))
    g = resample(f, 10)
    np.testing.assert_allclose(g[:, 0, 0], np.cos(2 * np.pi * np.arange(10) / 10), atol=1e-6)
    np.testing.assert_allclose(resample(f, 20), f, atol=1e-6)


def test_second_moment_pooling_is_invariant_and_round_trips(tmp_path):
    """The ``mean-max-cov`` encoder: codes unchanged by whole-step origin shifts and axis permutations, different
    for different fields, its pooling recorded in the folder and restored; an unknown pooling is refused."""
    torch.manual_seed(0)
    model = StateVAE(channels=4, latent=8, pooling="mean-max-cov").eval()
    assert model.config["pooling"] == "mean-max-cov" and "pooling" not in StateVAE(4, 8).config
    x = np.random.default_rng(0).random((3, 8, 8, 8), dtype=np.float32)
    z = encode_states(model, x)
    assert np.abs(z[0] - z[1]).max() > 1e-3
    for moved in (np.roll(x, (2, 7, 3), axis=(1, 2, 3)), x.transpose(0, 3, 1, 2), x.transpose(0, 2, 1, 3)):
        np.testing.assert_allclose(encode_states(model, np.ascontiguousarray(moved)), z, atol=1e-5)
    back, _ = load_vae(save_vae(model, tmp_path / "cov", {"task": "test"}))
    assert back.pooling == "mean-max-cov"
    np.testing.assert_array_equal(encode_states(back, x), z)
    with pytest.raises(ValueError, match="pooling"):
        StateVAE(4, 8, pooling="sum")


@pytest.mark.slow
def test_training_overfits_real_states_and_round_trips(si_pair, tmp_path):
    a, _ = si_pair
    path = write_wavefunctions(a, tmp_path / "si.npz")
    states = load_states([path], grid=8)
    assert states.x.shape == (8 * 8, 8, 8, 8) and states.density.shape == (1, 8, 8, 8)
    assert 0.99 < states.x.max() <= 1.0
    x = states.x[::4]  # 16 states: bands 0 and 4 (a valence and a conduction band) at each of the 8 k-points
    torch.manual_seed(0)
    model, hist = train_vae(x, channels=4, latent=8, epochs=200, batch_size=4, lr=3e-3)  # 800 steps, ~25 s
    assert hist[-1]["mse"] < 0.2 * hist[0]["mse"]
    recon = reconstruct(model, x)
    assert recon.shape == x.shape  # the adaptive last layer returns the input grid
    # the 16 states are reproduced (up to the shifts/permutations the latent forgets; measured 0.90) ...
    assert aligned_r2(x, recon) > 0.85
    # ... because the code carries them: one decoded field for all (a decoder that ignored z) fails (measured < 0)
    with torch.no_grad():
        blind = model.decode(torch.zeros(len(x), 8), (8, 8, 8))[:, 0].numpy()
    assert aligned_r2(x, blind) < 0.5
    out = save_vae(model, tmp_path / "vae", {"task": "test"})
    back, card = load_vae(out)
    assert card["weights"]["n_parameters"] == sum(p.numel() for p in model.parameters())
    np.testing.assert_allclose(encode_states(back, x), encode_states(model, x), atol=1e-6)
    (out / "weights.pt").write_bytes((out / "weights.pt").read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(ValueError, match="checksum"):
        load_vae(out)


def test_cosine_schedule_ends_within_the_time_budget():
    from optiladder.wavefunction.vae import _cosine_lr

    assert _cosine_lr(1e-3, 0.0) == pytest.approx(1e-3)
    assert _cosine_lr(1e-3, 1.0) == pytest.approx(1e-4)
    assert _cosine_lr(1e-3, 5.0) == pytest.approx(1e-4)  # clipped past the end
    x = np.random.default_rng(0).random((6, 6, 6, 6), dtype=np.float32)
    _, hist = train_vae(x, channels=2, latent=4, epochs=5, batch_size=3)
    lrs = [h["lr"] for h in hist]
    assert len(hist) == 5 and lrs[0] == pytest.approx(3e-3) and all(np.diff(lrs) < 0)
    _, hist = train_vae(x, channels=2, latent=4, epochs=10_000, batch_size=3, time_budget_s=1e-3)
    assert len(hist) == 1  # the next epoch would overrun the budget: stop


def test_vae_study_trains_each_latent_and_width_and_selects_on_validation(monkeypatch, tmp_path):
    """Names, selection and the incremental report of :func:`vae_study` (synthetic states, no exports)."""
    import json

    from optiladder.wavefunction import study
    from optiladder.wavefunction.data import StateSet

    ids = ["agm003157600", "agm002125834", "agm002221093"]  # train, validation, test split
    n = 8
    rng = np.random.default_rng(1)
    fake = StateSet(
        grid=6,
        mat_ids=ids,
        x=rng.random((3 * n, 6, 6, 6), dtype=np.float32),
        material=np.repeat(np.arange(3), n),
        kpt=np.zeros((3 * n, 3)),
        band=np.tile(np.arange(n), 3),
        eps=np.zeros(3 * n),
        valence=np.tile(np.arange(n) < n // 2, 3),
        density=np.zeros((3, 6, 6, 6), np.float32),
        meta=[{"mat_id": m} for m in ids],
    )
    monkeypatch.setattr(study, "load_states", lambda paths, grid: fake)
    res = study.vae_study(
        ["unused"],
        tmp_path / "m",
        channels=[2],
        latent=[4, 16],
        grid=6,
        epochs=1,
        pca_ks=(2,),
        report=tmp_path / "vae.json",
        poolings=("mean-max", "aligned"),
    )
    assert [m["name"] for m in res["models"]] == [
        "vae-c2-z4",
        "vae-c2-z4-aligned",
        "vae-c2",
        "vae-c2-aligned",
    ]
    for m in res["models"]:  # the aligned entries also score their untrained start (the aligned PCA)
        assert ("untrained" in m) == (m["pooling"] == "aligned")
        if "untrained" in m:
            assert set(m["untrained"]) == {"train", "validation", "test"}
    assert sorted(res["pca"]) == ["16", "2", "4"]  # PCA beside every latent size
    assert res["train_materials"] == ["agm003157600"]  # never the held-out materials
    best = max(res["models"], key=lambda m: m["validation"]["r2_aligned"])
    assert res["selected"] == best["name"]
    assert json.loads((tmp_path / "vae.json").read_text())["selected"] == best["name"]
    for m in res["models"]:
        back, card = load_vae(tmp_path / "m" / m["name"])
        assert back.latent == m["latent"] == card["latent"]


def test_aligned_vae_is_invariant_and_starts_as_the_aligned_pca(tmp_path):
    """``pooling="aligned"``: the code is unchanged by whole-step shifts and axis permutations; the FFT alignment
    finds the frame a brute-force search over all 6·g³ frames finds; before training the model decodes exactly the
    aligned PCA's reconstruction; the basis travels with the saved folder."""
    rng = np.random.default_rng(0)
    g = 6
    x = rng.random((30, g, g, g), dtype=np.float32)
    model = StateVAE(channels=2, latent=4, pooling="aligned", grid=g)
    model.fit_basis(x, iterations=1)
    model.eval()
    b = model.basis
    _, coef = b.align(torch.from_numpy(x[:2]))
    # before training the model decodes exactly the aligned PCA's reconstruction
    np.testing.assert_allclose(reconstruct(model, x[:2]), b.expand(coef).numpy(), atol=1e-5)
    # invariance of the whole encoder, its nonlinear paths included (they start at zero: switch them on)
    torch.manual_seed(3)
    with torch.no_grad():
        model.to_stats[-1].weight.normal_(0, 0.3)
    z = encode_states(model, x[:3])
    # the untrained copy (the study's "untrained" row) is the aligned PCA again, on the same basis
    np.testing.assert_allclose(reconstruct(model.untrained_copy(), x[:2]), b.expand(coef).numpy(), atol=1e-5)
    assert np.abs(z[0] - z[1]).max() > 1e-3
    for moved in (np.roll(x[:3], (2, 5, 1), axis=(1, 2, 3)), x[:3].transpose(0, 3, 1, 2)):
        np.testing.assert_allclose(encode_states(model, np.ascontiguousarray(moved)), z, atol=1e-5)
    mean, comp = b.mean.numpy().astype(np.float64), b.components.numpy().astype(np.float64)

    def residual(y):
        d = y.ravel() - mean
        return d @ d - ((comp @ d) ** 2).sum()

    aligned, _ = b.align(torch.from_numpy(x[:2]))
    for i in range(2):
        brute = min(
            residual(np.roll(x[i].transpose(p), s, axis=(0, 1, 2)).astype(np.float64))
            for p in PERMS
            for s in np.ndindex(g, g, g)
        )
        assert residual(aligned[i].numpy().astype(np.float64)) == pytest.approx(brute, rel=1e-5)
    back, _ = load_vae(save_vae(model, tmp_path / "aligned", {"task": "test"}))
    np.testing.assert_array_equal(encode_states(back, x[:3]), z)
    with pytest.raises(ValueError, match="grid"):
        encode_states(model, np.zeros((1, 8, 8, 8), np.float32))
    with pytest.raises(ValueError, match="n_basis"):
        StateVAE(channels=2, latent=4, pooling="aligned", grid=g, n_basis=6)


def test_committed_aligned_vae_loads_and_is_invariant():
    """The report's aligned model (``reports/wavefunction/models/vae-c8-z64-aligned``) loads (checksum, strict) and
    its codes are unchanged by a shift and a permutation of real-looking fields."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "reports/wavefunction/models/vae-c8-z64-aligned"
    model, card = load_vae(folder)
    assert model.pooling == "aligned" and model.basis.k == 64 and card["grid"] == 8
    x = (np.random.default_rng(2).random((2, 8, 8, 8), dtype=np.float32) ** 6).astype(np.float32)
    z = encode_states(model, x)
    moved = np.ascontiguousarray(np.roll(x, (1, 4, 6), axis=(1, 2, 3)).transpose(0, 2, 3, 1))
    np.testing.assert_allclose(encode_states(model, moved), z, atol=1e-5)


def test_aligned_basis_learns_prototypes_wherever_they_sit():
    """Fields that are randomly shifted and permuted copies of 3 prototypes (plus a little noise): a 3-component
    aligned basis explains them almost fully (R² up to shifts/permutations > 0.95), a frame-bound PCA of the same
    size does not (< 0.7). Fails if the alignment or the Procrustes refit is wrong."""
    from optiladder.wavefunction.vae import AlignedBasis

    rng = np.random.default_rng(1)
    g = 6
    protos = rng.random((3, g, g, g)).astype(np.float32) ** 4
    xs = []
    for i in range(60):
        y = protos[i % 3].transpose(tuple(rng.permutation(3)))
        y = np.roll(y, tuple(rng.integers(0, g, 3)), axis=(0, 1, 2))
        xs.append(y + 0.01 * rng.random((g, g, g)))
    x = np.stack(xs).astype(np.float32)
    basis = AlignedBasis(g, 3)
    basis.fit(torch.from_numpy(x), iterations=3)
    _, coef = basis.align(torch.from_numpy(x))
    assert aligned_r2(x, basis.expand(coef).numpy()) > 0.95
    flat = x.reshape(len(x), -1).astype(np.float64)
    mu = flat.mean(0)
    v = np.linalg.svd(flat - mu, full_matrices=False)[2][:3]
    frame = (mu + (flat - mu) @ v.T @ v).reshape(x.shape).astype(np.float32)
    assert aligned_r2(x, frame) < 0.7
