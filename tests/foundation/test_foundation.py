"""Foundation-model node features: CHGNet 0.3.0 embeddings are invariant, cached and change with the crystal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("chgnet")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _rotated_translated(structure, seed: int = 3):
    """The same crystal rotated by a random proper rotation and translated by a random vector (Å)."""
    from pymatgen.core import Lattice, Structure
    from scipy.spatial.transform import Rotation

    rot = Rotation.random(random_state=seed).as_matrix()
    shift = np.random.default_rng(seed).normal(size=3) * 2.0
    lattice = Lattice(structure.lattice.matrix @ rot.T)
    cart = structure.cart_coords @ rot.T + shift
    return Structure(lattice, structure.species, cart, coords_are_cartesian=True)


def test_embeddings_invariant_to_rotation_and_translation():
    from pymatgen.core import Structure

    from optiladder.foundation import FoundationSpec, embeddings

    s = Structure.from_file(EXAMPLES / "SrClF.cif")
    moved = _rotated_translated(s)
    assert not np.allclose(s.cart_coords, moved.cart_coords)
    a, b = embeddings([s, moved])
    assert a.shape == (len(s), FoundationSpec().dim)
    np.testing.assert_allclose(a, b, atol=2e-4)
    # not a constant: a strained copy and another element give different vectors
    strained = s.copy()
    strained.apply_strain(0.05)
    (c,) = embeddings([strained])
    assert np.abs(c - a).max() > 1e-2
    assert np.abs(a[0] - a[-1]).max() > 1e-1  # Sr and F sites differ


def test_cache_and_graph_augmentation(tmp_path):
    from pymatgen.core import Structure

    from optiladder.foundation import EmbeddingCache, augment
    from optiladder.graphs import structure_graph

    s = Structure.from_file(EXAMPLES / "SiC.cif").as_dict()
    cache = EmbeddingCache(root=tmp_path)
    (e1,) = cache.get([s])
    assert cache.path.exists()
    (e2,) = EmbeddingCache(root=tmp_path).get([s])  # read back from disk
    np.testing.assert_array_equal(e1, e2)
    g = structure_graph(s)
    x = augment(g.x, e1)
    assert x.shape == (g.num_nodes, 13 + 64)
    np.testing.assert_array_equal(x[:, :13], g.x)
    with pytest.raises(ValueError, match="atoms"):
        augment(g.x, e1[:1])


def test_batched_graphs_equal_single_ones_and_isolate_a_bad_input():
    """One batched CHGNet forward for a chunk of inputs gives each structure the graph it gets alone; a structure
    CHGNet cannot describe (an atom with no neighbour within its 6 Å cutoff) gets its own error, the rest go on."""
    from pymatgen.core import Lattice, Structure

    from optiladder.graphs import FoundationFeaturizer, GraphError, structure_graph, structure_graphs

    feat = FoundationFeaturizer()
    good = [Structure.from_file(EXAMPLES / name) for name in ("SiC.cif", "SrClF.cif", "BN.cif")]
    lonely = Structure(
        Lattice.cubic(7.5), ["Na"], [[0, 0, 0]]
    )  # OptiMate's cutoff sees it, CHGNet's does not
    with pytest.raises(GraphError, match="chgnet"):
        structure_graph(lonely, feat)
    out = structure_graphs([good[0], lonely, good[1], good[2]], feat)
    assert isinstance(out[1], GraphError)
    for g, s in zip([out[0], out[2], out[3]], good, strict=True):
        alone = structure_graph(s, feat)
        np.testing.assert_allclose(g.x, alone.x, atol=2e-4)
        np.testing.assert_array_equal(g.edge_index, alone.edge_index)
