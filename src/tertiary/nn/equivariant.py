"""SE(3)-equivariant attention over points with features (E(n)-GNN-style coordinate updates).

For nodes with invariant features ``h_i`` and coordinates ``x_i`` (Angstrom), one
:class:`EquivariantAttention` computes, per head ``h``::

    d_ij     = |x_i - x_j|
    logit_ij = q_i . k_j / sqrt(D) + w_h . RBF(d_ij) [+ b_h . LN(z_ij)]     (+ mask)
    a_ij     = softmax_j(logit_ij)
    dh_i     = W_o concat_h( sum_j a_ij v_j )                          invariant
    dx_i     = mean_h sum_j a_ij phi_h(m_ij) (x_i - x_j) / (d_ij + 1)  equivariant

where ``RBF`` are Gaussian radial basis functions of the distance, ``z_ij`` an optional pair
representation, and ``phi`` a small MLP of the invariant message ``m_ij = [RBF(d_ij), q_i . k_j
per head, pair bias per head]`` giving one scalar per head. Only distances and scalar products
of invariant features enter the logits and ``phi``, so ``h`` is invariant and ``x`` equivariant
under rotations, reflections and translations of all coordinates, and everything is
equivariant under permutations of the nodes (the raw coordinates never pass through a linear
layer, the mistake of the sketch this replaces).

Sparsity and memory: ``knn=K`` restricts each node to its K nearest valid nodes (itself
included); queries are processed ``chunk_size`` at a time so the pairwise tensors take
``O(chunk_size * K)`` (kNN) or ``O(chunk_size * N)`` (dense) memory. Without coordinate
updates the dense path goes through :func:`tertiary.nn.attention.attention` (SDPA).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from tertiary.errors import ConfigError, InputError
from tertiary.nn.attention import attention
from tertiary.nn.primitives import Linear, Transition, gaussian


@dataclass(frozen=True)
class EquivariantAttentionConfig:
    """Hyper-parameters of :class:`EquivariantAttention` / :class:`EquivariantTransformer`.

    Attributes:
        dim: node feature width C.
        num_heads: attention heads H.
        head_dim: query/key/value width per head D.
        num_rbf: Gaussian radial basis functions R.
        rbf_min, rbf_max: range of the RBF centres (Angstrom).
        pair_dim: width of an optional pair representation (0 = none).
        knn: attend to the K nearest valid nodes only (None = all).
        update_coords: whether the layer moves the coordinates.
        phi_hidden: hidden width of the coordinate-weight MLP phi.
        transition_factor: width multiplier of the feed-forward block.
        num_layers: blocks in :class:`EquivariantTransformer`.
    """

    dim: int = 64
    num_heads: int = 4
    head_dim: int = 16
    num_rbf: int = 16
    rbf_min: float = 0.0
    rbf_max: float = 20.0
    pair_dim: int = 0
    knn: int | None = None
    update_coords: bool = True
    phi_hidden: int = 32
    transition_factor: int = 2
    num_layers: int = 4

    def __post_init__(self) -> None:
        for name in ("dim", "num_heads", "head_dim", "num_rbf", "phi_hidden", "transition_factor", "num_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"EquivariantAttentionConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.pair_dim < 0:
            raise ConfigError(f"EquivariantAttentionConfig.pair_dim must be >= 0, got {self.pair_dim}")
        if self.knn is not None and self.knn < 1:
            raise ConfigError(f"EquivariantAttentionConfig.knn must be >= 1 or None, got {self.knn}")
        if not self.rbf_max > self.rbf_min:
            raise ConfigError("EquivariantAttentionConfig.rbf_max must exceed rbf_min")

    @classmethod
    def preset(cls, name: str, **overrides: object) -> EquivariantAttentionConfig:
        """Named presets: ``"tiny"`` (tests), ``"small"``, ``"base"``; keyword overrides apply on top."""
        presets = {
            "tiny": cls(dim=16, num_heads=2, head_dim=8, num_rbf=8, phi_hidden=8, num_layers=2),
            "small": cls(),
            "base": cls(dim=128, num_heads=8, head_dim=16, num_rbf=32, phi_hidden=64, num_layers=6, knn=32),
        }
        if name not in presets:
            raise ConfigError(f"unknown EquivariantAttentionConfig preset {name!r}; expected one of {sorted(presets)}")
        return replace(presets[name], **overrides)  # type: ignore[arg-type]


class GaussianRBF(nn.Module):
    """``exp(-((d - mu_k) / sigma)^2)`` for ``num`` centres ``mu_k`` evenly spaced in [lo, hi].

    ``sigma`` is the spacing of the centres. Maps distances ``[*]`` (Angstrom) to ``[*, num]``.
    """

    def __init__(self, num: int, lo: float, hi: float) -> None:
        super().__init__()
        self.register_buffer("centres", torch.linspace(lo, hi, num), persistent=False)
        self.width = (hi - lo) / max(num - 1, 1)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return gaussian(-(((d[..., None] - self.centres.to(d.dtype)) / self.width) ** 2))


def _gather_nodes(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values [*, N, F...]``, ``index [*, Q, K]`` -> ``[*, Q, K, F...]`` (gather along N)."""
    lead = index.dim() - 2
    extra = values.shape[lead + 1 :]
    flat = index.flatten(-2)  # [*, Q*K]
    idx = flat.reshape(flat.shape + (1,) * len(extra)).expand(flat.shape + extra)
    return torch.gather(values, lead, idx).unflatten(lead, index.shape[-2:])


