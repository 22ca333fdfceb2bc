"""Atomic training checkpoints, keeping the last K.

A checkpoint is written to a temporary file in the run folder and renamed over its final name,
so a crash or a full disk never leaves a half-written ``ckpt_*.pt``; the previous checkpoints stay
valid. Files hold only tensors, numbers, strings and containers, so they load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tertiary.errors import WeightsError

log = logging.getLogger(__name__)
_NAME = re.compile(r"^ckpt_(\d{8})\.pt$")


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU + CUDA) random states as weights-only-loadable values."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints in ``run_dir``, oldest first."""
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if _NAME.match(p.name))


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep_last: int) -> Path | None:
    """Write ``ckpt_<step>.pt`` atomically and delete all but the newest ``keep_last``.

    Returns the path, or None when writing failed (disk full, permissions): the failure is
    logged, the temporary file removed and earlier checkpoints are left untouched.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / f"ckpt_{step:08d}.pt"
    fd, tmp_name = tempfile.mkstemp(prefix=".ckpt_", suffix=".tmp", dir=run_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        torch.save(state, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except (OSError, RuntimeError) as exc:  # torch's zip writer reports ENOSPC as RuntimeError
        tmp.unlink(missing_ok=True)
        log.error("checkpoint at step %d not written (%s); keeping the previous ones", step, exc)
        return None
    for old in list_checkpoints(run_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return final


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise WeightsError(f"{path}: cannot read checkpoint ({' '.join(str(exc).split())[:200]})") from None
