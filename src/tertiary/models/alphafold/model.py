"""AlphaFold2 with recycling (Algorithm 2): trunk, structure module and auxiliary heads."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from tertiary.errors import InputError
from tertiary.models.alphafold.config import AlphaFoldConfig
from tertiary.models.alphafold.heads import AuxiliaryHeads
from tertiary.models.alphafold.structure import StructureModule, atom14_to_atom37, atom37_exists
from tertiary.models.alphafold.trunk import AlphaFoldTrunk

Features = Mapping[str, torch.Tensor]
#: called after every cycle with (cycle index, number of cycles)
CycleCallback = Callable[[int, int], None]


def split_cycles(feats: Features) -> list[dict[str, torch.Tensor]]:
    """OpenFold's layout (every feature with a trailing recycling axis) -> one dict per cycle."""
    n = {v.shape[-1] for v in feats.values() if v.dim() > 0}
    if len(n) != 1:
        raise InputError(f"features disagree on the trailing recycling axis: sizes {sorted(n)}")
    return [{k: v[..., i] for k, v in feats.items() if v.dim() > 0} for i in range(n.pop())]


class AlphaFold(AlphaFoldTrunk):
    """The full monomer model, with the template stack for presets that have one (models 1-2).

    Parameter names follow OpenFold's module tree (``input_embedder``, ``evoformer.blocks.3.
    msa_att_row``, ``structure_module``, ``aux_heads`` ...).
    """

    def __init__(self, config: AlphaFoldConfig) -> None:
        super().__init__(config)
        self.structure_module = StructureModule(config.structure_module)
        self.aux_heads = AuxiliaryHeads(config.heads)

    def iteration(
        self,
        feats: Features,
        prev: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        chunk_size: int | None = None,
        record: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """One recycling iteration from the recycled ``(m_1, z, atom37)`` state."""
        m, z, s = AlphaFoldTrunk.forward(self, feats, *prev, chunk_size=chunk_size, record=record)
        aatype = feats["aatype"]
        sm = self.structure_module(s, z, aatype, mask=feats["seq_mask"], chunk_size=chunk_size)
        # template rows (appended after the MSA clusters) are not part of the MSA output, as in
        # AlphaFold2 (the masked-MSA head sees the clusters only); row 0 is recycled
        n_seq = feats["msa_feat"].shape[-3]
        out = {"msa": m[..., :n_seq, :, :], "pair": z, "single": s, **{f"sm.{k}": v for k, v in sm.items()}}
        out["final_atom_positions"] = atom14_to_atom37(sm["positions"][-1], aatype)
        out["final_atom_mask"] = atom37_exists(aatype, out["final_atom_positions"].dtype)
        return out

    def forward(  # type: ignore[override]
        self,
        feats: Features | Sequence[Features],
        num_cycles: int | None = None,
        chunk_size: int | None = None,
        on_cycle: CycleCallback | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run ``num_cycles`` recycling iterations (default ``config.data.num_recycles + 1``), then the heads.

        Args:
            feats: one feature dict used in every cycle, or one dict per cycle (e.g. resampled
                MSAs); tensors ``[*, N, ...]`` as listed in :data:`~.trunk.TRUNK_FEATURES`.
            num_cycles: number of iterations (>= 1). Training can sample it; gradients flow
                only through the last one (earlier cycles run without autograd, as in AlphaFold2).
            chunk_size: chunk size for every O(N^2) / O(N^3) module (None = unchunked).
            on_cycle: progress callback ``(cycle, num_cycles)``.

        Returns:
            ``msa [*, S, N, c_m]``, ``pair``, ``single``, structure-module outputs under ``sm.*``
            (``sm.positions [8, *, N, 14, 3]`` ...), ``final_atom_positions [*, N, 37, 3]``
            (Angstrom), ``final_atom_mask``, the head outputs (``plddt`` 0-100, ``ptm_score``,
            ``predicted_aligned_error`` ... for ``_ptm`` presets) and ``num_cycles``.
        """
        per_cycle = not isinstance(feats, Mapping)
        if num_cycles is None:
            num_cycles = len(feats) if per_cycle else self.config.data.num_recycles + 1  # type: ignore[arg-type]
        if num_cycles < 1:
            raise InputError(f"num_cycles must be >= 1, got {num_cycles}")
        if per_cycle and len(feats) < num_cycles:  # type: ignore[arg-type]
            raise InputError(f"{num_cycles} cycles requested but features given for {len(feats)}")  # type: ignore[arg-type]
        first: Features = feats[0] if per_cycle else feats  # type: ignore[index,assignment]
        prev = self.initial_recycling_state(first)
        grad = torch.is_grad_enabled()
        out: dict[str, torch.Tensor] = {}
        for cycle in range(num_cycles):
            f: Features = feats[cycle] if per_cycle else feats  # type: ignore[index,assignment]
            last = cycle == num_cycles - 1
            with torch.set_grad_enabled(grad and last):
                out = self.iteration(f, prev, chunk_size)
            prev = (out["msa"][..., 0, :, :].detach(), out["pair"].detach(), out["final_atom_positions"].detach())
            if on_cycle is not None:
                on_cycle(cycle, num_cycles)
        out.update(self.aux_heads(out["sm.single"], out["single"], out["pair"], out["msa"]))
        out["num_cycles"] = torch.tensor(num_cycles)
        return out
