"""Loading and saving ESM-2 weights.

Formats read by :func:`load_esm` (detected from the path and the key names):

- fair-esm checkpoints ``esm2_*.pt`` (``{"model": ..., "cfg": {"model": argparse.Namespace}}``),
  read with ``torch.load(weights_only=True)`` allowing exactly ``argparse.Namespace``; the contact
  regression is read from ``<stem>-contact-regression.pt`` next to it when present;
- fair-esm in-memory state dicts (``embed_tokens.weight``, ``layers.{i}.self_attn.q_proj...``)
  saved as ``.safetensors`` or ``.pt``;
- HuggingFace ``EsmForMaskedLM`` / ``EsmModel`` folders (``config.json`` + ``model.safetensors``
  or ``pytorch_model.bin``), per-layer or model-level ``rotary_embeddings.inv_freq``;
- tertiary's own folders written by :func:`save_esm` (``config.json`` with
  ``"format": "tertiary.esm"`` + ``model.safetensors``).

The architecture is read from the checkpoint (layer count, width, FFN width and, through the
rotary ``inv_freq`` length, the head count) and cross-checked against any config it carries.
Missing and unexpected keys are listed by name and shapes compared: any problem is a
:class:`~tertiary.errors.WeightsError`. Foreign key names are first mapped onto fair-esm's
in-memory names, then onto this package's modules.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import pickle
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tertiary.errors import ConfigError, WeightsError
from tertiary.models.esm.config import ESMConfig
from tertiary.models.esm.model import ESM2

logger = logging.getLogger(__name__)

FORMAT_TAG = "tertiary.esm"
_HF_IGNORED = re.compile(r"^(embeddings\.position_ids|pooler\..*)$")
_HF_LAYER = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.LayerNorm": "self_attn_layer_norm",
    "intermediate.dense": "fc1",
    "output.dense": "fc2",
    "LayerNorm": "final_layer_norm",
}
_FAIR_LAYER = {
    "self_attn.out_proj": "attention.out_proj",
    "self_attn_layer_norm": "attn_norm",
    "final_layer_norm": "ffn_norm",
    "fc1": "fc1",
    "fc2": "fc2",
}


# --------------------------------------------------------------------------- file reading
def _torch_load(path: Path) -> object:
    """``torch.load(weights_only=True)`` allowing ``argparse.Namespace`` (fair-esm's ``cfg``) only."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{path}: refused to unpickle (not a plain weights file): {exc}") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint: {exc}") from exc


def _safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file: {exc}") from exc


def _tensor_dict(obj: object, path: Path, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: {what} is not a dict of tensors")
    return dict(obj)


# ------------------------------------------------------------------------- key renaming
def _from_fairseq(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fair-esm checkpoint names (``encoder.sentence_encoder.*``, ``encoder.*``) -> in-memory names."""
    out = {}
    for key, value in state.items():
        for prefix in ("encoder.sentence_encoder.", "encoder."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        out[key] = value
    return out


def _from_hf(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """HuggingFace ESM names -> fair-esm in-memory names (inv_freq spread to every layer)."""
    out: dict[str, torch.Tensor] = {}
    shared_inv_freq = None
    for key, value in state.items():
        if key.startswith("esm."):
            key = key[4:]
        key = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", key))
        if _HF_IGNORED.match(key):
            logger.info("ignoring HuggingFace key %s (not part of ESM-2)", key)
            continue
        m = re.match(r"^encoder\.layer\.(\d+|\*)\.(.+)$", key)
        if m:
            layer, rest = m.groups()
            if rest == "attention.self.rotary_embeddings.inv_freq":
                if layer == "*":
                    shared_inv_freq = value
                else:
                    out[f"layers.{layer}.self_attn.rot_emb.inv_freq"] = value
                continue
            for hf, fair in _HF_LAYER.items():
                if rest.startswith(hf + "."):
                    out[f"layers.{layer}.{fair}{rest[len(hf):]}"] = value
                    break
            else:
                out[key] = value  # unknown: reported as unexpected
        elif key == "rotary_embeddings.inv_freq":
            shared_inv_freq = value
        elif key == "embeddings.word_embeddings.weight":
            out["embed_tokens.weight"] = value
        elif key.startswith("encoder.emb_layer_norm_after."):
            out[key[len("encoder.") :]] = value
        elif key == "lm_head.decoder.weight":
            out["lm_head.weight"] = value
        else:
            out[key] = value
    if shared_inv_freq is not None:
        for i in range(num_layers):
            out.setdefault(f"layers.{i}.self_attn.rot_emb.inv_freq", shared_inv_freq)
    return out


def _to_tertiary(fair: dict[str, torch.Tensor], num_layers: int, source: str) -> dict[str, torch.Tensor]:
    """fair-esm in-memory names -> this package's parameter names (q/k/v fused)."""
    fair = dict(fair)
    out: dict[str, torch.Tensor] = {}
    tied = fair.pop("lm_head.weight", None)
    emb = fair.get("embed_tokens.weight")
    if tied is not None and emb is not None and (tied.shape != emb.shape or not torch.equal(tied, emb)):
        raise WeightsError(f"{source}: lm_head.weight differs from embed_tokens.weight (untied LM heads unsupported)")
    for i in range(num_layers):
        p = f"layers.{i}."
        for kind in ("weight", "bias"):
            parts = [fair.pop(f"{p}self_attn.{x}_proj.{kind}", None) for x in "qkv"]
            if all(t is not None for t in parts):
                if len({t.shape for t in parts}) != 1:
                    raise WeightsError(f"{source}: layer {i} q/k/v {kind} shapes differ: {[tuple(t.shape) for t in parts]}")
                out[f"{p}attention.qkv.{kind}"] = torch.cat(parts, 0)
            else:
                # put back what exists so that it is reported, the rest shows as missing
                for x, t in zip("qkv", parts):
                    if t is not None:
                        fair[f"{p}self_attn.{x}_proj.{kind}"] = t
        inv = fair.pop(f"{p}self_attn.rot_emb.inv_freq", None)
        if inv is not None:
            out[f"{p}attention.rotary.inv_freq"] = inv
        for key in [k for k in fair if k.startswith(p)]:
            rest = key[len(p) :]
            for old, new in _FAIR_LAYER.items():
                if rest.startswith(old + "."):
                    out[p + new + rest[len(old) :]] = fair.pop(key)
                    break
    if "emb_layer_norm_after.weight" in fair or "emb_layer_norm_after.bias" in fair:
        for kind in ("weight", "bias"):
            if f"emb_layer_norm_after.{kind}" in fair:
                out[f"final_norm.{kind}"] = fair.pop(f"emb_layer_norm_after.{kind}")
    out.update(fair)  # embed_tokens, lm_head.*, contact_head.* keep their names; leftovers are unexpected
    return out


# ------------------------------------------------------------------- architecture checks
def infer_config(fair: dict[str, torch.Tensor], source: str, **given: object) -> ESMConfig:
    """Architecture from fair-esm in-memory names; ``given`` values (from a config) must agree."""
    emb = fair.get("embed_tokens.weight")
    if emb is None or emb.dim() != 2:
        raise WeightsError(f"{source}: no 2-D embed_tokens.weight (word embeddings): not an ESM-2 checkpoint")
    vocab, width = emb.shape
    layer_ids = {int(m.group(1)) for k in fair if (m := re.match(r"^layers\.(\d+)\.", k))}
    if not layer_ids:
        raise WeightsError(f"{source}: no transformer layers found")
    fc1 = fair.get("layers.0.fc1.weight")
    inv = next((v for k, v in sorted(fair.items()) if k.endswith(".self_attn.rot_emb.inv_freq")), None)
    found: dict[str, object] = {"num_layers": max(layer_ids) + 1, "embed_dim": width, "vocab_size": vocab}
    if fc1 is not None:
        found["ffn_embed_dim"] = fc1.shape[0]
    if inv is not None and inv.numel() and width % (2 * inv.numel()) == 0:
        found["attention_heads"] = width // (2 * inv.numel())
    for key, value in given.items():
        if value is None:
            continue
        if key in found and found[key] != value:
            raise WeightsError(f"{source}: config says {key}={value} but the weights have {found[key]}")
        found[key] = value
    if "attention_heads" not in found:
        raise WeightsError(f"{source}: cannot tell the head count (no rotary inv_freq and no config)")
    found.setdefault("ffn_embed_dim", 4 * width)
    try:
        return ESMConfig(**found)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise WeightsError(f"{source}: {exc}") from exc


def _load_into(model: ESM2, state: dict[str, torch.Tensor], source: str) -> ESM2:
    """Copy ``state`` (this package's names) into ``model`` after listing every mismatch."""
    expected = model.state_dict()
    optional_heads = {
        "contact_head": [k for k in expected if k.startswith("contact_head.")],
        "lm_head": [k for k in expected if k.startswith("lm_head.")],
    }
    present = {head: any(k in state for k in keys) for head, keys in optional_heads.items()}
    required = [k for k in expected if not any(k in keys and not present[h] for h, keys in optional_heads.items())]
    missing = [k for k in required if k not in state]
    unexpected = sorted(k for k in state if k not in expected)
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in required
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if wrong:
        problems.append(f"shape mismatches {wrong}")
    if problems:
        raise WeightsError(f"{source} does not fit ESM-2 {model.config.num_layers}x{model.config.embed_dim}: " + "; ".join(problems))
    model.load_state_dict({k: state[k] for k in required}, strict=False)
    model.contact_head_loaded = present["contact_head"]
    model.lm_head_loaded = present["lm_head"]
    if not present["contact_head"]:
        logger.warning("%s: no contact regression weights; contacts are unavailable", source)
    if not present["lm_head"]:
        logger.warning("%s: no LM head weights; outputs carry no logits", source)
    return model.eval()


def _from_fair_memory(fair: dict[str, torch.Tensor], source: str, **given: object) -> ESM2:
    config = infer_config(fair, source, **given)
    return _load_into(ESM2(config), _to_tertiary(fair, config.num_layers, source), source)


# ------------------------------------------------------------------------------- formats
def load_fair_esm_checkpoint(path: str | Path, **overrides: object) -> ESM2:
    """A fair-esm ``.pt`` checkpoint (plus ``<stem>-contact-regression.pt`` when next to it)."""
    path = Path(path)
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise WeightsError(f"{path}: expected a dict with a 'model' entry (fair-esm checkpoint)")
    fair = _from_fairseq(_tensor_dict(ckpt["model"], path, "'model'"))
    given: dict[str, object] = {}
    cfg = ckpt.get("cfg", {})
    args = cfg.get("model") if isinstance(cfg, dict) else None
    if isinstance(args, argparse.Namespace):
        given = {
            "num_layers": getattr(args, "encoder_layers", None),
            "embed_dim": getattr(args, "encoder_embed_dim", None),
            "attention_heads": getattr(args, "encoder_attention_heads", None),
            "token_dropout": getattr(args, "token_dropout", None),
        }
    regression = path.with_name(f"{path.stem}-contact-regression.pt")
    if regression.is_file():
        reg = _torch_load(regression)
        reg_model = reg.get("model") if isinstance(reg, dict) else None
        fair.update(_tensor_dict(reg_model, regression, "'model'"))
    given.update(overrides)
    return _from_fair_memory(fair, str(path), **given)


def load_hf(folder: str | Path, **overrides: object) -> ESM2:
    """A HuggingFace ``EsmForMaskedLM`` / ``EsmModel`` folder."""
    folder = Path(folder)
    try:
        hf = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{folder}/config.json: unreadable: {exc}") from exc
    if hf.get("model_type") != "esm":
        raise WeightsError(f"{folder}/config.json: model_type {hf.get('model_type')!r} is not 'esm'")
    if hf.get("position_embedding_type", "rotary") != "rotary" or hf.get("emb_layer_norm_before"):
        raise WeightsError(f"{folder}: not an ESM-2 model (absolute positions / ESM-1b); only ESM-2 is supported")
    if (folder / "model.safetensors").is_file():
        state = _safetensors(folder / "model.safetensors")
    elif (folder / "pytorch_model.bin").is_file():
        state = _tensor_dict(_torch_load(folder / "pytorch_model.bin"), folder / "pytorch_model.bin", "the file")
    else:
        raise WeightsError(f"{folder}: neither model.safetensors nor pytorch_model.bin found")
    given = {
        "num_layers": hf.get("num_hidden_layers"),
        "embed_dim": hf.get("hidden_size"),
        "attention_heads": hf.get("num_attention_heads"),
        "ffn_embed_dim": hf.get("intermediate_size"),
        "vocab_size": hf.get("vocab_size"),
        "token_dropout": hf.get("token_dropout"),
        "layer_norm_eps": hf.get("layer_norm_eps"),
        **overrides,
    }
    num_layers = hf.get("num_hidden_layers")
    if not isinstance(num_layers, int):
        raise WeightsError(f"{folder}/config.json: num_hidden_layers missing")
    return _from_fair_memory(_from_hf(state, num_layers), str(folder), **given)


def save_esm(model: ESM2, folder: str | Path) -> Path:
    """Write ``folder/config.json`` and ``folder/model.safetensors`` (tertiary format)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().contiguous().cpu()
        for k, v in model.state_dict().items()
        if not (k.startswith("contact_head.") and not model.contact_head_loaded)
        and not (k.startswith("lm_head.") and not model.lm_head_loaded)
    }
    meta = {"format": FORMAT_TAG, "version": 1, "config": model.config.to_dict()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": FORMAT_TAG})
    (folder / "config.json").write_text(json.dumps(meta, indent=1) + "\n")
    return folder


def load_tertiary(folder: str | Path) -> ESM2:
    """A folder written by :func:`save_esm`."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{folder}/config.json: unreadable: {exc}") from exc
    if meta.get("format") != FORMAT_TAG:
        raise WeightsError(f"{folder}/config.json: not a tertiary ESM folder (format {meta.get('format')!r})")
    try:
        config = ESMConfig.from_dict(meta.get("config", {}), source=f"{folder}/config.json")
    except ConfigError as exc:
        raise WeightsError(str(exc)) from exc
    return _load_into(ESM2(config), _safetensors(folder / "model.safetensors"), str(folder))


def load_esm(path: str | Path, **overrides: object) -> ESM2:
    """Load ESM-2 weights in any supported format (see the module docstring), in eval mode.

    Args:
        path: a ``.pt`` / ``.safetensors`` file or a HuggingFace / tertiary folder, or a
            released model's name (``"esm2_t33_650M_UR50D"``): its fair-esm checkpoint in the
            torch hub cache (``$TORCH_HOME/hub/checkpoints``), where fair-esm downloads land.
        overrides: ESMConfig fields to set (e.g. ``max_residues``); architecture fields must
            agree with the checkpoint.
    """
    path = Path(path)
    if not path.exists() and str(path) in ESMConfig.presets():
        path = _cached_checkpoint(str(path), overrides)
    if not path.exists():
        raise WeightsError(f"{path}: no such file or folder")
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.is_file():
            raise WeightsError(f"{path}: folder without config.json (expected a HuggingFace or tertiary ESM folder)")
        try:
            tag = json.loads(cfg.read_text()).get("format")
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise WeightsError(f"{cfg}: unreadable: {exc}") from exc
        if tag == FORMAT_TAG:
            model = load_tertiary(path)
            if overrides:
                model = _with_overrides(model, overrides)
            return model
        return load_hf(path, **overrides)
    if path.suffix == ".safetensors":
        state = _safetensors(path)
    elif path.suffix in (".pt", ".pth", ".bin"):
        obj = _torch_load(path)
        if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
            return load_fair_esm_checkpoint(path, **overrides)
        state = _tensor_dict(obj, path, "the file")
    else:
        raise WeightsError(f"{path}: unknown weights format (expected .pt, .safetensors or a folder)")
    if any(k.startswith(("esm.", "embeddings.", "encoder.layer.")) for k in state):
        raise WeightsError(f"{path}: HuggingFace weights must be loaded from their folder (with config.json)")
    return _from_fair_memory(_from_fairseq(state), str(path), **overrides)


def _cached_checkpoint(name: str, overrides: dict[str, object]) -> Path:
    """``<torch hub dir>/checkpoints/<name>.pt``, where fair-esm's downloads land (no download here).

    The preset's dimensions are added to ``overrides`` so that a file of another size under that
    name is refused.
    """
    path = Path(torch.hub.get_dir()) / "checkpoints" / f"{name}.pt"
    if not path.is_file():
        raise WeightsError(
            f"{name}: not a file, and no cached fair-esm checkpoint at {path} (tertiary does not download "
            "weights: give the path of the .pt file or of a HuggingFace folder)"
        )
    preset = ESMConfig.preset(name)
    for key in ("num_layers", "embed_dim", "attention_heads"):
        overrides.setdefault(key, getattr(preset, key))
    return path


def _with_overrides(model: ESM2, overrides: dict[str, object]) -> ESM2:
    try:
        config = dataclasses.replace(model.config, **overrides)
    except (TypeError, ConfigError) as exc:
        raise WeightsError(f"invalid overrides {overrides}: {exc}") from exc
    if {k for k in overrides if getattr(model.config, k) != getattr(config, k)} - {"max_residues", "token_dropout"}:
        raise WeightsError(f"overrides {overrides} change the architecture of the loaded weights")
    model.config = config
    return model


def fair_state_dict(model: ESM2) -> dict[str, torch.Tensor]:
    """The model's weights under fair-esm's in-memory names (``ESM2.load_state_dict`` of fair-esm).

    Includes ``lm_head.weight`` (= ``embed_tokens.weight``) as fair-esm expects.
    """
    c = model.config.embed_dim
    out: dict[str, torch.Tensor] = {}
    inverse = {new: old for old, new in _FAIR_LAYER.items()}
    for key, value in model.state_dict().items():
        m = re.match(r"^layers\.(\d+)\.(.+)$", key)
        if m is None:
            name = "emb_layer_norm_after" + key[len("final_norm") :] if key.startswith("final_norm.") else key
            out[name] = value
            continue
        p, rest = f"layers.{m.group(1)}.", m.group(2)
        if rest.startswith("attention.qkv."):
            kind = rest.rsplit(".", 1)[1]
            for j, x in enumerate("qkv"):
                out[f"{p}self_attn.{x}_proj.{kind}"] = value[j * c : (j + 1) * c]
        elif rest == "attention.rotary.inv_freq":
            out[f"{p}self_attn.rot_emb.inv_freq"] = value
        else:
            for new, old in inverse.items():
                if rest.startswith(new + "."):
                    out[p + old + rest[len(new) :]] = value
                    break
    out["lm_head.weight"] = model.embed_tokens.weight
    return out
