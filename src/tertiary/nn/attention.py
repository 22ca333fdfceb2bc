"""The one attention kernel every model family goes through.

``attention`` computes ``softmax(q k^T * scale + sum(biases) [+ mask]) v`` with
:func:`torch.nn.functional.scaled_dot_product_attention` (fused / memory-efficient kernels where
the backend has them) and can process the queries in chunks so that peak memory is bounded by
``chunk_size * N_keys`` per head instead of ``N_queries * N_keys``. ``neighbour_attention`` is the
sparse case: one query per node over its own ``K`` gathered keys (kNN graphs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from tertiary.errors import InputError


def _combined_bias(
    biases: Sequence[torch.Tensor], mask: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor | None:
    """Sum additive biases and turn a boolean keep-mask into ``-inf``-like entries."""
    total: torch.Tensor | None = None
    for b in biases:
        b = b.to(dtype)
        total = b if total is None else total + b
    if mask is not None:
        if mask.dtype != torch.bool:
            raise InputError(f"attention mask must be boolean, got {mask.dtype}")
        neg = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        neg = neg.masked_fill(~mask, torch.finfo(dtype).min)
        total = neg if total is None else total + neg
    return total


def _slice_q(t: torch.Tensor | None, start: int, end: int, n_q: int) -> torch.Tensor | None:
    """Slice the query axis (-2) of a bias unless it is broadcast along it."""
    if t is None or t.shape[-2] == 1:
        return t
    if t.shape[-2] != n_q:
        raise InputError(f"bias query dimension {t.shape[-2]} does not match {n_q} queries")
    return t[..., start:end, :]


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    biases: Sequence[torch.Tensor] = (),
    mask: torch.Tensor | None = None,
    scale: float | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Multi-head attention.

    Args:
        q: queries ``[*, H, N_q, C]``.
        k: keys ``[*, H, N_k, C]``.
        v: values ``[*, H, N_k, C_v]``.
        biases: additive logits, each broadcastable to ``[*, H, N_q, N_k]``.
        mask: boolean keep-mask broadcastable to ``[*, H, N_q, N_k]`` (True = attend).
        scale: logit scale; ``1 / sqrt(C)`` when None.
        chunk_size: process this many queries at a time (None = all at once).

    Returns:
        ``[*, H, N_q, C_v]``.
    """
    if q.shape[-1] != k.shape[-1]:
        raise InputError(f"query width {q.shape[-1]} != key width {k.shape[-1]}")
    bias = _combined_bias(biases, mask, q.dtype)
    n_q = q.shape[-2]
    if chunk_size is None or chunk_size >= n_q:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    if chunk_size < 1:
        raise InputError(f"chunk_size must be positive, got {chunk_size}")
    out = [
        F.scaled_dot_product_attention(
            q[..., s : s + chunk_size, :], k, v, attn_mask=_slice_q(bias, s, s + chunk_size, n_q), scale=scale
        )
        for s in range(0, n_q, chunk_size)
    ]
    return torch.cat(out, dim=-2)


def attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    biases: Sequence[torch.Tensor] = (),
    mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Explicit attention probabilities ``[*, H, N_q, N_k]`` (for models that return them)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = torch.matmul(q, k.transpose(-1, -2)) * scale
    bias = _combined_bias(biases, mask, q.dtype)
    if bias is not None:
        logits = logits + bias
    return torch.softmax(logits, dim=-1)


def neighbour_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor, scale: float = 1.0,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each node's single query attends over its own ``K`` keys (graph attention on kNN edges).

    Elementwise products and sums instead of SDPA: with one query per row SDPA spends its time
    on layout copies of the ``[*, K, H, C]`` keys. A row without valid keys returns a finite
    uniform average (callers mask such rows).

    Args:
        q: ``[*, H, C]`` queries.
        k: ``[*, K, H, C]`` keys of each node's neighbours.
        v: ``[*, K, H, C_v]`` values.
        valid: ``[*, K]`` True for real neighbours.
        scale: logit scale.
        bias: additive logits broadcastable to ``[*, K, H]``.

    Returns:
        ``[*, H, C_v]``.
    """
    if valid.dtype != torch.bool:
        raise InputError(f"neighbour mask must be boolean, got {valid.dtype}")
    logits = (k * q.unsqueeze(-3)).sum(-1)  # [*, K, H]
    if scale != 1.0:
        logits = logits * scale
    if bias is not None:
        logits = logits + bias
    logits = logits.masked_fill(~valid.unsqueeze(-1), torch.finfo(logits.dtype).min)
    weights = torch.softmax(logits, dim=-2)
    return (weights.unsqueeze(-1) * v).sum(-3)
