"""Training tasks for FusionProt and its ablations (used by ``tertiary train``).

``task: function`` in a training config. Two kinds of data (``data.kind``):

- ``deepfri``: multi-label function prediction (EC or GO-MF/BP/CC) on DeepFRI's nrPDB files;
  graph features -> MLP -> one logit per label; loss: binary cross-entropy; metrics of a whole
  split (:func:`predict`, :func:`function_metrics`): protein-centric Fmax and micro AUPR.
- ``secondary_structure``: per-residue 3-state (helix / strand / coil, DSSP) classification on a
  cache built by :func:`tertiary.data.function.build_secondary_structure_cache`; node features
  -> MLP -> 3 logits; loss: cross-entropy over labelled residues; metric: Q3 accuracy.

``model.encoder`` picks FusionProt (``fusionprot``), ESM-2 only (``esm``) or GearNet only
(``gearnet``); ESM parameters train at ``lr * esm_lr_ratio`` (``param_groups``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tertiary.data.function import (
    FunctionDataset,
    StructureSample,
    deepfri_records,
    truncate,
)
from tertiary.data.graph import GraphConfig, batch_graphs, build_residue_graph
from tertiary.errors import ConfigError
from tertiary.models.esm import ESM2, ESMConfig
from tertiary.models.fusionprot.config import FusionProtConfig
from tertiary.models.fusionprot.encoders import ESMEncoder, GearNetEncoder
from tertiary.models.fusionprot.model import FusionProt
from tertiary.models.gearnet import GearNet, GearNetConfig
from tertiary.nn.mlp import MLP
from tertiary.train.config import from_dict

log = logging.getLogger(__name__)

ENCODERS = ("fusionprot", "esm", "gearnet")
TINY_ESM = ESMConfig(num_layers=6, embed_dim=32, attention_heads=4, ffn_embed_dim=64)


@dataclass(frozen=True)
class FunctionModelConfig:
    """``model:`` section of a ``task: function`` config.

    Attributes:
        encoder: ``fusionprot``, ``esm`` or ``gearnet``.
        esm_preset: ESM-2 architecture (``esm2_t33_650M_UR50D``, ..., or ``tiny``).
        esm_weights: ESM-2 weights (fair-esm ``.pt``, HuggingFace folder, tertiary folder);
            ``None`` = random initialisation.
        inject_step: FusionProt exchange period (transformer blocks).
        gnn_hidden_dim: width of the GNN layers.
        gnn_layers: number of layers of the GearNet-only encoder (FusionProt: one per exchange).
        head_layers: MLP layers of the prediction head (hidden width = encoder width).
        head_dropout: dropout between head layers.
        esm_lr_ratio: ESM learning rate / base learning rate.
        freeze_esm: keep ESM parameters fixed.
    """

    encoder: str = "fusionprot"
    esm_preset: str = "esm2_t33_650M_UR50D"
    esm_weights: str | None = None
    inject_step: int = 5
    gnn_hidden_dim: int = 512
    gnn_layers: int = 6
    head_layers: int = 3
    head_dropout: float = 0.0
    esm_lr_ratio: float = 0.08
    freeze_esm: bool = False

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ConfigError(f"model.encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.head_layers < 1:
            raise ConfigError(f"model.head_layers must be >= 1, got {self.head_layers}")

    def esm_config(self) -> ESMConfig:
        return TINY_ESM if self.esm_preset == "tiny" else ESMConfig.preset(self.esm_preset)


@dataclass(frozen=True)
class FunctionDataConfig:
    """``data:`` section of a ``task: function`` config.

    Attributes:
        kind: ``deepfri`` or ``secondary_structure``.
        root: DeepFRI folder (``deepfri``) or the LIGYSIS chain folder with ``chains.tar.xz`` and
            ``split.tsv`` (``secondary_structure``).
        cache: ``secondary_structure``: the sample cache, built from ``root`` on first use.
        task: ``EC``, ``GO-MF``, ``GO-BP``, ``GO-CC`` (``deepfri`` only).
        test_cutoff: identity cut-off of the DeepFRI test split.
        structures: DeepFRI structure folder (relative to ``root`` or absolute).
        max_length: residues kept per protein (the first ones).
        train_split, val_split: split names.
    """

    kind: str = "deepfri"
    root: str = "../shared/data/deepfri_nrpdb"
    task: str = "EC"
    test_cutoff: float = 0.95
    structures: str = "structures"
    cache: str = "runs/cache/ligysis_ss.safetensors"
    max_length: int = 1022
    train_split: str = "train"
    val_split: str = "valid"

    def __post_init__(self) -> None:
        if self.kind not in ("deepfri", "secondary_structure"):
            raise ConfigError(f"data.kind must be 'deepfri' or 'secondary_structure', got {self.kind!r}")


class FunctionModel(nn.Module):
    """Encoder + MLP head. ``residue_level``: the head reads node features, else graph features.

    ``forward(batch)`` -> ``{"logits": [B, L]}`` or ``{"logits": [N, L]}``.
    """

    def __init__(self, encoder: nn.Module, num_outputs: int, head_layers: int, residue_level: bool, dropout: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.residue_level = residue_level
        d = encoder.output_dim
        self.head = MLP(d, [d] * (head_layers - 1) + [num_outputs], dropout)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        feats = self.encoder(batch["graph"])
        key = "node_feature" if self.residue_level else "graph_feature"
        return {"logits": self.head(feats[key]), **feats}


def build_encoder(cfg: FunctionModelConfig, seed: int = 0) -> tuple[nn.Module, GraphConfig]:
    """The encoder of a model config and the graph config its inputs need."""
    from tertiary.models.esm import load_esm

    graph = GraphConfig()
    if cfg.encoder == "gearnet":
        gcfg = GearNetConfig(hidden_dims=(cfg.gnn_hidden_dim,) * cfg.gnn_layers, graph=graph)
        return GearNetEncoder(GearNet(gcfg)), graph
    esm_cfg = cfg.esm_config()
    esm = load_esm(cfg.esm_weights) if cfg.esm_weights else ESM2(esm_cfg, seed=seed)
    if cfg.encoder == "esm":
        return ESMEncoder(esm, freeze=cfg.freeze_esm), graph
    fcfg = FusionProtConfig(
        esm=esm.config,
        inject_step=cfg.inject_step,
        gnn_hidden_dim=cfg.gnn_hidden_dim,
        graph=graph,
        esm_lr_ratio=cfg.esm_lr_ratio,
        freeze_esm=cfg.freeze_esm,
    )
    return FusionProt(fcfg, esm=esm, seed=seed), graph


class FunctionTask:
    """``task: function``: see the module docstring."""

    def __init__(self, model_cfg: dict, data_cfg: dict, seed: int) -> None:
        self.mcfg = from_dict(FunctionModelConfig, model_cfg, "model")
        self.dcfg = from_dict(FunctionDataConfig, data_cfg, "data")
        self.seed = seed
        self.residue_level = self.dcfg.kind == "secondary_structure"
        self._datasets: dict[str, Sequence[StructureSample]] = {}
        self.graph_config = GraphConfig()
        if self.residue_level:
            from tertiary.data.function import SS_CLASSES

            self.num_outputs = len(SS_CLASSES)
        else:
            _, labels = deepfri_records(self.dcfg.root, self.dcfg.task, self.dcfg.train_split, structures=self.dcfg.structures)
            self.num_outputs = len(labels.vocabulary)

    # -- data -----------------------------------------------------------------------------
    def dataset(self, split: str) -> Sequence[StructureSample]:
        """Samples of one split (cached per task object)."""
        if split not in self._datasets:
            d = self.dcfg
            if self.residue_level:
                from pathlib import Path

                from tertiary.data.function import SecondaryStructureDataset, build_secondary_structure_cache

                if not Path(d.cache).is_file():
                    log.info("building secondary-structure cache %s from %s", d.cache, d.root)
                    report = build_secondary_structure_cache(
                        Path(d.root) / "chains.tar.xz", Path(d.root) / "split.tsv", d.cache
                    )
                    log.info("cache: %d chains, %d residues, %d failed", report["chains"], report["residues"],
                             len(report["failed"]))
                self._datasets[split] = SecondaryStructureDataset(d.cache, split, max_length=d.max_length)
            else:
                records, labels = deepfri_records(d.root, d.task, split, d.test_cutoff, d.structures)
                self._datasets[split] = FunctionDataset(records, len(labels.vocabulary), d.max_length)
        return self._datasets[split]

    def train_dataset(self) -> Sequence[StructureSample]:
        return self.dataset(self.dcfg.train_split)

    def val_dataset(self) -> Sequence[StructureSample] | None:
        return self.dataset(self.dcfg.val_split) if self.dcfg.val_split else None

    def collate(self, items: list[StructureSample]) -> dict:
        """Samples -> ``{"graph": dict of tensors, "labels": [B, L] or [N], "names": [...]}``."""
        items = [truncate(s, self.dcfg.max_length) for s in items]
        graphs = [build_residue_graph(s.pos, s.residue_type, s.chain, self.graph_config) for s in items]
        labels = torch.cat([s.labels for s in items]) if self.residue_level else torch.stack([s.labels for s in items])
        return {"graph": batch_graphs(graphs).as_dict(), "labels": labels, "names": [s.name for s in items]}

    # -- model ----------------------------------------------------------------------------
    def build_model(self) -> FunctionModel:
        encoder, self.graph_config = build_encoder(self.mcfg, self.seed)
        esm = getattr(encoder, "esm", None)
        if esm is not None and self.dcfg.max_length > esm.config.max_residues:
            raise ConfigError(
                f"data.max_length={self.dcfg.max_length} exceeds the {esm.config.max_residues} residues ESM-2 "
                f"takes (model.encoder={self.mcfg.encoder}); lower data.max_length"
            )
        return FunctionModel(encoder, self.num_outputs, self.mcfg.head_layers, self.residue_level, self.mcfg.head_dropout)

    def param_groups(self, model: FunctionModel, lr: float) -> list[dict]:
        """ESM parameters (FusionProt / ESM encoders) at ``lr * esm_lr_ratio``, the rest at ``lr``."""
        esm = getattr(model.encoder, "esm", None)
        esm_ids = {id(p) for p in esm.parameters()} if esm is not None else set()
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in esm_ids]
        groups = [{"params": rest, "lr": lr}]
        esm_params = [p for p in (esm.parameters() if esm is not None else ()) if p.requires_grad]
        if esm_params:
            groups.append({"params": esm_params, "lr": lr * self.mcfg.esm_lr_ratio})
        return groups

    # -- objective ------------------------------------------------------------------------
    def _loss_terms(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(mean loss, summed loss, count)."""
        if self.residue_level:
            keep = labels >= 0
            per = F.cross_entropy(logits[keep].float(), labels[keep].long(), reduction="none")
        else:
            per = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none").mean(-1)
        n = int(per.numel())
        return (per.mean() if n else logits.sum() * 0.0), per.sum(), n

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        out = model(batch)
        total, _, _ = self._loss_terms(out["logits"], batch["labels"])
        name = "ce" if self.residue_level else "bce"
        return total, {name: total.detach()}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batch: dict) -> tuple[dict[str, float], int]:
        """Summed loss (and, per residue, correct predictions) with the item count.

        Fmax / AUPR need a whole split: use :func:`predict` and :func:`function_metrics`."""
        out = model(batch)
        _, summed, n = self._loss_terms(out["logits"], batch["labels"])
        if self.residue_level:
            keep = batch["labels"] >= 0
            correct = (out["logits"][keep].argmax(-1) == batch["labels"][keep]).sum()
            return {"ce": float(summed), "q3": float(correct)}, n
        return {"bce": float(summed)}, n


@torch.no_grad()
def predict(task: FunctionTask, model: nn.Module, split: str, batch_size: int = 4, device: str = "cpu"):
    """Scores and labels of a whole split: ``([P, L] or [N, C] probabilities, labels)``."""
    from tertiary.train.engine import to_device

    model.eval()
    data = task.dataset(split)
    scores, labels = [], []
    for start in range(0, len(data), batch_size):
        batch = task.collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
        out = model(to_device(batch, torch.device(device)))["logits"].float().cpu()
        scores.append(out.softmax(-1) if task.residue_level else out.sigmoid())
        labels.append(batch["labels"])
    return torch.cat(scores), torch.cat(labels)


def function_metrics(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Protein-centric Fmax and micro AUPR (:mod:`tertiary.metrics`) of multi-label scores."""
    from tertiary.metrics import aupr, fmax

    return {"fmax": fmax(scores, labels), "aupr": aupr(scores, labels)}


__all__ = [
    "FunctionDataConfig",
    "FunctionModel",
    "FunctionModelConfig",
    "FunctionTask",
    "build_encoder",
    "function_metrics",
    "predict",
]
