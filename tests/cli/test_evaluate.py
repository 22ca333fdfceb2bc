"""``tertiary evaluate design`` on small pocket sets: per-pocket rows, failures reported, the run goes on."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tertiary.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"



def make_set(tmp_path: Path) -> Path:
    """CrossDocked layout: the example twice (one gzipped), a ligand RDKit cannot sanitise, a far ligand."""
    import gzip

    root = tmp_path / "set"
    files = root / "files" / "T"
    files.mkdir(parents=True)
    shutil.copy(EXAMPLES / "7sed_pocket.pdb", files / "a_pocket10.pdb")
    with open(EXAMPLES / "7sed_pocket.pdb", "rb") as src, gzip.open(files / "b_pocket10.pdb.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    for name in ("a", "b", "c", "d"):
        shutil.copy(EXAMPLES / "7sed_ligand.sdf", files / f"{name}.sdf")
    shutil.copy(EXAMPLES / "7sed_pocket.pdb", files / "c_pocket10.pdb")
    shutil.copy(EXAMPLES / "7sed_pocket.pdb", files / "d_pocket10.pdb")
    text = (files / "c.sdf").read_text().splitlines()
    counts = text[3]
    n_atoms = int(counts[:3])
    # c: make atom 1 a five-valent carbon by adding bonds to it (RDKit refuses to sanitise)
    bonds = [f"{1:>3}{k:>3}{1:>3}  0" for k in range(2, 8)]
    n_bonds = int(counts[3:6])
    body = text[4 : 4 + n_atoms] + bonds
    (files / "c.sdf").write_text("\n".join(text[:3] + [f"{n_atoms:>3}{len(bonds):>3}" + counts[6:]] + body
                                           + ["M  END", "$$$$", ""]))
    assert n_bonds > 0
    # d: the ligand 400 A away
    from rdkit import Chem

    mol = Chem.MolFromMolFile(str(files / "d.sdf"), sanitize=False)
    conf = mol.GetConformer()
    for i in range(mol.GetNumAtoms()):
        p = conf.GetAtomPosition(i)
        conf.SetAtomPosition(i, (p.x, p.y + 400.0, p.z))
    (files / "d.sdf").write_text(Chem.MolToMolBlock(mol, kekulize=False) + "$$$$\n")
    rows = ["index\tshort_id\tpocket_file\tligand_file"]
    rows += [f"{i}\tT_{n}\tT/{n}_pocket10.pdb\tT/{n}.sdf" for i, n in enumerate("abcd")]
    (root / "index.tsv").write_text("\n".join(rows) + "\n")
    return root


def test_evaluate_design_goes_on_after_failures(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    root = make_set(tmp_path)
    out = tmp_path / "eval"
    rc = main(["evaluate", "design", "--set", str(root), "--checkpoint", str(tiny_checkpoint), "-o", str(out),
               "--seeds", "0", "1"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "design_eval.csv")))
    assert sorted((r["index"], r["seed"]) for r in rows) == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    # the same pocket, plain or gzipped, gives the same design for a seed
    by = {(r["index"], r["seed"]): r for r in rows}
    assert by[("0", "0")]["designed_seq"] == by[("1", "0")]["designed_seq"]
    report = json.loads((out / "design_eval.json").read_text())
    assert report["n_pockets"] == 4 and report["n_failed"] == 2
    errors = {f["index"]: f["error"] for f in report["failures"]}
    assert "sanitise" in errors["2"] and "no residue within 10.0 A" in errors["3"]
    for seed in ("0", "1"):
        s = report["summary"][seed]
        assert s["aar"]["n"] == 2
        mean = (float(by[("0", seed)]["aar"]) + float(by[("1", seed)]["aar"])) / 2
        assert s["aar"]["mean"] == pytest.approx(mean)
    captured = capsys.readouterr()
    assert "2 pocket(s) failed" in captured.err and "AAR" in captured.out


def test_evaluate_ids_and_limit(tmp_path: Path, tiny_checkpoint: Path) -> None:
    root = make_set(tmp_path)
    out = tmp_path / "eval"
    assert main(["evaluate", "design", "--set", str(root), "--checkpoint", str(tiny_checkpoint), "-o", str(out),
                 "--ids", "1,3"]) == 0
    report = json.loads((out / "design_eval.json").read_text())
    assert report["n_pockets"] == 2 and [f["index"] for f in report["failures"]] == ["3"]
    assert main(["evaluate", "design", "--set", str(root), "--checkpoint", str(tiny_checkpoint), "-o", str(out),
                 "--limit", "1"]) == 0
    assert json.loads((out / "design_eval.json").read_text())["n_pockets"] == 1


def test_evaluate_set_without_index(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    rc = main(["evaluate", "design", "--set", str(tmp_path), "--checkpoint", str(tiny_checkpoint), "-o", str(tmp_path / "o")])
    assert rc == 2 and "no index.tsv" in capsys.readouterr().err


def test_evaluate_on_crossdocked_subset(shared_data: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Two real CrossDocked test pockets (skipped when ../shared is absent)."""
    folder = shared_data / "crossdocked_test100"
    if not (folder / "index.tsv").is_file():
        pytest.skip(f"{folder} not found")
    out = tmp_path / "cd"
    assert main(["evaluate", "design", "--set", str(folder), "--checkpoint", str(tiny_checkpoint), "-o", str(out),
                 "--limit", "2"]) == 0
    report = json.loads((out / "design_eval.json").read_text())
    assert report["n_pockets"] == 2 and report["n_failed"] == 0
    rows = list(csv.DictReader(open(out / "design_eval.csv")))
    assert len(rows) == 2 and all(0.0 <= float(r["aar"]) <= 1.0 for r in rows)


