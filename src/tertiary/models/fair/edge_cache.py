"""Edge-MLP outputs of the atom blocks, computed once per distinct edge length (sampling only).

Each atom block scales keys and values by MLPs of the Gaussian-expanded edge length, a function
of one float. Within one encoder call the two directions of an edge have the same length to the
bit, and across the calls of one ``generate`` every edge between two atoms that do not move
(context residues) keeps its length. :class:`EdgeScaleCache` therefore evaluates the MLPs once
per distinct length (float bit pattern) and keeps the last call's table, so a call computes only
the lengths that are new since the previous one (about half of all edges on CrossDocked
pockets). The results are the same function: each row is the same MLP of the same input.
Training uses :func:`distinct_lengths` alone (no reuse across calls: the weights change).
"""

from __future__ import annotations

import torch
from torch import nn

# distances are compared by bit pattern (an integer view of the same width)
_SAME_WIDTH_INT = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
                   torch.bfloat16: torch.int16}


def distinct_lengths(dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct edge lengths of one call, ``[S]`` (sorted by bit pattern), and the row of each edge ``[N, K]``."""
    bits = dist.contiguous().view(_SAME_WIDTH_INT[dist.dtype])
    lengths, index = torch.unique(bits.reshape(-1), sorted=True, return_inverse=True)
    return lengths.view(dist.dtype), index.view(dist.shape)


class EdgeScaleCache:
    """Per-length key / value scales of a stack of atom blocks, kept from one call to the next."""

    def __init__(self) -> None:
        self._lengths: torch.Tensor | None = None  # [S] sorted bit patterns of the last call
        self._rows: torch.Tensor | None = None  # [S] row of each of them in the tables
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
        values, inverse = distinct_lengths(dist)
        lengths = values.view(_SAME_WIDTH_INT[dist.dtype])
        if self._lengths is None or self._rows is None or not len(self._lengths):
            hit = torch.zeros_like(lengths, dtype=torch.bool)
            old_rows = torch.zeros_like(lengths, dtype=torch.long)
        else:
            found = torch.searchsorted(self._lengths, lengths).clamp(max=len(self._lengths) - 1)
            hit = self._lengths[found] == lengths
            old_rows = self._rows[found]
        # new tables: the reused rows first, then the fresh ones
        reused, fresh = torch.nonzero(hit).squeeze(-1), torch.nonzero(~hit).squeeze(-1)
        rows = torch.empty(len(lengths), dtype=torch.long, device=lengths.device)
        rows[reused] = torch.arange(len(reused), device=rows.device)
        rows[fresh] = torch.arange(len(reused), len(lengths), device=rows.device)
        source = old_rows[reused]
        edge_attr = smearing(values[fresh])
        tables = []
        for b, block in enumerate(blocks):
            computed = block.edge_modulation(edge_attr)
            if len(reused):
                key, value = (torch.cat([old.index_select(0, source), new]) for old, new in zip(self._tables[b], computed))
            else:
                key, value = computed
            tables.append((key, value))
        self._lengths, self._rows, self._tables = lengths, rows, tables
        return rows[inverse], tables
