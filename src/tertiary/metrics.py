"""Evaluation metrics: structure (RMSD, lDDT, TM-score, GDT), sequence (AAR), function (Fmax, AUPR).

Structure metrics accept numpy arrays or torch tensors (computed in float64, no gradient):

* ``[N, 3]`` one point per residue (usually CA) with an optional ``[N]`` mask, or
* ``[N, A, 3]`` atoms per residue (atom37 ``A = 37`` or atom14 ``A = 14``) with an optional
  ``[N, A]`` mask; TM-score and GDT use the CA atom (index 1 in both orders),
* a leading batch dimension (``[B, N, 3]`` / ``[B, N, A, 3]``) gives one value per item.

A 3-D input is read as one all-atom structure when its second axis is 14 or 37 and as a batch of
CA traces otherwise; pass ``batched=True/False`` to say which. Single inputs return a ``float``,
batched inputs a float64 ``np.ndarray`` ``[B]``. Missing atoms are given by the mask; their
coordinates are ignored (they may be NaN). Inconsistent shapes or empty masks raise
:class:`tertiary.errors.InputError`.

TM-score and GDT follow the TM-score program (Zhang & Skolnick 2004) for a known residue
correspondence: ``d0 = 1.24 (L - 15)^(1/3) - 1.8`` (0.5 when ``L <= 21``) with ``L`` the number of
reference residues, and the optimal superposition is searched by Kabsch fits on fragments of
``L, L/2, L/4, ...`` (down to 4) residues at every start position, each refined iteratively on the
residues that lie close after the fit (see :func:`tm_score`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from tertiary.errors import InputError
from tertiary.geometry.superposition import as_tensor, kabsch

__all__ = [
    "aar",
    "aupr",
    "fmax",
    "gdt_ha",
    "gdt_ts",
    "lddt",
    "lddt_scores",
    "rmsd",
    "tm_score",
]

_CA = 1  # CA is atom 1 in both atom37 and atom14 orders
_ATOM_AXES = (14, 37)

_F = TypeVar("_F", bound=Callable[..., Any])


def _single_threaded(fn: _F) -> _F:
    """Run ``fn`` with one intra-op torch thread (restored afterwards).

    The metrics are long sequences of tiny tensor ops (3x3 SVDs, [S, N] distances); extra
    threads only add synchronisation, which costs 10-30x on a loaded machine.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = torch.get_num_threads()
        if before == 1:
            return fn(*args, **kwargs)
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------


def _prepare(
    name: str,
    pred: torch.Tensor | np.ndarray,
    ref: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None,
    batched: bool | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool, bool]:
    """Coerce to float64 ``[B, N, A, 3]`` positions and a bool ``[B, N, A]`` mask.

    Returns ``(pred, ref, mask, batched, per_residue)`` where ``per_residue`` is True for
    ``[N, 3]``-style inputs (then ``A == 1``).
    """
    p = as_tensor(pred, f"{name}: pred", torch.float64).detach().cpu()
    r = as_tensor(ref, f"{name}: ref", torch.float64).detach().cpu()
    if p.shape != r.shape:
        raise InputError(f"{name}: pred {tuple(p.shape)} and ref {tuple(r.shape)} shapes differ")
    if p.ndim < 2 or p.ndim > 4 or p.shape[-1] != 3:
        raise InputError(f"{name}: expected [N, 3], [N, A, 3] or a batch of them, got {tuple(p.shape)}")
    if batched is None:
        batched = p.ndim == 4 or (p.ndim == 3 and p.shape[-2] not in _ATOM_AXES)
    if batched and p.ndim == 2:
        raise InputError(f"{name}: batched input needs [B, N, 3] or [B, N, A, 3], got {tuple(p.shape)}")
    if not batched and p.ndim == 4:
        raise InputError(f"{name}: [B, N, A, 3] input is batched; got batched=False")
    per_residue = p.ndim - int(batched) == 2
    if not batched:
        p, r = p[None], r[None]
    if per_residue:
        p, r = p[..., None, :], r[..., None, :]
    if mask is None:
        m = torch.ones(p.shape[:-1], dtype=torch.bool)
    else:
        m = as_tensor(mask, f"{name}: mask").detach().cpu()
        if not batched:
            m = m[None]
        if per_residue:
            m = m[..., None]
        if m.shape != p.shape[:-1]:
            raise InputError(
                f"{name}: mask shape {tuple(as_tensor(mask, 'mask').shape)} does not match positions"
                f" {tuple(pred.shape) if hasattr(pred, 'shape') else '?'}"
            )
        m = m != 0
    finite = torch.isfinite(p).all(-1) & torch.isfinite(r).all(-1)
    if bool((m & ~finite).any()):
        raise InputError(f"{name}: non-finite coordinates at positions the mask marks as present")
    if p.shape[1] == 0:
        raise InputError(f"{name}: structures have no residues")
    for b in range(m.shape[0]):
        if not bool(m[b].any()):
            raise InputError(f"{name}: item {b} has an empty mask (no atom to compare)")
    p = torch.where(m[..., None], p, torch.zeros_like(p))
    r = torch.where(m[..., None], r, torch.zeros_like(r))
    return p, r, m, batched, per_residue


