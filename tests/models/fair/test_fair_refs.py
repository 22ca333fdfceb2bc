"""FAIR against the official implementation's outputs (``$TERTIARY_REFS/fair``).

- the released checkpoint loads (every tensor mapped by name);
- one deterministic encoder call per pocket and stage (backbone call #0, full-atom call #5 of the
  official ``generate``) matches: atom kNN graph and residue graph as sets, atom / residue
  embeddings, logits and updated coordinates within float32 tolerance;
- pocket featurisation from the PDB + SDF files matches the official batch fields.

The pockets and tolerances come from ``meta.json``; a missing file fails (never skips).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import open_refs, require

from tertiary.models.fair.config import FairConfig
from tertiary.models.fair.model import EncoderInput, FairModel
from tertiary.models.fair.weights import load_official

ATOL_H = 2e-4  # float32, different summation order than torch_scatter
ATOL_X = 2e-4  # A


@pytest.fixture(scope="module")
def refs() -> Path:
    return open_refs("fair")


@pytest.fixture(scope="module")
def meta(refs: Path) -> dict:
    return json.loads(require(refs / "meta.json").read_text())


@pytest.fixture(scope="module")
def model(refs: Path, meta: dict) -> FairModel:
    ckpt = require(refs / "checkpoint" / "fair_official.safetensors")
    cfg = meta["config"]["model"]
    m = load_official(ckpt, FairConfig.from_official_yaml(cfg))
    assert m.config.hidden == cfg["hidden_channels"]
    assert m.config.protein_feature_dim == meta["feature_dims"]["protein_atom_feature"]
    assert m.config.ligand_feature_dim == meta["feature_dims"]["ligand_atom_feature"]
    return m.eval()


def _pocket_ids(meta: dict) -> list[str]:
    ids = [k.split("/")[1] for k in meta["files"] if k.startswith("pockets/") and k.endswith("encoder_call.npz")]
    assert ids, "meta.json lists no encoder_call.npz"
    return sorted(ids, key=int)


def _slots(atom2residue: np.ndarray) -> np.ndarray:
    """Rank of each atom within its residue (atoms are contiguous per residue)."""
    slot = np.zeros(len(atom2residue), dtype=np.int64)
    for i in range(1, len(atom2residue)):
        slot[i] = slot[i - 1] + 1 if atom2residue[i] == atom2residue[i - 1] else 0
    return slot


def _neighbour_sets(edge_index: np.ndarray, n: int) -> np.ndarray:
    """[2, E] (centre, neighbour) edges with the same count per centre -> sorted [n, k] neighbours."""
    order = np.lexsort((edge_index[1], edge_index[0]))
    centres, nbrs = edge_index[0][order], edge_index[1][order]
    assert np.array_equal(np.unique(centres), np.arange(n))
    return nbrs.reshape(n, -1)


def official_call_to_input(z: dict, tag: str) -> tuple[EncoderInput, np.ndarray, np.ndarray, bool]:
    """Rebuild the inputs of one recorded official encoder call in tertiary's padded layout."""
    b = lambda k: z[f"{tag}/batch/{k}"]  # noqa: E731
    i = lambda k: z[f"{tag}/in/{k}"]  # noqa: E731
    backbone = bool(i("backbone"))
    mask_protein = i("mask_protein")
    pos = i("pos")
    a2r = b("atom2residue_backbone") if backbone else b("atom2residue")
    feat = b("protein_atom_feature_backbone").copy() if backbone else b("protein_atom_feature").copy()
    edit = b("protein_edit_residue")
    n_res = len(b("amino_acid"))
    slot = _slots(a2r)
    if backbone:
        edit_atoms = b("protein_edit_atom_backbone")
        feat[edit_atoms, -20:] = np.repeat(i("pred_res_type"), 4, axis=0)
    positions = np.zeros((n_res, 14, 3), np.float32)
    names = np.zeros((n_res, 14), np.int64)
    positions[a2r, slot] = pos[mask_protein]
    names[a2r, slot] = feat[:, :38].argmax(1)
    ftypes = np.zeros((n_res, 21), np.float32)
    ftypes[a2r] = feat[:, 38:]
    rtypes = np.eye(21, dtype=np.float32)[b("amino_acid")]
    if backbone:
        rtypes[edit, 1:] = i("pred_res_type")
        rtypes[:, 0] = 0
    elif bool(i("mask")):
        rtypes[b("random_mask_residue")] = np.eye(21, dtype=np.float32)[0]
    lig = pos[~mask_protein]
    t = lambda x: torch.from_numpy(np.asarray(x))[None]  # noqa: E731
    inp = EncoderInput(
        positions=t(positions), atom_names=t(names), atom_mask=t(names > 0), feature_types=t(ftypes),
        residue_types=t(rtypes), res_mask=torch.ones(1, n_res, dtype=torch.bool), res_idx=t(b("res_idx")),
        edit=t(edit), ligand_positions=t(lig), ligand_features=t(b("ligand_atom_feature")),
        lig_mask=torch.ones(1, len(lig), dtype=torch.bool), graph_ca=t(b("residue_pos")[:, 1]),
        ligand_anchor=t(b("ligand_pos").sum(0)),
    )
    return inp, a2r, slot, backbone


