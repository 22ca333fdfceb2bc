"""Residue and atom tables following AlphaFold2's conventions.

Everything here is a fact about the 20 standard amino acids (names, atom orders, ideal
geometry from Engh & Huber) laid out the way AlphaFold2 expects it:

- residue types in AlphaFold2 order (``RESTYPES``, index 20 = unknown ``X``);
- the 37-slot atom order (``ATOM_TYPES``, "atom37") and the compact 14-slot per-residue order
  (``RESTYPE_NAME_TO_ATOM14_NAMES``, "atom14");
- the 8 rigid groups per residue (0 backbone, 1 pre-omega, 2 phi, 3 psi, 4-7 chi1-chi4), the
  ideal atom positions in their group frame (Angstrom) and the default frames of each group
  relative to its parent (``RESTYPE_RIGID_GROUP_DEFAULT_FRAME``);
- chi-angle atom definitions, pi-periodic chis, ambiguous (symmetric) atom names;
- bond-length and bond-angle statistics used by the structural-violation loss;
- the HHblits alphabet used in MSAs.

All numpy arrays are built once at import and must be treated as read-only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# --------------------------------------------------------------------------------------------
# Residue vocabulary
# --------------------------------------------------------------------------------------------

#: The 20 standard amino acids, one-letter codes, in AlphaFold2 order (alphabetical by the
#: three-letter code: ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP
#: TYR VAL).
RESTYPES: tuple[str, ...] = tuple("ARNDCQEGHILKMFPSTWYV")
RESTYPE_NUM = len(RESTYPES)  # 20
#: Index of the unknown residue type ``X`` / ``UNK``.
UNK_INDEX = RESTYPE_NUM
RESTYPES_WITH_X: tuple[str, ...] = RESTYPES + ("X",)
RESTYPE_ORDER: dict[str, int] = {r: i for i, r in enumerate(RESTYPES)}
RESTYPE_ORDER_WITH_X: dict[str, int] = {r: i for i, r in enumerate(RESTYPES_WITH_X)}

RESTYPE_1TO3: dict[str, str] = dict(
    zip(
        RESTYPES,
        "ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL".split(),
    )
)
RESTYPE_3TO1: dict[str, str] = {three: one for one, three in RESTYPE_1TO3.items()}
UNK_RESNAME = "UNK"
#: Three-letter names indexed by residue type (21 entries, last = ``UNK``).
RESNAMES: tuple[str, ...] = tuple(RESTYPE_1TO3[r] for r in RESTYPES) + (UNK_RESNAME,)
RESNAME_TO_INDEX: dict[str, int] = {name: i for i, name in enumerate(RESNAMES)}

#: Common modified residues -> (parent three-letter name, {atom renames}). Residues not listed
#: here and not standard become ``X`` (``UNK``) when read as part of a polymer chain.
MODIFIED_RESIDUES: dict[str, tuple[str, dict[str, str]]] = {
    "MSE": ("MET", {"SE": "SD"}),  # selenomethionine
    "SEC": ("CYS", {"SE": "SG"}),  # selenocysteine
    "FME": ("MET", {}),  # N-formylmethionine
    "MHO": ("MET", {}),  # methionine sulfoxide
    "SME": ("MET", {}),
    "SEP": ("SER", {}),  # phosphoserine
    "TPO": ("THR", {}),  # phosphothreonine
    "PTR": ("TYR", {}),  # phosphotyrosine
    "TYS": ("TYR", {}),  # sulfotyrosine
    "HYP": ("PRO", {}),  # hydroxyproline
    "MLY": ("LYS", {}),  # dimethyllysine
    "M3L": ("LYS", {}),  # trimethyllysine
    "MLZ": ("LYS", {}),  # monomethyllysine
    "ALY": ("LYS", {}),  # acetyllysine
    "KCX": ("LYS", {}),  # carbamylated lysine
    "LLP": ("LYS", {}),  # lysine-pyridoxal phosphate
    "CSO": ("CYS", {}),  # S-hydroxycysteine
    "CSD": ("CYS", {}),  # cysteine sulfinic acid
    "CSX": ("CYS", {}),
    "CME": ("CYS", {}),
    "OCS": ("CYS", {}),  # cysteic acid
    "CAS": ("CYS", {}),
    "YCM": ("CYS", {}),
    "CGU": ("GLU", {}),  # gamma-carboxyglutamate
    "PCA": ("GLU", {}),  # pyroglutamate (CCD parent GLU)
    "HIC": ("HIS", {}),  # methylhistidine
    "NEP": ("HIS", {}),
    "HIP": ("HIS", {}),
    "MLE": ("LEU", {}),  # N-methylleucine
    "NLE": ("LEU", {}),  # norleucine
    "MVA": ("VAL", {}),
    "AIB": ("ALA", {}),  # aminoisobutyric acid
    "ABA": ("ALA", {}),  # aminobutyric acid
    "SAR": ("GLY", {}),  # sarcosine
    "DAL": ("ALA", {}),  # D-amino acids
    "DAR": ("ARG", {}),
    "DSG": ("ASN", {}),
    "DAS": ("ASP", {}),
    "DCY": ("CYS", {}),
    "DGN": ("GLN", {}),
    "DGL": ("GLU", {}),
    "DHI": ("HIS", {}),
    "DIL": ("ILE", {}),
    "DLE": ("LEU", {}),
    "DLY": ("LYS", {}),
    "MED": ("MET", {}),
    "DPN": ("PHE", {}),
    "DPR": ("PRO", {}),
    "DSN": ("SER", {}),
    "DTH": ("THR", {}),
    "DTR": ("TRP", {}),
    "DTY": ("TYR", {}),
    "DVA": ("VAL", {}),
}

# --------------------------------------------------------------------------------------------
# Atom orders
# --------------------------------------------------------------------------------------------

#: The 37 heavy-atom names of the "atom37" representation, in AlphaFold2 order.
ATOM_TYPES: tuple[str, ...] = tuple(
    "N CA C CB O CG CG1 CG2 OG OG1 SG CD CD1 CD2 ND1 ND2 OD1 OD2 SD CE CE1 CE2 CE3 NE NE1 NE2 "
    "OE1 OE2 CH2 NH1 NH2 OH CZ CZ2 CZ3 NZ OXT".split()
)
ATOM_ORDER: dict[str, int] = {a: i for i, a in enumerate(ATOM_TYPES)}
ATOM_TYPE_NUM = len(ATOM_TYPES)  # 37
ATOM14_NUM = 14

_ATOM14 = {
    "ALA": "N CA C O CB",
    "ARG": "N CA C O CB CG CD NE CZ NH1 NH2",
    "ASN": "N CA C O CB CG OD1 ND2",
    "ASP": "N CA C O CB CG OD1 OD2",
    "CYS": "N CA C O CB SG",
    "GLN": "N CA C O CB CG CD OE1 NE2",
    "GLU": "N CA C O CB CG CD OE1 OE2",
    "GLY": "N CA C O",
    "HIS": "N CA C O CB CG ND1 CD2 CE1 NE2",
    "ILE": "N CA C O CB CG1 CG2 CD1",
    "LEU": "N CA C O CB CG CD1 CD2",
    "LYS": "N CA C O CB CG CD CE NZ",
    "MET": "N CA C O CB CG SD CE",
    "PHE": "N CA C O CB CG CD1 CD2 CE1 CE2 CZ",
    "PRO": "N CA C O CB CG CD",
    "SER": "N CA C O CB OG",
    "THR": "N CA C O CB OG1 CG2",
    "TRP": "N CA C O CB CG CD1 CD2 NE1 CE2 CE3 CZ2 CZ3 CH2",
    "TYR": "N CA C O CB CG CD1 CD2 CE1 CE2 CZ OH",
    "VAL": "N CA C O CB CG1 CG2",
    "UNK": "",
}
#: Three-letter name (including ``UNK``) -> the 14 atom14 slot names, ``''`` for empty slots.
RESTYPE_NAME_TO_ATOM14_NAMES: dict[str, tuple[str, ...]] = {
    name: tuple(atoms.split()) + ("",) * (ATOM14_NUM - len(atoms.split()))
    for name, atoms in _ATOM14.items()
}
#: Three-letter name -> heavy atoms of the residue inside a chain (no OXT), atom14 order.
RESIDUE_ATOMS: dict[str, tuple[str, ...]] = {
    name: tuple(a for a in atoms if a) for name, atoms in RESTYPE_NAME_TO_ATOM14_NAMES.items()
    if name != UNK_RESNAME
}

#: Element of every atom name used above (first letter for protein heavy atoms).
ATOM_ELEMENT: dict[str, str] = {a: a[0] for a in ATOM_TYPES}

# --------------------------------------------------------------------------------------------
# Chi angles
# --------------------------------------------------------------------------------------------

_CHI = {
    "ALA": "",
    # chi5 of arginine is planar (0 +- 5 degrees) and therefore not modelled.
    "ARG": "N CA CB CG, CA CB CG CD, CB CG CD NE, CG CD NE CZ",
    "ASN": "N CA CB CG, CA CB CG OD1",
    "ASP": "N CA CB CG, CA CB CG OD1",
    "CYS": "N CA CB SG",
    "GLN": "N CA CB CG, CA CB CG CD, CB CG CD OE1",
    "GLU": "N CA CB CG, CA CB CG CD, CB CG CD OE1",
    "GLY": "",
    "HIS": "N CA CB CG, CA CB CG ND1",
    "ILE": "N CA CB CG1, CA CB CG1 CD1",
    "LEU": "N CA CB CG, CA CB CG CD1",
    "LYS": "N CA CB CG, CA CB CG CD, CB CG CD CE, CG CD CE NZ",
    "MET": "N CA CB CG, CA CB CG SD, CB CG SD CE",
    "PHE": "N CA CB CG, CA CB CG CD1",
    "PRO": "N CA CB CG, CA CB CG CD",
    "SER": "N CA CB OG",
    "THR": "N CA CB OG1",
    "TRP": "N CA CB CG, CA CB CG CD1",
    "TYR": "N CA CB CG, CA CB CG CD1",
    "VAL": "N CA CB CG1",
}
#: Three-letter name -> list of chi1..chiK definitions, each 4 atom names.
CHI_ANGLES_ATOMS: dict[str, list[list[str]]] = {
    name: [chi.split() for chi in spec.split(",")] if spec else [] for name, spec in _CHI.items()
}
#: [21, 4] 1.0 where the residue type has that chi angle (row 20 = UNK, all zero).
CHI_ANGLES_MASK: list[list[float]] = [
    [1.0 if k < len(CHI_ANGLES_ATOMS[RESNAMES[r]]) else 0.0 for k in range(4)]
    for r in range(RESTYPE_NUM)
] + [[0.0] * 4]

_PI_PERIODIC = {"ASP": 1, "GLU": 2, "PHE": 1, "TYR": 1}  # residue -> chi index (0-based)
#: [21, 4] 1.0 where the chi angle is pi-periodic (symmetric terminal group).
CHI_PI_PERIODIC: list[list[float]] = [
    [1.0 if _PI_PERIODIC.get(RESNAMES[r]) == k else 0.0 for k in range(4)] for r in range(21)
]

# --------------------------------------------------------------------------------------------
# Ideal atom positions in their rigid-group frames
# --------------------------------------------------------------------------------------------
# Groups: 0 backbone, 1 pre-omega (empty), 2 phi (hydrogens only, empty), 3 psi, 4-7 chi1-chi4.
# Positions (Angstrom) are relative to the frame of the group: its origin is the axis-end atom
# of the torsion, x points along the rotation axis and the atom defining the torsion lies in
# the xy-plane with y > 0. Backbone frame: origin CA, x towards C, N in the xy-plane.

#: Three-letter name -> tuple of (atom name, rigid group index, (x, y, z) in Angstrom).
RIGID_GROUP_ATOM_POSITIONS: dict[str, tuple[tuple[str, int, tuple[float, float, float]], ...]] = {
    'ALA': (
        ('N', 0, (-0.525, 1.363, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.526, 0.000, 0.000)),
        ('CB', 0, (-0.529, -0.774, -1.205)),
        ('O', 3, (0.627, 1.062, 0.000)),
    ),
    'ARG': (
        ('N', 0, (-0.524, 1.362, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.525, 0.000, 0.000)),
        ('CB', 0, (-0.524, -0.778, -1.209)),
        ('O', 3, (0.626, 1.062, 0.000)),
        ('CG', 4, (0.616, 1.390, 0.000)),
        ('CD', 5, (0.564, 1.414, 0.000)),
        ('NE', 6, (0.539, 1.357, 0.000)),
        ('NH1', 7, (0.206, 2.301, 0.000)),
        ('NH2', 7, (2.078, 0.978, 0.000)),
        ('CZ', 7, (0.758, 1.093, 0.000)),
    ),
    'ASN': (
        ('N', 0, (-0.536, 1.357, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.526, 0.000, 0.000)),
        ('CB', 0, (-0.531, -0.787, -1.200)),
        ('O', 3, (0.625, 1.062, 0.000)),
        ('CG', 4, (0.584, 1.399, 0.000)),
        ('ND2', 5, (0.593, -1.188, 0.001)),
        ('OD1', 5, (0.633, 1.059, 0.000)),
    ),
    'ASP': (
        ('N', 0, (-0.525, 1.362, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.527, 0.000, 0.000)),
        ('CB', 0, (-0.526, -0.778, -1.208)),
        ('O', 3, (0.626, 1.062, 0.000)),
        ('CG', 4, (0.593, 1.398, 0.000)),
        ('OD1', 5, (0.610, 1.091, 0.000)),
        ('OD2', 5, (0.592, -1.101, -0.003)),
    ),
    'CYS': (
        ('N', 0, (-0.522, 1.362, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.524, 0.000, 0.000)),
        ('CB', 0, (-0.519, -0.773, -1.212)),
        ('O', 3, (0.625, 1.062, 0.000)),
        ('SG', 4, (0.728, 1.653, 0.000)),
    ),
    'GLN': (
        ('N', 0, (-0.526, 1.361, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.526, 0.000, 0.000)),
        ('CB', 0, (-0.525, -0.779, -1.207)),
        ('O', 3, (0.626, 1.062, 0.000)),
        ('CG', 4, (0.615, 1.393, 0.000)),
        ('CD', 5, (0.587, 1.399, 0.000)),
        ('NE2', 6, (0.593, -1.189, -0.001)),
        ('OE1', 6, (0.634, 1.060, 0.000)),
    ),
    'GLU': (
        ('N', 0, (-0.528, 1.361, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.526, 0.000, 0.000)),
        ('CB', 0, (-0.526, -0.781, -1.207)),
        ('O', 3, (0.626, 1.062, 0.000)),
        ('CG', 4, (0.615, 1.392, 0.000)),
        ('CD', 5, (0.600, 1.397, 0.000)),
        ('OE1', 6, (0.607, 1.095, 0.000)),
        ('OE2', 6, (0.589, -1.104, -0.001)),
    ),
    'GLY': (
        ('N', 0, (-0.572, 1.337, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.517, 0.000, 0.000)),
        ('O', 3, (0.626, 1.062, 0.000)),
    ),
    'HIS': (
        ('N', 0, (-0.527, 1.360, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.525, 0.000, 0.000)),
        ('CB', 0, (-0.525, -0.778, -1.208)),
        ('O', 3, (0.625, 1.063, 0.000)),
        ('CG', 4, (0.600, 1.370, 0.000)),
        ('CD2', 5, (0.889, -1.021, 0.003)),
        ('ND1', 5, (0.744, 1.160, 0.000)),
        ('CE1', 5, (2.030, 0.851, 0.002)),
        ('NE2', 5, (2.145, -0.466, 0.004)),
    ),
    'ILE': (
        ('N', 0, (-0.493, 1.373, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.527, 0.000, 0.000)),
        ('CB', 0, (-0.536, -0.793, -1.213)),
        ('O', 3, (0.627, 1.062, 0.000)),
        ('CG1', 4, (0.534, 1.437, 0.000)),
        ('CG2', 4, (0.540, -0.785, -1.199)),
        ('CD1', 5, (0.619, 1.391, 0.000)),
    ),
    'LEU': (
        ('N', 0, (-0.520, 1.363, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.525, 0.000, 0.000)),
        ('CB', 0, (-0.522, -0.773, -1.214)),
        ('O', 3, (0.625, 1.063, 0.000)),
        ('CG', 4, (0.678, 1.371, 0.000)),
        ('CD1', 5, (0.530, 1.430, 0.000)),
        ('CD2', 5, (0.535, -0.774, 1.200)),
    ),
    'LYS': (
        ('N', 0, (-0.526, 1.362, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.526, 0.000, 0.000)),
        ('CB', 0, (-0.524, -0.778, -1.208)),
        ('O', 3, (0.626, 1.062, 0.000)),
        ('CG', 4, (0.619, 1.390, 0.000)),
        ('CD', 5, (0.559, 1.417, 0.000)),
        ('CE', 6, (0.560, 1.416, 0.000)),
        ('NZ', 7, (0.554, 1.387, 0.000)),
    ),
    'MET': (
        ('N', 0, (-0.521, 1.364, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.525, 0.000, 0.000)),
        ('CB', 0, (-0.523, -0.776, -1.210)),
        ('O', 3, (0.625, 1.062, 0.000)),
        ('CG', 4, (0.613, 1.391, 0.000)),
        ('SD', 5, (0.703, 1.695, 0.000)),
        ('CE', 6, (0.320, 1.786, 0.000)),
    ),
    'PHE': (
        ('N', 0, (-0.518, 1.363, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.524, 0.000, 0.000)),
        ('CB', 0, (-0.525, -0.776, -1.212)),
        ('O', 3, (0.626, 1.062, 0.000)),
        ('CG', 4, (0.607, 1.377, 0.000)),
        ('CD1', 5, (0.709, 1.195, 0.000)),
        ('CD2', 5, (0.706, -1.196, 0.000)),
        ('CE1', 5, (2.102, 1.198, 0.000)),
        ('CE2', 5, (2.098, -1.201, 0.000)),
        ('CZ', 5, (2.794, -0.003, -0.001)),
    ),
    'PRO': (
        ('N', 0, (-0.566, 1.351, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.527, 0.000, 0.000)),
        ('CB', 0, (-0.546, -0.611, -1.293)),
        ('O', 3, (0.621, 1.066, 0.000)),
        ('CG', 4, (0.382, 1.445, 0.000)),
        ('CD', 5, (0.477, 1.424, 0.000)),
    ),
    'SER': (
        ('N', 0, (-0.529, 1.360, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.525, 0.000, 0.000)),
        ('CB', 0, (-0.518, -0.777, -1.211)),
        ('O', 3, (0.626, 1.062, 0.000)),
        ('OG', 4, (0.503, 1.325, 0.000)),
    ),
    'THR': (
        ('N', 0, (-0.517, 1.364, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.526, 0.000, 0.000)),
        ('CB', 0, (-0.516, -0.793, -1.215)),
        ('O', 3, (0.626, 1.062, 0.000)),
        ('CG2', 4, (0.550, -0.718, -1.228)),
        ('OG1', 4, (0.472, 1.353, 0.000)),
    ),
    'TRP': (
        ('N', 0, (-0.521, 1.363, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.525, 0.000, 0.000)),
        ('CB', 0, (-0.523, -0.776, -1.212)),
        ('O', 3, (0.627, 1.062, 0.000)),
        ('CG', 4, (0.609, 1.370, 0.000)),
        ('CD1', 5, (0.824, 1.091, 0.000)),
        ('CD2', 5, (0.854, -1.148, -0.005)),
        ('CE2', 5, (2.186, -0.678, -0.007)),
        ('CE3', 5, (0.622, -2.530, -0.007)),
        ('NE1', 5, (2.140, 0.690, -0.004)),
        ('CH2', 5, (3.028, -2.890, -0.013)),
        ('CZ2', 5, (3.283, -1.543, -0.011)),
        ('CZ3', 5, (1.715, -3.389, -0.011)),
    ),
    'TYR': (
        ('N', 0, (-0.522, 1.362, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.524, 0.000, 0.000)),
        ('CB', 0, (-0.522, -0.776, -1.213)),
        ('O', 3, (0.627, 1.062, 0.000)),
        ('CG', 4, (0.607, 1.382, 0.000)),
        ('CD1', 5, (0.716, 1.195, 0.000)),
        ('CD2', 5, (0.713, -1.194, -0.001)),
        ('CE1', 5, (2.107, 1.200, -0.002)),
        ('CE2', 5, (2.104, -1.201, -0.003)),
        ('OH', 5, (4.168, -0.002, -0.005)),
        ('CZ', 5, (2.791, -0.001, -0.003)),
    ),
    'VAL': (
        ('N', 0, (-0.494, 1.373, 0.000)),
        ('CA', 0, (0.000, 0.000, 0.000)),
        ('C', 0, (1.527, 0.000, 0.000)),
        ('CB', 0, (-0.533, -0.795, -1.213)),
        ('O', 3, (0.627, 1.062, 0.000)),
        ('CG1', 4, (0.540, 1.429, 0.000)),
        ('CG2', 4, (0.533, -0.776, 1.203)),
    ),}

# --------------------------------------------------------------------------------------------
# Ambiguous atom names
# --------------------------------------------------------------------------------------------
# Symmetric side chains whose atom names may be swapped without changing the structure.
# (LEU, VAL and ARG are symmetric too, but their naming is fixed by the neighbouring atoms.)

#: Three-letter name -> {atom: symmetric partner} (each pair listed once).
RESIDUE_ATOM_RENAMING_SWAPS: dict[str, dict[str, str]] = {
    "ASP": {"OD1": "OD2"},
    "GLU": {"OE1": "OE2"},
    "PHE": {"CD1": "CD2", "CE1": "CE2"},
    "TYR": {"CD1": "CD2", "CE1": "CE2"},
}

# --------------------------------------------------------------------------------------------
# Stereochemistry (structural-violation loss)
# --------------------------------------------------------------------------------------------

#: Van der Waals radii in Angstrom by element.
VAN_DER_WAALS_RADIUS: dict[str, float] = {"C": 1.7, "N": 1.55, "O": 1.52, "S": 1.8}

#: Distance between consecutive CA atoms for a trans peptide (omega = 180 deg), Angstrom.
CA_CA = 3.80209737096

#: Peptide C(i)-N(i+1) bond length and its stddev (Angstrom): index 0 general, 1 before proline.
BETWEEN_RES_BOND_LENGTH_C_N: tuple[float, float] = (1.329, 1.341)
BETWEEN_RES_BOND_LENGTH_STDDEV_C_N: tuple[float, float] = (0.014, 0.016)
#: Cosine of the C(i)-N(i+1)-CA(i+1) angle (121.352 +- 2.315 deg): (mean, stddev).
BETWEEN_RES_COS_ANGLES_C_N_CA: tuple[float, float] = (-0.5203, 0.0353)
#: Cosine of the CA(i)-C(i)-N(i+1) angle (116.568 +- 1.995 deg): (mean, stddev).
BETWEEN_RES_COS_ANGLES_CA_C_N: tuple[float, float] = (-0.4473, 0.0311)


class Bond(NamedTuple):
    """A bond (or virtual bond) length with its standard deviation, Angstrom."""

    atom1_name: str
    atom2_name: str
    length: float
    stddev: float


class BondAngle(NamedTuple):
    """A bond angle atom1-atom2-atom3 with its standard deviation, radians."""

    atom1_name: str
    atom2_name: str
    atom3_name: str
    angle_rad: float
    stddev: float


# Engh & Huber statistics as used by AlphaFold2 ("stereo_chemical_props"). One residue per
# entry (continuation lines are indented): "ATOMS:MEAN:STDDEV"; lengths in Angstrom, angles
# in degrees.
_BOND_TABLE = """
ALA CA-CB:1.520:0.021 N-CA:1.459:0.020 CA-C:1.525:0.026 C-O:1.229:0.019
ARG CA-CB:1.535:0.022 CB-CG:1.521:0.027 CG-CD:1.515:0.025 CD-NE:1.460:0.017 NE-CZ:1.326:0.013
    CZ-NH1:1.326:0.013 CZ-NH2:1.326:0.013 N-CA:1.459:0.020 CA-C:1.525:0.026 C-O:1.229:0.019
