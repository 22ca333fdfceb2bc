"""CPU time of tertiary's FAIR against the official FAIR code: one training step and one ``generate``.

Both run in this process, on the same pockets of ``crossdocked_test100``, with the released
checkpoint (tertiary reads its safetensors conversion, the official code ``pretrained.pt`` or
the same safetensors) and one CPU thread:

* training step: ``Pocket_Design.forward`` (official) / :func:`tertiary.models.fair.loss.training_loss`
  (tertiary, ``native`` residue graph), backward, gradient clipping (200) and one Adam step,
  train mode, batch of 4 pockets; ``--warmup`` untimed steps, then the median of ``--steps``;
* ``generate`` per pocket (batch 1; both samplers first run once, untimed, on the first pocket): ``torch.manual_seed(seed)`` right before the official
  ``generate`` and ``torch.Generator().manual_seed(seed)`` for tertiary's, in ``native`` mode.
  The two samplers draw the same random numbers in the same order, so the designs are compared
  directly: designed sequence, AAR, FAIR's RMSD formula and the largest backbone coordinate
  difference of the designed residues. ``--control`` reruns the official ``generate`` with the
  same kNN graphs listed in another edge order (only float summation order changes), which
  shows how far float rounding alone moves the official sampler's own designs.

Prints CPU (process) seconds, the ratios official / tertiary and the comparison; ``--json``
writes everything.

The official code is a benchmark-only dependency: a checkout of GitHub ``zaixizhang/FAIR``
(``--official DIR``) plus ``torch_geometric`` and ``easydict`` on ``PYTHONPATH``.
``torch_scatter`` and ``torch_cluster`` have no wheels for recent torch; this script installs
small pure-torch stand-ins for the functions the official code calls (``scatter_sum/add/mean/
softmax``, ``knn_graph``), and aliases ``np.int`` (removed in numpy 1.24). Example::

    pip install --no-deps --target /tmp/fairdeps torch_geometric easydict xxhash
    PYTHONPATH=/tmp/fairdeps OMP_NUM_THREADS=1 python benchmarks/fair.py --official /tmp/fair_official \\
        --set ../shared/data/crossdocked_test100 --ids 0 1 2 3 --control --json /tmp/fair_bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import gzip
import io
import json
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

REFS = Path("../shared/refs/fair")
KNN_ORDER = {"reverse": False}  # control run: list each atom's neighbours farthest first


# --------------------------------------------------------------------------- stand-ins


def _scatter_sum(src: torch.Tensor, index: torch.Tensor, dim: int = -1, out: torch.Tensor | None = None,
                 dim_size: int | None = None) -> torch.Tensor:
    dim = dim % src.dim()
    size = list(src.shape)
    size[dim] = int(index.max()) + 1 if dim_size is None else dim_size
    if index.dim() < src.dim():  # broadcast the index along the trailing dims (torch_scatter semantics)
        shape = [1] * src.dim()
        shape[dim] = -1
        index = index.view(shape).expand_as(src)
    return src.new_zeros(size).scatter_add_(dim, index, src)


def _scatter_mean(src: torch.Tensor, index: torch.Tensor, dim: int = -1, out: torch.Tensor | None = None,
                  dim_size: int | None = None) -> torch.Tensor:
    total = _scatter_sum(src, index, dim, dim_size=dim_size)
    count = _scatter_sum(torch.ones_like(src), index, dim, dim_size=dim_size).clamp(min=1)
    return total / count


def _scatter_max(src: torch.Tensor, index: torch.Tensor, dim: int = -1, dim_size: int | None = None) -> torch.Tensor:
    dim = dim % src.dim()
    size = list(src.shape)
    size[dim] = int(index.max()) + 1 if dim_size is None else dim_size
    if index.dim() < src.dim():
        shape = [1] * src.dim()
        shape[dim] = -1
        index = index.view(shape).expand_as(src)
    return src.new_full(size, float("-inf")).scatter_reduce_(dim, index, src, "amax", include_self=True)


def _scatter_softmax(src: torch.Tensor, index: torch.Tensor, dim: int = -1, dim_size: int | None = None) -> torch.Tensor:
    dim = dim % src.dim()
    seg_max = _scatter_max(src, index, dim, dim_size)
    idx = index if index.dim() == src.dim() else index.view([-1 if d == dim else 1 for d in range(src.dim())]).expand_as(src)
    ex = (src - seg_max.gather(dim, idx)).exp()
    return ex / _scatter_sum(ex, index, dim, dim_size=dim_size).gather(dim, idx)


def _knn_graph(x: torch.Tensor, k: int, batch: torch.Tensor | None = None, loop: bool = False,
               flow: str = "source_to_target", **_: object) -> torch.Tensor:
    """kNN per graph (exact float32 squared distances), ``[2, E]``; row 0 = centre for
    ``flow='target_to_source'``, neighbours in order of increasing distance."""
    if batch is None:
        batch = torch.zeros(len(x), dtype=torch.long, device=x.device)
    centres, neighbours = [], []
    for g in torch.unique(batch):
        idx = torch.nonzero(batch == g).flatten()
        p = x[idx]
        d = (p[:, None, :] - p[None, :, :]).square().sum(-1)
        if not loop:
            d.fill_diagonal_(float("inf"))
        kk = min(k, len(idx) - (0 if loop else 1))
        nb = d.topk(kk, dim=1, largest=False).indices
        if KNN_ORDER["reverse"]:  # same graph, other edge order: only float summation order changes
            nb = nb.flip(1)
        centres.append(idx[:, None].expand(-1, kk).reshape(-1))
        neighbours.append(idx[nb.reshape(-1)])
    row, col = torch.cat(centres), torch.cat(neighbours)
    return torch.stack([row, col] if flow == "target_to_source" else [col, row])


def import_official(folder: Path) -> dict[str, object]:
    """Put the official repository on ``sys.path`` behind the stand-ins; returns its modules."""
    np.int = int  # type: ignore[attr-defined]  # removed in numpy 1.24, used by utils/protein_ligand.py
    scatter = types.ModuleType("torch_scatter")
    scatter.scatter_sum = scatter.scatter_add = _scatter_sum  # type: ignore[attr-defined]
    scatter.scatter_mean = _scatter_mean  # type: ignore[attr-defined]
    scatter.scatter_max = _scatter_max  # type: ignore[attr-defined]
    scatter.scatter_softmax = _scatter_softmax  # type: ignore[attr-defined]
    sys.modules.setdefault("torch_scatter", scatter)
    try:
        import torch_geometric.nn
        import torch_geometric.nn.pool
        import torch_geometric.utils
    except ImportError:
        sys.exit("the official code needs torch_geometric and easydict on PYTHONPATH (see this file's docstring)")
    torch_geometric.nn.knn_graph = _knn_graph
    torch_geometric.nn.pool.knn_graph = _knn_graph
    sys.modules.setdefault("torch_geometric.utils.subgraph", torch_geometric.utils)
    sys.path.insert(0, str(folder.resolve()))
    with contextlib.redirect_stdout(io.StringIO()):
        import models.PD as pd  # official
        import utils.data as udata
        import utils.datasets.pl as pl
        import utils.misc as misc
        import utils.protein_ligand as pli
        import utils.transforms as tr
    return {"PD": pd, "data": udata, "pl": pl, "misc": misc, "pli": pli, "tr": tr}


def official_model(off: dict[str, object], folder: Path, checkpoint: Path) -> torch.nn.Module:
    config = off["misc"].load_config(str(folder / "configs" / "test_model.yml"))
    model = off["PD"].Pocket_Design(config.model, protein_atom_feature_dim=59, ligand_atom_feature_dim=15, device="cpu")
    if checkpoint.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(checkpoint))
    else:
        state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)["model"]
    model.load_state_dict(state)
    return model


def official_sample(off: dict[str, object], pocket_path: Path, ligand_path: Path) -> dict[str, torch.Tensor]:
    """One featurised sample as the official ``PocketLigandPairDataset`` + transforms build it."""
    text = gzip.open(pocket_path, "rt").read() if pocket_path.suffix == ".gz" else pocket_path.read_text()
    pdb = off["pli"].PDBProtein(text, mode="block")
    pocket_dict, residue_dict = pdb.to_dict_atom(), pdb.to_dict_residue()
    ligand_dict = off["pli"].parse_sdf_file(str(ligand_path))
    residue_dict["protein_edit_residue"] = pdb.query_residues_ligand(ligand_dict)
    td = off["data"].torchify_dict
    data = off["pl"].from_protein_ligand_dicts(td(pocket_dict), td(ligand_dict), td(residue_dict))
    data = off["tr"].FeaturizeProteinAtom()(data)
    return off["tr"].FeaturizeLigandAtom()(data)


# --------------------------------------------------------------------------- set


def read_set(folder: Path, ids: list[str]) -> list[dict[str, str]]:
    with open(folder / "index.tsv") as f:
        rows = {r["index"]: r for r in csv.DictReader(f, delimiter="\t")}
    out = []
    for i in ids:
        r = dict(rows[i])
        r["pocket_path"] = str(folder / "files" / (r["pocket_file"] + ".gz"))
        r["ligand_path"] = str(folder / "files" / r["ligand_file"])
        out.append(r)
    return out


def cpu_time(fn):  # type: ignore[no-untyped-def]
    t0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - t0, time.perf_counter() - w0


# --------------------------------------------------------------------------- benchmarks


def _official_backbone(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[R, 4, 3]``: the first 4 atoms (N, CA, C, O) of every residue of an official batch."""
    starts = torch.cumsum(batch["residue_natoms"], 0) - batch["residue_natoms"]
    return torch.stack([batch["protein_pos"][s : s + 4] for s in starts.tolist()])


