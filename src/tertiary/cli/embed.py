"""``tertiary embed``: per-protein and per-residue embeddings of many structure files.

Files are parsed a window at a time (never all at once), sorted by length inside the window and
run in batches bounded by a residue budget. Embeddings are appended to temporary files and
assembled into one safetensors file at the end:

- ``protein_embeddings [P, D]`` float32 (graph features),
- ``residue_embeddings [R, D]`` float32 (node features; left out with ``--no-residues``),
- ``residue_offsets [P + 1]`` int64: residues of protein ``p`` are rows ``offsets[p]:offsets[p+1]``,
- ``residue_index [R]`` int64: author residue number of each embedded residue,
- metadata ``names`` (JSON list: the file of each protein row), ``model``, ``dim``.

A JSON report next to the output (``<out>.report.json``) lists every file that failed and why
(unreadable, residues without CA, too many unknown residues, longer than the limit, not matching
its ``--sequences`` record), and every file that was truncated or windowed; the other files go on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from tertiary.errors import InputError, TertiaryError, WeightsError, one_line

log = logging.getLogger(__name__)

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdb.gz", ".ent.gz", ".cif.gz", ".mmcif.gz")
MODELS = ("fusionprot", "esm", "gearnet")


def iter_structure_files(inputs: list[str]) -> Iterator[Path]:
    """Files given, and structure files under folders given (recursively, sorted)."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith(STRUCTURE_SUFFIXES):
                        yield Path(root) / name
        elif path.exists():
            yield path
        else:
            raise InputError(f"{path}: no such file or folder")


class SafetensorsStreamWriter:
    """Writes a safetensors file whose tensors grow row by row, without holding them in memory.

    Rows are appended to one temporary file per tensor; :meth:`close` writes the header and
    copies the data after it.
    """

    _DTYPES = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp = tempfile.TemporaryDirectory(dir=path.parent if path.parent.exists() else None)
        self._files: dict[str, tuple[object, np.dtype, tuple[int, ...]]] = {}
        self._rows: dict[str, int] = {}

    def append(self, name: str, rows: np.ndarray) -> None:
        """Append ``rows`` (``[n, *shape]``) to tensor ``name``."""
        rows = np.ascontiguousarray(rows)
        if name not in self._files:
            fh = open(Path(self._tmp.name) / f"{name}.bin", "wb")
            self._files[name] = (fh, rows.dtype, rows.shape[1:])
            self._rows[name] = 0
        fh, dtype, shape = self._files[name]
        if rows.dtype != dtype or rows.shape[1:] != shape:
            raise InputError(f"{name}: rows {rows.dtype}{rows.shape[1:]} do not match {dtype}{shape}")
        fh.write(rows.tobytes())
        self._rows[name] += rows.shape[0]

    def close(self, metadata: dict[str, str]) -> None:
        """Write the file (atomically: a temporary name, then renamed)."""
        header: dict[str, object] = {"__metadata__": metadata}
        offset = 0
        for name, (fh, dtype, shape) in self._files.items():
            fh.close()
            size = os.path.getsize(fh.name)
            header[name] = {"dtype": self._DTYPES[dtype], "shape": [self._rows[name], *shape],
                            "data_offsets": [offset, offset + size]}
            offset += size
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        tmp_out = self.path.with_name(self.path.name + ".part")
        with open(tmp_out, "wb") as out:
            out.write(struct.pack("<Q", len(blob)))
            out.write(blob)
            for fh, _, _ in self._files.values():
                with open(fh.name, "rb") as src:
                    while chunk := src.read(1 << 24):
                        out.write(chunk)
        os.replace(tmp_out, self.path)
        self._tmp.cleanup()

    def abort(self) -> None:
        for fh, _, _ in self._files.values():
            fh.close()
        self._tmp.cleanup()


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None


