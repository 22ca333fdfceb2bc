"""FAIR training task for the shared engine (``task: fair`` in a training config).

``model:`` is a :class:`FairConfig` preset plus field overrides; ``data:`` (:class:`FairData`)
points at an LMDB dataset built by ``tertiary data build --task pocket`` or at a set folder with
``index.tsv`` (featurised once when the task starts). The validation split holds out whole PDB
entries (``pdb_id`` column; crystal complexes only): modelled FEP poses of a held-out entry's
protein are dropped from training too, so nothing of a validation pocket's structure is trained on.

Loss: :func:`.loss.training_loss` (two stages of ``interpolate_steps`` calls). Validation runs
the real sampler (:func:`.generate.generate`) and reports recovery (``aar``, over designed
residues, averaged per pocket), backbone RMSD and the training loss.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tertiary.data.pocket import Pocket, PocketBatch, collate, load_pocket, pocket_from_record, read_pocket_index
from tertiary.errors import ConfigError, TertiaryError
from tertiary.train.config import from_dict

from .config import FairConfig
from .generate import generate
from .loss import training_loss
from .model import FairModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FairData:
    """``data:`` section of a ``task: fair`` config.

    Attributes:
        dataset: LMDB file built by ``tertiary data build --task pocket``.
        root: or a set folder / ``index.tsv`` (e.g. ``../shared/data/ligand_complexes``),
            featurised when the task starts (failing complexes are logged and skipped).
        kinds: training complexes kept by their ``kind`` (``crystal``, ``modelled``).
        val_fraction: share of crystal PDB entries held out for validation (hash of ``pdb_id``
            with ``split_seed``); 0 = no validation set.
        split_seed: salt of the split hash.
        val_limit: at most this many validation pockets (sampling is slow).
        limit: only the first ``limit`` complexes of the source (tests, smoke runs).
        val_on_train: validate on the training complexes (overfitting checks).
        max_residues: skip complexes with more pocket residues (memory bound).
        pocket_radius / design_radius: featurisation of ``root`` sources (A).
    """

    dataset: str | None = None
    root: str | None = None
    kinds: tuple[str, ...] = ("crystal", "modelled")
    val_fraction: float = 0.1
    split_seed: int = 0
    val_limit: int | None = None
    limit: int | None = None
    val_on_train: bool = False
    max_residues: int | None = None
    pocket_radius: float = 10.0
    design_radius: float = 5.0

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.root is None):
            raise ConfigError("data: give exactly one of 'dataset' (LMDB) or 'root' (set folder)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")


def model_config(model_cfg: dict[str, Any]) -> FairConfig:
    """``model:`` mapping -> :class:`FairConfig` (``preset`` + overrides; unknown keys are errors)."""
    cfg = dict(model_cfg or {})
    preset = cfg.pop("preset", "fair")
    base = FairConfig.preset(preset)
    merged = {**base.to_dict(), **cfg}
    return FairConfig.from_dict(merged, where="model")


def _held_out(pdb_id: str, fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{pdb_id.lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64 < fraction


def split_rows(meta: list[dict[str, Any]], data: FairData) -> tuple[list[int], list[int]]:
    """Indices of training and validation complexes (see the module docstring)."""
    val = [i for i, m in enumerate(meta)
           if m.get("kind", "crystal") == "crystal" and data.val_fraction > 0
           and _held_out(str(m.get("pdb_id") or m.get("name")), data.val_fraction, data.split_seed)]
    held_pdb = {str(meta[i].get("pdb_id") or meta[i].get("name")).lower() for i in val}
    kinds = set(data.kinds)
    train = [i for i, m in enumerate(meta)
             if i not in set(val) and m.get("kind", "crystal") in kinds
             and str(m.get("pdb_id") or m.get("name")).lower() not in held_pdb]
    return train, val


class FairTask:
    """Trainable FAIR pocket design (see the module docstring)."""

    def __init__(self, model_cfg: dict[str, Any], data_cfg: dict[str, Any], seed: int) -> None:
        self.config = model_config(model_cfg)
        self.data = from_dict(FairData, data_cfg, "data")
        self.seed = seed
        pockets, meta = self._load()
        if self.data.max_residues is not None:
            keep = [i for i, p in enumerate(pockets) if p.num_residues <= self.data.max_residues]
            pockets, meta = [pockets[i] for i in keep], [meta[i] for i in keep]
        train, val = split_rows(meta, self.data)
        if not train:
            raise ConfigError("data: no training complex left after the split")
        self.train_pockets = [pockets[i] for i in train]
        self.val_pockets = list(self.train_pockets) if self.data.val_on_train else [pockets[i] for i in val]
        if self.data.val_limit is not None:
            self.val_pockets = self.val_pockets[: self.data.val_limit]
        self.val_names = [p.name for p in self.val_pockets]
        log.info("fair task: %d training, %d validation complexes", len(self.train_pockets), len(self.val_pockets))

    def _load(self) -> tuple[list[Pocket], list[dict[str, Any]]]:
        d = self.data
        pockets: list[Pocket] = []
        meta: list[dict[str, Any]] = []
        if d.dataset is not None:
            from tertiary.data.lmdb_store import LmdbDataset

            ds = LmdbDataset(d.dataset, task="pocket")
            n = len(ds) if d.limit is None else min(d.limit, len(ds))
            for i in range(n):
                arrays, m = ds[i]
                pockets.append(pocket_from_record(arrays, m))
                meta.append(m)
            return pockets, meta
        rows = read_pocket_index(d.root)
        rows = [r for r in rows if r.get("kind", "crystal") in set(d.kinds) or r.get("kind", "crystal") == "crystal"]
        if d.limit is not None:
            rows = rows[: d.limit]
        for row in rows:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    p = load_pocket(row["pocket"], row["ligand"], pocket_radius=d.pocket_radius,
                                    design_radius=d.design_radius, name=row["id"])
            except TertiaryError as exc:
                log.warning("%s skipped: %s", row["id"], exc)
                continue
            pockets.append(p)
            meta.append({"name": row["id"], **{k: row[k] for k in ("kind", "system", "pdb_id") if row.get(k)}})
        return pockets, meta

    # -- Task protocol -------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return FairModel(self.config)

    def train_dataset(self) -> Sequence[Pocket]:
        return self.train_pockets

    def val_dataset(self) -> Sequence[Pocket] | None:
        return self.val_pockets or None

    def collate(self, items: list[Pocket]) -> PocketBatch:
        return collate(items)

    @staticmethod
    def _unwrap(model: nn.Module) -> FairModel:
        return getattr(model, "module", model)

    def loss(self, model: nn.Module, batch: PocketBatch, generator: torch.Generator
             ) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        batch = batch.to(next(model.parameters()).device)
        return model(batch, generator)  # through the (DDP) wrapper's forward: gradients are all-reduced

    def evaluate(self, model: nn.Module, batch: PocketBatch) -> tuple[dict[str, float], int]:
        net = self._unwrap(model)
        batch = batch.to(next(net.parameters()).device)
        g = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            total, _ = training_loss(net, batch, g)
            res = generate(net, batch, torch.Generator().manual_seed(self.seed))
        n = len(batch.names)
        return {"loss": float(total) * n, "aar": float(res.aar.sum()),
                "backbone_rmsd": float(res.backbone_rmsd.sum())}, n


def export_run(run_dir: str | Path, output: str | Path) -> Path:
    """Turn a training run of ``task: fair`` into tertiary's FAIR weights format.

    Reads ``run_dir/config.json`` (the architecture) and ``run_dir/model.safetensors`` (written
    when training finishes) or, if absent (a run stopped early), the newest ``ckpt_*.pt``; writes
    ``output`` (``.safetensors``, config in the metadata) and ``output`` with suffix ``.json``
    (the config, readable by people).

    Raises:
        WeightsError: no weights or no config in ``run_dir``.
    """
    import json

    from tertiary.errors import WeightsError

    from .weights import _load_into, save

    run = Path(run_dir)
    cfg_path = run / "config.json"
    if not cfg_path.is_file():
        raise WeightsError(f"{run}: no config.json (not a training run folder)")
    train_cfg = json.loads(cfg_path.read_text())
    model = FairModel(model_config(train_cfg.get("model", {})))
    final = run / "model.safetensors"
    if final.is_file():
        from safetensors.torch import load_file

        state, source = load_file(str(final)), str(final)
    else:
        from tertiary.train import checkpoint as ckpt

        found = ckpt.list_checkpoints(run)
        if not found:
            raise WeightsError(f"{run}: neither model.safetensors nor a checkpoint")
        state, source = ckpt.load_checkpoint(found[-1])["model"], str(found[-1])
    _load_into(model, state, source)
    out = Path(output).with_suffix(".safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    save(model, out)
    out.with_suffix(".json").write_text(json.dumps(model.config.to_dict(), indent=1) + "\n")
    return out
