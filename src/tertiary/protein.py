"""The :class:`Protein` data model: one model of a protein structure as atom37 numpy arrays.

Reading (:meth:`Protein.from_file`) accepts PDB and mmCIF, plain or gzip-compressed, chosen by
content (then extension). The rules, in order:

- one model (``model=1`` is the first; NMR files keep ``n_models``);
- water (HOH, WAT, DOD, ...) is dropped;
- residues are protein residues when their name is a standard amino acid, a common modified
  amino acid (``constants.MODIFIED_RESIDUES``: MSE -> MET with SE renamed SD, SEP -> SER,
  ...), another amino acid known to gemmi's residue table (-> ``X``, aatype 20), or any other
  unknown name in an ``ATOM`` record (-> ``X``). Everything else (ligands, ions, glycans,
  nucleotides, caps such as ACE/NH2) is kept aside as :class:`HetGroup` in ``ligands``;
- alternate locations: for every atom the highest-occupancy location is kept (the first on
  ties); for ligands, the highest-occupancy altloc of the whole group;
- a residue listed with two residue names at one position (microheterogeneity) keeps the
  first name and its atoms (:class:`ParseWarning`);
- hydrogens are ignored for protein residues; atoms whose name is not an atom of the residue
  type (atom37 naming; ``OT1``/``OT2`` are read as ``O``/``OXT``, ILE ``CD`` as ``CD1``) are
  ignored with a :class:`ParseWarning`, as are duplicated atoms (the first is kept);
- residues without CA are kept (mask 0) with a :class:`ParseWarning`.

Errors in the file (truncated records, unparsable numbers, NaN or absurd coordinates, binary
data, empty files) raise :class:`~tertiary.errors.ParseError` naming the file and the line
(PDB) or ``_atom_site`` row (mmCIF).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import gemmi
import numpy as np

from tertiary import constants as rc
from tertiary.atom_sites import WATER_NAMES, AtomSites, read_file_bytes, read_structure_bytes
from tertiary.errors import InputError

__all__ = ["HetGroup", "ParseWarning", "Protein"]

_OXT = rc.ATOM_ORDER["OXT"]
_CA = rc.ATOM_ORDER["CA"]
_BACKBONE37 = [rc.ATOM_ORDER[a] for a in ("N", "CA", "C", "O")]
_ATOM_ALIASES = {"OT1": "O", "OT2": "OXT", "O1": "O", "O2": "OXT"}
_RESIDUE_ATOM_ALIASES = {("ILE", "CD"): "CD1"}
#: (residue name, atom name) -> atom37 name: renamed atoms of modified residues (MSE SE -> SD)
#: and residue-specific aliases, as bytes.
_ATOM_RENAMES = {
    **{(mod.encode(), old.encode()): new
       for mod, (_, renames) in rc.MODIFIED_RESIDUES.items() for old, new in renames.items()},
    **{(res.encode(), old.encode()): new for (res, old), new in _RESIDUE_ATOM_ALIASES.items()},
}
_WATER = np.array(sorted(n.encode() for n in WATER_NAMES))
_WATER_CODES = np.array([int.from_bytes(n.ljust(4, b"\0"), "little") for n in _WATER], np.uint32)


class ParseWarning(UserWarning):
    """A structure file was readable but something in it was ignored or repaired."""


@dataclass(frozen=True)
class HetGroup:
    """A non-protein residue (ligand, ion, glycan unit, nucleotide, cap) of a structure.

    Attributes:
        resname: residue name as in the file (``HEM``, ``NAG``, ``ZN``, ``DA``...).
        chain_id: chain id (author).
        residue_number: author residue number.
        insertion_code: ``""`` when none.
        atom_names: [A] atom names.
        elements: [A] element symbols (upper case, ``""`` when unknown).
        positions: [A, 3] float32 coordinates, Angstrom.
        b_factors: [A] float32.
        kind: ``"nucleotide"`` for DNA / RNA residues, ``"ligand"`` otherwise.
    """

    resname: str
    chain_id: str
    residue_number: int
    insertion_code: str
    atom_names: tuple[str, ...]
    elements: tuple[str, ...]
    positions: np.ndarray
    b_factors: np.ndarray
    kind: str = "ligand"

    def __len__(self) -> int:
        return len(self.atom_names)

    @property
    def label(self) -> str:
        """``"HEM A 301"`` style identifier."""
        return f"{self.resname} {self.chain_id or '_'} {self.residue_number}{self.insertion_code}"


@dataclass
class Protein:
    """One model of a protein structure (``N`` residues, file order, chains concatenated).

    Attributes:
        atom_positions: [N, 37, 3] float32, Angstrom, atom37 order (``constants.ATOM_TYPES``);
            zero where the atom is absent.
        atom_mask: [N, 37] float32, 1.0 where the atom was resolved.
        aatype: [N] int64 residue type in ``constants.RESTYPES`` order, 20 = unknown ``X``.
        residue_index: [N] int64 author residue numbers (gaps and negative numbers kept).
        chain_id: [N] str author chain ids (``""`` for a blank PDB chain id).
        insertion_code: [N] str, ``""`` when none.
        b_factors: [N, 37] float32 per-atom B-factors (or pLDDT), zero where absent.
        residue_name: [N] str residue names as read (``MSE``, ``UNK``...); defaults to the
            three-letter name of ``aatype``.
        ligands: non-protein groups (HETATM ligands, ions, nucleotides, glycans).
        name: structure name (file stem when read from a file).
        model: 1-based ordinal of the model that was read; ``n_models``: models in the file.
    """

    atom_positions: np.ndarray
    atom_mask: np.ndarray
    aatype: np.ndarray
    residue_index: np.ndarray
    chain_id: np.ndarray
    insertion_code: np.ndarray | None = None
    b_factors: np.ndarray | None = None
    residue_name: np.ndarray | None = None
    ligands: tuple[HetGroup, ...] = field(default_factory=tuple)
    name: str = ""
    model: int = 1
    n_models: int = 1

    def __post_init__(self) -> None:
        self.atom_positions = np.asarray(self.atom_positions, dtype=np.float32)
        n = self.atom_positions.shape[0] if self.atom_positions.ndim == 3 else -1
        if self.atom_positions.shape != (n, rc.ATOM_TYPE_NUM, 3):
            raise InputError(
                f"Protein {self.name!r}: atom_positions must be [N, 37, 3], "
                f"got {list(self.atom_positions.shape)}"
            )
        self.atom_mask = np.asarray(self.atom_mask, dtype=np.float32)
        self.aatype = np.asarray(self.aatype, dtype=np.int64)
        self.residue_index = np.asarray(self.residue_index, dtype=np.int64)
        self.chain_id = np.asarray(self.chain_id, dtype=str).reshape(-1)
        if self.insertion_code is None:
            self.insertion_code = np.full(n, "", dtype="<U1")
        self.insertion_code = np.asarray(self.insertion_code, dtype=str).reshape(-1)
        if self.b_factors is None:
            self.b_factors = np.zeros((n, rc.ATOM_TYPE_NUM), np.float32)
        self.b_factors = np.asarray(self.b_factors, dtype=np.float32)
        if self.residue_name is None:
            self.residue_name = np.array([rc.RESNAMES[a] for a in self.aatype.clip(0, 20)], dtype=str)
        self.residue_name = np.asarray(self.residue_name, dtype=str).reshape(-1)
        self.ligands = tuple(self.ligands)
        expected = {
            "atom_mask": (n, rc.ATOM_TYPE_NUM),
            "aatype": (n,),
            "residue_index": (n,),
            "chain_id": (n,),
            "insertion_code": (n,),
            "b_factors": (n, rc.ATOM_TYPE_NUM),
            "residue_name": (n,),
        }
        for key, shape in expected.items():
            if getattr(self, key).shape != shape:
                raise InputError(
                    f"Protein {self.name!r}: {key} must have shape {list(shape)}, "
                    f"got {list(getattr(self, key).shape)}"
                )
        if n and (self.aatype.min() < 0 or self.aatype.max() > rc.UNK_INDEX):
            raise InputError(f"Protein {self.name!r}: aatype values must be in 0..20")

    # ---------------------------------------------------------------------------------------
    # Reading
    # ---------------------------------------------------------------------------------------

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        chains: Sequence[str] | str | None = None,
        model: int = 1,
        fmt: str | None = None,
    ) -> Protein:
        """Read a PDB / mmCIF file (gzip allowed; format sniffed unless ``fmt`` is given).

        Args:
            path: the file.
            chains: chain ids to keep (author ids; ``""`` is a blank PDB chain), in file order;
                ``None`` keeps all. A string such as ``"AB"`` means chains A and B.
            model: 1-based ordinal of the model to read.
            fmt: ``"pdb"`` or ``"mmcif"`` to skip sniffing.

        Raises:
            ParseError: the file is malformed (message names the file and line / row).
            InputError: the file is missing, or ``chains`` / ``model`` are not in it.
        """
        data = read_file_bytes(path)
        sites = read_structure_bytes(data, str(path), model=model, fmt=fmt)
        return protein_from_sites(sites, chains=chains, name=_stem(path))

    @classmethod
    def from_string(
        cls,
        text: str | bytes,
        chains: Sequence[str] | str | None = None,
        model: int = 1,
        fmt: str | None = None,
        name: str = "",
    ) -> Protein:
        """Like :meth:`from_file` for file contents (``name`` is used in messages)."""
        data = text.encode("utf-8", errors="replace") if isinstance(text, str) else bytes(text)
        sites = read_structure_bytes(data, name or "<string>", model=model, fmt=fmt)
        return protein_from_sites(sites, chains=chains, name=name)

    # ---------------------------------------------------------------------------------------
    # Views
    # ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.aatype.shape[0])

    @property
    def num_res(self) -> int:
        """Number of residues ``N``."""
        return len(self)

    @property
    def chains(self) -> tuple[str, ...]:
        """Chain ids in order of first appearance."""
        return tuple(dict.fromkeys(self.chain_id.tolist()))

    @property
    def chain_index(self) -> np.ndarray:
        """[N] int64 index of each residue's chain in :attr:`chains`."""
        order = {c: i for i, c in enumerate(self.chains)}
        return np.array([order[c] for c in self.chain_id.tolist()], dtype=np.int64)

    def take(self, index: np.ndarray | Sequence[int] | slice) -> Protein:
        """Residues ``index`` (integer indices, boolean mask or slice) as a new Protein.
        Ligands are kept only for chains that still have residues."""
        idx = np.arange(len(self))[index]
        kept_chains = set(self.chain_id[idx].tolist())
        return replace(
            self,
            atom_positions=self.atom_positions[idx],
            atom_mask=self.atom_mask[idx],
            aatype=self.aatype[idx],
            residue_index=self.residue_index[idx],
            chain_id=self.chain_id[idx],
            insertion_code=self.insertion_code[idx],
            b_factors=self.b_factors[idx],
            residue_name=self.residue_name[idx],
            ligands=tuple(g for g in self.ligands if g.chain_id in kept_chains),
        )

    def select_chains(self, chains: Sequence[str] | str) -> Protein:
        """Residues (and ligands) of ``chains`` only, in file order.

        Raises:
            InputError: a requested chain is not in the structure.
        """
        wanted = _chain_list(chains)
        present = set(self.chain_id.tolist()) | {g.chain_id for g in self.ligands}
        missing = [c for c in wanted if c not in present]
        if missing:
            raise InputError(
                f"{self.name or 'structure'}: chain(s) {', '.join(map(repr, missing))} not found "
                f"(chains: {', '.join(map(repr, sorted(present)))})"
            )
        keep = np.isin(self.chain_id, wanted)
        out = self.take(keep)
        return replace(out, ligands=tuple(g for g in self.ligands if g.chain_id in wanted))

    def sequence(self, chain: str | None = None) -> str:
        """One-letter sequence of resolved residues (``X`` for unknown ones); of one chain, or
        of all chains concatenated when ``chain`` is None. Gaps in numbering are not filled."""
        aatype = self.aatype if chain is None else self.aatype[self.chain_id == chain]
        if chain is not None and chain not in self.chains:
            raise InputError(f"{self.name or 'structure'}: no chain {chain!r} (chains: {self.chains})")
        return "".join(rc.RESTYPES_WITH_X[a] for a in aatype)

    def sequences(self) -> dict[str, str]:
        """Chain id -> one-letter sequence."""
        return {c: self.sequence(c) for c in self.chains}

    def atom14(self) -> tuple[np.ndarray, np.ndarray]:
        """Atoms in the compact atom14 layout (AlphaFold2 ``restype_name_to_atom14_names``).

        Returns:
            positions [N, 14, 3] float32 (Angstrom) and mask [N, 14] float32. OXT is not part
            of atom14; unknown residues (``X``) have an empty atom14 row.
        """
        idx = rc.RESTYPE_ATOM14_TO_ATOM37[self.aatype]  # [N, 14]
        mask = rc.RESTYPE_ATOM14_MASK[self.aatype] * np.take_along_axis(self.atom_mask, idx, axis=1)
        pos = np.take_along_axis(self.atom_positions, idx[..., None], axis=1) * mask[..., None]
        return pos.astype(np.float32), mask.astype(np.float32)

    def backbone(self, atoms: Sequence[str] = ("N", "CA", "C")) -> tuple[np.ndarray, np.ndarray]:
        """Positions [N, k, 3] and mask [N, k] of the named atoms (default N, CA, C)."""
        try:
            idx = [rc.ATOM_ORDER[a] for a in atoms]
        except KeyError as exc:
            raise InputError(f"unknown atom name {exc.args[0]!r} (atom37 names only)") from None
        return self.atom_positions[:, idx], self.atom_mask[:, idx]

    def ca(self) -> tuple[np.ndarray, np.ndarray]:
        """CA positions [N, 3] and mask [N]."""
        return self.atom_positions[:, _CA], self.atom_mask[:, _CA]

    def missing_atoms(self) -> tuple[np.ndarray, np.ndarray]:
        """Per residue: (missing backbone [N] bool: any of N, CA, C, O absent; missing side
        chain [N] bool: a heavy side-chain atom of the residue type absent; False for X)."""
        present = self.atom_mask > 0
        backbone = ~present[:, _BACKBONE37].all(axis=1)
        expected = rc.RESTYPE_ATOM37_MASK[self.aatype] > 0
        expected[:, _BACKBONE37] = False
        side = (expected & ~present).any(axis=1)
        return backbone, side

    def to_torch(self, device: str | None = None) -> dict[str, object]:
        """Tensors: ``atom_positions`` [N, 37, 3] float32, ``atom_mask`` [N, 37] float32,
        ``aatype`` / ``residue_index`` / ``chain_index`` [N] int64, ``b_factors`` [N, 37]."""
        import torch

        arrays = {
            "atom_positions": self.atom_positions,
            "atom_mask": self.atom_mask,
            "aatype": self.aatype,
            "residue_index": self.residue_index,
            "chain_index": self.chain_index,
            "b_factors": self.b_factors,
        }
        return {k: torch.as_tensor(np.ascontiguousarray(v), device=device) for k, v in arrays.items()}

    # ---------------------------------------------------------------------------------------
    # Writing
    # ---------------------------------------------------------------------------------------

    def _records(
        self, b_factors: np.ndarray | None, include_ligands: bool
    ) -> list[tuple[str, int, str, str, str, int, str, float, float, float, float, float, str]]:
        bf = self._b_factor_table(b_factors)
        records = []
        serial = 0
        res_idx, atom_idx = np.nonzero(self.atom_mask > 0)
        pos = self.atom_positions[res_idx, atom_idx].astype(np.float64).tolist()
        bvals = bf[res_idx, atom_idx].astype(np.float64).tolist()
        names = [self._write_resname(i) for i in range(len(self))]
        chain = self.chain_id.tolist()
        number = self.residue_index.tolist()
        icode = self.insertion_code.tolist()
        for k, (r, a) in enumerate(zip(res_idx.tolist(), atom_idx.tolist())):
            serial += 1
            atom = rc.ATOM_TYPES[a]
            x, y, z = pos[k]
            records.append(
                ("ATOM", serial, atom, names[r], chain[r], number[r], icode[r], x, y, z, 1.0,
                 bvals[k], rc.ATOM_ELEMENT[atom])
            )
        if include_ligands:
            for g in self.ligands:
                for atom, elem, xyz, b in zip(g.atom_names, g.elements, g.positions.tolist(),
                                              g.b_factors.tolist()):
                    serial += 1
                    records.append(
                        ("HETATM", serial, atom, g.resname, g.chain_id, g.residue_number,
                         g.insertion_code, *xyz, 1.0, b, elem)
                    )
        return records

    def _write_resname(self, i: int) -> str:
        a = int(self.aatype[i])
        if a < rc.RESTYPE_NUM:
            return rc.RESNAMES[a]
        name = str(self.residue_name[i])
        return name if name and name not in rc.RESTYPE_3TO1 and name not in rc.MODIFIED_RESIDUES else "UNK"

    def _b_factor_table(self, b_factors: np.ndarray | None) -> np.ndarray:
        if b_factors is None:
            return self.b_factors
        b = np.asarray(b_factors, dtype=np.float32)
        if b.shape == (len(self),):
            return np.repeat(b[:, None], rc.ATOM_TYPE_NUM, axis=1)
        if b.shape == (len(self), rc.ATOM_TYPE_NUM):
            return b
        raise InputError(
            f"b_factors must be per residue [{len(self)}] or per atom [{len(self)}, 37], "
            f"got {list(b.shape)}"
        )

    def to_pdb(
        self,
        path: str | os.PathLike[str] | None = None,
        b_factors: np.ndarray | None = None,
        include_ligands: bool = True,
    ) -> str:
        """PDB text (and write it to ``path`` when given).

        Args:
            b_factors: [N] per-residue or [N, 37] per-atom values for the B-factor column
                (e.g. pLDDT); defaults to :attr:`b_factors`.
            include_ligands: also write :attr:`ligands` as HETATM records.

        Raises:
            InputError: a chain id longer than one character or a number that does not fit
                PDB columns (use :meth:`to_mmcif`).
        """
        from tertiary.pdb_io import format_atom_lines, hybrid36_encode

        records = self._records(b_factors, include_ligands)
        lines = []
        if self.name:
            lines.append(f"REMARK   1 {self.name[:68]}")
        atom_lines = format_atom_lines(records)
        polymer = [r for r in records if r[0] == "ATOM"]
        for k, line in enumerate(atom_lines):
            lines.append(line)
            rec = records[k]
            if rec[0] == "ATOM" and (k + 1 == len(polymer) or records[k + 1][4] != rec[4]):
                lines.append(f"TER   {(rec[1] + 1) % 100000:5d}      {rec[3]:>3s} "
                             f"{rec[4] or ' ':1s}{hybrid36_encode(4, rec[5])}{rec[6] or ' ':1s}")
        lines.append("END")
        text = "\n".join(lines) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_mmcif(
        self,
        path: str | os.PathLike[str] | None = None,
        b_factors: np.ndarray | None = None,
        include_ligands: bool = True,
    ) -> str:
        """mmCIF text with one ``_atom_site`` loop (and write it to ``path`` when given).
        ``b_factors`` as in :meth:`to_pdb`; author and label fields are both written (label
        sequence ids count residues per chain from 1; ligands get ``.``).

        Raises:
            InputError: a blank chain id (mmCIF needs one; rename chains first).
        """
        from tertiary.mmcif_io import format_mmcif

        records = self._records(b_factors, include_ligands)
        entities: dict[tuple[str, bool], int] = {}
        for rec in records:
            entities.setdefault((rec[4], rec[0] == "HETATM"), len(entities) + 1)
        text = format_mmcif(self.name or "structure", records, entities)
        if path is not None:
            Path(path).write_text(text)
        return text


