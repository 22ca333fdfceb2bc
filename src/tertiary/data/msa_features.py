"""AlphaFold2 input features from a sequence and an optional MSA.

The pipeline reproduces AlphaFold2's / OpenFold's monomer feature processing (predict mode):

1. per-residue features: ``aatype``, ``residue_index``, ``seq_mask``, ``target_feat`` (22 =
   has-break flag + 21-way residue one-hot), atom14 / atom37 index maps and masks;
2. the (deduplicated) MSA and its per-column residue profile (``hhblits_profile``, 22 classes);
3. per recycling cycle (resampled each cycle when ``resample_msa_in_recycling``):
   :func:`sample_msa` (query first, the other rows shuffled; the first ``max_msa_clusters``
   become cluster centres, the rest extra MSA), :func:`mask_msa` (BERT-style masking, AF2
   suppl. 1.2.7), :func:`nearest_neighbor_clusters` + :func:`summarize_clusters` (cluster
   profile and deletion mean, AF2 suppl. 1.2.7), :func:`crop_extra_msa` (random subset of at
   most ``max_extra_msa`` rows), :func:`make_msa_feat` (49 channels) and padding to the fixed
   sizes;
4. stacking the cycles on a trailing recycling dimension, as OpenFold feeds its model.

Every random choice draws from one :class:`torch.Generator`, so the output is a deterministic
function of the inputs, the config and the seed. The exact dictionary is documented in
``docs/sequence.md`` and by :func:`build_features`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from tertiary import constants as rc
from tertiary.errors import ConfigError, InputError
from tertiary.sequence import MSA, sequence_to_aatype

__all__ = [
    "MSAFeatureConfig",
    "sequence_features",
    "atom_index_features",
    "hhblits_profile",
    "sample_msa",
    "mask_msa",
    "nearest_neighbor_clusters",
    "summarize_clusters",
    "crop_extra_msa",
    "make_msa_feat",
    "deletion_value",
    "build_features",
    "select_cycle",
]

#: Number of MSA classes with the BERT mask token (20 aa, X, gap, mask).
MSA_CLASSES = 23
#: Index of the mask token produced by :func:`mask_msa`.
MASK_TOKEN = 22


@dataclass(frozen=True)
class MSAFeatureConfig:
    """Sizes and options of the MSA feature pipeline.

    Attributes:
        max_msa_clusters: cluster centres (rows of ``msa_feat``), query included.
        max_extra_msa: rows of the extra MSA.
        num_recycles: recycling iterations; features get a trailing dim of ``num_recycles + 1``.
        resample_msa_in_recycling: draw a new MSA sample for every cycle (else one for all).
        masked_msa_replace_fraction: fraction of cluster-centre entries BERT-masked. AlphaFold2
            and OpenFold use 0.15 at inference too (the released weights expect it); 0 disables.
        uniform_prob, profile_prob, same_prob: replacement distribution of a masked entry
            (uniform over the 20 amino acids, the column profile, unchanged); the remaining
            probability goes to the mask token.
        max_templates: template slots (only used with ``reduce_msa_clusters_by_max_templates``).
        reduce_msa_clusters_by_max_templates: AF2's models 1-2 keep ``max_msa_clusters -
            max_templates`` centres (template rows are appended to the MSA representation).
        pad_to_max: pad cluster and extra rows to the maximum sizes with masked rows (OpenFold's
            ``fixed_size``); when False, only the rows present are returned (at least one extra
            row, masked, so shapes stay non-empty).
    """

    max_msa_clusters: int = 512
    max_extra_msa: int = 1024
    num_recycles: int = 3
    resample_msa_in_recycling: bool = True
    masked_msa_replace_fraction: float = 0.15
    uniform_prob: float = 0.1
    profile_prob: float = 0.1
    same_prob: float = 0.1
    max_templates: int = 4
    reduce_msa_clusters_by_max_templates: bool = False
    pad_to_max: bool = True

    def __post_init__(self) -> None:
        if self.n_clusters < 1:
            raise ConfigError(f"max_msa_clusters must leave at least one cluster, got {self.n_clusters}")
        if self.max_extra_msa < 0 or self.num_recycles < 0:
            raise ConfigError("max_extra_msa and num_recycles must be >= 0")
        probs = (self.uniform_prob, self.profile_prob, self.same_prob)
        if min(probs) < 0 or sum(probs) > 1 + 1e-9:
            raise ConfigError(f"masking probabilities {probs} must be >= 0 and sum to <= 1")
        if not 0.0 <= self.masked_msa_replace_fraction <= 1.0:
            raise ConfigError("masked_msa_replace_fraction must be in [0, 1]")

    @property
    def n_clusters(self) -> int:
        """Number of cluster centres actually used."""
        if self.reduce_msa_clusters_by_max_templates:
            return self.max_msa_clusters - self.max_templates
        return self.max_msa_clusters

    @property
    def n_cycles(self) -> int:
        """Size of the trailing recycling dimension."""
        return self.num_recycles + 1

    @classmethod
    def preset(cls, name: str, **overrides: object) -> MSAFeatureConfig:
        """AlphaFold2's data settings: ``model_1`` ... ``model_5`` (``_ptm`` suffix accepted,
        same data settings) at inference, or ``train`` (AF2 training: 128 clusters, 1024 extra).
        """
        base = name.removesuffix("_ptm")
        presets: dict[str, dict[str, object]] = {
            "model_1": dict(max_extra_msa=5120, reduce_msa_clusters_by_max_templates=True),
            "model_2": dict(max_extra_msa=1024, reduce_msa_clusters_by_max_templates=True),
            "model_3": dict(max_extra_msa=5120),
            "model_4": dict(max_extra_msa=5120),
            "model_5": dict(max_extra_msa=1024),
            "train": dict(max_msa_clusters=128, max_extra_msa=1024),
        }
        if base not in presets:
            raise ConfigError(f"unknown MSA feature preset {name!r}; choose from {sorted(presets)} (+ '_ptm')")
        try:
            return replace(cls(**presets[base]), **overrides)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ConfigError(f"MSA feature preset {name!r}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# per-residue features


def sequence_features(sequence: str, residue_index: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Features of the query sequence alone.

    Returns:
        ``aatype [L]`` int64 (AF2 order, unknown -> 20), ``residue_index [L]`` int64 (0-based
        unless given), ``seq_length []`` int64, ``seq_mask [L]`` float32 (ones),
        ``between_segment_residues [L]`` int64 (zeros), ``target_feat [L, 22]`` float32 (channel
        0 = has-break flag, channels 1-21 = one-hot of ``aatype`` over 21 classes).
    """
    aatype = torch.from_numpy(sequence_to_aatype(sequence))
    n = aatype.shape[0]
    if residue_index is None:
        ri = torch.arange(n, dtype=torch.int64)
    else:
        ri = torch.as_tensor(np.asarray(residue_index), dtype=torch.int64)
        if ri.shape != (n,):
            raise InputError(f"residue_index has shape {tuple(ri.shape)}, expected ({n},)")
    has_break = torch.zeros(n, dtype=torch.int64)
    target_feat = torch.cat(
        [has_break.clamp(0, 1)[:, None].float(), torch.nn.functional.one_hot(aatype, 21).float()], dim=-1
    )
    return {
        "aatype": aatype,
        "residue_index": ri,
        "seq_length": torch.tensor(n, dtype=torch.int64),
        "seq_mask": torch.ones(n, dtype=torch.float32),
        "between_segment_residues": has_break,
        "target_feat": target_feat,
    }


