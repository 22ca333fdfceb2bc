"""FAIR training forward: two stages of ``interpolate_steps`` denoising calls and their losses.

With ``ratio = (T - t) / T`` for step ``t = 0 .. T-1`` (1.0, 0.8, ... 0.2 for T = 5):

- backbone stage: the designed residues' backbone is ``(1 - ratio) * true + ratio * interpolated``
  and the ligand ``true + N(0, 1) * 0.5 * ratio``, rebuilt from the ground truth at every step;
  only the predicted residue-type logits (uniform 1/20 at the start, detached) carry from step
  to step. Losses: Huber on designed backbone atoms and ligand atoms, cross-entropy on the
  designed residues' types;
- full-atom stage: all atoms of designed residues get ``N(0, 1) * 0.3 * ratio``, their side-chain
  atoms are pulled towards ``CA + 0.1 * N(0, 1)`` by ``ratio``, the ligand gets
  ``N(0, 1) * 0.2 * ratio``; one designed residue per complex (drawn uniformly) is masked to its
  backbone and type 0. Losses: Huber on designed atoms and ligand, cross-entropy on the masked
  residue.

The residue graph uses the current (noised) backbone unless the config says ``"native"``
(TRUE backbone and file-order interpolation, as the released code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tertiary.data.pocket import PocketBatch

from .encoder import EncoderCache
from .interpolation import initial_backbone
from .model import EncoderInput, FairModel

NUM_SLOTS = 14


def _one_hot(types: torch.Tensor) -> torch.Tensor:
    return F.one_hot(types, 21).to(torch.float32)


def _randn(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


def training_loss(
    model: FairModel, batch: PocketBatch, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one training step (call in train mode for dropout).

    Args:
        model: the network; ``model.config`` gives the schedule and the residue graph.
        batch: ground-truth pockets with ``designed`` residues.
        generator: RNG for the noise, the masked residue and dropout.

    Returns:
        total loss and its terms: ``coord`` (sum of Huber terms), ``type`` (sum of cross-entropies),
        ``type_accuracy`` (designed residues, last backbone step; detached).
    """
    cfg = model.config
    native = cfg.residue_graph == "native"
    res_mask = batch.res_mask
    edit = batch.designed & res_mask
    true_pos = batch.positions
    true_lig = batch.ligand_positions
    lig_mask = batch.lig_mask
    slot = torch.arange(NUM_SLOTS, device=true_pos.device)
    target = (batch.aatype - 1).clamp(min=0)
    native_types = _one_hot(batch.aatype)
    b, r = edit.shape
    steps = cfg.interpolate_steps

    def encoder_input(pos: torch.Tensor, mask: torch.Tensor, types: torch.Tensor, lig: torch.Tensor) -> EncoderInput:
        anchor_lig = true_lig if native else lig
        return EncoderInput(
            positions=pos, atom_names=batch.atom_names, atom_mask=mask, feature_types=types, residue_types=types,
            res_mask=res_mask, res_idx=batch.res_idx, edit=edit, ligand_positions=lig,
            ligand_features=batch.ligand_features, lig_mask=lig_mask,
            graph_ca=true_pos[:, :, 1] if native else pos[:, :, 1],
            ligand_anchor=(anchor_lig * lig_mask.unsqueeze(-1)).sum(1),
        )

    def huber(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(pred[mask], true[mask])

    coord = true_pos.new_zeros(())
    type_loss = true_pos.new_zeros(())
    # context atoms keep their true positions in all calls: their edge MLPs run once per step
    cache = EncoderCache(model.encoder.shared_edge_scales(true_pos, batch.atom_mask & ~edit.unsqueeze(-1)))
    interp = initial_backbone(batch, cfg)
    bb_mask = batch.atom_mask & (~edit.unsqueeze(-1) | (slot < 4))
    edit_bb_atoms = bb_mask & edit.unsqueeze(-1)
    logits = torch.full((b, r, 20), 1.0 / 20, dtype=true_pos.dtype, device=true_pos.device)
    for t in range(steps):
        ratio = (steps - t) / steps
        lig = true_lig + _randn(true_lig.shape, true_lig, generator) * ratio * 0.5
        # (context residues: exactly the truth; the released code's mix gives it up to one rounding)
        bb = torch.where(edit[..., None, None], (1 - ratio) * true_pos[:, :, :4] + ratio * interp, true_pos[:, :, :4])
        pos = torch.cat([bb, true_pos[:, :, 4:]], 2)
        soft = torch.cat([torch.zeros_like(logits[..., :1]), logits.detach()], -1)
        types = torch.where(edit.unsqueeze(-1), soft, native_types)
        out, logits = model.encode(encoder_input(pos, bb_mask, types, lig), backbone=True, generator=generator,
                                   cache=cache)
        coord = coord + huber(out.positions, true_pos, edit_bb_atoms) + huber(out.ligand_positions, true_lig, lig_mask)
        type_loss = type_loss + F.cross_entropy(logits[edit], target[edit])
    accuracy = (logits[edit].argmax(-1) == target[edit]).float().mean().detach()

    masked = torch.zeros_like(edit)
    for i in range(b):
        n = int(res_mask[i].sum())
        masked[i, torch.multinomial(edit[i, :n].float(), 1, generator=generator)] = True
    fa_mask = batch.atom_mask & ~(masked.unsqueeze(-1) & (slot >= 4))
    edit_atoms = fa_mask & edit.unsqueeze(-1)
    types = torch.where(masked.unsqueeze(-1), _one_hot(torch.zeros_like(batch.aatype)), native_types)
    side = edit_atoms & (slot >= 4)
    for t in range(steps):
        ratio = (steps - t) / steps
        lig = true_lig + _randn(true_lig.shape, true_lig, generator) * ratio * 0.2
        pos = true_pos + _randn(true_pos.shape, true_pos, generator) * 0.3 * ratio * edit_atoms.unsqueeze(-1)
        start = pos[:, :, 1:2] + 0.1 * _randn(pos.shape, pos, generator)
        pos = torch.where(side.unsqueeze(-1), ratio * start + (1 - ratio) * pos, pos)
        out, lg = model.encode(encoder_input(pos, fa_mask, types, lig), backbone=False, generator=generator,
                               cache=cache)
        coord = coord + huber(out.positions, true_pos, edit_atoms) + huber(out.ligand_positions, true_lig, lig_mask)
        type_loss = type_loss + F.cross_entropy(lg[masked], target[masked])
    total = coord + type_loss
    return total, {"coord": coord.detach(), "type": type_loss.detach(), "type_accuracy": accuracy}
