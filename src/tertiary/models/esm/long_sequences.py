"""Sequences longer than the length an ESM-2 model was trained on.

ESM-2 has no hard length limit (rotary positions), but it was trained on at most 1022 residues,
and its outputs degrade beyond that. :func:`run_with_long_policy` applies the policy chosen in
:meth:`ESM2.forward` (``long_mode``):

- ``"error"``: raise :class:`~tertiary.errors.InputError` naming the rows and lengths;
- ``"truncate"``: keep the first ``max_residues`` residues (+ EOS), like fair-esm's
  ``truncation_seq_length``; outputs cover the returned, shorter ``tokens``;
- ``"window"``: windows of ``max_residues`` residues, each with its own BOS / EOS, shifted by
  ``max_residues - overlap``, the last one aligned with the sequence end; per-residue outputs
  (logits, representations, contacts) are averaged over the windows covering a residue, BOS
  outputs come from the first window and EOS outputs from the last. Residue pairs that share no
  window get NaN contacts. Attention maps are not defined in this mode.

Whatever happens is reported in the output's ``long_sequences`` entry and logged as a warning.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from tertiary.errors import InputError

if TYPE_CHECKING:
    from tertiary.models.esm.model import ESM2

logger = logging.getLogger(__name__)


def window_starts(num_residues: int, window: int, overlap: int) -> list[int]:
    """First residue of each window; consecutive windows share at least ``overlap`` residues."""
    if num_residues <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, num_residues - window, stride))
    return [*starts, num_residues - window]


def run_with_long_policy(
    model: ESM2,
    tokens: torch.Tensor,
    repr_layers: set[int],
    need_head_weights: bool,
    return_contacts: bool,
    mode: str,
    overlap: int | None,
    chunk_size: int | None,
) -> dict:
    """Forward ``tokens [B, N]`` through ``model`` applying the long-sequence policy ``mode``."""
    cfg = model.config
    max_res = cfg.max_residues
    num_tokens = tokens.ne(cfg.padding_idx).sum(-1).tolist()
    long_rows = [i for i, n in enumerate(num_tokens) if n - 2 > max_res]
    report = {
        "mode": mode,
        "max_residues": max_res,
        "rows": long_rows,
        "num_residues": [num_tokens[i] - 2 for i in long_rows],
    }
    need_weights = need_head_weights or return_contacts
    if not long_rows:
        out = model.forward_tokens(tokens, repr_layers, need_weights, return_contacts, chunk_size)
        out["long_sequences"] = report
        return out
    desc = ", ".join(f"row {i} ({num_tokens[i] - 2} residues)" for i in long_rows)
    if mode == "error":
        raise InputError(
            f"{desc} longer than the {max_res} residues this model was trained on; "
            "pass long_mode='truncate' or long_mode='window'"
        )
    if mode == "truncate":
        logger.warning("ESM-2: truncating %s to %d residues", desc, max_res)
        cut = tokens[:, : max_res + 2].clone()
        cut[long_rows, max_res + 1] = cfg.eos_idx
        out = model.forward_tokens(cut, repr_layers, need_weights, return_contacts, chunk_size)
        out["tokens"] = cut
        out["long_sequences"] = report
        return out
    if need_head_weights:
        raise InputError(f"attention maps are not defined for windowed sequences ({desc}); use long_mode='truncate'")
    if overlap is None:
        overlap = max_res // 2
    if not 0 <= overlap < max_res:
        raise InputError(f"window_overlap must lie in [0, {max_res}), got {overlap}")
    logger.warning("ESM-2: %s run in windows of %d residues overlapping by %d", desc, max_res, overlap)
    out = _windowed(model, tokens, num_tokens, long_rows, repr_layers, return_contacts, overlap, chunk_size)
    report["windows"] = {i: window_starts(num_tokens[i] - 2, max_res, overlap) for i in long_rows}
    out["long_sequences"] = report
    return out


def _windowed(
    model: ESM2,
    tokens: torch.Tensor,
    num_tokens: list[int],
    long_rows: list[int],
    repr_layers: set[int],
    return_contacts: bool,
    overlap: int,
    chunk_size: int | None,
) -> dict:
    cfg = model.config
    w = cfg.max_residues
    b, n = tokens.shape
    for i in long_rows:
        if tokens[i, 0] != cfg.cls_idx or tokens[i, num_tokens[i] - 1] != cfg.eos_idx:
            raise InputError(f"row {i}: window mode needs BOS first and EOS last")
    short_rows = [i for i in range(b) if i not in long_rows]
    result: dict[str, torch.Tensor | dict] = {}

    def put(name: str | int, row: int, value: torch.Tensor) -> None:
        """Store one row of a per-token output (``[N_row, *]``) into the batch output."""
        target = result["representations"] if isinstance(name, int) else result
        if name not in target:
            target[name] = value.new_zeros((b, n, *value.shape[1:]))
        target[name][row, : value.shape[0]] = value

    result["representations"] = {}
    contacts = None
    if return_contacts:
        contacts = torch.zeros(b, n - 2, n - 2, device=tokens.device)
    if short_rows:
        m = max(num_tokens[i] for i in short_rows)
        sub = model.forward_tokens(tokens[short_rows, :m], repr_layers, return_contacts, return_contacts, chunk_size)
        for k, row in enumerate(short_rows):
            if "logits" in sub:
                put("logits", row, sub["logits"][k])
            for layer, rep in sub["representations"].items():
                put(layer, row, rep[k])
            if contacts is not None:
                c = sub["contacts"][k]
                contacts = contacts.to(c.dtype)
                contacts[row, : c.shape[0], : c.shape[1]] = c
    for row in long_rows:
        res = num_tokens[row] - 2
        starts = window_starts(res, w, overlap)
        wins = torch.stack([tokens[row, s : s + w + 2].clone() for s in starts])
        wins[:, -1] = cfg.eos_idx
        wins[:, 0] = cfg.cls_idx
        sub = model.forward_tokens(wins, repr_layers, return_contacts, return_contacts, chunk_size)
        count = torch.zeros(res, device=tokens.device)
        for s in starts:
            count[s : s + w] += 1
        per_token = {**({"logits": sub["logits"]} if "logits" in sub else {}), **sub["representations"]}
        for name, value in per_token.items():
            acc = value.new_zeros((res + 2, *value.shape[2:]))
            for k, s in enumerate(starts):
                acc[1 + s : 1 + s + w] += value[k, 1 : w + 1]
            acc[1 : res + 1] /= count.to(acc.dtype).view(-1, *([1] * (value.dim() - 2)))
            acc[0] = value[0, 0]
            acc[res + 1] = value[-1, w + 1]
            put(name, row, acc)
        if contacts is not None:
            csum = sub["contacts"].new_zeros(res, res)
            ccount = torch.zeros_like(csum)
            for k, s in enumerate(starts):
                csum[s : s + w, s : s + w] += sub["contacts"][k]
                ccount[s : s + w, s : s + w] += 1
            contacts = contacts.to(csum.dtype)
            contacts[row, :res, :res] = csum / ccount  # NaN where no window holds both residues
    if contacts is not None:
        result["contacts"] = contacts
    return result
