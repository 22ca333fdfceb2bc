"""AlphaFold2 auxiliary heads (supplement section 1.9) and the confidence metrics derived from them.

- pLDDT (Algorithm 29): per-residue lDDT-Ca bins from the structure module's single
  representation; :func:`compute_plddt` turns the logits into 0-100 scores.
- Distogram (1.9.8): symmetrised pair logits over distance bins.
- Masked MSA (1.9.9): per-position residue-type logits (23 classes).
- Experimentally resolved (1.9.10): per-atom37 logits from the Evoformer single representation.
- Predicted aligned error / pTM (1.9.7, ``_ptm`` presets): logits over aligned-error bins;
  :func:`compute_predicted_aligned_error` and :func:`compute_ptm`.
"""

from __future__ import annotations

import torch
from torch import nn

from tertiary.errors import InputError
from tertiary.models.alphafold.config import HeadsConfig
from tertiary.models.alphafold.structure.param_maps import NPZ_PREFIX, NpzMap, npz_layer_norm, npz_linear, weight_and_bias
from tertiary.nn.primitives import Linear

__all__ = [
    "AuxiliaryHeads",
    "DistogramHead",
    "ExperimentallyResolvedHead",
    "HeadsConfig",
    "MaskedMSAHead",
    "PLDDTHead",
    "PredictedAlignedErrorHead",
    "compute_plddt",
    "compute_predicted_aligned_error",
    "compute_ptm",
]


def compute_plddt(logits: torch.Tensor) -> torch.Tensor:
    """Expected lDDT-Ca x 100 ``[*, N]`` from ``[*, N, B]`` logits over B equal bins of [0, 1]."""
    no_bins = logits.shape[-1]
    centers = (torch.arange(no_bins, dtype=logits.dtype, device=logits.device) + 0.5) / no_bins
    return 100 * (torch.softmax(logits, dim=-1) * centers).sum(dim=-1)


