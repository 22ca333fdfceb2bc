"""ESM-2 protein language model in plain PyTorch.

Pre-LayerNorm transformer with rotary self-attention, token-dropout rescaling of the embeddings
(in training and inference alike), a final LayerNorm, an LM head tied to the token embeddings and
a contact head on the attention maps. :meth:`ESM2.forward` mirrors fair-esm's interface; the
pieces (:meth:`ESM2.embed`, ``ESM2.layers[i]``, :meth:`ESM2.finish`, :func:`insert_before_eos`)
let other models run it layer by layer (see ``docs/esm.md``).

Shapes: ``B`` sequences, ``N`` tokens per row (BOS + residues + EOS, right-padded), ``C`` width,
``H`` heads, ``D = C / H``, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from tertiary.errors import InputError, WeightsError
from tertiary.models.esm.config import ESMConfig
from tertiary.models.esm.contact import ContactHead
from tertiary.models.esm.long_sequences import run_with_long_policy
from tertiary.models.esm.rotary import RotaryEmbedding
from tertiary.nn.attention import attention, attention_weights


#: fraction of tokens ESM-2 masked in training (15 % selected x 80 % replaced by ``<mask>``).
MASK_RATIO_TRAIN = 0.15 * 0.8
LONG_MODES = ("error", "truncate", "window")


class RotarySelfAttention(nn.Module):
    """Multi-head self-attention with rotary queries / keys (one fused q/k/v projection)."""

    def __init__(self, embed_dim: int, heads: int, rotary_base: float = 10000.0) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = embed_dim // heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.rotary = RotaryEmbedding(self.head_dim, rotary_base)

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        chunk_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend over the token axis.

        Args:
            x: ``[B, N, C]``.
            padding_mask: ``[B, N]`` bool, True at padding (keys there are ignored), or None.
            need_weights: also return the attention probabilities.
            chunk_size: queries per chunk (bounds memory to ``chunk_size * N`` per head).

        Returns:
            ``[B, N, C]`` and, with ``need_weights``, probabilities ``[B, H, N, N]``.
        """
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [3, B, H, N, D]
        qk = self.rotary(qkv[:2])
        q, k, v = qk[0], qk[1], qkv[2]
        keep = None if padding_mask is None else ~padding_mask[:, None, None, :]
        probs = None
        if need_weights:
            probs = attention_weights(q, k, mask=keep)
            out = torch.matmul(probs, v)
        else:
            out = attention(q, k, v, mask=keep, chunk_size=chunk_size)
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.out_proj(out), probs