def _ca(p: torch.Tensor, m: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """CA trace ``[B, N, 3]`` and mask ``[B, N]`` of prepared ``[B, N, A, 3]`` inputs."""
    if p.shape[2] == 1:
        return p[:, :, 0], m[:, :, 0]
    if p.shape[2] not in _ATOM_AXES:
        raise InputError(f"{name}: atom axis of size {p.shape[2]} is neither atom14 nor atom37")
    return p[:, :, _CA], m[:, :, _CA]


def _out(values: list[float], batched: bool) -> float | np.ndarray:
    return np.asarray(values, dtype=np.float64) if batched else float(values[0])


# ----------------------------------------------------------------------------------------------
# RMSD
# ----------------------------------------------------------------------------------------------


@_single_threaded
def rmsd(
    pred: torch.Tensor | np.ndarray,
    ref: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    superpose: bool = True,
    *,
    batched: bool | None = None,
) -> float | np.ndarray:
    """Root-mean-square deviation (Angstrom) over the masked atoms.

    Args:
        pred, ref: ``[N, 3]`` or ``[N, A, 3]`` (optionally with a leading batch axis).
        mask: ``[N]`` / ``[N, A]`` (non-zero = present); None = every atom.
        superpose: first superpose ``pred`` onto ``ref`` optimally (Kabsch on the same atoms).
        batched: see the module docstring.
    """
    p, r, m, batched, _ = _prepare("rmsd", pred, ref, mask, batched)
    p, r, m = p.flatten(1, 2), r.flatten(1, 2), m.flatten(1, 2)
    w = m.to(torch.float64)
    if superpose:
        values = kabsch(p, r, w).rmsd
    else:
        values = torch.sqrt((w * ((p - r) ** 2).sum(-1)).sum(-1) / w.sum(-1))
    return _out(values.tolist(), batched)


# ----------------------------------------------------------------------------------------------
# lDDT
# ----------------------------------------------------------------------------------------------

LDDT_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)


