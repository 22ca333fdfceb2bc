"""AlphaFold2 training task: cluster splits, cluster sampling, crops, recycling sampling, bf16, faults,
and an overfit run on 4 real chains through the real engine."""

import math
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch

from tertiary.data.folding_dataset import build_folding_dataset
from tertiary.data.lmdb_store import LmdbDataset, LmdbWriter
from tertiary.errors import ConfigError, DataError
from tertiary.metrics import lddt, tm_score
from tertiary.models.alphafold.task import AlphaFoldTask, ideal_helix_ca, random_coil_ca
from tertiary.train.config import from_dict
from tertiary.train.engine import Trainer
from tertiary.train.options import TrainConfig

FOLDING = Path(__file__).resolve().parents[2] / "data" / "folding"
CHAINS = ["1sp2_A", "3oj3_J", "3wup_A", "5om2_B", "6h0g_F", "7cna_B"]
TINY = dict(c_m=16, c_z=8, c_s=16, c_e=8, evoformer_blocks=1, extra_msa_blocks=1, structure_blocks=2, c_hidden=4,
            no_heads=2, c_ipa=4, no_heads_ipa=2, c_resnet=8, num_recycles=2)  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread is fastest, and avoids stalls on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """The 6 test chains; 1sp2_A and 3oj3_J share cluster 1 but 3oj3_J is a validation chain."""
    root = tmp_path_factory.mktemp("fold")
    split = root / "split.tsv"
    split.write_text(
        "chain_id\tsplit\tcluster30\n1sp2_A\ttrain\t1\n3oj3_J\tvalid\t1\n3wup_A\ttrain\t3\n"
        "5om2_B\ttrain\t3\n6h0g_F\ttest\t5\n7cna_B\ttrain\t6\n"
    )
    build_folding_dataset(FOLDING, root / "db.lmdb", split=split)
    return root / "db.lmdb"


def _task(db, model=None, **data):
    return AlphaFoldTask({**TINY, **(model or {})}, {"path": str(db), "crop_size": 24, **data}, seed=0)


def test_splits_follow_clusters_and_never_train_on_held_out_clusters(db):
    task = _task(db)
    names = lambda idx: sorted(task.dataset.meta[i]["name"] for i in idx)  # noqa: E731
    groups = [names(g) for g in task.train_groups]
    assert groups == [["3wup_A", "5om2_B"], ["7cna_B"]]  # one item per cluster; 1sp2_A dropped
    assert task.leaked == ["1sp2_A"]
    assert names(task.val_records) == ["3oj3_J"]
    assert all("6h0g_F" not in g for g in groups)
    with pytest.raises(ConfigError, match="also a training split"):
        _task(db, val_split="train")
    with pytest.raises(ConfigError, match="did you mean 'crop_size'"):
        _task(db, crop_sise=3)


def test_hash_split_without_split_table(tmp_path):
    build_folding_dataset(FOLDING, tmp_path / "db.lmdb")
    task = _task(tmp_path / "db.lmdb", val_fraction=0.5)
    train = {task.dataset.meta[g[0]]["name"] for g in task.train_groups}
    val = {task.dataset.meta[i]["name"] for i in task.val_records}
    assert train | val == set(CHAINS) and not train & val and train and val
    assert _task(tmp_path / "db.lmdb", val_fraction=0.5).val_records == task.val_records  # stable


def test_training_items_sample_clusters_and_crop(db):
    task = _task(db, spatial_crop_prob=0.5)
    ds = task.train_dataset()
    assert len(ds) == 2
    seen = set()
    for step in range(12):
        torch.manual_seed(step)
        item = ds[0]
        seen.add(item["name"])
        f, t = item["features"], item["targets"]
        n = f["aatype"].shape[0]
        assert n == 24 and t["all_atom_positions"].shape == (24, 37, 3)
        assert f["aatype"].shape[-1] == 3  # num_recycles + 1 cycles of features
        assert torch.equal(f["aatype"][:, 0], t["aatype"])
        assert t["resolution"].item() == 2.0
    assert seen == {"3wup_A", "5om2_B"}
    torch.manual_seed(3)
    a = ds[1]
    torch.manual_seed(3)
    assert torch.equal(a["targets"]["all_atom_positions"], ds[1]["targets"]["all_atom_positions"])
    v = task.val_dataset()[0]
    assert v["features"]["aatype"].shape[0] == task.dataset.meta[task.val_records[0]]["length"]  # uncropped


