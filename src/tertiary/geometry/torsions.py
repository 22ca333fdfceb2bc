"""Backbone and side-chain torsion angles.

Two views of the same geometry:

* :func:`dihedral`, :func:`backbone_torsions` and :func:`chi_angles` give angles in radians in
  ``(-pi, pi]`` with the IUPAC sign convention (as MDTraj / biotite): ``phi[i] = C(i-1) N CA C``,
  ``psi[i] = N CA C N(i+1)``, ``omega[i] = CA(i) C(i) N(i+1) CA(i+1)`` (MDTraj's assignment:
  omega of the peptide bond that *follows* residue i).
* :func:`atom37_to_torsion_angles` gives AlphaFold2's 7 torsions per residue as (sin, cos)
  pairs: pre-omega (``CA(i-1) C(i-1) N CA``), phi, psi (measured on ``N CA C O`` and turned by
  pi, which approximates the true psi since O is anti to N(i+1)), chi1-4, the pi-periodic alternative
  of the last chi of ASP/GLU/PHE/TYR, and the masks.

Everything is batched over leading dimensions and differentiable.
"""

from __future__ import annotations

import torch

from tertiary import constants as rc
from tertiary.errors import InputError
from tertiary.geometry.rigid import Rigid

_N, _CA, _C, _O = (rc.ATOM_ORDER[a] for a in ("N", "CA", "C", "O"))


def dihedral(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, p3: torch.Tensor) -> torch.Tensor:
    """Dihedral angle ``p0 p1 p2 p3`` in radians, ``(-pi, pi]``, from points ``[*, 3]`` -> ``[*]``.

    Positive when, looking along ``p1 -> p2``, the bond ``p2 -> p3`` is rotated clockwise from
    ``p1 -> p0`` (IUPAC). Degenerate (collinear) input gives 0.
    """
    b0 = p0 - p1
    b1 = p2 - p1
    b2 = p3 - p2
    b1n = b1 / torch.linalg.vector_norm(b1, dim=-1, keepdim=True).clamp_min(1e-12)
    v = b0 - (b0 * b1n).sum(-1, keepdim=True) * b1n
    w = b2 - (b2 * b1n).sum(-1, keepdim=True) * b1n
    x = (v * w).sum(-1)
    y = (torch.linalg.cross(b1n, v, dim=-1) * w).sum(-1)
    return torch.atan2(y, x)


def _check_atom37(name: str, positions: torch.Tensor, mask: torch.Tensor | None) -> None:
    if positions.ndim < 3 or positions.shape[-2:] != (rc.ATOM_TYPE_NUM, 3):
        raise InputError(f"{name}: positions must be [*, N, 37, 3], got {tuple(positions.shape)}")
    if mask is not None and mask.shape != positions.shape[:-1]:
        raise InputError(f"{name}: mask {tuple(mask.shape)} does not match positions {tuple(positions.shape)}")


