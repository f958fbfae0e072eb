"""The OptiMate graph attention network (Grunert, Großmann & Runge, Nat. Commun. 16, 8142 (2025)).

Body: node MLP ``[13 → 48 → 48]`` → GATv2 (:class:`~.gatv2.GATv2`, the ``torch_geometric`` maths) ``48 → 48 × 4 heads`` (concatenated, 192) → GATv2
``192 → 96 × 4 heads`` (384), both with ``edge_dim = 51`` and no added self loops (no activation between them,
as in the published code) → softmax attention pooling per channel (:class:`~.pooling.AttentionPool`) → a
384-dimensional crystal embedding. Head: ``MLP[384 → 1024 → 1024 → 1024 → out_dim]`` with a leaky ReLU on the
output (spectra, ``out_dim`` = the points of the target's grid) or a plain linear output (a scalar such as SC[RPA; IPA], ``out_dim = 1``).

Every size is a keyword-only constructor argument; the arguments are recorded in ``model.config`` (plain JSON
types) and saved with the weights, so ``OptiMate(**model.config)`` rebuilds the same network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..targets import DEFAULT_GRID
from .gatv2 import GATv2
from .heads import Head, OutputActivation
from .mlp import MLP, Norm
from .pooling import AttentionPool

Trainable = str | Sequence[str]
#: named parameter groups of every OptiMate (besides these, any submodule name such as ``convs.1`` or
#: ``head.mlp.layers.0`` is a group of its own)
PARAMETER_GROUPS: dict[str, tuple[str, ...]] = {
    "all": ("node_mlp", "convs", "pool", "head"),
    "body": ("node_mlp", "convs", "pool"),
    "head": ("head",),
}
TRAINABLE_CHOICES: tuple[str, ...] = tuple(PARAMETER_GROUPS)
#: submodules of the body (frozen by ``trainable="head"``)
BODY_MODULES: tuple[str, ...] = PARAMETER_GROUPS["body"]
LOSSES: dict[str, Any] = {"l1": nn.functional.l1_loss, "mse": nn.functional.mse_loss}


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    return v


class OptiMate(nn.Module):
    """OptiMate: crystal graph → Im ε spectrum ``[n_graphs, out_dim]`` (or a scalar ``[n_graphs, 1]``).

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
        out_dim: int = DEFAULT_GRID.n,
        output_activation: OutputActivation = "leaky_relu",
        norm: Norm = "batch_norm",
        dropout: float = 0.0,
        target_shift: float = 0.0,
        target_scale: float = 1.0,
        loss: str = "l1",
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {tuple(LOSSES)}, not {loss!r}")
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
        self.trainable: tuple[str, ...] = ("all",)

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
        """``[n_graphs, out_dim]``: Im ε on the target's grid (spectrum head) or one value (scalar head)."""
        return self.head(self.embed(data))

    # ---- the loss the model owns ------------------------------------------------------------------
    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss (``config["loss"]``: ``l1`` = mean |pred − y|, ``mse`` = mean (pred − y)²) over
        all entries of ``[n_graphs, out_dim]``."""
        return LOSSES[self.config["loss"]](pred, y)

    # ---- transfer learning ---------------------------------------------------------------------
    @staticmethod
    def head_config(hidden: Sequence[int]) -> dict[str, Any]:
        """Config overrides that give this architecture a head of hidden widths ``hidden`` (e.g. the sc
        networks' 2×128 head)."""
        return {"head_hidden": [int(h) for h in hidden]}

    def body_modules(self) -> tuple[str, ...]:
        """Submodules of the body (what transfer learning copies; the head is left out)."""
        return self.parameter_groups()["body"]

    def parameter_groups(self) -> dict[str, tuple[str, ...]]:
        """Group name → submodule names: :data:`PARAMETER_GROUPS` plus every submodule with parameters."""
        groups = dict(PARAMETER_GROUPS)
        for name, mod in self.named_modules():
            if name and next(mod.parameters(), None) is not None:
                groups.setdefault(name, (name,))
        return groups

    def set_trainable(self, trainable: Trainable) -> None:
        """Train only the named parameter groups (``"all"``, ``"head"``, ``"body"``, or submodule names such
        as ``"convs.1"``, ``"head.mlp.layers.4"``; a list combines them); every other weight is frozen.

        Frozen modules get ``requires_grad = False`` and stay in eval mode (batch-norm statistics fixed)
        even under ``model.train()``.
        """
        names = (trainable,) if isinstance(trainable, str) else tuple(trainable)
        groups = self.parameter_groups()
        unknown = [n for n in names if n not in groups]
        if unknown or not names:
            raise ValueError(
                f"unknown parameter group(s) {unknown}; known: {', '.join(PARAMETER_GROUPS)} or a submodule "
                f"name ({', '.join(list(groups)[len(PARAMETER_GROUPS) :][:6])}, …)"
            )
        prefixes = tuple(m for n in names for m in groups[n])
        for pname, p in self.named_parameters():
            p.requires_grad_(any(pname == m or pname.startswith(m + ".") for m in prefixes))
        self.trainable = names
        self.frozen = tuple(
            name
            for name, mod in self.named_modules()
            if name
            and any(True for _ in mod.parameters())
            and not any(p.requires_grad for p in mod.parameters())
        )
        self.train(self.training)

    def train(self, mode: bool = True) -> OptiMate:
        super().train(mode)
        modules = dict(self.named_modules())
        for name in getattr(self, "frozen", ()):
            modules[name].eval()
        return self

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def spectrum_model(**kwargs: Any) -> OptiMate:
    """OptiMate with the spectrum head (leaky ReLU output, ``out_dim`` of the default spectrum target);
    ``kwargs`` override sizes."""
    return OptiMate(**kwargs)


def scalar_model(**kwargs: Any) -> OptiMate:
    """OptiMate with a 1-value head and a linear output (e.g. SC[RPA; IPA]); ``kwargs`` override sizes."""
    kwargs.setdefault("out_dim", 1)
    kwargs.setdefault("output_activation", "none")
    return OptiMate(**kwargs)
