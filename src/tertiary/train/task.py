"""What a model family hands to the engine, and how a task name in a config is found."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from tertiary.errors import ConfigError
from tertiary.plugins import load_object

#: Task names usable in ``task:`` of a training config -> ``module:attribute``.
#: Any other ``module:attribute`` string is imported as given.
KNOWN_TASKS: dict[str, str] = {
    "alphafold": "tertiary.models.alphafold.task:AlphaFoldTask",
    "function": "tertiary.models.fusionprot.task:FunctionTask",
    "fair": "tertiary.models.fair.task:FairTask",
}


@runtime_checkable
class Task(Protocol):
    """A trainable problem. Built as ``TaskClass(model_cfg: dict, data_cfg: dict, seed: int)``.

    ``loss`` returns ``(total, terms)``: a scalar tensor to minimise and named float / scalar
    terms to log. ``evaluate`` returns summed metrics and a count, so that averages over batches
    and ranks are exact.
    """

    def build_model(self) -> nn.Module: ...

    def train_dataset(self) -> Sequence[Any]: ...

    def val_dataset(self) -> Sequence[Any] | None: ...

    def collate(self, items: list[Any]) -> Any: ...

    def loss(
        self, model: nn.Module, batch: Any, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]: ...

    def evaluate(self, model: nn.Module, batch: Any) -> tuple[dict[str, float], int]: ...


def resolve_task(name: str) -> type:
    """``"alphafold"`` or ``"package.module:Class"`` -> the task class."""
    spec = KNOWN_TASKS.get(name, name)
    if ":" not in spec:
        raise ConfigError(f"task: unknown task '{name}' (known: {', '.join(sorted(KNOWN_TASKS))}, or module:Class)")
    return load_object(spec, f"task '{name}'", ConfigError)
