"""``tertiary data build --task TASK SRC -o DB``: build an LMDB training dataset.

Dataset builders are registered by task name in :data:`BUILDERS` as ``"module:function"``
strings, imported only when used. A builder is called as::

    builder(src, out, progress=callback, **options) -> report

where ``options`` are the command-line options given (``msa_dir``, ``clusters``, ``split``;
options left out are not passed), ``callback(done, total_or_None, name)`` reports progress and
``report`` has ``summary() -> str`` (one line) or is printed as is.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tertiary.errors import InputError
from tertiary.plugins import load_object

#: task name -> "module:function" of its dataset builder.
BUILDERS: dict[str, str] = {
    "folding": "tertiary.data.folding_dataset:build_folding_dataset",
    "pocket": "tertiary.data.pocket:build_pocket_dataset",
}


def resolve_builder(task: str) -> Callable[..., Any]:
    """The builder function of ``task``; a clear error when unknown or not importable."""
    spec = BUILDERS.get(task)
    if spec is None:
        raise InputError(f"data build: unknown task '{task}' (known: {', '.join(sorted(BUILDERS))})")
    return load_object(spec, f"data build: the '{task}' builder", InputError)


def _build(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    builder = resolve_builder(args.task)
    options = {k: v for k, v in (("msa_dir", args.msa_dir), ("clusters", args.clusters), ("split", args.split)) if v}
    console = Console(stderr=True)
    src, out = Path(args.src), Path(args.out)
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=args.quiet,
    ) as bar:  # fmt: skip
        job = bar.add_task(f"building {out.name}", total=None)

        def progress(done: int, total: int | None, name: str) -> None:
            bar.update(job, completed=done, total=total, description=f"{out.name} {name}")

        report = builder(src, out, progress=progress, **options)
    summary = report.summary() if hasattr(report, "summary") else str(report)
    console.print(summary, highlight=False, soft_wrap=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build training datasets (LMDB)", description="Dataset tools.")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    b = data_sub.add_parser(
        "build",
        help="build an LMDB dataset from structure files",
        description="Turn a folder (or tar archive) of PDB / mmCIF files into one LMDB dataset, written "
        "atomically. --task folding: one record per chain (structure, optional MSA from --msa-dir, length, "
        "resolution, cluster, split). Broken entries are skipped and listed with their reason in "
        "<out stem>.report.tsv next to the database.",
    )
    b.add_argument("src", help="folder of PDB / mmCIF files (.gz ok) or a tar archive (.tar, .tar.gz, .tar.xz)")
    b.add_argument("-o", "--out", required=True, help="the LMDB file to write")
    b.add_argument("--task", default="folding", help=f"dataset kind: {', '.join(sorted(BUILDERS))} (default folding)")
    b.add_argument("--msa-dir", help="folder of per-chain MSAs (<chain>.a3m or .sto)")
    b.add_argument("--clusters", help="TSV with chain_id and cluster30 / cluster columns")
    b.add_argument("--split", help="TSV with chain_id and split (train/valid/test) columns")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.set_defaults(handler=_build)

    def _usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(handler=_usage)
    b.set_defaults(handler=_build)
