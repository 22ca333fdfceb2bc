"""Import / export of AlphaFold2 weights.

- OpenFold ``.pt`` state dicts (``torch.load(..., weights_only=True)``): the module tree of
  :class:`~tertiary.models.alphafold.model.AlphaFold` uses OpenFold's parameter names, so keys map
  one to one except for the few renames in :data:`OPENFOLD_RENAMES`.
- Official AlphaFold2 ``params_model_*.npz`` (JAX / Haiku names, stacked blocks, per-head layouts):
  :func:`convert_af2_params` maps every array to a tertiary key and layout.
- tertiary's own format: ``<name>.safetensors`` + ``<name>.json`` (the config).

Every importer lists missing / unexpected keys by name and compares shapes (:class:`WeightsError`).
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tertiary.errors import WeightsError
from tertiary.models.alphafold.config import AlphaFoldConfig
from tertiary.models.alphafold.structure.param_maps import convert_npz_array

if TYPE_CHECKING:
    from tertiary.models.alphafold.model import AlphaFold

logger = logging.getLogger(__name__)

# OpenFold wraps column attention in an extra ``_msa_att`` module; tertiary does not.
OPENFOLD_RENAMES = ((re.compile(r"(^|\.)_msa_att\."), r"\1"),)


def convert_openfold_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenFold parameter names -> tertiary names (tensors unchanged)."""
    out = {}
    for key, value in state.items():
        for pattern, repl in OPENFOLD_RENAMES:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