# -------------------------------------------------------------------------------------------
# Assembly of residues from atom records
# -------------------------------------------------------------------------------------------


def _stem(path: str | os.PathLike[str]) -> str:
    name = Path(path).name
    for suffix in (".gz", ".pdb", ".ent", ".cif", ".mmcif"):
        name = name.removesuffix(suffix)
    return name


def _chain_list(chains: Sequence[str] | str) -> list[str]:
    if isinstance(chains, str):
        return list(chains) if chains else [""]
    return [str(c) for c in chains]


@functools.lru_cache(maxsize=4096)
def _classify(resname: str) -> tuple[int, int, dict[str, str]]:
    """(kind, aatype, atom renames) of a residue name; kind 0 protein, 1 ligand,
    2 nucleotide, 3 unknown (protein in ATOM records, ligand in HETATM records)."""
    if resname in rc.RESTYPE_3TO1:
        return 0, rc.RESNAME_TO_INDEX[resname], {}
    if resname in rc.MODIFIED_RESIDUES:
        parent, renames = rc.MODIFIED_RESIDUES[resname]
        return 0, rc.RESNAME_TO_INDEX[parent], renames
    info = gemmi.find_tabulated_residue(resname) if resname else None
    if info is not None and info.kind == gemmi.ResidueKind.UNKNOWN:
        info = None  # gemmi answers names it does not know with an UNKNOWN entry
    if info is not None and info.is_amino_acid():
        return 0, rc.UNK_INDEX, {}
    if info is not None and info.is_nucleic_acid():
        return 2, rc.UNK_INDEX, {}
    if info is not None:
        return 1, rc.UNK_INDEX, {}
    return 3, rc.UNK_INDEX, {}