ASN CA-CB:1.527:0.026 CB-CG:1.506:0.023 CG-OD1:1.235:0.022 CG-ND2:1.324:0.025 N-CA:1.459:0.020
    CA-C:1.525:0.026 C-O:1.229:0.019
ASP CA-CB:1.535:0.022 CB-CG:1.513:0.021 CG-OD1:1.249:0.023 CG-OD2:1.249:0.023 N-CA:1.459:0.020
    CA-C:1.525:0.026 C-O:1.229:0.019
CYS CA-CB:1.526:0.013 CB-SG:1.812:0.016 N-CA:1.459:0.020 CA-C:1.525:0.026 C-O:1.229:0.019
GLU CA-CB:1.535:0.022 CB-CG:1.517:0.019 CG-CD:1.515:0.015 CD-OE1:1.252:0.011 CD-OE2:1.252:0.011
    N-CA:1.459:0.020 CA-C:1.525:0.026 C-O:1.229:0.019
GLN CA-CB:1.535:0.022 CB-CG:1.521:0.027 CG-CD:1.506:0.023 CD-OE1:1.235:0.022 CD-NE2:1.324:0.025
    N-CA:1.459:0.020 CA-C:1.525:0.026 C-O:1.229:0.019
GLY N-CA:1.456:0.015 CA-C:1.514:0.016 C-O:1.232:0.016
HIS CA-CB:1.535:0.022 CB-CG:1.492:0.016 CG-ND1:1.369:0.015 CG-CD2:1.353:0.017
    ND1-CE1:1.343:0.025 CD2-NE2:1.415:0.021 CE1-NE2:1.322:0.023 N-CA:1.459:0.020
    CA-C:1.525:0.026 C-O:1.229:0.019