def atom_index_features(aatype: torch.Tensor) -> dict[str, torch.Tensor]:
    """atom14 / atom37 maps per residue (AlphaFold2's ``make_atom14_masks``).

    Args:
        aatype: ``[*, L]`` int64.

    Returns:
        ``residx_atom14_to_atom37 [*, L, 14]`` int64, ``residx_atom37_to_atom14 [*, L, 37]``
        int64, ``atom14_atom_exists [*, L, 14]`` float32, ``atom37_atom_exists [*, L, 37]`` float32.
    """
    tables = {
        "residx_atom14_to_atom37": torch.tensor(np.array(rc.RESTYPE_ATOM14_TO_ATOM37), dtype=torch.int64),
        "residx_atom37_to_atom14": torch.tensor(np.array(rc.RESTYPE_ATOM37_TO_ATOM14), dtype=torch.int64),
        "atom14_atom_exists": torch.tensor(np.array(rc.RESTYPE_ATOM14_MASK), dtype=torch.float32),
        "atom37_atom_exists": torch.tensor(np.array(rc.RESTYPE_ATOM37_MASK), dtype=torch.float32),
    }
    return {k: t[aatype] for k, t in tables.items()}


# --------------------------------------------------------------------------------------------
# MSA transforms (one cycle)


def hhblits_profile(msa: torch.Tensor) -> torch.Tensor:
    """Column profile of the whole MSA: ``[N, L]`` ids -> ``[L, 22]`` frequencies (memory O(N L))."""
    n, length = msa.shape
    flat = (msa + 22 * torch.arange(length)).flatten()
    return torch.bincount(flat, minlength=22 * length).view(length, 22).float() / n


