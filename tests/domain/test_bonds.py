"""First-shell element pairs (:func:`optiladder.domain.first_shell_pairs`), the training domain's bond types and
the bundled precomputed table they are read from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from optiladder.domain import (
    FIRST_SHELL_FACTOR,
    TrainingDomain,
    _read_bond_table,
    bond_table,
    first_shell_pairs,
    novel_bonds,
)
from optiladder.structures import alexandria


def _fcc(a: float, species: list[str], frac: list[list[float]]) -> Structure:
    return Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), species, frac)


NACL = _fcc(5.64, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
CBN = _fcc(3.615, ["B", "N"], [[0, 0, 0], [0.25, 0.25, 0.25]])
SI = _fcc(5.43, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])


def test_rock_salt_first_shell_is_the_cation_anion_pair():
    # Na–Na and Cl–Cl are √2 × the Na–Cl distance: outside the 1.1 × first shell
    assert first_shell_pairs(NACL) == {"Cl-Na"}
    assert first_shell_pairs(NACL, factor=1.5) == {"Cl-Na", "Na-Na", "Cl-Cl"}


def test_zinc_blende_and_diamond():
    assert first_shell_pairs(CBN) == {"B-N"}
    assert first_shell_pairs(SI) == {"Si-Si"}
    # the same crystal as a pymatgen dict and as a supercell
    assert first_shell_pairs(CBN.as_dict()) == {"B-N"}
    assert first_shell_pairs(CBN * (2, 1, 1)) == {"B-N"}


def test_isolated_atom_in_a_large_box_finds_its_periodic_image():
    box = Structure(Lattice.cubic(12.0), ["Ar"], [[0, 0, 0]])
    assert first_shell_pairs(box) == {"Ar-Ar"}


def _pairs_by_get_all_neighbors(s: Structure, factor: float) -> set[str]:
    """The same rule through pymatgen's ``get_all_neighbors`` (an independent reference)."""
    radius = factor * min(s.lattice.abc) * 1.001
    out = set()
    for site, neigh in zip(s, s.get_all_neighbors(radius), strict=True):
        d = np.array([n.nn_distance for n in neigh])
        for n in neigh:
            if n.nn_distance <= factor * d.min() * (1 + 1e-9):
                out.add("-".join(sorted((site.specie.symbol, n.specie.symbol))))
    return out


def test_agrees_with_pymatgen_get_all_neighbors():
    entries = alexandria()[::350]
    for e in entries:
        s = Structure.from_dict(e["structure"])
        assert first_shell_pairs(s) == _pairs_by_get_all_neighbors(s, FIRST_SHELL_FACTOR), e["mat_id"]


def test_bundled_table_matches_a_fresh_computation():
    table = _read_bond_table()
    entries = alexandria()
    assert set(table) == {e["mat_id"] for e in entries}
    sample = entries[::40] + [e for e in entries if sorted(e["elements"]) == ["B", "N"]]
    assert bond_table(sample) == {e["mat_id"]: table[e["mat_id"]] for e in sample}


def test_domain_bonds_come_from_its_training_ids():
    train = [e for e in alexandria("train") if "B" not in e["elements"] and "N" not in e["elements"]][:8]
    domain = TrainingDomain.from_ids(e["mat_id"] for e in train)
    assert domain.bonds == frozenset().union(*(first_shell_pairs(e["structure"]) for e in train))
    assert "B-N" not in domain.bonds and domain.to_dict()["bond_types"] == len(domain.bonds)
    assert novel_bonds(CBN, domain) == ["B-N"]
    bn = next(e for e in alexandria() if sorted(e["elements"]) == ["B", "N"])
    with_bn = TrainingDomain.from_ids([*(e["mat_id"] for e in train), bn["mat_id"]])
    assert "B-N" in with_bn.bonds and novel_bonds(Structure.from_dict(bn["structure"]), with_bn) == []
    assert novel_bonds(CBN, None) == []


def test_shipped_models_have_no_boron_nitrogen_bond():
    """What issue 14 is about: no crystal the shipped models were trained on has a B–N first-shell pair."""
    from optiladder.pretrained import read_card

    domain = TrainingDomain.from_cards([read_card("rpa")])
    assert domain is not None and len(domain.bonds) > 100
    assert "B-N" not in domain.bonds and {"Si-Si", "Cl-Na"} <= domain.bonds
    doc = (Path(__file__).resolve().parents[2] / "docs" / "predict.md").read_text()
    assert f"| bond types (first-shell element pairs) | {len(domain.bonds)}; none of them B–N |" in doc


@pytest.mark.parametrize("factor", [1.0, 1.2])
def test_factor_is_respected(factor):
    s = Structure.from_dict(alexandria("train")[3]["structure"])
    assert first_shell_pairs(s, factor) == _pairs_by_get_all_neighbors(s, factor)


def test_first_shell_pairs_from_a_graphs_edges_equal_a_new_search():
    """The Predictor takes the first-shell pairs from the graph's neighbour list (one search per input): the
    same sets as the search of its own on 200 bundled crystals; None (search again) when a shell reaches past
    the graph's cutoff."""
    from optiladder.domain import first_shell_pairs, first_shell_pairs_from_edges
    from optiladder.graphs import DEFAULT_FEATURIZER as F
    from optiladder.graphs import structure_graphs
    from optiladder.structures import alexandria

    structures = [e["structure"] for e in alexandria()[::17]]
    answered = 0
    for s, g in zip(structures, structure_graphs(structures, F), strict=True):
        symbols = [F.elements[int(k)][0] for k in g.species]
        pairs = first_shell_pairs_from_edges(g.edge_index[0], g.edge_index[1], g.distances, symbols, F.cutoff)
        assert pairs is None or pairs == first_shell_pairs(s)
        answered += pairs is not None
        # a cutoff shorter than 1.1 × the nearest distance cannot hold the shell
        short = float(g.distances.min())
        assert (
            first_shell_pairs_from_edges(g.edge_index[0], g.edge_index[1], g.distances, symbols, short)
            is None
        )
    assert answered >= 0.95 * len(structures)  # 3,522 of the 3,538 bundled crystals need no second search
