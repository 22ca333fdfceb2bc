"""Per-complex kNN graphs and packing of padded batches into flat node lists.

A batch holds ``B`` complexes padded to a common size; graphs never connect two complexes.
Distances are exact float32 squared distances (no matmul expansion), so neighbour sets match
a brute-force search.
"""

from __future__ import annotations

import torch

from tertiary.nn import fused_cpu


def knn(
    pos: torch.Tensor, mask: torch.Tensor, k: int, chunk_size: int | None = None, hint: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours of every node within its complex (self excluded).

    Args:
        pos: ``[B, N, 3]`` coordinates (A).
        mask: ``[B, N]`` True for real nodes.
        k: neighbours per node (fewer where a complex has fewer than ``k + 1`` nodes).
        chunk_size: query nodes per distance block (memory ``B * chunk_size * N``; None = all).
            Float32 CPU coordinates with numba installed use :func:`tertiary.nn.fused_cpu.knn`
            instead (no distance block; the same neighbours, exactly equal distances ordered by
            index, which ``topk`` here does not guarantee inside the k).
        hint: ``[B, N, h]`` likely neighbours (e.g. the previous graph): the numba search tries
            them first, which makes it faster; the result does not depend on it.

    Returns:
        ``index [B, N, k']`` (into the padded node axis, nearest first, ties to the lower index) and ``valid [B, N, k']``
        with ``k' = min(k, N - 1)``; rows of padded nodes are all invalid.
    """
    n = pos.shape[1]
    kk = max(0, min(k, n - 1))
    if fused_cpu.takes(pos):
        return fused_cpu.knn(pos, mask, kk, hint)
    step = n if chunk_size is None else max(1, chunk_size)
    indices, valids = [], []
    coords = pos.transpose(1, 2)  # [B, 3, N]: one coordinate at a time, no [B, n, N, 3] temporary
    for s in range(0, n, step):
        q = slice(s, min(n, s + step))
        d2 = (coords[:, 0, q, None] - coords[:, 0, None, :]).square_()  # same sum order as .sum(-1)
        for c in (1, 2):
            d2 += (coords[:, c, q, None] - coords[:, c, None, :]).square_()
        self_edge = torch.arange(q.start, q.stop, device=pos.device)[:, None] == torch.arange(n, device=pos.device)
        bad = ~(mask[:, q, None] & mask[:, None, :]) | self_edge
        d2 = d2.masked_fill(bad, float("inf"))
        dist, index = torch.topk(d2, min(kk + 1, n), dim=-1, largest=False, sorted=True)
        if kk < n and bool((dist[..., kk - 1] == dist[..., kk]).logical_and(torch.isfinite(dist[..., kk])).any()):
            # a tie at the k-th neighbour: a stable sort gives it to the lower index (deterministic)
            dist, index = torch.sort(d2, dim=-1, stable=True)
        dist, index = dist[..., :kk], index[..., :kk]
        indices.append(index)
        valids.append(torch.isfinite(dist))
    return torch.cat(indices, 1), torch.cat(valids, 1)


def gather_nodes(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x [B, N, *C]`` gathered at ``index [B, N', K]`` -> ``[B, N', K, *C]``."""
    b, n2, k = index.shape
    flat = index.reshape(b, n2 * k)
    extra = x.shape[2:]
    idx = flat.view(b, n2 * k, *([1] * len(extra))).expand(b, n2 * k, *extra)
    return torch.gather(x, 1, idx).view(b, n2, k, *extra)


def pack_index(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the True entries of ``mask [B, M]``, packed to the front per complex.

    Returns:
        ``index [B, P]`` into the M axis (P = most True entries of a complex; padding points at
        0) and ``valid [B, P]``.
    """
    counts = mask.sum(-1)
    p = int(counts.max()) if mask.numel() else 0
    b, m = mask.shape
    target = torch.where(mask, mask.cumsum(-1) - 1, p)  # packed position, or a trash column p
    index = torch.zeros(b, p + 1, dtype=torch.long, device=mask.device)
    index.scatter_(1, target, torch.arange(m, device=mask.device).expand(b, m))
    valid = torch.arange(p, device=mask.device)[None, :] < counts[:, None]
    return torch.where(valid, index[:, :p], torch.zeros_like(index[:, :p])), valid
