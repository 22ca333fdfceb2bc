"""Initial backbone of designed residues: interpolation between context residues.

Residues are taken in pocket-file order (the released code) or in a given order, normally
chain order (chains concatenated, numbering gaps ignored). A designed residue between two context
(non-designed) residues gets the index-weighted linear interpolation of their N, CA, C, O; one
before the first (after the last) context residue is extrapolated linearly from the first (last)
two context residues.
"""

from __future__ import annotations

import torch

from tertiary.data.pocket import PocketBatch
from tertiary.errors import InputError

from .config import FairConfig

MIN_CONTEXT = 3


def interpolate_backbone(
    backbone: torch.Tensor, edit: torch.Tensor, res_mask: torch.Tensor, names: list[str] | None = None,
    keep_true_if_few_context: bool = False, order: torch.Tensor | None = None,
) -> torch.Tensor:
    """Interpolated backbone for the designed residues.

    Args:
        backbone: ``[B, R, 4, 3]`` N, CA, C, O (only context residues are read).
        edit: ``[B, R]`` designed residues.
        res_mask: ``[B, R]`` real residues.
        names: pocket names for error messages.
        keep_true_if_few_context: with fewer than 3 context residues, return the input backbone
            unchanged for that complex (the released code's behaviour, which starts from the TRUE
            backbone); otherwise such a complex is an error.

    Returns:
        ``[B, R, 4, 3]``: designed residues replaced, the others as given.

    Raises:
        InputError: fewer than 3 context residues in a complex (unless kept as above).
    """
    out = backbone.clone()
    for b in range(backbone.shape[0]):
        n = int(res_mask[b].sum())
        perm = torch.arange(n, device=edit.device) if order is None else order[b, :n]
        designed = edit[b, perm]
        ctx = torch.nonzero(~designed).flatten()
        if len(ctx) < MIN_CONTEXT:
            if keep_true_if_few_context:
                continue
            label = names[b] if names else f"complex {b}"
            raise InputError(
                f"{label}: only {len(ctx)} context residue(s) next to {int(designed.sum())} designed ones; "
                f"interpolation needs at least {MIN_CONTEXT}"
            )
        k = torch.nonzero(designed).flatten()
        if len(k) == 0:
            continue
        bp = backbone[b, perm]
        f0, f1, e0, e1 = ctx[0], ctx[1], ctx[-2], ctx[-1]
        # nearest context residue before / after each designed residue
        pos = torch.searchsorted(ctx, k)
        prev = ctx[(pos - 1).clamp(min=0)]
        nxt = ctx[pos.clamp(max=len(ctx) - 1)]
        before = (k - f0) / (f0 - f1)
        after = (k - e1) / (e1 - e0)
        w_prev, w_next, span = (k - prev).float(), (nxt - k).float(), (nxt - prev).float()
        inner = (w_prev[:, None, None] * bp[nxt] + w_next[:, None, None] * bp[prev]) / span[:, None, None]
        front = bp[f0] + before[:, None, None] * (bp[f0] - bp[f1])
        back = bp[e1] + after[:, None, None] * (bp[e1] - bp[e0])
        value = torch.where((k < f0)[:, None, None], front, torch.where((k > e1)[:, None, None], back, inner))
        out[b, perm[k]] = value
    return out


def initial_backbone(batch: PocketBatch, config: FairConfig) -> torch.Tensor:
    """The starting backbone ``[B, R, 4, 3]`` of ``batch``'s designed residues, as ``config`` says.

    ``residue_graph="native"`` (or ``interpolation_order="file"``) interpolates in file order, as
    the released code does; otherwise in chain order (:attr:`PocketBatch.chain_order`). In
    native mode a complex with fewer than 3 context residues keeps its true backbone.
    """
    native = config.residue_graph == "native"
    order = None if native or config.interpolation_order == "file" else batch.chain_order
    return interpolate_backbone(batch.positions[:, :, :4], batch.designed & batch.res_mask, batch.res_mask,
                                batch.names, keep_true_if_few_context=native, order=order)
