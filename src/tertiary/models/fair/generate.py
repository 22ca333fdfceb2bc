"""FAIR sampling: two-stage iterative refinement of a pocket's residue types and coordinates.

1. Backbone stage (``interpolate_steps`` = 5 calls): designed residues start as 4 backbone atoms
   interpolated between their context neighbours, with uniform 1/20 residue types; coordinates,
   ligand pose and the raw residue-type logits carry from call to call.
2. Residue types are hardened by argmax; every designed residue gets the side-chain atoms of its
   type, placed at ``CA + 0.1 * N(0, 1)``.
3. Full-atom stage: ``outer_iterations`` (9) self-consistent iterations, each of
   ``refine_steps`` (5) refinement calls, then one re-masking call: one designed residue per
   complex, drawn uniformly, is stripped to its backbone and masked, its type is re-predicted
   (argmax) and its side chain re-initialised.

Randomness comes only from ``generator`` (side-chain noise, re-masking draws), in the same order
as the released code, so with the same RNG stream ``residue_graph="native"`` reproduces it.
The residue graph uses the current predicted backbone unless the config says ``"native"`` (the
released code's TRUE backbone of every residue, designed ones included); ``native`` also
interpolates in pocket-file order as the released code does, the default in chain order
(``FairConfig.interpolation_order``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from tertiary.data.pocket import RESIDUE_SLOT_NAMES, PocketBatch

from .config import FairConfig
from .encoder import EncoderCache
from .interpolation import initial_backbone
from .model import EncoderInput, FairModel

NUM_SLOTS = 14


@dataclass
class DesignResult:
    """Designed pockets (``B`` complexes).

    Attributes:
        aatype: ``[B, R]`` 1..20; designed positions hold the design, others the input.
        positions: ``[B, R, 14, 3]`` full-atom coordinates (A); atom_names: ``[B, R, 14]``.
        ligand_positions: ``[B, L, 3]`` refined ligand pose.
        stage1_aatype: ``[B, R]`` types after the backbone stage (argmax).
        backbone_stage_positions: ``[B, R, 4, 3]`` backbone after the backbone stage.
        initial_backbone: ``[B, R, 4, 3]`` interpolated starting backbone.
        aar: ``[B]`` recovery over designed residues.
        backbone_rmsd: ``[B]`` RMSD (A) over N, CA, C, O of designed residues, no superposition.
        fair_rmsd: ``[B]`` the released code's "RMSD": ``sqrt(mean |x - y|)`` over the same atoms
            (square root of a mean absolute distance, not an RMSD; reported for comparability).
        encoder_calls: number of encoder calls.
    """

    aatype: torch.Tensor
    positions: torch.Tensor
    atom_names: torch.Tensor
    ligand_positions: torch.Tensor
    stage1_aatype: torch.Tensor
    backbone_stage_positions: torch.Tensor
    initial_backbone: torch.Tensor
    aar: torch.Tensor
    backbone_rmsd: torch.Tensor
    fair_rmsd: torch.Tensor
    encoder_calls: int


def _one_hot(types: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(types, 21).float()


def _new_side_chains(
    positions: torch.Tensor, atom_names: torch.Tensor, aatype: torch.Tensor, which: torch.Tensor,
    res_mask: torch.Tensor, generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Give residues ``which [B, R]`` the atoms of their type at ``CA + 0.1 * N(0, 1)``.

    Noise is drawn residue by residue in batch order (one ``randn(n_side_chain, 3)`` per residue
    with side-chain atoms), the released code's RNG order.
    """
    positions, atom_names = positions.clone(), atom_names.clone()
    slot_table = torch.as_tensor(RESIDUE_SLOT_NAMES, device=atom_names.device)
    for b, r in torch.nonzero(which & res_mask).tolist():
        t = int(aatype[b, r])
        names = slot_table[t]
        n_side = int((names > 0).sum()) - 4
        atom_names[b, r] = names
        if n_side > 0:
            noise = torch.randn(n_side, 3, generator=generator, dtype=positions.dtype, device=positions.device)
            positions[b, r, 4 : 4 + n_side] = positions[b, r, 1] + 0.1 * noise
        positions[b, r, 4 + max(n_side, 0) :] = 0.0
    return positions, atom_names


@torch.no_grad()
def generate(
    model: FairModel,
    batch: PocketBatch,
    generator: torch.Generator | None = None,
    residue_graph: str | None = None,
    chunk_size: int | None = None,
) -> DesignResult:
    """Design the residue types and full-atom coordinates of the designed residues.

    Args:
        model: a FAIR model (put in eval mode here).
        batch: pockets; ``designed`` marks the residues to design, their input types and
            coordinates are used only for the metrics (and, in ``native`` mode, for the graph).
        generator: RNG for side-chain noise and re-masking (None = torch's global RNG).
        residue_graph: ``"predicted"`` / ``"native"`` (the released code's behaviour: TRUE-backbone
            graph, file-order interpolation); None = ``model.config.residue_graph``.
        chunk_size: atom kNN chunking (memory bound).

    Raises:
        InputError: a complex with fewer than 3 context residues (``predicted`` mode; in ``native``
            mode the released code's behaviour is kept: such complexes start from the true backbone).
    """
    model.eval()
    cfg = model.config if residue_graph is None else replace(model.config, residue_graph=residue_graph)
    with model.encoder.fixed_weights():
        return _sample(model, batch, generator, cfg, chunk_size)


