"""Tests for tertiary.geometry.rigid: algebra, conversions, tensor-like behaviour, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from tertiary.errors import InputError
from tertiary.geometry.rigid import Rigid, Rotation, quat_multiply, quat_to_rot, rot_to_quat

F64 = torch.float64


def random_quats(shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(shape + (4,), generator=g, dtype=dtype)
    return q / q.norm(dim=-1, keepdim=True)


def random_rigid(shape: tuple[int, ...], seed: int = 0, fmt: str = "quat") -> Rigid:
    g = torch.Generator().manual_seed(seed + 1000)
    q = random_quats(shape, seed)
    rot = Rotation(quats=q) if fmt == "quat" else Rotation(rot_mats=quat_to_rot(q))
    return Rigid(rot, 10 * torch.randn(shape + (3,), generator=g, dtype=F64))


def random_points(shape: tuple[int, ...], seed: int = 7) -> torch.Tensor:
    return 5 * torch.randn(shape + (3,), generator=torch.Generator().manual_seed(seed), dtype=F64)


def axis_angle_matrix(axis: torch.Tensor, angle: float) -> torch.Tensor:
    """Rodrigues' formula, an independent construction of a rotation matrix."""
    axis = axis / axis.norm()
    k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=F64)
    return torch.eye(3, dtype=F64) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def test_quat_to_rot_matches_axis_angle() -> None:
    axis = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    angle = 1.234
    u = axis / axis.norm()
    q = torch.cat([torch.tensor([math.cos(angle / 2)], dtype=F64), math.sin(angle / 2) * u])
    torch.testing.assert_close(quat_to_rot(q), axis_angle_matrix(axis, angle), atol=1e-12, rtol=0)


def test_rotation_matrices_are_orthonormal() -> None:
    r = quat_to_rot(random_quats((5, 7)))
    eye = torch.eye(3, dtype=F64).expand_as(r)
    torch.testing.assert_close(r @ r.transpose(-1, -2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(5, 7, dtype=F64), atol=1e-12, rtol=0)


def test_quat_matrix_round_trip() -> None:
    q = random_quats((64,))
    # include the hard cases: identity, 180-degree turns about each axis (w = 0)
    special = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0.6, 0.8, 0]], dtype=F64)
    q = torch.cat([q, special])
    back = rot_to_quat(quat_to_rot(q))
    # q and -q are the same rotation
    sign = torch.where((back * q).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(F64)
    torch.testing.assert_close(back * sign, q, atol=1e-12, rtol=0)
    torch.testing.assert_close(quat_to_rot(back), quat_to_rot(q), atol=1e-12, rtol=0)
    assert bool((rot_to_quat(quat_to_rot(random_quats((32,))))[:, 0] >= 0).all())


def test_quat_multiply_matches_matrix_product() -> None:
    q1, q2 = random_quats((10,), 1), random_quats((10,), 2)
    torch.testing.assert_close(quat_to_rot(quat_multiply(q1, q2)), quat_to_rot(q1) @ quat_to_rot(q2), atol=1e-12, rtol=0)


@pytest.mark.parametrize("fmt", ["quat", "rot_mat"])
def test_compose_with_inverse_is_identity(fmt: str) -> None:
    t = random_rigid((4, 6), fmt=fmt)
    ident = Rigid.identity((4, 6), dtype=F64, fmt="rot_mat")
    for prod in (t.compose(t.invert()), t.invert().compose(t)):
        torch.testing.assert_close(prod.get_rots().get_rot_mats(), ident.get_rots().get_rot_mats(), atol=1e-12, rtol=0)
        torch.testing.assert_close(prod.get_trans(), ident.get_trans(), atol=1e-12, rtol=0)


@pytest.mark.parametrize("fmt", ["quat", "rot_mat"])
def test_apply_invert_apply_consistency(fmt: str) -> None:
    t = random_rigid((3, 5), fmt=fmt)
    x = random_points((3, 5))
    torch.testing.assert_close(t.invert_apply(t.apply(x)), x, atol=1e-12, rtol=0)
    torch.testing.assert_close(t.invert().apply(x), t.invert_apply(x), atol=1e-12, rtol=0)
    # apply is R x + t with R the stored rotation
    manual = (t.get_rots().get_rot_mats() @ x[..., None])[..., 0] + t.get_trans()
    torch.testing.assert_close(t.apply(x), manual, atol=1e-12, rtol=0)


def test_compose_is_function_composition_and_associative() -> None:
    a, b, c = random_rigid((8,), 1), random_rigid((8,), 2), random_rigid((8,), 3)
    x = random_points((8,))
    torch.testing.assert_close(a.compose(b).apply(x), a.apply(b.apply(x)), atol=1e-10, rtol=0)
    left, right = a.compose(b).compose(c), a.compose(b.compose(c))
    torch.testing.assert_close(left.to_tensor_4x4(), right.to_tensor_4x4(), atol=1e-10, rtol=0)


def test_broadcast_apply_over_points() -> None:
    t = random_rigid((4,))
    x = random_points((4, 9))
    out = t[..., None].apply(x)
    for i in range(4):
        torch.testing.assert_close(out[i], t[i].apply(x[i]), atol=1e-12, rtol=0)


def test_tensor_7_and_4x4_round_trips() -> None:
    t = random_rigid((2, 3))
    t7 = t.to_tensor_7()
    assert t7.shape == (2, 3, 7)
    torch.testing.assert_close(Rigid.from_tensor_7(t7).to_tensor_7(), t7, atol=0, rtol=0)
    m = t.to_tensor_4x4()
    assert m.shape == (2, 3, 4, 4)
    torch.testing.assert_close(m[..., 3, :], torch.tensor([0, 0, 0, 1], dtype=F64).expand(2, 3, 4))
    back = Rigid.from_tensor_4x4(m)
    torch.testing.assert_close(back.to_tensor_4x4(), m, atol=0, rtol=0)
    # matrix format -> quaternion -> matrix gives the same transform
    via7 = Rigid.from_tensor_7(back.to_tensor_7())
    torch.testing.assert_close(via7.to_tensor_4x4(), m, atol=1e-12, rtol=0)


def test_from_tensor_7_normalizes_on_request() -> None:
    t7 = torch.cat([2 * random_quats((5,)), torch.zeros(5, 3, dtype=F64)], dim=-1)
    q = Rigid.from_tensor_7(t7, normalize_quats=True).get_rots().get_quats()
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(5, dtype=F64))