def test_evaluate_held_out_split_of_a_training_config(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """``--held-out CONFIG`` runs exactly the validation complexes of that config's split."""
    from tertiary.models.fair.task import FairData, split_rows

    root = tmp_path / "lc"
    root.mkdir()
    shutil.copy(EXAMPLES / "7sed_pocket.pdb", root / "p.pdb")
    shutil.copy(EXAMPLES / "7sed_ligand.sdf", root / "l.sdf")
    ids = [f"{i:04d}" for i in range(12)]
    lines = ["id\tkind\tpdb_id\tpocket_path\tligand_path"] + [f"c{i}\tcrystal\t{i}\tp.pdb\tl.sdf" for i in ids]
    (root / "index.tsv").write_text("\n".join(lines) + "\n")
    config = tmp_path / "train.yaml"
    config.write_text("task: fair\ndata:\n  root: somewhere\n  val_fraction: 0.3\n  split_seed: 4\n  val_limit: 1\n")
    _, val = split_rows([{"name": f"c{i}", "kind": "crystal", "pdb_id": i} for i in ids],
                        FairData(root="x", val_fraction=0.3, split_seed=4))
    assert 0 < len(val) < 12
    out = tmp_path / "eval"
    assert main(["evaluate", "design", "--set", str(root), "--held-out", str(config), "--checkpoint",
                 str(tiny_checkpoint), "-o", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "design_eval.csv")))
    assert sorted(r["index"] for r in rows) == sorted(f"c{ids[i]}" for i in val)


def test_evaluate_design_vina_reports_failures_and_goes_on(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    """--vina: mean Vina in the table; a ligand meeko cannot type (Se) keeps its design row."""
    pytest.importorskip("vina")
    pytest.importorskip("meeko")
    from rdkit import Chem

    root = tmp_path / "set"
    files = root / "files" / "T"
    files.mkdir(parents=True)
    shutil.copy(EXAMPLES / "7sed_pocket.pdb", files / "p.pdb")
    shutil.copy(EXAMPLES / "7sed_ligand.sdf", files / "a.sdf")
    mol = Chem.MolFromMolFile(str(EXAMPLES / "7sed_ligand.sdf"))
    mol.GetAtomWithIdx(4).SetAtomicNum(34)  # the linker NH -> Se
    (files / "se.sdf").write_text(Chem.MolToMolBlock(mol) + "$$$$\n")
    (root / "index.tsv").write_text("index\tshort_id\tpocket_file\tligand_file\n0\tT_a\tT/p.pdb\tT/a.sdf\n"
                                    "1\tT_se\tT/p.pdb\tT/se.sdf\n")
    out = tmp_path / "eval"
    assert main(["evaluate", "design", "--set", str(root), "--checkpoint", str(tiny_checkpoint), "-o", str(out),
                 "--vina"]) == 0
    rows = {r["index"]: r for r in csv.DictReader(open(out / "design_eval.csv"))}
    assert set(rows) == {"0", "1"}
    assert float(rows["0"]["vina_input"]) < -3.0 and float(rows["0"]["vina_score"]) < 0
    assert float(rows["0"]["vina_input_minimized"]) < float(rows["0"]["vina_input"])
    assert rows["1"]["vina_score"] == rows["1"]["vina_input"] == rows["1"]["vina_input_minimized"] == ""
    assert rows["1"]["aar"] != ""
    report = json.loads((out / "design_eval.json").read_text())
    assert report["n_failed"] == 0 and [f["index"] for f in report["vina_failures"]] == ["1"]
    assert "meeko cannot" in report["vina_failures"][0]["error"]
    s = report["summary"]["0"]
    assert s["vina_score"]["n"] == 1 and s["vina_score"]["mean"] == pytest.approx(float(rows["0"]["vina_score"]))
    below = float(rows["0"]["vina_minimized"]) < float(rows["0"]["vina_input_minimized"])
    assert s["vina_minimized_below_input"] == int(below)
    captured = capsys.readouterr()
    assert "Vina" in captured.out and "Vina could not score 1" in captured.err


def test_workers_give_the_sequential_results_in_set_order(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    root = make_set(tmp_path)
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert main(["evaluate", "design", "--set", str(root), "--checkpoint", str(tiny_checkpoint), "--seeds", "0", "1",
                     "--threads", "1", "--workers", str(workers), "-o", str(out)]) == 0
        with open(out / "design_eval.csv") as f:
            rows = list(csv.DictReader(f))
        report = json.loads((out / "design_eval.json").read_text())
        runs[workers] = ([{k: v for k, v in r.items() if k != "cpu_s"} for r in rows], report["failures"])
    assert runs[2] == runs[1]
    assert [r["index"] for r in runs[1][0]] == ["0", "0", "1", "1"]  # pockets 2 and 3 fail, reported
    assert [f["index"] for f in runs[1][1]] == ["2", "3"]
    assert main(["evaluate", "design", "--set", str(root), "--checkpoint", str(tiny_checkpoint), "--workers", "0",
                 "-o", str(tmp_path / "w0")]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
