"""Checks of the AlphaFold2 residue tables that do not rely on copying their values.

Ideal residues are rebuilt from ``RESTYPE_RIGID_GROUP_DEFAULT_FRAME`` and the ideal
positions; their bond lengths / angles must agree with the independent Engh & Huber
statistics, and the chi angles measured on them must equal the torsions applied.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tertiary import constants as rc


def _rot_x(angle: float) -> np.ndarray:
    m = np.eye(4)
    c, s = math.cos(angle), math.sin(angle)
    m[1:3, 1:3] = [[c, -s], [s, c]]
    return m


def _build(restype: int, torsions: np.ndarray) -> dict[str, np.ndarray]:
    """Atom positions (backbone frame) of residue ``restype`` for 7 torsions
    (pre-omega, phi, psi, chi1-4), composing default frames as AlphaFold2 does."""
    frames = np.zeros((8, 4, 4))
    frames[0] = np.eye(4)
    for g in range(1, 8):
        local = rc.RESTYPE_RIGID_GROUP_DEFAULT_FRAME[restype, g].astype(np.float64) @ _rot_x(
            torsions[g - 1]
        )
        parent = frames[g - 1] if g >= 5 else frames[0]
        frames[g] = parent @ local
    atoms = {}
    for name, group, xyz in rc.RIGID_GROUP_ATOM_POSITIONS[rc.RESNAMES[restype]]:
        atoms[name] = (frames[group] @ np.array([*xyz, 1.0]))[:3]
    return atoms


def _dihedral(p0, p1, p2, p3) -> float:
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / np.linalg.norm(b1)
    v = b0 - np.dot(b0, b1n) * b1n
    w = b2 - np.dot(b2, b1n) * b1n
    return math.atan2(np.dot(np.cross(b1n, v), w), np.dot(v, w))


def _angle(p0, p1, p2) -> float:
    a, b = p0 - p1, p2 - p1
    return math.acos(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_vocabulary():
    assert "".join(rc.RESTYPES) == "ARNDCQEGHILKMFPSTWYV"
    assert [rc.RESTYPE_1TO3[r] for r in rc.RESTYPES] == sorted(rc.RESTYPE_3TO1)
    assert rc.RESTYPE_NUM == 20 and rc.UNK_INDEX == 20 and rc.RESTYPES_WITH_X[20] == "X"
    assert rc.ATOM_TYPE_NUM == 37 and rc.ATOM_TYPES[:5] == ("N", "CA", "C", "CB", "O")
    assert rc.ATOM_TYPES[-1] == "OXT" and len(set(rc.ATOM_TYPES)) == 37
    for r in range(20):
        names = rc.RESTYPE_NAME_TO_ATOM14_NAMES[rc.RESNAMES[r]]
        assert len(names) == 14 and names[:4] == ("N", "CA", "C", "O")
        rigid = {a for a, _, _ in rc.RIGID_GROUP_ATOM_POSITIONS[rc.RESNAMES[r]]}
        assert rigid == set(rc.RESIDUE_ATOMS[rc.RESNAMES[r]])


def test_atom14_atom37_maps_are_inverse():
    for r in range(21):
        for i in range(14):
            if rc.RESTYPE_ATOM14_MASK[r, i]:
                j = rc.RESTYPE_ATOM14_TO_ATOM37[r, i]
                assert rc.RESTYPE_ATOM37_MASK[r, j] == 1
                assert rc.RESTYPE_ATOM37_TO_ATOM14[r, j] == i
    assert rc.RESTYPE_ATOM14_MASK.sum() == rc.RESTYPE_ATOM37_MASK.sum() == sum(
        len(v) for v in rc.RESIDUE_ATOMS.values()
    )
    assert rc.RESTYPE_ATOM14_MASK[20].sum() == 0


def test_chi_tables_consistent():
    mask = np.array(rc.CHI_ANGLES_MASK)
    assert mask.shape == (21, 4) and np.array(rc.CHI_PI_PERIODIC).shape == (21, 4)
    assert np.all(np.array(rc.CHI_PI_PERIODIC) <= mask)
    for r in range(20):
        for k, chi in enumerate(rc.CHI_ANGLES_ATOMS[rc.RESNAMES[r]]):
            assert [rc.ATOM_TYPES[i] for i in rc.CHI_ATOM_INDICES[r, k]] == chi
            # Consecutive chis share three atoms (a chain of torsions).
            if k:
                assert rc.CHI_ANGLES_ATOMS[rc.RESNAMES[r]][k - 1][1:] == chi[:3]
    assert mask.sum(axis=1).tolist()[:20] == [
        len(rc.CHI_ANGLES_ATOMS[rc.RESNAMES[r]]) for r in range(20)
    ]


@pytest.mark.parametrize("restype", range(20))
def test_rebuilt_ideal_residue_matches_engh_huber(restype):
    rng = np.random.default_rng(restype)
    resname = rc.RESNAMES[restype]
    for trial in range(3):
        torsions = np.zeros(7) if trial == 0 else rng.uniform(-math.pi, math.pi, 7)
        atoms = _build(restype, torsions)
        # Every bond length agrees with Engh & Huber (proline's ring closure CD-N exists only
        # for the puckered chi angles, so it is not checked).
        for bond in rc.RESIDUE_BONDS[resname]:
            if resname == "PRO" and {bond.atom1_name, bond.atom2_name} == {"CD", "N"}:
                continue
            d = np.linalg.norm(atoms[bond.atom1_name] - atoms[bond.atom2_name])
            assert abs(d - bond.length) < 0.05, (resname, bond, d)
        for ba in rc.RESIDUE_BOND_ANGLES[resname]:
            if resname == "PRO" and {"CD", "N"} <= {ba.atom1_name, ba.atom2_name, ba.atom3_name}:
                continue
            ang = _angle(atoms[ba.atom1_name], atoms[ba.atom2_name], atoms[ba.atom3_name])
            assert abs(ang - ba.angle_rad) < math.radians(6), (resname, ba, math.degrees(ang))
        # The chi angle measured on the rebuilt residue is the torsion that was applied.
        for k, chi in enumerate(rc.CHI_ANGLES_ATOMS[resname]):
            measured = _dihedral(*(atoms[a] for a in chi))
            diff = (measured - torsions[3 + k] + math.pi) % (2 * math.pi) - math.pi
            assert abs(diff) < 1e-5, (resname, k, measured, torsions[3 + k])


def test_backbone_frame_convention():
    for r in range(20):
        atoms = _build(r, np.zeros(7))
        assert np.allclose(atoms["CA"], 0)
        assert atoms["C"][1] == pytest.approx(0, abs=1e-3) and atoms["C"][0] > 0
        assert atoms["N"][2] == pytest.approx(0, abs=1e-3) and atoms["N"][1] > 0


def test_ambiguity_tables():
    for r in range(21):
        perm = rc.RESTYPE_RENAME_ATOM14_MATRICES[r]
        assert np.allclose(perm @ perm, np.eye(14))
        swapped = np.argmax(perm, axis=1)
        assert np.array_equal(swapped, rc.RESTYPE_ATOM14_AMBIGUOUS_SWAP_INDEX[r])
        assert np.array_equal(swapped != np.arange(14), rc.RESTYPE_ATOM14_IS_AMBIGUOUS[r] == 1)
    # Symmetric atoms sit at mirror positions w.r.t. the plane of the parent atoms: the
    # distance to the axis of the last chi is the same for both partners.
    for resname, swaps in rc.RESIDUE_ATOM_RENAMING_SWAPS.items():
        r = rc.RESNAME_TO_INDEX[resname]
        atoms = _build(r, np.zeros(7))
        last = rc.CHI_ANGLES_ATOMS[resname][-1]
        axis = atoms[last[2]] - atoms[last[1]]
        axis /= np.linalg.norm(axis)
        for a, b in swaps.items():
            da, db = (atoms[x] - atoms[last[2]] for x in (a, b))
            ra = np.linalg.norm(da - np.dot(da, axis) * axis)
            rb = np.linalg.norm(db - np.dot(db, axis) * axis)
            assert abs(ra - rb) < 0.05, (resname, a, b)
        assert rc.RESTYPE_RIGIDGROUP_IS_AMBIGUOUS[r].sum() == 1
        assert np.array(rc.CHI_PI_PERIODIC[r]).sum() == 1


def test_atom14_bounds_contain_ideal_geometry():
    bounds = rc.make_atom14_dists_bounds()
    assert all(v.shape == (21, 14, 14) for v in bounds.values())
    for r in range(20):
        names = rc.RESTYPE_NAME_TO_ATOM14_NAMES[rc.RESNAMES[r]]
        atoms = _build(r, np.zeros(7))
        for bond in rc.RESIDUE_BONDS[rc.RESNAMES[r]] + rc.RESIDUE_VIRTUAL_BONDS[rc.RESNAMES[r]]:
            i, j = names.index(bond.atom1_name), names.index(bond.atom2_name)
            d = np.linalg.norm(atoms[bond.atom1_name] - atoms[bond.atom2_name])
            assert bounds["lower_bound"][r, i, j] <= d <= bounds["upper_bound"][r, i, j]
            assert bounds["stddev"][r, i, j] == pytest.approx(bond.stddev, rel=1e-5)


def test_between_residue_geometry_is_self_consistent():
    for cos_mean, deg in ((rc.BETWEEN_RES_COS_ANGLES_C_N_CA[0], 121.352),
                          (rc.BETWEEN_RES_COS_ANGLES_CA_C_N[0], 116.568)):
        assert math.degrees(math.acos(cos_mean)) == pytest.approx(deg, abs=0.01)
    # The trans CA-CA distance follows from the ideal peptide geometry (planar, omega = 180).
    ca_c = rc.RESIDUE_BONDS["ALA"][[b[:2] for b in rc.RESIDUE_BONDS["ALA"]].index(("CA", "C"))]
    n_ca = rc.RESIDUE_BONDS["ALA"][[b[:2] for b in rc.RESIDUE_BONDS["ALA"]].index(("N", "CA"))]
    t1 = math.acos(rc.BETWEEN_RES_COS_ANGLES_CA_C_N[0])
    t2 = math.acos(rc.BETWEEN_RES_COS_ANGLES_C_N_CA[0])
    c_n = rc.BETWEEN_RES_BOND_LENGTH_C_N[0]
    ca1 = np.array([ca_c.length, 0.0])
    n = c_n * np.array([math.cos(t1), math.sin(t1)])
    # CA(i+1): from N, at angle t2 to N->C, on the side opposite to CA(i) (trans).
    u = -n / np.linalg.norm(n)
    rot = np.array([[math.cos(t2), math.sin(t2)], [-math.sin(t2), math.cos(t2)]])
    ca2 = n + n_ca.length * (rot @ u)
    assert np.linalg.norm(ca2 - ca1) == pytest.approx(rc.CA_CA, abs=0.02)


def test_hhblits_mapping_keeps_letters():
    for hh_id, letter in rc.ID_TO_HHBLITS_AA.items():
        assert rc.HHBLITS_AA_TO_ID[letter] == hh_id
        assert rc.RESTYPES_WITH_X_AND_GAP[rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE[hh_id]] == letter
    assert rc.HHBLITS_AA_TO_ID["-"] == 21 and rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE[21] == 21
    assert rc.HHBLITS_AA_TO_ID["B"] == rc.HHBLITS_AA_TO_ID["D"]
    assert rc.HHBLITS_AA_TO_ID["Z"] == rc.HHBLITS_AA_TO_ID["E"]


def test_arrays_read_only():
    with pytest.raises(ValueError):
        rc.RESTYPE_ATOM14_MASK[0, 0] = 0
