"""ESM-only and GearNet-only encoders give what their models give on the same proteins."""

from __future__ import annotations

import torch

from tertiary.constants import RESTYPES_WITH_X
from tertiary.data.graph import batch_graphs, build_residue_graph
from tertiary.models.esm import ESM2, Alphabet
from tertiary.models.fusionprot.encoders import ESMEncoder, GearNetEncoder
from tertiary.models.fusionprot.task import TINY_ESM
from tertiary.models.gearnet import GearNet, GearNetConfig


def _graphs(lengths=(11, 4, 19)):
    g = torch.Generator().manual_seed(0)
    out = []
    for n in lengths:
        out.append(build_residue_graph(torch.randn(n, 3, generator=g) * 6, torch.randint(0, 21, (n,), generator=g)))
    return out


def test_esm_encoder_matches_esm_forward_on_sequences():
    esm = ESM2(TINY_ESM, seed=2).eval()
    enc = ESMEncoder(esm).eval()
    graphs = _graphs()
    seqs = ["".join(RESTYPES_WITH_X[i] for i in g.residue_type.tolist()) for g in graphs]
    tokens = Alphabet().batch(seqs)
    with torch.no_grad():
        ref = esm(tokens, repr_layers=[TINY_ESM.num_layers])["representations"][TINY_ESM.num_layers]
        out = enc(batch_graphs(graphs))
    start = 0
    for b, s in enumerate(seqs):
        n = len(s)
        assert torch.allclose(out["node_feature"][start : start + n], ref[b, 1 : n + 1], atol=1e-5)
        assert torch.allclose(out["graph_feature"][b], ref[b, 1 : n + 1].mean(0), atol=1e-5)
        start += n


def test_gearnet_encoder_is_gearnet_on_one_hots():
    model = GearNet(GearNetConfig.preset("tiny")).eval()
    batch = batch_graphs(_graphs())
    with torch.no_grad():
        a = GearNetEncoder(model)(batch.as_dict())
        b = model(batch, batch.residue_one_hot())
    assert torch.equal(a["node_feature"], b["node_feature"]) and torch.equal(a["graph_feature"], b["graph_feature"])
