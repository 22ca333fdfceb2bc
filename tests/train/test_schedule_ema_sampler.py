import math

import pytest
import torch

from tertiary.train.ema import EMA
from tertiary.train.options import OptimConfig
from tertiary.train.sampler import DataPosition, ShardedBatchSampler, eval_shard
from tertiary.train.schedule import lr_factor


def test_warmup_then_cosine_and_step():
    f = lr_factor(OptimConfig(warmup_steps=10, decay="cosine", min_lr_ratio=0.1), max_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(110) == pytest.approx(0.1)
    g = lr_factor(OptimConfig(decay="step", decay_start=100, decay_every=50, decay_factor=0.5), 1000)
    assert g(99) == 1.0 and g(100) == 0.5 and g(150) == 0.25


def test_ema_tracks_and_swaps():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], start + 1.0)
    with ema.applied(model):
        torch.testing.assert_close(model.weight.detach(), start + 1.0)
    torch.testing.assert_close(model.weight.detach(), start + 2.0)


def _take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_sampler_is_resumable_and_shards_cover_everything():
    full = _take(ShardedBatchSampler(10, 3, seed=1), 8)
    first = ShardedBatchSampler(10, 3, seed=1)
    head = _take(first, 5)
    rest = _take(ShardedBatchSampler(10, 3, seed=1, position=DataPosition(**vars(first.position))), 3)
    assert head + rest == full
    epoch0 = [i for b in _take(ShardedBatchSampler(8, 2, seed=3, rank=0, world_size=2), 2) for i in b]
    epoch1 = [i for b in _take(ShardedBatchSampler(8, 2, seed=3, rank=1, world_size=2), 2) for i in b]
    assert sorted(epoch0 + epoch1) == list(range(8))
    assert sorted(eval_shard(7, 0, 2) + eval_shard(7, 1, 2)) == list(range(7))
    assert math.isclose(len(eval_shard(7, 0, 2)), 4)
