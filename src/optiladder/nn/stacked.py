"""All loaded OptiMate (and CGAT) networks in one NumPy (float32, BLAS) forward: the fast inference path of
``Predictor``.

:class:`StackedOptiMate` takes eval-mode :class:`~.optimate.OptiMate` networks that read the same graph (the
``ipa`` model, the members of the ``rpa`` ensemble, the ``sc`` model, …) and, once at load time, copies their
weights into contiguous per-layer stacks: networks whose layers have equal shapes are one group and run as
batched matrix products (``[K, n, in] @ [K, in, out]``); the first node layer and every GATv2 edge projection,
which read the shared graph input, are one product for all networks (the edge projections once per distinct
edge feature row of the batch: :data:`UNIQUE_EDGE_ROWS`). Batch norm (eval mode: a fixed per-channel
affine map) is folded into the preceding linear layer (in float64, then float32). Nothing is hard-coded: widths,
heads, layer counts, output sizes and member counts are read from the networks, so another featurizer (a wider
node feature) or another ensemble size needs no change. CGAT networks (:mod:`.cgat`: edge states, layer norm,
composition context, residual head) have their own stacked body and heads (:class:`_CGATBody`,
:class:`_ResidualHeads`, float32); networks are grouped by class, so one forward may hold both kinds
(:data:`PARTS`). Networks with a part this module does not know (e.g. an MLP with layer norm) are refused with
``NotImplementedError`` at construction (the caller keeps the torch path then).

The maths is that of :mod:`.gatv2`, :mod:`.pooling`, :mod:`.heads` and :mod:`.mlp` (eval mode, no dropout):

* node MLP ``Linear → BN → ReLU → … → Linear``;
* GATv2 per layer: ``z_e = LeakyReLU_s(W_l x_s + b_l + W_r x_t + b_r + W_e a_e)``, logits ``a_h · z_e^h``
  (+ ``log m_e`` for a collapsed edge of multiplicity ``m_e``), softmax over the edges into each node ``t``
  (max-shifted, ``+1e-16`` in the denominator as ``torch_geometric.utils.softmax``), ``x'_t = Σ_e α_e (W_l x_s
  + b_l) + b`` (heads concatenated), no activation between layers;
* attention pooling per channel over the nodes of each graph;
* head MLP with ReLU, leaky ReLU (slope 0.01) on a spectrum output, then ``· scale + shift``.

Duplicate edges (:func:`collapse_edges`): a crystal multigraph holds many edges with the same source, target and
bit-identical features (symmetric periodic images); ``m`` of them contribute exactly ``m`` times to the numerator
and denominator of the attention softmax, i.e. one edge with ``log m`` added to its logit. Only runs of
consecutive identical rows are merged (the graph builder sorts edges by centre, neighbour and distance, so equal
edges are adjacent); anything else is left as is, so the collapse never changes the maths.

Torch reads the weights at construction; in :meth:`StackedOptiMate.forward` it only runs the batched matrix
products of at least :data:`BMM_MIN_ROWS` rows (``torch.bmm`` on zero-copy views; fewer rows stay in NumPy).
Shapes: graphs in a :class:`FastBatch`; outputs ``[n_graphs, out_dim]`` per network, float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the small constant ``torch_geometric.utils.softmax`` adds to its denominators
SOFTMAX_EPS = 1e-16
#: slope of the leaky ReLU on a spectrum head's output (``torch.nn.functional.leaky_relu``'s default)
HEAD_LEAKY_SLOPE = 0.01
#: batched products with at least this many rows (graphs, or nodes) per network run in ``torch.bmm`` (:func:`_bmm`)
BMM_MIN_ROWS = 8
#: how segment sums and maxima (softmax over the edges into a node, pooling over a graph's nodes) are computed:
#: ``"sparse"`` (:func:`segment_sum`, :func:`segment_max`; default) or ``"reduceat"`` (NumPy's ``ufunc.reduceat``,
#: the form before 2026-12-07, kept for the benchmark's side-by-side run)
SEGMENT_REDUCE = "sparse"
#: fewer segments than this (one CIF: a few nodes) stay with ``reduceat``, whose cost there is below the sparse
#: matrix's construction
SEGMENT_MIN = 32
#: edges per block of the GATv2 edge features (:meth:`_Body._gat`): 128 edges × 11 networks × 384 channels
#: (float32) is ~2 MB, one core's L2 cache here; 64–256 measured alike, one block (the whole batch) ~12 % slower
EDGE_BLOCK = 128
#: how the head MLPs multiply (:class:`_Heads`): ``"fp32"`` (stacked float32 products, equal to the torch
#: networks to float32 rounding) or ``"fp16"`` (float16 weights, float32 arithmetic)
HEAD_PRECISIONS = ("fp32", "fp16")
#: a head group whose networks hold fewer weights each than this stays float32 whatever the precision asked
#: (the sc heads: 65 k weights, where the per-network calls of the half-precision path cost more than they save)
HALF_MIN_WEIGHTS = 1 << 18
#: the GATv2 edge projections ``W_e a_e`` of every layer and network are computed once per distinct edge feature
#: row of a batch (:attr:`FastBatch.attr_rows`: equal neighbour distances give bit-identical rows; a third as many
#: rows as edges in the dataset's batches) and gathered per edge; False: one product per edge (the form before
#: the third session of 2026-12-07, bench/predict's ``fast-before``)
UNIQUE_EDGE_ROWS = True
#: edge features of smaller magnitude are set to 0 (they are 1e-20 of the row's largest value or less, below
#: float32 resolution, and their products with the weights would be slow subnormal floats)
EDGE_FLUSH = 1e-20


# ------------------------------------------------------------------------------------------------
# graph input
# ------------------------------------------------------------------------------------------------
def collapse_edges(
    src: np.ndarray, dst: np.ndarray, edge_attr: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge runs of consecutive edges with equal source, target and bit-identical features.

    Returns ``(src [m], dst [m], edge_attr [m, D], multiplicity [m] float32)``; the first edge of each run keeps
    its features. Exact for GATv2 attention with ``log m`` added to the logits (see the module docstring).
    """
    e = src.shape[0]
    if e < 2:
        return src, dst, edge_attr, np.ones(e, np.float32)
    same = (src[1:] == src[:-1]) & (dst[1:] == dst[:-1]) & np.all(edge_attr[1:] == edge_attr[:-1], axis=1)
    start = np.flatnonzero(np.concatenate(([True], ~same)))
    counts = np.diff(np.append(start, e)).astype(np.float32)
    return src[start], dst[start], edge_attr[start], counts


