"""Edge-MLP outputs of the atom blocks, computed once per distinct edge length.

Each atom block scales keys and values by MLPs of the Gaussian-expanded edge length, a function
of one float. Within one encoder call the two directions of an edge have the same length to the
bit, so the MLPs run once per distinct length (float bit pattern) and the attention kernels look
rows up by index. Across the encoder calls of one ``generate`` or one training step the context
atoms (residues that are not designed) do not move, so :class:`EdgeScales` evaluates the lengths
of their kNN edges once (``HierarchicalEncoder.shared_edge_scales``) and each call computes only
the lengths that are not among them (edges touching a designed residue or the ligand). Every
row is the same MLP of the same input; with gradients the shared rows collect the gradient of
all the calls that use them.
"""

from __future__ import annotations

import torch
from torch import nn

from tertiary.nn import fused_cpu
from tertiary.nn.attention import ScaleTable

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


class EdgeScales:
    """Key / value scales of a stack of atom blocks for a set of shared edge lengths.

    Args:
        lengths: ``[S0]`` bit patterns of the shared lengths (row order of the tables).
        tables: per block, key / value scales ``[S0, dk]`` / ``[S0, dv]`` of those lengths (empty
            list: nothing shared).
    """

    def __init__(self, lengths: torch.Tensor | None = None,
                 tables: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        self.lengths = torch.empty(0, dtype=torch.int32) if lengths is None else lengths
        self.tables = tables or []

    @staticmethod
    def build(dist: torch.Tensor, blocks: nn.ModuleList, smearing: nn.Module) -> EdgeScales:
        """Shared rows for the distinct values of ``dist`` (any shape, A)."""
        lengths, _ = distinct_lengths(dist.reshape(-1))
        edge_attr = smearing(lengths)
        tables = [block.edge_modulation(edge_attr) for block in blocks]
        return EdgeScales(lengths.view(_SAME_WIDTH_INT[dist.dtype]), tables)

    def lookup(
        self, dist: torch.Tensor, blocks: nn.ModuleList, smearing: nn.Module
    ) -> tuple[torch.Tensor, list[tuple[ScaleTable, ScaleTable]]]:
        """Scales of every edge of one call.

        Args:
            dist: ``[N, K]`` edge lengths (A).
            blocks: the :class:`~.atom_attention.AtomAttentionBlock` stack.
            smearing: the Gaussian distance expansion.

        Returns:
            ``index [N, K]`` (each edge's row) and, per block, key / value scale tables
            ``[S, dk]`` / ``[S, dv]``: the shared rows first, then this call's new lengths in
            order of first use; with shared rows each table is a pair (shared, new) that the
            attention reads as one (:func:`tertiary.nn.attention.modulated_neighbour_attention`).
        """
        bits = dist.contiguous().view(_SAME_WIDTH_INT[dist.dtype]).reshape(-1)
        index, lengths, source = first_use_rows(bits, self.lengths.to(bits.dtype))
        new = source < 0
        edge_attr = smearing(lengths.view(dist.dtype)[new])
        computed = [block.edge_modulation(edge_attr) for block in blocks]
        if not self.tables:
            return index.view(dist.shape), computed  # no shared rows: every length is new
        row = torch.where(new, len(self.lengths) + new.cumsum(0) - 1, source)
        tables = [((k0, k), (v0, v)) for (k0, v0), (k, v) in zip(self.tables, computed)]
        return row[index].view(dist.shape), tables
