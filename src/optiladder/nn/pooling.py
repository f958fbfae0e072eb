"""Softmax attention pooling per channel over the atoms of each crystal (OptiMate's readout)."""

from __future__ import annotations

import torch
from torch import nn


class AttentionPool(nn.Module):
    r"""Weighted sum of node features with per-channel softmax weights over the nodes of each graph.

    .. math::
        a_i = W x_i + b, \qquad
        w_{ic} = \frac{\exp a_{ic}}{\sum_{j \in G(i)} \exp a_{jc}}, \qquad
        h_{G,c} = \sum_{i \in G} w_{ic}\, x_{ic}

    Shapes: ``x`` ``[n_nodes, C]``, ``batch`` ``[n_nodes]`` (graph index of each node) →
    ``[n_graphs, C]``. The weights of every graph and channel sum to 1, so the readout does not grow with the
    number of atoms in the cell.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.score = nn.Linear(channels, channels)

    def weights(self, x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """Attention weights ``[n_nodes, C]``, summing to 1 over the nodes of each graph per channel."""
        from torch_geometric.utils import softmax

        return softmax(self.score(x), index=batch, num_nodes=num_graphs, dim=0)

    def forward(self, x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """``[n_nodes, C] → [n_graphs, C]``."""
        w = self.weights(x, batch, num_graphs)
        out = torch.zeros(num_graphs, x.shape[1], dtype=x.dtype, device=x.device)
        return out.index_add_(0, batch, x * w)
