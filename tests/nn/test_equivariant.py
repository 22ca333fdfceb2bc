"""SE(3) / permutation equivariance of tertiary.nn.equivariant, padding, kNN, chunking, negative control."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tertiary.errors import ConfigError, InputError
from tertiary.nn.equivariant import (
    EquivariantAttention,
    EquivariantAttentionConfig,
    EquivariantTransformer,
)


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Non-trivial weights everywhere (the zero 'final' inits would hide broken updates)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * (0.5 / math.sqrt(max(p.shape[-1], 1))))
    return module


def random_rigid(dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.linalg.det(q))
    return q.to(dtype), (torch.randn(3, generator=g, dtype=torch.float64) * 10).to(dtype)


def inputs(dtype: torch.dtype, b: int = 2, n: int = 24, c: int = 16, pair_dim: int = 0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, n, c, generator=g, dtype=torch.float64).to(dtype)
    x = (torch.randn(b, n, 3, generator=g, dtype=torch.float64) * 6).to(dtype)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[-1, -5:] = False  # the last item is padded
    pair = None
    if pair_dim:
        pair = torch.randn(b, n, n, pair_dim, generator=g, dtype=torch.float64).to(dtype)
    return h, x, mask, pair


class LinearOnCoordinates(nn.Module):
    """Negative control: the seed sketch's mistake, raw coordinates through a Linear layer."""

    def __init__(self, inner: nn.Module, dim: int) -> None:
        super().__init__()
        self.inner = inner
        self.coord_proj = nn.Linear(3, dim)
        self.coord_out = nn.Linear(dim, 3)

    def forward(self, h, x, mask=None, pair=None, chunk_size=None):
        h = h + self.coord_proj(x)
        h, x = self.inner(h, x, mask, pair, chunk_size)
        return h, x + 0.1 * self.coord_out(h)


def equivariance_error(model: nn.Module, h, x, mask, pair, rot, trans) -> tuple[float, float]:
    """Max deviation of (h, x) outputs under a rigid motion of the input coordinates (real nodes)."""
    h1, x1 = model(h, x, mask, pair)
    h2, x2 = model(h, x @ rot.T + trans, mask, pair)
    m = mask[..., None]
    err_h = ((h2 - h1) * m).abs().max().item()
    err_x = ((x2 - (x1 @ rot.T + trans)) * m).abs().max().item()
    return err_h, err_x


CONFIGS = {
    "dense": dict(),
    "knn": dict(knn=8),
    "pair": dict(pair_dim=4),
    "knn_pair_chunk": dict(knn=6, pair_dim=4),
    "no_coords": dict(update_coords=False),
}


def model_for(name: str, dtype: torch.dtype, seed: int = 0) -> tuple[EquivariantTransformer, EquivariantAttentionConfig]:
    cfg = EquivariantAttentionConfig.preset("tiny", **CONFIGS[name])
    model = randomize_(EquivariantTransformer(cfg), seed).to(dtype).eval()
    return model, cfg


@pytest.mark.parametrize("name", list(CONFIGS))
def test_se3_equivariance_float64(name: str) -> None:
    model, cfg = model_for(name, torch.float64)
    h, x, mask, pair = inputs(torch.float64, pair_dim=cfg.pair_dim)
    rot, trans = random_rigid(torch.float64, 1)
    h1, x1 = model(h, x, mask, pair)
    assert (x1 - x).abs().max() > 1e-2 or not cfg.update_coords  # the layer really moves points
    err_h, err_x = equivariance_error(model, h, x, mask, pair, rot, trans)
    assert err_h < 1e-9 and err_x < 1e-9, (err_h, err_x)
    # reflections too (E(3)): distances and x_i - x_j do not see the handedness
    err_h, err_x = equivariance_error(model, h, x, mask, pair, -rot, trans)
    assert err_h < 1e-9 and err_x < 1e-9


@pytest.mark.parametrize("name", ["dense", "knn"])
def test_se3_equivariance_float32(name: str) -> None:
    model, cfg = model_for(name, torch.float32)
    h, x, mask, pair = inputs(torch.float32, pair_dim=cfg.pair_dim)
    rot, trans = random_rigid(torch.float32, 2)
    err_h, err_x = equivariance_error(model, h, x, mask, pair, rot, trans)
    coord_scale = float((x @ rot.T + trans).abs().max())  # round-off grows with |x|
    eps = torch.finfo(torch.float32).eps
    assert err_h < 1e-4, err_h
    assert err_x < 50 * eps * coord_scale, (err_x, coord_scale)


def test_negative_control_is_caught() -> None:
    model, cfg = model_for("dense", torch.float64)
    broken = randomize_(LinearOnCoordinates(model, cfg.dim), 3).double()
    h, x, mask, pair = inputs(torch.float64)
    rot, trans = random_rigid(torch.float64, 1)
    err_h, err_x = equivariance_error(broken, h, x, mask, pair, rot, trans)
    assert err_h > 1e-3 and err_x > 1e-3, (err_h, err_x)


