"""Architecture of an ESM-2 protein language model (frozen dataclass with named presets)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tertiary.errors import ConfigError

#: Residues per sequence the released ESM-2 models were trained on (1024 tokens with BOS / EOS).
TRAINED_MAX_RESIDUES = 1022

# name -> (layers, width, heads); FFN width is 4 x width for every released ESM-2.
_PRESETS: dict[str, tuple[int, int, int]] = {
    "esm2_t6_8M_UR50D": (6, 320, 20),
    "esm2_t12_35M_UR50D": (12, 480, 20),
    "esm2_t30_150M_UR50D": (30, 640, 20),
    "esm2_t33_650M_UR50D": (33, 1280, 20),
    "esm2_t36_3B_UR50D": (36, 2560, 40),
    "esm2_t48_15B_UR50D": (48, 5120, 40),
}


@dataclass(frozen=True)
class ESMConfig:
    """Dimensions of an ESM-2 model.

    Attributes:
        num_layers: transformer blocks.
        embed_dim: residue-state width ``C``.
        attention_heads: heads ``H``; ``C`` must be divisible by ``H`` with an even head width.
        ffn_embed_dim: hidden width of the feed-forward block.
        vocab_size: alphabet size (33 for the ESM-1b alphabet used by ESM-2).
        padding_idx, cls_idx, eos_idx, mask_idx: special token ids.
        token_dropout: rescale embeddings by ``(1 - 0.12) / (1 - mask_fraction)`` and zero
            ``<mask>`` embeddings, as ESM-2 does in training *and* inference.
        layer_norm_eps: epsilon of every LayerNorm.
        rotary_base: base of the rotary frequencies (only used for freshly built models:
            checkpoints carry their own, fp16-rounded ``inv_freq``).
        max_residues: longest sequence (residues, BOS/EOS excluded) the model was trained on;
            longer inputs are handled by ``long_mode`` of :meth:`ESM2.forward`.
    """

    num_layers: int = 6
    embed_dim: int = 320
    attention_heads: int = 20
    ffn_embed_dim: int = 1280
    vocab_size: int = 33
    padding_idx: int = 1
    cls_idx: int = 0
    eos_idx: int = 2
    mask_idx: int = 32
    token_dropout: bool = True
    layer_norm_eps: float = 1e-5
    rotary_base: float = 10000.0
    max_residues: int = TRAINED_MAX_RESIDUES

    def __post_init__(self) -> None:
        for name in ("num_layers", "embed_dim", "attention_heads", "ffn_embed_dim", "vocab_size", "max_residues"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ESMConfig.{name} must be a positive integer, got {value!r}")
        if self.embed_dim % self.attention_heads:
            raise ConfigError(
                f"ESMConfig.embed_dim={self.embed_dim} is not divisible by attention_heads={self.attention_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"ESMConfig head width {self.head_dim} must be even for rotary embeddings")
        for name in ("padding_idx", "cls_idx", "eos_idx", "mask_idx"):
            idx = getattr(self, name)
            if not 0 <= idx < self.vocab_size:
                raise ConfigError(f"ESMConfig.{name}={idx} is outside the vocabulary (size {self.vocab_size})")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.embed_dim // self.attention_heads

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ESMConfig:
        """A released ESM-2 architecture by its fair-esm name (e.g. ``"esm2_t33_650M_UR50D"``)."""
        if name not in _PRESETS:
            raise ConfigError(f"unknown ESM-2 preset {name!r}; known: {', '.join(_PRESETS)}")
        layers, width, heads = _PRESETS[name]
        base = cls(num_layers=layers, embed_dim=width, attention_heads=heads, ffn_embed_dim=4 * width)
        return dataclasses.replace(base, **overrides) if overrides else base

    @staticmethod
    def presets() -> tuple[str, ...]:
        """Names accepted by :meth:`preset`."""
        return tuple(_PRESETS)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ESMConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError` naming ``source``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown ESM config keys {unknown}")
        try:
            return cls(**data)
        except TypeError as exc:  # wrong value types surface here
            raise ConfigError(f"{source}: invalid ESM config: {exc}") from exc
