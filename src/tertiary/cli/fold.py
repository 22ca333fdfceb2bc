"""``tertiary fold``: predict structures with AlphaFold2 / OpenFold weights."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.markup import escape

import tertiary
from tertiary.errors import ConfigError, InputError, MissingDependencyError, ResourceError, TertiaryError, WeightsError, one_line

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Fold every record of a FASTA file (or of every FASTA file in a folder) with AlphaFold2 and
write, per record NAME, into the output folder:
  NAME.pdb (pLDDT 0-100 in the B-factor column), NAME.cif (mmCIF with ModelCIF pLDDT
  metrics), NAME.confidence.json (per-residue pLDDT, mean pLDDT, pTM, max PAE),
  NAME.pae.json (AlphaFold-DB layout, _ptm models), NAME.plddt.png / NAME.pae.png /
  NAME.msa_coverage.png, NAME.timings.json, NAME.relaxed.pdb (--relax); and once per run
  config.json (arguments, versions, seed, model config) and summary.json. Finished records
  are skipped unless --overwrite. Failing records are reported and skipped; the exit code is
  1 if any failed, 2 (one-line error) if nothing could be folded. Before each record the peak
  memory is estimated from its length and MSA depth: a warning suggests a --chunk-size that
  fits, and a record that cannot fit even with --chunk-size 1 is refused.
"""

EPILOG = """\
examples:
  tertiary fold query.fasta --msa query.a3m --params params_model_1_ptm.npz -o out/
  TERTIARY_PARAMS=~/af2/params tertiary fold queries/ --msa msas/ --preset model_3_ptm -o out/ --chunk-size 64

Parameters: --params FILE, else $TERTIARY_PARAMS (a file, or a folder holding
params_<preset>.npz / <preset>.pt / <preset>.safetensors). Formats: official AlphaFold2 .npz,
OpenFold .pt, tertiary .safetensors (+ .json config). The preset is read from the file name
(params_model_3_ptm.npz) unless --preset or --config is given. Templates are not used (models
1-2 run as AlphaFold2 does when no template is found).
"""

PARAMS_ENV = "TERTIARY_PARAMS"
FASTA_SUFFIXES = (".fasta", ".fa", ".faa", ".fas", ".fasta.gz", ".fa.gz")
MSA_SUFFIXES = (".a3m", ".sto", ".stockholm", ".a3m.gz", ".sto.gz")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fold",
        help="predict protein structures with AlphaFold2 / OpenFold weights",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="FASTA file (one or more records) or a folder of FASTA files")
    p.add_argument("--msa", type=Path, help="A3M / Stockholm file (one record) or folder with NAME.a3m / NAME.sto")
    p.add_argument("--params", type=Path, help=f"weights file (default: ${PARAMS_ENV})")
    p.add_argument("--preset", help="model preset, e.g. model_1_ptm (default: from the params file name)")
    p.add_argument("--config", type=Path, help="model config JSON (tertiary config, OpenFold config or meta.json)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--num-recycles", type=int, help="recycling iterations (default: the preset's, 3)")
    p.add_argument("--chunk-size", type=int, help="chunk size of O(N^2)/O(N^3) modules (lower = less memory)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on recent GPUs)")
    p.add_argument("--seed", type=int, default=0, help="seed of the MSA sampling and masking (default 0)")
    p.add_argument("--relax", action="store_true", help="Amber relaxation (OpenMM + PDBFixer), writes NAME.relaxed.pdb")
    p.add_argument("--overwrite", action="store_true", help="fold records whose outputs already exist")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(handler=run)


# ----------------------------------------------------------------------------- inputs
@dataclass
class Query:
    name: str
    sequence: str
    source: str
    msa_path: Path | None = None


def _safe_name(name: str, index: int) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or f"query_{index}"