@pytest.mark.parametrize("name", ["dense", "knn_pair_chunk"])
def test_permutation_equivariance(name: str) -> None:
    model, cfg = model_for(name, torch.float64)
    h, x, mask, pair = inputs(torch.float64, b=1, pair_dim=cfg.pair_dim)
    perm = torch.randperm(h.shape[1], generator=torch.Generator().manual_seed(5))
    h1, x1 = model(h, x, mask, pair)
    pp = None if pair is None else pair[:, perm][:, :, perm]
    h2, x2 = model(h[:, perm], x[:, perm], mask[:, perm], pp)
    torch.testing.assert_close(h2, h1[:, perm], atol=1e-10, rtol=0)
    torch.testing.assert_close(x2, x1[:, perm], atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ["dense", "knn", "pair", "no_coords"])
def test_padding_does_not_change_real_outputs(name: str) -> None:
    model, cfg = model_for(name, torch.float64)
    h, x, mask, pair = inputs(torch.float64, b=1, n=15, pair_dim=cfg.pair_dim)
    g = torch.Generator().manual_seed(9)
    pad = 7
    hp = torch.cat([h, torch.randn(1, pad, h.shape[-1], generator=g, dtype=torch.float64) * 100], 1)
    xp = torch.cat([x, torch.randn(1, pad, 3, generator=g, dtype=torch.float64)], 1)  # padding close by
    mp = torch.cat([mask, torch.zeros(1, pad, dtype=torch.bool)], 1)
    pairp = None
    if pair is not None:
        pairp = torch.randn(1, 15 + pad, 15 + pad, cfg.pair_dim, generator=g, dtype=torch.float64)
        pairp[:, :15, :15] = pair
    h1, x1 = model(h, x, mask, pair)
    h2, x2 = model(hp, xp, mp, pairp)
    torch.testing.assert_close(h2[:, :15], h1, atol=1e-10, rtol=0)
    torch.testing.assert_close(x2[:, :15], x1, atol=1e-10, rtol=0)
    # masked nodes do not move
    torch.testing.assert_close(x2[:, 15:], xp[:, 15:], atol=0, rtol=0)


@pytest.mark.parametrize("name", ["dense", "knn_pair_chunk", "no_coords"])
def test_chunking_gives_the_same_result(name: str) -> None:
    model, cfg = model_for(name, torch.float64)
    h, x, mask, pair = inputs(torch.float64, pair_dim=cfg.pair_dim)
    full = model(h, x, mask, pair)
    chunked = model(h, x, mask, pair, chunk_size=5)
    torch.testing.assert_close(chunked[0], full[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(chunked[1], full[1], atol=1e-10, rtol=0)


def test_knn_equals_dense_when_k_covers_all_nodes() -> None:
    dense, _ = model_for("dense", torch.float64)
    cfg = EquivariantAttentionConfig.preset("tiny", knn=100)
    knn = EquivariantTransformer(cfg).double()
    knn.load_state_dict(dense.state_dict())
    h, x, mask, pair = inputs(torch.float64)
    for a, b in zip(dense(h, x, mask), knn(h, x, mask)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_coordinate_update_formula() -> None:
    """dx_i = mean_h sum_j a_ij phi_h(m_ij) (x_i - x_j) / (|x_i - x_j| + 1), checked by hand."""
    cfg = EquivariantAttentionConfig.preset("tiny")
    layer = randomize_(EquivariantAttention(cfg), 4).double()
    h, x, mask, _ = inputs(torch.float64, b=1, n=6)
    mask[:] = True
    dh, dx = layer(h, x, mask)
    q = layer.linear_q(h).view(1, 6, cfg.num_heads, cfg.head_dim)
    k = layer.linear_k(h).view(1, 6, cfg.num_heads, cfg.head_dim)
    expected = torch.zeros(6, 3, dtype=torch.float64)
    for i in range(6):
        rel = x[0, i] - x[0]  # [N, 3]
        d = rel.norm(dim=-1)
        rbf = layer.rbf(d)
        qk = (q[0, i][None] * k[0]).sum(-1) / math.sqrt(cfg.head_dim)  # [N, H]
        logits = qk + layer.linear_rbf(rbf)
        a = torch.softmax(logits, dim=0)  # over j, per head
        phi = layer.phi(torch.cat([rbf, qk], -1))  # [N, H]
        expected[i] = ((a * phi).mean(-1)[:, None] * rel / (d[:, None] + 1)).sum(0)
    torch.testing.assert_close(dx[0], expected, atol=1e-8, rtol=0)


def test_gradients_flow_and_bad_inputs() -> None:
    model, cfg = model_for("knn", torch.float64)
    h, x, mask, _ = inputs(torch.float64)
    x = x.clone().requires_grad_()
    out_h, out_x = model(h, x, mask)
    (out_h.sum() + out_x.square().sum()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(InputError):
        model(h, x[..., :2], mask)
    with pytest.raises(InputError):
        model(h, x, mask[:, :-1])
    with pytest.raises(InputError):
        model(h, x, mask, pair=torch.zeros(2, 24, 24, 4, dtype=torch.float64))
    with pytest.raises(ConfigError):
        EquivariantAttentionConfig(knn=0)
    with pytest.raises(ConfigError):
        EquivariantAttentionConfig.preset("huge")
