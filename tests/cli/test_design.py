"""``tertiary design`` end to end on the shipped example complex."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import pytest

import tertiary.cli.design as design_cli
from tertiary.cli.main import main
from tertiary.models.fair.config import FairConfig
from tertiary.models.fair.model import FairModel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POCKET, LIGAND = EXAMPLES / "7sed_pocket.pdb", EXAMPLES / "7sed_ligand.sdf"



def test_design_writes_pdbs_fasta_and_csv(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    out = tmp_path / "out"
    rc = main(["design", "--pocket", str(POCKET), "--ligand", str(LIGAND), "--checkpoint", str(tiny_checkpoint),
               "-n", "2", "-o", str(out), "--seed", "1"])
    assert rc == 0
    from tertiary.data.pocket import load_pocket
    from tertiary.protein import Protein

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pocket = load_pocket(POCKET, LIGAND)
    rows = list(csv.DictReader(open(out / "designs.csv")))
    assert len(rows) == 2
    assert {"aar", "backbone_rmsd", "fair_rmsd_formula", "designed_seq", "native_seq"} <= set(rows[0])
    fasta = (out / "designs.fasta").read_text().split(">")[1:]
    assert len(fasta) == 2
    n_designed = int(pocket.designed.sum())
    for k, (row, record) in enumerate(zip(rows, fasta)):
        header, seq = record.strip().split("\n")
        assert seq == row["designed_seq"] and len(seq) == n_designed
        native = row["native_seq"]
        assert float(row["aar"]) == pytest.approx(sum(a == b for a, b in zip(seq, native)) / n_designed, abs=1e-4)
        assert float(row["backbone_rmsd"]) > 0 and float(row["fair_rmsd_formula"]) > 0
        # the PDB is a full-atom pocket whose designed residues carry the designed types
        prot = Protein.from_file(out / f"design_{k}.pdb")
        assert prot.aatype.shape[0] == pocket.num_residues
        from tertiary import constants as rc

        seq_pdb = "".join(rc.RESTYPES[a] for a in prot.aatype)
        assert "".join(c for c, e in zip(seq_pdb, pocket.designed) if e) == seq
        assert "".join(c for c, e in zip(seq_pdb, pocket.designed) if not e) == "".join(
            c for c, e in zip(pocket.sequence, pocket.designed) if not e)
        # every residue has its full heavy-atom set (side chains built for the designed types)
        from tertiary.data.pocket import RESIDUE_SLOT_NAMES

        full = (RESIDUE_SLOT_NAMES[prot.aatype + 1] > 0).sum(1)
        assert (prot.atom_mask.sum(1)[pocket.designed] == full[pocket.designed]).all()
        assert len(prot.ligands) == 1 and len(prot.ligands[0].atom_names) == len(pocket.ligand_elements)
    summary = json.loads((out / "design.json").read_text())
    assert summary["num_designs"] == 2 and summary["residue_graph"] == "predicted"
    stdout = capsys.readouterr().out
    assert "7sed_pocket_0" in stdout and "AAR" in stdout


def test_design_seed_is_reproducible(tmp_path: Path, tiny_checkpoint: Path) -> None:
    args = ["design", "--pocket", str(POCKET), "--ligand", str(LIGAND), "--checkpoint", str(tiny_checkpoint), "-n", "1"]
    assert main([*args, "-o", str(tmp_path / "a"), "--seed", "5"]) == 0
    assert main([*args, "-o", str(tmp_path / "b"), "--seed", "5"]) == 0
    assert (tmp_path / "a" / "design_0.pdb").read_text() == (tmp_path / "b" / "design_0.pdb").read_text()


def test_bad_input_exits_2_with_one_line(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    from rdkit import Chem

    mol = Chem.MolFromMolFile(str(LIGAND), sanitize=False)
    conf = mol.GetConformer()
    for i in range(mol.GetNumAtoms()):
        p = conf.GetAtomPosition(i)
        conf.SetAtomPosition(i, (p.x + 500.0, p.y, p.z))
    far = tmp_path / "far.sdf"
    far.write_text(Chem.MolToMolBlock(mol, kekulize=False) + "$$$$\n")
    cases = {
        "far": (["--pocket", str(POCKET), "--ligand", str(far)], "no residue within 10.0 A"),
        "missing": (["--pocket", str(tmp_path / "nope.pdb"), "--ligand", str(LIGAND)], "nope.pdb"),
        "bad sdf": (["--pocket", str(POCKET), "--ligand", str(POCKET)], "ligand format"),
        "bad n": (["--pocket", str(POCKET), "--ligand", str(LIGAND), "-n", "0"], "-n must be at least 1"),
    }
    for name, (args, message) in cases.items():
        rc = main(["design", *args, "--checkpoint", str(tiny_checkpoint), "-o", str(tmp_path / name)])
        err = capsys.readouterr().err.strip()
        assert rc == 2, name
        assert message in err and len(err.splitlines()) == 1, (name, err)


def test_missing_checkpoint_is_an_error(tmp_path: Path, capsys) -> None:
    rc = main(["design", "--pocket", str(POCKET), "--ligand", str(LIGAND), "--checkpoint", str(tmp_path / "x.safetensors"),
               "-o", str(tmp_path / "o")])
    assert rc == 2 and "checkpoint file not found" in capsys.readouterr().err


def test_default_checkpoint_is_packaged_and_used(tmp_path: Path, monkeypatch) -> None:
    """No --checkpoint: the packaged leak-free default model designs the example."""
    assert design_cli.DEFAULT_CHECKPOINT.is_file(), "src/tertiary/resources/fair_default.safetensors missing"
    from tertiary.models.fair.weights import load

    model = load(design_cli.DEFAULT_CHECKPOINT)
    assert model.config.residue_graph == "predicted"
    assert design_cli.DEFAULT_CHECKPOINT.stat().st_size < 5_000_000
    small = FairModel(FairConfig.from_dict({**model.config.to_dict(), "outer_iterations": 1, "refine_steps": 1}))
    small.load_state_dict(model.state_dict())
    monkeypatch.setattr(design_cli, "load_model", lambda checkpoint: small.eval() if checkpoint is None else None)
    out = tmp_path / "out"
    assert main(["design", "--pocket", str(POCKET), "--ligand", str(LIGAND), "-n", "1", "-o", str(out)]) == 0
    assert (out / "design_0.pdb").is_file()
    assert json.loads((out / "design.json").read_text())["checkpoint"].endswith("fair_default.safetensors")


def test_missing_default_checkpoint_message(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(design_cli, "DEFAULT_CHECKPOINT", tmp_path / "absent.safetensors")
    rc = main(["design", "--pocket", str(POCKET), "--ligand", str(LIGAND), "-o", str(tmp_path / "o")])
    assert rc == 2 and "pass --checkpoint" in capsys.readouterr().err


def test_gzipped_pocket(tmp_path: Path, tiny_checkpoint: Path) -> None:
    import gzip

    gz = tmp_path / "p.pdb.gz"
    with open(POCKET, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert main(["design", "--pocket", str(gz), "--ligand", str(LIGAND), "--checkpoint", str(tiny_checkpoint), "-n", "1",
                 "-o", str(tmp_path / "o")]) == 0


def test_design_vina_scores_every_design_and_the_input(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    pytest.importorskip("vina")
    pytest.importorskip("meeko")
    import math

    from tertiary.ligand import read_ligand
    from tertiary.data.pocket import pocket_to_protein
    from tertiary.models.fair.vina import score_only
    from tertiary.protein import Protein

    out = tmp_path / "out"
    assert main(["design", "--pocket", str(POCKET), "--ligand", str(LIGAND), "--checkpoint", str(tiny_checkpoint),
                 "-n", "2", "-o", str(out), "--vina"]) == 0
    rows = list(csv.DictReader(open(out / "designs.csv")))
    assert len(rows) == 2
    summary = json.loads((out / "design.json").read_text())
    reference = summary["vina_input"]
    assert reference["score"] < -3.0 and reference["minimized"] < reference["score"]
    assert summary["vina_failures"] == []
    ligand = read_ligand(LIGAND)
    for k, row in enumerate(rows):
        assert float(row["vina_input"]) == pytest.approx(reference["score"], abs=1e-3)
        assert float(row["vina_input_minimized"]) == pytest.approx(reference["minimized"], abs=1e-3)
        assert math.isfinite(float(row["vina_score"])) and math.isfinite(float(row["vina_minimized"]))
        # the column is the score of the written design: its pocket and its refined ligand pose
        pdb = Protein.from_file(out / f"design_{k}.pdb")
        lig = pdb.ligands[0].positions
        assert score_only(pdb, ligand, lig) == pytest.approx(float(row["vina_score"]), abs=0.02)
    # the reference is the input pose in the input pocket
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from tertiary.data.pocket import load_pocket

        pocket = load_pocket(POCKET, LIGAND)
    assert score_only(pocket_to_protein(pocket), ligand) == pytest.approx(reference["score"], abs=1e-3)
    assert "Vina" in capsys.readouterr().out


def test_design_without_vina_has_no_vina_columns(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "out"
    assert main(["design", "--pocket", str(POCKET), "--ligand", str(LIGAND), "--checkpoint", str(tiny_checkpoint),
                 "-n", "1", "-o", str(out)]) == 0
    assert not any(k.startswith("vina") for k in next(csv.DictReader(open(out / "designs.csv"))))
    assert "vina_input" not in json.loads((out / "design.json").read_text())


def test_design_vina_missing_package_exits_2(tmp_path: Path, tiny_checkpoint: Path, monkeypatch, capsys) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "vina", None)
    rc = main(["design", "--pocket", str(POCKET), "--ligand", str(LIGAND), "--checkpoint", str(tiny_checkpoint),
               "-n", "1", "-o", str(tmp_path / "o"), "--vina"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "tertiary[vina]" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "designs.csv").exists()
