"""Geometry: rigid transforms, frames, torsions, atom layouts and superposition (torch, batched)."""

from tertiary.geometry.atoms import atom14_mask, atom14_to_atom37, atom37_mask, atom37_to_atom14, pseudo_beta
from tertiary.geometry.frames import backbone_frames, backbone_frames_from_atom37
from tertiary.geometry.rigid import Rigid, Rotation
from tertiary.geometry.superposition import Superposition, kabsch, superpose
from tertiary.geometry.torsions import atom37_to_torsion_angles, backbone_torsions, chi_angles, dihedral

__all__ = [
    "Rigid",
    "Rotation",
    "Superposition",
    "atom14_mask",
    "atom14_to_atom37",
    "atom37_mask",
    "atom37_to_atom14",
    "atom37_to_torsion_angles",
    "backbone_frames",
    "backbone_frames_from_atom37",
    "backbone_torsions",
    "chi_angles",
    "dihedral",
    "kabsch",
    "pseudo_beta",
    "superpose",
]
