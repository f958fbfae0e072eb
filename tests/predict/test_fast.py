"""The fast default path of the Predictor against the torch path (``fast=False, embedding_memo=0``).

Real structures (the bundled examples, the records of tests/fixtures/learn, a 1-atom cell, 4- and 6-atom
supercells): the stacked NumPy
forward (:mod:`optiladder.nn.stacked`) with duplicate edges collapsed gives Im ε and SC[RPA; IPA] within 1e-5
(absolute) of every network run in torch on the full multigraph; the FFT form of Kramers–Kronig equals the dense
quadrature kernel; the embedding memo returns identical output for a repeated structure and misses a new one.
The default half-precision heads (``head_precision="fp16"``) stay within 1e-4 of the float32 path's peak and do
not depend on the other structures of a batch.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from optiladder.predict import Predictor, expand_inputs
from optiladder.spectra import _kk_real_kernel, kk_real_from_imag, kk_real_from_imag_matrix

LEARN = Path(__file__).resolve().parents[1] / "fixtures" / "learn"
ATOL = 1e-5
#: float32 sums in a different order (BLAS vs torch, batched products): ~1e-6 relative on peaks of Im ε ~ 20
RTOL = 2e-6


def _one_atom():
    """fcc Si with one atom per cell (a real 1-atom input: every edge is an atom's own periodic image)."""
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.from_parameters(3.9, 3.9, 3.9, 60, 60, 60), ["Si"], [[0, 0, 0]])


@pytest.fixture(scope="module")
def inputs(examples):
    from pymatgen.core import Structure

    sources = expand_inputs([examples])
    for p in sorted(LEARN.glob("*.json.gz")):
        sources.append(Structure.from_dict(json.loads(gzip.decompress(p.read_bytes()))["structure"]))
    sic = Structure.from_file(examples / "SiC.cif")
    srclf = Structure.from_file(examples / "SrClF.cif")
    # 4- and 6-atom cells (supercells: every atom has duplicate images at other sites)
    return [*sources, _one_atom(), sic * (2, 1, 1), srclf * (2, 1, 1)]


@pytest.fixture(scope="module")
def both(predictor, inputs):
    """(fast float32 results, torch-path results) of every input, same loaded models."""
    slow = Predictor(predictor.models, fast=False, embedding_memo=0)
    fast = Predictor(predictor.models, head_precision="fp32")
    assert fast.fast and fast.embedding_memo is not None
    return fast.predict(inputs), slow.predict(inputs)


def test_half_precision_heads_match_float32_and_ignore_the_batch(predictor, both, inputs):
    """The default path (float16 head weights) against the float32 fast path: Im ε within 1e-4 of each
    spectrum's peak (float16 rounds a weight by ≤ 2⁻¹¹ relative; measured ~2e-5), SC[RPA; IPA] unchanged to
    float32 rounding (its head stays float32; the embedding memo may hold a structure's foundation embeddings from
    another batch, which moves the last bit), the same warnings; and a structure predicted alone gives what it gives in a batch to
    float32 rounding (activations are not quantized, so nothing depends on the batch)."""
    from optiladder.nn.stacked import HALF_MIN_WEIGHTS

    assert predictor.head_precision == "fp16"
    half, full = predictor.predict(inputs), both[0]
    worst = 0.0
    for a, b in zip(half, full, strict=True):
        assert a.ok and b.ok
        for lv in a.spectra:
            ia, ib = a.spectra[lv].trace_im(), b.spectra[lv].trace_im()
            worst = max(worst, float(np.abs(ia - ib).max() / np.abs(ib).max()))
        assert a.sc == pytest.approx(b.sc, abs=1e-6) and a.warnings == b.warnings
    assert 0.0 < worst < 1e-4, worst  # > 0: the heads really ran in half precision
    alone = predictor.predict(inputs[3:4])[0]
    # float32 sum order only (the body's products block differently for another number of rows); a per-batch
    # activation scale (int8 dynamic quantization) would move it by ~1e-3 of the peak
    np.testing.assert_allclose(
        alone.spectra["rpa"].trace_im(), half[3].spectra["rpa"].trace_im(), rtol=RTOL, atol=ATOL
    )
    # the large spectrum heads are halved, the small sc heads are not
    groups = next(iter(predictor._stacked_nets().values()))._head_groups
    assert sorted(g.precision for _, g in groups) == ["fp16", "fp32"]
    assert sum(p.numel() for p in predictor.models["sc"].nets[0].head.parameters()) < HALF_MIN_WEIGHTS
    with pytest.raises(ValueError, match="head_precision"):
        Predictor(predictor.models, head_precision="int4")


