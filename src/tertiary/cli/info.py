"""``tertiary info``: what is in structure files (chains, sequences, gaps, ligands, models)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tertiary import constants as rc
from tertiary.atom_sites import decompress, read_file_bytes, sniff_format
from tertiary.errors import TertiaryError, one_line
from tertiary.protein import ParseWarning, Protein

DESCRIPTION = """\
Read PDB / mmCIF files (gzip allowed) the way every tertiary command reads them and print, per
chain: the number of residues, the one-letter sequence (X for unknown residues), residues with
missing backbone (N, CA, C, O) or side-chain heavy atoms, non-standard residues (modified
residues mapped to their parent, e.g. MSE -> M, or X), and the ligands (HETATM groups; water is
dropped); per file: the format and the number of models. Warnings raised while reading (ignored
atoms, residues without CA...) are listed too.

Several files: every file is reported; a file that cannot be read gets one error line on stderr
and the others go on. The exit code is 2 when any file failed, 0 otherwise.
"""

EPILOG = """\
examples:
  tertiary info 1abc.pdb
  tertiary info structures/*.cif.gz --json > info.json
  tertiary info complex.pdb --chains AB --model 2
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="chains, sequences, missing atoms, ligands and models of structure files",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", type=Path, help="PDB / mmCIF files (.gz allowed)")
    p.add_argument("--json", action="store_true", help="print JSON: one object for one file, a list of them for several")
    p.add_argument("--chains", default=None, help="only these chain ids (e.g. 'AB'); default all")
    p.add_argument("--model", type=int, default=1, help="model to describe (1-based, default 1)")
    p.set_defaults(handler=run)


def _label(p: Protein, i: int) -> str:
    return f"{p.residue_name[i]}{int(p.residue_index[i])}{p.insertion_code[i]}"


def describe(path: Path, chains: str | None = None, model: int = 1) -> dict[str, Any]:
    """Everything ``tertiary info`` reports about one file, as a JSON-ready dict.

    Raises:
        TertiaryError: the file cannot be read (message names the file and the problem).
    """
    data = read_file_bytes(path)
    fmt = sniff_format(decompress(data, str(path)), str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ParseWarning)
        prot = Protein.from_string(data, chains=chains, model=model, fmt=fmt, name=str(path))
    notes = [str(w.message) for w in caught if issubclass(w.category, ParseWarning)]
    missing_bb, missing_sc = prot.missing_atoms()
    chain_ids = list(dict.fromkeys(list(prot.chains) + [g.chain_id for g in prot.ligands]))
    out_chains = []
    for cid in chain_ids:
        idx = np.flatnonzero(prot.chain_id == cid)
        nonstd: Counter[tuple[str, str]] = Counter()
        for i in idx.tolist():
            name = str(prot.residue_name[i])
            if name not in rc.RESTYPE_3TO1:
                nonstd[(name, rc.RESTYPES_WITH_X[int(prot.aatype[i])])] += 1
        ligands = [g for g in prot.ligands if g.chain_id == cid]
        out_chains.append(
            {
                "chain": cid,
                "length": int(len(idx)),
                "sequence": prot.sequence(cid) if len(idx) else "",
                "first_residue": _label(prot, int(idx[0])) if len(idx) else None,
                "last_residue": _label(prot, int(idx[-1])) if len(idx) else None,
                "missing_backbone": [_label(prot, i) for i in idx[missing_bb[idx]].tolist()],
                "missing_side_chain": [_label(prot, i) for i in idx[missing_sc[idx]].tolist()],
                "nonstandard": [
                    {"name": name, "as": one, "count": n} for (name, one), n in nonstd.items()
                ],
                "ligands": [
                    {"name": g.resname, "residue": f"{g.residue_number}{g.insertion_code}",
                     "atoms": len(g), "kind": g.kind}
                    for g in ligands
                ],
            }
        )
    return {
        "file": str(path),
        "format": fmt,
        "models": prot.n_models,
        "model": prot.model,
        "residues": len(prot),
        "ligands": len(prot.ligands),
        "chains": out_chains,
        "warnings": notes,
    }


def format_text(info: dict[str, Any]) -> str:
    """Human-readable report of :func:`describe`'s output."""
    models = info["models"]
    head = (
        f"{info['file']}: {info['format'].upper()}, {models} model{'s' if models != 1 else ''}"
        + (f" (showing model {info['model']})" if models > 1 or info["model"] != 1 else "")
        + f", {info['residues']} residues in {sum(c['length'] > 0 for c in info['chains'])} "
        f"chain(s), {info['ligands']} ligand group(s)"
    )
    lines = [head]
    for c in info["chains"]:
        name = c["chain"] or "(blank)"
        if c["length"]:
            lines.append(
                f"  chain {name}: {c['length']} residues ({c['first_residue']}-"
                f"{c['last_residue']}), {len(c['missing_backbone'])} with missing backbone atoms, "
                f"{len(c['missing_side_chain'])} with missing side-chain atoms"
            )
            lines.append(f"    sequence: {c['sequence']}")
        else:
            lines.append(f"  chain {name}: no protein residues")
        if c["missing_backbone"]:
            lines.append(f"    missing backbone: {_short(c['missing_backbone'])}")
        if c["missing_side_chain"]:
            lines.append(f"    missing side chain: {_short(c['missing_side_chain'])}")
        if c["nonstandard"]:
            items = ", ".join(f"{n['name']} x{n['count']} (as {n['as']})" for n in c["nonstandard"])
            lines.append(f"    non-standard residues: {items}")
        if c["ligands"]:
            groups = Counter(g["name"] for g in c["ligands"])
            atoms = sum(g["atoms"] for g in c["ligands"])
            items = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in groups.items())
            lines.append(f"    ligands: {items} ({len(c['ligands'])} group(s), {atoms} atoms)")
    for note in info["warnings"]:
        lines.append(f"  warning: {note}")
    return "\n".join(lines)


def _short(labels: list[str], limit: int = 12) -> str:
    if len(labels) <= limit:
        return " ".join(labels)
    return " ".join(labels[:limit]) + f" ... (+{len(labels) - limit})"


def run(args: argparse.Namespace) -> int:
    files: list[Path] = list(args.files)
    if len(files) == 1:
        infos = [describe(files[0], args.chains, args.model)]  # errors: one line, exit 2 (main)
        failed = 0
    else:
        infos, failed = [], 0
        for path in files:
            try:
                infos.append(describe(path, args.chains, args.model))
            except TertiaryError as exc:
                failed += 1
                msg = one_line(exc)
                print(f"tertiary info: error: {msg}", file=sys.stderr)
                infos.append({"file": str(path), "error": msg})
    if args.json:
        print(json.dumps(infos if len(files) > 1 else infos[0], indent=1))
    else:
        print("\n".join(format_text(i) for i in infos if "error" not in i))
    if failed:
        print(f"tertiary info: {failed} of {len(files)} files could not be read", file=sys.stderr)
        return 2
    return 0