def collect_queries(input_path: Path, msa: Path | None) -> tuple[list[Query], list[dict[str, str]]]:
    """Queries from a FASTA file or folder; bad records are returned as failures (and skipped)."""
    from tertiary.sequence import read_fasta

    if input_path.is_dir():
        files = sorted(p for p in input_path.iterdir() if p.name.lower().endswith(FASTA_SUFFIXES))
        if not files:
            raise InputError(f"{input_path}: no FASTA files ({', '.join(FASTA_SUFFIXES)}) in the folder")
    elif input_path.is_file():
        files = [input_path]
    else:
        raise InputError(f"{input_path}: no such FASTA file or folder")
    queries: list[Query] = []
    failures: list[dict[str, str]] = []
    seen: set[str] = set()
    for path in files:
        errors: list[TertiaryError] = []
        records = read_fasta(path, on_error=errors.append)
        failures += [{"name": str(path), "error": str(e)} for e in errors]
        for rec in records:
            name = _safe_name(rec.name, len(queries))
            if name in seen:
                failures.append({"name": name, "error": f"{path}: duplicate record name {name!r} skipped"})
                continue
            seen.add(name)
            queries.append(Query(name, rec.sequence, f"{path}:{rec.name}"))
    if msa is not None:
        if msa.is_dir():
            for q in queries:
                found = [msa / f"{q.name}{s}" for s in MSA_SUFFIXES if (msa / f"{q.name}{s}").is_file()]
                q.msa_path = found[0] if found else None
                if q.msa_path is None:
                    logger.warning("%s: no MSA in %s (single-sequence mode)", q.name, msa)
        elif msa.is_file():
            if len(queries) != 1:
                raise InputError(f"--msa {msa} is one file but {len(queries)} queries were given: pass a folder")
            queries[0].msa_path = msa
        else:
            raise InputError(f"--msa {msa}: no such file or folder")
        queries = _check_msas(queries, failures)
    return queries, failures


def _check_msas(queries: list[Query], failures: list[dict[str, str]]) -> list[Query]:
    """Drop (and report) queries whose MSA is unreadable or does not start with the query,
    before any model is loaded."""
    from tertiary.sequence import read_msa

    kept = []
    for q in queries:
        if q.msa_path is not None:
            try:
                read_msa(q.msa_path).check_query(q.sequence, source=str(q.msa_path))
            except TertiaryError as exc:
                failures.append({"name": q.name, "error": one_line(exc)})
                continue
        kept.append(q)
    return kept


def find_params(args: argparse.Namespace) -> Path:
    """--params, else $TERTIARY_PARAMS (file, or folder searched for the preset's file)."""
    if args.params is not None:
        if not args.params.is_file():
            raise WeightsError(f"--params {args.params}: file not found")
        return args.params
    env = os.environ.get(PARAMS_ENV)
    if not env:
        raise WeightsError(f"no parameters: pass --params FILE or set {PARAMS_ENV} (neither was given)")
    path = Path(env).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if not args.preset:
            raise WeightsError(f"{PARAMS_ENV}={path} is a folder: pass --preset to choose a file in it")
        names = [f"params_{args.preset}.npz", f"{args.preset}.pt", f"{args.preset}.safetensors"]
        for name in names:
            if (path / name).is_file():
                return path / name
        raise WeightsError(f"{PARAMS_ENV}={path}: none of {', '.join(names)} found there")
    raise WeightsError(f"{PARAMS_ENV}={path}: no such file or folder")


def check_params_file(path: Path) -> None:
    """Cheap format check before a model is built (building a full-size model takes a while)."""
    suffix = path.suffix.lower()
    if suffix in (".npz", ".pt", ".pth", ".ckpt"):
        with path.open("rb") as handle:
            head = handle.read(4)
        legacy_pickle = suffix != ".npz" and head[:1] == b"\x80"
        if not (zipfile.is_zipfile(path) or legacy_pickle):
            kind = "an AlphaFold2 .npz (zip) file" if suffix == ".npz" else "an OpenFold / PyTorch checkpoint"
            raise WeightsError(f"{path}: corrupt or truncated parameter file, not {kind}")
    elif suffix != ".safetensors":
        raise WeightsError(f"{path}: unknown parameter format {suffix!r} (expected .npz, .pt or .safetensors)")


