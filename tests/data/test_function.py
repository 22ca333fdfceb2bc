"""DeepFRI EC / GO readers and structure samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tertiary.data.function import (
    deepfri_records,
    read_chain_list,
    read_ec_annotations,
    read_go_annotations,
    read_test_cutoffs,
    sample_from_arrays,
)
from tertiary.errors import DataError, InputError, ParseError


@pytest.fixture
def mini(tests_data):
    return tests_data / "function" / "deepfri_mini"


def test_ec_annotations(mini):
    ec = read_ec_annotations(mini / "nrPDB-EC_2020.04_annot.tsv")
    assert len(ec.vocabulary) == 538 and len(set(ec.vocabulary)) == 538
    assert all("\r" not in x for x in ec.vocabulary)
    raw = (mini / "nrPDB-EC_2020.04_annot.tsv").read_text().splitlines()
    row = next(line for line in raw if line.startswith("2CG5-B\t")).strip().split("\t")[1].split(",")
    v = ec.vector("2CG5-B")
    assert sorted(ec.vocabulary[i] for i in v.nonzero()[:, 0].tolist()) == sorted(row)
    with pytest.raises(DataError, match="no annotation row"):
        ec.vector("1ABC-A")


def test_go_subset_uses_vocabulary_file(mini):
    total = 0
    for task, size in (("GO-MF", 489), ("GO-BP", 1943), ("GO-CC", 320)):
        go = read_go_annotations(mini / "nrPDB-GO_2019.06.18_annot_subset.tsv", task, mini / "nrPDB-GO_2019.06.18_goterms.tsv")
        assert len(go.vocabulary) == size and len(go.labels) == 11
        total += sum(len(v) for v in go.labels.values())
    assert total == 459  # stated in the data README
    with pytest.raises(DataError, match="goterms"):
        read_go_annotations(mini / "nrPDB-GO_2019.06.18_annot_subset.tsv", "GO-MF")


def test_records_filter_cutoff_and_missing_structures(mini):
    recs, labels = deepfri_records(mini, "EC", "test")
    assert [r.chain_id for r in recs] == ["6HPR-A", "2YSL-A", "2CG5-B", "2E6R-A", "2UZG-A"]
    assert recs[0].structure.name == "6HPR-A.pdb.gz"
    low, _ = deepfri_records(mini, "EC", "test", test_cutoff=0.3)
    assert "2CG5-B" not in [r.chain_id for r in low] and len(low) == 4
    assert read_test_cutoffs(mini / "nrPDB-EC_2020.04_test.csv")["2FOR-A"] == (False, False, True, True, True)
    go, go_labels = deepfri_records(mini, "GO-CC", "test")
    assert [r.chain_id for r in go] == ["2A14-A", "2A1U-B"] and len(go_labels.vocabulary) == 320
    with pytest.raises(InputError, match="task"):
        deepfri_records(mini, "EC2", "test")


def test_bad_annotation_file(tmp_path):
    bad = tmp_path / "x.tsv"
    bad.write_text("hello\n")
    with pytest.raises(ParseError, match="x.tsv"):
        read_ec_annotations(bad)
    bad.write_text("### EC-numbers\n1.1.1.1\t2.2.2.2\n### PDB-chain\tEC-numbers\n1ABC-A\t9.9.9.9\n")
    with pytest.raises(ParseError, match=r"x.tsv:4: label '9.9.9.9'"):
        read_ec_annotations(bad)
    assert read_ec_annotations(bad, strict=False).labels["1ABC-A"] == ()


def test_full_benchmark_counts(shared_data):
    root = shared_data / "deepfri_nrpdb"
    ec = read_ec_annotations(root / "nrPDB-EC_2020.04_annot.tsv")
    assert len(ec.labels) == 19_201 and len(ec.vocabulary) == 538
    sizes = [len(read_chain_list(root / f"nrPDB-EC_2020.04_{s}.txt")) for s in ("train", "valid", "test")]
    assert sizes == [15_551, 1_729, 1_919]
    assert abs(np.mean([len(v) for v in ec.labels.values()]) - 1.74) < 0.01


def test_sample_from_arrays_missing_ca_and_unknowns():
    aatype = np.array([0, 1, 20, 3])
    ca = np.arange(12, dtype=float).reshape(4, 3)
    mask = np.array([1, 0, 1, 1])
    sample, keep = sample_from_arrays("p", aatype, ca, mask, chain=["A", "A", "B", "B"])
    assert keep.tolist() == [True, False, True, True]
    assert sample.residue_type.tolist() == [0, 20, 3]
    assert sample.chain.tolist() == [0, 1, 1]
    assert torch.equal(sample.pos[1], torch.tensor([6.0, 7.0, 8.0]))
    with pytest.raises(InputError, match="p: 1 of 4 residues have no CA"):
        sample_from_arrays("p", aatype, ca, mask, missing_ca="error")
    with pytest.raises(InputError, match="unknown"):
        sample_from_arrays("q", np.array([20, 20, 1]), ca[:3], np.ones(3))