def backbone_torsions(
    all_atom_positions: torch.Tensor,
    all_atom_mask: torch.Tensor | None = None,
    max_peptide_bond: float | None = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """phi, psi, omega of every residue (radians, MDTraj convention).

    Args:
        all_atom_positions: ``[*, N, 37, 3]`` (Angstrom), residues in chain order.
        all_atom_mask: ``[*, N, 37]`` or None (all present).
        max_peptide_bond: residues i and i+1 count as bonded when ``|C(i) - N(i+1)|`` is below this
            (Angstrom); None = every consecutive pair is bonded.

    Returns:
        ``(angles [*, N, 3], mask [*, N, 3])``: last axis phi, psi, omega; the mask is False for
        the chain ends, chain breaks and missing atoms (angles there are 0).
    """
    _check_atom37("backbone_torsions", all_atom_positions, all_atom_mask)
    x = all_atom_positions
    dtype = x.dtype
    m = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device) if all_atom_mask is None else all_atom_mask != 0
    n, ca, c = x[..., _N, :], x[..., _CA, :], x[..., _C, :]
    mn, mca, mc = m[..., _N], m[..., _CA], m[..., _C]
    bonded = mc[..., :-1] & mn[..., 1:]
    if max_peptide_bond is not None:
        bonded = bonded & (torch.linalg.vector_norm(c[..., :-1, :] - n[..., 1:, :], dim=-1) < max_peptide_bond)
    phi = dihedral(c[..., :-1, :], n[..., 1:, :], ca[..., 1:, :], c[..., 1:, :])
    phi_m = bonded & mn[..., 1:] & mca[..., 1:] & mc[..., 1:]
    psi = dihedral(n[..., :-1, :], ca[..., :-1, :], c[..., :-1, :], n[..., 1:, :])
    psi_m = bonded & mn[..., :-1] & mca[..., :-1]
    omega = dihedral(ca[..., :-1, :], c[..., :-1, :], n[..., 1:, :], ca[..., 1:, :])
    omega_m = bonded & mca[..., :-1] & mca[..., 1:]
    pad = torch.zeros(x.shape[:-3] + (1,), dtype=dtype, device=x.device)
    padm = torch.zeros(x.shape[:-3] + (1,), dtype=torch.bool, device=x.device)
    angles = torch.stack(
        [torch.cat([pad, phi], -1), torch.cat([psi, pad], -1), torch.cat([omega, pad], -1)], -1
    )
    mask = torch.stack(
        [torch.cat([padm, phi_m], -1), torch.cat([psi_m, padm], -1), torch.cat([omega_m, padm], -1)], -1
    )
    return angles * mask.to(dtype), mask


def _chi_atoms(
    aatype: torch.Tensor, x: torch.Tensor, m: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chi atom positions ``[*, N, 4, 4, 3]`` and chi masks ``[*, N, 4]`` (float)."""
    if aatype.shape != x.shape[:-2]:
        raise InputError(f"aatype {tuple(aatype.shape)} does not match positions {tuple(x.shape)}")
    if aatype.dtype.is_floating_point or aatype.dtype == torch.bool:
        raise InputError(f"aatype must be an integer tensor, got {aatype.dtype}")
    aa = aatype.long().clamp(0, rc.UNK_INDEX)
    idx = torch.tensor(rc.CHI_ATOM_INDICES, device=x.device, dtype=torch.long)[aa]  # [*, N, 4, 4]
    flat = idx.flatten(-2)  # [*, N, 16]
    pos = torch.gather(x, -2, flat[..., None].expand(flat.shape + (3,))).unflatten(-2, (4, 4))
    atom_m = torch.gather(m, -1, flat).unflatten(-1, (4, 4))
    chi_m = torch.tensor(rc.CHI_ANGLES_MASK, device=x.device, dtype=x.dtype)[aa]
    return pos, chi_m * atom_m.prod(-1)


def chi_angles(
    aatype: torch.Tensor,
    all_atom_positions: torch.Tensor,
    all_atom_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Side-chain chi1-4 (radians, IUPAC sign).

    Args:
        aatype: ``[*, N]`` residue types (``tertiary.constants.RESTYPES_WITH_X``).
        all_atom_positions: ``[*, N, 37, 3]``.
        all_atom_mask: ``[*, N, 37]`` or None.

    Returns:
        ``(chi [*, N, 4], mask [*, N, 4] bool)``; chi is 0 where the mask is False.
    """
    _check_atom37("chi_angles", all_atom_positions, all_atom_mask)
    x = all_atom_positions
    m = torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device) if all_atom_mask is None else all_atom_mask.to(x.dtype)
    pos, chi_m = _chi_atoms(aatype, x, m)
    chi = dihedral(pos[..., 0, :], pos[..., 1, :], pos[..., 2, :], pos[..., 3, :])
    return chi * chi_m, chi_m > 0