def trace_generate(off, off_model, model, row, seed):  # type: ignore[no-untyped-def]
    """Untimed: record the designed residues' atoms and the ligand fed to every encoder call of both
    samplers (same pocket, same seed) and compare call by call: largest coordinate difference and
    whether the designed residues carry the same types."""
    from tertiary.data.pocket import collate, load_pocket
    from tertiary.models.fair.generate import generate

    data = official_sample(off, Path(row["pocket_path"]), Path(row["ligand_path"]))
    torch.manual_seed(0)
    batch = off["data"].collate_mols([data])
    edit = batch["protein_edit_residue"].clone()
    designed = torch.nonzero(edit).flatten().tolist()
    rec_o, rec_t = [], []
    forward = off_model.encoder.forward

    def official_hook(node_attr, pos, batch_ctx, batch, pred_res_type, mask_protein, external_index,  # type: ignore[no-untyped-def]
                      backbone=True, mask=True):
        a2r = batch["atom2residue_backbone"] if backbone else batch["atom2residue"]
        prot = pos[mask_protein]
        types = batch["amino_acid"].clone()
        if mask:
            types[batch["random_mask_residue"]] = 0
        rec_o.append(({r: prot[a2r == r].clone() for r in designed}, pos[~mask_protein].clone(), types[edit]))
        return forward(node_attr, pos, batch_ctx, batch, pred_res_type, mask_protein, external_index, backbone, mask)

    off_model.encoder.forward = official_hook
    try:
        torch.manual_seed(seed)
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            off_model.generate(batch)
    finally:
        off_model.encoder.forward = forward
    pocket = load_pocket(row["pocket_path"], row["ligand_path"], pocket_radius=None, name=row["short_id"])
    encode = model.encode

    def tertiary_hook(inp, backbone, generator=None, chunk_size=None, **kwargs):  # type: ignore[no-untyped-def]
        types = inp.feature_types[0].argmax(-1)
        rec_t.append(({r: inp.positions[0, r][inp.atom_mask[0, r]].clone() for r in designed},
                      inp.ligand_positions[0].clone(), types[edit]))
        return encode(inp, backbone, generator, chunk_size, **kwargs)

    model.encode = tertiary_hook
    try:
        generate(model, collate([pocket]), torch.Generator().manual_seed(seed), residue_graph="native")
    finally:
        del model.encode
    calls = []
    for i, (o, t) in enumerate(zip(rec_o, rec_t)):
        same_atoms = all(o[0][r].shape == t[0][r].shape for r in designed)
        diff = max(float((o[0][r] - t[0][r]).abs().max()) for r in designed) if same_atoms else None
        backbone_stage = i < 5  # types of designed residues are soft logits there; not compared
        calls.append({"call": i, "max_abs_diff_designed_atoms": diff,
                      "max_abs_diff_ligand": float((o[1] - t[1]).abs().max()),
                      "same_types": None if backbone_stage else bool(torch.equal(o[2], t[2]))})
    first_type_diff = next((c["call"] for c in calls if c["same_types"] is False), None)
    print(f"trace {row['index']} {row['short_id']}: {len(rec_o)} / {len(rec_t)} encoder calls; max |d| designed atoms "
          + ", ".join(f"#{c['call']} {c['max_abs_diff_designed_atoms']:.1e}" for c in calls
                      if c["call"] in (1, 5, 10, 20, 30, 40, 50) and c["max_abs_diff_designed_atoms"] is not None)
          + f"; first call whose input types differ: {first_type_diff}")
    return {"index": row["index"], "calls": calls, "first_call_with_different_types": first_type_diff}