def test_compose_q_update_vec_matches_quaternion_product() -> None:
    t = random_rigid((6,))
    upd = torch.randn(6, 6, generator=torch.Generator().manual_seed(3), dtype=F64)
    new = t.compose_q_update_vec(upd)
    q_upd = torch.cat([torch.ones(6, 1, dtype=F64), upd[:, :3]], dim=-1)
    expected = t.compose(Rigid(Rotation(quats=q_upd), upd[:, 3:]))
    torch.testing.assert_close(new.to_tensor_4x4(), expected.to_tensor_4x4(), atol=1e-12, rtol=0)
    assert new.get_rots().fmt == "quat"
    torch.testing.assert_close(new.get_rots().get_quats().norm(dim=-1), torch.ones(6, dtype=F64))


def test_from_3_points_backbone_convention() -> None:
    # a canonical frame rotated and shifted: N on the -x side, C in the xy plane with y > 0
    n_local = torch.tensor([-0.5272, 1.3593, 0.0], dtype=F64)
    ca_local = torch.zeros(3, dtype=F64)
    c_local = torch.tensor([1.5233, 0.0, 0.0], dtype=F64)
    t = random_rigid((5,))
    n, ca, c = (t.apply(p.expand(5, 3)) for p in (n_local, ca_local, c_local))
    frame = Rigid.from_3_points(p_neg_x_axis=n, origin=ca, p_xy_plane=c, eps=0.0)
    torch.testing.assert_close(frame.get_trans(), ca)
    local_c = frame.invert_apply(c)
    local_n = frame.invert_apply(n)
    # x axis points from N to CA: N has negative x; C is in the xy plane with y >= 0
    e0 = (ca - n) / (ca - n).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(frame.get_rots().get_rot_mats()[..., :, 0], e0)
    torch.testing.assert_close(local_n[..., 1:], torch.zeros(5, 2, dtype=F64), atol=1e-12, rtol=0)
    assert bool((local_n[..., 0] < 0).all())
    torch.testing.assert_close(local_c[..., 2], torch.zeros(5, dtype=F64), atol=1e-12, rtol=0)
    assert bool((local_c[..., 1] > 0).all())
    r = frame.get_rots().get_rot_mats()
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(5, dtype=F64))


