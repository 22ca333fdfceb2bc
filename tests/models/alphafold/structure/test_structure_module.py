"""Structure module on a tiny configuration: shapes, initial state, batching, chunking, geometry, errors."""

from __future__ import annotations

import pytest
import torch

from tertiary import constants as rc
from tertiary.errors import InputError
from tertiary.models.alphafold.structure import StructureModule, StructureModuleConfig

TINY = StructureModuleConfig(
    c_s=16, c_z=8, c_ipa=4, c_resnet=8, no_heads_ipa=2, no_qk_points=3, no_v_points=4, no_blocks=3, dropout_rate=0.0
)


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter non-trivial values (the default init zeroes the last layers)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / max(1, p.shape[-1]) ** 0.5)
    return module


def inputs(n: int = 6, batch: tuple[int, ...] = (), seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(batch + (n, TINY.c_s), generator=g)
    z = torch.randn(batch + (n, n, TINY.c_z), generator=g)
    aatype = torch.randint(0, 21, batch + (n,), generator=g)
    return s, z, aatype


def test_output_shapes() -> None:
    sm = StructureModule(TINY).eval()
    s, z, aatype = inputs(batch=(2,))
    out = sm(s, z, aatype)
    b = TINY.no_blocks
    assert out["frames"].shape == (b, 2, 6, 7)
    assert out["sidechain_frames"].shape == (b, 2, 6, 8, 4, 4)
    assert out["angles"].shape == out["unnormalized_angles"].shape == (b, 2, 6, 7, 2)
    assert out["positions"].shape == (b, 2, 6, 14, 3)
    assert out["states"].shape == (b, 2, 6, TINY.c_s) and out["single"].shape == (2, 6, TINY.c_s)
    torch.testing.assert_close(out["angles"].norm(dim=-1), torch.ones(b, 2, 6, 7), atol=1e-5, rtol=0)


def test_fresh_module_keeps_identity_frames() -> None:
    # the backbone update is zero-initialised: frames stay at the origin ("black hole")
    sm = StructureModule(TINY).eval()
    s, z, aatype = inputs()
    frames = sm(s, z, aatype)["frames"]
    expected = torch.zeros(7)
    expected[0] = 1
    torch.testing.assert_close(frames, expected.expand_as(frames), atol=0, rtol=0)


def test_batch_chunk_and_mask_consistency() -> None:
    sm = randomise(StructureModule(TINY)).eval()
    s, z, aatype = inputs(batch=(2,))
    mask = torch.ones(2, 6)
    with torch.no_grad():
        full = sm(s, z, aatype, mask)
        chunked = sm(s, z, aatype, mask, chunk_size=2)
        single = sm(s[1], z[1], aatype[1], mask[1])
    for key in ("frames", "positions", "angles", "single"):
        torch.testing.assert_close(chunked[key], full[key], atol=1e-4, rtol=1e-4)
        item = full[key][1] if key == "single" else full[key][:, 1]
        torch.testing.assert_close(single[key], item, atol=1e-4, rtol=1e-4)
    # a padded residue does not influence the others
    mask[0, 2] = 0
    s2 = s.clone()
    s2[0, 2] += 3
    with torch.no_grad():
        a = sm(s, z, aatype, mask)["positions"][:, 0]
        b = sm(s2, z, aatype, mask)["positions"][:, 0]
    keep = mask[0].bool()
    torch.testing.assert_close(a[:, keep], b[:, keep], atol=1e-4, rtol=1e-4)


def test_backbone_geometry_is_ideal() -> None:
    sm = randomise(StructureModule(TINY)).eval()
    s, z, aatype = inputs(n=8)
    with torch.no_grad():
        pos = sm(s, z, aatype)["positions"][-1]
    n_ca = (pos[:, 0] - pos[:, 1]).norm(dim=-1)
    ca_c = (pos[:, 1] - pos[:, 2]).norm(dim=-1)
    # CA sits at the origin of the backbone group: bond lengths are the literature N and C norms
    lit = torch.tensor(rc.RESTYPE_ATOM14_RIGID_GROUP_POSITIONS, dtype=torch.float32)[aatype]
    torch.testing.assert_close(n_ca, lit[:, 0].norm(dim=-1), atol=1e-4, rtol=0)
    torch.testing.assert_close(ca_c, lit[:, 2].norm(dim=-1), atol=1e-4, rtol=0)
    assert ((n_ca > 1.4) & (n_ca < 1.5)).all()


def test_gradients_reach_every_parameter() -> None:
    sm = randomise(StructureModule(TINY)).train()
    s, z, aatype = inputs()
    s.requires_grad_(True)
    out = sm(s, z, aatype)
    (out["positions"].pow(2).mean() + out["unnormalized_angles"].pow(2).mean()).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    for name, p in sm.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_bf16_autocast_runs() -> None:
    sm = randomise(StructureModule(TINY)).eval()
    s, z, aatype = inputs()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = sm(s, z, aatype)
    assert out["frames"].dtype == torch.float32
    assert torch.isfinite(out["positions"]).all()


def test_mismatched_inputs_raise() -> None:
    sm = StructureModule(TINY)
    s, z, aatype = inputs()
    with pytest.raises(InputError):
        sm(s, z[:5, :5], aatype)
    with pytest.raises(InputError):
        sm(s, z, aatype[:5])


def test_key_maps_cover_state_dict() -> None:
    sm = StructureModule(TINY)
    keys = set(sm.state_dict())
    assert set(sm.openfold_key_map().values()) == keys
    assert {t for t, _ in sm.npz_key_map().values()} == keys
    assert all(k.startswith("structure_module.") for k in sm.openfold_key_map())