def resolve_config(args: argparse.Namespace, params: Path) -> Any:
    """Model config from --config, else --preset, else the params file name (None for .safetensors)."""
    from tertiary.models.alphafold.config import AlphaFoldConfig

    if params.suffix.lower() == ".safetensors":  # tertiary weights carry their config
        if args.config is not None:
            raise ConfigError(f"--config {args.config}: {params.name} has its own config ({params.with_suffix('.json').name})")
        if args.preset:
            try:
                own = json.loads(params.with_suffix(".json").read_text()).get("name")
            except (OSError, json.JSONDecodeError, AttributeError):
                own = None  # reported when the weights are loaded
            if own is not None and own != args.preset:
                raise ConfigError(f"--preset {args.preset}: {params.name} holds the config {own!r}")
        return None
    if args.config is not None:
        try:
            data = json.loads(args.config.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--config {args.config}: unreadable JSON ({exc})") from exc
        if "config" in data and isinstance(data["config"], dict) and "model" in data["config"]:
            data = data["config"]  # an OpenFold reference meta.json
        if "model" in data:
            return AlphaFoldConfig.from_openfold(data, name=args.config.stem)
        return AlphaFoldConfig.from_dict(data)
    if args.preset:
        return AlphaFoldConfig.preset(args.preset)
    match = re.search(r"(model_[1-5](?:_ptm)?)(?![\w])", params.stem)
    if match is None:
        raise ConfigError(f"{params}: cannot tell the preset from the file name; pass --preset (e.g. model_1_ptm)")
    return AlphaFoldConfig.preset(match.group(1))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"--device {name!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ResourceError(f"--device {name}: CUDA is not available on this machine")
    return device


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device``: CUDA free memory, or the kernel's MemAvailable (RAM + reclaimable cache)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_memory(
    config: Any, name: str, n_res: int, n_seq: int, n_extra: int, chunk_size: int | None, bf16: bool,
    n_params: int, available: int, device: torch.device,
) -> str | None:  # fmt: skip
    """Estimated peak memory against ``available`` bytes.

    Returns a warning (estimate above 80% of what is free, with a ``--chunk-size`` that fits)
    or None. Raises :class:`ResourceError` when even ``--chunk-size 1`` is estimated to need more
    than twice the free memory (the estimate is good to ~2x, so that run cannot fit).
    """
    from tertiary.models.alphafold.memory import CHUNK_CANDIDATES, estimate_peak_bytes, suggest_chunk_size

    bpe = 2 if bf16 else 4
    need = estimate_peak_bytes(config, n_res, n_seq, n_extra, chunk_size, bpe, n_params)
    if need <= 0.8 * available:
        return None
    least = estimate_peak_bytes(config, n_res, n_seq, n_extra, CHUNK_CANDIDATES[-1], bpe, n_params)
    gib = 2**30
    if least > 2 * available:
        raise ResourceError(
            f"{name}: {n_res} residues x {n_seq} MSA rows ({n_extra} extra) need about {least / gib:.1f} GiB even "
            f"with --chunk-size {CHUNK_CANDIDATES[-1]}, only {available / gib:.1f} GiB is free on {device}; "
            "use a device with more memory or fewer MSA sequences"
        )
    hint = suggest_chunk_size(config, n_res, n_seq, n_extra, available, bpe) or CHUNK_CANDIDATES[-1]
    if chunk_size is None or hint < chunk_size:
        advice = f"try --chunk-size {hint}"
    else:
        advice = f"even --chunk-size {CHUNK_CANDIDATES[-1]} is estimated at {least / 2**30:.1f} GiB; it may run out of memory"
    return (
        f"{name}: estimated peak memory {need / gib:.1f} GiB for {n_res} residues x {n_seq} MSA rows "
        f"(chunk size {chunk_size or 'none'}), {available / gib:.1f} GiB free on {device}; {advice}"
    )


# ----------------------------------------------------------------------------- outputs
def write_structures(out: Path, name: str, sequence: str, result: dict[str, np.ndarray]) -> None:
    """NAME.pdb and NAME.cif with pLDDT in the B-factor column (and ModelCIF QA metrics in the cif)."""
    from tertiary.protein import Protein

    plddt = result["plddt"]
    protein = Protein(
        atom_positions=result["final_atom_positions"],
        atom_mask=result["final_atom_mask"],
        aatype=result["aatype"],
        residue_index=result["residue_index"] + 1,
        chain_id=np.full(len(sequence), "A"),
        b_factors=np.repeat(plddt[:, None], 37, axis=1) * result["final_atom_mask"],
        name=name,
    )
    protein.to_pdb(out / f"{name}.pdb")
    cif = protein.to_mmcif()
    first, _, rest = cif.partition("\n")  # "data_NAME", then the atom_site loop
    text = f"{first}\n{modelcif_header(name, protein)}{rest.rstrip()}\n{modelcif_qa(protein, plddt)}"
    (out / f"{name}.cif").write_text(text)


