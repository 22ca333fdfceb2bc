"""Coordinate updates of FAIR's encoder: residue-residue messages, clash passes, protein-ligand pass.

All updates move only the atoms of designed residues (and the ligand). Residue messages act on
padded 14-slot residues: slot ``s`` of residue ``i`` moves along ``x_is - x_j`` by a learned
amount per slot (``T_x``), floored at the 3.8 A repulsion ``3.8 - d``; the mean over the kNN
residues is clamped to +-5 A per component. Two clash passes apply the repulsion alone.
"""

from __future__ import annotations

import torch
from torch import nn

from tertiary.nn import fused_cpu

from .graphs import gather_nodes

CLASH_DISTANCE = 3.8  # A, residue-residue repulsion
LIGAND_CLASH_DISTANCE = 1.5  # A, protein atom - ligand atom repulsion
MAX_STEP = 5.0  # A, clamp of one residue message per component
LIGAND_STEP = 0.05  # fraction of the mean protein->ligand message applied to the ligand
EPS = 1e-6


def _masked_mean(x: torch.Tensor, valid: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` where ``valid`` (broadcast on trailing dims); 0 where none is."""
    w = valid.to(x.dtype)
    while w.dim() < x.dim():
        w = w.unsqueeze(-1)
    return (x * w).sum(dim) / w.sum(dim).clamp(min=1.0)


def _fused(*tensors: torch.Tensor | None) -> bool:
    """The numba path applies: float32 CPU tensors, numba installed, no autograd."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return False
    return fused_cpu.takes(*tensors)


def residue_messages(
    x: torch.Tensor,
    centres_j: torch.Tensor,
    neighbours: torch.Tensor,
    valid: torch.Tensor,
    edit: torch.Tensor,
    learned: torch.Tensor | None,
    backbone_scale: float = 1.0,
) -> torch.Tensor:
    """One residue-residue pass.

    Args:
        x: ``[B, R, S, 3]`` slot coordinates (S = 4 backbone or 14 full-atom slots).
        centres_j: ``[B, R, S', 3]`` neighbour points (S' = S: slot-wise; S' = 1: residue mean).
        neighbours / valid: ``[B, R, K]`` residue kNN graph.
        edit: ``[B, R]`` designed residues (the only ones that move).
        learned: ``[B, R, K, S]`` learned magnitudes (None = repulsion only).
        backbone_scale: factor on the messages of slots 0-3 (0.1 in full-atom mode).

    Returns:
        updated ``x``.
    """
    b, r, s, _ = x.shape
    slot_scale = torch.ones(s, dtype=x.dtype, device=x.device)
    slot_scale[:4] = backbone_scale
    if _fused(x, centres_j, learned):
        return fused_cpu.residue_messages(x, centres_j, neighbours, valid, edit, learned, CLASH_DISTANCE, EPS,
                                          MAX_STEP, slot_scale)
    xj = gather_nodes(centres_j.reshape(b, r, -1), neighbours).view(b, r, neighbours.shape[-1], -1, 3)
    xij = x.unsqueeze(2) - xj  # [B, R, K, S, 3]
    d = xij.norm(dim=-1) + EPS
    f = torch.relu(CLASH_DISTANCE - d) if learned is None else torch.maximum(learned, CLASH_DISTANCE - d)
    step = _masked_mean(xij / d.unsqueeze(-1) * f.unsqueeze(-1), valid, dim=2)  # [B, R, S, 3]
    if backbone_scale != 1.0:
        step = step * slot_scale[:, None]
    return x + step.clamp(-MAX_STEP, MAX_STEP) * edit[..., None, None].to(x.dtype)


class LigandContactUpdate(nn.Module):
    """Protein-ligand pass: every (designed atom, ligand atom) pair exchanges a distance message.

    The pair MLP ``T_a([h_p, h_l, gauss(d)])`` gives a magnitude floored at ``1.5 - d``; designed
    atoms move by the mean over ligand atoms, the ligand by ``-0.05`` times the mean over atoms.
    """

    def __init__(self, hidden: int, edge_channels: int) -> None:
        super().__init__()
        self.T_a = nn.Sequential(nn.Linear(2 * hidden + edge_channels, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.hidden = hidden

    def _magnitude(self, h: torch.Tensor, h_lig: torch.Tensor, d: torch.Tensor, smearing: nn.Module) -> torch.Tensor:
        """``T_a([h_p, h_l, gauss(d)])`` for every pair ``[B, P, L]`` (first layer split by input).

        The ``[B, P, L, C]`` hidden layer is summed in place (fresh multi-MB buffers for each
        partial sum cost more than the sums); the bias is added to the per-atom term.
        """
        w1, b1 = self.T_a[0].weight, self.T_a[0].bias
        c = self.hidden
        own = torch.addmm(b1, h.reshape(-1, c), w1[:, :c].T).view(*h.shape[:-1], 1, c)  # [B, P, 1, C], bias
        ligand = (h_lig @ w1[:, c : 2 * c].T).unsqueeze(1)  # [B, 1, L, C]
        w_dist = w1[:, 2 * c :].T
        pre = own + ligand  # in place from here: one [B, P, L, C] buffer (autograd needs no operand back)
        gauss = smearing(d)
        if torch.is_grad_enabled():
            pre += gauss @ w_dist
        else:  # one product into the buffer (with gradients the in-place backward is slower)
            pre.view(-1, c).addmm_(gauss.view(-1, w_dist.shape[0]), w_dist)
        return self.T_a[2](pre.relu_()).squeeze(-1)

    def forward(
        self,
        pos: torch.Tensor,
        h: torch.Tensor,
        valid: torch.Tensor,
        lig_pos: torch.Tensor,
        h_lig: torch.Tensor,
        lig_mask: torch.Tensor,
        smearing: nn.Module,
        atom_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the pass.

        Args:
            pos: ``[B, P, 3]`` designed atoms; ``h [B, P, C]`` their features; ``valid [B, P]``.
            lig_pos: ``[B, L, 3]``; ``h_lig [B, L, C]``; ``lig_mask [B, L]``.
            smearing: Gaussian distance expansion.
            atom_scale: ``[B, P]`` factor on each atom's step (None = 1).

        Returns:
            new ``pos`` and ``lig_pos``.
        """
        xij = pos.unsqueeze(2) - lig_pos.unsqueeze(1)  # [B, P, L, 3]
        d = xij.norm(dim=-1) + EPS
        f = torch.maximum(self._magnitude(h, h_lig, d, smearing), LIGAND_CLASH_DISTANCE - d)
        msg = xij / d.unsqueeze(-1) * f.unsqueeze(-1)
        pair = valid.unsqueeze(2) & lig_mask.unsqueeze(1)
        step = _masked_mean(msg, pair, dim=2)
        if atom_scale is not None:
            step = step * atom_scale.unsqueeze(-1)
        lig_step = _masked_mean(msg, pair, dim=1)
        return pos + step * valid.unsqueeze(-1).to(pos.dtype), lig_pos - LIGAND_STEP * lig_step
