"""Function-prediction data: DeepFRI's EC / GO benchmark files and structure samples.

DeepFRI's nrPDB benchmark (Gligorijevic et al. 2021; also TorchDrug's ``EnzymeCommission`` /
``GeneOntology``) ships, per task, an annotation TSV (label vocabulary in header lines, then one
row per chain), split lists of chain ids (``PDBID-CHAIN``) and, here, a folder of single-chain
structures ``structures/<PDBID>-<CHAIN>.pdb[.gz]``. This module reads those files into
:class:`LabelSet` / :class:`FunctionRecord` objects and turns a parsed structure into a
:class:`StructureSample` (CA positions and residue types, the input of GearNet / ESM /
FusionProt).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tertiary.errors import DataError, InputError, MissingDependencyError, ParseError

log = logging.getLogger(__name__)

GO_BRANCHES = {"GO-MF": "molecular_function", "GO-BP": "biological_process", "GO-CC": "cellular_component"}
TASKS = ("EC", *GO_BRANCHES)
TEST_CUTOFFS = (0.3, 0.4, 0.5, 0.7, 0.95)

EC_FILES = "nrPDB-EC_2020.04"
GO_FILES = "nrPDB-GO_2019.06.18"


@dataclass(frozen=True)
class LabelSet:
    """Multi-label annotations of one task.

    Attributes:
        task: ``EC``, ``GO-MF``, ``GO-BP`` or ``GO-CC``.
        vocabulary: label names in output order (the header order of DeepFRI's file).
        labels: chain id -> sorted label indices (chains listed with no label map to ``()``).
    """

    task: str
    vocabulary: tuple[str, ...]
    labels: dict[str, tuple[int, ...]]

    def vector(self, chain_id: str) -> torch.Tensor:
        """``[L]`` float 0/1 label vector of one chain."""
        if chain_id not in self.labels:
            raise DataError(f"{self.task}: chain {chain_id} has no annotation row")
        v = torch.zeros(len(self.vocabulary))
        v[list(self.labels[chain_id])] = 1.0
        return v


def _lines(path: Path) -> list[str]:
    try:
        return [line.rstrip("\r\n") for line in path.read_text().splitlines()]
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def _label_indices(path: Path, line_no: int, field: str, index: dict[str, int], strict: bool) -> tuple[int, ...]:
    out = set()
    for label in filter(None, (x.strip() for x in field.split(","))):
        if label in index:
            out.add(index[label])
        elif strict:
            raise ParseError(f"{path}:{line_no}: label {label!r} is not in the vocabulary")
    return tuple(sorted(out))


def read_ec_annotations(path: str | Path, strict: bool = True) -> LabelSet:
    """Read ``nrPDB-EC_*_annot.tsv``: ``### EC-numbers``, the vocabulary line, ``### PDB-chain...``,
    then ``chain<TAB>ec,ec,...`` rows (CRLF tolerated).

    Args:
        strict: a label outside the vocabulary is an error (else it is skipped).
    """
    path = Path(path)
    lines = _lines(path)
    if len(lines) < 3 or not lines[0].startswith("### EC-numbers") or not lines[2].startswith("### PDB-chain"):
        raise ParseError(f"{path}: not a DeepFRI EC annotation file (expected '### EC-numbers' header)")
    vocab = tuple(x for x in lines[1].split("\t") if x)
    index = {x: i for i, x in enumerate(vocab)}
    labels = {}
    for no, line in enumerate(lines[3:], start=4):
        if not line.strip():
            continue
        chain, _, field = line.partition("\t")
        labels[chain] = _label_indices(path, no, field, index, strict)
    return LabelSet("EC", vocab, labels)


def read_go_vocabulary(path: str | Path, task: str) -> tuple[str, ...]:
    """GO terms of one branch from ``nrPDB-GO_*_goterms.tsv`` (columns ontology, index, go_id)."""
    path = Path(path)
    branch = GO_BRANCHES[task]
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row.get("ontology") == branch:
                rows.append((int(row["index"]), row["go_id"]))
    if not rows:
        raise ParseError(f"{path}: no {branch} terms (columns ontology, index, go_id expected)")
    rows.sort()
    if [i for i, _ in rows] != list(range(len(rows))):
        raise ParseError(f"{path}: {branch} indices are not 0..{len(rows) - 1}")
    return tuple(t for _, t in rows)


def read_go_annotations(
    path: str | Path, task: str, vocabulary_path: str | Path | None = None, strict: bool = True
) -> LabelSet:
    """Read a DeepFRI GO annotation file for branch ``task`` (``GO-MF`` / ``GO-BP`` / ``GO-CC``).

    The full file starts with ``### GO-terms (<branch>)`` header lines followed by each branch's
    vocabulary; the subset file shipped in ``shared/data`` has only the column header, in which
    case ``vocabulary_path`` (``*_goterms.tsv``) gives the vocabulary.
    """
    if task not in GO_BRANCHES:
        raise InputError(f"GO task must be one of {sorted(GO_BRANCHES)}, got {task!r}")
    path = Path(path)
    lines = _lines(path)
    branch = GO_BRANCHES[task]
    vocab: tuple[str, ...] | None = None
    header = None
    for no, line in enumerate(lines):
        if line.startswith(f"### GO-terms ({branch})") and no + 1 < len(lines):
            vocab = tuple(x for x in lines[no + 1].split("\t") if x)
        if line.startswith("### PDB-chain"):
            header = no
            break
    if header is None:
        raise ParseError(f"{path}: no '### PDB-chain' header line (not a DeepFRI GO annotation file)")
    columns = [c.strip() for c in lines[header][4:].split("\t")]
    column = next((i for i, c in enumerate(columns) if branch in c), None)
    if column is None:
        raise ParseError(f"{path}: no column for {branch} in header {columns}")
    if vocab is None:
        if vocabulary_path is None:
            raise DataError(f"{path}: has no GO vocabulary header; pass the *_goterms.tsv file")
        vocab = read_go_vocabulary(vocabulary_path, task)
    index = {x: i for i, x in enumerate(vocab)}
    labels = {}
    for no, line in enumerate(lines[header + 1 :], start=header + 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        field = fields[column] if column < len(fields) else ""
        labels[fields[0]] = _label_indices(path, no, field, index, strict)
    return LabelSet(task, vocab, labels)


def read_chain_list(path: str | Path) -> list[str]:
    """Chain ids of a split file, one per line."""
    return [x.strip() for x in _lines(Path(path)) if x.strip()]


def read_test_cutoffs(path: str | Path) -> dict[str, tuple[bool, ...]]:
    """``*_test.csv`` -> chain id -> flags for identity below 30/40/50/70/95 % (TEST_CUTOFFS)."""
    path = Path(path)
    out = {}
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or len(header) != 1 + len(TEST_CUTOFFS):
            raise ParseError(f"{path}: expected header PDB-chain,<30%,<40%,<50%,<70%,<95%")
        for row in reader:
            if row:
                out[row[0]] = tuple(x.strip() == "1" for x in row[1:])
    return out


@dataclass(frozen=True)
class FunctionRecord:
    """One chain of a function benchmark: its id, structure file and label vector indices."""

    chain_id: str
    structure: Path
    labels: tuple[int, ...]


def deepfri_records(
    root: str | Path,
    task: str,
    split: str,
    test_cutoff: float = 0.95,
    structures: str | Path = "structures",
) -> tuple[list[FunctionRecord], LabelSet]:
    """Records of one DeepFRI task / split that have a structure file.

    Args:
        root: folder with DeepFRI's files (``shared/data/deepfri_nrpdb``).
        task: ``EC``, ``GO-MF``, ``GO-BP`` or ``GO-CC``.
        split: ``train``, ``valid`` or ``test``.
        test_cutoff: for ``test``, keep chains whose identity to training is below this
            (TorchDrug's ``test_cutoff``; 0.95 keeps all).
        structures: folder of ``<PDBID>-<CHAIN>.pdb[.gz]`` files (relative to ``root`` or absolute).

    Chains without a structure file or without an annotation row are left out (counts logged).
    GO labels: if ``<GO>_annot.tsv`` is absent, the shipped ``_annot_subset.tsv`` is used.
    """
    root = Path(root)
    if task not in TASKS:
        raise InputError(f"task must be one of {TASKS}, got {task!r}")
    if split not in ("train", "valid", "test"):
        raise InputError(f"split must be train, valid or test, got {split!r}")
    stem = EC_FILES if task == "EC" else GO_FILES
    if task == "EC":
        labels = read_ec_annotations(root / f"{stem}_annot.tsv")
    else:
        annot = root / f"{stem}_annot.tsv"
        if not annot.exists():
            annot = root / f"{stem}_annot_subset.tsv"
        labels = read_go_annotations(annot, task, root / f"{stem}_goterms.tsv")
    chains = read_chain_list(root / f"{stem}_{split}.txt")
    if split == "test" and test_cutoff < 0.95:
        if test_cutoff not in TEST_CUTOFFS:
            raise InputError(f"test_cutoff must be one of {TEST_CUTOFFS}, got {test_cutoff}")
        flags = read_test_cutoffs(root / f"{stem}_test.csv")
        col = TEST_CUTOFFS.index(test_cutoff)
        chains = [c for c in chains if c in flags and flags[c][col]]
    folder = Path(structures) if Path(structures).is_absolute() else root / structures
    records, no_file, no_label = [], 0, 0
    for chain in chains:
        path = next((p for p in (folder / f"{chain}.pdb.gz", folder / f"{chain}.pdb", folder / f"{chain}.cif") if p.exists()), None)
        if path is None:
            no_file += 1
        elif chain not in labels.labels:
            no_label += 1
        else:
            records.append(FunctionRecord(chain, path, labels.labels[chain]))
    log.info(
        "%s %s: %d chains with structure and labels (%d without structure, %d without labels)",
        task, split, len(records), no_file, no_label,
    )
    return records, labels


@dataclass
class StructureSample:
    """Model input of one protein: residues in file order that have a CA atom.

    Attributes:
        name: identifier (file or chain id).
        residue_type: ``[N]`` long, AlphaFold order, 20 = unknown.
        pos: ``[N, 3]`` float CA positions (Angstrom).
        chain: ``[N]`` long chain index.
        residue_index: ``[N]`` long author residue numbers (for reports).
        labels: task labels (``[L]`` multi-label vector or ``[N]`` per-residue classes), or None.
    """

    name: str
    residue_type: torch.Tensor
    pos: torch.Tensor
    chain: torch.Tensor
    residue_index: torch.Tensor
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.residue_type.shape[0])


def sample_from_arrays(
    name: str,
    aatype: np.ndarray,
    ca: np.ndarray,
    ca_mask: np.ndarray,
    chain: Sequence | np.ndarray | None = None,
    residue_index: np.ndarray | None = None,
    missing_ca: str = "drop",
    max_unknown_fraction: float = 0.5,
) -> tuple[StructureSample, np.ndarray]:
    """Build a :class:`StructureSample` from per-residue arrays.

    Args:
        name: used in error messages.
        aatype: ``[N]`` residue types (AlphaFold order, 20 = unknown).
        ca: ``[N, 3]`` CA positions; ``ca_mask [N]`` says which exist.
        chain: ``[N]`` chain ids (any hashable values).
        missing_ca: ``drop`` residues without CA or ``error``.
        max_unknown_fraction: error when more residues than this fraction are unknown (e.g. a
            file of non-standard residues or nucleic acids).

    Returns:
        The sample and the ``[N]`` boolean mask of residues it keeps.
    """
    aatype = np.asarray(aatype)
    n = aatype.shape[0]
    if n == 0:
        raise InputError(f"{name}: no residues")
    keep = np.asarray(ca_mask).astype(bool)
    if not keep.all():
        missing = int((~keep).sum())
        if missing_ca == "error":
            raise InputError(f"{name}: {missing} of {n} residues have no CA atom")
        if missing_ca != "drop":
            raise InputError(f"missing_ca must be 'drop' or 'error', got {missing_ca!r}")
        log.info("%s: dropped %d residues without CA", name, missing)
    if not keep.any():
        raise InputError(f"{name}: no residue has a CA atom")
    unknown = float((aatype[keep] >= 20).mean())
    if unknown > max_unknown_fraction:
        raise InputError(f"{name}: {unknown:.0%} of residues are unknown (limit {max_unknown_fraction:.0%})")
    chain_arr = np.zeros(n, dtype=np.int64)
    if chain is not None:
        _, chain_arr = np.unique(np.asarray(chain), return_inverse=True)
    res_idx = np.arange(n) if residue_index is None else np.asarray(residue_index)
    sample = StructureSample(
        name=name,
        residue_type=torch.as_tensor(np.minimum(aatype[keep], 20), dtype=torch.long),
        pos=torch.as_tensor(np.asarray(ca)[keep], dtype=torch.float32),
        chain=torch.as_tensor(chain_arr[keep].reshape(-1), dtype=torch.long),
        residue_index=torch.as_tensor(res_idx[keep], dtype=torch.long),
    )
    return sample, keep


def sample_from_protein(protein, name: str, missing_ca: str = "drop", max_unknown_fraction: float = 0.5):
    """:func:`sample_from_arrays` on a :class:`tertiary.protein.Protein` (atom37 arrays)."""
    return sample_from_arrays(
        name,
        protein.aatype,
        protein.atom_positions[:, 1],
        protein.atom_mask[:, 1] > 0,
        chain=getattr(protein, "chain_id", None),
        residue_index=getattr(protein, "residue_index", None),
        missing_ca=missing_ca,
        max_unknown_fraction=max_unknown_fraction,
    )


def load_structure_sample(
    path: str | Path, name: str | None = None, missing_ca: str = "drop", max_unknown_fraction: float = 0.5
) -> StructureSample:
    """Parse a structure file (PDB / mmCIF, gzip allowed) into a :class:`StructureSample`."""
    from tertiary.protein import Protein

    path = Path(path)
    protein = Protein.from_file(path)
    return sample_from_protein(protein, name or path.name, missing_ca, max_unknown_fraction)[0]


def check_sequence(sample: StructureSample, sequence: str, source: str = "sequence") -> int:
    """Check that a structure's residues are the given sequence, possibly with unobserved gaps.

    The residues of ``sample`` (file order) must appear in ``sequence`` in order; residues the
    structure does not resolve may be absent (a gap), nothing may be substituted. Unknown
    residues (``X``, 20) on either side match anything.

    Args:
        sample: the structure's residues.
        sequence: one-letter sequence (e.g. a FASTA record or DeepFRI's ``*_sequences.fasta``).
        source: names the sequence in messages.

    Returns:
        the number of sequence residues the structure leaves out (0: identical).

    Raises:
        InputError: naming the structure, the first residue (position and author number) that
            cannot be placed, and what the sequence holds there.
    """
    from tertiary.sequence import sequence_to_aatype

    seq = sequence_to_aatype(sequence, source)
    res = sample.residue_type.numpy()
    j = 0
    for i, r in enumerate(res):
        last = j  # sequence position right after the previous residue's match
        while j < len(seq) and not (r == 20 or seq[j] == 20 or seq[j] == r):
            j += 1
        if j == len(seq):
            from tertiary.constants import RESTYPES_WITH_X

            raise InputError(
                f"{sample.name}: structure does not match {source} ({len(sequence)} residues; structure "
                f"{len(res)}): structure residue {i + 1} ({RESTYPES_WITH_X[int(r)]}, author number "
                f"{int(sample.residue_index[i])}) has no match at or after sequence position {last + 1}"
                + (f" (which is {sequence[last].upper()})" if last < len(sequence) else " (past its end)")
            )
        j += 1
    return len(seq) - len(res)


class FunctionDataset(torch.utils.data.Dataset):
    """Structures of a DeepFRI task / split, parsed lazily, with their label vectors.

    ``dataset[i]`` is a :class:`StructureSample` whose ``labels`` is the ``[L]`` 0/1 vector.
    ``max_length`` keeps the first residues of longer chains (TorchDrug's ``TruncateProtein``).
    """

    def __init__(self, records: Sequence[FunctionRecord], num_labels: int, max_length: int | None = None) -> None:
        self.records = list(records)
        self.num_labels = num_labels
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> StructureSample:
        rec = self.records[i]
        sample = load_structure_sample(rec.structure, rec.chain_id)
        if self.max_length is not None and len(sample) > self.max_length:
            sample = truncate(sample, self.max_length)
        labels = torch.zeros(self.num_labels)
        labels[list(rec.labels)] = 1.0
        sample.labels = labels
        return sample


def truncate(sample: StructureSample, max_length: int) -> StructureSample:
    """The first ``max_length`` residues of a sample (per-residue labels cut too)."""
    labels = sample.labels
    if labels is not None and labels.shape[0] == len(sample):
        labels = labels[:max_length]
    return StructureSample(
        sample.name,
        sample.residue_type[:max_length],
        sample.pos[:max_length],
        sample.chain[:max_length],
        sample.residue_index[:max_length],
        labels,
    )


# ---------------------------------------------------------------------------------------------
# Residue-level task: 3-state secondary structure (DSSP through MDTraj)

SS_CLASSES = ("H", "E", "C")
"""Secondary-structure classes: helix (DSSP H, G, I), strand (E, B), coil (everything else)."""

_BACKBONE37 = (0, 1, 2, 4)  # N, CA, C, O in atom37 order


def dssp_states(
    atom_positions: np.ndarray, atom_mask: np.ndarray, aatype: np.ndarray, chain: Sequence | np.ndarray | None = None
) -> np.ndarray:
    """3-state DSSP assignment of each residue with MDTraj's DSSP implementation.

    Args:
        atom_positions: ``[N, 37, 3]`` (Angstrom), atom37 order.
        atom_mask: ``[N, 37]``.
        aatype: ``[N]`` residue types (AlphaFold order, 20 = unknown).
        chain: ``[N]`` chain ids.

    Returns:
        ``[N]`` int64 class index into :data:`SS_CLASSES`; ``-1`` for residues without all of
        N, CA, C, O (they are left out of the assignment).
    """
    try:
        import mdtraj
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "secondary-structure labels need MDTraj's DSSP: pip install 'tertiary[function]'"
        ) from exc

    from tertiary.constants import RESNAMES

    n = aatype.shape[0]
    labels = np.full(n, -1, dtype=np.int64)
    complete = np.asarray(atom_mask)[:, _BACKBONE37].astype(bool).all(-1)
    if not complete.any():
        return labels
    chain = np.zeros(n, dtype=np.int64) if chain is None else np.asarray(chain)
    top = mdtraj.Topology()
    elements = [mdtraj.element.get_by_symbol(s) for s in ("N", "C", "C", "O")]
    names = ("N", "CA", "C", "O")
    md_chain, last_chain = None, None
    for i in np.flatnonzero(complete):
        if md_chain is None or chain[i] != last_chain:
            md_chain, last_chain = top.add_chain(), chain[i]
        res = top.add_residue(RESNAMES[min(int(aatype[i]), 20)], md_chain, resSeq=int(i))
        for name, el in zip(names, elements):
            top.add_atom(name, el, res)
    xyz = np.asarray(atom_positions)[complete][:, _BACKBONE37].reshape(1, -1, 3) / 10.0  # nm
    codes = mdtraj.compute_dssp(mdtraj.Trajectory(xyz.astype(np.float32), top), simplified=True)[0]
    index = {c: k for k, c in enumerate(SS_CLASSES)}
    labels[complete] = [index.get(c, -1) for c in codes]
    return labels


def secondary_structure_sample(protein, name: str) -> StructureSample:
    """A :class:`StructureSample` whose ``labels`` are :func:`dssp_states` (``[N]``, -1 = none)."""
    sample, keep = sample_from_protein(protein, name, missing_ca="drop", max_unknown_fraction=1.0)
    states = dssp_states(protein.atom_positions, protein.atom_mask, protein.aatype, getattr(protein, "chain_id", None))
    sample.labels = torch.as_tensor(states[keep], dtype=torch.long)
    return sample


def _split_table(path: Path) -> dict[str, str]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "chain_id" not in rows[0] or "split" not in rows[0]:
        raise ParseError(f"{path}: expected a TSV with columns chain_id and split")
    return {r["chain_id"]: r["split"] for r in rows}


def build_secondary_structure_cache(
    archive: str | Path,
    split_table: str | Path,
    out: str | Path,
    progress=None,
    limit: int | None = None,
) -> dict:
    """One pass over a tar archive of single-chain PDB files -> one safetensors file of samples.

    Reads the archive in place (xz is not seekable, so members are visited once, in order),
    parses each member with :mod:`tertiary.protein`, keeps residues with a CA and labels them
    with :func:`dssp_states`. Members that fail are reported and skipped.

    Args:
        archive: ``.tar`` / ``.tar.xz`` / ``.tar.gz`` of ``<chain_id>.pdb`` files
            (``shared/data/ligysis_rep_chains/chains.tar.xz``).
        split_table: TSV with ``chain_id`` and ``split`` columns (``split.tsv``).
        out: the cache file to write (parent folders are created; written atomically).
        progress: optional ``callable(done, total)``.
        limit: stop after this many members (smoke runs).

    Returns:
        ``{"chains": n, "residues": r, "failed": {name: reason}}``.
    """
    import json
    import os
    import tarfile
    import tempfile

    from safetensors.torch import save_file

    from tertiary.errors import TertiaryError
    from tertiary.protein import Protein

    archive, out = Path(archive), Path(out)
    splits = _split_table(Path(split_table))
    arrays: dict[str, list] = {k: [] for k in ("residue_type", "pos", "chain", "residue_index", "labels")}
    names, split_of, lengths, failed = [], [], [], {}
    try:
        tf = tarfile.open(archive, "r:*")
    except (OSError, tarfile.TarError) as exc:
        raise DataError(f"{archive}: cannot open archive ({exc})") from None
    with tf:
        for member in tf:
            if not member.isfile():
                continue
            if limit is not None and len(names) + len(failed) >= limit:
                break
            name = Path(member.name).name
            chain_id = name.split(".")[0]
            try:
                data = tf.extractfile(member).read()
                sample = secondary_structure_sample(Protein.from_string(data, name=name), chain_id)
            except TertiaryError as exc:
                failed[chain_id] = str(exc)
                log.warning("%s: skipped (%s)", chain_id, exc)
                continue
            names.append(chain_id)
            split_of.append(splits.get(chain_id, "none"))
            lengths.append(len(sample))
            for key in arrays:
                arrays[key].append(getattr(sample, key))
            if progress is not None:
                progress(len(names) + len(failed), len(splits))
    if not names:
        raise DataError(f"{archive}: no structure could be read")
    tensors = {k: torch.cat(v).contiguous() for k, v in arrays.items()}
    tensors["offsets"] = torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.long)
    meta = {"names": json.dumps(names), "splits": json.dumps(split_of), "classes": "".join(SS_CLASSES),
            "source": str(archive)}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_out = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    os.close(fd)
    save_file(tensors, tmp_out, metadata=meta)
    os.chmod(tmp_out, 0o644)
    os.replace(tmp_out, out)
    return {"chains": len(names), "residues": int(tensors["offsets"][-1]), "failed": failed}


class SecondaryStructureDataset(torch.utils.data.Dataset):
    """Samples of one split of a cache written by :func:`build_secondary_structure_cache`.

    ``dataset[i]`` is a :class:`StructureSample` whose ``labels`` are ``[N]`` class indices
    (:data:`SS_CLASSES`, -1 = unassigned). The whole cache is held in memory (44 bytes per
    residue: 18 MB for the 2,107 LIGYSIS chains).
    """

    def __init__(self, cache: str | Path, split: str, max_length: int | None = None) -> None:
        import json

        from safetensors import safe_open

        cache = Path(cache)
        if not cache.is_file():
            raise DataError(f"{cache}: secondary-structure cache not found (build it with build_secondary_structure_cache)")
        with safe_open(str(cache), "pt") as fh:
            meta = fh.metadata() or {}
            if "names" not in meta or "splits" not in meta:
                raise DataError(f"{cache}: not a secondary-structure cache (metadata names/splits missing)")
            self._t = {k: fh.get_tensor(k) for k in fh.keys()}
        names, splits = json.loads(meta["names"]), json.loads(meta["splits"])
        self.items = [(i, n) for i, (n, s) in enumerate(zip(names, splits)) if s == split]
        if not self.items:
            raise DataError(f"{cache}: no chain in split {split!r} (splits present: {sorted(set(splits))})")
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> StructureSample:
        k, name = self.items[i]
        lo, hi = int(self._t["offsets"][k]), int(self._t["offsets"][k + 1])
        if self.max_length is not None:
            hi = min(hi, lo + self.max_length)
        t = self._t
        return StructureSample(
            name, t["residue_type"][lo:hi], t["pos"][lo:hi], t["chain"][lo:hi], t["residue_index"][lo:hi], t["labels"][lo:hi]
        )
