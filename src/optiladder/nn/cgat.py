"""The CGAT body (crystal graph attention; Schmidt, Pettersson, Verdozzi, Botti & Marques, Sci. Adv. 7,
eabi7948 (2021), used for transfer learning by Hoffmann et al., Digital Discovery 2, 1368 (2023)) as an
alternative network under the one model format.

* Embeddings: node MLP ``[node_dim → width]``; edge ``Linear(edge_dim → width)``;
* message passing (:class:`CGATLayer`, ``layers`` times): multi-head attention over the incoming edges of every
  atom on ``[x_s ‖ x_t ‖ e]``, residual node update and a residual edge update from the new node states;
* composition context (ROOST-like): softmax attention over the atoms' *initial* embeddings (element information
  only; every atom counts once, so the stoichiometry weights the sum) → a context vector ``[n_graphs, context]``
  concatenated to every final node embedding;
* readout: softmax attention pooling per channel (:class:`~.pooling.AttentionPool`) → ``[n_graphs, width +
  context]``;
* head: residual MLP (``blocks`` × ``h + MLP(h)``) → ``Linear`` to ``out_dim``, leaky ReLU on a spectrum output
  (as OptiMate), ``scale``/``shift`` for a standardised scalar.

It reuses OptiMate's transfer machinery (named parameter groups ``all``, ``body``, ``head`` and submodules,
:meth:`set_trainable`, frozen modules in eval mode) and its loss; ``CGAT(**model.config)`` rebuilds the network.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..targets import DEFAULT_GRID
from .heads import OutputActivation
from .mlp import MLP, Norm
from .optimate import LOSSES, OptiMate, _jsonable
from .pooling import AttentionPool

#: parameter groups of CGAT (besides every submodule name)
CGAT_GROUPS: dict[str, tuple[str, ...]] = {
    "all": ("node_mlp", "edge_mlp", "convs", "context", "pool", "head"),
    "body": ("node_mlp", "edge_mlp", "convs", "context", "pool"),
    "head": ("head",),
}


class CGATLayer(nn.Module):
    r"""One CGAT message-passing step with ``heads`` attention heads of ``width // heads`` channels.

    For an edge e from s to t with state ``e_e``: ``z_e = [x_s ‖ x_t ‖ e_e]``; logits
    ``a_e^h = w_h · LeakyReLU(W_a z_e)`` (+ ``log m_e`` for the multiplicity of collapsed identical edges);
    ``α_e^h`` = softmax over the edges into t; messages ``m_e = W_m z_e``; ``x_t ← x_t + ELU(Σ_e α_e m_e)``
    (heads concatenated) and ``e_e ← e_e + MLP([x_s ‖ x_t ‖ e_e])`` with the new node states.
    Shapes: ``x`` ``[n_nodes, width]``, ``e`` ``[n_edges, width]`` → same.
    """

    def __init__(self, width: int, heads: int, *, norm: Norm = "batch_norm"):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be a multiple of heads {heads}")
        self.width, self.heads = width, heads
        self.att_lin = nn.Linear(3 * width, width)
        self.att = nn.Parameter(torch.empty(1, heads, width // heads))
        nn.init.xavier_uniform_(self.att)
        self.msg = nn.Linear(3 * width, width)
        self.node_norm = nn.LayerNorm(width)
        self.edge_mlp = MLP([3 * width, width, width], norm=norm)

    def forward(
        self, x: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor, mult: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from torch_geometric.utils import softmax

        src, dst = edge_index[0], edge_index[1]
        h, c = self.heads, self.width // self.heads
        z = torch.cat([x.index_select(0, src), x.index_select(0, dst), e], dim=-1)
        logits = (nn.functional.leaky_relu(self.att_lin(z), 0.2).view(-1, h, c) * self.att).sum(-1)
        if mult is not None:
            logits = logits + torch.log(mult).to(logits.dtype).unsqueeze(-1)
        alpha = softmax(logits, dst, num_nodes=x.shape[0])  # [E, H]
        m = self.msg(z).view(-1, h, c) * alpha.unsqueeze(-1)
        agg = torch.zeros(x.shape[0], h, c, dtype=x.dtype, device=x.device).index_add_(0, dst, m)
        x = self.node_norm(x + nn.functional.elu(agg.view(-1, self.width)))
        z = torch.cat([x.index_select(0, src), x.index_select(0, dst), e], dim=-1)
        return x, e + self.edge_mlp(z)


class ResidualHead(nn.Module):
    """``y = scale · act(W_out(h_B)) + shift`` with ``h_{k+1} = h_k + MLP_k(h_k)`` after a linear input layer.

    ``[n_graphs, in_dim] → [n_graphs, out_dim]``.
    """

    def __init__(
        self,
        in_dim: int,
        width: int,
        blocks: int,
        out_dim: int,
        *,
        output_activation: OutputActivation = "leaky_relu",
        norm: Norm = "batch_norm",
        shift: float = 0.0,
        scale: float = 1.0,
    ):
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(MLP([width, width, width], norm=norm) for _ in range(blocks))
        self.out = nn.Linear(width, out_dim)
        self.output_activation = output_activation
        self.shift, self.scale = float(shift), float(scale)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.inp(h)
        for block in self.blocks:
            h = h + block(nn.functional.relu(h))
        y = self.out(nn.functional.relu(h))
        if self.output_activation == "leaky_relu":
            y = nn.functional.leaky_relu(y)
        return y * self.scale + self.shift


class CGAT(OptiMate):
    """CGAT: crystal graph → Im ε spectrum ``[n_graphs, out_dim]`` (or a scalar ``[n_graphs, 1]``).

    Same inputs as :class:`~.optimate.OptiMate` (``x``, ``edge_index``, ``edge_attr``, optional ``edge_mult``
    and ``batch``); the pooled embedding (:meth:`embed`) is ``[n_graphs, width + context]``.
    """

    def __init__(
        self,
        *,
        node_dim: int = 13,
        edge_dim: int = 51,
        width: int = 96,
        heads: int = 4,
        layers: int = 3,
        context: int = 64,
        head_width: int = 512,
        head_blocks: int = 2,
        out_dim: int = DEFAULT_GRID.n,
        output_activation: OutputActivation = "leaky_relu",
        norm: Norm = "batch_norm",
        target_shift: float = 0.0,
        target_scale: float = 1.0,
        loss: str = "l1",
    ):
        nn.Module.__init__(self)  # OptiMate's transfer machinery, not its layers
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {tuple(LOSSES)}, not {loss!r}")
        self.config: dict[str, Any] = {
            k: _jsonable(v) for k, v in locals().items() if k not in ("self", "__class__")
        }
        self.node_mlp = MLP([node_dim, width, width], norm=norm)
        self.edge_mlp = nn.Linear(edge_dim, width)
        self.convs = nn.ModuleList(CGATLayer(width, heads, norm=norm) for _ in range(layers))
        self.context = nn.ModuleDict(
            {"pool": AttentionPool(width), "proj": MLP([width, context, context], norm="none")}
        )
        self.pool = AttentionPool(width + context)
        self.embedding_dim = width + context
        self.head = ResidualHead(width + context, head_width, head_blocks, out_dim,
                                 output_activation=output_activation, norm=norm, shift=target_shift,
                                 scale=target_scale)  # fmt: skip
        self.frozen: tuple[str, ...] = ()
        self.trainable: tuple[str, ...] = ("all",)

    def node_embeddings(self, data) -> torch.Tensor:
        """Final node states ‖ the crystal's composition context, ``[n_nodes, width + context]``."""
        batch, n = self._batch_vector(data)
        x0 = self.node_mlp(data.x)
        e = self.edge_mlp(data.edge_attr)
        mult = getattr(data, "edge_mult", None)
        x = x0
        for conv in self.convs:
            x, e = conv(x, e, data.edge_index, mult)
        ctx = self.context["proj"](self.context["pool"](x0, batch, n))  # [n_graphs, context]
        return torch.cat([x, ctx.index_select(0, batch)], dim=-1)

    def embed(self, data) -> torch.Tensor:
        batch, n = self._batch_vector(data)
        return self.pool(self.node_embeddings(data), batch, n)

    @staticmethod
    def head_config(hidden) -> dict[str, Any]:
        """A residual head as wide as ``hidden``'s widest layer with ``len(hidden) - 1`` blocks (at least one):
        2×128 → width 128, one block."""
        return {"head_width": int(max(hidden)), "head_blocks": max(1, len(hidden) - 1)}

    def parameter_groups(self) -> dict[str, tuple[str, ...]]:
        groups = dict(CGAT_GROUPS)
        for name, mod in self.named_modules():
            if name and next(mod.parameters(), None) is not None:
                groups.setdefault(name, (name,))
        return groups


def cgat_model(**kwargs: Any) -> CGAT:
    """CGAT with the spectrum head; ``kwargs`` override sizes."""
    return CGAT(**kwargs)


__all__ = ["CGAT", "CGAT_GROUPS", "CGATLayer", "ResidualHead", "cgat_model"]