ILE CA-CB:1.544:0.023 CB-CG1:1.536:0.028 CB-CG2:1.524:0.031 CG1-CD1:1.500:0.069 N-CA:1.459:0.020
    CA-C:1.525:0.026 C-O:1.229:0.019
LEU CA-CB:1.533:0.023 CB-CG:1.521:0.029 CG-CD1:1.514:0.037 CG-CD2:1.514:0.037 N-CA:1.459:0.020
    CA-C:1.525:0.026 C-O:1.229:0.019
LYS CA-CB:1.535:0.022 CB-CG:1.521:0.027 CG-CD:1.520:0.034 CD-CE:1.508:0.025 CE-NZ:1.486:0.025
    N-CA:1.459:0.020 CA-C:1.525:0.026 C-O:1.229:0.019
MET CA-CB:1.535:0.022 CB-CG:1.509:0.032 CG-SD:1.807:0.026 SD-CE:1.774:0.056 N-CA:1.459:0.020
    CA-C:1.525:0.026 C-O:1.229:0.019
PHE CA-CB:1.535:0.022 CB-CG:1.509:0.017 CG-CD1:1.383:0.015 CG-CD2:1.383:0.015
    CD1-CE1:1.388:0.020 CD2-CE2:1.388:0.020 CE1-CZ:1.369:0.019 CE2-CZ:1.369:0.019
    N-CA:1.459:0.020 CA-C:1.525:0.026 C-O:1.229:0.019
