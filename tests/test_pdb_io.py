"""The fixed-column PDB reader and the PDB writer (tertiary.pdb_io)."""

from __future__ import annotations

import gzip
import re
import warnings
from pathlib import Path

import gemmi
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tertiary.errors import InputError, ParseError
from tertiary.pdb_io import _fixed_point, format_atom_lines, infer_element, read_pdb_sites
from tertiary.protein import Protein

DATA = Path(__file__).resolve().parent / "data" / "protein"

LINE = "ATOM   {serial:4d}  {name:<3s} {res:3s} {chain:1s}{num:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00 20.00           {el:>2s}"


def _line(serial=1, name="CA", res="ALA", chain="A", num=1, x=1.0, y=2.0, z=3.0, el="C") -> str:
    return LINE.format(serial=serial, name=name, res=res, chain=chain, num=num, x=x, y=y, z=z, el=el)


def _sites(text: str | bytes, model: int = 1):
    data = text.encode() if isinstance(text, str) else text
    return read_pdb_sites(data, "t.pdb", model)


# -------------------------------------------------------------------------------------------
# Number parsing fast path
# -------------------------------------------------------------------------------------------


def _fields(texts: list[bytes], width: int) -> np.ndarray:
    return np.frombuffer(b"".join(b"XX" + t.rjust(width) for t in texts), np.uint8).reshape(
        len(texts), width + 2
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-999.999, 9999.999, allow_nan=False), min_size=1, max_size=40))
def test_fixed_point_equals_float_on_formatted_numbers(values: list[float]) -> None:
    texts = [f"{v:8.3f}".encode() for v in values]
    out, ok = _fixed_point(_fields(texts, 8), ((2, 8, 4),))
    assert ok.all()
    assert out[:, 0].tolist() == [float(t) for t in texts]  # bit-identical


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=" -.0123456789e+x", min_size=6, max_size=6), min_size=1,
                max_size=20))
def test_fixed_point_accepts_only_what_float_reads_the_same(texts: list[str]) -> None:
    raw = [t.encode() for t in texts]
    out, ok = _fixed_point(_fields(raw, 6), ((2, 6, 3),))
    for t, v, good in zip(texts, out[:, 0], ok[:, 0]):
        if good:
            assert float(t) == v, t


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=" -0123456789+", min_size=4, max_size=4), min_size=1,
                max_size=20))
def test_fixed_point_integers(texts: list[str]) -> None:
    out, ok = _fixed_point(_fields([t.encode() for t in texts], 4), ((2, 4, None),))
    for t, v, good in zip(texts, out[:, 0], ok[:, 0]):
        if good:
            assert int(t) == v, t
        elif re.fullmatch(r" *-?[0-9]+", t):
            pytest.fail(f"{t!r} is a plain right-aligned integer but was not accepted")


# -------------------------------------------------------------------------------------------
# Reader
# -------------------------------------------------------------------------------------------