def test_checkpoint_loads_every_tensor(refs: Path, model: FairModel) -> None:
    keys = [ln.split("\t")[0] for ln in require(refs / "checkpoint" / "keys.tsv").read_text().splitlines()[1:] if ln]
    n_official = sum(int(ln.split("\t")[3]) for ln in (refs / "checkpoint" / "keys.tsv").read_text().splitlines()[1:] if ln)
    unused = [k for k in keys if "centroid_lin" in k or ".attention.layernorm." in k or k.endswith("offset")]
    n_unused = sum(int(ln.split("\t")[3]) for ln in (refs / "checkpoint" / "keys.tsv").read_text().splitlines()[1:]
                   if ln and ln.split("\t")[0] in unused)
    assert sum(p.numel() for p in model.parameters()) == n_official - n_unused


@pytest.mark.parametrize("tag", ["bb", "fa"])
def test_encoder_call_matches_official(refs: Path, meta: dict, model: FairModel, tag: str) -> None:
    ids = _pocket_ids(meta)
    for pid in ids:
        z = dict(np.load(require(refs / "pockets" / pid / "encoder_call.npz")))
        inp, a2r, slot, backbone = official_call_to_input(z, tag)
        with torch.no_grad():
            node_attr = model.embed_protein_atoms(inp.atom_names, inp.feature_types)[0][a2r, slot]
            out, logits = model.encode(inp, backbone=backbone)
        mask_protein = z[f"{tag}/in/mask_protein"]
        np.testing.assert_allclose(node_attr.numpy(), z[f"{tag}/in/node_attr"][mask_protein], atol=1e-5)
        # graphs as sets (ties resolve to the lower index on both sides)
        n_ctx = len(mask_protein)
        assert _neighbour_sets(z[f"{tag}/inter/atom_knn_edge_index"], n_ctx).tolist() == np.sort(
            out.atom_edges[0].numpy(), axis=1
        ).tolist(), f"pocket {pid} {tag}: atom kNN graph differs"
        n_res = inp.edit.shape[1]
        assert _neighbour_sets(z[f"{tag}/inter/residue_edge_index"], n_res).tolist() == np.sort(
            out.residue_edges[0].numpy(), axis=1
        ).tolist(), f"pocket {pid} {tag}: residue kNN graph differs"
        # features and coordinates
        h = z[f"{tag}/out/h"]
        np.testing.assert_allclose(out.h_atom[0][a2r, slot].numpy(), h[mask_protein], atol=ATOL_H, rtol=1e-4,
                                   err_msg=f"pocket {pid} {tag}: atom features")
        np.testing.assert_allclose(out.h_ligand[0].numpy(), h[~mask_protein], atol=ATOL_H, rtol=1e-4)
        np.testing.assert_allclose(out.h_res[0].numpy(), z[f"{tag}/out/h_res"], atol=ATOL_H, rtol=1e-4,
                                   err_msg=f"pocket {pid} {tag}: residue features")
        np.testing.assert_allclose(logits[0].numpy(), z[f"{tag}/out/residue_logits"], atol=ATOL_H, rtol=1e-4)
        np.testing.assert_allclose(out.positions[0][a2r, slot].numpy(), z[f"{tag}/out/protein_pos"], atol=ATOL_X,
                                   err_msg=f"pocket {pid} {tag}: protein coordinates")
        np.testing.assert_allclose(out.ligand_positions[0].numpy(), z[f"{tag}/out/ligand_pos"], atol=ATOL_X)


def _index_rows(shared: Path) -> list[dict[str, str]]:
    import csv

    with open(shared / "index.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_featurisation_matches_official(refs: Path, meta: dict) -> None:
    from conftest import shared_root

    from tertiary.data.pocket import FAIR_ATOM_NAMES, load_pocket, protein_atom_features

    data = shared_root() / "data" / "crossdocked_test100"
    rows = _index_rows(require(data))
    for pid in _pocket_ids(meta):
        z = np.load(require(refs / "pockets" / pid / "batch.npz"))
        row = rows[int(pid)]
        files = data / "files"
        pocket = load_pocket(files / (row["pocket_file"] + ".gz"), files / row["ligand_file"])
        assert pocket.num_residues == len(z["data__amino_acid"]), f"pocket {pid}: residue count"
        np.testing.assert_array_equal(pocket.aatype, z["data__amino_acid"])
        np.testing.assert_array_equal(pocket.designed, z["data__protein_edit_residue"])
        np.testing.assert_array_equal(pocket.residue_number, z["data__res_idx"])
        for k, atom in enumerate(("N", "CA", "C", "O")):
            np.testing.assert_array_equal(pocket.positions[:, k], z[f"data__pos_{atom}"])
        # atoms per residue as (name, coordinates) sets: the official keeps file order inside a
        # residue, tertiary the atom14 order
        a2r, names, pos = z["data__protein_atom2residue"], z["data__protein_atom_name"], z["data__protein_pos"]
        feats = z["data__protein_atom_feature"]
        ours_feat = protein_atom_features(pocket.atom_names, pocket.aatype)
        for r in range(pocket.num_residues):
            sel = a2r == r
            ref = sorted((FAIR_ATOM_NAMES[n], tuple(p)) for n, p in zip(names[sel], pos[sel]))
            m = pocket.atom_mask[r]
            ours = sorted((FAIR_ATOM_NAMES[n], tuple(p)) for n, p in zip(pocket.atom_names[r][m], pocket.positions[r][m]))
            assert ours == ref, f"pocket {pid} residue {r}: atoms differ"
            assert sorted(map(tuple, ours_feat[r][m])) == sorted(map(tuple, feats[sel]))
        np.testing.assert_array_equal(pocket.ligand_positions, z["data__ligand_pos"])
        np.testing.assert_array_equal(pocket.ligand_features, z["data__ligand_atom_feature"])
