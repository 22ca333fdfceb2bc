"""Evoformer block and stack (Algorithm 6) and the pair stack they share with the extra-MSA stack."""

from __future__ import annotations

import torch
from torch import nn

from tertiary.models.alphafold.config import StackConfig
from tertiary.models.alphafold.msa_attention import MSAColumnAttention, MSARowAttentionWithPairBias
from tertiary.models.alphafold.outer_product_mean import OuterProductMean
from tertiary.models.alphafold.triangle_attention import TriangleAttentionEndingNode, TriangleAttentionStartingNode
from tertiary.models.alphafold.triangle_multiplication import (
    TriangleMultiplicationIncoming,
    TriangleMultiplicationOutgoing,
)
from tertiary.nn.primitives import Linear, Transition


def shared_dropout(x: torch.Tensor, p: float, shared_dim: int, training: bool) -> torch.Tensor:
    """Dropout whose mask is shared along ``shared_dim`` (supplement 1.11.6: row- / column-wise)."""
    if not training or p == 0.0:
        return x
    shape = list(x.shape)
    shape[shared_dim] = 1
    keep = torch.bernoulli(x.new_full(shape, 1.0 - p))
    return x * keep / (1.0 - p)


class PairStack(nn.Module):
    """Algorithm 6 lines 6-10: triangle updates, triangle attention and pair transition."""

    def __init__(self, cfg: StackConfig) -> None:
        super().__init__()
        self.pair_dropout = cfg.pair_dropout
        self.tri_mul_out = TriangleMultiplicationOutgoing(cfg.c_z, cfg.c_hidden_mul)
        self.tri_mul_in = TriangleMultiplicationIncoming(cfg.c_z, cfg.c_hidden_mul)
        self.tri_att_start = TriangleAttentionStartingNode(cfg.c_z, cfg.c_hidden_pair_att, cfg.no_heads_pair, cfg.inf)
        self.tri_att_end = TriangleAttentionEndingNode(cfg.c_z, cfg.c_hidden_pair_att, cfg.no_heads_pair, cfg.inf)
        self.pair_transition = Transition(cfg.c_z, cfg.transition_n)

    def forward(self, z: torch.Tensor, pair_mask: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """``z [*, N, N, c_z]``, ``pair_mask [*, N, N]`` -> ``z [*, N, N, c_z]``."""
        p, tr = self.pair_dropout, self.training
        z = z + shared_dropout(self.tri_mul_out(z, pair_mask, chunk_size), p, -3, tr)
        z = z + shared_dropout(self.tri_mul_in(z, pair_mask, chunk_size), p, -3, tr)
        z = z + shared_dropout(self.tri_att_start(z, pair_mask, chunk_size), p, -3, tr)
        z = z + shared_dropout(self.tri_att_end(z, pair_mask, chunk_size), p, -2, tr)
        return z + self.pair_transition(z, chunk_size=chunk_size)


class EvoformerBlock(nn.Module):
    """One Evoformer block (Algorithm 6 lines 2-10): MSA row / column attention and transition,
    outer product mean, then the pair stack. Transitions are not masked (as in AlphaFold2)."""

    def __init__(self, cfg: StackConfig) -> None:
        super().__init__()
        self.msa_dropout = cfg.msa_dropout
        self.msa_att_row = MSARowAttentionWithPairBias(
            cfg.c_m, cfg.c_z, cfg.c_hidden_msa_att, cfg.no_heads_msa, cfg.inf
        )
        self.msa_att_col = self._column_attention(cfg)
        self.msa_transition = Transition(cfg.c_m, cfg.transition_n)
        self.outer_product_mean = OuterProductMean(cfg.c_m, cfg.c_z, cfg.c_hidden_opm, cfg.opm_eps)
        self.pair_stack = PairStack(cfg)

    def _column_attention(self, cfg: StackConfig) -> nn.Module:
        return MSAColumnAttention(cfg.c_m, cfg.c_hidden_msa_att, cfg.no_heads_msa, cfg.inf)

    def forward(
        self,
        m: torch.Tensor,
        z: torch.Tensor,
        msa_mask: torch.Tensor,
        pair_mask: torch.Tensor,
        chunk_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``m [*, S, N, c_m]``, ``z [*, N, N, c_z]``, masks ``[*, S, N]`` / ``[*, N, N]`` -> ``(m, z)``."""
        m = m + shared_dropout(self.msa_att_row(m, z, msa_mask, chunk_size), self.msa_dropout, -3, self.training)
        m = m + self.msa_att_col(m, msa_mask, chunk_size)
        m = m + self.msa_transition(m, chunk_size=chunk_size)
        z = z + self.outer_product_mean(m, msa_mask, chunk_size)
        return m, self.pair_stack(z, pair_mask, chunk_size)


class EvoformerStack(nn.Module):
    """Algorithm 6: ``no_blocks`` Evoformer blocks, then the single rep ``s = Linear(m_1)``."""

    def __init__(self, cfg: StackConfig, c_s: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(EvoformerBlock(cfg) for _ in range(cfg.no_blocks))
        self.linear = Linear(cfg.c_m, c_s)

    def forward(
        self,
        m: torch.Tensor,
        z: torch.Tensor,
        msa_mask: torch.Tensor,
        pair_mask: torch.Tensor,
        chunk_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> ``m [*, S, N, c_m]``, ``z [*, N, N, c_z]``, ``s [*, N, c_s]``."""
        for block in self.blocks:
            m, z = block(m, z, msa_mask, pair_mask, chunk_size)
        return m, z, self.linear(m[..., 0, :, :])
