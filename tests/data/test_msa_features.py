from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tertiary.data.msa_features import (
    MASK_TOKEN,
    MSAFeatureConfig,
    build_features,
    hhblits_profile,
    mask_msa,
    nearest_neighbor_clusters,
    sample_msa,
    select_cycle,
    summarize_clusters,
)
from tertiary.errors import ConfigError, ParseError
from tertiary.sequence import MSA_LETTERS, parse_a3m, read_fasta, read_msa

FIXTURES = Path(__file__).parent / "sequence"
SMALL = MSAFeatureConfig(max_msa_clusters=6, max_extra_msa=10, num_recycles=2)


@pytest.fixture(scope="module")
def example():
    return read_fasta(FIXTURES / "2q2k_A.fasta")[0].sequence, read_msa(FIXTURES / "2q2k_A.a3m")


def ids(*rows: str) -> torch.Tensor:
    return torch.tensor([[MSA_LETTERS.index(c) for c in r] for r in rows])


def test_presets():
    m1 = MSAFeatureConfig.preset("model_1_ptm")
    assert (m1.n_clusters, m1.max_extra_msa) == (508, 5120)
    assert MSAFeatureConfig.preset("model_5").n_clusters == 512
    assert MSAFeatureConfig.preset("train", num_recycles=0).n_cycles == 1
    with pytest.raises(ConfigError, match="model_9"):
        MSAFeatureConfig.preset("model_9")
    with pytest.raises(ConfigError):
        MSAFeatureConfig.preset("model_3", bogus=1)
    with pytest.raises(ConfigError):
        MSAFeatureConfig(uniform_prob=0.6, profile_prob=0.6)


def test_shapes_masks_and_determinism(example):
    seq, msa = example
    n, depth = len(seq), msa.deduplicate().depth
    a = build_features(seq, msa, SMALL, seed=7)
    b = build_features(seq, msa, SMALL, seed=7)
    c = build_features(seq, msa, SMALL, seed=8)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["msa_feat"], c["msa_feat"])
    r = SMALL.n_cycles
    assert a["msa_feat"].shape == (6, n, 49, r)
    assert a["extra_msa"].shape == (10, n, r)
    assert a["target_feat"].shape == (n, 22, r)
    assert a["msa_row_mask"].sum(0).tolist() == [6] * r
    assert a["extra_msa_row_mask"].sum(0).tolist() == [min(10, depth - 6)] * r
    # cycles are resampled: different cluster centres (beyond the query row)
    assert not torch.equal(a["true_msa"][..., 0], a["true_msa"][..., 1])
    assert torch.equal(a["true_msa"][0, :, 0], torch.tensor([MSA_LETTERS.index(x) for x in seq]))


def test_no_resampling_repeats_the_first_cycle(example):
    seq, msa = example
    cfg = MSAFeatureConfig(max_msa_clusters=4, max_extra_msa=8, num_recycles=3, resample_msa_in_recycling=False)
    out = build_features(seq, msa, cfg, seed=0)
    for key in ("msa_feat", "extra_msa", "bert_mask"):
        for c in range(1, cfg.n_cycles):
            assert torch.equal(out[key][..., 0], out[key][..., c])


def test_single_sequence_mode():
    seq = "MKVLAX"
    out = build_features(seq, None, SMALL, seed=0)
    assert out["msa_row_mask"][:, 0].tolist() == [1, 0, 0, 0, 0, 0]
    assert out["extra_msa_row_mask"].sum() == 0
    feat = out["msa_feat"][0, :, :, 0]
    # the profile of a lone centre is its own (masked) one-hot; no deletions
    np.testing.assert_allclose(feat[:, 25:48], feat[:, :23], atol=1e-5)
    assert feat[:, 23:25].abs().sum() == 0 and feat[:, 48].abs().sum() == 0
    assert out["msa_feat"][1:].abs().sum() == 0  # padded rows are zero
    unpadded = build_features(seq, None, MSAFeatureConfig(pad_to_max=False, num_recycles=0), seed=0)
    assert unpadded["msa_feat"].shape == (1, 6, 49, 1) and unpadded["extra_msa"].shape == (1, 6, 1)


def test_query_mismatch_and_bad_letters(example):
    seq, msa = example
    with pytest.raises(ParseError, match="position 1"):
        build_features("A" + seq[1:], msa, SMALL, source="x.a3m")
    with pytest.raises(ParseError, match="'1'"):
        build_features("MK1V", None, SMALL)


