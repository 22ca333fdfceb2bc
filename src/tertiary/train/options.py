"""The training configuration (``tertiary train CONFIG.yaml``) as frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tertiary.errors import ConfigError


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule.

    The schedule is a linear warm-up over ``warmup_steps`` followed by ``decay``:
    ``cosine`` / ``linear`` to ``min_lr_ratio * lr`` at ``max_steps``, or ``step``
    (multiply by ``decay_factor`` every ``decay_every`` steps after ``decay_start``, as AlphaFold2).
    """

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    decay: Literal["none", "cosine", "linear", "step"] = "none"
    min_lr_ratio: float = 0.0
    decay_start: int = 0
    decay_every: int = 1000
    decay_factor: float = 0.95
    clip_grad_norm: float | None = None
    grad_accum: int = 1

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be positive, got {self.lr}")
        if self.grad_accum < 1:
            raise ConfigError(f"optim.grad_accum must be >= 1, got {self.grad_accum}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. ``model`` / ``data`` are handed to the task, which
    parses them into its own dataclasses (unknown keys there are errors too)."""

    task: str
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    max_steps: int = 1000
    batch_size: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    ema_decay: float | None = None
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    log_every: int = 10
    val_every: int = 0
    ckpt_every: int = 0
    keep_last: int = 3
    max_nan_in_row: int = 5
    find_unused_parameters: bool = False
    out_dir: str = "runs/default"
    tune: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "keep_last", "max_nan_in_row"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
