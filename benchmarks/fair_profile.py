"""Where the CPU time of FAIR ``generate`` and of one training step goes, by part of the encoder.

Wraps the encoder's parts with timers (wall seconds of one thread, the process otherwise idle)
and runs, with the released checkpoint (or ``--checkpoint``) in ``native`` mode: ``generate``
on each pocket (batch 1, seed 0, after one untimed warm-up call), then ``--steps`` training
steps (forward of both stages + backward + Adam, batch = the pockets; after one untimed step).
Prints milliseconds per pocket (``generate``) or per step (training) for each part, and the
number of calls. Parts nest: ``atom level`` contains the edge scales, the atom blocks and the
atom kNN; ``knn`` counts every search (atoms and residues of each call, and the context atoms
inside ``shared edge scales``, once per ``generate`` or step). Example::

    OMP_NUM_THREADS=1 python benchmarks/fair_profile.py --ids 0 1 2 3
"""

from __future__ import annotations

import argparse
import collections
import functools
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from tertiary.data.pocket import collate, load_pocket, read_pocket_index
from tertiary.models.fair import coordinate_updates, edge_cache, encoder, residue_transformer
from tertiary.models.fair import generate as sampling
from tertiary.models.fair.atom_attention import AtomAttentionBlock
from tertiary.models.fair.loss import training_loss
from tertiary.models.fair.weights import load

PARTS = [  # (owner, attribute, label)
    (encoder.HierarchicalEncoder, "forward", "encoder call"),
    (encoder.HierarchicalEncoder, "_atom_level", "atom level"),
    (edge_cache.EdgeScales, "lookup", "edge scales (per call)"),
    (AtomAttentionBlock, "forward", "atom blocks"),
    (encoder, "knn", "knn"),
    (residue_transformer.ResidueTransformerLayer, "forward", "residue layers"),
    (coordinate_updates.LigandContactUpdate, "forward", "protein-ligand pass"),
    (encoder, "residue_messages", "residue messages"),
    (encoder.HierarchicalEncoder, "shared_edge_scales", "shared edge scales"),
]


def instrument(totals: collections.Counter[str], counts: collections.Counter[str]) -> None:
    """Replace each part by a timed wrapper (for the rest of the process)."""
    for owner, name, label in PARTS:
        inner = getattr(owner, name)

        def timed(*args: Any, _inner: Callable[..., Any] = inner, _label: str = label, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _inner(*args, **kwargs)
            finally:
                totals[_label] += time.perf_counter() - t0
                counts[_label] += 1

        setattr(owner, name, functools.wraps(inner)(timed))


def report(title: str, wall: float, per: int, totals: collections.Counter[str], counts: collections.Counter[str]) -> None:
    print(f"{title}: {wall / per * 1e3:.0f} ms each")
    for _, _, label in PARTS:
        if counts[label]:
            print(f"  {label:<24} {totals[label] / per * 1e3:8.1f} ms  ({counts[label] / per:.0f} calls)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="../shared/data/crossdocked_test100")
    ap.add_argument("--checkpoint", default="../shared/refs/fair/checkpoint/fair_official.safetensors")
    ap.add_argument("--ids", nargs="+", default=["0", "1", "2", "3"], help="index values of the set")
    ap.add_argument("--steps", type=int, default=2, help="timed training steps (0 = none)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load(args.checkpoint)
    model.config = replace(model.config, residue_graph="native")
    rows = {r.get("index", r["id"]): r for r in read_pocket_index(args.set)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pockets = [load_pocket(rows[i]["pocket"], rows[i]["ligand"], pocket_radius=None, name=rows[i]["id"])
                   for i in args.ids]
    totals: collections.Counter[str] = collections.Counter()
    counts: collections.Counter[str] = collections.Counter()
    instrument(totals, counts)

    def design(pocket: Any) -> None:
        sampling.generate(model, collate([pocket]), torch.Generator().manual_seed(0), residue_graph="native")

    design(pockets[0])  # warm-up (kernels loaded or compiled)
    totals.clear()
    counts.clear()
    t0 = time.perf_counter()
    for pocket in pockets:
        design(pocket)
    report(f"generate, {len(pockets)} pockets", time.perf_counter() - t0, len(pockets), totals, counts)
    if args.steps:
        batch = collate(pockets)
        model.train()
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
        gen = torch.Generator().manual_seed(0)

        def step() -> None:
            optimiser.zero_grad()
            loss, _ = training_loss(model, batch, gen)
            loss.backward()
            optimiser.step()

        step()
        totals.clear()
        counts.clear()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        report(f"training step (batch {len(pockets)}; parts = forward only, the rest is backward + Adam)",
               time.perf_counter() - t0, args.steps, totals, counts)


if __name__ == "__main__":
    main()
