"""Input embedders: target / MSA features and relative positions (Algorithms 3-5), recycling
(Algorithm 32) and the extra-MSA embedding (Algorithm 2 line 14, supplement 1.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tertiary.nn.primitives import Linear


def relpos_index(residue_index: torch.Tensor, k: int) -> torch.Tensor:
    """Algorithm 4: ``clip(r_i - r_j, -k, k) + k`` as a ``[*, N, N]`` index into ``2k + 1`` bins."""
    d = residue_index[..., :, None] - residue_index[..., None, :]
    return (torch.clamp(d, -k, k) + k).long()


def distogram_one_hot(
    x: torch.Tensor, min_bin: float, max_bin: float, no_bins: int, inf: float = 1e8
) -> torch.Tensor:
    """One-hot of squared distances between points ``x [*, N, 3]`` -> ``[*, N, N, no_bins]``.

    Bin ``b`` holds ``lower_b < d^2 < lower_{b+1}`` with ``lower = linspace(min_bin, max_bin,
    no_bins)^2`` (Angstrom) and an upper edge ``inf`` (Angstrom^2) for the last bin.
    """
    lower = torch.linspace(min_bin, max_bin, no_bins, dtype=x.dtype, device=x.device) ** 2
    upper = torch.cat([lower[1:], lower.new_tensor([inf])])
    d2 = torch.sum((x[..., :, None, :] - x[..., None, :, :]) ** 2, dim=-1, keepdim=True)
    return ((d2 > lower) & (d2 < upper)).to(x.dtype)


class InputEmbedder(nn.Module):
    """Algorithm 3: ``m = Linear(msa_feat) + Linear(target_feat)``, ``z = a_i + b_j + relpos_ij``.

    Args:
        tf_dim: target_feat width (22). msa_dim: msa_feat width (49). c_m, c_z: output widths.
        relpos_k: relative positions are clipped to ``[-k, k]``.
    """

    def __init__(self, tf_dim: int, msa_dim: int, c_m: int, c_z: int, relpos_k: int = 32) -> None:
        super().__init__()
        self.relpos_k = relpos_k
        self.linear_tf_z_i = Linear(tf_dim, c_z)
        self.linear_tf_z_j = Linear(tf_dim, c_z)
        self.linear_tf_m = Linear(tf_dim, c_m)
        self.linear_msa_m = Linear(msa_dim, c_m)
        self.linear_relpos = Linear(2 * relpos_k + 1, c_z)

    def relpos(self, residue_index: torch.Tensor) -> torch.Tensor:
        """``Linear(one_hot(relpos_index))`` as a row lookup (exactly equal): ``[*, N, N, c_z]``."""
        idx = relpos_index(residue_index, self.relpos_k)
        w = self.linear_relpos.weight
        return F.embedding(idx, w.t()).to(w.dtype) + self.linear_relpos.bias

    def forward(
        self, target_feat: torch.Tensor, residue_index: torch.Tensor, msa_feat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``target_feat [*, N, tf_dim]``, ``residue_index [*, N]``, ``msa_feat [*, S, N, msa_dim]``
        -> ``m [*, S, N, c_m]``, ``z [*, N, N, c_z]``."""
        a, b = self.linear_tf_z_i(target_feat), self.linear_tf_z_j(target_feat)
        z = self.relpos(residue_index) + (a[..., :, None, :] + b[..., None, :, :])
        m = self.linear_msa_m(msa_feat) + self.linear_tf_m(target_feat).unsqueeze(-3)
        return m, z


class RecyclingEmbedder(nn.Module):
    """Algorithm 32: embed the previous cycle's first MSA row, pair rep and pseudo-beta distogram.

    Args:
        c_m, c_z: widths. min_bin, max_bin: first / last distance bin edges (Angstrom).
        no_bins: number of bins (the last one is open-ended). inf: upper edge of the last bin (Angstrom^2).
    """

    def __init__(
        self, c_m: int, c_z: int, min_bin: float = 3.25, max_bin: float = 20.75, no_bins: int = 15, inf: float = 1e8
    ) -> None:
        super().__init__()
        self.min_bin, self.max_bin, self.no_bins, self.inf = min_bin, max_bin, no_bins, inf
        self.linear = Linear(no_bins, c_z)
        self.layer_norm_m = nn.LayerNorm(c_m)
        self.layer_norm_z = nn.LayerNorm(c_z)

    def distogram(self, x: torch.Tensor) -> torch.Tensor:
        """One-hot of squared distances between ``x [*, N, 3]`` in the bins -> ``[*, N, N, no_bins]``."""
        return distogram_one_hot(x, self.min_bin, self.max_bin, self.no_bins, self.inf)

    def forward(
        self, m_1_prev: torch.Tensor, z_prev: torch.Tensor, x_prev: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``m_1_prev [*, N, c_m]``, ``z_prev [*, N, N, c_z]``, pseudo-beta ``x_prev [*, N, 3]``
        -> updates for the first MSA row ``[*, N, c_m]`` and the pair rep ``[*, N, N, c_z]``."""
        m_update = self.layer_norm_m(m_1_prev)
        x = x_prev.to(torch.promote_types(x_prev.dtype, torch.float32))  # distances never in half precision
        z_update = self.layer_norm_z(z_prev) + self.linear(self.distogram(x).to(z_prev.dtype))
        return m_update, z_update


def extra_msa_feat(
    extra_msa: torch.Tensor, extra_has_deletion: torch.Tensor, extra_deletion_value: torch.Tensor
) -> torch.Tensor:
    """``[one_hot(extra_msa, 23), has_deletion, deletion_value]``: ``[*, S, N]`` each -> ``[*, S, N, 25]``."""
    return torch.cat(
        [
            F.one_hot(extra_msa.long(), 23).to(extra_deletion_value.dtype),
            extra_has_deletion.unsqueeze(-1).to(extra_deletion_value.dtype),
            extra_deletion_value.unsqueeze(-1),
        ],
        dim=-1,
    )


class ExtraMSAEmbedder(nn.Module):
    """Linear embedding of the extra-MSA features ``[*, S, N, c_in] -> [*, S, N, c_e]``."""

    def __init__(self, c_in: int, c_e: int) -> None:
        super().__init__()
        self.linear = Linear(c_in, c_e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)
