"""Folding datasets: a folder or tar archive of PDB / mmCIF files (+ MSAs) -> one LMDB file.

:func:`build_folding_dataset` writes one record per protein chain with the arrays of its
:class:`~tertiary.protein.Protein` (``aatype``, ``atom_positions``, ``atom_mask``,
``residue_index``) and, when an MSA file is found for the chain, ``msa`` / ``deletion_matrix``.
Each record's metadata holds ``name``, ``source`` (the file), ``chain``, ``length``,
``sequence``, ``resolution`` (Angstrom, or None when the file does not give one), ``cluster``
and ``split`` (from the optional tables; None when absent) and ``has_msa``.

Broken entries (unparsable file, no protein residue, no CA atom, an MSA whose query differs
from the chain) are skipped and listed with their reason in ``<db stem>.report.tsv`` next to the
database, and counted in the build report stored in the dataset index; nothing is dropped
silently. The database appears under its final name only when complete (:class:`LmdbWriter`).
"""

from __future__ import annotations

import collections
import csv
import re
import tarfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tertiary import constants as rc
from tertiary.errors import DataError, InputError, TertiaryError, one_line
from tertiary.atom_sites import decompress
from tertiary.data.lmdb_store import LmdbWriter

#: Task name stored in the dataset index (checked by :class:`~tertiary.data.lmdb_store.LmdbDataset`).
TASK = "folding"
STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
MSA_SUFFIXES = (".a3m", ".sto", ".stockholm", ".fasta", ".fa")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")
#: progress callback: (entries done, total entries or None when unknown, current entry name)
Progress = Callable[[int, int | None, str], None]

_PDB_RES = re.compile(rb"^REMARK   2 RESOLUTION\.\s+([0-9.]+)\s+ANGSTROM", re.M)
_CIF_RES = re.compile(
    rb"^(?:_refine\.ls_d_res_high|_reflns\.d_resolution_high|_em_3d_reconstruction\.resolution)\s+([0-9.]+)\s*$",
    re.M,
)


@dataclass
class BuildReport:
    """What a build did: records written, entries skipped and why."""

    path: Path
    report_path: Path
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (entry, parser warning): kept

    @property
    def reasons(self) -> dict[str, int]:
        """Skip counts by reason class (the part of the reason before the first ':')."""
        return dict(collections.Counter(r.split(":", 1)[0] for _, r in self.skipped))

    def summary(self) -> str:
        text = f"{self.written} chains written to {self.path}, {len(self.skipped)} entries skipped"
        if self.skipped:
            text += " (" + ", ".join(f"{n} {k}" for k, n in sorted(self.reasons.items())) + ")"
        if self.warnings:
            text += f", {len(self.warnings)} parser warnings on kept entries"
        if self.skipped or self.warnings:
            text += f"; see {self.report_path}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"written": self.written, "skipped": len(self.skipped), "reasons": self.reasons,
                "warnings": len(self.warnings), "report": str(self.report_path)}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# sources


def _is_tar(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_TAR_SUFFIXES)


def _structure_name(name: str) -> str | None:
    """File name -> entry stem, or None when it is not a structure file."""
    lower = name.lower()
    base = lower.removesuffix(".gz")
    for suffix in STRUCTURE_SUFFIXES:
        if base.endswith(suffix):
            return Path(name).name[: len(base) - len(suffix)]
    return None


def iter_structure_files(src: str | Path) -> Iterator[tuple[str, str, bytes | Exception]]:
    """``(stem, source, data or the read error)`` for every structure file of a folder (searched
    recursively, sorted) or a tar archive (read in place, in archive order)."""
    src = Path(src)
    if _is_tar(src):
        try:
            tf = tarfile.open(src, "r:*")
        except (tarfile.TarError, OSError) as exc:
            raise InputError(f"{src}: cannot open archive ({exc})") from None
        with tf:
            try:
                for member in tf:
                    stem = _structure_name(member.name)
                    if not member.isfile() or stem is None:
                        continue
                    where = f"{src}:{member.name}"
                    try:
                        fh = tf.extractfile(member)
                        yield stem, where, fh.read() if fh is not None else OSError("not a regular file")
                    except (tarfile.TarError, OSError, EOFError) as exc:
                        yield stem, where, exc
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise InputError(f"{src}: archive is corrupt or truncated ({exc})") from None
        return
    if not src.is_dir():
        raise InputError(f"{src}: not a folder or a tar archive of PDB / mmCIF files")
    for path in sorted(p for p in src.rglob("*") if p.is_file() and _structure_name(p.name) is not None):
        try:
            yield _structure_name(path.name) or path.name, str(path), path.read_bytes()
        except OSError as exc:
            yield path.name, str(path), exc


