"""Extra-MSA stack (Algorithm 18): Evoformer blocks over the many unclustered sequences, with
global column attention (Algorithm 19); only its pair representation is kept."""

from __future__ import annotations

import torch
from torch import nn

from tertiary.models.alphafold.config import StackConfig
from tertiary.models.alphafold.evoformer import EvoformerBlock
from tertiary.models.alphafold.msa_attention import MSAColumnGlobalAttention


class ExtraMSABlock(EvoformerBlock):
    """An Evoformer block whose column attention is global (Algorithm 18 lines 2-10)."""

    def _column_attention(self, cfg: StackConfig) -> nn.Module:
        return MSAColumnGlobalAttention(cfg.c_m, cfg.c_hidden_msa_att, cfg.no_heads_msa, cfg.inf, cfg.eps)


class ExtraMSAStack(nn.Module):
    """Algorithm 18: ``no_blocks`` extra-MSA blocks; returns the updated pair representation."""

    def __init__(self, cfg: StackConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ExtraMSABlock(cfg) for _ in range(cfg.no_blocks))

    def forward(
        self,
        a: torch.Tensor,
        z: torch.Tensor,
        msa_mask: torch.Tensor,
        pair_mask: torch.Tensor,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        """``a [*, S_extra, N, c_e]``, ``z [*, N, N, c_z]``, masks -> ``z [*, N, N, c_z]``."""
        for block in self.blocks:
            a, z = block(a, z, msa_mask, pair_mask, chunk_size)
        return z
