"""AlphaFold2 training task for the shared engine (``task: alphafold`` in a training YAML).

Data come from a folding dataset built by ``tertiary data build --task folding`` (see
:mod:`tertiary.data.folding_dataset`). The task

* splits the chains by sequence cluster: the ``split`` of each record (from the build's
  ``--split`` table) or, for records without one, a stable hash of the cluster id
  (``data.val_fraction``); a training chain whose cluster has any member outside the training
  splits is dropped, so no validation / test cluster is ever trained on;
* samples training examples by cluster (one item = one cluster, a random member each time);
* crops each example to ``crop_size`` residues (spatial with probability ``spatial_crop_prob``,
  else contiguous), builds the input features with MSA sampling and BERT masking
  (:func:`~tertiary.data.msa_features.build_features`, ``train`` preset sizes; single-sequence
  mode when a chain has no MSA or ``use_msa`` is false) and the ground-truth targets
  (:func:`~tertiary.data.folding.ground_truth_features`);
* clamps the backbone FAPE in a share ``clamped_fape_prob`` (0.9) of the training examples and
  leaves it unclamped in the others, as AlphaFold2 does;
* trains with recycling as AlphaFold2 does: the number of cycles is drawn uniformly from
  ``1 .. num_recycles + 1`` for every step and only the last cycle is differentiated (the model
  runs the earlier ones without autograd and detaches the recycled state);
* returns the weighted AlphaFold2 loss (:func:`~tertiary.models.alphafold.loss.alphafold_loss`,
  computed in float32 even under bf16 autocast) and its terms; ``evaluate`` reports CA lDDT and
  TM-score (:mod:`tertiary.metrics`) with all recycling cycles.

Randomness: training items draw a seed from the global torch RNG, which the engine re-seeds
before every step, and the loss draws the cycle count from the engine's generator, so runs are
reproducible and resumable. Validation items are deterministic per chain.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from tertiary import constants as rc
from tertiary.data.folding import crop_indices, ground_truth_features
from tertiary.data.folding_dataset import TASK as DATASET_TASK
from tertiary.data.folding_dataset import chain_sequence
from tertiary.data.lmdb_store import LmdbDataset
from tertiary.data.msa_features import MSAFeatureConfig, build_features
from tertiary.errors import ConfigError, DataError
from tertiary.models.alphafold.config import (
    AlphaFoldConfig,
    DataConfig,
    HeadsConfig,
    StackConfig,
    StructureModuleConfig,
)
from tertiary.models.alphafold.loss import LossConfig, alphafold_loss
from tertiary.models.alphafold.model import AlphaFold
from tertiary.sequence import MSA
from tertiary.train.config import from_dict

CA = rc.ATOM_ORDER["CA"]


@dataclass(frozen=True)
class AlphaFoldModelOptions:
    """``model:`` section. ``preset`` (``model_1`` ... ``model_5_ptm``) gives the published
    architecture; otherwise the small free dimensions below are used."""

    preset: str | None = None
    c_m: int = 32
    c_z: int = 16
    c_s: int = 64
    c_e: int = 16
    evoformer_blocks: int = 2
    extra_msa_blocks: int = 1
    structure_blocks: int = 4
    c_hidden: int = 8  # attention / triangle / outer-product hidden width
    no_heads: int = 4
    c_ipa: int = 16
    no_heads_ipa: int = 4
    c_resnet: int = 32
    tm: bool = False  # predicted-aligned-error head (and TM loss with the finetuning_ptm preset)
    dropout: bool = True  # AlphaFold2's dropout rates; false turns every dropout off
    num_recycles: int = 3  # cycles per training step ~ U{1 .. num_recycles + 1}; evaluation uses all
    loss: str = "initial_training"  # LossConfig preset
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.num_recycles < 0:
            raise ConfigError(f"model.num_recycles must be >= 0, got {self.num_recycles}")


@dataclass(frozen=True)
class AlphaFoldDataOptions:
    """``data:`` section."""

    path: str = ""  # LMDB built by 'tertiary data build --task folding'
    train_splits: tuple[str, ...] = ("train",)
    val_split: str = "valid"
    val_fraction: float = 0.1  # for records without a split: share of clusters (hashed) used for validation
    names: tuple[str, ...] | None = None  # restrict the dataset to these record names
    val_on_train: bool = False  # validate on the training chains (overfitting checks only)
    max_val_chains: int | None = None
    crop_size: int = 256
    spatial_crop_prob: float = 0.5
    val_crop_size: int | None = None  # None: validate on whole chains
    use_msa: bool = True
    max_msa_clusters: int = 128
    max_extra_msa: int = 1024
    masked_msa_fraction: float = 0.15
    resample_msa_in_recycling: bool = True
    default_resolution: float = 2.0  # Angstrom, for chains whose file gives none (loss filters)
    clamped_fape_prob: float = 0.9  # share of training examples with clamped backbone FAPE (AlphaFold2: 0.9)

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("data.path: the LMDB dataset is required (build it with 'tertiary data build')")
        if self.crop_size < 1:
            raise ConfigError(f"data.crop_size must be >= 1, got {self.crop_size}")
        if not 0.0 <= self.spatial_crop_prob <= 1.0 or not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("data.spatial_crop_prob must be in [0, 1] and data.val_fraction in [0, 1)")


def build_model_config(opts: AlphaFoldModelOptions, data: AlphaFoldDataOptions) -> AlphaFoldConfig:
    """The :class:`AlphaFoldConfig` of the ``model:`` options."""
    data_cfg = DataConfig(
        max_msa_clusters=data.max_msa_clusters, max_extra_msa=data.max_extra_msa, num_recycles=opts.num_recycles
    )
    if opts.preset is not None:
        cfg = replace(AlphaFoldConfig.preset(opts.preset), data=data_cfg)
    else:
        c = opts.c_hidden
        stack = dict(c_z=opts.c_z, c_hidden_msa_att=c, c_hidden_opm=c, c_hidden_mul=2 * c, c_hidden_pair_att=c,
                     no_heads_msa=opts.no_heads, no_heads_pair=opts.no_heads, transition_n=2)  # fmt: skip
        cfg = AlphaFoldConfig(
            name="small", c_m=opts.c_m, c_z=opts.c_z, c_s=opts.c_s, c_e=opts.c_e,
            evoformer=StackConfig(no_blocks=opts.evoformer_blocks, c_m=opts.c_m, **stack),
            extra_msa=StackConfig(no_blocks=opts.extra_msa_blocks, c_m=opts.c_e, **stack),
            structure_module=StructureModuleConfig(
                c_s=opts.c_s, c_z=opts.c_z, c_ipa=opts.c_ipa, c_resnet=opts.c_resnet,
                no_heads_ipa=opts.no_heads_ipa, no_blocks=opts.structure_blocks,
            ),
            heads=HeadsConfig(c_s=opts.c_s, c_z=opts.c_z, c_m=opts.c_m, lddt_c_hidden=opts.c_s, tm_enabled=opts.tm),
            data=data_cfg,
        )  # fmt: skip
    if opts.tm != cfg.heads.tm_enabled:
        cfg = replace(cfg, heads=replace(cfg.heads, tm_enabled=opts.tm))
    if not opts.dropout:
        cfg = replace(
            cfg,
            evoformer=replace(cfg.evoformer, msa_dropout=0.0, pair_dropout=0.0),
            extra_msa=replace(cfg.extra_msa, msa_dropout=0.0, pair_dropout=0.0),
            structure_module=replace(cfg.structure_module, dropout_rate=0.0),
        )
    return cfg


# ---------------------------------------------------------------------------------------------
# examples


def make_example(
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    feature_config: MSAFeatureConfig,
    generator: torch.Generator,
    crop_size: int | None,
    spatial_crop_prob: float,
    use_msa: bool,
    default_resolution: float,
) -> dict[str, Any]:
    """One training / evaluation example from a dataset record.

    Returns ``{"features": ..., "targets": ..., "name": str}``: model features with a trailing
    recycling dim ``R`` (see :func:`build_features`), ground-truth targets (see
    :func:`ground_truth_features`) plus ``resolution []``, for the ``L`` cropped residues.
    """
    where = meta.get("name", "?")
    try:
        aatype = torch.as_tensor(arrays["aatype"], dtype=torch.long)
        positions = torch.as_tensor(arrays["atom_positions"], dtype=torch.float32)
        mask = torch.as_tensor(arrays["atom_mask"]).float()
        residue_index = np.asarray(arrays["residue_index"], dtype=np.int64)
    except KeyError as exc:
        raise DataError(f"record '{where}': missing array {exc}") from None
    n = aatype.shape[0]
    if positions.shape != (n, 37, 3) or mask.shape != (n, 37) or residue_index.shape != (n,):
        raise DataError(f"record '{where}': inconsistent array shapes")
    if crop_size is not None and n > crop_size:
        spatial = float(torch.rand((), generator=generator)) < spatial_crop_prob
        idx = crop_indices(positions[:, CA], mask[:, CA], crop_size, "spatial" if spatial else "contiguous", generator)
    else:
        idx = torch.arange(n)
    aatype, positions, mask = aatype[idx], positions[idx], mask[idx]
    residue_index = residue_index[idx.numpy()]
    msa = None
    if use_msa and "msa" in arrays:
        cols = idx.numpy()
        msa = MSA(arrays["msa"][:, cols], arrays["deletion_matrix"][:, cols])
    sequence = chain_sequence(aatype.numpy())
    features = build_features(sequence, msa, feature_config, seed=generator, residue_index=residue_index, source=where)
    targets = ground_truth_features(aatype, positions, mask)
    resolution = meta.get("resolution")
    targets["resolution"] = torch.tensor(float(resolution if resolution is not None else default_resolution))
    return {"features": features, "targets": targets, "name": where}


class _Examples(Sequence):
    """Lazily built examples over an LMDB dataset (picklable for data-loader workers)."""

    def __init__(self, task: AlphaFoldTask, groups: list[list[int]], train: bool) -> None:
        self.task = task
        self.groups = groups  # training: members of one cluster per item; validation: one record each
        self.train = train

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        t = self.task
        members = self.groups[i]
        if self.train:
            # a fresh seed from the global RNG, which the engine seeds per step
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
            record = members[int(torch.randint(0, len(members), (1,), generator=generator))]
            crop: int | None = t.data.crop_size
        else:
            record = members[0]
            generator = torch.Generator().manual_seed(t.seed * 7919 + record)
            crop = t.data.val_crop_size
        arrays, meta = t.dataset[record]
        item = make_example(
            arrays, meta, t.feature_config, generator, crop,
            t.data.spatial_crop_prob if self.train else 0.0, t.data.use_msa, t.data.default_resolution,
        )  # fmt: skip
        if self.train:
            clamped = float(torch.rand((), generator=generator)) < t.data.clamped_fape_prob
            item["targets"]["use_clamped_fape"] = torch.tensor(float(clamped))
        return item


def _stable_fraction(text: str) -> float:
    return zlib.crc32(text.encode()) / 2**32


class AlphaFoldTask:
    """The AlphaFold2 training task (see the module docstring)."""

    def __init__(self, model_cfg: dict, data_cfg: dict, seed: int) -> None:
        self.opts = from_dict(AlphaFoldModelOptions, model_cfg, "model")
        self.data = from_dict(AlphaFoldDataOptions, data_cfg, "data")
        self.seed = seed
        self.config = build_model_config(self.opts, self.data)
        self.loss_config = LossConfig.preset(self.opts.loss)
        self.feature_config = MSAFeatureConfig.preset(
            "train",
            max_msa_clusters=self.data.max_msa_clusters,
            max_extra_msa=self.data.max_extra_msa,
            num_recycles=self.opts.num_recycles,
            masked_msa_replace_fraction=self.data.masked_msa_fraction,
            resample_msa_in_recycling=self.data.resample_msa_in_recycling,
            pad_to_max=False,
        )
        self.dataset = LmdbDataset(self.data.path, task=DATASET_TASK)
        self._split()

    # -- splits ----------------------------------------------------------------------------------
    def _split(self) -> None:
        d = self.data
        metas = self.dataset.meta
        chosen = range(len(metas))
        if d.names is not None:
            by_name = {m.get("name"): i for i, m in enumerate(metas)}
            missing = [n for n in d.names if n not in by_name]
            if missing:
                raise DataError(f"{self.dataset.path}: data.names not in the dataset: {', '.join(missing[:5])}")
            chosen = [by_name[n] for n in d.names]
        if not d.val_on_train and d.val_split in d.train_splits:
            raise ConfigError(f"data.val_split '{d.val_split}' is also a training split")

        def cluster(i: int) -> str:
            m = metas[i]
            return str(m["cluster"]) if m.get("cluster") not in (None, "") else f"name:{m.get('name')}"

        def split(i: int) -> str:
            s = metas[i].get("split")
            if s:
                return str(s)
            return d.val_split if _stable_fraction(cluster(i)) < d.val_fraction else d.train_splits[0]

        splits = {i: split(i) for i in chosen}
        held_out = {cluster(i) for i, s in splits.items() if s not in d.train_splits}
        train = [i for i, s in splits.items() if s in d.train_splits]
        self.leaked = [metas[i].get("name") for i in train if cluster(i) in held_out]
        train = [i for i in train if cluster(i) not in held_out]
        groups: dict[str, list[int]] = {}
        for i in train:
            groups.setdefault(cluster(i), []).append(i)
        self.train_groups = [groups[k] for k in sorted(groups)]
        if d.val_on_train:
            val = list(train)
        else:
            val = sorted((i for i, s in splits.items() if s == d.val_split), key=lambda i: metas[i].get("name", ""))
        if d.max_val_chains is not None and len(val) > d.max_val_chains:
            g = torch.Generator().manual_seed(self.seed + 17)
            pick = torch.randperm(len(val), generator=g)[: d.max_val_chains].sort().values
            val = [val[int(j)] for j in pick]
        self.val_records = val
        if not self.train_groups:
            raise DataError(f"{self.dataset.path}: no training chain (train_splits {list(d.train_splits)})")

    # -- Task protocol ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return AlphaFold(self.config)

    def train_dataset(self) -> Sequence[Any]:
        return _Examples(self, self.train_groups, train=True)

    def val_dataset(self) -> Sequence[Any] | None:
        return _Examples(self, [[i] for i in self.val_records], train=False) if self.val_records else None

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Stack examples, zero-padding every dim to the largest item (residues, MSA rows):
        padded residues and rows have zero masks, so the model and the loss ignore them."""

        def stack(key: str) -> dict[str, torch.Tensor]:
            out = {}
            for k in items[0][key]:
                values = [it[key][k] for it in items]
                shape = [max(v.shape[d] for v in values) for d in range(values[0].dim())]
                padded = []
                for v in values:
                    pad = [p for d in reversed(range(v.dim())) for p in (0, shape[d] - v.shape[d])]
                    padded.append(torch.nn.functional.pad(v, pad) if any(pad) else v)
                out[k] = torch.stack(padded)
            return out

        return {"features": stack("features"), "targets": stack("targets"), "name": [it["name"] for it in items]}

    def _loss_inputs(self, out: dict[str, torch.Tensor], batch: dict[str, Any], cycle: int) -> tuple[dict, dict]:
        mapped = {k[3:]: v for k, v in out.items() if k.startswith("sm.")}
        mapped.update({k: v for k, v in out.items() if not k.startswith("sm.")})
        mapped = {k: v.float() if v.is_floating_point() else v for k, v in mapped.items()}
        feats = {k: v[..., cycle] for k, v in batch["features"].items()}
        return mapped, {**feats, **batch["targets"]}

    def _forward(self, model: nn.Module, batch: dict[str, Any], n_cycles: int) -> dict[str, torch.Tensor]:
        feats = batch["features"]
        per_cycle = [{k: v[..., c] for k, v in feats.items()} for c in range(n_cycles)]
        return model(per_cycle, num_cycles=n_cycles, chunk_size=self.opts.chunk_size)

    def loss(
        self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        n_max = batch["features"]["aatype"].shape[-1]
        n_cycles = int(torch.randint(1, n_max + 1, (1,), generator=generator))
        out = self._forward(model, batch, n_cycles)
        mapped, loss_batch = self._loss_inputs(out, batch, n_cycles - 1)
        device_type = mapped["positions"].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            total, terms = alphafold_loss(mapped, loss_batch, self.loss_config, crop_size=self.data.crop_size)
        terms = dict(terms)
        terms["num_cycles"] = float(n_cycles)
        return total, terms

    def evaluate(self, model: nn.Module, batch: dict[str, Any]) -> tuple[dict[str, float], int]:
        from tertiary.metrics import lddt, tm_score

        n_cycles = batch["features"]["aatype"].shape[-1]
        out = self._forward(model, batch, n_cycles)
        pred = out["final_atom_positions"][..., CA, :].float().cpu()
        true = batch["targets"]["all_atom_positions"][..., CA, :].float().cpu()
        mask = batch["targets"]["all_atom_mask"][..., CA].cpu()
        sums = {"lddt_ca": 0.0, "tm_score": 0.0}
        for b in range(pred.shape[0]):
            sums["lddt_ca"] += float(lddt(pred[b], true[b], mask[b]))
            sums["tm_score"] += float(tm_score(pred[b], true[b], mask[b]))
        return sums, int(pred.shape[0])

    # -- baselines -------------------------------------------------------------------------------
    def baseline_metrics(self, seed: int = 0) -> dict[str, float]:
        """Mean CA lDDT / TM-score of trivial predictions on the validation chains (same crops as
        :meth:`evaluate`): an ideal alpha helix and a length-matched random coil."""
        from tertiary.metrics import lddt, tm_score

        dataset = self.val_dataset()
        if dataset is None:
            return {}
        g = torch.Generator().manual_seed(seed)
        sums = {"helix_lddt_ca": 0.0, "helix_tm_score": 0.0, "coil_lddt_ca": 0.0, "coil_tm_score": 0.0}
        for item in dataset:
            true = item["targets"]["all_atom_positions"][:, CA].double()
            mask = item["targets"]["all_atom_mask"][:, CA]
            n = true.shape[0]
            for name, pred in (("helix", ideal_helix_ca(n)), ("coil", random_coil_ca(n, g))):
                sums[f"{name}_lddt_ca"] += float(lddt(pred, true, mask))
                sums[f"{name}_tm_score"] += float(tm_score(pred, true, mask))
        return {k: v / len(dataset) for k, v in sums.items()} | {"n_chains": float(len(dataset))}


def ideal_helix_ca(n: int) -> torch.Tensor:
    """``[n, 3]`` CA atoms of an ideal alpha helix (radius 2.3 A, rise 1.5 A, 100 deg per residue)."""
    t = torch.arange(n, dtype=torch.float64)
    angle = t * math.radians(100.0)
    return torch.stack([2.3 * torch.cos(angle), 2.3 * torch.sin(angle), 1.5 * t], dim=-1)


def random_coil_ca(n: int, generator: torch.Generator, bond: float = 3.8, min_angle_deg: float = 80.0) -> torch.Tensor:
    """``[n, 3]`` CA trace of a random coil: 3.8 A steps in random directions, with CA-CA-CA
    angles above ``min_angle_deg`` (as in proteins, so the chain does not fold back on itself)."""
    x = torch.zeros(n, 3, dtype=torch.float64)
    prev = None
    min_dot = -math.cos(math.radians(min_angle_deg))  # angle(-prev, d) >= min_angle <=> d.prev >= -cos(min_angle)
    for i in range(1, n):
        while True:
            d = torch.randn(3, generator=generator, dtype=torch.float64)
            d = d / d.norm()
            if prev is None or float(d @ prev) >= min_dot:
                break
        x[i] = x[i - 1] + bond * d
        prev = d
    return x