def _decode(values: np.ndarray) -> np.ndarray:
    return values.astype("U") if len(values) else np.array([], dtype="<U1")


def protein_from_sites(
    sites: AtomSites, chains: Sequence[str] | str | None = None, name: str = ""
) -> Protein:
    """Assemble a :class:`Protein` from atom records (see the module docstring for the rules)."""
    notes: list[str] = []
    if chains is not None:
        wanted = _chain_list(chains)
        present = _decode(np.unique(sites.chain_id)).tolist()
        missing = [c for c in wanted if c not in present]
        if missing:
            raise InputError(
                f"{sites.source}: chain(s) {', '.join(map(repr, missing))} not found "
                f"(chains: {', '.join(map(repr, present))})"
            )
        sites = sites.take(np.isin(sites.chain_id, [c.encode() for c in wanted]))
    if sites.resname.dtype.itemsize <= 4:
        codes = np.ascontiguousarray(sites.resname.astype("S4")).view("<u4").ravel()
        water = codes == _WATER_CODES[0]
        for code in _WATER_CODES[1:]:
            water |= codes == code
    else:
        water = np.isin(sites.resname, _WATER)
    if water.any():
        sites = sites.take(~water)

    res_of_atom, first, restarts = _residue_runs(sites)
    if len(restarts):
        row = int(restarts[0])
        notes.append(
            f"{len(restarts)} residue(s) listed again under the same number (first at {sites.record_kind} "
            f"{int(sites.record[row])}: {sites.resname[row].decode(errors='replace')} "
            f"{sites.chain_id[row].decode(errors='replace')} {int(sites.resseq[row])} starts over with atom "
            f"{sites.atom_name[row].decode(errors='replace')!r}): read as separate residues"
        )
    # Microheterogeneity: keep the atoms carrying the residue's first name.
    resname_codes = _int_codes(sites.resname)
    other_name = resname_codes != resname_codes[first][res_of_atom]
    if other_name.any():
        row = int(np.flatnonzero(other_name)[0])
        notes.append(
            f"{int(other_name.sum())} atom(s) of alternative residue types ignored (first at "
            f"{sites.record_kind} {int(sites.record[row])}: "
            f"{sites.resname[row].decode(errors='replace')} at a position already read as "
            f"{sites.resname[first][res_of_atom[row]].decode(errors='replace')})"
        )
        sites = sites.take(~other_name)
        res_of_atom, first, _ = _residue_runs(sites)

    # Residue classes: one lookup per distinct residue name.
    name_codes, name_of_res = _unique_codes(sites.resname[first])
    r_name_uniq = _decode(name_codes)
    classes = [_classify(n) for n in r_name_uniq.tolist()]
    r_name = r_name_uniq[name_of_res] if len(first) else np.array([], dtype="<U3")
    r_het = sites.het[first]
    r_kind = np.array([c[0] for c in classes], dtype=np.int64)[name_of_res]
    r_kind = np.where(r_kind == 3, np.where(r_het, 1, 0), r_kind)
    r_aatype = np.array([c[1] for c in classes], dtype=np.int64)[name_of_res]
    is_protein_res = r_kind == 0
    protein_ordinal = np.cumsum(is_protein_res) - 1
    n_res = int(is_protein_res.sum())

    atom_is_protein = is_protein_res[res_of_atom]
    prot = np.flatnonzero(atom_is_protein)
    p_res = protein_ordinal[res_of_atom[prot]]
    p_aatype = r_aatype[res_of_atom[prot]]
    atom37 = _atom37_index(sites, prot, p_aatype, notes)

    # Alternate locations / duplicates: per (residue, atom) keep the highest occupancy.
    valid = atom37 >= 0
    rows, p_res, atom37 = prot[valid], p_res[valid], atom37[valid]
    key = p_res * rc.ATOM_TYPE_NUM + atom37
    order = np.lexsort((rows, -sites.occupancy[rows], key))
    key_sorted = key[order]
    first_of_key = np.ones(len(order), dtype=bool)
    first_of_key[1:] = key_sorted[1:] != key_sorted[:-1]
    if not first_of_key.all():
        starts = np.flatnonzero(first_of_key)
        has_alt = np.maximum.reduceat((sites.altloc[rows[order]] != b"").astype(np.int8), starts)
        sizes = np.diff(np.append(starts, len(order)))
        dup = (sizes > 1) & (has_alt == 0)
        if dup.any():
            row = int(rows[order][starts[np.flatnonzero(dup)[0]] + 1])
            notes.append(
                f"{int((sizes[dup] - 1).sum())} duplicated atom(s) ignored (first at "
                f"{sites.record_kind} {int(sites.record[row])}: atom "
                f"{sites.atom_name[row].decode(errors='replace')!r} repeated in its residue)"
            )
    win = order[first_of_key]
    rows, p_res, atom37 = rows[win], p_res[win], atom37[win]

    positions = np.zeros((n_res, rc.ATOM_TYPE_NUM, 3), np.float32)
    mask = np.zeros((n_res, rc.ATOM_TYPE_NUM), np.float32)
    bfac = np.zeros((n_res, rc.ATOM_TYPE_NUM), np.float32)
    flat = p_res * rc.ATOM_TYPE_NUM + atom37
    positions.reshape(-1, 3)[flat] = sites.xyz[rows]
    mask.reshape(-1)[flat] = 1.0
    bfac.reshape(-1)[flat] = sites.b_factor[rows]

    pfirst = first[is_protein_res]
    no_ca = mask[:, _CA] == 0
    if no_ca.any():
        k = int(np.flatnonzero(no_ca)[0])
        notes.append(
            f"{int(no_ca.sum())} residue(s) without a CA atom kept with an empty CA mask (first:"
            f" {r_name[is_protein_res][k]} {sites.chain_id[pfirst[k]].decode(errors='replace')}"
            f" {int(sites.resseq[pfirst[k]])} at {sites.record_kind} {int(sites.record[pfirst[k]])})"
        )
    for note in notes:
        warnings.warn(ParseWarning(f"{sites.source}: {note}"), stacklevel=3)

    return Protein(
        atom_positions=positions,
        atom_mask=mask,
        aatype=r_aatype[is_protein_res],
        residue_index=sites.resseq[pfirst],
        chain_id=_decode(sites.chain_id[pfirst]),
        insertion_code=_decode(sites.icode[pfirst]),
        b_factors=bfac,
        residue_name=r_name[is_protein_res],
        ligands=_het_groups(sites, res_of_atom, first, r_kind),
        name=name,
        model=sites.model,
        n_models=sites.n_models,
    )


