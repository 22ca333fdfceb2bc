"""``tertiary msa``: build A3M alignments with a jackhmmer search (pyhmmer) of a sequence database."""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tertiary.errors import ConfigError, MissingDependencyError, ParseError, TertiaryError
from tertiary.sequence import FastaRecord, alignment_to_a3m, format_a3m, parse_a3m, read_fasta

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Search each sequence of a FASTA file against a protein sequence database with jackhmmer
(HMMER3 through pyhmmer, AlphaFold2's settings by default: 1 iteration, E-value 1e-4, filters
F1 5e-4 / F2 5e-5 / F3 5e-7, at most 10000 hits) and write one A3M per query to
OUT/<name>.a3m: the query first (ungapped), then every included hit domain aligned to the query
columns (lower case = insertions). The A3M can be passed to 'tertiary fold --msa'.
A summary of every query (hits, rows, time, error) is written to OUT/msa_summary.json.
Queries that fail are reported and skipped; the exit code is 1 if any failed.
"""

EPILOG = """\
example:
  tertiary msa queries.fasta --db uniref90.fasta -o msas/ --iterations 3 --cpus 8

The database is read into memory when it is smaller than --max-db-gib, otherwise it is streamed
from disk at every iteration (slower, no memory limit). Install pyhmmer with
'pip install tertiary[msa]'.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "msa",
        help="jackhmmer MSA search (pyhmmer) writing A3M files",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="FASTA file with one or more query sequences")
    p.add_argument("--db", type=Path, required=True, help="sequence database (FASTA, gzip allowed)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--iterations", type=int, default=1, help="jackhmmer iterations (default 1, as AlphaFold2)")
    p.add_argument("--evalue", type=float, default=1e-4, help="reporting and inclusion E-value (default 1e-4)")
    p.add_argument("--max-seqs", type=int, default=10000, help="keep at most this many hit rows (default 10000)")
    p.add_argument("--cpus", type=int, default=0, help="threads for the search (0 = all cores, default)")
    p.add_argument("--overwrite", action="store_true", help="redo queries whose A3M already exists")
    p.add_argument(
        "--max-db-gib", type=float, default=8.0, help="load the database into memory below this size (GiB)"
    )
    p.set_defaults(handler=run)


@dataclass
class QueryResult:
    """One line of ``msa_summary.json``."""

    name: str
    length: int
    status: str  # "ok", "skipped" (output existed) or "failed"
    a3m: str | None = None
    hits: int = 0
    rows: int = 0
    iterations: int = 0
    seconds: float = 0.0
    error: str | None = None


