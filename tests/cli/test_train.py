"""`tertiary train / tune / plot-log` end to end, including a killed-and-resumed run and DDP."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tertiary.cli.main import main

TOY_DIR = Path(__file__).resolve().parent.parent / "train"


def _free_port() -> int:
    """A TCP port nobody listens on now (parallel test runs must not share torchrun's port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _toy_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TOY_DIR))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TOY_DIR), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _write(tmp_path, name="cfg.yaml", **over):
    cfg = {"task": "toy_task:ToyTask", "max_steps": 40, "batch_size": 8, "log_every": 5, "ckpt_every": 5,
           "optim": {"lr": 0.02}, "out_dir": str(tmp_path / "run"), "seed": 3}
    cfg.update(over)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    ref_cfg = _write(tmp_path, "ref.yaml", out_dir=str(tmp_path / "ref" / "run"))
    assert main(["train", str(ref_cfg)]) == 0
    cfg = _write(tmp_path, data={"sleep": 0.05})
    proc = subprocess.Popen([sys.executable, "-m", "tertiary.cli.main", "train", str(cfg)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / "run"
    deadline = time.time() + 120
    while not (run / "ckpt_00000015.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "model.safetensors").exists()
    assert main(["train", str(cfg), "--resume"]) == 0
    a = load_file(tmp_path / "ref" / "run" / "model.safetensors")
    b = load_file(run / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0)


def test_two_process_ddp_on_cpu_matches_one_process(tmp_path):
    one = _write(tmp_path, "one.yaml", batch_size=8, max_steps=6, out_dir=str(tmp_path / "one"))
    two = _write(tmp_path, "two.yaml", batch_size=4, max_steps=6, out_dir=str(tmp_path / "two"))
    assert main(["train", str(one)]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "tertiary.cli.main", "train", str(two)]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)


def test_plot_log_and_tune(tmp_path):
    cfg = _write(tmp_path, max_steps=10, val_every=5, ckpt_every=0, tune={
        "metric": "loss", "direction": "minimize",
        "space": {"optim.lr": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True},
                  "model.hidden": {"type": "int", "low": 4, "high": 16, "step": 4}}})
    assert main(["train", str(cfg)]) == 0
    assert main(["plot-log", str(tmp_path / "run"), "-o", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["tune", str(cfg), "--trials", "3", "--out", str(tmp_path / "tune")]) == 0
    result = yaml.safe_load((tmp_path / "tune" / "tune.json").read_text())
    assert len(result["trials"]) == 3 and 4 <= result["best_params"]["model.hidden"] <= 16


def test_user_errors_are_one_line_exit_2(tmp_path, capsys):
    bad = _write(tmp_path, optim={"lrr": 0.1})
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "optim.lrr: unknown key (did you mean 'lr'?)" in err
    assert main(["plot-log", str(tmp_path / "nothing")]) == 2
    assert main(["tune", str(_write(tmp_path, "nt.yaml"))]) == 2
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