def test_loss_samples_cycles_and_backpropagates(db):
    task = _task(db)
    model = task.build_model()
    batch = task.collate([task.train_dataset()[0]])
    cycles = set()
    for seed in range(8):
        total, terms = task.loss(model, batch, torch.Generator().manual_seed(seed))
        assert torch.isfinite(total) and total.requires_grad
        cycles.add(int(terms["num_cycles"]))
        assert {"fape", "distogram", "masked_msa", "supervised_chi", "plddt"} <= set(terms)
    assert cycles == {1, 2, 3}
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    metrics, n = task.evaluate(model.eval(), task.collate([task.val_dataset()[0]]))
    assert n == 1 and 0.0 <= metrics["lddt_ca"] <= 1.0 and 0.0 < metrics["tm_score"] <= 1.0


def test_batches_of_different_lengths_are_padded_and_masked(db):
    task = _task(db, names=("3oj3_J", "3wup_A"), val_on_train=True, val_fraction=0.0, train_splits=("train", "valid"))
    model = task.build_model().eval()
    a, b = task.val_dataset()[0], task.val_dataset()[1]
    la, lb = a["features"]["aatype"].shape[0], b["features"]["aatype"].shape[0]
    assert la != lb
    batch = task.collate([a, b])
    n = max(la, lb)
    assert batch["features"]["aatype"].shape[:2] == (2, n)
    short = 0 if la < lb else 1
    assert batch["targets"]["all_atom_mask"][short, min(la, lb):].sum() == 0
    assert batch["features"]["seq_mask"][short, min(la, lb):].sum() == 0
    with torch.no_grad():
        both, count = task.evaluate(model, batch)
        alone = [task.evaluate(model, task.collate([x]))[0] for x in (a, b)]
    assert count == 2
    for key in ("lddt_ca", "tm_score"):  # padding does not change any chain's score
        assert both[key] == pytest.approx(alone[0][key] + alone[1][key], abs=1e-4)


def _train_cfg(db, tmp_path, **over):
    cfg = dict(task="alphafold", max_steps=2, device="cpu", log_every=1, out_dir=str(tmp_path / "run"),
               model=TINY, data={"path": str(db), "crop_size": 16, "max_val_chains": 1, "val_crop_size": 16},
               optim={"lr": 1e-3})  # fmt: skip
    cfg.update(over)
    return from_dict(TrainConfig, cfg)


def test_bf16_training_through_the_engine(db, tmp_path):
    trainer = Trainer(_train_cfg(db, tmp_path, precision="bf16"))
    val = trainer.fit()
    assert trainer.step == 2 and trainer.nan_skipped == 0
    assert 0.0 <= val["lddt_ca"] <= 1.0
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def _copy_db(db, dest):
    src = LmdbDataset(db)
    with LmdbWriter(dest, "folding") as w:
        for arrays, meta in src:
            w.add(meta["name"], arrays, meta)
        w.commit()
    return dest


def test_corrupt_record_is_a_clear_error_naming_it(db, tmp_path):
    bad = _copy_db(db, tmp_path / "bad.lmdb")
    env = lmdb.open(str(bad), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"3wup_A", b"\x00garbage")
        txn.delete(b"7cna_B")
    env.close()
    task = _task(bad)
    ds = task.train_dataset()
    with pytest.raises(DataError, match="3wup_A: corrupt record"):
        for i in range(8):
            torch.manual_seed(i)
            ds[0]
    with pytest.raises(DataError, match="record '7cna_B' is missing"):
        ds[1]


