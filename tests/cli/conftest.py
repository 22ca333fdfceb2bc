"""Fixtures of the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tertiary.models.fair.config import FairConfig
from tertiary.models.fair.model import FairModel
from tertiary.models.fair.weights import save


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random tiny FAIR model saved in tertiary's format (fast ``design`` / ``evaluate`` runs)."""
    torch.manual_seed(0)
    cfg = FairConfig.preset("tiny", interpolate_steps=2, outer_iterations=1, refine_steps=1)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save(FairModel(cfg), path)
    return path
