"""Pocket featurisation (``tertiary.data.pocket``): radii, atom slots, hydrogens, bad input, the
LMDB dataset builder. Synthetic complexes are written as PDB / SDF text so each edge case is
exact; the shipped example complex checks the radii against a direct computation."""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

from tertiary.data.pocket import (
    FAIR_ATOM_INDEX,
    FAIR_ATOM_NAMES,
    LIGAND_FEATURE_DIM,
    build_pocket_dataset,
    collate,
    load_pocket,
    pocket_from_record,
    pocket_to_record,
    read_pocket_index,
)
from tertiary.errors import DataError, InputError, ParseError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STANDARD = {"ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS", "MET", "PHE", "PRO",
            "SER", "THR", "TRP", "TYR", "VAL"}


def atom_line(serial: int, name: str, res: str, num: int, xyz, element: str, record: str = "ATOM") -> str:
    name_field = f" {name:<3}" if len(name) < 4 else name
    return (f"{record:<6}{serial:>5} {name_field} {res:>3} A{num:>4}    "
            f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}  1.00  0.00          {element:>2}\n")


ALA = {"N": (0.0, 0.0, 0.0), "CA": (1.0, 1.0, 0.0), "C": (2.0, 0.0, 0.0), "O": (2.0, -1.0, 0.0), "CB": (1.0, 2.0, 0.0)}


def chain_pdb(n: int, drop: dict[int, set[str]] | None = None, extra: list[str] | None = None) -> str:
    """``n`` ALA residues 3.8 A apart along x (residue i numbered i + 1)."""
    lines, serial = [], 1
    for i in range(n):
        for name, (x, y, z) in ALA.items():
            if drop and name in drop.get(i, set()):
                continue
            lines.append(atom_line(serial, name, "ALA", i + 1, (x + 3.8 * i, y, z), name[0]))
            serial += 1
    return "".join(lines) + "".join(extra or []) + "END\n"


def ligand_sdf(coords, elements=None, hydrogens: bool = False) -> str:
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    elements = elements or ["C"] * len(coords)
    mol = Chem.RWMol()
    for e in elements:
        mol.AddAtom(Chem.Atom(e))
    for i in range(1, len(elements)):
        mol.AddBond(i - 1, i, Chem.BondType.SINGLE)
    mol = mol.GetMol()
    Chem.SanitizeMol(mol)
    conf = Chem.Conformer(mol.GetNumAtoms())
    for i, (x, y, z) in enumerate(coords):
        conf.SetAtomPosition(i, Point3D(x, y, z))
    mol.AddConformer(conf)
    if hydrogens:
        mol = Chem.AddHs(mol, addCoords=True)
    return Chem.MolToMolBlock(mol) + "$$$$\n"


def write(tmp: Path, pdb: str, sdf: str, name: str = "c") -> tuple[Path, Path]:
    p, s = tmp / f"{name}.pdb", tmp / f"{name}.sdf"
    p.write_text(pdb)
    s.write_text(sdf)
    return p, s


def quiet_load(p: Path, s: Path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_pocket(p, s, **kw)


# -- the shipped example against a direct computation --------------------------------------------

def test_example_radii_match_a_direct_computation() -> None:
    pdb, sdf = EXAMPLES / "7sed_pocket.pdb", EXAMPLES / "7sed_ligand.sdf"
    residues: dict[tuple[str, int, str], list[np.ndarray]] = {}
    for line in pdb.read_text().splitlines():
        if line.startswith("ATOM") and line[17:20] in STANDARD and line[76:78].strip() != "H":
            key = (line[21], int(line[22:26]), line[26])
            residues.setdefault(key, []).append(np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])]))
    from rdkit import Chem

    mol = Chem.MolFromMolFile(str(sdf), removeHs=False)
    lig = np.array([list(mol.GetConformer().GetAtomPosition(a.GetIdx())) for a in mol.GetAtoms() if a.GetAtomicNum() > 1])
    dmin = {k: np.linalg.norm(np.stack(v)[:, None] - lig[None], axis=-1).min() for k, v in residues.items()}
    pocket = quiet_load(pdb, sdf)
    labels = pocket.residue_labels()
    assert labels == [f"{c}:{n}{i.strip()}" for (c, n, i), d in dmin.items() if d <= 10.0]
    assert [lab for lab, e in zip(labels, pocket.designed) if e] == [
        f"{c}:{n}{i.strip()}" for (c, n, i), d in dmin.items() if d <= 5.0]
    assert 0 < pocket.designed.sum() < pocket.num_residues
    np.testing.assert_allclose(pocket.ligand_positions, lig, atol=1e-4)
    assert pocket.ligand_features.shape == (len(lig), LIGAND_FEATURE_DIM)


