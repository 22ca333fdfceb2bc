"""The structure module (AlphaFold2 Algorithm 20).

Starting from identity backbone frames ("black-hole initialisation"), ``no_blocks`` iterations
with shared weights each refine the single representation with invariant point attention and a
transition, update every residue's backbone frame, predict torsion angles and build atom14
coordinates from ideal geometry. Frames are kept in nm internally (AlphaFold2's
``trans_scale_factor`` = 10) and reported in Angstrom.
"""

from __future__ import annotations

import torch
from torch import nn

from tertiary.errors import InputError
from tertiary.geometry.rigid import Rigid, Rotation
from tertiary.models.alphafold.config import StructureModuleConfig
from tertiary.models.alphafold.structure.angle_resnet import AngleResnet
from tertiary.models.alphafold.structure.atoms_from_frames import (
    frames_to_atom14_positions,
    torsion_angles_to_frames,
)
from tertiary.models.alphafold.structure.backbone_update import BackboneUpdate
from tertiary.models.alphafold.structure.ipa import InvariantPointAttention
from tertiary.models.alphafold.structure.param_maps import (
    NPZ_PREFIX,
    NpzMap,
    structure_module_npz_map,
    structure_module_openfold_map,
)
from tertiary.nn.primitives import Linear

__all__ = ["StructureModule", "StructureModuleConfig", "StructureModuleTransition"]


class StructureModuleTransitionLayer(nn.Module):
    """``s + Linear(ReLU(Linear(ReLU(Linear(s)))))`` (Algorithm 20, lines 8-9)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.linear_1 = Linear(c, c, init="relu")
        self.linear_2 = Linear(c, c, init="relu")
        self.linear_3 = Linear(c, c, init="final")

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return s + self.linear_3(torch.relu(self.linear_2(torch.relu(self.linear_1(s)))))


class StructureModuleTransition(nn.Module):
    """Residual transition layers, dropout, LayerNorm (Algorithm 20, lines 8-10)."""

    def __init__(self, c: int, no_layers: int, dropout_rate: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(StructureModuleTransitionLayer(c) for _ in range(no_layers))
        self.dropout = nn.Dropout(dropout_rate)
        self.layer_norm = nn.LayerNorm(c)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            s = layer(s)
        return self.layer_norm(self.dropout(s))


class StructureModule(nn.Module):
    """Algorithm 20.

    Args:
        config: dimensions and options (:class:`StructureModuleConfig`).
    """

    def __init__(self, config: StructureModuleConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.layer_norm_s = nn.LayerNorm(c.c_s)
        self.layer_norm_z = nn.LayerNorm(c.c_z)
        self.linear_in = Linear(c.c_s, c.c_s)
        self.ipa = InvariantPointAttention(
            c.c_s, c.c_z, c.c_ipa, c.no_heads_ipa, c.no_qk_points, c.no_v_points, inf=c.inf, eps=c.epsilon
        )
        self.ipa_dropout = nn.Dropout(c.dropout_rate)
        self.layer_norm_ipa = nn.LayerNorm(c.c_s)
        self.transition = StructureModuleTransition(c.c_s, c.no_transition_layers, c.dropout_rate)
        self.backbone_update = BackboneUpdate(c.c_s)
        self.angle_resnet = AngleResnet(c.c_s, c.c_resnet, c.no_resnet_blocks, c.no_angles, c.epsilon)

    def forward(
        self,
        s: torch.Tensor,
        z: torch.Tensor,
        aatype: torch.Tensor,
        mask: torch.Tensor | None = None,
        chunk_size: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run all blocks.

        Args:
            s: single representation from the Evoformer ``[*, N, c_s]``.
            z: pair representation ``[*, N, N, c_z]``.
            aatype: residue types ``[*, N]`` (AlphaFold order; 20 = unknown).
            mask: residue mask ``[*, N]`` (None = all residues real).
            chunk_size: IPA query chunk size (None = unchunked).

        Returns:
            ``frames [B, *, N, 7]`` backbone frames (quaternion w,x,y,z then translation in
            Angstrom) after every block (B = ``no_blocks``); ``sidechain_frames [B, *, N, 8, 4, 4]``
            all rigid-group frames (Angstrom); ``unnormalized_angles`` and ``angles``
            ``[B, *, N, 7, 2]`` torsions as (sin, cos); ``positions [B, *, N, 14, 3]`` atom14
            coordinates (Angstrom); ``states [B, *, N, c_s]`` the single representation after
            each block; ``single [*, N, c_s]`` the final single representation.
        """
        c = self.config
        n = s.shape[-2]
        if z.shape[-3:-1] != (n, n) or aatype.shape[-1] != n:
            raise InputError(
                f"structure module: s has {n} residues but z is {tuple(z.shape)} and aatype {tuple(aatype.shape)}"
            )
        if mask is None:
            mask = s.new_ones(s.shape[:-1])
        s = self.layer_norm_s(s)
        z = self.layer_norm_z(z)
        s_initial = s
        s = self.linear_in(s)
        frame_dtype = torch.promote_types(s.dtype, torch.float32)
        rigids = Rigid.identity(s.shape[:-1], dtype=frame_dtype, device=s.device, fmt="quat")

        outputs: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("frames", "sidechain_frames", "unnormalized_angles", "angles", "positions", "states")
        }
        for _ in range(c.no_blocks):
            s = s + self.ipa(s, z, rigids, mask, chunk_size=chunk_size)
            s = self.layer_norm_ipa(self.ipa_dropout(s))
            s = self.transition(s)
            rigids = rigids.compose_q_update_vec(self.backbone_update(s).to(frame_dtype))
            # torsions and atoms use rotation matrices, in Angstrom
            backbone = Rigid(Rotation(rot_mats=rigids.get_rots().get_rot_mats()), rigids.get_trans())
            backbone = backbone.scale_translation(c.trans_scale_factor)
            raw_angles, angles = self.angle_resnet(s, s_initial)
            group_frames = torsion_angles_to_frames(backbone, angles.to(frame_dtype), aatype)
            outputs["frames"].append(rigids.scale_translation(c.trans_scale_factor).to_tensor_7())
            outputs["sidechain_frames"].append(group_frames.to_tensor_4x4())
            outputs["unnormalized_angles"].append(raw_angles)
            outputs["angles"].append(angles)
            outputs["positions"].append(frames_to_atom14_positions(group_frames, aatype))
            outputs["states"].append(s)
            rigids = rigids.stop_rot_gradient()

        result = {k: torch.stack(v) for k, v in outputs.items()}
        result["single"] = s
        return result

    # ------------------------------------------------------------------ weights
    def openfold_key_map(self, openfold_prefix: str = "structure_module.", prefix: str = "") -> dict[str, str]:
        """OpenFold state-dict keys -> this module's keys (with ``prefix``)."""
        return structure_module_openfold_map(
            self.config.no_transition_layers, self.config.no_resnet_blocks, openfold_prefix, prefix
        )

    def npz_key_map(self, npz_prefix: str = NPZ_PREFIX + "structure_module", prefix: str = "") -> NpzMap:
        """Official AlphaFold2 npz keys -> (this module's key, transform)."""
        return structure_module_npz_map(
            self.config.no_transition_layers, self.config.no_resnet_blocks, npz_prefix, prefix
        )
