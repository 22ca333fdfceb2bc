"""AutoDock Vina score of a ligand pose in a (designed) pocket (``pip install tertiary[vina]``).

The score is computed with the ``vina`` Python package (AutoDock Vina 1.2, Vina scoring
function, grid maps at 0.375 A spacing); ligands are prepared with ``meeko``.

Receptor (:func:`receptor_pdbqt`): the standard amino-acid residues of a
:class:`~tertiary.protein.Protein` (no waters, ions or cofactors), written as PDBQT with
AutoDock 4 atom types taken from a per-residue table (aromatic ring carbons ``A``, other carbons
``C``, oxygens ``OA``, sulfur ``SA``, histidine as HIE: ND1 ``NA``, every other nitrogen ``N``)
and one polar hydrogen ``HD`` on every donor (backbone N except proline, Arg NE/NH1/NH2,
Asn ND2, Gln NE2, His NE2, Lys NZ, Ser OG, Thr OG1, Tyr OH, Trp NE1, Cys SG), placed 1.0 A from
its donor, away from the donor's heavy-atom neighbours. Partial charges are written as zero:
the Vina scoring function does not use them. Vina itself ignores hydrogens in its energy terms;
the HD atoms only make their bonded N / O hydrogen-bond donors in Vina's atom typing, which
is why one per donor is enough and where it points does not matter. Types come from residue
and atom names, never from bonds perceived from geometry: meeko's receptor preparation
(``Polymer.from_pdb_string``) perceives bonds from distances and refused 4 of 4 FAIR designs of
``examples/7sed_pocket.pdb`` (distorted designed side chains read as over-valent atoms), so the
native and the designed pockets are prepared by the same table here. On crystal pockets the
table gives the same heavy-atom types as meeko and the same Vina score to 0.01 kcal/mol
(``tests/models/fair/test_vina.py``).

Ligand (:func:`ligand_pdbqt`): the RDKit molecule of a :class:`~tertiary.ligand.Ligand`,
hydrogens removed, heavy atoms placed at the given pose (FAIR's refined pose has heavy atoms
only), hydrogens re-added by RDKit at ideal positions, then meeko's ``MoleculePreparation``
(Gasteiger charges, AD4 types, non-polar hydrogens merged, rigid macrocycles) and
``PDBQTWriterLegacy``.

Box: the Vina grid box is the axis-aligned bounding box of the ligand atoms (hydrogens
included) plus ``padding`` (4 A by default) on every side. Receptor atoms outside the box still
count: a grid point feels every receptor atom within Vina's 8 A cutoff. A 10 A pocket
(:func:`tertiary.data.pocket.build_pocket` keeps whole residues with a heavy atom within 10 A of
the ligand) therefore scores the same as the whole protein for the pose it was cut around.

Scores (kcal/mol): ``score`` is Vina's estimated binding free energy of the pose as given
(``score_only``: the ligand's intramolecular energy counts as its unbound energy and cancels,
leaving the intermolecular energy divided by ``1 + 0.0585 * N_rot``), ``intermolecular`` and
``intramolecular`` its two terms. ``minimized`` is the same estimate after Vina's local BFGS
optimisation of the ligand (position, orientation, torsions; the receptor is rigid), with its
terms ``minimized_intermolecular`` / ``minimized_intramolecular``, and ``minimized_shift`` is the
heavy-atom RMSD (A) between the given and the optimised pose. The optimiser lowers
intermolecular + intramolecular energy, so ``minimized`` is usually, not always, below ``score``
(a strained pose can trade intermolecular energy for internal energy).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass

import numpy as np

from tertiary import constants as rc
from tertiary.errors import InputError, MissingDependencyError, one_line

#: Default padding (A) added around the ligand's bounding box on every side.
DEFAULT_PADDING = 4.0

#: Aromatic ring carbons (AutoDock type ``A``).
_AROMATIC = {
    "PHE": {"CG", "CD1", "CD2", "CE1", "CE2", "CZ"},
    "TYR": {"CG", "CD1", "CD2", "CE1", "CE2", "CZ"},
    "TRP": {"CG", "CD1", "CD2", "CE2", "CE3", "CZ2", "CZ3", "CH2"},
    "HIS": {"CG", "CD2", "CE1"},
}
#: Nitrogen acceptors (``NA``): histidine as the HIE tautomer (H on NE2).
_N_ACCEPTOR = {"HIS": {"ND1"}}
#: Side-chain hydrogen-bond donors (N / O / S carrying a polar hydrogen).
_SIDE_DONORS = {
    "ARG": {"NE", "NH1", "NH2"}, "ASN": {"ND2"}, "GLN": {"NE2"}, "HIS": {"NE2"}, "LYS": {"NZ"},
    "SER": {"OG"}, "THR": {"OG1"}, "TYR": {"OH"}, "TRP": {"NE1"}, "CYS": {"SG"},
}


@dataclass(frozen=True)
class VinaScore:
    """Vina energies of one ligand pose (kcal/mol); see the module docstring."""

    name: str
    score: float
    intermolecular: float
    intramolecular: float
    minimized: float | None
    minimized_intermolecular: float | None
    minimized_intramolecular: float | None
    minimized_shift: float | None
    n_receptor_atoms: int
    box_center: tuple[float, float, float]
    box_size: tuple[float, float, float]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def require_vina() -> tuple[object, object]:
    """Import ``vina`` and ``meeko``; :class:`MissingDependencyError` naming the extra if missing."""
    try:
        import meeko
        import vina
    except ImportError as exc:
        raise MissingDependencyError(
            f"Vina scoring needs the 'vina' and 'meeko' packages ({exc.name} is not installed): "
            "pip install 'tertiary[vina]'"
        ) from exc
    return vina, meeko


def _ad_type(resname: str, atom: str) -> str:
    element = rc.ATOM_ELEMENT[atom]
    if element == "C":
        return "A" if atom in _AROMATIC.get(resname, ()) else "C"
    if element == "N":
        return "NA" if atom in _N_ACCEPTOR.get(resname, ()) else "N"
    if element == "O":
        return "OA"
    if element == "S":
        return "SA"
    raise InputError(f"no AutoDock type for atom {atom} of {resname}")  # pragma: no cover - atom37 is C/N/O/S


def _pdbqt_line(serial: int, atom: str, resname: str, chain: str, resnum: int, icode: str,
                xyz: np.ndarray, ad_type: str) -> str:
    name = atom if len(atom) == 4 else f" {atom:<3s}"
    x, y, z = (float(v) for v in xyz)
    return (f"ATOM  {serial % 100000:5d} {name:4s} {resname:>3s} {(chain or 'A')[:1]:1s}{resnum % 10000:4d}"
            f"{(icode or ' ')[:1]:1s}   {x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{0.0:6.2f}    {0.0:+6.3f} {ad_type:<2s}")


def receptor_pdbqt(protein: object, name: str = "") -> str:
    """Rigid-receptor PDBQT text of the standard residues of a :class:`Protein`.

    Raises:
        InputError: the protein has no standard residue with atoms.
    """
    name = name or getattr(protein, "name", "") or "receptor"
    std = np.flatnonzero((protein.aatype < rc.RESTYPE_NUM) & (protein.atom_mask.sum(-1) > 0))
    if len(std) == 0:
        raise InputError(f"{name}: the pocket has no standard amino-acid residue with atoms to score against")
    atoms: list[tuple[int, str, str, np.ndarray]] = []  # residue, atom name, AD type, xyz
    for r in std:
        resname = rc.RESNAMES[int(protein.aatype[r])]
        for a in np.flatnonzero(protein.atom_mask[r] > 0):
            atom = rc.ATOM_TYPES[a]
            atoms.append((int(r), atom, _ad_type(resname, atom), protein.atom_positions[r, a]))
    xyz = np.stack([a[3] for a in atoms]).astype(np.float64)
    if not np.isfinite(xyz).all():
        bad = atoms[int(np.flatnonzero(~np.isfinite(xyz).all(1))[0])]
        raise InputError(f"{name}: non-finite coordinates for atom {bad[1]} of residue "
                         f"{protein.chain_id[bad[0]]}:{protein.residue_index[bad[0]]}")
    lines = []
    serial = 0
    for i, (r, atom, ad_type, pos) in enumerate(atoms):
        resname = rc.RESNAMES[int(protein.aatype[r])]
        chain, resnum, icode = str(protein.chain_id[r]), int(protein.residue_index[r]), str(protein.insertion_code[r])
        serial += 1
        lines.append(_pdbqt_line(serial, atom, resname, chain, resnum, icode, pos, ad_type))
        donor = (atom == "N" and resname != "PRO") or atom in _SIDE_DONORS.get(resname, ())
        if donor:
            d = np.linalg.norm(xyz - pos, axis=-1)
            near = (d > 0.1) & (d < 1.9)
            away = pos - xyz[near].mean(0) if near.any() else np.array([1.0, 0.0, 0.0])
            norm = np.linalg.norm(away)
            away = away / norm if norm > 1e-3 else np.array([1.0, 0.0, 0.0])
            serial += 1
            lines.append(_pdbqt_line(serial, "H" if atom == "N" else f"H{atom[1:]}"[:4], resname, chain, resnum,
                                     icode, pos + 1.0 * away, "HD"))
    return "\n".join(lines) + "\n"


def ligand_pdbqt(ligand: object, positions: np.ndarray | None = None, name: str = "") -> str:
    """Ligand PDBQT (meeko) with its heavy atoms at ``positions`` ([N_heavy, 3], A; default: as read).

    Raises:
        InputError: the pose does not fit the ligand, RDKit cannot add hydrogens, or meeko
            cannot prepare the molecule (the message names the ligand).
    """
    _, meeko = require_vina()
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    name = name or getattr(ligand, "source", "") or getattr(ligand, "name", "") or "ligand"
    heavy = np.asarray(ligand.positions)[ligand.heavy_mask]
    pose = heavy if positions is None else np.asarray(positions, dtype=np.float64)
    if pose.shape != heavy.shape:
        raise InputError(f"{name}: pose has shape {list(pose.shape)}, the ligand has {len(heavy)} heavy atoms")
    if not np.isfinite(pose).all():
        raise InputError(f"{name}: non-finite ligand coordinates")
    try:
        # RemoveAllHs moves the hydrogens onto their heavy atoms' H counts ([nH] stays [nH]) and
        # keeps the heavy-atom order
        mol = Chem.RemoveAllHs(ligand.mol, sanitize=True)
        if mol.GetNumAtoms() != len(heavy):
            raise ValueError(f"{mol.GetNumAtoms()} atoms left after removing hydrogens, expected {len(heavy)}")
        conf = mol.GetConformer()
        for i, (x, y, z) in enumerate(pose.tolist()):
            conf.SetAtomPosition(i, Point3D(x, y, z))
        mol = Chem.AddHs(mol, addCoords=True)
    except Exception as exc:  # RDKit raises several exception types
        raise InputError(f"{name}: RDKit cannot rebuild the ligand with hydrogens ({exc})") from exc
    try:
        setups = meeko.MoleculePreparation(rigid_macrocycles=True).prepare(mol)
        text, ok, err = meeko.PDBQTWriterLegacy.write_string(setups[0])
    except Exception as exc:  # meeko raises RuntimeError / ValueError / KeyError on odd chemistry
        msg = one_line(exc)
        raise InputError(f"{name}: meeko cannot prepare the ligand for Vina ({msg})") from exc
    if not ok:
        raise InputError(f"{name}: meeko cannot write the ligand PDBQT ({' '.join(str(err).split())})")
    return text


def _pdbqt_coordinates(text: str) -> np.ndarray:
    return np.array([[float(line[30:38]), float(line[38:46]), float(line[46:54])]
                     for line in text.splitlines() if line.startswith(("ATOM", "HETATM"))])


def _heavy_coordinates(text: str) -> np.ndarray:
    return np.array([[float(line[30:38]), float(line[38:46]), float(line[46:54])]
                     for line in text.splitlines()
                     if line.startswith(("ATOM", "HETATM")) and line[77:79].strip() not in ("H", "HD")])


def score_complex(
    protein: object,
    ligand: object,
    positions: np.ndarray | None = None,
    *,
    minimize: bool = False,
    padding: float = DEFAULT_PADDING,
    name: str = "",
) -> VinaScore:
    """Vina energies of ``ligand`` (heavy atoms at ``positions``, default as read) in ``protein``.

    Args:
        protein: :class:`~tertiary.protein.Protein` (a pocket or a whole structure).
        ligand: :class:`~tertiary.ligand.Ligand` (bond orders / charges from its RDKit molecule).
        positions: ``[N_heavy, 3]`` heavy-atom pose in the ligand's heavy-atom order (A).
        minimize: also run Vina's local optimisation of the pose.
        padding: box margin around the ligand on every side (A).
        name: label for messages (default: the protein's name).

    Raises:
        ResourceError: ``vina`` / ``meeko`` are not installed.
        InputError: empty pocket, a ligand meeko cannot prepare, or Vina refuses the input.
    """
    vina, _ = require_vina()
    name = name or getattr(protein, "name", "") or "complex"
    if padding <= 0:
        raise InputError(f"{name}: Vina box padding must be positive, got {padding}")
    receptor = receptor_pdbqt(protein, name)
    lig_text = ligand_pdbqt(ligand, positions, name=f"{name}: ligand {getattr(ligand, 'source', '')}".strip())
    lig_xyz = _pdbqt_coordinates(lig_text)
    lo, hi = lig_xyz.min(0), lig_xyz.max(0)
    center = ((lo + hi) / 2).tolist()
    size = (hi - lo + 2 * padding).tolist()
    fd, path = tempfile.mkstemp(suffix=".pdbqt", prefix="tertiary_receptor_")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(receptor)
        v = vina.Vina(sf_name="vina", cpu=1, seed=0, verbosity=0)
        v.set_receptor(rigid_pdbqt_filename=path)
        v.set_ligand_from_string(lig_text)
        v.compute_vina_maps(center=center, box_size=size)
        energies = v.score()
        opt = None
        shift = None
        if minimize:
            opt = [float(e) for e in v.optimize()]
            before = _heavy_coordinates(lig_text)
            after = _heavy_coordinates(_vina_pose(v))
            shift = float(np.sqrt(((before - after) ** 2).sum(-1).mean())) if after.shape == before.shape else None
    except RuntimeError as exc:
        raise InputError(f"{name}: Vina failed ({' '.join(str(exc).split())})") from exc
    finally:
        os.unlink(path)
    return VinaScore(name=name, score=float(energies[0]), intermolecular=float(energies[1]),
                     intramolecular=float(energies[5]), minimized=opt[0] if opt else None,
                     minimized_intermolecular=opt[1] if opt else None, minimized_intramolecular=opt[5] if opt else None,
                     minimized_shift=shift, n_receptor_atoms=receptor.count("\n"),
                     box_center=tuple(round(c, 3) for c in center), box_size=tuple(round(s, 3) for s in size))


def _vina_pose(v: object) -> str:
    fd, path = tempfile.mkstemp(suffix=".pdbqt", prefix="tertiary_pose_")
    os.close(fd)
    try:
        v.write_pose(path, overwrite=True)
        with open(path) as fh:
            return fh.read()
    finally:
        os.unlink(path)


def score_only(protein: object, ligand: object, positions: np.ndarray | None = None, **kwargs: object) -> float:
    """Vina score (kcal/mol) of the pose as given; see :func:`score_complex`."""
    return score_complex(protein, ligand, positions, **kwargs).score


def local_minimize(protein: object, ligand: object, positions: np.ndarray | None = None, **kwargs: object) -> float:
    """Vina score (kcal/mol) after local optimisation of the pose; see :func:`score_complex`."""
    return float(score_complex(protein, ligand, positions, minimize=True, **kwargs).minimized)

