"""Columnar atom records read from a structure file, before residues are assembled.

:class:`AtomSites` is the common output of the PDB reader (:mod:`tertiary.pdb_io`) and the
mmCIF reader (:mod:`tertiary.mmcif_io`); :mod:`tertiary.protein` turns it into a
:class:`~tertiary.protein.Protein`. String columns are numpy byte-string arrays (``S``
dtype, stripped, upper/lower case as in the file) so that the readers stay vectorised.

:func:`read_structure_bytes` sniffs the format (gzip by magic bytes, mmCIF by its ``data_``
header or ``_atom_site.`` items, PDB otherwise) and dispatches to the right reader.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tertiary.errors import InputError, ParseError

#: Element symbols (upper case) accepted in element columns.
ELEMENTS: frozenset[str] = frozenset(
    """H D T HE LI BE B C N O F NE NA MG AL SI P S CL AR K CA SC TI V CR MN FE CO NI CU ZN GA
    GE AS SE BR KR RB SR Y ZR NB MO TC RU RH PD AG CD IN SN SB TE I XE CS BA LA CE PR ND PM SM
    EU GD TB DY HO ER TM YB LU HF TA W RE OS IR PT AU HG TL PB BI PO AT RN FR RA AC TH PA U NP
    PU AM CM BK CF ES FM MD NO LR RF DB SG BH HS MT DS RG CN NH FL MC LV TS OG X""".split()
)

#: Residue names of water molecules (dropped when reading).
WATER_NAMES: frozenset[str] = frozenset({"HOH", "WAT", "H2O", "DOD", "D2O", "TIP", "TIP3", "SOL"})

#: Record names that start a PDB file (the format is decided without scanning further).
_PDB_RECORDS = frozenset(
    b"ATOM HETATM HEADER REMARK TITLE COMPND SOURCE KEYWDS EXPDTA AUTHOR REVDAT JRNL CRYST1 "
    b"MODEL SEQRES OBSLTE SPLIT CAVEAT NUMMDL MDLTYP SPRSDE DBREF HELIX SHEET ORIGX1 SCALE1 "
    b"HET HETNAM FORMUL SSBOND LINK TER END".split()
)

#: Coordinates beyond this magnitude (Angstrom) are rejected as absurd.
MAX_ABS_COORDINATE = 1.0e5


@dataclass(frozen=True)
class AtomSites:
    """Atom records of one model of a structure file (``M`` rows, file order).

    Attributes:
        source: file name (or ``<string>``) used in error messages.
        record: [M] int64, 1-based line number (PDB) or 1-based row of ``_atom_site`` (mmCIF).
        record_kind: ``"line"`` or ``"_atom_site row"``, how to name ``record`` in messages.
        model: the 1-based ordinal of the model these atoms belong to.
        n_models: number of models in the file.
        het: [M] bool, HETATM record.
        atom_name, altloc, resname, chain_id, icode, element: [M] byte strings (stripped;
            ``element`` upper case, ``b""`` when unknown).
        resseq: [M] int64 author residue number.
        xyz: [M, 3] float64 coordinates in Angstrom.
        occupancy, b_factor: [M] float32.
    """

    source: str
    record: np.ndarray
    record_kind: str
    model: int
    n_models: int
    het: np.ndarray
    atom_name: np.ndarray
    altloc: np.ndarray
    resname: np.ndarray
    chain_id: np.ndarray
    resseq: np.ndarray
    icode: np.ndarray
    xyz: np.ndarray
    occupancy: np.ndarray
    b_factor: np.ndarray
    element: np.ndarray

    def __len__(self) -> int:
        return len(self.record)

    def where(self, row: int) -> str:
        """``"file: line 12"`` for row ``row`` (for messages)."""
        return f"{self.source}: {self.record_kind} {int(self.record[row])}"

    def take(self, index: np.ndarray) -> AtomSites:
        """Rows ``index`` (boolean mask or integer indices) as a new table."""
        cols = {
            name: getattr(self, name)[index]
            for name in (
                "record", "het", "atom_name", "altloc", "resname", "chain_id", "resseq",
                "icode", "xyz", "occupancy", "b_factor", "element",
            )
        }
        return AtomSites(
            source=self.source, record_kind=self.record_kind, model=self.model,
            n_models=self.n_models, **cols,
        )


def check_coordinates(sites: AtomSites) -> None:
    """Raise :class:`ParseError` on NaN / infinite / absurdly large coordinates."""
    bad = ~np.isfinite(sites.xyz).all(axis=1) | (np.abs(sites.xyz) > MAX_ABS_COORDINATE).any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ParseError(
            f"{sites.where(row)}: invalid coordinates {tuple(float(v) for v in sites.xyz[row])} "
            f"(atom {sites.atom_name[row].decode(errors='replace')!r}; "
            f"{int(bad.sum())} atom(s) with non-finite or |x| > {MAX_ABS_COORDINATE:g} A)"
        )


def decompress(data: bytes, source: str) -> bytes:
    """Inflate gzip data (detected by its magic bytes); other data is returned unchanged."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ParseError(f"{source}: corrupt or truncated gzip data ({exc})") from exc


def sniff_format(data: bytes, name: str = "") -> str:
    """``"mmcif"`` or ``"pdb"`` for (decompressed) file contents, using the content first and
    the file name (``.cif`` / ``.mmcif``) when the content is ambiguous."""
    head = data[:4096].lstrip()
    if head.startswith(b"data_"):
        return "mmcif"
    if head[:6].rstrip() in _PDB_RECORDS:
        return "pdb"
    if data.find(b"\n_atom_site.", 0, 4_000_000) >= 0:
        return "mmcif"
    lower = name.lower().removesuffix(".gz")
    if lower.endswith((".cif", ".mmcif")) and not head.startswith((b"ATOM", b"HETATM", b"HEADER")):
        return "mmcif"
    return "pdb"


def read_file_bytes(path: str | os.PathLike[str]) -> bytes:
    """Raw bytes of ``path`` with file-system errors turned into :class:`InputError`."""
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{p}: no such file") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{p}: is a directory, not a structure file") from exc
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from exc


def read_structure_bytes(
    data: bytes, source: str, model: int = 1, fmt: str | None = None
) -> AtomSites:
    """Atom records of model ``model`` (1-based ordinal) of a PDB / mmCIF file (optionally
    gzip-compressed) given as bytes. ``fmt`` forces ``"pdb"`` or ``"mmcif"``."""
    from tertiary import mmcif_io, pdb_io  # the readers import this module

    data = decompress(data, source)
    if not data.strip():
        raise ParseError(f"{source}: empty file")
    if model < 1:
        raise InputError(f"{source}: model must be >= 1 (got {model})")
    fmt = fmt or sniff_format(data, source)
    if fmt == "mmcif":
        sites = mmcif_io.read_mmcif_sites(data, source, model)
    elif fmt == "pdb":
        sites = pdb_io.read_pdb_sites(data, source, model)
    else:
        raise InputError(f"{source}: unknown structure format {fmt!r} (use 'pdb' or 'mmcif')")
    check_coordinates(sites)
    return sites
