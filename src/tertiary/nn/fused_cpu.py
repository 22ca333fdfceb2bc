"""CPU kernels compiled with numba (optional extra ``fast``) for graph hot loops: kNN search,
distinct-key bookkeeping (a hash table) and graph attention.

PyTorch runs gather-then-reduce graph attention as a chain of passes over per-edge tensors
(gather, scale, multiply, sum, softmax, multiply, sum, and as many again backwards), each
writing and re-reading megabytes; the loops here walk each node's neighbours once and keep
everything else in cache. The forward and backward kernels are joined by an autograd
``Function``, so training uses them too. They are compiled on first use (a few seconds; numba
caches them on disk afterwards) and run on one thread.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


@functools.cache
def available() -> bool:
    """True when numba imports (the fused kernels can be used); a broken install counts as absent."""
    try:
        import numba  # noqa: F401
    except Exception as exc:  # numba raises ImportError, but also e.g. SystemError on a numpy it does not support
        logger.warning("numba is installed but does not import (%s); using the PyTorch path", exc)
        return False
    return True


def _jit(exact: bool = False) -> Any:
    """numba's ``njit`` with an on-disk cache; ``exact``: IEEE float arithmetic as written (no
    reassociation or fused multiply-add), for results that must equal PyTorch's to the bit."""
    import numba

    # reassociation for vectorised dot products, but no "no infinities" assumption: -inf marks
    # missing edges
    options = {"fastmath": {"reassoc", "contract", "nsz", "arcp"}, "error_model": "numpy", "nogil": True}
    if exact:
        options["fastmath"] = False

    def decorate(fn: Any) -> Any:
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # no writable cache location: compile in every process
            return numba.njit(**options)(fn)

    return decorate


@functools.cache  # compiled (or loaded from numba's cache) once per process
def _knn_kernel() -> Any:
    @_jit(exact=True)
    def knn(coords, mask, index, finite):  # pragma: no cover
        n_batch, n, kk = index.shape
        best = np.empty(kk, np.float32)
        d2 = np.empty(n, np.float32)
        inf = np.float32(np.inf)
        for b in range(n_batch):
            x, y, z = coords[b, 0], coords[b, 1], coords[b, 2]
            for i in range(n):
                for j in range(n):  # the same float32 operations in the same order as the PyTorch path
                    d = (x[i] - x[j]) * (x[i] - x[j])
                    d += (y[i] - y[j]) * (y[i] - y[j])
                    d += (z[i] - z[j]) * (z[i] - z[j])
                    d2[j] = d if mask[b, i] and mask[b, j] and j != i else inf
                filled = 0
                for j in range(n):
                    d = d2[j]
                    if filled == kk and not d < best[kk - 1]:
                        continue  # equal distances: the lower index, seen first, stays first
                    slot = filled if filled < kk else kk - 1
                    while slot > 0 and d < best[slot - 1]:
                        best[slot] = best[slot - 1]
                        index[b, i, slot] = index[b, i, slot - 1]
                        slot -= 1
                    best[slot] = d
                    index[b, i, slot] = j
                    filled = min(kk, filled + 1)
                for s in range(kk):
                    finite[b, i, s] = best[s] < inf

    return knn


