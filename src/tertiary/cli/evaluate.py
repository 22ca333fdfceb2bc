"""``tertiary evaluate design --set DIR``: FAIR benchmark on a pocket set (e.g. CrossDocked test-100).

The set folder holds ``index.tsv``: CrossDocked layout (columns ``index``, ``short_id``,
``pocket_file``, ``ligand_file``; files under ``files/``, pockets may be gzipped as
``<pocket_file>.gz``) or the ``ligand_complexes`` layout (``id``, ``pocket_path``, ``ligand_path``);
``--held-out CONFIG`` keeps the validation split of a ``task: fair`` training config. Every
pocket is designed once per seed; failures (bad ligand, no residue near the ligand, ...) are
reported per pocket and the rest go on. Writes ``design_eval.csv`` (one row per pocket and seed)
and ``design_eval.json`` (settings, summary, failures) and prints a summary table.
``--vina`` adds AutoDock Vina scores (kcal/mol; ``vina_score``, ``vina_minimized`` of each
design, ``vina_input``, ``vina_input_minimized`` of the input complex, see ``tertiary design``)
and their means to the
table; a pocket Vina cannot score keeps its design metrics, and is reported.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import torch

from tertiary.errors import InputError, TertiaryError, one_line

from .design import (VINA_COLUMNS, add_model_arguments, design_rows, load_model, vina_design_scores,
                     vina_reference)


def read_set(folder: Path, held_out: str | None = None) -> list[dict[str, str]]:
    """Rows of a pocket set (:func:`tertiary.data.pocket.read_pocket_index`) with ``index``,
    ``pocket_path`` and ``ligand_path``; ``held_out`` (a ``task: fair`` training config) keeps only
    the complexes of that config's validation split."""
    from tertiary.data.pocket import read_pocket_index

    rows = read_pocket_index(folder)
    for i, row in enumerate(rows):
        row.setdefault("index", row.get("id") or str(i))
        if not row["index"]:
            row["index"] = str(i)
        row["pocket_path"], row["ligand_path"] = row["pocket"], row["ligand"]
    if held_out:
        from tertiary.models.fair.task import FairData, split_rows
        from tertiary.train.config import from_dict, read_yaml

        data = dict(read_yaml(held_out).get("data") or {})
        data.pop("val_limit", None)
        data = {**data, "root": str(folder), "dataset": None}
        cfg = from_dict(FairData, data, f"{held_out}: data")
        _, val = split_rows([{"name": r["id"], "kind": r.get("kind", "crystal"), "pdb_id": r.get("pdb_id")} for r in rows],
                            cfg)
        rows = [rows[i] for i in val]
    return rows


def summarise(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values), "mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "median": statistics.median(values),
    }


def _failure(row: dict[str, str], exc: object) -> dict[str, str]:
    return {"index": row["index"], "pocket": row["pocket_path"], "error": one_line(exc)}


def evaluate_pocket(row: dict[str, str], args: argparse.Namespace, model: object) -> dict[str, object]:
    """Design one pocket of the set once per seed.

    Returns ``{"records": [...], "failure": dict | None, "vina_failures": [...]}``: one CSV record
    per seed; ``failure`` when the pocket cannot be designed at all (then no records).
    """
    from tertiary.data.pocket import collate, load_pocket
    from tertiary.models.fair.generate import generate

    out: dict[str, object] = {"records": [], "failure": None, "vina_failures": []}
    try:
        pocket = load_pocket(row["pocket_path"], row["ligand_path"], pocket_radius=args.pocket_radius,
                             design_radius=args.design_radius, name=row.get("short_id") or row["index"])
        batch = collate([pocket])
        reference = ligand = None
        if args.vina:
            try:
                from tertiary.ligand import read_ligand

                ligand = read_ligand(row["ligand_path"])
                reference = vina_reference(pocket, ligand)
            except TertiaryError as exc:
                ligand = None
                out["vina_failures"].append(_failure(row, exc))
        for seed in args.seeds or [args.seed]:
            t0 = time.process_time()
            res = generate(model, batch, torch.Generator().manual_seed(seed), residue_graph=args.residue_graph)
            design = design_rows(pocket, res, pocket.name)
            cpu_s = round(time.process_time() - t0, 3)
            if args.vina:
                if ligand is None:
                    design[0].update(dict.fromkeys(VINA_COLUMNS, ""))
                for msg in vina_design_scores(pocket, res, ligand, design, reference) if ligand else []:
                    out["vina_failures"].append(_failure(row, f"seed {seed}: {msg}"))
            record = {"index": row["index"], "seed": seed, **design[0], "cpu_s": cpu_s}
            record.pop("design")
            out["records"].append(record)
    except TertiaryError as exc:
        out["records"], out["failure"] = [], _failure(row, exc)
    return out


_WORKER: dict[str, object] = {}


