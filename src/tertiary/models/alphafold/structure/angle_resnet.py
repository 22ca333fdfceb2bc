"""Torsion-angle prediction (AlphaFold2 Algorithm 20, lines 11-14)."""

from __future__ import annotations

import torch
from torch import nn

from tertiary.nn.primitives import Linear


class AngleResnetBlock(nn.Module):
    """``a + Linear(ReLU(Linear(ReLU(a))))`` at constant width."""

    def __init__(self, c_hidden: int) -> None:
        super().__init__()
        self.linear_1 = Linear(c_hidden, c_hidden, init="relu")
        self.linear_2 = Linear(c_hidden, c_hidden, init="final")

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a + self.linear_2(torch.relu(self.linear_1(torch.relu(a))))


class AngleResnet(nn.Module):
    """Predicts ``no_angles`` torsions as (sin, cos) pairs from the current and the initial single representation.

    As in AlphaFold2's released code (and unlike the supplement's pseudocode) both inputs pass
    through a ReLU before their projections.

    Args:
        c_in: single representation width.
        c_hidden: hidden width.
        no_blocks: number of residual blocks.
        no_angles: number of torsion angles (7: pre-omega, phi, psi, chi1-4).
        epsilon: lower bound of the squared norm used to normalise each (sin, cos) pair.
    """

    def __init__(self, c_in: int, c_hidden: int, no_blocks: int, no_angles: int, epsilon: float = 1e-8) -> None:
        super().__init__()
        self.no_angles = no_angles
        self.epsilon = epsilon
        self.linear_in = Linear(c_in, c_hidden)
        self.linear_initial = Linear(c_in, c_hidden)
        self.blocks = nn.ModuleList(AngleResnetBlock(c_hidden) for _ in range(no_blocks))
        self.linear_out = Linear(c_hidden, 2 * no_angles)

    def forward(self, s: torch.Tensor, s_initial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``s, s_initial [*, N, c_in]`` -> ``(unnormalized, normalized)`` angles, each ``[*, N, no_angles, 2]``."""
        a = self.linear_in(torch.relu(s)) + self.linear_initial(torch.relu(s_initial))
        for block in self.blocks:
            a = block(a)
        raw = self.linear_out(torch.relu(a)).unflatten(-1, (self.no_angles, 2))
        norm = torch.sqrt(torch.clamp(raw.pow(2).sum(dim=-1, keepdim=True), min=self.epsilon))
        return raw, raw / norm