# ----------------------------------------------------------------------------- AlphaFold2 npz
#: Haiku names of the per-block submodules -> tertiary names inside one Evoformer / extra-MSA block
_NPZ_BLOCK_MODULES = {
    "msa_row_attention_with_pair_bias": "msa_att_row",
    "msa_column_attention": "msa_att_col",
    "msa_column_global_attention": "msa_att_col",
    "msa_transition": "msa_transition",
    "outer_product_mean": "outer_product_mean",
    "triangle_multiplication_outgoing": "pair_stack.tri_mul_out",
    "triangle_multiplication_incoming": "pair_stack.tri_mul_in",
    "triangle_attention_starting_node": "pair_stack.tri_att_start",
    "triangle_attention_ending_node": "pair_stack.tri_att_end",
    "pair_transition": "pair_stack.pair_transition",
}
#: Haiku layer names inside those submodules -> tertiary names
_NPZ_LAYERS = {
    "query_norm": "layer_norm_m",
    "feat_2d_norm": "layer_norm_z",
    "input_layer_norm": "layer_norm",
    "transition1": "linear_1",
    "transition2": "linear_2",
    "layer_norm_input": "layer_norm",
    "left_projection": "linear_1",
    "right_projection": "linear_2",
    "center_layer_norm": "layer_norm_out",
    "output_projection": "linear_z",
    "gating_linear": "linear_g",
}
#: overrides for the triangle multiplication (same Haiku names, other tertiary names)
_NPZ_TRI_MUL_LAYERS = {
    "layer_norm_input": "layer_norm_in",
    "left_projection": "linear_a_p",
    "right_projection": "linear_b_p",
    "left_gate": "linear_a_g",
    "right_gate": "linear_b_g",
}
_NPZ_ATTENTION_PARAMS = {
    "query_w": ("linear_q.weight", "heads_in"),
    "key_w": ("linear_k.weight", "heads_in"),
    "value_w": ("linear_v.weight", "heads_in"),
    "gating_w": ("linear_g.weight", "heads_in"),
    "gating_b": ("linear_g.bias", "flatten"),
    "output_w": ("linear_o.weight", "heads_out"),
    "output_b": ("linear_o.bias", "identity"),
}
#: top-level Haiku modules of the embedders -> tertiary modules (Linear or LayerNorm)
_NPZ_TOP = {
    "preprocess_1d": "input_embedder.linear_tf_m",
    "preprocess_msa": "input_embedder.linear_msa_m",
    "left_single": "input_embedder.linear_tf_z_i",
    "right_single": "input_embedder.linear_tf_z_j",
    "pair_activiations": "input_embedder.linear_relpos",  # sic: the official name
    "prev_pos_linear": "recycling_embedder.linear",
    "prev_msa_first_row_norm": "recycling_embedder.layer_norm_m",
    "prev_pair_norm": "recycling_embedder.layer_norm_z",
    "extra_msa_activations": "extra_msa_embedder.linear",
    "single_activations": "evoformer.linear",
}
_NPZ_STACKS = {"evoformer_iteration": "evoformer.blocks", "extra_msa_stack": "extra_msa_stack.blocks"}
_EVOFORMER_NPZ = "alphafold/alphafold_iteration/evoformer/"
_TEMPLATE_NPZ = _EVOFORMER_NPZ + "template_embedding/"
_TEMPLATE_STACK_NPZ = _TEMPLATE_NPZ + "single_template_embedding/template_pair_stack/__layer_stack_no_state/"
#: Haiku submodules of one template pair block -> tertiary names (Algorithm 16)
_NPZ_TEMPLATE_BLOCK_MODULES = {
    "triangle_attention_starting_node": "tri_att_start",
    "triangle_attention_ending_node": "tri_att_end",
    "triangle_multiplication_outgoing": "tri_mul_out",
    "triangle_multiplication_incoming": "tri_mul_in",
    "pair_transition": "pair_transition",
}
_TE = "template_embedder."
#: non-stacked template parameters: npz key -> (tertiary key, transform)
_NPZ_TEMPLATE_TOP = {
    _EVOFORMER_NPZ + "template_single_embedding//weights": (_TE + "template_single_embedder.linear_1.weight", "linear_weight"),
    _EVOFORMER_NPZ + "template_single_embedding//bias": (_TE + "template_single_embedder.linear_1.bias", "identity"),
    _EVOFORMER_NPZ + "template_projection//weights": (_TE + "template_single_embedder.linear_2.weight", "linear_weight"),
    _EVOFORMER_NPZ + "template_projection//bias": (_TE + "template_single_embedder.linear_2.bias", "identity"),
    _TEMPLATE_NPZ + "single_template_embedding/embedding2d//weights": (_TE + "template_pair_embedder.linear.weight", "linear_weight"),
    _TEMPLATE_NPZ + "single_template_embedding/embedding2d//bias": (_TE + "template_pair_embedder.linear.bias", "identity"),
    _TEMPLATE_NPZ + "single_template_embedding/output_layer_norm//scale": (_TE + "template_pair_stack.layer_norm.weight", "identity"),
    _TEMPLATE_NPZ + "single_template_embedding/output_layer_norm//offset": (_TE + "template_pair_stack.layer_norm.bias", "identity"),
    _TEMPLATE_NPZ + "attention//query_w": (_TE + "template_pointwise_att.mha.linear_q.weight", "heads_in"),
    _TEMPLATE_NPZ + "attention//key_w": (_TE + "template_pointwise_att.mha.linear_k.weight", "heads_in"),
    _TEMPLATE_NPZ + "attention//value_w": (_TE + "template_pointwise_att.mha.linear_v.weight", "heads_in"),
    _TEMPLATE_NPZ + "attention//output_w": (_TE + "template_pointwise_att.mha.linear_o.weight", "heads_out"),
    _TEMPLATE_NPZ + "attention//output_b": (_TE + "template_pointwise_att.mha.linear_o.bias", "identity"),
}  # fmt: skip


def _npz_leaf(module: str, path: list[str], leaf: str) -> tuple[str, str] | None:
    """(tertiary suffix, transform) of one parameter inside a block submodule, None if unknown."""
    if leaf in ("weights", "bias", "scale", "offset"):
        names = dict(_NPZ_LAYERS, **(_NPZ_TRI_MUL_LAYERS if module.startswith("triangle_mult") else {}))
        if module == "triangle_multiplication_incoming":  # AlphaFold2 computes sum_k right_ki left_kj
            names.update(left_projection="linear_b_p", right_projection="linear_a_p",
                         left_gate="linear_b_g", right_gate="linear_a_g")  # fmt: skip
        if module.startswith("triangle_attention") and path == ["query_norm"]:
            names["query_norm"] = "layer_norm"
        if len(path) != 1 or path[0] not in names:
            return None
        param = {"weights": "weight", "scale": "weight", "bias": "bias", "offset": "bias"}[leaf]
        return f"{names[path[0]]}.{param}", "linear_weight" if leaf == "weights" else "identity"
    if path == [] and leaf == "feat_2d_weights":
        return ("linear.weight" if module.startswith("triangle_attention") else "linear_z.weight"), "linear_weight"
    if module == "outer_product_mean" and path == [] and leaf in ("output_w", "output_b"):
        return ("linear_out.weight", "heads_out") if leaf == "output_w" else ("linear_out.bias", "identity")
    if path == ["attention"] and leaf in _NPZ_ATTENTION_PARAMS:
        name, transform = _NPZ_ATTENTION_PARAMS[leaf]
        if module == "msa_column_global_attention":
            if leaf in ("key_w", "value_w"):
                transform = "linear_weight"
            return f"global_attention.{name}", transform
        return f"mha.{name}", transform
    return None


