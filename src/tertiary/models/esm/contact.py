"""Contact prediction from ESM-2 attention maps (symmetrise, APC, logistic regression).

For every map ``x_c`` (``c`` over layers x heads) with the BOS, EOS and padding rows / columns
removed, ESM-2 computes ``y_c = x_c + x_c^T``, the average-product correction
``z_c = y_c - r_c r_c^T / t_c`` (``r_c`` the row sums of ``y_c``, ``t_c`` their total), and
``sigmoid(sum_c w_c z_c + b)``. Because the regression is linear this equals

    sigmoid(S + S^T - sum_c (w_c / t_c) r_c r_c^T + b),   S = sum_c w_c x_c,

which :class:`ContactHead` evaluates with one weighted sum over the maps and one rank-``C``
product, instead of materialising several ``[B, C, N, N]`` intermediates.
"""

from __future__ import annotations

import torch
from torch import nn


class ContactHead(nn.Module):
    """Logistic regression over the APC-corrected, symmetrised attention maps of all heads.

    Args:
        num_maps: ``layers * heads``.
        eos_idx: EOS token id; padding_idx: padding token id (their rows / columns are dropped).
    """

    def __init__(self, num_maps: int, eos_idx: int, padding_idx: int) -> None:
        super().__init__()
        self.eos_idx = eos_idx
        self.padding_idx = padding_idx
        self.regression = nn.Linear(num_maps, 1)

    def forward(self, tokens: torch.Tensor, attentions: torch.Tensor) -> torch.Tensor:
        """Contact probabilities.

        Args:
            tokens: ``[B, N]`` with BOS first.
            attentions: ``[B, layers, H, N, N]`` attention probabilities.

        Returns:
            ``[B, N - 2, N - 2]``: the first and last token positions are removed, so entry
            ``(i, j)`` is residues ``i, j`` of each sequence; entries involving EOS or padding
            hold ``sigmoid(b)``.
        """
        b, layers, heads, n, _ = attentions.shape
        c = layers * heads
        w = self.regression.weight.reshape(c)
        x = attentions.reshape(b, c, n, n).to(w.dtype)
        keep = tokens.ne(self.eos_idx) & tokens.ne(self.padding_idx)
        keep[:, 0] = False
        keep[:, -1] = False
        m = keep.to(x.dtype)  # [B, N]
        row = torch.matmul(x, m[:, None, :, None]).squeeze(-1)  # [B, C, N]: sum_j x_cij m_j
        col = torch.matmul(m[:, None, None, :], x).squeeze(-2)  # [B, C, N]: sum_i m_i x_cij
        r = (row + col) * m[:, None, :]  # row sums of the symmetrised, masked maps
        t = r.sum(-1)  # [B, C]
        s = torch.matmul(w, x.reshape(b, c, n * n)).view(b, n, n)
        outer = m[:, :, None] * m[:, None, :]
        corr = torch.matmul(r.transpose(1, 2) * (w / t)[:, None, :], r)  # [B, N, N]
        logits = (s + s.transpose(1, 2)) * outer - corr + self.regression.bias
        return torch.sigmoid(logits[:, 1:-1, 1:-1])
