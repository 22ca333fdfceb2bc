"""The numba kernels behind :mod:`tertiary.nn.fused_cpu` (imported by it once numba is known to
import). They live at module level so that numba's disk cache holds them, calls from one
kernel to another included (kernels built inside factory functions that call each other were
compiled again in every process). ``exp`` and ``softplus`` are written out as polynomials
because numba calls the scalar C ``expf`` / ``log1pf`` per element (it has no vector math
library here), which costs more than the arithmetic around them.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np


def _jit(exact: bool = False, inline: bool = False) -> Any:
    """numba's ``njit`` with an on-disk cache; ``exact``: IEEE float arithmetic as written (no
    reassociation or fused multiply-add), for results that must equal PyTorch's to the bit;
    ``inline``: compiled into each caller (small helpers called per element)."""
    # reassociation for vectorised dot products, but no "no infinities" assumption: -inf marks
    # missing edges
    options = {"fastmath": {"reassoc", "contract", "nsz", "arcp"}, "error_model": "numpy", "nogil": True}
    if exact:
        options["fastmath"] = False
    if inline:
        options["inline"] = "always"

    def decorate(fn: Any) -> Any:
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # no writable cache location: compile in every process
            return numba.njit(**options)(fn)

    return decorate


@_jit(exact=True, inline=True)
def _knn_insert(d, j, best, row, filled):  # pragma: no cover
    """Offer candidate ``j`` at squared distance ``d`` to the sorted ``best`` / ``row`` (``filled``
    of them used); order by (distance, index), so the result does not depend on the order in
    which candidates are offered. Returns the new fill count."""
    kk = best.shape[0]
    if filled == kk and not (d < best[kk - 1] or (d == best[kk - 1] and j < row[kk - 1])):
        return filled
    slot = filled if filled < kk else kk - 1
    while slot > 0 and (d < best[slot - 1] or (d == best[slot - 1] and j < row[slot - 1])):
        best[slot] = best[slot - 1]
        row[slot] = row[slot - 1]
        slot -= 1
    best[slot] = d
    row[slot] = j
    return min(kk, filled + 1)


@_jit(exact=True)
def knn(coords, mask, hint, index, finite):  # pragma: no cover
    """``index`` / ``finite [B, N, k]``: the k nearest of each node (see :func:`tertiary.nn.fused_cpu.knn`).

    Candidates likely to be near go first: ``hint [B, N, h]`` (e.g. the neighbours of the
    previous call; ``h = 0``: none), else the nodes near ``i`` in index order (atoms of
    neighbouring residues). The rest follows in blocks of 16, skipped unless one of them is at
    most the current k-th distance (a vectorised count), so few candidates reach the insertion;
    the insertion orders by (distance, index), so the offer order does not change the result.
    """
    n_batch, n, kk = index.shape
    best = np.empty(kk, np.float32)
    d2 = np.empty(n, np.float32)
    valid = np.empty(n, np.bool_)
    offered = np.full(n, -1, np.int64)  # stamp b * n + i: offered to node i of complex b
    inf = np.float32(np.inf)
    block = 16
    for b in range(n_batch):
        x, y, z = coords[b, 0], coords[b, 1], coords[b, 2]
        for i in range(n):
            for j in range(n):
                valid[j] = mask[b, i] and mask[b, j]
            xi, yi, zi = x[i], y[i], z[i]
            for j in range(n):  # the same float32 operations in the same order as the PyTorch path
                d = (xi - x[j]) * (xi - x[j])
                d += (yi - y[j]) * (yi - y[j])
                d += (zi - z[j]) * (zi - z[j])
                d2[j] = d if valid[j] else inf  # branch-free: the loop vectorises
            d2[i] = inf
            row = index[b, i]
            stamp = b * n + i
            filled = 0
            if hint.shape[2] > 0:
                for s in range(hint.shape[2]):
                    j = hint[b, i, s]
                    if 0 <= j < n and offered[j] != stamp:
                        offered[j] = stamp
                        filled = _knn_insert(d2[j], j, best, row, filled)
            else:
                for j in range(max(0, i - kk), min(n, i + kk + 1)):
                    offered[j] = stamp
                    filled = _knn_insert(d2[j], j, best, row, filled)
            for start in range(0, n, block):
                stop = min(n, start + block)
                if filled == kk:
                    worst = best[kk - 1]
                    count = 0
                    for j in range(start, stop):
                        count += d2[j] <= worst
                    if count == 0:
                        continue
                for j in range(start, stop):
                    if offered[j] != stamp:
                        filled = _knn_insert(d2[j], j, best, row, filled)
            for s in range(kk):
                finite[b, i, s] = best[s] < inf


@_jit(exact=True)
def residue_messages(x, centres, neighbours, valid, edit, learned, has_learned, floor_distance, eps, max_step,
                     slot_scale, out):  # pragma: no cover
    """One residue-residue message pass (see
    :func:`tertiary.models.fair.coordinate_updates.residue_messages`): ``out[b, i, s]`` is
    ``x[b, i, s]`` plus, for designed residues, the clamped mean over valid neighbours ``j`` of
    ``(x_is - c_j) / d * max(learned, floor - d)`` (``max(0, floor - d)`` without ``learned``),
    ``d = |x_is - c_j| + eps``, ``c_j`` the neighbour's slot ``s`` (or its only centre)."""
    n_batch, n_res, n_slots, _ = x.shape
    kk = neighbours.shape[2]
    per_slot = centres.shape[2] == n_slots
    for b in range(n_batch):
        for i in range(n_res):
            out[b, i] = x[b, i]
            if not edit[b, i]:
                continue
            count = 0
            for k in range(kk):
                count += valid[b, i, k]
            denominator = np.float32(max(count, 1))
            for s in range(n_slots):
                sx, sy, sz = np.float32(0.0), np.float32(0.0), np.float32(0.0)
                for k in range(kk):
                    if not valid[b, i, k]:
                        continue
                    j = neighbours[b, i, k]
                    c = s if per_slot else 0
                    dx = x[b, i, s, 0] - centres[b, j, c, 0]
                    dy = x[b, i, s, 1] - centres[b, j, c, 1]
                    dz = x[b, i, s, 2] - centres[b, j, c, 2]
                    d = np.sqrt(dx * dx + dy * dy + dz * dz) + eps
                    f = floor_distance - d
                    f = max(learned[b, i, k, s], f) if has_learned else max(f, np.float32(0.0))
                    sx += dx / d * f
                    sy += dy / d * f
                    sz += dz / d * f
                scale = slot_scale[s]
                out[b, i, s, 0] += min(max(sx / denominator * scale, -max_step), max_step)
                out[b, i, s, 1] += min(max(sy / denominator * scale, -max_step), max_step)
                out[b, i, s, 2] += min(max(sz / denominator * scale, -max_step), max_step)