def bench_generate(off, off_model, model, rows, seed, control=False):  # type: ignore[no-untyped-def]
    from tertiary.data.pocket import collate, load_pocket
    from tertiary.models.fair.generate import generate

    out = []
    # untimed warm-up of both samplers on the first pocket (first-call allocations, kernel setup)
    warm = rows[0]
    off_model.eval()
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        torch.manual_seed(seed)
        off_model.generate(off["data"].collate_mols([official_sample(off, Path(warm["pocket_path"]),
                                                                      Path(warm["ligand_path"]))]))
    generate(model, collate([load_pocket(warm["pocket_path"], warm["ligand_path"], pocket_radius=None)]),
             torch.Generator().manual_seed(seed), residue_graph="native")
    for row in rows:
        data = official_sample(off, Path(row["pocket_path"]), Path(row["ligand_path"]))
        torch.manual_seed(0)
        batch = off["data"].collate_mols([data])
        label_bb = batch["residue_pos"].clone()

        def run_official():  # type: ignore[no-untyped-def]
            torch.manual_seed(seed)
            with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
                return off_model.generate(batch)

        fresh = copy.deepcopy(batch)
        (aar_o, rmsd_o), t_off, w_off = cpu_time(run_official)
        pocket = load_pocket(row["pocket_path"], row["ligand_path"], pocket_radius=None, name=row["short_id"])
        tb = collate([pocket])
        res, t_ter, w_ter = cpu_time(lambda: generate(model, tb, torch.Generator().manual_seed(seed),
                                                      residue_graph="native"))
        edit = batch["protein_edit_residue"]
        rec = {"index": row["index"], "short_id": row["short_id"], "n_residues": int(len(edit)),
               "n_designed": int(edit.sum()), "official_cpu_s": t_off, "official_wall_s": w_off,
               "tertiary_cpu_s": t_ter, "tertiary_wall_s": w_ter, "encoder_calls": res.encoder_calls,
               "official_aar": float(aar_o), "tertiary_aar": float(res.aar[0]),
               "official_fair_rmsd": float(rmsd_o), "tertiary_fair_rmsd": float(res.fair_rmsd[0])}
        if pocket.num_residues == len(edit) and bool((torch.from_numpy(pocket.designed) == edit).all()):
            seq = "ARNDCQEGHILKMFPSTWYV"
            off_types = batch["amino_acid"][edit]
            ter_types = res.aatype[0, : pocket.num_residues][torch.from_numpy(pocket.designed)]
            rec["official_seq"] = "".join(seq[int(t) - 1] for t in off_types)
            rec["tertiary_seq"] = "".join(seq[int(t) - 1] for t in ter_types)
            rec["stage1_tertiary_seq"] = "".join(seq[int(t) - 1] for t in res.stage1_aatype[0][torch.from_numpy(pocket.designed)])
            rec["same_sequence"] = rec["official_seq"] == rec["tertiary_seq"]
            off_bb = _official_backbone(batch)
            rec["max_abs_diff_designed_backbone"] = float((off_bb[edit] - res.positions[0, : len(edit), :4][edit]).abs().max())
            rec["official_true_bb_rmsd"] = float(((off_bb[edit] - label_bb[edit]).square().sum(-1).mean()).sqrt())
            rec["tertiary_true_bb_rmsd"] = float(res.backbone_rmsd[0])
        else:
            rec["same_sequence"] = None
            rec["note"] = "residue lists differ (tertiary dropped residues); designs not compared"
        if control:  # the official code against itself with another float summation order
            KNN_ORDER["reverse"] = True
            try:
                batch2 = fresh
                torch.manual_seed(seed)
                with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
                    aar_c, _ = off_model.generate(batch2)
            finally:
                KNN_ORDER["reverse"] = False
            rec["control_aar"] = float(aar_c)
            rec["control_same_sequence"] = bool(torch.equal(batch2["amino_acid"][edit], batch["amino_acid"][edit]))
            rec["control_max_abs_diff_designed_backbone"] = float(
                (_official_backbone(batch2)[edit] - _official_backbone(batch)[edit]).abs().max()
            ) if batch2["residue_natoms"].shape == batch["residue_natoms"].shape else None
            print(f"    control (official, reversed kNN edge order): AAR {rec['control_aar']:.3f} same seq as official "
                  f"{rec['control_same_sequence']} max|dbb| {rec['control_max_abs_diff_designed_backbone']:.2e}")
        out.append(rec)
        print(f"generate {row['index']:>3} {row['short_id']:<18} official {t_off:6.2f} s  tertiary {t_ter:6.3f} s  "
              f"ratio {t_off / t_ter:6.1f}x  AAR {rec['official_aar']:.3f}/{rec['tertiary_aar']:.3f}  "
              f"same seq {rec['same_sequence']}  max|dbb| {rec.get('max_abs_diff_designed_backbone', float('nan')):.2e}",
              flush=True)
    return out


