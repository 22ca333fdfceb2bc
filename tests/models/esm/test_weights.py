import argparse
import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from tertiary.errors import WeightsError
from tertiary.models.esm import ESM2, Alphabet, ESMConfig, load_esm, save_esm
from tertiary.models.esm.weights import fair_state_dict

CFG = ESMConfig(num_layers=2, embed_dim=32, attention_heads=4, ffn_embed_dim=64)


@pytest.fixture(scope="module")
def model():
    m = ESM2(CFG, seed=5).eval()
    with torch.no_grad():
        for p in m.parameters():  # non-trivial biases / norms so that a mapping slip shows
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return m


def _same(a, b):
    tokens = Alphabet().batch(["MKTAYIAKQR", "MSE"])
    with torch.no_grad():
        x = a(tokens, repr_layers=[1], return_contacts=True)
        y = b(tokens, repr_layers=[1], return_contacts=True)
    for key in ("logits", "contacts"):
        torch.testing.assert_close(x[key], y[key], rtol=0, atol=1e-6)
    torch.testing.assert_close(x["representations"][1], y["representations"][1], rtol=0, atol=1e-6)


def _fairseq(model):
    out = {}
    for k, v in fair_state_dict(model).items():
        if k.startswith("contact_head."):
            continue
        prefix = "encoder." if k.startswith("lm_head.") else "encoder.sentence_encoder."
        out[prefix + k] = v.clone()
    return out


def test_tertiary_format_round_trip(model, tmp_path):
    folder = save_esm(model, tmp_path / "m")
    assert json.loads((folder / "config.json").read_text())["format"] == "tertiary.esm"
    loaded = load_esm(folder)
    assert loaded.config == model.config
    _same(model, loaded)


def test_fair_esm_checkpoint_with_and_without_contact_regression(model, tmp_path):
    cfg = argparse.Namespace(encoder_layers=2, encoder_embed_dim=32, encoder_attention_heads=4, token_dropout=True)
    path = tmp_path / "esm2_tiny.pt"
    torch.save({"model": _fairseq(model), "cfg": {"model": cfg}}, path)
    alone = load_esm(path)
    assert not alone.contact_head_loaded
    with pytest.raises(WeightsError, match="contact regression"):
        alone(Alphabet().batch(["MK"]), return_contacts=True)
    reg = {k: v for k, v in fair_state_dict(model).items() if k.startswith("contact_head.")}
    torch.save({"model": reg}, tmp_path / "esm2_tiny-contact-regression.pt")
    _same(model, load_esm(path))


def test_checkpoint_config_must_agree_with_weights(model, tmp_path):
    cfg = argparse.Namespace(encoder_layers=3, encoder_embed_dim=32, encoder_attention_heads=4, token_dropout=True)
    torch.save({"model": _fairseq(model), "cfg": {"model": cfg}}, tmp_path / "esm2_x.pt")
    with pytest.raises(WeightsError, match="config says num_layers=3 but the weights have 2"):
        load_esm(tmp_path / "esm2_x.pt")


def test_missing_unexpected_and_misshapen_keys_are_named(model, tmp_path):
    state = {k: v.clone() for k, v in fair_state_dict(model).items()}
    del state["layers.1.fc2.bias"]
    state["layers.0.self_attn.bogus"] = torch.zeros(1)
    state["layers.0.final_layer_norm.weight"] = torch.zeros(31)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError) as err:
        load_esm(tmp_path / "bad.safetensors")
    msg = str(err.value)
    assert "bad.safetensors" in msg and "missing keys ['layers.1.fc2.bias']" in msg
    assert "unexpected keys ['layers.0.self_attn.bogus']" in msg
    assert "layers.0.ffn_norm.weight: file (31,) vs model (32,)" in msg


def test_missing_inv_freq_is_an_error_not_a_recomputation(model, tmp_path):
    state = {k: v.clone() for k, v in fair_state_dict(model).items() if "rot_emb" not in k or "layers.1." in k}
    save_file(state, str(tmp_path / "no_inv.safetensors"))
    with pytest.raises(WeightsError, match=r"missing keys \['layers.0.attention.rotary.inv_freq'\]"):
        load_esm(tmp_path / "no_inv.safetensors")


class _Evil:
    def __reduce__(self):
        return (print, ("executed",))


@pytest.mark.parametrize("kind", ["text", "pickle", "missing", "folder"])
def test_wrong_files_raise_weights_errors(tmp_path, kind):
    path = tmp_path / "w.pt"
    if kind == "text":
        path.write_text("not a checkpoint")
    elif kind == "pickle":
        with open(path, "wb") as fh:
            pickle.dump({"model": _Evil()}, fh, protocol=2)
    elif kind == "folder":
        path = tmp_path / "folder"
        path.mkdir()
    with pytest.raises(WeightsError, match=str(path.name)):
        load_esm(path)


