"""Sequences and multiple sequence alignments: FASTA, A3M, Stockholm and the :class:`MSA` dataclass.

Conventions follow AlphaFold2's data pipeline:

- MSA rows are integer-encoded in AlphaFold2's 22-letter MSA alphabet: the 20 amino acids in
  the order ``ARNDCQEGHILKMFPSTWYV`` (0-19), ``X`` = 20 (unknown) and ``-`` = 21 (gap). Letters
  are mapped through HHblits' table first (``B`` -> D, ``Z`` -> E, ``U`` -> C, ``J``/``O`` -> X),
  exactly as AlphaFold2 does (``HHBLITS_AA_TO_ID`` then the HHblits -> AlphaFold2 remapping).
- A3M: lowercase letters are insertions relative to the query. They are removed from the
  aligned row and counted in the deletion matrix, the count being attached to the *next*
  aligned column (insertions after the last aligned column are dropped), as in AlphaFold2's
  ``parse_a3m``. ``.`` (the A2M insert-gap symbol) is removed and not counted.
- Stockholm: the first sequence is the query; columns where it has a gap are removed and the
  residues of other rows in those columns are counted as deletions (AlphaFold2's
  ``parse_stockholm``). Both ``-`` and ``.`` are gaps; residue case is ignored.
- Deduplication keeps the first occurrence of each aligned row (insertions not considered), as
  AlphaFold2's ``make_msa_features`` does when it merges the MSAs of several databases.

All parsers take text and a ``source`` (file name used in error messages); ``read_*`` helpers
take paths (gzip accepted). Invalid input raises :class:`~tertiary.errors.ParseError` naming the
file, the record and the problem.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tertiary import constants as rc
from tertiary.errors import InputError, ParseError

logger = logging.getLogger(__name__)

__all__ = [
    "MSA",
    "FastaRecord",
    "GAP_ID",
    "UNKNOWN_ID",
    "parse_fasta",
    "read_fasta",
    "write_fasta",
    "parse_a3m",
    "parse_stockholm",
    "read_msa",
    "write_a3m",
    "format_a3m",
    "alignment_to_a3m",
    "merge_msas",
    "read_text",
]

#: Index of ``X`` in the MSA alphabet.
UNKNOWN_ID = 20
#: Index of the gap ``-`` in the MSA alphabet.
GAP_ID = 21
#: The 22 letters of the MSA alphabet, index = id.
MSA_LETTERS = "".join(rc.RESTYPES_WITH_X_AND_GAP)


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    """Byte -> MSA id (AF2 order) and byte -> aatype id (``map_unknown_to_x``); -1 = invalid."""
    msa_lut = np.full(256, -1, dtype=np.int16)
    for letter, hh_id in rc.HHBLITS_AA_TO_ID.items():
        msa_lut[ord(letter)] = rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE[hh_id]
    aatype_lut = np.full(256, -1, dtype=np.int16)
    for code in range(ord("A"), ord("Z") + 1):
        aatype_lut[code] = rc.RESTYPE_ORDER.get(chr(code), UNKNOWN_ID)
    return msa_lut, aatype_lut


_MSA_LUT, _AATYPE_LUT = _build_tables()


def read_text(path: str | Path) -> str:
    """Read a text file (gzip if it starts with the gzip magic); binary junk -> ParseError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ParseError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ParseError(f"{path}: corrupt gzip file ({exc})") from exc
    return _decode(raw, str(path))


def _decode(raw: bytes, source: str) -> str:
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ParseError(f"{source}: binary data (NUL byte at offset {nul}), not a text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{source}: not a UTF-8 text file (undecodable byte at offset {exc.start})") from exc


def _first_bad(seq: str, lut: np.ndarray) -> int | None:
    """Index of the first character of ``seq`` that ``lut`` rejects, or None."""
    try:
        codes = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError as exc:
        return exc.start
    bad = np.flatnonzero(lut[codes] < 0)
    return int(bad[0]) if bad.size else None


def _describe_char(c: str) -> str:
    return repr(c) if c.isprintable() else f"U+{ord(c):04X}"


