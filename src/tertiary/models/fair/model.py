"""FAIR pocket-design network: atom embeddings, hierarchical encoder, residue-type head.

One call of :meth:`FairModel.encode` is one refinement step: it reads the current pocket state
(coordinates, atom slots, residue types, ligand pose) and returns updated coordinates of the
designed residues and the ligand plus residue-type logits. The two-stage schedules that chain
these calls live in :mod:`.generate` (sampling) and :mod:`.loss` (training); ``forward`` is the
training loss, so that a ``DistributedDataParallel`` wrapper sees the whole step as one forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tertiary.data.pocket import PocketBatch

from .config import FairConfig
from .encoder import EncoderCache, EncoderOutput, HierarchicalEncoder

NUM_ATOM_NAMES = 38  # FAIR's atom-name vocabulary ('' + 37 names)
NUM_TYPES = 21  # 0 = masked / unknown, 1..20 = ARNDCQEGHILKMFPSTWYV


@dataclass
class EncoderInput:
    """Pocket state fed to one encoder call (``B`` complexes padded to ``R`` residues, ``L`` ligand atoms).

    Attributes:
        positions: ``[B, R, 14, 3]`` protein coordinates (A).
        atom_names: ``[B, R, 14]`` FAIR atom-name index per slot (0 = empty slot).
        atom_mask: ``[B, R, 14]`` slots taking part in this call.
        feature_types: ``[B, R, 21]`` residue-type channels of the atom features (one-hot, soft
            logits for designed residues in the backbone stage, channel 0 = masked).
        residue_types: ``[B, R, 21]`` residue types for the residue property embedding.
        res_mask / res_idx / edit: ``[B, R]``.
        ligand_positions / ligand_features / lig_mask: ``[B, L, 3]``, ``[B, L, 15]``, ``[B, L]``.
        graph_ca: ``[B, R, 3]`` CA coordinates of the residue graph (true or current, see config).
        ligand_anchor: ``[B, 3]`` ligand-node position (sum of ligand coordinates).
    """

    positions: torch.Tensor
    atom_names: torch.Tensor
    atom_mask: torch.Tensor
    feature_types: torch.Tensor
    residue_types: torch.Tensor
    res_mask: torch.Tensor
    res_idx: torch.Tensor
    edit: torch.Tensor
    ligand_positions: torch.Tensor
    ligand_features: torch.Tensor
    lig_mask: torch.Tensor
    graph_ca: torch.Tensor
    ligand_anchor: torch.Tensor


class FairModel(nn.Module):
    """Embeddings + :class:`HierarchicalEncoder` + residue-type MLP.

    Args:
        config: architecture; ``FairConfig.preset("fair")`` matches the released checkpoint.
    """

    def __init__(self, config: FairConfig | None = None) -> None:
        super().__init__()
        self.config = config or FairConfig()
        c = self.config.hidden
        self.protein_atom_emb = nn.Linear(self.config.protein_feature_dim, c)
        self.ligand_atom_emb = nn.Linear(self.config.ligand_feature_dim, c)
        self.encoder = HierarchicalEncoder(self.config)
        self.residue_mlp = nn.Linear(c, 20)

    def embed_protein_atoms(self, atom_names: torch.Tensor, feature_types: torch.Tensor) -> torch.Tensor:
        """``[B, R, 14]`` names + ``[B, R, 21]`` type channels -> ``[B, R, 14, C]``.

        Equal to the linear embedding of the 59-dim one-hot feature ``[name (38), type (21)]``.
        """
        w = self.protein_atom_emb.weight  # [C, 59]
        name_part = w[:, :NUM_ATOM_NAMES].T[atom_names]  # [B, R, 14, C]
        type_part = feature_types @ w[:, NUM_ATOM_NAMES:].T  # [B, R, C]
        return name_part + type_part.unsqueeze(2) + self.protein_atom_emb.bias

    def encode(
        self,
        inp: EncoderInput,
        backbone: bool,
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
        cache: EncoderCache | None = None,
    ) -> tuple[EncoderOutput, torch.Tensor]:
        """One encoder call (``cache``: what the calls of one ``generate`` / training step share,
        see :class:`.encoder.EncoderCache`).

        Returns:
            the :class:`EncoderOutput` and residue-type logits ``[B, R, 20]`` (index t = type t+1).
        """
        out = self.encoder(
            self.embed_protein_atoms(inp.atom_names, inp.feature_types),
            inp.atom_mask,
            inp.positions,
            self.ligand_atom_emb(inp.ligand_features),
            inp.lig_mask,
            inp.ligand_positions,
            inp.residue_types,
            inp.res_mask,
            inp.res_idx,
            inp.edit,
            inp.graph_ca,
            inp.ligand_anchor,
            backbone,
            generator,
            chunk_size,
            cache,
        )
        return out, self.residue_mlp(out.h_res)

    def forward(
        self, batch: PocketBatch, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss of ``batch`` (:func:`.loss.training_loss`: both stages, all encoder calls).

        Going through ``forward`` matters under ``DistributedDataParallel``: its gradient
        all-reduce is armed by the wrapper's forward, which a direct :meth:`encode` call bypasses.
        """
        from .loss import training_loss  # loss.py builds on this module

        return training_loss(self, batch, generator)
