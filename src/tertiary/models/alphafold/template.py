"""Template embedding (AlphaFold2 models 1-2): template features, the template pair stack
(Algorithm 16), template pointwise attention (Algorithm 17) and the template angle (single)
embedding (Algorithm 2 lines 7-8 and 9-13).

Parameter names follow OpenFold's module tree (``template_embedder.template_pair_stack.blocks.0.
tri_att_start ...``) so OpenFold checkpoints load one to one; :mod:`.weights` maps the official
``template_embedding`` npz keys.

Template features (per template ``t``; ``[*, T, N, ...]``), as produced by AlphaFold2's /
OpenFold's data pipeline:

- ``template_aatype`` ``[*, T, N]`` (AlphaFold order, 0-20, 21 = gap),
  ``template_all_atom_positions`` ``[*, T, N, 37, 3]`` (Angstrom), ``template_all_atom_mask``
  ``[*, T, N, 37]``, ``template_pseudo_beta`` ``[*, T, N, 3]``, ``template_pseudo_beta_mask``
  ``[*, T, N]``, ``template_mask`` ``[*, T]`` (1 = real template);
- for the angle embedding: ``template_torsion_angles_sin_cos`` and
  ``template_alt_torsion_angles_sin_cos`` ``[*, T, N, 7, 2]``, ``template_torsion_angles_mask``
  ``[*, T, N, 7]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from tertiary import constants as rc
from tertiary.geometry.rigid import Rigid
from tertiary.models.alphafold.config import TemplateConfig
from tertiary.models.alphafold.embedders import distogram_one_hot
from tertiary.models.alphafold.evoformer import shared_dropout
from tertiary.models.alphafold.triangle_attention import TriangleAttentionEndingNode, TriangleAttentionStartingNode
from tertiary.models.alphafold.triangle_multiplication import (
    TriangleMultiplicationIncoming,
    TriangleMultiplicationOutgoing,
)
from tertiary.nn.attention import attention
from tertiary.nn.primitives import Linear, Transition

#: features the template embedder reads (the angle features only when ``embed_angles``)
TEMPLATE_PAIR_FEATURES = (
    "template_aatype", "template_all_atom_positions", "template_all_atom_mask",
    "template_pseudo_beta", "template_pseudo_beta_mask", "template_mask",
)  # fmt: skip
TEMPLATE_ANGLE_FEATURES = (
    "template_torsion_angles_sin_cos", "template_alt_torsion_angles_sin_cos", "template_torsion_angles_mask",
)  # fmt: skip


def template_pair_feat(feats: Mapping[str, torch.Tensor], cfg: TemplateConfig) -> torch.Tensor:
    """Algorithm 2 line 9 input: ``[*, N, N, 88]`` pair features of one template.

    Channels: pseudo-beta distogram (``distogram_no_bins``), pseudo-beta pair mask, aatype one-hot
    of residue j and of residue i (22 each), unit vector from residue i's backbone frame to
    residue j's CA (3; zero unless ``use_unit_vector``, as in AlphaFold2 monomer), backbone pair
    mask. Everything is multiplied by the backbone (N, CA, C present) pair mask.
    """
    pb, pb_mask = feats["template_pseudo_beta"], feats["template_pseudo_beta_mask"]
    dtype = pb.dtype
    dgram = distogram_one_hot(pb, cfg.distogram_min_bin, cfg.distogram_max_bin, cfg.distogram_no_bins, cfg.inf)
    pb_mask_2d = pb_mask[..., :, None] * pb_mask[..., None, :]
    aatype = F.one_hot(feats["template_aatype"].long(), rc.RESTYPE_NUM + 2).to(dtype)
    n = aatype.shape[-2]
    pos, atom_mask = feats["template_all_atom_positions"], feats["template_all_atom_mask"]
    i_n, i_ca, i_c = (rc.ATOM_ORDER[a] for a in ("N", "CA", "C"))
    bb_mask = atom_mask[..., i_n] * atom_mask[..., i_ca] * atom_mask[..., i_c]
    bb_mask_2d = (bb_mask[..., :, None] * bb_mask[..., None, :]).to(dtype)
    if cfg.use_unit_vector:
        ca, c_atom = pos[..., i_ca, :], pos[..., i_c, :]
        # x axis along CA -> C, N in the xy plane (AlphaFold2's template frame)
        frames = Rigid.from_3_points(2 * ca - c_atom, ca, pos[..., i_n, :], eps=cfg.eps)
        vec = frames.unsqueeze(-1).invert_apply(ca[..., None, :, :])  # [*, N, N, 3]
        inv = torch.rsqrt(cfg.eps + (vec**2).sum(-1)) * bb_mask_2d
        unit = vec * inv[..., None]
    else:
        unit = pb.new_zeros(*pb.shape[:-2], n, n, 3)
    act = torch.cat(
        [
            dgram,
            pb_mask_2d[..., None].to(dtype),
            aatype[..., None, :, :].expand(*aatype.shape[:-2], n, n, aatype.shape[-1]),
            aatype[..., :, None, :].expand(*aatype.shape[:-2], n, n, aatype.shape[-1]),
            unit,
            bb_mask_2d[..., None],
        ],
        dim=-1,
    )
    return act * bb_mask_2d[..., None]


def template_angle_feat(feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Algorithm 2 line 7 input: ``[*, T, N, 57]`` = aatype one-hot (22), torsion sin/cos (14),
    alternative torsion sin/cos (14), torsion mask (7)."""
    sc = feats["template_torsion_angles_sin_cos"]
    return torch.cat(
        [
            F.one_hot(feats["template_aatype"].long(), rc.RESTYPE_NUM + 2).to(sc.dtype),
            sc.flatten(-2),
            feats["template_alt_torsion_angles_sin_cos"].flatten(-2),
            feats["template_torsion_angles_mask"].to(sc.dtype),
        ],
        dim=-1,
    )


