"""Ground-truth features for AlphaFold2 training, and crops of a training example.

``ground_truth_features`` turns atom37 coordinates into every target the AlphaFold2 losses read
(atom14 positions with their symmetric alternatives, rigid-group frames, backbone frames,
pseudo-beta atoms, chi angles); ``crop_indices`` picks a contiguous or spatial crop.
"""

from __future__ import annotations

from typing import Literal

import torch

from tertiary import constants as rc
from tertiary.errors import InputError
from tertiary.geometry.atoms import pseudo_beta
from tertiary.geometry.rigid import Rigid, Rotation
from tertiary.geometry.torsions import atom37_to_torsion_angles


def _table(array, like: torch.Tensor, aatype: torch.Tensor) -> torch.Tensor:
    """Index a constant ``[21, ...]`` table by residue type."""
    t = torch.tensor(array, device=like.device)
    return (t.to(like.dtype) if t.is_floating_point() else t)[aatype]


def atom14_ground_truth(
    aatype: torch.Tensor, all_atom_positions: torch.Tensor, all_atom_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """atom14 targets with the alternative naming of symmetric side chains.

    Args:
        aatype: ``[*, N]``; all_atom_positions ``[*, N, 37, 3]`` (Angstrom); all_atom_mask ``[*, N, 37]``.

    Returns:
        ``atom14_atom_exists``, ``atom14_gt_exists``, ``atom14_alt_gt_exists``,
        ``atom14_atom_is_ambiguous`` ``[*, N, 14]``; ``atom14_gt_positions``,
        ``atom14_alt_gt_positions`` ``[*, N, 14, 3]``; ``residx_atom14_to_atom37 [*, N, 14]``,
        ``residx_atom37_to_atom14 [*, N, 37]``, ``atom37_atom_exists [*, N, 37]``.
    """
    x = all_atom_positions
    exists14 = _table(rc.RESTYPE_ATOM14_MASK, x, aatype)
    to37 = _table(rc.RESTYPE_ATOM14_TO_ATOM37, x, aatype).long()
    gt_exists = exists14 * torch.gather(all_atom_mask.to(x.dtype), -1, to37)
    gt_pos = torch.gather(x, -2, to37[..., None].expand(*to37.shape, 3)) * gt_exists[..., None]
    rename = _table(rc.RESTYPE_RENAME_ATOM14_MATRICES, x, aatype)  # [*, N, 14, 14]
    return {
        "atom14_atom_exists": exists14,
        "atom14_gt_exists": gt_exists,
        "atom14_gt_positions": gt_pos,
        "atom14_alt_gt_positions": torch.einsum("...ij,...ic->...jc", rename, gt_pos),
        "atom14_alt_gt_exists": torch.einsum("...ij,...i->...j", rename, gt_exists),
        "atom14_atom_is_ambiguous": _table(rc.RESTYPE_ATOM14_IS_AMBIGUOUS, x, aatype),
        "residx_atom14_to_atom37": to37,
        "residx_atom37_to_atom14": _table(rc.RESTYPE_ATOM37_TO_ATOM14, x, aatype).long(),
        "atom37_atom_exists": _table(rc.RESTYPE_ATOM37_MASK, x, aatype),
    }


def rigid_group_ground_truth(
    aatype: torch.Tensor, all_atom_positions: torch.Tensor, all_atom_mask: torch.Tensor, eps: float = 1e-8
) -> dict[str, torch.Tensor]:
    """True frames of the 8 rigid groups (AlphaFold2 Suppl. 1.8.1, ``atom37_to_frames``).

    Returns:
        ``rigidgroups_gt_frames``, ``rigidgroups_alt_gt_frames`` ``[*, N, 8, 4, 4]``;
        ``rigidgroups_gt_exists``, ``rigidgroups_group_exists``, ``rigidgroups_group_is_ambiguous``
        ``[*, N, 8]``.
    """
    x = all_atom_positions
    base = _table(rc.RESTYPE_RIGIDGROUP_BASE_ATOM37_IDX, x, aatype).long()  # [*, N, 8, 3]
    lead = base.shape[:-2]  # [*, N]
    flat = base.reshape(*lead, 24)
    pts = torch.gather(x, -2, flat[..., None].expand(*flat.shape, 3)).reshape(*lead, 8, 3, 3)
    present = torch.gather(all_atom_mask.to(x.dtype), -1, flat).reshape(*lead, 8, 3)
    group_exists = _table(rc.RESTYPE_RIGIDGROUP_MASK, x, aatype)
    frames = Rigid.from_3_points(pts[..., 0, :], pts[..., 1, :], pts[..., 2, :], eps=eps)
    # The backbone frame is built from (C, CA, N); AlphaFold2 then rotates it by pi about y
    # (diag(-1, 1, -1)) so that it matches the frame the structure module predicts.
    fix = torch.eye(3, dtype=x.dtype, device=x.device).expand(*lead, 8, 3, 3).clone()
    fix[..., 0, 0, 0] = -1.0
    fix[..., 0, 2, 2] = -1.0
    frames = frames.compose(Rigid(Rotation(rot_mats=fix), None))
    ambiguity = _table(rc.RESTYPE_RIGIDGROUP_AMBIGUITY_ROT, x, aatype)
    alt = frames.compose(Rigid(Rotation(rot_mats=ambiguity), None))
    return {
        "rigidgroups_gt_frames": frames.to_tensor_4x4(),
        "rigidgroups_alt_gt_frames": alt.to_tensor_4x4(),
        "rigidgroups_gt_exists": present.amin(-1) * group_exists,
        "rigidgroups_group_exists": group_exists,
        "rigidgroups_group_is_ambiguous": _table(rc.RESTYPE_RIGIDGROUP_IS_AMBIGUOUS, x, aatype),
    }


def ground_truth_features(
    aatype: torch.Tensor, all_atom_positions: torch.Tensor, all_atom_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Every structural target of the AlphaFold2 losses.

    Args:
        aatype: ``[*, N]`` (0-20); all_atom_positions ``[*, N, 37, 3]``; all_atom_mask ``[*, N, 37]``.

    Returns:
        The atom14 and rigid-group targets above plus ``backbone_rigid_tensor [*, N, 4, 4]``,
        ``backbone_rigid_mask [*, N]``, ``pseudo_beta [*, N, 3]``, ``pseudo_beta_mask [*, N]``,
        ``chi_angles_sin_cos [*, N, 4, 2]``, ``chi_mask [*, N, 4]``, and the inputs.
    """
    if all_atom_positions.shape[-2:] != (37, 3) or all_atom_mask.shape != all_atom_positions.shape[:-1]:
        raise InputError(
            f"ground_truth_features: expected positions [*, N, 37, 3] and mask [*, N, 37], got "
            f"{tuple(all_atom_positions.shape)} and {tuple(all_atom_mask.shape)}"
        )
    aatype = aatype.long()
    mask = all_atom_mask.to(all_atom_positions.dtype)
    out = {"aatype": aatype, "all_atom_positions": all_atom_positions, "all_atom_mask": mask}
    out.update(atom14_ground_truth(aatype, all_atom_positions, mask))
    out.update(rigid_group_ground_truth(aatype, all_atom_positions, mask))
    out["backbone_rigid_tensor"] = out["rigidgroups_gt_frames"][..., 0, :, :]
    out["backbone_rigid_mask"] = out["rigidgroups_gt_exists"][..., 0]
    out["pseudo_beta"], out["pseudo_beta_mask"] = pseudo_beta(aatype, all_atom_positions, mask)
    torsions = atom37_to_torsion_angles(aatype, all_atom_positions, mask)
    out["chi_angles_sin_cos"] = torsions["torsion_angles_sin_cos"][..., 3:, :]
    out["chi_mask"] = torsions["torsion_angles_mask"][..., 3:]
    return out


def crop_indices(
    ca: torch.Tensor,
    ca_mask: torch.Tensor,
    crop_size: int,
    mode: Literal["contiguous", "spatial"],
    generator: torch.Generator,
) -> torch.Tensor:
    """Residue indices (sorted) of a training crop.

    ``contiguous``: a random window of ``crop_size`` consecutive residues. ``spatial``: the
    ``crop_size`` residues closest to a random resolved residue (AlphaFold-Multimer's spatial
    crop, by CA distance), which keeps contacts that a contiguous window would cut.

    Args:
        ca: ``[N, 3]`` CA coordinates; ca_mask ``[N]``.

    Returns:
        ``[min(N, crop_size)]`` long tensor.
    """
    n = ca.shape[0]
    if crop_size < 1:
        raise InputError(f"crop_size must be positive, got {crop_size}")
    if n <= crop_size:
        return torch.arange(n)
    if mode == "contiguous":
        start = int(torch.randint(0, n - crop_size + 1, (1,), generator=generator))
        return torch.arange(start, start + crop_size)
    if mode != "spatial":
        raise InputError(f"unknown crop mode '{mode}' (contiguous, spatial)")
    resolved = torch.nonzero(ca_mask > 0).flatten()
    if resolved.numel() == 0:
        raise InputError("spatial crop: no residue has a CA atom")
    centre = resolved[int(torch.randint(0, resolved.numel(), (1,), generator=generator))]
    dist = torch.linalg.vector_norm(ca - ca[centre], dim=-1)
    dist = torch.where(ca_mask > 0, dist, torch.full_like(dist, float("inf")))
    dist = dist + torch.arange(n, dtype=dist.dtype) * 1e-6  # deterministic tie-break
    return torch.sort(torch.topk(dist, crop_size, largest=False).indices).values
