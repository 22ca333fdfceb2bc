"""Evaluate trained ``task: function`` runs on a split and print one row per run.

    python benchmarks/fusionprot_ablation.py RUN [RUN ...] [--split test] [--json out.json]

Each RUN is a ``tertiary train`` output folder (``config.json`` + ``model.safetensors``). For
secondary-structure runs it reports Q3 (residue accuracy over DSSP-labelled residues) and
per-class recall; for DeepFRI runs, protein-centric Fmax and micro AUPR.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from tertiary.models.fusionprot.task import FunctionTask, function_metrics, predict


def evaluate_run(run: Path, split: str) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    task = FunctionTask(cfg["model"], cfg["data"], cfg.get("seed", 0))
    model = task.build_model()
    model.load_state_dict(load_file(str(run / "model.safetensors")))
    scores, labels = predict(task, model, split, batch_size=8)
    row = {"run": str(run), "encoder": cfg["model"].get("encoder"), "split": split,
           "parameters": sum(p.numel() for p in model.parameters())}
    if task.residue_level:
        keep = labels >= 0
        pred = scores[keep].argmax(-1)
        truth = labels[keep]
        row["residues"] = int(keep.sum())
        row["q3"] = float((pred == truth).float().mean())
        for k, name in enumerate("HEC"):
            row[f"recall_{name}"] = float((pred[truth == k] == k).float().mean())
        row["majority_baseline"] = float(torch.bincount(truth).max() / truth.numel())
    else:
        row["proteins"] = int(labels.shape[0])
        row.update(function_metrics(scores, labels))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = [evaluate_run(run, args.split) for run in args.runs]
    for row in rows:
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
