"""Atom-level graph attention of FAIR's hierarchical encoder (kNN graph over protein + ligand atoms).

Each atom attends to its k nearest atoms. Keys and values are modulated per edge by learned
functions of the Gaussian-expanded distance (continuous-filter style), logits are unscaled
``q_i . k_ij`` (as in the released model), and the block is pre-LayerNorm with a residual
shifted-softplus transition.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tertiary.nn.attention import attention
from tertiary.nn.primitives import gaussian


class ShiftedSoftplus(nn.Module):
    """``softplus(x) - log(2)`` (zero at zero)."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = math.log(2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(x) - self.shift


class GaussianSmearing(nn.Module):
    """Distances ``[*]`` (A) -> ``[*, n]`` Gaussians centred on ``linspace(start, stop, n)``."""

    def __init__(self, start: float = 0.0, stop: float = 10.0, num_gaussians: int = 64) -> None:
        super().__init__()
        offset = torch.linspace(start, stop, num_gaussians)
        self.coeff = -0.5 / (offset[1] - offset[0]).item() ** 2
        self.register_buffer("offset", offset, persistent=False)

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        return gaussian(self.coeff * (dist.unsqueeze(-1) - self.offset).square())


class GroupedLinear(nn.Module):
    """Head-wise linear map without bias: ``[*, H * C_in] -> [*, H, C_out]``.

    Each head ``h`` sees only its own slice of the input (a grouped 1x1 convolution).
    """

    def __init__(self, in_dim: int, out_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.weight = nn.Parameter(torch.empty(heads, out_dim // heads, in_dim // heads))
        nn.init.kaiming_uniform_(self.weight.view(out_dim, in_dim // heads), a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xh = x.view(*x.shape[:-1], self.heads, -1)
        return torch.einsum("...hi,hoi->...ho", xh, self.weight)


class AtomAttentionBlock(nn.Module):
    """One atom-level attention block over a kNN graph.

    Args:
        hidden: node width ``C``.
        edge_channels: Gaussian distance channels.
        key_channels: query / key width (over all heads).
        num_heads: heads ``H``.
    """

    def __init__(self, hidden: int, edge_channels: int, key_channels: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        dk, dv = key_channels // num_heads, hidden // num_heads
        self.k_lin = GroupedLinear(hidden, key_channels, num_heads)
        self.q_lin = GroupedLinear(hidden, key_channels, num_heads)
        self.v_lin = GroupedLinear(hidden, hidden, num_heads)
        self.weight_k_net = nn.Sequential(nn.Linear(edge_channels, dk), ShiftedSoftplus(), nn.Linear(dk, dk))
        self.weight_k_lin = nn.Linear(dk, dk)
        self.weight_v_net = nn.Sequential(nn.Linear(edge_channels, dv), ShiftedSoftplus(), nn.Linear(dv, dv))
        self.weight_v_lin = nn.Linear(dv, dv)
        self.act = ShiftedSoftplus()
        self.out_transform = nn.Linear(hidden, hidden)
        self.layernorm_attention = nn.LayerNorm(hidden)
        self.layernorm_ffn = nn.LayerNorm(hidden)

    def forward(
        self, x: torch.Tensor, neighbours: torch.Tensor, valid: torch.Tensor, edge_attr: torch.Tensor
    ) -> torch.Tensor:
        """Update node features (memory is linear in N: K neighbours per atom).

        The per-edge key map ``weight_k_lin`` is moved onto the query (``q . (A k + b) =
        (A^T q) . k + q . b``, and ``q . b`` is constant over the neighbours of a query, so it
        cancels in the softmax) and the value map ``weight_v_lin`` after the aggregation (the
        attention weights sum to one): the same function with two per-edge matrix products fewer.

        Args:
            x: ``[N, C]`` atom features (all complexes of a batch, flat).
            neighbours: ``[N, K]`` flat indices of each atom's neighbours.
            valid: ``[N, K]`` True for real edges.
            edge_attr: ``[N, K, edge_channels]`` Gaussian-expanded edge lengths.

        Returns:
            ``[N, C]``.
        """
        n, k = neighbours.shape
        y = self.layernorm_attention(x)
        q = self.q_lin(y) @ self.weight_k_lin.weight  # [N, H, dk]: (A^T q)
        keys = self.k_lin(y)[neighbours] * self.weight_k_net(edge_attr).unsqueeze(-2)  # [N, K, H, dk]
        values = self.v_lin(y)[neighbours] * self.weight_v_net(edge_attr).unsqueeze(-2)  # [N, K, H, dv]
        out = attention(
            q.unsqueeze(-2), keys.transpose(1, 2), values.transpose(1, 2), mask=valid[:, None, None, :], scale=1.0
        )  # [N, H, 1, dv]
        x = self.weight_v_lin(out.squeeze(-2)).reshape(n, -1) + x
        return self.out_transform(self.act(self.layernorm_ffn(x))) + x
