"""FAIR weights: import of the official checkpoint and tertiary's own safetensors format.

Official key layout (``Pocket_Design.state_dict()``, see ``refs/fair/checkpoint/keys.tsv``) ->
tertiary names:

=====================================================  ==============================================
official                                               tertiary
=====================================================  ==============================================
``encoder.interactions.{i}.*``                         ``encoder.atom_blocks.{i}.*``
``encoder.interactions.{i}.{k,q,v}_lin.weight [O,I,1]``  ``...{k,q,v}_lin.weight [H, O/H, I]`` (grouped)
``encoder.residue_encoder_layers.{i}.*``               ``encoder.residue_layers.{i}.*``
``encoder.T_a.*``                                      ``encoder.ligand_update.T_a.*``
``encoder.distance_expansion.offset``                  checked against the config, not stored
``*.centroid_lin.*``, ``*.attention.layernorm.*``      unused by the official forward pass; dropped
everything else                                        same name
=====================================================  ==============================================

Our own format is one safetensors file whose metadata holds the config as JSON.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from tertiary.errors import WeightsError

from .config import FairConfig
from .model import FairModel

_UNUSED = (re.compile(r"^encoder\.interactions\.\d+\.centroid_lin\."),
           re.compile(r"^encoder\.residue_encoder_layers\.\d+\.attention\.layernorm\."))
_RENAMES = (
    (re.compile(r"^encoder\.interactions\.(\d+)\."), r"encoder.atom_blocks.\1."),
    (re.compile(r"^encoder\.residue_encoder_layers\.(\d+)\."), r"encoder.residue_layers.\1."),
    (re.compile(r"^encoder\.T_a\."), "encoder.ligand_update.T_a."),
)
_GROUPED = re.compile(r"^encoder\.atom_blocks\.\d+\.[kqv]_lin\.weight$")
_OFFSET = "encoder.distance_expansion.offset"
_CONFIG_KEY = "tertiary_fair_config"


def convert_official_state_dict(state: dict[str, torch.Tensor], config: FairConfig) -> dict[str, torch.Tensor]:
    """Official ``Pocket_Design`` state dict -> tertiary :class:`FairModel` state dict.

    Raises:
        WeightsError: a distance-expansion grid that does not match ``config``.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if any(p.match(key) for p in _UNUSED):
            continue
        if key == _OFFSET:
            expected = torch.linspace(0.0, config.cutoff, config.edge_channels)
            if value.shape != expected.shape or not torch.allclose(value.float(), expected, atol=1e-5):
                raise WeightsError(
                    f"{key}: Gaussian centres {tuple(value.shape)} do not match cutoff={config.cutoff}, "
                    f"edge_channels={config.edge_channels}"
                )
            continue
        new = key
        for pattern, repl in _RENAMES:
            new = pattern.sub(repl, new)
        if _GROUPED.match(new) and value.dim() == 3:
            out_dim, in_per_head, _ = value.shape
            value = value[..., 0].reshape(config.num_heads, out_dim // config.num_heads, in_per_head)
        out[new] = value
    return out


def _load_into(model: FairModel, state: dict[str, torch.Tensor], source: str) -> FairModel:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        raise WeightsError(f"{source}: weights do not fit the FAIR model: " + "; ".join(parts))
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise WeightsError(
                f"{source}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                return {k: f.get_tensor(k) for k in f.keys()}, meta
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of many kinds
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict (or {{'model': state_dict}}) of tensors")
    return obj, {}


def load_official(path: str | os.PathLike, config: FairConfig | None = None) -> FairModel:
    """Load the released FAIR checkpoint (``pretrained.pt`` or its safetensors conversion).

    Args:
        path: ``.pt`` (``{'model': state_dict}``, read with ``weights_only=True``) or ``.safetensors``.
        config: architecture (default ``FairConfig.preset("fair")``, leak-free residue graph).

    Raises:
        WeightsError: unreadable file, missing / unexpected keys (by name) or shape mismatches.
    """
    path = Path(path)
    config = config or FairConfig.preset("fair")
    state, _ = _read_tensors(path)
    model = FairModel(config)
    return _load_into(model, convert_official_state_dict(state, config), str(path))


def save(model: FairModel, path: str | os.PathLike) -> None:
    """Write tertiary's format: safetensors with the config JSON in the metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={_CONFIG_KEY: json.dumps(model.config.to_dict())})


def load(path: str | os.PathLike, config: FairConfig | None = None) -> FairModel:
    """Load either format: tertiary safetensors (config from metadata) or an official checkpoint.

    ``config`` overrides the stored one for schedule fields (e.g. ``residue_graph``); the
    architecture must still match the tensors.
    """
    path = Path(path)
    state, meta = _read_tensors(path)
    if _CONFIG_KEY not in meta:
        if any(k.startswith("encoder.interactions.") for k in state):
            model = FairModel(config or FairConfig.preset("fair"))
            return _load_into(model, convert_official_state_dict(state, model.config), str(path))
        raise WeightsError(f"{path}: neither a tertiary FAIR checkpoint nor an official one (no config metadata)")
    try:
        stored = FairConfig.from_dict(json.loads(meta[_CONFIG_KEY]), where=f"{path} config")
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path}: corrupt config metadata ({exc})") from exc
    return _load_into(FairModel(config or stored), state, str(path))
