"""AlphaFold2 (Jumper et al. 2021): configuration, Evoformer trunk, structure module, heads, weights."""

from tertiary.models.alphafold.config import AlphaFoldConfig

__all__ = ["AlphaFoldConfig"]
