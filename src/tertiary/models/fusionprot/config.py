"""FusionProt configuration (frozen dataclass with named presets)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from tertiary.data.graph import GraphConfig
from tertiary.errors import ConfigError
from tertiary.models.esm import ESMConfig
from tertiary.models.gearnet import GearNetConfig


def _presets() -> dict[str, dict[str, Any]]:
    return {
        # the published model: ESM-2 650M + 6-layer GearNet (512), token exchange every 5 layers
        "fusionprot_650m": {"esm": ESMConfig.preset("esm2_t33_650M_UR50D")},
        # same recipe on the 8M ESM-2 (one exchange after layer 6)
        "fusionprot_8m": {"esm": ESMConfig.preset("esm2_t6_8M_UR50D"), "gnn_hidden_dim": 256},
        # tiny model for tests and smoke runs: 6-block 32-wide ESM, exchanges after blocks 3 and 5
        # (from 1), so that block 6 sees a token that carries geometry
        "tiny": {
            "esm": ESMConfig(num_layers=6, embed_dim=32, attention_heads=4, ffn_embed_dim=64),
            "gnn_hidden_dim": 16,
            "inject_step": 2,
        },
    }


@dataclass(frozen=True)
class FusionProtConfig:
    """FusionProt hyper-parameters.

    The token exchange follows the original: after transformer block ``i`` (0-based) with
    ``i > 0`` and ``i % inject_step == 0`` (blocks 6, 11, ..., 31 of 33 counting from 1), one GNN
    layer runs. There is one GNN layer per exchange, so their number is
    ``(num_layers - 1) // inject_step`` (6 for ESM-2 650M with ``inject_step = 5``).

    Attributes:
        esm: the sequence model's architecture.
        inject_step: transformer blocks between exchanges.
        gnn_hidden_dim: width of every GNN layer.
        gnn_input_dim: width of the structure input embedding (``None``: ESM width, as the original).
        graph: residue graph construction.
        short_cut, batch_norm: GearNet layer options.
        esm_lr_ratio: learning rate of the ESM parameters relative to the others (0.08 in the paper).
        freeze_esm: keep the ESM parameters fixed (token and exchange linears still train).
    """

    esm: ESMConfig = field(default_factory=lambda: ESMConfig.preset("esm2_t33_650M_UR50D"))
    inject_step: int = 5
    gnn_hidden_dim: int = 512
    gnn_input_dim: int | None = None
    graph: GraphConfig = field(default_factory=GraphConfig)
    short_cut: bool = True
    batch_norm: bool = True
    esm_lr_ratio: float = 0.08
    freeze_esm: bool = False

    def __post_init__(self) -> None:
        if self.inject_step < 1:
            raise ConfigError(f"fusionprot.inject_step must be >= 1, got {self.inject_step}")
        if not self.injection_layers:
            raise ConfigError(
                f"fusionprot: an ESM with {self.esm.num_layers} layers and inject_step {self.inject_step} has no "
                f"exchange (needs num_layers > inject_step)"
            )
        if self.graph.edge_features:
            raise ConfigError("fusionprot: edge features (GearNet-Edge) are not used by FusionProt")
        if self.esm_lr_ratio < 0:
            raise ConfigError(f"fusionprot.esm_lr_ratio must be >= 0, got {self.esm_lr_ratio}")

    @property
    def injection_layers(self) -> tuple[int, ...]:
        """0-based indices of the transformer blocks after which the token is exchanged."""
        return tuple(i for i in range(1, self.esm.num_layers) if i % self.inject_step == 0)

    @property
    def structure_input_dim(self) -> int:
        return self.gnn_input_dim or self.esm.embed_dim

    def gearnet_config(self) -> GearNetConfig:
        """The structure model: one GearNet layer per exchange, token edges as an extra relation."""
        return GearNetConfig(
            input_dim=self.structure_input_dim,
            hidden_dims=(self.gnn_hidden_dim,) * len(self.injection_layers),
            graph=self.graph,
            short_cut=self.short_cut,
            batch_norm=self.batch_norm,
            concat_hidden=True,
            readout="sum",
            token_relation=True,
        )

    @property
    def output_dim(self) -> int:
        """Width of node / graph features: ESM width + concatenated GNN layers."""
        return self.esm.embed_dim + self.gnn_hidden_dim * len(self.injection_layers)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> FusionProtConfig:
        """``fusionprot_650m``, ``fusionprot_8m`` or ``tiny``, with optional overrides."""
        presets = _presets()
        if name not in presets:
            raise ConfigError(f"unknown FusionProt preset {name!r}; choose from {sorted(presets)}")
        return replace(cls(**presets[name]), **overrides)
