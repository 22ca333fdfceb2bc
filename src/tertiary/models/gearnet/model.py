"""GearNet and GearNet-Edge (Zhang et al., "Protein Representation Learning by Geometric Structure
Pretraining", ICLR 2023), with TorchDrug's layer semantics.

Layer ``l`` (input ``h``, output ``h'``)::

    h' = ReLU(BN(W_l [sum_{j -(r)-> i} h_j]_r + W_self h_i))           relational conv, no normalisation
    (GearNet-Edge) m = line-graph conv of edge states; h' += ReLU(W_l [sum_{e=(j -(r)-> i)} m_e]_r)
    h' = h' + h                                                      short cut (same width)
    h' = BN'(h')                                                     second batch norm

Node features: all layers' outputs concatenated; graph features: their sum over each protein.
"""

from __future__ import annotations

import torch
from torch import nn

from tertiary.data.graph import LineGraph, ResidueGraph, spatial_line_graph
from tertiary.errors import InputError
from tertiary.models.gearnet.config import GearNetConfig
from tertiary.models.gearnet.conv import RelationalGraphConv, relational_sum


def sum_readout(x: torch.Tensor, node2graph: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``[N, C]`` -> ``[B, C]``: sum of each protein's nodes."""
    return x.new_zeros(batch_size, x.shape[-1]).index_add_(0, node2graph, x)


def mean_readout(x: torch.Tensor, node2graph: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``[N, C]`` -> ``[B, C]``: mean of each protein's nodes."""
    count = torch.bincount(node2graph, minlength=batch_size).clamp(min=1).to(x.dtype)
    return sum_readout(x, node2graph, batch_size) / count.unsqueeze(-1)


class GearNet(nn.Module):
    """Relational graph network over residue graphs.

    ``forward(graph, x)`` takes a :class:`~tertiary.data.graph.ResidueGraph` (one protein or a
    batch) and node inputs ``[N, input_dim]`` (usually ``graph.residue_one_hot()``) and returns
    ``{"node_feature": [N, output_dim], "graph_feature": [B, output_dim]}``.

    :meth:`layer` runs one layer (conv, optional edge messages, short cut, batch norm); FusionProt
    calls it one layer at a time.
    """

    def __init__(self, config: GearNetConfig) -> None:
        super().__init__()
        self.config = config
        dims = (config.input_dim, *config.hidden_dims)
        self.dims = dims
        r = config.num_relation
        self.layers = nn.ModuleList(
            RelationalGraphConv(dims[i], dims[i + 1], r, config.batch_norm) for i in range(len(dims) - 1)
        )
        self.batch_norms = (
            nn.ModuleList(nn.BatchNorm1d(d) for d in dims[1:]) if config.batch_norm else None
        )
        if config.edge_message:
            edge_dims = (config.graph.edge_feature_dim, *dims[:-1])
            self.edge_layers = nn.ModuleList(
                RelationalGraphConv(edge_dims[i], edge_dims[i + 1], config.num_angle_bin, config.batch_norm)
                for i in range(len(edge_dims) - 1)
            )
        else:
            self.edge_layers = None

    @property
    def output_dim(self) -> int:
        return self.config.output_dim

    def layer(
        self,
        index: int,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_relation: torch.Tensor,
        edge_state: tuple[torch.Tensor, LineGraph] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layer ``index``: ``x [N, dims[index]]`` -> ``([N, dims[index + 1]], new edge state)``.

        Args:
            edge_state: GearNet-Edge only: current edge states ``[E, D_e]`` and the line graph.
        """
        conv = self.layers[index]
        hidden = conv(x, edge_index, edge_relation)
        if self.config.short_cut and hidden.shape == x.shape:
            hidden = hidden + x
        new_edge = None
        if edge_state is not None:
            edge_x, line = edge_state
            new_edge = self.edge_layers[index](edge_x, line.edge_index, line.edge_relation)
            update = relational_sum(new_edge, edge_index, edge_relation, x.shape[0], conv.num_relation)
            hidden = hidden + torch.relu(conv.linear(update))
        if self.batch_norms is not None:
            hidden = self.batch_norms[index](hidden)
        return hidden, new_edge

    def forward(self, graph: ResidueGraph, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape != (graph.num_node, self.config.input_dim):
            raise InputError(
                f"GearNet input must be [{graph.num_node}, {self.config.input_dim}], got {tuple(x.shape)}"
            )
        if graph.num_relation != self.config.num_relation:
            raise InputError(
                f"graph has {graph.num_relation} relations, GearNet was built for {self.config.num_relation}"
            )
        edge_state = None
        if self.edge_layers is not None:
            if graph.edge_feature is None:
                raise InputError("GearNet-Edge needs graph edge features (GraphConfig(edge_features=True))")
            line = spatial_line_graph(graph, self.config.num_angle_bin)
            edge_state = (graph.edge_feature, line)
        hiddens = []
        for i in range(len(self.layers)):
            x, edge_x = self.layer(i, x, graph.edge_index, graph.edge_relation, edge_state)
            if edge_state is not None:
                edge_state = (edge_x, edge_state[1])
            hiddens.append(x)
        node = torch.cat(hiddens, dim=-1) if self.config.concat_hidden else hiddens[-1]
        readout = sum_readout if self.config.readout == "sum" else mean_readout
        return {"node_feature": node, "graph_feature": readout(node, graph.node2graph, graph.batch_size)}
