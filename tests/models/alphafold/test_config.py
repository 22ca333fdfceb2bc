import dataclasses

import pytest

from tertiary.errors import ConfigError
from tertiary.models.alphafold.config import AlphaFoldConfig


def test_presets_follow_the_published_models():
    names = AlphaFoldConfig.preset_names()
    assert len(names) == 10
    for name in names:
        c = AlphaFoldConfig.preset(name)
        assert (c.c_m, c.c_z, c.c_s, c.c_e) == (256, 128, 384, 64)
        assert c.evoformer.no_blocks == 48 and c.extra_msa.no_blocks == 4
        assert c.heads.tm_enabled == name.endswith("_ptm")
        assert c.template.enabled == (name.split("_")[1] in "12")
        assert c.data.max_extra_msa == (5120 if name.split("_")[1] in "134" else 1024)
    with pytest.raises(ConfigError, match="model_6"):
        AlphaFoldConfig.preset("model_6")


def test_dict_round_trip_and_errors_name_the_key():
    c = AlphaFoldConfig.preset("model_3_ptm")
    assert AlphaFoldConfig.from_dict(c.to_dict()) == c
    bad = c.to_dict()
    bad["evoformer"]["no_blokcs"] = 3
    with pytest.raises(ConfigError, match=r"config\.evoformer\.no_blokcs"):
        AlphaFoldConfig.from_dict(bad)
    with pytest.raises(ConfigError, match="evoformer.c_m"):
        dataclasses.replace(c, c_m=64)
    with pytest.raises(ConfigError, match="missing key"):
        AlphaFoldConfig.from_openfold({"model": {}})
