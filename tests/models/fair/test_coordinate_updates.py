"""FAIR's residue-residue message pass: the numba loop (sampling) equals the PyTorch expression
(training, and the fallback without numba)."""

from __future__ import annotations

import pytest
import torch

from tertiary.models.fair import coordinate_updates
from tertiary.nn import fused_cpu


@pytest.mark.skipif(not fused_cpu.available(), reason="numba not installed")
@pytest.mark.parametrize(("slots", "centres", "learned", "backbone_scale"),
                         [(4, 4, True, 1.0), (4, 4, False, 1.0), (14, 1, True, 0.1), (14, 1, False, 1.0)])
def test_fused_residue_messages_equal_the_pytorch_pass(slots, centres, learned, backbone_scale, monkeypatch):
    g = torch.Generator().manual_seed(slots + centres)
    b, r, k = 2, 30, 8
    neighbours = torch.randint(0, r, (b, r, k), generator=g)
    valid = torch.rand(b, r, k, generator=g) > 0.2
    valid[0, 3] = False  # a designed residue without neighbours does not move
    edit = torch.rand(b, r, generator=g) > 0.4
    edit[0, 3] = True
    x = torch.randn(b, r, slots, 3, generator=g) * 4
    x[1, 5, 0] = x[1, 5, 1] = 50.0  # steps beyond the clamp
    c = torch.randn(b, r, centres, 3, generator=g) * 4
    magnitudes = torch.randn(b, r, k, slots, generator=g) * 10 if learned else None
    args = (x, c, neighbours, valid, edit, magnitudes)
    with torch.no_grad():
        fused = coordinate_updates.residue_messages(*args, backbone_scale=backbone_scale)
        monkeypatch.setattr(fused_cpu, "available", lambda: False)
        reference = coordinate_updates.residue_messages(*args, backbone_scale=backbone_scale)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    assert torch.equal(fused[~edit], x[~edit]) and torch.equal(fused[0, 3], x[0, 3])
    assert not torch.equal(fused[edit], x[edit])
