"""AlphaFold2 training losses (Jumper et al. 2021, Suppl. 1.9) and their weighted sum.

Every term is a pure function of model outputs and ground-truth features; ``alphafold_loss``
combines them with the weights of a :class:`LossConfig` preset (``initial_training``,
``finetuning``, ``finetuning_ptm``). Shapes: ``*`` = batch dims, ``N`` residues, ``L``
structure-module layers.

Faithfulness note: like AlphaFold2 and OpenFold, the CA-C-N angle term of the between-residue
bond loss uses the C-N *bond-length* standard deviation as its tolerance; we keep it so that
loss values match released models' training.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from tertiary import constants as rc
from tertiary.errors import ConfigError, InputError
from tertiary.geometry.rigid import Rigid, Rotation
from tertiary.metrics import lddt_scores

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossWeights:
    """Weight of each term in the total (AlphaFold2 Suppl. Table 6 / 1.11)."""

    distogram: float = 0.3
    experimentally_resolved: float = 0.0
    fape: float = 1.0
    masked_msa: float = 2.0
    plddt: float = 0.01
    supervised_chi: float = 1.0
    violation: float = 0.0
    tm: float = 0.0


@dataclass(frozen=True)
class LossConfig:
    """Loss hyper-parameters; the defaults are AlphaFold2's initial-training values."""

    weights: LossWeights = field(default_factory=LossWeights)
    fape_backbone_weight: float = 0.5
    fape_sidechain_weight: float = 0.5
    fape_clamp_distance: float = 10.0
    fape_length_scale: float = 10.0
    fape_eps: float = 1e-4
    chi_weight: float = 0.5
    angle_norm_weight: float = 0.01
    distogram_min_bin: float = 2.3125
    distogram_max_bin: float = 21.6875
    distogram_bins: int = 64
    plddt_bins: int = 50
    plddt_cutoff: float = 15.0
    min_resolution: float = 0.1
    max_resolution: float = 3.0
    tm_max_bin: float = 31.0
    tm_bins: int = 64
    masked_msa_classes: int = 23
    violation_tolerance_factor: float = 12.0
    clash_overlap_tolerance: float = 1.5
    average_clashes: bool = False
    eps: float = 1e-8

    @classmethod
    def preset(cls, name: str) -> LossConfig:
        """``initial_training``, ``finetuning`` or ``finetuning_ptm`` (AlphaFold2's schedule)."""
        base = cls()
        if name == "initial_training":
            return base
        if name == "finetuning":
            return replace(base, weights=replace(base.weights, experimentally_resolved=0.01, violation=1.0))
        if name == "finetuning_ptm":
            return replace(base, weights=replace(base.weights, experimentally_resolved=0.01, violation=1.0, tm=0.1))
        raise ConfigError(f"unknown loss preset '{name}' (initial_training, finetuning, finetuning_ptm)")

    @classmethod
    def from_openfold(cls, loss: dict[str, Any]) -> LossConfig:
        """Build from an OpenFold ``config.loss`` mapping (weights, bins, tolerances, epsilons)."""
        try:
            w = {
                "distogram": loss["distogram"]["weight"],
                "experimentally_resolved": loss["experimentally_resolved"]["weight"],
                "fape": loss["fape"]["weight"],
                "masked_msa": loss["masked_msa"]["weight"],
                "plddt": loss["plddt_loss"]["weight"],
                "supervised_chi": loss["supervised_chi"]["weight"],
                "violation": loss["violation"]["weight"],
                "tm": loss["tm"]["weight"] if loss["tm"].get("enabled", False) else 0.0,
            }
            fape, chi, dist, pl, tm, viol = (
                loss["fape"], loss["supervised_chi"], loss["distogram"], loss["plddt_loss"], loss["tm"], loss["violation"]
            )
            return cls(
                weights=LossWeights(**w),
                fape_backbone_weight=fape["backbone"]["weight"],
                fape_sidechain_weight=fape["sidechain"]["weight"],
                fape_clamp_distance=fape["backbone"]["clamp_distance"],
                fape_length_scale=fape["backbone"]["loss_unit_distance"],
                chi_weight=chi["chi_weight"],
                angle_norm_weight=chi["angle_norm_weight"],
                distogram_min_bin=dist["min_bin"],
                distogram_max_bin=dist["max_bin"],
                distogram_bins=dist["no_bins"],
                plddt_bins=pl["no_bins"],
                plddt_cutoff=pl["cutoff"],
                min_resolution=pl["min_resolution"],
                max_resolution=pl["max_resolution"],
                tm_max_bin=tm["max_bin"],
                tm_bins=tm["no_bins"],
                masked_msa_classes=loss["masked_msa"]["num_classes"],
                violation_tolerance_factor=viol["violation_tolerance_factor"],
                clash_overlap_tolerance=viol["clash_overlap_tolerance"],
                average_clashes=viol.get("average_clashes", False),
                eps=loss.get("eps", 1e-8),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"OpenFold loss config lacks {exc}") from None


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``-log softmax(logits)[label]``: ``[*, C]``, ``[*]`` -> ``[*]``."""
    return -torch.gather(F.log_softmax(logits, dim=-1), -1, labels[..., None].long())[..., 0]


def _sigmoid_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Elementwise binary cross-entropy, computed in float64 for accuracy."""
    x, z = logits.double(), labels.double()
    return (-z * F.logsigmoid(x) - (1.0 - z) * F.logsigmoid(-x)).to(logits.dtype)


