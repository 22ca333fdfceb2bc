"""Layers shared by model families: initialised linear maps, transitions, chunked application,
and an underflow-safe Gaussian for radial bases.

``Linear`` is :class:`torch.nn.Linear` with the initialisation schemes named in the AlphaFold2
supplement (section 1.11.4): ``"default"`` (LeCun normal, truncated), ``"relu"`` (He normal,
truncated), ``"glorot"`` (Xavier uniform), ``"gating"`` (weights 0, bias 1), ``"final"``
(all zeros) and ``"normal"`` (LeCun normal, untruncated). Only the initialisation differs, so
state dicts stay plain ``weight`` / ``bias`` pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from tertiary.errors import ConfigError, InputError
from tertiary.nn import fused_cpu

INIT_SCHEMES = ("default", "relu", "glorot", "gating", "final", "normal")

GAUSSIAN_FLOOR = -60.0  # exp(-60) = 8.8e-27

# std of a standard normal truncated to [-2, 2]; dividing by it keeps the target variance.
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def gaussian(exponent: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``exp(max(exponent, GAUSSIAN_FLOOR))`` for non-positive exponents (floor -60).

    Radial bases put most distances far from most centres; ``exp`` of such exponents underflows
    through the subnormal range, which takes a slow path on x86 both in ``exp`` and in every
    matrix product that reads the result (FAIR's atom attention ran 2x slower end to end). The
    floor changes values below 8.8e-27 only. Same shape as ``exponent``; ``inplace`` overwrites
    ``exponent`` (no new allocation: fresh multi-MB tensors fault on every page).
    """
    if inplace:
        return exponent.clamp_(min=GAUSSIAN_FLOOR).exp_()
    return torch.exp(exponent.clamp(min=GAUSSIAN_FLOOR))


def softplus(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``log(1 + exp(x))`` (linear above 20, as :func:`torch.nn.functional.softplus`).

    ``inplace`` overwrites ``x`` where autograd does not record it, with the vectorised kernel
    :func:`tertiary.nn.fused_cpu.softplus_` when it applies (contiguous float32 CPU tensor, numba
    installed); where autograd records ``x`` a new tensor is returned.
    """
    if not inplace or (torch.is_grad_enabled() and x.requires_grad):
        return nn.functional.softplus(x)
    if x.is_contiguous() and fused_cpu.takes(x):
        return fused_cpu.softplus_(x)
    return x.copy_(nn.functional.softplus(x))


def _truncated_normal_(weight: torch.Tensor, scale: float, generator: torch.Generator | None) -> None:
    fan_in = weight.shape[-1]
    std = math.sqrt(scale / max(1, fan_in)) / _TRUNCATED_NORMAL_STD
    with torch.no_grad():
        nn.init.trunc_normal_(weight, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=generator)
        weight.mul_(std)


class Linear(nn.Linear):
    """``y = x W^T + b`` with an AlphaFold2 initialisation scheme.

    Args:
        in_dim: input width.
        out_dim: output width.
        bias: whether there is a bias (initialised to 0, or 1 for ``"gating"``).
        init: one of :data:`INIT_SCHEMES`.
        generator: RNG for the initial weights (None = torch's global RNG).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        init: str = "default",
        generator: torch.Generator | None = None,
    ) -> None:
        if init not in INIT_SCHEMES:
            raise ConfigError(f"unknown Linear init {init!r}; expected one of {INIT_SCHEMES}")
        self._init_scheme = init
        self._generator = generator
        super().__init__(in_dim, out_dim, bias=bias)

    def reset_parameters(self) -> None:
        init, gen = getattr(self, "_init_scheme", "default"), getattr(self, "_generator", None)
        with torch.no_grad():
            if init == "default":
                _truncated_normal_(self.weight, 1.0, gen)
            elif init == "relu":
                _truncated_normal_(self.weight, 2.0, gen)
            elif init == "glorot":
                nn.init.xavier_uniform_(self.weight, gain=1.0, generator=gen)
            elif init == "normal":
                self.weight.normal_(0.0, math.sqrt(1.0 / self.weight.shape[-1]), generator=gen)
            else:  # gating / final
                self.weight.zero_()
            if self.bias is not None:
                self.bias.fill_(1.0 if init == "gating" else 0.0)


def chunked(
    fn: Callable[..., torch.Tensor],
    sliced: Sequence[torch.Tensor],
    dim: int,
    chunk_size: int | None,
    **fixed: object,
) -> torch.Tensor:
    """Apply ``fn(*sliced_chunks, **fixed)`` over slices of ``dim`` and concatenate the results.

    Every tensor in ``sliced`` must have the same size along ``dim`` (or size 1 there, which is
    broadcast to every chunk). ``fn`` must be independent along ``dim`` (a batch-like axis) and
    return its result with that axis at the same position. ``chunk_size=None`` calls ``fn`` once.
    """
    sizes = {t.shape[dim] for t in sliced if t.shape[dim] != 1}
    if len(sizes) > 1:
        raise InputError(f"chunked: tensors disagree along dim {dim}: sizes {sorted(sizes)}")
    n = sizes.pop() if sizes else 1
    if chunk_size is None or chunk_size >= n:
        return fn(*sliced, **fixed)
    if chunk_size < 1:
        raise InputError(f"chunk_size must be positive, got {chunk_size}")
    outs = []
    for start in range(0, n, chunk_size):
        parts = [t if t.shape[dim] == 1 else t.narrow(dim, start, min(chunk_size, n - start)) for t in sliced]
        outs.append(fn(*parts, **fixed))
    return torch.cat(outs, dim=dim)


class Transition(nn.Module):
    """Two-layer feed-forward block ``LN -> Linear(c, n c) -> ReLU -> Linear(n c, c)``.

    AlphaFold2 Algorithms 9 (MSA transition) and 15 (pair transition). Returns the update (not
    ``x + update``); the caller adds it. Rows are processed ``chunk_size`` at a time along the
    third-last axis so the ``n``-times-wider hidden activation never exists whole.

    Args:
        c: channel width.
        n: width multiplier of the hidden layer.
    """

    def __init__(self, c: int, n: int = 4) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(c)
        self.linear_1 = Linear(c, n * c, init="relu")
        self.linear_2 = Linear(n * c, c, init="final")

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(torch.relu(self.linear_1(self.layer_norm(x))))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, chunk_size: int | None = None
    ) -> torch.Tensor:
        """``x [*, N_rows, N_cols, c]``, optional ``mask [*, N_rows, N_cols]`` -> update ``[*, N_rows, N_cols, c]``."""
        if x.dim() < 3:
            out = self._ffn(x)
        else:
            out = chunked(self._ffn, [x], dim=-3, chunk_size=chunk_size)
        if mask is not None:
            out = out * mask.unsqueeze(-1).to(out.dtype)
        return out
