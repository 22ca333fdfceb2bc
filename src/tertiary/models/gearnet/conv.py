"""Relational graph convolution of GearNet (``GeometricRelationalGraphConv`` in TorchDrug)."""

from __future__ import annotations

import torch
from torch import nn


def relational_sum(
    x: torch.Tensor, edge_index: torch.Tensor, edge_relation: torch.Tensor, num_node: int, num_relation: int
) -> torch.Tensor:
    """Sum of source features per (target, relation), without degree normalisation.

    Args:
        x: per-edge messages ``[E, C]`` (already gathered from the sources).
        edge_index: ``[E, 2]`` (source, target).
        edge_relation: ``[E]``.
        num_node: number of targets ``N``.
        num_relation: ``R``.

    Returns:
        ``[N, R * C]``: block ``r`` of row ``i`` is the sum over edges ``j -> i`` of relation ``r``.
    """
    slot = edge_index[:, 1] * num_relation + edge_relation
    out = x.new_zeros(num_node * num_relation, x.shape[-1])
    out.index_add_(0, slot, x)
    return out.view(num_node, num_relation * x.shape[-1])


class RelationalGraphConv(nn.Module):
    """``h_i' = act(BN(W [sum_{j -(r)-> i} h_j]_r + W_self h_i))``.

    Messages are summed per relation (no degree normalisation), concatenated over relations and
    projected; a self-loop linear is added; then optional batch norm and ReLU.

    Args:
        input_dim: ``C_in``.
        output_dim: ``C_out``.
        num_relation: ``R``.
        batch_norm: batch norm before the activation.
    """

    def __init__(self, input_dim: int, output_dim: int, num_relation: int, batch_norm: bool = True) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.num_relation = num_relation
        self.self_loop = nn.Linear(input_dim, output_dim)
        self.linear = nn.Linear(num_relation * input_dim, output_dim)
        self.batch_norm = nn.BatchNorm1d(output_dim) if batch_norm else None

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_relation: torch.Tensor) -> torch.Tensor:
        """``x [N, C_in]`` -> ``[N, C_out]``."""
        update = relational_sum(x[edge_index[:, 0]], edge_index, edge_relation, x.shape[0], self.num_relation)
        out = self.linear(update) + self.self_loop(x)
        if self.batch_norm is not None:
            out = self.batch_norm(out)
        return torch.relu(out)
