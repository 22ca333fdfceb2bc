"""Backbone update (AlphaFold2 Algorithm 23): a per-residue frame update predicted from the single representation."""

from __future__ import annotations

import torch
from torch import nn

from tertiary.nn.primitives import Linear


class BackboneUpdate(nn.Module):
    """Algorithm 23, lines 1-2: ``s [*, N, c_s]`` -> update ``[*, N, 6]``.

    The first three outputs (b, c, d) define the non-unit quaternion ``(1, b, c, d)``, the last
    three the translation in the current frame (structure-module units, nm); apply the update with
    :meth:`tertiary.geometry.rigid.Rigid.compose_q_update_vec`. Zero-initialised, so an untrained
    module leaves the frames unchanged.
    """

    def __init__(self, c_s: int) -> None:
        super().__init__()
        self.linear = Linear(c_s, 6, init="final")

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.linear(s)