# -- synthetic edge cases -------------------------------------------------------------------------

def test_design_radius_is_inclusive(tmp_path: Path) -> None:
    # CB of residue 3 (index 2) at (8.6, 2, 0); the ligand atom exactly 5.0 A above it
    p, s = write(tmp_path, chain_pdb(8), ligand_sdf([(8.6, 2.0, 5.0)]))
    pocket = quiet_load(p, s)
    assert pocket.residue_number[pocket.designed].tolist() == [3]
    with pytest.raises(InputError, match="no residue within the design radius 4.99"):
        quiet_load(p, s, design_radius=4.99)
    # the pocket radius keeps residues within 10 A only
    assert set(pocket.residue_number.tolist()) == {1, 2, 3, 4, 5}
    assert quiet_load(p, s, pocket_radius=None).num_residues == 8


def test_hydrogens_and_oxt_are_dropped(tmp_path: Path) -> None:
    extra = [atom_line(90, "H", "ALA", 3, (8.6, 0.5, 0.5), "H"), atom_line(91, "HB1", "ALA", 3, (8.6, 2.5, 0.5), "H"),
             atom_line(92, "OXT", "ALA", 3, (10.0, 0.5, 0.0), "O")]
    p0, s0 = write(tmp_path, chain_pdb(6), ligand_sdf([(8.6, 2.0, 3.0), (9.6, 2.0, 3.0)]), "plain")
    p1, s1 = write(tmp_path, chain_pdb(6, extra=extra), ligand_sdf([(8.6, 2.0, 3.0), (9.6, 2.0, 3.0)], hydrogens=True),
                   "withh")
    a, b = quiet_load(p0, s0), quiet_load(p1, s1)
    np.testing.assert_array_equal(a.atom_names, b.atom_names)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.ligand_positions, b.ligand_positions)
    assert b.ligand_elements.tolist() == [6, 6]
    assert "OXT" not in {FAIR_ATOM_NAMES[i] for i in b.atom_names.ravel()}


def test_atoms_are_packed_to_the_front(tmp_path: Path) -> None:
    # residue 3 without CA's neighbour C? no: drop O -> designed residue missing backbone (below);
    # here a context residue keeps its backbone but lacks CB: slot 4 stays empty
    p, s = write(tmp_path, chain_pdb(6, drop={4: {"CB"}}), ligand_sdf([(8.6, 2.0, 3.0)]))
    pocket = quiet_load(p, s)
    r = int(np.flatnonzero(pocket.residue_number == 5)[0])
    assert [FAIR_ATOM_NAMES[i] for i in pocket.atom_names[r]][:5] == ["N", "CA", "C", "O", ""]
    full = int(np.flatnonzero(pocket.residue_number == 3)[0])
    assert pocket.atom_names[full, 4] == FAIR_ATOM_INDEX["CB"]
    np.testing.assert_allclose(pocket.positions[full, 4], (8.6, 2.0, 0.0), atol=1e-3)
    assert np.all(pocket.positions[r, 4:] == 0)


def test_lysine_without_cg_packs_cd_into_slot_five(tmp_path: Path) -> None:
    lys = {"N": (0, 0, 0), "CA": (1, 1, 0), "C": (2, 0, 0), "O": (2, -1, 0), "CB": (1, 2, 0), "CD": (1, 4, 0),
           "CE": (1, 5, 0), "NZ": (1, 6, 0)}
    lines = chain_pdb(6).replace("END\n", "")
    lines += "".join(atom_line(100 + k, n, "LYS", 7, (x + 30.0, y, z), n[0]) for k, (n, (x, y, z)) in enumerate(lys.items()))
    p, s = write(tmp_path, lines + "END\n", ligand_sdf([(31.0, 5.0, 3.0)]))
    pocket = quiet_load(p, s)
    r = int(np.flatnonzero(pocket.residue_number == 7)[0])
    assert [FAIR_ATOM_NAMES[i] for i in pocket.atom_names[r] if i] == ["N", "CA", "C", "O", "CB", "CD", "CE", "NZ"]
    assert pocket.designed[r]


