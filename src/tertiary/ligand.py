"""Small molecules (ligands) read through RDKit.

:func:`read_ligand` reads one record of an SDF / MOL file (plain or gzip) or a MOL2 file and
returns a :class:`Ligand`: elements, 3D coordinates (Angstrom), bonds with their orders, formal
charges and the sanitised RDKit molecule. :func:`read_ligands` reads every record of a file.

Hydrogens: explicit hydrogens in the file are kept by default (``remove_hydrogens=False``) so that
chemistry perceived by RDKit (donors, aromaticity) sees them; :meth:`Ligand.without_hydrogens`
drops them afterwards while keeping the heavy-atom order of the file.

Bad input raises :class:`~tertiary.errors.ParseError` naming the file, the record and the problem
(for example a molecule RDKit cannot sanitise).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tertiary.errors import MissingDependencyError, ParseError, one_line

try:  # RDKit is the optional [ligand] extra.
    from rdkit import Chem, rdBase
except ImportError:  # pragma: no cover - exercised only without the extra
    Chem = None
    rdBase = None

#: RDKit bond type name -> bond order used in :attr:`Ligand.bond_orders` (aromatic = 1.5).
BOND_ORDERS: dict[str, float] = {"SINGLE": 1.0, "DOUBLE": 2.0, "TRIPLE": 3.0, "AROMATIC": 1.5}


@dataclass(frozen=True)
class Ligand:
    """One small molecule with 3D coordinates.

    Attributes:
        name: record title (SDF first line / MOL2 molecule name), may be empty.
        elements: atomic numbers ``[N_atom]`` (int64).
        positions: coordinates ``[N_atom, 3]`` in Angstrom (float64).
        bonds: atom index pairs ``[N_bond, 2]`` (int64, 0-based).
        bond_orders: ``[N_bond]`` 1, 2, 3, or 1.5 for aromatic (float64; 0 for other RDKit types).
        formal_charges: ``[N_atom]`` (int64).
        mol: the sanitised RDKit molecule, atoms in the same order as the arrays.
        source: file the ligand was read from and its record number (for messages).
    """

    name: str
    elements: np.ndarray
    positions: np.ndarray
    bonds: np.ndarray
    bond_orders: np.ndarray
    formal_charges: np.ndarray
    mol: object = field(repr=False, compare=False)
    source: str = ""

    @property
    def num_atoms(self) -> int:
        return int(self.elements.shape[0])

    @property
    def symbols(self) -> list[str]:
        """Element symbols, e.g. ``['C', 'N', 'Cl']``."""
        table = Chem.GetPeriodicTable()
        return [table.GetElementSymbol(int(z)) for z in self.elements]

    @property
    def heavy_mask(self) -> np.ndarray:
        """``[N_atom]`` True for non-hydrogen atoms."""
        return self.elements != 1

    def without_hydrogens(self) -> Ligand:
        """The same ligand with hydrogen atoms (and their bonds) removed, heavy-atom order kept."""
        keep = self.heavy_mask
        if keep.all():
            return self
        new_index = np.full(self.num_atoms, -1, dtype=np.int64)
        new_index[keep] = np.arange(int(keep.sum()))
        bond_keep = keep[self.bonds[:, 0]] & keep[self.bonds[:, 1]] if len(self.bonds) else np.zeros(0, bool)
        mol = Chem.RemoveHs(self.mol, sanitize=False)
        return replace(
            self,
            elements=self.elements[keep],
            positions=self.positions[keep],
            bonds=new_index[self.bonds[bond_keep]].reshape(-1, 2),
            bond_orders=self.bond_orders[bond_keep],
            formal_charges=self.formal_charges[keep],
            mol=mol,
        )


def _require_rdkit() -> None:
    if Chem is None:
        raise MissingDependencyError("reading ligands needs RDKit: pip install 'tertiary[ligand]'")


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ligand file ({exc.strerror or exc})") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ParseError(f"{path}: corrupt gzip data ({exc})") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for ext, fmt in ((".sdf", "sdf"), (".sd", "sdf"), (".mol", "sdf"), (".mol2", "mol2")):
        if name.endswith(ext):
            return fmt
    raise ParseError(f"{path}: unknown ligand format (expected .sdf, .sd, .mol or .mol2, optionally .gz)")


def _sdf_blocks(text: str) -> list[str]:
    blocks = []
    for i, chunk in enumerate(text.split("$$$$")):
        if i > 0:  # drop the end of the "$$$$" line only: a record's title line may be blank
            chunk = chunk[2:] if chunk.startswith("\r\n") else chunk[1:] if chunk.startswith("\n") else chunk
        if chunk.strip():
            blocks.append(chunk)
    return blocks


def _mol2_blocks(text: str) -> list[str]:
    marker = "@<TRIPOS>MOLECULE"
    parts = text.split(marker)
    return [marker + p for p in parts[1:] if p.strip()]


def _to_ligand(mol: object, source: str, remove_hydrogens: bool) -> Ligand:
    if mol.GetNumAtoms() == 0:
        raise ParseError(f"{source}: molecule has no atoms")
    if mol.GetNumConformers() == 0:
        raise ParseError(f"{source}: molecule has no coordinates")
    pos = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    if not np.isfinite(pos).all():
        raise ParseError(f"{source}: non-finite coordinates")
    if np.abs(pos).max() > 1e5:
        raise ParseError(f"{source}: absurd coordinates (|x| > 1e5 A)")
    elements = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    if (elements == 0).any():
        bad = int(np.flatnonzero(elements == 0)[0]) + 1
        raise ParseError(f"{source}: atom {bad} has an unknown element")
    charges = np.array([a.GetFormalCharge() for a in mol.GetAtoms()], dtype=np.int64)
    bonds = np.array(
        [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()], dtype=np.int64
    ).reshape(-1, 2)
    orders = np.array([BOND_ORDERS.get(str(b.GetBondType()), 0.0) for b in mol.GetBonds()], dtype=np.float64)
    name = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
    lig = Ligand(name, elements, pos, bonds, orders, charges, mol, source)
    return lig.without_hydrogens() if remove_hydrogens else lig


def _parse_block(block: str, fmt: str, source: str, sanitize: bool) -> object:
    with rdBase.BlockLogs():
        if fmt == "sdf":
            mol = Chem.MolFromMolBlock(block, sanitize=False, removeHs=False, strictParsing=False)
        else:
            mol = Chem.MolFromMol2Block(block, sanitize=False, removeHs=False)
    if mol is None:
        raise ParseError(f"{source}: RDKit cannot parse the record (malformed {fmt.upper()} block)")
    if sanitize:
        try:
            with rdBase.BlockLogs():
                Chem.SanitizeMol(mol)
        except Exception as exc:  # RDKit raises several MolSanitizeException subclasses
            msg = one_line(exc)
            raise ParseError(f"{source}: RDKit cannot sanitise the molecule ({msg})") from exc
    return mol


def read_ligands(
    path: str | os.PathLike, *, remove_hydrogens: bool = False, sanitize: bool = True
) -> list[Ligand]:
    """Every record of an SDF / MOL / MOL2 file (gzip allowed).

    Raises:
        ParseError: unreadable file, no record, a record RDKit cannot parse or sanitise
            (the message names the file and the 1-based record number).
    """
    _require_rdkit()
    path = Path(path)
    fmt = _format(path)
    text = _read_text(path)
    blocks = _sdf_blocks(text) if fmt == "sdf" else _mol2_blocks(text)
    if not blocks:
        raise ParseError(f"{path}: no molecule record found")
    out = []
    for i, block in enumerate(blocks, start=1):
        source = f"{path} record {i}"
        mol = _parse_block(block, fmt, source, sanitize)
        out.append(_to_ligand(mol, source, remove_hydrogens))
    return out


def read_ligand(
    path: str | os.PathLike, *, record: int = 1, remove_hydrogens: bool = False, sanitize: bool = True
) -> Ligand:
    """One record (1-based ``record``) of an SDF / MOL / MOL2 file; see :func:`read_ligands`."""
    _require_rdkit()
    path = Path(path)
    fmt = _format(path)
    text = _read_text(path)
    blocks = _sdf_blocks(text) if fmt == "sdf" else _mol2_blocks(text)
    if not blocks:
        raise ParseError(f"{path}: no molecule record found")
    if not 1 <= record <= len(blocks):
        raise ParseError(f"{path}: record {record} requested but the file has {len(blocks)}")
    source = f"{path} record {record}"
    return _to_ligand(_parse_block(blocks[record - 1], fmt, source, sanitize), source, remove_hydrogens)
