"""From backbone frames and torsion angles to all-atom coordinates (AlphaFold2 Algorithm 24).

Each residue is built from eight rigid groups (backbone, pre-omega, phi, psi, chi1-4). Every
group's frame is its parent's frame composed with the group's ideal "default" frame and a
rotation about the x axis by its torsion angle; atoms are placed at their ideal (literature)
positions in their group's frame. The tables come from :mod:`tertiary.constants`.

Coordinates are in whatever unit the backbone translations use (Angstrom in AlphaFold2).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from tertiary import constants as rc
from tertiary.geometry.rigid import Rigid, Rotation

#: number of rigid groups per residue (backbone, pre-omega, phi, psi, chi1, chi2, chi3, chi4)
NUM_RIGID_GROUPS = 8


@lru_cache(maxsize=64)
def _cached_table(name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(getattr(rc, name), dtype=dtype, device=device)


def _table(name: str, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A :mod:`tertiary.constants` table as a (cached, read-only by convention) tensor."""
    return _cached_table(name, dtype if dtype is not None else like.dtype, like.device)


def torsion_angles_to_frames(
    backbone_to_global: Rigid,
    angles: torch.Tensor,
    aatype: torch.Tensor,
    default_frames: torch.Tensor | None = None,
) -> Rigid:
    """Frames of all eight rigid groups of every residue (Algorithm 24, lines 1-10).

    Args:
        backbone_to_global: backbone frames ``[*, N]``.
        angles: torsion angles as (sin, cos) ``[*, N, 7, 2]`` in the order pre-omega, phi, psi,
            chi1-4 (need not be normalised; they are used as given, as in AlphaFold2).
        aatype: residue types ``[*, N]`` (AlphaFold order, 20 = unknown).
        default_frames: ``[21, 8, 4, 4]`` group-to-parent default frames; the table of
            :mod:`tertiary.constants` when None.

    Returns:
        Group-to-global frames ``[*, N, 8]``.
    """
    if default_frames is None:
        default_frames = _table("RESTYPE_RIGID_GROUP_DEFAULT_FRAME", angles)
    default = Rigid.from_tensor_4x4(default_frames.to(angles.dtype)[aatype.long()])  # [*, N, 8]

    # the backbone group gets the identity rotation: (sin, cos) = (0, 1)
    backbone = torch.zeros_like(angles[..., :1, :])
    backbone[..., 1] = 1
    sin_cos = torch.cat([backbone, angles], dim=-2)  # [*, N, 8, 2]
    sin, cos = sin_cos[..., 0], sin_cos[..., 1]
    zero, one = torch.zeros_like(sin), torch.ones_like(sin)
    # rotation about x: [[1, 0, 0], [0, cos, -sin], [0, sin, cos]]
    rot_x = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=-1)
    rot_x = rot_x.reshape(sin.shape + (3, 3))
    group_to_parent = default.compose(Rigid(Rotation(rot_mats=rot_x), torch.zeros_like(default.get_trans())))

    # chi2..chi4 hang off the previous chi group; everything else off the backbone
    chi_to_bb = [group_to_parent[..., 4]]
    for group in (5, 6, 7):
        chi_to_bb.append(chi_to_bb[-1].compose(group_to_parent[..., group]))
    groups_to_bb = Rigid.cat([group_to_parent[..., :4]] + [f.unsqueeze(-1) for f in chi_to_bb], dim=-1)
    return backbone_to_global.unsqueeze(-1).compose(groups_to_bb)


def frames_to_atom14_positions(
    group_frames: Rigid,
    aatype: torch.Tensor,
    atom14_group: torch.Tensor | None = None,
    atom14_mask: torch.Tensor | None = None,
    atom14_local_positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Atom14 coordinates from the rigid-group frames (Algorithm 24, line 11).

    Args:
        group_frames: group-to-global frames ``[*, N, 8]``.
        aatype: residue types ``[*, N]``.
        atom14_group, atom14_mask, atom14_local_positions: ``[21, 14]``, ``[21, 14]`` and
            ``[21, 14, 3]`` tables (group of each atom, existence, ideal local position);
            :mod:`tertiary.constants` when None.

    Returns:
        ``[*, N, 14, 3]`` coordinates, zero for atoms the residue type does not have.
    """
    trans = group_frames.get_trans()
    if atom14_group is None:
        atom14_group = _table("RESTYPE_ATOM14_TO_RIGID_GROUP", trans, torch.long)
    if atom14_mask is None:
        atom14_mask = _table("RESTYPE_ATOM14_MASK", trans)
    if atom14_local_positions is None:
        atom14_local_positions = _table("RESTYPE_ATOM14_RIGID_GROUP_POSITIONS", trans)
    aatype = aatype.long()
    group = atom14_group.to(trans.device).long()[aatype]  # [*, N, 14]
    rots = group_frames.get_rots().get_rot_mats()  # [*, N, 8, 3, 3]
    idx = group[..., None, None].expand(group.shape + (3, 3))
    atom_rots = torch.gather(rots, -3, idx)  # [*, N, 14, 3, 3]
    atom_trans = torch.gather(trans, -2, group[..., None].expand(group.shape + (3,)))
    local = atom14_local_positions.to(trans)[aatype]
    positions = Rigid(Rotation(rot_mats=atom_rots), atom_trans).apply(local)
    return positions * atom14_mask.to(trans)[aatype][..., None]


def atom37_to_atom14_index(aatype: torch.Tensor) -> torch.Tensor:
    """``[*, N, 37]`` atom14 slot of each atom37 type (0 where absent; use :func:`atom37_exists`)."""
    return _table("RESTYPE_ATOM37_TO_ATOM14", aatype, torch.long)[aatype.long()]


def atom37_exists(aatype: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[*, N, 37]`` 1 for atom37 types the residue type has (OXT excluded), else 0."""
    return _table("RESTYPE_ATOM37_MASK", aatype, dtype)[aatype.long()]


def atom14_to_atom37(atom14: torch.Tensor, aatype: torch.Tensor) -> torch.Tensor:
    """Scatter per-atom data from the atom14 to the atom37 layout.

    Args:
        atom14: ``[*, N, 14, C]`` (e.g. coordinates, C = 3).
        aatype: ``[*, N]`` residue types.

    Returns:
        ``[*, N, 37, C]``, zero for atom types the residue does not have.
    """
    index = atom37_to_atom14_index(aatype)  # [*, N, 37]
    gathered = torch.gather(atom14, -2, index[..., None].expand(index.shape + atom14.shape[-1:]))
    return gathered * atom37_exists(aatype, atom14.dtype)[..., None]


def pseudo_beta(
    aatype: torch.Tensor, atom37_positions: torch.Tensor, atom37_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """CB coordinates (CA for glycine) ``[*, N, 3]`` and, given an atom37 mask, their mask ``[*, N]``."""
    ca, cb = rc.ATOM_ORDER["CA"], rc.ATOM_ORDER["CB"]
    is_gly = aatype == rc.RESTYPE_ORDER["G"]
    coords = torch.where(is_gly[..., None], atom37_positions[..., ca, :], atom37_positions[..., cb, :])
    if atom37_mask is None:
        return coords, None
    mask = torch.where(is_gly, atom37_mask[..., ca], atom37_mask[..., cb])
    return coords, mask
