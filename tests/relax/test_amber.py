"""Amber relaxation (OpenMM + PDBFixer) on a real NMR structure (Trp-cage, PDB 1L2Y, 20 residues)."""

from __future__ import annotations

import numpy as np
import pytest

from tertiary.protein import Protein

pytest.importorskip("openmm")
pytest.importorskip("pdbfixer")

from tertiary.errors import ConfigError  # noqa: E402
from tertiary.relax import RelaxConfig, find_violations, relax_pdb, relax_protein  # noqa: E402


def _rmsd(a: Protein, b: Protein) -> float:
    m = a.atom_mask * b.atom_mask
    return float(np.sqrt((((a.atom_positions - b.atom_positions) ** 2).sum(-1) * m).sum() / m.sum()))


@pytest.fixture(scope="module")
def trp_cage(shared_data) -> Protein:
    path = shared_data / "structure_testset" / "biotite" / "pdb" / "1l2y.pdb.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return Protein.from_file(path)


def _noisy(native: Protein, sigma: float, seed: int) -> Protein:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, sigma, native.atom_positions.shape).astype(np.float32) * native.atom_mask[..., None]
    plddt = np.repeat(np.linspace(40, 95, len(native), dtype=np.float32)[:, None], 37, 1) * native.atom_mask
    return Protein(atom_positions=native.atom_positions + noise, atom_mask=native.atom_mask, aatype=native.aatype,
                   residue_index=native.residue_index, chain_id=native.chain_id, b_factors=plddt, name="noisy")  # fmt: skip


def test_relax_removes_violations_and_stays_close(trp_cage, tmp_path) -> None:
    assert find_violations(trp_cage)["per_residue"].sum() == 0  # the deposited model is clean
    noisy = _noisy(trp_cage, 0.3, seed=0)
    before = find_violations(noisy)
    assert before["per_residue"].sum() > 10 and before["clash_pairs"] > 0
    path = tmp_path / "noisy.pdb"
    noisy.to_pdb(path)
    result = relax_pdb(path, tmp_path / "noisy.relaxed.pdb")
    relaxed = Protein.from_file(tmp_path / "noisy.relaxed.pdb")
    after = find_violations(relaxed)
    assert after["per_residue"].sum() == 0 and after["clash_pairs"] == 0
    assert result.violations_before == before["per_residue"].sum() and result.violations_after == 0
    assert result.final_energy < result.initial_energy
    # restrained: moves less than the noise, and towards the native structure
    assert result.rmsd < 0.7 and result.rmsd == pytest.approx(_rmsd(noisy, relaxed), abs=0.01)
    assert _rmsd(relaxed, trp_cage) < 0.8 * _rmsd(noisy, trp_cage)
    assert relaxed.sequence() == trp_cage.sequence()
    assert np.array_equal(relaxed.residue_index, trp_cage.residue_index)
    assert np.allclose(relaxed.b_factors.max(1), noisy.b_factors.max(1), atol=0.01)  # pLDDT kept
    assert relaxed.atom_mask.sum() == trp_cage.atom_mask.sum()  # heavy atoms only (1L2Y has OXT)


def test_violations_left_after_a_round_lift_their_restraints(trp_cage) -> None:
    """Residue 10 moved 4 A away and 30 L-BFGS steps per round: violations survive round 1, so
    later rounds drop the restraints of the violating residues and get a lower energy. (Reference
    platform: on the CPU platform the violation count after round 1 changed from run to run.)"""
    pos = trp_cage.atom_positions.copy()
    pos[9] += np.array([4.0, 0.0, 0.0], np.float32) * trp_cage.atom_mask[9][:, None]
    moved = Protein(atom_positions=pos, atom_mask=trp_cage.atom_mask, aatype=trp_cage.aatype,
                    residue_index=trp_cage.residue_index, chain_id=trp_cage.chain_id, name="moved")  # fmt: skip
    one = relax_protein(moved, RelaxConfig(max_iterations=30, max_outer_iterations=1, platform="Reference"))
    assert one.rounds == 1 and one.violations_after > 0 and one.excluded_residues == []
    more = relax_protein(moved, RelaxConfig(max_iterations=30, max_outer_iterations=3, platform="Reference"))
    assert more.rounds >= 2 and 9 in more.excluded_residues
    assert more.violations_after <= one.violations_after and more.final_energy < one.final_energy
    assert more.clashes_after == 0


def test_relax_bad_inputs(trp_cage) -> None:
    from tertiary.errors import InputError

    aatype = trp_cage.aatype.copy()
    aatype[5] = 20  # unknown residue: no Amber template
    unknown = Protein(atom_positions=trp_cage.atom_positions, atom_mask=trp_cage.atom_mask, aatype=aatype,
                      residue_index=trp_cage.residue_index, chain_id=trp_cage.chain_id, name="unk")  # fmt: skip
    with pytest.raises(InputError, match="relax 'unk': OpenMM cannot parametrise.*UNK"):
        relax_protein(unknown)
    empty = Protein(atom_positions=np.zeros((2, 37, 3)), atom_mask=np.zeros((2, 37)), aatype=[0, 1],
                    residue_index=[1, 2], chain_id=["A", "A"], name="empty")  # fmt: skip
    with pytest.raises(InputError, match="no atoms"):
        relax_protein(empty)


def test_relax_config_is_checked() -> None:
    with pytest.raises(ConfigError):
        RelaxConfig(tolerance=0.0)
    with pytest.raises(ConfigError):
        RelaxConfig(max_outer_iterations=0)