class EquivariantAttention(nn.Module):
    """One equivariant attention update (see the module docstring).

    ``forward(h, x, mask, pair, chunk_size)`` with ``h [*, N, C]``, ``x [*, N, 3]``, ``mask
    [*, N]`` (True / 1 = real node), ``pair [*, N, N, C_pair]`` returns ``(dh [*, N, C], dx
    [*, N, 3])``; both are zero for masked nodes.
    """

    def __init__(self, config: EquivariantAttentionConfig) -> None:
        super().__init__()
        self.config = config
        c, hh, d = config.dim, config.num_heads, config.head_dim
        self.linear_q = Linear(c, hh * d, bias=False)
        self.linear_k = Linear(c, hh * d, bias=False)
        self.linear_v = Linear(c, hh * d, bias=False)
        self.rbf = GaussianRBF(config.num_rbf, config.rbf_min, config.rbf_max)
        self.linear_rbf = Linear(config.num_rbf, hh)
        if config.pair_dim:
            self.layer_norm_pair = nn.LayerNorm(config.pair_dim)
            self.linear_pair = Linear(config.pair_dim, hh, bias=False, init="normal")
        self.linear_o = Linear(hh * d, c, init="final")
        if config.update_coords:
            n_in = config.num_rbf + hh * (2 if config.pair_dim else 1)
            self.phi = nn.Sequential(
                Linear(n_in, config.phi_hidden, init="relu"), nn.SiLU(), Linear(config.phi_hidden, hh)
            )

    # -------------------------------------------------------------------------------------
    def _check(
        self, h: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None, pair: torch.Tensor | None
    ) -> torch.Tensor:
        cfg = self.config
        if h.dim() < 2 or h.shape[-1] != cfg.dim:
            raise InputError(f"EquivariantAttention: h must be [*, N, {cfg.dim}], got {tuple(h.shape)}")
        if x.shape != h.shape[:-1] + (3,):
            raise InputError(f"EquivariantAttention: x {tuple(x.shape)} must be [*, N, 3] matching h {tuple(h.shape)}")
        if mask is None:
            mask = torch.ones(h.shape[:-1], dtype=torch.bool, device=h.device)
        elif mask.shape != h.shape[:-1]:
            raise InputError(f"EquivariantAttention: mask {tuple(mask.shape)} must be [*, N] = {tuple(h.shape[:-1])}")
        if cfg.pair_dim:
            n = h.shape[-2]
            if pair is None or pair.shape != h.shape[:-2] + (n, n, cfg.pair_dim):
                got = None if pair is None else tuple(pair.shape)
                raise InputError(f"EquivariantAttention: pair must be [*, N, N, {cfg.pair_dim}], got {got}")
        elif pair is not None:
            raise InputError("EquivariantAttention: pair given but config.pair_dim is 0")
        return mask.bool()

    def _heads(self, linear: Linear, h: torch.Tensor) -> torch.Tensor:
        """``[*, N, C]`` -> ``[*, H, N, D]``."""
        return linear(h).unflatten(-1, (self.config.num_heads, self.config.head_dim)).movedim(-2, -3)

    def forward(
        self,
        h: torch.Tensor,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        pair: torch.Tensor | None = None,
        chunk_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self._check(h, x, mask, pair)
        cfg = self.config
        n = h.shape[-2]
        if chunk_size is not None and chunk_size < 1:
            raise InputError(f"chunk_size must be positive, got {chunk_size}")
        step = n if chunk_size is None else chunk_size
        q, k, v = self._heads(self.linear_q, h), self._heads(self.linear_k, h), self._heads(self.linear_v, h)
        scale = 1.0 / math.sqrt(cfg.head_dim)
        k_nn = None if cfg.knn is None else min(cfg.knn, n)
        dh_parts, dx_parts = [], []
        for s in range(0, n, step):
            e = min(n, s + step)
            xi = x[..., s:e, :]
            if k_nn is None:
                rel = xi[..., :, None, :] - x[..., None, :, :]  # [*, c, N, 3]
                key_mask = mask[..., None, :].expand(rel.shape[:-1])
                z = None if pair is None else pair[..., s:e, :, :]
                idx = None
            else:
                d_all = torch.cdist(xi, x).masked_fill(~mask[..., None, :], float("inf"))
                idx = d_all.topk(k_nn, dim=-1, largest=False).indices  # [*, c, K]
                rel = xi[..., :, None, :] - _gather_nodes(x, idx)
                key_mask = torch.gather(mask[..., None, :].expand(d_all.shape), -1, idx)
                z = None if pair is None else torch.gather(
                    pair[..., s:e, :, :], -2, idx[..., None].expand(idx.shape + (pair.shape[-1],))
                )
            dist = torch.sqrt((rel * rel).sum(-1) + 1e-12)  # [*, c, K]
            rbf = self.rbf(dist)  # [*, c, K, R]
            bias = self.linear_rbf(rbf)  # [*, c, K, H]
            if z is not None:
                pair_bias = self.linear_pair(self.layer_norm_pair(z))
                bias = bias + pair_bias
            bias = bias.movedim(-1, -3)  # [*, H, c, K]
            qc = q[..., s:e, :]
            if not cfg.update_coords and idx is None:
                o = attention(qc, k, v, biases=[bias], mask=key_mask[..., None, :, :], scale=scale)
                dh_parts.append(o)
                continue
            if idx is None:
                qk = torch.matmul(qc, k.transpose(-1, -2)) * scale  # [*, H, c, N]
            else:
                kj = _gather_nodes(k.movedim(-3, -2), idx)  # [*, c, K, H, D]
                qk = (qc.movedim(-3, -2)[..., :, None, :, :] * kj).sum(-1).movedim(-1, -3) * scale
            logits = (qk + bias).masked_fill(~key_mask[..., None, :, :], torch.finfo(qk.dtype).min)
            a = torch.softmax(logits, dim=-1)  # [*, H, c, K]
            if idx is None:
                o = torch.matmul(a, v)
            else:
                vj = _gather_nodes(v.movedim(-3, -2), idx)  # [*, c, K, H, D]
                o = (a.movedim(-3, -1)[..., None] * vj).sum(-3).movedim(-2, -3)
            dh_parts.append(o)
            if cfg.update_coords:
                msg = [rbf, qk.movedim(-3, -1)]
                if z is not None:
                    msg.append(pair_bias)
                phi = self.phi(torch.cat(msg, -1))  # [*, c, K, H]
                w = (a.movedim(-3, -1) * phi).mean(-1)  # [*, c, K]
                dx_parts.append((w[..., None] * rel / (dist[..., None] + 1.0)).sum(-2))
        o = torch.cat(dh_parts, dim=-2)  # [*, H, N, D]
        dh = self.linear_o(o.movedim(-3, -2).flatten(-2)) * mask[..., None].to(h.dtype)
        if cfg.update_coords:
            dx = torch.cat(dx_parts, dim=-2) * mask[..., None].to(x.dtype)
        else:
            dx = torch.zeros_like(x)
        return dh, dx


class EquivariantBlock(nn.Module):
    """Pre-LayerNorm residual block: equivariant attention then a feed-forward transition.

    ``h <- h + dh``, ``x <- x + dx``, ``h <- h + Transition(h)``.
    """

    def __init__(self, config: EquivariantAttentionConfig) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.dim)
        self.attention = EquivariantAttention(config)
        self.transition = Transition(config.dim, config.transition_factor)

    def forward(
        self,
        h: torch.Tensor,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        pair: torch.Tensor | None = None,
        chunk_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``h [*, N, C]``, ``x [*, N, 3]`` -> updated ``(h, x)``; masked nodes keep their values."""
        dh, dx = self.attention(self.layer_norm(h), x, mask, pair, chunk_size)
        h = h + dh
        m = None if mask is None else mask.to(h.dtype)
        h = h + self.transition(h, m, chunk_size=chunk_size)
        return h, x + dx


class EquivariantTransformer(nn.Module):
    """``config.num_layers`` :class:`EquivariantBlock` s with separate weights."""

    def __init__(self, config: EquivariantAttentionConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(EquivariantBlock(config) for _ in range(config.num_layers))

    def forward(
        self,
        h: torch.Tensor,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        pair: torch.Tensor | None = None,
        chunk_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``h [*, N, C]``, ``x [*, N, 3]`` (Angstrom) -> ``(h, x)`` after all blocks."""
        for block in self.blocks:
            h, x = block(h, x, mask, pair, chunk_size)
        return h, x
