"""Per-residue atom layouts: atom14 <-> atom37 conversion and pseudo-beta atoms.

atom37 has one slot per atom type of any residue (``tertiary.constants.ATOM_TYPES``); atom14
has one slot per heavy atom of the residue type at hand (``RESTYPE_ATOM14_TO_ATOM37``). Residue
types follow ``tertiary.constants.RESTYPES_WITH_X`` (0-19 standard, 20 = unknown).
"""

from __future__ import annotations

import torch

from tertiary import constants as rc
from tertiary.errors import InputError


def _table(array, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.tensor(array, device=like.device, dtype=dtype)


def _check_aatype(aatype: torch.Tensor, values: torch.Tensor, n_atoms: int, name: str) -> None:
    if aatype.dtype.is_floating_point or aatype.dtype == torch.bool:
        raise InputError(f"{name}: aatype must be an integer tensor, got {aatype.dtype}")
    d = aatype.ndim
    if values.ndim <= d or values.shape[:d] != aatype.shape or values.shape[d] != n_atoms:
        raise InputError(
            f"{name}: values {tuple(values.shape)} must start with aatype's shape {tuple(aatype.shape)}"
            f" followed by {n_atoms} atoms"
        )
    if aatype.numel() and (int(aatype.min()) < 0 or int(aatype.max()) > rc.UNK_INDEX):
        raise InputError(f"{name}: aatype values must lie in [0, {rc.UNK_INDEX}]")


def _gather_atoms(values: torch.Tensor, index: torch.Tensor, d: int) -> torch.Tensor:
    """``out[..., n, a, *F] = values[..., n, index[..., n, a], *F]`` with atoms on axis ``d``."""
    extra = values.shape[d + 1 :]
    idx = index.reshape(index.shape + (1,) * len(extra)).expand(index.shape + extra)
    return torch.gather(values, d, idx)


def atom14_mask(aatype: torch.Tensor) -> torch.Tensor:
    """``[*, N, 14]`` float 1.0 for the atom14 slots the residue types have."""
    return _table(rc.RESTYPE_ATOM14_MASK, aatype, torch.float32)[aatype.long()]


def atom37_mask(aatype: torch.Tensor) -> torch.Tensor:
    """``[*, N, 37]`` float 1.0 for the atom37 types the residue types have (no OXT)."""
    return _table(rc.RESTYPE_ATOM37_MASK, aatype, torch.float32)[aatype.long()]


def atom14_to_atom37(values: torch.Tensor, aatype: torch.Tensor) -> torch.Tensor:
    """Scatter per-atom values from atom14 to atom37 order.

    Args:
        values: ``[*, N, 14, *F]`` (positions ``F = (3,)``, masks ``F = ()``).
        aatype: ``[*, N]`` residue types.

    Returns:
        ``[*, N, 37, *F]``; slots the residue type lacks are zero.
    """
    _check_aatype(aatype, values, 14, "atom14_to_atom37")
    d = aatype.ndim
    index = _table(rc.RESTYPE_ATOM37_TO_ATOM14, aatype, torch.long)[aatype.long()]
    out = _gather_atoms(values, index, d)
    exists = atom37_mask(aatype).to(values.dtype)
    return out * exists.reshape(exists.shape + (1,) * (values.ndim - d - 1))


def atom37_to_atom14(values: torch.Tensor, aatype: torch.Tensor) -> torch.Tensor:
    """Gather per-atom values from atom37 to atom14 order.

    Args:
        values: ``[*, N, 37, *F]``.
        aatype: ``[*, N]`` residue types.

    Returns:
        ``[*, N, 14, *F]``; slots the residue type lacks are zero.
    """
    _check_aatype(aatype, values, 37, "atom37_to_atom14")
    d = aatype.ndim
    index = _table(rc.RESTYPE_ATOM14_TO_ATOM37, aatype, torch.long)[aatype.long()]
    out = _gather_atoms(values, index, d)
    exists = atom14_mask(aatype).to(values.dtype)
    return out * exists.reshape(exists.shape + (1,) * (values.ndim - d - 1))


def pseudo_beta(
    aatype: torch.Tensor,
    all_atom_positions: torch.Tensor,
    all_atom_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pseudo-beta atoms: CB, or CA for glycine (AlphaFold2 ``pseudo_beta_fn``).

    Args:
        aatype: ``[*, N]`` residue types.
        all_atom_positions: ``[*, N, 37, 3]`` atom37 coordinates (Angstrom).
        all_atom_mask: ``[*, N, 37]`` or None.

    Returns:
        ``(positions [*, N, 3], mask [*, N] or None)``.
    """
    _check_aatype(aatype, all_atom_positions, 37, "pseudo_beta")
    is_gly = aatype == rc.RESTYPE_ORDER["G"]
    ca, cb = rc.ATOM_ORDER["CA"], rc.ATOM_ORDER["CB"]
    pos = torch.where(is_gly[..., None], all_atom_positions[..., ca, :], all_atom_positions[..., cb, :])
    if all_atom_mask is None:
        return pos, None
    mask = torch.where(is_gly, all_atom_mask[..., ca], all_atom_mask[..., cb])
    return pos, mask
