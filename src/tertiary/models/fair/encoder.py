"""FAIR's hierarchical encoder: atom-level kNN attention, residue-level graph transformer, and the
coordinate updates of designed residues and the ligand.

Inputs are padded per complex (``B`` complexes, ``R`` residues with 14 atom slots, ``L`` ligand
atoms); graphs never cross complexes. Backbone mode moves the 4 backbone slots of designed
residues, full-atom mode all their slots.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .atom_attention import AtomAttentionBlock, GaussianSmearing
from .config import FairConfig
from .coordinate_updates import LigandContactUpdate, residue_messages
from .edge_cache import EdgeScales
from .graphs import gather_nodes, knn, pack_index
from .residue_features import EDGE_DIM, ResiduePropertyEmbedding, ligand_edge_features, residue_edge_features
from .residue_transformer import ResidueTransformerLayer

NUM_SLOTS = 14


@dataclass
class EncoderOutput:
    """Result of one encoder call.

    Attributes:
        h_atom: ``[B, R, 14, C]`` protein atom features (0 in absent slots).
        h_ligand: ``[B, L, C]`` ligand atom features.
        h_res: ``[B, R, C]`` residue features.
        positions: ``[B, R, 14, 3]`` updated protein coordinates (A).
        ligand_positions: ``[B, L, 3]`` updated ligand coordinates (A).
        atom_edges: ``[B, P, K]`` atom kNN graph as (packed atom, neighbour) indices, for tests.
        residue_edges: ``[B, R, k]`` residue kNN graph.
    """

    h_atom: torch.Tensor
    h_ligand: torch.Tensor
    h_res: torch.Tensor
    positions: torch.Tensor
    ligand_positions: torch.Tensor
    atom_edges: torch.Tensor
    residue_edges: torch.Tensor


@dataclass
class ResidueGraph:
    """The residue kNN graph of one set of graph CA coordinates, and what the encoder derives
    from the residue-residue edges alone (the ligand slot depends on the ligand: per call).

    Attributes:
        key: ``(graph_ca, res_mask, res_idx)`` it was built from.
        neighbours / valid: ``[B, R, k]`` kNN graph.
        t_x_edge: ``[B, R, k, C]`` the edges' term of the first ``T_x`` layer.
        kv_edge: per residue layer, ``[B, R, k + 1, 2C]`` the edges' key / value projections,
            the last slot (the ligand edge) written by each call (:meth:`with_ligand_slot`).
    """

    key: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    neighbours: torch.Tensor
    valid: torch.Tensor
    t_x_edge: torch.Tensor
    kv_edge: list[torch.Tensor]

    def with_ligand_slot(self, layer: int, ligand: torch.Tensor) -> torch.Tensor:
        """``kv_edge[layer]`` with this call's ligand-edge projection ``[B, R, 2C]`` as its last
        slot: written in place without autograd, a new tensor where gradients flow."""
        kv = self.kv_edge[layer]
        if torch.is_grad_enabled() and (kv.requires_grad or ligand.requires_grad):
            return torch.cat([kv[:, :, :-1], ligand.unsqueeze(2)], 2)
        kv[:, :, -1] = ligand
        return kv


class EncoderCache:
    """What the encoder calls of one ``generate`` or training step share.

    * ``edge_scales``: the edge-MLP rows of the kNN edges among context atoms
      (:meth:`HierarchicalEncoder.shared_edge_scales`; see :mod:`.edge_cache`).
    * The last :class:`ResidueGraph`: a call whose graph CA coordinates, residue mask and numbers
      are bitwise those of the previous call reuses it. In ``native`` mode (the released code's
      TRUE-backbone graph) that is every call; in leak-free mode the graph follows the moving
      backbone and is rebuilt. With gradients the reused tensors collect the gradients of every
      call that uses them.
    * The last atom graph: its neighbours are offered first to the next kNN search over the same
      packed atoms (:func:`.graphs.knn` ``hint``: faster, same neighbours).
    * The residue-type term of the residue embedding, reused while the (one-hot or soft) residue
      types do not change (between re-maskings while sampling).
    """

    def __init__(self, edge_scales: EdgeScales | None = None) -> None:
        self.edge_scales = EdgeScales() if edge_scales is None else edge_scales
        self.residue_graph: ResidueGraph | None = None
        self.atom_graph: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # packing, valid, neighbours
        self.type_term: tuple[torch.Tensor, torch.Tensor] | None = None  # residue types, their W_v term

    def find_residue_graph(
        self, graph_ca: torch.Tensor, res_mask: torch.Tensor, res_idx: torch.Tensor
    ) -> ResidueGraph | None:
        """The last residue graph if it was built from these inputs."""
        last = self.residue_graph
        if last is not None and all(torch.equal(a, b) for a, b in zip(last.key, (graph_ca, res_mask, res_idx))):
            return last
        return None

    def atom_hint(self, index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor | None:
        """The last atom graph's neighbours ``[B, P, K]`` if it packed the same atoms."""
        last = self.atom_graph
        if last is not None and torch.equal(last[0], index) and torch.equal(last[1], valid):
            return last[2]
        return None