def _init_worker(model: object, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER["model"] = model


def _worker_pocket(job: tuple[dict[str, str], argparse.Namespace]) -> dict[str, object]:
    row, args = job
    return evaluate_pocket(row, args, _WORKER["model"])


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console(stderr=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.set)
    rows = read_set(folder, args.held_out)
    if args.ids:
        wanted = {s.strip() for s in args.ids.split(",")}
        rows = [r for r in rows if r["index"] in wanted]
    if args.limit is not None:
        rows = rows[: args.limit]
    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    model = load_model(args.checkpoint)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = args.seeds or [args.seed]
    results: list[dict[str, object]] = []
    failures: list[dict[str, str]] = []
    vina_failures: list[dict[str, str]] = []
    if args.vina:
        from tertiary.models.fair.vina import require_vina

        require_vina()
    csv_path = out / "design_eval.csv"
    writer = None
    if args.workers > 1:  # one process per worker, each with a copy of the model and args.threads threads
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(model, args.threads or 1))
        outcomes = pool.map(_worker_pocket, [(row, args) for row in rows])
    else:
        pool = None
        outcomes = (evaluate_pocket(row, args, model) for row in rows)
    with open(csv_path, "w", newline="") as fh, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("pockets", total=len(rows))
        try:
            for row, outcome in zip(rows, outcomes):
                label = f"{row['index']} {row.get('short_id', '')}".strip()
                progress.update(task, description=f"pocket {label}")
                for failed in outcome["vina_failures"]:
                    vina_failures.append(failed)
                    progress.console.print(f"[yellow]Vina failed for pocket {label}:[/] {failed['error']}")
                if outcome["failure"]:
                    failures.append(outcome["failure"])
                    progress.console.print(f"[red]pocket {label} failed:[/] {outcome['failure']['error']}")
                for record in outcome["records"]:
                    results.append(record)
                    if writer is None:
                        writer = csv.DictWriter(fh, fieldnames=list(record))
                        writer.writeheader()
                    writer.writerow(record)
                fh.flush()
                progress.advance(task)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    summary = {}
    for seed in seeds:
        sel = [r for r in results if r["seed"] == seed]
        pooled_num = sum(float(r["aar"]) * int(r["n_designed"]) for r in sel)
        pooled_den = sum(int(r["n_designed"]) for r in sel)
        summary[str(seed)] = {
            "aar": summarise([float(r["aar"]) for r in sel]),
            "aar_residue_pooled": pooled_num / pooled_den if pooled_den else None,
            "backbone_rmsd": summarise([float(r["backbone_rmsd"]) for r in sel]),
            "fair_rmsd_formula": summarise([float(r["fair_rmsd_formula"]) for r in sel]),
        }
        if args.vina:
            for key in VINA_COLUMNS:
                summary[str(seed)][key] = summarise([float(r[key]) for r in sel if r.get(key, "") != ""])
            both = [r for r in sel if r.get("vina_minimized", "") != "" and r.get("vina_input_minimized", "") != ""]
            summary[str(seed)]["vina_minimized_below_input"] = sum(
                float(r["vina_minimized"]) < float(r["vina_input_minimized"]) for r in both)
    report = {
        "set": str(folder), "checkpoint": args.checkpoint, "residue_graph": args.residue_graph,
        "design_radius": args.design_radius, "seeds": seeds, "n_pockets": len(rows), "n_failed": len(failures),
        "summary": summary, "failures": failures,
    }
    if args.vina:
        report["vina_failures"] = vina_failures
    (out / "design_eval.json").write_text(json.dumps(report, indent=1))

    table = Table(title=f"FAIR design on {folder.name} (residue graph {args.residue_graph})")
    for col in ("seed", "pockets", "AAR mean (sd)", "AAR median", "AAR pooled", "bb RMSD (A)", "FAIR 'RMSD'"):
        table.add_column(col)
    for seed, s in summary.items():
        if not s["aar"]["n"]:
            continue
        table.add_row(seed, str(s["aar"]["n"]), f"{s['aar']['mean']:.3f} ({s['aar']['sd']:.3f})",
                      f"{s['aar']['median']:.3f}", f"{s['aar_residue_pooled']:.3f}",
                      f"{s['backbone_rmsd']['mean']:.2f}", f"{s['fair_rmsd_formula']['mean']:.3f}")
    Console().print(table)
    if args.vina:
        vina = Table(title="AutoDock Vina, kcal/mol, mean over pockets (lower is better)")
        for col in ("seed", "scored", "design", "design min.", "input", "input min.", "design min. < input min."):
            vina.add_column(col)
        for seed, s in summary.items():
            if s["aar"]["n"]:
                vina.add_row(seed, str(s["vina_score"]["n"]), *(
                    f"{s[k]['mean']:.2f}" if s[k]["n"] else "-"
                    for k in VINA_COLUMNS),
                    str(s["vina_minimized_below_input"]))
        Console().print(vina)
    if failures:
        console.print(f"{len(failures)} pocket(s) failed: " + "; ".join(f"{f['index']}: {f['error']}" for f in failures))
    if vina_failures:
        console.print(f"Vina could not score {len(vina_failures)} pocket/design(s): "
                      + "; ".join(f"{f['index']}: {f['error']}" for f in vina_failures))
    console.print(f"wrote {csv_path} and {out / 'design_eval.json'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="benchmarks on reference sets")
    sub = p.add_subparsers(dest="evaluate_task", metavar="TASK")
    d = sub.add_parser("design", help="FAIR pocket design on a pocket set (AAR, RMSD)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--set", required=True, help="set folder with index.tsv and files/")
    d.add_argument("-o", "--out", default="design_eval", help="output folder")
    d.add_argument("--seeds", type=int, nargs="+", help="several seeds (default: --seed)")
    d.add_argument("--limit", type=int, help="only the first N pockets")
    d.add_argument("--ids", help="comma-separated index values to run")
    d.add_argument("--workers", type=int, default=1,
                   help="processes designing pockets in parallel, each with --threads threads (default 1); "
                   "results and the CSV keep the set's order")
    d.add_argument("--held-out", metavar="CONFIG", help="only the validation split of this task: fair training "
                   "config (e.g. configs/fair_default.yaml on ../shared/data/ligand_complexes)")
    add_model_arguments(d)
    d.set_defaults(handler=_run)
    p.set_defaults(handler=lambda a: (p.print_help(), 2)[1])