def sample_msa(n_rows: int, n_clusters: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose cluster centres: row 0 (the query) first, then a random order of the other rows.

    Returns:
        ``(cluster_rows [min(n_clusters, n_rows)], extra_rows [n_rows - that])`` int64 indices.
    """
    order = torch.cat([torch.zeros(1, dtype=torch.int64), 1 + torch.randperm(n_rows - 1, generator=generator)])
    k = min(n_clusters, n_rows)
    return order[:k], order[k:]


def mask_msa(
    msa: torch.Tensor,
    profile: torch.Tensor,
    config: MSAFeatureConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT-style masking of the cluster centres (AF2 suppl. 1.2.7).

    Each entry is selected with probability ``masked_msa_replace_fraction``; a selected entry is
    replaced by a draw from ``uniform_prob`` x uniform over the 20 amino acids + ``profile_prob`` x
    the column profile + ``same_prob`` x itself + the rest x the mask token (22).

    Args:
        msa: ``[N, L]`` int64 ids (0-21).
        profile: ``[L, 22]`` column frequencies (:func:`hhblits_profile`).

    Returns:
        ``(masked_msa [N, L]`` int64 ids in 0-22, ``bert_mask [N, L]`` float32 1 where selected).
    """
    uniform = torch.tensor([0.05] * 20 + [0.0, 0.0])
    probs = (
        config.uniform_prob * uniform
        + config.profile_prob * profile[None]
        + config.same_prob * torch.nn.functional.one_hot(msa, 22).float()
    )
    mask_prob = 1.0 - config.uniform_prob - config.profile_prob - config.same_prob
    probs = torch.cat([probs, torch.full((*probs.shape[:-1], 1), mask_prob)], dim=-1)
    selected = torch.rand(msa.shape, generator=generator) < config.masked_msa_replace_fraction
    cum = probs.cumsum(-1)
    u = torch.rand((*msa.shape, 1), generator=generator) * cum[..., -1:]
    draw = (u >= cum).sum(-1).clamp(max=MSA_CLASSES - 1)
    return torch.where(selected, draw, msa), selected.float()


def nearest_neighbor_clusters(
    msa: torch.Tensor,
    msa_mask: torch.Tensor,
    extra_msa: torch.Tensor,
    extra_msa_mask: torch.Tensor,
    gap_agreement_weight: float = 0.0,
) -> torch.Tensor:
    """Assign each extra row to the cluster centre it agrees with most (AF2 suppl. 1.2.7).

    Agreement = number of columns with the same residue; X counts, gaps count with
    ``gap_agreement_weight``, masked (22) centre entries never count. Ties go to the lowest
    centre index.

    Args:
        msa: ``[N_clust, L]`` centre ids (0-22, after masking); ``msa_mask`` ``[N_clust, L]``.
        extra_msa: ``[N_extra, L]`` ids (0-21); ``extra_msa_mask`` ``[N_extra, L]``.

    Returns:
        ``[N_extra]`` int64 centre index.
    """
    agreement = torch.zeros(extra_msa.shape[0], msa.shape[0])
    for cls, weight in enumerate([1.0] * 21 + [gap_agreement_weight]):  # mask token (22): weight 0
        if weight == 0.0:
            continue
        centre = (msa == cls).float() * msa_mask * weight
        agreement += ((extra_msa == cls).float() * extra_msa_mask) @ centre.T
    return agreement.argmax(dim=1)


def summarize_clusters(
    msa: torch.Tensor,
    msa_mask: torch.Tensor,
    deletion_matrix: torch.Tensor,
    extra_msa: torch.Tensor,
    extra_msa_mask: torch.Tensor,
    extra_deletion_matrix: torch.Tensor,
    assignment: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster profile and mean deletion count over each centre and its assigned extra rows.

    Returns:
        ``cluster_profile [N_clust, L, 23]`` (class frequencies, the centre counted with its
        masked ids) and ``cluster_deletion_mean [N_clust, L]`` (deletions per sequence).
    """
    length = msa.shape[1]
    counts = msa_mask + 1e-6 + torch.zeros_like(msa_mask).index_add_(0, assignment, extra_msa_mask)
    # class counts per (centre, column) without an [N_extra, L, 23] one-hot: flat scatter-add
    flat = (assignment[:, None] * length + torch.arange(length)) * MSA_CLASSES + extra_msa
    profile_sum = torch.nn.functional.one_hot(msa, MSA_CLASSES).float()
    profile_sum.view(-1).index_add_(0, flat.flatten(), extra_msa_mask.flatten().float())
    del_sum = deletion_matrix.clone().index_add_(0, assignment, extra_msa_mask * extra_deletion_matrix)
    return profile_sum / counts[..., None], del_sum / counts


def crop_extra_msa(n_rows: int, max_extra_msa: int, generator: torch.Generator) -> torch.Tensor:
    """Random subset (in random order) of at most ``max_extra_msa`` of ``n_rows`` extra rows."""
    return torch.randperm(n_rows, generator=generator)[:max_extra_msa]


def deletion_value(deletions: torch.Tensor) -> torch.Tensor:
    """Deletion count squashed to [0, 1): ``2/pi * arctan(d / 3)``."""
    return torch.atan(deletions / 3.0) * (2.0 / math.pi)


def make_msa_feat(
    masked_msa: torch.Tensor,
    deletion_matrix: torch.Tensor,
    cluster_profile: torch.Tensor,
    cluster_deletion_mean: torch.Tensor,
) -> torch.Tensor:
    """``msa_feat [N_clust, L, 49]``: one-hot of the masked centre (23), has-deletion (1),
    deletion value (1), cluster profile (23), deletion-mean value (1)."""
    return torch.cat(
        [
            torch.nn.functional.one_hot(masked_msa, MSA_CLASSES).float(),
            deletion_matrix.clamp(0, 1)[..., None],
            deletion_value(deletion_matrix)[..., None],
            cluster_profile,
            deletion_value(cluster_deletion_mean)[..., None],
        ],
        dim=-1,
    )


def _pad_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """Zero-pad dim 0 of ``t`` to ``n`` rows."""
    if t.shape[0] >= n:
        return t
    return torch.cat([t, t.new_zeros((n - t.shape[0], *t.shape[1:]))])


def _one_cycle(
    msa: torch.Tensor,
    deletions: torch.Tensor,
    profile: torch.Tensor,
    config: MSAFeatureConfig,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """MSA features of one cycle (no recycling dim)."""
    n_rows, n_res = msa.shape
    mask = torch.ones(n_rows, n_res)
    cluster_rows, extra_rows = sample_msa(n_rows, config.n_clusters, generator)
    c_msa, c_del, c_mask = msa[cluster_rows], deletions[cluster_rows], mask[cluster_rows]
    e_msa, e_del, e_mask = msa[extra_rows], deletions[extra_rows], mask[extra_rows]
    if config.masked_msa_replace_fraction > 0:
        masked, bert_mask = mask_msa(c_msa, profile, config, generator)
    else:
        masked, bert_mask = c_msa, torch.zeros(c_msa.shape)
    assignment = nearest_neighbor_clusters(masked, c_mask, e_msa, e_mask)
    cluster_profile, cluster_del_mean = summarize_clusters(masked, c_mask, c_del, e_msa, e_mask, e_del, assignment)
    keep = crop_extra_msa(e_msa.shape[0], config.max_extra_msa, generator)
    e_msa, e_del, e_mask = e_msa[keep], e_del[keep], e_mask[keep]
    out = {
        "msa_feat": make_msa_feat(masked, c_del, cluster_profile, cluster_del_mean),
        "msa_mask": c_mask,
        "msa_row_mask": torch.ones(c_msa.shape[0]),
        "bert_mask": bert_mask,
        "true_msa": c_msa,
        "extra_msa": e_msa,
        "extra_msa_mask": e_mask,
        "extra_msa_row_mask": torch.ones(e_msa.shape[0]),
        "extra_has_deletion": e_del.clamp(0, 1),
        "extra_deletion_value": deletion_value(e_del),
    }
    n_clust = config.n_clusters if config.pad_to_max else c_msa.shape[0]
    n_extra = config.max_extra_msa if config.pad_to_max else max(e_msa.shape[0], 1)
    for key, value in out.items():
        out[key] = _pad_rows(value, n_extra if key.startswith("extra_") else n_clust)
    return out


def build_features(
    sequence: str,
    msa: MSA | None = None,
    config: MSAFeatureConfig | None = None,
    seed: int | torch.Generator = 0,
    residue_index: np.ndarray | None = None,
    source: str = "MSA",
) -> dict[str, torch.Tensor]:
    """The batch AlphaFold2 / OpenFold's model takes, for one chain (no batch dim).

    Args:
        sequence: the query, one-letter codes.
        msa: its MSA (row 0 must equal ``sequence``); ``None`` = single-sequence mode. The MSA
            is deduplicated here.
        config: sizes and options (default: ``MSAFeatureConfig()``, AF2's inference sizes
            without templates: 512 clusters, 1024 extra rows, 3 recycles).
        seed: an int or a :class:`torch.Generator` for the MSA sampling and masking.
        residue_index: ``[L]`` residue numbers (default 0..L-1).
        source: name used in error messages (e.g. the MSA file).

    Returns:
        Tensors with a trailing recycling dim ``R = config.n_cycles`` (cycles resampled
        independently when ``resample_msa_in_recycling``); ``L`` residues, ``S`` =
        ``n_clusters``, ``E`` = ``max_extra_msa`` (when ``pad_to_max``):
        ``aatype [L, R]`` int64, ``residue_index [L, R]`` int64, ``seq_length [R]`` int64,
        ``seq_mask [L, R]``, ``target_feat [L, 22, R]``, ``msa_feat [S, L, 49, R]``,
        ``msa_mask [S, L, R]``, ``msa_row_mask [S, R]``, ``bert_mask [S, L, R]``,
        ``true_msa [S, L, R]`` int64, ``extra_msa [E, L, R]`` int64, ``extra_msa_mask [E, L, R]``,
        ``extra_msa_row_mask [E, R]``, ``extra_has_deletion [E, L, R]``,
        ``extra_deletion_value [E, L, R]``, ``residx_atom14_to_atom37 [L, 14, R]`` int64,
        ``residx_atom37_to_atom14 [L, 37, R]`` int64, ``atom14_atom_exists [L, 14, R]``,
        ``atom37_atom_exists [L, 37, R]``; float32 unless stated. Padded rows are all zero.

    Raises:
        ParseError: invalid letters, or an MSA whose query differs from ``sequence``.
    """
    config = config or MSAFeatureConfig()
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    seq = sequence.upper()
    fixed = sequence_features(seq, residue_index)
    if msa is None:
        msa = MSA.single_sequence(seq)
    else:
        msa.check_query(seq, source=source)
        msa = msa.deduplicate()
    msa_ids = torch.as_tensor(msa.sequences, dtype=torch.int64)
    deletions = torch.as_tensor(msa.deletion_matrix, dtype=torch.float32)
    profile = hhblits_profile(msa_ids)
    fixed.pop("between_segment_residues")
    fixed.update(atom_index_features(fixed["aatype"]))

    cycles: list[dict[str, torch.Tensor]] = []
    for _ in range(config.n_cycles):
        if cycles and not config.resample_msa_in_recycling:
            cycles.append(cycles[0])
        else:
            cycles.append(_one_cycle(msa_ids, deletions, profile, config, generator))
    batch = {k: torch.stack([v] * config.n_cycles, dim=-1) for k, v in fixed.items()}
    for key in cycles[0]:
        batch[key] = torch.stack([c[key] for c in cycles], dim=-1)
    return batch


def select_cycle(batch: dict[str, torch.Tensor], cycle: int) -> dict[str, torch.Tensor]:
    """The features of one recycling iteration: every tensor indexed ``[..., cycle]``."""
    return {k: v[..., cycle] for k, v in batch.items()}
