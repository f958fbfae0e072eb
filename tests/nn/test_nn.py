"""The OptiMate network: GATv2 against torch_geometric, shapes, invariances, config, freezing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Structure

from optiladder.graphs import collate, structure_graph, to_data
from optiladder.nn import GATv2, OptiMate, scalar_model

SMALL = {"node_hidden": (16, 16), "gat_channels": (8, 12), "gat_heads": (2, 2), "head_hidden": (32,)}


def test_gatv2_equals_torch_geometric_on_multigraph_and_compressed(arrays):
    from torch_geometric.data import Batch
    from torch_geometric.nn import GATv2Conv

    graphs = [structure_graph(s) for s in arrays.structures[:20]]
    full = Batch.from_data_list([to_data(g, compress=False) for g in graphs])
    comp = Batch.from_data_list([to_data(g) for g in graphs])
    assert comp.num_edges < full.num_edges / 2
    ref = GATv2Conv(13, 8, heads=3, edge_dim=51, add_self_loops=False)
    mine = GATv2(13, 8, heads=3, edge_dim=51)
    mine.load_state_dict(ref.state_dict(), strict=True)  # same parameter names and shapes
    a = ref(full.x, full.edge_index, full.edge_attr)
    b = mine(full.x, full.edge_index, full.edge_attr)
    c = mine(comp.x, comp.edge_index, comp.edge_attr, comp.edge_mult)
    torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c, a, atol=1e-5, rtol=1e-4)


def test_published_architecture_sizes():
    m = OptiMate()
    assert m.embedding_dim == 384
    assert [c.heads * c.out_channels for c in m.convs] == [192, 384]
    head_linears = [mod for mod in m.head.modules() if isinstance(mod, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in head_linears] == [
        (384, 1024), (1024, 1024), (1024, 1024), (1024, 2001),
    ]  # fmt: skip
    assert 4_000_000 < m.num_parameters() < 6_000_000
    assert m.config["out_dim"] == 2001 and m.config["gat_heads"] == [4, 4]


def test_shapes_and_embedding(arrays):
    m = OptiMate(**SMALL).eval()
    batch = collate([structure_graph(s) for s in arrays.structures[:5]])
    assert m(batch).shape == (5, 2001)
    assert m.embed(batch).shape == (5, 24)
    assert (m(batch) >= -0.1 * m(batch).abs().max()).all()  # leaky ReLU output
    single = to_data(structure_graph(arrays.structures[0]))
    torch.testing.assert_close(m(single), m(batch)[:1], atol=1e-5, rtol=1e-5)
    s = scalar_model(**SMALL).eval()
    assert s(batch).shape == (5, 1)


def test_pool_weights_sum_to_one(arrays):
    m = OptiMate(**SMALL).eval()
    batch = collate([structure_graph(s) for s in arrays.structures[:6]])
    w = m.pool.weights(m.node_embeddings(batch), batch.batch, batch.num_graphs)
    sums = torch.zeros(batch.num_graphs, w.shape[1]).index_add_(0, batch.batch, w)
    torch.testing.assert_close(sums, torch.ones_like(sums))


def _rotation(seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_rotation_translation_permutation_invariance(arrays):
    m = OptiMate().eval()  # full size
    for d in arrays.structures[:6]:
        st = Structure.from_dict(d)
        rot = _rotation(len(st))
        moved = Structure(
            st.lattice.matrix @ rot.T,
            [sp.symbol for sp in st.species][::-1],
            (st.cart_coords @ rot.T + np.array([0.3, -1.7, 2.2]))[::-1],
            coords_are_cartesian=True,
        )
        a = m(to_data(structure_graph(st)))
        b = m(to_data(structure_graph(moved)))
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)
    # a different crystal gives a different output (the test can fail)
    c = m(to_data(structure_graph(arrays.structures[7])))
    assert (a - c).abs().max() > 1e-3


def test_config_rebuilds_same_network():
    m = OptiMate(**SMALL)
    m2 = OptiMate(**m.config)
    m2.load_state_dict(m.state_dict(), strict=True)
    assert m2.config == m.config
    import json

    json.dumps(m.config)


def test_trainable_head_freezes_body(arrays):
    m = OptiMate(**SMALL)
    m.set_trainable("head")
    body = [p for n in ("node_mlp", "convs", "pool") for p in getattr(m, n).parameters()]
    assert all(not p.requires_grad for p in body)
    assert all(p.requires_grad for p in m.head.parameters())
    m.train()
    assert not m.node_mlp.training and m.head.training  # frozen batch-norm statistics stay fixed
    m.set_trainable("all")
    assert all(p.requires_grad for p in m.parameters())
    with pytest.raises(ValueError, match="unknown parameter group"):
        m.set_trainable("bogus")


def test_named_parameter_groups():
    """Trainable = a list of named groups: body only, or one GAT layer plus the head's last layer."""
    m = OptiMate(**SMALL)
    groups = m.parameter_groups()
    assert {"all", "head", "body", "convs.0", "convs.1", "node_mlp", "pool"} <= set(groups)
    m.set_trainable("body")
    assert all(p.requires_grad == (not n.startswith("head")) for n, p in m.named_parameters())
    last = [n for n in groups if n.startswith("head.mlp.layers.")][-1]
    m.set_trainable(["convs.1", last])
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("convs.1.", last + ".")) for n in trainable)
    assert any(n.startswith("convs.1.") for n in trainable) and m.trainable == ("convs.1", last)
    m.train()
    # batch norms of frozen parts stay in eval mode; the trainable GAT layer trains
    assert not m.node_mlp.training and not m.head.mlp.layers[1].training and m.convs[1].training
    n_train = m.num_parameters(trainable_only=True)
    assert 0 < n_train < m.num_parameters()


def test_the_model_owns_its_loss():
    x, y = torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 0.0]])
    assert float(OptiMate(**SMALL).loss(x, y)) == 2.0  # L1 by default
    assert float(OptiMate(**SMALL, loss="mse").loss(x, y)) == 5.0
    with pytest.raises(ValueError, match="loss"):
        OptiMate(**SMALL, loss="huber")
