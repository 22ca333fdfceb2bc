"""Weight import / export: key and shape checks name the offending parameters; round trips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tertiary.errors import WeightsError
from tertiary.models.alphafold.config import AlphaFoldConfig
from tertiary.models.alphafold.model import AlphaFold
from tertiary.models.alphafold.weights import (
    af2_npz_map,
    convert_af2_params,
    load_model,
    save_weights,
)

def _test_model_module():  # noqa: ANN202
    from importlib import util
    from pathlib import Path

    spec = util.spec_from_file_location("_af2_test_model", Path(__file__).with_name("test_model.py"))
    module = util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _tiny(templates: bool = False) -> AlphaFoldConfig:
    module = _test_model_module()
    return module.tiny_template_config() if templates else module.tiny_config()


def _export_npz(model: AlphaFold) -> dict[str, np.ndarray]:
    """Invert the import map to write a model in the official layout (test helper)."""
    state = model.state_dict()
    arrays: dict[str, list] = {}
    shapes: dict[str, tuple] = {}
    for npz_key, (key, transform, block) in af2_npz_map(model).items():
        base = npz_key.split("@")[0]
        t = state[key].numpy()
        if transform in ("linear_weight",):
            t = t.T
        elif transform in ("heads_in", "heads_out"):
            t = t.T  # [in, H c] or [H c, out]: the reshape back is checked by the round trip below
        arrays.setdefault(base, []).append((block, t, transform))
    out = {}
    for base, items in arrays.items():
        items.sort(key=lambda x: -1 if x[0] is None else x[0])
        stacked = [t for _, t, _ in items]
        out[base] = stacked[0] if items[0][0] is None else np.stack(stacked)
        shapes[base] = out[base].shape
    return out


def test_npz_round_trip_and_key_errors() -> None:
    torch.manual_seed(0)
    model = AlphaFold(_tiny())
    arrays = _export_npz(model)
    state = convert_af2_params(arrays, model)
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), key
    broken = dict(arrays)
    gone = next(k for k in broken if "triangle_attention_ending_node" in k)
    del broken[gone]
    broken["alphafold/alphafold_iteration/evoformer/not_a_layer//weights"] = np.zeros(3)
    with pytest.raises(WeightsError) as err:
        convert_af2_params(broken, model, "x.npz")
    assert gone in str(err.value) and "not_a_layer" in str(err.value) and "x.npz" in str(err.value)


def test_wrong_block_count_and_shape_are_named(tmp_path) -> None:
    torch.manual_seed(0)
    config = _tiny()
    model = AlphaFold(config)
    path = tmp_path / "params.npz"
    np.savez(path, **_export_npz(model))
    deeper = dataclasses.replace(config, evoformer=dataclasses.replace(config.evoformer, no_blocks=3))
    with pytest.raises(WeightsError, match="stacked blocks"):
        load_model(path, deeper)
    wider = dataclasses.replace(
        config, heads=dataclasses.replace(config.heads, lddt_no_bins=config.heads.lddt_no_bins + 1)
    )
    with pytest.raises(WeightsError, match=r"aux_heads\.plddt\.linear_3"):
        load_model(path, wider)
    loaded = load_model(path, config)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_safetensors_round_trip_and_bad_files(tmp_path) -> None:
    torch.manual_seed(0)
    model = AlphaFold(_tiny())
    saved = save_weights(model, tmp_path / "tiny")
    again = load_model(saved)
    assert again.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value)
    with pytest.raises(WeightsError, match="not found"):
        load_model(tmp_path / "nothing.npz", model.config)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="corrupt.npz"):
        load_model(corrupt, model.config)
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="bad.pt"):
        load_model(bad_pt, model.config)
    with pytest.raises(WeightsError, match="config"):
        load_model(corrupt)
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(WeightsError, match="unknown parameter format"):
        load_model(tmp_path / "x.bin", model.config)


def test_openfold_state_dict_missing_and_unexpected(tmp_path) -> None:
    torch.manual_seed(0)
    model = AlphaFold(_tiny())
    state = {k.replace("msa_att_col.", "msa_att_col._msa_att.") if ".msa_att_col.layer" in k and "evoformer" in k else k: v
             for k, v in model.state_dict().items()}  # fmt: skip
    state.pop("evoformer.linear.bias")
    state["evoformer.extra.weight"] = torch.zeros(1)
    path = tmp_path / "of.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError) as err:
        load_model(path, model.config)
    assert "evoformer.linear.bias" in str(err.value) and "evoformer.extra.weight" in str(err.value)


def test_template_npz_round_trip_and_template_free_config(tmp_path, caplog) -> None:
    torch.manual_seed(0)
    model = AlphaFold(_tiny(templates=True))
    arrays = _export_npz(model)
    assert any("template_embedding/single_template_embedding/template_pair_stack" in k for k in arrays)
    state = convert_af2_params(arrays, model)
    assert set(state) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), key
    # a config without a template stack loads the same file and says what it skipped
    plain = AlphaFold(_tiny())
    with caplog.at_level("WARNING"):
        convert_af2_params(arrays, plain, "t.npz")
    assert "template parameters ignored" in caplog.text
    # a template config missing a template array names it
    broken = {k: v for k, v in arrays.items() if not k.endswith("template_projection//weights")}
    with pytest.raises(WeightsError, match="template_projection//weights"):
        convert_af2_params(broken, model, "t.npz")
    # OpenFold state dicts carry template keys one to one
    path = tmp_path / "of.pt"
    torch.save(model.state_dict(), path)
    again = load_model(path, model.config)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_every_preset_maps_its_npz_keys() -> None:
    from tertiary.models.alphafold.weights import trunk_npz_map

    for name in AlphaFoldConfig.preset_names():
        config = AlphaFoldConfig.preset(name)
        keys = {k.split("@")[0] for k in trunk_npz_map(config)}
        template_keys = {k for k in keys if "template" in k}
        has_templates = name.split("_")[1] in ("1", "2")
        assert config.template.enabled == has_templates, name
        # 71 template arrays, as in the official params_model_1*.npz / params_model_2*.npz
        assert (len(template_keys) == 71) if has_templates else not template_keys, (name, len(template_keys))
        assert config.heads.tm_enabled == name.endswith("_ptm")
