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

from tertiary.errors import InputError, MissingDependencyError
from tertiary.nn import fused_cpu

# a table of per-edge scales, or two tables whose rows follow one another (read as one)
ScaleTable = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


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


def modulated_neighbour_attention(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    key_scale: ScaleTable,
    value_scale: ScaleTable,
    neighbours: torch.Tensor,
    valid: torch.Tensor,
    bias: torch.Tensor | None = None,
    scale_index: torch.Tensor | None = None,
    chunk_elements: int | None = None,
    fused: bool | None = None,
) -> torch.Tensor:
    """Graph attention whose keys and values are scaled channel-wise per edge (continuous filters).

    Node ``i`` attends over its neighbours ``j``: key ``keys[j] * key_scale[i, j]`` and value
    ``values[j] * value_scale[i, j]``, the scales shared by all heads (functions of the edge,
    e.g. of its length). Logits are unscaled ``q . key`` plus ``bias``.

    Args:
        q: ``[N, H, dk]`` queries.
        keys / values: ``[M, H, dk]`` / ``[M, H, dv]`` tables the neighbours index into.
        key_scale / value_scale: ``[N, K, dk]`` / ``[N, K, dv]`` per-edge channel scales, or
            ``[S, dk]`` / ``[S, dv]`` tables of them when ``scale_index`` is given, each possibly
            as a pair ``([S0, d], [S1, d])`` of tables whose rows follow one another (the fused
            kernels read both in place; the PyTorch path concatenates them).
        neighbours: ``[N, K]`` rows of the tables; valid: ``[N, K]`` True for real edges.
        bias: ``[N, H]`` additive logits per node and head.
        scale_index: ``[N, K]`` row of each edge's scales (edges sharing a scale, e.g. two edges
            of the same length, share a row).
        chunk_elements: PyTorch path without gradients: gathered keys + values of one chunk of
            nodes hold at most this many floats (None = one chunk). With gradients there is one
            chunk: the backward of each slice of a per-edge tensor fills a full-size gradient.
        fused: use the numba kernels of :mod:`tertiary.nn.fused_cpu` (forward and backward).
            None = when they apply (numba installed, float32 CPU tensors); True raises
            :class:`~tertiary.errors.MissingDependencyError` without numba.

    Returns:
        ``[N, H, dv]``.
    """
    if scale_index is None and (isinstance(key_scale, tuple) or isinstance(value_scale, tuple)):
        raise InputError("pairs of scale tables need a scale_index")
    scales = [t for s in (key_scale, value_scale) for t in (s if isinstance(s, tuple) else (s,))]
    tensors = (q, keys, values, *scales) + (() if bias is None else (bias,))
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if fused is None:
        fused = fused_cpu.takes(*tensors)
    if fused:
        if not fused_cpu.available():
            raise MissingDependencyError("the fused attention kernel needs numba: pip install 'tertiary[fast]'")
        if not fused_cpu.takes(*tensors):
            raise InputError("the fused attention kernel takes float32 CPU tensors")
        if bias is None:
            bias = q.new_zeros(q.shape[:2])
        n, k = neighbours.shape
        if scale_index is None:
            scale_index = torch.arange(n * k).view(n, k)
            key_scale, value_scale = key_scale.reshape(n * k, -1), value_scale.reshape(n * k, -1)
        return fused_cpu.modulated_neighbour_attention(
            q, keys, values, key_scale, value_scale, scale_index, neighbours, valid, bias
        )
    if isinstance(key_scale, tuple):
        key_scale = torch.cat(key_scale)
    if isinstance(value_scale, tuple):
        value_scale = torch.cat(value_scale)
    n, k = neighbours.shape
    heads = q.shape[1]
    rows = n
    if chunk_elements is not None and not needs_grad:
        rows = max(1, chunk_elements // max(1, k * heads * (keys.shape[-1] + values.shape[-1])))
    out = []
    for s in range(0, n, rows):
        e = min(n, s + rows)
        flat = neighbours[s:e].reshape(-1)
        key_j = keys.reshape(keys.shape[0], -1).index_select(0, flat).view(e - s, k, heads, -1)
        value_j = values.reshape(values.shape[0], -1).index_select(0, flat).view(e - s, k, heads, -1)
        if scale_index is None:
            ks, vs = (key_scale, value_scale) if rows == n else (key_scale[s:e], value_scale[s:e])
        else:
            edge_rows = scale_index[s:e].reshape(-1)
            ks = key_scale.index_select(0, edge_rows).view(e - s, k, -1)
            vs = value_scale.index_select(0, edge_rows).view(e - s, k, -1)
        if needs_grad:
            key_j = key_j * ks[:, :, None, :]
            value_j = value_j * vs[:, :, None, :]
        else:  # fresh gathers: scale in place
            key_j.mul_(ks[:, :, None, :])
            value_j.mul_(vs[:, :, None, :])
        node_bias = None if bias is None else bias[s:e, None, :]
        out.append(neighbour_attention(q[s:e], key_j, value_j, valid[s:e], bias=node_bias))
    return torch.cat(out) if len(out) > 1 else out[0]
