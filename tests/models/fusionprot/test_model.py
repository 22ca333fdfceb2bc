"""FusionProt: batching invariance, token placement, two-way exchange, trainable fusion parameters."""

from __future__ import annotations

import pytest
import torch

from tertiary.data.graph import add_virtual_nodes, batch_graphs, build_residue_graph
from tertiary.errors import ConfigError, InputError
from tertiary.models.esm import ESMConfig
from tertiary.models.fusionprot import FusionProt, FusionProtConfig, graph_tokens


def _protein(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    steps = torch.randn(n, 3, generator=g)
    pos = torch.cumsum(3.8 * steps / steps.norm(dim=-1, keepdim=True), 0) * 0.6
    return pos, torch.randint(0, 21, (n,), generator=g)


def _graphs(cfg, specs=((17, 1), (5, 2), (26, 3))):
    return [build_residue_graph(*_protein(n, s), config=cfg.graph) for n, s in specs]


def _randomise_norms(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def test_batch_of_different_lengths_equals_each_protein_alone():
    cfg = FusionProtConfig.preset("tiny")
    model = FusionProt(cfg, seed=3).eval()
    _randomise_norms(model)
    graphs = _graphs(cfg)
    with torch.no_grad():
        out = model(batch_graphs(graphs))
        start = 0
        for b, g in enumerate(graphs):
            alone = model(g)
            n = g.num_node
            assert torch.allclose(out["node_feature"][start : start + n], alone["node_feature"], atol=1e-4, rtol=1e-4)
            assert torch.allclose(out["graph_feature"][b], alone["graph_feature"][0], atol=1e-3, rtol=1e-4)
            start += n
    assert out["graph_feature"].shape == (3, cfg.output_dim)


def test_tokens_and_token_relation():
    cfg = FusionProtConfig.preset("tiny")
    graph = batch_graphs(_graphs(cfg))
    model = FusionProt(cfg)
    tokens, column = graph_tokens(graph, model.token_map, 0, 2, 1)
    assert tokens.shape == (3, 28)
    for b, n in enumerate(graph.num_nodes.tolist()):
        assert tokens[b, 0] == 0 and tokens[b, n + 1] == 2 and (tokens[b, n + 2 :] == 1).all()
    assert torch.equal(tokens[graph.node2graph, column], model.token_map[graph.residue_type])
    tgraph = add_virtual_nodes(graph)
    assert tgraph.num_relation == model.gearnet.config.num_relation == 8
    token_edges = tgraph.edge_relation == 7
    assert int(token_edges.sum()) == 2 * graph.num_node
    assert (tgraph.edge_index[token_edges] >= graph.num_node).any(dim=1).all()


def test_structure_reaches_the_sequence_features():
    """Moving atoms changes the ESM half of the features: the token carries structure back."""
    cfg = FusionProtConfig.preset("tiny")
    model = FusionProt(cfg, seed=0).eval()
    pos, rt = _protein(20, 4)
    c = cfg.esm.embed_dim
    with torch.no_grad():
        a = model(build_residue_graph(pos, rt, config=cfg.graph))["node_feature"][:, :c]
        b = model(build_residue_graph(pos * 1.7, rt, config=cfg.graph))["node_feature"][:, :c]
    assert not torch.allclose(a, b, atol=1e-5)


def test_every_parameter_trains_and_is_in_a_group():
    cfg = FusionProtConfig.preset("tiny")
    model = FusionProt(cfg, seed=0).train()
    out = model(batch_graphs(_graphs(cfg)))
    (out["graph_feature"].pow(2).mean() + out["node_feature"].mean()).backward()
    no_grad = [
        name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    # LM and contact heads are not on the feature path
    assert [n for n in no_grad if not n.startswith(("esm.lm_head", "esm.contact_head"))] == []
    groups = model.param_groups(1e-3)
    seen = [id(p) for g in groups for p in g["params"]]
    assert len(seen) == len(set(seen)) == len(list(model.parameters()))
    esm_ids = {id(p) for p in model.esm.parameters()}
    for g in groups:
        expected = 1e-3 * cfg.esm_lr_ratio if id(g["params"][0]) in esm_ids else 1e-3
        assert g["lr"] == pytest.approx(expected)
    assert any(model.structure_token is p for p in groups[0]["params"])


def test_frozen_esm_still_trains_fusion_parameters():
    cfg = FusionProtConfig.preset("tiny", freeze_esm=True)
    model = FusionProt(cfg)
    model(batch_graphs(_graphs(cfg)))["graph_feature"].sum().backward()
    assert all(p.grad is None for p in model.esm.parameters())
    assert model.structure_token.grad is not None and model.seq_linears[0].weight.grad is not None
    assert len(model.param_groups(1.0)) == 1


@pytest.mark.parametrize("layers,step,expected", [(3, 1, 2), (7, 3, 2), (12, 5, 2), (33, 5, 6), (6, 5, 1)])
def test_any_depth_and_inject_step(layers, step, expected):
    esm = ESMConfig(num_layers=layers, embed_dim=16, attention_heads=2, ffn_embed_dim=32)
    cfg = FusionProtConfig(esm=esm, inject_step=step, gnn_hidden_dim=8)
    assert len(cfg.injection_layers) == expected
    if layers <= 12:
        model = FusionProt(cfg).eval()
        out = model(build_residue_graph(*_protein(9, 5), config=cfg.graph))
        assert out["node_feature"].shape == (9, 16 + 8 * expected)


def test_errors():
    with pytest.raises(ConfigError, match="no exchange"):
        FusionProtConfig(esm=ESMConfig(num_layers=3, embed_dim=16, attention_heads=2, ffn_embed_dim=32), inject_step=5)
    cfg = FusionProtConfig.preset("tiny", esm=ESMConfig(num_layers=6, embed_dim=32, attention_heads=4,
                                                        ffn_embed_dim=64, max_residues=10))
    model = FusionProt(cfg)
    with pytest.raises(InputError, match="more than the ESM limit"):
        model(build_residue_graph(*_protein(11, 6), config=cfg.graph))