def test_fast_path_equals_torch_path(both):
    fast, slow = both
    sizes = {r.nsites for r in fast}
    assert 1 in sizes and max(sizes) >= 4, sizes
    for a, b in zip(fast, slow, strict=True):
        assert a.ok and b.ok, (a.error, b.error)
        assert set(a.spectra) == set(b.spectra) == {"ipa", "rpa"}
        for lv in a.spectra:
            np.testing.assert_allclose(
                a.spectra[lv].trace_im(), b.spectra[lv].trace_im(), rtol=RTOL, atol=ATOL
            )
            # Re ε: the torch path's dense kernel multiplies in float32 (~1e-6 relative)
            np.testing.assert_allclose(
                a.spectra[lv].trace_re(), b.spectra[lv].trace_re(), rtol=1e-5, atol=1e-4
            )
        np.testing.assert_allclose(a.spread["rpa"], b.spread["rpa"], rtol=0, atol=ATOL)
        assert abs(a.sc - b.sc) <= ATOL
        assert a.trust["rpa"]["expected_sc"] == pytest.approx(b.trust["rpa"]["expected_sc"], abs=1e-4)
        assert a.warnings == b.warnings and a.novel_bonds == b.novel_bonds


def test_stacked_forward_equals_each_torch_network(predictor, inputs):
    """Raw outputs of every member network and the pooled embeddings, stacked NumPy against torch."""
    import torch

    from optiladder.nn.stacked import FastBatch, StackedOptiMate
    from optiladder.predict import GraphBatch

    h = next(iter(predictor.featurizers))
    graphs = [predictor.graph(predictor.read(s))[h] for s in inputs[:12]]
    net = StackedOptiMate({n: m.nets for n, m in predictor.models.items()})
    y, z = net.forward(FastBatch.from_graphs(graphs))
    batch = GraphBatch.from_graphs(graphs)
    with torch.inference_mode():
        for name, m in predictor.models.items():
            want = torch.stack([n(batch) for n in m.nets]).numpy()
            assert y[name].shape == want.shape
            np.testing.assert_allclose(y[name], want, rtol=0, atol=3e-5, err_msg=name)
            np.testing.assert_allclose(z[name], m.nets[0].embed(batch).numpy(), rtol=0, atol=1e-5)


def test_duplicate_edge_collapse_is_exact(predictor, inputs):
    from optiladder.nn.stacked import FastBatch, StackedOptiMate, collapse_edges

    h = next(iter(predictor.featurizers))
    graphs = [predictor.graph(predictor.read(s))[h] for s in inputs]
    full, merged = FastBatch.from_graphs(graphs, collapse=False), FastBatch.from_graphs(graphs)
    assert merged.src.size < full.src.size / 2  # symmetric images: most edges are duplicates
    assert full.log_mult is None and merged.log_mult is not None
    assert np.exp(merged.log_mult).sum() == pytest.approx(full.src.size, rel=1e-6)  # every edge counted once
    net = StackedOptiMate({n: m.nets for n, m in predictor.models.items()})
    (y_full, z_full), (y_merged, z_merged) = net.forward(full), net.forward(merged)
    for name in y_full:
        # float32 sums in another order: v2026.12.07's raw outputs reach ~31, where 1e-5 is 3e-7 relative
        np.testing.assert_allclose(y_merged[name], y_full[name], rtol=RTOL, atol=ATOL)
        # float32 sum order: v2026.12.07b's pooled embeddings move by up to 1.9e-6 (on entries of ~0.04)
        np.testing.assert_allclose(z_merged[name], z_full[name], rtol=1e-5, atol=5e-6)
    # only identical rows are merged: an edge whose features differ in one bit stays its own edge
    src, dst = np.array([0, 0, 0, 1]), np.array([1, 1, 1, 0])
    attr = np.ones((4, 3), np.float32)
    attr[2, 1] = np.nextafter(np.float32(1), np.float32(2))
    s, d, a, m = collapse_edges(src, dst, attr)
    assert m.tolist() == [2.0, 1.0, 1.0] and s.tolist() == [0, 0, 1] and a[1, 1] == attr[2, 1]


