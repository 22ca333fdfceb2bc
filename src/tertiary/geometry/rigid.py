"""Rotations and rigid transformations, batched over any leading dimensions.

:class:`Rotation` wraps either rotation matrices ``[*, 3, 3]`` or quaternions ``[*, 4]`` stored as
``(w, x, y, z)`` (real part first, AlphaFold2's convention); :class:`Rigid` is a rotation plus a
translation ``[*, 3]`` (Angstrom wherever AlphaFold2 uses it) acting as ``x -> R x + t``.
Both behave like tensors whose shape is the batch shape ``[*]``: they can be indexed, unsqueezed,
concatenated, moved and detached, and every operation is differentiable.

Half-precision inputs are promoted to float32 (rotations lose orthogonality quickly in bf16 /
fp16, which is also what AlphaFold2 and OpenFold do); float32 and float64 are kept as given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from tertiary.errors import InputError

_FORMATS = ("quat", "rot_mat")


def _full_precision(t: torch.Tensor) -> torch.Tensor:
    """Promote float16 / bfloat16 to float32; leave other dtypes alone."""
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.float()
    return t


def _as_index(index: Any) -> tuple:
    return index if isinstance(index, tuple) else (index,)


def _batch_dim(dim: int, trailing: int) -> int:
    """Map a dimension of the virtual batch shape onto the underlying tensor with ``trailing`` extra dims."""
    return dim if dim >= 0 else dim - trailing


def rot_vec_mul(rot: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """``R v`` for broadcastable ``rot [*, 3, 3]`` and ``vec [*, 3]`` -> ``[*, 3]``.

    Written as an explicit multiply-add (not a matmul) so it is exact float32 arithmetic on every
    backend (no TF32) and broadcasts freely between batch shapes.
    """
    return (rot * vec[..., None, :]).sum(dim=-1)


def rot_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``A B`` for broadcastable ``[*, 3, 3]`` matrices (explicit multiply-add, see :func:`rot_vec_mul`)."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(dim=-2)


def quat_to_rot(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[*, 3, 3]`` from quaternions ``[*, 4]`` (w, x, y, z).

    Uses the homogeneous form (entries quadratic in the quaternion, no division), so a quaternion
    of norm ``s`` gives ``s**2`` times a rotation matrix; unit quaternions give rotations.
    """
    w, x, y, z = torch.unbind(quats, dim=-1)
    ww, xx, yy, zz = w * w, x * x, y * y, z * z
    wx, wy, wz = w * x, w * y, w * z
    xy, xz, yz = x * y, x * z, y * z
    rows = [
        ww + xx - yy - zz, 2 * (xy - wz), 2 * (xz + wy),
        2 * (xy + wz), ww - xx + yy - zz, 2 * (yz - wx),
        2 * (xz - wy), 2 * (yz + wx), ww - xx - yy + zz,
    ]
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def rot_to_quat(rot: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``[*, 4]`` (w, x, y, z) with ``w >= 0`` from rotation matrices ``[*, 3, 3]``.

    Shepperd's method: the symmetric matrix ``K = 4 q q^T`` is linear in ``R``; the row of ``K``
    with the largest diagonal entry is the best-conditioned multiple of ``q``.
    """
    if rot.shape[-2:] != (3, 3):
        raise InputError(f"rotation matrices must be [*, 3, 3], got {tuple(rot.shape)}")
    r = [[rot[..., i, j] for j in range(3)] for i in range(3)]
    xx, yy, zz = r[0][0], r[1][1], r[2][2]
    k = torch.stack(
        [
            torch.stack([1 + xx + yy + zz, r[2][1] - r[1][2], r[0][2] - r[2][0], r[1][0] - r[0][1]], -1),
            torch.stack([r[2][1] - r[1][2], 1 + xx - yy - zz, r[0][1] + r[1][0], r[0][2] + r[2][0]], -1),
            torch.stack([r[0][2] - r[2][0], r[0][1] + r[1][0], 1 - xx + yy - zz, r[1][2] + r[2][1]], -1),
            torch.stack([r[1][0] - r[0][1], r[0][2] + r[2][0], r[1][2] + r[2][1], 1 - xx - yy + zz], -1),
        ],
        dim=-2,
    )
    diag = torch.diagonal(k, dim1=-2, dim2=-1)
    best = diag.argmax(dim=-1, keepdim=True)
    row = torch.gather(k, -2, best[..., None].expand(best.shape[:-1] + (1, 4))).squeeze(-2)
    q = row / torch.linalg.norm(row, dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_multiply(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``q1 q2`` of broadcastable quaternions ``[*, 4]`` (w, x, y, z)."""
    w1, x1, y1, z1 = torch.unbind(q1, dim=-1)
    w2, x2, y2, z2 = torch.unbind(q2, dim=-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        dim=-1,
    )


def quat_multiply_by_vec(quats: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """``q (0, v)``: product of quaternions ``[*, 4]`` with pure quaternions given as ``[*, 3]``."""
    return quat_multiply(quats, torch.cat([torch.zeros_like(vec[..., :1]), vec], dim=-1))


class Rotation:
    """A batch of 3D rotations stored as rotation matrices or as quaternions.

    Exactly one of ``rot_mats [*, 3, 3]`` and ``quats [*, 4]`` (w, x, y, z) is given; the other form
    is computed on demand. Composition keeps the format that avoids conversions (matrix products
    give matrices, quaternion updates give quaternions).
    """

    def __init__(
        self,
        rot_mats: torch.Tensor | None = None,
        quats: torch.Tensor | None = None,
        normalize_quats: bool = True,
    ) -> None:
        if (rot_mats is None) == (quats is None):
            raise InputError("Rotation needs exactly one of rot_mats and quats")
        if rot_mats is not None:
            if rot_mats.shape[-2:] != (3, 3):
                raise InputError(f"rot_mats must be [*, 3, 3], got {tuple(rot_mats.shape)}")
            rot_mats = _full_precision(rot_mats)
        if quats is not None:
            if quats.shape[-1] != 4:
                raise InputError(f"quats must be [*, 4], got {tuple(quats.shape)}")
            quats = _full_precision(quats)
            if normalize_quats:
                quats = quats / torch.linalg.norm(quats, dim=-1, keepdim=True)
        self._rot_mats = rot_mats
        self._quats = quats

    # construction -----------------------------------------------------------------------------

    @staticmethod
    def identity(
        shape: Sequence[int],
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        fmt: str = "quat",
    ) -> Rotation:
        """Identity rotations of batch shape ``shape`` in format ``"quat"`` or ``"rot_mat"``."""
        shape = tuple(shape)
        if fmt == "quat":
            q = torch.zeros(shape + (4,), dtype=dtype, device=device)
            q[..., 0] = 1
            return Rotation(quats=q, normalize_quats=False)
        if fmt == "rot_mat":
            eye = torch.eye(3, dtype=dtype, device=device)
            return Rotation(rot_mats=eye.expand(shape + (3, 3)).clone())
        raise InputError(f"unknown rotation format {fmt!r}; expected one of {_FORMATS}")

    # tensor-like behaviour --------------------------------------------------------------------

    def _wrap(self, fn_mats: Callable[[torch.Tensor], torch.Tensor], fn_quats: Callable[[torch.Tensor], torch.Tensor]) -> Rotation:
        if self._rot_mats is not None:
            return Rotation(rot_mats=fn_mats(self._rot_mats))
        return Rotation(quats=fn_quats(self._quats), normalize_quats=False)

    def __getitem__(self, index: Any) -> Rotation:
        """Index the batch dimensions like a tensor of shape :attr:`shape`."""
        index = _as_index(index)
        return self._wrap(lambda m: m[index + (slice(None), slice(None))], lambda q: q[index + (slice(None),)])

    def __mul__(self, right: torch.Tensor) -> Rotation:
        """Element-wise product with a tensor of the batch shape (e.g. a mask)."""
        if not isinstance(right, torch.Tensor):
            raise InputError("a Rotation can only be multiplied element-wise by a tensor")
        return self._wrap(lambda m: m * right[..., None, None], lambda q: q * right[..., None])

    __rmul__ = __mul__

    @property
    def shape(self) -> torch.Size:
        """Batch shape ``[*]``."""
        if self._rot_mats is not None:
            return self._rot_mats.shape[:-2]
        return self._quats.shape[:-1]

    @property
    def _data(self) -> torch.Tensor:
        return self._rot_mats if self._rot_mats is not None else self._quats

    @property
    def dtype(self) -> torch.dtype:
        return self._data.dtype

    @property
    def device(self) -> torch.device:
        return self._data.device

    @property
    def requires_grad(self) -> bool:
        return self._data.requires_grad

    @property
    def fmt(self) -> str:
        """``"rot_mat"`` or ``"quat"``: the stored format."""
        return "rot_mat" if self._rot_mats is not None else "quat"

    def unsqueeze(self, dim: int) -> Rotation:
        """Insert a batch dimension at ``dim`` (relative to :attr:`shape`)."""
        if dim > len(self.shape) or dim < -len(self.shape) - 1:
            raise InputError(f"cannot unsqueeze dimension {dim} of a rotation of shape {tuple(self.shape)}")
        return self._wrap(lambda m: m.unsqueeze(_batch_dim(dim, 2)), lambda q: q.unsqueeze(_batch_dim(dim, 1)))

    @staticmethod
    def cat(rots: Sequence[Rotation], dim: int) -> Rotation:
        """Concatenate along batch dimension ``dim``; the result is in matrix format."""
        mats = [r.get_rot_mats() for r in rots]
        return Rotation(rot_mats=torch.cat(mats, dim=_batch_dim(dim, 2)))

    def map_tensor_fn(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Rotation:
        """Apply ``fn`` (``[*] -> [*']``) to each scalar component of the stored rotation."""

        def over_mats(m: torch.Tensor) -> torch.Tensor:
            flat = m.reshape(m.shape[:-2] + (9,))
            out = torch.stack([fn(c) for c in torch.unbind(flat, dim=-1)], dim=-1)
            return out.reshape(out.shape[:-1] + (3, 3))

        return self._wrap(over_mats, lambda q: torch.stack([fn(c) for c in torch.unbind(q, dim=-1)], dim=-1))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Rotation:
        return self._wrap(lambda m: m.to(device=device, dtype=dtype), lambda q: q.to(device=device, dtype=dtype))

    def detach(self) -> Rotation:
        return self._wrap(lambda m: m.detach(), lambda q: q.detach())

    # conversions ------------------------------------------------------------------------------

    def get_rot_mats(self) -> torch.Tensor:
        """Rotation matrices ``[*, 3, 3]``."""
        if self._rot_mats is not None:
            return self._rot_mats
        return quat_to_rot(self._quats)

    def get_quats(self) -> torch.Tensor:
        """Quaternions ``[*, 4]`` (w, x, y, z); from matrices they are unit with ``w >= 0``."""
        if self._quats is not None:
            return self._quats
        return rot_to_quat(self._rot_mats)

    def get_cur_rot(self) -> torch.Tensor:
        """The stored tensor (matrices or quaternions)."""
        return self._data

    # algebra ----------------------------------------------------------------------------------

    def compose_r(self, r: Rotation) -> Rotation:
        """``self * r`` as rotation matrices."""
        return Rotation(rot_mats=rot_matmul(self.get_rot_mats(), r.get_rot_mats()))

    def compose_q(self, r: Rotation, normalize_quats: bool = True) -> Rotation:
        """``self * r`` as quaternions."""
        return Rotation(quats=quat_multiply(self.get_quats(), r.get_quats()), normalize_quats=normalize_quats)

    def compose_q_update_vec(self, q_update_vec: torch.Tensor, normalize_quats: bool = True) -> Rotation:
        """Right-compose with the (non-unit) quaternion ``(1, b, c, d)`` given as ``[*, 3]`` (b, c, d).

        This is AlphaFold2's backbone update (Algorithm 23): ``q + q (0, b, c, d)``, normalised.
        """
        q = self.get_quats()
        return Rotation(quats=q + quat_multiply_by_vec(q, q_update_vec), normalize_quats=normalize_quats)

    def apply(self, pts: torch.Tensor) -> torch.Tensor:
        """Rotate points ``[*, 3]`` (broadcast against the batch shape)."""
        return rot_vec_mul(self.get_rot_mats(), pts)

    def invert_apply(self, pts: torch.Tensor) -> torch.Tensor:
        """Apply the inverse rotation to points ``[*, 3]``."""
        return rot_vec_mul(self.get_rot_mats().transpose(-1, -2), pts)

    def invert(self) -> Rotation:
        """The inverse rotation (transpose, or quaternion conjugate divided by the squared norm)."""
        if self._rot_mats is not None:
            return Rotation(rot_mats=self._rot_mats.transpose(-1, -2))
        q = self._quats
        conj = torch.cat([q[..., :1], -q[..., 1:]], dim=-1)
        return Rotation(quats=conj / (q * q).sum(dim=-1, keepdim=True), normalize_quats=False)

    def __repr__(self) -> str:
        return f"Rotation(shape={tuple(self.shape)}, fmt={self.fmt}, dtype={self.dtype})"


class Rigid:
    """A batch of rigid transformations ``x -> R x + t``: a :class:`Rotation` and ``trans [*, 3]``.

    Either part may be None (identity); the batch shapes of both parts must agree.
    """

    def __init__(self, rots: Rotation | None, trans: torch.Tensor | None) -> None:
        if rots is None and trans is None:
            raise InputError("Rigid needs a rotation, a translation or both")
        if rots is None:
            rots = Rotation.identity(trans.shape[:-1], trans.dtype, trans.device)
        if trans is None:
            trans = torch.zeros(tuple(rots.shape) + (3,), dtype=rots.dtype, device=rots.device)
        if trans.shape[-1:] != (3,):
            raise InputError(f"translations must be [*, 3], got {tuple(trans.shape)}")
        if tuple(rots.shape) != tuple(trans.shape[:-1]):
            raise InputError(f"rotation batch shape {tuple(rots.shape)} != translation batch shape {tuple(trans.shape[:-1])}")
        self._rots = rots
        self._trans = _full_precision(trans)

    # construction -----------------------------------------------------------------------------

    @staticmethod
    def identity(
        shape: Sequence[int],
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        fmt: str = "quat",
    ) -> Rigid:
        """Identity transformations of batch shape ``shape``."""
        shape = tuple(shape)
        return Rigid(Rotation.identity(shape, dtype, device, fmt), torch.zeros(shape + (3,), dtype=dtype, device=device))

    @staticmethod
    def from_tensor_4x4(t: torch.Tensor) -> Rigid:
        """From homogeneous matrices ``[*, 4, 4]`` (rotation block, translation column)."""
        if t.shape[-2:] != (4, 4):
            raise InputError(f"homogeneous transforms must be [*, 4, 4], got {tuple(t.shape)}")
        return Rigid(Rotation(rot_mats=t[..., :3, :3]), t[..., :3, 3])

    @staticmethod
    def from_tensor_7(t: torch.Tensor, normalize_quats: bool = False) -> Rigid:
        """From ``[*, 7]``: quaternion (w, x, y, z) then translation."""
        if t.shape[-1] != 7:
            raise InputError(f"7-vector transforms must be [*, 7], got {tuple(t.shape)}")
        return Rigid(Rotation(quats=t[..., :4], normalize_quats=normalize_quats), t[..., 4:])

    @staticmethod
    def from_3_points(
        p_neg_x_axis: torch.Tensor, origin: torch.Tensor, p_xy_plane: torch.Tensor, eps: float = 1e-8
    ) -> Rigid:
        """Frames from three points by Gram-Schmidt (AlphaFold2 Algorithm 21, rigidFrom3Points).

        The frame sits at ``origin`` ``[*, 3]``; its x axis points from ``p_neg_x_axis`` to
        ``origin``; ``p_xy_plane`` lies in its xy plane with positive y. For a backbone this is
        ``from_3_points(N, CA, C)``. ``eps`` is added under the square roots of the norms.
        """
        e0 = origin - p_neg_x_axis
        e1 = p_xy_plane - origin
        e0 = e0 / torch.sqrt((e0 * e0).sum(dim=-1, keepdim=True) + eps)
        e1 = e1 - e0 * (e0 * e1).sum(dim=-1, keepdim=True)
        e1 = e1 / torch.sqrt((e1 * e1).sum(dim=-1, keepdim=True) + eps)
        e2 = torch.linalg.cross(e0, e1, dim=-1)
        rots = torch.stack([e0, e1, e2], dim=-1)  # the axes are the columns
        return Rigid(Rotation(rot_mats=rots), origin)

    @staticmethod
    def cat(rigids: Sequence[Rigid], dim: int) -> Rigid:
        """Concatenate along batch dimension ``dim`` (rotations end up as matrices)."""
        rots = Rotation.cat([r._rots for r in rigids], dim)
        trans = torch.cat([r._trans for r in rigids], dim=_batch_dim(dim, 1))
        return Rigid(rots, trans)

    # tensor-like behaviour --------------------------------------------------------------------

    def __getitem__(self, index: Any) -> Rigid:
        index = _as_index(index)
        return Rigid(self._rots[index], self._trans[index + (slice(None),)])

    def __mul__(self, right: torch.Tensor) -> Rigid:
        """Element-wise product of both parts with a tensor of the batch shape (e.g. a mask)."""
        if not isinstance(right, torch.Tensor):
            raise InputError("a Rigid can only be multiplied element-wise by a tensor")
        return Rigid(self._rots * right, self._trans * right[..., None])

    __rmul__ = __mul__

    @property
    def shape(self) -> torch.Size:
        return self._trans.shape[:-1]

    @property
    def dtype(self) -> torch.dtype:
        return self._trans.dtype

    @property
    def device(self) -> torch.device:
        return self._trans.device

    @property
    def requires_grad(self) -> bool:
        return self._trans.requires_grad or self._rots.requires_grad

    def get_rots(self) -> Rotation:
        return self._rots

    def get_trans(self) -> torch.Tensor:
        """Translations ``[*, 3]``."""
        return self._trans

    def unsqueeze(self, dim: int) -> Rigid:
        """Insert a batch dimension at ``dim`` (relative to :attr:`shape`)."""
        return Rigid(self._rots.unsqueeze(dim), self._trans.unsqueeze(_batch_dim(dim, 1)))

    def map_tensor_fn(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Rigid:
        """Apply ``fn`` (``[*] -> [*']``) to every scalar component of rotation and translation."""
        trans = torch.stack([fn(c) for c in torch.unbind(self._trans, dim=-1)], dim=-1)
        return Rigid(self._rots.map_tensor_fn(fn), trans)

    def apply_rot_fn(self, fn: Callable[[Rotation], Rotation]) -> Rigid:
        return Rigid(fn(self._rots), self._trans)

    def apply_trans_fn(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Rigid:
        return Rigid(self._rots, fn(self._trans))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Rigid:
        return Rigid(self._rots.to(device, dtype), self._trans.to(device=device, dtype=dtype))

    def detach(self) -> Rigid:
        return Rigid(self._rots.detach(), self._trans.detach())

    # conversions ------------------------------------------------------------------------------

    def to_tensor_4x4(self) -> torch.Tensor:
        """Homogeneous matrices ``[*, 4, 4]``."""
        top = torch.cat([self._rots.get_rot_mats(), self._trans[..., None]], dim=-1)
        bottom = torch.zeros(tuple(self.shape) + (1, 4), dtype=top.dtype, device=top.device)
        bottom[..., 0, 3] = 1
        return torch.cat([top, bottom], dim=-2)

    def to_tensor_7(self) -> torch.Tensor:
        """``[*, 7]``: quaternion (w, x, y, z) then translation."""
        return torch.cat([self._rots.get_quats(), self._trans], dim=-1)

    # algebra ----------------------------------------------------------------------------------

    def compose(self, r: Rigid) -> Rigid:
        """``self ∘ r`` (apply ``r`` first), as rotation matrices."""
        return Rigid(self._rots.compose_r(r._rots), self._rots.apply(r._trans) + self._trans)

    def compose_q_update_vec(self, q_update_vec: torch.Tensor) -> Rigid:
        """Right-compose with an update ``[*, 6]``: quaternion (1, b, c, d) given as (b, c, d), then translation.

        AlphaFold2 Algorithm 23: the translation is expressed in the current frame.
        """
        if q_update_vec.shape[-1] != 6:
            raise InputError(f"backbone updates must be [*, 6], got {tuple(q_update_vec.shape)}")
        q_vec, t_vec = q_update_vec[..., :3], q_update_vec[..., 3:]
        return Rigid(self._rots.compose_q_update_vec(q_vec), self._trans + self._rots.apply(t_vec))

    def apply(self, pts: torch.Tensor) -> torch.Tensor:
        """``R x + t`` for points ``[*, 3]`` (broadcast against the batch shape)."""
        return self._rots.apply(pts) + self._trans

    def invert_apply(self, pts: torch.Tensor) -> torch.Tensor:
        """``R^T (x - t)`` for points ``[*, 3]``."""
        return self._rots.invert_apply(pts - self._trans)

    def invert(self) -> Rigid:
        """The inverse transformation ``x -> R^T x - R^T t``."""
        rot_inv = self._rots.invert()
        return Rigid(rot_inv, -rot_inv.apply(self._trans))

    def scale_translation(self, factor: float) -> Rigid:
        """Multiply the translation by ``factor`` (e.g. nm <-> Angstrom in the structure module)."""
        return Rigid(self._rots, self._trans * factor)

    def stop_rot_gradient(self) -> Rigid:
        """Detach the rotation only (AlphaFold2 does this between structure-module layers)."""
        return Rigid(self._rots.detach(), self._trans)

    def __repr__(self) -> str:
        return f"Rigid(shape={tuple(self.shape)}, fmt={self._rots.fmt}, dtype={self.dtype})"
