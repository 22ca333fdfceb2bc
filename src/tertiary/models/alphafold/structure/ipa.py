"""Invariant point attention (AlphaFold2 Algorithm 22).

Each head attends with logits made of three terms: scalar query-key products, a bias from the
pair representation, and (negative, per-head weighted) squared distances between query and key
points placed in the global frame by each residue's backbone frame. The output concatenates the
attended scalar values, the attended value points brought back into the query's local frame
(x, y, z and norm), and the attention-weighted pair representation.

The squared distance ``|q - k|^2 = |q|^2 + |k|^2 - 2 q.k`` is evaluated as a dot product plus a
per-key bias; the ``|q|^2`` term is constant along each softmax row and cancels exactly, so the
point term rides along in the same matrix product as the scalar term (no ``[N, N, H, P, 3]``
tensor). Logits and weights are computed in at least float32 even under bf16 autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tertiary.errors import InputError
from tertiary.geometry.rigid import Rigid
from tertiary.nn.attention import attention_weights
from tertiary.nn.primitives import Linear

#: softplus^-1(1): AlphaFold2 initialises the per-head point weights so that softplus gives 1
_POINT_WEIGHT_INIT = math.log(math.e - 1.0)


def _points(flat: torch.Tensor, no_heads: int, no_points: int) -> torch.Tensor:
    """``[*, 3 * H * P]`` laid out (x..., y..., z...) -> ``[*, H, P, 3]`` (AlphaFold2's layout)."""
    return flat.unflatten(-1, (3, no_heads, no_points)).movedim(-3, -1)


class InvariantPointAttention(nn.Module):
    """Algorithm 22.

    Args:
        c_s: single representation width.
        c_z: pair representation width.
        c_hidden: per-head scalar query / key / value width.
        no_heads: number of heads.
        no_qk_points: query / key points per head.
        no_v_points: value points per head.
        inf: magnitude of the additive mask for padded residue pairs.
        eps: added under the square root of the output point norms.
    """

    def __init__(
        self,
        c_s: int,
        c_z: int,
        c_hidden: int,
        no_heads: int,
        no_qk_points: int,
        no_v_points: int,
        inf: float = 1e5,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.c_hidden = c_hidden
        self.no_heads = no_heads
        self.no_qk_points = no_qk_points
        self.no_v_points = no_v_points
        self.inf = inf
        self.eps = eps
        hc = no_heads * c_hidden
        self.linear_q = Linear(c_s, hc)
        self.linear_kv = Linear(c_s, 2 * hc)
        self.linear_q_points = Linear(c_s, no_heads * no_qk_points * 3)
        self.linear_kv_points = Linear(c_s, no_heads * (no_qk_points + no_v_points) * 3)
        self.linear_b = Linear(c_z, no_heads)
        self.head_weights = nn.Parameter(torch.full((no_heads,), _POINT_WEIGHT_INIT))
        self.linear_out = Linear(no_heads * (c_z + c_hidden + 4 * no_v_points), c_s, init="final")

    def forward(
        self,
        s: torch.Tensor,
        z: torch.Tensor,
        rigids: Rigid,
        mask: torch.Tensor,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        """Single-representation update.

        Args:
            s: single representation ``[*, N, c_s]``.
            z: pair representation ``[*, N, N, c_z]``.
            rigids: backbone frames ``[*, N]`` (the structure module keeps them in nm).
            mask: residue mask ``[*, N]`` (1 = real residue).
            chunk_size: process this many query residues at a time (None = all).

        Returns:
            ``[*, N, c_s]``.
        """
        n = s.shape[-2]
        if z.shape[-3:-1] != (n, n) or mask.shape[-1] != n:
            raise InputError(f"IPA: s has {n} residues but z is {tuple(z.shape)} and mask {tuple(mask.shape)}")
        h, c, p_qk, p_v = self.no_heads, self.c_hidden, self.no_qk_points, self.no_v_points
        frames = rigids[..., None, None]  # broadcast over heads and points

        q = self.linear_q(s).unflatten(-1, (h, c))  # [*, N, H, C]
        k, v = self.linear_kv(s).unflatten(-1, (h, 2 * c)).split(c, dim=-1)
        q_pts = frames.apply(_points(self.linear_q_points(s), h, p_qk))  # [*, N, H, Pqk, 3]
        kv_pts = frames.apply(_points(self.linear_kv_points(s), h, p_qk + p_v))
        k_pts, v_pts = kv_pts.split([p_qk, p_v], dim=-2)

        f32 = torch.promote_types(s.dtype, torch.float32)  # logits in float32 or better
        # point-term weights gamma_h = softplus(w_h) * sqrt(2 / (9 Pqk)) / sqrt(3)
        gamma = F.softplus(self.head_weights.to(f32)) * math.sqrt(1.0 / (3 * (p_qk * 9.0 / 2)))
        # [*, H, N, C + 3 Pqk]: scaled scalar query next to gamma-weighted query points
        q_cat = torch.cat(
            [
                q.to(f32) * math.sqrt(1.0 / (3 * c)),
                q_pts.flatten(-2).to(f32) * gamma[:, None],
            ],
            dim=-1,
        ).transpose(-2, -3)
        k_cat = torch.cat([k.to(f32), k_pts.flatten(-2).to(f32)], dim=-1).transpose(-2, -3)
        # per-key bias -gamma/2 |k|^2  [*, H, 1, N]
        k_sq = -0.5 * gamma[:, None] * k_pts.to(f32).pow(2).sum(dim=(-1, -2)).transpose(-1, -2)
        k_bias = k_sq[..., None, :]
        mask = mask.to(f32)
        v_cat = torch.cat([v, v_pts.flatten(-2)], dim=-1).transpose(-2, -3)  # [*, H, N, C + 3 Pv]

        outs = []
        step = n if chunk_size is None else chunk_size
        if step < 1:
            raise InputError(f"chunk_size must be positive, got {chunk_size}")
        for start in range(0, n, step):
            end = min(n, start + step)
            pair = z[..., start:end, :, :]
            b = self.linear_b(pair).to(f32).movedim(-1, -3) * math.sqrt(1.0 / 3)  # [*, H, n_q, N]
            square_mask = mask[..., start:end, None] * mask[..., None, :]
            mask_bias = (self.inf * (square_mask - 1))[..., None, :, :]
            with torch.autocast(device_type=s.device.type, enabled=False):
                a = attention_weights(
                    q_cat[..., start:end, :], k_cat, biases=[b, k_bias, mask_bias], scale=1.0
                )  # [*, H, n_q, N]
            outs.append(self._outputs(a, v_cat, pair, frames[..., start:end, :, :]))
        out = torch.cat(outs, dim=-2) if len(outs) > 1 else outs[0]
        return self.linear_out(out.to(s.dtype))

    def _outputs(self, a: torch.Tensor, v_cat: torch.Tensor, pair: torch.Tensor, frames: Rigid) -> torch.Tensor:
        """Concatenated per-query outputs ``[*, n_q, H * (C + 4 Pv + c_z)]`` from weights ``a [*, H, n_q, N]``."""
        c, p_v = self.c_hidden, self.no_v_points
        o_cat = torch.matmul(a, v_cat.to(a.dtype)).transpose(-2, -3)  # [*, n_q, H, C + 3 Pv]
        o = o_cat[..., :c]
        o_pt = frames.invert_apply(o_cat[..., c:].unflatten(-1, (p_v, 3)))  # local frame [*, n_q, H, Pv, 3]
        o_pt_norm = torch.sqrt(o_pt.pow(2).sum(dim=-1) + self.eps)
        o_pair = torch.matmul(a.transpose(-2, -3), pair.to(a.dtype))  # [*, n_q, H, c_z]
        o_pt = o_pt.flatten(-3, -2)  # [*, n_q, H * Pv, 3]
        return torch.cat(
            [o.flatten(-2), o_pt[..., 0], o_pt[..., 1], o_pt[..., 2], o_pt_norm.flatten(-2), o_pair.flatten(-2)],
            dim=-1,
        )
