"""AutoDock Vina scores of ligand poses in (designed) pockets (tertiary.models.fair.vina)."""

from __future__ import annotations

import csv
import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("vina")
pytest.importorskip("meeko")

from tertiary.errors import InputError, MissingDependencyError, TertiaryError  # noqa: E402
from tertiary.ligand import read_ligand  # noqa: E402
from tertiary.models.fair import vina as V  # noqa: E402
from tertiary.protein import Protein  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
POCKET, LIGAND = EXAMPLES / "7sed_pocket.pdb", EXAMPLES / "7sed_ligand.sdf"


@pytest.fixture(scope="module")
def complex_7sed() -> tuple[Protein, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Protein.from_file(POCKET), read_ligand(LIGAND)


def _heavy(ligand: object) -> np.ndarray:
    return np.asarray(ligand.positions)[ligand.heavy_mask]


def _crystal_rows(shared_data: Path, n: int) -> list[dict[str, str]]:
    root = shared_data / "ligand_complexes"
    if not (root / "index.tsv").is_file():
        pytest.skip(f"{root}/index.tsv not found")
    rows = [r for r in csv.DictReader(open(root / "index.tsv"), delimiter="\t") if r["kind"] == "crystal"]
    return [{**r, "pocket": str(root / r["pocket_path"]), "ligand": str(root / r["ligand_path"])} for r in rows[:n]]


def test_crystal_pose_is_a_binder_and_local_minimisation_lowers_the_energy(complex_7sed) -> None:
    protein, ligand = complex_7sed
    s = V.score_complex(protein, ligand, minimize=True)
    assert np.isfinite(s.score) and s.score < -3.0
    # score = intermolecular / (1 + 0.0585 * N_rot) in score-only mode (intra = unbound intra); N_rot >= 0
    assert s.intermolecular <= s.score < 0
    # the optimiser lowers inter + intra energy and moves a crystal pose only a little
    assert s.minimized_intermolecular + s.minimized_intramolecular <= s.intermolecular + s.intramolecular + 1e-6
    assert s.minimized < s.score and 0 < s.minimized_shift < 2.0
    # box: ligand bounding box + 4 A per side, centred on the ligand
    heavy = _heavy(ligand)
    assert np.allclose(s.box_center, (heavy.min(0) + heavy.max(0)) / 2, atol=1.5)
    assert all(size >= extent + 8.0 - 1e-3 for size, extent in zip(s.box_size, np.ptp(heavy, 0)))


def test_crystal_complexes_from_shared_data_score_negative(shared_data: Path) -> None:
    for row in _crystal_rows(shared_data, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = V.score_only(Protein.from_file(row["pocket"]), read_ligand(row["ligand"]))
        assert np.isfinite(score) and score < -3.0, (row["id"], score)


def test_ligand_far_away_scores_zero(complex_7sed) -> None:
    protein, ligand = complex_7sed
    far = V.score_only(protein, ligand, _heavy(ligand) + np.array([30.0, 0.0, 0.0]))
    assert abs(far) < 0.05


def test_clashing_poses_score_worse_than_the_crystal_pose(complex_7sed) -> None:
    protein, ligand = complex_7sed
    heavy = _heavy(ligand)
    crystal = V.score_only(protein, ligand)
    # the ligand shifted 1 A towards the protein atoms around it
    prot = protein.atom_positions[protein.atom_mask > 0]
    near = prot[np.linalg.norm(prot[:, None] - heavy[None], axis=-1).min(1) < 6.0]
    direction = near.mean(0) - heavy.mean(0)
    shifted = V.score_only(protein, ligand, heavy + direction / np.linalg.norm(direction))
    assert shifted > crystal + 2.0
    # protein atoms placed on the ligand: one residue's side chain moved onto ligand atoms
    clash = dataclasses.replace(protein, atom_positions=protein.atom_positions.copy())
    d = np.linalg.norm(protein.atom_positions[:, :, None] - heavy[None, None], axis=-1).min(-1)
    r = int(np.argmin(np.where(protein.atom_mask > 0, d, np.inf).min(1)))
    atoms = np.flatnonzero(protein.atom_mask[r] > 0)
    clash.atom_positions[r, atoms] = heavy[np.arange(len(atoms)) % len(heavy)] + 0.3
    assert V.score_only(clash, ligand) > crystal + 2.0


def test_receptor_matches_meeko_preparation(complex_7sed, shared_data: Path, tmp_path: Path) -> None:
    """Our table-typed receptor gives meeko's heavy-atom AD types and the same Vina score."""
    import meeko
    from vina import Vina

    complexes = [complex_7sed]
    for row in _crystal_rows(shared_data, 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            complexes.append((Protein.from_file(row["pocket"]), read_ligand(row["ligand"])))
    for protein, ligand in complexes:
        protein = protein.take(np.flatnonzero(protein.aatype < 20))
        polymer = meeko.Polymer.from_pdb_string(protein.to_pdb(include_ligands=False),
                                                meeko.ResidueChemTemplates.create_from_defaults(),
                                                meeko.MoleculePreparation(), allow_bad_res=True)
        assert len(polymer.get_valid_monomers()) == len(protein)
        rigid, _ = meeko.PDBQTWriterLegacy.write_string_from_polymer(polymer)

        def types(text: str) -> dict[tuple[str, str, str], str]:
            return {(ln[21], ln[22:27].strip(), ln[12:16].strip()): ln[77:79].strip() for ln in text.splitlines()
                    if ln.startswith("ATOM") and ln[77:79].strip() != "HD"}

        ours = V.receptor_pdbqt(protein)
        assert types(ours) == types(rigid)
        s = V.score_complex(protein, ligand)
        path = tmp_path / "meeko.pdbqt"
        path.write_text(rigid)
        v = Vina(sf_name="vina", cpu=1, seed=0, verbosity=0)
        v.set_receptor(rigid_pdbqt_filename=str(path))
        v.set_ligand_from_string(V.ligand_pdbqt(ligand))
        v.compute_vina_maps(center=list(s.box_center), box_size=list(s.box_size))
        assert s.score == pytest.approx(float(v.score()[0]), abs=0.01)


def test_pocket_cut_scores_like_the_pocket_file(complex_7sed) -> None:
    """The 10 A FAIR pocket (whole residues) keeps every atom within Vina's 8 A cutoff."""
    from tertiary.data.pocket import load_pocket, pocket_to_protein

    protein, ligand = complex_7sed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pocket = load_pocket(POCKET, LIGAND)
    cut = pocket_to_protein(pocket)
    assert len(cut) == pocket.num_residues < len(protein)
    assert V.score_only(cut, ligand, pocket.ligand_positions) == pytest.approx(V.score_only(protein, ligand), abs=0.01)


def test_bad_input_errors(complex_7sed, tmp_path: Path) -> None:
    from rdkit import Chem

    protein, ligand = complex_7sed
    empty = protein.take(np.flatnonzero(protein.aatype > 20))
    with pytest.raises(InputError, match="empty_pocket: the pocket has no standard amino-acid residue"):
        V.score_only(empty, ligand, name="empty_pocket")
    broken = dataclasses.replace(protein, atom_positions=protein.atom_positions.copy())
    broken.atom_positions[3, 1] = np.nan
    label = f"{protein.chain_id[3]}:{protein.residue_index[3]}"
    with pytest.raises(InputError, match=f"non-finite coordinates for atom CA of residue {label}"):
        V.score_only(broken, ligand)
    with pytest.raises(InputError, match="pose has shape"):
        V.score_only(protein, ligand, _heavy(ligand)[:-1])
    with pytest.raises(InputError, match="non-finite"):
        V.score_only(protein, ligand, np.full_like(_heavy(ligand), np.nan))
    # a selenium ligand: RDKit reads it, meeko has no AutoDock type for Se
    mol = Chem.MolFromMolFile(str(LIGAND))
    mol.GetAtomWithIdx(4).SetAtomicNum(34)
    path = tmp_path / "se.sdf"
    path.write_text(Chem.MolToMolBlock(mol) + "$$$$\n")
    with pytest.raises(InputError, match=r"se\.sdf.*meeko cannot"):
        V.score_only(protein, read_ligand(path))


def test_missing_packages_name_the_extra(complex_7sed, monkeypatch) -> None:
    protein, ligand = complex_7sed
    monkeypatch.setitem(sys.modules, "vina", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'tertiary\[vina\]'") as info:
        V.score_only(protein, ligand)
    assert isinstance(info.value, TertiaryError)


def test_ligand_with_explicit_hydrogens_and_aromatic_nh(tmp_path: Path) -> None:
    """Explicit hydrogens are dropped and re-added: an aromatic [nH] keeps its (polar) hydrogen."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("Cc1cc2ccccc2[nH]1"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    path = tmp_path / "indole.sdf"
    path.write_text(Chem.MolToMolBlock(mol) + "$$$$\n")
    ligand = read_ligand(path)
    assert (ligand.elements == 1).sum() == 9
    text = V.ligand_pdbqt(ligand, _heavy(ligand) + 1.0)
    atoms = [ln for ln in text.splitlines() if ln.startswith(("ATOM", "HETATM"))]
    types = [ln[77:79].strip() for ln in atoms]
    assert types.count("HD") == 1 and types.count("N") == 1 and len(atoms) == 11  # 10 heavy + H on N
    xyz = np.array([[float(ln[30:38]), float(ln[38:46]), float(ln[46:54])] for ln in atoms])
    heavy_xyz = xyz[[t not in ("HD", "H") for t in types]]
    # the heavy atoms sit at the requested pose (PDBQT order differs from the input order)
    d = np.linalg.norm(heavy_xyz[:, None] - (_heavy(ligand) + 1.0)[None], axis=-1)
    assert d.min(1).max() < 2e-3
    n_xyz, h_xyz = xyz[types.index("N")], xyz[types.index("HD")]
    assert 0.9 < np.linalg.norm(n_xyz - h_xyz) < 1.1
