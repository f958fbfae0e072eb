"""The cheap IPA rung ``gpaw-pbe-ipa-lite``: its parameters, IPA-only records, and one real calculation."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from optiladder.data.admission import dataset_refusal
from optiladder.engine import get_protocol, read_record, record_spectra
from optiladder.engine.protocols import IPA_LITE_PROTOCOL
from optiladder.engine.records import RecordError, record_levels, validate_record
from optiladder.spectra import MODEL_GRID, interpolate, similarity_coefficient

pytestmark = [pytest.mark.gpaw]


def ipa_only(rec: dict) -> dict:
    """A copy of a v1 record reduced to its IPA spectra under the ipa-lite protocol block."""
    out = copy.deepcopy(rec)
    out["protocol"] = get_protocol(IPA_LITE_PROTOCOL).as_record()
    out["spectra"] = {k: v for k, v in out["spectra"].items() if k.startswith("ipa_")}
    return out


def test_ipa_lite_parameters_are_stated():
    p = get_protocol(IPA_LITE_PROTOCOL)
    v1 = get_protocol("gpaw-pbe-v1")
    # the chosen physics (bench/engine/ipa_lite_choose.md): cheaper k-grids and bands, no local fields
    assert (p.xc, p.pw_ecut, p.gs_kdensity, p.nscf_kdensity, p.smearing) == ("PBE", 300.0, 1.5, 4.0, 0.01)
    assert (p.nbands_extra, p.nbands_per_volume, p.lfe_ecut) == (
        8,
        0.5,
        1.0,
    )  # v1's bands (CaO: 0.85 with fewer)
    assert p.gs_convergence == (("density", 1e-3),)
    assert p.nbands(nocc=4, volume=20.0) == 12 and p.nbands(nocc=8, volume=60.0) == 30
    # what a spectrum is stays v1's: broadening, frequency grid, metal threshold
    assert (p.eta, p.domega0, p.omega2, p.omegamax, p.min_gap) == (v1.eta, 0.05, 10.0, 25.0, 0.5)
    assert p.levels == ("ipa",) and p.ipa_only and not v1.ipa_only
    assert p.folder == "ipa-lite" and v1.folder == "records"
    block = p.as_record()
    assert block["levels"] == ["ipa"] and block["gs_kdensity"] == 1.5
    assert block["gs_convergence"] == {"density": 1e-3}
    assert block["nbands_rule"] == "max(nocc+8, ceil(0.5*V/A^3))"
    # v1's record block is unchanged (no new keys in the records of the dataset)
    assert "levels" not in v1.as_record() and "gs_convergence" not in v1.as_record()
    # never among the IPA + RPA records
    assert "dataset/ipa-lite" in dataset_refusal(IPA_LITE_PROTOCOL)


def test_ipa_only_records_validate_and_read(fixtures):
    v1 = read_record(fixtures / "records" / "agm004442517.json.gz")
    lite = validate_record(ipa_only(v1))
    assert record_levels(lite) == ("ipa",) and record_levels(v1) == ("ipa", "rpa")
    sp = record_spectra(lite)
    assert list(sp) == ["ipa"]
    np.testing.assert_allclose(sp["ipa"].im["x"], v1["spectra"]["ipa_im_x"])
    # a v1 record that lost its RPA spectra is still invalid; so are levels that are not a list of known ones
    broken = copy.deepcopy(v1)
    del broken["spectra"]["rpa_im_y"]
    with pytest.raises(RecordError, match="rpa_im_y missing"):
        validate_record(broken, "x.json.gz")
    bad = ipa_only(v1)
    bad["protocol"]["levels"] = ["gw"]
    with pytest.raises(RecordError, match="levels"):
        validate_record(bad, "x.json.gz")
    missing = ipa_only(v1)
    del missing["spectra"]["ipa_re_z"]
    with pytest.raises(RecordError, match="ipa_re_z missing"):
        validate_record(missing, "x.json.gz")


@pytest.mark.slow
def test_ipa_lite_calculation_of_neon(fixtures, tmp_path):
    """A real 1-atom calculation: IPA only, the protocol named, v1's k-grid and bands, a coarser ground state,
    and a trace close to v1's (SC 0.9998 measured with fewer bands)."""
    from optiladder.engine.calculate import compute

    ref = read_record(fixtures / "records" / "agm004442517.json.gz")
    rec = compute("agm004442517", IPA_LITE_PROTOCOL, workdir=tmp_path)
    assert rec["protocol"]["name"] == IPA_LITE_PROTOCOL and rec["protocol"]["levels"] == ["ipa"]
    assert sorted(rec["spectra"]) == sorted(f"ipa_{p}_{c}" for p in ("im", "re") for c in "xyz")
    assert rec["n_ibz_k"] == ref["n_ibz_k"] and rec["nbands"] == ref["nbands"]
    assert abs(rec["gap_indirect"] - ref["gap_indirect"]) < 0.05
    assert list(tmp_path.iterdir()) == []  # the private work directory is gone
    from optiladder.viz import plot_record

    assert plot_record(rec, tmp_path / "ne.png").stat().st_size > 1000  # the compute CLI's plot: IPA alone

    def trace(r: dict) -> np.ndarray:
        om = np.asarray(r["omega"])
        return np.mean(
            [interpolate(om, np.asarray(r["spectra"][f"ipa_im_{c}"]), MODEL_GRID) for c in "xyz"], 0
        )

    sc = similarity_coefficient(trace(rec), trace(ref), MODEL_GRID)
    assert sc > 0.995
