"""Amber relaxation of predicted structures (OpenMM + PDBFixer, ``pip install tertiary[relax]``)."""

from tertiary.relax.amber import RelaxConfig, RelaxResult, find_violations, relax_pdb, relax_protein

__all__ = ["RelaxConfig", "RelaxResult", "find_violations", "relax_pdb", "relax_protein"]
