"""Bounded geometry before any neighbour search: every bundled and fixture crystal passes, hostile cells do not."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from pymatgen.core import Structure

from optiladder import structures as st
from optiladder.graphs import GraphError, neighbor_list, structure_graph
from optiladder.structures import alexandria, cell_geometry, check_geometry, load, validate


def test_every_bundled_alexandria_structure_passes_unchanged_within_the_margins():
    """All 3,538 bundled structures pass, as given (no reduction), and each bound keeps a ≥ 2× margin
    (angles: ≥ 9°) on the extremes of the bundled set, as docs/structures.md states."""
    lengths, vpa, angles, spacings = [], [], [], []
    for e in alexandria():
        s = Structure.from_dict(e["structure"])
        assert check_geometry(s, e["mat_id"]) is s, e["mat_id"]
        assert st.min_distance(s.lattice.matrix, s.frac_coords, st.MIN_DISTANCE) is None, e["mat_id"]
        g = cell_geometry(s.lattice.matrix)
        lengths.append(g["lengths"])
        vpa.append(g["volume"] / len(s))
        angles.append(g["angles"])
        spacings.append(g["spacings"])
    lengths, angles, spacings = np.concatenate(lengths), np.concatenate(angles), np.concatenate(spacings)
    assert len(vpa) == 3538
    assert lengths.min() >= 2 * st.MIN_CELL_LENGTH and lengths.max() * 2 <= st.MAX_CELL_LENGTH
    assert min(vpa) >= 2 * st.MIN_VOLUME_PER_ATOM and max(vpa) * 2 <= st.MAX_VOLUME_PER_ATOM
    assert angles.min() - st.MIN_CELL_ANGLE >= 9 and st.MAX_CELL_ANGLE - angles.max() >= 8.5
    assert spacings.min() >= 2 * st.MIN_SPACING


def test_every_valid_fixture_and_example_passes(fixtures, examples):
    files = [
        *sorted((fixtures / "structures").iterdir()),
        *sorted(examples.glob("*.cif")),
        *examples.glob("*.POSCAR"),
    ]
    assert len(files) >= 8
    for f in files:
        load(f, check_setups=False)


def test_a_skewed_cell_of_a_good_crystal_is_reduced_not_refused():
    """SiC with its third vector sheared by 40 × the first: angles and spacings break the bounds as given,
    the LLL-reduced cell is the same crystal, and its graph (edges and distances) is the original's."""
    e = next(x for x in alexandria() if x["mat_id"] == "agm003157621")
    s = Structure.from_dict(e["structure"])
    m = s.lattice.matrix.copy()
    m[2] += 40 * m[0]
    sheared = Structure(m, s.species, s.cart_coords, coords_are_cartesian=True)
    assert st._cell_problem(sheared.lattice.matrix) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = validate(sheared, "sheared", check_setups=False)
    assert out is not sheared and st._cell_problem(out.lattice.matrix) is None
    assert out.volume == pytest.approx(s.volume, rel=1e-9)
    a, b = structure_graph(s), structure_graph(out)
    assert a.num_edges == b.num_edges
    assert np.allclose(np.sort(a.distances), np.sort(b.distances), atol=1e-4)


def test_neighbour_search_is_bounded_before_allocating():
    """A flat cell (spacing 1e-4 Å) with 64 atoms would need ~1e14 (image, i, j) triples: refused at once."""
    lattice = np.array([[5.0, 0, 0], [0, 5.0, 0], [2.5, 2.5, 1e-4]])
    cart = np.random.default_rng(0).random((64, 3)) @ lattice
    t0 = time.perf_counter()
    with pytest.raises(GraphError, match="neighbour search too large"):
        neighbor_list(lattice, cart, 5.0)
    assert time.perf_counter() - t0 < 1
    # chunked search gives the unchunked answer (the chunk is smaller than one image here)
    from optiladder import graphs

    lat = np.array([[3.0, 0, 0], [0, 3.2, 0], [0.4, 0.3, 3.5]])
    pos = np.random.default_rng(1).random((6, 3)) @ lat
    ref = neighbor_list(lat, pos, 5.0)
    old = graphs.PAIR_CHUNK
    try:
        graphs.PAIR_CHUNK = 7
        got = neighbor_list(lat, pos, 5.0)
    finally:
        graphs.PAIR_CHUNK = old
    for x, y in zip(ref, got, strict=True):
        assert np.array_equal(x, y)