@_jit(exact=True)
def first_use(keys, previous, index, distinct, source):  # pragma: no cover
    """Hash-table bookkeeping of :func:`tertiary.nn.fused_cpu.first_use_rows`; returns the count."""
    size = 16
    while size < 2 * (len(keys) + len(previous)):
        size *= 2
    shift = np.uint64(64 - int(np.log2(size)))
    mult = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing
    slot_key = np.empty(size, keys.dtype)
    used = np.zeros(size, np.bool_)
    slot_row = np.full(size, -1, np.int64)  # row in this call
    slot_prev = np.full(size, -1, np.int64)  # row in ``previous``
    for r in range(len(previous)):
        h = (np.uint64(previous[r]) * mult) >> shift
        while used[h] and slot_key[h] != previous[r]:
            h = (h + np.uint64(1)) & np.uint64(size - 1)
        used[h], slot_key[h], slot_prev[h] = True, previous[r], r
    count = 0
    for e in range(len(keys)):
        h = (np.uint64(keys[e]) * mult) >> shift
        while used[h] and slot_key[h] != keys[e]:
            h = (h + np.uint64(1)) & np.uint64(size - 1)
        if not used[h]:
            used[h], slot_key[h] = True, keys[e]
        if slot_row[h] < 0:
            slot_row[h] = count
            distinct[count] = keys[e]
            source[count] = slot_prev[h]
            count += 1
        index[e] = slot_row[h]
    return count


# exp(y) = 2^n * exp(r), r = y - n ln 2 (|r| <= ln 2 / 2) by Cody-Waite: ln 2 in two parts, the
# first with trailing zero bits so that n * _LN2_HI is exact for |n| < 2^9
_LOG2E, _LN2_HI, _LN2_LO = 1.4426950408889634, 0.693145751953125, 1.428606765330187e-06
_EXP_FLOOR = -87.0  # exp(-87) = 1.6e-38, the smallest normal float32 is 1.2e-38
SOFTPLUS_THRESHOLD = 20.0  # softplus(x) = x above it (as torch.nn.functional.softplus)