def _residue_runs(sites: AtomSites) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residues as runs of equal (chain, number, insertion code), split where a residue starts
    over (:func:`_restarts`): residue of each atom [M], the first atom of each residue [R] and
    the atoms where a residue started over [restarts]."""
    m = len(sites)
    new_res = np.ones(m, dtype=bool)
    restarts = np.zeros(0, dtype=np.int64)
    if m:
        chain, icode = _int_codes(sites.chain_id), _int_codes(sites.icode)
        new_res[1:] = (
            (chain[1:] != chain[:-1])
            | (sites.resseq[1:] != sites.resseq[:-1])
            | (icode[1:] != icode[:-1])
        )
        again = _restarts(sites, np.cumsum(new_res) - 1, np.flatnonzero(new_res))
        restarts = np.flatnonzero(again)
        new_res |= again
    return np.cumsum(new_res) - 1, np.flatnonzero(new_res), restarts


def _restarts(sites: AtomSites, run: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Atoms [M] (bool) at which a run starts over: its first atom's name again, neither with an
    alternate location. Two copies of a residue listed one after the other under one number
    (e.g. two copies of a chain at an interface, both labelled A) are two residues; a single
    repeated atom that is not the first stays a duplicate of its residue."""
    name = _int_codes(sites.atom_name)
    plain = sites.altloc == b""
    again = (name == name[first][run]) & plain & plain[first][run]
    again[first] = False
    return again


