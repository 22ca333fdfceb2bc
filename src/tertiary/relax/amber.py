"""Amber relaxation of predicted structures with OpenMM and PDBFixer.

The procedure follows AlphaFold2's relaxation step (Jumper et al. 2021, supplementary 1.8.6):

1. the structure is cleaned with PDBFixer (non-standard residues replaced, heterogens removed,
   missing heavy atoms added; chain breaks are *not* filled) and protonated with the Amber
   force field (``amber99sb``, no cutoff, hydrogen bonds constrained);
2. every heavy atom is held near its start position by a harmonic restraint
   ``0.5 * k * |x - x0|^2`` (``k`` = ``stiffness``, 10 kcal/mol/A^2 by default) and the energy
   is minimised with L-BFGS until the convergence ``tolerance`` (2.39 kcal/mol as AlphaFold2);
3. structural violations (bond lengths / angles beyond 12 standard deviations, heavy-atom
   clashes with 1.5 A tolerance; the definitions of the AlphaFold2 violation loss) are measured
   on the result; while some remain and fewer than ``max_outer_iterations`` rounds have run,
   the restraints on the violating residues are dropped and the minimisation is run again
   from the new coordinates.

The relaxed heavy atoms are written to PDB with the B-factors (pLDDT) of the input.
OpenMM and PDBFixer are optional dependencies (``pip install tertiary[relax]``).
"""

from __future__ import annotations

import io
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tertiary import constants as rc
from tertiary.errors import ConfigError, InputError, MissingDependencyError, TertiaryError
from tertiary.protein import Protein

logger = logging.getLogger(__name__)

KCAL_TO_KJ = 4.184


@dataclass(frozen=True)
class RelaxConfig:
    """Settings of :func:`relax_protein` (AlphaFold2's values by default).

    Attributes:
        stiffness: restraint spring constant on heavy atoms, kcal/mol/A^2.
        tolerance: minimiser convergence tolerance, kcal/mol (AlphaFold2's 2.39 kcal/mol =
            10 kJ/mol; OpenMM 8 reads it as a force tolerance in kJ/mol/nm).
        max_iterations: L-BFGS iterations per minimisation (0 = until converged).
        max_outer_iterations: rounds of minimisation while violations remain.
        max_attempts: retries of a minimisation that raises (OpenMM NaN / exceptions).
        forcefield: OpenMM force-field file.
        platform: OpenMM platform name (``None``: CPU if available, else Reference).
        violation_tolerance_factor / clash_overlap_tolerance: violation definitions (A).
        seed: seed of the start positions OpenMM gives new hydrogens. Results are reproducible
            for a seed on the ``Reference`` platform only: the multithreaded ``CPU`` platform
            sums forces in a varying order, and a short minimisation can end in another state.
    """

    stiffness: float = 10.0
    tolerance: float = 2.39
    max_iterations: int = 0
    max_outer_iterations: int = 3
    max_attempts: int = 3
    forcefield: str = "amber99sb.xml"
    platform: str | None = None
    violation_tolerance_factor: float = 12.0
    clash_overlap_tolerance: float = 1.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.stiffness < 0 or self.tolerance <= 0 or self.max_iterations < 0:
            raise ConfigError(
                f"RelaxConfig: stiffness >= 0, tolerance > 0, max_iterations >= 0 needed, got "
                f"{self.stiffness}, {self.tolerance}, {self.max_iterations}"
            )
        if self.max_outer_iterations < 1 or self.max_attempts < 1:
            raise ConfigError("RelaxConfig: max_outer_iterations and max_attempts must be >= 1")


@dataclass
class RelaxResult:
    """Relaxed structure and what happened to it."""

    protein: Protein
    initial_energy: float  # kcal/mol, first round, restraints included
    final_energy: float  # kcal/mol, last round
    rmsd: float  # heavy-atom RMSD between input and relaxed positions (no superposition), A
    violations_before: int  # residues with a violation in the input
    violations_after: int
    clashes_before: int  # heavy-atom pairs in clash (between residues) in the input
    clashes_after: int
    rounds: int  # minimisation rounds run
    excluded_residues: list[int] = field(default_factory=list)  # 0-based, restraints dropped
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("protein")
        return d


