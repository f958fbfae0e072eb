"""Reading, validating and symmetrizing structures; one-line errors for every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.core import Structure

from optiladder.structures import StructureError, alexandria, from_any, load, structure_hash, symmetrize


@pytest.mark.parametrize(
    "name",
    ["SrO_agm001192057.cif", "POSCAR_cBN_agm003157414", "Ne_agm004442517.extxyz"],
)
def test_reads_formats(fixtures, name):
    s = load(fixtures / "structures" / name)
    assert s.is_ordered and 1 <= len(s) <= 2


def test_reads_objects():
    si = bulk("Si", "diamond", a=5.43)
    s = from_any(si)
    assert len(s) == 2
    assert len(from_any(s)) == 2
    assert len(from_any(s.as_dict())) == 2


@pytest.mark.parametrize(
    "name, problem",
    [
        ("empty.cif", "empty file"),
        ("garbage.cif", "unreadable structure"),
        ("molecule.xyz", "not 3-D periodic"),
        ("overlapping.cif", "overlapping atoms"),
        ("partial.cif", "partial occupancies"),
        ("no_setup_TcO.cif", "no GPAW PAW setup for Tc"),
        ("does_not_exist.cif", "no such file"),
    ],
)
def test_bad_inputs_one_line(fixtures, name, problem):
    path = fixtures / "bad" / name
    with pytest.raises(StructureError) as err:
        load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and problem in msg and "\n" not in msg


def test_too_many_atoms(fixtures):
    path = fixtures / "structures" / "SrO_agm001192057.cif"
    with pytest.raises(StructureError, match="2 atoms exceed the limit of 1"):
        load(path, max_atoms=1)


def test_bad_dict_and_type():
    with pytest.raises(StructureError, match="not a pymatgen structure dict"):
        from_any({"mat_id": "x", "lattice": 3})
    with pytest.raises(StructureError, match="unsupported structure type"):
        from_any(42)


def test_symmetrize_recovers_alexandria_spacegroup():
    entries = {e["mat_id"]: e for e in alexandria()}
    e = entries["agm003157414"]  # c-BN, F-43m
    sym = symmetrize(Structure.from_dict(e["structure"]), e["spg"])
    assert sym.spacegroup == 216 and sym.symprec in (1e-5, 1e-3, 1e-2, 0.1)
    # a noisy copy needs a looser tolerance, but still gets the same space group and cell
    noisy = Structure.from_dict(e["structure"])
    noisy.perturb(0.003)
    sym2 = symmetrize(noisy, e["spg"])
    assert sym2.spacegroup == 216 and sym2.symprec > 1e-5
    assert np.isclose(sym2.structure.volume, sym.structure.volume, rtol=1e-2)
    # without a target: 1e-3 Å
    assert symmetrize(Structure.from_dict(e["structure"])).symprec == 1e-3


def test_bundled_list_and_hash():
    entries = alexandria()
    assert len(entries) == 3538
    assert {e["split"] for e in entries} == {"train", "validation", "test", "none"}
    s = Structure.from_dict(entries[0]["structure"])
    t = s.copy()
    t.translate_sites(range(len(t)), [1, 0, 0])  # same crystal, shifted by a lattice vector
    assert structure_hash(s) == structure_hash(t)
    json.dumps(entries[0])