def trunk_npz_map(config: AlphaFoldConfig) -> dict[str, tuple[str, str, int | None]]:
    """Official npz keys of the embedders and stacks -> (tertiary key, transform, block index).

    Evoformer and extra-MSA parameters are stacked over blocks in the npz (leading axis); the
    block index says which slice a tertiary block takes (None: not stacked).
    """
    out: dict[str, tuple[str, str, int | None]] = {}
    for hk, tk in _NPZ_TOP.items():
        layer_norm = hk.endswith("_norm")
        for leaf, param in (("scale", "weight"), ("offset", "bias")) if layer_norm else (("weights", "weight"), ("bias", "bias")):
            out[f"{_EVOFORMER_NPZ}{hk}//{leaf}"] = (f"{tk}.{param}", "linear_weight" if leaf == "weights" else "identity", None)
    stacks = {"evoformer_iteration": config.evoformer, "extra_msa_stack": config.extra_msa}
    for stack, cfg in stacks.items():
        column = "msa_column_global_attention" if stack == "extra_msa_stack" else "msa_column_attention"
        for module in (m for m in _NPZ_BLOCK_MODULES if not m.startswith("msa_column") or m == column):
            for path, leaves in _npz_module_params(module):
                for leaf in leaves:
                    suffix, transform = _npz_leaf(module, path, leaf)  # type: ignore[misc]
                    key = f"{_EVOFORMER_NPZ}{stack}/{module}{''.join('/' + p for p in path)}//{leaf}"
                    for i in range(cfg.no_blocks):
                        tk = f"{_NPZ_STACKS[stack]}.{i}.{_NPZ_BLOCK_MODULES[module]}.{suffix}"
                        out[f"{key}@{i}"] = (tk, transform, i)
    if config.template.enabled:
        out.update(template_npz_map(config))
    return out


def template_npz_map(config: AlphaFoldConfig) -> dict[str, tuple[str, str, int | None]]:
    """Official npz keys of the template embedding (models 1-2) -> (tertiary key, transform, block)."""
    out: dict[str, tuple[str, str, int | None]] = {k: (t, tr, None) for k, (t, tr) in _NPZ_TEMPLATE_TOP.items()}
    if not config.template.embed_angles:
        out = {k: v for k, v in out.items() if "template_single_embedder" not in v[0]}
    for module, name in _NPZ_TEMPLATE_BLOCK_MODULES.items():
        for path, leaves in _npz_module_params(module):
            for leaf in leaves:
                suffix, transform = _npz_leaf(module, path, leaf)  # type: ignore[misc]
                key = f"{_TEMPLATE_STACK_NPZ}{module}{''.join('/' + p for p in path)}//{leaf}"
                for i in range(config.template.no_blocks):
                    out[f"{key}@{i}"] = (f"{_TE}template_pair_stack.blocks.{i}.{name}.{suffix}", transform, i)
    return out


def _npz_module_params(module: str) -> list[tuple[list[str], tuple[str, ...]]]:
    """(sub-path, leaf names) of every parameter a Haiku block submodule has."""
    lin, ln = ("weights", "bias"), ("scale", "offset")
    att = ("query_w", "key_w", "value_w", "gating_w", "gating_b", "output_w", "output_b")
    if module == "msa_row_attention_with_pair_bias":
        return [(["query_norm"], ln), (["feat_2d_norm"], ln), ([], ("feat_2d_weights",)), (["attention"], att)]
    if module.startswith("msa_column"):
        return [(["query_norm"], ln), (["attention"], att)]
    if module.endswith("transition"):
        return [(["input_layer_norm"], ln), (["transition1"], lin), (["transition2"], lin)]
    if module == "outer_product_mean":
        return [(["layer_norm_input"], ln), (["left_projection"], lin), (["right_projection"], lin), ([], ("output_w", "output_b"))]
    if module.startswith("triangle_multiplication"):
        names = ("left_projection", "right_projection", "left_gate", "right_gate", "output_projection", "gating_linear")
        return [(["layer_norm_input"], ln), (["center_layer_norm"], ln)] + [([n], lin) for n in names]
    return [(["query_norm"], ln), ([], ("feat_2d_weights",)), (["attention"], att)]  # triangle attention


