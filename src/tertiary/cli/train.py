"""``tertiary train CONFIG.yaml``: train any task with the shared engine."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tertiary.train.config import from_dict, parse_override, read_yaml, set_dotted
from tertiary.train.options import TrainConfig


def load_config(path: str, overrides: list[str]) -> tuple[dict, TrainConfig]:
    """Read the YAML, apply ``KEY=VALUE`` overrides, validate into a :class:`TrainConfig`."""
    raw = read_yaml(path)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(raw, key, value)
    return raw, from_dict(TrainConfig, raw)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tertiary.train.engine import Callbacks, Trainer

    overrides = list(args.set or [])
    if args.out:
        overrides.append(f"out_dir={args.out}")
    _, cfg = load_config(args.config, overrides)
    console = Console(stderr=True)
    t0 = time.time()

    def on_log(step: int, max_steps: int, metrics: dict[str, float]) -> None:
        rate = metrics.get("it_per_s", 0.0)
        eta = (max_steps - step) / rate if rate > 0 else float("nan")
        terms = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k not in {"it_per_s", "lr"})
        console.print(
            f"step {step}/{max_steps}  {terms}  lr {metrics.get('lr', 0):.3g}  {rate:.2f} it/s  ETA {eta:.0f}s",
            highlight=False,
        )

    def on_val(step: int, metrics: dict[str, float]) -> None:
        console.print(f"[bold]validation[/] step {step}: " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    trainer = Trainer(cfg, callbacks=Callbacks(on_log=on_log, on_validation=on_val))
    val = trainer.fit(resume=args.resume)
    if trainer.dist.is_main:
        summary = {"steps": trainer.step, "seconds": round(time.time() - t0, 1), "skipped_nonfinite": trainer.nan_skipped,
                   "validation": val, "run_dir": str(trainer.run_dir)}
        (Path(trainer.run_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
        console.print(f"done: {trainer.step} steps in {summary['seconds']} s -> {trainer.run_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML config (any task; DDP under torchrun)",
        description="Train a model with the shared engine. The YAML maps onto tertiary.train.options.TrainConfig "
        "(task, model, data, optim, max_steps, precision, ema_decay, ...); unknown keys are errors. Run under "
        "'torchrun --nproc_per_node N' for DistributedDataParallel (NCCL on GPU, gloo on CPU). Writes "
        "checkpoints (last K kept), metrics.csv, config.json, summary.json and model.safetensors to out_dir.",
    )
    p.add_argument("config", help="training YAML")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")
    p.add_argument("--out", help="run folder (overrides out_dir of the config)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. optim.lr=1e-4")
    p.set_defaults(handler=_run)
