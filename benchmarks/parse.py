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
atoms/s, wall and CPU time) together with the ratios. Before timing, both parsers' outputs are
compared on every file (standard residues, chains, and every heavy atom Biopython reports: present
with the same coordinates and B-factor) so that the speed-up is not bought with lost
information; disagreements are printed.
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
    """Differences between tertiary's Protein and Biopython's first model on the standard
    residues: residue count, chains, and every heavy atom Biopython reports (its default altloc
    is also the highest-occupancy one): present in tertiary's atom37 arrays at the same
    coordinates (1e-3 A) with the same B-factor (1e-2)."""
    from tertiary import constants as rc

    std = set(rc.RESTYPE_3TO1)
    model = next(iter(structure))  # type: ignore[call-overload]
    index = {
        (c, int(n), i): k
        for k, (c, n, i) in enumerate(zip(prot.chain_id.tolist(), prot.residue_index.tolist(),
                                          prot.insertion_code.tolist()))
    }
    n_res = n_atoms = 0
    chains = set()
    bad_atoms, max_dxyz, max_db = 0, 0.0, 0.0
    for chain in model:
        cid = chain.id.strip()
        for res in chain:
            name = res.get_resname()
            if res.id[0] == "W" or name not in std:
                continue
            n_res += 1
            chains.add(cid)
            k = index.get((cid, int(res.id[1]), res.id[2].strip()))
            allowed = rc.RESTYPE_ATOM37_MASK[rc.RESNAME_TO_INDEX[name]]
            for atom in res:
                a = rc.ATOM_ORDER.get(atom.get_id(), -1)
                if a < 0 or not (allowed[a] or atom.get_id() == "OXT"):
                    continue
                n_atoms += 1
                if k is None or prot.atom_mask[k, a] == 0:
                    bad_atoms += 1
                    continue
                max_dxyz = max(max_dxyz, float(np.abs(prot.atom_positions[k, a] - atom.coord).max()))
                max_db = max(max_db, abs(float(prot.b_factors[k, a]) - float(atom.bfactor)))
    is_std = np.isin(prot.residue_name, sorted(std))
    out = []
    if int(is_std.sum()) != n_res:
        out.append(f"residues {int(is_std.sum())} vs {n_res}")
    if int(prot.atom_mask[is_std].sum()) != n_atoms or bad_atoms:
        out.append(f"heavy atoms {int(prot.atom_mask[is_std].sum())} vs {n_atoms} "
                   f"({bad_atoms} of Biopython's missing)")
    if set(prot.chain_id[is_std].tolist()) != chains:
        out.append(f"chains {sorted(set(prot.chain_id[is_std].tolist()))} vs {sorted(chains)}")
    if max_dxyz > 1e-3 or max_db > 1e-2:
        out.append(f"max |dxyz| {max_dxyz:.4f} A, max |dB| {max_db:.3f}")
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