def safe_name(name: str, index: int) -> str:
    """File-name-safe version of a record name (``query<index>`` when empty)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or f"query{index}"


def _load_database(path: Path, max_gib: float):
    """The database as a DigitalSequenceBlock (or an open SequenceFile when too large)."""
    from pyhmmer import easel

    if not path.is_file():
        raise ParseError(f"{path}: sequence database not found")
    try:
        if path.stat().st_size > max_gib * 2**30:
            logger.info("streaming %s from disk (larger than %.1f GiB)", path, max_gib)
            return easel.SequenceFile(str(path), digital=True, alphabet=easel.Alphabet.amino())
        with easel.SequenceFile(str(path), digital=True, alphabet=easel.Alphabet.amino()) as handle:
            block = handle.read_block()
    except (ValueError, OSError, EOFError) as exc:
        raise ParseError(f"{path}: cannot read the sequence database as FASTA ({exc})") from exc
    if len(block) == 0:
        raise ParseError(f"{path}: the sequence database has no sequences")
    return block


def search_one(
    record: FastaRecord,
    database,
    iterations: int,
    evalue: float,
    max_seqs: int,
    cpus: int,
) -> tuple[list[str], list[str], int, int]:
    """jackhmmer ``record`` against ``database``.

    Returns:
        (names, A3M rows, number of included hits, iterations run); row 0 is the query.
    """
    import pyhmmer
    from pyhmmer import easel, plan7

    alphabet = easel.Alphabet.amino()
    query = easel.TextSequence(name=record.name.encode() or b"query", sequence=record.sequence).digitize(alphabet)
    if isinstance(database, easel.SequenceFile):
        database.rewind()  # a streamed database is read to its end by every search
    result = None
    for result in pyhmmer.hmmer.jackhmmer(
        query,
        database,
        max_iterations=iterations,
        cpus=cpus,
        E=evalue,
        incE=evalue,
        domE=evalue,
        incdomE=evalue,
        F1=5e-4,
        F2=5e-5,
        F3=5e-7,
    ):
        pass
    if result is None:
        raise TertiaryError(f"{record.name}: jackhmmer returned no result")
    names, seqs = [], []
    n_hits = 0
    for hit in result.hits:
        if not hit.included:
            continue
        n_hits += 1
        for domain in hit.domains:
            if not domain.included or len(names) >= max_seqs:
                continue
            ali = domain.alignment
            hit_name = hit.name.decode() if isinstance(hit.name, bytes) else str(hit.name)  # bytes in pyhmmer < 0.11
            names.append(f"{hit_name}/{ali.target_from}-{ali.target_to}")
            seqs.append(re.sub(r"[^A-Za-z]", "", ali.target_sequence).upper())
    block = easel.DigitalSequenceBlock(
        alphabet, [query] + [easel.TextSequence(name=n.encode(), sequence=s).digitize(alphabet) for n, s in zip(names, seqs)]
    )
    aligner = plan7.TraceAligner()
    traces = aligner.compute_traces(result.hmm, block)
    msa = aligner.align_traces(result.hmm, block, traces, all_consensus_cols=True)
    rows = alignment_to_a3m([msa.alignment[i] for i in range(len(block))])
    if rows[0] != record.sequence:
        raise TertiaryError(f"{record.name}: the query is not fully contained in its own alignment")
    return [record.name or "query"] + names, rows, n_hits, int(result.iteration)


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        import pyhmmer  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("tertiary msa needs pyhmmer: pip install 'tertiary[msa]'") from exc
    if args.iterations < 1 or args.max_seqs < 0 or args.evalue <= 0 or args.cpus < 0:
        raise ConfigError("--iterations must be >= 1, --max-seqs >= 0, --evalue > 0, --cpus >= 0")
    bad_records: list[ParseError] = []
    records = read_fasta(args.input, on_error=bad_records.append)
    database = _load_database(args.db, args.max_db_gib)
    args.out.mkdir(parents=True, exist_ok=True)
    results = [QueryResult(name="(invalid record)", length=0, status="failed", error=str(e)) for e in bad_records]
    if not records:
        raise ParseError(f"{args.input}: no valid query sequence")

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    ) as progress:
        task = progress.add_task("jackhmmer", total=len(records))
        for i, record in enumerate(records, start=1):
            name = safe_name(record.name, i)
            out = args.out / f"{name}.a3m"
            progress.update(task, description=f"jackhmmer {i}/{len(records)} {name} (L={len(record.sequence)})")
            res = QueryResult(name=record.name, length=len(record.sequence), status="ok", a3m=str(out))
            start = time.perf_counter()
            if out.exists() and not args.overwrite:
                res.status = "skipped"
            else:
                try:
                    names, rows, res.hits, res.iterations = search_one(
                        record, database, args.iterations, args.evalue, args.max_seqs, args.cpus
                    )
                    text = format_a3m(names, rows)
                    parse_a3m(text, source=str(out)).check_query(record.sequence, source=str(out))
                    tmp = out.with_suffix(".a3m.tmp")
                    tmp.write_text(text)
                    tmp.replace(out)
                    res.rows = len(rows)
                except (TertiaryError, ValueError, RuntimeError, OSError) as exc:
                    res.status, res.error, res.a3m = "failed", f"{type(exc).__name__}: {exc}", None
                    progress.console.print(f"[red]failed[/red] {record.name}: {exc}")
            res.seconds = round(time.perf_counter() - start, 3)
            results.append(res)
            progress.advance(task)

    summary = args.out / "msa_summary.json"
    summary.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    failed = [r for r in results if r.status == "failed"]
    done = sum(r.status == "ok" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    print(f"tertiary msa: {done} searched, {skipped} skipped (existing), {len(failed)} failed; summary: {summary}")
    for r in failed:
        print(f"  failed: {r.name}: {r.error}")
    return 1 if failed else 0
