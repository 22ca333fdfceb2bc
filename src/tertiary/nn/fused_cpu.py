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


def takes(*tensors: torch.Tensor | None) -> bool:
    """True when numba imports and every tensor given (None skipped) is a float32 CPU tensor:
    the kernels here apply."""
    present = [t for t in tensors if t is not None]
    return available() and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in present)


@functools.cache
def _kernels() -> Any:
    """The kernel module (compiled on first use, or loaded from numba's disk cache)."""
    from tertiary.nn import numba_kernels

    return numba_kernels


def knn(
    pos: torch.Tensor, mask: torch.Tensor, k: int, hint: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours within each complex, as :func:`tertiary.models.fair.graphs.knn`.

    One pass over each node's candidates keeps the ``k`` smallest exact float32 squared
    distances, ties to the lower index (a stable sort's choice and order), without the
    ``[B, N, N]`` distance tensor.

    Args:
        pos: ``[B, N, 3]`` float32 CPU coordinates; mask: ``[B, N]`` real nodes.
        k: neighbours per node, at most ``N - 1``.
        hint: ``[B, N, h]`` candidates to try first (e.g. the previous graph of moving points):
            a good guess makes the search faster, any guess gives the same result.

    Returns:
        ``index [B, N, k]`` (nearest first; rows of padded nodes list the lowest indices) and
        ``valid [B, N, k]``.
    """
    b, n = mask.shape
    index = np.empty((b, n, k), np.int64)
    finite = np.empty((b, n, k), np.bool_)
    guess = np.empty((b, n, 0), np.int64) if hint is None else _array(hint, torch.int64)
    if k > 0:
        _kernels().knn(_array(pos.transpose(1, 2)), _array(mask, torch.bool), guess, index, finite)
    return torch.from_numpy(index), torch.from_numpy(finite)


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
    k = _array(keys, keys.dtype)
    index = np.empty(len(k), np.int64)
    distinct = np.empty(len(k), k.dtype)
    source = np.empty(len(k), np.int64)
    count = _kernels().first_use(k, _array(previous, keys.dtype), index, distinct, source)
    return torch.from_numpy(index), torch.from_numpy(distinct[:count]), torch.from_numpy(source[:count])


_SOFTPLUS_BLOCK = 2048


def softplus_(x: torch.Tensor) -> torch.Tensor:
    """``torch.nn.functional.softplus`` in place on a contiguous float32 CPU tensor (no autograd).

    Polynomial ``exp`` / ``log1p`` that vectorise (PyTorch's vector ``log1p`` is slow); results
    within 3e-7 relative of the exact value.
    """
    flat = x.view(-1).numpy()
    _kernels().softplus(flat, np.empty(_SOFTPLUS_BLOCK, np.float32), np.empty(_SOFTPLUS_BLOCK, np.int32))
    return x


def residue_messages(
    x: torch.Tensor, centres: torch.Tensor, neighbours: torch.Tensor, valid: torch.Tensor, edit: torch.Tensor,
    learned: torch.Tensor | None, floor_distance: float, eps: float, max_step: float, slot_scale: torch.Tensor,
) -> torch.Tensor:
    """One residue-residue message pass in one loop (float32 CPU, no autograd): see
    :func:`tertiary.models.fair.coordinate_updates.residue_messages` for the arguments;
    ``slot_scale [S]`` multiplies each slot's mean message before the clamp."""
    out = np.empty(x.shape, np.float32)
    table = learned if learned is not None else x.new_zeros(1, 1, 1, 1)
    _kernels().residue_messages(
        _array(x), _array(centres), _array(neighbours, torch.int64), _array(valid, torch.bool),
        _array(edit, torch.bool), _array(table), learned is not None, np.float32(floor_distance), np.float32(eps),
        np.float32(max_step), _array(slot_scale), out,
    )
    return torch.from_numpy(out)


def _array(t: torch.Tensor, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """``t`` as a C-contiguous numpy array of ``dtype`` (a view when it already is one)."""
    if t.dtype != dtype or not t.is_contiguous():
        t = t.to(dtype).contiguous()
    return t.detach().numpy()


def _attention_forward(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, key_scale: torch.Tensor, key_more: torch.Tensor,
    value_scale: torch.Tensor, value_more: torch.Tensor, scale_index: torch.Tensor, neighbours: torch.Tensor,
    valid: torch.Tensor, bias: torch.Tensor,
) -> tuple[torch.Tensor, list[np.ndarray], np.ndarray, np.ndarray]:
    """The forward kernel on numpy views of the inputs: output ``[N, H, dv]``, the arrays the
    backward reads (tables and indices, edge mask) and the attention weights ``[N, H, K]``."""
    n, heads = q.shape[:2]
    k = neighbours.shape[1]
    tables = (q.reshape(n, -1), keys.reshape(keys.shape[0], -1), values.reshape(values.shape[0], -1),
              key_scale, key_more, value_scale, value_more)
    flat = [_array(t) for t in tables] + [_array(scale_index, torch.int64), _array(neighbours, torch.int64)]
    weights = np.empty((n, heads, k), np.float32)
    out = np.empty((n, heads * values.shape[-1]), np.float32)
    mask = _array(valid, torch.bool)
    _kernels().attention_forward(*flat, mask, _array(bias), weights, out)
    return torch.from_numpy(out).view(n, heads, -1), flat, mask, weights


class _ModulatedNeighbourAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, key_scale: torch.Tensor,
                key_more: torch.Tensor, value_scale: torch.Tensor, value_more: torch.Tensor,
                scale_index: torch.Tensor, neighbours: torch.Tensor, valid: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
        out, ctx.flat, ctx.mask, ctx.weights = _attention_forward(
            q, keys, values, key_scale, key_more, value_scale, value_more, scale_index, neighbours, valid, bias
        )
        ctx.shapes = [t.shape for t in (q, keys, values, key_scale, key_more, value_scale, value_more, bias)]
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grads = [np.zeros_like(a) for a in ctx.flat[:7]]
        grad_bias = np.zeros(ctx.shapes[-1], np.float32)
        go = _array(grad_out.reshape(grad_out.shape[0], -1))
        _kernels().attention_backward(*ctx.flat, ctx.mask, ctx.weights, go, *grads, grad_bias)
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
    inputs = (q, keys, values, *ks, *vs, scale_index, neighbours, valid, bias)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _ModulatedNeighbourAttention.apply(*inputs)
    return _attention_forward(*inputs)[0]  # no autograd node to build