def bench_train(off, off_model, model, rows, seed, warmup, steps):  # type: ignore[no-untyped-def]
    from tertiary.data.pocket import collate, load_pocket
    from tertiary.models.fair.loss import training_loss

    datas = [official_sample(off, Path(r["pocket_path"]), Path(r["ligand_path"])) for r in rows]
    pockets = [load_pocket(r["pocket_path"], r["ligand_path"], pocket_radius=None, name=r["short_id"]) for r in rows]
    tb = collate(pockets)
    torch.manual_seed(seed)
    ob = off["data"].collate_mols(datas)
    opt_o = torch.optim.Adam(off_model.parameters(), lr=1e-4, betas=(0.99, 0.999))
    opt_t = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.99, 0.999))
    off_model.train()
    model.train()
    gen = torch.Generator().manual_seed(seed)

    def step_official():  # type: ignore[no-untyped-def]
        batch = copy.deepcopy(ob)
        opt_o.zero_grad()
        loss, _ = off_model(batch)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(off_model.parameters(), 200.0)
        opt_o.step()
        return float(loss), float(norm)

    def step_tertiary():  # type: ignore[no-untyped-def]
        opt_t.zero_grad()
        loss, _ = training_loss(model, tb, gen)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 200.0)
        opt_t.step()
        return float(loss), float(norm)

    res: dict[str, object] = {"ids": [r["index"] for r in rows]}
    for name, fn in (("official", step_official), ("tertiary", step_tertiary)):
        times, walls, losses = [], [], []
        for i in range(warmup + steps):
            (loss, norm), t, w = cpu_time(fn)
            if i >= warmup:
                times.append(t)
                walls.append(w)
                losses.append(loss)
            print(f"train step {name:<8} {i}: {t:6.2f} s CPU ({w:.2f} s wall) loss {loss:.2f} grad norm {norm:.1f}"
                  + ("" if i >= warmup else " (warm-up)"), flush=True)
        res[name] = {"cpu_s": times, "wall_s": walls, "median_cpu_s": statistics.median(times), "loss": losses}
    res["ratio"] = res["official"]["median_cpu_s"] / res["tertiary"]["median_cpu_s"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", required=True, help="checkout of github.com/zaixizhang/FAIR")
    ap.add_argument("--checkpoint", default=str(REFS / "checkpoint" / "fair_official.safetensors"),
                    help="released weights (safetensors conversion or pretrained.pt), loaded into both")
    ap.add_argument("--set", default="../shared/data/crossdocked_test100")
    ap.add_argument("--ids", nargs="+", default=["0", "1", "2", "3"], help="pockets for generate")
    ap.add_argument("--train-ids", nargs="+", default=["0", "1", "2", "3"], help="the training batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--trace", type=int, default=0, metavar="N",
                    help="also compare the inputs of every encoder call of both samplers on the first N pockets (untimed)")
    ap.add_argument("--control", action="store_true",
                    help="also rerun the official generate with the kNN edges in reverse order (same graph) to show "
                    "how far float summation order alone moves its designs")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(args.official)
    off = import_official(folder)

    from tertiary.models.fair.config import FairConfig
    from tertiary.models.fair.weights import load_official

    checkpoint = Path(args.checkpoint)
    off_model = official_model(off, folder, checkpoint)
    model = load_official(checkpoint, FairConfig.preset("fair_native"))
    report: dict[str, object] = {"threads": args.threads, "seed": args.seed, "torch": torch.__version__}
    report["generate"] = gen = bench_generate(off, off_model, model, read_set(Path(args.set), args.ids), args.seed,
                                               args.control)
    t_off = statistics.fmean(g["official_cpu_s"] for g in gen)
    t_ter = statistics.fmean(g["tertiary_cpu_s"] for g in gen)
    same = [g["same_sequence"] for g in gen if g["same_sequence"] is not None]
    print(f"generate: official {t_off:.2f} s, tertiary {t_ter:.3f} s CPU per pocket (mean of {len(gen)}): "
          f"{t_off / t_ter:.1f}x; identical designed sequences {sum(same)}/{len(same)}")
    report["generate_summary"] = {"official_mean_cpu_s": t_off, "tertiary_mean_cpu_s": t_ter, "ratio": t_off / t_ter,
                                  "identical_sequences": sum(same), "compared": len(same)}
    if args.trace:
        report["trace"] = [trace_generate(off, off_model, model, r, args.seed)
                           for r in read_set(Path(args.set), args.ids[: args.trace])]
    if not args.skip_train:
        # fresh models: the generate runs above left both in eval mode with the released weights
        off_model = official_model(off, folder, checkpoint)
        model = load_official(checkpoint, FairConfig.preset("fair_native"))
        tr = bench_train(off, off_model, model, read_set(Path(args.set), args.train_ids), args.seed,
                         args.warmup, args.steps)
        report["train_step"] = tr
        print(f"train step (batch {len(args.train_ids)}): official {tr['official']['median_cpu_s']:.2f} s, "
              f"tertiary {tr['tertiary']['median_cpu_s']:.3f} s CPU (median): {tr['ratio']:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