def test_hf_folder_without_lm_head_has_no_logits(model, tmp_path):
    fair = fair_state_dict(model)
    hf = {"embeddings.word_embeddings.weight": fair["embed_tokens.weight"]}
    names = {"q_proj": "attention.self.query", "k_proj": "attention.self.key", "v_proj": "attention.self.value",
             "out_proj": "attention.output.dense"}
    for i in range(2):
        p = f"layers.{i}."
        for fk, hk in names.items():
            for kind in ("weight", "bias"):
                hf[f"encoder.layer.{i}.{hk}.{kind}"] = fair[f"{p}self_attn.{fk}.{kind}"]
        for kind in ("weight", "bias"):
            hf[f"encoder.layer.{i}.attention.LayerNorm.{kind}"] = fair[f"{p}self_attn_layer_norm.{kind}"]
            hf[f"encoder.layer.{i}.intermediate.dense.{kind}"] = fair[f"{p}fc1.{kind}"]
            hf[f"encoder.layer.{i}.output.dense.{kind}"] = fair[f"{p}fc2.{kind}"]
            hf[f"encoder.layer.{i}.LayerNorm.{kind}"] = fair[f"{p}final_layer_norm.{kind}"]
    for kind in ("weight", "bias"):
        hf[f"encoder.emb_layer_norm_after.{kind}"] = fair[f"emb_layer_norm_after.{kind}"]
        hf[f"pooler.dense.{kind}"] = torch.zeros(32, 32) if kind == "weight" else torch.zeros(32)  # EsmModel pooler
    hf["rotary_embeddings.inv_freq"] = fair["layers.0.self_attn.rot_emb.inv_freq"]
    hf = {k: v.clone().contiguous() for k, v in hf.items()}
    save_file(hf, str(tmp_path / "model.safetensors"))
    config = {"model_type": "esm", "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4,
              "intermediate_size": 64, "vocab_size": 33, "token_dropout": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_esm(tmp_path)
    assert not loaded.lm_head_loaded and not loaded.contact_head_loaded
    tokens = Alphabet().batch(["MKTAYIAKQR"])
    with torch.no_grad():
        out = loaded(tokens, repr_layers=[2])
        ref = model(tokens, repr_layers=[2])
    assert "logits" not in out
    torch.testing.assert_close(out["representations"][2], ref["representations"][2], rtol=0, atol=1e-6)
    (tmp_path / "config.json").write_text(json.dumps({**config, "position_embedding_type": "absolute"}))
    with pytest.raises(WeightsError, match="only ESM-2 is supported"):
        load_esm(tmp_path)


def test_load_overrides(model, tmp_path):
    folder = save_esm(model, tmp_path / "m")
    assert load_esm(folder, max_residues=100).config.max_residues == 100
    with pytest.raises(WeightsError, match="change the architecture"):
        load_esm(folder, num_layers=3)


def test_only_argparse_namespace_is_allowed_and_only_while_loading(model, tmp_path):
    """fair-esm's cfg holds an argparse.Namespace: that class, and no other, may be unpickled."""
    import pathlib
    import types

    good = argparse.Namespace(encoder_layers=2, encoder_embed_dim=32, encoder_attention_heads=4, token_dropout=True)
    torch.save({"model": _fairseq(model), "cfg": {"model": good}}, tmp_path / "esm2_ok.pt")
    assert load_esm(tmp_path / "esm2_ok.pt").config.num_layers == 2
    assert argparse.Namespace not in torch.serialization.get_safe_globals()  # allowed only during the load
    for other in (types.SimpleNamespace(encoder_layers=2), pathlib.PurePosixPath("esm2")):
        torch.save({"model": _fairseq(model), "cfg": {"model": other}}, tmp_path / "esm2_bad.pt")
        with pytest.raises(WeightsError, match=r"esm2_bad.pt: refused to unpickle"):
            load_esm(tmp_path / "esm2_bad.pt")


def test_released_name_is_looked_up_in_the_torch_hub_cache(model, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "esm2_t6_8M_UR50D.pt"
    with pytest.raises(WeightsError, match=f"no cached fair-esm checkpoint at {expected}"):
        load_esm("esm2_t6_8M_UR50D")
    expected.parent.mkdir(parents=True)
    cfg = argparse.Namespace(encoder_layers=2, encoder_embed_dim=32, encoder_attention_heads=4, token_dropout=True)
    torch.save({"model": _fairseq(model), "cfg": {"model": cfg}}, expected)  # a small model under the 8M name
    with pytest.raises(WeightsError, match="esm2_t6_8M_UR50D.pt: config says num_layers=6 but the weights have 2"):
        load_esm("esm2_t6_8M_UR50D")