@dataclass
class FastBatch:
    """Several graphs as one disconnected graph, edges sorted by target, for :meth:`StackedOptiMate.forward`.

    ``x`` ``[n_nodes, node_dim]`` float32; ``src``/``dst`` ``[n_edges]`` (messages flow ``src → dst``, sorted by
    ``dst``); ``edge_attr`` ``[n_edges, edge_dim]`` float32 (values below :data:`EDGE_FLUSH` set to 0); ``log_mult`` ``[n_edges]`` (log multiplicity of
    collapsed edges, None when no edge was merged); ``targets``: the nodes with incoming edges, ``starts`` the
    first edge of each (segment starts for :func:`segment_sum`) and ``edge_target`` each edge's position in
    ``targets``; edges are sorted by (target, source), and ``pair_starts`` is the first edge of every
    (target, source) pair, ``pair_src`` its source, ``pair_target_starts`` the first pair of every target;
    ``graph_starts`` the first node of every graph; ``num_graphs``. ``attr_rows`` ``[U, edge_dim]``: the distinct
    rows of ``edge_attr`` (bit-identical rows merged; all rows, ``attr_of_edge`` None, when :data:`UNIQUE_EDGE_ROWS`
    is off, when no row repeats, when there are fewer than 2 edges or only one distinct row) and ``attr_of_edge``
    ``[n_edges]`` each edge's row there (None: row ``e`` is edge ``e``). Both are derived by :meth:`from_graphs`: a
    copy with other ``edge_attr`` must be built again, not made by ``dataclasses.replace``.
    """

    x: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    edge_attr: np.ndarray
    log_mult: np.ndarray | None
    targets: np.ndarray
    starts: np.ndarray
    edge_target: np.ndarray
    pair_starts: np.ndarray
    pair_src: np.ndarray
    pair_target_starts: np.ndarray
    graph_starts: np.ndarray
    num_graphs: int
    attr_rows: np.ndarray | None = None
    attr_of_edge: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.attr_rows is None:
            self.attr_rows = self.edge_attr

    @classmethod
    def from_graphs(cls, graphs: Sequence[Any], *, collapse: bool = True) -> FastBatch:
        """From :class:`optiladder.graphs.Graph` objects (``x``, ``edge_index`` (row 0 = source), ``edge_attr``);
        ``collapse``: merge duplicate edges (:func:`collapse_edges`)."""
        n_nodes = np.array([g.x.shape[0] for g in graphs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(n_nodes)[:-1]]).astype(np.int64)
        x = graphs[0].x if len(graphs) == 1 else np.concatenate([g.x for g in graphs])
        src = np.concatenate([g.edge_index[0] + off for g, off in zip(graphs, offsets, strict=True)])
        dst = np.concatenate([g.edge_index[1] + off for g, off in zip(graphs, offsets, strict=True)])
        attr = graphs[0].edge_attr if len(graphs) == 1 else np.concatenate([g.edge_attr for g in graphs])
        mult = None
        if collapse:
            src, dst, attr, m = collapse_edges(src, dst, attr)
            mult = m if src.shape[0] and m.max() > 1 else None
        order = np.lexsort((src, dst))
        src, dst, attr = src[order], dst[order], np.array(attr[order], dtype=np.float32)
        # Gaussians of far centres are tiny (down to subnormal floats), and their products with the weights
        # underflow to subnormals, which make every product several times slower on x86; every row has a value
        # above 1 (the nearest centre is within 0.05 Å), so values below EDGE_FLUSH change no float32 sum
        attr[np.abs(attr) < EDGE_FLUSH] = 0.0
        log_mult = None if mult is None else np.log(mult[order]).astype(np.float32)
        rows, row_of = attr, None
        if UNIQUE_EDGE_ROWS and attr.shape[0] > 1 and attr.shape[1] > 0:
            # bit-identical rows (the same neighbour distance) through their bytes: exact, ~0.3 ms for 1,000 edges
            key = np.ascontiguousarray(attr).view(np.dtype((np.void, attr.shape[1] * attr.itemsize))).ravel()
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            # one distinct row would be a matrix-vector product (BLAS gemv), whose sums may differ in the last bits
            # from the matrix product's rows: keep the per-edge form there
            if 1 < first.size < attr.shape[0]:
                rows, row_of = attr[first], inverse.reshape(-1)
        if dst.size:
            new_target = np.concatenate(([True], dst[1:] != dst[:-1]))
            new_pair = new_target | np.concatenate(([True], src[1:] != src[:-1]))
            starts = np.flatnonzero(new_target)
            pair_starts = np.flatnonzero(new_pair)
            targets = dst[starts]
            edge_target = np.cumsum(new_target) - 1
            pair_target_starts = np.flatnonzero(new_target[pair_starts])
            pair_src = src[pair_starts]
        else:
            starts = targets = edge_target = pair_starts = pair_src = pair_target_starts = np.zeros(
                0, np.int64
            )
        return cls(
            x=np.ascontiguousarray(x, dtype=np.float32),
            src=src,
            dst=dst,
            edge_attr=attr,
            log_mult=log_mult,
            targets=targets,
            starts=starts,
            edge_target=edge_target,
            pair_starts=pair_starts,
            pair_src=pair_src,
            pair_target_starts=pair_target_starts,
            graph_starts=offsets,
            num_graphs=len(graphs),
            attr_rows=rows,
            attr_of_edge=row_of,
        )


