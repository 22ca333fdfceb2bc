"""AlphaFold model on a tiny random config: chunking, bf16 autocast, recycling, gradients, templates."""

from __future__ import annotations

import pytest
import torch

from tertiary.errors import InputError
import dataclasses

from tertiary.models.alphafold.config import (
    AlphaFoldConfig,
    HeadsConfig,
    StackConfig,
    StructureModuleConfig,
    TemplateConfig,
)
from tertiary.models.alphafold.model import AlphaFold, split_cycles


def tiny_config() -> AlphaFoldConfig:
    c_m, c_z, c_s, c_e = 16, 8, 24, 8
    stack = dict(c_z=c_z, c_hidden_msa_att=4, c_hidden_opm=4, c_hidden_mul=8, c_hidden_pair_att=4,
                 no_heads_msa=2, no_heads_pair=2, transition_n=2)  # fmt: skip
    return AlphaFoldConfig(
        name="tiny", c_m=c_m, c_z=c_z, c_s=c_s, c_e=c_e,
        evoformer=StackConfig(no_blocks=2, c_m=c_m, **stack),
        extra_msa=StackConfig(no_blocks=1, c_m=c_e, **stack),
        structure_module=StructureModuleConfig(c_s=c_s, c_z=c_z, c_ipa=4, c_resnet=8, no_heads_ipa=2, no_blocks=2),
        heads=HeadsConfig(c_s=c_s, c_z=c_z, c_m=c_m, lddt_c_hidden=8, tm_enabled=True),
    )  # fmt: skip