def _int_codes(values: np.ndarray) -> np.ndarray:
    """Byte strings as unsigned integers of equal order of equality (for fast comparisons);
    arrays of strings longer than 8 bytes are returned unchanged."""
    width = values.dtype.itemsize
    for size in (1, 2, 4, 8):
        if width <= size:
            padded = values if width == size else values.astype(f"S{size}")
            return np.ascontiguousarray(padded).view(f"<u{size}").ravel()
    return values


def _unique_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for short byte strings, sorting them as
    integers (much faster than sorting strings)."""
    width = values.dtype.itemsize
    if len(values) == 0 or width > 8:
        uniq, inverse = np.unique(values, return_inverse=True)
        return uniq, inverse.reshape(-1)
    size = 4 if width <= 4 else 8
    ints = np.ascontiguousarray(values.astype(f"S{size}")).view(f"<u{size}")
    uniq, first, inverse = np.unique(ints, return_index=True, return_inverse=True)
    return values[first], inverse.reshape(-1)


_NAME_CODES = np.array(
    sorted(
        (int.from_bytes(name.encode().ljust(4, b"\0"), "little"), rc.ATOM_ORDER[target])
        for name, target in {**{a: a for a in rc.ATOM_TYPES}, **_ATOM_ALIASES}.items()
    ),
    dtype=np.int64,
)


def _atom_name_index(names: np.ndarray) -> np.ndarray:
    """atom37 index of each atom name (``S`` array; aliases OT1 -> O...), -1 when unknown.
    Names of at most 4 bytes are looked up as uint32 codes with a binary search."""
    if len(names) == 0:
        return np.zeros(0, np.int64)
    if names.dtype.itemsize > 4:
        uniq, inverse = _unique_codes(names)
        lookup = []
        for raw in uniq.tolist():
            text = raw.decode(errors="replace")
            text = _ATOM_ALIASES.get(text, text)
            lookup.append(rc.ATOM_ORDER.get(text, -1))
        return np.array(lookup, dtype=np.int64)[inverse]
    codes = np.ascontiguousarray(names.astype("S4")).view("<u4").astype(np.int64).ravel()
    pos = np.searchsorted(_NAME_CODES[:, 0], codes)
    pos = np.minimum(pos, len(_NAME_CODES) - 1)
    return np.where(_NAME_CODES[pos, 0] == codes, _NAME_CODES[pos, 1], -1)


def _atom37_index(
    sites: AtomSites, rows: np.ndarray, aatype: np.ndarray, notes: list[str]
) -> np.ndarray:
    """atom37 index of protein atoms ``rows`` (-1: hydrogen or not an atom of the residue)."""
    names = sites.atom_name[rows]
    resnames = sites.resname[rows]
    elements = sites.element[rows]
    idx = _atom_name_index(names)
    # Renamed atoms of modified residues (MSE SE -> SD) and residue-specific aliases.
    for (res, old), new in _ATOM_RENAMES.items():
        hit = names == old
        if hit.any():
            idx[hit & (resnames == res)] = rc.ATOM_ORDER[new]

    allowed = np.ones(len(rows), dtype=bool)
    std = aatype < rc.RESTYPE_NUM
    allowed[std] = (rc.RESTYPE_ATOM37_MASK[aatype[std], np.maximum(idx[std], 0)] > 0) | (
        idx[std] == _OXT
    )
    idx = np.where(allowed, idx, -1)
    unknown = idx < 0
    if unknown.any():
        hydrogen = np.isin(elements, [b"H", b"D"]) | _hydrogen_name(names)
        unknown &= ~hydrogen
        if unknown.any():
            k = int(np.flatnonzero(unknown)[0])
            examples = sorted(
                {f"{r.decode(errors='replace')}:{n.decode(errors='replace')}"
                 for r, n in zip(resnames[unknown][:200].tolist(), names[unknown][:200].tolist())}
            )[:5]
            notes.append(
                f"{int(unknown.sum())} atom(s) with names unknown for their residue type ignored "
                f"({', '.join(examples)}; first at {sites.record_kind} {int(sites.record[rows[k]])})"
            )
    return idx


def _hydrogen_name(names: np.ndarray) -> np.ndarray:
    """Protein atom names of hydrogens / deuteriums (``H``, ``HA``, ``1HB``, ``DG1``...)."""
    stripped = np.strings.lstrip(names, b"0123456789")
    return np.strings.startswith(stripped, b"H") | np.strings.startswith(stripped, b"D")


def _het_groups(
    sites: AtomSites, res_of_atom: np.ndarray, first: np.ndarray, r_kind: np.ndarray
) -> tuple[HetGroup, ...]:
    het_res = np.flatnonzero(r_kind != 0)
    if len(het_res) == 0:
        return ()
    bounds = np.append(first, len(sites))
    groups = []
    for r in het_res.tolist():
        lo, hi = int(bounds[r]), int(bounds[r + 1])
        rows = np.arange(lo, hi)
        alt = sites.altloc[rows]
        if (alt != b"").any():
            # Keep one conformer of the whole group: the altloc with the highest occupancy.
            labels = [a for a in dict.fromkeys(alt.tolist()) if a]
            best = max(labels, key=lambda a: float(sites.occupancy[rows][alt == a].mean()))
            rows = rows[(alt == b"") | (alt == best)]
        groups.append(
            HetGroup(
                resname=sites.resname[lo].decode(errors="replace"),
                chain_id=sites.chain_id[lo].decode(errors="replace"),
                residue_number=int(sites.resseq[lo]),
                insertion_code=sites.icode[lo].decode(errors="replace"),
                atom_names=tuple(n.decode(errors="replace") for n in sites.atom_name[rows].tolist()),
                elements=tuple(e.decode(errors="replace") for e in sites.element[rows].tolist()),
                positions=sites.xyz[rows].astype(np.float32),
                b_factors=sites.b_factor[rows].astype(np.float32),
                kind="nucleotide" if r_kind[r] == 2 else "ligand",
            )
        )
    return tuple(groups)


def read_proteins(paths: Iterable[str | os.PathLike[str]], **kwargs: object) -> list[Protein]:
    """:meth:`Protein.from_file` on each path (errors propagate)."""
    return [Protein.from_file(p, **kwargs) for p in paths]  # type: ignore[arg-type]