PRO CA-CB:1.531:0.020 CB-CG:1.495:0.050 CG-CD:1.502:0.033 CD-N:1.474:0.014 N-CA:1.468:0.017
    CA-C:1.524:0.020 C-O:1.228:0.020
SER CA-CB:1.525:0.015 CB-OG:1.418:0.013 N-CA:1.459:0.020 CA-C:1.525:0.026 C-O:1.229:0.019
THR CA-CB:1.529:0.026 CB-OG1:1.428:0.020 CB-CG2:1.519:0.033 N-CA:1.459:0.020 CA-C:1.525:0.026
    C-O:1.229:0.019
TRP CA-CB:1.535:0.022 CB-CG:1.498:0.018 CG-CD1:1.363:0.014 CG-CD2:1.432:0.017
    CD1-NE1:1.375:0.017 NE1-CE2:1.371:0.013 CD2-CE2:1.409:0.012 CD2-CE3:1.399:0.015
    CE2-CZ2:1.393:0.017 CE3-CZ3:1.380:0.017 CZ2-CH2:1.369:0.019 CZ3-CH2:1.396:0.016
    N-CA:1.459:0.020 CA-C:1.525:0.026 C-O:1.229:0.019
TYR CA-CB:1.535:0.022 CB-CG:1.512:0.015 CG-CD1:1.387:0.013 CG-CD2:1.387:0.013
    CD1-CE1:1.389:0.015 CD2-CE2:1.389:0.015 CE1-CZ:1.381:0.013 CE2-CZ:1.381:0.013
    CZ-OH:1.374:0.017 N-CA:1.459:0.020 CA-C:1.525:0.026 C-O:1.229:0.019
