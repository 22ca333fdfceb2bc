import pytest
import torch

from tertiary.errors import InputError
from tertiary.models.esm import ESM2, Alphabet, ESMConfig, insert_before_eos

CFG = ESMConfig(num_layers=2, embed_dim=32, attention_heads=4, ffn_embed_dim=64)
SEQS = ["MKTAYIAKQRQISFVKSHFSRQ", "MSE<mask>LKG", "ACDEFGHIKLMNPQRSTVWY"]


@pytest.fixture(scope="module")
def model():
    return ESM2(CFG, seed=1).eval()


@pytest.fixture(scope="module")
def tokens():
    return Alphabet().batch(SEQS)


def test_seeded_init_is_reproducible():
    a, b = ESM2(CFG, seed=3), ESM2(CFG, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.embed_tokens.weight, ESM2(CFG, seed=4).embed_tokens.weight)


def test_batch_equals_each_sequence_alone(model, tokens):
    alphabet = Alphabet()
    with torch.no_grad():
        out = model(tokens, repr_layers=[0, 1, 2], return_contacts=True)
        for i, seq in enumerate(SEQS):
            alone = model(alphabet.batch([seq]), repr_layers=[0, 1, 2], return_contacts=True)
            n = alone["logits"].shape[1]
            torch.testing.assert_close(out["logits"][i, :n], alone["logits"][0], atol=1e-5, rtol=0)
            for layer in (0, 1, 2):
                torch.testing.assert_close(
                    out["representations"][layer][i, :n], alone["representations"][layer][0], atol=1e-5, rtol=0
                )
            torch.testing.assert_close(out["contacts"][i, : n - 2, : n - 2], alone["contacts"][0], atol=1e-6, rtol=0)
            torch.testing.assert_close(out["attentions"][i, ..., :n, :n], alone["attentions"][0], atol=1e-6, rtol=0)


def test_attentions_are_distributions_with_zero_padding(model, tokens):
    with torch.no_grad():
        att = model(tokens, need_head_weights=True)["attentions"]
    assert att.shape == (3, 2, 4, tokens.shape[1], tokens.shape[1])
    pad = tokens == 1
    assert torch.all(att[pad[:, None, None, :, None].expand_as(att)] == 0)
    assert torch.all(att[pad[:, None, None, None, :].expand_as(att)] == 0)
    sums = att.sum(-1)[~pad[:, None, None, :].expand_as(att.sum(-1))]
    torch.testing.assert_close(sums, torch.ones_like(sums))


def test_layer_by_layer_api_reproduces_forward(model, tokens):
    with torch.no_grad():
        ref = model(tokens, repr_layers=[1, 2])
        x, padding_mask = model.embed(tokens)
        for layer in model.layers:
            x, attn = layer(x, padding_mask)
            assert attn is None
        hidden, logits = model.finish(x)
    torch.testing.assert_close(logits, ref["logits"], atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden, ref["representations"][2], atol=1e-5, rtol=0)


def test_token_dropout_rescales_embeddings(model):
    tokens = Alphabet().batch(["MKLV<mask>"])  # 7 tokens, 1 mask
    x, _ = model.embed(tokens)
    assert torch.all(x[0, 5] == 0)
    scale = (1 - 0.15 * 0.8) / (1 - 1 / 7)
    torch.testing.assert_close(x[0, 1], model.embed_tokens.weight[20] * scale)


def test_chunked_attention_and_negative_repr_layers(model, tokens):
    with torch.no_grad():
        a = model(tokens, repr_layers=[-1])
        b = model(tokens, repr_layers=[2], chunk_size=4)
    torch.testing.assert_close(a["representations"][2], b["representations"][2], atol=1e-5, rtol=0)


def test_insert_before_eos_on_tokens_and_states(model, tokens):
    new_tokens, mask, pos = insert_before_eos(tokens, tokens == 1, 31)
    assert pos.tolist() == [23, 8, 21]
    for i, seq in enumerate(SEQS):
        expected = Alphabet().encode(seq)
        expected.insert(len(expected) - 1, 31)
        assert new_tokens[i, : len(expected)].tolist() == expected
        assert mask[i].tolist() == [False] * len(expected) + [True] * (new_tokens.shape[1] - len(expected))
    x, padding_mask = model.embed(tokens)
    token = torch.randn(CFG.embed_dim, requires_grad=True)
    y, new_mask, pos = insert_before_eos(x, padding_mask, token)
    assert y.shape == (3, tokens.shape[1] + 1, CFG.embed_dim)
    assert torch.equal(new_mask, mask)
    for i in range(3):
        assert torch.equal(y[i, pos[i]], token.detach())
        assert torch.equal(y[i, : pos[i]], x[i, : pos[i]]) and torch.equal(y[i, pos[i] + 1], x[i, pos[i]])
    for layer in model.layers:
        y, _ = layer(y, new_mask)
    y[torch.arange(3), pos].sum().backward()
    assert token.grad is not None and token.grad.abs().sum() > 0


def test_training_mode_backpropagates():
    model = ESM2(CFG, seed=0).train()
    out = model(Alphabet().batch(SEQS))
    out["logits"].logsumexp(-1).mean().backward()
    assert model.layers[0].attention.qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("tokens", "pattern"),
    [
        (torch.zeros(3, dtype=torch.long), r"\[B, N\] tensor"),
        (torch.zeros(1, 5), "int64"),
        (torch.tensor([[0, 40, 2]]), r"token ids must lie in \[0, 33\)"),
        (torch.tensor([[0, 2]]), "at least one row"),
    ],
)
def test_bad_tokens_raise(model, tokens, pattern):
    with pytest.raises(InputError, match=pattern):
        model(tokens)


def test_bad_options_raise(model, tokens):
    with pytest.raises(InputError, match="repr_layers entry 5"):
        model(tokens, repr_layers=[5])
    with pytest.raises(InputError, match="long_mode"):
        model(tokens, long_mode="crop")
