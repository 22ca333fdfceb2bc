"""AlphaFold2 auxiliary heads and confidence metrics (pLDDT, PAE, pTM) without reference data."""

from __future__ import annotations

import math

import pytest
import torch

from tertiary.errors import InputError
from tertiary.models.alphafold.heads import (
    AuxiliaryHeads,
    HeadsConfig,
    aligned_error_bin_centers,
    compute_plddt,
    compute_predicted_aligned_error,
    compute_ptm,
)

F64 = torch.float64
TINY = HeadsConfig(c_s=8, c_z=6, c_m=5, lddt_c_hidden=7, lddt_no_bins=10, distogram_no_bins=12, tm_enabled=True)


def naive_ptm(logits: torch.Tensor, weights: torch.Tensor, max_bin: float = 31.0) -> float:
    """Supplement eq. (40) written out with Python loops (unbatched)."""
    n, _, b = logits.shape
    step = max_bin / (b - 2)
    centers = [step * (k + 0.5) for k in range(b)]
    n_w = max(float(weights.sum()), 19.0)
    d0 = 1.24 * (n_w - 15) ** (1 / 3) - 1.8
    probs = torch.softmax(logits, dim=-1)
    best = -1.0
    best_value = 0.0
    for i in range(n):
        if weights[i] == 0:
            continue
        total = sum(
            float(weights[j]) * sum(float(probs[i, j, k]) / (1 + (centers[k] / d0) ** 2) for k in range(b)) for j in range(n)
        )
        value = total / float(weights.sum())
        if value * float(weights[i]) > best:
            best, best_value = value * float(weights[i]), value
    return best_value


def test_plddt_range_and_uniform_logits() -> None:
    assert torch.allclose(compute_plddt(torch.zeros(4, 50)), torch.full((4,), 50.0))
    logits = torch.randn(3, 7, 50, generator=torch.Generator().manual_seed(0)) * 10
    p = compute_plddt(logits)
    assert p.shape == (3, 7) and (p >= 0).all() and (p <= 100).all()
    confident = torch.full((50,), -1e4)
    confident[-1] = 0
    assert math.isclose(float(compute_plddt(confident)), 99.0, abs_tol=1e-4)  # centre of the top bin


def test_aligned_error_bins_and_pae() -> None:
    centers = aligned_error_bin_centers(64, 31.0, F64, torch.device("cpu"))
    assert centers.shape == (64,)
    torch.testing.assert_close(centers[:3], torch.tensor([0.25, 0.75, 1.25], dtype=F64))
    assert float(centers[-1]) == 31.75
    logits = torch.randn(5, 5, 64, generator=torch.Generator().manual_seed(1), dtype=F64)
    out = compute_predicted_aligned_error(logits)
    torch.testing.assert_close(out["predicted_aligned_error"], (torch.softmax(logits, -1) * centers).sum(-1))
    assert float(out["max_predicted_aligned_error"]) == 31.75
    assert torch.allclose(out["aligned_confidence_probs"].sum(-1), torch.ones(5, 5, dtype=F64))


@pytest.mark.parametrize("n", [6, 25])
def test_ptm_matches_formula(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    logits = torch.randn(n, n, 64, generator=g, dtype=F64) * 3
    weights = torch.ones(n, dtype=F64)
    weights[1] = 0
    assert math.isclose(float(compute_ptm(logits, weights)), naive_ptm(logits, weights), rel_tol=1e-6)
    assert math.isclose(float(compute_ptm(logits)), naive_ptm(logits, torch.ones(n, dtype=F64)), rel_tol=1e-6)


def test_ptm_is_per_batch_item() -> None:
    # OpenFold's compute_tm takes one arg-max over the whole batch; here every item gets its own
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 8, 8, 64, generator=g, dtype=F64)
    batched = compute_ptm(logits)
    assert batched.shape == (3,)
    for i in range(3):
        assert math.isclose(float(batched[i]), float(compute_ptm(logits[i])), rel_tol=1e-12)
    with pytest.raises(InputError):
        compute_ptm(logits, torch.ones(5))


def test_auxiliary_heads_outputs() -> None:
    torch.manual_seed(0)
    heads = AuxiliaryHeads(TINY).eval()
    with torch.no_grad():
        for p in heads.parameters():
            p.normal_()
    g = torch.Generator().manual_seed(4)
    n, s = 5, 3
    out = heads(
        torch.randn(2, n, TINY.c_s, generator=g),
        torch.randn(2, n, TINY.c_s, generator=g),
        torch.randn(2, n, n, TINY.c_z, generator=g),
        torch.randn(2, s, n, TINY.c_m, generator=g),
    )
    assert out["lddt_logits"].shape == (2, n, 10) and out["plddt"].shape == (2, n)
    assert out["distogram_logits"].shape == (2, n, n, 12)
    torch.testing.assert_close(out["distogram_logits"], out["distogram_logits"].transpose(1, 2))
    assert out["masked_msa_logits"].shape == (2, s, n, 23)
    assert out["experimentally_resolved_logits"].shape == (2, n, 37)
    assert out["tm_logits"].shape == (2, n, n, 64) and out["ptm_score"].shape == (2,)
    assert out["predicted_aligned_error"].shape == (2, n, n)
    assert not torch.allclose(out["tm_logits"], out["tm_logits"].transpose(1, 2))


def test_heads_without_tm_and_key_maps() -> None:
    heads = AuxiliaryHeads(HeadsConfig(c_s=8, c_z=6, c_m=5, tm_enabled=False))
    assert heads.tm is None
    keys = set(heads.state_dict())
    assert not any(k.startswith("tm.") for k in keys)
    assert set(heads.openfold_key_map().values()) == keys
    assert {t for t, _ in heads.npz_key_map().values()} == keys
    with_tm = AuxiliaryHeads(TINY)
    assert {t for t, _ in with_tm.npz_key_map(prefix="heads.").values()} == {f"heads.{k}" for k in with_tm.state_dict()}
