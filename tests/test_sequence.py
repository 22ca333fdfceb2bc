from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tertiary.errors import ParseError, TertiaryError
from tertiary.sequence import (
    GAP_ID,
    MSA,
    MSA_LETTERS,
    alignment_to_a3m,
    FastaRecord,
    format_a3m,
    merge_msas,
    parse_a3m,
    parse_fasta,
    parse_stockholm,
    read_fasta,
    read_msa,
    write_a3m,
    write_fasta,
)

FIXTURES = Path(__file__).parent / "data" / "sequence"
QUERY_2Q2K = "MGSSHHHHHHSSGLVPGSHMDKKETKHLLKIKKEDYPQIFDFLENVPRGTKTAHIREALRRYIEEIGENP"


def ids(text: str) -> list[int]:
    return [MSA_LETTERS.index(c) for c in text]


# ----------------------------------------------------------------------------------- FASTA


def test_fasta_multi_record_names_and_cleanup():
    text = ">a first protein\nacde\nFGH*\n\n; comment\n>b\nMKV\nXBZ\n"
    recs = parse_fasta(text)
    assert [r.name for r in recs] == ["a", "b"]
    assert recs[0].description == "a first protein"
    assert recs[0].sequence == "ACDEFGH"
    assert recs[1].sequence == "MKVXBZ"
    # unknown / ambiguous letters become X (20) in aatype, as AlphaFold2's map_unknown_to_x
    assert recs[1].aatype.tolist() == [12, 11, 19, 20, 20, 20]


def test_fasta_invalid_letter_names_file_record_letter_position(tmp_path):
    path = tmp_path / "bad.fasta"
    path.write_text(">ok\nACDE\n>broken desc\nAC\nD1E\n")
    with pytest.raises(ParseError) as err:
        read_fasta(path)
    msg = str(err.value)
    assert str(path) in msg and "broken" in msg and "'1'" in msg and "position 4" in msg and "record 2" in msg


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "no FASTA records"),
        ("\n\n  \n", "no FASTA records"),
        ("ACDE\n>x\nAC\n", "before the first '>'"),
        (">x\n>y\nAC\n", "empty sequence"),
        (">x\nAC-DE\n", "'-'"),
        (">x\nACDÉ\n", "position 4"),
    ],
)
def test_fasta_bad_input(text, fragment):
    with pytest.raises(ParseError, match=fragment.replace("(", r"\(")):
        parse_fasta(text, source="in.fa")


def test_fasta_gzip_binary_and_round_trip(tmp_path):
    recs = [FastaRecord("x", "x some protein", "ACDEFGHIKLMNPQRSTVWY" * 5), FastaRecord("y", "y", "MKV")]
    path = tmp_path / "out.fasta"
    write_fasta(recs, path, width=30)
    assert max(len(line) for line in path.read_text().splitlines()) == 30
    assert read_fasta(path) == recs
    gz = tmp_path / "out.fasta.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_fasta(gz) == recs
    junk = tmp_path / "junk.fasta"
    junk.write_bytes(b">x\nAC\x00\xff\xfeDE")
    with pytest.raises(ParseError, match="binary"):
        read_fasta(junk)
    latin = tmp_path / "latin.fasta"
    latin.write_bytes(b">x\nAC\xe9DE\n")
    with pytest.raises(ParseError, match="UTF-8"):
        read_fasta(latin)
    bad_gz = tmp_path / "bad.fasta.gz"
    bad_gz.write_bytes(gzip.compress(b">x\nACDE\n")[:12])
    with pytest.raises(ParseError, match="gzip"):
        read_fasta(bad_gz)
    with pytest.raises(ParseError, match="cannot read"):
        read_fasta(tmp_path / "missing.fasta")


# ------------------------------------------------------------------------------------- A3M