class TemplateSingleEmbedder(nn.Module):
    """Algorithm 2 line 7-8: ``Linear -> ReLU -> Linear`` of the template angle features -> MSA rows."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.linear_1 = Linear(c_in, c_out, init="relu")
        self.linear_2 = Linear(c_out, c_out, init="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(torch.relu(self.linear_1(x)))


class TemplatePairEmbedder(nn.Module):
    """Algorithm 2 line 9: linear embedding of the template pair features ``[*, N, N, c_in] -> c_t``."""

    def __init__(self, c_in: int, c_t: int) -> None:
        super().__init__()
        self.linear = Linear(c_in, c_t, init="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class TemplatePairStackBlock(nn.Module):
    """Algorithm 16 lines 2-6: triangle attention (starting, ending node), triangle updates
    (outgoing, incoming), pair transition; dropout row-wise except column-wise after the ending node."""

    def __init__(self, cfg: TemplateConfig) -> None:
        super().__init__()
        c = cfg.c_t
        self.dropout_rate = cfg.dropout_rate
        self.tri_att_start = TriangleAttentionStartingNode(c, cfg.c_hidden_tri_att, cfg.no_heads, cfg.pair_stack_inf)
        self.tri_att_end = TriangleAttentionEndingNode(c, cfg.c_hidden_tri_att, cfg.no_heads, cfg.pair_stack_inf)
        self.tri_mul_out = TriangleMultiplicationOutgoing(c, cfg.c_hidden_tri_mul)
        self.tri_mul_in = TriangleMultiplicationIncoming(c, cfg.c_hidden_tri_mul)
        self.pair_transition = Transition(c, cfg.pair_transition_n)

    def forward(self, t: torch.Tensor, mask: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """``t [*, N, N, c_t]`` (one template), ``mask [*, N, N]`` -> ``[*, N, N, c_t]``."""
        p, tr = self.dropout_rate, self.training
        t = t + shared_dropout(self.tri_att_start(t, mask, chunk_size), p, -3, tr)
        t = t + shared_dropout(self.tri_att_end(t, mask, chunk_size), p, -2, tr)
        t = t + shared_dropout(self.tri_mul_out(t, mask, chunk_size), p, -3, tr)
        t = t + shared_dropout(self.tri_mul_in(t, mask, chunk_size), p, -3, tr)
        return t + self.pair_transition(t, chunk_size=chunk_size)


class TemplatePairStack(nn.Module):
    """Algorithm 16: ``no_blocks`` template pair blocks, then a LayerNorm."""

    def __init__(self, cfg: TemplateConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TemplatePairStackBlock(cfg) for _ in range(cfg.no_blocks))
        self.layer_norm = nn.LayerNorm(cfg.c_t)

    def forward(self, t: torch.Tensor, mask: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        for block in self.blocks:
            t = block(t, mask, chunk_size)
        return self.layer_norm(t)


class _PointwiseMHA(nn.Module):
    """Ungated multi-head attention with queries from the pair rep, keys / values from templates."""

    def __init__(self, c_z: int, c_t: int, c_hidden: int, no_heads: int) -> None:
        super().__init__()
        self.c_hidden, self.no_heads = c_hidden, no_heads
        self.linear_q = Linear(c_z, c_hidden * no_heads, bias=False, init="glorot")
        self.linear_k = Linear(c_t, c_hidden * no_heads, bias=False, init="glorot")
        self.linear_v = Linear(c_t, c_hidden * no_heads, bias=False, init="glorot")
        self.linear_o = Linear(c_hidden * no_heads, c_z, init="final")

    def forward(self, z: torch.Tensor, t: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``z [*, I, J, c_z]``, ``t [*, I, J, T, c_t]``, ``bias [*, 1, 1, 1, 1, T]`` -> ``[*, I, J, c_z]``."""
        h, c = self.no_heads, self.c_hidden
        q = self.linear_q(z).unflatten(-1, (h, 1, c))  # [*, I, J, H, 1, c]
        k = self.linear_k(t).unflatten(-1, (h, c)).transpose(-2, -3)  # [*, I, J, H, T, c]
        v = self.linear_v(t).unflatten(-1, (h, c)).transpose(-2, -3)
        o = attention(q, k, v, biases=[bias], scale=c**-0.5)  # [*, I, J, H, 1, c]
        return self.linear_o(o.flatten(-3))