@_jit(exact=True)
def exp_nonpositive(y, mantissa, exponent_bits):  # pragma: no cover
    """``exp(y)`` for ``y <= 0`` (floored at ``exp(-87)``) as ``mantissa * 2^n``, ``2^n`` given as
    the bits of a float32 (two outputs, so that this loop has no bit reinterpretation and
    vectorises): a degree-7 Taylor polynomial of ``exp(r)``, within 2 float32 ulp."""
    for i in range(y.shape[0]):
        v = max(y[i], np.float32(_EXP_FLOOR))
        n = np.int32(v * np.float32(_LOG2E) - np.float32(0.5))  # rounds to nearest (v <= 0)
        nf = np.float32(n)
        r = (v - nf * np.float32(_LN2_HI)) - nf * np.float32(_LN2_LO)
        p = np.float32(1.0 / 5040.0)
        p = p * r + np.float32(1.0 / 720.0)
        p = p * r + np.float32(1.0 / 120.0)
        p = p * r + np.float32(1.0 / 24.0)
        p = p * r + np.float32(1.0 / 6.0)
        p = p * r + np.float32(0.5)
        p = p * r + np.float32(1.0)
        mantissa[i] = p * r + np.float32(1.0)
        exponent_bits[i] = (n + np.int32(127)) << np.int32(23)


@_jit(exact=True)
def softplus_finish(x, mantissa, scale):  # pragma: no cover
    """``x <- max(x, 0) + log1p(t)``, ``t = mantissa * scale = exp(-|x|)``; ``log1p(t) =
    2 atanh(u)``, ``u = t / (2 + t) <= 1/3``, by its odd series to ``u^15``."""
    for i in range(x.shape[0]):
        t = mantissa[i] * scale[i]
        u = t / (np.float32(2.0) + t)
        u2 = u * u
        q = np.float32(1.0 / 15.0)
        q = q * u2 + np.float32(1.0 / 13.0)
        q = q * u2 + np.float32(1.0 / 11.0)
        q = q * u2 + np.float32(1.0 / 9.0)
        q = q * u2 + np.float32(1.0 / 7.0)
        q = q * u2 + np.float32(1.0 / 5.0)
        q = q * u2 + np.float32(1.0 / 3.0)
        q = q * u2 + np.float32(1.0)
        v = x[i]
        soft = max(v, np.float32(0.0)) + np.float32(2.0) * u * q
        x[i] = soft if v <= np.float32(SOFTPLUS_THRESHOLD) else v  # NaN stays NaN


@_jit(exact=True)
def softplus(x, mantissa, exponent_bits):  # pragma: no cover
    """``x <- softplus(x)`` in place, ``x`` flat; ``mantissa`` / ``exponent_bits``: scratch of one
    block."""
    scale = exponent_bits.view(np.float32)
    block = mantissa.shape[0]
    for start in range(0, x.shape[0], block):  # blocks that stay in the L1 cache
        m = min(block, x.shape[0] - start)
        part = x[start:start + m]
        exp_nonpositive(-np.abs(part), mantissa[:m], exponent_bits[:m])
        softplus_finish(part, mantissa[:m], scale[:m])


