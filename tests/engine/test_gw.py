"""G0W0 labels: a real (tiny, ``test`` protocol) GPAW G0W0 of Si, the state → label map, storage discipline."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from optiladder.engine.calculate import MetallicError
from optiladder.engine.gw import (
    compute_gw,
    get_gw_protocol,
    gw_record_path,
    plane_waves,
    read_gw_record,
    response_cutoff,
    state_corrections,
    write_gw_record,
)

pytestmark = [pytest.mark.gpaw]


@pytest.fixture(scope="module")
def si_gw(tmp_path_factory):
    return compute_gw("agm003157600", "test", workdir=tmp_path_factory.mktemp("gw"))


@pytest.mark.slow
def test_si_g0w0_opens_the_gap(si_gw):
    r = si_gw
    assert r["kind"] == "g0w0" and r["formula"] == "Si" and r["nocc"] == 4 and r["bands"] == [3, 4]
    assert len(r["bz_kpts"]) == 8 and len(r["ibz_kpts"]) == len(r["eps_qp"]) < 8  # symmetry-reduced
    # PBE gap of the 2×2×2 grid (Γ → X-like point), and a G0W0 gap that is larger
    assert 0.4 < r["gap_pbe"] < 0.9
    assert r["gap_g0w0"] > r["gap_pbe"] + 0.02
    eps, qp, z = (np.asarray(r[k]) for k in ("eps_dft", "eps_qp", "z"))
    corr = qp - eps
    # the conduction band is pushed up more than the valence band, at every k
    assert np.all(corr[:, 1] > corr[:, 0])
    assert np.all((z > 0.5) & (z < 1.0))  # renormalization factors of sp semiconductors
    assert r["protocol"]["name"] == "test" and "gpaw" in r["provenance"]["versions"]


@pytest.mark.slow
def test_state_corrections_map_the_full_grid(si_gw):
    r = si_gw
    bz = np.asarray(r["bz_kpts"])
    eps, corr = state_corrections(r, bz + np.array([1.0, 0.0, -1.0]), np.array([3, 4]))  # periodic images
    assert eps.shape == corr.shape == (8, 2)
    ibz = np.asarray(r["bz2ibz"])
    np.testing.assert_allclose(eps, np.asarray(r["eps_dft"])[ibz])
    # the three L-type points (0,0,½), (0,½,0), (½,0,0) are equivalent: same labels
    ls = [
        int(np.flatnonzero(np.all(np.isclose(bz % 1, p), axis=1))[0])
        for p in ((0, 0, 0.5), (0, 0.5, 0), (0.5, 0, 0))
    ]
    np.testing.assert_allclose(corr[ls], np.repeat(corr[ls[:1]], 3, axis=0))
    with pytest.raises(ValueError, match="band 7 has no G0W0 label"):
        state_corrections(r, bz, np.array([7]))
    with pytest.raises(ValueError, match="not on the G0W0 grid"):
        state_corrections(r, np.array([[0.25, 0, 0]]), np.array([3]))


@pytest.mark.slow
def test_records_round_trip_and_are_never_overwritten(si_gw, tmp_path):
    path = write_gw_record(si_gw, gw_record_path(tmp_path, si_gw["mat_id"]))
    assert read_gw_record(path) == si_gw
    with pytest.raises(FileExistsError):
        write_gw_record(si_gw, path)
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.json.gz: not a G0W0 record"):
        read_gw_record(bad)


@pytest.mark.slow
def test_metal_is_refused(tmp_path):
    with pytest.raises(MetallicError, match="no G0W0 labels for metals"):
        compute_gw(bulk("Al", "fcc", a=4.05), "test", name="Al", workdir=tmp_path)


def test_protocol_is_documented_data():
    p = get_gw_protocol("gpaw-g0w0-v1")
    assert p.ecut_extrapolation and p.kgrid == (4, 4, 4) and p.pw_ecut >= 450
    v2 = get_gw_protocol("gpaw-g0w0-v2")
    # v1 gave diamond (V = 11.3 Å³) 11 bands at 60 eV; v2 raises the cutoff to 40 bands, Si (40.9 Å³) keeps 60 eV
    assert plane_waves(11.3, 60.0) == 11
    assert response_cutoff(v2, 11.3) == 135.0 and plane_waves(11.3, 135.0) >= 40
    assert response_cutoff(v2, 40.9) == 60.0 == response_cutoff(p, 11.3)
    with pytest.raises(ValueError, match="unknown GW protocol"):
        get_gw_protocol("nope")