def test_residue_missing_backbone(tmp_path: Path, caplog) -> None:
    sdf = ligand_sdf([(8.6, 2.0, 3.0)])
    # designed residue 3 without O: a clear error naming it
    p, s = write(tmp_path, chain_pdb(6, drop={2: {"O"}}), sdf, "designed")
    with pytest.raises(InputError, match=r"designed residue\(s\) A:3 lack backbone atoms"):
        quiet_load(p, s)
    # context residue 5 without N: left out, with a warning
    p, s = write(tmp_path, chain_pdb(6, drop={4: {"N"}}), sdf, "context")
    with caplog.at_level(logging.WARNING, logger="tertiary.data.pocket"):
        pocket = quiet_load(p, s)
    assert 5 not in pocket.residue_number.tolist() and 4 in pocket.residue_number.tolist()
    assert "A:5 lack backbone atoms and are left out" in caplog.text


def test_ligand_far_from_the_protein(tmp_path: Path) -> None:
    p, s = write(tmp_path, chain_pdb(6), ligand_sdf([(200.0, 0.0, 0.0)]))
    with pytest.raises(InputError, match=r"c: no residue within 10.0 A of the ligand .*frame"):
        quiet_load(p, s)


def test_no_residue_in_the_design_radius(tmp_path: Path) -> None:
    p, s = write(tmp_path, chain_pdb(6), ligand_sdf([(8.6, 2.0, 8.0)]))
    with pytest.raises(InputError, match="no residue within the design radius 5.0 A"):
        quiet_load(p, s)


def test_no_standard_residue(tmp_path: Path) -> None:
    het = "".join(atom_line(k + 1, "ZN", "ZN", 1 + k, (0.0 + k, 0.0, 0.0), "ZN", "HETATM") for k in range(2))
    p, s = write(tmp_path, het + "END\n", ligand_sdf([(0.0, 0.0, 3.0)]))
    with pytest.raises((InputError, ParseError)):
        quiet_load(p, s)


def bad_sdf() -> str:
    """A five-valent carbon: parses, but RDKit refuses to sanitise it."""
    atoms = [("C", 0.0, 0.0, 3.0)] + [("C", dx, dy, 3.0 + dz) for dx, dy, dz in
                                       ((1.5, 0, 0), (-1.5, 0, 0), (0, 1.5, 0), (0, -1.5, 0), (0, 0, 1.5))]
    lines = ["bad", "  test", "", f"{len(atoms):>3}{5:>3}  0  0  0  0  0  0  0  0999 V2000"]
    lines += [f"{x:>10.4f}{y:>10.4f}{z:>10.4f} {e:<3} 0  0  0  0  0  0  0  0  0  0  0  0" for e, x, y, z in atoms]
    lines += [f"{1:>3}{k:>3}{1:>3}  0" for k in range(2, 7)]
    return "\n".join(lines) + "\nM  END\n$$$$\n"


def test_ligand_rdkit_cannot_sanitise(tmp_path: Path) -> None:
    p, s = write(tmp_path, chain_pdb(6), bad_sdf())
    with pytest.raises(ParseError, match=r"c.sdf.*RDKit cannot sanitise"):
        quiet_load(p, s)


# -- batches and datasets -------------------------------------------------------------------------

def test_collate_pads_and_masks(tmp_path: Path) -> None:
    a = quiet_load(*write(tmp_path, chain_pdb(6), ligand_sdf([(8.6, 2.0, 3.0)]), "a"))
    b = quiet_load(*write(tmp_path, chain_pdb(9), ligand_sdf([(8.6, 2.0, 3.0), (12.4, 2.0, 3.0), (16.2, 2.0, 3.0)]),
                          "b"))
    batch = collate([a, b])
    assert batch.positions.shape[:2] == (2, b.num_residues)
    assert batch.res_mask.sum(1).tolist() == [a.num_residues, b.num_residues]
    assert batch.lig_mask.sum(1).tolist() == [1, 3]
    assert not batch.atom_mask[0, a.num_residues :].any() and not batch.designed[0, a.num_residues :].any()
    assert batch.names == ["a", "b"]
    with pytest.raises(InputError):
        collate([])


def test_record_round_trip() -> None:
    pocket = quiet_load(EXAMPLES / "7sed_pocket.pdb", EXAMPLES / "7sed_ligand.sdf")
    back = pocket_from_record(*pocket_to_record(pocket))
    for field in ("positions", "atom_names", "aatype", "residue_number", "chain_id", "insertion_code", "designed",
                  "ligand_positions", "ligand_features", "ligand_elements"):
        np.testing.assert_array_equal(getattr(back, field), getattr(pocket, field), err_msg=field)
    assert back.name == pocket.name and back.designed.dtype == bool