# ------------------------------------------------------------------------------------------------
# weights
# ------------------------------------------------------------------------------------------------
def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def mlp_layers(seq: Any) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """``(W [in, out] float64, b [out], relu after)`` of every linear layer of an eval-mode ``nn.Sequential``
    (``Linear``, ``BatchNorm1d`` folded into the linear before it, ``ReLU``, ``Dropout`` = identity)."""
    from torch import nn

    layers: list[list[Any]] = []
    for mod in seq:
        if isinstance(mod, nn.Linear):
            b = _np(mod.bias) if mod.bias is not None else np.zeros(mod.out_features)
            layers.append([_np(mod.weight).T.copy(), b, False])
        elif isinstance(mod, nn.BatchNorm1d) and layers and not layers[-1][2]:
            if not mod.track_running_stats or mod.running_mean is None:
                raise NotImplementedError("batch norm without running statistics")
            s = 1.0 / np.sqrt(_np(mod.running_var) + mod.eps)
            if mod.affine:
                s = s * _np(mod.weight)
            shift = (_np(mod.bias) if mod.affine else 0.0) - _np(mod.running_mean) * s
            layers[-1][0] = layers[-1][0] * s[None, :]
            layers[-1][1] = layers[-1][1] * s + shift
        elif isinstance(mod, nn.ReLU) and layers:
            layers[-1][2] = True
        elif isinstance(mod, nn.Dropout):
            continue
        else:
            raise NotImplementedError(f"no fast path for {type(mod).__name__} in an MLP")
    return [(w, b, r) for w, b, r in layers]


def _stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.stack(arrays), dtype=np.float32)


def _signature(net: Any, part: str) -> tuple:
    return tuple((k, tuple(v.shape)) for k, v in net.state_dict().items() if k.startswith(part + "."))


#: compute a body shared bit for bit by several networks once (:func:`body_fingerprint`); False: every network its
#: own body (the fast path before 2026-12-07's evening session; same numbers; bench/predict's ``share_bodies``)
SHARE_BODIES = True
#: the parts of an OptiMate network before the head (what :class:`_Body` computes)
BODY_PARTS = ("node_mlp", "convs", "pool")
#: config keys that only concern the head (two networks with bit-identical body weights and equal other keys
#: compute the same embedding)
HEAD_CONFIG = (
    "head_hidden",
    "head_width",
    "head_blocks",
    "out_dim",
    "output_activation",
    "target_shift",
    "target_scale",
    "loss",
    "dropout",
)


