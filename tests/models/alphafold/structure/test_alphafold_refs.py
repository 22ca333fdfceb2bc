"""Structure module and heads against OpenFold reference tensors (``$TERTIARY_REFS/openfold``).

Every dimension comes from the reference set's ``meta.json``. Weights are OpenFold's seeded
state dict (``weights/openfold.pt``) or the same weights in AlphaFold2 npz layout; the structure
module and heads are run teacher-forced on the stored Evoformer outputs of each cycle.

Tolerances (float32; OpenFold's own float32-vs-float64 differences are in the README):
units 1e-5 on valid rows; structure-module coordinates / frames 5e-3 A, angles 5e-4,
single representations 2e-4; heads 1e-4.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tertiary import constants as rc

try:  # the brief's spelling; `tests.conftest` when pytest runs from the repository root
    from conftest import open_refs, require
except ModuleNotFoundError:
    from tests.conftest import open_refs, require
from tertiary.geometry.rigid import Rigid, Rotation
from tertiary.models.alphafold.config import AlphaFoldConfig
from tertiary.models.alphafold.heads import AuxiliaryHeads
from tertiary.models.alphafold.structure import (
    AngleResnet,
    BackboneUpdate,
    InvariantPointAttention,
    StructureModule,
    atom14_to_atom37,
    atom37_exists,
    atom37_to_atom14_index,
    convert_npz_array,
    frames_to_atom14_positions,
    pseudo_beta,
    torsion_angles_to_frames,
)
from tertiary.models.alphafold.structure.param_maps import structure_module_openfold_map


@pytest.fixture(scope="module")
def refs() -> Path:
    return open_refs("openfold")


@pytest.fixture(scope="module")
def meta(refs: Path) -> dict:
    return json.loads(require(refs / "meta.json").read_text())


@pytest.fixture(scope="module")
def config(meta: dict) -> AlphaFoldConfig:
    return AlphaFoldConfig.from_openfold(meta["config"])


@pytest.fixture(scope="module")
def openfold_state(refs: Path) -> dict[str, torch.Tensor]:
    return torch.load(require(refs / "weights" / "openfold.pt"), weights_only=True)


@pytest.fixture(scope="module")
def npz_params(refs: Path, meta: dict) -> np.lib.npyio.NpzFile:
    files = [f for f in meta["files"] if f.startswith("weights/params_") and f.endswith(".npz")]
    assert files, "meta.json lists no npz parameter file"
    return np.load(require(refs / files[0]))


def load_unit(refs: Path, name: str) -> dict[str, torch.Tensor]:
    with np.load(require(refs / "units" / f"{name}.npz")) as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


def params(unit: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("param/"): v for k, v in unit.items() if k.startswith("param/")}


def load_cycle(refs: Path, name: str) -> dict[str, torch.Tensor]:
    with np.load(require(refs / "outputs" / name)) as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float = 0.0, what: str = "") -> None:
    torch.testing.assert_close(actual, expected.to(actual.dtype), atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}")


# ---------------------------------------------------------------------------- units


def test_ipa_unit(refs: Path, meta: dict) -> None:
    unit = load_unit(refs, "InvariantPointAttention")
    args = meta["units"]["InvariantPointAttention"]["ctor_args"]
    ipa = InvariantPointAttention(**args).eval()
    # OpenFold wraps the point projections in a PointProjection module (".linear")
    ipa.load_state_dict({k.replace("_points.linear.", "_points."): v for k, v in params(unit).items()})
    rigids = Rigid(Rotation(rot_mats=unit["in/r.rot_mats"]), unit["in/r.trans"])
    mask = unit["in/mask"]
    assert (mask == 0).any() and (mask == 1).any(), "reference IPA mask should mix real and padded residues"
    with torch.no_grad():
        out = ipa(unit["in/s"], unit["in/z"], rigids, mask)
        chunked = ipa(unit["in/s"], unit["in/z"], rigids, mask, chunk_size=3)
    ref = unit["out/s_update"]
    valid = mask.bool()
    close(out[valid], ref[valid], atol=1e-5, rtol=1e-5, what="IPA valid rows")
    # rows of padded residues have every key masked by -inf: float32 loses precision there
    # (OpenFold float32 vs float64 differs by 6.8e-4 on them)
    close(out, ref, atol=5e-3, what="IPA all rows")
    close(chunked, out, atol=1e-5, what="IPA chunked")


def test_backbone_update_unit(refs: Path, meta: dict) -> None:
    unit = load_unit(refs, "BackboneUpdate")
    module = BackboneUpdate(**meta["units"]["BackboneUpdate"]["ctor_args"]).eval()
    module.load_state_dict(params(unit))
    with torch.no_grad():
        close(module(unit["in/s"]), unit["out/update"], atol=1e-5, rtol=1e-5, what="backbone update")


def test_angle_resnet_unit(refs: Path, meta: dict) -> None:
    unit = load_unit(refs, "AngleResnet")
    module = AngleResnet(**meta["units"]["AngleResnet"]["ctor_args"]).eval()
    module.load_state_dict({k.replace("layers.", "blocks."): v for k, v in params(unit).items()})
    with torch.no_grad():
        raw, angles = module(unit["in/s"], unit["in/s_initial"])
    close(raw, unit["out/unnormalized_angles"], atol=1e-5, rtol=1e-5, what="unnormalized angles")
    close(angles, unit["out/angles"], atol=1e-5, rtol=1e-5, what="angles")


def test_frames_torsions_to_atoms_unit(refs: Path) -> None:
    unit = load_unit(refs, "frames_torsions_to_atoms")
    # the tables we build with are the ones OpenFold used
    for name in (
        "restype_rigid_group_default_frame",
        "restype_atom14_to_rigid_group",
        "restype_atom14_mask",
        "restype_atom14_rigid_group_positions",
    ):
        np.testing.assert_allclose(getattr(rc, name.upper()), unit[f"const/{name}"].numpy(), atol=1e-6, err_msg=name)
    aatype = unit["in/aatype"]
    assert set(aatype.tolist()) == set(range(21)), "the unit should cover every residue type"
    backbone = Rigid(Rotation(rot_mats=unit["in/backb_to_global.rot_mats"]), unit["in/backb_to_global.trans"])
    frames = torsion_angles_to_frames(backbone, unit["in/torsion_angles_sin_cos"], aatype)
    close(frames.to_tensor_4x4(), unit["out/all_frames_to_global_4x4"], atol=1e-5, rtol=1e-5, what="group frames")
    atom14 = frames_to_atom14_positions(frames, aatype)
    close(atom14, unit["out/atom14_pos"], atol=1e-4, rtol=1e-5, what="atom14")
    assert torch.equal(atom37_to_atom14_index(aatype), unit["out/residx_atom37_to_atom14"].long())
    close(atom37_exists(aatype), unit["out/atom37_atom_exists"], atol=0, what="atom37 exists")
    close(atom14_to_atom37(unit["out/atom14_pos"], aatype), unit["out/atom37_pos"], atol=1e-6, what="atom37")
    cb, cb_mask = pseudo_beta(aatype, unit["out/atom37_pos"], unit["in/atom37_mask_for_pseudo_beta"])
    close(cb, unit["out/pseudo_beta"], atol=1e-6, what="pseudo beta")
    close(cb_mask, unit["out/pseudo_beta_mask"], atol=0, what="pseudo beta mask")


# ---------------------------------------------------------------------------- full structure module


def _structure_module(config: AlphaFoldConfig, state: dict[str, torch.Tensor]) -> StructureModule:
    sm = StructureModule(config.structure_module).eval()
    key_map = sm.openfold_key_map()
    of_keys = {k for k in state if k.startswith("structure_module.")}
    assert of_keys == set(key_map), f"unmapped OpenFold keys: {sorted(of_keys ^ set(key_map))}"
    sm.load_state_dict({key_map[k]: state[k] for k in of_keys})
    return sm


def _sm_inputs(refs: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(require(refs / "inputs" / "features.npz")) as feats:
        aatype = torch.from_numpy(feats["aatype"][..., -1]).long()
        mask = torch.from_numpy(feats["seq_mask"][..., -1])
    return aatype, mask


@pytest.mark.parametrize("cycle", [0, 2])
def test_structure_module_matches_openfold(refs: Path, meta: dict, config, openfold_state, cycle: int) -> None:
    sm = _structure_module(config, openfold_state)
    aatype, mask = _sm_inputs(refs)
    ref = load_cycle(refs, f"cycle{cycle}.npz")
    with torch.no_grad():
        out = sm(ref["evoformer.s"], ref["evoformer.z"], aatype, mask)
    no_blocks = meta["dims"]["structure_module"]["no_blocks"]
    assert out["frames"].shape == ref["sm.frames"].shape and out["frames"].shape[0] == no_blocks
    close(out["frames"], ref["sm.frames"], atol=5e-3, what="frames")
    close(out["positions"], ref["sm.positions"], atol=5e-3, what="positions")
    close(out["sidechain_frames"][-1], ref["sm.sidechain_frames"], atol=5e-3, what="sidechain frames")
    close(out["angles"], ref["sm.angles"], atol=5e-4, what="angles")
    close(out["unnormalized_angles"], ref["sm.unnormalized_angles"], atol=5e-4, rtol=1e-4, what="raw angles")
    close(out["states"], ref["sm.states"], atol=2e-4, rtol=1e-4, what="states")
    close(out["single"], ref["sm.single"], atol=2e-4, rtol=1e-4, what="single")
    atom37 = atom14_to_atom37(out["positions"][-1], aatype)
    close(atom37, ref["final_atom_positions"], atol=5e-3, what="final atom37 positions")
    close(atom37_exists(aatype), ref["final_atom_mask"], atol=0, what="final atom mask")


def test_structure_module_npz_weights_equal_openfold(config, openfold_state, npz_params) -> None:
    sm = _structure_module(config, openfold_state)
    key_map = sm.npz_key_map()
    npz_keys = {k for k in npz_params.files if "/structure_module/" in k}
    assert npz_keys == set(key_map), f"unmapped npz keys: {sorted(npz_keys ^ set(key_map))}"
    from_npz = {t: convert_npz_array(npz_params[k], tr, k) for k, (t, tr) in key_map.items()}
    assert set(from_npz) == set(sm.state_dict())
    for key, value in sm.state_dict().items():
        assert torch.equal(from_npz[key], value), key


def test_openfold_map_prefixes(config) -> None:
    sm_cfg = config.structure_module
    m = structure_module_openfold_map(sm_cfg.no_transition_layers, sm_cfg.no_resnet_blocks, "model.sm.", "af.structure.")
    assert all(k.startswith("model.sm.") for k in m) and all(v.startswith("af.structure.") for v in m.values())


# ---------------------------------------------------------------------------- heads


def _heads(config: AlphaFoldConfig, state: dict[str, torch.Tensor]) -> AuxiliaryHeads:
    heads = AuxiliaryHeads(config.heads).eval()
    key_map = heads.openfold_key_map()
    of_keys = {k for k in state if k.startswith("aux_heads.")}
    assert of_keys == set(key_map), f"unmapped OpenFold keys: {sorted(of_keys ^ set(key_map))}"
    heads.load_state_dict({key_map[k]: state[k] for k in of_keys})
    return heads


def test_heads_match_openfold(refs: Path, meta: dict, config, openfold_state) -> None:
    assert config.heads.tm_enabled == meta["dims"]["heads"]["tm"]["enabled"]
    heads = _heads(config, openfold_state)
    last = load_cycle(refs, f"cycle{meta['n_cycles'] - 1}.npz")
    ref = load_cycle(refs, "heads.npz")
    with torch.no_grad():
        out = heads(last["sm.single"], last["evoformer.s"], last["evoformer.z"], last["evoformer.m"])
    keys = [
        "lddt_logits", "plddt", "distogram_logits", "masked_msa_logits", "experimentally_resolved_logits",
        "tm_logits", "ptm_score", "predicted_aligned_error", "max_predicted_aligned_error",
    ]  # fmt: skip
    for key in keys:
        assert key in ref, f"heads.npz lacks {key}"
        close(out[key], ref[key], atol=1e-4, rtol=1e-5, what=key)


def test_heads_npz_weights_equal_openfold(config, openfold_state, npz_params) -> None:
    heads = _heads(config, openfold_state)
    key_map = heads.npz_key_map()
    npz_keys = {k for k in npz_params.files if k.split("/")[2].endswith("_head")}
    assert npz_keys == set(key_map), f"unmapped npz keys: {sorted(npz_keys ^ set(key_map))}"
    from_npz = {t: convert_npz_array(npz_params[k], tr, k) for k, (t, tr) in key_map.items()}
    assert set(from_npz) == set(heads.state_dict())
    for key, value in heads.state_dict().items():
        assert torch.equal(from_npz[key], value), key
