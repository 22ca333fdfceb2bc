"""Geometry against OpenFold tensors (``$TERTIARY_REFS/openfold``): torsions, frames, pseudo-beta, atom14."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import open_refs, require

from tertiary.geometry import (
    atom14_to_atom37,
    atom37_to_atom14,
    atom37_to_torsion_angles,
    backbone_frames_from_atom37,
    pseudo_beta,
)


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    folder = open_refs("openfold")
    with np.load(require(folder / "loss" / "batch.npz")) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def units() -> dict[str, np.ndarray]:
    folder = open_refs("openfold")
    with np.load(require(folder / "units" / "frames_torsions_to_atoms.npz")) as data:
        return {k: data[k] for k in data.files}


def _inputs(batch):
    return (
        torch.tensor(batch["aatype"]),
        torch.tensor(batch["all_atom_positions"]),
        torch.tensor(batch["all_atom_mask"]),
    )


def test_chi_sin_cos_and_mask_match_openfold(batch) -> None:
    aatype, pos, mask = _inputs(batch)
    out = atom37_to_torsion_angles(aatype, pos, mask)
    chi_mask = batch["chi_mask"]
    np.testing.assert_array_equal(out["torsion_angles_mask"][:, 3:].numpy(), chi_mask)
    assert chi_mask.sum() > 20  # the reference really has side chains
    got = out["torsion_angles_sin_cos"][:, 3:].numpy() * chi_mask[..., None]
    np.testing.assert_allclose(got, batch["chi_angles_sin_cos"] * chi_mask[..., None], atol=2e-5)


def test_backbone_frames_match_openfold(batch) -> None:
    _, pos, mask = _inputs(batch)
    frames, fmask = backbone_frames_from_atom37(pos, mask)
    np.testing.assert_array_equal(fmask.numpy(), batch["backbone_rigid_mask"])
    m = batch["backbone_rigid_mask"][:, None, None]
    np.testing.assert_allclose(frames.to_tensor_4x4().numpy() * m, batch["backbone_rigid_tensor"] * m, atol=1e-5)


def test_pseudo_beta_and_atom14_match_openfold(batch) -> None:
    aatype, pos, mask = _inputs(batch)
    pb, pbm = pseudo_beta(aatype, pos, mask)
    np.testing.assert_allclose(pb.numpy(), batch["pseudo_beta"], atol=1e-6)
    np.testing.assert_array_equal(pbm.numpy(), batch["pseudo_beta_mask"])
    np.testing.assert_allclose(atom37_to_atom14(pos, aatype).numpy(), batch["atom14_gt_positions"], atol=1e-6)
    np.testing.assert_array_equal(atom37_to_atom14(mask, aatype).numpy(), batch["atom14_gt_exists"])


def test_atom14_to_atom37_and_pseudo_beta_units(units) -> None:
    aatype = torch.tensor(units["in/aatype"])
    a14 = torch.tensor(units["out/atom14_pos"])
    a37 = atom14_to_atom37(a14, aatype)
    np.testing.assert_allclose(a37.numpy(), units["out/atom37_pos"], atol=1e-6)
    pb, pbm = pseudo_beta(aatype, a37, torch.tensor(units["in/atom37_mask_for_pseudo_beta"]))
    np.testing.assert_allclose(pb.numpy(), units["out/pseudo_beta"], atol=1e-6)
    np.testing.assert_array_equal(pbm.numpy(), units["out/pseudo_beta_mask"])