# --------------------------------------------------------------------------------------------
# FASTA


@dataclass(frozen=True)
class FastaRecord:
    """One FASTA record.

    Attributes:
        name: first word of the header (may be empty).
        description: the whole header line without ``>``.
        sequence: upper-case one-letter residues, a trailing ``*`` removed.
    """

    name: str
    description: str
    sequence: str

    @property
    def aatype(self) -> np.ndarray:
        """``[L]`` int64 residue ids in AlphaFold2 order, unknown letters -> 20 (X)."""
        return sequence_to_aatype(self.sequence)


def sequence_to_aatype(sequence: str, source: str = "sequence") -> np.ndarray:
    """``[L]`` int64 AlphaFold2 residue ids (``ARNDCQEGHILKMFPSTWYV``, anything else -> 20 = X)."""
    seq = sequence.upper()
    bad = _first_bad(seq, _AATYPE_LUT)
    if bad is not None:
        raise ParseError(f"{source}: invalid residue {_describe_char(seq[bad])} at position {bad + 1}")
    return _AATYPE_LUT[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)].astype(np.int64)


def parse_fasta(
    text: str, source: str = "<string>", on_error: Callable[[ParseError], None] | None = None
) -> list[FastaRecord]:
    """Parse protein FASTA text (several records allowed).

    Lower-case letters are upper-cased, white space inside sequences is ignored and one trailing
    ``*`` (stop) is dropped. Any other character than the 26 letters (``X``, ``B``, ``Z``, ``U``,
    ``O``, ``J`` included; they become X in ``aatype``) is an error naming the record, the letter
    and its 1-based position. ``;`` comment lines are skipped.

    Args:
        text: FASTA text.
        source: file name for error messages.
        on_error: if given, a bad record (empty sequence, invalid character) is passed to it as
            a ParseError and skipped instead of raised, so batch commands can go on.

    Raises:
        ParseError: empty input, text before the first header, an empty sequence, or an
            invalid character.
    """
    records: list[FastaRecord] = []
    counter = [0]  # records seen, good or bad
    header: str | None = None
    header_line = 0
    chunks: list[str] = []

    def flush() -> None:
        if header is None:
            return
        seq = "".join(chunks).upper()
        if seq.endswith("*"):
            seq = seq[:-1]
        name = header.split()[0] if header.split() else ""
        counter[0] += 1
        label = f"record {counter[0]} ({name or 'unnamed'}, line {header_line})"
        bad = _first_bad(seq, _AATYPE_LUT)
        if not seq:
            error = ParseError(f"{source}: {label} has an empty sequence")
        elif bad is not None:
            error = ParseError(f"{source}: {label}: invalid residue {_describe_char(seq[bad])} at position {bad + 1}")
        else:
            records.append(FastaRecord(name=name, description=header, sequence=seq))
            return
        if on_error is None:
            raise error
        on_error(error)

    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            flush()
            header, header_line, chunks = line[1:].strip(), lineno, []
        elif header is None:
            raise ParseError(f"{source}: line {lineno}: sequence data before the first '>' header (not FASTA)")
        else:
            chunks.append("".join(line.split()))
    flush()
    if not counter[0]:
        raise ParseError(f"{source}: no FASTA records (empty file?)")
    return records


def read_fasta(path: str | Path, on_error: Callable[[ParseError], None] | None = None) -> list[FastaRecord]:
    """Read a FASTA file (gzip accepted); see :func:`parse_fasta`."""
    return parse_fasta(read_text(path), source=str(path), on_error=on_error)


def write_fasta(records: Iterable[FastaRecord], path: str | Path, width: int = 80) -> None:
    """Write records, sequences wrapped at ``width`` characters."""
    lines = []
    for rec in records:
        lines.append(f">{rec.description or rec.name}")
        lines.extend(rec.sequence[i : i + width] for i in range(0, len(rec.sequence), width))
    Path(path).write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------
# MSA