def _resolution_filter(resolution: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    return ((resolution >= cfg.min_resolution) & (resolution <= cfg.max_resolution)).to(torch.get_default_dtype())


def _pairwise_sq_dist(x: torch.Tensor) -> torch.Tensor:
    """``[*, N, 3]`` -> ``[*, N, N]`` squared distances."""
    return ((x[..., :, None, :] - x[..., None, :, :]) ** 2).sum(-1)


# ----------------------------------------------------------------------------------------------
# FAPE (Algorithm 28)
# ----------------------------------------------------------------------------------------------


def fape(
    pred_frames: Rigid,
    target_frames: Rigid,
    frames_mask: torch.Tensor,
    pred_positions: torch.Tensor,
    target_positions: torch.Tensor,
    positions_mask: torch.Tensor,
    length_scale: float,
    clamp_distance: float | None = None,
    eps: float = 1e-4,
) -> torch.Tensor:
    """Frame-aligned point error (Algorithm 28).

    Args:
        pred_frames, target_frames: ``[*, F]`` rigid frames.
        frames_mask: ``[*, F]``.
        pred_positions, target_positions: ``[*, P, 3]`` (Angstrom).
        positions_mask: ``[*, P]``.
        length_scale: divisor of the error (Angstrom).
        clamp_distance: errors above it count as this (None: unclamped).

    Returns:
        ``[*]`` mean error over valid (frame, point) pairs, in units of ``length_scale``.
    """
    local_pred = pred_frames.invert()[..., None].apply(pred_positions[..., None, :, :])
    local_true = target_frames.invert()[..., None].apply(target_positions[..., None, :, :])
    err = torch.sqrt(((local_pred - local_true) ** 2).sum(-1) + eps)
    if clamp_distance is not None:
        err = err.clamp(max=clamp_distance)
    err = err / length_scale * frames_mask[..., :, None] * positions_mask[..., None, :]
    per_frame = err.sum(-1) / (eps + frames_mask.sum(-1))[..., None]
    return per_frame.sum(-1) / (eps + positions_mask.sum(-1))


def backbone_fape(
    traj: torch.Tensor,
    backbone_rigid_tensor: torch.Tensor,
    backbone_rigid_mask: torch.Tensor,
    use_clamped_fape: torch.Tensor | float,
    cfg: LossConfig,
) -> torch.Tensor:
    """Backbone FAPE averaged over structure-module layers and batch.

    Args:
        traj: ``[L, *, N, 7]`` (quaternion + translation) or ``[L, *, N, 4, 4]`` predicted frames.
        backbone_rigid_tensor: ``[*, N, 4, 4]`` true backbone frames; mask ``[*, N]``.
        use_clamped_fape: 1 = clamp at ``fape_clamp_distance``, 0 = unclamped, or a mixing weight.
    """
    pred = Rigid.from_tensor_7(traj) if traj.shape[-1] == 7 else Rigid.from_tensor_4x4(traj)
    pred = Rigid(Rotation(rot_mats=pred.get_rots().get_rot_mats()), pred.get_trans())
    true = Rigid.from_tensor_4x4(backbone_rigid_tensor)[None]
    mask = backbone_rigid_mask[None]
    args = (pred, true, mask, pred.get_trans(), true.get_trans(), mask, cfg.fape_length_scale)
    clamped = fape(*args, clamp_distance=cfg.fape_clamp_distance, eps=cfg.fape_eps)
    unclamped = fape(*args, clamp_distance=None, eps=cfg.fape_eps)
    w = torch.as_tensor(use_clamped_fape, dtype=clamped.dtype, device=clamped.device)
    return (clamped * w + unclamped * (1 - w)).mean()


def renamed_ground_truth(
    batch: dict[str, torch.Tensor], atom14_pred_positions: torch.Tensor, eps: float = 1e-10
) -> dict[str, torch.Tensor]:
    """Choose, per residue, the naming of symmetric atoms closest to the prediction (Algorithm 26).

    Args:
        batch: ``atom14_gt_positions``, ``atom14_alt_gt_positions`` ``[*, N, 14, 3]``,
            ``atom14_gt_exists``, ``atom14_alt_gt_exists``, ``atom14_atom_is_ambiguous`` ``[*, N, 14]``.
        atom14_pred_positions: ``[*, N, 14, 3]``.

    Returns:
        ``alt_naming_is_better [*, N]``, ``renamed_atom14_gt_positions [*, N, 14, 3]``,
        ``renamed_atom14_gt_exists [*, N, 14]``.
    """

    def dists(x: torch.Tensor) -> torch.Tensor:  # [*, N, 14, 3] -> [*, N, N, 14, 14]
        return torch.sqrt(eps + ((x[..., :, None, :, None, :] - x[..., None, :, None, :, :]) ** 2).sum(-1))

    pred_d = dists(atom14_pred_positions)
    gt, alt = batch["atom14_gt_positions"], batch["atom14_alt_gt_positions"]
    exists, ambiguous = batch["atom14_gt_exists"], batch["atom14_atom_is_ambiguous"]
    err = torch.sqrt(eps + (pred_d - dists(gt)) ** 2)
    alt_err = torch.sqrt(eps + (pred_d - dists(alt)) ** 2)
    mask = (
        exists[..., :, None, :, None]
        * ambiguous[..., :, None, :, None]
        * exists[..., None, :, None, :]
        * (1.0 - ambiguous[..., None, :, None, :])
    )
    better = ((mask * alt_err).sum((-1, -2, -3)) < (mask * err).sum((-1, -2, -3))).to(gt.dtype)
    return {
        "alt_naming_is_better": better,
        "renamed_atom14_gt_positions": (1 - better[..., None, None]) * gt + better[..., None, None] * alt,
        "renamed_atom14_gt_exists": (1 - better[..., None]) * exists + better[..., None] * batch["atom14_alt_gt_exists"],
    }


def sidechain_fape(
    sidechain_frames: torch.Tensor,
    atom14_pred_positions: torch.Tensor,
    batch: dict[str, torch.Tensor],
    renamed: dict[str, torch.Tensor],
    cfg: LossConfig,
) -> torch.Tensor:
    """All-atom FAPE of the final layer over the 8 rigid groups and the 14 atoms of every residue.

    Args:
        sidechain_frames: ``[*, N, 8, 4, 4]`` final-layer rigid-group frames.
        atom14_pred_positions: ``[*, N, 14, 3]`` final-layer atoms.
        batch: ``rigidgroups_gt_frames``, ``rigidgroups_alt_gt_frames`` ``[*, N, 8, 4, 4]``,
            ``rigidgroups_gt_exists`` ``[*, N, 8]``.
        renamed: output of :func:`renamed_ground_truth`.
    """
    better = renamed["alt_naming_is_better"][..., None, None, None]
    gt_frames = (1 - better) * batch["rigidgroups_gt_frames"] + better * batch["rigidgroups_alt_gt_frames"]
    lead = sidechain_frames.shape[:-4]
    pred = Rigid.from_tensor_4x4(sidechain_frames.reshape(*lead, -1, 4, 4))
    true = Rigid.from_tensor_4x4(gt_frames.reshape(*lead, -1, 4, 4))
    return fape(
        pred,
        true,
        batch["rigidgroups_gt_exists"].reshape(*lead, -1),
        atom14_pred_positions.reshape(*lead, -1, 3),
        renamed["renamed_atom14_gt_positions"].reshape(*lead, -1, 3),
        renamed["renamed_atom14_gt_exists"].reshape(*lead, -1),
        cfg.fape_length_scale,
        clamp_distance=cfg.fape_clamp_distance,
        eps=cfg.fape_eps,
    ).mean()


# ----------------------------------------------------------------------------------------------
# torsions (Algorithm 27)
# ----------------------------------------------------------------------------------------------


def supervised_chi_loss(
    angles: torch.Tensor,
    unnormalized_angles: torch.Tensor,
    aatype: torch.Tensor,
    seq_mask: torch.Tensor,
    chi_mask: torch.Tensor,
    chi_angles_sin_cos: torch.Tensor,
    cfg: LossConfig,
) -> torch.Tensor:
    """Side-chain torsion loss with pi-periodic alternatives, plus the angle-norm penalty.

    Args:
        angles, unnormalized_angles: ``[L, *, N, 7, 2]`` predicted (sin, cos) of every layer.
        aatype: ``[*, N]``; seq_mask ``[*, N]``; chi_mask ``[*, N, 4]``;
        chi_angles_sin_cos: ``[*, N, 4, 2]`` true chi angles.
    """
    pred = angles[..., 3:, :]
    periodic = angles.new_tensor(rc.CHI_PI_PERIODIC)[aatype]  # [*, N, 4]
    true = chi_angles_sin_cos[None]
    shifted = (1 - 2 * periodic)[..., None] * true
    sq = torch.minimum(((true - pred) ** 2).sum(-1), ((shifted - pred) ** 2).sum(-1))  # [L, *, N, 4]
    mask = chi_mask[None].expand_as(sq)
    chi = (sq * mask).sum((0, -1, -2)) / (cfg.eps + mask.sum((0, -1, -2)))
    norm = torch.sqrt((unnormalized_angles**2).sum(-1) + cfg.eps)
    norm_err = (norm - 1.0).abs()  # [L, *, N, 7]
    nmask = seq_mask[None, ..., None].expand_as(norm_err)
    norm_loss = (norm_err * nmask).sum((0, -1, -2)) / (cfg.eps + nmask.sum((0, -1, -2)))
    return (cfg.chi_weight * chi + cfg.angle_norm_weight * norm_loss).mean()


# ----------------------------------------------------------------------------------------------
# heads' losses
# ----------------------------------------------------------------------------------------------


def plddt_loss(
    logits: torch.Tensor,
    final_atom_positions: torch.Tensor,
    all_atom_positions: torch.Tensor,
    all_atom_mask: torch.Tensor,
    resolution: torch.Tensor,
    cfg: LossConfig,
) -> torch.Tensor:
    """Cross-entropy of the pLDDT head against binned per-residue lDDT-CA of the prediction.

    Args:
        logits: ``[*, N, plddt_bins]``; positions ``[*, N, 37, 3]``; all_atom_mask ``[*, N, 37]``;
        resolution: ``[*]`` (Angstrom; out-of-range structures get weight 0).
    """
    ca = rc.ATOM_ORDER["CA"]
    pred, true, mask = final_atom_positions[..., ca, :], all_atom_positions[..., ca, :], all_atom_mask[..., ca]
    num, cnt = lddt_scores(pred.detach(), true, mask, cutoff=cfg.plddt_cutoff)
    score = (cfg.eps + num) / (cfg.eps + cnt)
    bins = torch.clamp(torch.floor(score * cfg.plddt_bins).long(), 0, cfg.plddt_bins - 1)
    errors = _cross_entropy(logits, bins)
    loss = (errors * mask).sum(-1) / (cfg.eps + mask.sum(-1))
    return (loss * _resolution_filter(resolution, cfg).to(loss.dtype)).mean()


def distogram_loss(
    logits: torch.Tensor, pseudo_beta: torch.Tensor, pseudo_beta_mask: torch.Tensor, cfg: LossConfig
) -> torch.Tensor:
    """Cross-entropy of the distogram head against binned true pseudo-beta distances.

    Args:
        logits: ``[*, N, N, bins]``; pseudo_beta ``[*, N, 3]``; pseudo_beta_mask ``[*, N]``.
    """
    edges = torch.linspace(
        cfg.distogram_min_bin, cfg.distogram_max_bin, cfg.distogram_bins - 1, device=logits.device
    ) ** 2
    true_bins = (_pairwise_sq_dist(pseudo_beta)[..., None] > edges).sum(-1)
    errors = _cross_entropy(logits, true_bins)
    square = pseudo_beta_mask[..., :, None] * pseudo_beta_mask[..., None, :]
    denom = cfg.eps + square.sum((-1, -2))
    return ((errors * square).sum(-1) / denom[..., None]).sum(-1).mean()


def masked_msa_loss(
    logits: torch.Tensor, true_msa: torch.Tensor, bert_mask: torch.Tensor, cfg: LossConfig
) -> torch.Tensor:
    """BERT-style loss on masked MSA positions (Suppl. 1.9.9).

    Args:
        logits: ``[*, S, N, 23]``; true_msa ``[*, S, N]``; bert_mask ``[*, S, N]``.
    """
    errors = _cross_entropy(logits, true_msa) * bert_mask
    denom = cfg.eps + 0.5 * bert_mask.sum((-1, -2))
    return ((errors.sum(-1) / denom[..., None]).sum(-1) * 0.5).mean()


def experimentally_resolved_loss(
    logits: torch.Tensor,
    atom37_atom_exists: torch.Tensor,
    all_atom_mask: torch.Tensor,
    resolution: torch.Tensor,
    cfg: LossConfig,
) -> torch.Tensor:
    """Sigmoid cross-entropy of which atoms were resolved. logits/masks: ``[*, N, 37]``."""
    errors = _sigmoid_cross_entropy(logits, all_atom_mask)
    loss = (errors * atom37_atom_exists).sum(-1) / (cfg.eps + atom37_atom_exists.sum((-1, -2)))[..., None]
    return (loss.sum(-1) * _resolution_filter(resolution, cfg).to(loss.dtype)).mean()


def tm_loss(
    logits: torch.Tensor,
    final_frames: torch.Tensor,
    backbone_rigid_tensor: torch.Tensor,
    backbone_rigid_mask: torch.Tensor,
    resolution: torch.Tensor,
    cfg: LossConfig,
) -> torch.Tensor:
    """Cross-entropy of the predicted-aligned-error head against binned true aligned errors.

    Args:
        logits: ``[*, N, N, tm_bins]``; final_frames ``[*, N, 7]`` (or ``[*, N, 4, 4]``);
        backbone_rigid_tensor: ``[*, N, 4, 4]``; backbone_rigid_mask ``[*, N]``; resolution ``[*]``.
    """
    pred = Rigid.from_tensor_7(final_frames) if final_frames.shape[-1] == 7 else Rigid.from_tensor_4x4(final_frames)
    true = Rigid.from_tensor_4x4(backbone_rigid_tensor)

    def aligned(r: Rigid) -> torch.Tensor:
        return r.invert()[..., None].apply(r.get_trans()[..., None, :, :])

    sq = ((aligned(pred) - aligned(true)) ** 2).sum(-1).detach()
    edges = torch.linspace(0, cfg.tm_max_bin, cfg.tm_bins - 1, device=logits.device) ** 2
    errors = _cross_entropy(logits, (sq[..., None] > edges).sum(-1))
    square = backbone_rigid_mask[..., :, None] * backbone_rigid_mask[..., None, :]
    denom = cfg.eps + (0.5 * square).sum((-1, -2))
    loss = ((errors * square).sum(-1) / denom[..., None]).sum(-1) * 0.5
    return (loss * _resolution_filter(resolution, cfg).to(loss.dtype)).mean()


# ----------------------------------------------------------------------------------------------
# structural violations (Suppl. 1.9.11)
# ----------------------------------------------------------------------------------------------


def _flat_bottom(error: torch.Tensor, tolerance: torch.Tensor | float) -> torch.Tensor:
    return F.relu(error - tolerance)


def between_residue_bond_terms(
    pos: torch.Tensor,
    mask: torch.Tensor,
    residue_index: torch.Tensor,
    aatype: torch.Tensor,
    tolerance_factor: float,
    eps: float = 1e-6,
) -> dict[str, torch.Tensor]:
    """Peptide-bond length and angle violations between consecutive residues (eqs. 44-45).

    Args:
        pos: ``[*, N, 14, 3]`` atom14 (or atom37: N, CA, C come first in both) positions.
        mask: ``[*, N, 14]`` atom existence; residue_index ``[*, N]``; aatype ``[*, N]``.

    Returns:
        ``c_n_loss_mean``, ``ca_c_n_loss_mean``, ``c_n_ca_loss_mean`` (``[*]``),
        ``per_residue_loss_sum`` and ``per_residue_violation_mask`` (``[*, N]``).
    """
    ca, c, n_next, ca_next = pos[..., :-1, 1, :], pos[..., :-1, 2, :], pos[..., 1:, 0, :], pos[..., 1:, 1, :]
    m_ca, m_c, m_n_next, m_ca_next = mask[..., :-1, 1], mask[..., :-1, 2], mask[..., 1:, 0], mask[..., 1:, 1]
    no_gap = ((residue_index[..., 1:] - residue_index[..., :-1]) == 1).to(pos.dtype)
    next_pro = (aatype[..., 1:] == rc.RESTYPE_ORDER["P"]).to(pos.dtype)

    def length(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(eps + ((a - b) ** 2).sum(-1))

    def masked_mean(values: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return (m * values).sum(-1) / (m.sum(-1) + eps)

    c_n = length(c, n_next)
    ideal = (1 - next_pro) * rc.BETWEEN_RES_BOND_LENGTH_C_N[0] + next_pro * rc.BETWEEN_RES_BOND_LENGTH_C_N[1]
    std = (1 - next_pro) * rc.BETWEEN_RES_BOND_LENGTH_STDDEV_C_N[0] + next_pro * rc.BETWEEN_RES_BOND_LENGTH_STDDEV_C_N[1]
    c_n_err = torch.sqrt(eps + (c_n - ideal) ** 2)
    c_n_loss = _flat_bottom(c_n_err, tolerance_factor * std)
    m1 = m_c * m_n_next * no_gap
    c_n_viol = m1 * (c_n_err > tolerance_factor * std)

    ca_c, n_ca = length(ca, c), length(n_next, ca_next)
    u_c_ca = (ca - c) / ca_c[..., None]
    u_c_n = (n_next - c) / c_n[..., None]
    u_n_ca = (ca_next - n_next) / n_ca[..., None]

    cos1 = (u_c_ca * u_c_n).sum(-1)
    std1 = rc.BETWEEN_RES_BOND_LENGTH_STDDEV_C_N[0]  # sic: AlphaFold2 uses the bond-length stddev here
    err1 = torch.sqrt(eps + (cos1 - rc.BETWEEN_RES_COS_ANGLES_CA_C_N[0]) ** 2)
    loss1 = _flat_bottom(err1, tolerance_factor * std1)
    m2 = m_ca * m_c * m_n_next * no_gap
    viol1 = m2 * (err1 > tolerance_factor * std1)

    cos2 = (-u_c_n * u_n_ca).sum(-1)
    std2 = rc.BETWEEN_RES_COS_ANGLES_C_N_CA[1]
    err2 = torch.sqrt(eps + (cos2 - rc.BETWEEN_RES_COS_ANGLES_C_N_CA[0]) ** 2)
    loss2 = _flat_bottom(err2, tolerance_factor * std2)
    m3 = m_c * m_n_next * m_ca_next * no_gap
    viol2 = m3 * (err2 > tolerance_factor * std2)

    per_bond = c_n_loss + loss1 + loss2
    per_residue = 0.5 * (F.pad(per_bond, (0, 1)) + F.pad(per_bond, (1, 0)))
    viol = torch.stack([c_n_viol, viol1, viol2], -2).amax(-2)
    return {
        "c_n_loss_mean": masked_mean(c_n_loss, m1),
        "ca_c_n_loss_mean": masked_mean(loss1, m2),
        "c_n_ca_loss_mean": masked_mean(loss2, m3),
        "per_residue_loss_sum": per_residue,
        "per_residue_violation_mask": torch.maximum(F.pad(viol, (0, 1)), F.pad(viol, (1, 0))),
    }


def _atom14_radius(aatype: torch.Tensor, exists: torch.Tensor) -> torch.Tensor:
    radius37 = exists.new_tensor([rc.VAN_DER_WAALS_RADIUS[rc.ATOM_ELEMENT[a]] for a in rc.ATOM_TYPES])
    to37 = torch.tensor(rc.RESTYPE_ATOM14_TO_ATOM37, device=aatype.device)[aatype]
    return exists * radius37[to37]


def between_residue_clashes(
    pos: torch.Tensor,
    exists: torch.Tensor,
    aatype: torch.Tensor,
    residue_index: torch.Tensor,
    overlap_tolerance: float,
    eps: float = 1e-10,
) -> dict[str, torch.Tensor]:
    """Steric clashes between atoms of different residues (eq. 46, inter-residue part).

    Args:
        pos: ``[*, N, 14, 3]``; exists ``[*, N, 14]``; aatype, residue_index ``[*, N]``.

    Returns:
        ``mean_loss [*]``, ``per_atom_loss_sum [*, N, 14]``, ``per_atom_clash_mask [*, N, 14]``,
        ``per_atom_num_clash [*, N, 14]``.
    """
    radius = _atom14_radius(aatype, exists)
    d = torch.sqrt(eps + ((pos[..., :, None, :, None, :] - pos[..., None, :, None, :, :]) ** 2).sum(-1))
    m = exists[..., :, None, :, None] * exists[..., None, :, None, :]
    m = m * (residue_index[..., :, None, None, None] < residue_index[..., None, :, None, None]).to(pos.dtype)
    # the peptide C(i)-N(i+1) bond and disulfide SG-SG bonds are not clashes
    c_idx, n_idx = 2, 0
    neighbour = ((residue_index[..., :, None] + 1) == residue_index[..., None, :]).to(pos.dtype)
    bond = torch.zeros(14, 14, dtype=pos.dtype, device=pos.device)
    bond[c_idx, n_idx] = 1.0
    m = m * (1.0 - neighbour[..., None, None] * bond)
    sg = rc.RESTYPE_NAME_TO_ATOM14_NAMES["CYS"].index("SG")
    cys = (aatype == rc.RESTYPE_ORDER["C"]).to(pos.dtype)
    ss = torch.zeros(14, 14, dtype=pos.dtype, device=pos.device)
    ss[sg, sg] = 1.0
    m = m * (1.0 - cys[..., :, None, None, None] * cys[..., None, :, None, None] * ss)
    lower = m * (radius[..., :, None, :, None] + radius[..., None, :, None, :])
    err = m * F.relu(lower - overlap_tolerance - d)
    clash = m * (d < lower - overlap_tolerance).to(pos.dtype)
    return {
        "mean_loss": err.sum((-4, -3, -2, -1)) / (1e-6 + m.sum((-4, -3, -2, -1))),
        "per_atom_loss_sum": err.sum((-4, -2)) + err.sum((-3, -1)),
        "per_atom_clash_mask": torch.maximum(clash.amax((-4, -2)), clash.amax((-3, -1))),
        "per_atom_num_clash": clash.sum((-4, -2)) + clash.sum((-3, -1)),
    }


def within_residue_violations(
    pos: torch.Tensor,
    exists: torch.Tensor,
    aatype: torch.Tensor,
    overlap_tolerance: float,
    tolerance_factor: float,
    eps: float = 1e-10,
) -> dict[str, torch.Tensor]:
    """Clashes and bond / angle violations inside each residue (eq. 46, intra-residue part).

    Returns ``per_atom_loss_sum``, ``per_atom_violations``, ``per_atom_num_clash`` ``[*, N, 14]``.
    """
    bounds = rc.make_atom14_dists_bounds(overlap_tolerance, tolerance_factor)
    lower = pos.new_tensor(bounds["lower_bound"])[aatype]
    upper = pos.new_tensor(bounds["upper_bound"])[aatype]
    m = exists[..., :, :, None] * exists[..., :, None, :] * (1.0 - torch.eye(14, dtype=pos.dtype, device=pos.device))
    d = torch.sqrt(eps + ((pos[..., :, :, None, :] - pos[..., :, None, :, :]) ** 2).sum(-1))
    loss = m * (F.relu(lower - d) + F.relu(d - upper))
    viol = m * ((d < lower) | (d > upper)).to(pos.dtype)
    return {
        "per_atom_loss_sum": loss.sum(-2) + loss.sum(-1),
        "per_atom_violations": torch.maximum(viol.amax(-2), viol.amax(-1)),
        "per_atom_num_clash": viol.sum(-2) + viol.sum(-1),
    }


def structural_violations(
    atom14_pred_positions: torch.Tensor, batch: dict[str, torch.Tensor], cfg: LossConfig
) -> dict[str, Any]:
    """All violation terms of a predicted structure (needs ``atom14_atom_exists``,
    ``residue_index``, ``aatype`` in ``batch``)."""
    exists, aatype, ri = batch["atom14_atom_exists"], batch["aatype"], batch["residue_index"]
    bonds = between_residue_bond_terms(atom14_pred_positions, exists, ri, aatype, cfg.violation_tolerance_factor)
    clashes = between_residue_clashes(atom14_pred_positions, exists, aatype, ri, cfg.clash_overlap_tolerance)
    within = within_residue_violations(
        atom14_pred_positions, exists, aatype, cfg.clash_overlap_tolerance, cfg.violation_tolerance_factor
    )
    per_residue = torch.stack(
        [
            bonds["per_residue_violation_mask"],
            clashes["per_atom_clash_mask"].amax(-1),
            within["per_atom_violations"].amax(-1),
        ],
        -1,
    ).amax(-1)
    return {"bonds": bonds, "clashes": clashes, "within": within, "per_residue_violation_mask": per_residue}


def violation_loss(violations: dict[str, Any], atom14_atom_exists: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Bond + angle terms plus clash sum per existing atom."""
    per_atom = violations["clashes"]["per_atom_loss_sum"] + violations["within"]["per_atom_loss_sum"]
    if cfg.average_clashes:
        count = violations["clashes"]["per_atom_num_clash"] + violations["within"]["per_atom_num_clash"]
        per_atom = per_atom / (count + cfg.eps)
    n_atoms = atom14_atom_exists.sum((-1, -2))
    clash = per_atom.sum((-1, -2)) / (cfg.eps + n_atoms)
    b = violations["bonds"]
    return (b["c_n_loss_mean"] + b["ca_c_n_loss_mean"] + b["c_n_ca_loss_mean"] + clash).mean()


# ----------------------------------------------------------------------------------------------
# total
# ----------------------------------------------------------------------------------------------

#: Model outputs the loss reads (structure-module trajectories have a leading layer dim L).
OUTPUT_KEYS = (
    "frames",  # [L, *, N, 7]
    "sidechain_frames",  # [*, N, 8, 4, 4] (final layer) or [L, *, N, 8, 4, 4]
    "positions",  # [L, *, N, 14, 3]
    "angles",  # [L, *, N, 7, 2]
    "unnormalized_angles",  # [L, *, N, 7, 2]
    "final_atom_positions",  # [*, N, 37, 3]
    "distogram_logits",
    "masked_msa_logits",
    "experimentally_resolved_logits",
    "lddt_logits",
)


def alphafold_loss(
    out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], cfg: LossConfig, crop_size: int | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted AlphaFold2 loss.

    Every term is computed (and reported) even when its weight is 0. A non-finite weighted term
    makes the total non-finite (and is named in a logged warning), so the training engine skips
    the step and counts it rather than silently training on the other terms (OpenFold drops such a
    term from the total instead). The weighted sum is scaled by
    ``sqrt(min(seq_length, crop_size))`` as AlphaFold2 does (``crop_size`` defaults to N).

    Returns:
        ``(loss, terms)`` with unweighted terms, ``fape_backbone``, ``fape_sidechain``,
        ``unscaled_loss`` and ``loss`` (detached).
    """
    missing = [k for k in OUTPUT_KEYS if k not in out]
    if cfg.weights.tm > 0 and "tm_logits" not in out:
        missing.append("tm_logits")
    if missing:
        raise InputError(f"alphafold_loss: model outputs lack {missing}")
    positions = out["positions"][-1]
    sc_frames = out["sidechain_frames"]
    if sc_frames.dim() == positions.dim() + 2:  # all layers given: use the last
        sc_frames = sc_frames[-1]
    renamed = renamed_ground_truth(batch, positions)
    violations = structural_violations(positions, batch, cfg)
    bb = backbone_fape(
        out["frames"], batch["backbone_rigid_tensor"], batch["backbone_rigid_mask"],
        batch.get("use_clamped_fape", 1.0), cfg,
    )
    sc = sidechain_fape(sc_frames, positions, batch, renamed, cfg)
    terms: dict[str, torch.Tensor] = {
        "distogram": distogram_loss(out["distogram_logits"], batch["pseudo_beta"], batch["pseudo_beta_mask"], cfg),
        "experimentally_resolved": experimentally_resolved_loss(
            out["experimentally_resolved_logits"], batch["atom37_atom_exists"], batch["all_atom_mask"],
            batch["resolution"], cfg,
        ),
        "fape": cfg.fape_backbone_weight * bb + cfg.fape_sidechain_weight * sc,
        "plddt": plddt_loss(
            out["lddt_logits"], out["final_atom_positions"], batch["all_atom_positions"], batch["all_atom_mask"],
            batch["resolution"], cfg,
        ),
        "masked_msa": masked_msa_loss(out["masked_msa_logits"], batch["true_msa"], batch["bert_mask"], cfg),
        "supervised_chi": supervised_chi_loss(
            out["angles"], out["unnormalized_angles"], batch["aatype"], batch["seq_mask"], batch["chi_mask"],
            batch["chi_angles_sin_cos"], cfg,
        ),
        "violation": violation_loss(violations, batch["atom14_atom_exists"], cfg),
    }
    if "tm_logits" in out:
        terms["tm"] = tm_loss(
            out["tm_logits"], out["frames"][-1], batch["backbone_rigid_tensor"], batch["backbone_rigid_mask"],
            batch["resolution"], cfg,
        )
    weighted = {name: getattr(cfg.weights, name) for name in terms}
    total = positions.new_zeros(())
    for name, value in terms.items():
        if weighted[name]:
            total = total + weighted[name] * value
    if not torch.isfinite(total):  # one check (one host sync on GPU) per step; names only when needed
        bad = [name for name, value in terms.items() if weighted[name] and not torch.isfinite(value)]
        log.warning("non-finite AlphaFold loss terms: %s", ", ".join(bad))
    n_res = batch["aatype"].shape[-1]
    seq_len = float(batch["seq_length"].float().mean()) if "seq_length" in batch else float(n_res)
    scaled = total * math.sqrt(min(seq_len, crop_size or n_res))
    report = {k: v.detach() for k, v in terms.items()}
    report.update(fape_backbone=bb.detach(), fape_sidechain=sc.detach(), unscaled_loss=total.detach(), loss=scaled.detach())
    return scaled, report