def test_a3m_deletions_attach_to_next_aligned_column():
    text = "#A3M#\n>query\nACDE\n>s1 desc\nAbcC-eE\n>s2\nA.CDEfg\n>s3\nx-C\nDE\n"
    msa = parse_a3m(text)
    assert msa.names == ["query", "s1", "s2", "s3"]
    assert msa.depth == 4 and msa.length == 4
    assert msa.sequences.tolist() == [ids("ACDE"), ids("AC-E"), ids("ACDE"), ids("-CDE")]
    # s1: 'bc' before C -> 2 at column 2; 'e' before E -> 1 at column 4
    # s2: '.' is not counted; trailing 'fg' is dropped; s3: leading 'x' counts for the gap column
    assert msa.deletion_matrix.tolist() == [[0, 0, 0, 0], [0, 2, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]]
    assert msa.query == "ACDE" and msa.row_string(1) == "AC-E"


def test_a3m_letters_use_hhblits_mapping():
    msa = parse_a3m(">q\nBZUOJX\n")
    assert [MSA_LETTERS[i] for i in msa.sequences[0]] == list("DECXXX")


def test_a3m_row_length_mismatch_names_row(tmp_path):
    path = tmp_path / "x.a3m"
    path.write_text(">q\nACDE\n>ok\nA-DE\n>short one\nACD\n")
    with pytest.raises(ParseError) as err:
        read_msa(path)
    msg = str(err.value)
    assert str(path) in msg and "row 3" in msg and "short" in msg and "3 aligned columns" in msg


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "no alignment records"),
        ("ACDE\n", "before the first '>'"),
        (">q\n\n>s\nAC\n", "query row is empty"),
        (">q\nACDE\n>s\nAC1E\n", "'1' at column 3"),
        (">q\nACDE\n>s\nAC*E\n", "row 2"),
    ],
)
def test_a3m_bad_input(text, fragment):
    with pytest.raises(ParseError, match=fragment.replace("*", r"\*")):
        parse_a3m(text, source="m.a3m")


def test_a3m_fixture_dedup_and_query_check():
    msa = read_msa(FIXTURES / "2q2k_A.a3m")
    assert msa.depth == 25 and msa.length == len(QUERY_2Q2K)
    assert int((msa.deletion_matrix > 0).sum()) == 5
    dedup = msa.deduplicate()
    assert dedup.depth == 20
    assert dedup.names[0] == "query" and dedup.query == QUERY_2Q2K
    # first occurrence kept, order preserved
    kept = [msa.names.index(n) for n in dedup.names]
    assert kept == sorted(kept)
    assert len({r.tobytes() for r in dedup.sequences}) == 20
    msa.check_query(QUERY_2Q2K)
    with pytest.raises(ParseError, match="position 3"):
        msa.check_query(QUERY_2Q2K[:2] + "W" + QUERY_2Q2K[3:], source="x.a3m")
    with pytest.raises(ParseError, match="69 residues"):
        msa.check_query(QUERY_2Q2K[:-1], source="x.a3m")


def test_write_a3m_round_trip(tmp_path):
    names, rows = ["q", "h1", "h2"], ["MKVLA", "MKaaVL-", "-KVLA"]
    path = tmp_path / "o.a3m"
    write_a3m(path, names, rows)
    msa = read_msa(path)
    assert msa.names == names
    assert msa.deletion_matrix.tolist() == [[0] * 5, [0, 0, 2, 0, 0], [0] * 5]
    assert format_a3m(names, rows) == path.read_text()
    with pytest.raises(ParseError):
        write_a3m(tmp_path / "bad.a3m", ["q", "h"], ["MKV", "MK"])
    assert not (tmp_path / "bad.a3m").exists()


def test_single_sequence_and_merge():
    single = MSA.single_sequence("mkv")
    assert single.sequences.tolist() == [ids("MKV")] and single.deletion_matrix.sum() == 0
    a = parse_a3m(">q\nMKV\n>a\nM-V\n")
    b = parse_a3m(">q\nMKV\n>b\nMKL\n>c\nM-V\n")
    merged = merge_msas([a, b])
    assert merged.names == ["q", "a", "b"]
    assert GAP_ID in merged.sequences


# ------------------------------------------------------------------------------- Stockholm