def random_features(n_res: int, n_seq: int, n_extra: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    aatype = torch.randint(0, 20, (n_res,), generator=g)
    target_feat = torch.zeros(n_res, 22)
    target_feat[torch.arange(n_res), aatype + 1] = 1
    msa_mask = torch.ones(n_seq, n_res)
    msa_mask[-1, -3:] = 0
    seq_mask = torch.ones(n_res)
    seq_mask[-1] = 0
    return {
        "aatype": aatype, "target_feat": target_feat, "residue_index": torch.arange(n_res) * 2,
        "msa_feat": torch.rand(n_seq, n_res, 49, generator=g), "seq_mask": seq_mask, "msa_mask": msa_mask,
        "extra_msa": torch.randint(0, 23, (n_extra, n_res), generator=g),
        "extra_msa_mask": (torch.rand(n_extra, n_res, generator=g) > 0.2).float(),
        "extra_has_deletion": (torch.rand(n_extra, n_res, generator=g) > 0.8).float(),
        "extra_deletion_value": torch.rand(n_extra, n_res, generator=g),
    }  # fmt: skip


def tiny_template_config() -> AlphaFoldConfig:
    template = TemplateConfig(enabled=True, c_t=4, no_blocks=2, c_hidden_tri_att=4, c_hidden_tri_mul=4, no_heads=2,
                              c_hidden_pointwise=4, no_heads_pointwise=2, use_unit_vector=True)  # fmt: skip
    return dataclasses.replace(tiny_config(), name="tiny_templates", template=template)


def random_template_features(n_res: int, n_templ: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Template features ``[T, N, ...]``; the last template slot is padding (mask 0)."""
    g = torch.Generator().manual_seed(seed)
    sin_cos = torch.randn(n_templ, n_res, 7, 2, generator=g)
    sin_cos = sin_cos / sin_cos.norm(dim=-1, keepdim=True)
    template_mask = torch.ones(n_templ)
    template_mask[-1] = 0
    torsion_mask = (torch.rand(n_templ, n_res, 7, generator=g) > 0.2).float()
    torsion_mask[-1] = 0
    return {
        "template_aatype": torch.randint(0, 22, (n_templ, n_res), generator=g),
        "template_all_atom_positions": 6 * torch.randn(n_templ, n_res, 37, 3, generator=g),
        "template_all_atom_mask": (torch.rand(n_templ, n_res, 37, generator=g) > 0.1).float(),
        "template_pseudo_beta": 8 * torch.randn(n_templ, n_res, 3, generator=g),
        "template_pseudo_beta_mask": (torch.rand(n_templ, n_res, generator=g) > 0.1).float(),
        "template_mask": template_mask,
        "template_torsion_angles_sin_cos": sin_cos,
        "template_alt_torsion_angles_sin_cos": -sin_cos,
        "template_torsion_angles_mask": torsion_mask,
    }  # fmt: skip


def _randomise(model: torch.nn.Module, seed: int = 1) -> None:
    """Replace AlphaFold's zero ('final') initialisations so that no output is trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / max(1, p.shape[-1]) ** 0.5)


@pytest.fixture(scope="module")
def model() -> AlphaFold:
    torch.manual_seed(0)
    m = AlphaFold(tiny_config()).eval()
    _randomise(m)
    return m


def test_chunked_forward_equals_unchunked(model: AlphaFold) -> None:
    feats = {k: (v.double() if v.is_floating_point() else v) for k, v in random_features(13, 5, 7).items()}
    m64 = model.double()
    try:
        with torch.no_grad():
            full = m64(feats, num_cycles=2)
            chunked = m64(feats, num_cycles=2, chunk_size=3)
    finally:
        model.float()
    for key in ("pair", "msa", "final_atom_positions", "plddt", "predicted_aligned_error"):
        torch.testing.assert_close(chunked[key], full[key], atol=1e-9, rtol=1e-9, msg=lambda m: f"{key}: {m}")


def test_bf16_autocast_runs_and_stays_close(model: AlphaFold) -> None:
    feats = random_features(12, 4, 6)
    with torch.no_grad():
        ref = model(feats, num_cycles=1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(feats, num_cycles=1, chunk_size=4)
    assert torch.isfinite(low["final_atom_positions"]).all()
    assert torch.isfinite(low["plddt"]).all()
    err = (low["single"].float() - ref["single"]).abs().max() / ref["single"].abs().max()
    assert err < 0.1, f"bf16 single representation off by {err:.3f} relative"


def test_recycling_uses_previous_cycle_and_per_cycle_features(model: AlphaFold) -> None:
    feats = random_features(10, 4, 5)
    with torch.no_grad():
        one = model(feats, num_cycles=1)
        two = model(feats, num_cycles=2)
        listed = model([feats, feats], num_cycles=2)
        stacked = model(split_cycles({k: torch.stack([v, v], -1) for k, v in feats.items()}))
    assert not torch.allclose(one["pair"], two["pair"])
    torch.testing.assert_close(listed["pair"], two["pair"])
    torch.testing.assert_close(stacked["pair"], two["pair"])
    with pytest.raises(InputError):
        model([feats], num_cycles=2)
    with pytest.raises(InputError):
        model(feats, num_cycles=0)
    with pytest.raises(InputError, match="missing"):
        model({k: v for k, v in feats.items() if k != "msa_feat"}, num_cycles=1)


def test_training_gradients_flow_through_the_last_cycle_only(model: AlphaFold) -> None:
    feats = random_features(9, 3, 4)
    model.train()
    calls: list[bool] = []
    handle = model.evoformer.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    try:
        out = model(feats, num_cycles=3)
        (out["final_atom_positions"].square().mean() + out["plddt"].mean()).backward()
        grads = [p.grad for p in model.evoformer.parameters()]
    finally:
        handle.remove()
        model.eval()
        model.zero_grad(set_to_none=True)
    assert calls == [False, False, True]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_all_ones_mask_takes_the_unmasked_path_with_identical_results() -> None:
    from tertiary.models.alphafold.msa_attention import MSARowAttentionWithPairBias
    from tertiary.models.alphafold.triangle_attention import TriangleAttentionEndingNode

    torch.manual_seed(0)
    row, tri = MSARowAttentionWithPairBias(8, 4, 4, 2), TriangleAttentionEndingNode(4, 4, 2)
    _randomise(row)
    _randomise(tri)
    m, z = torch.randn(3, 6, 8, dtype=torch.float64), torch.randn(6, 6, 4, dtype=torch.float64)
    row.double(), tri.double()
    torch.testing.assert_close(row(m, z, torch.ones(3, 6)), row(m, z, None))
    mask = torch.ones(6, 6)
    mask[0, 1] = 0  # a masked key changes the result
    assert not torch.allclose(tri(z, mask), tri(z, None))
    torch.testing.assert_close(tri(z, torch.ones(6, 6)), tri(z, None))


def test_memory_estimate_is_near_linear_when_chunked() -> None:
    from tertiary.models.alphafold.memory import estimate_peak_bytes, suggest_chunk_size

    c = AlphaFoldConfig.preset("model_3_ptm")
    plain = [estimate_peak_bytes(c, n, 512, 1024) for n in (256, 512)]
    chunked = [estimate_peak_bytes(c, n, 512, 1024, chunk_size=32) for n in (256, 512)]
    assert plain[1] / plain[0] > 3  # attention logits over N^2 (x extra rows) or N^3 dominate
    assert chunked[1] < plain[1] / 4 and chunked[1] / chunked[0] < plain[1] / plain[0] / 1.5
    assert suggest_chunk_size(c, 100, 64, 128, available_bytes=1 << 40) is None
    small = suggest_chunk_size(c, 1000, 512, 1024, available_bytes=16 << 30)
    assert small is not None and estimate_peak_bytes(c, 1000, 512, 1024, small) <= 0.8 * (16 << 30)


@pytest.fixture(scope="module")
def template_model() -> AlphaFold:
    torch.manual_seed(0)
    m = AlphaFold(tiny_template_config()).eval()
    _randomise(m, seed=2)
    return m


def test_template_model_chunked_equals_unchunked(template_model: AlphaFold) -> None:
    feats = {**random_features(11, 4, 5), **random_template_features(11, 3)}
    feats = {k: (v.double() if v.is_floating_point() else v) for k, v in feats.items()}
    m64 = template_model.double()
    try:
        with torch.no_grad():
            full = m64(feats, num_cycles=1)
            chunked = m64(feats, num_cycles=1, chunk_size=3)
    finally:
        template_model.float()
    assert full["msa"].shape[-3] == 4  # template rows are not part of the MSA output
    for key in ("pair", "msa", "final_atom_positions", "masked_msa_logits"):
        torch.testing.assert_close(chunked[key], full[key], atol=1e-9, rtol=1e-9, msg=lambda m: f"{key}: {m}")


def test_templates_change_the_prediction_and_empty_templates_do_not(template_model: AlphaFold) -> None:
    base = random_features(10, 3, 4)
    templ = random_template_features(10, 2)
    empty = {**templ, "template_mask": torch.zeros(2), "template_torsion_angles_mask": torch.zeros(2, 10, 7)}
    with torch.no_grad():
        without = template_model(base, num_cycles=1)
        with_templates = template_model({**base, **templ}, num_cycles=1)
        with_empty = template_model({**base, **empty}, num_cycles=1)
    assert not torch.allclose(with_templates["pair"], without["pair"], atol=1e-3)
    # AlphaFold2 semantics: no template hit = no pair update and fully masked template rows
    for key in ("pair", "msa", "final_atom_positions"):
        torch.testing.assert_close(with_empty[key], without[key], atol=1e-4, rtol=1e-4, msg=lambda m: f"{key}: {m}")
    with pytest.raises(InputError, match="template_torsion_angles_mask"):
        template_model({**base, **{k: v for k, v in templ.items() if k != "template_torsion_angles_mask"}}, num_cycles=1)


def test_template_model_bf16_autocast(template_model: AlphaFold) -> None:
    feats = {**random_features(7, 3, 4), **random_template_features(7, 2)}
    with torch.no_grad():
        ref = template_model(feats, num_cycles=1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = template_model(feats, num_cycles=1, chunk_size=4)
    assert torch.isfinite(low["final_atom_positions"]).all()
    err = (low["pair"].float() - ref["pair"]).abs().max() / ref["pair"].abs().max()
    assert err < 0.1, f"bf16 pair representation off by {err:.3f} relative"
