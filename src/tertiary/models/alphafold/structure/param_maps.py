"""Parameter-name maps from OpenFold state dicts and official AlphaFold2 ``.npz`` files.

Maps are plain dictionaries so a model-level importer can merge them:

- OpenFold: ``{openfold_key: tertiary_key}``; tensors are copied unchanged.
- AlphaFold2 npz: ``{npz_key: (tertiary_key, transform)}`` with ``transform`` one of
  :data:`TRANSFORMS`; :func:`convert_npz_array` applies it. Haiku linear layers store
  ``weights [in, out]`` (transposed to torch's ``[out, in]``); LayerNorms store ``scale`` /
  ``offset`` (torch ``weight`` / ``bias``).

This module covers the structure module; :mod:`tertiary.models.alphafold.heads` has the heads.
"""

from __future__ import annotations

import numpy as np
import torch

from tertiary.errors import WeightsError

#: "identity": copy as is; "linear_weight": haiku ``[in, out]`` -> torch ``[out, in]``
TRANSFORMS = ("identity", "linear_weight")

#: prefix of every parameter of one AlphaFold2 model iteration in the official npz files
NPZ_PREFIX = "alphafold/alphafold_iteration/"

NpzMap = dict[str, tuple[str, str]]


def convert_npz_array(array: np.ndarray, transform: str, key: str = "?") -> torch.Tensor:
    """Turn one npz array into the tensor tertiary stores, applying ``transform``."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if transform == "identity":
        return tensor
    if transform == "linear_weight":
        if tensor.ndim != 2:
            raise WeightsError(f"{key}: expected a 2-D linear weight, got shape {tuple(tensor.shape)}")
        return tensor.transpose(0, 1).contiguous()
    raise WeightsError(f"{key}: unknown transform {transform!r}")


def npz_linear(npz_key: str, tertiary_key: str) -> NpzMap:
    """Haiku ``Linear`` at ``npz_key`` (``.../name``) -> torch ``Linear`` at ``tertiary_key``."""
    return {
        f"{npz_key}//weights": (f"{tertiary_key}.weight", "linear_weight"),
        f"{npz_key}//bias": (f"{tertiary_key}.bias", "identity"),
    }


def npz_layer_norm(npz_key: str, tertiary_key: str) -> NpzMap:
    """Haiku ``LayerNorm`` -> torch ``LayerNorm``."""
    return {
        f"{npz_key}//scale": (f"{tertiary_key}.weight", "identity"),
        f"{npz_key}//offset": (f"{tertiary_key}.bias", "identity"),
    }


def weight_and_bias(openfold_key: str, tertiary_key: str) -> dict[str, str]:
    """``{of.weight: tt.weight, of.bias: tt.bias}``."""
    return {f"{openfold_key}.{p}": f"{tertiary_key}.{p}" for p in ("weight", "bias")}


def structure_module_openfold_map(
    no_transition_layers: int,
    no_resnet_blocks: int,
    openfold_prefix: str = "structure_module.",
    prefix: str = "",
) -> dict[str, str]:
    """OpenFold ``StructureModule`` state-dict keys -> :class:`StructureModule` keys.

    Args:
        no_transition_layers, no_resnet_blocks: as in :class:`StructureModuleConfig`.
        openfold_prefix: where the module sits in the OpenFold state dict.
        prefix: where the module sits in the tertiary model.
    """
    same = ["layer_norm_s", "layer_norm_z", "linear_in", "layer_norm_ipa", "transition.layer_norm"]
    same += [f"ipa.{name}" for name in ("linear_q", "linear_kv", "linear_b", "linear_out")]
    same += [f"transition.layers.{i}.linear_{j}" for i in range(no_transition_layers) for j in (1, 2, 3)]
    same += [f"angle_resnet.{name}" for name in ("linear_in", "linear_initial", "linear_out")]
    out: dict[str, str] = {}
    for name in same:
        out.update(weight_and_bias(openfold_prefix + name, prefix + name))
    out[f"{openfold_prefix}ipa.head_weights"] = f"{prefix}ipa.head_weights"
    for pts in ("linear_q_points", "linear_kv_points"):
        out.update(weight_and_bias(f"{openfold_prefix}ipa.{pts}.linear", f"{prefix}ipa.{pts}"))
    out.update(weight_and_bias(f"{openfold_prefix}bb_update.linear", f"{prefix}backbone_update.linear"))
    for i in range(no_resnet_blocks):
        for j in (1, 2):
            out.update(
                weight_and_bias(
                    f"{openfold_prefix}angle_resnet.layers.{i}.linear_{j}", f"{prefix}angle_resnet.blocks.{i}.linear_{j}"
                )
            )
    return out


def _suffix(i: int) -> str:
    """Haiku's numbering of repeated module names: ``name``, ``name_1``, ``name_2`` ..."""
    return "" if i == 0 else f"_{i}"