@dataclass
class MSA:
    """An alignment of ``N_seq`` rows over the ``L`` query columns; row 0 is the query.

    Attributes:
        sequences: ``[N_seq, L]`` int8, AlphaFold2 MSA alphabet (0-19 amino acids, 20 X, 21 gap).
        deletion_matrix: ``[N_seq, L]`` int32, number of query-insertions (residues of the row
            with no query column) immediately before each column.
        names: ``N_seq`` row names (first word of the header).
    """

    sequences: np.ndarray
    deletion_matrix: np.ndarray
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sequences = np.asarray(self.sequences, dtype=np.int8)
        self.deletion_matrix = np.asarray(self.deletion_matrix, dtype=np.int32)
        if self.sequences.ndim != 2 or self.sequences.shape != self.deletion_matrix.shape:
            raise InputError(
                f"MSA sequences {self.sequences.shape} and deletion_matrix {self.deletion_matrix.shape} "
                "must both be [N_seq, L]"
            )
        if not self.names:
            self.names = [f"seq{i}" for i in range(self.depth)]
        if len(self.names) != self.depth:
            raise InputError(f"MSA has {self.depth} rows but {len(self.names)} names")
        if self.sequences.size and (self.sequences.min() < 0 or self.sequences.max() > GAP_ID):
            raise InputError("MSA sequences must be ids in [0, 21]")

    @property
    def depth(self) -> int:
        """Number of rows ``N_seq``."""
        return int(self.sequences.shape[0])

    @property
    def length(self) -> int:
        """Number of columns ``L`` (query length)."""
        return int(self.sequences.shape[1])

    def __len__(self) -> int:
        return self.depth

    @property
    def query(self) -> str:
        """Row 0 as letters."""
        return self.row_string(0)

    def row_string(self, i: int) -> str:
        """Row ``i`` as aligned letters of the MSA alphabet (no insertions)."""
        return "".join(MSA_LETTERS[c] for c in self.sequences[i])

    def coverage(self) -> np.ndarray:
        """``[L]`` int64 number of rows with a residue (not a gap) in each column."""
        return (self.sequences != GAP_ID).sum(axis=0).astype(np.int64)

    @classmethod
    def single_sequence(cls, sequence: str, name: str = "query") -> MSA:
        """A one-row MSA (AlphaFold2's single-sequence mode)."""
        ids = _encode_row(sequence.upper(), f"sequence {name}")[None, :]
        return cls(ids, np.zeros_like(ids, dtype=np.int32), [name])

    def deduplicate(self) -> MSA:
        """Keep the first occurrence of every distinct aligned row (insertions ignored)."""
        if self.depth == 0:
            return self
        _, first = np.unique(self.sequences, axis=0, return_index=True)
        keep = np.sort(first)
        return MSA(self.sequences[keep], self.deletion_matrix[keep], [self.names[i] for i in keep])

    def check_query(self, sequence: str, source: str = "MSA") -> None:
        """Raise ParseError unless row 0 equals ``sequence`` (gap-free, same encoding)."""
        expected = _encode_row(sequence.upper(), f"{source}: sequence")
        got = self.sequences[0] if self.depth else np.zeros(0, dtype=np.int8)
        if got.shape != expected.shape:
            raise ParseError(
                f"{source}: MSA query has {got.shape[0]} columns but the sequence has "
                f"{expected.shape[0]} residues"
            )
        diff = np.flatnonzero(got != expected)
        if diff.size:
            i = int(diff[0])
            raise ParseError(
                f"{source}: MSA query differs from the sequence at position {i + 1} "
                f"({MSA_LETTERS[got[i]]!r} vs {MSA_LETTERS[expected[i]]!r}; {diff.size} mismatches)"
            )


def merge_msas(msas: Sequence[MSA]) -> MSA:
    """Concatenate MSAs of the same query (e.g. from several databases) and deduplicate."""
    if not msas:
        raise InputError("merge_msas needs at least one MSA")
    lengths = {m.length for m in msas}
    if len(lengths) != 1:
        raise InputError(f"cannot merge MSAs of different lengths {sorted(lengths)}")
    merged = MSA(
        np.concatenate([m.sequences for m in msas]),
        np.concatenate([m.deletion_matrix for m in msas]),
        [n for m in msas for n in m.names],
    )
    return merged.deduplicate()


