"""Folding dataset builds: folders and tar archives, tables, MSAs, broken entries, atomicity."""

import gzip
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tertiary.data.folding_dataset import build_folding_dataset, read_resolution
from tertiary.data.lmdb_store import LmdbDataset
from tertiary.errors import DataError, InputError
from tertiary.protein import Protein

FOLDING = Path(__file__).resolve().parent / "folding"
CHAINS = ["1sp2_A", "3oj3_J", "3wup_A", "5om2_B", "6h0g_F", "7cna_B"]


def _copy(tmp_path, names=CHAINS, gz=()):
    src = tmp_path / "src"
    src.mkdir()
    for n in names:
        data = (FOLDING / f"{n}.pdb").read_bytes()
        if n in gz:
            (src / f"{n}.pdb.gz").write_bytes(gzip.compress(data))
        else:
            (src / f"{n}.pdb").write_bytes(data)
    return src


def _report_rows(path):
    lines = Path(path).read_text().splitlines()
    assert lines[0] == "entry\tstatus\treason"
    return [line.split("\t") for line in lines[1:]]


def test_folder_build_records_match_the_files(tmp_path):
    src = _copy(tmp_path, gz={"3oj3_J"})
    (src / "notes.txt").write_text("not a structure")
    rep = build_folding_dataset(src, tmp_path / "db.lmdb")
    assert rep.written == 6 and not rep.skipped
    ds = LmdbDataset(tmp_path / "db.lmdb", task="folding")
    assert sorted(ds.keys) == CHAINS
    for arrays, meta in ds:
        p = Protein.from_file(FOLDING / f"{meta['name']}.pdb")
        np.testing.assert_array_equal(arrays["aatype"], p.aatype)
        np.testing.assert_allclose(arrays["atom_positions"], p.atom_positions)
        np.testing.assert_array_equal(arrays["atom_mask"], p.atom_mask)
        np.testing.assert_array_equal(arrays["residue_index"], p.residue_index)
        assert meta["length"] == len(p) and meta["sequence"] == p.sequence()
        assert meta["resolution"] is None and meta["cluster"] is None and meta["split"] is None
        assert meta["has_msa"] is False and "msa" not in arrays
    assert ds.report["written"] == 6 and ds.report["skipped"] == 0
    assert _report_rows(tmp_path / "db.report.tsv") == []


def test_tar_archive_with_split_and_cluster_tables(tmp_path):
    src = _copy(tmp_path, CHAINS[:3])
    archive = tmp_path / "chains.tar.xz"
    with tarfile.open(archive, "w:xz") as tf:
        for f in sorted(src.iterdir()):
            tf.add(f, arcname=f.name)
    split = tmp_path / "split.tsv"
    split.write_text("chain_id\tsplit\tcluster30\n1sp2_A\ttrain\t7\n3oj3_J\tvalid\t8\n3wup_A\ttest\t9\n")
    clusters = tmp_path / "clusters.tsv"
    clusters.write_text("chain_id\tcluster\n3wup_A\t99\n")
    rep = build_folding_dataset(archive, tmp_path / "db.lmdb", split=split, clusters=clusters)
    assert rep.written == 3
    meta = {m["name"]: m for m in LmdbDataset(tmp_path / "db.lmdb").meta}
    assert meta["1sp2_A"]["split"] == "train" and meta["1sp2_A"]["cluster"] == "7"
    assert meta["3oj3_J"]["split"] == "valid" and meta["3oj3_J"]["cluster"] == "8"
    assert meta["3wup_A"]["split"] == "test" and meta["3wup_A"]["cluster"] == "99"  # --clusters wins
    assert meta["1sp2_A"]["source"].endswith("chains.tar.xz:1sp2_A.pdb")


def test_broken_entries_are_skipped_and_reported(tmp_path):
    src = _copy(tmp_path, CHAINS[:2])
    (src / "garbage.pdb").write_text("ATOM      1  CA  ALA A   1    nonsense\n")
    (src / "empty.cif").write_text("")
    (src / "truncated.pdb.gz").write_bytes(gzip.compress(b"ATOM" * 100)[:20])
    lines = (FOLDING / "7cna_B.pdb").read_text().splitlines()
    (src / "short.pdb").write_text("\n".join(lines[:40]) + "\nEND\n")  # a few residues only
    rep = build_folding_dataset(src, tmp_path / "db.lmdb")
    assert rep.written == 2
    reasons = dict(rep.skipped)
    assert set(reasons) == {"garbage", "empty", "truncated", "short"}
    assert reasons["empty"].startswith("parse error") and "empty" in reasons["empty"]
    assert reasons["truncated"].startswith("parse error") and "gzip" in reasons["truncated"]
    assert reasons["short"].startswith("too short")
    rows = _report_rows(tmp_path / "db.report.tsv")
    assert {r[0] for r in rows if r[1] == "skipped"} == set(reasons)
    assert "4 entries skipped" in rep.summary() and "db.report.tsv" in rep.summary()
    assert LmdbDataset(tmp_path / "db.lmdb").report["reasons"] == {"parse error": 3, "too short": 1}


def test_nothing_usable_raises_and_leaves_no_database(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.pdb").write_text("HEADER nothing\n")
    with pytest.raises(DataError, match="no usable chain"):
        build_folding_dataset(src, tmp_path / "db.lmdb")
    assert not (tmp_path / "db.lmdb").exists() and not (tmp_path / "db.lmdb.partial").exists()
    with pytest.raises(InputError, match="not a folder"):
        build_folding_dataset(tmp_path / "missing", tmp_path / "db.lmdb")


def test_msas_are_stored_and_mismatched_ones_reported(tmp_path):
    src = _copy(tmp_path, CHAINS[:2])
    msa_dir = tmp_path / "msas"
    msa_dir.mkdir()
    seq = Protein.from_file(FOLDING / "1sp2_A.pdb").sequence()
    other = seq[:5] + "-" + seq[6:10] + "aa" + seq[10:]  # a gap, an insertion of 2 before column 10
    (msa_dir / "1sp2_A.a3m").write_text(f">q\n{seq}\n>hit\n{other}\n")
    (msa_dir / "3oj3_J.a3m").write_text(">q\nACDEFGHIK\n")
    rep = build_folding_dataset(src, tmp_path / "db.lmdb", msa_dir=msa_dir)
    assert rep.written == 1 and rep.skipped[0][0] == "3oj3_J" and rep.skipped[0][1].startswith("bad MSA")
    arrays, meta = LmdbDataset(tmp_path / "db.lmdb")[0]
    assert meta["has_msa"] and arrays["msa"].shape == (2, len(seq))
    assert arrays["msa"][1, 5] == 21 and arrays["deletion_matrix"][1, 10] == 2


def test_resolution_from_pdb_and_mmcif_headers():
    assert read_resolution(b"HEADER x\nREMARK   2 RESOLUTION.    2.10 ANGSTROMS.\nATOM\n") == 2.1
    assert read_resolution(b"data_x\n_refine.ls_d_res_high   1.85\n") == 1.85
    assert read_resolution(b"REMARK   2 RESOLUTION. NOT APPLICABLE.\n") is None


def test_rebuild_replaces_the_database_atomically(tmp_path):
    src = _copy(tmp_path, CHAINS[:2])
    build_folding_dataset(src, tmp_path / "db.lmdb")
    shutil.copy(FOLDING / "3wup_A.pdb", src / "3wup_A.pdb")
    build_folding_dataset(src, tmp_path / "db.lmdb")
    assert len(LmdbDataset(tmp_path / "db.lmdb")) == 3
