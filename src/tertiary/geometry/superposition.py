"""Optimal rigid superposition (Kabsch algorithm), weighted, masked and batched.

``kabsch(mobile, target, weights)`` finds the proper rotation ``R`` (det +1, never a reflection)
and translation ``t`` minimising ``sum_i w_i |R mobile_i + t - target_i|^2``. Everything is
batched over leading dimensions and differentiable (through ``torch.linalg.svd``; gradients are
ill-defined only when two singular values of the covariance coincide, e.g. for degenerate,
collinear point sets).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from tertiary.errors import InputError


class Superposition(NamedTuple):
    """Result of :func:`kabsch`.

    Attributes:
        rotation: ``[*, 3, 3]`` proper rotation matrices.
        translation: ``[*, 3]`` translations (Angstrom).
        superposed: ``[*, N, 3]`` ``mobile`` after the transform: ``mobile @ R^T + t``.
        rmsd: ``[*]`` weighted RMSD over the weighted points after the transform (Angstrom).
    """

    rotation: torch.Tensor
    translation: torch.Tensor
    superposed: torch.Tensor
    rmsd: torch.Tensor


def as_tensor(x: torch.Tensor | np.ndarray, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Accept a tensor or array-like; arrays become float64 tensors unless ``dtype`` is given."""
    if isinstance(x, torch.Tensor):
        return x if dtype is None else x.to(dtype)
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is an input error
        raise InputError(f"{name}: cannot convert {type(x).__name__} to an array ({exc})") from exc
    if arr.dtype == object:
        raise InputError(f"{name}: ragged or non-numeric input")
    t = torch.from_numpy(np.ascontiguousarray(arr))
    if dtype is not None:
        return t.to(dtype)
    return t.to(torch.float64) if t.is_floating_point() or t.dtype in (torch.int32, torch.int64) else t


def _check_points(mobile: torch.Tensor, target: torch.Tensor) -> None:
    if mobile.ndim < 2 or mobile.shape[-1] != 3:
        raise InputError(f"kabsch: mobile must have shape [*, N, 3], got {tuple(mobile.shape)}")
    if mobile.shape != target.shape:
        raise InputError(
            f"kabsch: mobile {tuple(mobile.shape)} and target {tuple(target.shape)} shapes differ"
        )


def kabsch(
    mobile: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    eps: float = 1e-12,
) -> Superposition:
    """Superpose ``mobile`` onto ``target`` with the weighted Kabsch algorithm.

    Args:
        mobile: ``[*, N, 3]`` points to move (Angstrom).
        target: ``[*, N, 3]`` points to move onto.
        weights: ``[*, N]`` non-negative weights (a 0/1 mask works: zero-weight points do not
            influence the fit and may hold any finite value). None = all ones.
        eps: guards the division by the total weight.

    Returns:
        :class:`Superposition` with rotation ``[*, 3, 3]``, translation ``[*, 3]``,
        superposed ``[*, N, 3]`` and rmsd ``[*]``.

    Raises:
        InputError: shapes differ, are not ``[*, N, 3]``, or a weight vector sums to zero.
    """
    _check_points(mobile, target)
    dtype = torch.promote_types(mobile.dtype, target.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float64
    mobile = mobile.to(dtype)
    target = target.to(dtype)
    if weights is None:
        weights = torch.ones(mobile.shape[:-1], dtype=dtype, device=mobile.device)
    else:
        if weights.shape != mobile.shape[:-1]:
            raise InputError(
                f"kabsch: weights shape {tuple(weights.shape)} does not match points {tuple(mobile.shape[:-1])}"
            )
        weights = weights.to(dtype)
    total = weights.sum(-1)
    if bool((total <= 0).any()):
        raise InputError("kabsch: a structure has no point with positive weight (empty mask)")

    w = weights[..., None]
    # Zero-weight points may hold garbage (NaN coordinates of missing atoms): clean them first.
    keep = w > 0
    mobile_c = torch.where(keep, mobile, torch.zeros_like(mobile))
    target_c = torch.where(keep, target, torch.zeros_like(target))
    denom = total[..., None, None].clamp_min(eps)
    mu_m = (w * mobile_c).sum(-2, keepdim=True) / denom
    mu_t = (w * target_c).sum(-2, keepdim=True) / denom
    pm = (mobile_c - mu_m) * keep
    pt = (target_c - mu_t) * keep
    # Covariance H = sum_i w_i pm_i pt_i^T ; optimal R = V diag(1,1,d) U^T with H = U S V^T.
    cov = torch.einsum("...ni,...nj->...ij", w * pm, pt)
    u, _, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(vh.transpose(-1, -2) @ u.transpose(-1, -2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    diag = torch.ones(cov.shape[:-1], dtype=dtype, device=cov.device)
    diag = torch.cat([diag[..., :2], d[..., None]], dim=-1)
    rot = vh.transpose(-1, -2) @ (diag[..., None] * u.transpose(-1, -2))
    trans = mu_t[..., 0, :] - torch.einsum("...ij,...j->...i", rot, mu_m[..., 0, :])
    superposed = mobile @ rot.transpose(-1, -2) + trans[..., None, :]
    sq = ((torch.where(keep, superposed, target_c) - target_c) ** 2).sum(-1)
    rmsd = torch.sqrt((weights * sq).sum(-1) / total.clamp_min(eps))
    return Superposition(rot, trans, superposed, rmsd)


def superpose(
    mobile: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``mobile`` ``[*, N, 3]`` optimally superposed onto ``target`` (see :func:`kabsch`)."""
    return kabsch(mobile, target, weights).superposed
