"""Bad input: mutated real files raise only TertiaryError (never another exception).

Property-based (hypothesis): real files from tests/data/protein and tests/data/sequence are
mutated by byte flips, truncation, line deletions / duplications / shuffles and inserted junk;
every reader must then either return a valid object (possibly with a ParseWarning) or raise a
:class:`~tertiary.errors.TertiaryError`. Examples are few (the file runs in well under 20 s on
2 CPU cores); the fixed cases below cover each documented problem once with its message.
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tertiary.errors import ParseError, TertiaryError
from tertiary.protein import Protein
from tertiary.sequence import parse_a3m, parse_fasta, parse_stockholm

DATA = Path(__file__).resolve().parent / "data"
SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _lines_of(path: Path, keep: int) -> bytes:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return b"\n".join(raw.splitlines()[:keep]) + b"\n"


PDB = _lines_of(DATA / "protein" / "1ACB_l_b.pdb.gz", 120)  # legacy file, junk in cols 73-80
PDB_ALT = _lines_of(DATA / "protein" / "1BKD_l_u.pdb.gz", 160)  # altlocs
CIF = _lines_of(DATA / "protein" / "1aki.cif.gz", 400)  # header + first ~130 atom rows
A3M = _lines_of(DATA / "sequence" / "2q2k_A.a3m", 40).decode()
FASTA = _lines_of(DATA / "sequence" / "2q2k_A_search_db.fasta", 40).decode()
STO = _lines_of(DATA / "sequence" / "2q2k_A_mgnify_hits.sto", 60).decode()


# -------------------------------------------------------------------------------------------
# Mutations
# -------------------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """One to three mutations of ``original`` (bytes level or line level)."""
    data = original
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(
            ["flip", "truncate", "delete_lines", "duplicate_line", "shuffle", "junk_line",
             "binary", "digits"]))
        lines = data.split(b"\n")
        if kind == "flip" and data:
            pos = draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8))
            buf = bytearray(data)
            for p in pos:
                buf[p] = draw(st.integers(0, 255))
            data = bytes(buf)
        elif kind == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif kind == "delete_lines" and len(lines) > 1:
            a = draw(st.integers(0, len(lines) - 1))
            b = draw(st.integers(a, min(len(lines), a + 20)))
            data = b"\n".join(lines[:a] + lines[b:])
        elif kind == "duplicate_line" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            data = b"\n".join(lines[: i + 1] + [lines[i]] + lines[i + 1:])
        elif kind == "shuffle" and len(lines) > 2:
            a = draw(st.integers(0, len(lines) - 2))
            b = draw(st.integers(a + 1, min(len(lines), a + 30)))
            block = draw(st.permutations(lines[a:b]))
            data = b"\n".join(lines[:a] + list(block) + lines[b:])
        elif kind == "junk_line":
            i = draw(st.integers(0, len(lines)))
            junk = draw(st.binary(min_size=0, max_size=90))
            data = b"\n".join(lines[:i] + [junk] + lines[i:])
        elif kind == "binary":
            i = draw(st.integers(0, len(data)))
            data = data[:i] + draw(st.binary(min_size=1, max_size=64)) + data[i:]
        elif kind == "digits" and data:
            # Replace a run with digits / signs / points: numbers that do not fit their field.
            i = draw(st.integers(0, len(data) - 1))
            text = draw(st.text(alphabet="0123456789-.+eE naif", min_size=1, max_size=12))
            data = data[:i] + text.encode() + data[i + len(text):]
    return data


def _check_structure(data: bytes, fmt: str | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            p = Protein.from_string(data, name="mutant", fmt=fmt)
        except TertiaryError as exc:
            assert "mutant" in str(exc)
            return
        # A structure that was accepted is consistent and can be written (or refuses cleanly).
        assert np.isfinite(p.atom_positions).all()
        assert p.atom_positions.shape == (len(p), 37, 3)
        assert ((p.atom_mask == 0) | (p.atom_mask == 1)).all()
        for writer in (p.to_pdb, p.to_mmcif):
            try:
                writer()
            except TertiaryError:
                pass


@SETTINGS
@given(mutated(PDB))
def test_mutated_legacy_pdb(data: bytes) -> None:
    _check_structure(data, None)


@SETTINGS
@given(mutated(PDB_ALT))
def test_mutated_pdb_with_altlocs(data: bytes) -> None:
    _check_structure(data, "pdb")


@SETTINGS
@given(mutated(CIF))
def test_mutated_mmcif(data: bytes) -> None:
    _check_structure(data, None)


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_mutated_gzip(data: st.DataObject) -> None:
    packed = gzip.compress(PDB, mtime=0)
    _check_structure(data.draw(mutated(packed)), None)


def _check_text(parse, text: bytes) -> None:  # noqa: ANN001
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return  # the readers take str; files are decoded (with a ParseError) before
    try:
        parse(decoded, "mutant")
    except TertiaryError as exc:
        assert "mutant" in str(exc)


@SETTINGS
@given(mutated(FASTA.encode()))
def test_mutated_fasta(data: bytes) -> None:
    _check_text(parse_fasta, data)


@SETTINGS
@given(mutated(A3M.encode()))
def test_mutated_a3m(data: bytes) -> None:
    _check_text(parse_a3m, data)


@settings(max_examples=15, deadline=None)
@given(mutated(STO.encode()))
def test_mutated_stockholm(data: bytes) -> None:
    _check_text(parse_stockholm, data)


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_fasta_any_sequence_text(seq: str) -> None:
    """Arbitrary characters in a sequence: parsed when they are letters, otherwise a
    ParseError naming the record and position."""
    text = f">rec one\n{seq}\n"
    try:
        (rec,) = parse_fasta(text, "q.fasta")
    except ParseError as exc:
        assert "q.fasta" in str(exc) and "rec" in str(exc)
        return
    except ValueError:  # no records (the sequence text itself contained a header/comment)
        raise
    cleaned = "".join(seq.split()).upper().removesuffix("*")
    assert rec.sequence == cleaned and cleaned.isascii() and cleaned.isalpha()


@settings(max_examples=30, deadline=None)
@given(
    st.integers(2, 8),  # rows
    st.integers(1, 30),  # aligned length
    st.integers(1, 7),  # which non-query row is broken
    st.integers(-5, 5).filter(lambda d: d != 0),  # aligned columns added / removed
    st.randoms(use_true_random=False),
)
def test_a3m_unequal_rows_always_named(rows: int, length: int, broken: int, delta: int, rnd) -> None:  # noqa: ANN001
    """Random A3M alignments (upper case, gaps, lower-case insertions): well-formed ones parse
    with the right shape; one row with a different aligned length raises a ParseError that
    names that row."""
    broken = 1 + broken % (rows - 1)
    lines = []
    for r in range(rows):
        n = length if r != broken else max(0, length + delta)
        cols = [rnd.choice("ACDEFGHIKLMNPQRSTVWY" if r == 0 else "ACDEFGHIKLMNPQRSTVWY-")
                for _ in range(n)]
        if r:
            cols = [c + rnd.choice(["", "", "ac"]) for c in cols]
        lines += [f">seq{r}", "".join(cols)]
    text = "\n".join(lines) + "\n"
    if length + delta < 0 or max(0, length + delta) == length:
        return
    with pytest.raises(ParseError, match=rf"m\.a3m: row {broken + 1} \(seq{broken}, line {2 * broken + 1}\) has"):
        parse_a3m(text, "m.a3m")
    good = "\n".join(lines[: 2 * broken] + lines[2 * broken + 2:]) + "\n"
    msa = parse_a3m(good, "m.a3m")
    assert msa.depth == rows - 1 and msa.length == length


# -------------------------------------------------------------------------------------------
# Each documented problem once, with its message
# -------------------------------------------------------------------------------------------


def test_fasta_invalid_character_names_record_and_position() -> None:
    with pytest.raises(ParseError, match=r"q\.fasta: record 2 \(b, line 3\): invalid residue .*position 4"):
        parse_fasta(">a\nACDE\n>b\nACD1EF\n", "q.fasta")


def test_a3m_rows_of_unequal_length() -> None:
    rows = A3M.splitlines()
    seq_line = next(i for i in range(1, len(rows)) if not rows[i].startswith(">") and i > 2)
    rows[seq_line] = rows[seq_line][:-3]
    with pytest.raises(ParseError, match=r"m\.a3m: row \d+ .*has \d+ aligned columns but the query has \d+"):
        parse_a3m("\n".join(rows), "m.a3m")


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda t: t[: len(t) // 2] + b"\x00\x00\x00", r"mutant: line \d+: binary data \(NUL byte"),
        (lambda t: t.replace(b"  1.00 ", b"  1.x0 ", 1), r"mutant: line \d+: invalid occupancy"),
        (lambda t: b"", r"mutant: empty file"),
        (lambda t: t[:1000].rsplit(b"\n", 1)[0] + b"\nATOM    999  CA  GLY I", r"mutant: line \d+: .*too short"),
    ],
)
def test_structure_problems_have_clear_messages(mutate, pattern: str) -> None:  # noqa: ANN001
    with pytest.raises(ParseError, match=pattern):
        Protein.from_string(mutate(PDB), name="mutant")