def atom37_to_torsion_angles(
    aatype: torch.Tensor,
    all_atom_positions: torch.Tensor,
    all_atom_mask: torch.Tensor,
    eps: float = 1e-8,
) -> dict[str, torch.Tensor]:
    """AlphaFold2's 7 torsion angles per residue as (sin, cos) (AF2 ``atom37_to_torsion_angles``).

    Torsion k of residue i is read from four atoms ``a0 a1 a2 a3``: a frame is built at ``a2``
    with x along ``a1 -> a2`` and ``a0`` in its xy plane; (sin, cos) are the normalised (z, y)
    coordinates of ``a3`` in that frame. Order: pre-omega ``CA(i-1) C(i-1) N CA``, phi
    ``C(i-1) N CA C``, psi ``N CA C O`` (both sin and cos negated: + pi), chi1-4. The first residue's pre-omega and
    phi use zero "previous" atoms and are masked out, exactly as AlphaFold2.

    Args:
        aatype: ``[*, N]`` residue types (values above 20 are clamped to 20, unknown).
        all_atom_positions: ``[*, N, 37, 3]`` (Angstrom).
        all_atom_mask: ``[*, N, 37]``.
        eps: added under the square root of the (sin, cos) norm.

    Returns:
        dict with ``torsion_angles_sin_cos [*, N, 7, 2]``, ``alt_torsion_angles_sin_cos
        [*, N, 7, 2]`` (sign of the pi-periodic chi flipped) and ``torsion_angles_mask [*, N, 7]``.
    """
    _check_atom37("atom37_to_torsion_angles", all_atom_positions, all_atom_mask)
    x = all_atom_positions
    m = all_atom_mask.to(x.dtype)
    aa = aatype.long().clamp(0, rc.UNK_INDEX)
    prev_x = torch.cat([torch.zeros_like(x[..., :1, :, :]), x[..., :-1, :, :]], dim=-3)
    prev_m = torch.cat([torch.zeros_like(m[..., :1, :]), m[..., :-1, :]], dim=-2)

    pre_omega = torch.stack([prev_x[..., _CA, :], prev_x[..., _C, :], x[..., _N, :], x[..., _CA, :]], -2)
    phi = torch.stack([prev_x[..., _C, :], x[..., _N, :], x[..., _CA, :], x[..., _C, :]], -2)
    psi = torch.stack([x[..., _N, :], x[..., _CA, :], x[..., _C, :], x[..., _O, :]], -2)
    pre_omega_m = prev_m[..., _CA] * prev_m[..., _C] * m[..., _N] * m[..., _CA]
    phi_m = prev_m[..., _C] * m[..., _N] * m[..., _CA] * m[..., _C]
    psi_m = m[..., _N] * m[..., _CA] * m[..., _C] * m[..., _O]
    chi_pos, chi_m = _chi_atoms(aa, x, m)

    atoms = torch.cat([pre_omega[..., None, :, :], phi[..., None, :, :], psi[..., None, :, :], chi_pos], -3)
    mask = torch.cat([pre_omega_m[..., None], phi_m[..., None], psi_m[..., None], chi_m], -1)

    frames = Rigid.from_3_points(atoms[..., 1, :], atoms[..., 2, :], atoms[..., 0, :], eps=eps)
    local = frames.invert_apply(atoms[..., 3, :])  # [*, N, 7, 3]
    sin_cos = torch.stack([local[..., 2], local[..., 1]], -1)
    sin_cos = sin_cos / torch.sqrt((sin_cos**2).sum(-1, keepdim=True) + eps)
    sign = torch.ones(7, dtype=x.dtype, device=x.device)
    sign[2] = -1.0  # psi: (sin, cos) -> (-sin, -cos), i.e. + pi, as AlphaFold2
    sin_cos = sin_cos * sign[:, None]

    periodic = torch.tensor(rc.CHI_PI_PERIODIC, dtype=x.dtype, device=x.device)[aa]
    mirror = torch.cat([torch.ones(aa.shape + (3,), dtype=x.dtype, device=x.device), 1.0 - 2.0 * periodic], -1)
    return {
        "torsion_angles_sin_cos": sin_cos,
        "alt_torsion_angles_sin_cos": sin_cos * mirror[..., None],
        "torsion_angles_mask": mask,
    }
