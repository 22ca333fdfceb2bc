"""Kabsch superposition: recovers random rigid motions, weights/masks, reflections, batching."""

from __future__ import annotations

import pytest
import torch

from tertiary.errors import InputError
from tertiary.geometry import kabsch, superpose


def random_rotations(n: int, g: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[..., None, :]
    return q * torch.sign(torch.linalg.det(q))[..., None, None]


def test_recovers_random_rotations_float64() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 40, 3, generator=g, dtype=torch.float64) * 10
    rot = random_rotations(16, g)
    t = torch.randn(16, 3, generator=g, dtype=torch.float64) * 20
    y = x @ rot.transpose(-1, -2) + t[:, None]
    fit = kabsch(x, y)
    torch.testing.assert_close(fit.rotation, rot, atol=1e-10, rtol=0)
    torch.testing.assert_close(fit.translation, t, atol=1e-9, rtol=0)
    torch.testing.assert_close(fit.superposed, y, atol=1e-9, rtol=0)
    assert float(fit.rmsd.max()) < 1e-9


def test_float32_and_leading_dims() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 25, 3, generator=g) * 10
    rot = random_rotations(6, g, torch.float32).reshape(2, 3, 3, 3)
    y = torch.einsum("...ij,...nj->...ni", rot, x)
    fit = kabsch(x, y)
    assert fit.rotation.shape == (2, 3, 3, 3) and fit.rmsd.shape == (2, 3)
    torch.testing.assert_close(fit.rotation, rot, atol=1e-4, rtol=0)


def test_weights_mask_out_outliers_and_garbage() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64) * 5
    rot = random_rotations(1, g)[0]
    y = x @ rot.T + 3.0
    y[:5] += torch.randn(5, 3, generator=g, dtype=torch.float64) * 50  # outliers
    x_bad = x.clone()
    x_bad[:5] = float("nan")  # missing atoms may be NaN
    w = torch.ones(30, dtype=torch.float64)
    w[:5] = 0
    fit = kabsch(x_bad, y, w)
    torch.testing.assert_close(fit.rotation, rot, atol=1e-10, rtol=0)
    assert float(fit.rmsd) < 1e-9
    # unweighted fit is pulled off by the outliers
    assert float(kabsch(x, y).rmsd) > 1.0


def test_weighted_fit_is_optimal() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = x @ random_rotations(1, g)[0].T + 0.3 * torch.randn(20, 3, generator=g, dtype=torch.float64)
    w = torch.rand(20, generator=g, dtype=torch.float64)
    fit = kabsch(x, y, w)

    def cost(rot: torch.Tensor, t: torch.Tensor) -> float:
        return float((w * ((x @ rot.T + t - y) ** 2).sum(-1)).sum())

    best = cost(fit.rotation, fit.translation)
    for rot in random_rotations(50, g):
        small = torch.linalg.matrix_exp(0.05 * (rot - rot.T))  # nearby rotations
        assert cost(small @ fit.rotation, fit.translation) >= best - 1e-12
        assert cost(fit.rotation, fit.translation + 0.01 * rot[0]) >= best - 1e-12


def test_never_returns_a_reflection() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(8, 20, 3, generator=g, dtype=torch.float64)
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    fit = kabsch(x, mirrored)
    torch.testing.assert_close(torch.linalg.det(fit.rotation), torch.ones(8, dtype=torch.float64))
    assert float(fit.rmsd.min()) > 1e-3


def test_differentiable() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(12, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: superpose(a, y), (x,))


def test_bad_inputs() -> None:
    with pytest.raises(InputError):
        kabsch(torch.zeros(5, 3), torch.zeros(6, 3))
    with pytest.raises(InputError):
        kabsch(torch.zeros(5, 2), torch.zeros(5, 2))
    with pytest.raises(InputError):
        kabsch(torch.zeros(5, 3), torch.zeros(5, 3), torch.zeros(5))
    with pytest.raises(InputError):
        kabsch(torch.zeros(5, 3), torch.zeros(5, 3), torch.ones(4))