def _sample(
    model: FairModel, batch: PocketBatch, generator: torch.Generator | None, cfg: FairConfig, chunk_size: int | None
) -> DesignResult:
    """The body of :func:`generate` (``cfg``: the model's config with the residue-graph mode)."""
    native = cfg.residue_graph == "native"
    res_mask = batch.res_mask
    edit = batch.designed & res_mask
    true_pos = batch.positions
    true_bb = true_pos[:, :, :4]
    slot = torch.arange(NUM_SLOTS, device=true_pos.device)
    base_mask = batch.atom_mask

    init_bb = initial_backbone(batch, cfg)
    positions = torch.cat([init_bb, true_pos[:, :, 4:]], 2)
    ligand = batch.ligand_positions.clone()
    b, r = edit.shape
    logits = torch.full((b, r, 20), 1.0 / 20, dtype=positions.dtype, device=positions.device)
    native_ca = true_pos[:, :, 1]
    calls = 0
    # shared by all calls: context-atom edge rows, the residue graph (native mode), the last atom graph
    cache = EncoderCache(model.encoder.shared_edge_scales(positions, base_mask & ~edit.unsqueeze(-1)))

    def encoder_input(pos: torch.Tensor, names: torch.Tensor, mask: torch.Tensor, feature_types: torch.Tensor,
                      residue_types: torch.Tensor, lig: torch.Tensor) -> EncoderInput:
        return EncoderInput(
            positions=pos, atom_names=names, atom_mask=mask, feature_types=feature_types,
            residue_types=residue_types, res_mask=res_mask, res_idx=batch.res_idx, edit=edit,
            ligand_positions=lig, ligand_features=batch.ligand_features, lig_mask=batch.lig_mask,
            graph_ca=native_ca if native else pos[:, :, 1], ligand_anchor=(lig * batch.lig_mask.unsqueeze(-1)).sum(1),
        )

    # 1. backbone stage
    bb_mask = base_mask & (~edit.unsqueeze(-1) | (slot < 4))
    native_types = _one_hot(batch.aatype)
    for _ in range(cfg.interpolate_steps):
        soft = torch.cat([torch.zeros_like(logits[..., :1]), logits], -1)
        types = torch.where(edit.unsqueeze(-1), soft, native_types)
        out, logits = model.encode(
            encoder_input(positions, batch.atom_names, bb_mask, types, types, ligand), backbone=True,
            chunk_size=chunk_size, cache=cache,
        )
        positions, ligand = out.positions, out.ligand_positions
        calls += 1
    stage_bb = positions[:, :, :4].clone()

    # 2. argmax hardening and side chains
    aatype = torch.where(edit, logits.argmax(-1) + 1, batch.aatype)
    stage1 = aatype.clone()
    positions = torch.cat([positions[:, :, :4], true_pos[:, :, 4:]], 2)
    positions, names = _new_side_chains(positions, batch.atom_names, aatype, edit, res_mask, generator)

    # 3. full-atom stage
    for _ in range(cfg.outer_iterations):
        for _ in range(cfg.refine_steps):
            types = _one_hot(aatype)
            out, _ = model.encode(encoder_input(positions, names, names > 0, types, types, ligand),
                                  backbone=False, chunk_size=chunk_size, cache=cache)
            positions, ligand = out.positions, out.ligand_positions
            calls += 1
        masked = torch.zeros_like(edit)
        for i in range(b):
            n = int(res_mask[i].sum())
            j = torch.multinomial(edit[i, :n].float(), 1, generator=generator)
            masked[i, j] = True
        names = torch.where(masked.unsqueeze(-1) & (slot >= 4), 0, names)
        types = torch.where(masked.unsqueeze(-1), _one_hot(torch.zeros_like(aatype)), _one_hot(aatype))
        out, lg = model.encode(encoder_input(positions, names, names > 0, types, types, ligand),
                               backbone=False, chunk_size=chunk_size, cache=cache)
        positions, ligand = out.positions, out.ligand_positions
        calls += 1
        aatype = torch.where(masked, lg.argmax(-1) + 1, aatype)
        positions, names = _new_side_chains(positions, names, aatype, masked, res_mask, generator)

    return DesignResult(
        aatype=aatype, positions=positions * (names > 0).unsqueeze(-1), atom_names=names, ligand_positions=ligand,
        stage1_aatype=stage1, backbone_stage_positions=stage_bb, initial_backbone=init_bb,
        aar=recovery(aatype, batch.aatype, edit),
        backbone_rmsd=backbone_rmsd(positions[:, :, :4], true_bb, edit),
        fair_rmsd=fair_rmsd_formula(positions[:, :, :4], true_bb, edit),
        encoder_calls=calls,
    )


def recovery(designed: torch.Tensor, native: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Amino-acid recovery ``[B]`` over ``mask [B, R]``."""
    same = ((designed == native) & mask).sum(-1).to(torch.float32)
    return same / mask.sum(-1).clamp(min=1)


def backbone_rmsd(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMSD ``[B]`` (A) over the 4 backbone atoms of ``mask [B, R]`` residues, no superposition."""
    sq = (pred - true).square().sum(-1).sum(-1) * mask
    return torch.sqrt(sq.sum(-1) / (4 * mask.sum(-1)).clamp(min=1))


def fair_rmsd_formula(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The released code's "RMSD" ``[B]``: ``sqrt(sum_i |x_i - y_i| / n_atoms)`` over backbone atoms."""
    dist = (pred - true).norm(dim=-1).sum(-1) * mask
    return torch.sqrt(dist.sum(-1) / (4 * mask.sum(-1)).clamp(min=1))
