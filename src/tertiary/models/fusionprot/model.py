"""FusionProt (Kalifa et al., "FusionProt: Fusing Sequence and Structural Information for Unified
Protein Representation Learning", 2025): ESM-2 and GearNet exchanging a learnable 3D token.

Data flow for a batch of ``B`` proteins with ``N`` residues in all (``graph``: a batched
:class:`~tertiary.data.graph.ResidueGraph`)::

    tokens   [B, T]      <cls> residues <eos> <pad>...   (from graph.residue_type)
    x        [B, T+1, C] ESM embeddings with the 3D token inserted right before each row's EOS
    h        [N+B, C_g]  BN(Linear(one-hot residue)) for residues, + one token node per protein
    for each ESM block i:  x = block(x)
        if i is an exchange block (k-th):
            h[token] = seq_linears[k](x[token])           sequence -> structure
            h = GearNet layer k over the graph with token nodes (token edges: own relation)
            x[token] = structure_linears[k](h[token])     structure -> sequence

Outputs: ``node_feature [N, C + sum(C_g)]`` = final-LayerNorm ESM state of each residue ++ all
GNN layers' residue states; ``graph_feature [B, same]`` = mean of the former ++ sum of the latter.

Fixes of the original implementation (``kalifadan/FusionProt``):

- the token sits right before each protein's own EOS (the original inserts it before the last
  *padded* column, i.e. after EOS and padding for all but the longest protein of a batch);
- token edges have their own relation (the original gives them relation 1, shared with
  sequential offset -1);
- the token, the input embedding and all exchange linears are trainable and in the optimiser's
  parameter groups (:meth:`FusionProt.param_groups`; the original's groups omit them);
- every exchange goes through its ``seq_linears[k]`` (the original feeds the raw ESM state at the
  first exchange, which only works when both widths are equal);
- any ESM depth and ``inject_step`` (the original hard-wires 33 blocks and 6 GNN layers).
"""

from __future__ import annotations

import torch
from torch import nn

from tertiary.constants import RESTYPES
from tertiary.data.graph import NUM_RESIDUE_TYPES, ResidueGraph, add_virtual_nodes
from tertiary.errors import InputError
from tertiary.models.esm import ESM2, Alphabet, insert_before_eos
from tertiary.models.fusionprot.config import FusionProtConfig
from tertiary.models.gearnet import GearNet, mean_readout, sum_readout


def esm_token_map(alphabet: Alphabet | None = None) -> torch.Tensor:
    """``[21]`` long: ESM token id of each residue type (AlphaFold order; 20 = unknown -> ``X``)."""
    alphabet = alphabet or Alphabet()
    return torch.tensor([alphabet.index[r] for r in RESTYPES] + [alphabet.index["X"]], dtype=torch.long)


def graph_tokens(graph: ResidueGraph, token_map: torch.Tensor, cls_idx: int, eos_idx: int, pad_idx: int):
    """ESM tokens of every protein of a graph batch.

    Returns:
        ``tokens [B, L_max + 2]`` (``<cls> residues <eos>``, right-padded) and ``column [N]``, the
        token column of each residue (its row is ``graph.node2graph``).
    """
    b = graph.batch_size
    lengths = graph.num_nodes
    start = torch.cumsum(lengths, 0) - lengths
    column = torch.arange(graph.num_node, device=lengths.device) - start[graph.node2graph] + 1
    tokens = torch.full((b, int(lengths.max()) + 2), pad_idx, dtype=torch.long, device=lengths.device)
    tokens[:, 0] = cls_idx
    tokens[graph.node2graph, column] = token_map.to(lengths.device)[graph.residue_type]
    tokens[torch.arange(b, device=lengths.device), lengths + 1] = eos_idx
    return tokens, column


def _check_lengths(graph: ResidueGraph, limit: int) -> None:
    too_long = graph.num_nodes > limit
    if bool(too_long.any()):
        idx = int(too_long.nonzero()[0, 0])
        raise InputError(
            f"protein {idx} of the batch has {int(graph.num_nodes[idx])} residues, more than the ESM limit of "
            f"{limit}; truncate it first (max_length)"
        )


