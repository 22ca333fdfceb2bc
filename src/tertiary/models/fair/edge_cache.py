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

# distances are compared by bit pattern (an integer view of the same width)
_SAME_WIDTH_INT = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
                   torch.bfloat16: torch.int16}


def distinct_lengths(dist: torch.Tensor, edge_order: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct edge lengths of one call ``[S]`` and the row of each edge ``[N, K]``.

    Rows are sorted by bit pattern, or with ``edge_order`` by each length's first edge, so that
    the rows a kernel walks through edge by edge lie close together in memory.
    """
    bits = dist.contiguous().view(_SAME_WIDTH_INT[dist.dtype]).reshape(-1)
    lengths, index = torch.unique(bits, sorted=True, return_inverse=True)
    if edge_order:
        first = torch.full_like(lengths, len(bits), dtype=torch.long)
        first.scatter_reduce_(0, index, torch.arange(len(bits), device=bits.device), "amin")
        order = torch.argsort(first)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=order.device)
        lengths, index = lengths[order], rank[index]
    return lengths.view(dist.dtype), index.view(dist.shape)


class EdgeScaleCache:
    """Per-length key / value scales of a stack of atom blocks, kept from one call to the next."""

    def __init__(self) -> None:
        self._lengths: torch.Tensor | None = None  # [S] sorted bit patterns of the last call
        self._rows: torch.Tensor | None = None  # [S] row of each of them in the tables (edge order)
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
        values, index = distinct_lengths(dist, edge_order=True)  # table rows in edge order
        lengths = values.view(_SAME_WIDTH_INT[dist.dtype])
        sorted_lengths, sorted_rows = torch.sort(lengths)  # for the lookup by the next call
        if self._lengths is None or self._rows is None or not len(self._lengths):
            hit = torch.zeros_like(lengths, dtype=torch.bool)
            old_rows = torch.zeros_like(lengths, dtype=torch.long)
        else:
            found = torch.searchsorted(self._lengths, lengths).clamp(max=len(self._lengths) - 1)
            hit = self._lengths[found] == lengths
            old_rows = self._rows[found]
        reused, fresh = torch.nonzero(hit).squeeze(-1), torch.nonzero(~hit).squeeze(-1)
        source = old_rows[reused]
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
        self._lengths, self._rows, self._tables = sorted_lengths, sorted_rows, tables
        return index, tables
