import torch

from tertiary.models.esm.contact import ContactHead


def _naive(head, tokens, attn):
    """fair-esm's recipe written out: zero EOS, drop BOS / last, symmetrise, APC, regression."""
    keep = (tokens != head.eos_idx).double()
    a = attn.double() * (keep[:, None, :] * keep[:, :, None])[:, None, None]
    a = a[..., 1:-1, 1:-1]
    b, layers, heads, n, _ = a.shape
    a = a.reshape(b, layers * heads, n, n)
    a = a + a.transpose(-1, -2)
    a = a - a.sum(-1, keepdim=True) * a.sum(-2, keepdim=True) / a.sum((-1, -2), keepdim=True)
    w, bias = head.regression.weight.double(), head.regression.bias.double()
    return torch.sigmoid(a.permute(0, 2, 3, 1) @ w.T + bias).squeeze(-1)


def test_factorised_head_equals_explicit_recipe():
    g = torch.Generator().manual_seed(0)
    head = ContactHead(2 * 3, eos_idx=2, padding_idx=1).double()
    torch.nn.init.normal_(head.regression.weight, generator=g)
    tokens = torch.tensor([[0, 5, 6, 7, 8, 9, 2], [0, 5, 6, 7, 2, 1, 1]])
    attn = torch.rand(2, 2, 3, 7, 7, generator=g, dtype=torch.float64).softmax(-1)
    pad = tokens == 1
    attn = attn.masked_fill(pad[:, None, None, :, None] | pad[:, None, None, None, :], 0.0)
    out = head(tokens, attn)
    assert out.shape == (2, 5, 5)
    torch.testing.assert_close(out, _naive(head, tokens, attn), rtol=1e-12, atol=1e-12)
