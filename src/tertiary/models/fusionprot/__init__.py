"""FusionProt: ESM-2 and GearNet fused through a learnable 3D token; function-prediction tasks."""

from tertiary.models.fusionprot.config import FusionProtConfig
from tertiary.models.fusionprot.model import FusionProt, esm_token_map, graph_tokens

__all__ = ["FusionProt", "FusionProtConfig", "esm_token_map", "graph_tokens"]
