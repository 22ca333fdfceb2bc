"""Residue-level graph transformer of FAIR's hierarchical encoder.

Every residue attends to its kNN residues and, when it is designed, to one ligand node. Keys and
values come from ``[edge features, neighbour features]``; as in the released model the attention
probabilities are divided by ``sqrt(d)`` AFTER the softmax (logits are unscaled).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tertiary.nn.attention import neighbour_attention

from .atom_attention import ShiftedSoftplus


def dropout(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout drawing its mask from ``generator`` (identity when ``p == 0``)."""
    if p <= 0.0:
        return x
    keep = torch.empty_like(x).bernoulli_(1.0 - p, generator=generator)
    return x * keep / (1.0 - p)


class ResidueAttention(nn.Module):
    """Graph attention over a fixed number of neighbour slots per residue."""

    def __init__(self, hidden: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.W_Q = nn.Linear(hidden, hidden, bias=False)
        self.W_K = nn.Linear(hidden * 2, hidden, bias=False)
        self.W_V = nn.Linear(hidden * 2, hidden, bias=False)
        self.W_O = nn.Linear(hidden, hidden, bias=False)
        self.act = ShiftedSoftplus()

    def _kv_weight(self, inputs: slice) -> torch.Tensor:
        """``[2C, C]``: the key and value maps stacked, restricted to ``inputs`` of their
        ``[edge, neighbour]`` input."""
        return torch.cat([self.W_K.weight[:, inputs], self.W_V.weight[:, inputs]])

    def edge_projection(self, h_edge: torch.Tensor) -> torch.Tensor:
        """Edge part of the keys and values, ``[*, C] -> [*, 2C]`` (keys first).

        Keys and values are ``W [h_edge, h_neighbour]``, i.e. ``W_edge h_edge + W_node h_node``;
        this is the first term, a function of the edge alone (the encoder keeps it while the
        residue graph does not change).
        """
        c = h_edge.shape[-1]
        return h_edge @ self._kv_weight(slice(None, c)).T

    def forward(
        self, h: torch.Tensor, nodes: torch.Tensor, neighbours: torch.Tensor, kv_edge: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """Update of the residues.

        The neighbour part of the keys and values, ``W_node h_node``, is evaluated once per node
        and gathered (the same sum as concatenating ``[edge, neighbour]`` per edge, for a fraction
        of the products); one query per residue, so the attention is
        :func:`tertiary.nn.attention.neighbour_attention`.

        Args:
            h: ``[B, R, C]`` residue features (queries).
            nodes: ``[B, M, C]`` features of the nodes the neighbours index (residues, ligand node).
            neighbours: ``[B, R, K]`` node of each neighbour slot.
            kv_edge: ``[B, R, K, 2C]`` :meth:`edge_projection` of the edge features.
            valid: ``[B, R, K]`` real edges (a row needs at least one).

        Returns:
            ``[B, R, C]``.
        """
        b, r, k = neighbours.shape
        m, c = nodes.shape[1:]
        heads, d = self.num_heads, c // self.num_heads
        rows = (neighbours + m * torch.arange(b, device=neighbours.device).view(b, 1, 1)).reshape(-1)
        per_node = (nodes @ self._kv_weight(slice(c, None)).T).reshape(b * m, 2 * c).index_select(0, rows)
        kv = (kv_edge + per_node.view(b, r, k, 2 * c)).view(b * r, k, 2, heads, d)
        q = self.W_Q(h).view(b * r, heads, d)
        out = neighbour_attention(q, kv[:, :, 0], kv[:, :, 1], valid.reshape(b * r, k)) / math.sqrt(d)
        return self.W_O(self.act(out.reshape(b, r, c)))


class FeedForward(nn.Module):
    """``W_out(relu(W_in x))``."""

    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.W_in = nn.Linear(hidden, inner)
        self.W_out = nn.Linear(inner, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.W_out(torch.relu(self.W_in(x)))


class ResidueTransformerLayer(nn.Module):
    """Pre-LayerNorm transformer layer on residues plus a ligand node per complex."""

    def __init__(self, hidden: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.self_attention_norm = nn.LayerNorm(hidden)
        self.ffn_norm = nn.LayerNorm(hidden)
        self.attention = ResidueAttention(hidden, num_heads)
        self.ffn = FeedForward(hidden, hidden)

    def forward(
        self,
        h_res: torch.Tensor,
        h_lig: torch.Tensor,
        kv_edge: torch.Tensor,
        neighbours: torch.Tensor,
        valid: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer.

        Args:
            h_res: ``[B, R, C]`` residues.
            h_lig: ``[B, C]`` ligand node (it has no incoming edges: only its transition runs).
            kv_edge: ``[B, R, K + 1, 2C]`` :meth:`ResidueAttention.edge_projection` of this layer
                for the embedded edges; the last slot is the ligand edge.
            neighbours: ``[B, R, K]`` residue neighbours; the ligand slot is implicit.
            valid: ``[B, R, K + 1]`` real edges (ligand slot: designed residues only).
            generator: dropout RNG; dropout runs only in training mode.

        Returns:
            updated ``h_res``, ``h_lig``.
        """
        p = self.dropout if self.training else 0.0
        y_res, y_lig = self.self_attention_norm(h_res), self.self_attention_norm(h_lig)
        b, r = neighbours.shape[:2]
        nodes = torch.cat([y_res, y_lig.unsqueeze(1)], 1)  # the ligand node is node R
        ligand_slot = neighbours.new_full((b, r, 1), r)
        slots = torch.cat([neighbours, ligand_slot], 2)
        h_res = h_res + dropout(self.attention(y_res, nodes, slots, kv_edge, valid), p, generator)
        h_res = h_res + dropout(self.ffn(self.ffn_norm(h_res)), p, generator)
        h_lig = h_lig + dropout(self.ffn(self.ffn_norm(h_lig)), p, generator)
        return h_res, h_lig
