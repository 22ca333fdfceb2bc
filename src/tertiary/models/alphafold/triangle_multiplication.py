"""Triangle multiplicative updates using outgoing (Algorithm 11) and incoming (Algorithm 12) edges."""

from __future__ import annotations

import torch
from torch import nn

from tertiary.nn.primitives import Linear


class TriangleMultiplicativeUpdate(nn.Module):
    """``z_ij <- g_ij * Linear(LN(sum_k a_ik b_jk))`` (outgoing) or ``sum_k a_ki b_kj`` (incoming).

    Args:
        c_z: pair width. c_hidden: width of the projected edges ``a``, ``b``.
        outgoing: True for Algorithm 11, False for Algorithm 12.
    """

    def __init__(self, c_z: int, c_hidden: int, outgoing: bool = True) -> None:
        super().__init__()
        self.outgoing = outgoing
        self.layer_norm_in = nn.LayerNorm(c_z)
        self.linear_a_p = Linear(c_z, c_hidden)
        self.linear_a_g = Linear(c_z, c_hidden, init="gating")
        self.linear_b_p = Linear(c_z, c_hidden)
        self.linear_b_g = Linear(c_z, c_hidden, init="gating")
        self.layer_norm_out = nn.LayerNorm(c_hidden)
        self.linear_z = Linear(c_hidden, c_z, init="final")
        self.linear_g = Linear(c_z, c_z, init="gating")

    def _edges(self, z: torch.Tensor, mask: torch.Tensor, p: Linear, g: Linear) -> torch.Tensor:
        """Masked gated projection, channels first: ``[*, c_hidden, N, N]``."""
        e = mask * torch.sigmoid(g(z)) * p(z)
        return e.permute(*range(e.dim() - 3), -1, -3, -2)

    def forward(
        self, z: torch.Tensor, mask: torch.Tensor | None = None, chunk_size: int | None = None
    ) -> torch.Tensor:
        """``z [*, N, N, c_z]``, ``mask [*, N, N]`` -> update ``[*, N, N, c_z]``.

        ``chunk_size`` computes that many output rows at a time (the ``[*, N, N, c_hidden]``
        edge projections are kept whole; the output-side intermediates are per chunk).
        """
        if mask is None:
            mask = z.new_ones(z.shape[:-1])
        mask = mask.unsqueeze(-1).to(z.dtype)
        zn = self.layer_norm_in(z)
        a = self._edges(zn, mask, self.linear_a_p, self.linear_a_g)  # [*, c, N, N]
        b = self._edges(zn, mask, self.linear_b_p, self.linear_b_g)
        if self.outgoing:  # x_ij = sum_k a_ik b_jk
            left, right = a, b.transpose(-1, -2)
        else:  # x_ij = sum_k a_ki b_kj
            left, right = a.transpose(-1, -2), b
        left, right = left.contiguous(), right.contiguous()  # laid out once, not per chunk
        del a, b
        n = z.shape[-3]
        step = n if chunk_size is None else chunk_size
        out = []
        for s in range(0, n, step):
            x = torch.matmul(left[..., s : s + step, :], right)  # [*, c, n_chunk, N]
            x = self.layer_norm_out(x.permute(*range(x.dim() - 3), -2, -1, -3))
            out.append(self.linear_z(x) * torch.sigmoid(self.linear_g(zn[..., s : s + step, :, :])))
        return torch.cat(out, dim=-3)


class TriangleMultiplicationOutgoing(TriangleMultiplicativeUpdate):
    """Algorithm 11."""

    def __init__(self, c_z: int, c_hidden: int) -> None:
        super().__init__(c_z, c_hidden, outgoing=True)


class TriangleMultiplicationIncoming(TriangleMultiplicativeUpdate):
    """Algorithm 12."""

    def __init__(self, c_z: int, c_hidden: int) -> None:
        super().__init__(c_z, c_hidden, outgoing=False)
