"""Parse speed: tertiary vs Biopython's ``PDBParser`` on every Docking Benchmark 5.5 PDB file.

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/parse.py [--repeats 3] [--json OUT]

Every ``structures/*.pdb.gz`` under ``$TERTIARY_SHARED/data/db5.5_docking_benchmark`` (638
legacy PDB files, 1.36 M atom records) is decompressed into memory first; then, in the same
run, the in-memory texts are parsed by

- tertiary: ``Protein.from_string`` (atom37 arrays, residue numbering, insertion codes, chains,
  B-factors, HETATM ligand groups; alternate locations resolved), and
- Biopython: ``PDBParser(QUIET=True).get_structure`` on a ``StringIO`` of the same text
  (the full SMCRA hierarchy; Biopython does not build atom37 arrays).

Each parser runs ``--repeats`` passes over all files; the best pass is reported (files/s,
atoms/s) together with the ratio. Before timing, both parsers' outputs are compared on every file
(protein residues, resolved heavy atoms of standard residues, chains) so that the speed-up is not
bought with lost information; disagreements are printed.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from tertiary.protein import Protein

DEFAULT = Path(os.environ.get("TERTIARY_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def load_texts(folder: Path) -> list[tuple[str, bytes]]:
    files = sorted((folder / "structures").glob("*.pdb.gz"))
    if not files:
        raise SystemExit(f"no structures/*.pdb.gz under {folder}")
    return [(f.name, gzip.decompress(f.read_bytes())) for f in files]


def parse_tertiary(name: str, data: bytes) -> Protein:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Protein.from_string(data, name=name)


def parse_biopython(parser: object, name: str, text: str) -> object:
    return parser.get_structure(name, io.StringIO(text))  # type: ignore[attr-defined]


def compare(prot: Protein, structure: object) -> list[str]:
    """Differences between tertiary's Protein and Biopython's first model (standard residues:
    residue count, heavy-atom count, chain set)."""
    from tertiary import constants as rc

    std = set(rc.RESTYPE_3TO1)
    model = next(iter(structure))  # type: ignore[call-overload]
    n_res = n_atoms = 0
    chains = set()
    for chain in model:
        for res in chain:
            if res.id[0] == "W" or res.get_resname() not in std:
                continue
            n_res += 1
            chains.add(chain.id.strip())
            allowed = {rc.ATOM_TYPES[i] for i in np.flatnonzero(
                rc.RESTYPE_ATOM37_MASK[rc.RESNAME_TO_INDEX[res.get_resname()]])} | {"OXT"}
            n_atoms += sum(1 for a in res if a.get_id() in allowed)
    is_std = np.isin(prot.residue_name, sorted(std))
    ours_res = int(is_std.sum())
    ours_atoms = int(prot.atom_mask[is_std].sum())
    ours_chains = set(prot.chain_id[is_std].tolist())
    out = []
    if ours_res != n_res:
        out.append(f"residues {ours_res} vs {n_res}")
    if ours_atoms != n_atoms:
        out.append(f"heavy atoms {ours_atoms} vs {n_atoms}")
    if ours_chains != chains:
        out.append(f"chains {sorted(ours_chains)} vs {sorted(chains)}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT / "data" / "db5.5_docking_benchmark")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="only the first N files (0 = all)")
    ap.add_argument("--json", type=Path, help="write the figures as JSON")
    args = ap.parse_args()

    from Bio.PDB import PDBParser

    texts = load_texts(args.data)
    if args.limit:
        texts = texts[: args.limit]
    strs = [(n, d.decode("ascii", errors="replace")) for n, d in texts]
    n_atom_records = sum(
        d.count(b"\nATOM") + d.count(b"\nHETATM") + d.startswith((b"ATOM", b"HETATM")) for _, d in texts
    )
    bio = PDBParser(QUIET=True)

    # Information check (not timed).
    mismatches = 0
    for (name, data), (_, text) in zip(texts, strs):
        diff = compare(parse_tertiary(name, data), parse_biopython(bio, name, text))
        if diff:
            mismatches += 1
            print(f"  {name}: {'; '.join(diff)}")

    def timed(fn, items) -> tuple[float, float]:  # noqa: ANN001
        """Best wall-clock and best CPU (process) time of ``repeats`` passes."""
        best_wall = best_cpu = float("inf")
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            for item in items:
                fn(*item)
            best_wall = min(best_wall, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        return best_wall, best_cpu

    t_ter, c_ter = timed(parse_tertiary, texts)
    t_bio, c_bio = timed(lambda n, s: parse_biopython(bio, n, s), strs)
    n = len(texts)
    result = {
        "files": n,
        "atom_records": n_atom_records,
        "megabytes": round(sum(len(d) for _, d in texts) / 1e6, 1),
        "repeats": args.repeats,
        "tertiary_s": round(t_ter, 3),
        "biopython_s": round(t_bio, 3),
        "tertiary_files_per_s": round(n / t_ter, 1),
        "biopython_files_per_s": round(n / t_bio, 1),
        "tertiary_atoms_per_s": round(n_atom_records / t_ter),
        "biopython_atoms_per_s": round(n_atom_records / t_bio),
        "ratio": round(t_bio / t_ter, 2),
        "tertiary_cpu_s": round(c_ter, 3),
        "biopython_cpu_s": round(c_bio, 3),
        "ratio_cpu": round(c_bio / c_ter, 2),
        "files_disagreeing": mismatches,
    }
    print(
        f"{n} files, {n_atom_records} atom records, {result['megabytes']} MB (best of {args.repeats})\n"
        f"tertiary : {result['tertiary_files_per_s']:8.1f} files/s  {t_ter:7.2f} s wall"
        f"  {c_ter:7.2f} s cpu\n"
        f"biopython: {result['biopython_files_per_s']:8.1f} files/s  {t_bio:7.2f} s wall"
        f"  {c_bio:7.2f} s cpu\n"
        f"ratio    : {result['ratio']:.2f}x wall, {result['ratio_cpu']:.2f}x cpu   "
        f"files where residues/atoms/chains disagree: {mismatches}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
