"""Rotary position embedding (RoFormer) as used by ESM-2.

The frequencies ``inv_freq`` are a persistent buffer: released ESM-2 checkpoints store them
rounded through float16, and recomputing them in float32 changes logits by up to ~0.06, so they
are always loaded from the checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn


def default_inv_freq(head_dim: int, base: float = 10000.0, fp16_rounded: bool = True) -> torch.Tensor:
    """``base ** (-2i / head_dim)`` for ``i < head_dim / 2``, ``[head_dim / 2]`` float32.

    With ``fp16_rounded`` the values go through float16 like those of released checkpoints.
    """
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    return inv.half().float() if fp16_rounded else inv


class RotaryEmbedding(nn.Module):
    """Rotates query / key channel pairs ``(j, j + D/2)`` by ``position * inv_freq[j]``.

    Positions are token indices ``0..N-1`` (BOS included).
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        self.register_buffer("inv_freq", default_inv_freq(head_dim, base))
        self._cache: tuple[int, torch.device, torch.dtype, torch.Tensor, torch.Tensor] | None = None

    def _load_from_state_dict(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._cache = None
        super()._load_from_state_dict(*args, **kwargs)

    def cos_sin(self, n: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos`` and sign-folded ``sin`` tables, each ``[N, D]``.

        ``sin`` carries the minus sign of ``rotate_half`` on its first half so that
        ``x * cos + swap_halves(x) * sin`` is the rotation.
        """
        cached = self._cache
        if cached is not None and cached[0] >= n and cached[1] == device and cached[2] == dtype:
            return cached[3][:n], cached[4][:n]
        inv = self.inv_freq.to(device)
        angles = torch.outer(torch.arange(n, device=device, dtype=inv.dtype), inv)  # [N, D/2]
        angles = torch.cat((angles, angles), dim=-1)
        cos = angles.cos().to(dtype)
        sin = angles.sin().to(dtype)
        half = sin.shape[-1] // 2
        sin = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)
        if not torch.jit.is_tracing():
            self._cache = (n, device, dtype, cos, sin)
        return cos, sin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` ``[*, N, D]`` (positions along ``-2``)."""
        cos, sin = self.cos_sin(x.shape[-2], x.device, x.dtype)
        half = x.shape[-1] // 2
        swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
        return torch.addcmul(x * cos, swapped, sin)
