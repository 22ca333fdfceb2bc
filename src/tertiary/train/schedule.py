"""Learning-rate schedules: linear warm-up, then constant, cosine, linear or step decay."""

from __future__ import annotations

import math
from collections.abc import Callable

from tertiary.train.options import OptimConfig


def lr_factor(cfg: OptimConfig, max_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based)."""

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.decay == "none":
            return 1.0
        if cfg.decay == "step":
            if step < cfg.decay_start:
                return 1.0
            return cfg.decay_factor ** ((step - cfg.decay_start) // cfg.decay_every + 1)
        span = max(1, max_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.decay == "cosine" else 1.0 - progress
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape

    return factor
