"""Triangle self-attention around the starting node (Algorithm 13) and the ending node (Algorithm 14)."""

from __future__ import annotations

import torch
from torch import nn

from tertiary.models.alphafold.gated_attention import GatedAttention, mask_bias
from tertiary.nn.primitives import Linear


class TriangleAttention(nn.Module):
    """Edge ``ij`` attends to edges ``ik`` (starting node) or ``kj`` (ending node), biased by ``jk``.

    Args:
        c_z: pair width. c_hidden: per-head width. no_heads: heads.
        starting: True for Algorithm 13, False for Algorithm 14.
        inf: magnitude of the masking bias.
    """

    def __init__(self, c_z: int, c_hidden: int, no_heads: int, starting: bool = True, inf: float = 1e9) -> None:
        super().__init__()
        self.starting, self.inf = starting, inf
        self.layer_norm = nn.LayerNorm(c_z)
        self.linear = Linear(c_z, no_heads, bias=False, init="normal")
        self.mha = GatedAttention(c_z, c_hidden, no_heads)

    def forward(
        self, z: torch.Tensor, mask: torch.Tensor | None = None, chunk_size: int | None = None
    ) -> torch.Tensor:
        """``z [*, N, N, c_z]``, ``mask [*, N, N]`` -> update ``[*, N, N, c_z]``.

        ``chunk_size`` bounds the rows (columns for the ending node) processed at once, so the
        ``H * N^3`` logits are never materialised whole.
        """
        if not self.starting:
            z = z.transpose(-2, -3)
            mask = None if mask is None else mask.transpose(-1, -2)
        z = self.layer_norm(z)
        tri = self.linear(z)  # [*, I, J, H]
        tri = tri.permute(*range(tri.dim() - 3), -1, -3, -2).unsqueeze(-4)  # [*, 1, H, I, J]
        out = self.mha(z, [*mask_bias(mask, self.inf), tri], chunk_size=chunk_size)
        return out if self.starting else out.transpose(-2, -3)


class TriangleAttentionStartingNode(TriangleAttention):
    """Algorithm 13."""

    def __init__(self, c_z: int, c_hidden: int, no_heads: int, inf: float = 1e9) -> None:
        super().__init__(c_z, c_hidden, no_heads, starting=True, inf=inf)


class TriangleAttentionEndingNode(TriangleAttention):
    """Algorithm 14."""

    def __init__(self, c_z: int, c_hidden: int, no_heads: int, inf: float = 1e9) -> None:
        super().__init__(c_z, c_hidden, no_heads, starting=False, inf=inf)