def body_fingerprint(net: Any) -> str:
    """sha256 of a network's body: its non-head config and every body tensor (weights and batch-norm buffers),
    bit for bit. Equal fingerprints mean equal embeddings for every input (e.g. an ``sc`` network trained on its
    ``rpa`` member's frozen body), so :class:`StackedOptiMate` computes such a body once."""
    import hashlib
    import json

    import torch

    h = hashlib.sha256()
    cfg = {k: v for k, v in getattr(net, "config", {}).items() if k not in HEAD_CONFIG}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    parts = net.body_modules() if hasattr(net, "body_modules") else BODY_PARTS
    for k, v in net.state_dict().items():
        if k.split(".", 1)[0] in parts:
            t = v.detach().cpu().contiguous()
            h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update((t.float() if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    return h.hexdigest()


class _Body:
    """Node MLP, GATv2 layers and pooling of K networks with equal body shapes (stacked weights)."""

    def __init__(self, nets: Sequence[Any]):
        from .gatv2 import GATv2

        k = len(nets)
        node = [mlp_layers(n.node_mlp.layers) for n in nets]
        # first layer reads the shared node features: one product for all K networks
        w0 = np.concatenate([layers[0][0] for layers in node], axis=1)
        self.node_first = (np.ascontiguousarray(w0, np.float32), _stack([layers[0][1] for layers in node]))
        # biases [K, 1, out] for _per_net; the first layer's [K, out] broadcasts over [n, K, out]
        self.node_first_relu = node[0][0][2]
        self.node_rest = [
            (_stack([layers[i][0] for layers in node]), _stack([layers[i][1] for layers in node])[:, None], node[0][i][2])
            for i in range(1, len(node[0]))
        ]  # fmt: skip
        self.width0 = node[0][0][0].shape[1]
        self.convs = []
        edge_w = []
        for li in range(len(nets[0].convs)):
            convs = [n.convs[li] for n in nets]
            if not all(type(c) is GATv2 for c in convs):
                raise NotImplementedError("no fast path for a message-passing layer other than GATv2")
            c0 = convs[0]
            h, c = c0.heads, c0.out_channels
            w_lr = _stack(
                [np.concatenate([_np(c.lin_l.weight).T, _np(c.lin_r.weight).T], axis=1) for c in convs]
            )
            b_lr = _stack([np.concatenate([_np(c.lin_l.bias), _np(c.lin_r.bias)]) for c in convs])[:, None]
            att = _stack([_np(c.att).reshape(h, c0.out_channels) for c in convs])  # [K, H, C]
            bias = _stack([_np(c.bias) for c in convs])[:, None]
            self.convs.append((w_lr, b_lr, att, bias, h, c, float(c0.negative_slope)))
            edge_w += [_np(c.lin_edge.weight).T for c in convs]  # [D, H·C] each
        # every edge projection of every layer and network in one product: [D, Σ K·H·C]
        self.edge_w = np.ascontiguousarray(np.concatenate(edge_w, axis=1), np.float32)
        self.pool = (
            _stack([_np(n.pool.score.weight).T for n in nets]),
            _stack([_np(n.pool.score.bias) for n in nets])[:, None],
        )
        self.k = k

    def __call__(self, b: FastBatch) -> np.ndarray:
        """Pooled embeddings ``[K, n_graphs, D]`` float32 (node-major ``[n, K, F]`` arrays inside, so that
        gathers and segment sums move whole rows)."""
        k, n = self.k, b.x.shape[0]
        w0, b0 = self.node_first
        h = (b.x @ w0).reshape(n, k, self.width0) + b0[None]
        if self.node_first_relu:
            np.maximum(h, 0.0, out=h)
        for w, bias, relu in self.node_rest:
            h = _per_net(h, w, bias)
            if relu:
                np.maximum(h, 0.0, out=h)
        e_all = b.attr_rows @ self.edge_w  # [U, Σ K·H·C]: one row per distinct edge feature row
        col = 0
        for w_lr, b_lr, att, bias, heads, ch, slope in self.convs:
            hc = heads * ch
            e_proj = e_all[:, col : col + k * hc]
            h = self._gat(h, b, w_lr, b_lr, att, bias, heads, ch, slope, e_proj)
            col += k * hc
        return self._pool(h, b)

    @staticmethod
    def _gat(h, b, w_lr, b_lr, att, bias, heads, ch, slope, e_proj):
        """One GATv2 layer of K networks: ``h`` ``[n, K, in]`` → ``[n, K, H·C]``; ``e_proj`` ``[U, K·H·C]``, the
        edge projections of ``b.attr_rows`` (edge ``e`` reads row ``b.attr_of_edge[e]``, or row ``e``)."""
        k, n = h.shape[1], h.shape[0]
        hc = heads * ch
        x_lr = _per_net(h, w_lr, b_lr)  # [n, K, 2·H·C]
        x_l = np.ascontiguousarray(x_lr[:, :, :hc]).reshape(n, k * hc)
        x_r = np.ascontiguousarray(x_lr[:, :, hc:]).reshape(n, k * hc)
        out = np.zeros((n, k * hc), np.float32)
        if b.src.size:
            # the edge features z_e [E, K·H·C] are the widest array of the forward (a batch of 64 crystals:
            # ~17 MB): built and reduced to the logits [E, K, H] in blocks of EDGE_BLOCK edges, which stay in the
            # core's cache; every number is computed as in one block (elementwise and per-edge operations)
            logits = np.empty((b.src.size, k, heads), np.float32)
            for e0 in range(0, b.src.size, EDGE_BLOCK):
                sl = slice(e0, e0 + EDGE_BLOCK)
                z = x_l[b.src[sl]]
                z += x_r[b.dst[sl]]
                z += e_proj[sl] if b.attr_of_edge is None else e_proj[b.attr_of_edge[sl]]
                z = np.maximum(z, slope * z) if 0.0 <= slope <= 1.0 else np.where(z > 0, z, slope * z)
                logits[sl] = np.einsum("ekhc,khc->ekh", z.reshape(-1, k, heads, ch), att)
            alpha = edge_softmax(logits, b)
            # edges of one (target, source) pair carry the same message x_l[source]: sum their weights first
            w_pair = segment_sum(alpha, b.pair_starts)  # [P, K, H]
            msg = x_l[b.pair_src].reshape(-1, k, heads, ch) * w_pair[..., None]
            out[b.targets] = segment_sum(msg.reshape(-1, k * hc), b.pair_target_starts)
        return out.reshape(n, k, hc) + bias[:, 0]

    def _pool(self, h: np.ndarray, b: FastBatch) -> np.ndarray:
        return attention_pool(h, b, *self.pool).transpose(1, 0, 2)


class _CGATBody:
    """Node and edge embeddings, CGAT layers, composition context and pooling of K CGAT networks with equal body
    shapes (stacked weights; the maths of :mod:`.cgat`, eval mode). Node-major arrays ``[n, K, F]`` and edge-major
    ``[E, K, F]`` inside, as :class:`_Body`."""

    def __init__(self, nets: Sequence[Any]):
        from .cgat import CGATLayer

        self.k = len(nets)
        node = [mlp_layers(n.node_mlp.layers) for n in nets]
        self.node = [
            (_stack([layers[i][0] for layers in node]), _stack([layers[i][1] for layers in node])[:, None], node[0][i][2])
            for i in range(len(node[0]))
        ]  # fmt: skip
        # the edge embedding reads the shared edge features: one product for all K networks
        self.edge_w = np.ascontiguousarray(
            np.concatenate([_np(n.edge_mlp.weight).T for n in nets], axis=1), np.float32
        )
        self.edge_b = _stack([_np(n.edge_mlp.bias) for n in nets])  # [K, W]
        self.width = nets[0].config["width"]
        self.layers = []
        for li in range(len(nets[0].convs)):
            convs = [n.convs[li] for n in nets]
            if not all(type(c) is CGATLayer for c in convs):
                raise NotImplementedError("no fast path for a CGAT layer of another kind")
            w = self.width

            def split(weights, w=w):  # [K, 3W, out] → the blocks that read x_s, x_t and e
                return weights[:, :w], weights[:, w : 2 * w], weights[:, 2 * w :]

            # attention and message projections side by side: [K, 3W, 2W]
            am = _stack(
                [np.concatenate([_np(c.att_lin.weight).T, _np(c.msg.weight).T], axis=1) for c in convs]
            )
            am_b = _stack([np.concatenate([_np(c.att_lin.bias), _np(c.msg.bias)]) for c in convs])[:, None]
            emlp = [mlp_layers(c.edge_mlp.layers) for c in convs]
            e1 = _stack([m[0][0] for m in emlp])
            e1_b = _stack([m[0][1] for m in emlp])[:, None]
            rest = [
                (_stack([m[i][0] for m in emlp]), _stack([m[i][1] for m in emlp])[:, None], emlp[0][i][2])
                for i in range(1, len(emlp[0]))
            ]  # fmt: skip
            ln = convs[0].node_norm
            # the e blocks of attention ‖ message ‖ the edge MLP's first layer: one product per layer [K, W, 3W]
            e_both = np.ascontiguousarray(np.concatenate([split(am)[2], split(e1)[2]], axis=2))
            self.layers.append({
                "am": split(am), "am_b": am_b, "att": _stack([_np(c.att).reshape(c.heads, -1) for c in convs]),
                "heads": convs[0].heads, "e1": split(e1), "e1_b": e1_b, "e1_relu": emlp[0][0][2], "e_rest": rest,
                "ln_w": _stack([_np(c.node_norm.weight) for c in convs]), "ln_b": _stack([_np(c.node_norm.bias) for c in convs]),
                "ln_eps": float(ln.eps), "e_both": e_both, "e_att": np.ascontiguousarray(e_both[..., : 2 * w]),
            })  # fmt: skip
        ctx = [mlp_layers(n.context["proj"].layers) for n in nets]
        self.ctx_pool = (
            _stack([_np(n.context["pool"].score.weight).T for n in nets]),
            _stack([_np(n.context["pool"].score.bias) for n in nets])[:, None],
        )
        self.ctx = [
            (_stack([m[i][0] for m in ctx]), _stack([m[i][1] for m in ctx])[:, None], ctx[0][i][2])
            for i in range(len(ctx[0]))
        ]  # fmt: skip
        self.pool = (
            _stack([_np(n.pool.score.weight).T for n in nets]),
            _stack([_np(n.pool.score.bias) for n in nets])[:, None],
        )

    @staticmethod
    def _mlp(h: np.ndarray, layers) -> np.ndarray:
        for w, bias, relu in layers:
            h = _per_net(h, w, bias, torch_bmm=False)
            if relu:
                np.maximum(h, 0.0, out=h)
        return h

    def __call__(self, b: FastBatch) -> np.ndarray:
        """Pooled embeddings ``[K, n_graphs, width + context]`` float32."""
        k, n, w = self.k, b.x.shape[0], self.width
        x0 = self._mlp(np.broadcast_to(b.x[:, None], (n, k, b.x.shape[1])), self.node)  # [n, K, W]
        # edge states network-major [K, E, W]: their products need no transposes
        e_rows = np.ascontiguousarray(
            ((b.attr_rows @ self.edge_w).reshape(-1, k, w) + self.edge_b[None]).transpose(1, 0, 2)
        )
        # the first layer reads the initial edge states, one per distinct edge feature row: its products of e are
        # computed on those rows and gathered per edge (b.attr_of_edge), as the edge embedding itself
        e, rows_of = e_rows, b.attr_of_edge
        x = x0
        for i, layer in enumerate(self.layers):
            # the last layer's edge update feeds nothing (the readout reads node states only): skipped
            x, e = self._layer(x, e, b, layer, update_edges=i < len(self.layers) - 1, rows_of=rows_of)
            rows_of = None
        ctx = self._mlp(attention_pool(x0, b, *self.ctx_pool), self.ctx)  # [G, K, context]
        g = b.graph_starts
        node_graph = np.repeat(np.arange(g.size), np.diff(np.append(g, n)))
        h = np.concatenate([x, ctx[node_graph]], axis=-1)
        return attention_pool(h, b, *self.pool).transpose(1, 0, 2)

    @staticmethod
    def _layer(
        x: np.ndarray,
        e: np.ndarray,
        b: FastBatch,
        p: dict,
        *,
        update_edges: bool = True,
        rows_of: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One CGAT layer of K networks: nodes ``x`` ``[n, K, W]``, edges ``e`` ``[K, E, W]`` → the same;
        ``rows_of`` ``[E]``: ``e`` holds distinct rows ``[K, U, W]`` and edge ``j`` reads row ``rows_of[j]``.
        ``update_edges`` False: the edge update is not computed (``e`` is returned as it came)."""
        n, k, w = x.shape
        heads = p["heads"]
        ch = w // heads
        (a_s, a_t), ab, eb = p["am"][:2], p["am_b"], p["e_both"]
        if not b.src.size:  # no edges: the aggregate is 0 and only the residual node update remains
            agg = np.zeros((n, k, w), np.float32)
            ee = None
        else:
            # [x_s ‖ x_t ‖ e] @ W = x_s W_s + x_t W_t + e W_e: the node blocks once per node, gathered per edge; the
            # e blocks of attention, message and edge MLP (which reads the same e) in one product
            # [K, E, 3W] (2W without the edge update: its e block is not needed)
            ee = np.matmul(e, eb if update_edges else p["e_att"])
            if rows_of is not None:
                ee = ee[:, rows_of]
            xz = (
                _per_net(x, a_s, ab, torch_bmm=False)[b.src] + _prod(x, a_t, torch_bmm=False)[b.dst]
            )  # [E, K, 2W]
            z = ee[..., : 2 * w] + xz.transpose(1, 0, 2)  # [K, E, 2W]
            att_in = z[..., :w]
            att_in = np.maximum(att_in, 0.2 * att_in)  # leaky ReLU, slope 0.2
            logits = np.einsum("kehc,khc->ekh", att_in.reshape(k, -1, heads, ch), p["att"])  # [E, K, H]
            alpha = edge_softmax(logits, b)
            m = z[..., w:].reshape(k, -1, heads, ch) * alpha.transpose(1, 0, 2)[..., None]  # [K, E, H, C]
            agg = np.zeros((n, k, w), np.float32)
            agg[b.targets] = segment_sum(
                np.ascontiguousarray(m.reshape(k, -1, w).transpose(1, 0, 2)), b.starts
            )
        h = x + np.where(agg > 0, agg, np.expm1(np.minimum(agg, 0.0)))  # ELU
        mu = h.mean(-1, keepdims=True)
        var = ((h - mu) ** 2).mean(-1, keepdims=True)
        x = ((h - mu) / np.sqrt(var + p["ln_eps"]) * p["ln_w"][None] + p["ln_b"][None]).astype(np.float32)
        if ee is None or not update_edges:
            return x, e
        if rows_of is not None:
            e = e[:, rows_of]
        (b_s, b_t, _), bb = p["e1"], p["e1_b"]
        u = ee[..., 2 * w :] + (
            _per_net(x, b_s, bb, torch_bmm=False)[b.src] + _prod(x, b_t, torch_bmm=False)[b.dst]
        ).transpose(1, 0, 2)
        if p["e1_relu"]:
            np.maximum(u, 0.0, out=u)
        for wt, bias, relu in p["e_rest"]:  # [K, E, W] products, no transposes
            u = np.matmul(u, wt) + bias
            if relu:
                np.maximum(u, 0.0, out=u)
        return x, e + u


def attention_pool(h: np.ndarray, b: FastBatch, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Per-channel softmax attention pooling of node-major ``h`` ``[n, K, C]`` over each graph's nodes →
    ``[G, K, C]`` (:class:`~.pooling.AttentionPool`)."""
    score = _per_net(h, w, bias)
    g = b.graph_starts
    seg = np.repeat(np.arange(g.size), np.diff(np.append(g, h.shape[0])))
    score -= segment_max(score, g)[seg]
    ex = np.exp(score)
    wgt = ex / (segment_sum(ex, g) + SOFTMAX_EPS)[seg]
    return segment_sum(h * wgt, g)


def edge_softmax(logits: np.ndarray, b: FastBatch) -> np.ndarray:
    """Attention weights ``[E, ...]`` from ``logits`` ``[E, ...]`` (edge-major, modified in place): ``+ log m`` of
    collapsed edges, softmax over the edges into each node, max-shifted, ``+1e-16`` in the denominator as
    ``torch_geometric.utils.softmax``."""
    if b.log_mult is not None:
        logits += b.log_mult.reshape(-1, *([1] * (logits.ndim - 1)))
    seg = b.edge_target
    logits -= segment_max(logits, b.starts)[seg]
    ex = np.exp(logits)
    return ex / (segment_sum(ex, b.starts) + SOFTMAX_EPS)[seg]


def segment_sum(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of the consecutive row segments of ``x`` ``[n, ...]`` that begin at ``starts`` (strictly increasing,
    first 0: no empty segment, where reduceat would return the row instead of 0) →
    ``[len(starts), ...]``: ``np.add.reduceat(x, starts, axis=0)``, as one sparse (CSR) × dense product, which is
    ~10× faster on wide rows (NumPy's reduceat walks a wide row's columns one by one); the float32 sums may differ
    from reduceat's in the last bits (order of additions). Fewer than :data:`SEGMENT_MIN` segments use reduceat. :data:`SEGMENT_REDUCE` ``"reduceat"`` restores the
    NumPy form (the benchmark's baseline)."""
    if SEGMENT_REDUCE == "reduceat" or starts.shape[0] < SEGMENT_MIN:
        return np.add.reduceat(x, starts, axis=0)
    from scipy.sparse import csr_matrix

    n, m = x.shape[0], starts.shape[0]
    ones = csr_matrix((np.ones(n, x.dtype), np.arange(n), np.append(starts, n)), shape=(m, n))
    return np.asarray(ones @ x.reshape(n, -1)).reshape((m, *x.shape[1:]))


def segment_max(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Maxima of the consecutive row segments of ``x`` (as :func:`segment_sum`): ``np.maximum.reduceat(x, starts,
    axis=0)`` exactly, in rounds over the position within the segments (segments are short: the nodes of a graph,
    the edges into a node), each round one gather and one elementwise maximum."""
    if SEGMENT_REDUCE == "reduceat" or starts.shape[0] < SEGMENT_MIN:
        return np.maximum.reduceat(x, starts, axis=0)
    counts = np.diff(np.append(starts, x.shape[0]))
    out = x[starts]
    for r in range(1, int(counts.max(initial=1))):
        rows = np.flatnonzero(counts > r)
        if rows.size == counts.size:
            np.maximum(out, x[starts + r], out=out)
        else:
            out[rows] = np.maximum(out[rows], x[starts[rows] + r])
    return out


def _bmm(h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``[K, n, in] @ [K, in, out]`` float32: ``torch.bmm`` (its sgemm is ~15 % faster than NumPy's OpenBLAS on
    the head's ``[6, 64, 1024] @ [6, 1024, G]`` here) for at least :data:`BMM_MIN_ROWS` rows, else NumPy
    (a few rows, e.g. one CIF, is a memory-bound matrix–vector product, where torch is no faster)."""
    if h.shape[-2] < BMM_MIN_ROWS:
        return np.matmul(h, w)
    import torch

    with torch.inference_mode():
        a, b = (torch.from_numpy(np.ascontiguousarray(x, np.float32)) for x in (h, w))
        return torch.bmm(a, b).numpy()


def _per_net(h: np.ndarray, w: np.ndarray, bias: np.ndarray, *, torch_bmm: bool = True) -> np.ndarray:
    """``h`` ``[n, K, in]`` @ per-network ``w`` ``[K, in, out]`` + ``bias`` ``[K, 1, out]`` → ``[n, K, out]``.
    ``torch_bmm`` False: NumPy alone (the CGAT body's products, a few hundred rows of width 96–288, measured no
    slower in NumPy for batches and faster for one CIF than through ``torch.bmm``)."""
    return ((_bmm if torch_bmm else np.matmul)(h.transpose(1, 0, 2), w) + bias).transpose(1, 0, 2)


def _prod(h: np.ndarray, w: np.ndarray, *, torch_bmm: bool = True) -> np.ndarray:
    """``h`` ``[n, K, in]`` @ per-network ``w`` ``[K, in, out]`` → ``[n, K, out]`` (no bias; ``torch_bmm`` as
    :func:`_per_net`)."""
    return (_bmm if torch_bmm else np.matmul)(h.transpose(1, 0, 2), w).transpose(1, 0, 2)


class _ResidualHeads:
    """CGAT's residual heads of K networks with equal head shapes (batch norm folded): ``h = W_in z``;
    ``h ← h + MLP(ReLU(h))`` per block; ``y = W_out ReLU(h)``, leaky ReLU on a spectrum output, ``· scale +
    shift`` (:class:`~.cgat.ResidualHead`). ``precision`` as :class:`_Heads`: ``"fp32"`` stacked float32
    products, ``"fp16"`` float16 weights multiplied in float32 one network at a time."""

    def __init__(self, nets: Sequence[Any], precision: str = "fp32"):
        from .cgat import ResidualHead

        if not all(type(n.head) is ResidualHead for n in nets):
            raise NotImplementedError("no fast path for a head other than ResidualHead")
        heads = [n.head for n in nets]

        def lin(mods):
            return _stack([_np(m.weight).T for m in mods]), _stack([_np(m.bias) for m in mods])[:, None]

        if precision not in HEAD_PRECISIONS:
            raise ValueError(f"head precision {precision!r}: expected one of {HEAD_PRECISIONS}")
        self.precision = precision
        self.inp = lin([h.inp for h in heads])
        self.blocks = []
        for i in range(len(heads[0].blocks)):
            per = [mlp_layers(h.blocks[i].layers) for h in heads]
            self.blocks.append([
                (_stack([p[j][0] for p in per]), _stack([p[j][1] for p in per])[:, None], per[0][j][2])
                for j in range(len(per[0]))
            ])  # fmt: skip
        self.out = lin([h.out for h in heads])
        if (
            precision == "fp16"
        ):  # packed half-precision weights per network (as _Heads): the float32 stacks go
            import torch

            def pack(w, b, k):
                return torch.ops.quantized.linear_prepack_fp16(_t32(w[k].T), _t32(b[k, 0]))

            self.packed = [
                (pack(*self.inp, k), [[(pack(w, b, k), r) for w, b, r in blk] for blk in self.blocks],
                 pack(*self.out, k))
                for k in range(len(heads))
            ]  # fmt: skip
            self.inp, self.blocks, self.out = None, [], None
        self.leaky = np.array([h.output_activation == "leaky_relu" for h in heads])
        self.scale = np.array([h.scale for h in heads], np.float32)[:, None, None]
        self.shift = np.array([h.shift for h in heads], np.float32)[:, None, None]

    def _half(self, z: np.ndarray) -> np.ndarray:
        import torch

        ops = torch.ops.quantized
        out = []
        with torch.inference_mode():
            for k, (inp, blocks, last) in enumerate(self.packed):
                h = ops.linear_dynamic_fp16(torch.from_numpy(np.ascontiguousarray(z[k], np.float32)), inp)
                for blk in blocks:
                    u = torch.relu(h)
                    for w, relu in blk:
                        u = (ops.linear_relu_dynamic_fp16 if relu else ops.linear_dynamic_fp16)(u, w)
                    h = h + u
                out.append(ops.linear_dynamic_fp16(torch.relu(h), last).numpy())
        return np.stack(out)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """``[K, n_graphs, D] → [K, n_graphs, out_dim]`` float32."""
        y = self._half(z) if self.precision == "fp16" else self._float(z)
        if self.leaky.any():
            y[self.leaky] = np.maximum(y[self.leaky], HEAD_LEAKY_SLOPE * y[self.leaky])
        return y * self.scale + self.shift

    def _float(self, z: np.ndarray) -> np.ndarray:
        h = _bmm(z, self.inp[0]) + self.inp[1]
        for block in self.blocks:
            u = np.maximum(h, 0.0)
            for w, bias, relu in block:
                u = _bmm(u, w) + bias
                if relu:
                    np.maximum(u, 0.0, out=u)
            h = h + u
        return _bmm(np.maximum(h, 0.0), self.out[0]) + self.out[1]


class _Heads:
    """Head MLPs of K networks with equal head shapes (stacked, batch norm folded).

    ``precision`` ``"fp32"``: stacked float32 products (:func:`_bmm`). ``"fp16"``: every layer's weights stored
    as float16 and multiplied in float32 by FBGEMM's packed half-precision GEMM
    (``torch.ops.quantized.linear_dynamic_fp16``: weights converted in registers, activations and sums stay
    float32), one network at a time. A head reads each of its weights once per call, so for a few graphs (one
    CIF: a matrix–vector product bound by memory bandwidth) half the bytes is about half the time. The only
    change to the maths is the rounding of each weight to float16 (relative 2⁻¹¹ at most); nothing depends on
    the other graphs of a batch (activations are not quantized)."""

    def __init__(self, nets: Sequence[Any], precision: str = "fp32"):
        from .heads import Head

        if not all(type(n.head) is Head for n in nets):
            raise NotImplementedError("no fast path for a head other than Head")
        if precision not in HEAD_PRECISIONS:
            raise ValueError(f"head precision {precision!r}: expected one of {HEAD_PRECISIONS}")
        per = [mlp_layers(n.head.mlp.layers) for n in nets]
        self.precision = precision
        self.relu = [r for _, _, r in per[0]]
        if precision == "fp16":
            import torch

            # packed [out, in] half-precision weights with their float32 biases, per network and layer
            self.packed = [
                [torch.ops.quantized.linear_prepack_fp16(_t32(w.T), _t32(b)) for w, b, _ in p] for p in per
            ]
            self.layers = []
        else:
            self.layers = [
                (_stack([p[i][0] for p in per]), _stack([p[i][1] for p in per])[:, None], per[0][i][2])
                for i in range(len(per[0]))
            ]
        self.leaky = np.array([n.head.output_activation == "leaky_relu" for n in nets])
        self.scale = np.array([n.head.scale for n in nets], np.float32)[:, None, None]
        self.shift = np.array([n.head.shift for n in nets], np.float32)[:, None, None]

    def _mlp(self, z: np.ndarray) -> np.ndarray:
        if self.precision == "fp16":
            import torch

            ops = torch.ops.quantized
            out = []
            with torch.inference_mode():
                for k, packed in enumerate(self.packed):
                    h = torch.from_numpy(np.ascontiguousarray(z[k], np.float32))
                    for w, relu in zip(packed, self.relu, strict=True):
                        h = (ops.linear_relu_dynamic_fp16 if relu else ops.linear_dynamic_fp16)(h, w)
                    out.append(h.numpy())
            return np.stack(out)
        h = z
        for w, b, relu in self.layers:
            h = _bmm(h, w)
            h += b
            if relu:
                np.maximum(h, 0.0, out=h)
        return h

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """``[K, n_graphs, D] → [K, n_graphs, out_dim]`` float32."""
        h = self._mlp(z)
        if self.leaky.all():
            h = np.maximum(h, HEAD_LEAKY_SLOPE * h)
        elif self.leaky.any():
            h[self.leaky] = np.maximum(h[self.leaky], HEAD_LEAKY_SLOPE * h[self.leaky])
        return h * self.scale + self.shift


#: network class name → (its stacked body, its stacked heads; both head kinds take ``head_precision``)
PARTS: dict[str, tuple[type, type]] = {"OptiMate": (_Body, _Heads), "CGAT": (_CGATBody, _ResidualHeads)}


def _t32(a: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, np.float32))


class StackedOptiMate:
    """Eval-mode OptiMate networks (name → list of member networks) in one NumPy forward (module docstring).

    ``nets``: model name → its member networks (``Model.nets``), all reading the same graphs. Networks are
    grouped by equal body shapes and by equal head shapes; each group's weights are stacked once here.
    ``head_precision``: ``"fp32"`` (default: every output equals the torch networks' to float32 rounding) or
    ``"fp16"`` (the head groups of at least :data:`HALF_MIN_WEIGHTS` weights per network keep float16 weights:
    :class:`_Heads`).
    """

    def __init__(self, nets: dict[str, Sequence[Any]], *, head_precision: str = "fp32"):
        self.names = list(nets)
        flat = [(name, net) for name, ms in nets.items() for net in ms]
        for _, net in flat:
            if type(net).__name__ not in PARTS:
                raise NotImplementedError(f"no fast path for {type(net).__name__}")
            if net.training:
                raise ValueError("StackedOptiMate needs eval-mode networks")
        self.members = {name: len(ms) for name, ms in nets.items()}
        # networks with bit-identical bodies (body_fingerprint) share one computation: flat index → the index of
        # the first network with that body, whose embedding it reuses
        first: dict[str, int] = {}
        self._same_body = [
            first.setdefault(body_fingerprint(net) if SHARE_BODIES else str(i), i)
            for i, (_, net) in enumerate(flat)
        ]
        unique = [(i, flat[i]) for i in sorted(set(self._same_body))]
        groups = self._group(
            [f for _, f in unique],
            lambda n: (type(n).__name__, *(_signature(n, p) for p in n.body_modules())),
            lambda group: PARTS[type(group[0]).__name__][0](group),
        )
        self._body_groups = [([unique[j][0] for j in idx], body) for idx, body in groups]
        self.bodies = len(unique)
        if head_precision not in HEAD_PRECISIONS:
            raise ValueError(f"head precision {head_precision!r}: expected one of {HEAD_PRECISIONS}")

        def heads(group: Sequence[Any]) -> Any:
            size = sum(p.numel() for p in group[0].head.parameters())
            cls = PARTS[type(group[0]).__name__][1]
            return cls(group, head_precision if size >= HALF_MIN_WEIGHTS else "fp32")

        self.head_precision = head_precision
        self._head_groups = self._group(flat, lambda n: (type(n).__name__, _signature(n, "head")), heads)
        self._flat_names = [name for name, _ in flat]

    @staticmethod
    def _group(flat, key, cls):
        groups: dict[Any, list[int]] = {}
        for i, (_, net) in enumerate(flat):
            groups.setdefault(key(net), []).append(i)
        return [(idx, cls([flat[i][1] for i in idx])) for idx in groups.values()]

    def embeddings(self, batch: FastBatch) -> list[np.ndarray]:
        """Pooled embedding ``[n_graphs, D]`` of every network (flat order: models, then members)."""
        z: list[np.ndarray] = [None] * len(self._flat_names)  # type: ignore[list-item]
        for idx, body in self._body_groups:
            out = body(batch)
            for j, i in enumerate(idx):
                z[i] = out[j]
        return [z[i] for i in self._same_body]

    def forward(self, batch: FastBatch) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``(outputs, embeddings)``: model name → ``[members, n_graphs, out_dim]`` float32 raw outputs, and
        model name → its first member's pooled embedding ``[n_graphs, D]``."""
        z = self.embeddings(batch)
        y: list[np.ndarray] = [None] * len(z)  # type: ignore[list-item]
        for idx, head in self._head_groups:
            out = head(np.stack([z[i] for i in idx]))
            for j, i in enumerate(idx):
                y[i] = out[j]
        outputs: dict[str, np.ndarray] = {}
        embeds: dict[str, np.ndarray] = {}
        pos = 0
        for name in self.names:
            m = self.members[name]
            outputs[name] = np.stack(y[pos : pos + m])
            embeds[name] = z[pos]
            pos += m
        return outputs, embeds


__all__ = ["FastBatch", "StackedOptiMate", "collapse_edges", "mlp_layers", "segment_max", "segment_sum"]
