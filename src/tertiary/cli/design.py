"""``tertiary design --pocket P.pdb --ligand L.sdf -o out/``: FAIR pocket design.

Writes, for ``-n`` designs sampled in one batch: ``design_<k>.pdb`` (full-atom pocket with the
refined ligand as HETATM), ``designs.fasta`` (designed positions, one record per design),
``designs.csv`` (recovery against the input, backbone RMSD, FAIR's RMSD formula) and
``design.json`` (settings and per-design metrics).

``--vina`` (``pip install tertiary[vina]``) adds AutoDock Vina scores in kcal/mol
(:mod:`tertiary.models.fair.vina`): ``vina_score`` of the design's refined ligand pose in its
designed full-atom pocket as given, ``vina_minimized`` after Vina's local optimisation, and, for
reference, ``vina_input`` / ``vina_input_minimized``: the input ligand pose in the input pocket
(same residues), as given / locally optimised.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from tertiary.errors import InputError, TertiaryError, WeightsError, one_line

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "resources" / "fair_default.safetensors"


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``design`` and ``evaluate design``."""
    p.add_argument("--checkpoint", help="FAIR weights: tertiary .safetensors or the official "
                   "pretrained.pt / its safetensors conversion (default: the packaged checkpoint)")
    p.add_argument("--residue-graph", choices=["predicted", "native"], default="predicted",
                   help="residue graph from the predicted backbone (leak-free, default; designed residues "
                   "start interpolated in chain order) or from the TRUE backbone of the designed residues with "
                   "file-order interpolation (the released code's behaviour, for comparison)")
    p.add_argument("--design-radius", type=float, default=5.0,
                   help="design residues with a heavy atom within this distance of the ligand (A; FAIR 5, "
                   "its successor 3.5)")
    p.add_argument("--pocket-radius", type=float, default=10.0,
                   help="keep residues with a heavy atom within this distance of the ligand (A)")
    p.add_argument("--seed", type=int, default=0, help="random seed (side-chain noise, re-masking)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--vina", action="store_true", help="also score the ligand in every designed pocket (and in "
                   "the input pocket) with AutoDock Vina (kcal/mol; pip install 'tertiary[vina]')")


def vina_reference(pocket: object, ligand: object) -> object:
    """Vina score (with local optimisation) of the input pose in the input pocket (same residues
    as the designs); raises :class:`TertiaryError` when Vina is missing or the input cannot be scored."""
    from tertiary.data.pocket import pocket_to_protein
    from tertiary.models.fair.vina import score_complex

    return score_complex(pocket_to_protein(pocket), ligand, pocket.ligand_positions, minimize=True,
                         name=f"{pocket.name} (input)")


#: The Vina columns of a design row (kcal/mol; empty where not scored).
VINA_COLUMNS = ("vina_score", "vina_minimized", "vina_input", "vina_input_minimized")


def vina_design_scores(pocket: object, result: object, ligand: object, rows: list[dict[str, object]],
                       reference: object | None) -> list[str]:
    """Add the :data:`VINA_COLUMNS` to each row; returns one message per design that could not be
    scored (its design columns stay empty)."""
    from tertiary.data.pocket import pocket_to_protein
    from tertiary.models.fair.vina import score_complex

    errors = []
    n_lig = len(pocket.ligand_elements)
    for k, row in enumerate(rows):
        row.update(dict.fromkeys(VINA_COLUMNS, ""))
        if reference is not None:
            row.update(vina_input=round(reference.score, 3), vina_input_minimized=round(reference.minimized, 3))
        try:
            designed = pocket_to_protein(pocket, result.aatype[k].numpy(), result.positions[k].numpy(),
                                      result.atom_names[k].numpy(), name=str(row["design"]))
            s = score_complex(designed, ligand, result.ligand_positions[k, :n_lig].numpy(), minimize=True)
        except TertiaryError as exc:
            errors.append(one_line(exc))
            continue
        row.update(vina_score=round(s.score, 3), vina_minimized=round(s.minimized, 3))
    return errors


def load_model(checkpoint: str | None) -> object:
    """Load FAIR weights (``--checkpoint`` or the packaged default), in eval mode."""
    from tertiary.models.fair.weights import load

    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    if not path.is_file():
        if checkpoint:
            raise WeightsError(f"{path}: checkpoint file not found")
        raise WeightsError(
            "no default FAIR checkpoint is packaged in this build; pass --checkpoint (tertiary "
            ".safetensors or the official pretrained.pt)"
        )
    return load(path).eval()


