"""How far FAIR's interpolated starting backbone is from the truth on a pocket set (no model).

FAIR starts every designed residue from a linear interpolation between the nearest context
(non-designed) residues in pocket-file order (the released code) or, tertiary's default, in chain
order. This script measures, per set: the RMSD of both starts over N, CA, C, O of the designed
residues (no superposition), and for the file order the fraction of designed
residues interpolated across a chain break (the two flanking context residues are further apart
than consecutive residues at 3.8 A per position allow, + 1 A), the fraction extrapolated (before
the first / after the last context residue) and the fraction of consecutive residue pairs in the
file with a CA-CA distance over 4.2 A. Example::

    python benchmarks/fair_interpolation.py --set ../shared/data/crossdocked_test100 --pocket-radius none
    python benchmarks/fair_interpolation.py --set ../shared/data/ligand_complexes --kinds crystal
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import torch

from tertiary.data.pocket import collate, load_pocket, read_pocket_index
from tertiary.errors import TertiaryError
from tertiary.models.fair.generate import backbone_rmsd
from tertiary.models.fair.interpolation import interpolate_backbone

CA_STEP = 3.8  # A between consecutive CA atoms


def pocket_stats(pocket: object) -> dict[str, float] | None:
    """Start RMSD and break / extrapolation counts of one pocket (None: too few context residues)."""
    b = collate([pocket])
    n = int(b.res_mask[0].sum())
    edit = b.designed & b.res_mask
    try:
        start = interpolate_backbone(b.positions[:, :, :4], edit, b.res_mask)
        chain_start = interpolate_backbone(b.positions[:, :, :4], edit, b.res_mask, order=b.chain_order)
    except TertiaryError:
        return None
    ca = b.positions[0, :n, 1]
    designed = edit[0, :n]
    ctx = torch.nonzero(~designed).flatten()
    across = extrapolated = 0
    for k in torch.nonzero(designed).flatten():
        pos = int(torch.searchsorted(ctx, k))
        if pos == 0 or pos == len(ctx):
            extrapolated += 1
            continue
        prev, nxt = int(ctx[pos - 1]), int(ctx[pos])
        across += float((ca[nxt] - ca[prev]).norm()) > CA_STEP * (nxt - prev) + 1.0
    steps = (ca[1:] - ca[:-1]).norm(dim=-1)
    return {"rmsd": float(backbone_rmsd(start, b.positions[:, :, :4], edit)[0]),
            "chain_rmsd": float(backbone_rmsd(chain_start, b.positions[:, :, :4], edit)[0]), "designed": int(designed.sum()),
            "across_break": across, "extrapolated": extrapolated,
            "break_fraction": float((steps > 4.2).float().mean()) if n > 1 else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", required=True, help="pocket set folder with index.tsv")
    ap.add_argument("--kinds", nargs="+", help="only rows of these kinds (ligand_complexes: crystal, modelled)")
    ap.add_argument("--pocket-radius", default="10", help="A, or 'none' to keep every residue of the file")
    ap.add_argument("--limit", type=int)
    args = ap.parse_args()
    radius = None if args.pocket_radius.lower() == "none" else float(args.pocket_radius)
    rows = read_pocket_index(args.set)
    if args.kinds:
        rows = [r for r in rows if r.get("kind", "crystal") in args.kinds]
    rows = rows[: args.limit] if args.limit else rows
    stats, failed = [], 0
    for row in rows:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = pocket_stats(load_pocket(row["pocket"], row["ligand"], pocket_radius=radius, name=row["id"]))
        except TertiaryError:
            s = None
        if s is None:
            failed += 1
        else:
            stats.append(s)
    rmsd = [s["rmsd"] for s in stats]
    designed = sum(s["designed"] for s in stats)
    print(f"{args.set}: {len(stats)} pockets ({failed} skipped)")
    chain = [s["chain_rmsd"] for s in stats]
    print(f"interpolated start, backbone RMSD of designed residues: file order mean {statistics.mean(rmsd):.2f} A, "
          f"median {statistics.median(rmsd):.2f} A; chain order mean {statistics.mean(chain):.2f} A, "
          f"median {statistics.median(chain):.2f} A")
    print(f"file order: designed residues interpolated across a chain break: {sum(s['across_break'] for s in stats) / designed:.1%}; "
          f"extrapolated: {sum(s['extrapolated'] for s in stats) / designed:.1%}")
    print(f"consecutive residue pairs with CA-CA > 4.2 A: {statistics.mean(s['break_fraction'] for s in stats):.1%} (mean over pockets)")


if __name__ == "__main__":
    main()
