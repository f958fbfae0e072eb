"""Wavefunction export: real GPAW states of Si (``test`` protocol, 2×2×2 k, 2+2 bands, ~15 s)."""

from __future__ import annotations

import numpy as np
import pytest

from optiladder.engine.wavefunctions import (
    WavefunctionFileError,
    export_wavefunctions,
    get_wf_protocol,
    read_wavefunctions,
    wavefunction_path,
    write_wavefunctions,
)
from optiladder.structures import StructureError

pytestmark = [pytest.mark.gpaw]


@pytest.fixture(scope="module")
def si(tmp_path_factory):
    return export_wavefunctions("agm003157600", "test", workdir=tmp_path_factory.mktemp("wf"))


def _k(data, frac) -> int:
    return int(np.flatnonzero(np.all(np.isclose(data["kpts"] % 1.0, np.asarray(frac) % 1.0), axis=1))[0])


@pytest.mark.slow
def test_full_grid_bands_and_provenance(si):
    meta = si["meta"]
    assert meta["formula"] == "Si" and meta["nocc"] == 4
    assert list(si["bands"]) == [2, 3, 4, 5]  # 2 valence + 2 conduction
    # the whole 2×2×2 Γ-centred grid, every point once (no symmetry reduction)
    grid = {tuple(np.round(k % 1.0, 6)) for k in si["kpts"]}
    assert grid == {(a, b, c) for a in (0.0, 0.5) for b in (0.0, 0.5) for c in (0.0, 0.5)}
    assert si["wf"].dtype == np.float16 and si["wf"].shape == (8, 4, *meta["grid"])
    assert meta["gap_indirect"] > 0.3 and meta["vbm"] < meta["cbm"]
    assert meta["protocol"]["name"] == "test" and "gpaw" in meta["provenance"]["versions"]


@pytest.mark.slow
def test_states_are_physical(si):
    n = np.prod(si["density"].shape)
    volume = abs(np.linalg.det(si["cell"]))
    # the pseudo-density integrates to the 8 valence electrons of Si2
    assert si["density"].astype(float).sum() * volume / n == pytest.approx(8.0, abs=0.05)
    # pseudo-wavefunction norms are 1 up to the PAW augmentation (a few %)
    norms = (si["wf"].astype(float) ** 2).sum(axis=(2, 3, 4)) * volume / n
    assert np.all(np.abs(norms - 1) < 0.15)
    # the three L points (0,0,½), (0,½,0), (½,0,0) are images under permutations of the fcc lattice vectors,
    # which map the Si2 cell onto itself: eigenvalues equal, and the non-degenerate top band's |φ| maps by the
    # same axis permutation of the grid
    k1, k2, k3 = _k(si, (0, 0, 0.5)), _k(si, (0, 0.5, 0)), _k(si, (0.5, 0, 0))
    np.testing.assert_allclose(si["eigenvalues"][k1], si["eigenvalues"][k2], atol=1e-4)
    np.testing.assert_allclose(si["eigenvalues"][k1], si["eigenvalues"][k3], atol=1e-4)
    top1 = si["wf"][k1, 3].astype(float)
    top2 = si["wf"][k2, 3].astype(float)
    err = np.abs(top1.transpose(0, 2, 1) - top2).max() / top1.max()
    assert err < 0.01
    # ... and it is not a trivially symmetric function (the unpermuted pair differs)
    assert np.abs(top1 - top2).max() / top1.max() > 0.1


@pytest.mark.slow
def test_round_trip_and_refusals(si, tmp_path):
    path = write_wavefunctions(si, wavefunction_path("agm003157600", "test", root=tmp_path))
    assert path == tmp_path / "test" / "agm003157600.npz"
    back = read_wavefunctions(path)
    assert back["meta"] == si["meta"]
    np.testing.assert_array_equal(back["wf"], si["wf"])
    with pytest.raises(FileExistsError):
        write_wavefunctions(si, path)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(WavefunctionFileError, match="bad.npz: not a wavefunction export"):
        read_wavefunctions(bad)


def test_protocols_and_refusals(fixtures):
    assert get_wf_protocol("wf-pbe-v1").kgrid == (4, 4, 4)
    with pytest.raises(ValueError, match="unknown wavefunction protocol"):
        get_wf_protocol("nope")
    with pytest.raises(StructureError, match="partial.cif"):
        export_wavefunctions(fixtures / "bad" / "partial.cif", "test")
