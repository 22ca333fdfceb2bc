"""Torsions -> rigid-group frames -> atom14 -> atom37 (Algorithm 24) without reference data."""

from __future__ import annotations

import math

import numpy as np
import torch

from tertiary import constants as rc
from tertiary.geometry.rigid import Rigid, Rotation
from tertiary.models.alphafold.structure.atoms_from_frames import (
    atom14_to_atom37,
    atom37_exists,
    frames_to_atom14_positions,
    pseudo_beta,
    torsion_angles_to_frames,
)

F64 = torch.float64
ALL_TYPES = torch.arange(21)


def random_backbone(n: int, seed: int = 0) -> Rigid:
    g = torch.Generator().manual_seed(seed)
    return Rigid(Rotation(quats=torch.randn(n, 4, generator=g, dtype=F64)), 10 * torch.randn(n, 3, generator=g, dtype=F64))


def random_angles(n: int, seed: int = 1) -> torch.Tensor:
    theta = torch.rand(n, 7, generator=torch.Generator().manual_seed(seed), dtype=F64) * 2 * math.pi
    return torch.stack([torch.sin(theta), torch.cos(theta)], dim=-1)


def atoms(backbone: Rigid, angles: torch.Tensor, aatype: torch.Tensor) -> torch.Tensor:
    return frames_to_atom14_positions(torsion_angles_to_frames(backbone, angles, aatype), aatype)


def test_identity_frames_give_literature_backbone() -> None:
    aatype = ALL_TYPES[:20]
    ident = Rigid.identity((20,), dtype=F64, fmt="rot_mat")
    zero = torch.zeros(20, 7, 2, dtype=F64)
    zero[..., 1] = 1  # all torsions 0
    pos = atoms(ident, zero, aatype)
    lit = torch.tensor(rc.RESTYPE_ATOM14_RIGID_GROUP_POSITIONS, dtype=F64)[:20]
    # N, CA, C are in the backbone group (frame = identity)
    torch.testing.assert_close(pos[:, :3], lit[:, :3], atol=1e-12, rtol=0)


def test_equivariant_under_global_motion() -> None:
    aatype = ALL_TYPES
    bb, ang = random_backbone(21), random_angles(21)
    g = random_backbone(1, seed=9)
    moved = Rigid(Rotation(rot_mats=g.get_rots().get_rot_mats().expand(21, 3, 3)), g.get_trans().expand(21, 3)).compose(bb)
    expected = g[0].apply(atoms(bb, ang, aatype))
    mask = torch.tensor(rc.RESTYPE_ATOM14_MASK, dtype=F64)[aatype][..., None]
    torch.testing.assert_close(atoms(moved, ang, aatype), expected * mask, atol=1e-10, rtol=0)


def test_bond_lengths_do_not_depend_on_torsions() -> None:
    aatype = ALL_TYPES[:20]
    bb = random_backbone(20)
    a = atoms(bb, random_angles(20, 1), aatype)
    b = atoms(bb, random_angles(20, 2), aatype)
    # CA-CB (chi-independent) and the CB-CG bond of residues that have a CG
    for res in range(20):
        name = rc.RESNAMES[res]
        names = list(rc.RESTYPE_NAME_TO_ATOM14_NAMES[name])
        for x, y in (("CA", "CB"), ("CB", "CG"), ("N", "CA")):
            if x in names and y in names:
                i, j = names.index(x), names.index(y)
                da = (a[res, i] - a[res, j]).norm()
                db = (b[res, i] - b[res, j]).norm()
                assert abs(da - db) < 1e-5, f"{name} {x}-{y}: {da} vs {db}"  # tables are float32
        # backbone atoms do not move with side-chain torsions
        torch.testing.assert_close(a[res, :3], b[res, :3], atol=1e-10, rtol=0)


def test_chi1_rotation_moves_only_side_chain_beyond_cb() -> None:
    aatype = torch.full((1,), rc.RESNAME_TO_INDEX["LYS"])
    bb = random_backbone(1)
    ang = random_angles(1)
    ang2 = ang.clone()
    ang2[0, 3] = torch.tensor([math.sin(0.7), math.cos(0.7)], dtype=F64)  # chi1
    a, b = atoms(bb, ang, aatype)[0], atoms(bb, ang2, aatype)[0]
    names = list(rc.RESTYPE_NAME_TO_ATOM14_NAMES["LYS"])
    for atom in ("N", "CA", "C", "CB"):
        torch.testing.assert_close(a[names.index(atom)], b[names.index(atom)], atol=1e-10, rtol=0)
    assert (a[names.index("CG")] - b[names.index("CG")]).norm() > 0.1


def test_atom14_to_atom37_matches_tables() -> None:
    aatype = torch.tensor([0, 4, 7, 17, 20, 12])
    g = torch.Generator().manual_seed(3)
    x14 = torch.randn(6, 14, 3, generator=g, dtype=F64)
    x37 = atom14_to_atom37(x14, aatype)
    expected = torch.zeros(6, 37, 3, dtype=F64)
    for r, t in enumerate(aatype.tolist()):
        for slot in range(14):
            if rc.RESTYPE_ATOM14_MASK[t, slot]:
                expected[r, rc.RESTYPE_ATOM14_TO_ATOM37[t, slot]] = x14[r, slot]
    torch.testing.assert_close(x37, expected, atol=0, rtol=0)
    np.testing.assert_array_equal(atom37_exists(aatype).numpy(), rc.RESTYPE_ATOM37_MASK[aatype.numpy()])


def test_batched_leading_dims_and_pseudo_beta() -> None:
    aatype = ALL_TYPES[None].expand(2, 21)
    bb = Rigid.cat([random_backbone(21, 0).unsqueeze(0), random_backbone(21, 5).unsqueeze(0)], dim=0)
    ang = random_angles(21)[None].expand(2, 21, 7, 2)
    pos = atoms(bb, ang, aatype)
    assert pos.shape == (2, 21, 14, 3)
    torch.testing.assert_close(pos[1], atoms(bb[1], ang[1], aatype[1]), atol=1e-12, rtol=0)
    x37 = atom14_to_atom37(pos, aatype)
    cb, _ = pseudo_beta(aatype, x37)
    gly = rc.RESTYPE_ORDER["G"]
    torch.testing.assert_close(cb[:, gly], x37[:, gly, rc.ATOM_ORDER["CA"]])
    torch.testing.assert_close(cb[:, 0], x37[:, 0, rc.ATOM_ORDER["CB"]])