def test_stockholm_matches_openfold_a3m_conversion():
    """The refs' A3M holds OpenFold's conversion of these Stockholm files: same rows and deletions."""
    a3m = read_msa(FIXTURES / "2q2k_A.a3m")
    uniref = read_msa(FIXTURES / "2q2k_A_uniref90_hits.sto")
    mgnify = read_msa(FIXTURES / "2q2k_A_mgnify_hits.sto")
    assert uniref.depth == 16 and mgnify.depth == 7
    np.testing.assert_array_equal(uniref.sequences, a3m.sequences[:16])
    np.testing.assert_array_equal(uniref.deletion_matrix, a3m.deletion_matrix[:16])
    assert uniref.deletion_matrix.sum() == 4  # the query has two gap columns in this file
    np.testing.assert_array_equal(mgnify.sequences[1:], a3m.sequences[-6:])
    np.testing.assert_array_equal(mgnify.deletion_matrix[1:], a3m.deletion_matrix[-6:])


def test_stockholm_interleaved_and_errors():
    text = "# STOCKHOLM 1.0\n#=GF ID x\nq  AC-D\ns  AcaD\n\nq  E.\ns  eE\n//\n"
    msa = parse_stockholm(text)
    assert msa.names == ["q", "s"]
    assert msa.sequences.tolist() == [ids("ACDE"), ids("ACDE")]
    # 'a' sits in a query-gap column -> 1 deletion before D; 'E' in the query '.' column -> before nothing
    assert msa.deletion_matrix.tolist() == [[0, 0, 0, 0], [0, 0, 1, 0]]
    with pytest.raises(ParseError, match="STOCKHOLM"):
        parse_stockholm(">q\nACD\n")
    with pytest.raises(ParseError, match="empty"):
        parse_stockholm("  \n")
    with pytest.raises(ParseError, match="line 3"):
        parse_stockholm("# STOCKHOLM 1.0\nq ACD\ns AC D\n//\n")
    with pytest.raises(ParseError, match="sequence s"):
        parse_stockholm("# STOCKHOLM 1.0\nq ACD\ns AC\n//\n")
    with pytest.raises(ParseError, match="'%' at column 2"):
        parse_stockholm("# STOCKHOLM 1.0\nq ACD\ns A%D\n//\n")


# -------------------------------------------------------------------------- property tests

_TMP = Path(tempfile.mkdtemp(prefix="tertiary-seq-"))
_MUTATIONS = st.lists(
    st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate"]), st.integers(0, 10**6), st.binary(min_size=1, max_size=3)),
    min_size=1,
    max_size=4,
)


def _mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, pos, payload in ops:
        if not buf:
            break
        i = pos % len(buf)
        if op == "flip":
            buf[i] = payload[0]
        elif op == "insert":
            buf[i:i] = payload
        elif op == "delete":
            del buf[i : i + len(payload)]
        else:
            del buf[i:]
    return bytes(buf)


@pytest.mark.parametrize(
    "fixture, reader",
    [("2q2k_A.fasta", read_fasta), ("2q2k_A.a3m", read_msa), ("2q2k_A_mgnify_hits.sto", read_msa)],
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_MUTATIONS)
def test_mutated_files_raise_only_tertiary_errors(fixture, reader, ops):
    data = _mutate((FIXTURES / fixture).read_bytes(), ops)
    path = _TMP / fixture
    path.write_bytes(data)
    try:
        reader(path)
    except TertiaryError:
        pass


def test_fasta_on_error_skips_bad_records_and_goes_on():
    errors: list[ParseError] = []
    recs = parse_fasta(">a\nMKV\n>b\nM2V\n>c\n>d\nAC\n", source="q.fa", on_error=errors.append)
    assert [r.name for r in recs] == ["a", "d"]
    assert len(errors) == 2 and "record 2 (b" in str(errors[0]) and "record 3 (c" in str(errors[1])


def test_alignment_to_a3m():
    rows = alignment_to_a3m(["AC-D.E", "AcaDeE", "-C.D-."])
    assert rows == ["ACDE", "ACaDeE", "-CD-"]
    msa = parse_a3m(format_a3m(["q", "s", "t"], rows))
    assert msa.deletion_matrix.tolist() == [[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]
    with pytest.raises(TertiaryError):
        alignment_to_a3m(["ACD", "AC"])
