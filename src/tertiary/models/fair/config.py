"""FAIR configuration: model sizes and the sampling / training schedule.

``FairConfig.preset("fair")`` is the released checkpoint's architecture (``test_model.yml`` of the
official repository: hidden 128, 6 atom-level attention blocks with k=24 neighbours, 64 Gaussian
distance channels up to 10 A, residue kNN k=8, 2 residue transformer layers).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from tertiary.errors import ConfigError

RESIDUE_GRAPHS = ("predicted", "native")
INTERPOLATION_ORDERS = ("chain", "file")


@dataclass(frozen=True)
class FairConfig:
    """Architecture and schedule of a FAIR pocket-design model.

    Attributes:
        hidden: atom and residue embedding width.
        edge_channels: Gaussian distance channels of the atom graph (0 .. ``cutoff`` A).
        key_channels: key width of the atom attention (split over ``num_heads``).
        num_heads: heads of the atom attention and of the residue transformer.
        num_atom_blocks: atom-level attention blocks.
        atom_knn: neighbours per atom in the atom graph.
        cutoff: last Gaussian centre (A); the graph itself is kNN, not radius based.
        residue_knn: neighbours per residue in the residue graph.
        num_residue_layers: residue transformer layers.
        dropout: dropout of the residue transformer (training only).
        protein_feature_dim / ligand_feature_dim: input atom features (38 + 21, 7 + 8).
        interpolate_steps: steps of each stage (training) and of the backbone stage (generation).
        outer_iterations: self-consistent outer iterations of the full-atom stage (generation).
        refine_steps: refinement calls per outer iteration (generation).
        residue_graph: ``"predicted"`` builds the residue graph from the current (predicted)
            backbone (leak-free, default); ``"native"`` from the TRUE backbone of every residue,
            designed ones included, as the released code does.
        interpolation_order: the order in which designed residues are interpolated between
            context residues: ``"chain"`` (sorted by chain and residue number, default) or
            ``"file"`` (pocket-file order, as the released code does; wrong where a file lists
            residues out of chain order, as CrossDocked pocket files do). The ``native``
            sampling / training switch (``generate(..., residue_graph="native")``) implies ``"file"``.
    """

    hidden: int = 128
    edge_channels: int = 64
    key_channels: int = 128
    num_heads: int = 4
    num_atom_blocks: int = 6
    atom_knn: int = 24
    cutoff: float = 10.0
    residue_knn: int = 8
    num_residue_layers: int = 2
    dropout: float = 0.1
    protein_feature_dim: int = 59
    ligand_feature_dim: int = 15
    interpolate_steps: int = 5
    outer_iterations: int = 9
    refine_steps: int = 5
    residue_graph: str = "predicted"
    interpolation_order: str = "chain"

    def __post_init__(self) -> None:
        if self.residue_graph not in RESIDUE_GRAPHS:
            raise ConfigError(f"residue_graph must be one of {RESIDUE_GRAPHS}, got {self.residue_graph!r}")
        if self.interpolation_order not in INTERPOLATION_ORDERS:
            raise ConfigError(
                f"interpolation_order must be one of {INTERPOLATION_ORDERS}, got {self.interpolation_order!r}"
            )
        if self.hidden % self.num_heads or self.key_channels % self.num_heads:
            raise ConfigError(
                f"hidden ({self.hidden}) and key_channels ({self.key_channels}) must be divisible by "
                f"num_heads ({self.num_heads})"
            )
        for name in ("hidden", "edge_channels", "num_heads", "atom_knn", "residue_knn", "interpolate_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")

    @staticmethod
    def preset(name: str, **overrides: Any) -> FairConfig:
        """Named presets: ``fair`` (released checkpoint), ``fair_native`` (same, official residue
        graph), ``tiny`` (for tests)."""
        presets = {
            "fair": FairConfig(),
            "fair_native": FairConfig(residue_graph="native", interpolation_order="file"),
            "tiny": FairConfig(hidden=32, edge_channels=16, key_channels=32, num_heads=4, num_atom_blocks=2,
                               atom_knn=8, residue_knn=4, num_residue_layers=1, outer_iterations=2, refine_steps=2,
                               interpolate_steps=2),
        }
        if name not in presets:
            raise ConfigError(f"unknown FAIR preset {name!r}; choose from {sorted(presets)}")
        return replace(presets[name], **overrides) if overrides else presets[name]

    @staticmethod
    def from_dict(data: dict[str, Any], where: str = "fair config") -> FairConfig:
        """Build from a flat dict of field names (unknown keys are errors naming the key)."""
        known = {f.name for f in fields(FairConfig)}
        for key in data:
            if key not in known:
                raise ConfigError(f"{where}: unknown key {key!r}")
        return FairConfig(**data)

    @staticmethod
    def from_official_yaml(model_block: dict[str, Any], where: str = "official config") -> FairConfig:
        """Map the ``model:`` block of the official ``*_model.yml`` onto a config (native graph)."""
        enc = model_block.get("encoder", {})
        if enc.get("name", "hierGT") != "hierGT":
            raise ConfigError(f"{where}: encoder {enc.get('name')!r} is not supported (only hierGT)")
        try:
            return FairConfig(
                hidden=int(model_block.get("hidden_channels", 128)),
                edge_channels=int(enc.get("edge_channels", 64)),
                key_channels=int(enc.get("key_channels", 128)),
                num_heads=int(enc.get("num_heads", 4)),
                num_atom_blocks=int(enc.get("num_interactions", 6)),
                atom_knn=int(enc.get("knn", 24)),
                cutoff=float(enc.get("cutoff", 10.0)),
                residue_graph="native",
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
