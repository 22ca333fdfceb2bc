"""Edge-MLP outputs of the atom blocks, computed once per distinct edge length.

Each atom block scales keys and values by MLPs of the Gaussian-expanded edge length, a function
of one float. Within one encoder call the two directions of an edge have the same length to the
bit, and across the calls of one ``generate`` every edge between two atoms that do not move
(context residues) keeps its length. :class:`EdgeScaleCache` therefore evaluates the MLPs once
per distinct length (float bit pattern) and keeps the last call's table, so a call computes only
the lengths that are new since the previous one (those of edges touching a designed residue or
the ligand). The results are the same function: each row is the same MLP of the same input.
Training uses :func:`distinct_lengths` alone (no reuse across calls: the weights change).
"""

from __future__ import annotations

import torch
from torch import nn

from tertiary.nn import fused_cpu

# distances are compared by bit pattern (an integer view of the same width)
_SAME_WIDTH_INT = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
                   torch.bfloat16: torch.int16}


def first_use_rows(
    keys: torch.Tensor, previous: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distinct integers ``[S]`` of ``keys [E]`` in order of first use, each key's row ``[E]``,
    and each distinct key's row in ``previous`` (``[S]``, -1 where absent or no ``previous``).

    Rows in first-use order put the rows a kernel walks through edge by edge close together in
    memory. The numba kernel :func:`tertiary.nn.fused_cpu.first_use_rows` when it applies,
    otherwise sorting (the same result).
    """
    if previous is None:
        previous = keys.new_empty(0)
    if keys.device.type == "cpu" and fused_cpu.available():
        return fused_cpu.first_use_rows(keys, previous)
    distinct, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    first = torch.full_like(distinct, len(keys), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(keys), device=keys.device), "amin")
    order = torch.argsort(first)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    distinct, index = distinct[order], rank[inverse]
    source = torch.full_like(distinct, -1, dtype=torch.long)
    if len(previous):
        known, known_rows = torch.sort(previous)
        found = torch.searchsorted(known, distinct).clamp(max=len(known) - 1)
        source = torch.where(known[found] == distinct, known_rows[found], source)
    return index, distinct, source


def distinct_lengths(dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct edge lengths of one call ``[S]`` (in order of first use) and the row of each
    edge ``[N, K]``."""
    bits = dist.contiguous().view(_SAME_WIDTH_INT[dist.dtype]).reshape(-1)
    index, lengths, _ = first_use_rows(bits)
    return lengths.view(dist.dtype), index.view(dist.shape)


class EdgeScaleCache:
    """Per-length key / value scales of a stack of atom blocks, kept from one call to the next."""

    def __init__(self) -> None:
        self._lengths: torch.Tensor | None = None  # [S] bit patterns of the last call's table rows
        self._tables: list[tuple[torch.Tensor, torch.Tensor]] = []  # per block [S, dk], [S, dv]

    @torch.no_grad()
    def scales(
        self, dist: torch.Tensor, blocks: nn.ModuleList, smearing: nn.Module
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Scales of every edge of this call.

        Args:
            dist: ``[N, K]`` edge lengths (A).
            blocks: the :class:`~.atom_attention.AtomAttentionBlock` stack.
            smearing: the Gaussian distance expansion.

        Returns:
            ``index [N, K]`` (each edge's row) and, per block, key / value scale tables
            ``[S, dk]`` / ``[S, dv]``.
        """
        bits = dist.contiguous().view(_SAME_WIDTH_INT[dist.dtype]).reshape(-1)
        index, lengths, source = first_use_rows(bits, self._lengths)
        values = lengths.view(dist.dtype)
        reused, fresh = torch.nonzero(source >= 0).squeeze(-1), torch.nonzero(source < 0).squeeze(-1)
        source = source[reused]
        edge_attr = smearing(values[fresh])
        tables = []
        for b, block in enumerate(blocks):
            computed = block.edge_modulation(edge_attr)
            pair = []
            for part, new in enumerate(computed):
                table = new.new_empty(len(lengths), new.shape[-1]).index_copy_(0, fresh, new)
                if len(reused):
                    table.index_copy_(0, reused, self._tables[b][part].index_select(0, source))
                pair.append(table)
            tables.append((pair[0], pair[1]))
        self._lengths, self._tables = lengths, tables
        return index.view(dist.shape), tables