def structure_module_npz_map(
    no_transition_layers: int,
    no_resnet_blocks: int,
    npz_prefix: str = NPZ_PREFIX + "structure_module",
    prefix: str = "",
) -> NpzMap:
    """Official AlphaFold2 npz keys -> :class:`StructureModule` keys and transforms.

    The monomer IPA's point projections are plain linear layers whose outputs are laid out as
    (all x, all y, all z) over (head, point), which is exactly the layout
    :class:`InvariantPointAttention` reads, so every linear weight is a plain transpose.
    """
    fold = f"{npz_prefix}/fold_iteration"
    ipa = f"{fold}/invariant_point_attention"
    out: NpzMap = {}
    out.update(npz_layer_norm(f"{npz_prefix}/single_layer_norm", prefix + "layer_norm_s"))
    out.update(npz_linear(f"{npz_prefix}/initial_projection", prefix + "linear_in"))
    out.update(npz_layer_norm(f"{npz_prefix}/pair_layer_norm", prefix + "layer_norm_z"))
    for npz_name, name in (
        ("q_scalar", "linear_q"),
        ("kv_scalar", "linear_kv"),
        ("q_point_local", "linear_q_points"),
        ("kv_point_local", "linear_kv_points"),
        ("attention_2d", "linear_b"),
        ("output_projection", "linear_out"),
    ):
        out.update(npz_linear(f"{ipa}/{npz_name}", f"{prefix}ipa.{name}"))
    out[f"{ipa}//trainable_point_weights"] = (f"{prefix}ipa.head_weights", "identity")
    out.update(npz_layer_norm(f"{fold}/attention_layer_norm", prefix + "layer_norm_ipa"))
    for layer in range(no_transition_layers):
        for j in range(3):
            out.update(
                npz_linear(f"{fold}/transition{_suffix(3 * layer + j)}", f"{prefix}transition.layers.{layer}.linear_{j + 1}")
            )
    out.update(npz_layer_norm(f"{fold}/transition_layer_norm", prefix + "transition.layer_norm"))
    out.update(npz_linear(f"{fold}/affine_update", prefix + "backbone_update.linear"))
    side = f"{fold}/rigid_sidechain"
    out.update(npz_linear(f"{side}/input_projection", prefix + "angle_resnet.linear_in"))
    out.update(npz_linear(f"{side}/input_projection_1", prefix + "angle_resnet.linear_initial"))
    for i in range(no_resnet_blocks):
        out.update(npz_linear(f"{side}/resblock1{_suffix(i)}", f"{prefix}angle_resnet.blocks.{i}.linear_1"))
        out.update(npz_linear(f"{side}/resblock2{_suffix(i)}", f"{prefix}angle_resnet.blocks.{i}.linear_2"))
    out.update(npz_linear(f"{side}/unnormalized_angles", prefix + "angle_resnet.linear_out"))
    return out
