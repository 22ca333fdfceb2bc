import pytest
import torch

from tertiary.errors import ConfigError, InputError
from tertiary.nn.primitives import Linear, Transition, chunked


@pytest.mark.parametrize("init", ["default", "relu", "normal"])
def test_linear_init_variance_follows_fan_in(init):
    g = torch.Generator().manual_seed(0)
    lin = Linear(400, 300, init=init, generator=g)
    want = (2.0 if init == "relu" else 1.0) / 400
    assert abs(lin.weight.var().item() / want - 1) < 0.05
    assert torch.count_nonzero(lin.bias) == 0
    if init != "normal":  # truncated at 2 standard deviations of the underlying normal
        assert lin.weight.abs().max() <= 2 * (want**0.5) / 0.8796256610342398 + 1e-6


def test_linear_gating_final_glorot_and_seeded():
    gate, final = Linear(4, 3, init="gating"), Linear(4, 3, init="final")
    assert torch.all(gate.weight == 0) and torch.all(gate.bias == 1)
    assert torch.all(final.weight == 0) and torch.all(final.bias == 0)
    a = Linear(8, 8, init="glorot", generator=torch.Generator().manual_seed(3))
    b = Linear(8, 8, init="glorot", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.weight, b.weight) and a.weight.abs().max() <= (6 / 16) ** 0.5
    with pytest.raises(ConfigError):
        Linear(2, 2, init="kaiming")


def test_chunked_equals_unchunked_and_broadcasts():
    x, w = torch.randn(7, 5, 3), torch.randn(1, 5, 3)
    full = chunked(lambda a, b: a * b + 1, [x, w], dim=0, chunk_size=None)
    for cs in (1, 2, 3, 7, 50):
        assert torch.equal(chunked(lambda a, b: a * b + 1, [x, w], dim=0, chunk_size=cs), full)
    with pytest.raises(InputError):
        chunked(lambda a, b: a, [x, torch.randn(3, 5, 3)], dim=0, chunk_size=2)
    with pytest.raises(InputError):
        chunked(lambda a: a, [x], dim=0, chunk_size=0)


def test_transition_chunks_and_masks():
    torch.manual_seed(0)
    t = Transition(6, 2)
    torch.nn.init.normal_(t.linear_2.weight)
    x, mask = torch.randn(2, 5, 4, 6), (torch.rand(2, 5, 4) > 0.5).float()
    full = t(x, mask)
    torch.testing.assert_close(t(x, mask, chunk_size=2), full)
    assert torch.all(full[mask == 0] == 0) and full.abs().sum() > 0
    ref = t.linear_2(torch.relu(t.linear_1(torch.nn.functional.layer_norm(x, (6,))))) * mask[..., None]
    torch.testing.assert_close(full, ref)
    assert t.to(torch.float64).linear_1.weight.dtype == torch.float64


def test_gaussian_floor_and_inplace():
    """exp with the exponent floored at -60 (no subnormal results); inplace overwrites its input."""
    from tertiary.nn.primitives import GAUSSIAN_FLOOR, gaussian

    exponent = torch.tensor([0.0, -1.0, -59.0, -61.0, -2000.0])
    want = torch.exp(torch.tensor([0.0, -1.0, -59.0, GAUSSIAN_FLOOR, GAUSSIAN_FLOOR]))
    torch.testing.assert_close(gaussian(exponent), want, rtol=0, atol=0)
    assert exponent[3] == -61.0  # untouched
    out = gaussian(exponent, inplace=True)
    assert out.data_ptr() == exponent.data_ptr()
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    assert bool((want >= 8e-27).all())


def test_softplus_inplace_matches_pytorch_over_the_float_range():
    """The in-place softplus (numba kernel where it applies) stays within 3e-7 relative of the
    exact value (float64) from -80 to 30, is linear above 20, keeps NaN and infinities, and
    writes into its input; without ``inplace`` it is PyTorch's."""
    from tertiary.nn import fused_cpu
    from tertiary.nn.primitives import softplus

    x = torch.cat([torch.linspace(-80.0, 30.0, 200_001), torch.tensor([20.0, 20.5, 0.0, -1e-30, 1e-30])])
    exact = torch.nn.functional.softplus(x.double())
    out = softplus(x.clone(), inplace=True)
    assert ((out.double() - exact).abs() / exact).max() < 3e-7
    above = x > 20
    assert torch.equal(out[above], x[above])
    torch.testing.assert_close(softplus(x), torch.nn.functional.softplus(x), rtol=0, atol=0)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), -1000.0])
    got = softplus(special.clone(), inplace=True)
    assert got[0].isnan() and got[1] == float("inf") and 0 <= got[2] < 1e-37 and 0 <= got[3] < 1e-37
    y = torch.randn(4, 6)
    assert softplus(y, inplace=True).data_ptr() == y.data_ptr()
    strided = torch.randn(6, 4).T  # not contiguous: the PyTorch fallback, still in place
    want = torch.nn.functional.softplus(strided)
    assert softplus(strided, inplace=True).data_ptr() == strided.data_ptr()
    torch.testing.assert_close(strided, want, rtol=0, atol=0)
    if fused_cpu.available():  # the kernel itself, on more than one block of its scratch
        z = torch.randn(3 * 2048 + 5) * 30
        torch.testing.assert_close(fused_cpu.softplus_(z.clone()), torch.nn.functional.softplus(z), rtol=3e-7,
                                   atol=1e-30)