def load_encoder(model: str, checkpoint: str | None, esm_weights: str | None):
    """The encoder to embed with, and the graph config its inputs need.

    ``checkpoint``: a ``tertiary train`` run folder, or its ``model.safetensors`` (the
    ``config.json`` beside it gives the architecture). ``esm_weights``: for ``--model esm``
    without a checkpoint, ESM-2 weights in any format :func:`tertiary.models.esm.load_esm` reads.
    """
    from tertiary.models.fusionprot.task import FunctionModelConfig, build_encoder
    from tertiary.train.config import from_dict

    if checkpoint is None:
        if model != "esm":
            raise WeightsError(
                f"--model {model} needs --checkpoint (a trained run: its model.safetensors and config.json); "
                "only --model esm can run from --esm-weights alone"
            )
        if esm_weights is None:
            raise WeightsError("--model esm needs --esm-weights PATH (fair-esm .pt, HuggingFace folder or tertiary folder)")
        cfg = FunctionModelConfig(encoder="esm", esm_weights=esm_weights)
        return build_encoder(cfg)
    ckpt = Path(checkpoint)
    weights = ckpt / "model.safetensors" if ckpt.is_dir() else ckpt
    config_path = weights.parent / "config.json"
    if not weights.is_file():
        raise WeightsError(f"{weights}: checkpoint weights not found")
    if not config_path.is_file():
        raise WeightsError(f"{config_path}: missing (the architecture of {weights} is read from it)")
    try:
        run_cfg = json.loads(config_path.read_text())
        model_section = dict(run_cfg["model"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise WeightsError(f"{config_path}: not a tertiary training config ({exc})") from None
    model_section["esm_weights"] = None  # the checkpoint holds the ESM weights
    cfg = from_dict(FunctionModelConfig, model_section, f"{config_path}: model")
    if cfg.encoder != model:
        raise WeightsError(f"{weights}: checkpoint holds a {cfg.encoder!r} model, not {model!r} (--model)")
    encoder, graph_cfg = build_encoder(cfg)
    state = _load_state(weights)
    enc_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    if not enc_state:
        raise WeightsError(f"{weights}: no 'encoder.*' tensors (keys start with {sorted({k.split('.')[0] for k in state})})")
    own = encoder.state_dict()
    missing = sorted(set(own) - set(enc_state))
    unexpected = sorted(set(enc_state) - set(own))
    wrong = sorted(k for k in set(own) & set(enc_state) if own[k].shape != enc_state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
        if wrong:
            parts.append("shape mismatches " + ", ".join(
                f"{k}: file {tuple(enc_state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:10]))
        raise WeightsError(f"{weights}: does not fit the {cfg.encoder} architecture of {config_path}: " + "; ".join(parts))
    encoder.load_state_dict(enc_state)
    return encoder, graph_cfg


def _batches(samples: list, budget: int) -> Iterator[list]:
    """Length-sorted batches whose padded size ``count * longest`` stays within ``budget``."""
    samples = sorted(samples, key=len)
    batch: list = []
    for s in samples:
        if batch and (len(batch) + 1) * len(s) > budget:
            yield batch
            batch = []
        batch.append(s)
    if batch:
        yield batch


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(STRUCTURE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _sequence_key(path: Path, sequences: dict[str, str]) -> str | None:
    """The FASTA record of a structure file: named like the file without its suffixes, or the file name."""
    for key in (_stem(path), path.name):
        if key in sequences:
            return key
    return None


def _read_sequences(path: str) -> dict[str, str]:
    from tertiary.sequence import read_fasta

    records = read_fasta(path)
    out: dict[str, str] = {}
    for rec in records:
        if rec.name in out:
            raise InputError(f"{path}: record name {rec.name!r} occurs twice")
        out[rec.name] = rec.sequence
    return out


def run_embed(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tertiary.data.function import check_sequence, load_structure_sample, truncate
    from tertiary.data.graph import batch_graphs, build_residue_graph

    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise InputError(f"{out}: output must end in .safetensors")
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True)
    files = list(iter_structure_files(args.structures))  # paths only
    if not files:
        raise InputError("no structure files found in " + ", ".join(args.structures))
    encoder, graph_cfg = load_encoder(args.model, args.checkpoint, args.esm_weights)
    device = torch.device(args.device)
    encoder = encoder.to(device).eval()
    long_mode = "truncate" if args.truncate else args.long
    esm = getattr(encoder, "esm", None)
    if long_mode == "window":
        if args.model != "esm":
            raise InputError("--long window is only available for --model esm (FusionProt's graph exchange needs "
                             "the whole protein in one pass); use --long truncate")
        encoder.long_mode = "window"
    limit = args.max_length
    if esm is not None and long_mode != "window":
        limit = esm.config.max_residues if limit is None else min(limit, esm.config.max_residues)
    sequences = _read_sequences(args.sequences) if args.sequences else None
    long_report: dict[str, str] = {}

    writer = SafetensorsStreamWriter(out)
    names: list[str] = []
    failed: dict[str, str] = {}
    offset = 0
    offsets = [0]

    def prepare(path: Path):
        sample = load_structure_sample(
            path, str(path), missing_ca="drop" if args.drop_missing_ca else "error",
            max_unknown_fraction=args.max_unknown_fraction,
        )
        if sequences is not None:
            key = _sequence_key(path, sequences)
            if key is None:
                raise InputError(f"{path}: no record named {_stem(path)!r} in {args.sequences}")
            check_sequence(sample, sequences[key], f"{args.sequences} record {key!r}")
        if limit is not None and len(sample) > limit:
            if long_mode != "truncate":
                raise InputError(f"{path}: {len(sample)} residues, more than the limit of {limit} (use --long truncate"
                                 + (" or --long window" if args.model == "esm" else "") + ")")
            long_report[str(path)] = f"truncated from {len(sample)} to {limit} residues"
            sample = truncate(sample, limit)
        elif esm is not None and long_mode == "window" and len(sample) > esm.config.max_residues:
            long_report[str(path)] = (f"{len(sample)} residues run in overlapping windows of "
                                      f"{esm.config.max_residues} (averaged per residue)")
        return sample

    columns = (TextColumn("[bold]embed"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed"),
               TimeRemainingColumn())
    try:
        with Progress(*columns, disable=args.quiet) as progress, torch.no_grad():
            bar = progress.add_task("embed", total=len(files), failed=0)
            for start in range(0, len(files), args.window):
                window = []
                for path in files[start : start + args.window]:
                    try:
                        window.append(prepare(path))
                    except TertiaryError as exc:
                        failed[str(path)] = one_line(exc)
                        progress.update(bar, advance=1, failed=len(failed))
                    except (OSError, ValueError, RuntimeError, UnicodeError, EOFError) as exc:  # parser internals
                        failed[str(path)] = f"{path}: unreadable ({type(exc).__name__}: {' '.join(str(exc).split())})"
                        progress.update(bar, advance=1, failed=len(failed))
                for batch in _batches(window, args.batch_residues):
                    graphs = [build_residue_graph(s.pos, s.residue_type, s.chain, graph_cfg) for s in batch]
                    try:
                        feats = encoder(batch_graphs(graphs).to(device))
                    except TertiaryError as exc:
                        for s in batch:
                            failed[s.name] = one_line(exc)
                        progress.update(bar, advance=len(batch), failed=len(failed))
                        continue
                    writer.append("protein_embeddings", feats["graph_feature"].float().cpu().numpy())
                    node = feats["node_feature"].float().cpu().numpy()
                    lo = 0
                    for s in batch:
                        n = len(s)
                        if not args.no_residues:
                            writer.append("residue_embeddings", node[lo : lo + n])
                            writer.append("residue_index", s.residue_index.numpy().astype(np.int64))
                        lo += n
                        offset += n
                        offsets.append(offset)
                        names.append(s.name)
                    progress.update(bar, advance=len(batch), failed=len(failed))
        if not names:
            writer.abort()
            report = Path(str(out) + ".report.json")
            report.write_text(json.dumps({"embedded": 0, "failed": failed, "long": long_report}, indent=2))
            raise InputError(f"no structure could be embedded ({len(failed)} failed; see {report})")
        if not args.no_residues:
            writer.append("residue_offsets", np.asarray(offsets, dtype=np.int64))
        writer.close({"names": json.dumps(names), "model": args.model, "dim": str(encoder.output_dim),
                      "format": "tertiary-embeddings-1"})
    except BaseException:
        writer.abort()
        raise
    report = Path(str(out) + ".report.json")
    report.write_text(json.dumps({"embedded": len(names), "failed": failed, "long": long_report}, indent=2))
    print(f"embedded {len(names)} of {len(files)} structures -> {out} ({len(failed)} failed, see {report})")
    if long_report:
        print(f"  {len(long_report)} longer than the limit: " + "; ".join(
            f"{Path(k).name}: {v}" for k, v in list(long_report.items())[:5]) + (" ..." if len(long_report) > 5 else ""))
    for name, reason in list(failed.items())[:10]:
        print(f"  failed: {reason}" if name in reason else f"  failed: {name}: {reason}")
    return 0 if not failed else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "embed",
        help="per-protein and per-residue embeddings of structure files (FusionProt, ESM-2, GearNet)",
        description="Embed PDB / mmCIF files (or folders of them, searched recursively) with FusionProt, "
        "ESM-2 or GearNet; writes one safetensors file with an index and a JSON report of failures. "
        "Exit code 1 when some files failed, 2 when none could be embedded or the setup is wrong.",
    )
    p.add_argument("structures", nargs="+", help="structure files or folders")
    p.add_argument("--model", choices=MODELS, required=True, help="encoder")
    p.add_argument("--esm-weights", help="ESM-2 weights (fair-esm .pt, HuggingFace folder, tertiary folder); --model esm")
    p.add_argument("--checkpoint", help="trained run folder or its model.safetensors (config.json beside it)")
    p.add_argument("-o", "--output", required=True, help="output .safetensors")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--batch-residues", type=int, default=4096, help="padded residues per batch (default: 4096)")
    p.add_argument("--window", type=int, default=256, help="files parsed and length-sorted at a time (default: 256)")
    p.add_argument("--max-length", type=int, default=None,
                   help="longest protein accepted (default: the ESM-2 limit, 1022 for released models; none for GearNet)")
    p.add_argument("--long", choices=("error", "truncate", "window"), default="error",
                   help="proteins over the limit: fail the file (default), keep the first residues, or (--model esm) "
                   "run overlapping windows; truncated / windowed files are listed in the report")
    p.add_argument("--truncate", action="store_true", help="same as --long truncate")
    p.add_argument("--sequences", help="FASTA whose records (named like the files without suffix) each structure must "
                   "match, unobserved residues allowed as gaps; mismatching files fail")
    p.add_argument("--drop-missing-ca", action="store_true", help="skip residues without CA instead of failing the file")
    p.add_argument("--max-unknown-fraction", type=float, default=0.5,
                   help="fail files with more unknown residues than this fraction (default: 0.5)")
    p.add_argument("--no-residues", action="store_true", help="write per-protein embeddings only")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_embed)
