"""Graph construction: neighbour counts against brute force and pymatgen, Gaussians, node features, cache."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from optiladder.graphs import (
    DEFAULT_FEATURIZER,
    Featurizer,
    GraphCache,
    GraphError,
    neighbor_list,
    structure_graph,
    to_data,
)


def brute_force_edges(structure: Structure, cutoff: float) -> list[tuple[int, int, float]]:
    """Every (i, j, d) with 0 < d ≤ cutoff over an explicit, generous range of periodic images."""
    out = []
    lat = structure.lattice.matrix
    cart = structure.cart_coords
    r = 6  # images −6…6 along each axis: far beyond 5 Å for the cells below
    for n1, n2, n3 in itertools.product(range(-r, r + 1), repeat=3):
        shift = n1 * lat[0] + n2 * lat[1] + n3 * lat[2]
        for i in range(len(structure)):
            for j in range(len(structure)):
                d = float(np.linalg.norm(cart[j] + shift - cart[i]))
                if 1e-8 < d <= cutoff + 1e-8:
                    out.append((i, j, d))
    return sorted(out)


ROCKSALT = Structure(Lattice.cubic(5.64).matrix @ (np.ones((3, 3)) - np.eye(3)) / 2, ["Na", "Cl"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])  # fmt: skip
WURTZITE = Structure(Lattice.hexagonal(3.19, 5.19), ["Ga", "Ga", "N", "N"],
                     [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.377], [2 / 3, 1 / 3, 0.877]])  # fmt: skip
SKEWED = Structure(Lattice.from_parameters(2.9, 3.3, 4.1, 62, 75, 101), ["Si", "O", "H"],
                   [[0.1, 0.2, 0.9], [0.55, 0.45, 0.3], [0.95, 0.05, 0.6]])  # fmt: skip


@pytest.mark.parametrize("structure", [ROCKSALT, WURTZITE, SKEWED], ids=["rocksalt", "wurtzite", "skewed"])
def test_edges_match_brute_force(structure):
    g = structure_graph(structure)
    ref = brute_force_edges(structure, 5.0)
    assert g.num_edges == len(ref)
    mine = sorted(zip(g.edge_index[0].tolist(), g.edge_index[1].tolist(), g.distances.tolist(), strict=True))
    np.testing.assert_array_equal([e[:2] for e in mine], [e[:2] for e in ref])
    np.testing.assert_allclose([e[2] for e in mine], [e[2] for e in ref], atol=1e-5)
    assert not np.any(g.distances == 0), "no self loop at distance 0"
    # own periodic images are neighbours (a multigraph with i == j edges at the lattice constant)
    assert np.any(g.edge_index[0] == g.edge_index[1])


def test_rocksalt_shells():
    """NaCl primitive cell: from Na, 6 Cl at a/2, 12 Na at a/√2, 8 Cl at a√3/2, 6 Na at a ≤ 5 Å? (a = 5.64)."""
    g = structure_graph(ROCKSALT)
    a = 5.64
    from_na = g.distances[g.edge_index[0] == 0]
    assert np.sum(np.isclose(from_na, a / 2, atol=1e-4)) == 6
    assert np.sum(np.isclose(from_na, a / np.sqrt(2), atol=1e-4)) == 12
    assert np.sum(np.isclose(from_na, a * np.sqrt(3) / 2, atol=1e-4)) == 8
    assert from_na.size == 6 + 12 + 8  # a = 5.64 Å > 5 Å: the next shell is out


def test_matches_pymatgen_neighbours_on_real_records(arrays):
    for s in arrays.structures[:20]:
        st = Structure.from_dict(s)
        ref = sorted(
            (i, n.index, round(n.nn_distance, 5))
            for i, nb in enumerate(st.get_all_neighbors(5.0))
            for n in nb
        )
        g = structure_graph(s)
        mine = sorted(
            zip(
                g.edge_index[0].tolist(),
                g.edge_index[1].tolist(),
                np.round(g.distances, 5).tolist(),
                strict=True,
            )
        )
        assert len(mine) == len(ref)
        assert [m[:2] for m in mine] == [r[:2] for r in ref]


def test_gaussian_edge_features():
    f = DEFAULT_FEATURIZER
    assert f.edge_dim == 51 and f.node_dim == 13
    np.testing.assert_allclose(f.centers, np.linspace(0, 5, 51), atol=1e-12)
    d = np.array([0.0, 1.234, 5.0])
    e = f.edge_features(d)
    expected = np.sqrt(10 / np.pi) * np.exp(-10 * (d[:, None] - np.linspace(0, 5, 51)[None, :]) ** 2)
    np.testing.assert_allclose(e, expected, rtol=1e-5, atol=1e-12)
    assert e.shape == (3, 51)
    assert np.argmax(e[1]) == 12  # nearest centre to 1.234 Å is 1.2 Å
    assert e[2, -1] == pytest.approx(np.sqrt(10 / np.pi))


def test_node_features_group_and_row():
    f = DEFAULT_FEATURIZER
    x = f.node_features(f.species_index(["H", "Mg", "Ga", "Xe", "I"]))
    assert x.shape == (5, 13)
    np.testing.assert_array_equal(x.sum(1), 2)
    # (group index, row index): H (0, 0), Mg (1, 2), Ga (2, 3), Xe (7, 4), I (6, 4)
    for k, (g, r) in enumerate([(0, 0), (1, 2), (2, 3), (7, 4), (6, 4)]):
        assert x[k, g] == 1 and x[k, 8 + r] == 1
    # agrees with pymatgen's group/row (OptiMate: group − 1, minus 10 for groups ≥ 13)
    from pymatgen.core import Element

    for sym, gi, ri in f.elements:
        el = Element(sym)
        assert gi == (el.group - 1 if el.group <= 2 else el.group - 11) and ri == el.row - 1
    with pytest.raises(GraphError, match="Fe"):
        f.species_index(["Fe"])


def test_featurizer_round_trip_and_hash():
    f = DEFAULT_FEATURIZER
    g = Featurizer.from_dict(f.to_dict())
    assert g == f and g.hash() == f.hash()
    assert Featurizer(cutoff=4.0).hash() != f.hash()
    import json

    json.dumps(f.to_dict())  # plain JSON types


def test_featurizer_is_a_declared_saved_object():
    """The saved form names the featurizer and its parameters; unknown names and bad parameters are refused."""
    from optiladder.graphs import FEATURIZERS, featurizer_from_spec

    f = Featurizer(cutoff=4.5)
    spec = f.spec()
    assert (
        spec["name"] == "optimate"
        and spec["params"]["cutoff"] == 4.5
        and FEATURIZERS["optimate"] is Featurizer
    )
    assert featurizer_from_spec(spec) == f
    with pytest.raises(ValueError, match="unknown featurizer"):
        featurizer_from_spec({"name": "chgnet-embeddings", "params": {}})
    with pytest.raises(ValueError, match="bad featurizer parameters"):
        featurizer_from_spec({"name": "optimate", "params": {"cutof": 5.0}})


def test_compressed_edges_preserve_multiplicity():
    g = structure_graph(WURTZITE)
    eidx, eattr, mult = g.compressed()
    assert mult.sum() == g.num_edges
    assert eidx.shape[1] == len(mult) < g.num_edges
    d = to_data(g)
    assert d.edge_index.shape[1] == len(mult) and float(d.edge_mult.sum()) == g.num_edges
    assert to_data(g, compress=False).edge_index.shape[1] == g.num_edges


def test_invalid_structures():
    with pytest.raises(GraphError):
        structure_graph({"lattice": {"matrix": [[0, 0, 0]] * 3}, "sites": []})
    with pytest.raises(GraphError):
        structure_graph({"not": "a structure"})
    with pytest.raises(GraphError, match="element"):
        structure_graph(Structure(Lattice.cubic(3.0), ["Fe"], [[0, 0, 0]]))


def test_ase_atoms_input():
    from pymatgen.io.ase import AseAtomsAdaptor

    g1 = structure_graph(WURTZITE)
    g2 = structure_graph(AseAtomsAdaptor.get_atoms(WURTZITE))
    assert g1.num_edges == g2.num_edges


def test_graph_is_fast(arrays):
    """~1 ms per graph of a small cell (measured ≈ 0.3 ms from a pymatgen dict)."""
    structs = arrays.structures
    structure_graph(structs[0])
    t0 = time.perf_counter()
    for s in structs:
        structure_graph(s)
    per_graph = (time.perf_counter() - t0) / len(structs)
    assert per_graph < 0.02  # generous bound for a busy CI machine


def test_neighbor_list_large_cutoff_small_cell():
    lat = np.eye(3) * 1.0
    i, j, d = neighbor_list(lat, np.zeros((1, 3)), 2.0)
    # lattice points of the simple cubic lattice within 2 (excluding the origin)
    pts = np.array(list(itertools.product(range(-3, 4), repeat=3)))
    r = np.linalg.norm(pts, axis=1)
    assert len(d) == np.sum((r > 0) & (r <= 2.0 + 1e-8))


def test_graph_cache(tmp_path, arrays):
    cache = GraphCache(root=tmp_path)
    g1 = cache.graphs(arrays.ids[:10], arrays.structures[:10])
    assert cache.path.exists()
    cache2 = GraphCache(root=tmp_path)
    g2 = cache2.graphs(arrays.ids[:10], arrays.structures[:10], save=False)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_array_equal(a.edge_index, b.edge_index)
        np.testing.assert_allclose(a.edge_attr, b.edge_attr)
    direct = structure_graph(arrays.structures[3])
    np.testing.assert_array_equal(g2[3].edge_index, direct.edge_index)
    # another featurizer uses another file
    assert GraphCache(Featurizer(cutoff=4.0), root=tmp_path).path != cache.path
