"""ESM-2 against fair-esm 2.0.0 outputs stored in ``$TERTIARY_REFS/esm`` (see its README).

Tolerances: the README measured fair-esm's own float32-vs-float64 round-off on this batch at
1.9e-5 (logits), <= 4.5e-6 (representations), 1.5e-6 (attentions), 4.0e-7 (contacts); we allow a
few times that: ``atol=1e-4`` on logits and ``2e-5`` on representations / attentions / contacts.
Every dimension comes from ``meta.json``. Comparisons are at non-pad positions, except where
fair-esm promises values at padding (zero ``representations_0`` and attention rows / columns).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import open_refs, require
from safetensors.torch import save_file

from tertiary.models.esm import Alphabet, load_esm, load_fair_esm_checkpoint, load_hf, save_esm

LOGITS_ATOL = 1e-4
ATOL = 2e-5
FORMATS = ("fair_esm_pt", "fair_esm_safetensors", "huggingface", "tertiary")


@pytest.fixture(scope="module")
def refs() -> Path:
    return open_refs("esm")


@pytest.fixture(scope="module")
def meta(refs: Path) -> dict:
    return json.loads(require(refs / "meta.json").read_text())


@pytest.fixture(scope="module")
def batch(refs: Path) -> dict[str, np.ndarray]:
    with np.load(require(refs / "outputs" / "batch.npz")) as data:
        return dict(data)


@pytest.fixture(scope="module")
def models(refs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    weights = refs / "weights"
    out = {
        "fair_esm_pt": load_esm(require(weights / "esm2_small.pt")),
        "fair_esm_safetensors": load_esm(require(weights / "esm2_small.safetensors")),
        "huggingface": load_esm(require(weights / "hf" / "model.safetensors").parent),
    }
    folder = save_esm(out["fair_esm_pt"], tmp_path_factory.mktemp("esm_tertiary"))
    out["tertiary"] = load_esm(folder)
    return out


@pytest.fixture(scope="module")
def batch_outputs(models: dict, batch: dict, meta: dict) -> dict:
    tokens = torch.from_numpy(batch["tokens"])
    layers = range(meta["model"]["num_layers"] + 1)
    with torch.no_grad():
        return {
            name: model(tokens, repr_layers=layers, need_head_weights=True, return_contacts=True)
            for name, model in models.items()
        }


def _lengths(tokens: np.ndarray, meta: dict) -> np.ndarray:
    return (tokens != meta["alphabet"]["padding_idx"]).sum(1)


@pytest.mark.parametrize("fmt", FORMATS)
def test_architecture_read_from_checkpoint(models: dict, meta: dict, fmt: str) -> None:
    cfg, dims = models[fmt].config, meta["model"]
    assert (cfg.num_layers, cfg.embed_dim, cfg.attention_heads) == (
        dims["num_layers"],
        dims["embed_dim"],
        dims["attention_heads"],
    )
    assert (cfg.ffn_embed_dim, cfg.head_dim, cfg.token_dropout) == (
        dims["ffn_embed_dim"],
        dims["head_dim"],
        dims["token_dropout"],
    )
    assert cfg.vocab_size == meta["alphabet"]["size"]
    assert cfg.layer_norm_eps == dims["layer_norm_eps"]
    expected = torch.tensor(dims["rotary_inv_freq"], dtype=torch.float32)
    for layer in models[fmt].layers:  # loaded from the file (fp16-rounded), not recomputed
        assert torch.equal(layer.attention.rotary.inv_freq, expected)
    assert models[fmt].contact_head_loaded and models[fmt].lm_head_loaded


@pytest.mark.parametrize("fmt", FORMATS)
def test_batch_logits_and_representations(batch_outputs: dict, batch: dict, meta: dict, fmt: str) -> None:
    out = batch_outputs[fmt]
    valid = batch["tokens"] != meta["alphabet"]["padding_idx"]
    np.testing.assert_allclose(out["logits"].numpy()[valid], batch["logits"][valid], atol=LOGITS_ATOL, rtol=0)
    for layer in range(meta["model"]["num_layers"] + 1):
        ours = out["representations"][layer].numpy()
        ref = batch[f"representations_{layer}"]
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours[valid], ref[valid], atol=ATOL, rtol=0, err_msg=f"layer {layer}")
    assert np.all(out["representations"][0].numpy()[~valid] == 0.0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_batch_attentions_and_contacts(batch_outputs: dict, batch: dict, meta: dict, fmt: str) -> None:
    out = batch_outputs[fmt]
    att = out["attentions"].numpy()
    assert att.shape == batch["attentions"].shape
    np.testing.assert_allclose(att, batch["attentions"], atol=ATOL, rtol=0)  # includes zeroed pads
    contacts = out["contacts"].numpy()
    assert contacts.shape == batch["contacts"].shape
    for i, n in enumerate(_lengths(batch["tokens"], meta)):
        res = n - 2
        np.testing.assert_allclose(
            contacts[i, :res, :res], batch["contacts"][i, :res, :res], atol=ATOL, rtol=0, err_msg=f"sequence {i}"
        )


def test_each_sequence_alone(refs: Path, models: dict, meta: dict) -> None:
    with np.load(require(refs / "outputs" / "single.npz")) as data:
        single = dict(data)
    model = models["fair_esm_pt"]
    num_seqs = len(json.loads(require(refs / "inputs" / "batch.json").read_text())["sequences"])
    layers = range(meta["model"]["num_layers"] + 1)
    for i in range(num_seqs):
        tokens = torch.from_numpy(single[f"seq{i}_tokens"])
        with torch.no_grad():
            out = model(tokens, repr_layers=layers, return_contacts=True)
        np.testing.assert_allclose(out["logits"].numpy(), single[f"seq{i}_logits"], atol=LOGITS_ATOL, rtol=0)
        for layer in layers:
            np.testing.assert_allclose(
                out["representations"][layer].numpy(), single[f"seq{i}_representations_{layer}"], atol=ATOL, rtol=0
            )
        np.testing.assert_allclose(out["contacts"].numpy(), single[f"seq{i}_contacts"], atol=ATOL, rtol=0)


def test_tokenizer_matches_batch_converter(refs: Path, meta: dict) -> None:
    alphabet = Alphabet()
    assert list(alphabet.tokens) == meta["alphabet"]["all_toks"]
    for name in ("padding_idx", "cls_idx", "eos_idx", "unk_idx", "mask_idx"):
        assert getattr(alphabet, name) == meta["alphabet"][name]
    info = json.loads(require(refs / "inputs" / "batch.json").read_text())
    tokens = alphabet.batch([s["model_input"] for s in info["sequences"]])
    expected = np.load(require(refs / "inputs" / "batch_tokens.npy"))
    np.testing.assert_array_equal(tokens.numpy(), expected)
    for s in info["sequences"]:
        assert alphabet.encode(s["model_input"]) == s["token_ids"]


def test_long_sequence(refs: Path, models: dict) -> None:
    info = json.loads(require(refs / "inputs" / "long_sequence.json").read_text())
    with np.load(require(refs / "outputs" / "long.npz")) as data:
        long = dict(data)
    tokens = Alphabet().batch([info["sequence"]])
    np.testing.assert_array_equal(tokens.numpy(), long["tokens"])
    assert tokens.shape[1] == info["num_tokens"] == info["num_residues"] + 2
    model = models["fair_esm_pt"]
    assert info["num_residues"] <= model.config.max_residues  # within the trained length: run whole
    with torch.no_grad():
        out = model(tokens, long_mode="error")
    assert out["long_sequences"]["rows"] == []
    np.testing.assert_allclose(out["logits"].numpy(), long["logits"], atol=LOGITS_ATOL, rtol=0)


def test_long_sequence_over_a_smaller_limit_is_reported(refs: Path, models: dict) -> None:
    """With a 512-residue limit the long case must be refused, truncated or windowed, and said so."""
    import dataclasses

    from tertiary.errors import InputError

    info = json.loads(require(refs / "inputs" / "long_sequence.json").read_text())
    with np.load(require(refs / "outputs" / "long.npz")) as data:
        ref_logits = data["logits"][0]
    model = load_esm(refs / "weights" / "esm2_small.pt")
    model.config = dataclasses.replace(model.config, max_residues=512)
    tokens = Alphabet().batch([info["sequence"]])
    with pytest.raises(InputError, match="935 residues"):
        model(tokens)
    with torch.no_grad():
        cut = model(tokens, long_mode="truncate")
        win = model(tokens, long_mode="window", window_overlap=256)
    assert cut["long_sequences"]["rows"] == [0] and cut["tokens"].shape == (1, 514)
    assert win["long_sequences"]["windows"] == {0: [0, 256, 423]}
    assert win["logits"].shape == (1, info["num_tokens"], 33)
    # windowed logits approximate the whole-sequence ones (same weights, local context)
    agree = (win["logits"][0].argmax(-1).numpy() == ref_logits.argmax(-1)).mean()
    assert agree > 0.5


def _write_layout(layout: dict, path: Path, save) -> None:  # type: ignore[no-untyped-def]
    save({k: torch.zeros(v["shape"]) for k, v in layout.items()}, path)


def test_real_8m_key_layouts_load(refs: Path, tmp_path: Path) -> None:
    """The derived key layouts of esm2_t6_8M (fair-esm .pt, HF current and legacy) all load."""
    import argparse

    layout = json.loads(require(refs / "key_layout" / "esm2_t6_8M_UR50D.json").read_text())
    ck = layout["fair_esm_checkpoint"]
    fields = {**ck["cfg_model_fields_fair_esm_reads"], **ck["cfg_model_fields_derived"]}
    state = {k: torch.zeros(v["shape"]) for k, v in layout["fairseq_checkpoint_model"].items()}
    for tied, target in ck["tied"].items():
        state[tied] = state[target]
    torch.save({"model": state, "cfg": {"model": argparse.Namespace(**fields)}}, tmp_path / "esm2_t6_8M_UR50D.pt")
    _write_layout(layout["contact_regression_file_model"], tmp_path / "esm2_t6_8M_UR50D-contact-regression.pt",
                  lambda d, p: torch.save({"model": d}, p))
    model = load_fair_esm_checkpoint(tmp_path / "esm2_t6_8M_UR50D.pt")
    assert (model.config.num_layers, model.config.embed_dim, model.config.attention_heads) == (
        fields["encoder_layers"],
        fields["encoder_embed_dim"],
        fields["encoder_attention_heads"],
    )
    assert model.config.ffn_embed_dim == fields["encoder_ffn_embed_dim"] and model.contact_head_loaded

    hf = layout["hf_facebook_esm2_t6_8M_UR50D"]
    for variant in ("state_dict_keys_current_transformers", "state_dict_keys_legacy_per_layer_inv_freq"):
        folder = tmp_path / variant
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "esm", **hf["config"]}))
        keys = {k: v for k, v in hf[variant].items() if k != "lm_head.decoder.weight"}
        _write_layout(keys, folder / "model.safetensors", lambda d, p: save_file(d, str(p)))
        model = load_hf(folder)
        assert model.config.num_layers == hf["config"]["num_hidden_layers"]
        assert model.config.attention_heads == hf["config"]["num_attention_heads"]
        assert model.lm_head_loaded and model.contact_head_loaded
