"""Every shipped configs/fusionprot_*.yaml parses into the engine's and the task's dataclasses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tertiary.models.fusionprot.task import FunctionDataConfig, FunctionModelConfig
from tertiary.train.config import from_dict, read_yaml
from tertiary.train.options import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "configs").glob("fusionprot_*.yaml"))


def test_configs_exist():
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses(path):
    cfg = from_dict(TrainConfig, read_yaml(path))
    assert cfg.task == "function"
    model = from_dict(FunctionModelConfig, cfg.model, "model")
    from_dict(FunctionDataConfig, cfg.data, "data")
    model.esm_config()  # the preset exists
