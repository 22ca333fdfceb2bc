"""MSA attention blocks: row attention with pair bias (Algorithm 7), column attention
(Algorithm 8) and global column attention for the extra-MSA stack (Algorithm 19)."""

from __future__ import annotations

import torch
from torch import nn

from tertiary.models.alphafold.gated_attention import GatedAttention, mask_bias
from tertiary.nn.attention import attention
from tertiary.nn.primitives import Linear


class MSARowAttentionWithPairBias(nn.Module):
    """Algorithm 7: attention along each MSA row, logits biased by a projection of the pair rep.

    Args:
        c_m: MSA width. c_z: pair width (None: no pair bias, as in column attention).
        c_hidden: per-head width. no_heads: heads. inf: magnitude of the masking bias.
    """

    def __init__(self, c_m: int, c_z: int | None, c_hidden: int, no_heads: int, inf: float = 1e9) -> None:
        super().__init__()
        self.inf = inf
        self.layer_norm_m = nn.LayerNorm(c_m)
        if c_z is not None:
            self.layer_norm_z = nn.LayerNorm(c_z)
            self.linear_z = Linear(c_z, no_heads, bias=False, init="normal")
        self.mha = GatedAttention(c_m, c_hidden, no_heads)

    def forward(
        self,
        m: torch.Tensor,
        z: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        """``m [*, S, N, c_m]``, ``z [*, N, N, c_z]``, ``mask [*, S, N]`` -> update ``[*, S, N, c_m]``.

        ``chunk_size`` bounds the number of MSA rows attended at once.
        """
        biases = mask_bias(mask, self.inf)
        if z is not None:
            pair = self.linear_z(self.layer_norm_z(z))  # [*, N, N, H]
            biases.append(pair.permute(*range(pair.dim() - 3), -1, -3, -2).unsqueeze(-4))
        return self.mha(self.layer_norm_m(m), biases, chunk_size=chunk_size)


class MSAColumnAttention(MSARowAttentionWithPairBias):
    """Algorithm 8: attention along each MSA column (row attention on the transposed MSA, no pair bias)."""

    def __init__(self, c_m: int, c_hidden: int, no_heads: int, inf: float = 1e9) -> None:
        super().__init__(c_m, None, c_hidden, no_heads, inf)

    def forward(  # type: ignore[override]
        self, m: torch.Tensor, mask: torch.Tensor | None = None, chunk_size: int | None = None
    ) -> torch.Tensor:
        """``m [*, S, N, c_m]``, ``mask [*, S, N]`` -> update ``[*, S, N, c_m]``; chunks over columns."""
        mask_t = None if mask is None else mask.transpose(-1, -2)
        out = super().forward(m.transpose(-2, -3), None, mask_t, chunk_size)
        return out.transpose(-2, -3)


class GlobalAttention(nn.Module):
    """Gated attention with one mask-averaged query per column and single-head keys / values."""

    def __init__(self, c_in: int, c_hidden: int, no_heads: int, inf: float, eps: float) -> None:
        super().__init__()
        self.c_hidden, self.no_heads, self.inf, self.eps = c_hidden, no_heads, inf, eps
        self.linear_q = Linear(c_in, c_hidden * no_heads, bias=False, init="glorot")
        self.linear_k = Linear(c_in, c_hidden, bias=False, init="glorot")
        self.linear_v = Linear(c_in, c_hidden, bias=False, init="glorot")
        self.linear_g = Linear(c_in, c_hidden * no_heads, init="gating")
        self.linear_o = Linear(c_hidden * no_heads, c_in, init="final")

    def forward(self, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``m [*, N, S, c]`` (columns first), ``mask [*, N, S]`` -> ``[*, N, S, c]``."""
        maskf = mask.to(m.dtype)
        q_avg = (m * maskf.unsqueeze(-1)).sum(-2) / (maskf.sum(-1, keepdim=True) + self.eps)  # [*, N, c]
        q = self.linear_q(q_avg).unflatten(-1, (self.no_heads, 1, self.c_hidden))  # [*, N, H, 1, c]
        k, v = self.linear_k(m).unsqueeze(-3), self.linear_v(m).unsqueeze(-3)  # [*, N, 1, S, c]
        k = k.expand(*k.shape[:-3], self.no_heads, *k.shape[-2:])
        v = v.expand(*v.shape[:-3], self.no_heads, *v.shape[-2:])
        bias = (self.inf * (mask.to(q.dtype) - 1.0))[..., None, None, :]  # [*, N, 1, 1, S]
        o = attention(q, k, v, biases=[bias], scale=self.c_hidden**-0.5).squeeze(-2)  # [*, N, H, c]
        g = torch.sigmoid(self.linear_g(m)).unflatten(-1, (self.no_heads, self.c_hidden))  # [*, N, S, H, c]
        return self.linear_o((g * o.unsqueeze(-3)).flatten(-2))


class MSAColumnGlobalAttention(nn.Module):
    """Algorithm 19: global column attention (extra-MSA stack); linear, not quadratic, in N_seq."""

    def __init__(self, c_m: int, c_hidden: int, no_heads: int, inf: float = 1e9, eps: float = 1e-10) -> None:
        super().__init__()
        self.layer_norm_m = nn.LayerNorm(c_m)
        self.global_attention = GlobalAttention(c_m, c_hidden, no_heads, inf, eps)

    def forward(
        self, m: torch.Tensor, mask: torch.Tensor | None = None, chunk_size: int | None = None
    ) -> torch.Tensor:
        """``m [*, S, N, c_m]``, ``mask [*, S, N]`` -> update ``[*, S, N, c_m]``; chunks over columns."""
        if mask is None:
            mask = m.new_ones(m.shape[:-1])
        mt, maskt = self.layer_norm_m(m.transpose(-2, -3)), mask.transpose(-1, -2)
        n = mt.shape[-3]
        step = n if chunk_size is None else chunk_size
        out = [
            self.global_attention(mt[..., s : s + step, :, :], maskt[..., s : s + step, :])
            for s in range(0, n, step)
        ]
        return torch.cat(out, dim=-3).transpose(-2, -3)
