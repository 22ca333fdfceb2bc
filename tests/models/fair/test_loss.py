"""FAIR training forward (``loss.training_loss``): the two-stage schedule, checked call by call.

Every encoder call is recorded; the random draws are replayed from a generator with the same
seed, so the noise of every step is checked exactly, not only its scale.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from tertiary.data.pocket import collate, load_pocket
from tertiary.models.fair.config import FairConfig
from tertiary.models.fair.interpolation import interpolate_backbone
from tertiary.models.fair.loss import training_loss
from tertiary.models.fair.model import FairModel

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def example_batch(n: int = 2):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pocket = load_pocket(EXAMPLES / "7sed_pocket.pdb", EXAMPLES / "7sed_ligand.sdf")
    return pocket, collate([pocket] * n)


class Recorder:
    """Wraps ``model.encode`` and keeps (input, backbone flag, logits) of every call."""

    def __init__(self, model: FairModel) -> None:
        self.calls: list[tuple[object, bool, torch.Tensor, object]] = []
        inner = model.encode

        def encode(inp, backbone, generator=None, chunk_size=None, cache=None):
            out, logits = inner(inp, backbone, generator, chunk_size, cache)
            self.calls.append((inp, backbone, logits, out))
            return out, logits

        model.encode = encode  # type: ignore[method-assign]


def tiny(steps: int = 5, **kw) -> FairModel:
    torch.manual_seed(0)
    cfg = FairConfig.preset("tiny", interpolate_steps=steps, dropout=0.0, **kw)
    return FairModel(cfg).train()


@pytest.mark.parametrize("graph", ["predicted", "native"])
def test_two_stages_follow_the_schedule(graph: str) -> None:
    steps = 5
    model = tiny(steps, residue_graph=graph)
    rec = Recorder(model)
    pocket, batch = example_batch(2)
    total, terms = training_loss(model, batch, torch.Generator().manual_seed(7))
    assert torch.isfinite(total) and set(terms) == {"coord", "type", "type_accuracy"}
    assert [bb for _, bb, _, _ in rec.calls] == [True] * steps + [False] * steps

    # replay the random stream: stage 1 draws only the ligand noise (dropout is 0)
    g = torch.Generator().manual_seed(7)
    edit = batch.designed & batch.res_mask
    true = batch.positions
    interp = interpolate_backbone(true[:, :, :4], edit, batch.res_mask, keep_true_if_few_context=graph == "native")
    ratios = [(steps - t) / steps for t in range(steps)]
    assert ratios == [1.0, 0.8, 0.6, 0.4, 0.2]
    prev_logits = None
    for t, (inp, _, logits, out) in enumerate(rec.calls[:steps]):
        r = ratios[t]
        noise = torch.randn(batch.ligand_positions.shape, generator=g)
        torch.testing.assert_close(inp.ligand_positions, batch.ligand_positions + noise * r * 0.5)
        # designed backbone re-initialised every step from the truth and the interpolation
        expected_bb = (1 - r) * true[:, :, :4] + r * interp
        torch.testing.assert_close(inp.positions[:, :, :4], expected_bb)
        torch.testing.assert_close(inp.positions[:, :, 4:], true[:, :, 4:])
        context = batch.res_mask & ~edit  # exactly the truth (their edge MLPs are shared between calls)
        assert torch.equal(inp.positions[context], true[context])
        # designed residues carry only their backbone atoms in this stage
        assert not inp.atom_mask[edit][:, 4:].any() and inp.atom_mask[edit][:, :4].all()
        # residue types: uniform 1/20 first, then the previous call's logits, detached
        soft = inp.feature_types[edit]
        assert not soft.requires_grad and torch.all(soft[:, 0] == 0)
        if t == 0:
            torch.testing.assert_close(soft[:, 1:], torch.full_like(soft[:, 1:], 1 / 20))
        else:
            torch.testing.assert_close(soft[:, 1:], prev_logits[edit].detach())
        assert logits.requires_grad
        torch.testing.assert_close(inp.feature_types[~edit & batch.res_mask],
                                   torch.nn.functional.one_hot(batch.aatype[~edit & batch.res_mask], 21).float())
        graph_ca = true[:, :, 1] if graph == "native" else inp.positions[:, :, 1]
        torch.testing.assert_close(inp.graph_ca, graph_ca)
        prev_logits = logits

    # stage 2: one masked residue per complex, then per step ligand / atom / side-chain noise
    masked = torch.zeros_like(edit)
    for i in range(2):
        n = int(batch.res_mask[i].sum())
        masked[i, torch.multinomial(edit[i, :n].float(), 1, generator=g)] = True
    slot = torch.arange(14)
    for t, (inp, _, _, _) in enumerate(rec.calls[steps:]):
        r = ratios[t]
        lig_noise = torch.randn(batch.ligand_positions.shape, generator=g)
        atom_noise = torch.randn(true.shape, generator=g)
        start_noise = torch.randn(true.shape, generator=g)
        torch.testing.assert_close(inp.ligand_positions, batch.ligand_positions + lig_noise * r * 0.2)
        atoms = inp.atom_mask & edit.unsqueeze(-1)
        noisy = true + atom_noise * 0.3 * r * atoms.unsqueeze(-1)
        start = noisy[:, :, 1:2] + 0.1 * start_noise
        side = atoms & (slot >= 4)
        expected = torch.where(side.unsqueeze(-1), r * start + (1 - r) * noisy, noisy)
        torch.testing.assert_close(inp.positions, expected)
        assert torch.equal(inp.positions[batch.res_mask & ~edit], true[batch.res_mask & ~edit])
        # the masked residue: backbone only, type channel 0; the others keep their true type
        assert inp.atom_mask[masked][:, 4:].sum() == 0
        assert torch.all(inp.feature_types[masked][:, 0] == 1)
        others = batch.res_mask & ~masked
        torch.testing.assert_close(inp.feature_types[others], torch.nn.functional.one_hot(batch.aatype[others], 21).float())


def test_only_the_type_distribution_carries_between_backbone_steps() -> None:
    """Changing the model's coordinate outputs must not change the next step's coordinates."""
    model = tiny(3)
    rec = Recorder(model)
    _, batch = example_batch(1)
    training_loss(model, batch, torch.Generator().manual_seed(1))
    first = [c[0].positions.clone() for c in rec.calls[:3]]
    with torch.no_grad():  # very different coordinate head -> different outputs, same inputs
        model.encoder.T_x[2].weight.mul_(50.0)
    rec.calls.clear()
    training_loss(model, batch, torch.Generator().manual_seed(1))
    assert not torch.allclose(rec.calls[0][3].positions, rec.calls[0][0].positions)
    for a, (inp, _, _, _) in zip(first, rec.calls[:3]):
        torch.testing.assert_close(inp.positions, a)


def test_gradients_reach_every_trained_parameter() -> None:
    model = tiny(2)
    _, batch = example_batch(2)
    total, _ = training_loss(model, batch, torch.Generator().manual_seed(0))
    total.backward()
    # the key-map bias adds q.b, constant over a query's neighbours: it cancels in the softmax
    # (atom_attention.AtomAttentionBlock), in the official model too, so it never gets a gradient
    cancels = {n for n, _ in model.named_parameters() if n.endswith("weight_k_lin.bias")}
    no_grad = [n for n, p in model.named_parameters()
               if n not in cancels and (p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any())]
    assert not no_grad, no_grad


def test_shared_edge_rows_give_the_same_loss_and_gradients() -> None:
    """Context edges evaluated once per step (shared rows) vs in every call: same function."""
    from tertiary.models.fair.edge_cache import EdgeScales

    _, batch = example_batch(2)
    results = []
    for share in (True, False):
        model = tiny(4)
        if not share:
            model.encoder.shared_edge_scales = lambda positions, mask: EdgeScales()  # type: ignore[method-assign]
        total, _ = training_loss(model, batch, torch.Generator().manual_seed(0))
        total.backward()
        results.append((total.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (shared_loss, shared_grads), (plain_loss, plain_grads) = results
    torch.testing.assert_close(shared_loss, plain_loss, rtol=1e-5, atol=1e-6)
    assert shared_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_reused_residue_graph_gives_the_same_loss_and_gradients(monkeypatch) -> None:
    """Native mode: the true-CA residue graph (and its edge projections) is built once per step
    and reused by all calls; the loss and gradients equal those of rebuilding it in every call."""
    from tertiary.models.fair import encoder

    _, batch = example_batch(2)
    built = []
    features = encoder.residue_edge_features
    monkeypatch.setattr(encoder, "residue_edge_features", lambda *a: built.append(1) or features(*a))
    results = []
    for reuse in (True, False):
        built.clear()
        if not reuse:
            monkeypatch.setattr(encoder.EncoderCache, "find_residue_graph", lambda self, *a: None)
        model = tiny(3, residue_graph="native")
        total, _ = training_loss(model, batch, torch.Generator().manual_seed(0))
        total.backward()
        results.append((len(built), total.detach(), {n: p.grad for n, p in model.named_parameters()
                                                     if p.grad is not None}))
    (n_reused, loss_reused, grads_reused), (n_rebuilt, loss_rebuilt, grads_rebuilt) = results
    assert (n_reused, n_rebuilt) == (1, 6)  # 2 stages x 3 steps
    torch.testing.assert_close(loss_reused, loss_rebuilt, rtol=0, atol=0)
    assert grads_reused.keys() == grads_rebuilt.keys()
    for name, grad in grads_rebuilt.items():
        torch.testing.assert_close(grads_reused[name], grad, rtol=1e-5, atol=1e-6, msg=name)