class TemplatePointwiseAttention(nn.Module):
    """Algorithm 17: each pair ``ij`` attends over the templates' ``t^s_ij``; masked templates are skipped."""

    def __init__(self, c_t: int, c_z: int, c_hidden: int, no_heads: int, inf: float = 1e5) -> None:
        super().__init__()
        self.inf = inf
        self.mha = _PointwiseMHA(c_z, c_t, c_hidden, no_heads)

    def forward(
        self, t: torch.Tensor, z: torch.Tensor, template_mask: torch.Tensor, chunk_size: int | None = None
    ) -> torch.Tensor:
        """``t [*, T, N, N, c_t]``, ``z [*, N, N, c_z]``, ``template_mask [*, T]`` -> update ``[*, N, N, c_z]``.

        ``chunk_size`` bounds the rows ``i`` processed at once.
        """
        bias = (self.inf * (template_mask.to(z.dtype) - 1.0))[..., None, None, None, None, :]
        t = t.movedim(-4, -2)  # [*, N, N, T, c_t]
        n = z.shape[-3]
        step = n if chunk_size is None else chunk_size
        out = [self.mha(z[..., s : s + step, :, :], t[..., s : s + step, :, :, :], bias) for s in range(0, n, step)]
        return torch.cat(out, dim=-3)


class TemplateEmbedder(nn.Module):
    """Algorithm 2 lines 7-13: template pair embedding added to ``z`` and template rows for the MSA."""

    def __init__(self, cfg: TemplateConfig, c_m: int, c_z: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.template_single_embedder = TemplateSingleEmbedder(cfg.single_c_in, c_m)
        self.template_pair_embedder = TemplatePairEmbedder(cfg.pair_c_in, cfg.c_t)
        self.template_pair_stack = TemplatePairStack(cfg)
        self.template_pointwise_att = TemplatePointwiseAttention(
            cfg.c_t, c_z, cfg.c_hidden_pointwise, cfg.no_heads_pointwise, cfg.inf
        )

    def forward(
        self,
        feats: Mapping[str, torch.Tensor],
        z: torch.Tensor,
        pair_mask: torch.Tensor,
        chunk_size: int | None = None,
        record: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Template features ``[*, T, ...]``, ``z [*, N, N, c_z]``, ``pair_mask [*, N, N]`` ->

        ``pair_update [*, N, N, c_z]`` (zero when no template is present), and with
        ``embed_angles`` ``single [*, T, N, c_m]`` (extra MSA rows) with ``single_mask [*, T, N]``
        (the templates' psi-torsion mask, as in AlphaFold2). Templates go through the pair stack
        one at a time (peak memory of one template).
        """
        n_templ = feats["template_aatype"].shape[-2]
        pair_embedded, stacked = [], []
        for i in range(n_templ):
            one = {k: feats[k].select(z.dim() - 3, i) for k in TEMPLATE_PAIR_FEATURES if k != "template_mask"}
            t = self.template_pair_embedder(template_pair_feat(one, self.cfg).to(z.dtype))
            if record is not None:
                pair_embedded.append(t)
            stacked.append(self.template_pair_stack(t, pair_mask, chunk_size))
            del t
        t_all = torch.stack(stacked, dim=-4)  # [*, T, N, N, c_t]
        del stacked
        template_mask = feats["template_mask"].to(z.dtype)
        update = self.template_pointwise_att(t_all, z, template_mask, chunk_size)
        if record is not None:
            record["template_pair_embedder.out"] = torch.stack(pair_embedded, dim=-4)
            record["template_pair_stack.out"] = t_all
            record["template_pointwise_att.out"] = update
        present = (template_mask.sum(-1) > 0).to(z.dtype)
        out = {"pair_update": update * present[..., None, None, None]}
        if self.cfg.embed_angles:
            single = self.template_single_embedder(template_angle_feat(feats).to(z.dtype))
            out["single"] = single
            out["single_mask"] = feats["template_torsion_angles_mask"][..., 2].to(z.dtype)
            if record is not None:
                record["template_single_embedder.out"] = single
        return out