def knn(pos: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours within each complex, as :func:`tertiary.models.fair.graphs.knn`.

    One pass over each node's candidates keeps the ``k`` smallest exact float32 squared
    distances, ties to the lower index (a stable sort's choice and order), without the
    ``[B, N, N]`` distance tensor.

    Args:
        pos: ``[B, N, 3]`` float32 CPU coordinates; mask: ``[B, N]`` real nodes.
        k: neighbours per node, at most ``N - 1``.

    Returns:
        ``index [B, N, k]`` (nearest first; rows of padded nodes list the lowest indices) and
        ``valid [B, N, k]``.
    """
    b, n = mask.shape
    index = np.empty((b, n, k), np.int64)
    finite = np.empty((b, n, k), np.bool_)
    if k > 0:
        _knn_kernel()(_array(pos.transpose(1, 2)), _array(mask, torch.bool), index, finite)
    return torch.from_numpy(index), torch.from_numpy(finite)


@functools.cache
def _first_use_kernel() -> Any:
    @_jit(exact=True)
    def first_use(keys, previous, index, distinct, source):  # pragma: no cover
        size = 16
        while size < 2 * (len(keys) + len(previous)):
            size *= 2
        shift = np.uint64(64 - int(np.log2(size)))
        mult = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing
        slot_key = np.empty(size, keys.dtype)
        used = np.zeros(size, np.bool_)
        slot_row = np.full(size, -1, np.int64)  # row in this call
        slot_prev = np.full(size, -1, np.int64)  # row in ``previous``
        for r in range(len(previous)):
            h = (np.uint64(previous[r]) * mult) >> shift
            while used[h] and slot_key[h] != previous[r]:
                h = (h + np.uint64(1)) & np.uint64(size - 1)
            used[h], slot_key[h], slot_prev[h] = True, previous[r], r
        count = 0
        for e in range(len(keys)):
            h = (np.uint64(keys[e]) * mult) >> shift
            while used[h] and slot_key[h] != keys[e]:
                h = (h + np.uint64(1)) & np.uint64(size - 1)
            if not used[h]:
                used[h], slot_key[h] = True, keys[e]
            if slot_row[h] < 0:
                slot_row[h] = count
                distinct[count] = keys[e]
                source[count] = slot_prev[h]
                count += 1
            index[e] = slot_row[h]
        return count

    return first_use


def first_use_rows(keys: torch.Tensor, previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distinct values of ``keys`` in order of first use, and where each was in ``previous``.

    A hash table instead of sorting (PyTorch's ``unique`` and ``searchsorted``).

    Args:
        keys: ``[E]`` integers (e.g. float bit patterns); previous: ``[S']`` distinct integers of
            the same dtype.

    Returns:
        ``index [E]`` (row of each key), ``distinct [S]`` (row order = first use) and
        ``source [S]`` (row of each distinct key in ``previous``, -1 where absent).
    """
    k = keys.detach().contiguous().numpy()
    index = np.empty(len(k), np.int64)
    distinct = np.empty(len(k), k.dtype)
    source = np.empty(len(k), np.int64)
    count = _first_use_kernel()(k, previous.detach().to(keys.dtype).contiguous().numpy(), index, distinct, source)
    return torch.from_numpy(index), torch.from_numpy(distinct[:count]), torch.from_numpy(source[:count])


@functools.cache  # compiled (or loaded from numba's cache) once per process
def _forward_kernel() -> Any:
    @_jit()
    def forward(q, keys, values, key_scale, key_more, value_scale, value_more, rows, nbr, valid, bias, weights,
                out):  # pragma: no cover
        n_rows, kk = nbr.shape
        k_split, v_split = key_scale.shape[0], value_scale.shape[0]  # rows from here on: second tables
        heads = bias.shape[1]
        dk = q.shape[1] // heads
        dv = out.shape[1] // heads
        acc = np.empty(out.shape[1], np.float32)
        if kk == 0:
            out[:] = 0.0
            return
        for n in range(n_rows):
            qn = q[n]
            w = weights[n]  # [H, K]
            for k in range(kk):
                if valid[n, k]:
                    kr = keys[nbr[n, k]]
                    r = rows[n, k]
                    sr = key_scale[r] if r < k_split else key_more[r - k_split]
                    for h in range(heads):
                        s = bias[n, h]
                        for d in range(dk):
                            s += qn[h * dk + d] * kr[h * dk + d] * sr[d]
                        w[h, k] = s
                else:
                    for h in range(heads):
                        w[h, k] = -np.inf
            for h in range(heads):
                top = w[h, 0]
                for k in range(1, kk):
                    top = max(top, w[h, k])
                if top == -np.inf:  # no valid neighbour: uniform over all K (as the PyTorch path)
                    for k in range(kk):
                        w[h, k] = np.float32(1.0) / kk
                else:
                    total = np.float32(0.0)
                    for k in range(kk):
                        e = np.exp(w[h, k] - top)
                        w[h, k] = e
                        total += e
                    inv = np.float32(1.0) / total
                    for k in range(kk):
                        w[h, k] *= inv
            acc[:] = 0.0
            for k in range(kk):
                vr = values[nbr[n, k]]
                r = rows[n, k]
                sr = value_scale[r] if r < v_split else value_more[r - v_split]
                for h in range(heads):
                    a = w[h, k]
                    if a != 0.0:
                        for d in range(dv):
                            acc[h * dv + d] += a * sr[d] * vr[h * dv + d]
            out[n] = acc

    return forward


@functools.cache
def _backward_kernel() -> Any:
    @_jit()
    def backward(q, keys, values, key_scale, key_more, value_scale, value_more, rows, nbr, valid, weights, grad_out,
                 grad_q, grad_keys, grad_values, grad_key_scale, grad_key_more, grad_value_scale, grad_value_more,
                 grad_bias):  # pragma: no cover
        n_rows, kk = nbr.shape
        k_split, v_split = key_scale.shape[0], value_scale.shape[0]
        heads = weights.shape[1]
        dk = q.shape[1] // heads
        dv = grad_out.shape[1] // heads
        grad_w = np.empty((heads, kk), np.float32)
        for n in range(n_rows):
            qn, go, w = q[n], grad_out[n], weights[n]
            for k in range(kk):  # value path: d out / d (weight, value, value scale)
                j, r = nbr[n, k], rows[n, k]
                vr = values[j]
                sr = value_scale[r] if r < v_split else value_more[r - v_split]
                gs = grad_value_scale[r] if r < v_split else grad_value_more[r - v_split]
                for h in range(heads):
                    a = w[h, k]
                    g = np.float32(0.0)
                    if a != 0.0:
                        for d in range(dv):
                            c = go[h * dv + d]
                            g += c * sr[d] * vr[h * dv + d]
                            grad_values[j, h * dv + d] += a * sr[d] * c
                            gs[d] += a * vr[h * dv + d] * c
                    grad_w[h, k] = g
            for h in range(heads):  # softmax backward: d logit = w * (d w - sum_k w d w)
                s = np.float32(0.0)
                for k in range(kk):
                    s += w[h, k] * grad_w[h, k]
                for k in range(kk):
                    grad_w[h, k] = w[h, k] * (grad_w[h, k] - s)
            for k in range(kk):  # key path (the logits of missing edges are constants)
                if not valid[n, k]:
                    continue
                j, r = nbr[n, k], rows[n, k]
                kr = keys[j]
                sr = key_scale[r] if r < k_split else key_more[r - k_split]
                gs = grad_key_scale[r] if r < k_split else grad_key_more[r - k_split]
                for h in range(heads):
                    gl = grad_w[h, k]
                    if gl != 0.0:
                        grad_bias[n, h] += gl
                        for d in range(dk):
                            qd, kd = qn[h * dk + d], kr[h * dk + d]
                            grad_q[n, h * dk + d] += gl * sr[d] * kd
                            grad_keys[j, h * dk + d] += gl * qd * sr[d]
                            gs[d] += gl * qd * kd

    return backward


def _array(t: torch.Tensor, dtype: torch.dtype = torch.float32) -> np.ndarray:
    return t.detach().to(dtype).contiguous().numpy()


class _ModulatedNeighbourAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, key_scale: torch.Tensor,
                key_more: torch.Tensor, value_scale: torch.Tensor, value_more: torch.Tensor,
                scale_index: torch.Tensor, neighbours: torch.Tensor, valid: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
        n, heads = q.shape[:2]
        k = neighbours.shape[1]
        tables = (q.reshape(n, -1), keys.reshape(keys.shape[0], -1), values.reshape(values.shape[0], -1),
                  key_scale, key_more, value_scale, value_more)
        flat = [_array(t) for t in tables] + [_array(scale_index, torch.int64), _array(neighbours, torch.int64)]
        weights = np.empty((n, heads, k), np.float32)
        out = np.empty((n, heads * values.shape[-1]), np.float32)
        mask = _array(valid, torch.bool)
        _forward_kernel()(*flat, mask, _array(bias), weights, out)
        ctx.flat, ctx.mask, ctx.weights = flat, mask, weights
        ctx.shapes = [t.shape for t in (q, keys, values, key_scale, key_more, value_scale, value_more, bias)]
        return torch.from_numpy(out).view(n, heads, -1)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grads = [np.zeros_like(a) for a in ctx.flat[:7]]
        grad_bias = np.zeros(ctx.shapes[-1], np.float32)
        go = _array(grad_out.reshape(grad_out.shape[0], -1))
        _backward_kernel()(*ctx.flat, ctx.mask, ctx.weights, go, *grads, grad_bias)
        out = [torch.from_numpy(g).view(s) for g, s in zip(grads, ctx.shapes)]
        return (*out, None, None, None, torch.from_numpy(grad_bias))


def modulated_neighbour_attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
    key_scale: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    value_scale: torch.Tensor | tuple[torch.Tensor, torch.Tensor], scale_index: torch.Tensor,
    neighbours: torch.Tensor, valid: torch.Tensor, bias: torch.Tensor,
) -> torch.Tensor:
    """Fused form of :func:`tertiary.nn.attention.modulated_neighbour_attention` (float32, CPU).

    Args:
        q: ``[N, H, dk]``; keys / values: ``[M, H, dk]`` / ``[M, H, dv]`` tables.
        key_scale / value_scale: ``[S, dk]`` / ``[S, dv]`` tables of per-edge scales, or pairs of
            tables ``([S0, d], [S1, d])`` read as their concatenation (without building it).
        scale_index: ``[N, K]`` row of each edge's scales; neighbours / valid: ``[N, K]``.
        bias: ``[N, H]``.

    Returns:
        ``[N, H, dv]`` (differentiable in all float inputs).
    """
    ks, vs = (t if isinstance(t, tuple) else (t, t.new_empty(0, t.shape[-1])) for t in (key_scale, value_scale))
    return _ModulatedNeighbourAttention.apply(q, keys, values, *ks, *vs, scale_index, neighbours, valid, bias)
