"""Torsion angles: MDTraj reference values (1L2Y), AF2 sin/cos conventions, invariances."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gemmi
import numpy as np
import pytest
import torch

from tertiary import constants as rc
from tertiary.errors import InputError
from tertiary.geometry import atom37_to_torsion_angles, backbone_torsions, chi_angles, dihedral

DATA = Path(__file__).resolve().parents[1] / "data" / "geometry"


def read_atom37(path: Path, model: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """aatype [N], atom37 positions [N, 37, 3], mask [N, 37] of the first chain (gemmi)."""
    st = gemmi.read_structure(str(path))
    chain = st[model][0]
    residues = [r for r in chain if r.het_flag == "A"]
    aatype = np.array([rc.RESNAME_TO_INDEX.get(r.name, rc.UNK_INDEX) for r in residues])
    pos = np.zeros((len(residues), 37, 3))
    mask = np.zeros((len(residues), 37))
    for i, res in enumerate(residues):
        for atom in res:
            j = rc.ATOM_ORDER.get(atom.name)
            if j is not None and not mask[i, j]:
                pos[i, j] = atom.pos.tolist()
                mask[i, j] = 1.0
    return aatype, pos, mask


@pytest.fixture(scope="module")
def trp_cage() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    aatype, pos, mask = read_atom37(DATA / "1l2y.pdb.gz")
    return torch.tensor(aatype), torch.tensor(pos), torch.tensor(mask)


@pytest.fixture(scope="module")
def mdtraj_ref() -> dict[str, np.ndarray]:
    # bare NaN tokens: Python's json accepts them
    raw = json.loads((DATA / "dihedrals.json").read_text())
    return {k: np.asarray(v, dtype=np.float64) for k, v in raw.items()}


def _angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(np.angle(np.exp(1j * (a - b))))


def test_backbone_torsions_match_mdtraj(trp_cage, mdtraj_ref) -> None:
    aatype, pos, mask = trp_cage
    angles, valid = backbone_torsions(pos, mask)
    for k, name in enumerate(("phi", "psi", "omega")):
        ref = mdtraj_ref[name]
        np.testing.assert_array_equal(valid[:, k].numpy(), ~np.isnan(ref), err_msg=name)
        ok = ~np.isnan(ref)
        assert _angle_diff(angles[:, k].numpy()[ok], ref[ok]).max() < 1e-4, name


def test_chi_angles_match_mdtraj(trp_cage, mdtraj_ref) -> None:
    aatype, pos, mask = trp_cage
    chi, valid = chi_angles(aatype, pos, mask)
    for k in range(4):
        ref = mdtraj_ref[f"chi{k + 1}"]
        np.testing.assert_array_equal(valid[:, k].numpy(), ~np.isnan(ref), err_msg=f"chi{k + 1}")
        ok = ~np.isnan(ref)
        assert _angle_diff(chi[:, k].numpy()[ok], ref[ok]).max() < 1e-4


def test_af2_sin_cos_agree_with_dihedrals(trp_cage, mdtraj_ref) -> None:
    aatype, pos, mask = trp_cage
    out = atom37_to_torsion_angles(aatype, pos, mask)
    sc = out["torsion_angles_sin_cos"].numpy()
    m = out["torsion_angles_mask"].numpy()
    angle = np.arctan2(sc[..., 0], sc[..., 1])
    # phi and chi1-4 are the plain dihedrals
    for k, name in ((1, "phi"), (3, "chi1"), (4, "chi2"), (5, "chi3"), (6, "chi4")):
        ref = mdtraj_ref[name]
        np.testing.assert_array_equal(m[:, k] > 0, ~np.isnan(ref), err_msg=name)
        ok = ~np.isnan(ref)
        assert _angle_diff(angle[ok, k], ref[ok]).max() < 1e-4, name
    # pre-omega of residue i is MDTraj's omega of residue i-1
    ok = ~np.isnan(mdtraj_ref["omega"][:-1])
    assert _angle_diff(angle[1:, 0][ok], mdtraj_ref["omega"][:-1][ok]).max() < 1e-4
    assert m[0, 0] == 0 and m[0, 1] == 0
    # AF2's psi is the N-CA-C-O dihedral turned by pi: close to the true psi (O is anti to N(i+1))
    n, ca, c, o = (pos[:, rc.ATOM_ORDER[a]] for a in ("N", "CA", "C", "O"))
    assert _angle_diff(angle[:, 2], dihedral(n, ca, c, o).numpy() + np.pi).max() < 1e-6
    ok = ~np.isnan(mdtraj_ref["psi"])
    assert _angle_diff(angle[ok, 2], mdtraj_ref["psi"][ok]).max() < 0.2
    # unit norm where defined
    norm = np.linalg.norm(sc, axis=-1)
    assert np.allclose(norm[m > 0], 1.0, atol=1e-6)


def test_alt_torsions_flip_only_pi_periodic_chis() -> None:
    g = torch.Generator().manual_seed(0)
    aatype = torch.arange(21)
    pos = torch.randn(21, 37, 3, generator=g, dtype=torch.float64) * 3
    mask = torch.ones(21, 37, dtype=torch.float64)
    out = atom37_to_torsion_angles(aatype, pos, mask)
    sign = torch.ones(21, 7, dtype=torch.float64)
    sign[:, 3:] = 1 - 2 * torch.tensor(rc.CHI_PI_PERIODIC, dtype=torch.float64)
    torch.testing.assert_close(out["alt_torsion_angles_sin_cos"], out["torsion_angles_sin_cos"] * sign[..., None])
    assert int((sign < 0).sum()) == 4  # last chi of ASP, GLU, PHE, TYR
    # the alternative angle is the true angle + pi: swapping OD1/OD2-like partners of a planar
    # symmetric group gives it. Check on ASP chi2 by swapping OD1 and OD2 in a symmetric geometry.
    asp = rc.RESTYPE_ORDER["D"]
    cb, cg, od1, od2 = (rc.ATOM_ORDER[a] for a in ("CB", "CG", "OD1", "OD2"))
    p = pos[asp].clone()
    axis = (p[cg] - p[cb]) / (p[cg] - p[cb]).norm()
    v = p[od1] - p[cg]
    p[od2] = p[cg] + 2 * (v @ axis) * axis - v  # OD2 = OD1 rotated by pi about CB-CG
    swapped = p.clone()
    swapped[[od1, od2]] = p[[od2, od1]]
    a = atom37_to_torsion_angles(aatype[asp : asp + 1], p[None], mask[:1])
    b = atom37_to_torsion_angles(aatype[asp : asp + 1], swapped[None], mask[:1])
    torch.testing.assert_close(b["torsion_angles_sin_cos"][0, 4], a["alt_torsion_angles_sin_cos"][0, 4])


def test_torsions_invariant_to_rigid_motion_and_batched(trp_cage) -> None:
    aatype, pos, mask = trp_cage
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    q = q * torch.sign(torch.linalg.det(q))
    moved = pos @ q.T + torch.tensor([10.0, -4.0, 7.0], dtype=torch.float64)
    a, _ = backbone_torsions(pos, mask)
    b, _ = backbone_torsions(moved, mask)
    torch.testing.assert_close(a, b, atol=1e-9, rtol=0)
    batch = torch.stack([pos, moved])
    out = atom37_to_torsion_angles(torch.stack([aatype, aatype]), batch, torch.stack([mask, mask]))
    single = atom37_to_torsion_angles(aatype, pos, mask)
    m = single["torsion_angles_mask"][..., None]  # masked-out entries (first residue) use zero atoms
    torch.testing.assert_close(out["torsion_angles_sin_cos"][1] * m, single["torsion_angles_sin_cos"] * m, atol=1e-9, rtol=0)
    torch.testing.assert_close(out["torsion_angles_sin_cos"][0], single["torsion_angles_sin_cos"], atol=0, rtol=0)


def test_dihedral_known_values_and_gradient() -> None:
    p0 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    p1 = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64)
    p2 = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    for deg in (0.0, 60.0, -60.0, 120.0, 180.0):
        t = math.radians(deg)
        p3 = torch.tensor([math.cos(t), math.sin(t), 1.0], dtype=torch.float64)
        d = float(dihedral(p0, p1, p2, p3))
        assert abs(abs(d) - abs(t)) < 1e-12 and (deg in (0.0, 180.0) or np.sign(d) == np.sign(t))
    x = torch.tensor([0.3, 0.8, 1.4], dtype=torch.float64, requires_grad=True)  # away from +-pi
    assert torch.autograd.gradcheck(lambda x: dihedral(p0, p1, p2, x), (x,))


def test_backbone_torsions_chain_break(trp_cage) -> None:
    aatype, pos, mask = trp_cage
    broken = pos.clone()
    broken[10:] += torch.tensor([30.0, 0.0, 0.0], dtype=torch.float64)
    _, valid = backbone_torsions(broken, mask)
    assert not valid[9, 1] and not valid[9, 2] and not valid[10, 0]
    _, valid_nocheck = backbone_torsions(broken, mask, max_peptide_bond=None)
    assert valid_nocheck[9, 1] and valid_nocheck[10, 0]


def test_bad_inputs_raise_input_error() -> None:
    with pytest.raises(InputError):
        backbone_torsions(torch.zeros(5, 36, 3))
    with pytest.raises(InputError):
        chi_angles(torch.zeros(4, dtype=torch.long), torch.zeros(5, 37, 3))
    with pytest.raises(InputError):
        chi_angles(torch.zeros(5), torch.zeros(5, 37, 3))