def test_edge_projection_per_distinct_feature_row_is_exact(predictor, inputs, monkeypatch):
    """The GATv2 edge projections computed once per distinct edge feature row and gathered per edge give the
    same outputs, bit for bit, as one projection per edge; an edge whose features differ in one bit keeps its row."""
    from optiladder.nn import stacked

    h = next(iter(predictor.featurizers))
    graphs = [predictor.graph(predictor.read(s))[h] for s in inputs]
    net = stacked.StackedOptiMate({n: m.nets for n, m in predictor.models.items()})
    monkeypatch.setattr(stacked, "UNIQUE_EDGE_ROWS", False)
    per_edge = stacked.FastBatch.from_graphs(graphs)
    assert per_edge.attr_of_edge is None and per_edge.attr_rows is per_edge.edge_attr
    y_edge, z_edge = net.forward(per_edge)
    monkeypatch.setattr(stacked, "UNIQUE_EDGE_ROWS", True)
    per_row = stacked.FastBatch.from_graphs(graphs)
    # equal neighbour distances: far fewer distinct rows than edges (a third in the dataset's batches)
    assert per_row.attr_rows.shape[0] < per_row.edge_attr.shape[0] / 2
    np.testing.assert_array_equal(per_row.attr_rows[per_row.attr_of_edge], per_row.edge_attr)
    y_row, z_row = net.forward(per_row)
    for name in y_edge:
        np.testing.assert_array_equal(y_row[name], y_edge[name], err_msg=name)
        np.testing.assert_array_equal(z_row[name], z_edge[name], err_msg=name)
    # rows differing in one bit are two rows: change one bit of an edge that shares its row with another
    g = graphs[0]
    before = stacked.FastBatch.from_graphs([g], collapse=False)
    counts = np.bincount(before.attr_of_edge)
    e = int(np.flatnonzero(counts[before.attr_of_edge] > 1)[0])
    attr = np.array(before.edge_attr)
    attr[e, np.argmax(attr[e])] = np.nextafter(attr[e].max(), np.float32(np.inf))
    after = stacked.FastBatch.from_graphs(
        [dataclasses.replace(g, edge_index=np.stack([before.src, before.dst]), edge_attr=attr)],
        collapse=False,
    )
    assert after.attr_rows.shape[0] == before.attr_rows.shape[0] + 1


def test_fft_kramers_kronig_equals_quadrature_kernel(both):
    """Real predicted spectra: the FFT form equals the float64 dense kernel to 1e-9 and the float32 matrix form
    (the previous default) to 1e-4."""
    fast, _ = both
    im = np.stack([r.spectra[lv].trace_im() for r in fast for lv in ("ipa", "rpa")])
    omega = fast[0].spectra["rpa"].omega
    for tail in (3.0, None):
        exact = 1.0 + im @ _kk_real_kernel(omega, omega, tail)
        got = kk_real_from_imag(omega, im, tail=tail)
        np.testing.assert_allclose(got, exact, rtol=0, atol=1e-9)
        np.testing.assert_allclose(kk_real_from_imag_matrix(omega, im, tail=tail), got, rtol=0, atol=1e-4)
    # a non-uniform grid, or an output grid, takes the matrix form
    w = np.concatenate([omega[:100], omega[100::2]])
    np.testing.assert_array_equal(
        kk_real_from_imag(w, im[:2, np.r_[0:100, 100:2001:2]], tail=3.0),
        kk_real_from_imag_matrix(w, im[:2, np.r_[0:100, 100:2001:2]], tail=3.0),
    )


def test_embedding_memo_hit_is_identical_and_new_structure_misses(predictor, examples):
    from optiladder.foundation import EmbeddingMemo

    p = Predictor(predictor.models, embedding_memo=8)
    cif = examples / "SiC.cif"
    first = p.predict_one(cif)
    assert (p.embedding_memo.hits, p.embedding_memo.misses) == (0, 1)
    again = p.predict_one(cif)
    assert (p.embedding_memo.hits, p.embedding_memo.misses) == (1, 1)
    for lv in first.spectra:
        np.testing.assert_array_equal(again.spectra[lv].trace_im(), first.spectra[lv].trace_im())
    assert again.sc == first.sc and again.trust == first.trust
    strained = p.read(cif)
    strained.apply_strain(0.01)
    other = p.predict_one(strained, "strained SiC")
    assert (p.embedding_memo.hits, p.embedding_memo.misses) == (1, 2)
    assert not np.array_equal(other.spectra["rpa"].trace_im(), first.spectra["rpa"].trace_im())
    # LRU: the least recently used structure goes first
    memo = EmbeddingMemo(1)
    s1, s2 = p.read(cif), strained
    e1 = memo.each([s1])[0]
    assert memo.each([s1])[0] is e1 and memo.hits == 1
    memo.each([s2])
    assert len(memo) == 1 and memo.each([s1])[0] is not e1 and memo.misses == 3
    assert Predictor(predictor.models, embedding_memo=0).embedding_memo is None


