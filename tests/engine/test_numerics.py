"""Numerics options (same physics, different cost) and the open-shell refusal, with real GPAW."""

from __future__ import annotations

import numpy as np
import pytest

from optiladder.engine.calculate import OpenShellError, compute, prepare, valence_electrons
from optiladder.engine.numerics import NUMERICS, get_numerics, record_numerics
from optiladder.spectra import MODEL_GRID, interpolate, similarity_coefficient

pytestmark = [pytest.mark.gpaw]


def test_numerics_are_named_and_the_baseline_is_kept():
    assert set(NUMERICS) >= {"gpaw-dense-v1", "gpaw-direct-v1", "gpaw-direct-v2"}
    base = get_numerics("gpaw-dense-v1")
    assert base.iterative_pass and base.gpw_roundtrip and not base.direct_hamiltonian
    assert record_numerics({}) == "gpaw-dense-v1"  # records without the block: the baseline
    assert get_numerics(None).name == "gpaw-direct-v2"  # the default since bench/engine proved it
    assert get_numerics("gpaw-direct-v1").eigensolver == "gvx"  # kept callable
    assert record_numerics({"numerics": {"name": "gpaw-direct-v1"}}) == "gpaw-direct-v1"
    with pytest.raises(ValueError, match="unknown numerics"):
        get_numerics("nope")


@pytest.mark.slow
def test_direct_hamiltonian_equals_gpaws(fixtures):
    """H and S from one FFT of the potential equal GPAW's row-by-row FFT construction at every k-point."""
    from gpaw import GPAW, PW, FermiDirac
    from gpaw.new.pw.fulldiag import pw_matrix

    from optiladder import structures as st
    from optiladder.engine.numerics import fixed_density_without_scf, pw_matrix_direct

    _, sym, _ = prepare(fixtures / "structures" / "SrO_agm001192057.cif")
    atoms = st.to_atoms(sym.structure)
    atoms.calc = GPAW(
        mode=PW(200), xc="PBE", kpts={"density": 1.5, "gamma": True}, occupations=FermiDirac(0.01), txt=None
    )
    atoms.get_potential_energy()
    nscf = fixed_density_without_scf(atoms.calc, txt=None, kpts={"density": 2.0, "gamma": True}, nbands=8)
    pot = nscf.dft.potential
    n = 0
    for wfs in nscf.dft.ibzwfs:
        pw = wfs.psit_nX.desc
        args = (pw, wfs.pt_aiX, pot.dH_asii[:, wfs.spin], [s.dO_ii for s in wfs.setups], pot.vt_sR[wfs.spin])
        h1, s1 = pw_matrix(*args, None, pw.comm)
        h2, s2 = pw_matrix_direct(*args)
        scale = np.abs(h1.data).max()
        assert np.abs(h1.data - h2.data).max() < 1e-12 * scale
        assert np.abs(s1.data - s2.data).max() < 1e-12 * np.abs(s1.data).max()
        n += 1
    assert n >= 2 and pw.shape[0] > 100


def _sc(a: dict, b: dict) -> dict[str, float]:
    out = {}
    for lv in ("ipa", "rpa"):
        ys = []
        for rec in (a, b):
            om = np.asarray(rec["omega"])
            y = {c: interpolate(om, np.asarray(rec["spectra"][f"{lv}_im_{c}"]), MODEL_GRID) for c in "xyz"}
            y["trace"] = (y["x"] + y["y"] + y["z"]) / 3
            ys.append(y)
        for c in ("trace", "x", "y", "z"):
            out[f"{lv}_{c}"] = float(similarity_coefficient(ys[0][c], ys[1][c], MODEL_GRID))
    return out


@pytest.fixture(scope="module")
def srhf_baseline(tmp_path_factory):
    return compute("agm001236521", "test", numerics="gpaw-dense-v1", workdir=tmp_path_factory.mktemp("base"))


