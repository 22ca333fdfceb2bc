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

from tertiary.nn.attention import ScaleTable, modulated_neighbour_attention
from tertiary.nn.primitives import gaussian, softplus


# On CPU, per-edge tensors of one atom-attention chunk hold at most this many floats (4 MB). Without
# chunks a batch of 4 pockets took 2x the CPU time of 4 separate calls (fresh multi-10-MB
# allocations fault on every page, and the passes over them leave the cache); 4 MB chunks
# measured best among 1, 2, 4, 8 and 16 MB.
EDGE_CHUNK_ELEMENTS = 1 << 20


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
        diff = dist.unsqueeze(-1) - self.offset
        if torch.is_grad_enabled() and dist.requires_grad:
            return gaussian(self.coeff * diff.square())
        return gaussian(diff.square_().mul_(self.coeff), inplace=True)  # one allocation


def _per_head(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Head-wise product ``[*, H, C_in] x [H, C_out, C_in] -> [*, H, C_out]`` (contiguous without
    gradients: one batched product written straight into the ``[*, H, C_out]`` layout)."""
    if (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)) or x.dim() != 3:
        return torch.einsum("...hi,hoi->...ho", x, weight)
    out = x.new_empty(x.shape[0], weight.shape[0], weight.shape[1])
    torch.bmm(x.transpose(0, 1), weight.transpose(1, 2), out=out.transpose(0, 1))
    return out


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
        return _per_head(x.view(*x.shape[:-1], self.heads, -1), self.weight)


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
        self.fixed: dict[str, torch.Tensor] | None = None  # see _rewritten_weights

    def qkv_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head query, key and value maps ``[H, dk, C/H]``, ``[H, dk, C/H]``, ``[H, dv, C/H]``
        and query bias ``[H, C/H]``.

        ``weight_k_lin`` is folded into the query map: ``q . (A k + b) = (A^T q) . k + q . b``.
        ``q . b`` is the same for all neighbours of a query and cancels in the softmax, but it is
        kept so that the function, and the parameters taking part in it (DDP needs each one to get
        a gradient), stay those of the original. The maps stay head-wise (a quarter of the
        products of one block-diagonal matrix with four heads); see :func:`_per_head`.
        """
        wq = self.q_lin.weight  # [H, dk, C/H]
        wq_a = self.weight_k_lin.weight.T @ wq  # A^T per head
        wq_b = self.weight_k_lin.bias @ wq  # [H, C/H]: q . b per head
        return wq_a, self.k_lin.weight, self.v_lin.weight, wq_b

    def _rewritten_weights(self) -> dict[str, torch.Tensor]:
        """:meth:`compute_rewritten_weights` at each call, except without gradients inside
        :meth:`.encoder.HierarchicalEncoder.fixed_weights` (sampling), which computes them once."""
        if self.fixed is not None and not torch.is_grad_enabled():
            return self.fixed
        return self.compute_rewritten_weights()

    def _absorbed_bias(self, layer: nn.Linear) -> torch.Tensor:
        """Bias of ``layer`` applied to a shifted softplus: ``W (s - c) + b = W s + (b - c W 1)``."""
        return layer.bias - self.act.shift * layer.weight.sum(1)

    def compute_rewritten_weights(self) -> dict[str, torch.Tensor]:
        """Weights of the rewritten products: :meth:`qkv_weights`, the stacked first edge layers,
        and the biases that absorb each shifted softplus (:meth:`_absorbed_bias`)."""
        k_net, v_net = self.weight_k_net, self.weight_v_net
        return {
            **dict(zip(("q", "k", "v", "q_bias"), self.qkv_weights())),
            "edge_w1": torch.cat([k_net[0].weight, v_net[0].weight], 0),
            "edge_b1": torch.cat([k_net[0].bias, v_net[0].bias]),
            "key_b2": self._absorbed_bias(k_net[2]),
            "value_b2": self._absorbed_bias(v_net[2]),
            "out_b": self._absorbed_bias(self.out_transform),
        }

    def edge_modulation(self, edge_attr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Key and value edge MLPs ``[*, E] -> ([*, dk], [*, dv])``.

        The softplus shift is absorbed by the second layers' biases; without gradients the two
        first layers also run as one product (with gradients that would mean slicing a per-edge
        tensor, whose backward costs more).
        """
        k_net, v_net = self.weight_k_net, self.weight_v_net
        if torch.is_grad_enabled():  # only the two biases (the attention weights are not needed here)
            return tuple(  # type: ignore[return-value]
                nn.functional.linear(nn.functional.softplus(net[0](edge_attr)), net[2].weight,
                                     self._absorbed_bias(net[2]))
                for net in (k_net, v_net)
            )
        w = self._rewritten_weights()
        hidden = softplus(nn.functional.linear(edge_attr, w["edge_w1"], w["edge_b1"]), inplace=True)
        dk = k_net[0].weight.shape[0]
        return (
            nn.functional.linear(hidden[..., :dk], k_net[2].weight, w["key_b2"]),
            nn.functional.linear(hidden[..., dk:], v_net[2].weight, w["value_b2"]),
        )

    def forward(
        self, x: torch.Tensor, neighbours: torch.Tensor, valid: torch.Tensor, key_scale: ScaleTable,
        value_scale: ScaleTable, scale_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Update node features (memory is linear in N: K neighbours per atom).

        The per-edge value map ``weight_v_lin`` runs after the aggregation (the attention weights
        sum to one); see :meth:`qkv_weights` and :meth:`edge_modulation` for the other rewrites.
        The attention itself is :func:`tertiary.nn.attention.modulated_neighbour_attention` (the
        numba kernels on CPU with numba installed, sampling and training; otherwise PyTorch, in
        chunks of ``EDGE_CHUNK_ELEMENTS`` when sampling on CPU).

        Args:
            x: ``[N, C]`` atom features (all complexes of a batch, flat).
            neighbours: ``[N, K]`` flat indices of each atom's neighbours.
            valid: ``[N, K]`` True for real edges.
            key_scale / value_scale: :meth:`edge_modulation` of the edges, ``[N, K, dk]`` /
                ``[N, K, dv]``, or tables ``[S, dk]`` / ``[S, dv]`` (or pairs of tables read as one)
                indexed by ``scale_index [N, K]``.

        Returns:
            ``[N, C]``.
        """
        n = x.shape[0]
        heads = self.num_heads
        w = self._rewritten_weights()
        normed = self.layernorm_attention(x).view(n, heads, -1)
        q, k, v = (_per_head(normed, w[name]) for name in ("q", "k", "v"))
        # q . b is constant over a node's neighbours and cancels in the softmax: only evaluated where
        # gradients flow (see qkv_weights)
        q_bias = (normed * w["q_bias"]).sum(-1) if torch.is_grad_enabled() else None  # [N, H]
        chunk = EDGE_CHUNK_ELEMENTS if x.device.type == "cpu" else None
        attended = modulated_neighbour_attention(
            q, k, v, key_scale, value_scale, neighbours, valid, bias=q_bias, scale_index=scale_index,
            chunk_elements=chunk,
        )  # [N, H, dv]
        x = self.weight_v_lin(attended).reshape(n, -1) + x
        hidden = softplus(self.layernorm_ffn(x), inplace=True)
        return nn.functional.linear(hidden, self.out_transform.weight, w["out_b"]) + x
