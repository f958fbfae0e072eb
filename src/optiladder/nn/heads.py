"""Regression heads on the pooled crystal embedding: a spectrum on the target's grid or one scalar."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import nn

from .mlp import MLP, Norm

OutputActivation = Literal["leaky_relu", "none"]
OUTPUT_ACTIVATIONS: tuple[str, ...] = get_args(OutputActivation)


class Head(nn.Module):
    r"""``y = scale · act(MLP(h)) + shift``.

    ``h``: pooled embedding ``[n_graphs, in_dim]`` → ``y`` ``[n_graphs, out_dim]``. OptiMate's spectrum head is
    ``MLP[384 → 1024 → 1024 → 1024 → n_grid]`` with a leaky ReLU (slope 0.01) on the output, which keeps
    Im ε ≥ 0 in practice; ``shift``/``scale`` (constants, part of the model config) let a scalar head predict a
    standardised target and return it in its own units.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        *,
        output_activation: OutputActivation = "leaky_relu",
        norm: Norm = "batch_norm",
        dropout: float = 0.0,
        shift: float = 0.0,
        scale: float = 1.0,
    ):
        super().__init__()
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}")
        self.mlp = MLP([in_dim, *hidden, out_dim], norm=norm, dropout=dropout)
        self.output_activation = output_activation
        self.shift = float(shift)
        self.scale = float(scale)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``[n_graphs, in_dim] → [n_graphs, out_dim]``."""
        y = self.mlp(h)
        if self.output_activation == "leaky_relu":
            y = nn.functional.leaky_relu(y)
        return y * self.scale + self.shift
