import torch

from tertiary.models.esm.rotary import RotaryEmbedding, default_inv_freq


def _rotate_reference(x, inv_freq):
    """Textbook RoPE on channel pairs (j, j + D/2), float64."""
    n, d = x.shape[-2:]
    angle = torch.arange(n, dtype=torch.float64)[:, None] * inv_freq.double()[None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat((x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()), -1)


def test_matches_textbook_rotation_and_keeps_norms():
    rot = RotaryEmbedding(16).double()
    x = torch.randn(2, 3, 11, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = rot(x)
    torch.testing.assert_close(y, _rotate_reference(x, rot.inv_freq), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    # dot products depend on relative position only
    q, k = torch.randn(2, 16, dtype=torch.float64)
    rq = rot(q.expand(9, 16).clone())
    rk = rot(k.expand(9, 16).clone())
    assert torch.allclose((rq[3] * rk[1]).sum(), (rq[7] * rk[5]).sum())


def test_default_inv_freq_is_fp16_rounded_like_checkpoints():
    exact = default_inv_freq(16, fp16_rounded=False)
    rounded = default_inv_freq(16)
    assert torch.equal(rounded, exact.half().float())
    assert rounded[1].item() == 0.316162109375  # value stored in released ESM-2 checkpoints


def test_cache_follows_loaded_inv_freq():
    rot = RotaryEmbedding(8)
    x = torch.randn(1, 5, 8)
    before = rot(x)
    rot.load_state_dict({"inv_freq": rot.inv_freq * 2})
    assert not torch.allclose(before, rot(x))
    torch.testing.assert_close(rot(x), _rotate_reference(x.double(), rot.inv_freq).float())
