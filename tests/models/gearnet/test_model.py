"""GearNet layer math against a per-edge loop, batching invariance, GearNet-Edge."""

from __future__ import annotations

import pytest
import torch

from tertiary.data.graph import GraphConfig, batch_graphs, build_residue_graph
from tertiary.errors import ConfigError, InputError
from tertiary.models.gearnet import GearNet, GearNetConfig


def _graph(n: int, seed: int, edge_features: bool = False):
    g = torch.Generator().manual_seed(seed)
    steps = torch.randn(n, 3, generator=g)
    pos = torch.cumsum(3.8 * steps / steps.norm(dim=-1, keepdim=True), 0) * 0.6
    rt = torch.randint(0, 21, (n,), generator=g)
    return build_residue_graph(pos, rt, config=GraphConfig(edge_features=edge_features))


def _randomise_norms(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def test_conv_matches_per_edge_loop():
    torch.manual_seed(0)
    graph = _graph(15, 1)
    model = GearNet(GearNetConfig.preset("tiny", batch_norm=False, short_cut=False, concat_hidden=False))
    conv = model.layers[0]
    x = graph.residue_one_hot()
    out = conv(x, graph.edge_index, graph.edge_relation)
    r, c = conv.num_relation, conv.input_dim
    w = conv.linear.weight.view(-1, r, c)  # [C_out, R, C_in]
    expected = conv.self_loop(x) + conv.linear.bias
    expected = expected.clone()
    for (s, t), rel in zip(graph.edge_index.tolist(), graph.edge_relation.tolist()):
        expected[t] += w[:, rel] @ x[s]  # no degree normalisation
    assert torch.allclose(out, torch.relu(expected), atol=1e-5)


@pytest.mark.parametrize("preset", ["tiny", "gearnet_edge"])
def test_batch_equals_single_proteins(preset):
    torch.manual_seed(0)
    cfg = GearNetConfig.preset(preset, hidden_dims=(12, 12)) if preset != "tiny" else GearNetConfig.preset("tiny")
    edge = cfg.edge_message
    graphs = [_graph(n, s, edge) for n, s in [(23, 1), (9, 2), (31, 3)]]
    model = GearNet(cfg).eval()
    _randomise_norms(model)
    batch = batch_graphs(graphs)
    with torch.no_grad():
        out = model(batch, batch.residue_one_hot())
        start = 0
        for b, g in enumerate(graphs):
            single = model(g, g.residue_one_hot())
            assert torch.allclose(out["node_feature"][start : start + g.num_node], single["node_feature"], atol=1e-4)
            assert torch.allclose(out["graph_feature"][b], single["graph_feature"][0], atol=1e-3)
            start += g.num_node
    assert out["node_feature"].shape == (63, cfg.output_dim)
    assert out["graph_feature"].shape == (3, cfg.output_dim)


def test_graph_feature_is_sum_of_concatenated_hiddens():
    model = GearNet(GearNetConfig.preset("tiny")).eval()
    g = _graph(17, 4)
    out = model(g, g.residue_one_hot())
    assert out["node_feature"].shape == (17, 48)
    assert torch.allclose(out["graph_feature"][0], out["node_feature"].sum(0), atol=1e-4)


def test_gearnet_edge_uses_edge_features_and_trains():
    torch.manual_seed(0)
    cfg = GearNetConfig.preset("gearnet_edge", hidden_dims=(8, 8))
    model = GearNet(cfg)
    g = _graph(20, 5, edge_features=True)
    out = model(g, g.residue_one_hot())
    out["graph_feature"].sum().backward()
    assert all(p.grad is not None for p in model.edge_layers.parameters())
    model.eval()
    with torch.no_grad():
        a = model(g, g.residue_one_hot())["node_feature"]
        g.edge_feature = g.edge_feature * 2.0
        b = model(g, g.residue_one_hot())["node_feature"]
    assert not torch.allclose(a, b)


def test_errors():
    with pytest.raises(ConfigError, match="edge_features"):
        GearNetConfig(edge_message=True)
    with pytest.raises(ConfigError, match="unknown GearNet preset"):
        GearNetConfig.preset("nope")
    model = GearNet(GearNetConfig.preset("tiny"))
    g = _graph(10, 6)
    with pytest.raises(InputError, match="input"):
        model(g, torch.zeros(10, 5))
    with pytest.raises(InputError, match="edge features"):
        GearNet(GearNetConfig.preset("gearnet_edge", hidden_dims=(4,)))(g, g.residue_one_hot())
