"""``tertiary tune CONFIG.yaml --trials N``: Optuna search over the YAML's ``tune.space``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tertiary.train.config import read_yaml


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tertiary.train.tune import run_search

    raw = read_yaml(args.config)
    out = Path(args.out or Path(raw.get("out_dir", "runs/tune")) / "tune")
    result = run_search(raw, args.trials, out, seed=args.seed)
    table = Table(title=f"tune: {result['direction']} {result['metric']}")
    for col in ("trial", "state", "value", "params"):
        table.add_column(col)
    for t in result["trials"]:
        value = "" if t["value"] is None else f"{t['value']:.4g}"
        table.add_row(str(t["number"]), t["state"], value, str(t["params"]))
    console = Console()
    console.print(table)
    console.print(f"best {result['metric']} {result['best_value']:.4g} with {result['best_params']} -> {out / 'tune.json'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="hyper-parameter search (Optuna) over the config's tune.space",
        description="Run an Optuna search. The YAML is a training config plus a 'tune' section: metric "
        "(a validation metric), direction (minimize/maximize), pruner (median/none) and space (dotted config "
        "paths -> {type: float|int|categorical, low, high, log, step, choices}). Each trial trains in its own "
        "folder; results go to OUT/tune.json.",
    )
    p.add_argument("config", help="training YAML with a 'tune' section")
    p.add_argument("--trials", type=int, default=10, help="number of trials (default 10)")
    p.add_argument("--out", help="folder for trial runs and tune.json (default <out_dir>/tune)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.set_defaults(handler=_run)
