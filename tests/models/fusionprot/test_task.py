"""FunctionTask: DeepFRI multi-label and secondary-structure tasks through the shared engine."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import numpy as np
import pytest
import torch

from tertiary.data.function import (
    SS_CLASSES,
    SecondaryStructureDataset,
    build_secondary_structure_cache,
    dssp_states,
)
from tertiary.errors import ConfigError, DataError
from tertiary.models.fusionprot.task import FunctionTask, function_metrics, predict
from tertiary.protein import Protein
from tertiary.train.config import from_dict
from tertiary.train.engine import Trainer
from tertiary.train.options import TrainConfig

TINY = {"encoder": "fusionprot", "esm_preset": "tiny", "gnn_hidden_dim": 8, "inject_step": 2, "head_layers": 2}


@pytest.fixture
def mini(tests_data):
    return tests_data / "function" / "deepfri_mini"


@pytest.mark.parametrize("encoder", ["fusionprot", "esm", "gearnet"])
def test_deepfri_task_loss_metrics_and_groups(mini, encoder):
    model_cfg = {**TINY, "encoder": encoder, "gnn_layers": 2}
    task = FunctionTask(model_cfg, {"root": str(mini), "task": "EC", "val_split": "test"}, seed=0)
    model = task.build_model()
    data = task.dataset("test")
    batch = task.collate([data[0], data[2]])
    assert batch["labels"].shape == (2, 538)
    total, terms = task.loss(model, batch, torch.Generator())
    total.backward()
    assert torch.isfinite(total) and "bce" in terms
    summed, n = task.evaluate(model, batch)
    assert n == 2 and summed["bce"] == pytest.approx(2 * float(total.detach()), rel=1e-4)
    groups = task.param_groups(model, 1.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    if encoder != "gearnet":
        assert groups[1]["lr"] == pytest.approx(0.08)
    scores, labels = predict(task, model, "test", batch_size=2)
    assert scores.shape == labels.shape == (5, 538)
    m = function_metrics(scores, labels)
    assert 0.0 <= m["fmax"] <= 1.0 and 0.0 <= m["aupr"] <= 1.0


def test_config_errors_name_the_key(mini):
    with pytest.raises(ConfigError, match="model.encoderr"):
        FunctionTask({"encoderr": "esm"}, {"root": str(mini)}, 0)
    with pytest.raises(ConfigError, match="encoder"):
        FunctionTask({"encoder": "bert"}, {"root": str(mini)}, 0)
    model = {"encoder": "esm", "esm_preset": "tiny"}
    with pytest.raises(ConfigError, match="data.max_length=1500 exceeds the 1022 residues ESM-2 takes"):
        FunctionTask(model, {"root": str(mini), "max_length": 1500}, 0).build_model()
    gearnet = FunctionTask({"encoder": "gearnet", "gnn_hidden_dim": 8, "gnn_layers": 1}, {"root": str(mini), "max_length": 1500}, 0)
    assert gearnet.build_model() is not None  # GearNet has no length limit


def _mini_archive(mini, tmp_path):
    """A tar.xz of plain PDB files + split table, like shared/data/ligysis_rep_chains."""
    names = ["6HPR-A", "2YSL-A", "2CG5-B", "2E6R-A", "2UZG-A", "2A14-A"]
    archive = tmp_path / "chains.tar.xz"
    with tarfile.open(archive, "w:xz") as tf:
        for n in names:
            data = gzip.decompress((mini / "structures" / f"{n}.pdb.gz").read_bytes())
            info = tarfile.TarInfo(f"{n}.pdb")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        bad = b"ATOM      1  CA  ALA A   1    garbage\n"
        info = tarfile.TarInfo("broken.pdb")
        info.size = len(bad)
        tf.addfile(info, io.BytesIO(bad))
    splits = ["train", "train", "train", "valid", "valid", "test"]
    (tmp_path / "split.tsv").write_text(
        "chain_id\tsplit\tcluster30\n" + "".join(f"{n}\t{s}\t{i}\n" for i, (n, s) in enumerate(zip(names, splits)))
    )
    return tmp_path


def test_dssp_labels_follow_backbone_geometry(mini):
    p = Protein.from_file(mini / "structures" / "2A14-A.pdb.gz")
    ss = dssp_states(p.atom_positions, p.atom_mask, p.aatype, p.chain_id)
    ca = p.atom_positions[:, 1]
    i = np.arange(len(ss) - 4)
    d4 = np.linalg.norm(ca[i + 4] - ca[i], axis=-1)
    helix = (ss[i] == 0) & (ss[i + 4] == 0)
    i2 = np.arange(len(ss) - 2)
    d2 = np.linalg.norm(ca[i2 + 2] - ca[i2], axis=-1)
    strand = (ss[i2] == 1) & (ss[i2 + 1] == 1) & (ss[i2 + 2] == 1)
    assert helix.sum() > 20 and strand.sum() > 10
    assert np.median(d4[helix]) < 6.6  # alpha helix: CA(i)-CA(i+4) ~ 6.2 A
    assert np.median(d2[strand]) > 6.0  # extended strand: CA(i)-CA(i+2) ~ 6.5-7 A
    assert np.median(d4[~helix]) > 7.0


def test_secondary_structure_cache_and_training(mini, tmp_path):
    root = _mini_archive(mini, tmp_path)
    cache = tmp_path / "cache" / "ss.safetensors"
    report = build_secondary_structure_cache(root / "chains.tar.xz", root / "split.tsv", cache)
    assert report["chains"] == 6 and list(report["failed"]) == ["broken"]
    train = SecondaryStructureDataset(cache, "train")
    assert [train[i].name for i in range(len(train))] == ["6HPR-A", "2YSL-A", "2CG5-B"]
    s = train[0]
    p = Protein.from_file(mini / "structures" / "6HPR-A.pdb.gz")
    assert len(s) == int(p.atom_mask[:, 1].sum())
    assert set(s.labels.tolist()) <= {-1, 0, 1, 2}
    with pytest.raises(DataError, match="no chain in split"):
        SecondaryStructureDataset(cache, "other")

    cfg = from_dict(TrainConfig, {
        "task": "function", "model": TINY, "max_steps": 3, "batch_size": 2, "log_every": 1,
        "optim": {"lr": 1e-3}, "out_dir": str(tmp_path / "run"),
        "data": {"kind": "secondary_structure", "root": str(root), "cache": str(cache), "max_length": 80},
    })
    val = Trainer(cfg).fit()
    assert set(val) == {"ce", "q3"} and 0.0 <= val["q3"] <= 1.0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["encoder"] == "fusionprot"
    assert len(SS_CLASSES) == 3


def test_real_ligysis_archive_first_chains(shared_data, tmp_path):
    root = shared_data / "ligysis_rep_chains"
    if not (root / "chains.tar.xz").is_file():
        pytest.skip("ligysis_rep_chains not present")
    report = build_secondary_structure_cache(root / "chains.tar.xz", root / "split.tsv", tmp_path / "c.safetensors", limit=5)
    assert report["chains"] + len(report["failed"]) == 5 and report["chains"] >= 4
    assert report["residues"] > 100
