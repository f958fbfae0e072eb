"""Numerics options (same physics, different cost) and the open-shell refusal, with real GPAW."""

from __future__ import annotations

import numpy as np
import pytest

from optiladder.engine.calculate import OpenShellError, compute, prepare, valence_electrons
from optiladder.engine.numerics import NUMERICS, get_numerics, record_numerics
from optiladder.spectra import MODEL_GRID, interpolate, similarity_coefficient

pytestmark = [pytest.mark.gpaw]


def test_numerics_are_named_and_the_baseline_is_kept():
    assert set(NUMERICS) >= {"gpaw-dense-v1", "gpaw-direct-v1"}
    base = get_numerics("gpaw-dense-v1")
    assert base.iterative_pass and base.gpw_roundtrip and not base.direct_hamiltonian
    assert record_numerics({}) == "gpaw-dense-v1"  # records without the block: the baseline
    assert get_numerics(None).name == "gpaw-direct-v1"  # the default since bench/engine proved it
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


@pytest.mark.slow
def test_direct_numerics_give_the_baselines_spectra(tmp_path):
    """SrHF (3 atoms, anisotropic) with the test protocol: every component of IPA and RPA agrees, SC ≥ 0.9999."""
    old = compute("agm001236521", "test", numerics="gpaw-dense-v1", workdir=tmp_path)
    new = compute("agm001236521", "test", numerics="gpaw-direct-v1", workdir=tmp_path)
    assert old["numerics"]["name"] == "gpaw-dense-v1" and new["numerics"]["name"] == "gpaw-direct-v1"
    assert (new["n_ibz_k"], new["nbands"]) == (old["n_ibz_k"], old["nbands"])
    assert new["gap_indirect"] == pytest.approx(old["gap_indirect"], abs=1e-6)
    sc = _sc(new, old)
    assert min(sc.values()) >= 0.9999, sc
    assert set(new["provenance"]["cpu_seconds"]) == {"gs", "nscf", "df"}
    assert list(tmp_path.iterdir()) == []


def test_open_shell_is_refused_before_any_scf(tmp_path):
    """KF₂ (agm001850269): 23 valence electrons → a permanent OpenShellError, no calculation started."""
    _, sym, _ = prepare("agm001850269")
    assert valence_electrons([str(s.specie) for s in sym.structure]) == 23
    with pytest.raises(OpenShellError, match="odd number of valence electrons") as err:
        compute("agm001850269", "gpaw-pbe-v1", workdir=tmp_path)
    assert err.value.permanent
    assert list(tmp_path.iterdir()) == []  # refused before the private work directory was made