def _cif_quote(value: str) -> str:
    return f"'{value}'" if re.search(r"[\s'\"]", value) or not value else value


def modelcif_header(name: str, protein: Any) -> str:
    """ModelCIF categories before ``atom_site``: entry, dictionary, software, entity, polymer
    sequence, asym unit, chemical components and the model list (one theoretical model)."""
    from tertiary import constants as rc

    names = [rc.RESNAMES[int(a)] for a in protein.aatype]
    one = "".join(rc.RESTYPES_WITH_X[min(int(a), rc.UNK_INDEX)] for a in protein.aatype)
    lines = [
        "#", f"_entry.id {_cif_quote(name)}",
        "#", "_audit_conform.dict_name mmcif_ma.dic", "_audit_conform.dict_version 1.4.5",
        "#", "loop_", "_software.pdbx_ordinal", "_software.name", "_software.version", "_software.type",
        "_software.classification", f"1 tertiary {tertiary.__version__} package 'structure prediction'",
        "#", "loop_", "_entity.id", "_entity.type", "_entity.src_method", "_entity.pdbx_description",
        f"1 polymer man {_cif_quote(name)}",
        "#", "_entity_poly.entity_id 1", "_entity_poly.type polypeptide(L)", "_entity_poly.nstd_linkage no",
        f"_entity_poly.pdbx_seq_one_letter_code {one}", f"_entity_poly.pdbx_seq_one_letter_code_can {one}",
        "#", "loop_", "_entity_poly_seq.entity_id", "_entity_poly_seq.num", "_entity_poly_seq.mon_id",
        "_entity_poly_seq.hetero",
        *[f"1 {i + 1} {n} n" for i, n in enumerate(names)],
        "#", "_struct_asym.id A", "_struct_asym.entity_id 1", "_struct_asym.details 'Model subunit A'",
        "#", "loop_", "_chem_comp.id", "_chem_comp.type", "_chem_comp.name",
        *[f"{n} 'L-peptide linking' ." for n in sorted(set(names))],
        "#", "_ma_data.id 1", "_ma_data.name Model", "_ma_data.content_type 'model coordinates'",
        "#", "loop_", "_ma_model_list.ordinal_id", "_ma_model_list.model_id", "_ma_model_list.model_group_id",
        "_ma_model_list.model_name", "_ma_model_list.model_group_name", "_ma_model_list.model_type",
        "_ma_model_list.data_id",
        "1 1 1 'Top ranked model' . 'Ab initio model' 1",
        "#",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def modelcif_qa(protein: Any, plddt: np.ndarray) -> str:
    """ModelCIF ``ma_qa_metric`` categories: global mean pLDDT and per-residue pLDDT."""
    from tertiary import constants as rc

    lines = [
        "#", "loop_", "_ma_qa_metric.id", "_ma_qa_metric.mode", "_ma_qa_metric.name",
        "_ma_qa_metric.software_group_id", "_ma_qa_metric.type",
        "1 global pLDDT . pLDDT", "2 local pLDDT . pLDDT",
        "#", "_ma_qa_metric_global.metric_id 1", "_ma_qa_metric_global.model_id 1",
        f"_ma_qa_metric_global.metric_value {float(np.mean(plddt)):.2f}", "_ma_qa_metric_global.ordinal_id 1",
        "#", "loop_", "_ma_qa_metric_local.label_asym_id", "_ma_qa_metric_local.label_comp_id",
        "_ma_qa_metric_local.label_seq_id", "_ma_qa_metric_local.metric_id",
        "_ma_qa_metric_local.metric_value", "_ma_qa_metric_local.model_id", "_ma_qa_metric_local.ordinal_id",
    ]  # fmt: skip
    for i, (aa, value) in enumerate(zip(protein.aatype, plddt)):
        lines.append(f"A {rc.RESNAMES[int(aa)]} {i + 1} 2 {float(value):.2f} 1 {i + 1}")
    return "\n".join(lines + ["#"]) + "\n"


def write_confidence(out: Path, name: str, result: dict[str, np.ndarray]) -> dict[str, Any]:
    plddt = result["plddt"]
    conf: dict[str, Any] = {
        "name": name,
        "plddt": [round(float(x), 2) for x in plddt],
        "mean_plddt": round(float(plddt.mean()), 3),
        "ptm": float(result["ptm_score"]) if "ptm_score" in result else None,
        "max_pae": float(result["max_predicted_aligned_error"]) if "max_predicted_aligned_error" in result else None,
    }
    (out / f"{name}.confidence.json").write_text(json.dumps(conf))
    if "predicted_aligned_error" in result:
        pae = np.round(result["predicted_aligned_error"].astype(np.float64), 2)
        afdb = [{
            "predicted_aligned_error": pae.tolist(),
            "max_predicted_aligned_error": float(result["max_predicted_aligned_error"]),
        }]  # fmt: skip
        (out / f"{name}.pae.json").write_text(json.dumps(afdb))
    return conf


def write_plots(out: Path, name: str, result: dict[str, np.ndarray], msa_rows: np.ndarray) -> None:
    """pLDDT per residue, PAE matrix and MSA coverage (rows per column, coloured by identity)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plddt = result["plddt"]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(np.arange(1, len(plddt) + 1), plddt, lw=1.2)
    for y, c in ((90, "#0053d6"), (70, "#65cbf3"), (50, "#ffdb13")):
        ax.axhline(y, color=c, lw=0.6, ls="--")
    ax.set(xlabel="residue", ylabel="pLDDT", ylim=(0, 100), title=f"{name}: mean pLDDT {plddt.mean():.1f}")
    fig.tight_layout()
    fig.savefig(out / f"{name}.plddt.png", dpi=120)
    plt.close(fig)
    if "predicted_aligned_error" in result:
        fig, ax = plt.subplots(figsize=(5, 4.3))
        im = ax.imshow(result["predicted_aligned_error"], cmap="Greens_r", vmin=0,
                       vmax=float(result["max_predicted_aligned_error"]))  # fmt: skip
        fig.colorbar(im, ax=ax, label="expected position error (Å)")
        ax.set(xlabel="scored residue", ylabel="aligned residue", title=f"{name}: PAE")
        fig.tight_layout()
        fig.savefig(out / f"{name}.pae.png", dpi=120)
        plt.close(fig)
    present = msa_rows != 21  # not a gap
    identity = (msa_rows == msa_rows[:1]).sum(1) / max(1, msa_rows.shape[1])
    order = np.argsort(-identity)
    shown = np.where(present[order], identity[order][:, None], np.nan)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    im = ax.imshow(shown, aspect="auto", cmap="rainbow_r", vmin=0, vmax=1, interpolation="nearest")
    ax.plot(np.arange(present.shape[1]), present.sum(0), color="black", lw=1)
    fig.colorbar(im, ax=ax, label="sequence identity to query")
    ax.set(xlabel="residue", ylabel="sequences", title=f"{name}: MSA coverage ({msa_rows.shape[0]} rows)")
    ax.set_ylim(-0.5, msa_rows.shape[0] - 0.5)
    fig.tight_layout()
    fig.savefig(out / f"{name}.msa_coverage.png", dpi=120)
    plt.close(fig)


def relax_structure(pdb_path: Path, out_path: Path) -> dict[str, Any]:
    """Amber relaxation through :mod:`tertiary.relax` (ConfigError when OpenMM / PDBFixer are missing)."""
    from tertiary.relax import relax_pdb

    result = relax_pdb(pdb_path, out_path)
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.summary().items()}


def _check_relax_available() -> None:
    try:
        import openmm  # noqa: F401
        import pdbfixer  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"--relax needs OpenMM and PDBFixer ({exc.name} is not installed): pip install 'tertiary[relax]'"
        ) from exc


def _plots_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- run
@dataclass
class RunState:
    done: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)


def _versions() -> dict[str, str]:
    """Versions of the packages that shape the result (optional ones when installed)."""
    from importlib import metadata

    out = {"tertiary": tertiary.__version__, "torch": torch.__version__, "numpy": np.__version__,
           "python": platform.python_version()}  # fmt: skip
    for name in ("gemmi", "safetensors", "openmm", "pdbfixer", "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tertiary.models.alphafold.weights import load_model

    console = Console(stderr=True)
    if args.num_recycles is not None and args.num_recycles < 0:
        raise ConfigError(f"--num-recycles must be >= 0, got {args.num_recycles}")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ConfigError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    queries, failures = collect_queries(args.input, args.msa)
    if not queries:
        detail = f": {failures[0]['error']}" if len(failures) == 1 else (
            f" ({len(failures)} records failed; first: {failures[0]['error']})" if failures else "")  # fmt: skip
        raise InputError(f"{args.input}: no sequence to fold{detail}")
    params = find_params(args)
    check_params_file(params)
    config = resolve_config(args, params)
    device = resolve_device(args.device)
    if args.relax:  # fail before folding anything
        _check_relax_available()
    if not args.no_plots and not _plots_available():
        console.print("[yellow]warning: matplotlib is not installed, no PNG plots are written "
                      "(pip install 'tertiary\\[plots]', or pass --no-plots)[/]")  # fmt: skip
        args.no_plots = True
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    model = load_model(params, config).to(device).eval()
    load_s = time.perf_counter() - t0
    config = model.config
    num_recycles = config.data.num_recycles if args.num_recycles is None else args.num_recycles
    run_config = {
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "handler"},
        "params": str(params), "device": str(device), "num_recycles": num_recycles, "seed": args.seed,
        "versions": _versions(), "model_config": config.to_dict(), "weights_load_seconds": round(load_s, 3),
    }  # fmt: skip
    (args.out / "config.json").write_text(json.dumps(run_config, indent=1))
    console.print(f"[bold]tertiary fold[/]: {len(queries)} queries, {escape(config.name)} from {escape(params.name)} on {device}")

    state = RunState(failed=list(failures))
    errors: list[TertiaryError] = []
    n_params = sum(p.numel() for p in model.parameters())
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:  # fmt: skip
        for i, q in enumerate(queries):
            label = escape(f"[{i + 1}/{len(queries)}] {q.name} ({len(q.sequence)} res)")
            if (args.out / f"{q.name}.confidence.json").is_file() and not args.overwrite:
                state.skipped.append(q.name)
                console.print(f"{label}: done before, skipped (--overwrite to redo)")
                relaxed = args.out / f"{q.name}.relaxed.pdb"
                if args.relax and not relaxed.is_file() and (args.out / f"{q.name}.pdb").is_file():
                    try:  # folded by an earlier run without --relax: relax the model it wrote
                        relax_structure(args.out / f"{q.name}.pdb", relaxed)
                        console.print(f"{label}: relaxed the earlier model")
                    except TertiaryError as exc:
                        state.failed.append({"name": q.name, "error": f"relaxation: {' '.join(str(exc).split())}"})
                        console.print(f"[yellow]warning: {escape(q.name)}: relaxation failed: {escape(str(exc))}[/]")
                continue
            task = progress.add_task(f"{label} recycle", total=num_recycles + 1)
            try:
                info = fold_one(q, model, args, device, num_recycles, n_params,
                                lambda k, n: progress.update(task, completed=k + 1),  # noqa: B023
                                console)  # fmt: skip
                state.done.append(info)
                if "error" in info.get("relax", {}):
                    state.failed.append({"name": q.name, "error": f"relaxation: {info['relax']['error']}"})
                progress.update(task, description=f"{label} pLDDT {info['mean_plddt']:.1f}")
            except TertiaryError as exc:
                errors.append(exc)
                state.failed.append({"name": q.name, "error": one_line(exc)})
                progress.update(task, description=f"{label} [red]failed[/]")
                console.print(f"[red]{escape(q.name)}: {escape(str(exc))}[/]")
            except torch.OutOfMemoryError as exc:
                state.failed.append({"name": q.name, "error": f"out of memory ({exc}); retry with --chunk-size 32"})
                console.print(f"[red]{q.name}: out of memory; retry with a smaller --chunk-size[/]")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    summary = {"folded": state.done, "skipped": state.skipped, "failed": state.failed}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    console.print(f"folded {len(state.done)}, skipped {len(state.skipped)}, failed {len(state.failed)}")
    for f in state.failed:
        console.print(f"  failed: {escape(f['name'])}: {escape(f['error'])}")
    if state.failed and not state.done and not state.skipped:
        # nothing could be folded: a user error, reported on one line (exit code 2)
        if len(state.failed) == 1 and errors:
            raise errors[0]
        raise InputError(f"all {len(state.failed)} queries failed (see {args.out / 'summary.json'}); "
                         f"first: {state.failed[0]['name']}: {state.failed[0]['error']}")  # fmt: skip
    return 1 if state.failed else 0


def fold_one(q: Query, model: Any, args: argparse.Namespace, device: torch.device, num_recycles: int,
             n_params: int, on_cycle: Any, console: Any) -> dict[str, Any]:  # fmt: skip
    """Features -> model -> files for one query; returns its summary entry."""
    from tertiary.data.msa_features import MSAFeatureConfig, build_features
    from tertiary.models.alphafold.model import split_cycles
    from tertiary.sequence import read_msa

    times: dict[str, float] = {}
    t = time.perf_counter()
    config = model.config
    msa = read_msa(q.msa_path) if q.msa_path is not None else None
    if config.name in config.preset_names():
        fcfg = MSAFeatureConfig.preset(config.name, num_recycles=num_recycles, pad_to_max=False)
    else:
        d = config.data
        fcfg = MSAFeatureConfig(max_msa_clusters=d.max_msa_clusters, max_extra_msa=d.max_extra_msa,
                                num_recycles=num_recycles, pad_to_max=False)  # fmt: skip
    feats = build_features(q.sequence, msa, fcfg, seed=args.seed, source=str(q.msa_path or q.source))
    cycles = [{k: v.to(device) for k, v in c.items()} for c in split_cycles(feats)]
    times["features"] = time.perf_counter() - t

    n_res, n_seq, n_extra = len(q.sequence), cycles[0]["msa_feat"].shape[0], cycles[0]["extra_msa"].shape[0]
    warning = check_memory(config, q.name, n_res, n_seq, n_extra, args.chunk_size, args.bf16, n_params,
                           available_memory(device), device)  # fmt: skip
    if warning:
        console.print(f"[yellow]warning: {escape(warning)}[/]")
    t = time.perf_counter()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
        out = model(cycles, num_cycles=num_recycles + 1, chunk_size=args.chunk_size, on_cycle=on_cycle)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times["model"] = time.perf_counter() - t

    t = time.perf_counter()
    keys = ("final_atom_positions", "final_atom_mask", "plddt", "ptm_score", "predicted_aligned_error",
            "max_predicted_aligned_error")  # fmt: skip
    result = {k: out[k].float().cpu().numpy() for k in keys if k in out}
    result["aatype"] = cycles[0]["aatype"].cpu().numpy()
    result["residue_index"] = cycles[0]["residue_index"].cpu().numpy()
    write_structures(args.out, q.name, q.sequence, result)
    conf = write_confidence(args.out, q.name, result)
    if not args.no_plots:
        rows = msa.deduplicate().sequences if msa is not None else np.asarray(
            [np.asarray(result["aatype"], dtype=np.int64)])  # fmt: skip
        write_plots(args.out, q.name, result, np.asarray(rows, dtype=np.int64))
    times["write"] = time.perf_counter() - t
    info: dict[str, Any] = {"name": q.name, "length": n_res, "msa_rows": int(msa.depth) if msa is not None else 1,
                            "mean_plddt": conf["mean_plddt"], "ptm": conf["ptm"]}  # fmt: skip
    if args.relax:
        t = time.perf_counter()
        try:
            info["relax"] = relax_structure(args.out / f"{q.name}.pdb", args.out / f"{q.name}.relaxed.pdb")
        except TertiaryError as exc:  # the prediction is kept; the run reports the failed relaxation
            info["relax"] = {"error": one_line(exc)}
            console.print(f"[yellow]warning: {escape(q.name)}: relaxation failed, unrelaxed model kept: {escape(str(exc))}[/]")
        times["relax"] = time.perf_counter() - t
    timings = {k: round(v, 3) for k, v in times.items()}
    (args.out / f"{q.name}.timings.json").write_text(json.dumps(timings))
    info["timings"] = timings
    return info

