"""AlphaFold2 structure module (Algorithm 20) and its parts: IPA, backbone update, angle resnet, atoms from frames."""

from tertiary.models.alphafold.structure.angle_resnet import AngleResnet
from tertiary.models.alphafold.structure.atoms_from_frames import (
    atom14_to_atom37,
    atom37_exists,
    atom37_to_atom14_index,
    frames_to_atom14_positions,
    pseudo_beta,
    torsion_angles_to_frames,
)
from tertiary.models.alphafold.structure.backbone_update import BackboneUpdate
from tertiary.models.alphafold.structure.ipa import InvariantPointAttention
from tertiary.models.alphafold.structure.param_maps import convert_npz_array
from tertiary.models.alphafold.structure.structure_module import StructureModule, StructureModuleConfig

__all__ = [
    "AngleResnet",
    "BackboneUpdate",
    "InvariantPointAttention",
    "StructureModule",
    "StructureModuleConfig",
    "atom14_to_atom37",
    "atom37_exists",
    "atom37_to_atom14_index",
    "convert_npz_array",
    "frames_to_atom14_positions",
    "pseudo_beta",
    "torsion_angles_to_frames",
]