def test_segment_sums_and_maxima_match_reduceat(monkeypatch):
    """The fast path's segment reductions (sparse product, gather rounds) against NumPy's reduceat, on segments of
    lengths 1 to 40, wide and narrow rows, many segments and few (SEGMENT_MIN lowered so that the sparse forms run
    there too); SEGMENT_REDUCE = "reduceat" is NumPy's form itself."""
    from optiladder.nn import stacked

    monkeypatch.setattr(stacked, "SEGMENT_MIN", 2)
    rng = np.random.default_rng(3)
    for n_seg, width in ((200, (9, 4)), (80, (3456,)), (3, (7,))):
        counts = rng.integers(1, 41, n_seg)
        counts[0] = 1
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        x = rng.standard_normal((int(counts.sum()), *width)).astype(np.float32)
        s, m = stacked.segment_sum(x, starts), stacked.segment_max(x, starts)
        assert s.shape == m.shape == (n_seg, *width) and s.dtype == m.dtype == np.float32
        np.testing.assert_array_equal(m, np.maximum.reduceat(x, starts, axis=0))
        np.testing.assert_allclose(s, np.add.reduceat(x, starts, axis=0), rtol=1e-5, atol=1e-4)
        # each segment's sum is its own rows' (not a neighbour's): the last row changes only the last segment
        y = x.copy()
        y[-1] += 100.0
        moved = np.abs(stacked.segment_sum(y, starts) - s).reshape(n_seg, -1).max(axis=1)
        assert moved[-1] > 99.0 and (n_seg == 1 or moved[:-1].max() == 0.0)
    monkeypatch.setattr(stacked, "SEGMENT_REDUCE", "reduceat")
    np.testing.assert_array_equal(stacked.segment_sum(x, starts), np.add.reduceat(x, starts, axis=0))


def test_edge_blocks_change_no_number(predictor, inputs, monkeypatch):
    """The GATv2 edge features built in blocks of edges (cache-sized) give bit-identical outputs to one block."""
    from optiladder.nn import stacked

    h = next(iter(predictor.featurizers))
    batch = stacked.FastBatch.from_graphs([predictor.graph(predictor.read(s))[h] for s in inputs])
    net = stacked.StackedOptiMate({n: m.nets for n, m in predictor.models.items()})
    monkeypatch.setattr(stacked, "EDGE_BLOCK", 7)  # many blocks, a ragged last one
    assert batch.src.size > 10 * 7 and batch.src.size % 7
    y_blocks, z_blocks = net.forward(batch)
    monkeypatch.setattr(stacked, "EDGE_BLOCK", 10**9)
    y_one, z_one = net.forward(batch)
    for name in y_one:
        np.testing.assert_array_equal(y_blocks[name], y_one[name])
        np.testing.assert_array_equal(z_blocks[name], z_one[name])