def design_to_protein(pocket: object, result: object, index: int, name: str) -> object:
    """One design of a :class:`DesignResult` as a :class:`Protein` with the ligand as HETATM."""
    from tertiary.data.pocket import pocket_to_protein
    from tertiary.protein import HetGroup

    n = pocket.num_residues
    lig_pos = result.ligand_positions[index, : len(pocket.ligand_elements)].numpy()
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    symbols = [table.GetElementSymbol(int(z)).upper() for z in pocket.ligand_elements]
    counts: dict[str, int] = {}
    atom_names = []
    for s in symbols:
        counts[s] = counts.get(s, 0) + 1
        atom_names.append(f"{s}{counts[s]}"[:4])
    chain = str(pocket.chain_id[0]) if n else "A"
    ligand = HetGroup("LIG", chain, int(pocket.residue_number.max()) + 1 if n else 1, "", tuple(atom_names),
                      tuple(symbols), lig_pos.astype(np.float32), np.zeros(len(symbols), np.float32))
    return pocket_to_protein(pocket, result.aatype[index].numpy(), result.positions[index].numpy(),
                             result.atom_names[index].numpy(), name=name, ligands=(ligand,))


def design_rows(pocket: object, result: object, prefix: str) -> list[dict[str, object]]:
    """Per-design metrics rows (CSV / JSON)."""
    from tertiary import constants as rc

    rows = []
    edit = pocket.designed
    labels = [lab for lab, e in zip(pocket.residue_labels(), edit) if e]
    native = "".join(rc.RESTYPES[a - 1] for a in pocket.aatype[edit])
    for k in range(result.aatype.shape[0]):
        seq = "".join(rc.RESTYPES[a - 1] for a in result.aatype[k, : pocket.num_residues].numpy()[edit])
        rows.append({
            "design": f"{prefix}_{k}", "pocket": pocket.name, "n_designed": int(edit.sum()),
            "aar": round(float(result.aar[k]), 4), "backbone_rmsd": round(float(result.backbone_rmsd[k]), 4),
            "fair_rmsd_formula": round(float(result.fair_rmsd[k]), 4), "designed_seq": seq, "native_seq": native,
            "designed_residues": ",".join(labels),
        })
    return rows


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tertiary.data.pocket import collate, load_pocket
    from tertiary.models.fair.generate import generate

    console = Console(stderr=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.num_designs < 1:
        raise InputError(f"-n must be at least 1, got {args.num_designs}")
    pocket = load_pocket(args.pocket, args.ligand, pocket_radius=args.pocket_radius, design_radius=args.design_radius)
    reference = ligand = None
    if args.vina:  # fail before designing when Vina is missing or the input cannot be scored
        from tertiary.ligand import read_ligand

        ligand = read_ligand(args.ligand)
        reference = vina_reference(pocket, ligand)
    model = load_model(args.checkpoint)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    batch = collate([pocket] * args.num_designs)
    console.print(f"[bold]{pocket.name}[/]: {pocket.num_residues} residues, {int(pocket.designed.sum())} designed, "
                  f"{len(pocket.ligand_elements)} ligand atoms; {args.num_designs} design(s), "
                  f"residue graph {args.residue_graph}")
    t0 = time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)
    with console.status("designing..."):
        result = generate(model, batch, generator, residue_graph=args.residue_graph)
    elapsed = time.perf_counter() - t0
    rows = design_rows(pocket, result, pocket.name)
    vina_errors = vina_design_scores(pocket, result, ligand, rows, reference) if args.vina else []
    for msg in vina_errors:
        console.print(f"[red]Vina failed:[/] {msg}")
    fasta = []
    for k, row in enumerate(rows):
        design_to_protein(pocket, result, k, row["design"]).to_pdb(out / f"design_{k}.pdb")
        fasta.append(f">{row['design']} aar={row['aar']} residues={row['designed_residues']}\n{row['designed_seq']}\n")
    (out / "designs.fasta").write_text("".join(fasta))
    with open(out / "designs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {
        "pocket": str(args.pocket), "ligand": str(args.ligand), "checkpoint": args.checkpoint or str(DEFAULT_CHECKPOINT),
        "residue_graph": args.residue_graph, "design_radius": args.design_radius, "seed": args.seed,
        "num_designs": args.num_designs, "seconds": round(elapsed, 3), "designs": rows,
    }
    if args.vina:
        summary["vina_input"] = reference.as_dict()
        summary["vina_failures"] = vina_errors
    (out / "design.json").write_text(json.dumps(summary, indent=1))
    for row in rows:
        vina = f"\tVina {row['vina_score']} (minimized {row['vina_minimized']}) kcal/mol" if args.vina else ""
        print(f"{row['design']}\t{row['designed_seq']}\tAAR {row['aar']:.3f}\tbackbone RMSD {row['backbone_rmsd']:.2f} A"
              f"{vina}")
    if args.vina:
        console.print(f"input pocket and pose: Vina {reference.score:.3f} (minimized {reference.minimized:.3f}) kcal/mol")
    console.print(f"native  {rows[0]['native_seq']}; wrote {len(rows)} design(s) to {out} in {elapsed:.1f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("design", help="design a ligand pocket with FAIR (sequence + full-atom structure)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pocket", required=True, help="protein or pocket structure (PDB / mmCIF, gzip allowed)")
    p.add_argument("--ligand", required=True, help="ligand pose (SDF / MOL / MOL2) in the protein's frame")
    p.add_argument("-n", "--num-designs", type=int, default=10, help="designs to sample (one batch)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    add_model_arguments(p)
    p.set_defaults(handler=_run)
