"""Outer product mean (Algorithm 10): MSA -> pair update."""

from __future__ import annotations

import torch
from torch import nn

from tertiary.nn.primitives import Linear


class OuterProductMean(nn.Module):
    """``z_ij += Linear(mean_s a_si (x) b_sj)``, the mean taken over sequences present at both i and j.

    Args:
        c_m: MSA width. c_z: pair width. c_hidden: width of ``a``, ``b`` (the outer product has
        ``c_hidden^2`` channels). eps: added to the pair count before dividing.
    """

    def __init__(self, c_m: int, c_z: int, c_hidden: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.layer_norm = nn.LayerNorm(c_m)
        self.linear_1 = Linear(c_m, c_hidden)
        self.linear_2 = Linear(c_m, c_hidden)
        self.linear_out = Linear(c_hidden * c_hidden, c_z, init="final")

    def forward(
        self, m: torch.Tensor, mask: torch.Tensor | None = None, chunk_size: int | None = None
    ) -> torch.Tensor:
        """``m [*, S, N, c_m]``, ``mask [*, S, N]`` -> update ``[*, N, N, c_z]``.

        ``chunk_size`` computes that many rows ``i`` at a time, bounding the
        ``[*, N, N, c_hidden^2]`` outer product to ``[*, chunk, N, c_hidden^2]``.
        """
        if mask is None:
            mask = m.new_ones(m.shape[:-1])
        maskf = mask.to(m.dtype)
        mn = self.layer_norm(m)
        a = self.linear_1(mn) * maskf.unsqueeze(-1)  # [*, S, N, c]
        b = self.linear_2(mn) * maskf.unsqueeze(-1)
        n, c = m.shape[-2], a.shape[-1]
        step = n if chunk_size is None else chunk_size
        b_flat = b.flatten(-2)  # [*, S, N d]
        out = []
        for s in range(0, n, step):
            a_chunk = a[..., s : s + step, :].flatten(-2).transpose(-1, -2)  # [*, n_chunk c, S]
            outer = torch.matmul(a_chunk, b_flat)  # [*, n_chunk c, N d]: one GEMM over sequences
            outer = outer.unflatten(-1, (n, c)).unflatten(-3, (-1, c))  # [*, n_chunk, c, N, d]
            out.append(self.linear_out(outer.transpose(-3, -2).flatten(-2)))  # [*, n_chunk, N, c_z]
        norm = torch.einsum("...si,...sj->...ij", maskf, maskf).unsqueeze(-1)  # [*, N, N, 1]
        return torch.cat(out, dim=-3) / (norm + self.eps)