def _require_openmm() -> tuple[Any, Any, Any, Any]:
    try:
        import openmm
        from openmm import app, unit
        from pdbfixer import PDBFixer
    except ImportError as exc:
        raise MissingDependencyError(
            f"Amber relaxation needs OpenMM and PDBFixer ({exc.name} is not installed): "
            "pip install 'tertiary[relax]'"
        ) from exc
    return openmm, app, unit, PDBFixer


# ----------------------------------------------------------------------------- violations
def _chain_offset_index(protein: Protein) -> np.ndarray:
    """Residue numbers with a large jump between chains, so chains never look bonded."""
    ri = protein.residue_index.astype(np.int64).copy()
    chains = protein.chain_id
    offset = 0
    for i in range(1, len(ri)):
        if chains[i] != chains[i - 1]:
            offset += 10_000
        ri[i] += offset
    return ri


def find_violations(protein: Protein, config: RelaxConfig | None = None) -> dict[str, np.ndarray]:
    """AlphaFold2 structural violations of ``protein``.

    Returns:
        ``per_residue`` [N] bool (any violation), ``clash_pairs`` (int, inter-residue heavy-atom
        clashes), ``bond_violations`` [N] bool (peptide bond length / angle), ``within`` [N] bool.
    """
    import torch

    from tertiary.models.alphafold.loss import LossConfig, structural_violations

    cfg = config or RelaxConfig()
    pos, mask = protein.atom14()
    batch = {
        "atom14_atom_exists": torch.from_numpy(mask).double(),
        "residue_index": torch.from_numpy(_chain_offset_index(protein)),
        "aatype": torch.from_numpy(np.minimum(protein.aatype, rc.UNK_INDEX)),
    }
    lcfg = LossConfig(
        violation_tolerance_factor=cfg.violation_tolerance_factor, clash_overlap_tolerance=cfg.clash_overlap_tolerance
    )
    with torch.no_grad():
        v = structural_violations(torch.from_numpy(pos).double(), batch, lcfg)
    return {
        "per_residue": v["per_residue_violation_mask"].numpy() > 0,
        "clash_pairs": np.asarray(int(v["clashes"]["per_atom_num_clash"].sum().item() // 2)),
        "bond_violations": v["bonds"]["per_residue_violation_mask"].numpy() > 0,
        "within": v["within"]["per_atom_violations"].amax(-1).numpy() > 0,
    }


# ----------------------------------------------------------------------------- OpenMM
def _platform(openmm: Any, name: str | None) -> Any:
    """The named OpenMM platform, or ``None`` (OpenMM then picks the fastest one)."""
    if name is None:
        return None
    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if name not in names:
        raise ConfigError(f"OpenMM platform {name!r} is not available (have: {', '.join(names)})")
    return openmm.Platform.getPlatformByName(name)


def _prepare(pdb_text: str, forcefield: Any, seed: int = 0) -> Any:
    """PDBFixer clean-up (no gap filling) and Amber hydrogens; returns an OpenMM Modeller."""
    openmm, app, unit, PDBFixer = _require_openmm()
    fixer = PDBFixer(pdbfile=io.StringIO(pdb_text))
    fixer.findMissingResidues()
    fixer.missingResidues = {}  # a predicted model has no gaps; do not build loops at chain breaks
    fixer.findNonstandardResidues()
    fixer.replaceNonstandardResidues()
    fixer.removeHeterogens(keepWater=False)
    fixer.findMissingAtoms()
    fixer.addMissingAtoms(seed=0)
    modeller = app.Modeller(fixer.topology, fixer.positions)
    # OpenMM starts new hydrogens at random offsets (Python's ``random``): seed it for
    # reproducible results and leave the caller's random state as it was
    state = random.getstate()
    random.seed(seed)
    try:
        modeller.addHydrogens(forcefield)
    finally:
        random.setstate(state)
    return modeller


def _minimise(
    modeller: Any,
    forcefield: Any,
    reference_heavy: dict[tuple[str, int, str], np.ndarray],
    excluded: set[tuple[str, int]],
    cfg: RelaxConfig,
) -> tuple[Any, float, float]:
    """One restrained minimisation; returns (positions, energy before, energy after) in kcal/mol."""
    openmm, app, unit, _ = _require_openmm()
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    if cfg.stiffness > 0:
        force = openmm.CustomExternalForce("0.5 * k * ((x - x0)^2 + (y - y0)^2 + (z - z0)^2)")
        force.addGlobalParameter("k", cfg.stiffness * KCAL_TO_KJ * 100.0)  # kcal/mol/A^2 -> kJ/mol/nm^2
        for name in ("x0", "y0", "z0"):
            force.addPerParticleParameter(name)
        positions = modeller.positions.value_in_unit(unit.nanometer)
        n_restrained = 0
        for atom in modeller.topology.atoms():
            if atom.element is None or atom.element.symbol == "H":
                continue
            res = atom.residue
            key = (res.chain.id, int(res.id))
            if key in excluded:
                continue
            anchor = reference_heavy.get((key[0], key[1], atom.name))
            # restrain to the input position when the atom was in the input, else where it is
            x0 = anchor / 10.0 if anchor is not None else np.asarray(positions[atom.index], dtype=float)
            force.addParticle(atom.index, [float(x0[0]), float(x0[1]), float(x0[2])])
            n_restrained += 1
        system.addForce(force)
        logger.debug("restrained %d heavy atoms (%d residues excluded)", n_restrained, len(excluded))
    integrator = openmm.LangevinIntegrator(0.0, 0.01, 0.0)
    platform = _platform(openmm, cfg.platform)
    simulation = app.Simulation(modeller.topology, system, integrator, platform)
    simulation.context.setPositions(modeller.positions)
    e0 = simulation.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilocalories_per_mole)
    simulation.minimizeEnergy(tolerance=cfg.tolerance * KCAL_TO_KJ, maxIterations=cfg.max_iterations)
    state = simulation.context.getState(getEnergy=True, getPositions=True)
    e1 = state.getPotentialEnergy().value_in_unit(unit.kilocalories_per_mole)
    return state.getPositions(), float(e0), float(e1)


def _heavy_pdb(modeller: Any, positions: Any) -> str:
    """PDB text of the heavy atoms (residue numbers and chain ids kept)."""
    _, app, _, _ = _require_openmm()
    heavy = app.Modeller(modeller.topology, positions)
    heavy.delete([a for a in heavy.topology.atoms() if a.element is not None and a.element.symbol == "H"])
    handle = io.StringIO()
    app.PDBFile.writeFile(heavy.topology, heavy.positions, handle, keepIds=True)
    return handle.getvalue()


def _heavy_positions(protein: Protein) -> dict[tuple[str, int, str], np.ndarray]:
    out: dict[tuple[str, int, str], np.ndarray] = {}
    for i in range(len(protein)):
        for j in np.nonzero(protein.atom_mask[i])[0]:
            key = (str(protein.chain_id[i]) or "A", int(protein.residue_index[i]), rc.ATOM_TYPES[j])
            out[key] = protein.atom_positions[i, j].astype(float)
    return out


def relax_protein(protein: Protein, config: RelaxConfig | None = None) -> RelaxResult:
    """Restrained Amber minimisation of ``protein`` (see the module docstring).

    Raises:
        MissingDependencyError: OpenMM / PDBFixer missing. ConfigError: a bad setting.
        InputError: the structure has no residues, or is not a protein OpenMM can parametrise.
        TertiaryError: every minimisation attempt failed.
    """
    cfg = config or RelaxConfig()
    openmm, app, unit, _ = _require_openmm()
    if len(protein) == 0 or protein.atom_mask.sum() == 0:
        raise InputError(f"relax {protein.name!r}: the structure has no atoms")
    if protein.insertion_code is not None and any(protein.insertion_code):
        raise InputError(f"relax {protein.name!r}: insertion codes are not supported; renumber the residues")
    start = time.perf_counter()
    chains = np.where(protein.chain_id == "", "A", protein.chain_id)
    clean = Protein(
        atom_positions=protein.atom_positions, atom_mask=protein.atom_mask, aatype=protein.aatype,
        residue_index=protein.residue_index, chain_id=chains, b_factors=protein.b_factors, name=protein.name,
    )  # fmt: skip
    before = find_violations(clean, cfg)
    reference = _heavy_positions(clean)
    forcefield = app.ForceField(cfg.forcefield)
    try:
        modeller = _prepare(clean.to_pdb(include_ligands=False), forcefield, cfg.seed)
    except (ValueError, KeyError, Exception) as exc:  # OpenMM raises plain Exceptions for templates
        if isinstance(exc, TertiaryError):
            raise
        raise InputError(f"relax {protein.name!r}: OpenMM cannot parametrise the structure ({exc})") from exc

    keys = [(str(c), int(r)) for c, r in zip(chains, protein.residue_index)]
    excluded: set[tuple[str, int]] = set()
    excluded_idx: list[int] = []
    relaxed = clean
    first_energy = final_energy = float("nan")
    rounds = 0
    after = before
    while True:
        positions = None
        last_exc: Exception | None = None
        for attempt in range(cfg.max_attempts):
            try:
                positions, e0, e1 = _minimise(modeller, forcefield, reference, excluded, cfg)
                break
            except Exception as exc:  # openmm.OpenMMException and NaN positions
                last_exc = exc
                logger.warning("relax %s: minimisation attempt %d failed: %s", protein.name, attempt + 1, exc)
        if positions is None:
            raise TertiaryError(
                f"relax {protein.name!r}: minimisation failed {cfg.max_attempts} times ({last_exc})"
            )
        rounds += 1
        if rounds == 1:
            first_energy = e0
        final_energy = e1
        modeller = app.Modeller(modeller.topology, positions)
        relaxed_read = Protein.from_string(_heavy_pdb(modeller, positions), fmt="pdb", name=protein.name)
        relaxed = _match_residues(clean, relaxed_read)
        after = find_violations(relaxed, cfg)
        n_viol = int(after["per_residue"].sum())
        logger.info(
            "relax %s: round %d energy %.1f -> %.1f kcal/mol, %d residues with violations",
            protein.name, rounds, e0, e1, n_viol,
        )  # fmt: skip
        if n_viol == 0 or rounds >= cfg.max_outer_iterations:
            break
        for i in np.nonzero(after["per_residue"])[0]:
            if keys[i] not in excluded:
                excluded.add(keys[i])
                excluded_idx.append(int(i))

    both = clean.atom_mask * relaxed.atom_mask
    diff = ((clean.atom_positions - relaxed.atom_positions) ** 2).sum(-1)
    rmsd = float(np.sqrt((diff * both).sum() / max(1.0, both.sum())))
    return RelaxResult(
        protein=relaxed,
        initial_energy=first_energy,
        final_energy=final_energy,
        rmsd=rmsd,
        violations_before=int(before["per_residue"].sum()),
        violations_after=int(after["per_residue"].sum()),
        clashes_before=int(before["clash_pairs"]),
        clashes_after=int(after["clash_pairs"]),
        rounds=rounds,
        excluded_residues=sorted(excluded_idx),
        seconds=round(time.perf_counter() - start, 3),
    )


def _match_residues(reference: Protein, relaxed: Protein) -> Protein:
    """``relaxed`` in the residue order of ``reference`` with its B-factors (e.g. pLDDT)."""
    index = {(str(c), int(r)): i for i, (c, r) in enumerate(zip(relaxed.chain_id, relaxed.residue_index))}
    order = []
    for c, r in zip(reference.chain_id, reference.residue_index):
        key = (str(c), int(r))
        if key not in index:
            raise TertiaryError(f"relax {reference.name!r}: residue {c}{r} was lost by OpenMM")
        order.append(index[key])
    out = relaxed.take(np.asarray(order))
    per_residue = reference.b_factors.max(axis=1)  # pLDDT is the same on every atom of a residue
    b = np.where(out.atom_mask > 0, per_residue[:, None], 0.0).astype(np.float32)
    return Protein(
        atom_positions=out.atom_positions, atom_mask=out.atom_mask, aatype=reference.aatype,
        residue_index=reference.residue_index, chain_id=reference.chain_id, b_factors=b, name=reference.name,
    )  # fmt: skip


def relax_pdb(
    pdb_path: str | os.PathLike[str], out_path: str | os.PathLike[str], config: RelaxConfig | None = None
) -> RelaxResult:
    """Relax the first model of a PDB / mmCIF file and write the heavy atoms to ``out_path`` (PDB)."""
    protein = Protein.from_file(pdb_path)
    if protein.ligands:
        protein = Protein(
            atom_positions=protein.atom_positions, atom_mask=protein.atom_mask, aatype=protein.aatype,
            residue_index=protein.residue_index, chain_id=protein.chain_id, insertion_code=protein.insertion_code,
            b_factors=protein.b_factors, name=protein.name,
        )  # fmt: skip
    result = relax_protein(protein, config)
    result.protein.to_pdb(Path(out_path))
    return result