def _encode_row(row: str, what: str) -> np.ndarray:
    """Encode one aligned row (upper case, ``-``) into ``[L]`` MSA ids; ``what`` names it in errors."""
    try:
        codes = _MSA_LUT[np.frombuffer(row.encode("ascii"), dtype=np.uint8)]
    except UnicodeEncodeError as exc:
        raise ParseError(f"{what}: invalid character {_describe_char(row[exc.start])} at column {exc.start + 1}") from exc
    bad = np.flatnonzero(codes < 0)
    if bad.size:
        i = int(bad[0])
        raise ParseError(f"{what}: invalid character {_describe_char(row[i])} at column {i + 1}")
    return codes.astype(np.int8)


def _a3m_records(text: str, source: str) -> tuple[list[str], list[str], list[int]]:
    """Split A3M / aligned FASTA text into (names, raw rows, header line numbers)."""
    names: list[str] = []
    rows: list[str] = []
    lines_at: list[int] = []
    chunks: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(">"):
            if names:
                rows.append("".join(chunks))
            parts = line[1:].split()
            names.append(parts[0] if parts else "")
            lines_at.append(lineno)
            chunks = []
        elif not names:
            raise ParseError(f"{source}: line {lineno}: alignment data before the first '>' header (not A3M)")
        else:
            chunks.append("".join(line.split()))
    if names:
        rows.append("".join(chunks))
    if not names:
        raise ParseError(f"{source}: no alignment records (empty file?)")
    return names, rows, lines_at


