"""``tertiary fold`` end to end: tiny random weights (always) and the OpenFold reference weights (when present)."""

from __future__ import annotations

import json
from importlib import util
from pathlib import Path

import gemmi
import numpy as np
import pytest
import torch
from conftest import open_refs, require

from tertiary.cli.main import main
from tertiary.models.alphafold.model import AlphaFold
from tertiary.models.alphafold.weights import save_weights


def _tiny_config():
    path = Path(__file__).resolve().parents[1] / "models" / "alphafold" / "test_model.py"
    spec = util.spec_from_file_location("_af2_test_model_cli", path)
    module = util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.tiny_config()


@pytest.fixture(scope="module")
def tiny_params(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_weights(AlphaFold(_tiny_config()), tmp_path_factory.mktemp("w") / "tiny")


def test_fold_multi_record_fasta_skips_bad_and_finished(tmp_path, tiny_params, capsys) -> None:
    fasta = tmp_path / "q.fasta"
    fasta.write_text(">good1 first\nMKTAYIAKQR\n>bad\nMKT1AY\n>good2\nGSHMLEDPVAG\n")
    out = tmp_path / "out"
    args = ["fold", str(fasta), "--params", str(tiny_params), "-o", str(out), "--num-recycles", "1", "--seed", "3"]
    assert main(args) == 1  # one record failed, the others were folded
    summary = json.loads((out / "summary.json").read_text())
    assert [f["name"] for f in summary["folded"]] == ["good1", "good2"]
    assert len(summary["failed"]) == 1 and "bad" in summary["failed"][0]["error"]
    for name, length in (("good1", 10), ("good2", 11)):
        conf = json.loads((out / f"{name}.confidence.json").read_text())
        assert len(conf["plddt"]) == length and 0 <= conf["mean_plddt"] <= 100
        assert conf["ptm"] is not None and conf["max_pae"] > 0
        pae = json.loads((out / f"{name}.pae.json").read_text())
        assert np.asarray(pae[0]["predicted_aligned_error"]).shape == (length, length)
        st = gemmi.read_structure(str(out / f"{name}.pdb"))
        assert len(st[0][0]) == length
        b = [a.b_iso for a in st[0][0][0]]
        assert np.allclose(b, conf["plddt"][0], atol=0.01)
        block = gemmi.cif.read(str(out / f"{name}.cif")).sole_block()
        assert float(block.find_value("_ma_qa_metric_global.metric_value")) == pytest.approx(conf["mean_plddt"], abs=0.01)
        for png in ("plddt", "pae", "msa_coverage"):
            assert (out / f"{name}.{png}.png").stat().st_size > 1000
        assert set(json.loads((out / f"{name}.timings.json").read_text())) == {"features", "model", "write"}
    run_config = json.loads((out / "config.json").read_text())
    assert run_config["seed"] == 3 and run_config["num_recycles"] == 1 and "torch" in run_config["versions"]
    before = (out / "good1.pdb").stat().st_mtime_ns
    assert main(args) == 1  # the bad record still fails
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == ["good1", "good2"] and (out / "good1.pdb").stat().st_mtime_ns == before
    assert main(args + ["--overwrite", "--chunk-size", "4", "--no-plots"]) == 1
    assert json.loads((out / "summary.json").read_text())["skipped"] == []


def test_fold_user_errors_are_one_line(tmp_path, tiny_params, monkeypatch, capsys) -> None:
    fasta = tmp_path / "q.fasta"
    fasta.write_text(">q\nMKTAYIAKQR\n")
    monkeypatch.delenv("TERTIARY_PARAMS", raising=False)
    assert main(["fold", str(fasta), "-o", str(tmp_path / "o")]) == 2
    assert "TERTIARY_PARAMS" in capsys.readouterr().err
    monkeypatch.setenv("TERTIARY_PARAMS", str(tmp_path))
    assert main(["fold", str(fasta), "-o", str(tmp_path / "o"), "--preset", "model_3_ptm"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "params_model_3_ptm.npz" in err
    msa = tmp_path / "wrong.a3m"
    msa.write_text(">q\nMKTAYIAKQW\n")
    assert main(["fold", str(fasta), "--msa", str(msa), "--params", str(tiny_params), "-o", str(tmp_path / "o")]) == 1
    assert "wrong.a3m" in json.loads((tmp_path / "o" / "summary.json").read_text())["failed"][0]["error"]
    try:
        import openmm  # noqa: F401
    except ImportError:
        assert main(["fold", str(fasta), "--params", str(tiny_params), "-o", str(tmp_path / "r"), "--relax"]) == 2
        assert "tertiary[relax]" in capsys.readouterr().err


def test_fold_with_openfold_reference_weights(tmp_path) -> None:
    refs = open_refs("openfold")
    meta = json.loads(require(refs / "meta.json").read_text())
    out = tmp_path / "out"
    args = ["fold", str(require(refs / "inputs" / "2q2k_A.fasta")), "--msa", str(require(refs / "inputs" / "2q2k_A.a3m")),
            "--params", str(require(refs / "weights" / "openfold.pt")), "--config", str(refs / "meta.json"),
            "-o", str(out), "--no-plots"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())["folded"][0]
    assert summary["length"] == meta["protein"]["length"]
    st = gemmi.read_structure(str(out / f"{summary['name']}.cif"))
    assert gemmi.one_letter_code([r.name for r in st[0][0]]) == meta["protein"]["sequence"].upper()
