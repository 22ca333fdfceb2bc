"""Time GearNet residue-graph construction (and the GearNet-Edge line graph) on real structures.

    python benchmarks/gearnet_graph.py [--repeats 10] [--threads 1] [FILES...]

Default inputs: the bound receptor and ligand of Docking Benchmark 5.5 entry 1ZM4 from
``$TERTIARY_SHARED/data/db5.5_docking_benchmark`` (822 + 203 residues with CA), each alone and
both together as one two-chain protein (1,025 residues). CA coordinates are read with gemmi
(parsing is not timed). Prints median wall time per graph and edge counts; writes JSON with
``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import gemmi
import torch

from tertiary.constants import RESNAME_TO_INDEX
from tertiary.data.graph import GraphConfig, build_residue_graph, spatial_line_graph


def read_ca(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pos, rtype, chain = [], [], []
    for path in paths:
        st = gemmi.read_structure(str(path))
        for ch in st[0]:
            for res in ch:
                ca = res.find_atom("CA", "*")
                if ca is None or res.het_flag != "A":
                    continue
                pos.append([ca.pos.x, ca.pos.y, ca.pos.z])
                rtype.append(RESNAME_TO_INDEX.get(res.name, 20))
                chain.append(f"{path.name}:{ch.name}")
    chain_ids = {c: i for i, c in enumerate(dict.fromkeys(chain))}
    return torch.tensor(pos), torch.tensor(rtype), torch.tensor([chain_ids[c] for c in chain])


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.files:
        inputs = {str(f): [f] for f in args.files}
    else:
        root = Path(os.environ.get("TERTIARY_SHARED", Path(__file__).resolve().parents[2] / "shared"))
        folder = root / "data" / "db5.5_docking_benchmark" / "structures"
        r, l = folder / "1ZM4_r_b.pdb.gz", folder / "1ZM4_l_b.pdb.gz"
        inputs = {"1ZM4 ligand": [l], "1ZM4 receptor": [r], "1ZM4 complex": [r, l]}
    rows = []
    for label, paths in inputs.items():
        pos, rtype, chain = read_ca(paths)
        base = GraphConfig()
        edge = GraphConfig(edge_features=True)
        g = build_residue_graph(pos, rtype, chain, edge)
        row = {
            "input": label,
            "residues": int(pos.shape[0]),
            "edges": g.num_edge,
            "graph_s": timed(lambda: build_residue_graph(pos, rtype, chain, base), args.repeats),
            "graph_edge_features_s": timed(lambda: build_residue_graph(pos, rtype, chain, edge), args.repeats),
            "line_graph_s": timed(lambda: spatial_line_graph(g, 8), args.repeats),
            "line_edges": spatial_line_graph(g, 8).edge_index.shape[0],
        }
        rows.append(row)
        print(
            f"{label:16s} {row['residues']:5d} residues {row['edges']:6d} edges: graph {row['graph_s'] * 1e3:7.1f} ms, "
            f"+edge features {row['graph_edge_features_s'] * 1e3:7.1f} ms, line graph ({row['line_edges']} edges) "
            f"{row['line_graph_s'] * 1e3:7.1f} ms"
        )
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