VAL CA-CB:1.543:0.021 CB-CG1:1.524:0.021 CB-CG2:1.524:0.021 N-CA:1.459:0.020 CA-C:1.525:0.026
    C-O:1.229:0.019
"""
_ANGLE_TABLE = """
ALA N-CA-CB:110.1:1.4 CB-CA-C:110.1:1.5 N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
ARG N-CA-CB:110.6:1.8 CB-CA-C:110.4:2.0 CA-CB-CG:113.4:2.2 CB-CG-CD:111.6:2.6 CG-CD-NE:111.8:2.1
    CD-NE-CZ:123.6:1.4 NE-CZ-NH1:120.3:0.5 NE-CZ-NH2:120.3:0.5 NH1-CZ-NH2:119.4:1.1
    N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
ASN N-CA-CB:110.6:1.8 CB-CA-C:110.4:2.0 CA-CB-CG:113.4:2.2 CB-CG-ND2:116.7:2.4
    CB-CG-OD1:121.6:2.0 ND2-CG-OD1:121.9:2.3 N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
ASP N-CA-CB:110.6:1.8 CB-CA-C:110.4:2.0 CA-CB-CG:113.4:2.2 CB-CG-OD1:118.3:0.9
    CB-CG-OD2:118.3:0.9 OD1-CG-OD2:123.3:1.9 N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
CYS N-CA-CB:110.8:1.5 CB-CA-C:111.5:1.2 CA-CB-SG:114.2:1.1 N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
GLU N-CA-CB:110.6:1.8 CB-CA-C:110.4:2.0 CA-CB-CG:113.4:2.2 CB-CG-CD:114.2:2.7
    CG-CD-OE1:118.3:2.0 CG-CD-OE2:118.3:2.0 OE1-CD-OE2:123.3:1.2 N-CA-C:111.0:2.7
    CA-C-O:120.1:2.1
GLN N-CA-CB:110.6:1.8 CB-CA-C:110.4:2.0 CA-CB-CG:113.4:2.2 CB-CG-CD:111.6:2.6
    CG-CD-OE1:121.6:2.0 CG-CD-NE2:116.7:2.4 OE1-CD-NE2:121.9:2.3 N-CA-C:111.0:2.7
    CA-C-O:120.1:2.1
GLY N-CA-C:113.1:2.5 CA-C-O:120.6:1.8
HIS N-CA-CB:110.6:1.8 CB-CA-C:110.4:2.0 CA-CB-CG:113.6:1.7 CB-CG-ND1:123.2:2.5
    CB-CG-CD2:130.8:3.1 CG-ND1-CE1:108.2:1.4 ND1-CE1-NE2:109.9:2.2 CE1-NE2-CD2:106.6:2.5
    NE2-CD2-CG:109.2:1.9 CD2-CG-ND1:106.0:1.4 N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
ILE N-CA-CB:110.8:2.3 CB-CA-C:111.6:2.0 CA-CB-CG1:111.0:1.9 CB-CG1-CD1:113.9:2.8
    CA-CB-CG2:110.9:2.0 CG1-CB-CG2:111.4:2.2 N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
LEU N-CA-CB:110.4:2.0 CB-CA-C:110.2:1.9 CA-CB-CG:115.3:2.3 CB-CG-CD1:111.0:1.7
    CB-CG-CD2:111.0:1.7 CD1-CG-CD2:110.5:3.0 N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
LYS N-CA-CB:110.6:1.8 CB-CA-C:110.4:2.0 CA-CB-CG:113.4:2.2 CB-CG-CD:111.6:2.6 CG-CD-CE:111.9:3.0
    CD-CE-NZ:111.7:2.3 N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
MET N-CA-CB:110.6:1.8 CB-CA-C:110.4:2.0 CA-CB-CG:113.3:1.7 CB-CG-SD:112.4:3.0 CG-SD-CE:100.2:1.6
    N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
