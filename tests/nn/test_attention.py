import pytest
import torch

from tertiary.errors import InputError
from tertiary.nn.attention import attention, attention_weights


def _naive(q, k, v, bias, mask):
    logits = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + bias
    logits = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, -1) @ v


@pytest.mark.parametrize("chunk", [None, 1, 3, 100])
def test_matches_naive_with_bias_mask_and_chunks(chunk):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 5, 4, 7, 8, generator=g, dtype=torch.float64) for _ in range(3))
    bias = torch.randn(2, 1, 4, 7, 7, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 5, 1, 1, 7, generator=g) > 0.3
    mask[..., 0] = True
    out = attention(q, k, v, biases=[bias], mask=mask, chunk_size=chunk)
    torch.testing.assert_close(out, _naive(q, k, v, bias, mask), rtol=1e-10, atol=1e-10)
    w = attention_weights(q, k, biases=[bias], mask=mask)
    torch.testing.assert_close(w @ v, out, rtol=1e-10, atol=1e-10)


def test_bad_inputs_raise_tertiary_errors():
    q = torch.randn(1, 2, 3, 4)
    with pytest.raises(InputError):
        attention(q, torch.randn(1, 2, 3, 5), torch.randn(1, 2, 3, 4))
    with pytest.raises(InputError):
        attention(q, q, q, mask=torch.ones(1, 1, 3, 3))
    with pytest.raises(InputError):
        attention(q, q, q, chunk_size=0)
