import errno
import json

import pytest
import torch
from safetensors.torch import load_file

from tertiary.errors import ConfigError, TrainingError
from tertiary.train import checkpoint as ckpt
from tertiary.train.config import from_dict
from tertiary.train.engine import Trainer
from tertiary.train.options import TrainConfig


@pytest.fixture(autouse=True)
def _toy_on_path(monkeypatch, request):
    monkeypatch.syspath_prepend(str(request.path.parent))


def _cfg(tmp_path, **over):
    data = {"task": "toy_task:ToyTask", "max_steps": 30, "batch_size": 8, "log_every": 5,
            "optim": {"lr": 0.02}, "out_dir": str(tmp_path / "run")}
    for k, v in over.items():
        data[k] = v
    return from_dict(TrainConfig, data)


def test_learns_logs_and_exports(tmp_path):
    cfg = _cfg(tmp_path, ema_decay=0.9, val_every=10, optim={"lr": 0.02, "warmup_steps": 3, "decay": "cosine",
                                                               "clip_grad_norm": 1.0, "grad_accum": 2})
    trainer = Trainer(cfg)
    before = trainer.validate()["loss"]
    val = trainer.fit()
    assert val["loss"] < 0.5 * before
    run = tmp_path / "run"
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,split,metric,value,seconds" and any(",val,loss," in r for r in rows)
    assert json.loads((run / "config.json").read_text())["optim"]["grad_accum"] == 2
    assert set(load_file(run / "model.safetensors")) == set(trainer.model.state_dict())
    assert (run / "model_ema.safetensors").exists()
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["ckpt_00000030.pt"]


def test_bf16_autocast_runs(tmp_path):
    val = Trainer(_cfg(tmp_path, precision="bf16", max_steps=5)).fit()
    assert torch.isfinite(torch.tensor(val["loss"]))


def test_resume_reaches_the_same_weights(tmp_path):
    straight = Trainer(_cfg(tmp_path / "a", ckpt_every=7, keep_last=2, ema_decay=0.9))
    straight.fit()
    half = Trainer(_cfg(tmp_path / "b", ckpt_every=7, keep_last=2, ema_decay=0.9, max_steps=14))
    half.fit()
    resumed = Trainer(_cfg(tmp_path / "b", ckpt_every=7, keep_last=2, ema_decay=0.9))
    resumed.fit(resume=True)
    assert resumed.step == 30
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=0)
    assert len(ckpt.list_checkpoints(tmp_path / "b" / "run")) == 2


def test_nonfinite_losses_are_skipped_then_stop(tmp_path):
    trainer = Trainer(_cfg(tmp_path, data={"poison": 2, "n_train": 64}, max_steps=16))
    trainer.fit()
    assert 1 <= trainer.nan_skipped <= 4
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    with pytest.raises(TrainingError, match="3 non-finite losses in a row"):
        Trainer(_cfg(tmp_path / "all", data={"poison": 64}, max_nan_in_row=3)).fit()


@pytest.mark.parametrize(
    "failure",
    [OSError(errno.ENOSPC, "No space left on device"), RuntimeError("PytorchStreamWriter failed writing file")],
    ids=["oserror", "zip-writer"],
)
def test_full_disk_keeps_previous_checkpoint(tmp_path, monkeypatch, failure):
    trainer = Trainer(_cfg(tmp_path, max_steps=10, ckpt_every=5))
    real_save = torch.save
    calls = {"n": 0}

    def flaky_save(obj, path, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 2:
            with open(path, "wb") as fh:
                fh.write(b"partial")
            raise failure
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(ckpt.torch, "save", flaky_save)
    trainer.fit()
    run = tmp_path / "run"
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["ckpt_00000005.pt"]
    assert not list(run.glob(".ckpt_*"))
    assert ckpt.load_checkpoint(run / "ckpt_00000005.pt")["step"] == 5


def test_unknown_task_and_bad_task_config(tmp_path):
    with pytest.raises(ConfigError, match="unknown task"):
        Trainer(_cfg(tmp_path, task="nope"))
    with pytest.raises(ConfigError, match="model.hiden: unknown key"):
        Trainer(_cfg(tmp_path, model={"hiden": 3}))
