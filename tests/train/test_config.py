from dataclasses import dataclass
from typing import Literal

import pytest

from tertiary.errors import ConfigError
from tertiary.train.config import from_dict, parse_override, read_yaml, set_dotted, to_dict
from tertiary.train.options import OptimConfig, TrainConfig


def test_nested_config_and_round_trip():
    cfg = from_dict(TrainConfig, {"task": "toy", "optim": {"lr": 1e-3, "betas": [0.9, 0.99]}, "max_steps": 5})
    assert cfg.optim.betas == (0.9, 0.99) and isinstance(cfg.optim, OptimConfig)
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg


def test_unknown_key_names_its_path_and_suggests():
    with pytest.raises(ConfigError, match=r"optim\.warmup_step: unknown key \(did you mean 'warmup_steps'\?\)"):
        from_dict(TrainConfig, {"task": "toy", "optim": {"warmup_step": 10}})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"task": "toy", "max_steps": "ten"}, "max_steps: expected an integer"),
        ({"task": "toy", "precision": "fp8"}, "precision: 'fp8' is not one of"),
        ({"task": "toy", "optim": {"lr": -1.0}}, "optim.lr must be positive"),
        ({"task": "toy", "optim": {"betas": [0.9]}}, r"optim.betas: expected 2 items"),
        ({"task": "toy", "ema_decay": 1.5}, "ema_decay must be in"),
        ({"max_steps": 3}, "task"),
    ],
)
def test_bad_values(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, data)


def test_optional_and_literal_fields():
    @dataclass(frozen=True)
    class C:
        mode: Literal["a", "b"] = "a"
        limit: float | None = None

    assert from_dict(C, {"mode": "b", "limit": 2}) == C("b", 2.0)
    assert from_dict(C, {"limit": None}).limit is None


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        read_yaml(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        read_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        read_yaml(tmp_path / "list.yaml")


def test_overrides():
    data = {"optim": {"lr": 1.0}}
    key, value = parse_override("optim.lr=2e-3")
    set_dotted(data, key, value)
    set_dotted(data, "model.hidden", 8)
    assert data == {"optim": {"lr": 2e-3}, "model": {"hidden": 8}}
    with pytest.raises(ConfigError):
        parse_override("no_equals")


def test_yaml_reads_exponent_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: toy\noptim:\n  lr: 1e-3\n  eps: 1.0e-6\n")
    cfg = from_dict(TrainConfig, read_yaml(path))
    assert cfg.optim.lr == 1e-3 and cfg.optim.eps == 1e-6
