"""Invariant point attention: against a direct transcription of Algorithm 22, invariance, chunking, masks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tertiary.geometry.rigid import Rigid, Rotation
from tertiary.models.alphafold.structure.ipa import InvariantPointAttention

F64 = torch.float64
C_S, C_Z, C, H, PQK, PV = 12, 6, 5, 3, 4, 3


def make_ipa(seed: int = 0) -> InvariantPointAttention:
    torch.manual_seed(seed)
    ipa = InvariantPointAttention(C_S, C_Z, C, H, PQK, PV).double()
    with torch.no_grad():  # the output layer is zero-initialised; give it weights
        ipa.linear_out.weight.normal_(0, 0.2)
        ipa.head_weights.normal_(0, 0.5)
    return ipa


def random_rigids(shape: tuple[int, ...], seed: int) -> Rigid:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(shape + (4,), generator=g, dtype=F64)
    return Rigid(Rotation(quats=q), 3 * torch.randn(shape + (3,), generator=g, dtype=F64))


def inputs(n: int = 9, batch: tuple[int, ...] = (), seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(batch + (n, C_S), generator=g, dtype=F64)
    z = torch.randn(batch + (n, n, C_Z), generator=g, dtype=F64)
    return s, z, random_rigids(batch + (n,), seed + 1)


def naive_ipa(ipa: InvariantPointAttention, s, z, r: Rigid, mask) -> torch.Tensor:
    """Algorithm 22 written out literally (explicit squared distances), unbatched."""
    n = s.shape[0]
    q = ipa.linear_q(s).view(n, H, C)
    k, v = ipa.linear_kv(s).view(n, H, 2 * C).split(C, dim=-1)

    def pts(x, p):
        x = x.view(n, 3, H, p).permute(0, 2, 3, 1)  # (x..., y..., z...) layout
        return r[:, None, None].apply(x)

    qp = pts(ipa.linear_q_points(s), PQK)
    kvp = pts(ipa.linear_kv_points(s), PQK + PV)
    kp, vp = kvp[:, :, :PQK], kvp[:, :, PQK:]
    b = ipa.linear_b(z)  # [i, j, h]
    w_c = math.sqrt(2 / (9 * PQK))
    w_l = math.sqrt(1 / 3)
    gamma = F.softplus(ipa.head_weights)
    logits = torch.empty(H, n, n, dtype=s.dtype)
    for h in range(H):
        for i in range(n):
            for j in range(n):
                d2 = ((qp[i, h] - kp[j, h]) ** 2).sum()
                logits[h, i, j] = w_l * (
                    (q[i, h] * k[j, h]).sum() / math.sqrt(C) + b[i, j, h] - gamma[h] * w_c / 2 * d2
                )
    logits = logits - ipa.inf * (1 - mask[None, :, None] * mask[None, None, :])
    a = torch.softmax(logits, dim=-1)
    o = torch.einsum("hij,jhc->ihc", a, v).reshape(n, -1)
    o_pt_global = torch.einsum("hij,jhpx->ihpx", a, vp)
    o_pt = r[:, None, None].invert_apply(o_pt_global)
    o_norm = torch.sqrt((o_pt**2).sum(-1) + ipa.eps).reshape(n, -1)
    o_pair = torch.einsum("hij,ijc->ihc", a, z).reshape(n, -1)
    o_pt = o_pt.reshape(n, -1, 3)
    cat = torch.cat([o, o_pt[..., 0], o_pt[..., 1], o_pt[..., 2], o_norm, o_pair], dim=-1)
    return ipa.linear_out(cat)


def test_matches_literal_algorithm_22() -> None:
    ipa = make_ipa()
    s, z, r = inputs()
    mask = torch.ones(9, dtype=F64)
    mask[[2, 7]] = 0
    with torch.no_grad():
        torch.testing.assert_close(ipa(s, z, r, mask), naive_ipa(ipa, s, z, r, mask), atol=1e-9, rtol=1e-9)


def test_invariant_to_global_rigid_motion() -> None:
    ipa = make_ipa()
    s, z, r = inputs()
    mask = torch.ones(9, dtype=F64)
    g = random_rigids((), 5)
    moved = Rigid(
        Rotation(rot_mats=g.get_rots().get_rot_mats().expand(9, 3, 3)), g.get_trans().expand(9, 3)
    ).compose(r)
    with torch.no_grad():
        torch.testing.assert_close(ipa(s, z, moved, mask), ipa(s, z, r, mask), atol=1e-9, rtol=1e-9)


def test_chunking_and_batch_dims() -> None:
    ipa = make_ipa()
    s, z, r = inputs(n=7, batch=(2,))
    mask = torch.ones(2, 7, dtype=F64)
    with torch.no_grad():
        full = ipa(s, z, r, mask)
        for chunk in (1, 3, 7, 50):
            torch.testing.assert_close(ipa(s, z, r, mask, chunk_size=chunk), full, atol=1e-12, rtol=0)
        for i in range(2):
            torch.testing.assert_close(ipa(s[i], z[i], r[i], mask[i]), full[i], atol=1e-12, rtol=0)


def test_padded_residues_do_not_influence_real_ones() -> None:
    ipa = make_ipa()
    s, z, r = inputs()
    mask = torch.ones(9, dtype=F64)
    mask[4] = 0
    s2, z2 = s.clone(), z.clone()
    s2[4] += 10.0
    z2[:, 4] -= 5.0
    with torch.no_grad():
        a, b = ipa(s, z, r, mask), ipa(s2, z2, r, mask)
    keep = mask.bool()
    torch.testing.assert_close(a[keep], b[keep], atol=1e-10, rtol=0)


def test_bf16_autocast_and_gradients() -> None:
    ipa = make_ipa().float()
    s, z, r = inputs()
    s, z, r = s.float().requires_grad_(True), z.float(), r.to(dtype=torch.float32)
    mask = torch.ones(9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = ipa(s, z, r, mask)
    ref = ipa(s, z, r, mask)
    assert torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max()
    ref.pow(2).sum().backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    for name, p in ipa.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
