"""A small regression task used by the engine tests (importable as ``toy_task:ToyTask``)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from tertiary.train.config import from_dict


@dataclass(frozen=True)
class ToyModel:
    hidden: int = 16


@dataclass(frozen=True)
class ToyData:
    n_train: int = 64
    n_val: int = 16
    poison: int = 0  # the first `poison` training items give a NaN loss
    sleep: float = 0.0  # seconds per loss call, to make runs slow enough to kill


class ToyTask:
    def __init__(self, model_cfg: dict, data_cfg: dict, seed: int) -> None:
        self.mcfg = from_dict(ToyModel, model_cfg, "model")
        self.dcfg = from_dict(ToyData, data_cfg, "data")
        g = torch.Generator().manual_seed(1234)
        self.w = torch.randn(4, generator=g)
        n = self.dcfg.n_train + self.dcfg.n_val
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ self.w + 0.01 * torch.randn(n, generator=g)

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(4, self.mcfg.hidden), nn.Tanh(), nn.Linear(self.mcfg.hidden, 1))

    def _items(self, lo: int, hi: int) -> list[dict]:
        return [{"x": self.x[i], "y": self.y[i], "bad": i < self.dcfg.poison} for i in range(lo, hi)]

    def train_dataset(self):
        return self._items(0, self.dcfg.n_train)

    def val_dataset(self):
        return self._items(self.dcfg.n_train, self.dcfg.n_train + self.dcfg.n_val)

    def collate(self, items):
        return {
            "x": torch.stack([i["x"] for i in items]),
            "y": torch.stack([i["y"] for i in items]),
            "bad": torch.tensor([i["bad"] for i in items]),
        }

    def loss(self, model, batch, generator):
        if self.dcfg.sleep:
            time.sleep(self.dcfg.sleep)
        pred = model(batch["x"]).squeeze(-1)
        mse = ((pred - batch["y"]) ** 2).mean()
        if bool(batch["bad"].any()):
            mse = mse * float("nan")
        return mse, {"mse": mse.detach()}

    def evaluate(self, model, batch):
        pred = model(batch["x"]).squeeze(-1).float()
        return {"loss": float(((pred - batch["y"]) ** 2).sum())}, len(batch["y"])