PHE N-CA-CB:110.6:1.8 CB-CA-C:110.4:2.0 CA-CB-CG:113.9:2.4 CB-CG-CD1:120.8:0.7
    CB-CG-CD2:120.8:0.7 CD1-CG-CD2:118.3:1.3 CG-CD1-CE1:120.8:1.1 CG-CD2-CE2:120.8:1.1
    CD1-CE1-CZ:120.1:1.2 CD2-CE2-CZ:120.1:1.2 CE1-CZ-CE2:120.0:1.8 N-CA-C:111.0:2.7
    CA-C-O:120.1:2.1
PRO N-CA-CB:103.3:1.2 CB-CA-C:111.7:2.1 CA-CB-CG:104.8:1.9 CB-CG-CD:106.5:3.9 CG-CD-N:103.2:1.5
    CA-N-CD:111.7:1.4 N-CA-C:112.1:2.6 CA-C-O:120.2:2.4
SER N-CA-CB:110.5:1.5 CB-CA-C:110.1:1.9 CA-CB-OG:111.2:2.7 N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
THR N-CA-CB:110.3:1.9 CB-CA-C:111.6:2.7 CA-CB-OG1:109.0:2.1 CA-CB-CG2:112.4:1.4
    OG1-CB-CG2:110.0:2.3 N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
TRP N-CA-CB:110.6:1.8 CB-CA-C:110.4:2.0 CA-CB-CG:113.7:1.9 CB-CG-CD1:127.0:1.3
    CB-CG-CD2:126.6:1.3 CD1-CG-CD2:106.3:0.8 CG-CD1-NE1:110.1:1.0 CD1-NE1-CE2:109.0:0.9
    NE1-CE2-CD2:107.3:1.0 CE2-CD2-CG:107.3:0.8 CG-CD2-CE3:133.9:0.9 NE1-CE2-CZ2:130.4:1.1
    CE3-CD2-CE2:118.7:1.2 CD2-CE2-CZ2:122.3:1.2 CE2-CZ2-CH2:117.4:1.0 CZ2-CH2-CZ3:121.6:1.2
    CH2-CZ3-CE3:121.2:1.1 CZ3-CE3-CD2:118.8:1.3 N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
TYR N-CA-CB:110.6:1.8 CB-CA-C:110.4:2.0 CA-CB-CG:113.4:1.9 CB-CG-CD1:121.0:0.6
    CB-CG-CD2:121.0:0.6 CD1-CG-CD2:117.9:1.1 CG-CD1-CE1:121.3:0.8 CG-CD2-CE2:121.3:0.8
    CD1-CE1-CZ:119.8:0.9 CD2-CE2-CZ:119.8:0.9 CE1-CZ-CE2:119.8:1.6 CE1-CZ-OH:120.1:2.7
    CE2-CZ-OH:120.1:2.7 N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
VAL N-CA-CB:111.5:2.2 CB-CA-C:111.4:1.9 CA-CB-CG1:110.9:1.5 CA-CB-CG2:110.9:1.5
    CG1-CB-CG2:110.9:1.6 N-CA-C:111.0:2.7 CA-C-O:120.1:2.1
"""


def _parse_stat_table(text: str) -> dict[str, list[tuple[list[str], float, float]]]:
    table: dict[str, list[tuple[list[str], float, float]]] = {}
    resname = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        if not line[0].isspace():
            resname, fields = fields[0], fields[1:]
            table[resname] = []
        for field in fields:
            atoms, mean, std = field.split(":")
            table[resname].append((atoms.split("-"), float(mean), float(std)))
    return table


def _bond_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _virtual_bond(ba: BondAngle, b1: Bond, b2: Bond) -> Bond:
    """Distance atom1-atom3 of a bond angle (law of cosines) with propagated stddev."""
    gamma = ba.angle_rad
    length = math.sqrt(b1.length**2 + b2.length**2 - 2 * b1.length * b2.length * math.cos(gamma))
    # First-order propagation of independent errors of the two bonds and the angle.
    d_gamma = b1.length * b2.length * math.sin(gamma) / length
    d_b1 = (b1.length - b2.length * math.cos(gamma)) / length
    d_b2 = (b2.length - b1.length * math.cos(gamma)) / length
    stddev = math.sqrt((d_gamma * ba.stddev) ** 2 + (d_b1 * b1.stddev) ** 2 + (d_b2 * b2.stddev) ** 2)
    return Bond(ba.atom1_name, ba.atom3_name, length, stddev)


def _make_stereo_tables() -> tuple[
    dict[str, list[Bond]], dict[str, list[Bond]], dict[str, list[BondAngle]]
]:
    bonds = {
        res: [Bond(a[0], a[1], mean, std) for a, mean, std in rows]
        for res, rows in _parse_stat_table(_BOND_TABLE).items()
    }
    angles = {
        res: [BondAngle(a[0], a[1], a[2], math.radians(m), math.radians(s)) for a, m, s in rows]
        for res, rows in _parse_stat_table(_ANGLE_TABLE).items()
    }
    virtual: dict[str, list[Bond]] = {}
    for res, res_angles in angles.items():
        lookup = {_bond_key(b.atom1_name, b.atom2_name): b for b in bonds[res]}
        virtual[res] = [
            _virtual_bond(
                ba,
                lookup[_bond_key(ba.atom1_name, ba.atom2_name)],
                lookup[_bond_key(ba.atom2_name, ba.atom3_name)],
            )
            for ba in res_angles
        ]
    for table in (bonds, virtual, angles):
        table[UNK_RESNAME] = []
    return bonds, virtual, angles


#: Three-letter name -> covalent bonds within the residue.
#: Three-letter name -> "virtual bonds": atom1-atom3 distances implied by each bond angle.
#: Three-letter name -> bond angles within the residue (radians).
RESIDUE_BONDS, RESIDUE_VIRTUAL_BONDS, RESIDUE_BOND_ANGLES = _make_stereo_tables()


def make_atom14_dists_bounds(
    overlap_tolerance: float = 1.5, bond_length_tolerance_factor: float = 15.0
) -> dict[str, np.ndarray]:
    """Lower / upper bounds of intra-residue atom14 pair distances (AlphaFold2 Suppl. 1.9.11).

    Non-bonded pairs: lower bound = sum of van der Waals radii - ``overlap_tolerance``, no upper
    bound (1e10). Bonded and angle-implied (virtual) pairs: mean +- factor * stddev.

    Returns:
        ``lower_bound``, ``upper_bound``, ``stddev``: float32 arrays [21, 14, 14] (Angstrom).
    """
    lower = np.zeros((21, ATOM14_NUM, ATOM14_NUM), np.float32)
    upper = np.zeros((21, ATOM14_NUM, ATOM14_NUM), np.float32)
    stddev = np.zeros((21, ATOM14_NUM, ATOM14_NUM), np.float32)
    for r in range(RESTYPE_NUM):
        resname = RESNAMES[r]
        names = RESTYPE_NAME_TO_ATOM14_NAMES[resname]
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if a and b and i != j:
                    lower[r, i, j] = (
                        VAN_DER_WAALS_RADIUS[ATOM_ELEMENT[a]]
                        + VAN_DER_WAALS_RADIUS[ATOM_ELEMENT[b]]
                        - overlap_tolerance
                    )
                    upper[r, i, j] = 1e10
        for bond in RESIDUE_BONDS[resname] + RESIDUE_VIRTUAL_BONDS[resname]:
            i, j = names.index(bond.atom1_name), names.index(bond.atom2_name)
            for p, q in ((i, j), (j, i)):
                lower[r, p, q] = bond.length - bond_length_tolerance_factor * bond.stddev
                upper[r, p, q] = bond.length + bond_length_tolerance_factor * bond.stddev
                stddev[r, p, q] = bond.stddev
    return {"lower_bound": lower, "upper_bound": upper, "stddev": stddev}


# --------------------------------------------------------------------------------------------
# MSA alphabet (HHblits)
# --------------------------------------------------------------------------------------------

#: HHblits / A3M letter -> HHblits id: 20 amino acids alphabetically by one-letter code, B->D,
#: Z->E, U->C, J and O -> X (20), gap '-' = 21.
HHBLITS_AA_TO_ID: dict[str, int] = {
    **{aa: i for i, aa in enumerate("ACDEFGHIKLMNPQRSTVWY")},
    "B": 2,
    "Z": 3,
    "U": 1,
    "J": 20,
    "O": 20,
    "X": 20,
    "-": 21,
}
#: HHblits id -> canonical letter (inverse of HHBLITS_AA_TO_ID on its 22 canonical letters).
ID_TO_HHBLITS_AA: dict[int, str] = dict(enumerate("ACDEFGHIKLMNPQRSTVWYX-"))
#: The 22-letter AlphaFold2 order used by MSA features: 20 residues, X (20), gap (21).
RESTYPES_WITH_X_AND_GAP: tuple[str, ...] = RESTYPES + ("X", "-")
#: [22] HHblits id -> index in RESTYPES_WITH_X_AND_GAP.
MAP_HHBLITS_AATYPE_TO_OUR_AATYPE: tuple[int, ...] = tuple(
    RESTYPES_WITH_X_AND_GAP.index(ID_TO_HHBLITS_AA[i]) for i in range(22)
)

# --------------------------------------------------------------------------------------------
# Derived arrays
# --------------------------------------------------------------------------------------------


def _frame_from_axes(ex: np.ndarray, ey: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 rigid transform whose x axis is ``ex``, y axis ``ey`` made orthogonal to it (Gram-
    Schmidt), z = x cross y, and origin ``translation``."""
    x = ex / np.linalg.norm(ex)
    y = ey - np.dot(ey, x) * x
    y = y / np.linalg.norm(y)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, np.cross(x, y), translation
    return m


