"""`tertiary data build`: the folding builder end to end, the task registry and its errors."""

import shutil
from pathlib import Path

import pytest

from tertiary.cli import data as data_cli
from tertiary.cli.main import main
from tertiary.data.lmdb_store import LmdbDataset

FOLDING = Path(__file__).resolve().parent.parent / "data" / "folding"


def test_build_folding_from_a_folder(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("1sp2_A", "3oj3_J"):
        shutil.copy(FOLDING / f"{name}.pdb", src)
    (src / "broken.cif").write_text("data_broken\n_atom_site.id\n")
    split = tmp_path / "split.tsv"
    split.write_text("chain_id\tsplit\tcluster30\n1sp2_A\ttrain\t1\n3oj3_J\tvalid\t2\n")
    rc = main(["data", "build", str(src), "-o", str(tmp_path / "d.lmdb"), "--split", str(split), "-q"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "2 chains written" in err and "1 entries skipped" in err and "d.report.tsv" in err
    ds = LmdbDataset(tmp_path / "d.lmdb", task="folding")
    assert [m["split"] for m in ds.meta] == ["train", "valid"]
    assert "broken\tskipped\tparse error" in (tmp_path / "d.report.tsv").read_text()


def test_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    assert main(["data", "build", str(tmp_path / "nope"), "-o", str(tmp_path / "d.lmdb")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["data", "build", str(tmp_path), "-o", str(tmp_path / "d.lmdb"), "--task", "nonsense"]) == 2
    assert "unknown task 'nonsense'" in capsys.readouterr().err
    monkeypatch.setitem(data_cli.BUILDERS, "pocket", "tertiary.data.not_a_module:build_pocket_dataset")
    assert main(["data", "build", str(tmp_path), "-o", str(tmp_path / "d.lmdb"), "--task", "pocket"]) == 2
    err = capsys.readouterr().err
    assert "'pocket' builder cannot be imported" in err and err.count("\n") == 1
    monkeypatch.setitem(data_cli.BUILDERS, "pocket", "tertiary.data.folding:build_pocket_dataset")
    with pytest.raises(Exception, match="has no 'build_pocket_dataset'"):
        data_cli.resolve_builder("pocket")


def test_registered_builders_are_module_function_strings():
    assert data_cli.BUILDERS["pocket"] == "tertiary.data.pocket:build_pocket_dataset"
    assert data_cli.resolve_builder("folding").__name__ == "build_folding_dataset"
