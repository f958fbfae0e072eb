"""GATv2 attention convolution with edge features and edge multiplicities.

Same maths and parameter names as ``torch_geometric.nn.GATv2Conv(in, out, heads=H, edge_dim=D, concat=True,
add_self_loops=False, share_weights=False)`` (weights are interchangeable), plus an optional multiplicity
``m_e`` per edge. A crystal multigraph has many identical edges (same centre, neighbour and distance, from
symmetric periodic images); ``m_e`` identical edges contribute ``m_e`` times to both the numerator and the
denominator of the attention softmax, which is exactly adding ``log m_e`` to the attention logit. Collapsing
them (:meth:`optiladder.graphs.Graph.compressed`) gives the same output as the full multigraph at ~5× fewer
edges for 1–3-atom cells.

.. math::
    z_e = \\mathrm{LeakyReLU}_{0.2}(W_l x_{s(e)} + W_r x_{t(e)} + W_e a_e), \\qquad
    \\alpha_e = \\frac{m_e \\exp(\\mathbf{a}^\\top z_e)}{\\sum_{e': t(e') = t(e)} m_{e'} \\exp(\\mathbf{a}^\\top z_{e'})},
    \\qquad x'_i = \\big\\Vert_{h=1}^{H} \\sum_{e: t(e) = i} \\alpha_e^{h} W_l^{h} x_{s(e)} + b

per head h (concatenated). Shapes: ``x`` ``[n_nodes, in]``, ``edge_index`` ``[2, n_edges]`` (row 0 source s,
row 1 target t; messages flow s → t), ``edge_attr`` ``[n_edges, edge_dim]``, ``edge_mult`` ``[n_edges]``
(float, ≥ 1; None = all 1) → ``[n_nodes, H · out]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _glorot(t: torch.Tensor) -> None:
    a = math.sqrt(6.0 / (t.size(-2) + t.size(-1)))
    with torch.no_grad():
        t.uniform_(-a, a)


class GATv2(nn.Module):
    """GATv2 layer (see module docstring); heads concatenated, no self loops added."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        heads: int = 1,
        edge_dim: int,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.negative_slope, self.dropout = negative_slope, dropout
        self.lin_l = nn.Linear(in_channels, heads * out_channels)
        self.lin_r = nn.Linear(in_channels, heads * out_channels)
        self.lin_edge = nn.Linear(edge_dim, heads * out_channels, bias=False)
        self.att = nn.Parameter(torch.empty(1, heads, out_channels))
        self.bias = nn.Parameter(torch.empty(heads * out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot weights, zero biases (the ``torch_geometric`` initialisation)."""
        for lin in (self.lin_l, self.lin_r, self.lin_edge):
            _glorot(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        _glorot(self.att)
        nn.init.zeros_(self.bias)

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        edge_mult: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[n_nodes, in] → [n_nodes, heads · out]`` (see module docstring)."""
        from torch_geometric.utils import softmax

        n, h, c = x.shape[0], self.heads, self.out_channels
        x_l = self.lin_l(x).view(-1, h, c)
        x_r = self.lin_r(x).view(-1, h, c)
        src, dst = edge_index[0], edge_index[1]
        x_j = x_l.index_select(0, src)
        z = x_j + x_r.index_select(0, dst) + self.lin_edge(edge_attr).view(-1, h, c)
        z = nn.functional.leaky_relu(z, self.negative_slope)
        logits = (z * self.att).sum(dim=-1)  # [E, H]
        if edge_mult is not None:
            logits = logits + torch.log(edge_mult).to(logits.dtype).unsqueeze(-1)
        alpha = softmax(logits, dst, num_nodes=n)
        alpha = nn.functional.dropout(alpha, p=self.dropout, training=self.training)
        out = torch.zeros(n, h, c, dtype=x_j.dtype, device=x_j.device)
        out.index_add_(0, dst, x_j * alpha.unsqueeze(-1))
        return out.view(n, h * c) + self.bias

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, heads={self.heads})"