def test_a_body_shared_bit_for_bit_is_computed_once(predictor, inputs):
    """An sc-like network trained on an rpa member's frozen body (``member-heads-frozen``) shares that body in
    the stacked forward: one body fewer, and its outputs still equal its own torch forward; a body that differs
    in one weight by one float32 step is not shared."""
    import copy

    import torch

    from optiladder.nn.stacked import FastBatch, StackedOptiMate, body_fingerprint
    from optiladder.predict import GraphBatch
    from optiladder.training.freelabels import transfer_body

    member = predictor.models["rpa"].nets[1]
    head_keys = ("out_dim", "output_activation", "head_hidden", "head_width", "head_blocks")
    cfg = {k: v for k, v in member.config.items() if k not in head_keys}
    torch.manual_seed(0)  # the shipped architecture (OptiMate or CGAT) with a small 1-value head
    frozen = type(member)(**cfg, out_dim=1, output_activation="none", **type(member).head_config([16, 16]))
    transfer_body(member, frozen)
    frozen.set_trainable("head")
    frozen.train()  # the frozen body stays in eval mode: its batch-norm statistics do not move
    graphs_t = GraphBatch.from_graphs([predictor.graph(predictor.read(s))[next(iter(predictor.featurizers))]
                                       for s in inputs[:6]])  # fmt: skip
    frozen(graphs_t)
    frozen.eval()
    assert body_fingerprint(frozen) == body_fingerprint(member)
    nudged = copy.deepcopy(frozen)
    with torch.no_grad():
        w = next(nudged.convs[0].parameters())
        w.view(-1)[0] = torch.nextafter(w.view(-1)[0], torch.tensor(float("inf")))
    assert body_fingerprint(nudged) != body_fingerprint(member)

    h = next(iter(predictor.featurizers))
    graphs = [predictor.graph(predictor.read(s))[h] for s in inputs[:6]]
    nets = {"rpa": predictor.models["rpa"].nets, "sc": [frozen, nudged]}
    stacked = StackedOptiMate(nets)
    assert (
        stacked.bodies == len(nets["rpa"]) + 1
    )  # the frozen copy shares member 1's body, the nudged one not
    y, _ = stacked.forward(FastBatch.from_graphs(graphs))
    with torch.inference_mode():
        for k, net in enumerate(nets["sc"]):
            np.testing.assert_allclose(y["sc"][k], net(graphs_t).numpy(), rtol=0, atol=3e-5)
        np.testing.assert_allclose(y["rpa"][1], member(graphs_t).numpy(), rtol=0, atol=3e-5)


def _randomised_batch_norms(net, seed: int):
    """Give every batch norm of ``net`` non-trivial running statistics and affine weights (eval mode folds them
    into the linear layers, so the default mean 0 / variance 1 would test nothing)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(0.3 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1 + 0.2 * torch.randn(m.normalized_shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.normalized_shape, generator=g))
    return net.eval()


def test_stacked_cgat_equals_each_torch_network(inputs):
    """CGAT networks (the levers study's CGAT variant) in the stacked NumPy forward: spectrum and 1-value
    residual heads, a 2-member ensemble, beside an OptiMate network in the same forward (grouped by class), on
    real graphs with collapsed duplicate edges (the 1-atom cell and the supercells included): raw outputs and
    pooled embeddings equal each torch network's on the full multigraph."""
    import torch

    from optiladder.graphs import structure_graph
    from optiladder.nn import CGAT, OptiMate
    from optiladder.nn.stacked import FastBatch, StackedOptiMate
    from optiladder.predict import GraphBatch, read_structure

    small = {"width": 32, "heads": 4, "layers": 2, "context": 16, "head_width": 64, "head_blocks": 2}
    torch.manual_seed(7)
    nets = {
        "rpa": [_randomised_batch_norms(CGAT(**small), s) for s in (1, 2)],
        "sc": [
            _randomised_batch_norms(
                CGAT(**small, out_dim=1, output_activation="none", target_shift=0.7, target_scale=0.1), 3
            )
        ],  # fmt: skip
        "ipa": [
            _randomised_batch_norms(
                OptiMate(node_hidden=[16, 16], gat_channels=[8, 8], gat_heads=[2, 2], head_hidden=[32]), 4
            )
        ],  # fmt: skip
    }
    graphs = [structure_graph(read_structure(s) if not hasattr(s, "lattice") else s) for s in inputs[:10]]
    graphs += [structure_graph(s) for s in inputs[-3:]]
    stacked = StackedOptiMate(nets)
    y, z = stacked.forward(FastBatch.from_graphs(graphs))
    batch = GraphBatch.from_graphs(graphs)
    with torch.inference_mode():
        for name, ms in nets.items():
            want = torch.stack([n(batch) for n in ms]).numpy()
            assert y[name].shape == want.shape and np.abs(want).max() > 0.1
            np.testing.assert_allclose(y[name], want, rtol=1e-4, atol=1e-4, err_msg=name)
            np.testing.assert_allclose(
                z[name], ms[0].embed(batch).numpy(), rtol=1e-4, atol=1e-4, err_msg=name
            )
    # one graph alone gives what it gives inside the batch
    y1, _ = stacked.forward(FastBatch.from_graphs(graphs[3:4]))
    np.testing.assert_allclose(y1["rpa"][:, 0], y["rpa"][:, 3], rtol=1e-4, atol=1e-4)
