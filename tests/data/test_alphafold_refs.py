"""MSA parsing and AlphaFold2 input features against OpenFold's reference tensors (PDB 2q2k A).

The refs (``$TERTIARY_REFS/openfold``, see its README) hold OpenFold's raw features (parsed MSA,
HHblits order) and the sampled features it fed its model. The deterministic parts are compared
exactly. The sampled parts (which rows became cluster centres, the BERT masking, the extra-MSA
order) come from Python / NumPy / torch global RNGs and cannot be reproduced; for those, the
tests recover OpenFold's choices from the stored tensors and check that, given the same choices,
our cluster assignment, cluster profiles, deletion features and masking bookkeeping give
OpenFold's numbers. Every size is read from ``meta.json``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import open_refs, require

from tertiary import constants as rc
from tertiary.data.folding import ground_truth_features
from tertiary.data.msa_features import (
    MSAFeatureConfig,
    build_features,
    deletion_value,
    nearest_neighbor_clusters,
    summarize_clusters,
)
from tertiary.sequence import read_fasta, read_msa


@pytest.fixture(scope="module")
def refs():
    folder = open_refs("openfold")
    meta = json.loads(require(folder / "meta.json").read_text())
    inputs = folder / "inputs"
    return {
        "meta": meta,
        "fasta": require(inputs / "2q2k_A.fasta"),
        "a3m": require(inputs / "2q2k_A.a3m"),
        "raw": dict(np.load(require(inputs / "raw_features.npz"))),
        "features": dict(np.load(require(inputs / "features.npz"))),
    }


def _config(meta: dict) -> MSAFeatureConfig:
    data = meta["config"]["data"]
    return MSAFeatureConfig(
        max_msa_clusters=data["predict"]["max_msa_clusters"],
        max_extra_msa=data["predict"]["max_extra_msa"],
        num_recycles=data["common"]["max_recycling_iters"],
        resample_msa_in_recycling=data["common"]["resample_msa_in_recycling"],
        masked_msa_replace_fraction=data["predict"]["masked_msa_replace_fraction"],
        uniform_prob=data["common"]["masked_msa"]["uniform_prob"],
        profile_prob=data["common"]["masked_msa"]["profile_prob"],
        same_prob=data["common"]["masked_msa"]["same_prob"],
        max_templates=data["predict"]["max_templates"],
        reduce_msa_clusters_by_max_templates=data["common"]["reduce_msa_clusters_by_max_templates"],
    )


def test_parsed_msa_matches_openfold_raw_features(refs):
    raw = refs["raw"]
    msa = read_msa(refs["a3m"]).deduplicate()
    assert msa.depth == refs["meta"]["protein"]["msa_rows_after_dedup"]
    hh_to_af = np.asarray(rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE)
    np.testing.assert_array_equal(msa.sequences, hh_to_af[raw["msa"]])
    np.testing.assert_array_equal(msa.deletion_matrix, raw["deletion_matrix_int"])
    record = read_fasta(refs["fasta"])[0]
    assert record.sequence == refs["meta"]["protein"]["sequence"]
    np.testing.assert_array_equal(record.aatype, raw["aatype"].argmax(-1))


def test_deterministic_features_equal_openfold(refs):
    meta, ref = refs["meta"], refs["features"]
    record = read_fasta(refs["fasta"])[0]
    batch = build_features(record.sequence, read_msa(refs["a3m"]), _config(meta), seed=0)
    n_cycles = meta["n_cycles"]
    deterministic = [
        "aatype", "residue_index", "seq_length", "seq_mask", "target_feat", "msa_mask", "msa_row_mask",
        "extra_msa_mask", "extra_msa_row_mask", "residx_atom14_to_atom37", "residx_atom37_to_atom14",
        "atom14_atom_exists", "atom37_atom_exists",
    ]  # fmt: skip
    for key in deterministic:
        assert batch[key].shape[-1] == n_cycles
        np.testing.assert_array_equal(batch[key].numpy(), ref[key], err_msg=key)
        assert batch[key].numpy().dtype == ref[key].dtype, key
    for key in ["msa_feat", "bert_mask", "true_msa", "extra_msa", "extra_has_deletion", "extra_deletion_value"]:
        assert tuple(batch[key].shape) == ref[key].shape, key
        assert batch[key].numpy().dtype == ref[key].dtype, key


def _row_index(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Index in ``table`` of each row of ``rows`` (rows of ``table`` are unique)."""
    lookup = {r.tobytes(): i for i, r in enumerate(table)}
    return np.array([lookup[r.tobytes()] for r in rows])