@_jit()
def attention_forward(q, keys, values, key_scale, key_more, value_scale, value_more, rows, nbr, valid, bias,
                      weights, out):  # pragma: no cover
    """Graph attention with per-edge key / value scales (see
    :func:`tertiary.nn.fused_cpu.modulated_neighbour_attention`); writes ``weights [N, H, K]``
    (for the backward) and ``out [N, H * dv]``."""
    n_rows, kk = nbr.shape
    k_split, v_split = key_scale.shape[0], value_scale.shape[0]  # rows from here on: second tables
    heads = bias.shape[1]
    dk = q.shape[1] // heads
    dv = out.shape[1] // heads
    acc = np.empty(out.shape[1], np.float32)
    shifted = np.empty(heads * kk, np.float32)
    mantissa = np.empty(heads * kk, np.float32)
    exponent_bits = np.empty(heads * kk, np.int32)
    scale = exponent_bits.view(np.float32)
    if kk == 0:
        out[:] = 0.0
        return
    for n in range(n_rows):
        qn = q[n]
        w = weights[n]  # [H, K]
        for k in range(kk):
            if valid[n, k]:
                kr = keys[nbr[n, k]]
                r = rows[n, k]
                sr = key_scale[r] if r < k_split else key_more[r - k_split]
                for h in range(heads):
                    s = bias[n, h]
                    for d in range(dk):
                        s += qn[h * dk + d] * kr[h * dk + d] * sr[d]
                    w[h, k] = s
            else:
                for h in range(heads):
                    w[h, k] = -np.inf
        for h in range(heads):  # logits minus each head's largest: exponents <= 0
            top = w[h, 0]
            for k in range(1, kk):
                top = max(top, w[h, k])
            for k in range(kk):  # -inf for missing edges (all of them when top is -inf)
                shifted[h * kk + k] = w[h, k] - top if top != -np.inf else -np.inf
        exp_nonpositive(shifted, mantissa, exponent_bits)
        for h in range(heads):
            total = np.float32(0.0)
            for k in range(kk):
                y = shifted[h * kk + k]
                e = mantissa[h * kk + k] * scale[h * kk + k] if y <= 0.0 else y  # NaN stays NaN
                e = e if y != -np.inf else np.float32(0.0)
                w[h, k] = e
                total += e
            if total == 0.0:  # no valid neighbour: uniform over all K (as the PyTorch path)
                for k in range(kk):
                    w[h, k] = np.float32(1.0) / kk
            else:
                inv = np.float32(1.0) / total
                for k in range(kk):
                    w[h, k] *= inv
        acc[:] = 0.0
        for k in range(kk):
            vr = values[nbr[n, k]]
            r = rows[n, k]
            sr = value_scale[r] if r < v_split else value_more[r - v_split]
            for h in range(heads):
                a = w[h, k]
                if a != 0.0:
                    for d in range(dv):
                        acc[h * dv + d] += a * sr[d] * vr[h * dv + d]
        out[n] = acc


@_jit()
def attention_backward(q, keys, values, key_scale, key_more, value_scale, value_more, rows, nbr, valid, weights,
                       grad_out, grad_q, grad_keys, grad_values, grad_key_scale, grad_key_more, grad_value_scale,
                       grad_value_more, grad_bias):  # pragma: no cover
    """Gradients of :func:`attention_forward`, accumulated into the zeroed ``grad_*`` arrays."""
    n_rows, kk = nbr.shape
    k_split, v_split = key_scale.shape[0], value_scale.shape[0]
    heads = weights.shape[1]
    dk = q.shape[1] // heads
    dv = grad_out.shape[1] // heads
    grad_w = np.empty((heads, kk), np.float32)
    for n in range(n_rows):
        qn, go, w = q[n], grad_out[n], weights[n]
        for k in range(kk):  # value path: d out / d (weight, value, value scale)
            j, r = nbr[n, k], rows[n, k]
            vr = values[j]
            sr = value_scale[r] if r < v_split else value_more[r - v_split]
            gs = grad_value_scale[r] if r < v_split else grad_value_more[r - v_split]
            for h in range(heads):
                a = w[h, k]
                g = np.float32(0.0)
                if a != 0.0:
                    for d in range(dv):
                        c = go[h * dv + d]
                        g += c * sr[d] * vr[h * dv + d]
                        grad_values[j, h * dv + d] += a * sr[d] * c
                        gs[d] += a * vr[h * dv + d] * c
                grad_w[h, k] = g
        for h in range(heads):  # softmax backward: d logit = w * (d w - sum_k w d w)
            s = np.float32(0.0)
            for k in range(kk):
                s += w[h, k] * grad_w[h, k]
            for k in range(kk):
                grad_w[h, k] = w[h, k] * (grad_w[h, k] - s)
        for k in range(kk):  # key path (the logits of missing edges are constants)
            if not valid[n, k]:
                continue
            j, r = nbr[n, k], rows[n, k]
            kr = keys[j]
            sr = key_scale[r] if r < k_split else key_more[r - k_split]
            gs = grad_key_scale[r] if r < k_split else grad_key_more[r - k_split]
            for h in range(heads):
                gl = grad_w[h, k]
                if gl != 0.0:
                    grad_bias[n, h] += gl
                    for d in range(dk):
                        qd, kd = qn[h * dk + d], kr[h * dk + d]
                        grad_q[n, h * dk + d] += gl * sr[d] * kd
                        grad_keys[j, h * dk + d] += gl * qd * sr[d]
                        gs[d] += gl * qd * kd
