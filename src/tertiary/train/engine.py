"""The training loop: precision, accumulation, clipping, EMA, schedules, DDP, checkpoints, logs.

Determinism: the global torch RNG is re-seeded from ``(seed, step, rank)`` before every
optimiser step and the task receives a generator seeded the same way, so a run resumed from a
checkpoint repeats exactly the updates an uninterrupted run makes (on the same hardware).
"""

from __future__ import annotations

import collections
import contextlib
import gc
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from tertiary.errors import ConfigError, TrainingError
from tertiary.train import checkpoint as ckpt
from tertiary.train.config import to_dict
from tertiary.train.distributed import DistInfo, all_sum, init_distributed, shutdown
from tertiary.train.ema import EMA
from tertiary.train.metrics_log import MetricsLog
from tertiary.train.options import TrainConfig
from tertiary.train.sampler import DataPosition, ShardedBatchSampler, eval_shard
from tertiary.train.schedule import lr_factor
from tertiary.train.task import resolve_task

log = logging.getLogger(__name__)


@dataclass
class Callbacks:
    """Hooks for the caller (CLI progress bar, hyper-parameter search)."""

    on_log: Callable[[int, int, dict[str, float]], None] | None = None
    on_validation: Callable[[int, dict[str, float]], None] | None = None


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a nested batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _step_seed(seed: int, step: int, rank: int, micro: int = 0) -> int:
    return (seed * 1_000_003 + step * 1009 + rank * 101 + micro) % (2**62)


def _pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: unknown device '{name}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: CUDA requested but no GPU is available")
    return device