def test_sample_msa_keeps_query_first_and_partitions():
    g = torch.Generator().manual_seed(0)
    centres, extra = sample_msa(10, 4, g)
    assert centres[0] == 0 and len(centres) == 4
    assert sorted(torch.cat([centres, extra]).tolist()) == list(range(10))
    centres, extra = sample_msa(3, 8, g)
    assert centres.tolist()[0] == 0 and len(centres) == 3 and len(extra) == 0


def test_masking_distribution():
    g = torch.Generator().manual_seed(0)
    msa = torch.randint(0, 22, (200, 100), generator=g)
    profile = hhblits_profile(msa)
    masked, bert = mask_msa(msa, profile, MSAFeatureConfig(), g)
    frac = bert.mean().item()
    assert abs(frac - 0.15) < 5 * math.sqrt(0.15 * 0.85 / bert.numel())
    assert torch.equal(masked[bert == 0], msa[bert == 0])
    sel = bert == 1
    token = (masked[sel] == MASK_TOKEN).float().mean().item()
    assert abs(token - 0.7) < 0.05  # 1 - uniform - profile - same
    same_only = MSAFeatureConfig(uniform_prob=0.0, profile_prob=0.0, same_prob=1.0, masked_msa_replace_fraction=1.0)
    masked, bert = mask_msa(msa, profile, same_only, g)
    assert bert.all() and torch.equal(masked, msa)
    uniform_only = MSAFeatureConfig(uniform_prob=1.0, profile_prob=0.0, same_prob=0.0, masked_msa_replace_fraction=1.0)
    masked, _ = mask_msa(msa, profile, uniform_only, g)
    assert masked.max() < 20 and len(masked.unique()) == 20


def test_nearest_neighbour_and_cluster_summary():
    centres = ids("ACDE", "WWWW")
    centres[1, 3] = MASK_TOKEN  # masked entries never count as agreement
    extra = ids("ACDW", "WWWE", "----", "WWWA")
    c_mask, e_mask = torch.ones(2, 4), torch.ones(4, 4)
    e_mask[3] = 0  # a padded extra row
    assignment = nearest_neighbor_clusters(centres, c_mask, extra, e_mask)
    # row 1 agrees 3x with centre 1; row 2 (all gaps) ties at 0 -> lowest index
    assert assignment.tolist() == [0, 1, 0, 0]
    c_del = torch.tensor([[0.0, 0, 0, 0], [1, 0, 0, 0]])
    e_del = torch.tensor([[2.0, 0, 0, 0], [3, 0, 0, 0], [0, 0, 0, 4], [9, 9, 9, 9]])
    profile, del_mean = summarize_clusters(centres, c_mask, c_del, extra, e_mask, e_del, assignment)
    # centre 0 + extra rows 0 and 2: column 0 has A, A, gap
    np.testing.assert_allclose(profile[0, 0, MSA_LETTERS.index("A")], 2 / 3, atol=1e-5)
    np.testing.assert_allclose(profile[0, 0, 21], 1 / 3, atol=1e-5)
    np.testing.assert_allclose(profile[1, 3, MASK_TOKEN], 0.5, atol=1e-5)
    np.testing.assert_allclose(profile.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(del_mean[0].tolist(), [2 / 3, 0, 0, 4 / 3], atol=1e-5)
    np.testing.assert_allclose(del_mean[1].tolist(), [2.0, 0, 0, 0], atol=1e-5)


def test_msa_feat_deletion_channels():
    msa = parse_a3m(">q\nMKV\n>a\nMkkKL\n")
    out = build_features("MKV", msa, MSAFeatureConfig(max_msa_clusters=2, max_extra_msa=1, num_recycles=0), seed=0)
    feat = out["msa_feat"][1, :, :, 0]
    assert feat[:, 23].tolist() == [0, 1, 0]
    np.testing.assert_allclose(feat[1, 24].item(), 2 / math.pi * math.atan(2 / 3), atol=1e-6)


def test_select_cycle_and_coverage(example):
    seq, msa = example
    batch = build_features(seq, msa, SMALL, seed=3)
    one = select_cycle(batch, 1)
    assert set(one) == set(batch)
    assert torch.equal(one["msa_feat"], batch["msa_feat"][..., 1]) and one["aatype"].shape == (len(seq),)
    cov = msa.coverage()
    assert cov.shape == (len(seq),) and cov.max() == msa.depth and cov.min() >= 1
