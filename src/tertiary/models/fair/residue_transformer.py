"""Residue-level graph transformer of FAIR's hierarchical encoder.

Every residue attends to its kNN residues and, when it is designed, to one ligand node. Keys and
values come from ``[edge features, neighbour features]``; as in the released model the attention
probabilities are divided by ``sqrt(d)`` AFTER the softmax (logits are unscaled).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tertiary.nn.attention import attention

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

    def forward(self, h: torch.Tensor, h_nbr: torch.Tensor, h_edge: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Update of the residues.

        Args:
            h: ``[B, R, C]`` residue features (queries).
            h_nbr: ``[B, R, K, C]`` features of each residue's neighbours (residues or ligand node).
            h_edge: ``[B, R, K, C]`` embedded edge features.
            valid: ``[B, R, K]`` real edges (a row needs at least one).

        Returns:
            ``[B, R, C]``.
        """
        b, r, k, c = h_nbr.shape
        heads, d = self.num_heads, c // self.num_heads
        kv_in = torch.cat([h_edge, h_nbr], dim=-1)
        q = self.W_Q(h).view(b * r, heads, 1, d)
        keys = self.W_K(kv_in).view(b * r, k, heads, d).transpose(1, 2)
        values = self.W_V(kv_in).view(b * r, k, heads, d).transpose(1, 2)
        out = attention(q, keys, values, mask=valid.reshape(b * r, 1, 1, k), scale=1.0) / math.sqrt(d)
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
        h_edge: torch.Tensor,
        neighbours: torch.Tensor,
        valid: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer.

        Args:
            h_res: ``[B, R, C]`` residues.
            h_lig: ``[B, C]`` ligand node (it has no incoming edges: only its transition runs).
            h_edge: ``[B, R, K + 1, C]`` embedded edges; the last slot is the ligand edge.
            neighbours: ``[B, R, K]`` residue neighbours; the ligand slot is implicit.
            valid: ``[B, R, K + 1]`` real edges (ligand slot: designed residues only).
            generator: dropout RNG; dropout runs only in training mode.

        Returns:
            updated ``h_res``, ``h_lig``.
        """
        p = self.dropout if self.training else 0.0
        y_res, y_lig = self.self_attention_norm(h_res), self.self_attention_norm(h_lig)
        c = y_res.shape[-1]
        idx = neighbours.reshape(neighbours.shape[0], -1, 1).expand(-1, -1, c)
        y_nbr = torch.gather(y_res, 1, idx).view(*neighbours.shape, c)
        y_nbr = torch.cat([y_nbr, y_lig[:, None, None, :].expand(-1, y_nbr.shape[1], 1, -1)], dim=2)
        h_res = h_res + dropout(self.attention(y_res, y_nbr, h_edge, valid), p, generator)
        h_res = h_res + dropout(self.ffn(self.ffn_norm(h_res)), p, generator)
        h_lig = h_lig + dropout(self.ffn(self.ffn_norm(h_lig)), p, generator)
        return h_res, h_lig
