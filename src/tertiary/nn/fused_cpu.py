"""CPU kernels compiled with numba (optional extra ``fast``) for sampling-time hot loops.

PyTorch runs gather-then-reduce graph attention as a chain of passes over per-edge tensors
(gather, scale, multiply, sum, softmax, multiply, sum), each writing and re-reading megabytes;
the loop here walks each node's neighbours once and keeps everything else in cache. No
autograd: callers use it only when no gradient is needed, and fall back to PyTorch otherwise.
The kernel is compiled on first use (about a second; numba caches it on disk afterwards).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import torch

_KERNEL: Any = None


def available() -> bool:
    """True when numba is installed (the fused kernels can be used)."""
    return importlib.util.find_spec("numba") is not None


def _compile() -> Any:
    import numba

    # reassociation for vectorised dot products, but no "no infinities" assumption: -inf marks
    # missing edges
    @numba.njit(fastmath={"reassoc", "contract", "nsz", "arcp"}, error_model="numpy", nogil=True, cache=True)
    def kernel(q, keys, values, key_scale, value_scale, rows, nbr, valid, bias, out):  # pragma: no cover - compiled
        n_rows, kk = nbr.shape
        heads = bias.shape[1]
        dk = q.shape[1] // heads
        dv = out.shape[1] // heads
        weights = np.empty((heads, kk), np.float32)
        acc = np.empty(out.shape[1], np.float32)
        if kk == 0:
            out[:] = 0.0
            return
        for n in range(n_rows):
            qn = q[n]
            for k in range(kk):
                if valid[n, k]:
                    kr = keys[nbr[n, k]]
                    sr = key_scale[rows[n, k]]
                    for h in range(heads):
                        s = bias[n, h]
                        for d in range(dk):
                            s += qn[h * dk + d] * kr[h * dk + d] * sr[d]
                        weights[h, k] = s
                else:
                    for h in range(heads):
                        weights[h, k] = -np.inf
            for h in range(heads):
                top = weights[h, 0]
                for k in range(1, kk):
                    top = max(top, weights[h, k])
                if top == -np.inf:  # no valid neighbour: uniform over all K (as the PyTorch path)
                    for k in range(kk):
                        weights[h, k] = np.float32(1.0) / kk
                else:
                    total = np.float32(0.0)
                    for k in range(kk):
                        e = np.exp(weights[h, k] - top)
                        weights[h, k] = e
                        total += e
                    inv = np.float32(1.0) / total
                    for k in range(kk):
                        weights[h, k] *= inv
            acc[:] = 0.0
            for k in range(kk):
                vr = values[nbr[n, k]]
                sr = value_scale[rows[n, k]]
                for h in range(heads):
                    a = weights[h, k]
                    if a != 0.0:
                        for d in range(dv):
                            acc[h * dv + d] += a * sr[d] * vr[h * dv + d]
            out[n] = acc

    return kernel


def modulated_neighbour_attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, key_scale: torch.Tensor,
    value_scale: torch.Tensor, scale_index: torch.Tensor, neighbours: torch.Tensor, valid: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    """Fused form of :func:`tertiary.nn.attention.modulated_neighbour_attention` (float32 CPU, no grad).

    Args:
        q: ``[N, H, dk]``; keys / values: ``[M, H, dk]`` / ``[M, H, dv]`` tables.
        key_scale / value_scale: ``[S, dk]`` / ``[S, dv]`` tables of per-edge scales.
        scale_index: ``[N, K]`` row of each edge's scales; neighbours / valid: ``[N, K]``.
        bias: ``[N, H]``.

    Returns:
        ``[N, H, dv]``.
    """
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _compile()
    n, heads = q.shape[:2]
    out = torch.empty(n, heads * values.shape[-1], dtype=torch.float32)

    def arr(t: torch.Tensor, dtype: torch.dtype = torch.float32) -> np.ndarray:
        return t.detach().to(dtype).contiguous().numpy()

    _KERNEL(
        arr(q.reshape(n, -1)), arr(keys.reshape(keys.shape[0], -1)), arr(values.reshape(values.shape[0], -1)),
        arr(key_scale), arr(value_scale), arr(scale_index, torch.int64), arr(neighbours, torch.int64), arr(valid, torch.bool), arr(bias),
        out.numpy(),
    )
    return out.view(n, heads, -1)
