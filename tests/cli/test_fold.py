"""``tertiary fold`` end to end: tiny random weights (always) and the OpenFold reference weights (when present)."""

from __future__ import annotations

import dataclasses
import json
import sys
from importlib import util
from pathlib import Path

import gemmi
import numpy as np
import pytest
import torch
from conftest import open_refs, require
from safetensors.torch import load_file, save_file

import tertiary.cli.fold as fold_cli
from tertiary.cli.main import main
from tertiary.models.alphafold.config import DataConfig
from tertiary.models.alphafold.model import AlphaFold
from tertiary.models.alphafold.weights import save_weights

SEQ = "MKTAYIAKQRQISFVKSHFSRQ"


def _tiny_config():
    path = Path(__file__).resolve().parents[1] / "models" / "alphafold" / "test_model.py"
    spec = util.spec_from_file_location("_af2_test_model_cli", path)
    module = util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    # few cluster centres, so an MSA of a dozen rows is sampled (and the seed matters)
    return dataclasses.replace(module.tiny_config(), data=DataConfig(max_msa_clusters=4, max_extra_msa=8, num_recycles=1))


@pytest.fixture(scope="module")
def tiny_params(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = AlphaFold(_tiny_config())
    with torch.no_grad():  # AlphaFold's zero-initialised output layers would put every atom at the origin
        for param in model.parameters():
            param.add_(0.2 * torch.randn_like(param))
    return save_weights(model, tmp_path_factory.mktemp("w") / "tiny")


def _fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{k}\n{v}\n" for k, v in records.items()))
    return path


def _a3m(path: Path, query: str, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = [query]
    for _ in range(n):
        row = [rng.choice(list("ACDEFGHIKLMNPQRSTVWY")) if rng.random() < 0.3 else c for c in query]
        row[int(rng.integers(len(row)))] = "-"
        rows.append("".join(row))
    path.write_text("".join(f">s{i}\n{r}\n" for i, r in enumerate(rows)))
    return path


def _ca(path: Path) -> np.ndarray:
    st = gemmi.read_structure(str(path))
    return np.array([[a.pos.x, a.pos.y, a.pos.z] for r in st[0][0] for a in r if a.name == "CA"])


def test_fold_multi_record_fasta_skips_bad_and_finished(tmp_path, tiny_params, capsys) -> None:
    fasta = _fasta(tmp_path / "q.fasta", {"good1 first": "MKTAYIAKQR", "bad": "MKT1AY", "good2": "GSHMLEDPVAG"})
    out = tmp_path / "out"
    args = ["fold", str(fasta), "--params", str(tiny_params), "-o", str(out), "--num-recycles", "2", "--seed", "3"]
    assert main(args) == 1  # one record failed, the others were folded
    err = capsys.readouterr().err
    assert "[1/2] good1 (10 res)" in err and "[2/2] good2 (11 res)" in err and "3/3" in err  # recycles shown
    summary = json.loads((out / "summary.json").read_text())
    assert [f["name"] for f in summary["folded"]] == ["good1", "good2"]
    assert len(summary["failed"]) == 1 and "bad" in summary["failed"][0]["error"]
    for name, length in (("good1", 10), ("good2", 11)):
        conf = json.loads((out / f"{name}.confidence.json").read_text())
        assert len(conf["plddt"]) == length and 0 <= conf["mean_plddt"] <= 100
        assert conf["mean_plddt"] == pytest.approx(np.mean(conf["plddt"]), abs=0.01)
        assert 0 <= conf["ptm"] <= 1 and conf["max_pae"] > 0
        pae = json.loads((out / f"{name}.pae.json").read_text())
        matrix = np.asarray(pae[0]["predicted_aligned_error"])
        assert matrix.shape == (length, length) and 0 <= matrix.min() and matrix.max() <= conf["max_pae"]
        assert pae[0]["max_predicted_aligned_error"] == conf["max_pae"]
        st = gemmi.read_structure(str(out / f"{name}.pdb"))
        assert len(st[0][0]) == length
        for res, value in zip(st[0][0], conf["plddt"]):
            assert all(abs(a.b_iso - value) < 0.01 for a in res)  # pLDDT 0-100 in the B-factor column
        block = gemmi.cif.read(str(out / f"{name}.cif")).sole_block()
        assert float(block.find_value("_ma_qa_metric_global.metric_value")) == pytest.approx(conf["mean_plddt"], abs=0.01)
        assert block.find_value("_audit_conform.dict_name") == "mmcif_ma.dic"
        assert block.find_value("_entity_poly.pdbx_seq_one_letter_code") == {"good1": "MKTAYIAKQR", "good2": "GSHMLEDPVAG"}[name]
        assert gemmi.read_structure(str(out / f"{name}.cif")).entities[0].full_sequence == [r.name for r in st[0][0]]
        local = block.find("_ma_qa_metric_local.", ["label_seq_id", "metric_value"])
        assert [float(row[1]) for row in local] == pytest.approx(conf["plddt"], abs=0.01)
        for png in ("plddt", "pae", "msa_coverage"):
            assert (out / f"{name}.{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert set(json.loads((out / f"{name}.timings.json").read_text())) == {"features", "model", "write"}
    run_config = json.loads((out / "config.json").read_text())
    assert run_config["seed"] == 3 and run_config["num_recycles"] == 2 and "torch" in run_config["versions"]
    assert run_config["arguments"]["seed"] == 3 and run_config["model_config"]["c_m"] == 16
    before = (out / "good1.pdb").stat().st_mtime_ns
    assert main(args) == 1  # the bad record still fails
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == ["good1", "good2"] and (out / "good1.pdb").stat().st_mtime_ns == before
    assert main(args + ["--overwrite", "--chunk-size", "4", "--no-plots"]) == 1
    assert json.loads((out / "summary.json").read_text())["skipped"] == []
    assert (out / "good1.pdb").stat().st_mtime_ns != before


def test_fold_folder_with_msas_seed_and_bf16(tmp_path, tiny_params) -> None:
    queries, msas = tmp_path / "queries", tmp_path / "msas"
    queries.mkdir()
    msas.mkdir()
    _fasta(queries / "a.fasta", {"a": SEQ})
    _fasta(queries / "b.fa", {"b": SEQ[:15]})
    (queries / "notes.txt").write_text("not a FASTA file")
    _a3m(msas / "a.a3m", SEQ, 12)
    base = ["fold", str(queries), "--msa", str(msas), "--params", str(tiny_params), "--no-plots", "--device", "cpu"]
    assert main(base + ["-o", str(tmp_path / "s0"), "--seed", "0"]) == 0
    summary = json.loads((tmp_path / "s0" / "summary.json").read_text())
    assert {f["name"]: f["msa_rows"] for f in summary["folded"]} == {"a": 13, "b": 1}  # b: single sequence
    assert main(base + ["-o", str(tmp_path / "s0b"), "--seed", "0"]) == 0
    assert main(base + ["-o", str(tmp_path / "s1"), "--seed", "1"]) == 0
    ca0, ca0b, ca1 = (_ca(tmp_path / d / "a.pdb") for d in ("s0", "s0b", "s1"))
    assert np.array_equal(ca0, ca0b)  # deterministic given the seed
    assert not np.allclose(ca0, ca1, atol=1e-3)  # another MSA sample and BERT mask
    assert main(base + ["-o", str(tmp_path / "bf16"), "--bf16"]) == 0
    ca_bf16 = _ca(tmp_path / "bf16" / "a.pdb")
    assert np.isfinite(ca_bf16).all() and ca_bf16.shape == ca0.shape
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["arguments"]["bf16"] is True


def test_fold_stockholm_msa_and_a_mismatched_msa_in_a_batch(tmp_path, tiny_params, capsys) -> None:
    from tertiary.sequence import read_fasta, read_msa

    fixtures = Path(__file__).resolve().parents[1] / "data" / "sequence"
    query = read_fasta(fixtures / "2q2k_A.fasta")[0]
    msas = tmp_path / "msas"
    msas.mkdir()
    (msas / "target.sto").write_text((fixtures / "2q2k_A_uniref90_hits.sto").read_text())
    _a3m(msas / "other.a3m", SEQ[::-1], 3)  # belongs to another sequence
    fasta = _fasta(tmp_path / "q.fasta", {"target": query.sequence, "other": SEQ})
    out = tmp_path / "out"
    assert main(["fold", str(fasta), "--msa", str(msas), "--params", str(tiny_params), "-o", str(out), "--no-plots"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["folded"][0]["name"] == "target"
    assert summary["folded"][0]["msa_rows"] == read_msa(fixtures / "2q2k_A_uniref90_hits.sto").depth > 1
    assert summary["failed"][0]["name"] == "other" and "other.a3m" in summary["failed"][0]["error"]


def test_fold_user_errors_are_one_line(tmp_path, tiny_params, monkeypatch, capsys) -> None:
    fasta = _fasta(tmp_path / "q.fasta", {"q": "MKTAYIAKQR"})
    out = str(tmp_path / "o")

    def fails(args: list[str], *words: str) -> None:
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err and err[-1].startswith("tertiary fold: error:"), err
        for word in words:
            assert word in err[-1], (word, err[-1])

    monkeypatch.delenv("TERTIARY_PARAMS", raising=False)
    fails(["fold", str(fasta), "-o", out], "--params", "TERTIARY_PARAMS")
    fails(["fold", str(fasta), "-o", out, "--params", str(tmp_path / "nope.npz")], "nope.npz", "not found")
    monkeypatch.setenv("TERTIARY_PARAMS", str(tmp_path))
    fails(["fold", str(fasta), "-o", out, "--preset", "model_3_ptm"], str(tmp_path), "params_model_3_ptm.npz")
    fails(["fold", str(fasta), "-o", out], "TERTIARY_PARAMS", "--preset")
    fails(["fold", str(fasta), "-o", out, "--params", str(tiny_params), "--preset", "model_3_ptm"], "'tiny'")
    fails(["fold", str(fasta), "-o", out, "--params", str(tiny_params), "--config", str(tiny_params.with_suffix(".json"))],
          "own config")  # fmt: skip
    monkeypatch.setenv("TERTIARY_PARAMS", str(tiny_params.parent))  # a folder: the preset's file is found there
    assert main(["fold", str(fasta), "-o", str(tmp_path / "env"), "--preset", "tiny", "--no-plots"]) == 0
    assert json.loads((tmp_path / "env" / "config.json").read_text())["params"] == str(tiny_params)
    monkeypatch.setenv("TERTIARY_PARAMS", str(tiny_params))  # the variable naming a file works
    fails(["fold", str(_fasta(tmp_path / "bad.fasta", {"bad": "MKTAYZ1KQR"})), "-o", out], "bad", "1")
    msa = tmp_path / "wrong.a3m"
    msa.write_text(">q\nMKTAYIAKQW\n")
    fails(["fold", str(fasta), "--msa", str(msa), "-o", out], "wrong.a3m", "position 10")
    fails(["fold", str(fasta), "-o", out, "--num-recycles", "-1"], "--num-recycles")
    fails(["fold", str(fasta), "-o", out, "--chunk-size", "0"], "--chunk-size")
    fails(["fold", str(fasta), "-o", out, "--device", "tpu:x"], "--device")
    if not torch.cuda.is_available():
        fails(["fold", str(fasta), "-o", out, "--device", "cuda"], "CUDA")
    fails(["fold", str(fasta), "-o", out, "--preset", "model_9"], "model_9")
    monkeypatch.setitem(sys.modules, "openmm", None)  # as if OpenMM were not installed
    fails(["fold", str(fasta), "-o", str(tmp_path / "r"), "--relax"], "tertiary[relax]")
    assert not (tmp_path / "r").exists()  # nothing was folded


def test_fold_without_matplotlib_writes_everything_but_plots(tmp_path, tiny_params, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    fasta = _fasta(tmp_path / "q.fasta", {"q": "MKTAYIAKQR"})
    assert main(["fold", str(fasta), "--params", str(tiny_params), "-o", str(tmp_path / "o")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "matplotlib is not installed" in err and "tertiary[plots]" in err
    assert (tmp_path / "o" / "q.cif").is_file() and not list((tmp_path / "o").glob("*.png"))


def test_fold_bad_parameter_files(tmp_path, tiny_params, capsys) -> None:
    fasta = _fasta(tmp_path / "q.fasta", {"q": "MKTAYIAKQR"})

    def fails(params: Path, *words: str, extra: tuple[str, ...] = ()) -> str:
        assert main(["fold", str(fasta), "--params", str(params), "-o", str(tmp_path / "o"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        for word in words:
            assert word in err, (word, err)
        return err

    tiny_json = tiny_params.with_suffix(".json")
    # corrupt files of each format (caught before any model is built)
    for suffix in (".safetensors", ".npz", ".pt"):
        bad = tmp_path / f"corrupt{suffix}"
        bad.write_bytes(b"\x00garbage" * 10)
        if suffix == ".safetensors":
            bad.with_suffix(".json").write_text(tiny_json.read_text())
        fails(bad, bad.name, extra=("--config", str(tiny_json)))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(tiny_params.read_bytes()[:5000])
    truncated.with_suffix(".json").write_text(tiny_json.read_text())
    fails(truncated, "truncated.safetensors", "unreadable")
    # missing and unexpected keys are listed by name
    state = load_file(str(tiny_params))
    renamed = dict(state)
    renamed["evoformer.blocks.0.extra_weight"] = renamed.pop("evoformer.blocks.0.msa_transition.linear_1.weight")
    keys = tmp_path / "keys.safetensors"
    save_file(renamed, str(keys))
    keys.with_suffix(".json").write_text(tiny_json.read_text())
    fails(keys, "1 missing", "evoformer.blocks.0.msa_transition.linear_1.weight", "1 unexpected",
          "evoformer.blocks.0.extra_weight")  # fmt: skip
    # a config that does not match the tensors: shapes compared
    cfg = json.loads(tiny_json.read_text())
    cfg["evoformer"]["transition_n"] = 4  # the tensors have 2
    shapes = tmp_path / "shapes.safetensors"
    save_file(state, str(shapes))
    shapes.with_suffix(".json").write_text(json.dumps(cfg))
    fails(shapes, "wrong shape", "evoformer.blocks.0.msa_transition.linear_1.weight (32, 16) != (64, 16)")
    # official-format parameters of another model size (the reference .npz, when present)
    try:
        refs = open_refs("openfold")
    except pytest.skip.Exception:
        return
    npz = require(refs / "weights" / "params_model_3_ptm_small.npz")
    err = fails(npz, npz.name, extra=("--config", str(tiny_json)))
    assert "expected 2 stacked blocks" in err or "shape" in err or "missing" in err


def test_fold_memory_estimate_warns_and_refuses(tmp_path, tiny_params, monkeypatch, capsys) -> None:
    from tertiary.models.alphafold.memory import estimate_peak_bytes
    from tertiary.models.alphafold.weights import load_weights

    model = load_weights(tiny_params)
    n_params = sum(p.numel() for p in model.parameters())
    fasta = _fasta(tmp_path / "q.fasta", {"q": SEQ})
    args = ["fold", str(fasta), "--params", str(tiny_params), "--no-plots"]
    need = estimate_peak_bytes(model.config, len(SEQ), 1, 1, None, 4, n_params)
    least = estimate_peak_bytes(model.config, len(SEQ), 1, 1, 1, 4, n_params)
    monkeypatch.setattr(fold_cli, "available_memory", lambda device: int(need * 1.1))
    assert main(args + ["-o", str(tmp_path / "warn")]) == 0  # close to the limit: warns, still folds
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: q: estimated peak memory" in err and "--chunk-size" in err
    monkeypatch.setattr(fold_cli, "available_memory", lambda device: int(least * 0.3))
    assert main(args + ["-o", str(tmp_path / "oom")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tertiary fold: error: q:") and "--chunk-size 1" in err and "GiB" in err
    assert not (tmp_path / "oom" / "q.pdb").exists()


def test_fold_check_memory_scales_with_length() -> None:
    from tertiary.errors import ResourceError
    from tertiary.models.alphafold.config import AlphaFoldConfig

    config = AlphaFoldConfig.preset("model_1_ptm")
    gib = 2**30
    device = torch.device("cpu")
    assert fold_cli.check_memory(config, "x", 100, 512, 1024, None, False, 93_000_000, 64 * gib, device) is None
    warning = fold_cli.check_memory(config, "x", 1000, 512, 5120, None, False, 93_000_000, 16 * gib, device)
    assert warning is not None and "--chunk-size" in warning
    hint = int(warning.rsplit("--chunk-size", 1)[1].split()[0])
    assert fold_cli.check_memory(config, "x", 1000, 512, 5120, hint, False, 93_000_000, 16 * gib, device) is None
    assert fold_cli.check_memory(config, "x", 1000, 512, 5120, hint, True, 93_000_000, 16 * gib, device) is None
    with pytest.raises(ResourceError, match="x: 5000 residues"):
        fold_cli.check_memory(config, "x", 5000, 512, 5120, None, False, 93_000_000, 1 * gib, device)


def test_fold_with_relax(tmp_path, tiny_params, shared_data, monkeypatch) -> None:
    """--relax wiring: the query is Trp-cage (1L2Y); the tiny random model's prediction is not a
    protein-like structure, so the written model is replaced by the NMR structure with noise
    (what relaxation is for) before the relaxation step reads it."""
    pytest.importorskip("openmm")
    pytest.importorskip("pdbfixer")
    from tertiary.errors import TertiaryError
    from tertiary.protein import Protein
    from tertiary.relax import find_violations

    native = Protein.from_file(require(shared_data / "structure_testset" / "biotite" / "pdb" / "1l2y.pdb.gz"))
    real_write = fold_cli.write_structures

    def write_noisy_native(out, name, sequence, result):
        real_write(out, name, sequence, result)
        noise = np.random.default_rng(0).normal(0, 0.3, native.atom_positions.shape).astype(np.float32)
        plddt = np.repeat(result["plddt"][:, None], 37, 1) * native.atom_mask
        Protein(atom_positions=native.atom_positions + noise * native.atom_mask[..., None], atom_mask=native.atom_mask,
                aatype=native.aatype, residue_index=np.arange(1, len(native) + 1), chain_id=native.chain_id,
                b_factors=plddt).to_pdb(out / f"{name}.pdb")  # fmt: skip

    monkeypatch.setattr(fold_cli, "write_structures", write_noisy_native)
    fasta = _fasta(tmp_path / "q.fasta", {"trp_cage": native.sequence()})
    out = tmp_path / "out"
    args = ["fold", str(fasta), "--params", str(tiny_params), "-o", str(out), "--no-plots", "--relax"]
    assert main(args[:-1]) == 0 and not (out / "trp_cage.relaxed.pdb").exists()
    assert main(args) == 0  # folded before: skipped, but the missing relaxed model is made
    assert (out / "trp_cage.relaxed.pdb").is_file()
    assert json.loads((out / "summary.json").read_text())["skipped"] == ["trp_cage"]
    assert main(args + ["--overwrite"]) == 0
    info = json.loads((out / "summary.json").read_text())["folded"][0]
    unrelaxed = Protein.from_file(out / "trp_cage.pdb")
    relaxed = Protein.from_file(out / "trp_cage.relaxed.pdb")
    assert relaxed.sequence() == unrelaxed.sequence() == native.sequence()
    assert info["relax"]["violations_before"] > 0 and info["relax"]["violations_after"] == 0
    assert find_violations(relaxed)["per_residue"].sum() == 0 and info["relax"]["rmsd"] < 0.7
    assert "relax" in json.loads((out / "trp_cage.timings.json").read_text())
    assert np.allclose(relaxed.b_factors.max(1), unrelaxed.b_factors.max(1), atol=0.01)  # pLDDT kept

    def broken(pdb, out_path):
        raise TertiaryError(f"relax {pdb}: minimisation failed 3 times (NaN)")

    monkeypatch.setattr(fold_cli, "relax_structure", broken)
    assert main(args + ["--overwrite"]) == 1  # the prediction is kept, the failed relaxation reported
    summary = json.loads((out / "summary.json").read_text())
    assert [f["name"] for f in summary["folded"]] == ["trp_cage"] and "NaN" in summary["failed"][0]["error"]


def test_fold_with_openfold_reference_weights(tmp_path) -> None:
    """Both foreign formats of the seeded reference weights (OpenFold .pt, AlphaFold2 .npz) fold the
    reference protein, and give the same prediction for the same seed."""
    refs = open_refs("openfold")
    meta = json.loads(require(refs / "meta.json").read_text())
    cas = []
    for weights in ("openfold.pt", "params_model_3_ptm_small.npz"):
        out = tmp_path / weights
        args = ["fold", str(require(refs / "inputs" / "2q2k_A.fasta")), "--msa", str(require(refs / "inputs" / "2q2k_A.a3m")),
                "--params", str(require(refs / "weights" / weights)), "--config", str(refs / "meta.json"),
                "-o", str(out), "--no-plots", "--seed", "0"]  # fmt: skip
        assert main(args) == 0
        summary = json.loads((out / "summary.json").read_text())["folded"][0]
        assert summary["length"] == meta["protein"]["length"]
        st = gemmi.read_structure(str(out / f"{summary['name']}.cif"))
        assert gemmi.one_letter_code([r.name for r in st[0][0]]) == meta["protein"]["sequence"].upper()
        cas.append(_ca(out / f"{summary['name']}.pdb"))
        assert cas[-1].shape == (meta["protein"]["length"], 3) and np.isfinite(cas[-1]).all()
    assert np.abs(cas[0] - cas[1]).max() < 2e-3  # written to 3 decimals


def test_fold_model_without_ptm_head(tmp_path) -> None:
    """Non-_ptm models: pLDDT only; no PAE file or plot, pTM / max PAE null."""
    config = _tiny_config()
    config = dataclasses.replace(config, heads=dataclasses.replace(config.heads, tm_enabled=False))
    torch.manual_seed(1)
    params = save_weights(AlphaFold(config), tmp_path / "w" / "noptm")
    out = tmp_path / "out"
    assert main(["fold", str(_fasta(tmp_path / "q.fasta", {"q": SEQ})), "--params", str(params), "-o", str(out)]) == 0
    conf = json.loads((out / "q.confidence.json").read_text())
    assert conf["ptm"] is None and conf["max_pae"] is None and len(conf["plddt"]) == len(SEQ)
    assert not (out / "q.pae.json").exists() and not (out / "q.pae.png").exists()
    assert (out / "q.plddt.png").is_file() and (out / "q.msa_coverage.png").is_file()