def parse_a3m(text: str, source: str = "<string>") -> MSA:
    """Parse A3M (or aligned FASTA / A2M) text into an :class:`MSA`; row 0 is the query.

    Lower-case letters are insertions: removed and counted in ``deletion_matrix`` at the next
    aligned column. ``.`` is removed without counting.

    Raises:
        ParseError: empty input, an empty or gapped query, an invalid character (naming the row
            and column), or a row whose aligned length differs from the query's (naming the row).
    """
    names, raw_rows, lines_at = _a3m_records(text, source)
    aligned: list[np.ndarray] = []
    deletions: list[np.ndarray] = []
    length = None
    for i, (name, row) in enumerate(zip(names, raw_rows)):
        label = f"row {i + 1} ({name or 'unnamed'}, line {lines_at[i]})"
        try:
            codes = np.frombuffer(row.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError as exc:
            raise ParseError(f"{source}: {label}: invalid character {_describe_char(row[exc.start])}") from exc
        lower = (codes >= 97) & (codes <= 122)
        keep = ~(lower | (codes == 46))
        cols = np.flatnonzero(keep)
        n_lower_before = np.cumsum(lower)[cols] if cols.size else np.zeros(0, dtype=np.int64)
        dels = np.diff(n_lower_before, prepend=0)
        ids = _encode_row(codes[keep].tobytes().decode("ascii"), f"{source}: {label}")
        if length is None:
            if not ids.size:
                raise ParseError(f"{source}: {label}: the query row is empty")
            length = ids.size
        elif ids.size != length:
            raise ParseError(f"{source}: {label} has {ids.size} aligned columns but the query has {length}")
        aligned.append(ids)
        deletions.append(dels.astype(np.int32))
    return MSA(np.stack(aligned), np.stack(deletions), names)


def parse_stockholm(text: str, source: str = "<string>") -> MSA:
    """Parse a Stockholm alignment; the first sequence is the query.

    Columns where the query has a gap (``-`` or ``.``) are removed; residues of other rows in
    them are counted as deletions before the next query column.

    Raises:
        ParseError: no sequences, malformed lines, rows of different lengths, invalid characters.
    """
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise ParseError(f"{source}: empty file")
    first = next(line for line in lines if line.strip())
    if not first.startswith("# STOCKHOLM"):
        raise ParseError(f"{source}: line 1: missing '# STOCKHOLM 1.0' header (not a Stockholm file)")
    seqs: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s == "//":
            break
        parts = s.split()
        if len(parts) != 2:
            raise ParseError(f"{source}: line {lineno}: expected 'name sequence', got {len(parts)} fields")
        name, chunk = parts
        seqs.setdefault(name, []).append(chunk)
        first_line.setdefault(name, lineno)
    if not seqs:
        raise ParseError(f"{source}: no sequences in Stockholm alignment")
    names = list(seqs)
    rows = ["".join(seqs[n]).upper().replace(".", "-") for n in names]
    width = len(rows[0])
    for name, row in zip(names, rows):
        if len(row) != width:
            raise ParseError(
                f"{source}: sequence {name} (line {first_line[name]}) has {len(row)} columns, "
                f"the query has {width}"
            )
    encoded = [
        _encode_row(row, f"{source}: sequence {name} (line {first_line[name]})") for name, row in zip(names, rows)
    ]
    ids = np.stack(encoded)
    query_cols = ids[0] != GAP_ID
    if not query_cols.any():
        raise ParseError(f"{source}: the query ({names[0]}) has no residues")
    insert = (ids != GAP_ID) & ~query_cols[None, :]
    n_ins_before = np.cumsum(insert, axis=1)[:, query_cols]
    deletion = np.diff(n_ins_before, axis=1, prepend=0)
    return MSA(ids[:, query_cols], deletion.astype(np.int32), names)


def read_msa(path: str | Path, fmt: str | None = None) -> MSA:
    """Read an MSA file: ``a3m`` (also aligned FASTA) or ``stockholm``.

    The format is ``fmt`` if given, else taken from the extension (``.sto``, ``.stockholm`` ->
    Stockholm, anything else A3M), else from the content (``# STOCKHOLM`` header).
    """
    path = Path(path)
    text = read_text(path)
    if fmt is None:
        suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
        if suffixes and suffixes[-1] in {".sto", ".stockholm", ".stk"}:
            fmt = "stockholm"
        elif text.lstrip().startswith("# STOCKHOLM"):
            fmt = "stockholm"
        else:
            fmt = "a3m"
    if fmt == "stockholm":
        return parse_stockholm(text, source=str(path))
    if fmt == "a3m":
        return parse_a3m(text, source=str(path))
    raise InputError(f"unknown MSA format {fmt!r} (use 'a3m' or 'stockholm')")


def alignment_to_a3m(rows: Sequence[str]) -> list[str]:
    """Convert equal-width aligned rows (row 0 = query; ``-`` / ``.`` gaps, any case) to A3M rows.

    Columns where the query has a residue become aligned columns (upper case, ``-`` for gaps);
    residues of other rows in query-gap columns become lower-case insertions, gaps there are
    dropped. The first returned row is the query without gaps.

    Raises:
        InputError: rows of different widths.
    """
    if not rows:
        return []
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise InputError("aligned rows must all have the same width")
    query_cols = [c not in "-." for c in rows[0]]
    out = []
    for row in rows:
        chars = []
        for keep, c in zip(query_cols, row):
            if keep:
                chars.append("-" if c in "-." else c.upper())
            elif c not in "-.":
                chars.append(c.lower())
        out.append("".join(chars))
    return out


def format_a3m(names: Sequence[str], rows: Sequence[str]) -> str:
    """A3M text from names and raw A3M rows (upper case / ``-`` aligned, lower case inserted)."""
    if len(names) != len(rows):
        raise InputError(f"{len(names)} names for {len(rows)} rows")
    return "".join(f">{n}\n{r}\n" for n, r in zip(names, rows))


def write_a3m(path: str | Path, names: Sequence[str], rows: Sequence[str]) -> None:
    """Write raw A3M rows (see :func:`format_a3m`) to ``path``; check they parse back first."""
    text = format_a3m(names, rows)
    parse_a3m(text, source=str(path))
    Path(path).write_text(text)
