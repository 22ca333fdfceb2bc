"""``tertiary embed``: streaming output, index, per-file failures, weight / architecture errors."""

from __future__ import annotations

import json
import shutil

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
