"""tertiary.ligand: SDF / MOL2 reading through RDKit, hydrogens, bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rdkit")
from rdkit import Chem  # noqa: E402
from rdkit.Chem import AllChem  # noqa: E402

from tertiary.errors import ParseError  # noqa: E402
from tertiary.ligand import read_ligand, read_ligands  # noqa: E402

MOL2_ETHANOL = """@<TRIPOS>MOLECULE
ethanol
 3 2 0 0 0
SMALL
GASTEIGER

@<TRIPOS>ATOM
      1 C1          0.0000    0.0000    0.0000 C.3     1  ETO1        0.0000
      2 C2          1.5200    0.0000    0.0000 C.3     1  ETO1        0.0000
      3 O1          2.0300    1.3500    0.0000 O.3     1  ETO1        0.0000
@<TRIPOS>BOND
     1     1     2    1
     2     2     3    1
"""


def _embedded(smiles: str, seed: int = 0) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    return mol


def test_sdf_elements_coordinates_bonds_charges(tmp_path: Path) -> None:
    mol = _embedded("C[NH3+].c1ccccc1C(=O)[O-]")
    path = tmp_path / "x.sdf"
    Chem.MolToMolFile(mol, str(path))
    lig = read_ligand(path)
    assert lig.num_atoms == mol.GetNumAtoms()
    assert lig.elements.tolist() == [a.GetAtomicNum() for a in mol.GetAtoms()]
    np.testing.assert_allclose(lig.positions, mol.GetConformer().GetPositions(), atol=1e-4)
    assert sorted(lig.formal_charges.tolist()) == sorted(a.GetFormalCharge() for a in mol.GetAtoms())
    assert lig.formal_charges.sum() == 0 and (lig.formal_charges != 0).sum() == 2
    assert lig.bonds.shape == (mol.GetNumBonds(), 2)
    assert 1.5 in lig.bond_orders.tolist() and 2.0 in lig.bond_orders.tolist()
    heavy = lig.without_hydrogens()
    assert heavy.num_atoms == Chem.RemoveHs(mol).GetNumAtoms()
    assert (heavy.elements != 1).all() and heavy.bonds.max() < heavy.num_atoms
    np.testing.assert_allclose(heavy.positions, lig.positions[lig.elements != 1])
    assert read_ligand(path, remove_hydrogens=True).num_atoms == heavy.num_atoms


def test_multi_record_gzip_and_record_selection(tmp_path: Path) -> None:
    path = tmp_path / "many.sdf.gz"
    writer_path = tmp_path / "many.sdf"
    w = Chem.SDWriter(str(writer_path))
    for smi in ("CCO", "c1ccncc1", "CC(=O)N"):
        m = _embedded(smi)
        m.SetProp("_Name", "")  # blank title lines must not shift the records
        w.write(m)
    w.close()
    path.write_bytes(gzip.compress(writer_path.read_bytes()))
    ligs = read_ligands(path, remove_hydrogens=True)
    assert [lg.num_atoms for lg in ligs] == [3, 6, 4]
    assert read_ligand(path, record=2, remove_hydrogens=True).symbols.count("N") == 1
    with pytest.raises(ParseError, match="record 4"):
        read_ligand(path, record=4)


def test_mol2(tmp_path: Path) -> None:
    path = tmp_path / "eth.mol2"
    path.write_text(MOL2_ETHANOL)
    lig = read_ligand(path)
    assert lig.name == "ethanol"
    assert lig.symbols == ["C", "C", "O"]
    assert lig.bonds.tolist() == [[0, 1], [1, 2]]


def test_unsanitisable_ligand_names_file_and_record(tmp_path: Path) -> None:
    good = _embedded("CCO")
    # a carbon with five explicit bonds
    bad = Chem.RWMol()
    c = bad.AddAtom(Chem.Atom(6))
    for _ in range(5):
        h = bad.AddAtom(Chem.Atom(9))
        bad.AddBond(c, h, Chem.BondType.SINGLE)
    conf = Chem.Conformer(bad.GetNumAtoms())
    for i in range(bad.GetNumAtoms()):
        conf.SetAtomPosition(i, (float(i), 0.0, 0.0))
    bad.AddConformer(conf)
    bad_block = Chem.MolToMolBlock(bad, kekulize=False)
    path = tmp_path / "two.sdf"
    path.write_text(Chem.MolToMolBlock(good) + "$$$$\n" + bad_block + "$$$$\n")
    with pytest.raises(ParseError, match=r"two\.sdf record 2.*sanitise"):
        read_ligands(path)
    assert read_ligand(path, record=1).num_atoms == good.GetNumAtoms()
    assert read_ligand(path, record=2, sanitize=False).num_atoms == 6


@pytest.mark.parametrize(
    "content,match",
    [("", "no molecule"), ("garbage\nlines\n\n  x y z\n", "cannot parse"), (None, "cannot read")],
)
def test_bad_files(tmp_path: Path, content: str | None, match: str) -> None:
    path = tmp_path / "bad.sdf"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ParseError, match=match):
        read_ligand(path)
    with pytest.raises(ParseError, match="unknown ligand format"):
        read_ligand(tmp_path / "x.pdb")


def test_real_crossdocked_ligand(shared_data: Path) -> None:
    sdf = next((shared_data / "crossdocked_test100" / "files").glob("BSD_ASPTE_1_130_0/*docked_3.sdf"))
    lig = read_ligand(sdf)
    assert lig.num_atoms == 31 and (lig.elements != 1).all()
