"""atom14 <-> atom37, pseudo-beta and backbone frames (unit checks; OpenFold tensors in test_geometry_refs.py)."""

from __future__ import annotations

import pytest
import torch

from tertiary import constants as rc
from tertiary.errors import InputError
from tertiary.geometry import (
    atom14_mask,
    atom14_to_atom37,
    atom37_mask,
    atom37_to_atom14,
    backbone_frames,
    pseudo_beta,
)


def test_atom14_atom37_round_trip_all_residue_types() -> None:
    g = torch.Generator().manual_seed(0)
    aatype = torch.arange(21).repeat(2).reshape(2, 21)
    a14 = torch.randn(2, 21, 14, 3, generator=g, dtype=torch.float64) * atom14_mask(aatype)[..., None].double()
    a37 = atom14_to_atom37(a14, aatype)
    assert a37.shape == (2, 21, 37, 3)
    torch.testing.assert_close(atom37_to_atom14(a37, aatype), a14, atol=0, rtol=0)
    # atom names are preserved: slot k of atom14 lands on the atom37 type of the same name
    for r in range(20):
        names = rc.RESIDUE_ATOMS[rc.RESNAMES[r]]
        for k, name in enumerate(names):
            torch.testing.assert_close(a37[0, r, rc.ATOM_ORDER[name]], a14[0, r, k])
    # masks convert too, and agree with the tables
    torch.testing.assert_close(atom14_to_atom37(atom14_mask(aatype), aatype), atom37_mask(aatype))
    assert int(atom37_mask(aatype)[0, 20].sum()) == 0  # UNK has no atoms


def test_pseudo_beta_is_cb_or_ca_for_glycine() -> None:
    g = torch.Generator().manual_seed(1)
    aatype = torch.tensor([rc.RESTYPE_ORDER["G"], rc.RESTYPE_ORDER["A"], rc.RESTYPE_ORDER["W"]])
    pos = torch.randn(3, 37, 3, generator=g)
    mask = torch.ones(3, 37)
    mask[2, rc.ATOM_ORDER["CB"]] = 0
    pb, pbm = pseudo_beta(aatype, pos, mask)
    torch.testing.assert_close(pb[0], pos[0, rc.ATOM_ORDER["CA"]])
    torch.testing.assert_close(pb[1], pos[1, rc.ATOM_ORDER["CB"]])
    assert pbm.tolist() == [1.0, 1.0, 0.0]


def test_backbone_frame_axes() -> None:
    g = torch.Generator().manual_seed(2)
    n, ca, c = torch.randn(3, 10, 3, generator=g, dtype=torch.float64).unbind(0)
    frames = backbone_frames(n, ca, c)
    local_c = frames.invert_apply(c)
    local_n = frames.invert_apply(n)
    torch.testing.assert_close(frames.get_trans(), ca)
    # C on +x, N in the xy plane with y > 0, right-handed rotation (eps=1e-8 under the norms, as AF2)
    torch.testing.assert_close(local_c[:, 1:], torch.zeros(10, 2, dtype=torch.float64), atol=1e-7, rtol=0)
    assert bool((local_c[:, 0] > 0).all()) and bool((local_n[:, 1] > 0).all())
    torch.testing.assert_close(local_n[:, 2], torch.zeros(10, dtype=torch.float64), atol=1e-7, rtol=0)
    rots = frames.get_rots().get_rot_mats()
    torch.testing.assert_close(torch.linalg.det(rots), torch.ones(10, dtype=torch.float64))


def test_bad_inputs() -> None:
    with pytest.raises(InputError):
        atom14_to_atom37(torch.zeros(5, 13, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(InputError):
        atom37_to_atom14(torch.zeros(5, 37, 3), torch.full((5,), 25))
    with pytest.raises(InputError):
        pseudo_beta(torch.zeros(5), torch.zeros(5, 37, 3))
    with pytest.raises(InputError):
        backbone_frames(torch.zeros(4, 3), torch.zeros(5, 3), torch.zeros(5, 3))