def _make_arrays() -> dict[str, np.ndarray]:
    a14_to_a37 = np.zeros((21, ATOM14_NUM), np.int64)
    a37_to_a14 = np.zeros((21, ATOM_TYPE_NUM), np.int64)
    a14_mask = np.zeros((21, ATOM14_NUM), np.float32)
    a37_mask = np.zeros((21, ATOM_TYPE_NUM), np.float32)
    a14_group = np.zeros((21, ATOM14_NUM), np.int64)
    a37_group = np.zeros((21, ATOM_TYPE_NUM), np.int64)
    a14_pos = np.zeros((21, ATOM14_NUM, 3), np.float32)
    a37_pos = np.zeros((21, ATOM_TYPE_NUM, 3), np.float32)
    frames = np.zeros((21, 8, 4, 4), np.float32)
    chi_idx = np.zeros((21, 4, 4), np.int64)
    ambiguous = np.zeros((21, ATOM14_NUM), np.float32)
    swap_idx = np.tile(np.arange(ATOM14_NUM), (21, 1))
    renaming = np.tile(np.eye(ATOM14_NUM, dtype=np.float32), (21, 1, 1))

    for r, resname in enumerate(RESNAMES):
        names = RESTYPE_NAME_TO_ATOM14_NAMES[resname]
        for i, atom in enumerate(names):
            if atom:
                a14_to_a37[r, i] = ATOM_ORDER[atom]
                a37_to_a14[r, ATOM_ORDER[atom]] = i
                a14_mask[r, i] = 1.0
                a37_mask[r, ATOM_ORDER[atom]] = 1.0
        if resname == UNK_RESNAME:
            continue  # UNK: no atoms, all frames zero (as in AlphaFold2)
        for k, chi in enumerate(CHI_ANGLES_ATOMS[resname]):
            chi_idx[r, k] = [ATOM_ORDER[a] for a in chi]
        for atom, group, xyz in RIGID_GROUP_ATOM_POSITIONS[resname]:
            i, j = names.index(atom), ATOM_ORDER[atom]
            a14_group[r, i], a37_group[r, j] = group, group
            a14_pos[r, i], a37_pos[r, j] = xyz, xyz
        for atom, partner in RESIDUE_ATOM_RENAMING_SWAPS.get(resname, {}).items():
            i, j = names.index(atom), names.index(partner)
            ambiguous[r, [i, j]] = 1.0
            swap_idx[r, i], swap_idx[r, j] = j, i
            renaming[r, [i, j]] = 0.0
            renaming[r, i, j] = renaming[r, j, i] = 1.0

        pos = {a: np.asarray(xyz, np.float64) for a, _, xyz in RIGID_GROUP_ATOM_POSITIONS[resname]}
        # 0 backbone -> backbone and 1 pre-omega -> backbone: identity. Frames of chi groups
        # the residue lacks stay zero (as in AlphaFold2).
        frames[r, 0] = frames[r, 1] = np.eye(4)
        # 2 phi -> backbone: x along CA->N, origin N.
        frames[r, 2] = _frame_from_axes(pos["N"] - pos["CA"], np.array([1.0, 0.0, 0.0]), pos["N"])
        # 3 psi -> backbone: x along CA->C, N on the -y side, origin C.
        frames[r, 3] = _frame_from_axes(pos["C"] - pos["CA"], pos["CA"] - pos["N"], pos["C"])
        chis = CHI_ANGLES_ATOMS[resname]
        if chis:
            # 4 chi1 -> backbone: x along CA->CB, N in the xy-plane, origin CB.
            a0, a1, a2, _ = (pos[a] for a in chis[0])
            frames[r, 4] = _frame_from_axes(a2 - a1, a0 - a1, a2)
        for k in range(1, len(chis)):
            # chi(k+1) -> chi(k): the new axis runs from the parent origin to the next
            # axis-end atom (parent coordinates); the previous axis atom, on the parent's -x
            # axis, fixes the xy-plane. Origin at the axis-end atom.
            axis_end = pos[chis[k][2]]
            frames[r, 4 + k] = _frame_from_axes(axis_end, np.array([-1.0, 0.0, 0.0]), axis_end)
    # Atoms (atom37) that define each rigid group's frame from coordinates: backbone (C, CA,
    # N), psi (CA, C, O), chi k (the last three atoms of the chi definition).
    base_idx = np.zeros((21, 8, 3), np.int64)
    group_mask = np.zeros((21, 8), np.float32)
    group_ambiguous = np.zeros((21, 8), np.float32)
    group_ambiguity_rot = np.tile(np.eye(3, dtype=np.float32), (21, 8, 1, 1))
    base_idx[:, 0] = [ATOM_ORDER[a] for a in ("C", "CA", "N")]
    base_idx[:, 3] = [ATOM_ORDER[a] for a in ("CA", "C", "O")]
    group_mask[:, [0, 3]] = 1.0
    for r in range(RESTYPE_NUM):
        chis = CHI_ANGLES_ATOMS[RESNAMES[r]]
        for k, chi in enumerate(chis):
            base_idx[r, 4 + k] = [ATOM_ORDER[a] for a in chi[1:]]
            group_mask[r, 4 + k] = 1.0
        if RESNAMES[r] in RESIDUE_ATOM_RENAMING_SWAPS:
            # The last chi of a symmetric side chain is pi-periodic: its frame may be rotated
            # by pi about x (diag(1, -1, -1)).
            group_ambiguous[r, 3 + len(chis)] = 1.0
            group_ambiguity_rot[r, 3 + len(chis)] = np.diag([1.0, -1.0, -1.0])
    return {
        "base_idx": base_idx,
        "group_mask": group_mask,
        "group_ambiguous": group_ambiguous,
        "group_ambiguity_rot": group_ambiguity_rot,
        "a14_to_a37": a14_to_a37,
        "a37_to_a14": a37_to_a14,
        "a14_mask": a14_mask,
        "a37_mask": a37_mask,
        "a14_group": a14_group,
        "a37_group": a37_group,
        "a14_pos": a14_pos,
        "a37_pos": a37_pos,
        "frames": frames,
        "chi_idx": chi_idx,
        "ambiguous": ambiguous,
        "swap_idx": swap_idx,
        "renaming": renaming,
    }


