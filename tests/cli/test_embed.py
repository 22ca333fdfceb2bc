"""``tertiary embed``: streaming output, index, per-file failures, weight / architecture errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_model

from tertiary.cli.main import main
from tertiary.data.function import load_structure_sample
from tertiary.data.graph import build_residue_graph
from tertiary.models.fusionprot.task import FunctionModel, FunctionModelConfig, build_encoder

MODEL = {"encoder": "fusionprot", "esm_preset": "tiny", "gnn_hidden_dim": 8, "inject_step": 2, "head_layers": 2}


@pytest.fixture
def structures(tests_data, tmp_path):
    folder = tmp_path / "in" / "sub"
    folder.mkdir(parents=True)
    src = tests_data / "function" / "deepfri_mini" / "structures"
    for name in ("6HPR-A.pdb.gz", "2YSL-A.pdb.gz", "2CG5-B.pdb.gz"):
        shutil.copy(src / name, folder / name)
    (folder / "broken.pdb").write_text("ATOM      1  CA  ALA A   1    garbage\n")
    return tmp_path / "in"


def _checkpoint(tmp_path, model_cfg=MODEL):
    run = tmp_path / "run"
    run.mkdir()
    cfg = FunctionModelConfig(**model_cfg)
    encoder, _ = build_encoder(cfg, seed=1)
    model = FunctionModel(encoder, 5, cfg.head_layers, residue_level=False)
    g = torch.Generator().manual_seed(0)
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    save_model(model, str(run / "model.safetensors"))
    (run / "config.json").write_text(json.dumps({"task": "function", "model": model_cfg}))
    return run, model.encoder.eval()


def test_embed_folder_writes_index_and_reports_failures(structures, tmp_path, capsys):
    run, encoder = _checkpoint(tmp_path)
    out = tmp_path / "emb.safetensors"
    rc = main(["embed", str(structures), "--model", "fusionprot", "--checkpoint", str(run), "-o", str(out), "-q",
               "--window", "2", "--batch-residues", "150"])
    assert rc == 1  # one file failed, the others were embedded
    report = json.loads((tmp_path / "emb.safetensors.report.json").read_text())
    assert report["embedded"] == 3 and list(report["failed"]) == [str(structures / "sub" / "broken.pdb")]
    with safe_open(str(out), "pt") as fh:
        names = json.loads(fh.metadata()["names"])
        prot = fh.get_tensor("protein_embeddings")
        res = fh.get_tensor("residue_embeddings")
        offsets = fh.get_tensor("residue_offsets")
        index = fh.get_tensor("residue_index")
    assert sorted(n.split("/")[-1] for n in names) == ["2CG5-B.pdb.gz", "2YSL-A.pdb.gz", "6HPR-A.pdb.gz"]
    assert prot.shape == (3, encoder.output_dim) and offsets.shape == (4,)
    assert res.shape[0] == index.shape[0] == int(offsets[-1])
    with torch.no_grad():
        for p, name in enumerate(names):
            s = load_structure_sample(name)
            alone = encoder(build_residue_graph(s.pos, s.residue_type, s.chain))
            lo, hi = int(offsets[p]), int(offsets[p + 1])
            assert hi - lo == len(s)
            assert torch.equal(index[lo:hi], s.residue_index)
            assert torch.allclose(prot[p], alone["graph_feature"][0], atol=1e-3, rtol=1e-4)
            assert torch.allclose(res[lo:hi], alone["node_feature"], atol=1e-4, rtol=1e-4)


def test_length_limit_and_truncate(structures, tmp_path):
    run, _ = _checkpoint(tmp_path)
    out = tmp_path / "e.safetensors"
    args = ["embed", str(structures / "sub" / "2YSL-A.pdb.gz"), "--model", "fusionprot", "--checkpoint", str(run),
            "-o", str(out), "-q", "--max-length", "40"]
    assert main(args) == 2
    report = json.loads((tmp_path / "e.safetensors.report.json").read_text())
    assert "more than the limit of 40" in next(iter(report["failed"].values()))
    assert main([*args, "--truncate", "--no-residues"]) == 0
    with safe_open(str(out), "pt") as fh:
        assert list(fh.keys()) == ["protein_embeddings"]


def test_weight_and_architecture_errors(structures, tmp_path, capsys):
    run, _ = _checkpoint(tmp_path)
    out = str(tmp_path / "x.safetensors")
    assert main(["embed", str(structures), "--model", "esm", "-o", out, "-q"]) == 2
    assert "--esm-weights" in capsys.readouterr().err
    assert main(["embed", str(structures), "--model", "gearnet", "--checkpoint", str(run), "-o", out, "-q"]) == 2
    assert "holds a 'fusionprot' model" in capsys.readouterr().err
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["gnn_hidden_dim"] = 12
    (run / "config.json").write_text(json.dumps(cfg))
    assert main(["embed", str(structures), "--model", "fusionprot", "--checkpoint", str(run), "-o", out, "-q"]) == 2
    err = capsys.readouterr().err
    assert "does not fit" in err and "shape mismatches" in err and "gearnet.layers.0.batch_norm.bias: file (8,) vs model (12,)" in err
    assert main(["embed", str(tmp_path / "nope"), "--model", "esm", "-o", out]) == 2
    assert "no such file" in capsys.readouterr().err


def test_esm_from_reference_weights(structures, tmp_path):
    from conftest import shared_root

    weights = shared_root() / "refs" / "esm" / "weights" / "esm2_small.pt"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    out = tmp_path / "esm.safetensors"
    assert main(["embed", str(structures / "sub" / "6HPR-A.pdb.gz"), "--model", "esm", "--esm-weights", str(weights),
                 "-o", str(out), "-q"]) == 0
    with safe_open(str(out), "pt") as fh:
        assert fh.get_tensor("protein_embeddings").shape == (1, 64)


# --------------------------------------------------------------------------- bad input, many files
THREE = {"A": "ALA", "G": "GLY", "K": "LYS", "L": "LEU", "E": "GLU", "S": "SER", "V": "VAL", "X": "UNK"}


def _pdb(seq: str, drop_ca: tuple[int, ...] = (), start: int = 1, skip_numbers: tuple[int, ...] = ()) -> str:
    """A helix-like backbone (N, CA, C, O) with the given one-letter residues."""
    import math

    lines, serial, number = [], 1, start
    for i, aa in enumerate(seq):
        while number in skip_numbers:
            number += 1
        t = i * 100 * math.pi / 180
        ca = (2.3 * math.cos(t), 2.3 * math.sin(t), 1.5 * i)
        atoms = {"N": (ca[0] - 1.0, ca[1] + 0.5, ca[2] - 0.6), "CA": ca,
                 "C": (ca[0] + 1.0, ca[1] + 0.4, ca[2] + 0.5), "O": (ca[0] + 1.6, ca[1] + 0.9, ca[2] + 1.3)}
        for name, (x, y, z) in atoms.items():
            if name == "CA" and i in drop_ca:
                continue
            lines.append(f"ATOM  {serial:5d}  {name:<3s} {THREE[aa]} A{number:4d}    {x:8.3f}{y:8.3f}{z:8.3f}"
                         f"  1.00  0.00           {name[0]}")
            serial += 1
        number += 1
    return "\n".join([*lines, "END", ""])


def _ref_esm_weights():
    from conftest import shared_root

    weights = shared_root() / "refs" / "esm" / "weights" / "esm2_small.pt"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    return weights


def _gearnet_checkpoint(tmp_path):
    return _checkpoint(tmp_path, {"encoder": "gearnet", "gnn_hidden_dim": 8, "gnn_layers": 2, "head_layers": 1})


def test_bad_structures_are_reported_per_file_and_the_rest_goes_on(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.pdb").write_text(_pdb("AGKLESVAGK"))
    (folder / "no_ca.pdb").write_text(_pdb("AGKLESVAGK", drop_ca=(3,)))
    (folder / "unknown.pdb").write_text(_pdb("XXXXXXAG"))
    (folder / "gapped.pdb").write_text(_pdb("AGKLESVAGK", skip_numbers=(5, 6)))
    (folder / "mismatch.pdb").write_text(_pdb("AGKLESVAGK"))
    (folder / "unlisted.pdb").write_text(_pdb("AGKLE"))
    (folder / "empty.pdb").write_text("")
    fasta = tmp_path / "seqs.fasta"
    fasta.write_text(">good\nAGKLESVAGK\n>no_ca\nAGKLESVAGK\n>unknown\nKLAGKLAG\n"
                     ">gapped\nMMAGKLKKESVAGKMM\n>mismatch\nAGKLEWVAGK\n>empty\nAG\n")
    run, _ = _gearnet_checkpoint(tmp_path)
    out = tmp_path / "e.safetensors"
    rc = main(["embed", str(folder), "--model", "gearnet", "--checkpoint", str(run), "-o", str(out), "-q",
               "--sequences", str(fasta)])
    assert rc == 1
    failed = {k.rsplit("/", 1)[-1]: v for k, v in json.loads(Path(str(out) + ".report.json").read_text())["failed"].items()}
    assert sorted(failed) == ["empty.pdb", "mismatch.pdb", "no_ca.pdb", "unknown.pdb", "unlisted.pdb"]
    assert "1 of 10 residues have no CA atom" in failed["no_ca.pdb"]
    assert "75% of residues are unknown" in failed["unknown.pdb"]
    assert "does not match" in failed["mismatch.pdb"] and "structure residue 6 (S, author number 6)" in failed["mismatch.pdb"]
    assert "no record named 'unlisted'" in failed["unlisted.pdb"]
    with safe_open(str(out), "pt") as fh:
        names = [n.rsplit("/", 1)[-1] for n in json.loads(fh.metadata()["names"])]
    assert sorted(names) == ["gapped.pdb", "good.pdb"]  # unobserved residues are gaps, not mismatches
    assert "embedded 2 of 7" in capsys.readouterr().out
    # the same folder without the FASTA and with --drop-missing-ca: only the two unreadable ones fail
    rc = main(["embed", str(folder), "--model", "gearnet", "--checkpoint", str(run), "-o", str(out), "-q",
               "--drop-missing-ca"])
    failed = json.loads(Path(str(out) + ".report.json").read_text())["failed"]
    assert rc == 1 and sorted(k.rsplit("/", 1)[-1] for k in failed) == ["empty.pdb", "unknown.pdb"]


def test_check_sequence_messages():
    from tertiary.data.function import check_sequence, sample_from_arrays
    from tertiary.errors import InputError
    from tertiary.sequence import sequence_to_aatype

    aa = sequence_to_aatype("KLVX")
    sample, _ = sample_from_arrays("s", aa, np.zeros((4, 3)), np.ones(4, bool), residue_index=np.array([10, 11, 14, 15]))
    assert check_sequence(sample, "KLVA") == 0
    assert check_sequence(sample, "MKLGGVW") == 3  # gaps before, inside and after; X matches anything
    with pytest.raises(InputError, match=r"structure residue 3 \(V, author number 14\) has no match at or after "
                                         r"sequence position 3 \(which is A\)"):
        check_sequence(sample, "KLAA", "seqs.fasta record 's'")
    with pytest.raises(InputError, match="past its end"):
        check_sequence(sample, "KL")


def test_long_proteins_window_for_esm(tmp_path):
    from tertiary.models.esm import ESMConfig, load_esm, save_esm

    esm = load_esm(_ref_esm_weights())
    small = dataclasses.replace(esm.config, max_residues=16)
    esm.config = small
    weights = save_esm(esm, tmp_path / "esm16")
    assert load_esm(weights).config.max_residues == 16 and isinstance(small, ESMConfig)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "long.pdb").write_text(_pdb("AGKLESVAGKLLEEKKSAGV"))  # 20 residues
    (folder / "short.pdb").write_text(_pdb("AGKLESVAG"))
    out = tmp_path / "w.safetensors"
    base = ["embed", str(folder), "--model", "esm", "--esm-weights", str(weights), "-o", str(out), "-q"]
    assert main(base) == 1
    report = json.loads(Path(str(out) + ".report.json").read_text())
    assert "20 residues, more than the limit of 16 (use --long truncate or --long window)" in next(iter(report["failed"].values()))
    assert main([*base, "--long", "window"]) == 0
    report = json.loads(Path(str(out) + ".report.json").read_text())
    assert list(report["long"].values()) == ["20 residues run in overlapping windows of 16 (averaged per residue)"]
    with safe_open(str(out), "pt") as fh:
        names = json.loads(fh.metadata()["names"])
        res, offsets = fh.get_tensor("residue_embeddings"), fh.get_tensor("residue_offsets")
    p = [n.endswith("long.pdb") for n in names].index(True)
    from tertiary.models.esm import Alphabet

    with torch.no_grad():
        ref = esm(Alphabet().batch(["AGKLESVAGKLLEEKKSAGV"]), repr_layers=[small.num_layers], long_mode="window")
    torch.testing.assert_close(res[offsets[p] : offsets[p + 1]], ref["representations"][small.num_layers][0, 1:21])
    assert ref["long_sequences"]["windows"] == {0: [0, 4]}
    assert main([*base, "--long", "truncate"]) == 0
    report = json.loads(Path(str(out) + ".report.json").read_text())
    assert list(report["long"].values()) == ["truncated from 20 to 16 residues"]
    run, _ = _checkpoint(tmp_path)
    assert main(["embed", str(folder), "--model", "fusionprot", "--checkpoint", str(run), "-o", str(out), "-q",
                 "--long", "window"]) == 2


@pytest.mark.slow
def test_thousand_files_stream_through_a_bounded_window(tmp_path, monkeypatch):
    """1,000 files: parsed ``--window`` at a time, never more than that held before being written."""
    import tertiary.cli.embed as embed_cli
    import tertiary.data.function as function

    folder = tmp_path / "many"
    for k in range(10):
        (folder / f"d{k}").mkdir(parents=True)
    letters = "AGKLESV"
    for i in range(1000):
        seq = "".join(letters[(i * 7 + j * 3) % 7] for j in range(8 + i % 9))
        (folder / f"d{i % 10}" / f"p{i:04d}.pdb").write_text(_pdb(seq))
    (folder / "d3" / "bad.pdb").write_text("HEADER nothing\n")
    events = {"parsed": 0, "written": 0, "max_held": 0}
    real_load, real_append = function.load_structure_sample, embed_cli.SafetensorsStreamWriter.append

    def load(*a, **k):
        sample = real_load(*a, **k)  # raises for the bad file: nothing held
        events["parsed"] += 1
        events["max_held"] = max(events["max_held"], events["parsed"] - events["written"])
        return sample

    def append(self, name, rows):
        if name == "protein_embeddings":
            events["written"] += rows.shape[0]
        return real_append(self, name, rows)

    monkeypatch.setattr(function, "load_structure_sample", load)
    monkeypatch.setattr(embed_cli.SafetensorsStreamWriter, "append", append)
    run, encoder = _gearnet_checkpoint(tmp_path)
    out = tmp_path / "many.safetensors"
    assert main(["embed", str(folder), "--model", "gearnet", "--checkpoint", str(run), "-o", str(out), "-q",
                 "--window", "64", "--batch-residues", "256"]) == 1
    report = json.loads(Path(str(out) + ".report.json").read_text())
    assert report["embedded"] == 1000 and list(report["failed"]) == [str(folder / "d3" / "bad.pdb")]
    assert events["parsed"] == events["written"] == 1000
    assert events["max_held"] <= 64
    with safe_open(str(out), "pt") as fh:
        names = json.loads(fh.metadata()["names"])
        prot = fh.get_tensor("protein_embeddings")
    assert len(set(names)) == 1000 and prot.shape == (1000, encoder.output_dim)
    s = real_load(folder / "d5" / "p0005.pdb")
    with torch.no_grad():
        alone = encoder(build_residue_graph(s.pos, s.residue_type, s.chain))["graph_feature"][0]
    torch.testing.assert_close(prot[names.index(str(folder / "d5" / "p0005.pdb"))], alone, atol=1e-3, rtol=1e-4)
