"""Residue graph construction: edges checked against brute-force definitions."""

from __future__ import annotations

import itertools
import math
import time

import pytest
import torch

from tertiary.data.graph import (
    GraphConfig,
    add_virtual_nodes,
    batch_graphs,
    build_residue_graph,
    knn_edges,
    radius_edges,
    sequential_edges,
    spatial_line_graph,
)
from tertiary.errors import InputError


def _chain_walk(n: int, seed: int = 0) -> torch.Tensor:
    """A random self-avoiding-ish CA trace with 3.8 A steps (compact, so radius edges exist)."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randn(n, 3, generator=g)
    steps = 3.8 * steps / steps.norm(dim=-1, keepdim=True)
    pos = torch.cumsum(steps, 0)
    return pos - pos.mean(0)


def _edge_set(edge_index: torch.Tensor, relation: torch.Tensor | None = None) -> set[tuple[int, ...]]:
    if relation is None:
        return {tuple(e) for e in edge_index.tolist()}
    return {(*e, r) for e, r in zip(edge_index.tolist(), relation.tolist())}


def test_sequential_edges_respect_chains():
    chain = torch.tensor([0, 0, 0, 1, 1])
    edges, rel = sequential_edges(chain, 2)
    expected = set()
    for i, j in itertools.product(range(5), range(5)):
        if abs(i - j) <= 2 and chain[i] == chain[j]:
            expected.add((i, j, j - i + 2))
    assert _edge_set(edges, rel) == expected


@pytest.mark.parametrize("chunk", [None, 7])
def test_radius_and_knn_match_brute_force(chunk):
    n = 40
    pos = _chain_walk(n, 1)
    chain = torch.tensor([0] * 25 + [1] * 15)
    d = torch.cdist(pos, pos)

    def far(i, j):
        return not (chain[i] == chain[j] and abs(i - j) < 5)

    expected_r = {(j, i) for i in range(n) for j in range(n) if i != j and d[i, j] < 10.0 and far(i, j)}
    assert _edge_set(radius_edges(pos, chain, 10.0, 5, chunk_size=chunk)) == expected_r
    assert len(expected_r) > 0
    expected_k = set()
    for i in range(n):
        order = [j for j in torch.argsort(d[i]).tolist() if j != i][:10]
        expected_k |= {(j, i) for j in order if far(i, j)}
    assert _edge_set(knn_edges(pos, chain, 10, 5, chunk_size=chunk)) == expected_k


def test_cross_chain_contacts_adjacent_in_index_are_kept():
    # residues 2 (chain 0) and 3 (chain 1) are 5 A apart: an edge despite index separation 1
    pos = torch.tensor([[0.0, 0, 0], [3.8, 0, 0], [7.6, 0, 0], [7.6, 5.0, 0], [11.4, 5.0, 0]])
    chain = torch.tensor([0, 0, 0, 1, 1])
    edges = _edge_set(radius_edges(pos, chain, 10.0, 5))
    assert (2, 3) in edges and (3, 2) in edges
    assert (0, 1) not in edges  # same chain, separation 1


def test_radius_max_neighbors_keeps_nearest():
    pos = _chain_walk(60, 2)
    chain = torch.zeros(60, dtype=torch.long)
    capped = radius_edges(pos, chain, 12.0, 0, max_neighbors=4)
    counts = torch.bincount(capped[:, 1], minlength=60)
    assert counts.max() <= 4
    d = torch.cdist(pos, pos)
    for s, t in capped.tolist():
        row = d[t].clone()
        row[t] = math.inf
        assert (row < d[t, s]).sum() < 4


def test_build_graph_relations_and_batching():
    cfg = GraphConfig(edge_features=True)
    a = build_residue_graph(_chain_walk(30, 3), torch.randint(0, 21, (30,)), config=cfg)
    b = build_residue_graph(_chain_walk(12, 4), torch.randint(0, 21, (12,)), config=cfg)
    assert a.num_relation == 7 and cfg.edge_feature_dim == 61
    assert a.edge_feature.shape == (a.num_edge, 61)
    assert set(a.edge_relation.unique().tolist()) == set(range(7))
    batch = batch_graphs([a, b])
    assert batch.num_nodes.tolist() == [30, 12]
    assert batch.node2graph.tolist() == [0] * 30 + [1] * 12
    second = batch.edge_index[a.num_edge :]
    assert torch.equal(second, b.edge_index + 30)
    assert torch.equal(batch.edge_feature[a.num_edge :], b.edge_feature)
    # no edge crosses proteins
    g = batch.node2graph
    assert torch.equal(g[batch.edge_index[:, 0]], g[batch.edge_index[:, 1]])


def test_virtual_nodes_connect_every_residue():
    a = build_residue_graph(_chain_walk(8, 5), torch.zeros(8, dtype=torch.long))
    b = build_residue_graph(_chain_walk(5, 6), torch.zeros(5, dtype=torch.long))
    g = add_virtual_nodes(batch_graphs([a, b]))
    assert g.num_node == 15 and g.num_relation == 8
    tok = g.edge_relation == 7
    pairs = _edge_set(g.edge_index[tok])
    expected = {(13, i) for i in range(8)} | {(14, i) for i in range(8, 13)}
    expected |= {(j, i) for i, j in expected}
    assert pairs == expected
    assert g.node2graph.tolist() == [0] * 8 + [1] * 5 + [0, 1]


def test_line_graph_matches_brute_force():
    g = build_residue_graph(_chain_walk(20, 7), torch.zeros(20, dtype=torch.long))
    line = spatial_line_graph(g, 8)
    edges = g.edge_index.tolist()
    expected = set()
    for e1, (a, b) in enumerate(edges):
        for e2, (b2, c) in enumerate(edges):
            if b == b2:
                v1, v2 = g.pos[a] - g.pos[b], g.pos[c] - g.pos[b]
                ang = math.atan2(torch.linalg.cross(v1, v2).norm().item(), torch.dot(v1, v2).item())
                expected.add((e1, e2, min(int(ang / math.pi * 8), 7)))
    assert _edge_set(line.edge_index, line.edge_relation) == expected


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="NaN"):
        build_residue_graph(torch.full((3, 3), float("nan")), torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError, match="residue types"):
        build_residue_graph(torch.zeros(3, 3), torch.tensor([0, 1, 21]))
    with pytest.raises(InputError, match="shape"):
        build_residue_graph(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))


def test_thousand_residues_under_a_second():
    """CPU time of one thread, best of 3: wall time on a shared, overloaded machine says little."""
    pos = _chain_walk(1000, 8) * 0.5  # denser than a random walk, closer to a globular protein
    rt = torch.randint(0, 21, (1000,))
    build_residue_graph(pos, rt)  # warm-up
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        for _ in range(3):
            t0 = time.process_time()
            g = build_residue_graph(pos, rt)
            times.append(time.process_time() - t0)
    finally:
        torch.set_num_threads(threads)
    assert g.num_edge > 10_000
    assert min(times) < 1.0, f"graph construction took {min(times):.2f} s of CPU"
