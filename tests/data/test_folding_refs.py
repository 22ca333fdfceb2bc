"""Ground-truth features against OpenFold's supervised batch (``refs/openfold/loss/batch.npz``)."""

import json

import numpy as np
import pytest
import torch

from conftest import open_refs, require
from tertiary.data.folding import ground_truth_features


def test_ground_truth_features_match_openfold():
    root = open_refs("openfold")
    meta = json.loads(require(root / "meta.json").read_text())
    batch = np.load(require(root / "loss" / "batch.npz"))
    feats = ground_truth_features(
        torch.tensor(batch["aatype"]), torch.tensor(batch["all_atom_positions"]), torch.tensor(batch["all_atom_mask"])
    )
    keys = [k for k in meta["loss_gt_keys"] if k not in {"resolution", "is_distillation"}]
    keys += ["atom14_atom_exists", "residx_atom14_to_atom37", "residx_atom37_to_atom14", "atom37_atom_exists"]
    for key in keys:
        ref = batch[key]
        # frames / chi angles come from float32 trigonometry of coordinates up to ~50 A
        np.testing.assert_allclose(feats[key].numpy(), ref, atol=2e-5, rtol=0, err_msg=key)