class Trainer:
    """Runs one training configuration; ``fit()`` returns the last validation metrics."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path | None = None, callbacks: Callbacks | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir or cfg.out_dir)
        self.callbacks = callbacks or Callbacks()
        self.device = _pick_device(cfg.device, 0)
        self.dist: DistInfo = init_distributed(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device(f"cuda:{self.dist.local_rank}")
        torch.manual_seed(cfg.seed)
        self.task = resolve_task(cfg.task)(cfg.model, cfg.data, cfg.seed)
        self.model: nn.Module = self.task.build_model().to(self.device)
        groups = self.task.param_groups(self.model, cfg.optim.lr) if hasattr(self.task, "param_groups") else None
        self.optimizer = self._build_optimizer(groups or [p for p in self.model.parameters() if p.requires_grad])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(cfg.optim, cfg.max_steps))
        self.ema = EMA(self.model, cfg.ema_decay) if cfg.ema_decay else None
        self.wrapped: nn.Module = self.model
        if self.dist.enabled:
            self.wrapped = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters,
            )
        self.step = 0
        self.position = DataPosition()
        self.nan_in_row = 0
        self.nan_skipped = 0

    def _build_optimizer(self, params: Any) -> torch.optim.Optimizer:
        o = self.cfg.optim
        if o.name == "sgd":
            return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay)
        cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        return cls(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": ckpt.rng_state(),
            "step": self.step,
            "data_position": [self.position.epoch, self.position.offset],
            "nan_skipped": self.nan_skipped,
            "config": json.dumps(to_dict(self.cfg)),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.position = DataPosition(*state["data_position"])
        self.nan_skipped = int(state.get("nan_skipped", 0))

    def resume(self) -> bool:
        """Load the newest checkpoint of ``run_dir``; False when there is none."""
        found = ckpt.list_checkpoints(self.run_dir)
        if not found:
            return False
        self.load_state(ckpt.load_checkpoint(found[-1]))
        log.info("resumed from %s (step %d)", found[-1].name, self.step)
        return True

    def save(self) -> None:
        if self.dist.is_main:
            ckpt.save_checkpoint(self.run_dir, self.step, self.state(), self.cfg.keep_last)
        if self.dist.enabled:
            torch.distributed.barrier()

    # -- loops ---------------------------------------------------------------------------------
    def _batches(self) -> Iterator[Any]:
        """Training batches; ``self.position`` always points after the last batch yielded."""
        dataset = self.task.train_dataset()
        sampler = ShardedBatchSampler(
            len(dataset), self.cfg.batch_size, self.cfg.seed, self.dist.rank, self.dist.world_size,
            position=DataPosition(self.position.epoch, self.position.offset),
        )
        pending: collections.deque[DataPosition] = collections.deque()

        def order() -> Iterator[list[int]]:
            for batch in sampler:
                pending.append(DataPosition(sampler.position.epoch, sampler.position.offset))
                yield batch

        loader = DataLoader(dataset, batch_sampler=order(), collate_fn=self.task.collate, num_workers=self.cfg.num_workers)
        for batch in loader:
            self.position = pending.popleft()
            yield to_device(batch, self.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, batches: Iterator[Any]) -> dict[str, float] | None:
        """One optimiser step over ``grad_accum`` micro-batches; None when skipped (non-finite)."""
        cfg = self.cfg
        self.wrapped.train()
        self.optimizer.zero_grad(set_to_none=True)
        torch.manual_seed(_step_seed(cfg.seed, self.step, self.dist.rank))
        sums: dict[str, float] = collections.defaultdict(float)
        finite = True
        accum = cfg.optim.grad_accum
        for micro in range(accum):
            batch = next(batches)
            gen = torch.Generator(device="cpu").manual_seed(_step_seed(cfg.seed, self.step, self.dist.rank, micro + 1))
            sync = self.dist.enabled and micro < accum - 1
            with (self.wrapped.no_sync() if sync else contextlib.nullcontext()), self._autocast():
                total, terms = self.task.loss(self.wrapped, batch, gen)
            finite = finite and bool(torch.isfinite(total.detach()).item())
            (total / accum).backward()
            sums["loss"] += float(total.detach()) / accum
            for k, v in terms.items():
                sums[k] += float(v.detach() if isinstance(v, torch.Tensor) else v) / accum
        flag = all_sum(torch.tensor([0.0 if finite else 1.0], device=self.device), self.dist)
        if flag.item() > 0:
            self.optimizer.zero_grad(set_to_none=True)
            self.nan_in_row += 1
            self.nan_skipped += 1
            log.warning("step %d: non-finite loss, update skipped (%d in a row, %d in total)",
                        self.step, self.nan_in_row, self.nan_skipped)
            if self.nan_in_row >= cfg.max_nan_in_row:
                raise TrainingError(f"{self.nan_in_row} non-finite losses in a row at step {self.step}; stopping "
                                    "(lower the learning rate, enable clipping or check the data)")
            return None
        self.nan_in_row = 0
        if cfg.optim.clip_grad_norm is not None:
            sums["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.clip_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return dict(sums)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Average validation metrics over the whole validation set (all ranks), EMA weights if any."""
        dataset = self.task.val_dataset()
        if dataset is None or len(dataset) == 0:
            return {}
        idx = eval_shard(len(dataset), self.dist.rank, self.dist.world_size)
        batches = [idx[i : i + self.cfg.batch_size] for i in range(0, len(idx), self.cfg.batch_size)]
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=self.task.collate, num_workers=self.cfg.num_workers)
        sums: dict[str, float] = collections.defaultdict(float)
        count = 0
        self.model.eval()
        ctx = self.ema.applied(self.model) if self.ema is not None else contextlib.nullcontext()
        with ctx, self._autocast():
            for batch in loader:
                metrics, n = self.task.evaluate(self.model, to_device(batch, self.device))
                count += n
                for k, v in metrics.items():
                    sums[k] += float(v)
        keys = sorted(sums)
        packed = all_sum(torch.tensor([count] + [sums[k] for k in keys], dtype=torch.float64, device=self.device), self.dist)
        total = max(packed[0].item(), 1.0)
        return {k: packed[i + 1].item() / total for i, k in enumerate(keys)}

    def fit(self, resume: bool = False) -> dict[str, float]:
        """Train to ``max_steps``; returns the final validation metrics (empty without a val set)."""
        cfg = self.cfg
        resumed = self.resume() if resume else False
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
        logger = MetricsLog(self.run_dir, resume_step=self.step if resumed else None) if self.dist.is_main else None
        batches = self._batches()
        t_last, steps_since = time.time(), 0
        val: dict[str, float] = {}
        try:
            while self.step < cfg.max_steps:
                metrics = self.train_step(batches)
                self.step += 1
                steps_since += 1
                if metrics is not None and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                    now = time.time()
                    metrics["lr"] = self.scheduler.get_last_lr()[0]
                    metrics["it_per_s"] = steps_since / max(now - t_last, 1e-9)
                    t_last, steps_since = now, 0
                    if logger:
                        logger.write(self.step, "train", metrics)
                        if self.callbacks.on_log:
                            self.callbacks.on_log(self.step, cfg.max_steps, metrics)
                if cfg.val_every and self.step % cfg.val_every == 0 and self.step < cfg.max_steps:
                    val = self._validate_and_log(logger)
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    self.save()
            val = self._validate_and_log(logger)
            self.save()
            if self.dist.is_main:
                self._export_weights()
        finally:
            if logger:
                logger.close()
            # the DDP reducer goes before its process group: with gloo (torch 2.13) a reducer
            # that outlives the group can abort the process at exit
            self.wrapped = self.model
            gc.collect()
            shutdown(self.dist)
        return val

    def _validate_and_log(self, logger: MetricsLog | None) -> dict[str, float]:
        val = self.validate()
        if val and logger:
            logger.write(self.step, "val", val)
        if val and logger and self.callbacks.on_validation:  # main rank only, like on_log
            self.callbacks.on_validation(self.step, val)
        bad = [k for k, v in val.items() if not math.isfinite(v)]
        if bad:
            log.warning("step %d: non-finite validation metrics %s", self.step, bad)
        return val

    def _export_weights(self) -> None:
        """Final weights (and EMA weights) as safetensors next to the checkpoints."""
        from safetensors.torch import save_file, save_model

        save_model(self.model, str(self.run_dir / "model.safetensors"))
        if self.ema is not None:
            shadow = {k: v.detach().cpu().contiguous() for k, v in self.ema.state_dict().items()}
            save_file(shadow, str(self.run_dir / "model_ema.safetensors"))