def aligned_error_bin_centers(no_bins: int, max_bin: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Centres ``[no_bins]`` (Angstrom) of the aligned-error bins.

    ``no_bins - 1`` equally spaced edges from 0 to ``max_bin``; each bin is represented by its
    edge plus half a step, and the last (open) bin by the last edge plus half a step.
    """
    edges = torch.linspace(0, max_bin, no_bins - 1, dtype=dtype, device=device)
    step = edges[1] - edges[0]
    return torch.cat([edges + step / 2, (edges[-1] + 1.5 * step)[None]])


def compute_predicted_aligned_error(
    logits: torch.Tensor, max_bin: float = 31.0
) -> dict[str, torch.Tensor]:
    """Predicted aligned error from ``[*, N, N, B]`` logits.

    Returns:
        ``aligned_confidence_probs [*, N, N, B]``, ``predicted_aligned_error [*, N, N]`` (Angstrom,
        the expected error of residue j's position when aligned on residue i's frame) and
        ``max_predicted_aligned_error`` (scalar, the largest representable value).
    """
    probs = torch.softmax(logits, dim=-1)
    centers = aligned_error_bin_centers(logits.shape[-1], max_bin, logits.dtype, logits.device)
    return {
        "aligned_confidence_probs": probs,
        "predicted_aligned_error": (probs * centers).sum(dim=-1),
        "max_predicted_aligned_error": centers[-1],
    }


def compute_ptm(
    logits: torch.Tensor,
    residue_weights: torch.Tensor | None = None,
    max_bin: float = 31.0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Predicted TM-score ``[*]`` from aligned-error logits ``[*, N, N, B]`` (supplement 1.9.7).

    For every alignment residue i the expected TM term ``1 / (1 + (e_ij / d0)^2)`` is averaged
    over residues j (weighted); the pTM is the value at the i maximising it (times its weight).
    ``d0 = 1.24 (max(N_w, 19) - 15)^(1/3) - 1.8`` with ``N_w`` the summed residue weights.

    Args:
        logits: aligned-error logits ``[*, N, N, B]``.
        residue_weights: ``[*, N]`` or ``[N]`` (e.g. the residue mask); all ones when None.
        max_bin: upper edge (Angstrom) of the last closed bin.
    """
    n = logits.shape[-2]
    if residue_weights is None:
        residue_weights = logits.new_ones(n)
    residue_weights = residue_weights.to(logits.dtype)
    if residue_weights.shape[-1] != n:
        raise InputError(f"compute_ptm: {residue_weights.shape[-1]} residue weights for {n} residues")
    residue_weights = residue_weights.expand(logits.shape[:-3] + (n,))
    centers = aligned_error_bin_centers(logits.shape[-1], max_bin, logits.dtype, logits.device)
    n_eff = torch.clamp(residue_weights.sum(dim=-1), min=19)  # [*]
    d0 = 1.24 * (n_eff - 15) ** (1.0 / 3) - 1.8
    tm_per_bin = 1.0 / (1 + centers**2 / d0[..., None] ** 2)  # [*, B]
    expected = (torch.softmax(logits, dim=-1) * tm_per_bin[..., None, None, :]).sum(dim=-1)  # [*, N, N]
    pair_weights = residue_weights[..., None, :] * residue_weights[..., :, None]
    normed = pair_weights / (eps + pair_weights.sum(dim=-1, keepdim=True))
    per_alignment = (expected * normed).sum(dim=-1)  # [*, N]
    best = (per_alignment * residue_weights).argmax(dim=-1, keepdim=True)
    return per_alignment.gather(-1, best).squeeze(-1)


class PLDDTHead(nn.Module):
    """Algorithm 29: ``LN -> Linear -> ReLU -> Linear -> ReLU -> Linear`` to lDDT bins."""

    def __init__(self, c_in: int, c_hidden: int, no_bins: int) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(c_in)
        self.linear_1 = Linear(c_in, c_hidden, init="relu")
        self.linear_2 = Linear(c_hidden, c_hidden, init="relu")
        self.linear_3 = Linear(c_hidden, no_bins, init="final")

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """``[*, N, c_in]`` -> logits ``[*, N, no_bins]``."""
        return self.linear_3(torch.relu(self.linear_2(torch.relu(self.linear_1(self.layer_norm(s))))))


class DistogramHead(nn.Module):
    """Pair logits over distance bins, symmetrised: ``f(z)_ij + f(z)_ji``."""

    def __init__(self, c_z: int, no_bins: int) -> None:
        super().__init__()
        self.linear = Linear(c_z, no_bins, init="final")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``[*, N, N, c_z]`` -> ``[*, N, N, no_bins]``."""
        logits = self.linear(z)
        return logits + logits.transpose(-2, -3)


class _LinearHead(nn.Module):
    """A single zero-initialised linear map (masked MSA, experimentally resolved, aligned error)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.linear = Linear(c_in, c_out, init="final")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class MaskedMSAHead(_LinearHead):
    """MSA representation ``[*, S, N, c_m]`` -> residue-type logits ``[*, S, N, c_out]``."""


class ExperimentallyResolvedHead(_LinearHead):
    """Evoformer single representation ``[*, N, c_s]`` -> per-atom37 logits ``[*, N, 37]``."""


class PredictedAlignedErrorHead(_LinearHead):
    """Pair representation ``[*, N, N, c_z]`` -> aligned-error logits ``[*, N, N, no_bins]`` (not symmetric)."""


class AuxiliaryHeads(nn.Module):
    """All heads of one AlphaFold2 model; the aligned-error head only when ``config.tm_enabled``."""

    def __init__(self, config: HeadsConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.plddt = PLDDTHead(c.c_s, c.lddt_c_hidden, c.lddt_no_bins)
        self.distogram = DistogramHead(c.c_z, c.distogram_no_bins)
        self.masked_msa = MaskedMSAHead(c.c_m, c.masked_msa_c_out)
        self.experimentally_resolved = ExperimentallyResolvedHead(c.c_s, c.experimentally_resolved_c_out)
        self.tm = PredictedAlignedErrorHead(c.c_z, c.tm_no_bins) if c.tm_enabled else None

    def forward(
        self,
        sm_single: torch.Tensor,
        single: torch.Tensor,
        pair: torch.Tensor,
        msa: torch.Tensor,
        residue_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run every head.

        Args:
            sm_single: structure-module output ``single [*, N, c_s]`` (pLDDT input).
            single: Evoformer single representation ``[*, N, c_s]`` (experimentally resolved).
            pair: Evoformer pair representation ``[*, N, N, c_z]``.
            msa: Evoformer MSA representation ``[*, S, N, c_m]``.
            residue_weights: ``[*, N]`` weights of residues in the pTM (None = all residues,
                as AlphaFold2 and OpenFold do at inference).

        Returns:
            ``lddt_logits``, ``plddt`` (0-100), ``distogram_logits``, ``masked_msa_logits``,
            ``experimentally_resolved_logits`` and, with the aligned-error head, ``tm_logits``,
            ``ptm_score``, ``aligned_confidence_probs``, ``predicted_aligned_error``,
            ``max_predicted_aligned_error``.
        """
        lddt_logits = self.plddt(sm_single)
        out = {
            "lddt_logits": lddt_logits,
            "plddt": compute_plddt(lddt_logits),
            "distogram_logits": self.distogram(pair),
            "masked_msa_logits": self.masked_msa(msa),
            "experimentally_resolved_logits": self.experimentally_resolved(single),
        }
        if self.tm is not None:
            tm_logits = self.tm(pair)
            out["tm_logits"] = tm_logits
            out["ptm_score"] = compute_ptm(tm_logits, residue_weights, max_bin=self.config.tm_max_bin)
            out.update(compute_predicted_aligned_error(tm_logits, max_bin=self.config.tm_max_bin))
        return out

    # ------------------------------------------------------------------ weights
    def openfold_key_map(self, openfold_prefix: str = "aux_heads.", prefix: str = "") -> dict[str, str]:
        """OpenFold ``AuxiliaryHeads`` state-dict keys -> this module's keys (with ``prefix``)."""
        names = ["plddt.layer_norm", "plddt.linear_1", "plddt.linear_2", "plddt.linear_3"]
        names += ["distogram.linear", "masked_msa.linear", "experimentally_resolved.linear"]
        if self.tm is not None:
            names.append("tm.linear")
        out: dict[str, str] = {}
        for name in names:
            out.update(weight_and_bias(openfold_prefix + name, prefix + name))
        return out

    def npz_key_map(self, npz_prefix: str = NPZ_PREFIX, prefix: str = "") -> NpzMap:
        """Official AlphaFold2 npz keys -> (this module's key, transform)."""
        out: NpzMap = {}
        lddt = f"{npz_prefix}predicted_lddt_head"
        out.update(npz_layer_norm(f"{lddt}/input_layer_norm", prefix + "plddt.layer_norm"))
        for i in range(2):
            out.update(npz_linear(f"{lddt}/act_{i}", f"{prefix}plddt.linear_{i + 1}"))
        out.update(npz_linear(f"{lddt}/logits", prefix + "plddt.linear_3"))
        out.update(npz_linear(f"{npz_prefix}distogram_head/half_logits", prefix + "distogram.linear"))
        out.update(npz_linear(f"{npz_prefix}masked_msa_head/logits", prefix + "masked_msa.linear"))
        out.update(
            npz_linear(f"{npz_prefix}experimentally_resolved_head/logits", prefix + "experimentally_resolved.linear")
        )
        if self.tm is not None:
            out.update(npz_linear(f"{npz_prefix}predicted_aligned_error_head/logits", prefix + "tm.linear"))
        return out
