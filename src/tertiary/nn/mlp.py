"""Multi-layer perceptron used as a prediction head (TorchDrug's ``layers.MLP`` semantics)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tertiary.errors import ConfigError


class MLP(nn.Module):
    """``Linear -> ReLU -> (Dropout) -> ... -> Linear``: ReLU and dropout between layers, none after
    the last.

    Args:
        input_dim: input width ``C_in``.
        dims: output width of each layer (the last is the output width).
        dropout: dropout probability between layers.

    ``forward``: ``[*, C_in]`` -> ``[*, dims[-1]]``.
    """

    def __init__(self, input_dim: int, dims: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        if not dims or min(dims) <= 0 or input_dim <= 0:
            raise ConfigError(f"MLP widths must be positive, got input {input_dim} and layers {list(dims)}")
        widths = (input_dim, *dims)
        self.layers = nn.ModuleList(nn.Linear(widths[i], widths[i + 1]) for i in range(len(dims)))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
                if self.dropout is not None:
                    x = self.dropout(x)
        return x
