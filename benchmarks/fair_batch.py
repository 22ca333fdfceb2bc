"""CPU time of FAIR ``generate`` on a batch against the same designs one call at a time.

``tertiary design -n N`` samples its N designs as one batch, and ``generate`` takes several
pockets at once; a batch should cost about the sum of its parts. This script times, with one
thread and the released checkpoint (or ``--checkpoint``): the given pockets one by one, the same
pockets as one batch, and ``--designs`` copies of the first pocket as one batch. Example::

    OMP_NUM_THREADS=1 python benchmarks/fair_batch.py --ids 0 1 2 3 --designs 10
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from tertiary.data.pocket import collate, load_pocket, read_pocket_index
from tertiary.models.fair.generate import generate
from tertiary.models.fair.weights import load


def cpu(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.process_time()
    fn()
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="../shared/data/crossdocked_test100")
    ap.add_argument("--checkpoint", default="../shared/refs/fair/checkpoint/fair_official.safetensors",
                    help="the released checkpoint (official layout) or a tertiary checkpoint")
    ap.add_argument("--ids", nargs="+", default=["0", "1", "2", "3"], help="index values of the set")
    ap.add_argument("--designs", type=int, default=10, help="copies of the first pocket in one batch")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load(args.checkpoint)  # either format
    rows = {r.get("index", r["id"]): r for r in read_pocket_index(args.set)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pockets = [load_pocket(rows[i]["pocket"], rows[i]["ligand"], pocket_radius=None, name=rows[i]["id"])
                   for i in args.ids]
    seed = torch.Generator().manual_seed
    generate(model, collate(pockets[:1]), seed(0))  # warm-up
    one = [cpu(lambda p=p: generate(model, collate([p]), seed(0))) for p in pockets]
    batch = cpu(lambda: generate(model, collate(pockets), seed(0)))
    copies = cpu(lambda: generate(model, collate([pockets[0]] * args.designs), seed(0)))
    print(f"{len(pockets)} pockets one by one: {sum(one):.2f} s CPU ({', '.join(f'{t:.2f}' for t in one)})")
    print(f"the same {len(pockets)} pockets as one batch: {batch:.2f} s CPU ({batch / sum(one):.2f}x the sum)")
    print(f"{args.designs} designs of {pockets[0].name} as one batch: {copies:.2f} s CPU "
          f"({copies / (args.designs * one[0]):.2f}x {args.designs} single calls)")


if __name__ == "__main__":
    main()
