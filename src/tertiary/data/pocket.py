"""Pocket featurisation for ligand-conditioned pocket design (FAIR).

From a protein (a pocket file or a whole structure) and a ligand:

- pocket residues: standard amino acids with any heavy atom within ``pocket_radius`` (10 A) of
  any ligand heavy atom;
- designed ("edited") residues: any heavy atom within ``design_radius`` of any ligand heavy atom
  (5 A in FAIR's code, 3.5 A in its successor), distances ``<=`` the radius;
- protein atoms in 14 slots per residue, AlphaFold2 atom14 order, present atoms packed to the
  front (a residue missing CG puts CD in slot 5), hydrogens and OXT dropped; atom features =
  one-hot of FAIR's 38 atom names + one-hot residue type (21: 0 = masked, 1..20 = ARNDCQEGHILKMFPSTWYV);
- ligand atom features: one-hot element over C, N, O, F, P, S, Cl (others all zero) + multi-hot
  RDKit ``BaseFeatures.fdef`` families (Acceptor, Donor, Aromatic, Hydrophobe, LumpedHydrophobe,
  NegIonizable, PosIonizable, ZnBinder), computed with the file's hydrogens present, then
  hydrogens dropped.

:class:`Pocket` holds one complex as numpy arrays; :func:`collate` pads several into a
:class:`PocketBatch` of tensors.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tertiary import constants as rc
from tertiary.errors import InputError, one_line
from tertiary.ligand import Ligand, read_ligand

logger = logging.getLogger(__name__)

#: FAIR's protein atom-name vocabulary (index 0 = empty slot).
FAIR_ATOM_NAMES: tuple[str, ...] = ("",) + tuple(
    "N CA C O CB CG CG1 CG2 OG OG1 SG CD CD1 CD2 ND1 ND2 OD1 OD2 SD CE CE1 CE2 CE3 NE NE1 NE2 OE1 OE2 "
    "CH2 NH1 NH2 OH CZ CZ2 CZ3 NZ OXT".split()
)
FAIR_ATOM_INDEX: dict[str, int] = {n: i for i, n in enumerate(FAIR_ATOM_NAMES)}
NUM_SLOTS = rc.ATOM14_NUM
BACKBONE = ("N", "CA", "C", "O")
LIGAND_ELEMENTS: tuple[int, ...] = (6, 7, 8, 9, 15, 16, 17)  # C N O F P S Cl
PHARMACOPHORE_FAMILIES: tuple[str, ...] = (
    "Acceptor", "Donor", "Aromatic", "Hydrophobe", "LumpedHydrophobe", "NegIonizable", "PosIonizable", "ZnBinder",
)
PROTEIN_FEATURE_DIM = len(FAIR_ATOM_NAMES) + 21
LIGAND_FEATURE_DIM = len(LIGAND_ELEMENTS) + len(PHARMACOPHORE_FAMILIES)


def slot_names(aatype: int) -> tuple[str, ...]:
    """The 14 slot names (atom14 order, ``''`` = empty) of a FAIR type 1..20."""
    return rc.RESTYPE_NAME_TO_ATOM14_NAMES[rc.RESTYPE_1TO3[rc.RESTYPES[aatype - 1]]]


#: ``[21, 14]`` FAIR atom-name index of every slot of a full residue of each type (row 0 empty).
RESIDUE_SLOT_NAMES: np.ndarray = np.array(
    [[0] * NUM_SLOTS] + [[FAIR_ATOM_INDEX[n] for n in slot_names(t)] for t in range(1, 21)], dtype=np.int64
)


@dataclass(frozen=True)
class Pocket:
    """One protein pocket with its ligand (numpy).

    Attributes:
        name: identifier used in messages and outputs.
        positions: ``[R, 14, 3]`` float32 heavy-atom coordinates (A), slots per :data:`RESIDUE_SLOT_NAMES`
            with present atoms packed to the front; zero in empty slots.
        atom_names: ``[R, 14]`` int64 index into :data:`FAIR_ATOM_NAMES` (0 = empty slot).
        aatype: ``[R]`` int64 residue type 1..20 (ARNDCQEGHILKMFPSTWYV).
        residue_number / chain_id / insertion_code: ``[R]`` author numbering (file order).
        designed: ``[R]`` bool, residues to design.
        ligand_positions: ``[L, 3]`` float32 heavy atoms (A); ``ligand_features`` ``[L, 15]``;
        ligand_elements: ``[L]`` atomic numbers.
    """

    name: str
    positions: np.ndarray
    atom_names: np.ndarray
    aatype: np.ndarray
    residue_number: np.ndarray
    chain_id: np.ndarray
    insertion_code: np.ndarray
    designed: np.ndarray
    ligand_positions: np.ndarray
    ligand_features: np.ndarray
    ligand_elements: np.ndarray

    @property
    def num_residues(self) -> int:
        return int(self.aatype.shape[0])

    @property
    def atom_mask(self) -> np.ndarray:
        """``[R, 14]`` present atoms."""
        return self.atom_names > 0

    @property
    def sequence(self) -> str:
        return "".join(rc.RESTYPES[a - 1] for a in self.aatype)

    def residue_labels(self) -> list[str]:
        """``chain:number[icode]`` per residue (the format of ``index.tsv``)."""
        return [f"{c}:{n}{i}" for c, n, i in zip(self.chain_id, self.residue_number, self.insertion_code)]


def pocket_to_protein(pocket: Pocket, aatype: np.ndarray | None = None, positions: np.ndarray | None = None,
                      atom_names: np.ndarray | None = None, name: str = "", ligands: tuple = ()) -> object:
    """A :class:`Pocket` (FAIR's 14-slot layout) as a :class:`tertiary.protein.Protein` (atom37).

    ``aatype`` ([R], 1..20), ``positions`` ([R, 14, 3]) and ``atom_names`` ([R, 14]) replace the
    pocket's own (e.g. a design); default: the input pocket. ``ligands`` are attached as they
    are (:class:`tertiary.protein.HetGroup`; the pocket's own ligand is not).
    """
    from tertiary.protein import Protein

    n = pocket.num_residues
    aatype = np.asarray(pocket.aatype if aatype is None else aatype)[:n]
    positions = np.asarray(pocket.positions if positions is None else positions)[:n]
    atom_names = np.asarray(pocket.atom_names if atom_names is None else atom_names)[:n]
    pos37 = np.zeros((n, rc.ATOM_TYPE_NUM, 3), np.float32)
    mask37 = np.zeros((n, rc.ATOM_TYPE_NUM), np.float32)
    for r in range(n):
        for s in np.flatnonzero(atom_names[r]):
            a = rc.ATOM_ORDER[FAIR_ATOM_NAMES[atom_names[r, s]]]
            pos37[r, a] = positions[r, s]
            mask37[r, a] = 1.0
    return Protein(atom_positions=pos37, atom_mask=mask37, aatype=aatype - 1, residue_index=pocket.residue_number,
                   chain_id=pocket.chain_id, insertion_code=pocket.insertion_code, ligands=tuple(ligands),
                   name=name or pocket.name)


def protein_atom_features(atom_names: np.ndarray, aatype: np.ndarray) -> np.ndarray:
    """``[*, 14]`` names + ``[*]`` types (0..20) -> ``[*, 14, 59]`` float32 one-hot features."""
    names = np.eye(len(FAIR_ATOM_NAMES), dtype=np.float32)[atom_names]
    types = np.broadcast_to(np.eye(21, dtype=np.float32)[aatype][..., None, :], names.shape[:-1] + (21,))
    return np.concatenate([names, types], -1)


def ligand_atom_features(ligand: Ligand) -> np.ndarray:
    """``[L_heavy, 15]`` float32: element one-hot + pharmacophore families, hydrogens dropped."""
    from rdkit import RDConfig
    from rdkit.Chem import ChemicalFeatures

    factory = _feature_factory(ChemicalFeatures, RDConfig)
    families = np.zeros((ligand.num_atoms, len(PHARMACOPHORE_FAMILIES)), np.float32)
    for feat in factory.GetFeaturesForMol(ligand.mol):
        families[list(feat.GetAtomIds()), PHARMACOPHORE_FAMILIES.index(feat.GetFamily())] = 1.0
    elements = (ligand.elements[:, None] == np.array(LIGAND_ELEMENTS)[None]).astype(np.float32)
    return np.concatenate([elements, families], 1)[ligand.heavy_mask]


_FACTORY = None


def _feature_factory(chemical_features: object, rdconfig: object) -> object:
    global _FACTORY
    if _FACTORY is None:
        _FACTORY = chemical_features.BuildFeatureFactory(os.path.join(rdconfig.RDDataDir, "BaseFeatures.fdef"))
    return _FACTORY


def _residue_slots(positions37: np.ndarray, mask37: np.ndarray, aatype: int) -> tuple[np.ndarray, np.ndarray]:
    """atom37 of one residue -> packed 14-slot coordinates and FAIR name indices."""
    pos = np.zeros((NUM_SLOTS, 3), np.float32)
    names = np.zeros(NUM_SLOTS, np.int64)
    k = 0
    for name in slot_names(aatype):
        if name and mask37[rc.ATOM_ORDER[name]] > 0:
            pos[k] = positions37[rc.ATOM_ORDER[name]]
            names[k] = FAIR_ATOM_INDEX[name]
            k += 1
    return pos, names


def build_pocket(
    protein: object,
    ligand: Ligand,
    *,
    pocket_radius: float | None = 10.0,
    design_radius: float = 5.0,
    name: str = "",
) -> Pocket:
    """Featurise a protein-ligand complex.

    Args:
        protein: a :class:`tertiary.protein.Protein` (pocket file or whole structure).
        ligand: the ligand (hydrogens are dropped here).
        pocket_radius: keep residues with a heavy atom within this distance (A) of the ligand;
            None keeps every residue (a pre-cut pocket file).
        design_radius: residues with a heavy atom within this distance (A) are designed.
        name: identifier for messages.

    Raises:
        InputError: no residue near the ligand, a designed residue without a complete backbone,
            an empty ligand.
    """
    name = name or getattr(protein, "name", "") or "pocket"
    lig_pos = ligand.positions[ligand.heavy_mask].astype(np.float32)
    if len(lig_pos) == 0:
        raise InputError(f"{name}: the ligand ({ligand.source}) has no heavy atom")
    lig_feat = ligand_atom_features(ligand)
    standard = protein.aatype < 20
    if not standard.any():
        raise InputError(f"{name}: the protein has no standard amino-acid residue")
    heavy = protein.atom_mask > 0
    heavy[:, rc.ATOM_ORDER["OXT"]] = False
    # min distance residue -> ligand over present heavy atoms: [N]
    d = np.linalg.norm(protein.atom_positions[:, :, None, :] - lig_pos[None, None], axis=-1).min(-1)
    min_d = np.where(heavy, d, np.inf).min(1)
    keep = standard & (min_d <= (np.inf if pocket_radius is None else pocket_radius))
    if not keep.any():
        raise InputError(
            f"{name}: no residue within {pocket_radius} A of the ligand (closest heavy atom "
            f"{min_d[standard].min():.1f} A away): is the ligand placed in this protein's frame?"
        )
    designed = keep & (min_d <= design_radius)
    if not designed.any():
        raise InputError(
            f"{name}: no residue within the design radius {design_radius} A of the ligand "
            f"(closest {min_d[keep].min():.1f} A)"
        )
    bb_idx = [rc.ATOM_ORDER[a] for a in BACKBONE]
    complete = (protein.atom_mask[:, bb_idx] > 0).all(1)
    labels = [f"{c}:{n}{i}" for c, n, i in zip(protein.chain_id, protein.residue_index, protein.insertion_code)]
    broken = np.flatnonzero(designed & ~complete)
    if len(broken):
        raise InputError(
            f"{name}: designed residue(s) {', '.join(labels[i] for i in broken[:5])} lack backbone atoms "
            f"(N, CA, C, O are all needed)"
        )
    dropped = np.flatnonzero(keep & ~complete)
    if len(dropped):
        logger.warning("%s: context residue(s) %s lack backbone atoms and are left out", name,
                       ", ".join(labels[i] for i in dropped[:5]))
    keep &= complete
    idx = np.flatnonzero(keep)
    aatype = protein.aatype[idx] + 1
    slots = [_residue_slots(protein.atom_positions[i], protein.atom_mask[i], int(t)) for i, t in zip(idx, aatype)]
    return Pocket(
        name=name,
        positions=np.stack([s[0] for s in slots]),
        atom_names=np.stack([s[1] for s in slots]),
        aatype=aatype.astype(np.int64),
        residue_number=protein.residue_index[idx].astype(np.int64),
        chain_id=np.asarray(protein.chain_id)[idx],
        insertion_code=np.asarray(protein.insertion_code)[idx],
        designed=designed[idx],
        ligand_positions=lig_pos,
        ligand_features=lig_feat,
        ligand_elements=ligand.elements[ligand.heavy_mask].astype(np.int64),
    )


def load_pocket(
    protein_path: str | os.PathLike,
    ligand_path: str | os.PathLike,
    *,
    pocket_radius: float | None = 10.0,
    design_radius: float = 5.0,
    name: str | None = None,
) -> Pocket:
    """Read a protein (PDB / mmCIF, gzip allowed) and a ligand (SDF / MOL2) and featurise them."""
    from tertiary.protein import Protein

    protein = Protein.from_file(protein_path)
    ligand = read_ligand(ligand_path)
    stem = Path(protein_path).name.split(".")[0]
    return build_pocket(protein, ligand, pocket_radius=pocket_radius, design_radius=design_radius,
                        name=name or stem)


@dataclass
class PocketBatch:
    """``B`` pockets padded to ``R`` residues and ``L`` ligand atoms (tensors).

    Attributes:
        positions: ``[B, R, 14, 3]``; atom_names: ``[B, R, 14]`` (0 = empty / padding).
        aatype: ``[B, R]`` 1..20 (0 in padding); res_mask / designed: ``[B, R]`` bool;
        res_idx: ``[B, R]`` author residue numbers.
        chain_order: ``[B, R]`` residue indices sorted by (chain, residue number, insertion code);
            pocket files need not list residues in chain order (CrossDocked ``pocket10`` files
            append some at the end). Padding positions keep their own index.
        ligand_positions: ``[B, L, 3]``; ligand_features: ``[B, L, 15]``; lig_mask: ``[B, L]``.
        names: the pockets' names.
    """

    positions: torch.Tensor
    atom_names: torch.Tensor
    aatype: torch.Tensor
    res_mask: torch.Tensor
    res_idx: torch.Tensor
    chain_order: torch.Tensor
    designed: torch.Tensor
    ligand_positions: torch.Tensor
    ligand_features: torch.Tensor
    lig_mask: torch.Tensor
    names: list[str]

    @property
    def atom_mask(self) -> torch.Tensor:
        return self.atom_names > 0

    def to(self, device: str | torch.device) -> PocketBatch:
        fields = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return PocketBatch(**fields)


def collate(pockets: list[Pocket]) -> PocketBatch:
    """Pad pockets into one :class:`PocketBatch`."""
    if not pockets:
        raise InputError("collate needs at least one pocket")
    b = len(pockets)
    r = max(p.num_residues for p in pockets)
    n_lig = max(len(p.ligand_positions) for p in pockets)
    out = {
        "positions": np.zeros((b, r, NUM_SLOTS, 3), np.float32),
        "atom_names": np.zeros((b, r, NUM_SLOTS), np.int64),
        "aatype": np.zeros((b, r), np.int64),
        "res_mask": np.zeros((b, r), bool),
        "res_idx": np.zeros((b, r), np.int64),
        "chain_order": np.tile(np.arange(r, dtype=np.int64), (b, 1)),
        "designed": np.zeros((b, r), bool),
        "ligand_positions": np.zeros((b, n_lig, 3), np.float32),
        "ligand_features": np.zeros((b, n_lig, LIGAND_FEATURE_DIM), np.float32),
        "lig_mask": np.zeros((b, n_lig), bool),
    }
    for i, p in enumerate(pockets):
        n, m = p.num_residues, len(p.ligand_positions)
        out["positions"][i, :n] = p.positions
        out["atom_names"][i, :n] = p.atom_names
        out["aatype"][i, :n] = p.aatype
        out["res_mask"][i, :n] = True
        out["res_idx"][i, :n] = p.residue_number
        out["chain_order"][i, :n] = np.lexsort((p.insertion_code, p.residue_number, p.chain_id))
        out["designed"][i, :n] = p.designed
        out["ligand_positions"][i, :m] = p.ligand_positions
        out["ligand_features"][i, :m] = p.ligand_features
        out["lig_mask"][i, :m] = True
    return PocketBatch(**{k: torch.from_numpy(v) for k, v in out.items()}, names=[p.name for p in pockets])


# -- datasets ------------------------------------------------------------------------------------

POCKET_TASK = "pocket"


@dataclass
class PocketBuildReport:
    """What :func:`build_pocket_dataset` wrote and what it skipped (``failures``: ``[{"id", "error"}]``)."""

    output: str
    n_records: int
    failures: list[dict[str, str]]
    pocket_radius: float
    design_radius: float

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    def summary(self) -> str:
        text = f"{self.n_records} pocket(s) written to {self.output}"
        if self.failures:
            text += f"; {self.n_failed} complex(es) skipped (see {Path(self.output).with_suffix('.report.tsv').name})"
        return text

    def as_dict(self) -> dict[str, object]:
        return {"task": POCKET_TASK, "output": self.output, "n_records": self.n_records, "n_failed": self.n_failed,
                "pocket_radius": self.pocket_radius, "design_radius": self.design_radius, "failures": self.failures}
_ARRAY_FIELDS = ("positions", "atom_names", "aatype", "residue_number", "designed", "ligand_positions",
                 "ligand_features", "ligand_elements")


def pocket_to_record(pocket: Pocket) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """A :class:`Pocket` as (arrays, JSON metadata) for :class:`tertiary.data.lmdb_store.LmdbWriter`."""
    arrays = {k: np.asarray(getattr(pocket, k)) for k in _ARRAY_FIELDS}
    arrays["designed"] = arrays["designed"].astype(np.uint8)
    meta = {"name": pocket.name, "chain_id": [str(c) for c in pocket.chain_id],
            "insertion_code": [str(c) for c in pocket.insertion_code]}
    return arrays, meta


def pocket_from_record(arrays: dict[str, np.ndarray], meta: dict[str, object]) -> Pocket:
    """Inverse of :func:`pocket_to_record`."""
    fields = {k: arrays[k] for k in _ARRAY_FIELDS}
    fields["designed"] = fields["designed"].astype(bool)
    return Pocket(name=str(meta["name"]), chain_id=np.asarray(meta["chain_id"]),
                  insertion_code=np.asarray(meta["insertion_code"]), **fields)


def read_pocket_index(source: str | os.PathLike) -> list[dict[str, str]]:
    """Complexes listed by a set's ``index.tsv`` (a folder holding it, or the file itself).

    Two layouts are understood: ``shared/data/ligand_complexes`` (columns ``id``,
    ``pocket_path``, ``ligand_path`` relative to the folder, plus ``kind`` / ``system`` /
    ``pdb_id``) and ``crossdocked_test100`` (``index``, ``short_id``, ``pocket_file``,
    ``ligand_file`` under ``files/``; pockets may be stored as ``<pocket_file>.gz``).

    Returns:
        rows with at least ``id``, ``pocket`` and ``ligand`` (absolute paths) and the index's
        other columns.

    Raises:
        DataError: no index, or a missing column.
    """
    import csv

    from tertiary.errors import DataError

    path = Path(source)
    index = path / "index.tsv" if path.is_dir() else path
    if not index.is_file():
        raise DataError(f"{path}: no index.tsv (a pocket set lists its complexes there)")
    folder = index.parent
    with open(index, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out = []
    for i, row in enumerate(rows):
        if "pocket_path" in row and "ligand_path" in row:
            pocket, ligand = folder / row["pocket_path"], folder / row["ligand_path"]
        elif "pocket_file" in row and "ligand_file" in row:
            pocket, ligand = folder / "files" / row["pocket_file"], folder / "files" / row["ligand_file"]
            gz = pocket.with_name(pocket.name + ".gz")
            if not pocket.exists() and gz.exists():
                pocket = gz
        else:
            raise DataError(f"{index}: needs columns pocket_path + ligand_path or pocket_file + ligand_file")
        ident = row.get("id") or row.get("short_id") or row.get("index") or str(i)
        out.append({**row, "id": ident, "pocket": str(pocket), "ligand": str(ligand)})
    return out


def build_pocket_dataset(
    sources: list[str | os.PathLike] | str | os.PathLike,
    output: str | os.PathLike,
    *,
    progress: object | None = None,
    pocket_radius: float = 10.0,
    design_radius: float = 5.0,
    kinds: list[str] | tuple[str, ...] | None = None,
    limit: int | None = None,
) -> PocketBuildReport:
    """Featurise the complexes of one or more pocket sets into an LMDB dataset (``task: pocket``).

    ``tertiary data build --task pocket SOURCES -o OUT.lmdb`` calls this. Every complex is
    featurised with :func:`load_pocket`; a complex that fails (ligand RDKit cannot sanitise, no
    residue near the ligand, designed residue without backbone, ...) is reported and skipped.

    Args:
        sources: set folders / ``index.tsv`` files (see :func:`read_pocket_index`).
        output: the ``.lmdb`` file to write (atomically).
        progress: optional ``progress(done, total, name)`` callback, called after every complex.
        pocket_radius / design_radius: as :func:`build_pocket` (A).
        kinds: keep only rows whose ``kind`` column is one of these (e.g. ``crystal``).
        limit: only the first ``limit`` complexes (after filtering).

    Returns:
        the report; failures are also listed in ``<output stem>.report.tsv`` (``id``, ``error``).

    Raises:
        DataError: a source without an index, or no complex could be featurised.
    """
    import warnings

    from tertiary.data.lmdb_store import LmdbWriter
    from tertiary.errors import DataError, TertiaryError

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    rows: list[dict[str, str]] = []
    for src in sources:
        rows.extend(read_pocket_index(src))
    if kinds:
        rows = [r for r in rows if r.get("kind") in set(kinds)]
    if limit is not None:
        rows = rows[:limit]
    failures: list[dict[str, str]] = []
    n_ok = 0
    with LmdbWriter(output, POCKET_TASK) as writer:
        seen: set[str] = set()
        for i, row in enumerate(rows):
            key = row["id"]
            if key in seen:
                failures.append({"id": key, "error": "duplicate id; later occurrence skipped"})
                continue
            seen.add(key)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pocket = load_pocket(row["pocket"], row["ligand"], pocket_radius=pocket_radius,
                                         design_radius=design_radius, name=key)
                arrays, meta = pocket_to_record(pocket)
                meta.update({k: row[k] for k in ("kind", "system", "pdb_id", "source") if row.get(k)})
                writer.add(key, arrays, meta)
                n_ok += 1
            except TertiaryError as exc:
                failures.append({"id": key, "error": one_line(exc)})
                logger.warning("%s skipped: %s", key, exc)
            if progress is not None:
                progress(i + 1, len(rows), key)
        if n_ok == 0:
            raise DataError(f"{output}: none of the {len(rows)} complexes could be featurised"
                            + (f" (first error: {failures[0]['error']})" if failures else ""))
        report = PocketBuildReport(str(output), n_ok, failures, pocket_radius, design_radius)
        writer.commit({**report.as_dict(), "sources": [str(s) for s in sources]})
    table = Path(output).with_suffix(".report.tsv")
    table.write_text("id\terror\n" + "".join(f"{f['id']}\t{f['error']}\n" for f in failures))
    return report
