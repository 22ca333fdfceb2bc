import pytest

from tertiary.errors import ConfigError
from tertiary.models.esm import TRAINED_MAX_RESIDUES, ESMConfig


def test_presets_have_released_dimensions():
    c = ESMConfig.preset("esm2_t33_650M_UR50D")
    assert (c.num_layers, c.embed_dim, c.attention_heads, c.ffn_embed_dim, c.head_dim) == (33, 1280, 20, 5120, 64)
    assert c.max_residues == TRAINED_MAX_RESIDUES == 1022
    assert ESMConfig.preset("esm2_t6_8M_UR50D", max_residues=100).max_residues == 100
    assert "esm2_t48_15B_UR50D" in ESMConfig.presets()


def test_round_trip_and_errors():
    c = ESMConfig(num_layers=2, embed_dim=32, attention_heads=4, ffn_embed_dim=64)
    assert ESMConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="x.json: unknown ESM config keys \\['bogus'\\]"):
        ESMConfig.from_dict({**c.to_dict(), "bogus": 1}, source="x.json")
    with pytest.raises(ConfigError, match="not divisible"):
        ESMConfig(embed_dim=30, attention_heads=4)
    with pytest.raises(ConfigError, match="must be even"):
        ESMConfig(embed_dim=12, attention_heads=4)
    with pytest.raises(ConfigError, match="unknown ESM-2 preset"):
        ESMConfig.preset("esm3")
    with pytest.raises(ConfigError, match="num_layers"):
        ESMConfig(num_layers=0)
