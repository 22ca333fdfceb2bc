"""AlphaFold2 against OpenFold reference tensors ($TERTIARY_REFS/openfold, see its README).

Every dimension comes from the reference set's meta.json. Tolerances (float32 round-off; the
README measures OpenFold float32 vs float64 at <= 1.4e-6 for units and <= 1.1e-5 for the Evoformer):
- unit modules: atol 1e-5, rtol 1e-5 (fully masked MSA columns excluded, see README);
- trunk tensors: meta.json["suggested_float32_tolerances"] (atol 1e-4, rtol 1e-4);
- cycles >= 1 are teacher-forced from the stored recycled inputs (bin-edge ill-conditioning).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import open_refs, require

from tertiary.models.alphafold.config import AlphaFoldConfig
from tertiary.models.alphafold.embedders import ExtraMSAEmbedder, InputEmbedder, RecyclingEmbedder
from tertiary.models.alphafold.msa_attention import (
    MSAColumnAttention,
    MSAColumnGlobalAttention,
    MSARowAttentionWithPairBias,
)
from tertiary.models.alphafold.outer_product_mean import OuterProductMean
from tertiary.models.alphafold.triangle_attention import TriangleAttentionEndingNode, TriangleAttentionStartingNode
from tertiary.models.alphafold.triangle_multiplication import (
    TriangleMultiplicationIncoming,
    TriangleMultiplicationOutgoing,
)
from tertiary.models.alphafold.model import AlphaFold, split_cycles
from tertiary.models.alphafold.trunk import AlphaFoldTrunk
from tertiary.models.alphafold.weights import convert_openfold_state_dict, load_model
from tertiary.nn.primitives import Transition

UNIT_ATOL = UNIT_RTOL = 1e-5

# reference unit name -> (constructor from ctor_args, argument names in call order)
UNITS = {
    "TriangleMultiplicationOutgoing": (lambda a: TriangleMultiplicationOutgoing(a["c_z"], a["c_hidden"]), ("z", "mask")),
    "TriangleMultiplicationIncoming": (lambda a: TriangleMultiplicationIncoming(a["c_z"], a["c_hidden"]), ("z", "mask")),
    "TriangleAttentionStartingNode": (
        lambda a: TriangleAttentionStartingNode(a["c_in"], a["c_hidden"], a["no_heads"]), ("z", "mask")),
    "TriangleAttentionEndingNode": (
        lambda a: TriangleAttentionEndingNode(a["c_in"], a["c_hidden"], a["no_heads"]), ("z", "mask")),
    "PairTransition": (lambda a: Transition(a["c_z"], a["n"]), ("z", "mask")),
    "MSATransition": (lambda a: Transition(a["c_m"], a["n"]), ("m", "mask")),
    "MSARowAttentionWithPairBias": (
        lambda a: MSARowAttentionWithPairBias(a["c_m"], a["c_z"], a["c_hidden"], a["no_heads"]), ("m", "z", "mask")),
    "MSAColumnAttention": (lambda a: MSAColumnAttention(a["c_m"], a["c_hidden"], a["no_heads"]), ("m", "mask")),
    "MSAColumnGlobalAttention": (
        lambda a: MSAColumnGlobalAttention(a["c_in"], a["c_hidden"], a["no_heads"]), ("m", "mask")),
    "OuterProductMean": (lambda a: OuterProductMean(a["c_m"], a["c_z"], a["c_hidden"]), ("m", "mask")),
    "InputEmbedder": (
        lambda a: InputEmbedder(a["tf_dim"], a["msa_dim"], a["c_m"], a["c_z"], a["relpos_k"]), ("tf", "ri", "msa")),
    "RecyclingEmbedder": (
        lambda a: RecyclingEmbedder(a["c_m"], a["c_z"], a["min_bin"], a["max_bin"], a["no_bins"], a["inf"]),
        ("m", "z", "x")),
    "ExtraMSAEmbedder": (lambda a: ExtraMSAEmbedder(a["c_in"], a["c_out"]), ("x",)),
}  # fmt: skip


@pytest.fixture(scope="module")
def refs() -> Path:
    return open_refs("openfold")


@pytest.fixture(scope="module")
def meta(refs: Path) -> dict:
    return json.loads(require(refs / "meta.json").read_text())


def _split(npz: np.lib.npyio.NpzFile, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: torch.from_numpy(npz[k]) for k in npz.files if k.startswith(prefix)}


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_module_matches_openfold(refs: Path, meta: dict, name: str) -> None:
    if name not in meta["units"]:
        pytest.fail(f"reference set incomplete: meta.json has no unit {name}")
    ctor, arg_names = UNITS[name]
    data = np.load(require(refs / "units" / f"{name}.npz"))
    params, inputs, outputs = _split(data, "param/"), _split(data, "in/"), _split(data, "out/")
    module = ctor(meta["units"][name]["ctor_args"]).eval()
    module.load_state_dict(convert_openfold_state_dict(params))
    with torch.no_grad():
        got = module(*(inputs[a] for a in arg_names))
    got = got if isinstance(got, tuple) else (got,)
    expected = [v for k, v in outputs.items() if not k.startswith("relpos")]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        if name == "MSAColumnAttention":  # fully masked columns: OpenFold's -1e9 logits lose precision
            valid = inputs["mask"].any(0)
            g, e = g[:, valid], e[:, valid]
        torch.testing.assert_close(g, e, atol=UNIT_ATOL, rtol=UNIT_RTOL)
    if name == "InputEmbedder":
        torch.testing.assert_close(module.relpos(inputs["ri"]), outputs["relpos"], atol=UNIT_ATOL, rtol=UNIT_RTOL)


@pytest.fixture(scope="module")
def trunk(refs: Path, meta: dict) -> AlphaFoldTrunk:
    config = AlphaFoldConfig.from_openfold(meta["config"])
    model = AlphaFoldTrunk(config).eval()
    state = torch.load(require(refs / "weights" / "openfold.pt"), weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(("structure_module.", "aux_heads."))}
    model.load_state_dict(convert_openfold_state_dict(state))
    return model


def cycle_features(refs: Path, cycle: int) -> dict[str, torch.Tensor]:
    feats = np.load(require(refs / "inputs" / "features.npz"))
    return {k: torch.from_numpy(np.ascontiguousarray(feats[k][..., cycle])) for k in feats.files}


@pytest.mark.parametrize("cycle", [0, 1, 2])
def test_trunk_matches_openfold_per_cycle(refs: Path, meta: dict, trunk: AlphaFoldTrunk, cycle: int) -> None:
    if cycle >= meta["n_cycles"]:
        pytest.skip(f"reference set has {meta['n_cycles']} cycles")
    tol = meta["suggested_float32_tolerances"]
    feats = cycle_features(refs, cycle)
    if cycle == 0:
        prev = trunk.initial_recycling_state(feats)
    else:  # teacher forcing: the recycled inputs OpenFold used
        before = np.load(require(refs / "outputs" / f"cycle{cycle - 1}.npz"))
        prev = tuple(
            torch.from_numpy(before[k]) for k in ("evoformer.m", "evoformer.z", "final_atom_positions")
        )
        prev = (prev[0][0], prev[1], prev[2])
    record: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        trunk(feats, *prev, record=record)
    expected = np.load(require(refs / "outputs" / f"cycle{cycle}.npz"))
    compared = [k for k in record if k in expected.files]
    assert {"evoformer.m", "evoformer.z", "evoformer.s"} <= set(compared)
    for key in compared:
        torch.testing.assert_close(
            record[key], torch.from_numpy(expected[key]),
            atol=tol["representations_atol"], rtol=tol["representations_rtol"], msg=lambda m: f"{key}: {m}",
        )  # fmt: skip


# ----------------------------------------------------------------------------- full model
@pytest.fixture(scope="module")
def config(meta: dict) -> AlphaFoldConfig:
    return AlphaFoldConfig.from_openfold(meta["config"])


@pytest.fixture(scope="module")
def model(refs: Path, config: AlphaFoldConfig) -> AlphaFold:
    return load_model(require(refs / "weights" / f"params_{_npz_name(refs)}.npz"), config).eval()


def _npz_name(refs: Path) -> str:
    names = sorted(p.stem.removeprefix("params_") for p in (refs / "weights").glob("params_*.npz"))
    if len(names) != 1:
        pytest.fail(f"reference set incomplete: expected one params_*.npz in {refs / 'weights'}, found {names}")
    return names[0]


def test_af2_npz_and_openfold_pt_give_identical_parameters(refs: Path, config: AlphaFoldConfig, model: AlphaFold) -> None:
    from_pt = load_model(require(refs / "weights" / "openfold.pt"), config).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, from_pt[key]), key


def test_model_iteration_cycle0_matches_openfold(refs: Path, meta: dict, model: AlphaFold) -> None:
    tol = meta["suggested_float32_tolerances"]
    feats = cycle_features(refs, 0)
    with torch.no_grad():
        out = model.iteration(feats, model.initial_recycling_state(feats))
    expected = np.load(require(refs / "outputs" / "cycle0.npz"))
    coord = {"atol": tol["coordinates_atol_angstrom"], "rtol": 0.0}
    checks = {
        "sm.positions": coord, "sm.frames": coord, "final_atom_positions": coord,
        "sm.angles": {"atol": tol["angles_atol"], "rtol": 0.0},
        "sm.unnormalized_angles": {"atol": tol["angles_atol"], "rtol": 1e-4},
        "sm.single": {"atol": tol["representations_atol"], "rtol": tol["representations_rtol"]},
        "final_atom_mask": {"atol": 0.0, "rtol": 0.0},
    }  # fmt: skip
    for key, t in checks.items():
        torch.testing.assert_close(out[key], torch.from_numpy(expected[key]), **t, msg=lambda m: f"{key}: {m}")


def test_last_cycle_and_heads_match_openfold_teacher_forced(refs: Path, meta: dict, model: AlphaFold) -> None:
    last = meta["n_cycles"] - 1
    before = np.load(require(refs / "outputs" / f"cycle{last - 1}.npz"))
    prev = (
        torch.from_numpy(before["evoformer.m"][0]),
        torch.from_numpy(before["evoformer.z"]),
        torch.from_numpy(before["final_atom_positions"]),
    )
    with torch.no_grad():
        out = model.iteration(cycle_features(refs, last), prev)
        heads = model.aux_heads(out["sm.single"], out["single"], out["pair"], out["msa"])
    expected = np.load(require(refs / "outputs" / "heads.npz"))
    tol = meta["suggested_float32_tolerances"]
    compared = [k for k in expected.files if k in heads]
    assert {"plddt", "lddt_logits", "distogram_logits"} <= set(compared)
    for key in compared:  # logits have magnitudes up to ~35: relative tolerance
        torch.testing.assert_close(
            heads[key], torch.from_numpy(expected[key]).to(heads[key].dtype),
            atol=1e-3, rtol=tol["representations_rtol"] * 10, msg=lambda m: f"{key}: {m}",
        )  # fmt: skip


def test_full_recycling_run_cycle_count_and_shapes(refs: Path, meta: dict, model: AlphaFold) -> None:
    feats = np.load(require(refs / "inputs" / "features.npz"))
    per_cycle = split_cycles({k: torch.from_numpy(feats[k]) for k in feats.files})
    seen: list[tuple[int, int]] = []
    with torch.no_grad():
        out = model(per_cycle, on_cycle=lambda i, n: seen.append((i, n)))
    n_res = meta["dims"]["n_res"]
    assert seen == [(i, meta["n_cycles"]) for i in range(meta["n_cycles"])]
    assert out["final_atom_positions"].shape == (n_res, 37, 3)
    assert out["plddt"].shape == (n_res,) and 0 <= out["plddt"].min() and out["plddt"].max() <= 100
    assert int(out["num_cycles"]) == meta["n_cycles"]
