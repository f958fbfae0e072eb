"""The OptiMate graph attention network (Grunert, Großmann & Runge, Nat. Commun. 16, 8142 (2025)).

Body: node MLP ``[13 → 48 → 48]`` → GATv2 (:class:`~.gatv2.GATv2`, the ``torch_geometric`` maths) ``48 → 48 × 4 heads`` (concatenated, 192) → GATv2
``192 → 96 × 4 heads`` (384), both with ``edge_dim = 51`` and no added self loops (no activation between them,
as in the published code) → softmax attention pooling per channel (:class:`~.pooling.AttentionPool`) → a
384-dimensional crystal embedding. Head: ``MLP[384 → 1024 → 1024 → 1024 → out_dim]`` with a leaky ReLU on the
output (spectra, ``out_dim = 2001``) or a plain linear output (a scalar such as SC[RPA; IPA], ``out_dim = 1``).

Every size is a keyword-only constructor argument; the arguments are recorded in ``model.config`` (plain JSON
types) and saved with the weights, so ``OptiMate(**model.config)`` rebuilds the same network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import torch
from torch import nn

from .gatv2 import GATv2
from .heads import Head, OutputActivation
from .mlp import MLP, Norm
from .pooling import AttentionPool

Trainable = Literal["all", "head"]
TRAINABLE_CHOICES: tuple[str, ...] = get_args(Trainable)
#: submodules of the body (frozen by ``trainable="head"``)
BODY_MODULES: tuple[str, ...] = ("node_mlp", "convs", "pool")


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    return v


class OptiMate(nn.Module):
    """OptiMate: crystal graph → Im ε spectrum ``[n_graphs, 2001]`` (or a scalar ``[n_graphs, 1]``).

    Input: a ``torch_geometric`` ``Batch`` (or ``Data``) with ``x`` ``[n_nodes, node_dim]``, ``edge_index``
    ``[2, n_edges]``, ``edge_attr`` ``[n_edges, edge_dim]``, optionally ``edge_mult`` ``[n_edges]`` (multiplicity
    of collapsed identical edges, see :class:`~.gatv2.GATv2`) and ``batch`` ``[n_nodes]`` (absent for one graph).
    """

    def __init__(
        self,
        *,
        node_dim: int = 13,
        edge_dim: int = 51,
        node_hidden: Sequence[int] = (48, 48),
        gat_channels: Sequence[int] = (48, 96),
        gat_heads: Sequence[int] = (4, 4),
        head_hidden: Sequence[int] = (1024, 1024, 1024),
        out_dim: int = 2001,
        output_activation: OutputActivation = "leaky_relu",
        norm: Norm = "batch_norm",
        dropout: float = 0.0,
        target_shift: float = 0.0,
        target_scale: float = 1.0,
    ):
        super().__init__()
        self.config: dict[str, Any] = {
            k: _jsonable(v) for k, v in locals().items() if k not in ("self", "__class__")
        }
        if len(gat_channels) != len(gat_heads) or not gat_channels:
            raise ValueError("gat_channels and gat_heads must be non-empty and of equal length")
        self.node_mlp = MLP([node_dim, *node_hidden], norm=norm, dropout=dropout)
        convs = []
        width = node_hidden[-1]
        for ch, h in zip(gat_channels, gat_heads, strict=True):
            convs.append(GATv2(width, ch, heads=h, edge_dim=edge_dim, dropout=dropout))
            width = ch * h
        self.convs = nn.ModuleList(convs)
        self.pool = AttentionPool(width)
        self.embedding_dim = width
        self.head = Head(
            width,
            head_hidden,
            out_dim,
            output_activation=output_activation,
            norm=norm,
            dropout=dropout,
            shift=target_shift,
            scale=target_scale,
        )
        self.frozen: tuple[str, ...] = ()

    # ---- forward ----------------------------------------------------------------------------------
    @staticmethod
    def _batch_vector(data) -> tuple[torch.Tensor, int]:
        batch = getattr(data, "batch", None)
        if batch is None:
            return torch.zeros(data.x.shape[0], dtype=torch.long, device=data.x.device), 1
        return batch, int(data.num_graphs)

    def node_embeddings(self, data) -> torch.Tensor:
        """Node features after the message passing, ``[n_nodes, embedding_dim]`` (384)."""
        x = self.node_mlp(data.x)
        mult = getattr(data, "edge_mult", None)
        for conv in self.convs:
            x = conv(x, data.edge_index, data.edge_attr, mult)
        return x

    def embed(self, data) -> torch.Tensor:
        """The pooled crystal embedding (latent space, e.g. for a UMAP map), ``[n_graphs, embedding_dim]``."""
        batch, n = self._batch_vector(data)
        return self.pool(self.node_embeddings(data), batch, n)

    def forward(self, data) -> torch.Tensor:
        """``[n_graphs, out_dim]``: Im ε on the 2001-point grid (spectrum head) or one value (scalar head)."""
        return self.head(self.embed(data))

    # ---- transfer learning ---------------------------------------------------------------------
    def set_trainable(self, trainable: Trainable) -> None:
        """``"all"``: every weight trains; ``"head"``: the body (node MLP, GATs, pooling) is frozen.

        Frozen modules get ``requires_grad = False`` and stay in eval mode (batch-norm statistics fixed)
        even under ``model.train()``.
        """
        if trainable not in TRAINABLE_CHOICES:
            raise ValueError(f"trainable must be one of {TRAINABLE_CHOICES}, not {trainable!r}")
        self.frozen = BODY_MODULES if trainable == "head" else ()
        for name in BODY_MODULES:
            for p in getattr(self, name).parameters():
                p.requires_grad_(name not in self.frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> OptiMate:
        super().train(mode)
        for name in getattr(self, "frozen", ()):
            getattr(self, name).eval()
        return self

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def spectrum_model(**kwargs: Any) -> OptiMate:
    """OptiMate with the spectrum head (``out_dim = 2001``, leaky ReLU output); ``kwargs`` override sizes."""
    return OptiMate(**kwargs)


def scalar_model(**kwargs: Any) -> OptiMate:
    """OptiMate with a 1-value head and a linear output (e.g. SC[RPA; IPA]); ``kwargs`` override sizes."""
    kwargs.setdefault("out_dim", 1)
    kwargs.setdefault("output_activation", "none")
    return OptiMate(**kwargs)