class HierarchicalEncoder(nn.Module):
    """Atom blocks -> residue transformer -> coordinate updates."""

    def __init__(self, config: FairConfig) -> None:
        super().__init__()
        c = config.hidden
        self.config = config
        self.distance_expansion = GaussianSmearing(0.0, config.cutoff, config.edge_channels)
        self.atom_blocks = nn.ModuleList(
            AtomAttentionBlock(c, config.edge_channels, config.key_channels, config.num_heads)
            for _ in range(config.num_atom_blocks)
        )
        self.residue_properties = ResiduePropertyEmbedding()
        self.W_v = nn.Linear(c + ResiduePropertyEmbedding.dim, c)
        self.W_e = nn.Linear(EDGE_DIM, c)
        self.residue_layers = nn.ModuleList(
            ResidueTransformerLayer(c, config.num_heads, config.dropout) for _ in range(config.num_residue_layers)
        )
        self.ligand_update = LigandContactUpdate(c, config.edge_channels)
        self.T_x = nn.Sequential(nn.Linear(3 * c, c), nn.ReLU(), nn.Linear(c, NUM_SLOTS))

    @contextlib.contextmanager
    def fixed_weights(self) -> Iterator[None]:
        """Inside, without gradients, the atom blocks compute their rewritten weights once
        instead of at every call (for sampling: the parameters must not change meanwhile)."""
        with torch.no_grad():
            for block in self.atom_blocks:
                block.fixed = block.compute_rewritten_weights()
        try:
            yield
        finally:
            for block in self.atom_blocks:
                block.fixed = None

    def shared_edge_scales(self, positions: torch.Tensor, mask: torch.Tensor) -> EdgeScales:
        """Edge-MLP outputs for the kNN edges among atoms that keep their positions for a while.

        An edge between two such atoms in any later call links one of them to one of its
        ``atom_knn`` nearest among them (the others can only displace it), so those edge lengths
        are all the calls can share.

        Args:
            positions: ``[B, R, 14, 3]`` coordinates (A); mask: ``[B, R, 14]`` the atoms that
                keep them (context residues).
        """
        b = mask.shape[0]
        _, valid, nbr, nvalid, dist = self._atom_graph(positions.reshape(b, -1, 3), mask.reshape(b, -1), None)
        return EdgeScales.build(dist[nvalid & valid.unsqueeze(-1)], self.atom_blocks, self.distance_expansion)

    def _type_term(self, residue_types: torch.Tensor, cache: EncoderCache | None) -> torch.Tensor:
        """``W_v``'s term of the residue-type properties plus its bias ``[B, R, C]`` (``W_v`` reads
        ``[properties, atom sum]``); kept in ``cache`` for the next call with the same types."""
        last = None if cache is None else cache.type_term
        if last is not None and torch.equal(last[0], residue_types):
            return last[1]
        props = self.residue_properties(residue_types)
        term = torch.addmm(self.W_v.bias, props.reshape(-1, props.shape[-1]), self.W_v.weight[:, : props.shape[-1]].T)
        term = term.view(*props.shape[:-1], -1)
        if cache is not None:
            cache.type_term = (residue_types.detach().clone(), term)  # a copy: callers may reuse their tensor
        return term

    def residue_graph(
        self, graph_ca: torch.Tensor, res_mask: torch.Tensor, res_idx: torch.Tensor,
        cache: EncoderCache | None = None,
    ) -> ResidueGraph:
        """The residue kNN graph of ``graph_ca [B, R, 3]`` and its edge terms (from ``cache``
        when it holds the graph of the same inputs; a new graph is stored there)."""
        graph = None if cache is None else cache.find_residue_graph(graph_ca, res_mask, res_idx)
        if graph is not None:
            return graph
        nbr, nvalid = knn(graph_ca, res_mask, self.config.residue_knn)
        edges, _ = residue_edge_features(graph_ca, res_mask, res_idx, nbr)
        h_edge = self.W_e(edges)  # [B, R, k, C]
        c = self.config.hidden
        graph = ResidueGraph(
            key=(graph_ca.detach().clone(), res_mask.clone(), res_idx.clone()), neighbours=nbr, valid=nvalid,
            t_x_edge=h_edge @ self.T_x[0].weight[:, 2 * c :].T,
            kv_edge=[nn.functional.pad(layer.attention.edge_projection(h_edge), (0, 0, 0, 1))
                     for layer in self.residue_layers],  # + the ligand slot
        )
        if cache is not None:
            cache.residue_graph = graph
        return graph

    def _atom_graph(
        self, pos: torch.Tensor, mask: torch.Tensor, chunk_size: int | None, cache: EncoderCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """kNN graph of the atoms in ``mask [B, M]`` (``pos [B, M, 3]``), packed per complex
        (:func:`.graphs.pack_index`): ``index [B, P]`` into M, ``valid [B, P]``, neighbours and
        their validity ``[B, P, K]``, edge lengths ``[B, P, K]`` (A). ``cache``: the previous
        call's graph seeds the search (:meth:`EncoderCache.atom_hint`) and this one is kept."""
        idx, valid = pack_index(mask)
        packed = torch.gather(pos, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
        hint = None if cache is None else cache.atom_hint(idx, valid)
        nbr, nvalid = knn(packed, valid, self.config.atom_knn, chunk_size, hint=hint)
        if cache is not None:
            cache.atom_graph = (idx, valid, nbr)
        dist = torch.norm(packed.unsqueeze(2) - gather_nodes(packed, nbr), dim=-1)
        return idx, valid, nbr, nvalid, dist

    def _atom_level(
        self, h_prot: torch.Tensor, atom_mask: torch.Tensor, pos: torch.Tensor,
        h_lig: torch.Tensor, lig_mask: torch.Tensor, lig_pos: torch.Tensor, chunk_size: int | None,
        cache: EncoderCache | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, r = atom_mask.shape[:2]
        c = h_prot.shape[-1]
        ctx_mask = torch.cat([atom_mask.reshape(b, -1), lig_mask], 1)
        ctx_pos = torch.cat([pos.reshape(b, -1, 3), lig_pos], 1)
        ctx_h = torch.cat([h_prot.reshape(b, -1, c), h_lig], 1)
        idx, valid, nbr, nvalid, dist = self._atom_graph(ctx_pos, ctx_mask, chunk_size, cache)
        p = idx.shape[1]
        h = torch.gather(ctx_h, 1, idx.unsqueeze(-1).expand(-1, -1, c)).reshape(b * p, c)
        dist = dist.reshape(b * p, -1)
        rows, flat_nbr = _compact_rows(valid, nbr, nvalid)
        flat_valid = nvalid.reshape(b * p, -1)
        if rows is not None:
            h, dist, flat_valid = h.index_select(0, rows), dist.index_select(0, rows), flat_valid.index_select(0, rows)
        shared = EdgeScales() if cache is None else cache.edge_scales
        scale_index, scales = shared.lookup(dist, self.atom_blocks, self.distance_expansion)
        for block, (key_scale, value_scale) in zip(self.atom_blocks, scales):
            h = block(h, flat_nbr, flat_valid, key_scale, value_scale, scale_index)
        m = ctx_h.shape[1]
        target = (idx + m * torch.arange(b, device=idx.device)[:, None]).reshape(-1)  # row in [B * M]
        if rows is not None:
            target = target.index_select(0, rows)
        full = torch.zeros_like(ctx_h).view(b * m, c).index_copy(0, target, h).view(b, m, c)
        n_prot = r * NUM_SLOTS
        return full[:, :n_prot].view(b, r, NUM_SLOTS, c), full[:, n_prot:], nbr

    def forward(
        self,
        h_prot: torch.Tensor,
        atom_mask: torch.Tensor,
        positions: torch.Tensor,
        h_lig: torch.Tensor,
        lig_mask: torch.Tensor,
        ligand_positions: torch.Tensor,
        residue_types: torch.Tensor,
        res_mask: torch.Tensor,
        res_idx: torch.Tensor,
        edit: torch.Tensor,
        graph_ca: torch.Tensor,
        ligand_anchor: torch.Tensor,
        backbone: bool,
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
        cache: EncoderCache | None = None,
    ) -> EncoderOutput:
        """One encoder call.

        Args:
            h_prot: ``[B, R, 14, C]`` embedded protein atom features.
            atom_mask: ``[B, R, 14]`` atoms present in this call (backbone mode: designed residues
                carry only slots 0-3).
            positions: ``[B, R, 14, 3]`` protein coordinates (A).
            h_lig / lig_mask / ligand_positions: ``[B, L, C]``, ``[B, L]``, ``[B, L, 3]``.
            residue_types: ``[B, R, 21]`` (soft) residue types for the property embedding.
            res_mask / res_idx / edit: ``[B, R]`` real residues, residue numbers, designed residues.
            graph_ca: ``[B, R, 3]`` CA coordinates the residue graph is built from.
            ligand_anchor: ``[B, 3]`` position of the ligand node.
            backbone: backbone mode (4 slots move) or full-atom mode (14 slots).
            generator: dropout RNG (training mode only).
            chunk_size: query atoms per block of the O(N^2) kNN search.
            cache: what the calls of one ``generate`` / training step share (:class:`EncoderCache`).
        """
        cfg = self.config
        c = cfg.hidden
        h_atom, h_ligand, atom_edges = self._atom_level(
            h_prot, atom_mask, positions, h_lig, lig_mask, ligand_positions, chunk_size, cache
        )
        atom_sum = (h_atom * atom_mask.unsqueeze(-1)).sum(2)
        h_res = self._type_term(residue_types, cache) + atom_sum @ self.W_v.weight[:, -c:].T
        h_lig_node = (h_ligand * lig_mask.unsqueeze(-1)).sum(1)

        graph = self.residue_graph(graph_ca, res_mask, res_idx, cache)
        nbr, nvalid = graph.neighbours, graph.valid
        h_lig_edge = self.W_e(ligand_edge_features(graph_ca, ligand_anchor))  # [B, R, C]: the ligand slot
        valid = torch.cat([nvalid, (edit & res_mask).unsqueeze(-1)], -1)
        for i, layer in enumerate(self.residue_layers):
            kv_edge = graph.with_ligand_slot(i, layer.attention.edge_projection(h_lig_edge))
            h_res, h_lig_node = layer(h_res, h_lig_node, kv_edge, nbr, valid, generator)

        w = self.T_x[0].weight
        pre = (
            (h_res @ w[:, :c].T).unsqueeze(2)
            + gather_nodes(h_res @ w[:, c : 2 * c].T, nbr)
            + graph.t_x_edge
            + self.T_x[0].bias
        )
        learned = self.T_x[2](torch.relu(pre))  # [B, R, k, 14]
        edit_res = edit & res_mask
        if backbone:
            x = positions[:, :, :4]
            x = residue_messages(x, x, nbr, nvalid, edit_res, learned[..., :4])
            for _ in range(2):
                x = residue_messages(x, x, nbr, nvalid, edit_res, None)
            positions = torch.cat([x, positions[:, :, 4:]], 2)
            moving = atom_mask & edit_res.unsqueeze(-1)
            atom_scale = None
        else:
            w_atoms = atom_mask.unsqueeze(-1).to(positions.dtype)
            mean = (positions * w_atoms).sum(2) / w_atoms.sum(2).clamp(min=1.0)
            x = torch.where(atom_mask.unsqueeze(-1), positions, mean.unsqueeze(2))
            x = residue_messages(x, mean.unsqueeze(2), nbr, nvalid, edit_res, learned, backbone_scale=0.1)
            for _ in range(2):
                mean = (x * w_atoms).sum(2) / w_atoms.sum(2).clamp(min=1.0)
                x = residue_messages(x, mean.unsqueeze(2), nbr, nvalid, edit_res, None)
            positions = torch.where(atom_mask.unsqueeze(-1), x, positions)
            moving = atom_mask & edit_res.unsqueeze(-1)
            slot = torch.arange(NUM_SLOTS, device=positions.device)
            atom_scale = torch.where(slot < 4, 0.1, 1.0).to(positions.dtype).expand_as(moving)

        b, r = moving.shape[:2]
        idx, pvalid = pack_index(moving.reshape(b, -1))
        flat_pos = positions.reshape(b, -1, 3)
        gather3 = idx.unsqueeze(-1).expand(-1, -1, 3)
        p_pos = torch.gather(flat_pos, 1, gather3)
        p_h = torch.gather(h_atom.reshape(b, -1, c), 1, idx.unsqueeze(-1).expand(-1, -1, c))
        scale = None if atom_scale is None else torch.gather(atom_scale.reshape(b, -1), 1, idx)
        new_p, ligand_positions = self.ligand_update(
            p_pos, p_h, pvalid, ligand_positions, h_ligand, lig_mask, self.distance_expansion, scale
        )
        delta = (new_p - p_pos) * pvalid.unsqueeze(-1)
        positions = flat_pos.scatter_add(1, gather3, delta).view(b, r, NUM_SLOTS, 3)
        return EncoderOutput(h_atom, h_ligand, h_res, positions, ligand_positions, atom_edges, nbr)


def _compact_rows(
    valid: torch.Tensor, nbr: torch.Tensor, nvalid: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Rows of the real atoms of a packed batch, and the neighbour lists in those rows.

    Complexes of a batch are packed to a common length ``P``; atom blocks then run on the real
    atoms only (``T = sum of counts`` rows instead of ``B * P``). A batch without padding keeps
    its ``B * P`` rows.

    Args:
        valid: ``[B, P]`` real packed atoms (a prefix of each row, see :func:`.graphs.pack_index`).
        nbr / nvalid: ``[B, P, K]`` kNN graph within each complex.

    Returns:
        ``rows [T]`` (flat ``b * P + i`` of each real atom; None when no atom is padding) and
        ``neighbours [T or B * P, K]`` as rows of that list (missing edges point at their
        complex's first row).
    """
    b, p, k = nbr.shape
    if bool(valid.all()):
        offsets = p * torch.arange(b, device=nbr.device)
        return None, (nbr + offsets[:, None, None]).reshape(b * p, k)
    counts = valid.sum(1)
    offsets = counts.cumsum(0) - counts  # first row of each complex among the real atoms
    flat_nbr = torch.where(nvalid, nbr, 0) + offsets[:, None, None]
    rows = torch.nonzero(valid.reshape(-1)).squeeze(-1)
    return rows, flat_nbr.reshape(b * p, k).index_select(0, rows)
