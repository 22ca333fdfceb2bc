"""GearNet configuration (frozen dataclass with named presets)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from tertiary.data.graph import NUM_RESIDUE_TYPES, GraphConfig
from tertiary.errors import ConfigError

_PRESETS: dict[str, dict[str, Any]] = {
    # GearNet of Zhang et al. 2023 (TorchDrug config/downstream/EC/gearnet.yaml)
    "gearnet": {},
    # GearNet-Edge: edge features + angle-binned line graph (config/downstream/EC/gearnet_edge.yaml)
    "gearnet_edge": {"edge_message": True, "graph": GraphConfig(edge_features=True)},
    # a tiny model for tests and smoke runs
    "tiny": {"hidden_dims": (16, 16, 16)},
}


@dataclass(frozen=True)
class GearNetConfig:
    """GearNet hyper-parameters.

    Attributes:
        input_dim: node input width (21 = residue one-hot).
        hidden_dims: output width of each layer.
        graph: how the residue graph is built (fixes the number of relations).
        edge_message: GearNet-Edge: run a relational convolution over the spatial line graph
            (``num_angle_bin`` relations) on edge features and add its messages to the nodes.
        num_angle_bin: angle bins of the line graph.
        short_cut: residual connection when a layer keeps the width.
        batch_norm: batch norm inside each convolution and after the short cut (as TorchDrug).
        concat_hidden: node features are all layers' outputs concatenated (else the last).
        readout: ``sum`` or ``mean`` over each protein's nodes.
        token_relation: graphs carry one more relation, the edges of a virtual node
            (:func:`~tertiary.data.graph.add_virtual_nodes`; FusionProt's 3D token).
    """

    input_dim: int = NUM_RESIDUE_TYPES
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512, 512, 512)
    graph: GraphConfig = field(default_factory=GraphConfig)
    edge_message: bool = False
    num_angle_bin: int = 8
    short_cut: bool = True
    batch_norm: bool = True
    concat_hidden: bool = True
    readout: str = "sum"
    token_relation: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_dims", tuple(int(d) for d in self.hidden_dims))
        if not self.hidden_dims or min(self.hidden_dims) <= 0:
            raise ConfigError(f"gearnet.hidden_dims must be positive widths, got {self.hidden_dims}")
        if self.readout not in ("sum", "mean"):
            raise ConfigError(f"gearnet.readout must be 'sum' or 'mean', got {self.readout!r}")
        if self.edge_message and not self.graph.edge_features:
            raise ConfigError("gearnet.edge_message needs graph.edge_features = true")
        if self.num_angle_bin <= 0:
            raise ConfigError(f"gearnet.num_angle_bin must be positive, got {self.num_angle_bin}")

    @property
    def num_relation(self) -> int:
        return self.graph.num_relation + int(self.token_relation)

    @property
    def output_dim(self) -> int:
        """Width of node and graph features."""
        return sum(self.hidden_dims) if self.concat_hidden else self.hidden_dims[-1]

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GearNetConfig:
        """Named preset (``gearnet``, ``gearnet_edge``, ``tiny``) with optional overrides."""
        if name not in _PRESETS:
            raise ConfigError(f"unknown GearNet preset {name!r}; choose from {sorted(_PRESETS)}")
        return replace(cls(**_PRESETS[name]), **overrides)