_ARRAYS = _make_arrays()
#: [21, 14] atom37 index of each atom14 slot (0 for empty slots; use the mask).
RESTYPE_ATOM14_TO_ATOM37: np.ndarray = _ARRAYS["a14_to_a37"]
#: [21, 37] atom14 slot of each atom37 type (0 where the residue lacks the atom).
RESTYPE_ATOM37_TO_ATOM14: np.ndarray = _ARRAYS["a37_to_a14"]
#: [21, 14] 1.0 for atom14 slots the residue type has.
RESTYPE_ATOM14_MASK: np.ndarray = _ARRAYS["a14_mask"]
#: [21, 37] 1.0 for atom37 types the residue type has (OXT excluded).
RESTYPE_ATOM37_MASK: np.ndarray = _ARRAYS["a37_mask"]
#: [21, 37] int32 version of RESTYPE_ATOM37_MASK.
STANDARD_ATOM_MASK: np.ndarray = RESTYPE_ATOM37_MASK.astype(np.int32)
#: [21, 14] rigid group (0-7) each atom14 slot belongs to.
RESTYPE_ATOM14_TO_RIGID_GROUP: np.ndarray = _ARRAYS["a14_group"]
#: [21, 37] rigid group (0-7) each atom37 slot belongs to.
RESTYPE_ATOM37_TO_RIGID_GROUP: np.ndarray = _ARRAYS["a37_group"]
#: [21, 14, 3] ideal position of each atom14 slot in its group frame (Angstrom).
RESTYPE_ATOM14_RIGID_GROUP_POSITIONS: np.ndarray = _ARRAYS["a14_pos"]
#: [21, 37, 3] ideal position of each atom37 slot in its group frame (Angstrom).
RESTYPE_ATOM37_RIGID_GROUP_POSITIONS: np.ndarray = _ARRAYS["a37_pos"]
#: [21, 8, 4, 4] default frame of each rigid group relative to its parent group (chi1, phi,
#: psi, pre-omega relative to the backbone frame; chi(k+1) relative to chi(k)), for torsion 0.
#: Absent groups (and every group of UNK) are all-zero matrices, as in AlphaFold2.
RESTYPE_RIGID_GROUP_DEFAULT_FRAME: np.ndarray = _ARRAYS["frames"]
#: [21, 4, 4] atom37 indices of the 4 atoms of each chi angle (0 where the chi is absent).
CHI_ATOM_INDICES: np.ndarray = _ARRAYS["chi_idx"]
#: [21, 14] 1.0 for atoms whose name is ambiguous (symmetric partner exists).
RESTYPE_ATOM14_IS_AMBIGUOUS: np.ndarray = _ARRAYS["ambiguous"]
#: [21, 14] atom14 slot of the symmetric partner (the slot itself when not ambiguous).
RESTYPE_ATOM14_AMBIGUOUS_SWAP_INDEX: np.ndarray = _ARRAYS["swap_idx"]
#: [21, 14, 14] symmetric permutation matrices that swap ambiguous atoms:
#: ``alt[..., j, :] = sum_i P[r, i, j] * pos[..., i, :]`` (identity for unambiguous types).
RESTYPE_RENAME_ATOM14_MATRICES: np.ndarray = _ARRAYS["renaming"]
#: [21, 8, 3] atom37 indices of the three atoms that define each rigid group's frame.
RESTYPE_RIGIDGROUP_BASE_ATOM37_IDX: np.ndarray = _ARRAYS["base_idx"]
#: [21, 8] 1.0 for rigid groups that exist for the residue type (backbone, psi, its chis).
RESTYPE_RIGIDGROUP_MASK: np.ndarray = _ARRAYS["group_mask"]
#: [21, 8] 1.0 for the rigid group of a pi-periodic (symmetric) last chi angle.
RESTYPE_RIGIDGROUP_IS_AMBIGUOUS: np.ndarray = _ARRAYS["group_ambiguous"]
#: [21, 8, 3, 3] rotation giving the alternative frame of ambiguous groups (identity elsewhere).
RESTYPE_RIGIDGROUP_AMBIGUITY_ROT: np.ndarray = _ARRAYS["group_ambiguity_rot"]
del _ARRAYS
for _name, _value in list(globals().items()):
    if isinstance(_value, np.ndarray) and _name.isupper():
        _value.setflags(write=False)
