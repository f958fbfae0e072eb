"""The CGAT body: multigraph = compressed graph, composition context, model format round trip, head-only transfer."""

from __future__ import annotations

import torch

from optiladder.graphs import DEFAULT_FEATURIZER, collate, structure_graph, to_data
from optiladder.nn import CGAT, MODEL_CLASSES

SMALL = {"width": 16, "heads": 2, "layers": 2, "context": 8, "head_width": 32, "head_blocks": 1}


def test_cgat_multigraph_equals_compressed_and_shapes(arrays):
    from torch_geometric.data import Batch

    graphs = [structure_graph(s) for s in arrays.structures[:6]]
    full = Batch.from_data_list([to_data(g, compress=False) for g in graphs])
    comp = Batch.from_data_list([to_data(g) for g in graphs])
    assert comp.num_edges < full.num_edges
    m = CGAT(**SMALL).eval()
    a, c = m(full), m(comp)
    assert a.shape == (6, 2001) and m.embed(comp).shape == (6, 16 + 8)
    torch.testing.assert_close(c, a, atol=1e-5, rtol=1e-4)
    # one crystal alone gives what it gives inside a batch (the context vector is per crystal)
    torch.testing.assert_close(m(to_data(graphs[2])), c[2:3], atol=1e-5, rtol=1e-4)


def test_composition_context_sees_stoichiometry_only_through_atoms(arrays):
    """The context vector pools the atoms' initial (element) embeddings: a supercell (same composition,
    doubled atoms) has the same context and the same prediction."""
    from pymatgen.core import Structure

    m = CGAT(**SMALL).eval()
    s = Structure.from_dict(arrays.structures[0])
    big = s.copy()
    big.make_supercell([2, 1, 1])
    b = collate([structure_graph(s), structure_graph(big)])
    y = m(b)
    torch.testing.assert_close(y[0], y[1], atol=1e-4, rtol=1e-3)


def test_cgat_in_the_model_format(arrays, tmp_path):
    from optiladder.targets import get_target
    from optiladder.training import Model, load_model_dir, make_card, save_model

    assert MODEL_CLASSES["CGAT"] is CGAT
    net = CGAT(**SMALL).eval()
    target = get_target("rpa")
    model = Model([net], DEFAULT_FEATURIZER, target, make_card(name="cgat", target=target))
    save_model(tmp_path / "m", model)
    back = load_model_dir(tmp_path / "m")
    assert type(back.net) is CGAT and back.net.config == net.config
    graphs = [structure_graph(s) for s in arrays.structures[:4]]
    torch.testing.assert_close(
        torch.as_tensor(back.predict_graphs(graphs, raw=True)),
        torch.as_tensor(model.predict_graphs(graphs, raw=True)),
    )


def test_cgat_head_only_transfer_trains_only_the_head(arrays):
    m = CGAT(**SMALL)
    m.set_trainable("head")
    body = [
        p for n in ("node_mlp", "edge_mlp", "convs", "context", "pool") for p in getattr(m, n).parameters()
    ]
    assert body and all(not p.requires_grad for p in body)
    assert all(p.requires_grad for p in m.head.parameters())
    before = {k: v.clone() for k, v in m.state_dict().items()}
    batch = collate([structure_graph(s) for s in arrays.structures[:8]])
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    m.train()
    loss = m.loss(m(batch), torch.ones(8, 2001))
    loss.backward()
    opt.step()
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("head.") for k in changed)  # body weights and batch-norm stats fixed
    m.set_trainable("all")
    assert all(p.requires_grad for p in m.parameters())
