import pytest
import torch

from tertiary.errors import InputError, MissingDependencyError
from tertiary.nn import fused_cpu
from tertiary.nn.attention import attention, attention_weights, modulated_neighbour_attention


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


def _graph(n=30, m=40, k=7, heads=3, dk=5, dv=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, heads, dk, generator=g)
    keys, values = torch.randn(m, heads, dk, generator=g), torch.randn(m, heads, dv, generator=g)
    table_k, table_v = torch.randn(11, dk, generator=g), torch.randn(11, dv, generator=g)
    scale_index = torch.randint(0, 11, (n, k), generator=g)
    nbr = torch.randint(0, m, (n, k), generator=g)
    valid = torch.rand(n, k, generator=g) > 0.3
    valid[3] = False  # a node without neighbours
    bias = torch.randn(n, heads, generator=g)
    return q, keys, values, table_k, table_v, scale_index, nbr, valid, bias


def _naive_graph(q, keys, values, key_scale, value_scale, nbr, valid, bias):
    n, k = nbr.shape
    out = torch.empty(n, q.shape[1], values.shape[-1], dtype=torch.float64)
    for i in range(n):
        kj = keys[nbr[i]].double() * key_scale[i, :, None, :].double()  # [K, H, dk]
        vj = values[nbr[i]].double() * value_scale[i, :, None, :].double()
        logits = (kj * q[i].double()).sum(-1) + bias[i].double()  # [K, H]
        if valid[i].any():
            logits[~valid[i]] = -torch.inf
        else:
            logits[:] = 0.0  # no neighbour: uniform average (callers mask such nodes)
        out[i] = (torch.softmax(logits, 0).unsqueeze(-1) * vj).sum(0)
    return out.float()


@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=pytest.mark.skipif(
    not fused_cpu.available(), reason="numba not installed"))])
@pytest.mark.parametrize("chunk", [None, 3 * 7 * 3 * 9])
def test_modulated_neighbour_attention_matches_naive(fused, chunk):
    q, keys, values, tk, tv, rows, nbr, valid, bias = _graph()
    want = _naive_graph(q, keys, values, tk[rows], tv[rows], nbr, valid, bias)
    with torch.no_grad():
        tables = modulated_neighbour_attention(q, keys, values, tk, tv, nbr, valid, bias, scale_index=rows,
                                               chunk_elements=chunk, fused=fused)
        expanded = modulated_neighbour_attention(q, keys, values, tk[rows], tv[rows], nbr, valid, bias,
                                                 chunk_elements=chunk, fused=fused)
    torch.testing.assert_close(tables, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(expanded, want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not fused_cpu.available(), reason="numba not installed")
def test_fused_kernel_gradients_match_pytorch():
    """The numba backward kernel gives PyTorch's gradients for every float input."""
    inputs = _graph()
    q, keys, values, tk, tv, rows, nbr, valid, bias = inputs
    grads = {}
    for fused in (False, True):
        leaves = [t.clone().requires_grad_(True) for t in (q, keys, values, tk, tv, bias)]
        lq, lk, lv, ltk, ltv, lb = leaves
        out = modulated_neighbour_attention(lq, lk, lv, ltk, ltv, nbr, valid, lb, scale_index=rows, fused=fused)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads[fused] = [t.grad for t in leaves]
    for plain, fast in zip(grads[False], grads[True]):
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    assert grads[True][3].abs().sum() > 0  # the key-scale table gets a gradient


@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=pytest.mark.skipif(
    not fused_cpu.available(), reason="numba not installed"))])
def test_split_scale_tables_read_as_their_concatenation(fused):
    """Pairs of tables (rows of the second follow the first) give the result and gradients of
    the concatenated table, to every table of the pair."""
    q, keys, values, tk, tv, rows, nbr, valid, bias = _graph()
    cut = tk.shape[0] // 3
    results = []
    for split in (None, "both", "keys"):  # "keys": a pair for the keys, one table for the values
        ltk, ltv = tk.clone().requires_grad_(True), tv.clone().requires_grad_(True)
        key_scale = (ltk[:cut], ltk[cut:]) if split else ltk
        value_scale = (ltv[:cut], ltv[cut:]) if split == "both" else ltv
        out = modulated_neighbour_attention(q, keys, values, key_scale, value_scale, nbr, valid, bias,
                                            scale_index=rows, fused=fused)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), ltk.grad, ltv.grad))
    for pairs in results[1:]:
        for whole, pair in zip(results[0], pairs):
            torch.testing.assert_close(pair, whole, rtol=1e-5, atol=1e-6)
    assert results[1][1][:cut].abs().sum() > 0 and results[1][1][cut:].abs().sum() > 0
    with pytest.raises(InputError, match="scale_index"):
        modulated_neighbour_attention(q, keys, values, (tk, tk), tv, nbr, valid, bias, fused=fused)


def test_fused_kernel_rejects_other_dtypes():
    q, keys, values, tk, tv, rows, nbr, valid, bias = (
        t.double() if t.is_floating_point() else t for t in _graph())
    out = modulated_neighbour_attention(q, keys, values, tk, tv, nbr, valid, bias, scale_index=rows)
    assert out.dtype == torch.float64  # PyTorch path
    if fused_cpu.available():
        with pytest.raises(InputError, match="float32"):
            modulated_neighbour_attention(q, keys, values, tk, tv, nbr, valid, bias, scale_index=rows, fused=True)


def test_fused_kernel_without_numba_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(fused_cpu, "available", lambda: False)
    q, keys, values, tk, tv, rows, nbr, valid, bias = _graph()
    with torch.no_grad():
        auto = modulated_neighbour_attention(q, keys, values, tk, tv, nbr, valid, bias, scale_index=rows)
        assert auto.shape == (30, 3, 4)  # falls back to PyTorch
        with pytest.raises(MissingDependencyError, match="numba"):
            modulated_neighbour_attention(q, keys, values, tk, tv, nbr, valid, bias, scale_index=rows, fused=True)


def test_a_numba_that_does_not_import_counts_as_absent(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "numba":
            raise ImportError("numba needs another numpy")
        return real_import(name, *args, **kwargs)

    fused_cpu.available.cache_clear()
    monkeypatch.setattr(builtins, "__import__", broken)
    try:
        assert fused_cpu.available() is False
    finally:
        monkeypatch.undo()
        fused_cpu.available.cache_clear()


@pytest.mark.skipif(not fused_cpu.available(), reason="numba not installed")
def test_fused_softmax_with_logits_far_apart():
    """Logits 100s apart (the kernel's own exp floors exponents at -87) and NaN logits give
    PyTorch's answer: negligible weights, and NaN where PyTorch has NaN."""
    q, keys, values, tk, tv, rows, nbr, valid, bias = _graph()
    q = q * 40.0
    want = _naive_graph(q, keys, values, tk[rows], tv[rows], nbr, valid, bias)
    with torch.no_grad():
        got = modulated_neighbour_attention(q, keys, values, tk, tv, nbr, valid, bias, scale_index=rows, fused=True)
        bias_nan = bias.clone()
        bias_nan[0, 1] = float("nan")
        nan = modulated_neighbour_attention(q, keys, values, tk, tv, nbr, valid, bias_nan, scale_index=rows, fused=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    assert nan[0, 1].isnan().all() and not nan[1:].isnan().any()