def lddt_scores(
    pred: torch.Tensor,
    ref: torch.Tensor,
    mask: torch.Tensor,
    group: torch.Tensor | None = None,
    cutoff: float = 15.0,
    thresholds: Sequence[float] = LDDT_THRESHOLDS,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point lDDT numerator and pair count (AlphaFold2's lDDT, differentiable in ``pred``).

    A pair ``(i, j)``, ``i != j``, both present, is scored when the reference distance is below
    ``cutoff``; its score is the fraction of ``thresholds`` that ``|d_pred - d_ref|`` stays
    under. Pairs of points with the same ``group`` id (atoms of one residue) are not scored.

    Args:
        pred, ref: ``[*, M, 3]`` (Angstrom).
        mask: ``[*, M]`` bool or 0/1.
        group: ``[*, M]`` integer ids or None.
        cutoff: inclusion radius in the reference (Angstrom).
        thresholds: distance-difference thresholds (Angstrom).
        chunk_size: rows of the distance matrix handled at a time (bounds memory to
            ``chunk_size * M``); None = all.

    Returns:
        ``(score_sum [*, M], pair_count [*, M])``: the summed pair scores and the number of
        scored pairs of each point. Global lDDT = ``score_sum.sum() / pair_count.sum()``;
        per-point lDDT = ``score_sum / pair_count``.
    """
    mask = mask.to(pred.dtype)
    m_total = pred.shape[-2]
    step = m_total if chunk_size is None else max(1, int(chunk_size))
    sums, counts = [], []
    idx = torch.arange(m_total, device=pred.device)
    for s in range(0, m_total, step):
        e = min(s + step, m_total)
        d_ref = torch.cdist(ref[..., s:e, :], ref)
        d_pred = torch.sqrt(((pred[..., s:e, None, :] - pred[..., None, :, :]) ** 2).sum(-1) + 1e-10)
        keep = (d_ref < cutoff).to(pred.dtype) * mask[..., s:e, None] * mask[..., None, :]
        keep = keep * (idx[s:e, None] != idx[None, :]).to(pred.dtype)
        if group is not None:
            keep = keep * (group[..., s:e, None] != group[..., None, :]).to(pred.dtype)
        diff = (d_pred - d_ref).abs()
        score = sum((diff < t).to(pred.dtype) for t in thresholds) / len(thresholds)
        sums.append((keep * score).sum(-1))
        counts.append(keep.sum(-1))
    return torch.cat(sums, -1), torch.cat(counts, -1)


@_single_threaded
def lddt(
    pred: torch.Tensor | np.ndarray,
    ref: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    *,
    cutoff: float = 15.0,
    per_residue: bool = False,
    chunk_size: int | None = 512,
    batched: bool | None = None,
) -> float | np.ndarray:
    """lDDT (AlphaFold2 definition) in [0, 1].

    ``[N, 3]`` inputs give the CA lDDT (all residue pairs, as AlphaFold's pLDDT target);
    ``[N, A, 3]`` inputs give the all-atom lDDT over atom pairs of *different* residues (as in
    the original lDDT, Mariani et al. 2013). Pairs are selected by the reference distance
    (< ``cutoff`` Angstrom); the score of a pair is the fraction of the thresholds 0.5, 1, 2, 4 A
    that the distance difference stays under. The global value is the mean over all scored
    pairs (AlphaFold's ``per_residue=False``).

    Args:
        per_residue: return the per-residue values ``[N]`` (``[B, N]`` batched) instead: the mean
            over the pairs of a residue's atoms; residues without any scored pair get NaN.
        chunk_size: rows of the distance matrix per step (memory ~ ``chunk_size * N * A``).

    Raises:
        InputError: bad shapes, empty masks, or no pair within ``cutoff`` at all.
    """
    p, r, m, batched, is_ca = _prepare("lddt", pred, ref, mask, batched)
    n_res, n_atom = p.shape[1], p.shape[2]
    residue = torch.arange(n_res)[:, None].expand(n_res, n_atom).reshape(-1)
    values: list = []
    for b in range(p.shape[0]):
        present = m[b].reshape(-1).nonzero()[:, 0]  # only present atoms enter the pair matrix
        num, cnt = lddt_scores(
            p[b].reshape(-1, 3)[present],
            r[b].reshape(-1, 3)[present],
            torch.ones(len(present), dtype=torch.bool),
            group=None if is_ca else residue[present],
            cutoff=cutoff,
            chunk_size=chunk_size,
        )
        if per_residue:
            num_r = torch.zeros(n_res, dtype=num.dtype).index_add_(0, residue[present], num)
            cnt_r = torch.zeros(n_res, dtype=cnt.dtype).index_add_(0, residue[present], cnt)
            values.append(torch.where(cnt_r > 0, num_r / cnt_r.clamp_min(1), torch.nan).numpy())
            continue
        if float(cnt.sum()) == 0:
            raise InputError(f"lddt: item {b} has no atom pair within {cutoff} A in the reference")
        values.append(float(num.sum() / cnt.sum()))
    if per_residue:
        return np.stack(values) if batched else values[0]
    return _out(values, batched)


# ----------------------------------------------------------------------------------------------
# TM-score / GDT: superposition search of the TM-score program
# ----------------------------------------------------------------------------------------------


def tm_d0(length: int) -> float:
    """TM-score distance scale d0 (Angstrom) for a reference of ``length`` residues."""
    if length <= 21:
        return 0.5
    return max(0.5, 1.24 * (length - 15) ** (1.0 / 3.0) - 1.8)


def _fragment_lengths(n: int, n_init_max: int = 6, l_min: int = 4) -> list[int]:
    """Initial fragment lengths of the TM-score program: n, n/2, n/4, ... down to ``l_min``."""
    l_min = min(n, l_min)
    lengths = []
    for i in range(n_init_max - 1):
        length = n // (2**i)
        if length <= l_min:
            lengths.append(l_min)
            return lengths
        lengths.append(length)
    lengths.append(l_min)
    return lengths


def _selection(dist: torch.Tensor, d: float) -> torch.Tensor:
    """Residues closer than ``d``; ``d`` grows by 0.5 A until at least 3 are selected."""
    n = dist.shape[-1]
    if n <= 3:
        return dist < d if n < 3 else torch.ones_like(dist, dtype=torch.bool)
    third = dist.kthvalue(3, dim=-1).values  # 3rd smallest distance
    steps = torch.where(third >= d, torch.floor((third - d) / 0.5) + 1, torch.zeros_like(third))
    return dist < (d + 0.5 * steps)[..., None]


def _search(
    x: torch.Tensor,
    y: torch.Tensor,
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    d_first: float,
    d_iter: float,
    n_iter: int = 20,
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Maximise ``score_fn(|R x + t - y|)`` over superpositions (TM-score program search).

    For every fragment length and start, Kabsch-fit the fragment, then repeatedly re-fit on the
    residues within ``d_first`` (first round) / ``d_iter`` (later rounds) until the selection is
    stable or ``n_iter`` rounds are done; keep the best score seen.

    Args:
        x, y: ``[n, 3]`` float64 corresponding points (mobile, reference).
        score_fn: ``[S, n]`` distances -> ``[S]`` scores.

    Returns:
        ``(best_score, rotation [3, 3], translation [3])``.
    """
    n = x.shape[0]
    best = -1.0
    best_rt = (torch.eye(3, dtype=x.dtype), torch.zeros(3, dtype=x.dtype))
    for length in sorted(set(_fragment_lengths(n)), reverse=True):
        starts = torch.arange(n - length + 1)
        pos = torch.arange(n)
        sel = (pos[None] >= starts[:, None]) & (pos[None] < starts[:, None] + length)
        xs = x.expand(len(starts), n, 3)
        ys = y.expand(len(starts), n, 3)
        active = torch.ones(len(starts), dtype=torch.bool)
        for it in range(n_iter + 1):
            idx = active.nonzero()[:, 0]
            fit = kabsch(xs[idx], ys[idx], sel[idx].to(x.dtype))
            dist = (fit.superposed - ys[idx]).norm(dim=-1)
            scores = score_fn(dist)
            top = int(scores.argmax())
            if float(scores[top]) > best:
                best = float(scores[top])
                best_rt = (fit.rotation[top], fit.translation[top])
            new_sel = _selection(dist, d_first if it == 0 else d_iter)
            if it > 0:
                active[idx[(new_sel == sel[idx]).all(-1)]] = False
            sel[idx] = new_sel
            if not bool(active.any()):
                break
    return best, best_rt[0], best_rt[1]


def _pairs_ca(
    name: str, pred, ref, mask, batched
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], bool]:
    p, r, m, batched, _ = _prepare(name, pred, ref, mask, batched)
    p, m_ca = _ca(p, m, name)
    r, _ = _ca(r, m, name)
    items = []
    for b in range(p.shape[0]):
        keep = m_ca[b]
        if not bool(keep.any()):
            raise InputError(f"{name}: item {b} has no CA atom in the mask")
        items.append((p[b][keep], r[b][keep]))
    return items, batched


@_single_threaded
def tm_score(
    pred: torch.Tensor | np.ndarray,
    ref: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    *,
    superpose: bool = True,
    ref_length: int | None = None,
    batched: bool | None = None,
) -> float | np.ndarray:
    """TM-score of ``pred`` against ``ref`` for a known residue correspondence (CA atoms).

    ``TM = max_{R,t} 1/L sum_i 1 / (1 + (d_i / d0(L))^2)`` over the masked residues, ``L`` =
    ``ref_length`` or the number of masked reference residues. With ``superpose=True`` the maximum
    is searched as the TM-score program does (fragments of L, L/2, ... >= 4 residues at every
    start, iterative re-fitting on residues within ``d0_search -/+ 1``, ``d0_search = clip(d0,
    4.5, 8)``, at most 20 rounds); ``superpose=False`` scores the coordinates as given.
    """
    items, batched = _pairs_ca("tm_score", pred, ref, mask, batched)
    values = []
    for x, y in items:
        length = ref_length if ref_length is not None else x.shape[0]
        if length < x.shape[0]:
            raise InputError(f"tm_score: ref_length {length} < {x.shape[0]} compared residues")
        d0 = tm_d0(length)

        def score_fn(dist: torch.Tensor, d0: float = d0, length: int = length) -> torch.Tensor:
            return (1.0 / (1.0 + (dist / d0) ** 2)).sum(-1) / length

        if not superpose:
            values.append(float(score_fn((x - y).norm(dim=-1))))
            continue
        d0_search = min(max(d0, 4.5), 8.0)
        values.append(_search(x, y, score_fn, d0_search - 1.0, d0_search + 1.0)[0])
    return _out(values, batched)


@_single_threaded
def _gdt(
    name: str, cutoffs: Sequence[float], pred, ref, mask, ref_length, batched
) -> float | np.ndarray:
    items, batched = _pairs_ca(name, pred, ref, mask, batched)
    values = []
    for x, y in items:
        length = ref_length if ref_length is not None else x.shape[0]
        fractions = []
        for c in cutoffs:

            def score_fn(dist: torch.Tensor, c: float = c, length: int = length) -> torch.Tensor:
                return (dist <= c).to(dist.dtype).sum(-1) / length

            fractions.append(_search(x, y, score_fn, c, c)[0])
        values.append(sum(fractions) / len(fractions))
    return _out(values, batched)


def gdt_ts(
    pred: torch.Tensor | np.ndarray,
    ref: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    *,
    ref_length: int | None = None,
    batched: bool | None = None,
) -> float | np.ndarray:
    """GDT-TS in [0, 1] (x100 for CASP's percent): mean over cutoffs 1, 2, 4, 8 A of the largest
    fraction of CA atoms within the cutoff over superpositions (searched as for
    :func:`tm_score`, re-fitting on the atoms within the cutoff)."""
    return _gdt("gdt_ts", (1.0, 2.0, 4.0, 8.0), pred, ref, mask, ref_length, batched)


def gdt_ha(
    pred: torch.Tensor | np.ndarray,
    ref: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    *,
    ref_length: int | None = None,
    batched: bool | None = None,
) -> float | np.ndarray:
    """GDT-HA in [0, 1]: as :func:`gdt_ts` with cutoffs 0.5, 1, 2, 4 A."""
    return _gdt("gdt_ha", (0.5, 1.0, 2.0, 4.0), pred, ref, mask, ref_length, batched)


# ----------------------------------------------------------------------------------------------
# Sequence recovery
# ----------------------------------------------------------------------------------------------


def _tokens(x, name: str) -> torch.Tensor:
    if isinstance(x, str):
        return torch.tensor([ord(c) for c in x.upper()], dtype=torch.int64)
    if isinstance(x, (list, tuple)) and x and all(isinstance(s, str) for s in x):
        if len({len(s) for s in x}) != 1:
            raise InputError(f"aar: {name} sequences have different lengths")
        return torch.stack([_tokens(s, name) for s in x])
    t = as_tensor(x, f"aar: {name}")
    if t.is_floating_point():
        if not bool((t == t.round()).all()):
            raise InputError(f"aar: {name} must hold integer residue types")
        t = t.round()
    return t.to(torch.int64)


def aar(
    pred: str | Sequence[str] | torch.Tensor | np.ndarray,
    ref: str | Sequence[str] | torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
) -> float | np.ndarray:
    """Amino-acid recovery: fraction of (masked) positions where ``pred`` equals ``ref``.

    Args:
        pred, ref: sequences (``str``, list of equal-length ``str``) or integer residue types
            ``[N]`` / ``[B, N]``.
        mask: ``[N]`` / ``[B, N]`` positions to count (e.g. the designed residues).

    Returns:
        float for one sequence, ``np.ndarray [B]`` for a batch.
    """
    p, r = _tokens(pred, "pred"), _tokens(ref, "ref")
    if p.shape != r.shape or p.ndim not in (1, 2):
        raise InputError(f"aar: pred {tuple(p.shape)} and ref {tuple(r.shape)} must be equal [N] or [B, N]")
    m = torch.ones_like(p, dtype=torch.bool) if mask is None else as_tensor(mask, "aar: mask") != 0
    if m.shape != p.shape:
        raise InputError(f"aar: mask {tuple(m.shape)} does not match sequences {tuple(p.shape)}")
    count = m.sum(-1)
    if bool((count == 0).any()):
        raise InputError("aar: empty mask (no position to compare)")
    values = ((p == r) & m).sum(-1).to(torch.float64) / count
    return values.numpy().astype(np.float64) if p.ndim == 2 else float(values)


# ----------------------------------------------------------------------------------------------
# Multi-label function prediction
# ----------------------------------------------------------------------------------------------


def _scores_labels(name: str, scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = as_tensor(scores, f"{name}: scores").detach().cpu().to(torch.float64).numpy()
    y = as_tensor(labels, f"{name}: labels").detach().cpu().numpy()
    if s.shape != y.shape or s.ndim != 2:
        raise InputError(f"{name}: scores {s.shape} and labels {y.shape} must both be [P, T]")
    if not np.isfinite(s).all():
        raise InputError(f"{name}: scores contain NaN or inf")
    if not np.isin(y, (0, 1)).all():
        raise InputError(f"{name}: labels must be 0/1")
    return s, y.astype(bool)


def fmax(
    scores: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    thresholds: Sequence[float] | np.ndarray | None = None,
    *,
    skip_unlabeled: bool = True,
) -> float:
    """Protein-centric maximum F-score (CAFA Fmax) for multi-label predictions.

    At threshold ``t`` a protein predicts the terms with ``score >= t``. Precision is averaged over
    the proteins that predict at least one term, recall over all (evaluated) proteins;
    ``F(t) = 2 P R / (P + R)`` and ``Fmax = max_t F(t)``.

    Args:
        scores: ``[P, T]`` per-protein, per-term scores.
        labels: ``[P, T]`` 0/1 annotations.
        thresholds: thresholds to try; None = every distinct score (the exact maximum). CAFA /
            DeepFRI use ``np.linspace(0, 1, 101)``.
        skip_unlabeled: leave proteins without any positive label out (CAFA). False counts them
            with recall 0 and with their precision (TorchDrug's ``f1_max``, which GearNet uses).

    Returns:
        Fmax in [0, 1].
    """
    s, y = _scores_labels("fmax", scores, labels)
    if skip_unlabeled:
        keep = y.any(1)
        s, y = s[keep], y[keep]
    if s.shape[0] == 0 or not y.any():
        raise InputError("fmax: no protein with a positive label")
    n_prot = s.shape[0]
    n_true = y.sum(1)
    recall_den = np.maximum(n_true, 1)
    if thresholds is not None:
        t = np.asarray(thresholds, dtype=np.float64)
        pred = s[None] >= t[:, None, None]  # [K, P, T]
        n_pred = pred.sum(-1)
        tp = (pred & y[None]).sum(-1)
        covered = n_pred > 0
        prec = np.where(covered, tp / np.maximum(n_pred, 1), 0.0).sum(1) / np.maximum(covered.sum(1), 1)
        rec = (tp / recall_den).sum(1) / n_prot
    else:
        # Exact: visit every (protein, term) in decreasing score; per-protein precision/recall
        # change by a known delta when an entry switches on. Evaluate at ends of tie groups.
        order_p = np.argsort(-s, axis=1, kind="stable")
        y_sorted = np.take_along_axis(y, order_p, axis=1).astype(np.float64)
        s_sorted = np.take_along_axis(s, order_p, axis=1)
        k = np.arange(1, s.shape[1] + 1, dtype=np.float64)
        tp = np.cumsum(y_sorted, axis=1)
        prec_k = tp / k
        d_prec = np.diff(prec_k, axis=1, prepend=0.0)
        d_cov = np.zeros_like(prec_k)
        d_cov[:, 0] = 1.0
        d_rec = y_sorted / recall_den[:, None]
        flat_s = s_sorted.ravel()
        g = np.argsort(-flat_s, kind="stable")
        flat_s = flat_s[g]
        prec_sum = np.cumsum(d_prec.ravel()[g])
        covered = np.cumsum(d_cov.ravel()[g])
        rec = np.cumsum(d_rec.ravel()[g]) / n_prot
        end = np.append(flat_s[1:] != flat_s[:-1], True)
        prec = prec_sum[end] / covered[end]
        rec = rec[end]
    f = np.where(prec + rec > 0, 2 * prec * rec / np.where(prec + rec > 0, prec + rec, 1.0), 0.0)
    return float(f.max())


def aupr(scores: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Micro-averaged area under the precision-recall curve (average precision).

    All ``(protein, term)`` pairs are pooled and ranked by score; ``AP = sum_k (R_k - R_{k-1})
    P_k`` over the distinct score thresholds (ties form one step). Without ties this equals
    TorchDrug's ``area_under_prc`` on the flattened arrays.

    Args:
        scores, labels: ``[P, T]`` (or ``[M]``) scores and 0/1 labels.
    """
    s, y = (scores, labels)
    if np.ndim(s) == 1:
        s = as_tensor(s, "aupr: scores")[None]
        y = as_tensor(y, "aupr: labels")[None]
    s, y = _scores_labels("aupr", s, y)
    s, y = s.ravel(), y.ravel()
    n_pos = int(y.sum())
    if n_pos == 0:
        raise InputError("aupr: no positive label")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    n = np.arange(1, len(y) + 1)
    end = np.append(s[1:] != s[:-1], True)
    tp, n = tp[end], n[end]
    d_rec = np.diff(tp, prepend=0) / n_pos
    return float((d_rec * tp / n).sum())