@pytest.mark.slow
@pytest.mark.parametrize("numerics", ["gpaw-direct-v1", "gpaw-direct-v2"])
def test_direct_numerics_give_the_baselines_spectra(srhf_baseline, numerics, tmp_path):
    """SrHF (3 atoms, anisotropic) with the test protocol: every component of IPA and RPA agrees, SC ≥ 0.9999."""
    old = srhf_baseline
    new = compute("agm001236521", "test", numerics=numerics, workdir=tmp_path)
    assert old["numerics"]["name"] == "gpaw-dense-v1" and new["numerics"]["name"] == numerics
    assert (new["n_ibz_k"], new["nbands"]) == (old["n_ibz_k"], old["nbands"])
    assert new["gap_indirect"] == pytest.approx(old["gap_indirect"], abs=1e-6)
    sc = _sc(new, old)
    assert min(sc.values()) >= 0.9999, sc
    assert set(new["provenance"]["cpu_seconds"]) == {"gs", "nscf", "df"}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mixed", [False, True])
def test_lowrank_eigensolver_solves_the_generalized_problem(mixed):
    """H x = e S x with S = dv (1 + B dS Bᴴ / dv): the lowest pairs as LAPACK's generalized solver gives them."""
    import scipy.linalg as sla

    from optiladder.engine.numerics import eigh_lowrank

    rng = np.random.default_rng(1)
    n, k, nb, dv = 300, 20, 24, 0.7
    x = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    h = 0.05 * (x + x.conj().T) + np.diag(np.linspace(-2.0, 12.0, n))  # a plane-wave-like spectrum (Ha)
    b = 0.1 * (rng.normal(size=(n, k)) + 1j * rng.normal(size=(n, k)))
    m = rng.normal(size=(k, k))
    ds = 0.05 * m @ m.T - 0.02 * np.eye(k)  # PAW overlaps may be negative in some directions
    s = dv * np.eye(n) + b @ ds @ b.conj().T
    e0, v0 = sla.eigh(h, s, subset_by_index=(0, nb - 1))
    e, v, resid = eigh_lowrank(h.copy(), b, ds, dv, nb, mixed=mixed)
    assert np.abs(e - e0).max() < (1e-9 if mixed else 1e-12)
    assert np.abs(v.conj().T @ s @ v - np.eye(nb)).max() < 1e-10  # S-orthonormal
    assert np.abs(h @ v - s @ v * e).max() < (1e-4 if mixed else 1e-11)
    overlap = np.abs(np.sum(v.conj() * (s @ v0), axis=0))  # same vectors up to a phase
    assert np.abs(overlap - 1).max() < (1e-8 if mixed else 1e-12)
    assert (resid > 0) == mixed


def test_vectorized_group_check_agrees_with_gpaws():
    """The vectorised closure check accepts GPAW's own symmetry groups and refuses a set that is not a group."""
    from gpaw.new.symmetry import SymmetryAnalysisBug, create_symmetries_object

    from optiladder import structures as st
    from optiladder.engine.numerics import group_check_vectorized

    for mat in ("agm001192057", "agm002764590"):  # SrO (48 operations), KBrF₂ (12)
        _, sym, _ = prepare(mat)
        s = create_symmetries_object(st.to_atoms(sym.structure))
        assert len(s.rotation_scc) in (48, 12)
        group_check_vectorized(s)  # no error
        s.rotation_scc = s.rotation_scc[:-1].copy()  # drop one operation: no longer closed
        s.translation_sc = s.translation_sc[:-1].copy()
        with pytest.raises(SymmetryAnalysisBug):
            group_check_vectorized(s)
        with pytest.raises(SymmetryAnalysisBug):
            type(s).group_check(s)  # GPAW's own check agrees


def test_open_shell_is_refused_before_any_scf(tmp_path):
    """KF₂ (agm001850269): 23 valence electrons → a permanent OpenShellError, no calculation started."""
    _, sym, _ = prepare("agm001850269")
    assert valence_electrons([str(s.specie) for s in sym.structure]) == 23
    with pytest.raises(OpenShellError, match="odd number of valence electrons") as err:
        compute("agm001850269", "gpaw-pbe-v1", workdir=tmp_path)
    assert err.value.permanent
    assert list(tmp_path.iterdir()) == []  # refused before the private work directory was made