class TransformerLayer(nn.Module):
    """Pre-LayerNorm block: ``x + Attn(LN(x))`` then ``x + FC2(GELU(FC1(LN(x))))``."""

    def __init__(self, config: ESMConfig) -> None:
        super().__init__()
        c = config.embed_dim
        self.attn_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.attention = RotarySelfAttention(c, config.attention_heads, config.rotary_base)
        self.ffn_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(c, config.ffn_embed_dim)
        self.fc2 = nn.Linear(config.ffn_embed_dim, c)

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        chunk_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x [B, N, C]`` -> (``[B, N, C]``, attention ``[B, H, N, N]`` or None).

        ``padding_mask`` is ``[B, N]`` bool, True at padding; pass None when nothing is padded
        (faster, same result).
        """
        h, attn = self.attention(self.attn_norm(x), padding_mask, need_weights, chunk_size)
        x = x + h
        x = x + self.fc2(F.gelu(self.fc1(self.ffn_norm(x))))
        return x, attn


class LMHead(nn.Module):
    """Masked-language-model head; its output projection is the token-embedding matrix."""

    def __init__(self, embed_dim: int, vocab_size: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(embed_dim, embed_dim)
        self.layer_norm = nn.LayerNorm(embed_dim, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """``[*, C]`` -> logits ``[*, V]`` with ``embedding`` ``[V, C]``."""
        return F.linear(self.layer_norm(F.gelu(self.dense(x))), embedding, self.bias)


class ESM2(nn.Module):
    """ESM-2 language model.

    Args:
        config: architecture.
        seed: seed of the (explicit) random initialisation; real use loads weights over it.

    Attributes:
        contact_head_loaded: False when weights came without a contact regression (then
            ``return_contacts=True`` raises); True for freshly built models.
        lm_head_loaded: False when weights came without an LM head (e.g. HuggingFace
            ``EsmModel``); then outputs carry no ``logits``.
    """

    def __init__(self, config: ESMConfig, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.padding_idx)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.lm_head = LMHead(config.embed_dim, config.vocab_size, config.layer_norm_eps)
        self.contact_head = ContactHead(config.num_layers * config.attention_heads, config.eos_idx, config.padding_idx)
        self.contact_head_loaded = True
        self.lm_head_loaded = True
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Seeded init: Linear ``N(0, 1/fan_in)``, zero biases, unit LayerNorms, ``N(0, 1)`` embeddings."""
        gen = torch.Generator().manual_seed(seed)
        for name, p in sorted(self.named_parameters()):
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            elif p.dim() == 2:
                std = 1.0 if name == "embed_tokens.weight" else 1.0 / math.sqrt(p.shape[1])
                p.copy_(torch.randn(p.shape, generator=gen) * std)

    # ----------------------------------------------------------------- layer-by-layer API
    def embed(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings with token-dropout rescaling and zeroed padding.

        Args:
            tokens: ``[B, N]`` int64.

        Returns:
            ``x [B, N, C]`` (this is ``representations[0]``) and ``padding_mask [B, N]`` bool
            (True at ``<pad>``).
        """
        cfg = self.config
        padding_mask = tokens.eq(cfg.padding_idx)
        x = self.embed_tokens(tokens)
        if cfg.token_dropout:
            is_mask = tokens.eq(cfg.mask_idx)
            x = x.masked_fill(is_mask.unsqueeze(-1), 0.0)
            lengths = (~padding_mask).sum(-1)
            observed = is_mask.sum(-1).to(x.dtype) / lengths
            x = x * (1 - MASK_RATIO_TRAIN) / (1 - observed)[:, None, None]
        x = x * (~padding_mask).unsqueeze(-1).to(x.dtype)
        return x, padding_mask

    def finish(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Final LayerNorm and LM head: ``x [B, N, C]`` -> (``hidden [B, N, C]``, ``logits [B, N, V]``).

        ``logits`` is None when the weights had no LM head (:attr:`lm_head_loaded`).
        """
        hidden = self.final_norm(x)
        if not self.lm_head_loaded:
            return hidden, None
        return hidden, self.lm_head(hidden, self.embed_tokens.weight)

    # ----------------------------------------------------------------------- full forward
    def forward(
        self,
        tokens: torch.Tensor,
        repr_layers: Iterable[int] = (),
        need_head_weights: bool = False,
        return_contacts: bool = False,
        long_mode: str = "error",
        window_overlap: int | None = None,
        chunk_size: int | None = None,
    ) -> dict:
        """Run the model (fair-esm's interface).

        Args:
            tokens: ``[B, N]`` int64 from :class:`~tertiary.models.esm.alphabet.Alphabet`.
            repr_layers: layers whose states to return; 0 = embeddings, ``i`` = after block
                ``i``, ``num_layers`` = after the final LayerNorm.
            need_head_weights: return attention probabilities.
            return_contacts: return contact probabilities (implies attentions).
            long_mode: what to do with sequences longer than ``config.max_residues``:
                ``"error"`` raises, ``"truncate"`` keeps the first ``max_residues`` residues,
                ``"window"`` runs overlapping windows and averages them per residue.
            window_overlap: residues shared by consecutive windows (default half a window).
            chunk_size: query chunk of the attention kernel (ignored when weights are needed).

        Returns:
            dict with ``logits [B, N, V]``, ``representations {layer: [B, N, C]}``, and when
            asked ``attentions [B, layers, H, N, N]`` (zero at padding) and ``contacts
            [B, N-2, N-2]``. ``long_sequences`` reports which rows exceeded the limit and what
            was done; with ``"truncate"`` the outputs cover the truncated ``tokens`` (returned).
        """
        self._check_tokens(tokens)
        repr_set = self._check_repr_layers(repr_layers)
        if long_mode not in LONG_MODES:
            raise InputError(f"long_mode must be one of {LONG_MODES}, got {long_mode!r}")
        if return_contacts and not self.contact_head_loaded:
            raise WeightsError("these weights came without a contact regression; return_contacts is unavailable")
        return run_with_long_policy(
            self, tokens, repr_set, need_head_weights, return_contacts, long_mode, window_overlap, chunk_size
        )

    def forward_tokens(
        self,
        tokens: torch.Tensor,
        repr_layers: set[int],
        need_weights: bool,
        return_contacts: bool,
        chunk_size: int | None = None,
    ) -> dict:
        """Forward without any length policy (inputs already checked)."""
        x, padding_mask = self.embed(tokens)
        attn_mask = padding_mask if bool(padding_mask.any()) else None
        reps: dict[int, torch.Tensor] = {}
        if 0 in repr_layers:
            reps[0] = x
        maps = []
        last = len(self.layers)
        for i, layer in enumerate(self.layers):
            x, attn = layer(x, attn_mask, need_weights, chunk_size)
            if i + 1 in repr_layers and i + 1 != last:
                reps[i + 1] = x
            if attn is not None:
                maps.append(attn)
        hidden, logits = self.finish(x)
        if last in repr_layers:
            reps[last] = hidden
        out: dict = {"representations": reps}
        if logits is not None:
            out["logits"] = logits
        if need_weights:
            attentions = torch.stack(maps, 1)  # [B, layers, H, N, N]
            if attn_mask is not None:
                # padded keys already have probability 0; zero the padded query rows as fair-esm does
                attentions = attentions.masked_fill_(padding_mask[:, None, None, :, None], 0.0)
            out["attentions"] = attentions
            if return_contacts:
                out["contacts"] = self.contact_head(tokens, attentions)
        return out

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            raise InputError(f"tokens must be a [B, N] tensor, got {getattr(tokens, 'shape', type(tokens))}")
        if tokens.dtype not in (torch.int64, torch.int32):
            raise InputError(f"tokens must be int64, got {tokens.dtype}")
        if tokens.shape[0] == 0 or tokens.shape[1] < 3:
            raise InputError(f"tokens {tuple(tokens.shape)}: need at least one row of BOS + residue + EOS")
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= self.config.vocab_size:
            raise InputError(f"token ids must lie in [0, {self.config.vocab_size}), got [{lo}, {hi}]")

    def _check_repr_layers(self, repr_layers: Iterable[int]) -> set[int]:
        out = set()
        for i in repr_layers:
            j = int(i)
            if j < 0:
                j += len(self.layers) + 1
            if not 0 <= j <= len(self.layers):
                raise InputError(f"repr_layers entry {i} outside 0..{len(self.layers)}")
            out.add(j)
        return out


def insert_before_eos(
    x: torch.Tensor, padding_mask: torch.Tensor, value: torch.Tensor | float | int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Insert one entry per row right before that row's own EOS (its last non-pad position).

    Works on hidden states ``[B, N, C]`` (``value`` ``[C]`` or ``[B, C]``) and on tokens
    ``[B, N]`` (``value`` an id). Later entries shift right by one; padding grows by one column.

    Args:
        x: ``[B, N, *]``.
        padding_mask: ``[B, N]`` bool, True at padding; every row must be right-padded.
        value: the inserted entry, broadcastable to ``[B, *]``.

    Returns:
        ``x' [B, N+1, *]``, ``padding_mask' [B, N+1]`` and the inserted positions ``[B]``.
    """
    if padding_mask.shape != x.shape[:2]:
        raise InputError(f"padding_mask {tuple(padding_mask.shape)} does not match x {tuple(x.shape[:2])}")
    b, n = padding_mask.shape
    lengths = (~padding_mask).sum(-1)
    if bool((lengths < 1).any()):
        raise InputError("insert_before_eos: a row has no EOS (fully padded)")
    pos = lengths - 1  # index of each row's EOS = where the new entry goes
    j = torch.arange(n + 1, device=x.device).expand(b, n + 1)
    src = (j - (j > pos[:, None]).long()).clamp(max=n - 1)
    idx = src.reshape(b, n + 1, *([1] * (x.dim() - 2))).expand(b, n + 1, *x.shape[2:])
    gathered = torch.gather(x, 1, idx)
    value_t = torch.broadcast_to(torch.as_tensor(value, dtype=x.dtype, device=x.device), (b, *x.shape[2:]))
    at = (j == pos[:, None]).reshape(b, n + 1, *([1] * (x.dim() - 2)))
    out = torch.where(at, value_t.unsqueeze(1), gathered)
    new_mask = j >= (lengths + 1)[:, None]
    return out, new_mask, pos