def test_touching_fields_and_short_lines() -> None:
    text = "\n".join([
        "ATOM      1  N   CYS A 229      35.570  37.235 -15.528  1.00181.37           N  ",
        "ATOM      2  CA  CYS A 229      36.732  36.556 -16.111",  # ends after z
        "ATOM      3  C   CYS A 229      37.000  36.000 -16.000  0.50",
    ])
    s = _sites(text)
    np.testing.assert_allclose(s.b_factor, [181.37, 0.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(s.occupancy, [1.0, 1.0, 0.5])
    np.testing.assert_allclose(s.xyz[1], [36.732, 36.556, -16.111])
    assert s.element.tolist() == [b"N", b"C", b"C"]


def test_crlf_tabs_blank_lines_and_no_final_newline() -> None:
    lines = [_line(1, "N", el="N"), "", _line(2, "CA"), _line(3, "C")]
    s = _sites("\r\n".join(lines))
    assert s.atom_name.tolist() == [b"N", b"CA", b"C"]
    assert s.record.tolist() == [1, 3, 4]
    assert s.element.tolist() == [b"N", b"C", b"C"]


def test_junk_in_columns_73_to_80_and_element_inference() -> None:
    lines = [
        # segid + old serial where element/charge should be (1ACB_l_b style)
        "ATOM   1773  N   LYS I   8      20.654  17.464   5.676  1.00 78.35   1  1ACB1930",
        # no element at all (1BVN_l_u style)
        "ATOM      1  N   ASP     1      52.873  16.218  41.052  1.00 45.20      1HOE  ",
        # acetyl cap CA aligned as carbon, calcium ion CA aligned left (1ATN_r_b style)
        "HETATM    1  CA  ACE A   0      10.000  10.000  10.000  1.00 20.00      1ATN 263",
        "HETATM    2 CA    CA A 501      11.000  10.000  10.000  1.00 20.00      1ATN 264",
        "ATOM      5 1HG2 VAL A   2      12.000  10.000  10.000  1.00 20.00      1ATN 265",
        "HETATM    6 SE   MSE A   3      13.000  10.000  10.000  1.00 20.00          SE  ",
        "ATOM      7  OE1 GLU A   4      14.000  10.000  10.000  1.00 20.00           O1-",
    ]
    s = _sites("\n".join(lines))
    assert s.element.tolist() == [b"N", b"N", b"C", b"CA", b"H", b"SE", b"O"]
    assert s.chain_id.tolist()[:2] == [b"I", b""]
    assert s.resseq.tolist() == [8, 1, 0, 501, 2, 3, 4]
    # gemmi's default reader rejects the first line (digits in the charge columns).
    with pytest.raises(RuntimeError):
        gemmi.read_pdb_string(lines[0] + "\n")


@pytest.mark.parametrize(
    ("raw", "res", "element"),
    [(b" CA ", b"ALA", b"C"), (b"CA  ", b"CA", b"CA"), (b"1HG2", b"VAL", b"H"),
     (b"HG21", b"THR", b"H"), (b"FE  ", b"HEM", b"FE"), (b" N  ", b"LYS", b"N"),
     (b"NA  ", b"NA", b"NA"), (b"CD1 ", b"LEU", b"C"), (b" SG ", b"CYS", b"S")],
)
def test_infer_element(raw: bytes, res: bytes, element: bytes) -> None:
    assert infer_element(raw, res) == element


def test_models_are_selected_by_ordinal() -> None:
    text = "\n".join(["MODEL        1", _line(1, x=1.0), "ENDMDL", "MODEL        2",
                      _line(1, x=2.0), _line(2, "CB", x=2.5), "ENDMDL", "END"])
    one, two = _sites(text, 1), _sites(text, 2)
    assert one.n_models == two.n_models == 2
    assert one.xyz[:, 0].tolist() == [1.0] and two.xyz[:, 0].tolist() == [2.0, 2.5]
    with pytest.raises(InputError, match="model 3"):
        _sites(text, 3)


def test_matches_gemmi_on_a_clean_file() -> None:
    text = gzip.decompress((DATA / "1aki.pdb.gz").read_bytes()).decode()
    s = _sites(text)
    st_ = gemmi.read_pdb_string(text)
    atoms = [(r, a) for ch in st_[0] for r in ch for a in r]
    assert len(atoms) == len(s)
    np.testing.assert_allclose(s.xyz, [[a.pos.x, a.pos.y, a.pos.z] for _, a in atoms], atol=1e-6)
    assert s.element.tolist() == [a.element.name.upper().encode() for _, a in atoms]
    assert s.resseq.tolist() == [r.seqid.num for r, _ in atoms]
    np.testing.assert_allclose(s.b_factor, [a.b_iso for _, a in atoms], atol=1e-4)


# -------------------------------------------------------------------------------------------
# Errors name the file, the line and the problem
# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_line", "pattern"),
    [
        (_line(3)[:40], r"t\.pdb: line 3: ATOM/HETATM record too short"),
        (_line(3)[:30] + "  12.a45" + _line(3)[38:], r"t\.pdb: line 3: invalid x coordinate .*'12.a45'"),
        (_line(3)[:46] + "     nan" + _line(3)[54:], r"t\.pdb: line 3: invalid coordinates"),
        (_line(3)[:38] + "     inf" + _line(3)[46:], r"t\.pdb: line 3: invalid coordinates"),
        (_line(3)[:22] + "  x1" + _line(3)[26:], r"t\.pdb: line 3: invalid residue number"),
        (_line(3)[:54] + "  1.0x" + _line(3)[60:], r"t\.pdb: line 3: invalid occupancy"),
        (_line(3)[:20] + "\x00" + _line(3)[21:], r"t\.pdb: line 3: binary data \(NUL byte"),
        (_line(3)[:20] + "\x07" + _line(3)[21:], r"t\.pdb: line 3: non-text byte"),
    ],
)
def test_bad_records_raise_parse_error(bad_line: str, pattern: str) -> None:
    text = "\n".join([_line(1, "N", el="N"), _line(2, "CA"), bad_line, _line(4, "O", el="O")])
    with pytest.raises(ParseError, match=pattern):
        Protein.from_string(text, name="t.pdb")


def test_absurd_coordinates_raise() -> None:
    text = "\n".join([_line(1), _line(2, "CB", x=9999.0), "ATOM      3  C   ALA A   1    " + "1.0e+300" * 3])
    with pytest.raises(ParseError, match=r"line 3: invalid coordinates"):
        Protein.from_string(text, name="t.pdb")


@pytest.mark.parametrize(
    ("data", "pattern"),
    [(b"", "empty file"), (b"   \n\n", "empty file"), (b"HEADER    nothing\nEND\n", "no ATOM"),
     (b"\x00\x01\x02\x03" * 100, "binary data"), (bytes(range(256)) * 4, "binary|non-text")],
)
def test_files_without_atoms(data: bytes, pattern: str) -> None:
    with pytest.raises(ParseError, match=pattern):
        Protein.from_string(data, name="t.pdb", fmt="pdb")


def test_duplicate_atoms_and_unknown_names_warn() -> None:
    lines = [_line(1, "N", el="N"), _line(2, "CA"), _line(3, "CA", x=9.0), _line(4, "C"),
             _line(5, "XY"), _line(6, "CB")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = Protein.from_string("\n".join(lines), name="t.pdb")
    messages = " | ".join(str(w.message) for w in caught)
    assert "duplicated atom" in messages and "line 3" in messages
    assert "ALA:XY" in messages and "line 5" in messages
    assert p.atom_positions[0, 1, 0] == 1.0  # the first CA is kept
    assert p.atom_mask[0].sum() == 4  # N CA C CB


def test_a_residue_listed_twice_under_one_number_is_two_residues() -> None:
    """Two copies of a residue one after the other under the same number (CrossDocked pocket
    2jjg_A_2jjg_plp lists GLU A 126 so, 6 A apart): the second starts over with the first
    atom's name, so it is read as a second residue, with a warning."""
    first = [_line(1, "N", el="N"), _line(2, "CA"), _line(3, "C"), _line(4, "O", el="O")]
    second = [_line(9, "N", x=7.0, el="N"), _line(10, "CA", x=7.0), _line(11, "C", x=7.0), _line(12, "O", x=7.0, el="O")]
    following = [_line(13, "N", num=2, el="N"), _line(14, "CA", num=2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = Protein.from_string("\n".join(first + second + following), name="t.pdb")
    messages = " | ".join(str(w.message) for w in caught)
    assert "listed again under the same number" in messages and "line 5" in messages
    assert len(p.aatype) == 3
    assert p.atom_positions[0, 1, 0] == 1.0 and p.atom_positions[1, 1, 0] == 7.0
    assert list(p.residue_index) == [1, 1, 2]


# -------------------------------------------------------------------------------------------
# Writer
# -------------------------------------------------------------------------------------------


def test_format_atom_lines_columns() -> None:
    recs = [
        ("ATOM", 1, "CA", "ALA", "A", 12, "B", 1.5, -2.25, 1234.5, 1.0, 150.25, "C"),
        ("HETATM", 2, "CA", "CA", "B", -3, "", -999.0, 0.0, 0.0, 0.5, 5.0, "CA"),
        ("HETATM", 3, "C1'", "NAG", "B", 9999, "", 0.0, 0.0, 0.0, 1.0, 0.0, "C"),
    ]
    lines = format_atom_lines(recs)
    assert all(len(ln) == 80 for ln in lines)
    assert lines[0][12:16] == " CA " and lines[1][12:16] == "CA  " and lines[2][12:16] == " C1'"
    assert lines[0][22:27] == "  12B" and lines[0][60:66] == "150.25"
    s = _sites("\n".join(lines))
    np.testing.assert_allclose(s.xyz, [r[7:10] for r in recs])
    assert s.element.tolist() == [b"C", b"CA", b"C"] and s.icode.tolist() == [b"B", b"", b""]
    st_ = gemmi.read_pdb_string("\n".join(lines) + "\n")
    assert [a.element.name for r in st_[0]["B"] for a in r] == ["Ca", "C"]
    with pytest.raises(InputError, match="residue number"):
        format_atom_lines([("ATOM", 1, "CA", "ALA", "A", -1000, "", 0.0, 0.0, 0.0, 1.0, 0.0, "C")])


def test_hybrid36_residue_numbers() -> None:
    """Residue numbers beyond 9999 written in hybrid-36 (A000 = 10000) are read; garbage is
    still an error naming the line."""
    lines = [_line(1, num=9999), _line(2, num=9999).replace("9999", "A000", 1),
             _line(3, num=9999).replace("9999", "A001", 1), _line(4, num=9999).replace("9999", "a000", 1)]
    s = _sites("\n".join(lines))
    assert s.resseq.tolist() == [9999, 10000, 10001, 10000 + 26 * 36**3]
    bad = _line(2, num=9999).replace("9999", "A0a0", 1)
    with pytest.raises(ParseError, match=r"line 2: invalid residue number .*'A0a0'"):
        _sites("\n".join([lines[0], bad]))


def test_hybrid36_round_trip_through_the_writer() -> None:
    from tertiary.pdb_io import hybrid36_decode, hybrid36_encode

    rng = np.random.default_rng(0)
    values = [-999, -1, 0, 9999, 10000, 10000 + 26 * 36**3 - 1, 10000 + 26 * 36**3,
              10000 + 2 * 26 * 36**3 - 1, *rng.integers(-999, 10000 + 2 * 26 * 36**3, 300).tolist()]
    for v in values:
        text = hybrid36_encode(4, v)
        assert len(text) == 4 and hybrid36_decode(4, text) == v
    with pytest.raises(InputError):
        hybrid36_encode(4, 10000 + 2 * 26 * 36**3)
    p = Protein.from_string(_line(1, "N", el="N") + "\n" + _line(2, "CA") + "\n")
    p.residue_index[:] = 12345
    text = p.to_pdb()
    assert Protein.from_string(text).residue_index.tolist() == [12345]
    st_ = gemmi.read_pdb_string(text)
    assert st_[0]["A"][0].seqid.num == 12345  # gemmi reads hybrid-36 the same way


def test_elements_agree_with_gemmi_on_db55(shared_data: Path) -> None:
    """Elements (read from columns 77-78 or inferred) equal gemmi's on DB5.5 files: the files
    gemmi's default reader rejects are compared with gemmi reading only columns 1-72 (it then
    infers every element), the others (every 6th) with gemmi's default reader."""
    files = sorted((shared_data / "db5.5_docking_benchmark" / "structures").glob("*.pdb.gz"))
    assert len(files) == 638
    rejected = 0
    for k, path in enumerate(files):
        text = gzip.decompress(path.read_bytes()).decode()
        try:
            st_ = gemmi.read_pdb_string(text)
        except RuntimeError:
            rejected += 1
            st_ = gemmi.read_pdb_string(text, max_line_length=72)
        else:
            if k % 6:
                continue
        s = _sites(text)
        expected = [a.element.name.upper().encode() for ch in st_[0] for r in ch for a in r]
        assert s.element.tolist() == expected, path.name
    if gemmi.__version__ == "0.7.5":  # ../shared/data/db5.5_docking_benchmark/README.md
        assert rejected == 24
