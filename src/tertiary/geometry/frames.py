"""Backbone frames from N, CA, C (AlphaFold2 convention).

The frame of a residue sits at CA; its x axis points from CA to C; N lies in its xy plane with
positive y; z = x cross y (AlphaFold2 Algorithm 21, ``rigidFrom3Points``). These are the frames
of AlphaFold2's ``backbone_rigid_tensor`` / rigid group 0.
"""

from __future__ import annotations

import torch

from tertiary import constants as rc
from tertiary.errors import InputError
from tertiary.geometry.rigid import Rigid, Rotation

_N, _CA, _C = rc.ATOM_ORDER["N"], rc.ATOM_ORDER["CA"], rc.ATOM_ORDER["C"]


def backbone_frames(n: torch.Tensor, ca: torch.Tensor, c: torch.Tensor, eps: float = 1e-8) -> Rigid:
    """Backbone frames ``[*]`` from atom positions ``[*, 3]`` (Angstrom), differentiable.

    Built with :meth:`Rigid.from_3_points` (``p_neg_x_axis = C, origin = CA, p_xy_plane = N``),
    then turned by 180 degrees about y so that x points from CA to C, as AlphaFold2's
    ``atom37_to_frames`` does.
    """
    if not (n.shape == ca.shape == c.shape) or n.shape[-1:] != (3,):
        raise InputError(f"backbone_frames: N {tuple(n.shape)}, CA {tuple(ca.shape)}, C {tuple(c.shape)} must be equal [*, 3]")
    frames = Rigid.from_3_points(c, ca, n, eps=eps)
    flip = torch.tensor([-1.0, 1.0, -1.0], dtype=n.dtype, device=n.device)
    rots = frames.get_rots().get_rot_mats() * flip  # negate the x and z columns
    return Rigid(Rotation(rot_mats=rots), frames.get_trans())


def backbone_frames_from_atom37(
    all_atom_positions: torch.Tensor, all_atom_mask: torch.Tensor | None = None, eps: float = 1e-8
) -> tuple[Rigid, torch.Tensor | None]:
    """Backbone frames ``[*, N]`` from atom37 positions ``[*, N, 37, 3]``.

    Returns ``(frames, mask)`` where mask ``[*, N]`` = N * CA * C present (None without a mask).
    """
    if all_atom_positions.ndim < 3 or all_atom_positions.shape[-2:] != (rc.ATOM_TYPE_NUM, 3):
        raise InputError(f"backbone_frames_from_atom37: expected [*, N, 37, 3], got {tuple(all_atom_positions.shape)}")
    p = all_atom_positions
    frames = backbone_frames(p[..., _N, :], p[..., _CA, :], p[..., _C, :], eps=eps)
    if all_atom_mask is None:
        return frames, None
    m = all_atom_mask
    return frames, m[..., _N] * m[..., _CA] * m[..., _C]
