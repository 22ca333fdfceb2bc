"""AlphaFold2 configuration: frozen dataclasses with the official presets and free dimensions.

``AlphaFoldConfig.preset("model_1_ptm")`` gives the published architecture; any field can be
changed with :func:`dataclasses.replace` (or :meth:`AlphaFoldConfig.from_dict`) for small models.
``AlphaFoldConfig.from_openfold(cfg)`` reads an OpenFold ``model_config(...)`` dictionary (as
stored in reference sets' ``meta.json["config"]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tertiary.errors import ConfigError


@dataclass(frozen=True)
class RecyclingConfig:
    """Recycling embedder (Algorithm 32): distogram of previous pseudo-beta positions (Angstrom)."""

    min_bin: float = 3.25
    max_bin: float = 20.75
    no_bins: int = 15
    inf: float = 1e8


@dataclass(frozen=True)
class StackConfig:
    """One Evoformer-like stack (Evoformer, Algorithm 6, or extra-MSA stack, Algorithm 18)."""

    no_blocks: int = 48
    c_m: int = 256
    c_z: int = 128
    c_hidden_msa_att: int = 32
    c_hidden_opm: int = 32
    c_hidden_mul: int = 128
    c_hidden_pair_att: int = 32
    no_heads_msa: int = 8
    no_heads_pair: int = 4
    transition_n: int = 4
    inf: float = 1e9
    eps: float = 1e-8
    opm_eps: float = 1e-3
    msa_dropout: float = 0.15
    pair_dropout: float = 0.25


@dataclass(frozen=True)
class TemplateConfig:
    """Template stack dimensions (Algorithms 16-17); ``enabled`` only for models 1 and 2."""

    enabled: bool = False
    embed_angles: bool = True
    c_t: int = 64
    no_blocks: int = 2
    c_hidden_tri_att: int = 16
    c_hidden_tri_mul: int = 64
    no_heads: int = 4
    pair_transition_n: int = 2
    c_hidden_pointwise: int = 16
    no_heads_pointwise: int = 4
    pair_c_in: int = 88
    single_c_in: int = 57
    inf: float = 1e5
    pair_stack_inf: float = 1e9
    eps: float = 1e-8
    dropout_rate: float = 0.25
    distogram_min_bin: float = 3.25
    distogram_max_bin: float = 50.75
    distogram_no_bins: int = 39
    use_unit_vector: bool = False


@dataclass(frozen=True)
class StructureModuleConfig:
    """Structure module (Algorithm 20) and invariant point attention (Algorithm 22)."""

    c_s: int = 384
    c_z: int = 128
    c_ipa: int = 16
    c_resnet: int = 128
    no_heads_ipa: int = 12
    no_qk_points: int = 4
    no_v_points: int = 8
    dropout_rate: float = 0.1
    no_blocks: int = 8
    no_transition_layers: int = 1
    no_resnet_blocks: int = 2
    no_angles: int = 7
    trans_scale_factor: float = 10.0
    epsilon: float = 1e-8
    inf: float = 1e5


@dataclass(frozen=True)
class HeadsConfig:
    """Auxiliary heads (section 1.9): pLDDT, distogram, masked MSA, experimentally resolved, pTM."""

    c_s: int = 384
    c_z: int = 128
    c_m: int = 256
    lddt_no_bins: int = 50
    lddt_c_hidden: int = 128
    distogram_no_bins: int = 64
    masked_msa_c_out: int = 23
    experimentally_resolved_c_out: int = 37
    tm_enabled: bool = False
    tm_no_bins: int = 64
    tm_max_bin: int = 31


@dataclass(frozen=True)
class DataConfig:
    """Feature sizes that depend on the preset (section 1.2)."""

    max_msa_clusters: int = 512
    max_extra_msa: int = 1024
    max_templates: int = 4
    num_recycles: int = 3


@dataclass(frozen=True)
class AlphaFoldConfig:
    """The whole model. Channel widths: ``c_m`` MSA, ``c_z`` pair, ``c_s`` single, ``c_e`` extra MSA."""

    name: str = "custom"
    c_m: int = 256
    c_z: int = 128
    c_s: int = 384
    c_e: int = 64
    tf_dim: int = 22
    msa_dim: int = 49
    extra_msa_dim: int = 25
    relpos_k: int = 32
    recycling: RecyclingConfig = field(default_factory=RecyclingConfig)
    evoformer: StackConfig = field(default_factory=StackConfig)
    extra_msa: StackConfig = field(
        default_factory=lambda: StackConfig(no_blocks=4, c_m=64, c_hidden_msa_att=8)
    )
    template: TemplateConfig = field(default_factory=TemplateConfig)
    structure_module: StructureModuleConfig = field(default_factory=StructureModuleConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        checks = {
            "evoformer.c_m": (self.evoformer.c_m, self.c_m),
            "evoformer.c_z": (self.evoformer.c_z, self.c_z),
            "extra_msa.c_m": (self.extra_msa.c_m, self.c_e),
            "extra_msa.c_z": (self.extra_msa.c_z, self.c_z),
            "structure_module.c_s": (self.structure_module.c_s, self.c_s),
            "structure_module.c_z": (self.structure_module.c_z, self.c_z),
            "heads.c_s": (self.heads.c_s, self.c_s),
            "heads.c_z": (self.heads.c_z, self.c_z),
            "heads.c_m": (self.heads.c_m, self.c_m),
        }
        for key, (got, want) in checks.items():
            if got != want:
                raise ConfigError(f"AlphaFoldConfig: {key}={got} does not match the model width {want}")

    # ------------------------------------------------------------------ presets
    @staticmethod
    def preset_names() -> tuple[str, ...]:
        return tuple(f"model_{i}{s}" for i in range(1, 6) for s in ("", "_ptm"))

    @classmethod
    def preset(cls, name: str) -> AlphaFoldConfig:
        """Published AlphaFold2 monomer presets ``model_1`` ... ``model_5`` and ``_ptm`` variants.

        Models 1-2 use templates; models 1, 3 and 4 use 5120 extra-MSA rows, models 2 and 5 use 1024.
        """
        if name not in cls.preset_names():
            raise ConfigError(f"unknown AlphaFold preset {name!r}; choose one of {', '.join(cls.preset_names())}")
        index = int(name.split("_")[1])
        templates = index in (1, 2)
        return cls(
            name=name,
            template=TemplateConfig(enabled=templates),
            heads=HeadsConfig(tm_enabled=name.endswith("_ptm")),
            data=DataConfig(max_extra_msa=5120 if index in (1, 3, 4) else 1024),
        )

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlphaFoldConfig:
        """Inverse of :meth:`to_dict`; unknown keys are errors naming their path."""
        return _build(cls, data, "config")

    @classmethod
    def from_openfold(cls, cfg: dict[str, Any], name: str = "openfold") -> AlphaFoldConfig:
        """From an OpenFold ``model_config(...)`` dictionary (keys ``model``, ``data``, ``globals``)."""
        try:
            m = cfg["model"]
            evo, extra = m["evoformer_stack"], m["extra_msa"]["extra_msa_stack"]
            sm, heads, tmpl = m["structure_module"], m["heads"], m["template"]
            rec, emb = m["recycling_embedder"], m["input_embedder"]

            def stack(s: dict[str, Any]) -> StackConfig:
                return StackConfig(
                    no_blocks=s["no_blocks"], c_m=s["c_m"], c_z=s["c_z"],
                    c_hidden_msa_att=s["c_hidden_msa_att"], c_hidden_opm=s["c_hidden_opm"],
                    c_hidden_mul=s["c_hidden_mul"], c_hidden_pair_att=s["c_hidden_pair_att"],
                    no_heads_msa=s["no_heads_msa"], no_heads_pair=s["no_heads_pair"],
                    transition_n=s["transition_n"], inf=s["inf"], eps=s["eps"],
                    msa_dropout=s.get("msa_dropout", 0.15), pair_dropout=s.get("pair_dropout", 0.25),
                )  # fmt: skip

            if tmpl.get("enabled") and (tmpl["template_pair_stack"].get("tri_mul_first") or tmpl.get("average_templates")):
                raise ConfigError("OpenFold config: multimer-style template options are not supported")
            if evo.get("opm_first") or evo.get("fuse_projection_weights") or evo.get("no_column_attention"):
                raise ConfigError("OpenFold config: multimer-style Evoformer options are not supported")
            tps, tpa = tmpl["template_pair_stack"], tmpl["template_pointwise_attention"]
            data_common = cfg.get("data", {}).get("predict", {})
            return cls(
                name=name,
                c_m=emb["c_m"], c_z=emb["c_z"], c_s=evo["c_s"], c_e=extra["c_m"],
                tf_dim=emb["tf_dim"], msa_dim=emb["msa_dim"],
                extra_msa_dim=m["extra_msa"]["extra_msa_embedder"]["c_in"], relpos_k=emb["relpos_k"],
                recycling=RecyclingConfig(rec["min_bin"], rec["max_bin"], rec["no_bins"], rec["inf"]),
                evoformer=stack(evo), extra_msa=stack(extra),
                template=TemplateConfig(
                    enabled=tmpl["enabled"], embed_angles=tmpl["embed_angles"], c_t=tps["c_t"],
                    no_blocks=tps["no_blocks"], c_hidden_tri_att=tps["c_hidden_tri_att"],
                    c_hidden_tri_mul=tps["c_hidden_tri_mul"], no_heads=tps["no_heads"],
                    pair_transition_n=tps["pair_transition_n"], c_hidden_pointwise=tpa["c_hidden"],
                    no_heads_pointwise=tpa["no_heads"], pair_c_in=tmpl["template_pair_embedder"]["c_in"],
                    single_c_in=tmpl["template_single_embedder"]["c_in"], inf=tmpl["inf"],
                    pair_stack_inf=tps.get("inf", 1e9), eps=tmpl.get("eps", 1e-8),
                    dropout_rate=tps.get("dropout_rate", 0.25),
                    distogram_min_bin=tmpl["distogram"]["min_bin"], distogram_max_bin=tmpl["distogram"]["max_bin"],
                    distogram_no_bins=tmpl["distogram"]["no_bins"], use_unit_vector=tmpl.get("use_unit_vector", False),
                ),
                structure_module=StructureModuleConfig(
                    c_s=sm["c_s"], c_z=sm["c_z"], c_ipa=sm["c_ipa"], c_resnet=sm["c_resnet"],
                    no_heads_ipa=sm["no_heads_ipa"], no_qk_points=sm["no_qk_points"],
                    no_v_points=sm["no_v_points"], dropout_rate=sm["dropout_rate"], no_blocks=sm["no_blocks"],
                    no_transition_layers=sm["no_transition_layers"], no_resnet_blocks=sm["no_resnet_blocks"],
                    no_angles=sm["no_angles"], trans_scale_factor=float(sm["trans_scale_factor"]),
                    epsilon=sm["epsilon"], inf=sm["inf"],
                ),
                heads=HeadsConfig(
                    c_s=heads["lddt"]["c_in"], c_z=heads["distogram"]["c_z"], c_m=heads["masked_msa"]["c_m"],
                    lddt_no_bins=heads["lddt"]["no_bins"], lddt_c_hidden=heads["lddt"]["c_hidden"],
                    distogram_no_bins=heads["distogram"]["no_bins"],
                    masked_msa_c_out=heads["masked_msa"]["c_out"],
                    experimentally_resolved_c_out=heads["experimentally_resolved"]["c_out"],
                    tm_enabled=heads["tm"]["enabled"], tm_no_bins=heads["tm"]["no_bins"],
                    tm_max_bin=heads["tm"].get("max_bin", 31),
                ),
                data=DataConfig(
                    max_msa_clusters=data_common.get("max_msa_clusters", 512),
                    max_extra_msa=data_common.get("max_extra_msa", 1024),
                    max_templates=data_common.get("max_templates", 4),
                    num_recycles=cfg.get("data", {}).get("common", {}).get("max_recycling_iters", 3),
                ),
            )  # fmt: skip
        except KeyError as exc:
            raise ConfigError(f"OpenFold config: missing key {exc}") from exc


def _build(cls: type, data: dict[str, Any], path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{path}.{key}: unknown key (known: {', '.join(fields)})")
        ftype = fields[key].type
        sub = _SUBCONFIGS.get(ftype if isinstance(ftype, str) else getattr(ftype, "__name__", ""))
        kwargs[key] = _build(sub, value, f"{path}.{key}") if sub is not None else value
    return cls(**kwargs)


_SUBCONFIGS: dict[str, type] = {
    c.__name__: c
    for c in (RecyclingConfig, StackConfig, TemplateConfig, StructureModuleConfig, HeadsConfig, DataConfig)
}
