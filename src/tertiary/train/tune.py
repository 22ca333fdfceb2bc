"""Hyper-parameter search with Optuna over a space declared in the training YAML.

```yaml
tune:
  metric: loss            # a validation metric name
  direction: minimize     # or maximize
  pruner: median          # median | none
  space:
    optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.hidden: {type: int, low: 8, high: 64, step: 8}
    model.activation: {type: categorical, choices: [relu, gelu]}
```

Each trial trains the config with the sampled values (dotted paths into the YAML) in its own
run folder and reports the validation metric at every validation step, so the pruner can stop
hopeless trials early.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tertiary.errors import ConfigError, MissingDependencyError, TertiaryError
from tertiary.train.config import from_dict, set_dotted
from tertiary.train.options import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.type == "categorical":
            if not self.choices:
                raise ConfigError("categorical parameter needs 'choices'")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ConfigError(f"{self.type} parameter needs low <= high")


@dataclass(frozen=True)
class TuneConfig:
    metric: str = "loss"
    direction: Literal["minimize", "maximize"] = "minimize"
    pruner: Literal["median", "none"] = "median"
    space: dict[str, Any] | None = None


def _parse_tune(raw: dict[str, Any]) -> tuple[TuneConfig, dict[str, ParamSpec]]:
    tune = from_dict(TuneConfig, raw, "tune")
    if not tune.space:
        raise ConfigError("tune.space: declare at least one parameter to search")
    space = {}
    for name, spec in tune.space.items():
        try:
            space[name] = from_dict(ParamSpec, spec, f"tune.space.{name}")
        except ConfigError as exc:
            raise ConfigError(f"tune.space.{name}: {exc}") from None
    return tune, space


def _suggest(trial: Any, name: str, spec: ParamSpec) -> Any:
    if spec.type == "float":
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log, step=spec.step)
    if spec.type == "int":
        return trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log, step=int(spec.step or 1))
    return trial.suggest_categorical(name, list(spec.choices))


def run_search(raw_config: dict[str, Any], n_trials: int, out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Run ``n_trials`` trials; returns ``{"best_params", "best_value", "trials": [...]}`` and
    writes it to ``out_dir/tune.json``."""
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError("tertiary tune needs Optuna: pip install 'tertiary[hpo]'") from None
    from tertiary.train.engine import Callbacks, Trainer

    if "tune" not in raw_config:
        raise ConfigError("tune: the config has no 'tune' section declaring the search space")
    tune, space = _parse_tune(raw_config["tune"])
    base = {k: v for k, v in raw_config.items() if k != "tune"}
    from_dict(TrainConfig, base)  # fail before any trial on a bad base config
    pruner = optuna.pruners.MedianPruner(n_warmup_steps=0) if tune.pruner == "median" else optuna.pruners.NopPruner()
    study = optuna.create_study(direction=tune.direction, sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)

    def objective(trial: Any) -> float:
        data = copy.deepcopy(base)
        for name, spec in space.items():
            set_dotted(data, name, _suggest(trial, name, spec))
        cfg = from_dict(TrainConfig, data)

        def report(step: int, metrics: dict[str, float]) -> None:
            if tune.metric not in metrics:
                raise ConfigError(f"tune.metric: validation produced no '{tune.metric}' (has {sorted(metrics)})")
            trial.report(metrics[tune.metric], step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        trainer = Trainer(cfg, out_dir / f"trial_{trial.number:03d}", Callbacks(on_validation=report))
        val = trainer.fit()
        if tune.metric not in val:
            raise ConfigError(f"tune.metric: validation produced no '{tune.metric}' (has {sorted(val)})")
        return val[tune.metric]

    study.optimize(objective, n_trials=n_trials, catch=(), callbacks=None)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise TertiaryError("no trial completed (all were pruned or failed)")
    result = {
        "metric": tune.metric,
        "direction": tune.direction,
        "best_params": study.best_params,
        "best_value": study.best_value,
        "trials": [
            {"number": t.number, "state": t.state.name, "params": t.params, "value": t.value} for t in study.trials
        ],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tune.json").write_text(json.dumps(result, indent=2))
    return result
