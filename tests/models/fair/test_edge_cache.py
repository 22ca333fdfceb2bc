"""Distinct edge lengths in order of first use: the numba hash table and the sorting path agree."""

from __future__ import annotations

import pytest
import torch

from tertiary.models.fair import edge_cache
from tertiary.nn import fused_cpu


def _keys() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    keys = torch.randint(0, 500, (3000,), generator=g, dtype=torch.int32)  # many repeats
    previous = torch.randperm(800, generator=g)[:300].to(torch.int32)  # half of them seen before
    return keys, previous


def test_first_use_order_and_sources_by_hand(monkeypatch) -> None:
    for fused in (False, True):
        if fused and not fused_cpu.available():
            continue
        monkeypatch.setattr(fused_cpu, "available", lambda fused=fused: fused)
        keys = torch.tensor([7, 3, 7, 9, 3, 1], dtype=torch.int32)
        index, distinct, source = edge_cache.first_use_rows(keys, torch.tensor([1, 7], dtype=torch.int32))
        assert index.tolist() == [0, 1, 0, 2, 1, 3]
        assert distinct.tolist() == [7, 3, 9, 1]
        assert source.tolist() == [1, -1, -1, 0]


@pytest.mark.skipif(not fused_cpu.available(), reason="numba not installed")
def test_hash_table_equals_sorting_path(monkeypatch) -> None:
    keys, previous = _keys()
    fused = edge_cache.first_use_rows(keys, previous)
    monkeypatch.setattr(fused_cpu, "available", lambda: False)
    sorted_path = edge_cache.first_use_rows(keys, previous)
    for a, b in zip(fused, sorted_path):
        assert torch.equal(a, b)
    assert torch.equal(fused[1][fused[0]], keys)  # each key's row holds that key


def test_distinct_lengths_of_float_distances() -> None:
    dist = torch.tensor([[2.5, 1.0], [1.0, 2.5], [0.0, -0.0]])
    lengths, index = edge_cache.distinct_lengths(dist)
    assert lengths.tolist() == [2.5, 1.0, 0.0, 0.0]  # compared by bit pattern: -0.0 is its own row
    assert torch.signbit(lengths).tolist() == [False, False, False, True]
    assert index.tolist() == [[0, 1], [1, 0], [2, 3]]