def apply_npz_transform(array: np.ndarray, transform: str, key: str) -> torch.Tensor:
    """Haiku layout -> torch layout.

    ``linear_weight`` ``[in, out]`` -> ``[out, in]``; ``heads_in`` ``[in, H, c]`` -> ``[H c, in]``;
    ``heads_out`` ``[H, c, out]`` (or the outer product's ``[c, c, out]``) -> ``[out, H c]``;
    ``flatten`` ``[H, c]`` -> ``[H c]``; ``identity``.
    """
    t = torch.from_numpy(np.ascontiguousarray(array))
    try:
        if transform == "identity":
            return t
        if transform == "flatten":
            return t.reshape(-1)
        if transform == "heads_in":
            return t.reshape(t.shape[0], -1).t().contiguous()
        if transform == "heads_out":
            return t.reshape(-1, t.shape[-1]).t().contiguous()
        return convert_npz_array(array, transform, key)
    except RuntimeError as exc:
        raise WeightsError(f"{key}: cannot apply {transform} to shape {tuple(t.shape)}: {exc}") from exc


# ----------------------------------------------------------------------------- model level
def _is_template_key(key: str) -> bool:
    return "template_" in key


def af2_npz_map(model: AlphaFold) -> dict[str, tuple[str, str, int | None]]:
    """Every official npz key the model reads -> (tertiary key, transform, block index or None)."""
    out = trunk_npz_map(model.config)
    for npz_key, (key, transform) in model.structure_module.npz_key_map(prefix="structure_module.").items():
        out[npz_key] = (key, transform, None)
    for npz_key, (key, transform) in model.aux_heads.npz_key_map(prefix="aux_heads.").items():
        out[npz_key] = (key, transform, None)
    return out


def convert_af2_params(
    arrays: Mapping[str, np.ndarray], model: AlphaFold, source: str = "npz"
) -> dict[str, torch.Tensor]:
    """Official AlphaFold2 arrays -> tertiary state dict for ``model``'s config.

    Template parameters (models 1-2) are loaded into the template stack when the config has
    one (``template.enabled``) and dropped with a warning otherwise (the model then runs as
    AlphaFold2 does when no template is found). Raises :class:`WeightsError` listing missing / unexpected keys and wrong block counts.
    """
    mapping = af2_npz_map(model)
    state: dict[str, torch.Tensor] = {}
    missing, used = [], set()
    for npz_key, (key, transform, block) in mapping.items():
        base = npz_key.split("@")[0]
        if base not in arrays:
            missing.append(base)
            continue
        used.add(base)
        array = arrays[base]
        if block is not None:
            n = _stack_size(model.config, base)
            if array.ndim == 0 or array.shape[0] != n:
                raise WeightsError(f"{source}: {base} has shape {array.shape}, expected {n} stacked blocks first")
            array = array[block]
        state[key] = apply_npz_transform(array, transform, base)
    unexpected = [k for k in arrays if k not in used]
    templates = [k for k in unexpected if _is_template_key(k)]
    if templates and not model.config.template.enabled:
        logger.warning("%s: %d template parameters ignored (the config has no template stack)", source, len(templates))
        unexpected = [k for k in unexpected if not _is_template_key(k)]
    if missing or unexpected:
        raise WeightsError(_key_report(source, sorted(set(missing)), unexpected))
    return state


def _stack_size(config: AlphaFoldConfig, npz_key: str) -> int:
    if npz_key.startswith(_TEMPLATE_STACK_NPZ):
        return config.template.no_blocks
    return config.extra_msa.no_blocks if "/extra_msa_stack/" in npz_key else config.evoformer.no_blocks


def _key_report(source: str, missing: list[str], unexpected: list[str], limit: int = 12) -> str:
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            parts.append(f"{len(keys)} {label} keys: {', '.join(keys[:limit])}{more}")
    return f"{source}: parameters do not fit the model config: " + "; ".join(parts)