class FusionProt(nn.Module):
    """ESM-2 + GearNet fused through a learnable 3D token.

    Args:
        config: architecture.
        esm: an ESM-2 model to use (e.g. loaded with :func:`tertiary.models.esm.load_esm`);
            default: a freshly initialised one of ``config.esm``.

    ``forward(graph)`` takes a batched :class:`~tertiary.data.graph.ResidueGraph` built with
    ``config.graph`` (or its :meth:`~ResidueGraph.as_dict`) and returns ``node_feature [N, D]``
    and ``graph_feature [B, D]`` with ``D = config.output_dim``.
    """

    def __init__(self, config: FusionProtConfig, esm: ESM2 | None = None, seed: int = 0) -> None:
        super().__init__()
        if esm is not None and esm.config.num_layers != config.esm.num_layers:
            raise InputError(f"ESM model has {esm.config.num_layers} layers, config says {config.esm.num_layers}")
        if esm is not None and esm.config.embed_dim != config.esm.embed_dim:
            raise InputError(f"ESM model width {esm.config.embed_dim} differs from the config's {config.esm.embed_dim}")
        self.config = config
        self.esm = esm if esm is not None else ESM2(config.esm, seed=seed)
        self.gearnet = GearNet(config.gearnet_config())
        c, c_in = config.esm.embed_dim, config.structure_input_dim
        gen = torch.Generator().manual_seed(seed)
        self.structure_token = nn.Parameter(torch.randn(c, generator=gen) * 0.01)
        self.structure_embed = nn.Linear(NUM_RESIDUE_TYPES, c_in)
        self.structure_embed_norm = nn.BatchNorm1d(c_in)
        dims = self.gearnet.dims
        self.seq_linears = nn.ModuleList(nn.Linear(c, dims[k]) for k in range(len(dims) - 1))
        self.structure_linears = nn.ModuleList(nn.Linear(dims[k + 1], c) for k in range(len(dims) - 1))
        self.register_buffer("token_map", esm_token_map(), persistent=False)
        if config.freeze_esm:
            self.esm.requires_grad_(False)

    @property
    def output_dim(self) -> int:
        return self.config.output_dim

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser groups: ESM parameters at ``lr * esm_lr_ratio``, everything else at ``lr``
        (token, input embedding, exchange linears and GNN included)."""
        esm_params = {id(p) for p in self.esm.parameters()}
        esm = [p for p in self.esm.parameters() if p.requires_grad]
        rest = [p for p in self.parameters() if id(p) not in esm_params and p.requires_grad]
        groups = [{"params": rest, "lr": lr}]
        if esm:
            groups.append({"params": esm, "lr": lr * self.config.esm_lr_ratio})
        return groups

    def forward(self, graph: ResidueGraph | dict, chunk_size: int | None = None) -> dict[str, torch.Tensor]:
        if isinstance(graph, dict):
            graph = ResidueGraph.from_dict(graph)
        cfg = self.config
        if graph.num_relation + 1 != self.gearnet.config.num_relation:
            raise InputError(
                f"graph has {graph.num_relation} relations; FusionProt expects {self.gearnet.config.num_relation - 1} "
                f"(build it with the model's GraphConfig)"
            )
        _check_lengths(graph, cfg.esm.max_residues)
        esm_cfg = cfg.esm
        tokens, column = graph_tokens(graph, self.token_map, esm_cfg.cls_idx, esm_cfg.eos_idx, esm_cfg.padding_idx)
        x, padding = self.esm.embed(tokens)
        x, padding, token_pos = insert_before_eos(x, padding, self.structure_token.to(x.dtype))
        attn_mask = padding if bool(padding.any()) else None
        rows = torch.arange(graph.batch_size, device=x.device)

        tgraph = add_virtual_nodes(graph)
        n = graph.num_node
        h = self.structure_embed_norm(self.structure_embed(graph.residue_one_hot()))
        h = torch.cat([h, h.new_zeros(graph.batch_size, h.shape[-1])])
        hiddens = []
        exchange = {layer: k for k, layer in enumerate(cfg.injection_layers)}
        for i, block in enumerate(self.esm.layers):
            x, _ = block(x, attn_mask, False, chunk_size)
            k = exchange.get(i)
            if k is None:
                continue
            token_in = self.seq_linears[k](x[rows, token_pos])
            h = torch.cat([h[:n], token_in])
            h, _ = self.gearnet.layer(k, h, tgraph.edge_index, tgraph.edge_relation)
            hiddens.append(h)
            x = x.index_put((rows, token_pos), self.structure_linears[k](h[n:]))
        x = self.esm.final_norm(x)

        seq_node = x[graph.node2graph, column]  # residues keep their columns: the token follows them
        struct_node = torch.cat([hh[:n] for hh in hiddens], dim=-1)
        seq_graph = mean_readout(seq_node, graph.node2graph, graph.batch_size)
        struct_graph = sum_readout(struct_node, graph.node2graph, graph.batch_size)
        return {
            "node_feature": torch.cat([seq_node, struct_node], dim=-1),
            "graph_feature": torch.cat([seq_graph, struct_graph], dim=-1),
        }
