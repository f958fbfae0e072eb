"""A plain multilayer perceptron (the ``torch_geometric.nn.MLP`` layout OptiMate uses)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import nn

Norm = Literal["batch_norm", "layer_norm", "none"]
NORMS: tuple[str, ...] = get_args(Norm)


class MLP(nn.Module):
    r"""``Linear → norm → ReLU → dropout`` for every layer but the last, which is a plain ``Linear``.

    ``channels`` = ``[c_0, c_1, …, c_L]`` gives L linear layers. Shapes: ``[N, c_0] → [N, c_L]``.
    ``norm="batch_norm"`` is the ``torch_geometric.nn.MLP`` default that the published OptiMate model used.
    """

    def __init__(self, channels: Sequence[int], *, norm: Norm = "batch_norm", dropout: float = 0.0):
        super().__init__()
        if len(channels) < 2:
            raise ValueError("an MLP needs at least an input and an output size")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
        layers: list[nn.Module] = []
        for k, (a, b) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if k < len(channels) - 2:
                if norm == "batch_norm":
                    layers.append(nn.BatchNorm1d(b))
                elif norm == "layer_norm":
                    layers.append(nn.LayerNorm(b))
                layers.append(nn.ReLU())
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, c_0] → [N, c_L]``."""
        return self.layers(x)