@pytest.mark.parametrize("cycle", [0, 1, 2])
def test_cluster_features_reproduce_openfold_given_its_sample(refs, cycle):
    meta, ref = refs["meta"], refs["features"]
    if cycle >= meta["n_cycles"]:
        pytest.skip("fewer cycles in this reference set")
    msa = read_msa(refs["a3m"]).deduplicate()
    table = msa.sequences.astype(np.int64)
    n_clust = int(ref["msa_row_mask"][..., cycle].sum())
    n_extra = int(ref["extra_msa_row_mask"][..., cycle].sum())
    assert n_clust + n_extra == msa.depth  # every deduplicated row is used once
    true_msa = ref["true_msa"][:n_clust, :, cycle]
    extra = ref["extra_msa"][:n_extra, :, cycle]
    c_idx, e_idx = _row_index(true_msa, table), _row_index(extra, table)
    assert c_idx[0] == 0 and sorted(np.concatenate([c_idx, e_idx])) == list(range(msa.depth))

    msa_feat = ref["msa_feat"][:n_clust, :, :, cycle]
    masked = msa_feat[..., :23].argmax(-1)
    bert = ref["bert_mask"][:n_clust, :, cycle]
    np.testing.assert_array_equal(masked[bert == 0], true_msa[bert == 0])

    dels = msa.deletion_matrix.astype(np.float32)
    c_del, e_del = torch.from_numpy(dels[c_idx]), torch.from_numpy(dels[e_idx])
    np.testing.assert_array_equal(msa_feat[..., 23], c_del.clamp(0, 1).numpy())
    np.testing.assert_allclose(msa_feat[..., 24], deletion_value(c_del).numpy(), atol=1e-7)
    np.testing.assert_allclose(ref["extra_has_deletion"][:n_extra, :, cycle], e_del.clamp(0, 1).numpy())
    np.testing.assert_allclose(ref["extra_deletion_value"][:n_extra, :, cycle], deletion_value(e_del).numpy(), atol=1e-7)

    c_mask = torch.ones(true_msa.shape)
    e_mask = torch.ones(extra.shape)
    masked_t, extra_t = torch.from_numpy(masked), torch.from_numpy(extra)
    assignment = nearest_neighbor_clusters(masked_t, c_mask, extra_t, e_mask)
    profile, del_mean = summarize_clusters(masked_t, c_mask, c_del, extra_t, e_mask, e_del, assignment)
    np.testing.assert_allclose(msa_feat[..., 25:48], profile.numpy(), atol=1e-6)
    np.testing.assert_allclose(msa_feat[..., 48], deletion_value(del_mean).numpy(), atol=1e-6)


def test_masking_rate_is_consistent_with_openfold(refs):
    """Our masking and OpenFold's select about the configured fraction of entries."""
    meta, ref = refs["meta"], refs["features"]
    frac = meta["config"]["data"]["predict"]["masked_msa_replace_fraction"]
    n = ref["bert_mask"][..., 0].size
    sd = math.sqrt(frac * (1 - frac) / n)
    for c in range(meta["n_cycles"]):
        assert abs(ref["bert_mask"][..., c].mean() - frac) < 5 * sd
    record = read_fasta(refs["fasta"])[0]
    batch = build_features(record.sequence, read_msa(refs["a3m"]), _config(meta), seed=1)
    for c in range(meta["n_cycles"]):
        assert abs(batch["bert_mask"][..., c].mean().item() - frac) < 5 * sd


def test_ground_truth_features_match_openfold():
    """Supervised targets from ``refs/openfold/loss/batch.npz`` (ground-truth structure)."""
    root = open_refs("openfold")
    meta = json.loads(require(root / "meta.json").read_text())
    batch = np.load(require(root / "loss" / "batch.npz"))
    feats = ground_truth_features(
        torch.tensor(batch["aatype"]), torch.tensor(batch["all_atom_positions"]), torch.tensor(batch["all_atom_mask"])
    )
    keys = [k for k in meta["loss_gt_keys"] if k not in {"resolution", "is_distillation"}]
    keys += ["atom14_atom_exists", "residx_atom14_to_atom37", "residx_atom37_to_atom14", "atom37_atom_exists"]
    for key in keys:
        # frames / chi angles come from float32 trigonometry of coordinates up to ~50 A
        np.testing.assert_allclose(feats[key].numpy(), batch[key], atol=2e-5, rtol=0, err_msg=key)
