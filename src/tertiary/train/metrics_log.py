"""Metrics sinks: a long-format CSV (step, split, metric, value, seconds) and TensorBoard if installed."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

CSV_NAME = "metrics.csv"
CSV_FIELDS = ("step", "split", "metric", "value", "seconds")


class MetricsLog:
    """Appends rows to ``run_dir/metrics.csv`` (resumed runs append after dropping rows past
    the resume step) and mirrors scalars to TensorBoard when ``tensorboard`` is importable."""

    def __init__(self, run_dir: Path, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.path = run_dir / CSV_NAME
        self.t0 = time.time()
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
            self._write_rows(rows, "w")
        elif not self.path.exists() or resume_step is None:
            self._write_rows([], "w")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                log.debug("tensorboard not installed; CSV metrics only")

    def _write_rows(self, rows: list[dict], mode: str) -> None:
        with open(self.path, mode, newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        now = round(time.time() - self.t0, 3)
        rows = [
            {"step": step, "split": split, "metric": k, "value": f"{float(v):.6g}", "seconds": now}
            for k, v in metrics.items()
        ]
        self._write_rows(rows, "a")
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"{split}/{k}", float(v), step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: Path) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """``metrics.csv`` -> ``{split: {metric: (steps, values)}}``."""
    from tertiary.errors import DataError

    path = run_dir / CSV_NAME
    if not path.is_file():
        raise DataError(f"{path}: no metrics file (is {run_dir} a training run folder?)")
    out: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or tuple(reader.fieldnames) != CSV_FIELDS:
            raise DataError(f"{path}: unexpected columns {reader.fieldnames}")
        for row in reader:
            steps, values = out.setdefault(row["split"], {}).setdefault(row["metric"], ([], []))
            steps.append(int(row["step"]))
            values.append(float(row["value"]))
    return out
