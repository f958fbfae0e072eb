"""The GPAW engine, for real (no mocks): reproduce seed records, physics checks, refusals, the CLI."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure
from scipy.spatial.transform import Rotation

from optiladder.engine import PROTOCOLS, get_protocol, read_record, record_spectra
from optiladder.engine.calculate import MetallicError, band_gaps, compute, prepare
from optiladder.engine.records import RecordError, validate_record, write_record
from optiladder.structures import StructureError

pytestmark = [pytest.mark.gpaw]


def test_protocols_are_frozen_data():
    p = get_protocol("gpaw-pbe-v1")
    # PROTOCOL.md, fixed: never change in place
    assert (p.pw_ecut, p.gs_kdensity, p.nscf_kdensity, p.smearing, p.eta, p.lfe_ecut) == (
        300,
        2.5,
        4.0,
        0.01,
        0.3,
        50,
    )
    assert (p.domega0, p.omega2, p.omegamax) == (0.05, 10, 25)
    assert p.nbands(nocc=8, volume=35.26) == 18 and p.nbands(nocc=8, volume=60.0) == 30
    with pytest.raises(AttributeError):
        p.pw_ecut = 400  # type: ignore[misc]
    assert p.frequencies() is not p.frequencies()
    assert not PROTOCOLS["test"].production
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("nope")


def test_band_gaps():
    eig = np.array([[[-1.0, 0.0, 2.0], [-1.0, 0.5, 1.8]]])  # 1 spin, 2 k, 3 bands, nocc 2
    ind, direct = band_gaps(eig, 2)
    assert ind == pytest.approx(1.3) and direct == pytest.approx(1.3)


def test_prepare_matches_alexandria_entry(fixtures):
    """A CIF of an Alexandria crystal finds its entry, so it is symmetrized to the reported space group."""
    mat_id, sym, _ = prepare(fixtures / "structures" / "POSCAR_cBN_agm003157414")
    assert mat_id == "agm003157414" and sym.spacegroup == 216


@pytest.mark.slow
def test_reproduces_seed_record(fixtures, tmp_path):
    """SrO from its raw Alexandria CIF with gpaw-pbe-v1 reproduces the seed record (SC ≥ 0.999, IPA and RPA)."""
    ref = read_record(fixtures / "records" / "agm001192057.json.gz")
    rec = compute(fixtures / "structures" / "SrO_agm001192057.cif", "gpaw-pbe-v1", workdir=tmp_path)
    assert rec["mat_id"] == "agm001192057" and rec["spacegroup"] == 225
    assert rec["n_ibz_k"] == ref["n_ibz_k"] and rec["nbands"] == ref["nbands"]
    assert rec["gap_indirect"] == pytest.approx(ref["gap_indirect"], abs=0.01)
    ours, theirs = record_spectra(rec), record_spectra(ref)
    for lv in ("ipa", "rpa"):
        assert ours[lv].similarity(theirs[lv]) >= 0.999
    assert rec["format_version"] == 2 and rec["provenance"]["versions"]["gpaw"]
    assert list(tmp_path.iterdir()) == []  # the private work directory is gone


@pytest.mark.slow
def test_local_fields_lower_eps_inf_of_cbn(tmp_path):
    rec = compute("agm003157414", "gpaw-pbe-v1", workdir=tmp_path)
    sp = record_spectra(rec)
    assert rec["spacegroup"] == 216
    # measured (campaign record, same protocol): IPA 4.962, RPA 4.787
    assert sp["rpa"].eps_inf < sp["ipa"].eps_inf
    assert sp["ipa"].eps_inf == pytest.approx(4.962, abs=0.01)
    assert sp["rpa"].eps_inf == pytest.approx(4.787, abs=0.01)


@pytest.mark.slow
def test_rotated_perturbed_copy_gives_same_trace(fixtures, tmp_path):
    s = Structure.from_file(fixtures / "structures" / "SrO_agm001192057.cif")
    rot = Rotation.from_euler("zyx", [33, 21, 47], degrees=True).as_matrix()
    moved = Structure(s.lattice.matrix @ rot.T, s.species, s.frac_coords)
    moved.perturb(0.002)
    a = compute(s, "test", mat_id="orig", spacegroup=225, workdir=tmp_path)
    b = compute(moved, "test", mat_id="moved", spacegroup=225, workdir=tmp_path)
    sa, sb = record_spectra(a), record_spectra(b)
    for lv in ("ipa", "rpa"):
        assert sa[lv].similarity(sb[lv]) >= 0.999


@pytest.mark.slow
def test_metal_is_refused(tmp_path):
    """The metallic carbon allotrope the seed set excluded is refused with its reason, never stored."""
    with pytest.raises(MetallicError, match=r"agm002050577: PBE gap -?\d\.\d\d eV < 0.5 eV") as err:
        compute("agm002050577", "test", workdir=tmp_path)
    assert err.value.permanent
    assert list(tmp_path.iterdir()) == []


def test_bad_structure_refused_before_any_calculation(fixtures):
    with pytest.raises(StructureError, match="partial occupancies"):
        compute(fixtures / "bad" / "partial.cif", "test")


def test_records_validated_and_append_only(fixtures, tmp_path):
    rec = read_record(fixtures / "records" / "agm004442517.json.gz")
    out = write_record(rec, tmp_path / "r.json.gz")
    assert read_record(out)["spectra"] == rec["spectra"]
    with pytest.raises(RecordError, match="exists already"):
        write_record(rec, out)
    bad = json.loads(json.dumps(rec))
    bad["spectra"]["rpa_im_x"][5] = float("nan")
    with pytest.raises(RecordError, match="non-finite"):
        validate_record(bad, "nan-record")
    bad = json.loads(json.dumps(rec))
    bad["omega"] = bad["omega"][::-1]
    with pytest.raises(RecordError, match="omega starts at"):
        validate_record(bad, "reversed")
    truncated = tmp_path / "t.json.gz"
    truncated.write_bytes(gzip.compress(json.dumps(rec).encode())[:500])
    with pytest.raises(RecordError, match="t.json.gz: unreadable or truncated"):
        read_record(truncated)
    assert read_record(out)["mat_id"] == "agm004442517"  # the good file is untouched


@pytest.mark.slow
def test_cli_batch_goes_on_past_bad_input(fixtures, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    inputs = [
        str(fixtures / "bad" / "overlapping.cif"),
        str(fixtures / "structures" / "Ne_agm004442517.extxyz"),
        str(fixtures / "bad" / "empty.cif"),
    ]
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "optiladder",
            "compute",
            *inputs,
            "--protocol",
            "test",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert (
        len(errors) == 2
        and "overlapping.cif: overlapping atoms" in errors[0]
        and "empty.cif: empty file" in errors[1]
    )
    (line,) = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert line.startswith("agm004442517  Ne") and "eps_inf IPA" in line
    assert (tmp_path / "agm004442517.json.gz").exists() and (
        tmp_path / "agm004442517.png"
    ).stat().st_size > 5000
    assert read_record(tmp_path / "agm004442517.json.gz")["protocol"]["name"] == "test"
    assert not any(p.name.startswith(".") for p in Path(tmp_path).iterdir())
