"""AlphaFold2 loss terms against OpenFold's breakdown on the reference batch (``refs/openfold/loss``).

The model outputs the loss reads are OpenFold's own (cycle 2 + heads), so these tests check the
loss alone. Tolerance: relative 1e-5 (float32 round-off of sums over ~10^5 terms).
"""

import json

import numpy as np
import pytest
import torch

from conftest import open_refs, require
from tertiary.models.alphafold.loss import LossConfig, alphafold_loss, renamed_ground_truth, structural_violations


@pytest.fixture(scope="module")
def ref():
    root = open_refs("openfold")
    meta = json.loads(require(root / "meta.json").read_text())
    batch = {k: torch.tensor(v) for k, v in np.load(require(root / "loss" / "batch.npz")).items()}
    cycles = meta["dims"]["n_cycles"]
    last = np.load(require(root / "outputs" / f"cycle{cycles - 1}.npz"))
    heads = np.load(require(root / "outputs" / "heads.npz"))
    out = {k[len("sm."):]: torch.tensor(last[k]) for k in last.files if k.startswith("sm.")}
    out["final_atom_positions"] = torch.tensor(last["final_atom_positions"])
    for k in heads.files:
        if k.endswith("_logits"):
            out[k] = torch.tensor(heads[k])
    values = json.loads(require(root / "loss" / "loss_values.json").read_text())
    renamed = np.load(require(root / "loss" / "renamed_gt.npz"))
    return meta, batch, out, values, renamed


def _config(meta, weights):
    loss = json.loads(json.dumps(meta["config"]["loss"]))
    for name, w in weights.items():
        if name in loss:
            loss[name]["weight"] = w
    return LossConfig.from_openfold(loss)


@pytest.mark.parametrize("preset", ["initial_training", "finetuning_ptm"])
def test_every_term_matches_openfold(ref, preset):
    meta, batch, out, values, _ = ref
    expected = values[preset]
    cfg = _config(meta, expected["weights"])
    total, terms = alphafold_loss(out, batch, cfg)
    names = {"plddt": "plddt_loss"}
    for key, value in terms.items():
        assert float(value) == pytest.approx(expected[names.get(key, key)], rel=1e-5), key
    assert float(total) == pytest.approx(expected["loss"], rel=1e-5)


def test_renamed_ground_truth_and_violation_subterms(ref):
    meta, batch, out, values, renamed = ref
    mine = renamed_ground_truth(batch, out["positions"][-1])
    for key in renamed.files:
        np.testing.assert_allclose(mine[key].numpy(), renamed[key], atol=1e-6)
    v = structural_violations(out["positions"][-1], batch, LossConfig.from_openfold(meta["config"]["loss"]))
    expected = values["initial_training"]["violation_terms"]
    got = {
        "bonds_c_n_loss_mean": v["bonds"]["c_n_loss_mean"],
        "angles_ca_c_n_loss_mean": v["bonds"]["ca_c_n_loss_mean"],
        "angles_c_n_ca_loss_mean": v["bonds"]["c_n_ca_loss_mean"],
        "clashes_per_atom_loss_sum_total": v["clashes"]["per_atom_loss_sum"].sum(),
        "within_residues_per_atom_loss_sum_total": v["within"]["per_atom_loss_sum"].sum(),
    }
    for key, value in expected.items():
        assert float(got[key]) == pytest.approx(value, rel=1e-5), key


def test_loss_is_differentiable_in_the_structure(ref):
    meta, batch, out, values, _ = ref
    out = dict(out)
    frames = out["frames"].clone().requires_grad_(True)
    positions = out["positions"].clone().requires_grad_(True)
    out["frames"], out["positions"] = frames, positions
    total, _ = alphafold_loss(out, batch, LossConfig.preset("finetuning_ptm"))
    total.backward()
    assert frames.grad.abs().sum() > 0 and positions.grad.abs().sum() > 0
    assert torch.isfinite(frames.grad).all() and torch.isfinite(positions.grad).all()
