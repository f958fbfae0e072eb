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


def test_transfer_body_copies_the_whole_cgat_body_and_refuses_another_architecture():
    """What transfer learning copies from a CGAT: node and edge embeddings, attention layers, composition
    context and pooling; the head stays the receiver's; a CGAT body never goes into an OptiMate."""
    import pytest

    from optiladder.nn import OptiMate
    from optiladder.training.freelabels import transfer_body

    torch.manual_seed(0)
    src, dst = CGAT(**SMALL), CGAT(**SMALL, out_dim=1, output_activation="none")
    head_before = {k: v.clone() for k, v in dst.head.state_dict().items()}
    transfer_body(src, dst)
    assert src.body_modules() == ("node_mlp", "edge_mlp", "convs", "context", "pool")
    for name in src.body_modules():
        for (k, a), (_, b) in zip(
            getattr(src, name).state_dict().items(), getattr(dst, name).state_dict().items(), strict=True
        ):
            assert torch.equal(a, b), f"{name}.{k}"
    assert all(torch.equal(v, head_before[k]) for k, v in dst.head.state_dict().items())
    with pytest.raises(TypeError, match="CGAT -> OptiMate"):
        transfer_body(src, OptiMate(node_dim=13))


def test_scalar_heads_keep_the_parents_architecture(arrays):
    """The sc recipes' 1-value networks on a CGAT parent are CGATs with the small head asked for (2×128 →
    width 128, one residual block), standardised targets, and with ``trainable="head"`` the parent's body
    unchanged bit for bit (batch-norm statistics included) while the head learns."""
    from optiladder.study.sc import head_widths, sc_labels, train_scalar_heads
    from optiladder.training import TrainSettings

    graphs = [to_data(structure_graph(s)) for s in arrays.structures[:24]]
    y = sc_labels(arrays)[:24]
    torch.manual_seed(1)
    parent = CGAT(**SMALL).eval()
    settings = lambda seed: TrainSettings(max_epochs=2, patience=2, batch_size=8, seed=seed)  # noqa: E731
    (net,) = train_scalar_heads(
        [parent], graphs[:16], y[:16], graphs[16:], y[16:], settings, hidden=(128, 128), trainable="head"
    )
    assert type(net) is CGAT and net.config["out_dim"] == 1 and net.config["output_activation"] == "none"
    assert head_widths(net.config) == [128, 128] and net.config["head_blocks"] == 1
    assert abs(net.config["target_shift"] - float(y[:16].mean())) < 1e-9
    for name in parent.body_modules():
        for k, v in getattr(parent, name).state_dict().items():
            assert torch.equal(v, getattr(net, name).state_dict()[k]), f"{name}.{k}"
    out = net(collate([structure_graph(s) for s in arrays.structures[:4]]))
    assert out.shape == (4, 1) and torch.isfinite(out).all()
    assert head_widths({"head_hidden": [1024, 1024, 1024]}) == [1024, 1024, 1024]