def make_set(tmp_path: Path) -> Path:
    """A set folder in the ligand_complexes layout: the example, a synthetic complex, a broken one."""
    root = tmp_path / "set"
    (root / "files").mkdir(parents=True)
    import shutil

    shutil.copy(EXAMPLES / "7sed_pocket.pdb", root / "files" / "ex.pdb")
    shutil.copy(EXAMPLES / "7sed_ligand.sdf", root / "files" / "ex.sdf")
    write(root / "files", chain_pdb(8), ligand_sdf([(8.6, 2.0, 3.0)]), "syn")
    write(root / "files", chain_pdb(8), bad_sdf(), "bad")
    rows = [("ex", "crystal", "7sed"), ("syn", "modelled", "1abc"), ("bad", "crystal", "2bad")]
    with open(root / "index.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["id", "kind", "pdb_id", "pocket_path", "ligand_path"])
        for ident, kind, pdb in rows:
            w.writerow([ident, kind, pdb, f"files/{ident}.pdb", f"files/{ident}.sdf"])
    return root


def test_build_pocket_dataset_reports_failures_and_goes_on(tmp_path: Path) -> None:
    from tertiary.data.lmdb_store import LmdbDataset

    root = make_set(tmp_path)
    seen = []
    report = build_pocket_dataset(root, tmp_path / "p.lmdb", progress=lambda d, t, n: seen.append((d, t, n)))
    assert report.n_records == 2 and report.n_failed == 1
    assert report.failures[0]["id"] == "bad" and "sanitise" in report.failures[0]["error"]
    assert seen[-1] == (3, 3, "bad")
    assert "2 pocket(s) written" in report.summary() and "1 complex(es) skipped" in report.summary()
    assert "bad\t" in (tmp_path / "p.report.tsv").read_text()
    ds = LmdbDataset(tmp_path / "p.lmdb", task="pocket")
    assert ds.keys == ["ex", "syn"] and ds.meta[1]["kind"] == "modelled" and ds.meta[0]["pdb_id"] == "7sed"
    direct = quiet_load(EXAMPLES / "7sed_pocket.pdb", EXAMPLES / "7sed_ligand.sdf")
    np.testing.assert_array_equal(pocket_from_record(*ds[0]).positions, direct.positions)
    # kinds filter
    only = build_pocket_dataset([root], tmp_path / "c.lmdb", kinds=["crystal"])
    assert only.n_records == 1 and only.n_failed == 1


def test_build_pocket_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no index.tsv"):
        build_pocket_dataset(tmp_path, tmp_path / "x.lmdb")
    root = make_set(tmp_path)
    with pytest.raises(DataError, match="none of the 2 complexes"):
        build_pocket_dataset(root, tmp_path / "x.lmdb", kinds=["crystal"], limit=None, design_radius=0.1)
    assert not (tmp_path / "x.lmdb").exists()


def test_tertiary_data_build_task_pocket(tmp_path: Path, capsys) -> None:
    from tertiary.cli.main import main

    root = make_set(tmp_path)
    assert main(["data", "build", "--task", "pocket", str(root), "-o", str(tmp_path / "d.lmdb"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "2 pocket(s) written" in err and "1 complex(es) skipped" in err


def test_read_pocket_index_crossdocked_layout(tmp_path: Path) -> None:
    root = tmp_path / "cd"
    (root / "files" / "T").mkdir(parents=True)
    (root / "files" / "T" / "p.pdb.gz").write_bytes(b"")
    (root / "index.tsv").write_text("index\tshort_id\tpocket_file\tligand_file\n0\tT_p\tT/p.pdb\tT/l.sdf\n")
    (row,) = read_pocket_index(root)
    assert row["id"] == "T_p" and row["pocket"].endswith("T/p.pdb.gz") and row["ligand"].endswith("T/l.sdf")


def test_pocket_to_protein_round_trips_the_atoms() -> None:
    from tertiary.data.pocket import build_pocket, pocket_to_protein
    from tertiary.ligand import read_ligand

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pocket = load_pocket(EXAMPLES / "7sed_pocket.pdb", EXAMPLES / "7sed_ligand.sdf")
        ligand = read_ligand(EXAMPLES / "7sed_ligand.sdf")
    protein = pocket_to_protein(pocket)
    assert len(protein) == pocket.num_residues and protein.ligands == ()
    assert int(protein.atom_mask.sum()) == int(pocket.atom_mask.sum())
    back = build_pocket(protein, ligand, pocket_radius=None, name="x")
    np.testing.assert_allclose(back.positions, pocket.positions, atol=1e-6)
    np.testing.assert_array_equal(back.atom_names, pocket.atom_names)
    np.testing.assert_array_equal(back.designed, pocket.designed)
