"""Gated multi-head self-attention used by every AlphaFold2 attention block (supplement 1.6-1.7).

``o = Linear_o( sigmoid(Linear_g(x)) * softmax(q k^T / sqrt(c) + biases) v )`` with per-head
queries / keys / values; the softmax goes through :func:`tertiary.nn.attention.attention`
(``scaled_dot_product_attention``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tertiary.nn.attention import attention
from tertiary.nn.primitives import Linear


def mask_bias(mask: torch.Tensor | None, inf: float) -> list[torch.Tensor]:
    """Additive key bias ``inf * (mask - 1)``: ``[*, B, K]`` -> ``[[*, B, 1, 1, K]]`` (0 keep, -inf drop).

    Returns an empty list when nothing is masked, so the attention kernel gets a single
    broadcast bias (or none) instead of a materialised ``[*, B, H, Q, K]`` sum; the result is
    the same, since the bias would be all zeros.
    """
    if mask is None or bool(mask.bool().all()):
        return []
    return [(inf * (mask.to(torch.float32) - 1.0))[..., :, None, None, :]]


class GatedAttention(nn.Module):
    """Gated self-attention over the second-last axis of ``x [*, B, Q, c_in]``.

    Args:
        c_in: input / output width.
        c_hidden: per-head width.
        no_heads: number of heads.
    """

    def __init__(self, c_in: int, c_hidden: int, no_heads: int) -> None:
        super().__init__()
        self.c_hidden, self.no_heads = c_hidden, no_heads
        hc = c_hidden * no_heads
        self.linear_q = Linear(c_in, hc, bias=False, init="glorot")
        self.linear_k = Linear(c_in, hc, bias=False, init="glorot")
        self.linear_v = Linear(c_in, hc, bias=False, init="glorot")
        self.linear_o = Linear(hc, c_in, init="final")
        self.linear_g = Linear(c_in, hc, init="gating")

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.no_heads, self.c_hidden)).transpose(-2, -3)

    def _forward(self, x: torch.Tensor, *biases: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.linear_q(x)), self._heads(self.linear_k(x)), self._heads(self.linear_v(x))
        o = attention(q, k, v, biases=biases, scale=self.c_hidden**-0.5)  # [*, B, H, Q, c]
        o = o.transpose(-2, -3) * torch.sigmoid(self.linear_g(x)).unflatten(-1, (self.no_heads, self.c_hidden))
        return self.linear_o(o.flatten(-2))

    def forward(
        self, x: torch.Tensor, biases: Sequence[torch.Tensor] = (), chunk_size: int | None = None
    ) -> torch.Tensor:
        """``x [*, B, Q, c_in]``; each bias broadcastable to ``[*, B, H, Q, Q]`` -> ``[*, B, Q, c_in]``.

        ``chunk_size`` processes that many entries of the batch axis ``B`` at a time, so the
        attention logits never exceed ``chunk_size * H * Q * Q`` elements.
        """
        n = x.shape[-3]
        if chunk_size is None or chunk_size >= n:
            return self._forward(x, *biases)
        out = []
        for s in range(0, n, chunk_size):
            e = min(s + chunk_size, n)
            sl = [b if b.dim() < 4 or b.shape[-4] == 1 else b[..., s:e, :, :, :] for b in biases]
            out.append(self._forward(x[..., s:e, :, :], *sl))
        return torch.cat(out, dim=-3)
