"""Protein encoders with one interface, for FusionProt and its ablations.

Every encoder maps a batched :class:`~tertiary.data.graph.ResidueGraph` (or its dict form) to
``{"node_feature": [N, D], "graph_feature": [B, D]}`` with ``D = encoder.output_dim``:

- :class:`~tertiary.models.fusionprot.model.FusionProt`: ESM-2 + GearNet with the 3D token;
- :class:`ESMEncoder`: ESM-2 alone (final-LayerNorm states, mean readout);
- :class:`GearNetEncoder`: GearNet alone on residue one-hots (concatenated layers, sum readout).
"""

from __future__ import annotations

import torch
from torch import nn

from tertiary.data.graph import ResidueGraph
from tertiary.errors import InputError
from tertiary.models.esm import ESM2
from tertiary.models.fusionprot.model import _check_lengths, esm_token_map, graph_tokens
from tertiary.models.gearnet import GearNet, mean_readout


def _graph(graph: ResidueGraph | dict) -> ResidueGraph:
    return ResidueGraph.from_dict(graph) if isinstance(graph, dict) else graph


class ESMEncoder(nn.Module):
    """ESM-2 over the residues of each graph (``<cls> residues <eos>``); no structure.

    ``long_mode``: proteins longer than ``esm.config.max_residues`` raise (``"error"``) or run
    in overlapping windows whose per-residue states are averaged (``"window"``, see
    :mod:`tertiary.models.esm.long_sequences`; logged as a warning). Truncation is the caller's
    choice (cut the sample before building the graph).
    """

    def __init__(self, esm: ESM2, freeze: bool = False, long_mode: str = "error") -> None:
        super().__init__()
        if long_mode not in ("error", "window"):
            raise InputError(f"ESMEncoder long_mode must be 'error' or 'window', got {long_mode!r}")
        self.esm = esm
        self.long_mode = long_mode
        self.register_buffer("token_map", esm_token_map(), persistent=False)
        if freeze:
            self.esm.requires_grad_(False)

    @property
    def output_dim(self) -> int:
        return self.esm.config.embed_dim

    def forward(self, graph: ResidueGraph | dict, chunk_size: int | None = None) -> dict[str, torch.Tensor]:
        graph = _graph(graph)
        cfg = self.esm.config
        if self.long_mode == "window" and bool((graph.num_nodes > cfg.max_residues).any()):
            tokens, column = graph_tokens(graph, self.token_map, cfg.cls_idx, cfg.eos_idx, cfg.padding_idx)
            last = cfg.num_layers
            states = self.esm(tokens, repr_layers=[last], long_mode="window", chunk_size=chunk_size)
            node = states["representations"][last][graph.node2graph, column]
            return {"node_feature": node, "graph_feature": mean_readout(node, graph.node2graph, graph.batch_size)}
        _check_lengths(graph, cfg.max_residues)
        tokens, column = graph_tokens(graph, self.token_map, cfg.cls_idx, cfg.eos_idx, cfg.padding_idx)
        x, padding = self.esm.embed(tokens)
        mask = padding if bool(padding.any()) else None
        for block in self.esm.layers:
            x, _ = block(x, mask, False, chunk_size)
        node = self.esm.final_norm(x)[graph.node2graph, column]
        return {"node_feature": node, "graph_feature": mean_readout(node, graph.node2graph, graph.batch_size)}


class GearNetEncoder(nn.Module):
    """GearNet over residue one-hot inputs (the GearNet paper's setting)."""

    def __init__(self, gearnet: GearNet) -> None:
        super().__init__()
        self.gearnet = gearnet

    @property
    def output_dim(self) -> int:
        return self.gearnet.output_dim

    def forward(self, graph: ResidueGraph | dict, chunk_size: int | None = None) -> dict[str, torch.Tensor]:
        graph = _graph(graph)
        return self.gearnet(graph, graph.residue_one_hot())
