"""Deterministic, resumable, rank-sharded batch order.

Epoch ``e`` visits a permutation drawn from ``seed + e``; rank ``r`` of ``w`` takes every
``w``-th index of it (the permutation is padded by wrapping so ranks get equal counts). The
position ``(epoch, offset)`` is saved in checkpoints so a resumed run sees the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from tertiary.errors import DataError


@dataclass
class DataPosition:
    """Where the next batch starts: epoch number and offset (in items) into this rank's shard."""

    epoch: int = 0
    offset: int = 0


class ShardedBatchSampler:
    """Infinite iterator of index batches for one rank; ``position`` advances as batches are drawn."""

    def __init__(
        self,
        n_items: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        position: DataPosition | None = None,
    ) -> None:
        if n_items < 1:
            raise DataError("the training dataset is empty")
        self.n_items = n_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.position = position or DataPosition()

    def _shard(self, epoch: int) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.n_items, generator=g).tolist()
        else:
            order = list(range(self.n_items))
        per_rank = -(-self.n_items // self.world_size)
        order = (order * (per_rank * self.world_size // self.n_items + 1))[: per_rank * self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            shard = self._shard(self.position.epoch)
            while self.position.offset < len(shard):
                batch = shard[self.position.offset : self.position.offset + self.batch_size]
                self.position.offset += len(batch)
                yield batch
            self.position = DataPosition(self.position.epoch + 1, 0)


def eval_shard(n_items: int, rank: int, world_size: int) -> list[int]:
    """Indices of a validation set evaluated by ``rank`` (no padding: every item once overall)."""
    return list(range(rank, n_items, world_size))