def count_structure_files(src: str | Path) -> int | None:
    """Number of structure files in a folder (None for archives: counting needs a full read)."""
    src = Path(src)
    if _is_tar(src) or not src.is_dir():
        return None
    return sum(1 for p in src.rglob("*") if p.is_file() and _structure_name(p.name) is not None)


def read_table(path: str | Path, value_columns: tuple[str, ...]) -> dict[str, str]:
    """Two-column lookup from a TSV with a header: chain id (``chain_id``, ``chain``, ``name``,
    ``id`` or the first column) -> the first of ``value_columns`` present."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    rows = list(csv.reader(text.splitlines(), delimiter="\t"))
    if not rows:
        raise DataError(f"{path}: empty table")
    header = [h.strip() for h in rows[0]]
    key_col = next((header.index(k) for k in ("chain_id", "chain", "name", "id") if k in header), 0)
    val_col = next((header.index(k) for k in value_columns if k in header), None)
    if val_col is None:
        raise DataError(f"{path}: no column named {' or '.join(value_columns)} (header: {', '.join(header)})")
    out: dict[str, str] = {}
    for i, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) <= max(key_col, val_col):
            raise DataError(f"{path}:{i}: expected at least {max(key_col, val_col) + 1} columns")
        out[row[key_col].strip()] = row[val_col].strip()
    return out


def read_resolution(data: bytes) -> float | None:
    """Resolution (Angstrom) from a PDB REMARK 2 or an mmCIF refine / reflns / EM item."""
    m = _PDB_RES.search(data[:200_000]) or _CIF_RES.search(data)
    if m is None:
        return None
    try:
        value = float(m.group(1))
    except ValueError:
        return None
    return value if value > 0 else None


def _find_msa(msa_dir: Path, key: str, stem: str) -> Path | None:
    for name in dict.fromkeys((key, stem)):
        for suffix in MSA_SUFFIXES:
            for candidate in (msa_dir / f"{name}{suffix}", msa_dir / f"{name}{suffix}.gz", msa_dir / name / f"msa{suffix}"):
                if candidate.is_file():
                    return candidate
    return None


def chain_sequence(aatype: np.ndarray) -> str:
    """One-letter sequence of ``aatype`` (20 -> ``X``)."""
    return "".join(rc.RESTYPES_WITH_X[int(a)] for a in np.clip(aatype, 0, rc.UNK_INDEX))


# ---------------------------------------------------------------------------------------------
# build


def build_folding_dataset(
    src: str | Path,
    out: str | Path,
    *,
    msa_dir: str | Path | None = None,
    clusters: str | Path | None = None,
    split: str | Path | None = None,
    min_length: int = 10,
    progress: Progress | None = None,
) -> BuildReport:
    """Build a folding dataset (see the module docstring).

    Args:
        src: folder of PDB / mmCIF files (``.gz`` allowed) or a tar archive of them.
        out: the LMDB file to write; ``<stem>.report.tsv`` is written next to it.
        msa_dir: folder with one MSA per chain, ``<chain key>.a3m`` / ``.sto`` (or ``<file
            stem>.a3m``, or ``<key>/msa.a3m``); chains without one are stored without MSA.
        clusters: TSV ``chain_id`` -> ``cluster30`` / ``cluster``.
        split: TSV ``chain_id`` -> ``split`` (train / valid / test); its ``cluster30`` column, if
            any, also gives clusters.
        min_length: chains with fewer resolved CA atoms are skipped.
        progress: called after every file.

    A file with one protein chain gives the record key ``<file stem>``; a file with several gives
    ``<file stem>_<chain>`` per chain.
    """
    out = Path(out)
    report_path = out.with_name(out.stem + ".report.tsv")
    report = BuildReport(out, report_path)
    cluster_of: dict[str, str] = {}
    split_of: dict[str, str] = {}
    if split is not None:
        split_of = read_table(split, ("split",))
        try:
            cluster_of.update(read_table(split, ("cluster30", "cluster")))
        except DataError:
            pass
    if clusters is not None:
        cluster_of.update(read_table(clusters, ("cluster30", "cluster", "cluster_id")))
    msa_root = Path(msa_dir) if msa_dir is not None else None
    if msa_root is not None and not msa_root.is_dir():
        raise InputError(f"{msa_root}: MSA folder not found")
    total = count_structure_files(src)

    from tertiary.protein import Protein
    from tertiary.sequence import read_msa

    with LmdbWriter(out, TASK) as writer:
        for done, (stem, source, data) in enumerate(iter_structure_files(src), start=1):
            if progress is not None:
                progress(done - 1, total, stem)
            if isinstance(data, Exception):
                report.skipped.append((stem, f"unreadable: {data}"))
                continue
            try:
                raw = decompress(data, source)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    protein = Protein.from_string(raw, name=source)
                report.warnings.extend((stem, one_line(str(w.message))) for w in caught)
            except TertiaryError as exc:
                report.skipped.append((stem, f"parse error: {' '.join(str(exc).split())[:300]}"))
                continue
            except Exception as exc:  # a reader bug must not stop a 100k-file build
                report.skipped.append((stem, f"parse error: {type(exc).__name__}: {exc}"[:300]))
                continue
            resolution = read_resolution(raw)
            chains = protein.chains
            if not chains:
                report.skipped.append((stem, "no protein: the file has no amino-acid residue"))
                continue
            for chain in chains:
                key = stem if len(chains) == 1 else f"{stem}_{chain}"
                p = protein.select_chains([chain])
                ca = p.atom_mask[:, rc.ATOM_ORDER["CA"]] > 0
                if int(ca.sum()) < min_length:
                    report.skipped.append((key, f"too short: {int(ca.sum())} residues with a CA atom (< {min_length})"))
                    continue
                sequence = chain_sequence(p.aatype)
                arrays: dict[str, np.ndarray] = {
                    "aatype": p.aatype.astype(np.int64),
                    "atom_positions": p.atom_positions.astype(np.float32),
                    "atom_mask": p.atom_mask.astype(np.uint8),
                    "residue_index": p.residue_index.astype(np.int64),
                }
                has_msa = False
                if msa_root is not None:
                    msa_path = _find_msa(msa_root, key, stem)
                    if msa_path is not None:
                        try:
                            msa = read_msa(msa_path)
                            msa.check_query(sequence, source=str(msa_path))
                        except TertiaryError as exc:
                            report.skipped.append((key, f"bad MSA: {' '.join(str(exc).split())[:300]}"))
                            continue
                        arrays["msa"] = msa.sequences.astype(np.int8)
                        arrays["deletion_matrix"] = msa.deletion_matrix.astype(np.int32)
                        has_msa = True
                lookup = key if key in cluster_of or key in split_of else stem
                meta = {
                    "name": key,
                    "source": source,
                    "chain": chain,
                    "length": int(len(p)),
                    "sequence": sequence,
                    "resolution": resolution,
                    "cluster": cluster_of.get(lookup),
                    "split": split_of.get(lookup),
                    "has_msa": has_msa,
                }
                try:
                    writer.add(key, arrays, meta)
                except DataError as exc:
                    report.skipped.append((key, f"duplicate: {exc}"))
                    continue
                report.written += 1
        if progress is not None:
            progress(total or 0, total, "")
        if report.written == 0:
            raise DataError(f"{src}: no usable chain found ({len(report.skipped)} entries skipped)")
        writer.commit({"source": str(src), **report.as_dict()})
    _write_report(report)
    return report


def _write_report(report: BuildReport) -> None:
    with open(report.report_path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["entry", "status", "reason"])
        for entry, reason in report.skipped:
            w.writerow([entry, "skipped", " ".join(reason.split())])
        for entry, message in report.warnings:
            w.writerow([entry, "kept (warning)", message])