def openfold_to_tertiary(state: Mapping[str, torch.Tensor], model: AlphaFold, source: str = "openfold") -> dict[str, torch.Tensor]:
    """OpenFold state dict (plain, or a training checkpoint with ``ema`` / ``state_dict``) -> tertiary."""
    if "ema" in state and isinstance(state["ema"], Mapping):
        state = state["ema"].get("params", state["ema"])  # type: ignore[assignment]
    elif "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}  # type: ignore[union-attr]
    keymap = {
        **model.structure_module.openfold_key_map(prefix="structure_module."),
        **model.aux_heads.openfold_key_map(prefix="aux_heads."),
    }
    out = {keymap.get(k, k): v for k, v in convert_openfold_state_dict(state).items()}
    templates = [k for k in out if k.startswith("template_")]
    if templates and not model.config.template.enabled:
        logger.warning("%s: %d template parameters ignored (the config has no template stack)", source, len(templates))
        out = {k: v for k, v in out.items() if not k.startswith("template_")}
    return out


def load_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` after checking names and shapes (:class:`WeightsError` otherwise)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise WeightsError(_key_report(source, missing, unexpected))
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if wrong:
        raise WeightsError(f"{source}: {len(wrong)} parameters have the wrong shape (file vs model): " + "; ".join(wrong[:12]))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def load_af2_npz(model: AlphaFold, path: str | Path) -> None:
    """Load an official ``params_model_*.npz`` into ``model`` (numpy's loader, no pickle)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            data = {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path}: not a readable AlphaFold2 .npz parameter file ({exc})") from exc
    load_state(model, convert_af2_params(data, model, str(path)), str(path))


def load_openfold_pt(model: AlphaFold, path: str | Path) -> None:
    """Load an OpenFold ``.pt`` state dict (``torch.load(weights_only=True)``: no arbitrary unpickling)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt / unsafe files
        raise WeightsError(f"{path}: not a readable OpenFold checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    load_state(model, openfold_to_tertiary(state, model, str(path)), str(path))


def save_weights(model: AlphaFold, path: str | Path) -> Path:
    """Write ``<path>.safetensors`` and the config as ``<path>.json``; returns the safetensors path."""
    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "tertiary.alphafold", "config": model.config.name})
    path.with_suffix(".json").write_text(json.dumps(model.config.to_dict(), indent=1))
    return path


def load_weights(path: str | Path) -> AlphaFold:
    """Inverse of :func:`save_weights`: build the model from ``<path>.json`` and load the tensors."""
    from tertiary.models.alphafold.model import AlphaFold

    path = Path(path).with_suffix(".safetensors")
    config_path = path.with_suffix(".json")
    if not path.is_file() or not config_path.is_file():
        raise WeightsError(f"{path}: tertiary weights need {path.name} and {config_path.name} side by side")
    try:
        config = AlphaFoldConfig.from_dict(json.loads(config_path.read_text()))
        state = load_file(str(path))
    except (json.JSONDecodeError, SafetensorError, OSError) as exc:
        raise WeightsError(f"{path}: unreadable tertiary weights ({exc})") from exc
    model = AlphaFold(config)
    load_state(model, state, str(path))
    return model


def load_model(path: str | Path, config: AlphaFoldConfig | None = None) -> AlphaFold:
    """Build a model and load weights of any supported format, chosen by file suffix.

    ``.npz``: official AlphaFold2; ``.pt`` / ``.pth`` / ``.ckpt``: OpenFold; ``.safetensors``:
    tertiary (config read from the side-car JSON). For foreign formats ``config`` is required
    (e.g. ``AlphaFoldConfig.preset("model_1_ptm")``).
    """
    from tertiary.models.alphafold.model import AlphaFold

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: parameter file not found")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return load_weights(path)
    if config is None:
        raise WeightsError(f"{path}: a config (preset) is needed to load {suffix} parameters")
    model = AlphaFold(config)
    if suffix == ".npz":
        load_af2_npz(model, path)
    elif suffix in (".pt", ".pth", ".ckpt"):
        load_openfold_pt(model, path)
    else:
        raise WeightsError(f"{path}: unknown parameter format {suffix!r} (expected .npz, .pt or .safetensors)")
    return model