def test_indexing_unsqueeze_cat_map() -> None:
    t = random_rigid((4, 5))
    assert t[1].shape == (5,)
    assert t[:, 2:4].shape == (4, 2)
    assert t[None].shape == (1, 4, 5)
    assert t.unsqueeze(0).shape == (1, 4, 5)
    assert t.unsqueeze(-1).shape == (4, 5, 1)
    assert t.unsqueeze(-3).shape == (1, 4, 5)
    torch.testing.assert_close(t.unsqueeze(-1)[:, :, 0].to_tensor_7(), t.to_tensor_7())
    both = Rigid.cat([t, t[:, :2]], dim=-1)
    assert both.shape == (4, 7)
    torch.testing.assert_close(both[:, 5:].to_tensor_4x4(), t[:, :2].to_tensor_4x4())
    both0 = Rigid.cat([t, t], dim=0)
    assert both0.shape == (8, 5)
    summed = t.map_tensor_fn(lambda c: c.sum(dim=-1))
    assert summed.shape == (4,)
    torch.testing.assert_close(summed.get_trans(), t.get_trans().sum(dim=1))
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=F64)
    masked = t * mask
    torch.testing.assert_close(masked.get_trans()[:, 1], torch.zeros(4, 3, dtype=F64))


def test_identity_both_formats_and_shapes() -> None:
    for fmt in ("quat", "rot_mat"):
        ident = Rigid.identity((2, 3), dtype=torch.float32, fmt=fmt)
        assert ident.shape == (2, 3) and ident.dtype == torch.float32 and ident.get_rots().fmt == fmt
        x = torch.randn(2, 3, 3)
        torch.testing.assert_close(ident.apply(x), x)
    with pytest.raises(InputError):
        Rotation.identity((2,), fmt="euler")


def test_dtype_device_to_detach_and_half_promotion() -> None:
    t = random_rigid((3,))
    assert t.dtype == F64 and t.device.type == "cpu"
    t32 = t.to(dtype=torch.float32)
    assert t32.dtype == torch.float32 and t32.get_rots().dtype == torch.float32
    half = Rigid(Rotation(rot_mats=torch.eye(3, dtype=torch.bfloat16).expand(2, 3, 3)), torch.zeros(2, 3, dtype=torch.bfloat16))
    assert half.dtype == torch.float32 and half.get_rots().dtype == torch.float32
    x = torch.zeros(3, 3, dtype=F64, requires_grad=True)
    d = Rigid(None, x).detach()
    assert not d.get_trans().requires_grad


def test_gradients_flow_through_quaternions_and_translations() -> None:
    q = random_quats((4,)).requires_grad_(True)
    tr = torch.randn(4, 3, dtype=F64, requires_grad=True)
    upd = torch.randn(4, 6, dtype=F64, requires_grad=True)
    x = random_points((4,))
    t = Rigid(Rotation(quats=q), tr).compose_q_update_vec(upd)
    y = t.invert().apply(t.apply(x) * 2.0).sum() + t.to_tensor_7().pow(2).sum()
    y.backward()
    for g in (q.grad, tr.grad, upd.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda a, b: Rigid(Rotation(quats=a), b).compose(Rigid(Rotation(quats=a.flip(-1)), b)).apply(x),
        (random_quats((4,)).requires_grad_(True), torch.randn(4, 3, dtype=F64, requires_grad=True)),
    )
    assert torch.autograd.gradcheck(lambda r: rot_to_quat(r), (quat_to_rot(random_quats((3,))).requires_grad_(True),))


def test_stop_rot_gradient_detaches_rotation_only() -> None:
    q = random_quats((2,)).requires_grad_(True)
    tr = torch.randn(2, 3, dtype=F64, requires_grad=True)
    t = Rigid(Rotation(quats=q), tr).stop_rot_gradient()
    assert not t.get_rots().requires_grad and t.get_trans().requires_grad
    s = t.scale_translation(10.0)
    torch.testing.assert_close(s.get_trans(), 10 * tr)


def test_bad_inputs_raise_input_error() -> None:
    with pytest.raises(InputError):
        Rotation()
    with pytest.raises(InputError):
        Rotation(rot_mats=torch.eye(3), quats=torch.ones(4))
    with pytest.raises(InputError):
        Rotation(quats=torch.ones(3))
    with pytest.raises(InputError):
        Rigid(Rotation.identity((2,)), torch.zeros(3, 3))
    with pytest.raises(InputError):
        Rigid.from_tensor_7(torch.zeros(2, 6))
    with pytest.raises(InputError):
        Rigid.from_tensor_4x4(torch.zeros(2, 3, 4))
