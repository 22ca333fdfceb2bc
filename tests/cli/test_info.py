"""``tertiary info`` on the real fixtures of tests/data/protein (see its README)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tertiary.cli.main import main

DATA = Path(__file__).resolve().parents[1] / "data" / "protein"
NMR = Path(__file__).resolve().parents[1] / "data" / "geometry" / "1l2y.pdb.gz"


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, object, str]:
    code = main(["info", *argv, "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def _atom_lines(path: Path) -> list[str]:
    return [ln for ln in gzip.decompress(path.read_bytes()).decode().splitlines()
            if ln.startswith(("ATOM", "HETATM"))]


def test_json_report_of_one_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, info, err = _json(capsys, [str(DATA / "1F6M_r_u.pdb.gz")])
    assert code == 0 and err == ""
    assert info["format"] == "pdb" and info["models"] == 1
    (chain,) = info["chains"]
    lines = _atom_lines(DATA / "1F6M_r_u.pdb.gz")
    residues = list(dict.fromkeys(ln[22:27] for ln in lines if ln.startswith("ATOM")))
    assert chain["chain"] == "A" and chain["length"] == len(residues) == 317
    assert len(chain["sequence"]) == 317 and chain["sequence"].startswith("GTTKHSK")
    # The last residue has only its N atom (see the fixture README).
    assert chain["missing_backbone"] == ["ALA317"]
    assert chain["ligands"] == [{"name": "FAD", "residue": "500", "atoms": 53, "kind": "ligand"}]
    assert any("without a CA" in w for w in info["warnings"])


def test_nonstandard_residues_and_side_chains(capsys: pytest.CaptureFixture[str]) -> None:
    code, info, _ = _json(capsys, [str(DATA / "1JK9_r_u.pdb.gz")])
    assert code == 0
    (chain,) = info["chains"]
    mse = {ln[22:27] for ln in _atom_lines(DATA / "1JK9_r_u.pdb.gz") if ln[17:20] == "MSE"}
    assert chain["nonstandard"] == [{"name": "MSE", "as": "M", "count": len(mse)}]
    assert chain["ligands"] == []
    code, info, _ = _json(capsys, [str(DATA / "1E4K_r_b.pdb.gz")])
    assert [c["chain"] for c in info["chains"]] == ["A", "B"]
    lig_atoms = sum(g["atoms"] for c in info["chains"] for g in c["ligands"])
    hetatm = [ln for ln in _atom_lines(DATA / "1E4K_r_b.pdb.gz") if ln.startswith("HETATM")]
    assert lig_atoms == len(hetatm) == 220
    # Residues listed with missing side chains really lack atoms of their type.
    from tertiary import constants as rc
    from tertiary.protein import Protein

    code, info, _ = _json(capsys, [str(DATA / "1AVX_r_b.pdb.gz")])
    p = Protein.from_file(DATA / "1AVX_r_b.pdb.gz")
    listed = {(c["chain"], r) for c in info["chains"] for r in c["missing_side_chain"]}
    assert len(listed) == 2
    for i in range(len(p)):
        label = f"{p.residue_name[i]}{p.residue_index[i]}{p.insertion_code[i]}"
        expected = rc.RESTYPE_ATOM37_MASK[p.aatype[i]].copy()
        expected[[0, 1, 2, 4]] = 0  # N CA C O
        lacks = bool((expected > (p.atom_mask[i] > 0)).any())
        assert lacks == ((p.chain_id[i], label) in listed), label


def test_models_and_model_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, info, _ = _json(capsys, [str(NMR), "--model", "3"])
    assert code == 0 and info["models"] == 38 and info["model"] == 3
    assert info["chains"][0]["sequence"] == "NLYIQWLKDGGPSSGRPPPS"
    code, info, _ = _json(capsys, [str(DATA / "1l2y.cif.gz")])
    assert info["format"] == "mmcif" and info["models"] == 38


def test_chain_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, info, _ = _json(capsys, [str(DATA / "1E4K_r_b.pdb.gz"), "--chains", "B"])
    assert code == 0 and [c["chain"] for c in info["chains"]] == ["B"]


def test_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(DATA / "1ACB_l_u.pdb.gz"), str(DATA / "2AYO_l_u.pdb.gz")]) == 0
    out = capsys.readouterr().out
    assert "chain (blank): 70 residues" in out
    assert "non-standard residues: DVA x1 (as V)" in out
    assert out.count("PDB, 1 model") == 2


def test_batch_reports_bad_files_and_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.pdb"
    lines = _atom_lines(DATA / "1ACB_l_b.pdb.gz")
    bad.write_text("\n".join(lines[:10] + [lines[10][:40]] + lines[11:]) + "\n")
    empty = tmp_path / "empty.cif"
    empty.write_text("")
    files = [str(DATA / "1ACB_l_b.pdb.gz"), str(bad), str(tmp_path / "missing.pdb"), str(empty),
             str(DATA / "1aki.cif.gz")]
    code, infos, err = _json(capsys, files)
    assert code == 2
    assert [("error" in i) for i in infos] == [False, True, True, True, False]
    assert "line 11" in infos[1]["error"] and "broken.pdb" in infos[1]["error"]
    err_lines = err.strip().splitlines()
    assert len(err_lines) == 4  # one per bad file + the summary
    assert err_lines[-1] == "tertiary info: 3 of 5 files could not be read"
    assert infos[4]["chains"][0]["length"] == 129


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02garbage\xff" * 50, b"HELLO WORLD\n"])
def test_single_bad_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    path = tmp_path / "x.pdb"
    path.write_bytes(content)
    assert main(["info", str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    (line,) = out.err.strip().splitlines()
    assert line.startswith("tertiary info: error: ") and "x.pdb" in line


def test_entry_point(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tertiary.cli.main", "info", str(tmp_path / "nope.cif")],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "nope.cif: no such file" in run.stderr


def test_legacy_file_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(DATA / "1ACB_l_b.pdb.gz")]) == 0
    assert "chain I: 63 residues" in capsys.readouterr().out
