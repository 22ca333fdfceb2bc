import dataclasses
import logging

import pytest
import torch

from tertiary.errors import InputError
from tertiary.models.esm import ESM2, Alphabet, ESMConfig
from tertiary.models.esm.long_sequences import window_starts

CFG = ESMConfig(num_layers=2, embed_dim=16, attention_heads=2, ffn_embed_dim=32, max_residues=12)
LONG = "MKTAYIAKQRQISFVKSHFSRQLEERLG"  # 28 residues
SHORT = "MKVLA"


@pytest.fixture(scope="module")
def model():
    return ESM2(CFG, seed=2).eval()


def test_window_starts_cover_and_end_at_the_sequence_end():
    assert window_starts(10, 12, 6) == [0]
    assert window_starts(28, 12, 6) == [0, 6, 12, 16]
    assert window_starts(13, 12, 0) == [0, 1]


def test_error_mode_names_rows(model):
    tokens = Alphabet().batch([SHORT, LONG])
    with pytest.raises(InputError, match=r"row 1 \(28 residues\) longer than the 12 residues"):
        model(tokens)


def test_truncate_reports_and_returns_tokens(model, caplog):
    tokens = Alphabet().batch([SHORT, LONG])
    with caplog.at_level(logging.WARNING), torch.no_grad():
        out = model(tokens, long_mode="truncate", repr_layers=[2])
    assert "truncating row 1" in caplog.text
    assert out["long_sequences"] == {"mode": "truncate", "max_residues": 12, "rows": [1], "num_residues": [28]}
    cut = out["tokens"]
    assert cut.shape == (2, 14) and cut[1, -1] == 2
    with torch.no_grad():
        alone = model(Alphabet().batch([LONG[:12]]))
    torch.testing.assert_close(out["logits"][1], alone["logits"][0], atol=1e-5, rtol=0)


def test_window_mode_averages_windows(model, caplog):
    tokens = Alphabet().batch([SHORT, LONG])
    with caplog.at_level(logging.WARNING), torch.no_grad():
        out = model(tokens, long_mode="window", window_overlap=6, repr_layers=[0, 2], return_contacts=True)
        short = model(Alphabet().batch([SHORT]), repr_layers=[0, 2], return_contacts=True)
        wins = [model(Alphabet().batch([LONG[s : s + 12]]), repr_layers=[2], return_contacts=True) for s in (0, 6, 12, 16)]
    assert "windows of 12 residues" in caplog.text
    assert out["long_sequences"]["windows"] == {1: [0, 6, 12, 16]}
    assert out["logits"].shape == tokens.shape + (33,)
    torch.testing.assert_close(out["logits"][0, :7], short["logits"][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["contacts"][0, :5, :5], short["contacts"][0], atol=1e-6, rtol=0)
    logits = out["logits"][1]
    # residues 0-5 only in window 0; residue 6 in windows 0 and 1; residues 24-27 only in the last
    torch.testing.assert_close(logits[1:7], wins[0]["logits"][0, 1:7], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[7], (wins[0]["logits"][0, 7] + wins[1]["logits"][0, 1]) / 2, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[25:29], wins[3]["logits"][0, 9:13], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[0], wins[0]["logits"][0, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[29], wins[3]["logits"][0, 13], atol=1e-5, rtol=0)
    contacts = out["contacts"][1]
    assert torch.isnan(contacts[0, 27]) and not torch.isnan(contacts[0, 11])
    torch.testing.assert_close(contacts[0, 5], wins[0]["contacts"][0, 0, 5], atol=1e-6, rtol=0)


def test_window_mode_refuses_attention_maps(model):
    with pytest.raises(InputError, match="attention maps are not defined"):
        model(Alphabet().batch([LONG]), long_mode="window", need_head_weights=True)
    with pytest.raises(InputError, match="window_overlap"):
        model(Alphabet().batch([LONG]), long_mode="window", window_overlap=12)


def test_short_inputs_are_untouched_in_every_mode(model):
    tokens = Alphabet().batch([SHORT, "MKVLAGG"])
    with torch.no_grad():
        outs = [model(tokens, long_mode=m) for m in ("error", "truncate", "window")]
    for out in outs:
        assert out["long_sequences"]["rows"] == []
        assert torch.equal(out["logits"], outs[0]["logits"])


def test_limit_is_a_config_field():
    model = ESM2(dataclasses.replace(CFG, max_residues=40), seed=2).eval()
    assert model(Alphabet().batch([LONG]))["long_sequences"]["rows"] == []