def test_tertiary_train_on_a_corrupt_dataset_is_one_line_exit_2(db, tmp_path, capsys):
    import yaml

    from tertiary.cli.main import main

    bad = _copy_db(db, tmp_path / "bad.lmdb")
    env = lmdb.open(str(bad), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        for key in CHAINS:
            txn.put(key.encode(), b"not a record")
    env.close()
    cfg = {"task": "alphafold", "max_steps": 2, "device": "cpu", "out_dir": str(tmp_path / "run"), "model": TINY,
           "data": {"path": str(bad), "crop_size": 16}}  # fmt: skip
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "cfg.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.lmdb:" in err[0] and "corrupt record" in err[0]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({**cfg, "data": {"path": str(bad), "crop_sise": 16}}))
    assert main(["train", str(tmp_path / "cfg.yaml")]) == 2
    assert "data.crop_sise: unknown key (did you mean 'crop_size'?)" in capsys.readouterr().err


def test_nan_coordinates_make_the_loss_non_finite_for_the_engine_to_skip(db, tmp_path, caplog):
    """A record with NaN coordinates (the parser rejects them; a hand-made store may not) gives
    non-finite structure terms; the total is non-finite (so the engine skips and counts the step)
    and the warning names the terms."""
    arrays, meta = LmdbDataset(db)[0]
    arrays = dict(arrays)
    arrays["atom_positions"] = np.full_like(arrays["atom_positions"], np.nan)
    with LmdbWriter(tmp_path / "nan.lmdb", "folding") as w:
        w.add("x", arrays, {**meta, "name": "x", "split": "train"})
        w.commit()
    task = _task(tmp_path / "nan.lmdb", val_fraction=0.0)
    model = task.build_model()
    torch.manual_seed(0)
    total, terms = task.loss(model, task.collate([task.train_dataset()[0]]), torch.Generator().manual_seed(0))
    assert not math.isfinite(float(terms["fape"])) and math.isfinite(float(terms["masked_msa"]))
    assert not torch.isfinite(total)
    assert "fape" in caplog.text


def test_trivial_baselines():
    helix = ideal_helix_ca(30)
    steps = (helix[1:] - helix[:-1]).norm(dim=-1)
    assert torch.allclose(steps, steps[0]) and 3.7 < float(steps[0]) < 3.9  # CA-CA distance of a helix
    coil = random_coil_ca(50, torch.Generator().manual_seed(0))
    assert torch.allclose((coil[1:] - coil[:-1]).norm(dim=-1), torch.tensor(3.8, dtype=torch.float64))
    assert lddt(helix, helix) == pytest.approx(1.0)
    assert tm_score(coil[:30], helix) < 0.3


# ---------------------------------------------------------------------------------------------
# overfitting 4 real chains

OVERFIT_CHAINS = ("3oj3_J", "6h0g_F", "7cna_B", "1sp2_A")  # 30-31 residues each, real PDB chains
OVERFIT_STEPS, OVERFIT_LR, OVERFIT_WARMUP = 1000, 2e-3, 50


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_small_model_overfits_four_real_chains(tmp_path):
    """The real engine, task and loss memorise 4 chains: mean CA lDDT >= 0.8 on them."""
    build_folding_dataset(FOLDING, tmp_path / "db.lmdb")
    cfg = from_dict(TrainConfig, dict(
        task="alphafold", max_steps=OVERFIT_STEPS, seed=0, device="cpu", log_every=100, out_dir=str(tmp_path / "run"),
        model=dict(c_m=32, c_z=32, c_s=64, c_e=8, evoformer_blocks=2, extra_msa_blocks=1, structure_blocks=4,
                   dropout=False, num_recycles=0),
        data=dict(path=str(tmp_path / "db.lmdb"), names=OVERFIT_CHAINS, val_on_train=True, val_fraction=0.0,
                  crop_size=32, max_msa_clusters=1, max_extra_msa=1, masked_msa_fraction=0.0),
        optim=dict(lr=OVERFIT_LR, warmup_steps=OVERFIT_WARMUP, decay="cosine", min_lr_ratio=0.05, clip_grad_norm=1.0),
    ))  # fmt: skip
    trainer = Trainer(cfg)
    assert len(trainer.task.train_groups) == 4 and len(trainer.task.val_records) == 4
    val = trainer.fit()
    assert trainer.nan_skipped == 0
    assert val["lddt_ca"] >= 0.8, val
