"""The AlphaFold2 trunk of one recycling iteration (Algorithm 2 lines 5-17): input and recycling
embedding, template embedding (models 1-2), extra-MSA stack, Evoformer stack."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from tertiary.errors import InputError
from tertiary.models.alphafold.config import AlphaFoldConfig
from tertiary.models.alphafold.embedders import (
    ExtraMSAEmbedder,
    InputEmbedder,
    RecyclingEmbedder,
    extra_msa_feat,
)
from tertiary.models.alphafold.evoformer import EvoformerStack
from tertiary.models.alphafold.extra_msa import ExtraMSAStack
from tertiary.models.alphafold.structure.atoms_from_frames import pseudo_beta
from tertiary.models.alphafold.template import TEMPLATE_ANGLE_FEATURES, TEMPLATE_PAIR_FEATURES, TemplateEmbedder

TRUNK_FEATURES = (
    "aatype", "target_feat", "residue_index", "msa_feat", "seq_mask", "msa_mask",
    "extra_msa", "extra_msa_mask", "extra_has_deletion", "extra_deletion_value",
)  # fmt: skip


def check_features(feats: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`InputError` naming missing features or inconsistent residue counts."""
    missing = [k for k in TRUNK_FEATURES if k not in feats]
    if missing:
        raise InputError(f"AlphaFold features missing: {', '.join(missing)}")
    n = feats["aatype"].shape[-1]
    for key, axis in (("target_feat", -2), ("residue_index", -1), ("msa_feat", -2), ("extra_msa", -1)):
        if feats[key].shape[axis] != n:
            raise InputError(f"AlphaFold feature {key} has {feats[key].shape[axis]} residues, aatype has {n}")


class AlphaFoldTrunk(nn.Module):
    """Embedders, extra-MSA stack and Evoformer: features + recycled state -> ``m``, ``z``, ``s``."""

    def __init__(self, config: AlphaFoldConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.input_embedder = InputEmbedder(c.tf_dim, c.msa_dim, c.c_m, c.c_z, c.relpos_k)
        r = c.recycling
        self.recycling_embedder = RecyclingEmbedder(c.c_m, c.c_z, r.min_bin, r.max_bin, r.no_bins, r.inf)
        self.extra_msa_embedder = ExtraMSAEmbedder(c.extra_msa_dim, c.c_e)
        self.extra_msa_stack = ExtraMSAStack(c.extra_msa)
        self.evoformer = EvoformerStack(c.evoformer, c.c_s)
        if c.template.enabled:
            self.template_embedder = TemplateEmbedder(c.template, c.c_m, c.c_z)

    def uses_templates(self, feats: Mapping[str, torch.Tensor]) -> bool:
        """True when the model has a template stack and ``feats`` carries template features.

        Without template features a template model runs as AlphaFold2 does with no template hit
        (an empty template set adds nothing to ``z`` and only masked rows to the MSA).
        """
        if not self.config.template.enabled or "template_aatype" not in feats:
            return False
        needed = TEMPLATE_PAIR_FEATURES + (TEMPLATE_ANGLE_FEATURES if self.config.template.embed_angles else ())
        missing = [k for k in needed if k not in feats]
        if missing:
            raise InputError(f"AlphaFold template features missing: {', '.join(missing)}")
        return True

    def initial_recycling_state(
        self, feats: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Zeros for cycle 0: ``m_1 [*, N, c_m]``, ``z [*, N, N, c_z]``, atom37 ``x [*, N, 37, 3]``."""
        tf = feats["target_feat"]
        batch, n = tf.shape[:-2], tf.shape[-2]
        c = self.config
        return (
            tf.new_zeros(*batch, n, c.c_m),
            tf.new_zeros(*batch, n, n, c.c_z),
            tf.new_zeros(*batch, n, 37, 3),
        )

    def embed(
        self,
        feats: Mapping[str, torch.Tensor],
        m_1_prev: torch.Tensor,
        z_prev: torch.Tensor,
        x_prev: torch.Tensor,
        chunk_size: int | None = None,
        record: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embeddings, recycling, templates and extra-MSA stack -> Evoformer inputs
        ``m [*, S (+ T), N, c_m]``, ``z [*, N, N, c_z]`` and the MSA mask ``[*, S (+ T), N]``
        (template rows are appended when the model embeds template angles).

        ``x_prev`` holds the previous cycle's atom37 positions ``[*, N, 37, 3]`` (Angstrom).
        ``record``, when given, receives the intermediate tensors under OpenFold-like names.
        """
        m, z = self.input_embedder(feats["target_feat"], feats["residue_index"], feats["msa_feat"])
        x_pb, _ = pseudo_beta(feats["aatype"], x_prev)
        m_1_emb, z_emb = self.recycling_embedder(m_1_prev, z_prev, x_pb)
        if record is not None:
            record.update({
                "input_embedder.m": m, "input_embedder.z": z,
                "recycling_embedder.m_1_prev_emb": m_1_emb, "recycling_embedder.z_prev_emb": z_emb,
            })  # fmt: skip
        m = torch.cat([(m[..., :1, :, :] + m_1_emb.unsqueeze(-3)), m[..., 1:, :, :]], dim=-3)
        z = z + z_emb
        seq_mask = feats["seq_mask"].to(z.dtype)
        pair_mask = seq_mask[..., :, None] * seq_mask[..., None, :]
        msa_mask = feats["msa_mask"].to(m.dtype)
        if self.uses_templates(feats):
            templ = self.template_embedder(feats, z, pair_mask, chunk_size, record)
            z = z + templ["pair_update"]
            if "single" in templ:
                m = torch.cat([m, templ["single"].to(m.dtype)], dim=-3)
                msa_mask = torch.cat([msa_mask, templ["single_mask"].to(m.dtype)], dim=-2)
        a = self.extra_msa_embedder(
            extra_msa_feat(feats["extra_msa"], feats["extra_has_deletion"], feats["extra_deletion_value"])
        )
        z = self.extra_msa_stack(a, z, feats["extra_msa_mask"].to(z.dtype), pair_mask, chunk_size)
        if record is not None:
            record.update({"extra_msa_embedder.a": a, "extra_msa_stack.z_out": z})
        return m, z, msa_mask

    def forward(
        self,
        feats: Mapping[str, torch.Tensor],
        m_1_prev: torch.Tensor,
        z_prev: torch.Tensor,
        x_prev: torch.Tensor,
        chunk_size: int | None = None,
        record: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One trunk pass -> ``m [*, S (+ T), N, c_m]``, ``z [*, N, N, c_z]``, ``s [*, N, c_s]``."""
        check_features(feats)
        m, z, msa_mask = self.embed(feats, m_1_prev, z_prev, x_prev, chunk_size, record)
        seq_mask = feats["seq_mask"].to(z.dtype)
        pair_mask = seq_mask[..., :, None] * seq_mask[..., None, :]
        m, z, s = self.evoformer(m, z, msa_mask, pair_mask, chunk_size)
        if record is not None:
            record.update({"evoformer.m": m, "evoformer.z": z, "evoformer.s": s})
        return m, z, s
