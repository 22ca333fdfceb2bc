"""kNN graphs of FAIR's encoder: the PyTorch search and the numba kernel give the same neighbours."""

from __future__ import annotations

import pytest
import torch

from tertiary.models.fair import graphs
from tertiary.nn import fused_cpu

needs_numba = pytest.mark.skipif(not fused_cpu.available(), reason="numba not installed")


def _brute_force(pos: torch.Tensor, mask: torch.Tensor, k: int) -> list[list[list[int]]]:
    """Neighbour lists by sorting (squared distance, index) pairs in Python."""
    out = []
    for b in range(pos.shape[0]):
        rows = []
        for i in range(pos.shape[1]):
            if not mask[b, i]:
                rows.append([])
                continue
            d2 = (pos[b, i] - pos[b]).square().sum(-1)
            cand = sorted((float(d2[j]), j) for j in range(pos.shape[1]) if j != i and mask[b, j])
            rows.append([j for _, j in cand[:k]])
        out.append(rows)
    return out


def _cloud(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two complexes (the second padded) on a 1 A grid: many exactly equal distances."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(-3, 4, (2, 40, 3), generator=g).float()
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 29:] = False
    return pos, mask


@needs_numba
@pytest.mark.parametrize("k", [1, 8, 24, 60])
def test_numba_knn_equals_a_stable_brute_force(k):
    """Ties (a grid has many) go to the lower index, in order; padded rows have no valid edge."""
    pos, mask = _cloud(0)
    kk = min(k, pos.shape[1] - 1)
    index, valid = graphs.knn(pos, mask, k)
    assert index.shape == (2, 40, kk)
    expected = _brute_force(pos, mask, kk)
    for b in range(2):
        for i in range(40):
            assert index[b, i][valid[b, i]].tolist() == expected[b][i]


@needs_numba
def test_numba_knn_gives_the_pytorch_neighbour_sets(monkeypatch):
    """Same neighbour set per node as the PyTorch search (which may order equal distances
    differently inside the k), on random points with a padded complex."""
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(3, 57, 3, generator=g) * 6
    mask = torch.rand(3, 57, generator=g) > 0.2
    fused_index, fused_valid = graphs.knn(pos, mask, 12)
    monkeypatch.setattr(fused_cpu, "available", lambda: False)
    torch_index, torch_valid = graphs.knn(pos, mask, 12, chunk_size=10)
    assert torch.equal(fused_valid, torch_valid)
    on = torch_valid
    assert torch.equal(fused_index.masked_fill(~on, -1).sort(-1).values,
                       torch_index.masked_fill(~on, -1).sort(-1).values)
    d_fused = (pos.unsqueeze(2) - graphs.gather_nodes(pos, fused_index)).square().sum(-1)
    assert bool((d_fused[..., 1:] >= d_fused[..., :-1])[on[..., 1:]].all())  # nearest first


def test_pytorch_knn_matches_brute_force_sets(monkeypatch):
    """The fallback without numba (also used off the CPU) finds the same neighbours."""
    monkeypatch.setattr(fused_cpu, "available", lambda: False)
    pos, mask = _cloud(2)
    pos = pos + 0.01 * torch.randn(pos.shape, generator=torch.Generator().manual_seed(3))  # no ties
    index, valid = graphs.knn(pos, mask, 10, chunk_size=7)
    expected = _brute_force(pos, mask, 10)
    for b in range(2):
        for i in range(40):
            assert index[b, i][valid[b, i]].tolist() == expected[b][i]
